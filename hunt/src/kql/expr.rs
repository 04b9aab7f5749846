//! Scalar expressions: their KQL types, and SQL for them.
//!
//! A dynamic value is JSON text in SQL. A path into one (`RawEventData.ObjectRef.resource`) is
//! kept apart as a [`Value::Path`] until its use decides what it becomes:
//! `json_extract_scalar(doc, '$.objectRef.resource')` where a scalar is wanted (comparisons,
//! string operators, `tostring`), `json_extract(doc, ...)` where a dynamic value is (a column
//! of its own, `mv-expand`, a further path).

use super::ast::{BinaryOp, Expr, ExprKind, Let, LetValue, ListOp, TextOp, TextOpKind};
use super::dialect::{quote_identifier, quote_string};
use super::{AGGREGATE_FUNCTIONS, DEFENDER_COLUMN_ALIASES, DEFENDER_RAW_EVENT_KEYS, Dialect, KqlError, Position};
use super::{SCALAR_FUNCTIONS, columns_of};
use crate::schema::{self, ColumnType, Table};

/// A KQL type, as far as the SQL written for a value depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    Bool,
    Long,
    Real,
    String,
    DateTime,
    Timespan,
    /// A list of strings (an Arrow list; `dynamic` in KQL): what `mv-expand` expands to strings.
    StringList,
    Dynamic(Json),
}

/// What a dynamic value is known to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Json {
    /// A Kubernetes audit event (CloudAuditEvents' `RawEventData`): its first path step takes
    /// Defender's capitalized keys too.
    AuditEvent,
    /// A table's JSON column: an object, shown as it is.
    Object,
    /// Any JSON value: a string is shown without its quotes.
    Any,
}

impl Type {
    pub(super) fn of_column(table: Table, column: &schema::Column) -> Type {
        match column.kind {
            ColumnType::Timestamp => Type::DateTime,
            ColumnType::String => Type::String,
            ColumnType::Int64 | ColumnType::Int32 => Type::Long,
            ColumnType::Boolean => Type::Bool,
            ColumnType::StringList => Type::StringList,
            ColumnType::Json if table == Table::CloudAuditEvents && column.name == "RawEventData" => {
                Type::Dynamic(Json::AuditEvent)
            }
            ColumnType::Json => Type::Dynamic(Json::Object),
        }
    }

    pub(super) fn kql_name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Long => "long",
            Type::Real => "real",
            Type::String => "string",
            Type::DateTime => "datetime",
            Type::Timespan => "timespan",
            Type::StringList => "a string list",
            Type::Dynamic(_) => "dynamic",
        }
    }
}

/// A column of a pipeline stage, and how to compute it from the stage's source.
#[derive(Clone, Debug)]
pub(super) struct Column {
    pub name: String,
    pub value: Value,
}

/// A compiled expression.
#[derive(Clone, Debug)]
pub(super) enum Value {
    Sql {
        sql: String,
        ty: Type,
    },
    /// Steps into the JSON text `document`, not yet written as SQL.
    Path {
        document: String,
        steps: Vec<Step>,
    },
}

#[derive(Clone, Debug)]
pub(super) enum Step {
    Key(String),
    Index(u64),
}

impl Value {
    fn sql(sql: impl Into<String>, ty: Type) -> Value {
        Value::Sql { sql: sql.into(), ty }
    }

    pub(super) fn column(name: &str, ty: Type) -> Value {
        Value::sql(quote_identifier(name), ty)
    }

    pub(super) fn ty(&self) -> Type {
        match self {
            Value::Sql { ty, .. } => *ty,
            Value::Path { .. } => Type::Dynamic(Json::Any),
        }
    }
}

