//! Tabular operators: each stage is a `SELECT` of the stage before, with the columns it
//! outputs known by name and type.

use super::ast::*;
use super::dialect::quote_identifier;
use super::expr::{Column, Json, Scope, Type, Value};
use super::{Dialect, KqlError, Position};
use crate::schema::Table;

type Result<T> = std::result::Result<T, KqlError>;

/// The alias of the stage a `SELECT` reads.
const STAGE: &str = "s";

pub(super) fn compile(query: &Query, dialect: Dialect) -> Result<String> {
    let compiler = Compiler { dialect };
    let relation = compiler.pipeline(&query.body, &query.lets)?;
    Ok(compiler.finish(relation))
}

struct Compiler {
    dialect: Dialect,
}

/// A stage: its SQL and the columns it outputs.
struct Relation {
    sql: String,
    columns: Vec<Column>,
    /// The sort the pipeline put its rows in. SQL keeps no order from a subquery, so the sort
    /// keys ride along as trailing hidden columns through the operators that keep KQL's order
    /// (`where`, `project`, `extend`, `take`, `mv-expand`, ...) and are applied where rows are
    /// cut (`take`) and at the end.
    order: Vec<OrderKey>,
}

struct OrderKey {
    /// The hidden column holding the key.
    column: String,
    descending: bool,
    nulls_first: bool,
}

impl Relation {
    fn visible(&self) -> Vec<String> {
        self.columns.iter().map(|c| quote_identifier(&c.name)).collect()
    }

    /// The visible columns, then the hidden sort keys.
    fn carried(&self) -> Vec<String> {
        let mut items = self.visible();
        items.extend(self.order.iter().map(|key| quote_identifier(&key.column)));
        items
    }

    fn order_by(&self) -> String {
        match self.order.is_empty() {
            true => String::new(),
            false => format!("\nORDER BY {}", order_by(&self.order)),
        }
    }
}

fn order_by(keys: &[OrderKey]) -> String {
    let keys = keys.iter().map(|key| {
        let direction = if key.descending { "DESC" } else { "ASC" };
        let nulls = if key.nulls_first { "FIRST" } else { "LAST" };
        format!("{} {direction} NULLS {nulls}", quote_identifier(&key.column))
    });
    keys.collect::<Vec<_>>().join(", ")
}

/// `SELECT items FROM (from) AS s` and what follows (`WHERE`, `GROUP BY`, ...).
fn select(items: &[String], from: &str, rest: &str) -> String {
    format!("SELECT {}\nFROM (\n{from}\n) AS {STAGE}{rest}", items.join(", "))
}

fn aliased(sql: &str, name: &str) -> String {
    let quoted = quote_identifier(name);
    match sql == quoted {
        true => quoted,
        false => format!("{sql} AS {quoted}"),
    }
}

/// `base`, or `base1`, `base2`, ... when taken: how KQL names a join's right-side column.
fn unique_name(base: &str, taken: &[Column]) -> String {
    let free = |name: &str| !taken.iter().any(|c| c.name == name);
    match free(base) {
        true => base.to_owned(),
        false => (1..).map(|n| format!("{base}{n}")).find(|name| free(name)).expect("some suffix is free"),
    }
}

/// The name KQL gives an unnamed column: a column's own, a path's steps joined by `_`, the
/// column a `bin` rounds; else `Column1`, `Column2`, ... counted by `unnamed`.
fn default_name(expr: &Expr, unnamed: &mut usize) -> String {
    fn path(expr: &Expr) -> Option<String> {
        match &expr.kind {
            ExprKind::Name(name) => Some(name.clone()),
            ExprKind::Member { base, key } => Some(format!("{}_{key}", path(base)?)),
            ExprKind::Index { base, index } => Some(format!("{}_{index}", path(base)?)),
            _ => None,
        }
    }
    match &expr.kind {
        ExprKind::Call { name, args } if matches!(name.as_str(), "bin" | "floor") && !args.is_empty() => {
            if let ExprKind::Name(column) = &args[0].kind {
                return column.clone();
            }
        }
        _ => {
            if let Some(name) = path(expr) {
                return name;
            }
        }
    }
    *unnamed += 1;
    format!("Column{unnamed}")
}

