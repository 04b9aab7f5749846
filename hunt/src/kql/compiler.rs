//! Tabular operators, compiled into as few `SELECT`s as SQL allows.
//!
//! A [`Relation`] is a `SELECT` still being written: its source (`FROM`), its output columns as
//! expressions over that source, its conditions, sort and limit. `where`, `project`,
//! `extend`, `project-away`, `project-rename`, `order by` and `take` add to it by substituting
//! column expressions; `summarize`, `distinct`, `count`, `join`, `mv-expand` (on DataFusion)
//! and any operator after a `take` seal it into a subquery of the next. So every stage names
//! its columns, and the SQL stays shallow enough to read (and for parsers' recursion).

use std::cell::Cell;

use super::ast::*;
use super::dialect::quote_identifier;
use super::expr::{Column, Json, Scope, Type, Value};
use super::{Dialect, KqlError};
use crate::schema::Table;

type Result<T> = std::result::Result<T, KqlError>;

pub(super) fn compile(query: &Query, dialect: Dialect) -> Result<String> {
    let compiler = Compiler { dialect, unnests: Cell::new(0) };
    let relation = compiler.pipeline(&query.body, &query.lets)?;
    Ok(compiler.finish(relation))
}

struct Compiler {
    dialect: Dialect,
    /// How many Trino `CROSS JOIN UNNEST`s the query has: each takes a fresh alias.
    unnests: Cell<usize>,
}

/// A `SELECT` being written.
struct Relation {
    /// What follows `FROM`: a table, subqueries and joins, `CROSS JOIN UNNEST`s.
    from: String,
    columns: Vec<Column>,
    /// `WHERE` conditions, over the source's columns.
    conditions: Vec<String>,
    /// The sort, over the source's columns. Through a subquery (which keeps no order in SQL)
    /// its keys ride along as hidden columns.
    order: Vec<OrderKey>,
    limit: Option<u64>,
}

struct OrderKey {
    sql: String,
    descending: bool,
    nulls_first: bool,
}

impl Relation {
    /// A relation reading every column of the query `sql` outputs.
    fn over(sql: &str, columns: Vec<(String, Type)>) -> Relation {
        Relation {
            from: format!("(\n{sql}\n) AS s"),
            columns: columns.into_iter().map(|(name, ty)| Column { value: Value::column(&name, ty), name }).collect(),
            conditions: Vec::new(),
            order: Vec::new(),
            limit: None,
        }
    }

    /// `SELECT items FROM ... WHERE ...`, then `GROUP BY`, `ORDER BY` and `LIMIT` as `rest`
    /// says.
    fn select(&self, items: &[String], rest: &str) -> String {
        let mut sql = format!("SELECT {}\nFROM {}", items.join(", "), self.from);
        if !self.conditions.is_empty() {
            sql += &format!("\nWHERE {}", self.conditions.join("\nAND "));
        }
        sql + rest
    }

    fn order_by(&self) -> String {
        match self.order.is_empty() {
            true => String::new(),
            false => format!("\nORDER BY {}", order_by(&self.order)),
        }
    }

    fn limit(&self) -> String {
        self.limit.map_or(String::new(), |count| format!("\nLIMIT {count}"))
    }
}

fn order_by(keys: &[OrderKey]) -> String {
    let keys = keys.iter().map(|key| {
        let direction = if key.descending { "DESC" } else { "ASC" };
        let nulls = if key.nulls_first { "FIRST" } else { "LAST" };
        format!("{} {direction} NULLS {nulls}", key.sql)
    });
    keys.collect::<Vec<_>>().join(", ")
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

/// The name KQL gives an unnamed aggregation: `count_`, `countif_`, `dcount_Col`, `set_Col`,
/// after the first column its value reads.
fn aggregate_name(expr: &Expr, unnamed: &mut usize) -> String {
    let ExprKind::Call { name, args } = &expr.kind else { return default_name(expr, unnamed) };
    let prefix = match name.as_str() {
        "make_set" => "set",
        "make_list" => "list",
        other => other,
    };
    match args.first().and_then(first_column) {
        Some(column) if name != "countif" => format!("{prefix}_{column}"),
        _ => format!("{prefix}_"),
    }
}

/// The first column `expr` reads, left to right.
fn first_column(expr: &Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::Name(name) => Some(name),
        ExprKind::Member { base, .. } | ExprKind::Index { base, .. } | ExprKind::Negate(base) => first_column(base),
        ExprKind::Call { args, .. } => args.iter().find_map(first_column),
        ExprKind::Binary { left, right, .. } => first_column(left).or_else(|| first_column(right)),
        ExprKind::List { expr, .. } | ExprKind::Between { expr, .. } => first_column(expr),
        _ => None,
    }
}

