//! KQL, as analysts write it for Microsoft Defender's advanced hunting, compiled to SQL for
//! DataFusion or Trino over Riposte's hunting tables.
//!
//! # The subset
//!
//! A query is `let` statements (`let n = 5;`, `let procs = dynamic(["curl", "wget"]);`,
//! `let recent = T | where ...;`), then a table (or tabular `let`) and operators:
//!
//! - `where` (`filter`), `project` (with `Name = expr`), `project-away` (with `*` patterns),
//!   `project-rename New = Old`, `extend`, `summarize aggregations by keys`, `order by` and
//!   `sort by` (`asc`/`desc`, descending by default; `nulls first`/`nulls last`),
//!   `top N by expr`, `take N` (`limit N`), `distinct cols` (`distinct *`), `count`,
//!   `join kind=innerunique|inner|leftouter|rightouter|fullouter|leftsemi|leftanti|rightsemi|
//!   rightanti (query) on Key, $left.A == $right.B` (innerunique, the default, keeps one left
//!   row per key; the right side's columns named like the left's take a `1` suffix: `Key1`),
//!   `mv-expand Col` and `mv-expand Name = dynamic-expr`.
//! - Aggregations: [`AGGREGATE_FUNCTIONS`]. `arg_max(expr, *)`, `arg_max(expr, Col, ...)` and
//!   `arg_min` keep each group's row with the largest (smallest) `expr`, and are then the
//!   summarize's only aggregation. `dcount` is exact.
//! - Scalar functions: [`SCALAR_FUNCTIONS`].
//! - Operators: `and`, `or`, `== != < <= > >=`, `+ - * / %`, `=~` and `!~` (equal ignoring
//!   case), `has` (a whole term, ignoring case), `has_cs`, `contains`, `startswith`,
//!   `endswith` (ignoring case) and their `_cs` (case-sensitive) and `!` forms, `in`, `!in`,
//!   `in~`, `!in~`, `has_any`, `has_all` (over a list, or a `dynamic` array literal or a `let`
//!   of one), `between (a .. b)`, `!between`, `matches regex`. `==` on strings is
//!   case-sensitive. As in KQL, an absent string is empty: `x != "a"`, `x !has "a"` and
//!   `x == ""` hold where `x` is NULL.
//! - Literals: strings (`'...'`, `"..."`, `@'verbatim'`), numbers, `true`/`false`, timespans
//!   (`1d 2h 30m 10s 100ms 1.5h`), `datetime(2026-12-01T10:00:00Z)`, `dynamic([...])`; `//`
//!   comments.
//! - Dynamic values (`RawEventData`, `AdditionalFields`, `parse_json(x)`, what `mv-expand`
//!   takes from a JSON array) are JSON text, read with `.key`, `["key"]` and `[0]`. Compared
//!   with a number, a JSON scalar is compared as one. The first key after CloudAuditEvents'
//!   `RawEventData` may be Defender's capitalized one ([`DEFENDER_RAW_EVENT_KEYS`]).
//! - Defender's columns Riposte lacks are an error naming the columns there are, but for the
//!   few in [`DEFENDER_COLUMN_ALIASES`].
//!
//! # The SQL
//!
//! The compiler knows each stage's columns, by name and KQL type, from the table's schema on:
//! every `SELECT` lists its columns, double-quoted as written (DataFusion runs with identifier
//! normalization off), and the tables are double-quoted by their exact names. Operators that
//! only filter, compute, rename or sort add to one `SELECT`; an aggregation, `distinct`, a
//! join, a window (`arg_max`), and on DataFusion an `mv-expand`, make the rows so far a
//! subquery. A sort is kept through such subqueries as hidden columns and applied last.
//!
//! Dynamic values are JSON text. A path is `json_extract_scalar(doc, '$.a.b')` where a scalar
//! is wanted (a comparison, a string operator, `tostring`; a number compares as
//! `TRY_CAST(... AS BIGINT)`), and `json_extract(doc, '$.a.b')` where a dynamic value is (a
//! column of its own, `mv-expand`); shown in the result, a dynamic string loses its quotes.
//! `has` is `regexp_like(x, '(?i)(^|[^0-9A-Za-z])(term)($|[^0-9A-Za-z])')`; `contains` is
//! `strpos(lower(x), lower(y)) > 0`; `endswith` is `starts_with(reverse(...), reverse(...))`.
//!
//! DataFusion's SQL relies on the functions of [`crate::functions`]. What differs per engine:
//! `now()` / `current_timestamp`; timestamp literals (`TIMESTAMP '...Z'` / `TIMESTAMP '... UTC'`);
//! `bin` (`date_bin(INTERVAL ..., t)` / `from_unixtime(floor(to_unixtime(t) / s) * s, 'UTC')`);
//! a path's JSON (`json_extract` / `json_format(json_extract(...))`); `mv-expand` of a JSON
//! array (`unnest(json_array_elements(x))` in the select list / `CROSS JOIN
//! UNNEST(try(CAST(json_parse(x) AS ARRAY<JSON>)))`), of a string list (`unnest(x)` / `CROSS
//! JOIN UNNEST(x)`); `todatetime` (`TRY_CAST(x AS TIMESTAMP)` / `try(from_iso8601_timestamp(x))`);
//! list functions (`array_to_string`, `array_has`, `array_element` / `array_join`, `contains`,
//! `element_at`). Intervals are `INTERVAL '1' HOUR` on both.
//!
//! # Not supported
//!
//! `union`, `parse`, `make-series`, `mv-apply`, `project-keep`, `evaluate`, user-defined
//! functions, `in (tabular query)` (use `join kind=leftsemi`), `mv-expand` of several columns
//! at once or of a property bag, negative indexes, `arg_max` beside other aggregations, and
//! functions outside the lists below. `tostring` of a datetime is the engine's own text.