/// The name KQL gives an unnamed aggregation: `count_`, `dcount_Col`, `set_Col`, ...
fn aggregate_name(expr: &Expr, unnamed: &mut usize) -> String {
    let ExprKind::Call { name, args } = &expr.kind else { return default_name(expr, unnamed) };
    let prefix = match name.as_str() {
        "make_set" => "set",
        "make_list" => "list",
        other => other,
    };
    match args.first().map(|arg| &arg.kind) {
        Some(ExprKind::Name(column)) => format!("{prefix}_{column}"),
        _ => format!("{prefix}_"),
    }
}

/// Whether `expr` reads the column `name`.
fn reads(expr: &Expr, name: &str) -> bool {
    match &expr.kind {
        ExprKind::Name(n) => n == name,
        ExprKind::Member { base, .. } | ExprKind::Index { base, .. } | ExprKind::Negate(base) => reads(base, name),
        ExprKind::Call { args, .. } => args.iter().any(|arg| reads(arg, name)),
        ExprKind::Binary { left, right, .. } => reads(left, name) || reads(right, name),
        ExprKind::List { expr, items, .. } => reads(expr, name) || items.iter().any(|item| reads(item, name)),
        ExprKind::Between { expr, low, high, .. } => reads(expr, name) || reads(low, name) || reads(high, name),
        _ => false,
    }
}

/// Matches a `project-away` pattern, where `*` stands for any text.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

impl Compiler {
    fn scope<'a>(&self, columns: &'a [Column], lets: &'a [Let], aggregates: bool) -> Scope<'a> {
        Scope { dialect: self.dialect, columns, lets, aggregates }
    }

    fn pipeline(&self, pipeline: &Pipeline, lets: &[Let]) -> Result<Relation> {
        let mut relation = self.source(&pipeline.source, lets)?;
        for operator in &pipeline.operators {
            relation = self.operator(relation, operator, lets)?;
        }
        Ok(relation)
    }

    /// A table, or the tabular `let` named `source`.
    fn source(&self, source: &Name, lets: &[Let]) -> Result<Relation> {
        if let Some(index) = lets.iter().rposition(|l| l.name.text == source.text) {
            let before = &lets[..index];
            return match &lets[index].value {
                LetValue::Tabular(pipeline) => self.pipeline(pipeline, before),
                LetValue::Scalar(Expr { kind: ExprKind::Name(table), position }) => {
                    self.source(&Name { text: table.clone(), position: *position }, before)
                }
                LetValue::Scalar(_) => Err(KqlError::TypeMismatch {
                    position: source.position,
                    message: format!("`{}` is a scalar let, not a table", source.text),
                }),
            };
        }
        let Some(table) = Table::ALL.into_iter().find(|t| t.name() == source.text) else {
            let mut available: Vec<String> = Table::ALL.iter().map(|t| t.name().to_owned()).collect();
            available.extend(lets.iter().filter(|l| matches!(l.value, LetValue::Tabular(_))).map(|l| l.name.text.clone()));
            return Err(KqlError::UnknownTable { position: source.position, name: source.text.clone(), available });
        };
        let columns: Vec<Column> =
            table.columns().iter().map(|c| Column { name: c.name.to_owned(), ty: Type::of_column(table, c) }).collect();
        let items: Vec<String> = columns.iter().map(|c| quote_identifier(&c.name)).collect();
        let sql = format!("SELECT {}\nFROM {}", items.join(", "), quote_identifier(table.name()));
        Ok(Relation { sql, columns, order: Vec::new() })
    }