/// Trino's JSONPath for `steps`: `.key` for plain keys, `["key"]` for the rest (Kubernetes'
/// annotation keys hold dots and slashes).
fn json_path(steps: &[Step]) -> String {
    let mut path = String::from("$");
    for step in steps {
        match step {
            Step::Key(key) if !key.is_empty() && key.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Key(key) => path.push_str(&format!("[\"{}\"]", key.replace('\\', "\\\\").replace('"', "\\\""))),
            Step::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    quote_string(&path)
}

/// A regular expression matching any of `terms` as a whole term, as KQL's `has` does: not
/// inside a longer run of letters and digits. It is written for both engines' regex syntax
/// (Rust's and Java's), escaping only what is special to both.
fn term_regex(terms: &[String], case_sensitive: bool) -> String {
    let escaped: Vec<String> = terms
        .iter()
        .map(|term| {
            term.chars().fold(String::new(), |mut escaped, c| {
                if "\\.+*?()|[]{}^$".contains(c) {
                    escaped.push('\\');
                }
                escaped.push(c);
                escaped
            })
        })
        .collect();
    let flags = if case_sensitive { "" } else { "(?i)" };
    format!("{flags}(^|[^0-9A-Za-z])({})($|[^0-9A-Za-z])", escaped.join("|"))
}

/// What names mean while compiling an expression.
#[derive(Clone, Copy)]
pub(super) struct Scope<'a> {
    pub dialect: Dialect,
    pub columns: &'a [Column],
    /// The `let` statements before the expression.
    pub lets: &'a [Let],
    /// Whether aggregation functions may appear (in `summarize`).
    pub aggregates: bool,
}

type Result<T> = std::result::Result<T, KqlError>;

fn type_mismatch(position: Position, message: String) -> KqlError {
    KqlError::TypeMismatch { position, message }
}

impl<'a> Scope<'a> {
    /// The column a name means here: the column itself, else the Riposte column a Defender
    /// column name stands for.
    pub(super) fn column(&self, name: &str) -> Option<&'a Column> {
        let named = |name: &str| self.columns.iter().find(|c| c.name == name);
        named(name).or_else(|| {
            let (_, riposte) = DEFENDER_COLUMN_ALIASES.iter().find(|(defender, _)| *defender == name)?;
            named(riposte)
        })
    }

    pub(super) fn unknown_column(&self, name: &str, position: Position) -> KqlError {
        KqlError::UnknownColumn { position, name: name.to_owned(), available: columns_of(self.columns) }
    }

    /// The scalar `let` named `name`, and the scope its value is read in (the lets before it).
    fn scalar_let(&self, name: &str) -> Option<(&'a Expr, Scope<'a>)> {
        let index = self.lets.iter().rposition(|l| l.name.text == name)?;
        match &self.lets[index].value {
            LetValue::Scalar(expr) => {
                Some((expr, Scope { columns: &[], lets: &self.lets[..index], aggregates: false, ..*self }))
            }
            LetValue::Tabular(_) => None,
        }
    }

    /// `expr` with names of scalar `let`s replaced by their values, as far as it is a name.
    fn resolve_let<'e>(&self, expr: &'e Expr) -> (&'e Expr, Scope<'a>)
    where
        'a: 'e,
    {
        match &expr.kind {
            ExprKind::Name(name) if self.column(name).is_none() => match self.scalar_let(name) {
                Some((value, scope)) => scope.resolve_let(value),
                None => (expr, *self),
            },
            _ => (expr, *self),
        }
    }

    pub(super) fn compile(&self, expr: &Expr) -> Result<Value> {
        let position = expr.position;
        Ok(match &expr.kind {
            ExprKind::Name(name) => match self.column(name) {
                Some(column) => column.value.clone(),
                None => match self.scalar_let(name) {
                    Some((value, scope)) => scope.compile(value)?,
                    None if self.lets.iter().any(|l| l.name.text == *name) => {
                        return Err(KqlError::Unsupported {
                            position,
                            construct: format!("the tabular let `{name}` as a value"),
                            hint: "a query's rows are matched with join kind=leftsemi (or leftanti)".into(),
                        });
                    }
                    None => return Err(self.unknown_column(name, position)),
                },
            },
            ExprKind::String(text) => Value::sql(quote_string(text), Type::String),
            ExprKind::Long(value) => Value::sql(value.to_string(), Type::Long),
            // An exponent makes the literal a DOUBLE in Trino too (it reads `2.5` as DECIMAL).
            ExprKind::Real(value) => Value::sql(format!("{value:e}"), Type::Real),
            ExprKind::Bool(value) => Value::sql(if *value { "TRUE" } else { "FALSE" }, Type::Bool),
            ExprKind::Timespan(micros) => Value::sql(self.dialect.interval(*micros), Type::Timespan),
            ExprKind::DateTime(micros) => Value::sql(self.dialect.timestamp(*micros), Type::DateTime),
            ExprKind::Dynamic(json) => Value::sql(quote_string(&json.to_string()), Type::Dynamic(Json::Any)),
            ExprKind::Star => {
                return Err(KqlError::Unsupported {
                    position,
                    construct: "`*` here".into(),
                    hint: "`*` stands for every column only in arg_max(expr, *) and arg_min(expr, *)".into(),
                });
            }
            ExprKind::Member { base, key } => self.step(self.compile(base)?, Step::Key(key.clone()), position)?,
            ExprKind::Index { base, index } => {
                let base = self.compile(base)?;
                let Ok(index) = u64::try_from(*index) else {
                    return Err(KqlError::Unsupported {
                        position,
                        construct: "a negative index".into(),
                        hint: "JSON paths count from the start: use [0], [1], ...".into(),
                    });
                };
                match base {
                    Value::Sql { sql, ty: Type::StringList } => {
                        Value::sql(self.dialect.list_element(&sql, &(index + 1).to_string()), Type::String)
                    }
                    base => self.step(base, Step::Index(index), position)?,
                }
            }
            ExprKind::Call { name, args } => self.call(name, args, position)?,
            ExprKind::Negate(operand) => {
                let operand = self.compile(operand)?;
                let (sql, ty) = self.numeric(operand, position)?;
                Value::sql(format!("(- {sql})"), ty)
            }
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right, position)?,
            ExprKind::List { op, expr, items } => Value::sql(self.list(*op, expr, items, position)?, Type::Bool),
            ExprKind::Between { expr, low, high, negated } => {
                let low = self.compile(low)?;
                let high = self.compile(high)?;
                let target = low.ty();
                let value = self.as_type(self.compile(expr)?, target, position)?;
                let (low, high) = (self.as_type(low, target, position)?, self.as_type(high, target, position)?);
                let not = if *negated { "NOT " } else { "" };
                Value::sql(format!("({value} {not}BETWEEN {low} AND {high})"), Type::Bool)
            }
        })
    }

    /// A path step into `base`, which must be dynamic.
    fn step(&self, base: Value, step: Step, position: Position) -> Result<Value> {
        match base {
            Value::Path { document, mut steps } => {
                steps.push(step);
                Ok(Value::Path { document, steps })
            }
            Value::Sql { sql, ty: Type::Dynamic(json) } => {
                let step = match (json, step) {
                    (Json::AuditEvent, Step::Key(key)) => {
                        let kubernetes = DEFENDER_RAW_EVENT_KEYS.iter().find(|(defender, _)| *defender == key);
                        Step::Key(kubernetes.map_or(key, |(_, kubernetes)| (*kubernetes).to_owned()))
                    }
                    (_, step) => step,
                };
                Ok(Value::Path { document: sql, steps: vec![step] })
            }
            Value::Sql { ty, .. } => Err(type_mismatch(
                position,
                format!("a property or index applies to a dynamic value, not to {}", ty.kql_name()),
            )),
        }
    }

    /// `value` as SQL for a column of its own: a path becomes its JSON text.
    pub(super) fn materialize(&self, value: Value) -> (String, Type) {
        let ty = value.ty();
        (self.sql(value), ty)
    }

    /// A value's SQL: a path's is its JSON text.
    fn sql(&self, value: Value) -> String {
        match value {
            Value::Path { document, steps } => self.dialect.json_extract(&document, &json_path(&steps)),
            Value::Sql { sql, .. } => sql,
        }
    }

    /// A dynamic value's scalar as text (NULL for objects, arrays and null).
    fn scalar_text(&self, value: Value) -> String {
        match value {
            Value::Path { document, steps } => format!("json_extract_scalar({document}, {})", json_path(&steps)),
            Value::Sql { sql, .. } => format!("json_extract_scalar({sql}, '$')"),
        }
    }

    /// `tostring(value)`: a string as it is, a dynamic string without quotes, other dynamic
    /// values as JSON, numbers and instants as the engine writes them.
    fn string(&self, value: Value, position: Position) -> Result<String> {
        Ok(match value {
            Value::Sql { sql, ty: Type::String | Type::Dynamic(Json::Object | Json::AuditEvent) } => sql,
            dynamic @ (Value::Path { .. } | Value::Sql { ty: Type::Dynamic(Json::Any), .. }) => {
                self.dynamic_text(dynamic)
            }
            Value::Sql { ty: Type::StringList, .. } => {
                return Err(type_mismatch(
                    position,
                    "a string list has no single string; use strcat_array(list, delimiter)".into(),
                ));
            }
            Value::Sql { sql, ty: Type::Bool | Type::Long | Type::Real | Type::DateTime | Type::Timespan } => {
                format!("CAST({sql} AS VARCHAR)")
            }
        })
    }

    /// A dynamic value as KQL shows it: a string without its JSON quotes, anything else as JSON.
    pub(super) fn dynamic_text(&self, value: Value) -> String {
        let json = self.sql(value.clone());
        format!("COALESCE({}, {json})", self.scalar_text(value))
    }

    /// What the string operators search: a string list's elements joined by spaces, so that
    /// `has` finds an element as it finds a term.
    fn searched_text(&self, value: Value, position: Position) -> Result<String> {
        match value {
            Value::Sql { sql, ty: Type::StringList } => Ok(self.dialect.join_strings(&sql, "' '")),
            value => self.string(value, position),
        }
    }

    /// `value` converted to `target`, where it is dynamic (a scalar read from JSON); other
    /// values are left to the engine's own coercions.
    fn as_type(&self, value: Value, target: Type, position: Position) -> Result<String> {
        if !matches!(value.ty(), Type::Dynamic(_)) {
            return Ok(self.sql(value));
        }
        let text = self.scalar_text(value);
        Ok(match target {
            Type::String | Type::Dynamic(_) => text,
            Type::Long => format!("TRY_CAST({text} AS BIGINT)"),
            Type::Real => format!("TRY_CAST({text} AS DOUBLE)"),
            Type::Bool => format!("TRY_CAST({text} AS BOOLEAN)"),
            Type::DateTime => self.dialect.parse_timestamp(&text),
            Type::Timespan | Type::StringList => {
                return Err(type_mismatch(
                    position,
                    format!("a dynamic value does not compare with {}", target.kql_name()),
                ));
            }
        })
    }

    /// Two operands compared or combined: a dynamic one takes the other's type.
    fn coerce_pair(&self, left: Value, right: Value, position: Position) -> Result<(String, String, Type)> {
        let ty = match (left.ty(), right.ty()) {
            (Type::Dynamic(_), Type::Dynamic(_)) => Type::String,
            (Type::Dynamic(_), ty) | (ty, _) => ty,
        };
        Ok((self.as_type(left, ty, position)?, self.as_type(right, ty, position)?, ty))
    }

    pub(super) fn boolean(&self, expr: &Expr) -> Result<String> {
        let value = self.compile(expr)?;
        match value.ty() {
            Type::Bool => Ok(self.sql(value)),
            Type::Dynamic(_) => self.as_type(value, Type::Bool, expr.position),
            other => Err(type_mismatch(expr.position, format!("expected a bool, found {}", other.kql_name()))),
        }
    }

    fn numeric(&self, value: Value, position: Position) -> Result<(String, Type)> {
        match value.ty() {
            ty @ (Type::Long | Type::Real | Type::Timespan) => Ok((self.sql(value), ty)),
            Type::Dynamic(_) => Ok((self.as_type(value, Type::Real, position)?, Type::Real)),
            other => Err(type_mismatch(position, format!("expected a number, found {}", other.kql_name()))),
        }
    }

    fn binary(&self, op: BinaryOp, left: &Expr, right: &Expr, position: Position) -> Result<Value> {
        let comparison = match op {
            BinaryOp::Or | BinaryOp::And => {
                let keyword = if op == BinaryOp::Or { "OR" } else { "AND" };
                return Ok(Value::sql(
                    format!("({} {keyword} {})", self.boolean(left)?, self.boolean(right)?),
                    Type::Bool,
                ));
            }
            BinaryOp::Add | BinaryOp::Subtract | BinaryOp::Multiply | BinaryOp::Divide | BinaryOp::Modulo => {
                return self.arithmetic(op, self.compile(left)?, self.compile(right)?, position);
            }
            BinaryOp::Text(text_op) => return Ok(Value::sql(self.text(text_op, left, right, position)?, Type::Bool)),
            BinaryOp::MatchesRegex => {
                let text = self.searched_text(self.compile(left)?, position)?;
                let pattern = self.string(self.compile(right)?, position)?;
                return Ok(Value::sql(format!("regexp_like({text}, {pattern})"), Type::Bool));
            }
            BinaryOp::EqualIgnoringCase | BinaryOp::NotEqualIgnoringCase => {
                let left = self.string(self.compile(left)?, position)?;
                let right = self.string(self.compile(right)?, position)?;
                let equal = format!("(lower({left}) = lower({right}))");
                return Ok(Value::sql(
                    if op == BinaryOp::EqualIgnoringCase { equal } else { null_as_empty_negation(&equal) },
                    Type::Bool,
                ));
            }
            BinaryOp::Equal => "=",
            BinaryOp::NotEqual => "<>",
            BinaryOp::Less => "<",
            BinaryOp::LessOrEqual => "<=",
            BinaryOp::Greater => ">",
            BinaryOp::GreaterOrEqual => ">=",
        };
        // KQL has no null string: an absent string is the empty one, so `x == ""` holds for
        // NULL and `x != "a"` holds for NULL.
        let empty = |e: &Expr| matches!(&self.resolve_let(e).0.kind, ExprKind::String(text) if text.is_empty());
        if matches!(op, BinaryOp::Equal | BinaryOp::NotEqual) && (empty(left) || empty(right)) {
            let other = if empty(left) { right } else { left };
            return Ok(Value::sql(self.emptiness(other, op == BinaryOp::Equal)?, Type::Bool));
        }
        let (left, right, ty) = self.coerce_pair(self.compile(left)?, self.compile(right)?, position)?;
        let sql = match (op, ty) {
            (BinaryOp::NotEqual, Type::String) => null_as_empty_negation(&format!("({left} = {right})")),
            _ => format!("({left} {comparison} {right})"),
        };
        Ok(Value::sql(sql, Type::Bool))
    }

    fn arithmetic(&self, op: BinaryOp, left: Value, right: Value, position: Position) -> Result<Value> {
        let symbol = match op {
            BinaryOp::Add => "+",
            BinaryOp::Subtract => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            _ => "%",
        };
        let ty = match (left.ty(), op, right.ty()) {
            (Type::DateTime, BinaryOp::Add | BinaryOp::Subtract, Type::Timespan)
            | (Type::Timespan, BinaryOp::Add, Type::DateTime) => Type::DateTime,
            (Type::DateTime, BinaryOp::Subtract, Type::DateTime) => Type::Timespan,
            (Type::String, ..) | (.., Type::String) => {
                return Err(type_mismatch(position, "strings do not add up: use strcat(a, b)".into()));
            }
            _ => {
                let (left, left_ty) = self.numeric(left, position)?;
                let (right, right_ty) = self.numeric(right, position)?;
                let ty = match (left_ty, right_ty) {
                    (Type::Long, Type::Long) => Type::Long,
                    (Type::Timespan, _) | (_, Type::Timespan) => Type::Timespan,
                    _ => Type::Real,
                };
                return Ok(Value::sql(format!("({left} {symbol} {right})"), ty));
            }
        };
        Ok(Value::sql(format!("({} {symbol} {})", self.sql(left), self.sql(right)), ty))
    }

    /// `isempty(expr)` (or `isnotempty` when not `empty`).
    fn emptiness(&self, expr: &Expr, empty: bool) -> Result<String> {
        let value = self.compile(expr)?;
        let test = match value.ty() {
            Type::String => format!("({0} IS NULL OR {0} = '')", self.sql(value)),
            Type::Dynamic(_) => format!("(COALESCE({}, 'null') IN ('null', '\"\"'))", self.sql(value)),
            _ => format!("({} IS NULL)", self.sql(value)),
        };
        Ok(if empty { test } else { format!("(NOT {test})") })
    }

    /// `isnull(expr)` (or `isnotnull` when not `null`): a dynamic null is JSON's `null` too.
    fn nullness(&self, expr: &Expr, null: bool) -> Result<String> {
        let value = self.compile(expr)?;
        let test = match value.ty() {
            Type::Dynamic(_) => format!("(COALESCE({}, 'null') = 'null')", self.sql(value)),
            _ => format!("({} IS NULL)", self.sql(value)),
        };
        Ok(if null { test } else { format!("(NOT {test})") })
    }

    /// A string literal, directly or through a scalar `let`.
    fn string_literal(&self, expr: &Expr) -> Option<String> {
        match &self.resolve_let(expr).0.kind {
            ExprKind::String(text) => Some(text.clone()),
            _ => None,
        }
    }

    fn text(&self, op: TextOp, left: &Expr, right: &Expr, position: Position) -> Result<String> {
        let haystack = self.searched_text(self.compile(left)?, position)?;
        let positive = if op.kind == TextOpKind::Has {
            let Some(term) = self.string_literal(right) else {
                return Err(KqlError::Unsupported {
                    position: right.position,
                    construct: "a `has` term that is not a string literal".into(),
                    hint: "write the term as a literal (or a `let` of one); use `contains` to search for a value"
                        .into(),
                });
            };
            format!("regexp_like({haystack}, {})", quote_string(&term_regex(&[term], op.case_sensitive)))
        } else {
            let needle = self.string(self.compile(right)?, right.position)?;
            let (haystack, needle) = match op.case_sensitive {
                true => (haystack, needle),
                false => (format!("lower({haystack})"), format!("lower({needle})")),
            };
            match op.kind {
                TextOpKind::Contains => format!("(strpos({haystack}, {needle}) > 0)"),
                TextOpKind::StartsWith => format!("starts_with({haystack}, {needle})"),
                // Trino before 477 has no ends_with; a reversed prefix is the same test on both.
                _ => format!("starts_with(reverse({haystack}), reverse({needle}))"),
            }
        };
        Ok(if op.negated { null_as_empty_negation(&positive) } else { positive })
    }

    /// A list's items, with dynamic array literals (directly or through `let`) spread out.
    fn spread(&self, items: &[Expr]) -> Result<Vec<Expr>> {
        let mut spread = Vec::new();
        for item in items {
            match &self.resolve_let(item).0.kind {
                ExprKind::Dynamic(serde_json::Value::Array(elements)) => {
                    for element in elements {
                        let kind = match element {
                            serde_json::Value::String(text) => ExprKind::String(text.clone()),
                            serde_json::Value::Bool(value) => ExprKind::Bool(*value),
                            serde_json::Value::Number(n) => match n.as_i64() {
                                Some(value) => ExprKind::Long(value),
                                None => ExprKind::Real(n.as_f64().unwrap_or(f64::NAN)),
                            },
                            _ => {
                                return Err(type_mismatch(
                                    item.position,
                                    "a list takes strings, numbers and bools, not nulls, arrays or objects".into(),
                                ));
                            }
                        };
                        spread.push(Expr { kind, position: item.position });
                    }
                }
                _ => spread.push(item.clone()),
            }
        }
        Ok(spread)
    }

    fn list(&self, op: ListOp, expr: &Expr, items: &[Expr], position: Position) -> Result<String> {
        let items = self.spread(items)?;
        let value = self.compile(expr)?;
        match op {
            ListOp::HasAny | ListOp::HasAll => {
                let terms = items
                    .iter()
                    .map(|item| {
                        self.string_literal(item).ok_or_else(|| KqlError::Unsupported {
                            position: item.position,
                            construct: "a term that is not a string literal".into(),
                            hint: "has_any and has_all take string literals, or a dynamic array of them".into(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                if terms.is_empty() {
                    return Ok(if op == ListOp::HasAny { "FALSE" } else { "TRUE" }.into());
                }
                let haystack = self.searched_text(value, position)?;
                let matches =
                    |terms: &[String]| format!("regexp_like({haystack}, {})", quote_string(&term_regex(terms, false)));
                Ok(match op {
                    ListOp::HasAny => matches(&terms),
                    _ => format!(
                        "({})",
                        terms.iter().map(|t| matches(std::slice::from_ref(t))).collect::<Vec<_>>().join(" AND ")
                    ),
                })
            }
            ListOp::In { negated, case_sensitive } => {
                let Some(first) = items.first() else {
                    return Ok(if negated { "TRUE" } else { "FALSE" }.into());
                };
                let target = match (case_sensitive, self.compile(first)?.ty()) {
                    (false, _) | (true, Type::Dynamic(_)) => Type::String,
                    (true, ty) => ty,
                };
                let case = |sql: String| if case_sensitive { sql } else { format!("lower({sql})") };
                let needle = case(match target {
                    Type::String => self.string(value, position)?,
                    _ => self.as_type(value, target, position)?,
                });
                let items = items
                    .iter()
                    .map(|item| {
                        let item_value = self.compile(item)?;
                        Ok(case(match target {
                            Type::String => self.string(item_value, item.position)?,
                            _ => self.as_type(item_value, target, item.position)?,
                        }))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let positive = format!("({needle} IN ({}))", items.join(", "));
                Ok(match (negated, target) {
                    (false, _) => positive,
                    (true, Type::String) => null_as_empty_negation(&positive),
                    (true, _) => format!("(NOT {positive})"),
                })
            }
        }
    }

    fn call(&self, name: &str, args: &[Expr], position: Position) -> Result<Value> {
        if matches!(name, "arg_max" | "arg_min") {
            return Err(KqlError::Unsupported {
                position,
                construct: format!("{name} here"),
                hint: format!("{name} must be the only aggregation of its summarize: summarize {name}(expr, *) by ..."),
            });
        }
        if AGGREGATE_FUNCTIONS.contains(&name) {
            return self.aggregate(name, args, position);
        }
        let arity = |counts: &[usize], expected| check_arity(name, args.len(), counts, expected, position);
        let arg = |index: usize| self.compile(&args[index]);
        let string_arg = |index: usize| self.string(self.compile(&args[index])?, args[index].position);
        let value = match name {
            "isnull" | "isnotnull" => {
                arity(&[1], "one value")?;
                Value::sql(self.nullness(&args[0], name == "isnull")?, Type::Bool)
            }
            "isempty" | "isnotempty" => {
                arity(&[1], "one value")?;
                Value::sql(self.emptiness(&args[0], name == "isempty")?, Type::Bool)
            }
            "not" => {
                arity(&[1], "one bool")?;
                Value::sql(format!("(NOT {})", self.boolean(&args[0])?), Type::Bool)
            }
            "strlen" => {
                arity(&[1], "one string")?;
                Value::sql(format!("length({})", string_arg(0)?), Type::Long)
            }
            "tolower" | "toupper" => {
                arity(&[1], "one string")?;
                let function = if name == "tolower" { "lower" } else { "upper" };
                Value::sql(format!("{function}({})", string_arg(0)?), Type::String)
            }
            "tostring" => {
                arity(&[1], "one value")?;
                Value::sql(string_arg(0)?, Type::String)
            }
            "toint" | "tolong" | "todouble" | "toreal" | "tobool" | "toboolean" => {
                arity(&[1], "one value")?;
                let (sql_type, ty) = match name {
                    "toint" => ("INTEGER", Type::Long),
                    "tolong" => ("BIGINT", Type::Long),
                    "todouble" | "toreal" => ("DOUBLE", Type::Real),
                    _ => ("BOOLEAN", Type::Bool),
                };
                let value = arg(0)?;
                let sql = match value.ty() {
                    Type::Dynamic(_) => self.scalar_text(value),
                    _ => self.sql(value),
                };
                Value::sql(format!("TRY_CAST({sql} AS {sql_type})"), ty)
            }
            "todatetime" => {
                arity(&[1], "one string or datetime")?;
                match arg(0)? {
                    value @ Value::Sql { ty: Type::DateTime, .. } => value,
                    value => Value::sql(self.dialect.parse_timestamp(&self.string(value, position)?), Type::DateTime),
                }
            }
            "parse_json" | "todynamic" => {
                arity(&[1], "one string")?;
                match arg(0)? {
                    value if matches!(value.ty(), Type::Dynamic(_)) => value,
                    value => Value::sql(self.string(value, position)?, Type::Dynamic(Json::Any)),
                }
            }
            "strcat" => {
                if args.is_empty() {
                    return Err(KqlError::WrongArguments {
                        position,
                        function: name.into(),
                        expected: "one or more values",
                    });
                }
                // Trino's concat is NULL when any argument is; KQL's absent strings are empty.
                let parts = (0..args.len()).map(|i| Ok(format!("COALESCE({}, '')", string_arg(i)?)));
                Value::sql(format!("concat({})", parts.collect::<Result<Vec<_>>>()?.join(", ")), Type::String)
            }
            "strcat_array" => {
                arity(&[2], "a string list and a delimiter")?;
                let list = self.list_arg(&args[0])?;
                Value::sql(self.dialect.join_strings(&list, &string_arg(1)?), Type::String)
            }
            "substring" => {
                arity(&[2, 3], "a string, a start (from 0) and an optional length")?;
                let start = self.numeric(arg(1)?, args[1].position)?.0;
                let length = match args.len() {
                    3 => format!(", {}", self.numeric(arg(2)?, args[2].position)?.0),
                    _ => String::new(),
                };
                Value::sql(format!("substr({}, {start} + 1{length})", string_arg(0)?), Type::String)
            }
            "replace_string" => {
                arity(&[3], "a string, what to look for and its replacement")?;
                Value::sql(format!("replace({}, {}, {})", string_arg(0)?, string_arg(1)?, string_arg(2)?), Type::String)
            }
            "array_length" => {
                arity(&[1], "one dynamic array or string list")?;
                let sql = match arg(0)? {
                    Value::Sql { sql, ty: Type::StringList } => format!("cardinality({sql})"),
                    value if matches!(value.ty(), Type::Dynamic(_)) => {
                        format!("json_array_length({})", self.sql(value))
                    }
                    value => {
                        return Err(type_mismatch(
                            position,
                            format!("array_length takes an array, not {}", value.ty().kql_name()),
                        ));
                    }
                };
                Value::sql(sql, Type::Long)
            }
            "set_has_element" => {
                arity(&[2], "a string list and a value")?;
                let list = self.list_arg(&args[0])?;
                Value::sql(self.dialect.list_contains(&list, &string_arg(1)?), Type::Bool)
            }
            "iff" | "iif" => {
                arity(&[3], "a condition, the value when it holds and the value otherwise")?;
                let condition = self.boolean(&args[0])?;
                let (values, ty) = self.unify(&args[1..])?;
                Value::sql(format!("CASE WHEN {condition} THEN {} ELSE {} END", values[0], values[1]), ty)
            }
            "case" => {
                if args.len() < 3 || args.len().is_multiple_of(2) {
                    return Err(KqlError::WrongArguments {
                        position,
                        function: name.into(),
                        expected: "pairs of a condition and its value, then the value otherwise",
                    });
                }
                // The values: every second argument, then the last one (the value otherwise).
                let results: Vec<Expr> = args.iter().skip(1).step_by(2).chain(args.last()).cloned().collect();
                let (values, ty) = self.unify(&results)?;
                let mut sql = String::from("CASE");
                for (condition, value) in args.iter().step_by(2).zip(&values[..values.len() - 1]) {
                    sql += &format!(" WHEN {} THEN {value}", self.boolean(condition)?);
                }
                sql += &format!(" ELSE {} END", values[values.len() - 1]);
                Value::sql(sql, ty)
            }
            "coalesce" => {
                if args.is_empty() {
                    return Err(KqlError::WrongArguments {
                        position,
                        function: name.into(),
                        expected: "one or more values",
                    });
                }
                let (values, ty) = self.unify(args)?;
                Value::sql(format!("COALESCE({})", values.join(", ")), ty)
            }
            "now" => {
                arity(&[0], "no arguments")?;
                Value::sql(self.dialect.now(), Type::DateTime)
            }
            "ago" => {
                arity(&[1], "a timespan")?;
                let span = self.timespan_arg(&args[0])?;
                Value::sql(format!("({} - {span})", self.dialect.now()), Type::DateTime)
            }
            "bin" | "floor" => {
                arity(&[2], "a value and the bin size")?;
                self.bin(arg(0)?, &args[1], position)?
            }
            "startofday" => {
                arity(&[1], "a datetime")?;
                let value = arg(0)?;
                if value.ty() != Type::DateTime {
                    return Err(type_mismatch(
                        position,
                        format!("startofday takes a datetime, not {}", value.ty().kql_name()),
                    ));
                }
                Value::sql(format!("date_trunc('day', {})", self.sql(value)), Type::DateTime)
            }
            _ => {
                return Err(KqlError::UnsupportedFunction {
                    position,
                    name: name.into(),
                    supported: SCALAR_FUNCTIONS,
                    aggregations: AGGREGATE_FUNCTIONS,
                });
            }
        };
        Ok(value)
    }

    fn list_arg(&self, expr: &Expr) -> Result<String> {
        match self.compile(expr)? {
            Value::Sql { sql, ty: Type::StringList } => Ok(sql),
            value => {
                Err(type_mismatch(expr.position, format!("expected a string list, found {}", value.ty().kql_name())))
            }
        }
    }

    fn timespan_arg(&self, expr: &Expr) -> Result<String> {
        match self.compile(expr)? {
            Value::Sql { sql, ty: Type::Timespan } => Ok(sql),
            value => Err(type_mismatch(
                expr.position,
                format!("expected a timespan (1h, 7d), found {}", value.ty().kql_name()),
            )),
        }
    }

    /// `bin(value, size)`: a datetime to a multiple of a timespan since the epoch, a number to a
    /// multiple of a number.
    fn bin(&self, value: Value, size: &Expr, position: Position) -> Result<Value> {
        let (size_expr, _) = self.resolve_let(size);
        match (value.ty(), &size_expr.kind) {
            (Type::DateTime, ExprKind::Timespan(micros)) if *micros > 0 => {
                Ok(Value::sql(self.dialect.bin_timestamp(&self.sql(value), *micros), Type::DateTime))
            }
            (Type::Long | Type::Real | Type::Dynamic(_), ExprKind::Long(_) | ExprKind::Real(_)) => {
                let (sql, ty) = self.numeric(value, position)?;
                let (size, size_ty) = self.numeric(self.compile(size)?, size.position)?;
                let binned = format!("floor({sql} / CAST({size} AS DOUBLE)) * {size}");
                Ok(match (ty, size_ty) {
                    (Type::Long, Type::Long) => Value::sql(format!("CAST({binned} AS BIGINT)"), Type::Long),
                    _ => Value::sql(format!("({binned})"), Type::Real),
                })
            }
            _ => Err(type_mismatch(
                position,
                format!(
                    "bin takes a datetime and a positive timespan literal (bin(Timestamp, 1h)), or a number and a \
                     number literal; found {}",
                    value.ty().kql_name()
                ),
            )),
        }
    }

    /// The values of `iff`, `case` and `coalesce`, of one type: dynamic ones take the type of
    /// the first that is not dynamic.
    fn unify(&self, exprs: &[Expr]) -> Result<(Vec<String>, Type)> {
        let values = exprs.iter().map(|e| self.compile(e)).collect::<Result<Vec<_>>>()?;
        let ty = values.iter().map(Value::ty).find(|ty| !matches!(ty, Type::Dynamic(_)));
        let ty = ty.unwrap_or(Type::Dynamic(Json::Any));
        let sql = values
            .into_iter()
            .zip(exprs)
            .map(|(value, expr)| match ty {
                Type::String => self.string(value, expr.position),
                Type::Dynamic(_) => Ok(self.sql(value)),
                _ => self.as_type(value, ty, expr.position),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((sql, ty))
    }

    fn aggregate(&self, name: &str, args: &[Expr], position: Position) -> Result<Value> {
        if !self.aggregates {
            return Err(KqlError::Unsupported {
                position,
                construct: format!("the aggregation {name} here"),
                hint: "aggregations belong in summarize".into(),
            });
        }
        let inner = Scope { aggregates: false, ..*self };
        let arity = |counts: &[usize], expected| check_arity(name, args.len(), counts, expected, position);
        let column = |index: usize| -> Result<(String, Type)> {
            let value = inner.compile(&args[index])?;
            Ok(match value.ty() {
                Type::Dynamic(_) => (inner.string(value, position)?, Type::String),
                _ => inner.materialize(value),
            })
        };
        let (sql, ty) = match name {
            "count" => {
                arity(&[0], "no arguments")?;
                ("count(*)".to_owned(), Type::Long)
            }
            "countif" => {
                arity(&[1], "a condition")?;
                (format!("count(CASE WHEN {} THEN 1 END)", inner.boolean(&args[0])?), Type::Long)
            }
            "dcount" => {
                arity(&[1, 2], "a value (and an accuracy, ignored: the count is exact)")?;
                (format!("count(DISTINCT {})", column(0)?.0), Type::Long)
            }
            "dcountif" => {
                arity(&[2, 3], "a value and a condition")?;
                let condition = inner.boolean(&args[1])?;
                (format!("count(DISTINCT CASE WHEN {condition} THEN {} END)", column(0)?.0), Type::Long)
            }
            "sum" | "avg" | "min" | "max" => {
                arity(&[1], "one value")?;
                let (sql, ty) = column(0)?;
                (format!("{name}({sql})"), if name == "avg" { Type::Real } else { ty })
            }
            "sumif" => {
                arity(&[2], "a value and a condition")?;
                let (sql, ty) = column(0)?;
                (format!("sum(CASE WHEN {} THEN {sql} END)", inner.boolean(&args[1])?), ty)
            }
            "make_set" | "make_list" => {
                // Strings, with nulls left out as KQL does.
                arity(&[1, 2], "a value (and a maximum size, ignored)")?;
                let value = inner.string(inner.compile(&args[0])?, position)?;
                let distinct = if name == "make_set" { "DISTINCT " } else { "" };
                (format!("array_agg({distinct}{value}) FILTER (WHERE {value} IS NOT NULL)"), Type::StringList)
            }
            _ => unreachable!("AGGREGATE_FUNCTIONS lists the aggregations this compiles"),
        };
        Ok(Value::sql(sql, ty))
    }
}

/// Whether a call has one of the argument counts its function takes.
fn check_arity(
    function: &str,
    count: usize,
    counts: &[usize],
    expected: &'static str,
    position: Position,
) -> Result<()> {
    match counts.contains(&count) {
        true => Ok(()),
        false => Err(KqlError::WrongArguments { position, function: function.to_owned(), expected }),
    }
}

/// `NOT positive`, true where `positive` is NULL: KQL's negative string operators hold for an
/// absent string, which SQL's would leave NULL (and drop).
fn null_as_empty_negation(positive: &str) -> String {
    format!("(NOT COALESCE({positive}, FALSE))")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_plain() {
        let steps = [Step::Key("metadata".into()), Step::Key("a.b/c\"d".into()), Step::Index(0)];
        assert_eq!(json_path(&steps), r#"'$.metadata["a.b/c\"d"][0]'"#);
    }

    #[test]
    fn term_regexes_escape_what_both_engines_treat_as_special() {
        assert_eq!(term_regex(&["a.b".into(), "c+".into()], false), r"(?i)(^|[^0-9A-Za-z])(a\.b|c\+)($|[^0-9A-Za-z])");
        assert_eq!(term_regex(&["x".into()], true), "(^|[^0-9A-Za-z])(x)($|[^0-9A-Za-z])");
    }
}