mod ast;
mod compiler;
mod dialect;
mod expr;
mod lexer;
mod parser;
mod time;

use std::fmt;

/// The engine the SQL is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// DataFusion, with identifier normalization off and [`crate::functions::register`]ed.
    DataFusion,
    Trino,
}

/// The tabular operators [`to_sql`] compiles.
pub const SUPPORTED_OPERATORS: &[&str] = &[
    "where",
    "filter",
    "project",
    "project-away",
    "project-rename",
    "extend",
    "summarize",
    "order by",
    "sort by",
    "top",
    "take",
    "limit",
    "distinct",
    "count",
    "join",
    "mv-expand",
];

/// The scalar functions [`to_sql`] compiles.
pub const SCALAR_FUNCTIONS: &[&str] = &[
    "ago",
    "array_length",
    "bin",
    "case",
    "coalesce",
    "floor",
    "iff",
    "iif",
    "isempty",
    "isnotempty",
    "isnotnull",
    "isnull",
    "not",
    "now",
    "parse_json",
    "replace_string",
    "set_has_element",
    "startofday",
    "strcat",
    "strcat_array",
    "strlen",
    "substring",
    "tobool",
    "toboolean",
    "todatetime",
    "todouble",
    "todynamic",
    "toint",
    "tolong",
    "tolower",
    "toreal",
    "tostring",
    "toupper",
];

/// The aggregations `summarize` compiles.
pub const AGGREGATE_FUNCTIONS: &[&str] = &[
    "arg_max",
    "arg_min",
    "avg",
    "count",
    "countif",
    "dcount",
    "dcountif",
    "make_list",
    "make_set",
    "max",
    "min",
    "sum",
    "sumif",
];