    fn operator(&self, relation: Relation, operator: &Operator, lets: &[Let]) -> Result<Relation> {
        let position = operator.position;
        match &operator.kind {
            OperatorKind::Where(predicate) => {
                let predicate = self.scope(&relation.columns, lets, false).boolean(predicate)?;
                let sql = select(&relation.carried(), &relation.sql, &format!("\nWHERE {predicate}"));
                Ok(Relation { sql, ..relation })
            }
            OperatorKind::Project(assignments) => self.project(relation, assignments, lets),
            OperatorKind::Extend(assignments) => {
                // A stage per run of assignments that do not read each other's columns: SQL
                // cannot read a column of the SELECT that defines it.
                let mut relation = relation;
                let mut run: Vec<Assignment> = Vec::new();
                let mut unnamed = 0;
                for assignment in assignments {
                    let reads_run = run.iter().any(|a| a.name.as_ref().is_some_and(|n| reads(&assignment.expr, &n.text)));
                    if reads_run {
                        relation = self.extend(relation, &std::mem::take(&mut run), lets)?;
                    }
                    let name = assignment.name.clone().unwrap_or_else(|| Name {
                        text: default_name(&assignment.expr, &mut unnamed),
                        position: assignment.expr.position,
                    });
                    run.push(Assignment { name: Some(name), expr: assignment.expr.clone() });
                }
                self.extend(relation, &run, lets)
            }
            OperatorKind::ProjectAway(patterns) => {
                for pattern in patterns.iter().filter(|p| !p.text.contains('*')) {
                    if !relation.columns.iter().any(|c| c.name == pattern.text) {
                        let scope = self.scope(&relation.columns, lets, false);
                        return Err(scope.unknown_column(&pattern.text, pattern.position));
                    }
                }
                let kept = relation
                    .columns
                    .iter()
                    .filter(|c| !patterns.iter().any(|p| matches_pattern(&p.text, &c.name)))
                    .cloned()
                    .collect();
                let relation = Relation { columns: kept, ..relation };
                Ok(Relation { sql: select(&relation.carried(), &relation.sql, ""), ..relation })
            }
            OperatorKind::ProjectRename(renames) => {
                let mut columns = relation.columns.clone();
                let mut items = relation.carried();
                for (new, old) in renames {
                    let Some(index) = columns.iter().position(|c| c.name == old.text) else {
                        return Err(self.scope(&columns, lets, false).unknown_column(&old.text, old.position));
                    };
                    if columns.iter().any(|c| c.name == new.text) {
                        return Err(KqlError::DuplicateColumn { position: new.position, name: new.text.clone() });
                    }
                    items[index] = aliased(&items[index], &new.text);
                    columns[index].name = new.text.clone();
                }
                Ok(Relation { sql: select(&items, &relation.sql, ""), columns, ..relation })
            }
            OperatorKind::Summarize { aggregates, by } => self.summarize(relation, aggregates, by, lets, position),
            OperatorKind::Sort(keys) => self.sort(relation, keys, None, lets),
            OperatorKind::Top { count, key } => self.sort(relation, std::slice::from_ref(key), Some(*count), lets),
            OperatorKind::Take(count) => {
                let rest = format!("{}\nLIMIT {count}", relation.order_by());
                Ok(Relation { sql: select(&relation.carried(), &relation.sql, &rest), ..relation })
            }
            OperatorKind::Distinct(names) => {
                let columns = match names.is_empty() {
                    true => relation.columns.clone(),
                    false => names
                        .iter()
                        .map(|name| self.existing(&relation.columns, name, lets).cloned())
                        .collect::<Result<Vec<_>>>()?,
                };
                let items: Vec<String> = columns.iter().map(|c| quote_identifier(&c.name)).collect();
                let sql = select(&items, &relation.sql, "").replacen("SELECT ", "SELECT DISTINCT ", 1);
                Ok(Relation { sql, columns, order: Vec::new() })
            }
            OperatorKind::Count => Ok(Relation {
                sql: select(&["count(*) AS \"Count\"".to_owned()], &relation.sql, ""),
                columns: vec![Column { name: "Count".into(), ty: Type::Long }],
                order: Vec::new(),
            }),
            OperatorKind::Join { kind, right, on } => self.join(relation, *kind, right, on, lets),
            OperatorKind::MvExpand { name, expr } => self.mv_expand(relation, name.as_ref(), expr, lets),
        }
    }