fn duplicate(assignment: &Assignment, name: String) -> KqlError {
    let position = assignment.name.as_ref().map_or(assignment.expr.position, |n| n.position);
    KqlError::DuplicateColumn { position, name }
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

    /// The relation as a query of its own: every column computed (a path as its JSON text),
    /// and with `hidden_order`, the sort's keys as trailing columns `__order_1`, ... Returns
    /// the SQL and the columns it outputs.
    fn query(&self, relation: &Relation, hidden_order: bool) -> (String, Vec<(String, Type)>) {
        let scope = self.scope(&relation.columns, &[], false);
        let mut items = Vec::new();
        let mut columns = Vec::new();
        for column in &relation.columns {
            let (sql, ty) = scope.materialize(column.value.clone());
            items.push(aliased(&sql, &column.name));
            columns.push((column.name.clone(), ty));
        }
        if hidden_order {
            for (index, key) in relation.order.iter().enumerate() {
                items.push(format!("{} AS {}", key.sql, quote_identifier(&hidden_order_column(index))));
            }
        }
        // A subquery keeps no order: it sorts only to cut the right rows.
        let rest = match relation.limit {
            Some(_) => relation.order_by() + &relation.limit(),
            None => String::new(),
        };
        (relation.select(&items, &rest), columns)
    }

    /// The relation made a subquery, so that what follows applies to its rows as they are.
    fn seal(&self, relation: Relation) -> Relation {
        let (sql, columns) = self.query(&relation, true);
        let order = relation
            .order
            .iter()
            .enumerate()
            .map(|(index, key)| OrderKey { sql: quote_identifier(&hidden_order_column(index)), ..*key })
            .collect();
        Relation { order, ..Relation::over(&sql, columns) }
    }

    /// The relation, sealed first if a limit would otherwise apply after what comes next.
    fn unlimited(&self, relation: Relation) -> Relation {
        match relation.limit {
            Some(_) => self.seal(relation),
            None => relation,
        }
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
            let tabular = lets.iter().filter(|l| matches!(l.value, LetValue::Tabular(_)));
            available.extend(tabular.map(|l| l.name.text.clone()));
            return Err(KqlError::UnknownTable { position: source.position, name: source.text.clone(), available });
        };
        Ok(Relation {
            from: quote_identifier(table.name()),
            columns: table
                .columns()
                .iter()
                .map(|c| Column { name: c.name.to_owned(), value: Value::column(c.name, Type::of_column(table, c)) })
                .collect(),
            conditions: Vec::new(),
            order: Vec::new(),
            limit: None,
        })
    }

    fn operator(&self, relation: Relation, operator: &Operator, lets: &[Let]) -> Result<Relation> {
        match &operator.kind {
            OperatorKind::Where(predicate) => {
                let mut relation = self.unlimited(relation);
                let condition = self.scope(&relation.columns, lets, false).boolean(predicate)?;
                relation.conditions.push(condition);
                Ok(relation)
            }
            OperatorKind::Project(assignments) => {
                let scope = self.scope(&relation.columns, lets, false);
                let mut columns: Vec<Column> = Vec::new();
                let mut unnamed = 0;
                for assignment in assignments {
                    let value = scope.compile(&assignment.expr)?;
                    let name = match &assignment.name {
                        Some(name) => name.text.clone(),
                        None => default_name(&assignment.expr, &mut unnamed),
                    };
                    if columns.iter().any(|c| c.name == name) {
                        return Err(duplicate(assignment, name));
                    }
                    columns.push(Column { name, value });
                }
                Ok(Relation { columns, ..relation })
            }
            OperatorKind::Extend(assignments) => {
                let mut columns = relation.columns;
                let mut unnamed = 0;
                for assignment in assignments {
                    // Each assignment sees the ones before it, as in KQL.
                    let value = self.scope(&columns, lets, false).compile(&assignment.expr)?;
                    let name = match &assignment.name {
                        Some(name) => name.text.clone(),
                        None => default_name(&assignment.expr, &mut unnamed),
                    };
                    // An existing column is replaced where it stands.
                    match columns.iter_mut().find(|c| c.name == name) {
                        Some(column) => column.value = value,
                        None => columns.push(Column { name, value }),
                    }
                }
                Ok(Relation { columns, ..relation })
            }
            OperatorKind::ProjectAway(patterns) => {
                for pattern in patterns.iter().filter(|p| !p.text.contains('*')) {
                    if !relation.columns.iter().any(|c| c.name == pattern.text) {
                        let scope = self.scope(&relation.columns, lets, false);
                        return Err(scope.unknown_column(&pattern.text, pattern.position));
                    }
                }
                let mut relation = relation;
                relation.columns.retain(|c| !patterns.iter().any(|p| matches_pattern(&p.text, &c.name)));
                Ok(relation)
            }
            OperatorKind::ProjectRename(renames) => {
                let mut relation = relation;
                for (new, old) in renames {
                    if relation.columns.iter().any(|c| c.name == new.text) {
                        return Err(KqlError::DuplicateColumn { position: new.position, name: new.text.clone() });
                    }
                    let Some(column) = relation.columns.iter_mut().find(|c| c.name == old.text) else {
                        let scope = self.scope(&relation.columns, lets, false);
                        return Err(scope.unknown_column(&old.text, old.position));
                    };
                    column.name = new.text.clone();
                }
                Ok(relation)
            }
            OperatorKind::Summarize { aggregates, by } => {
                self.summarize(self.unlimited(relation), aggregates, by, lets)
            }
            OperatorKind::Sort(keys) => self.sort(self.unlimited(relation), keys, lets),
            OperatorKind::Top { count, key } => {
                let relation = self.sort(self.unlimited(relation), std::slice::from_ref(key), lets)?;
                Ok(Relation { limit: Some(*count), ..relation })
            }
            OperatorKind::Take(count) => {
                let limit = relation.limit.map_or(*count, |limit| limit.min(*count));
                Ok(Relation { limit: Some(limit), ..relation })
            }
            OperatorKind::Distinct(names) => {
                let relation = self.unlimited(relation);
                let columns = match names.is_empty() {
                    true => relation.columns.clone(),
                    false => names
                        .iter()
                        .map(|name| self.existing(&relation.columns, name, lets).cloned())
                        .collect::<Result<Vec<_>>>()?,
                };
                let (sql, columns) = self.query(&Relation { columns, order: Vec::new(), ..relation }, false);
                let distinct = sql.replacen("SELECT ", "SELECT DISTINCT ", 1);
                Ok(Relation::over(&distinct, columns))
            }
            OperatorKind::Count => {
                let relation = self.unlimited(relation);
                let sql = relation.select(&["count(*) AS \"Count\"".to_owned()], "");
                Ok(Relation::over(&sql, vec![("Count".into(), Type::Long)]))
            }
            OperatorKind::Join { kind, right, on } => self.join(relation, *kind, right, on, lets),
            OperatorKind::MvExpand { name, expr } => {
                self.mv_expand(self.unlimited(relation), name.as_ref(), expr, lets)
            }
        }
    }

    /// The column `name` names in `columns` (Defender's aliases included), or an error.
    fn existing<'c>(&self, columns: &'c [Column], name: &Name, lets: &'c [Let]) -> Result<&'c Column> {
        let scope = self.scope(columns, lets, false);
        scope.column(&name.text).ok_or_else(|| scope.unknown_column(&name.text, name.position))
    }

    fn sort(&self, relation: Relation, keys: &[SortKey], lets: &[Let]) -> Result<Relation> {
        let scope = self.scope(&relation.columns, lets, false);
        let order = keys
            .iter()
            .map(|key| {
                let value = scope.compile(&key.expr)?;
                let sql = match value.ty() {
                    // A dynamic key sorts by its text: JSON has no order of its own.
                    Type::Dynamic(_) => scope.dynamic_text(value),
                    _ => scope.materialize(value).0,
                };
                Ok(OrderKey { sql, descending: key.descending, nulls_first: key.nulls_first })
            })
            .collect::<Result<_>>()?;
        Ok(Relation { order, ..relation })
    }

    /// Each `by` key's SQL and column.
    fn keys(&self, relation: &Relation, by: &[Assignment], lets: &[Let]) -> Result<Vec<(String, Column)>> {
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
                return Err(duplicate(key, name));
            }
            keys.push((sql.clone(), Column { name, value: Value::Sql { sql, ty } }));
        }
        Ok(keys)
    }

    fn summarize(
        &self,
        relation: Relation,
        aggregates: &[Assignment],
        by: &[Assignment],
        lets: &[Let],
    ) -> Result<Relation> {
        let keys = self.keys(&relation, by, lets)?;
        let is_extreme = |a: &&Assignment| matches!(&a.expr.kind, ExprKind::Call { name, .. } if name == "arg_max" || name == "arg_min");
        if let Some(extreme) = aggregates.iter().find(is_extreme) {
            if aggregates.len() > 1 {
                return Err(KqlError::Unsupported {
                    position: extreme.expr.position,
                    construct: "arg_max or arg_min with other aggregations".into(),
                    hint: "summarize arg_max(...) by ... alone, then join or summarize again".into(),
                });
            }
            return self.arg_extreme(relation, keys, extreme, lets);
        }
        let scope = self.scope(&relation.columns, lets, true);
        let mut columns: Vec<Column> = keys.iter().map(|(_, c)| c.clone()).collect();
        let mut unnamed = 0;
        for aggregate in aggregates {
            // A default name gives way (`sum_X1`); a name given twice is a mistake.
            let name = match &aggregate.name {
                Some(name) if columns.iter().any(|c| c.name == name.text) => {
                    return Err(duplicate(aggregate, name.text.clone()));
                }
                Some(name) => name.text.clone(),
                None => unique_name(&aggregate_name(&aggregate.expr, &mut unnamed), &columns),
            };
            columns.push(Column { name, value: scope.compile(&aggregate.expr)? });
        }
        let group_by = match keys.is_empty() {
            true => String::new(),
            false => format!("\nGROUP BY {}", keys.iter().map(|(sql, _)| sql.as_str()).collect::<Vec<_>>().join(", ")),
        };
        let (sql, columns) = self.query(&Relation { columns, order: Vec::new(), ..relation }, false);
        Ok(Relation::over(&(sql + &group_by), columns))
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
        let Some((measured, returned)) = args.split_first().filter(|(_, returned)| !returned.is_empty()) else {
            return Err(KqlError::WrongArguments {
                position: extreme.expr.position,
                function: function.clone(),
                expected: "the expression to maximize, then `*` or the columns to return",
            });
        };
        let scope = self.scope(&relation.columns, lets, false);
        let (measured_sql, measured_ty) = scope.materialize(scope.compile(measured)?);
        let measured_name = match (&extreme.name, &measured.kind) {
            (Some(name), _) => name.text.clone(),
            (None, ExprKind::Name(name)) => scope.column(name).map_or(name.clone(), |c| c.name.clone()),
            // `max_` or `min_` and the column read, as KQL names aggregations.
            (None, _) => format!("{}_{}", &function[4..], first_column(measured).unwrap_or_default()),
        };
        let returned: Vec<&Column> = match returned {
            [Expr { kind: ExprKind::Star, .. }] => relation.columns.iter().collect(),
            returned => returned
                .iter()
                .map(|expr| match &expr.kind {
                    ExprKind::Name(name) => {
                        self.existing(&relation.columns, &Name { text: name.clone(), position: expr.position }, lets)
                    }
                    _ => Err(KqlError::Unsupported {
                        position: expr.position,
                        construct: format!("an expression among {function}'s returned columns"),
                        hint: "name columns (or `*`), and compute values with extend before summarize".into(),
                    }),
                })
                .collect::<Result<_>>()?,
        };
        // The ranked rows: the input's columns, the keys, the measure and each row's rank.
        let mut ranked: Vec<(String, Type)> = Vec::new();
        let mut items = Vec::new();
        for column in &relation.columns {
            let (sql, ty) = scope.materialize(column.value.clone());
            items.push(aliased(&sql, &column.name));
            ranked.push((column.name.clone(), ty));
        }
        for (index, (sql, _)) in keys.iter().enumerate() {
            items.push(format!("{sql} AS \"__key_{index}\""));
        }
        items.push(format!("{measured_sql} AS \"__measured\""));
        let partition = match keys.is_empty() {
            true => String::new(),
            false => {
                format!("PARTITION BY {} ", keys.iter().map(|(sql, _)| sql.as_str()).collect::<Vec<_>>().join(", "))
            }
        };
        let direction = if function == "arg_max" { "DESC" } else { "ASC" };
        items.push(format!(
            "ROW_NUMBER() OVER ({partition}ORDER BY {measured_sql} {direction} NULLS LAST) AS \"__rank\""
        ));
        // The output: keys, the measure, then the returned columns not already there.
        let mut columns: Vec<Column> = keys
            .iter()
            .enumerate()
            .map(|(index, (_, key))| Column {
                name: key.name.clone(),
                value: Value::column(&format!("__key_{index}"), key.value.ty()),
            })
            .collect();
        let measured_name = unique_name(&measured_name, &columns);
        columns.push(Column { name: measured_name, value: Value::column("__measured", measured_ty) });
        for column in returned {
            if !columns.iter().any(|c| c.name == column.name) {
                let ty =
                    ranked.iter().find(|(name, _)| *name == column.name).map(|(_, ty)| *ty).expect("an input column");
                columns.push(Column { name: column.name.clone(), value: Value::column(&column.name, ty) });
            }
        }
        let sql = relation.select(&items, "");
        Ok(Relation { columns, conditions: vec!["(\"__rank\" = 1)".into()], ..Relation::over(&sql, vec![]) })
    }

    fn join(&self, left: Relation, kind: JoinKind, right: &Pipeline, on: &[JoinKey], lets: &[Let]) -> Result<Relation> {
        let right = self.pipeline(right, lets)?;
        let mut conditions = Vec::new();
        let mut left_keys = Vec::new();
        for key in on {
            let left_column = self.existing(&left.columns, &key.left, lets)?.name.clone();
            let right_column = self.existing(&right.columns, &key.right, lets)?.name.clone();
            left_keys.push(quote_identifier(&left_column));
            conditions.push(format!("l.{} = r.{}", quote_identifier(&left_column), quote_identifier(&right_column)));
        }
        let condition = conditions.join(" AND ");
        let (left_sql, left_columns) = self.query(&left, false);
        let (right_sql, right_columns) = self.query(&right, false);
        let qualified = |alias: &str, columns: &[(String, Type)]| -> Vec<Column> {
            let qualify = |(name, ty): &(String, Type)| Column {
                name: name.clone(),
                value: Value::Sql { sql: format!("{alias}.{}", quote_identifier(name)), ty: *ty },
            };
            columns.iter().map(qualify).collect()
        };
        let semi = |(kept, kept_alias, kept_columns): (&str, &str, &[(String, Type)]),
                    (other, other_alias): (&str, &str),
                    negated: bool| {
            let not = if negated { "NOT " } else { "" };
            Relation {
                from: format!("(\n{kept}\n) AS {kept_alias}"),
                columns: qualified(kept_alias, kept_columns),
                conditions: vec![format!(
                    "{not}EXISTS (SELECT 1 FROM (\n{other}\n) AS {other_alias} WHERE {condition})"
                )],
                order: Vec::new(),
                limit: None,
            }
        };
        let keyword = match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti => {
                let kept = (left_sql.as_str(), "l", left_columns.as_slice());
                return Ok(semi(kept, (&right_sql, "r"), kind == JoinKind::LeftAnti));
            }
            JoinKind::RightSemi | JoinKind::RightAnti => {
                let kept = (right_sql.as_str(), "r", right_columns.as_slice());
                return Ok(semi(kept, (&left_sql, "l"), kind == JoinKind::RightAnti));
            }
            JoinKind::InnerUnique | JoinKind::Inner => "INNER JOIN",
            JoinKind::LeftOuter => "LEFT JOIN",
            JoinKind::RightOuter => "RIGHT JOIN",
            JoinKind::FullOuter => "FULL JOIN",
        };
        let left_sql = match kind {
            // innerunique keeps one (any) left row per key before joining.
            JoinKind::InnerUnique => {
                let mut ranked: Vec<String> = left_columns.iter().map(|(name, _)| quote_identifier(name)).collect();
                let names = ranked.join(", ");
                ranked.push(format!("ROW_NUMBER() OVER (PARTITION BY {}) AS \"__rank\"", left_keys.join(", ")));
                format!(
                    "SELECT {names}\nFROM (\nSELECT {}\nFROM (\n{left_sql}\n) AS s\n) AS s\nWHERE \"__rank\" = 1",
                    ranked.join(", ")
                )
            }
            _ => left_sql,
        };
        let mut columns = qualified("l", &left_columns);
        for column in qualified("r", &right_columns) {
            let name = unique_name(&column.name, &columns);
            columns.push(Column { name, ..column });
        }
        Ok(Relation {
            from: format!("(\n{left_sql}\n) AS l\n{keyword} (\n{right_sql}\n) AS r ON {condition}"),
            columns,
            conditions: Vec::new(),
            order: Vec::new(),
            limit: None,
        })
    }

    /// A row per element of a string list or a dynamic array (none for an empty or absent one).
    fn mv_expand(&self, relation: Relation, name: Option<&Name>, expr: &Expr, lets: &[Let]) -> Result<Relation> {
        let scope = self.scope(&relation.columns, lets, false);
        let value = scope.compile(expr)?;
        let name = name.map_or_else(|| default_name(expr, &mut 0), |n| n.text.clone());
        let (list, element_ty) = match value.ty() {
            Type::StringList => (scope.materialize(value).0, Type::String),
            Type::Dynamic(_) => {
                let json = scope.materialize(value).0;
                let list = match self.dialect {
                    Dialect::DataFusion => format!("json_array_elements({json})"),
                    // `try`: text that is no JSON array expands to nothing, as on DataFusion.
                    Dialect::Trino => format!("try(CAST(json_parse({json}) AS ARRAY<JSON>))"),
                };
                (list, Type::Dynamic(Json::Any))
            }
            other => {
                return Err(KqlError::TypeMismatch {
                    position: expr.position,
                    message: format!("mv-expand expands a dynamic array or a string list, not {}", other.kql_name()),
                });
            }
        };
        let mut relation = relation;
        let element = match self.dialect {
            // DataFusion 55 plans no lateral `CROSS JOIN UNNEST(column)`; `unnest` in the select
            // list expands the row, and what follows reads it from a subquery.
            Dialect::DataFusion => format!("unnest({list})"),
            Dialect::Trino => {
                let unnest = self.unnests.get() + 1;
                self.unnests.set(unnest);
                let (alias, column) = (format!("e{unnest}"), format!("\"__element{unnest}\""));
                relation.from += &format!("\nCROSS JOIN UNNEST({list}) AS {alias}({column})");
                match element_ty {
                    Type::String => column,
                    _ => format!("json_format({column})"),
                }
            }
        };
        let value = Value::Sql { sql: element, ty: element_ty };
        match relation.columns.iter_mut().find(|c| c.name == name) {
            Some(column) => column.value = value,
            None => relation.columns.push(Column { name, value }),
        }
        Ok(match self.dialect {
            Dialect::DataFusion => self.seal(relation),
            Dialect::Trino => relation,
        })
    }

    /// The final `SELECT`: dynamic values shown as KQL shows them (a string without its JSON
    /// quotes), the sort and limit applied.
    fn finish(&self, relation: Relation) -> String {
        let scope = self.scope(&relation.columns, &[], false);
        let items: Vec<String> = relation
            .columns
            .iter()
            .map(|column| {
                let sql = match column.value.ty() {
                    Type::Dynamic(Json::Any) => scope.dynamic_text(column.value.clone()),
                    _ => scope.materialize(column.value.clone()).0,
                };
                aliased(&sql, &column.name)
            })
            .collect();
        relation.select(&items, &(relation.order_by() + &relation.limit()))
    }
}

fn hidden_order_column(index: usize) -> String {
    format!("__order_{}", index + 1)
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