/// Defender's columns that Riposte lacks but has the meaning of, so that Defender's documented
/// hunts run as written: `(Defender's name, Riposte's column)`. A name resolves here only when
/// no column has it; the column keeps the name the query gave it (`project AzureResourceId`
/// outputs `AzureResourceId`).
///
/// Defender's `AzureResourceId`, `AwsResourceName` and `GcpFullResourceName` name the cloud
/// resource an event came from: for CloudAuditEvents and CloudProcessEvents, the Kubernetes
/// cluster, which is Riposte's `ClusterName`. (Defender's `ResourceId`, the object acted on,
/// Riposte has under the same name.)
pub const DEFENDER_COLUMN_ALIASES: &[(&str, &str)] =
    &[("AzureResourceId", "ClusterName"), ("AwsResourceName", "ClusterName"), ("GcpFullResourceName", "ClusterName")];

/// Defender's `RawEventData` capitalizes the audit event's top-level keys; Riposte keeps the
/// event as the apiserver wrote it. A path's first key after CloudAuditEvents' `RawEventData`
/// is mapped by this table `(Defender's key, Kubernetes' key)`; keys deeper down are the same
/// in both (`RequestObject.metadata.name`).
pub const DEFENDER_RAW_EVENT_KEYS: &[(&str, &str)] = &[
    ("Annotations", "annotations"),
    ("AuditID", "auditID"),
    ("ImpersonatedUser", "impersonatedUser"),
    ("ObjectRef", "objectRef"),
    ("RequestObject", "requestObject"),
    ("RequestReceivedTimestamp", "requestReceivedTimestamp"),
    ("RequestURI", "requestURI"),
    ("ResponseObject", "responseObject"),
    ("ResponseStatus", "responseStatus"),
    ("SourceIPs", "sourceIPs"),
    ("Stage", "stage"),
    ("StageTimestamp", "stageTimestamp"),
    ("User", "user"),
    ("UserAgent", "userAgent"),
    ("Verb", "verb"),
];

/// Where in the query text: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a query does not compile. Each message starts with the position (`line:column`).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum KqlError {
    #[error("{position}: unexpected character {character:?}")]
    UnexpectedCharacter { position: Position, character: char },

    #[error("{position}: unterminated string literal: close it with {quote}")]
    UnterminatedString { position: Position, quote: char },

    #[error("{position}: invalid {kind} literal `{text}`: {reason}")]
    InvalidLiteral { position: Position, kind: &'static str, text: String, reason: String },

    #[error("{position}: expected {expected}, found {found}")]
    UnexpectedToken { position: Position, expected: String, found: String },

    #[error("{position}: unknown tabular operator `{name}`; supported: {}", supported.join(", "))]
    UnknownOperator { position: Position, name: String, supported: &'static [&'static str] },

    #[error("{position}: unknown table `{name}`; the tables are {}", available.join(", "))]
    UnknownTable { position: Position, name: String, available: Vec<String> },

    #[error("{position}: unknown column `{name}`; the columns here are {}", available.join(", "))]
    UnknownColumn { position: Position, name: String, available: Vec<String> },

    #[error("{position}: the column `{name}` is named twice")]
    DuplicateColumn { position: Position, name: String },

    #[error(
        "{position}: unsupported function `{name}`; the functions are {}, and in summarize {}",
        supported.join(", "),
        aggregations.join(", ")
    )]
    UnsupportedFunction {
        position: Position,
        name: String,
        supported: &'static [&'static str],
        aggregations: &'static [&'static str],
    },

    #[error("{position}: {function} takes {expected}")]
    WrongArguments { position: Position, function: String, expected: &'static str },

    #[error("{position}: {message}")]
    TypeMismatch { position: Position, message: String },

    #[error("{position}: {construct} is not supported: {hint}")]
    Unsupported { position: Position, construct: String, hint: String },
}

/// The SQL for `kql`, for `dialect`.
pub fn to_sql(kql: &str, dialect: Dialect) -> Result<String, KqlError> {
    compiler::compile(&parser::parse(kql)?, dialect)
}

fn columns_of(columns: &[expr::Column]) -> Vec<String> {
    columns.iter().map(|c| c.name.clone()).collect()
}