    /// The column `name` names in `columns` (Defender's aliases included), or an error.
    fn existing<'c>(&self, columns: &'c [Column], name: &Name, lets: &'c [Let]) -> Result<&'c Column> {
        let scope = self.scope(columns, lets, false);
        scope.column(&name.text).ok_or_else(|| scope.unknown_column(&name.text, name.position))
    }

    fn project(&self, relation: Relation, assignments: &[Assignment], lets: &[Let]) -> Result<Relation> {
        let scope = self.scope(&relation.columns, lets, false);
        let mut columns: Vec<Column> = Vec::new();
        let mut items = Vec::new();
        let mut unnamed = 0;
        for assignment in assignments {
            let (sql, ty) = scope.materialize(scope.compile(&assignment.expr)?);
            let name = match &assignment.name {
                Some(name) => name.text.clone(),
                None => default_name(&assignment.expr, &mut unnamed),
            };
            if columns.iter().any(|c| c.name == name) {
                return Err(KqlError::DuplicateColumn { position: assignment.expr.position, name });
            }
            items.push(aliased(&sql, &name));
            columns.push(Column { name, ty });
        }
        items.extend(relation.order.iter().map(|key| quote_identifier(&key.column)));
        Ok(Relation { sql: select(&items, &relation.sql, ""), columns, order: relation.order })
    }

    /// One `extend` stage: every assignment named, none reading another's column.
    fn extend(&self, relation: Relation, assignments: &[Assignment], lets: &[Let]) -> Result<Relation> {
        if assignments.is_empty() {
            return Ok(relation);
        }
        let scope = self.scope(&relation.columns, lets, false);
        let mut columns = relation.columns.clone();
        let mut items = relation.visible();
        for assignment in assignments {
            let name = assignment.name.as_ref().expect("extend names every assignment").text.clone();
            let (sql, ty) = scope.materialize(scope.compile(&assignment.expr)?);
            let item = aliased(&sql, &name);
            // An existing column is replaced where it stands, as KQL does.
            match columns.iter().position(|c| c.name == name) {
                Some(index) => {
                    items[index] = item;
                    columns[index].ty = ty;
                }
                None => {
                    items.push(item);
                    columns.push(Column { name, ty });
                }
            }
        }
        items.extend(relation.order.iter().map(|key| quote_identifier(&key.column)));
        Ok(Relation { sql: select(&items, &relation.sql, ""), columns, order: relation.order })
    }

    /// `order by`, or `top` when `limit` is given.
    fn sort(&self, relation: Relation, keys: &[SortKey], limit: Option<u64>, lets: &[Let]) -> Result<Relation> {
        let scope = self.scope(&relation.columns, lets, false);
        let mut items = relation.visible();
        let mut order = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let value = scope.compile(&key.expr)?;
            let sql = match value.ty() {
                // A dynamic key sorts by its text: JSON has no order of its own.
                Type::Dynamic(_) => scope.dynamic_text(value),
                _ => scope.materialize(value).0,
            };
            let column = format!("__order_{}", index + 1);
            items.push(aliased(&sql, &column));
            order.push(OrderKey { column, descending: key.descending, nulls_first: key.nulls_first });
        }
        let rest = match limit {
            Some(count) => format!("\nORDER BY {}\nLIMIT {count}", order_by(&order)),
            None => String::new(),
        };
        Ok(Relation { sql: select(&items, &relation.sql, &rest), columns: relation.columns, order })
    }

    fn summarize(
        &self,
        relation: Relation,
        aggregates: &[Assignment],
        by: &[Assignment],
        lets: &[Let],
        position: Position,
    ) -> Result<Relation> {
        let scope = self.scope(&relation.columns, lets, false);
        let mut unnamed = 0;
        let mut keys: Vec<(String, Column)> = Vec::new();
        for key in by {
            let (sql, ty) = scope.materialize(scope.compile(&key.expr)?);
            let name = match &key.name {
                Some(name) => name.text.clone(),
                None => default_name(&key.expr, &mut unnamed),
            };
            if keys.iter().any(|(_, c)| c.name == name) {
                return Err(KqlError::DuplicateColumn { position: key.expr.position, name });
            }
            keys.push((sql, Column { name, ty }));
        }
        let extreme = aggregates.iter().find(|a| {
            matches!(&a.expr.kind, ExprKind::Call { name, .. } if name == "arg_max" || name == "arg_min")
        });
        if let Some(extreme) = extreme {
            if aggregates.len() > 1 {
                return Err(KqlError::Unsupported {
                    position,
                    construct: "arg_max or arg_min with other aggregations".into(),
                    hint: "summarize arg_max(...) by ... alone, then join or summarize again".into(),
                });
            }
            return self.arg_extreme(relation, keys, extreme, lets);
        }
        let aggregate_scope = self.scope(&relation.columns, lets, true);
        let mut columns: Vec<Column> = keys.iter().map(|(_, c)| c.clone()).collect();
        let mut items: Vec<String> = keys.iter().map(|(sql, c)| aliased(sql, &c.name)).collect();
        for aggregate in aggregates {
            let (sql, ty) = aggregate_scope.materialize(aggregate_scope.compile(&aggregate.expr)?);
            let name = match &aggregate.name {
                Some(name) => name.text.clone(),
                None => aggregate_name(&aggregate.expr, &mut unnamed),
            };
            if columns.iter().any(|c| c.name == name) {
                return Err(KqlError::DuplicateColumn { position: aggregate.expr.position, name });
            }
            items.push(aliased(&sql, &name));
            columns.push(Column { name, ty });
        }
        let group_by = match keys.is_empty() {
            true => String::new(),
            false => format!("\nGROUP BY {}", keys.iter().map(|(sql, _)| sql.as_str()).collect::<Vec<_>>().join(", ")),
        };
        Ok(Relation { sql: select(&items, &relation.sql, &group_by), columns, order: Vec::new() })
    }

    /// `summarize arg_max(expr, cols) by keys`: each group's row where `expr` is largest, by
    /// `ROW_NUMBER()` over the group (neither engine's `max_by` is the other's).
    fn arg_extreme(
        &self,
        relation: Relation,
        keys: Vec<(String, Column)>,
        extreme: &Assignment,
        lets: &[Let],
    ) -> Result<Relation> {
        let ExprKind::Call { name: function, args } = &extreme.expr.kind else { unreachable!("found as a call") };
        let position = extreme.expr.position;
        let Some((measured, returned)) = args.split_first().filter(|(_, returned)| !returned.is_empty()) else {
            return Err(KqlError::WrongArguments {
                position,
                function: function.clone(),
                expected: "the expression to maximize, then `*` or the columns to return",
            });
        };
        let scope = self.scope(&relation.columns, lets, false);
        let (measured_sql, measured_ty) = scope.materialize(scope.compile(measured)?);
        let measured_name = match (&extreme.name, &measured.kind) {
            (Some(name), _) => name.text.clone(),
            (None, ExprKind::Name(name)) => scope.column(name).map_or(name.clone(), |c| c.name.clone()),
            (None, _) => format!("{}_{}", &function[4..], default_name(measured, &mut 0)),
        };
        let mut columns: Vec<Column> = keys.iter().map(|(_, c)| c.clone()).collect();
        let mut items: Vec<String> =
            keys.iter().enumerate().map(|(i, (_, c))| aliased(&quote_identifier(&format!("__key_{i}")), &c.name)).collect();
        let measured_name = unique_name(&measured_name, &columns);
        items.push(aliased("\"__measured\"", &measured_name));
        columns.push(Column { name: measured_name, ty: measured_ty });
        let returned: Vec<&Column> = match returned {
            [Expr { kind: ExprKind::Star, .. }] => relation
                .columns
                .iter()
                .filter(|c| !columns.iter().any(|taken| taken.name == c.name))
                .collect(),
            returned => returned
                .iter()
                .map(|expr| match &expr.kind {
                    ExprKind::Name(name) => self.existing(&relation.columns, &Name { text: name.clone(), position: expr.position }, lets),
                    _ => Err(KqlError::Unsupported {
                        position: expr.position,
                        construct: format!("an expression among {function}'s returned columns"),
                        hint: "name columns (or `*`), and compute values with extend before summarize".into(),
                    }),
                })
                .collect::<Result<_>>()?,
        };
        for column in returned {
            if columns.iter().any(|c| c.name == column.name) {
                continue;
            }
            items.push(quote_identifier(&column.name));
            columns.push(column.clone());
        }
        let mut inner = relation.visible();
        inner.extend(keys.iter().enumerate().map(|(i, (sql, _))| format!("{sql} AS \"__key_{i}\"")));
        inner.push(format!("{measured_sql} AS \"__measured\""));
        let partition = match keys.is_empty() {
            true => String::new(),
            false => format!("PARTITION BY {} ", keys.iter().map(|(sql, _)| sql.as_str()).collect::<Vec<_>>().join(", ")),
        };
        let direction = if function == "arg_max" { "DESC" } else { "ASC" };
        inner.push(format!("ROW_NUMBER() OVER ({partition}ORDER BY {measured_sql} {direction} NULLS LAST) AS \"__rank\""));
        let ranked = select(&inner, &relation.sql, "");
        Ok(Relation { sql: select(&items, &ranked, "\nWHERE \"__rank\" = 1"), columns, order: Vec::new() })
    }

    fn join(&self, left: Relation, kind: JoinKind, right: &Pipeline, on: &[JoinKey], lets: &[Let]) -> Result<Relation> {
        let right = self.pipeline(right, lets)?;
        let mut conditions = Vec::new();
        let mut left_keys = Vec::new();
        for key in on {
            let left_column = self.existing(&left.columns, &key.left, lets)?;
            let right_column = self.existing(&right.columns, &key.right, lets)?;
            left_keys.push(quote_identifier(&left_column.name));
            conditions.push(format!(
                "l.{} = r.{}",
                quote_identifier(&left_column.name),
                quote_identifier(&right_column.name)
            ));
        }
        let condition = conditions.join(" AND ");
        let qualified = |alias: &str, relation: &Relation| -> Vec<String> {
            relation.visible().iter().map(|column| format!("{alias}.{column}")).collect()
        };
        let semi = |kept: &Relation, kept_alias: &str, other: &Relation, other_alias: &str, negated: bool| {
            let not = if negated { "NOT " } else { "" };
            let sql = format!(
                "SELECT {}\nFROM (\n{}\n) AS {kept_alias}\nWHERE {not}EXISTS (SELECT 1 FROM (\n{}\n) AS {other_alias} WHERE {condition})",
                qualified(kept_alias, kept).join(", "),
                kept.sql,
                other.sql,
            );
            Relation { sql, columns: kept.columns.clone(), order: Vec::new() }
        };
        let keyword = match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti => return Ok(semi(&left, "l", &right, "r", kind == JoinKind::LeftAnti)),
            JoinKind::RightSemi | JoinKind::RightAnti => {
                return Ok(semi(&right, "r", &left, "l", kind == JoinKind::RightAnti));
            }
            JoinKind::InnerUnique | JoinKind::Inner => "INNER JOIN",
            JoinKind::LeftOuter => "LEFT JOIN",
            JoinKind::RightOuter => "RIGHT JOIN",
            JoinKind::FullOuter => "FULL JOIN",
        };
        let left_sql = match kind {
            // innerunique keeps one (any) left row per key before joining.
            JoinKind::InnerUnique => {
                let mut ranked = left.visible();
                ranked.push(format!("ROW_NUMBER() OVER (PARTITION BY {}) AS \"__rank\"", left_keys.join(", ")));
                select(&left.visible(), &select(&ranked, &left.sql, ""), "\nWHERE \"__rank\" = 1")
            }
            _ => left.sql.clone(),
        };
        let mut columns = left.columns.clone();
        let mut items = qualified("l", &left);
        for column in &right.columns {
            let name = unique_name(&column.name, &columns);
            items.push(aliased(&format!("r.{}", quote_identifier(&column.name)), &name));
            columns.push(Column { name, ..column.clone() });
        }
        let sql = format!(
            "SELECT {}\nFROM (\n{left_sql}\n) AS l\n{keyword} (\n{}\n) AS r ON {condition}",
            items.join(", "),
            right.sql
        );
        Ok(Relation { sql, columns, order: Vec::new() })
    }

    /// A row per element of a string list or a dynamic array (none for an empty or absent one).
    fn mv_expand(&self, relation: Relation, name: Option<&Name>, expr: &Expr, lets: &[Let]) -> Result<Relation> {
        let scope = self.scope(&relation.columns, lets, false);
        let value = scope.compile(expr)?;
        let name = name.map_or_else(|| default_name(expr, &mut 0), |n| n.text.clone());
        let (list, element_ty, elements_are_json) = match value.ty() {
            Type::StringList => (scope.materialize(value).0, Type::String, false),
            Type::Dynamic(_) => {
                let json = scope.materialize(value).0;
                let list = match self.dialect {
                    Dialect::DataFusion => format!("json_array_elements({json})"),
                    // `try`: text that is no JSON array expands to nothing, as on DataFusion.
                    Dialect::Trino => format!("try(CAST(json_parse({json}) AS ARRAY<JSON>))"),
                };
                (list, Type::Dynamic(Json::Any), true)
            }
            other => {
                return Err(KqlError::TypeMismatch {
                    position: expr.position,
                    message: format!("mv-expand expands a dynamic array or a string list, not {}", other.kql_name()),
                });
            }
        };
        let (element, from) = match self.dialect {
            // DataFusion 55 plans no lateral `CROSS JOIN UNNEST(column)`; `unnest` in the select
            // list expands the row.
            Dialect::DataFusion => (format!("unnest({list})"), String::new()),
            Dialect::Trino => {
                let element = match elements_are_json {
                    true => "json_format(\"__element\")".to_owned(),
                    false => "\"__element\"".to_owned(),
                };
                (element, format!("\nCROSS JOIN UNNEST({list}) AS e(\"__element\")"))
            }
        };
        let mut columns = relation.columns.clone();
        let mut items = relation.visible();
        let item = aliased(&element, &name);
        match columns.iter().position(|c| c.name == name) {
            Some(index) => {
                items[index] = item;
                columns[index].ty = element_ty;
            }
            None => {
                items.push(item);
                columns.push(Column { name, ty: element_ty });
            }
        }
        items.extend(relation.order.iter().map(|key| quote_identifier(&key.column)));
        let sql = format!("SELECT {}\nFROM (\n{}\n) AS {STAGE}{from}", items.join(", "), relation.sql);
        Ok(Relation { sql, columns, order: relation.order })
    }

    /// The last stage: the sort applied, and dynamic values shown as KQL shows them (a string
    /// without its JSON quotes).
    fn finish(&self, relation: Relation) -> String {
        let shown = |c: &&Column| c.ty == Type::Dynamic(Json::Any);
        if relation.order.is_empty() && !relation.columns.iter().any(|c| shown(&c)) {
            return relation.sql;
        }
        let scope = self.scope(&relation.columns, &[], false);
        let items: Vec<String> = relation
            .columns
            .iter()
            .map(|c| {
                let column = quote_identifier(&c.name);
                match shown(&c) {
                    true => aliased(&scope.dynamic_text(Value::Sql { sql: column, ty: c.ty }), &c.name),
                    false => column,
                }
            })
            .collect();
        select(&items, &relation.sql, &relation.order_by())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_wildcards() {
        assert!(matches_pattern("Process*", "ProcessName"));
        assert!(matches_pattern("*Id", "ProcessId"));
        assert!(matches_pattern("P*Name", "ParentProcessName"));
        assert!(matches_pattern("ProcessName", "ProcessName"));
        assert!(!matches_pattern("Process*", "ParentProcessName"));
        assert!(!matches_pattern("ProcessName", "ProcessNames"));
    }
}
