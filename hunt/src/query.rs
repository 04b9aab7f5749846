//! Hunts: a read-only query over the hunting tables within a time window, on the embedded
//! store (DataFusion) or on Trino, with the reference product's limits.
//!
//! The window is not part of the query text: a hunt names it apart, and each table the query
//! reads is replaced by that table within the window (its partitions in the window, its rows
//! filtered by `Timestamp`). So no query can read outside its window, and every query
//! prunes partitions, whatever its WHERE clause says.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext, ident, lit};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, LimitClause, ObjectName, Query, Statement, TableFactor, Value as SqlValue, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::kql::{self, Dialect};
use crate::partition::{Partition, format_micros, format_naive_utc};
use crate::schema::Table;
use crate::store::{DataFile, Store};
use crate::trino::TrinoClient;

/// What a hunt is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Sql,
    Kql,
}

/// A hunt: a query and the window it reads, `[from, to)` in microseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunt {
    pub text: String,
    pub language: Language,
    pub from: i64,
    pub to: i64,
}

/// The bounds every hunt runs within. The defaults are the reference product's: 30 days
/// back, 30,000 rows, ten minutes; and a memory bound so that a hunt fails with an error
/// rather than the operator being killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub lookback: Duration,
    pub max_rows: usize,
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            lookback: Duration::from_secs(30 * 24 * 3600),
            max_rows: 30_000,
            timeout: Duration::from_secs(600),
            memory_bytes: 512 << 20,
        }
    }
}

/// A column of a hunt's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A hunt's rows, each cell as JSON: strings, numbers, booleans, arrays, null, and
/// timestamps as RFC 3339 text in UTC with microseconds, whichever engine ran it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HuntResult {
    pub columns: Vec<ResultColumn>,
    pub rows: Vec<Vec<Value>>,
    /// More rows matched than [`Limits::max_rows`]; the first ones are returned.
    pub truncated: bool,
    pub engine: String,
    /// What the query ran as, after KQL compilation and before the window was bound.
    pub sql: String,
    pub elapsed_ms: u64,
}

/// Checks a hunt's window against the limits; `now` is the upper bound of a hunt's end.
pub fn check_window(hunt: &Hunt, limits: &Limits, now: i64) -> Result<()> {
    if hunt.from >= hunt.to {
        return Err(Error::Window(format!(
            "it starts at {} and ends at {}: the start must come first",
            format_micros(hunt.from),
            format_micros(hunt.to)
        )));
    }
    let earliest = now - i64::try_from(limits.lookback.as_micros()).unwrap_or(i64::MAX);
    if hunt.from < earliest {
        return Err(Error::Window(format!(
            "it starts at {}, more than {} days back (the earliest start is {})",
            format_micros(hunt.from),
            limits.lookback.as_secs() / 86_400,
            format_micros(earliest)
        )));
    }
    Ok(())
}

/// The SQL a hunt runs on `dialect`: its text, or its KQL compiled.
pub fn sql_of(hunt: &Hunt, dialect: Dialect) -> Result<String> {
    match hunt.language {
        Language::Sql => Ok(hunt.text.clone()),
        Language::Kql => Ok(kql::to_sql(&hunt.text, dialect)?),
    }
}

/// A hunt's query, checked: one SELECT, reading only hunting tables (and its own CTEs).
pub struct CheckedQuery {
    pub query: Query,
    pub tables: BTreeSet<Table>,
    /// Each table name as the query wrote it: SQL users fold case, DataFusion here does not.
    pub spellings: BTreeSet<(Table, String)>,
}

/// Parses and checks a query: one statement, a query, reading nothing but the hunting
/// tables, the query's own named subqueries and UNNEST.
pub fn check_sql(sql: &str) -> Result<CheckedQuery> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| Error::SqlSyntax(e.to_string()))?;
    let query = match <[Statement; 1]>::try_from(statements) {
        Ok([Statement::Query(query)]) => *query,
        Ok([other]) => {
            let text = other.to_string();
            let keyword = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            return Err(Error::NotAQuery(format!("a {keyword} statement")));
        }
        Err(statements) => return Err(Error::StatementCount(statements.len())),
    };
    let mut relations = Relations::default();
    if let ControlFlow::Break(error) = query.visit(&mut relations) {
        return Err(error);
    }
    let mut tables = BTreeSet::new();
    let mut spellings = BTreeSet::new();
    for name in relations.read {
        if relations.named_subqueries.contains(&name.to_ascii_lowercase()) {
            continue;
        }
        match Table::named(&name) {
            Some(table) => {
                tables.insert(table);
                spellings.insert((table, name));
            }
            None => {
                return Err(Error::UnknownTable {
                    name,
                    available: Table::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
                });
            }
        }
    }
    Ok(CheckedQuery { query, tables, spellings })
}

#[derive(Default)]
struct Relations {
    read: Vec<String>,
    named_subqueries: BTreeSet<String>,
}

impl Visitor for Relations {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Error> {
        if let Some(with) = &query.with {
            self.named_subqueries.extend(with.cte_tables.iter().map(|cte| cte.alias.name.value.to_ascii_lowercase()));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Error> {
        match factor {
            TableFactor::Table { name, args: None, .. } => match single_name(name) {
                Some(name) => self.read.push(name),
                None => return ControlFlow::Break(Error::ForbiddenRelation(format!("the qualified name {name}"))),
            },
            TableFactor::Table { name, args: Some(_), .. } => {
                return ControlFlow::Break(Error::ForbiddenRelation(format!("the table function {name}")));
            }
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. } => {}
            other => {
                let text = other.to_string();
                return ControlFlow::Break(Error::ForbiddenRelation(text.chars().take(60).collect()));
            }
        }
        ControlFlow::Continue(())
    }
}

fn single_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [part] => part.as_ident().map(|ident| ident.value.clone()),
        _ => None,
    }
}

/// Runs a hunt on the embedded store.
pub async fn run_local(store: &Store, hunt: &Hunt, limits: &Limits, now: i64) -> Result<HuntResult> {
    check_window(hunt, limits, now)?;
    let sql = sql_of(hunt, Dialect::DataFusion)?;
    let checked = check_sql(&sql)?;
    let started = Instant::now();
    let (store, window, limits_for_task, query) = (store.clone(), (hunt.from, hunt.to), *limits, sql.clone());
    // A task of its own, so that the timer can cancel it between batches even while the
    // query keeps a worker busy.
    let mut run = tokio::spawn(async move {
        let (store, hunt, limits, sql) = (&store, window, &limits_for_task, &query);
        let context = local_context(limits)?;
        // The snapshots' files are held until the hunt is done, so none is deleted under it.
        let mut held = Vec::new();
        for table in &checked.tables {
            let (view, files) = table_in_window(&context, store, *table, hunt.0, hunt.1)?;
            held.extend(files);
            let view = view.into_view();
            for (_, spelling) in checked.spellings.iter().filter(|(t, _)| t == table) {
                context.register_table(TableReference::bare(spelling.as_str()), view.clone())?;
            }
        }
        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let frame = context.sql_with_options(sql, options).await?.limit(0, Some(limits.max_rows + 1))?;
        let columns: Vec<ResultColumn> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| ResultColumn { name: f.name().clone(), type_name: f.data_type().to_string() })
            .collect();
        let mut stream = frame.execute_stream().await?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            append_rows(&batch?, &mut rows)?;
        }
        drop(held);
        Ok::<_, DataFusionError>((columns, rows))
    });
    let (columns, mut rows) = match tokio::time::timeout(limits.timeout, &mut run).await {
        Err(_) => {
            run.abort();
            return Err(Error::Timeout(limits.timeout));
        }
        Ok(Err(_)) => return Err(Error::Query("the hunt's task stopped before it finished".into())),
        Ok(Ok(Err(error))) => return Err(local_error(error, limits)),
        Ok(Ok(Ok(done))) => done,
    };
    let truncated = rows.len() > limits.max_rows;
    rows.truncate(limits.max_rows);
    Ok(HuntResult {
        columns,
        rows,
        truncated,
        engine: "datafusion".into(),
        sql,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

fn local_context(limits: &Limits) -> Result<SessionContext, DataFusionError> {
    let mut config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get));
    // Column names are CamelCase, as the reference's hunts write them: keep them as written.
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        // Spilling would trade the memory bound for the volume that holds the events.
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build_arc()?;
    let context = SessionContext::new_with_config_rt(config, runtime);
    crate::functions::register(&context);
    Ok(context)
}

/// One table within the window: its committed files of the window's hours and its rows in
/// memory, filtered to `[from, to)`; and the files, which must outlive the hunt.
fn table_in_window(
    context: &SessionContext,
    store: &Store,
    table: Table,
    from: i64,
    to: i64,
) -> Result<(DataFrame, Vec<Arc<DataFile>>), DataFusionError> {
    let snapshot = store.snapshot(table, from, to).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let schema = table.schema();
    let mut parts = Vec::new();
    if !snapshot.files.is_empty() {
        let urls = snapshot
            .files
            .iter()
            .map(|f| ListingTableUrl::parse(f.path.to_string_lossy()))
            .collect::<Result<Vec<_>, _>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config =
            ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema.clone());
        parts.push(context.read_table(Arc::new(ListingTable::try_new(config)?))?);
    }
    if let Some(recent) = snapshot.recent {
        parts.push(context.read_table(Arc::new(MemTable::try_new(schema.clone(), vec![vec![recent]])?))?);
    }
    let mut frame = match parts.pop() {
        Some(first) => parts.into_iter().try_fold(first, DataFrame::union)?,
        None => context.read_table(Arc::new(MemTable::try_new(schema, vec![vec![]])?))?,
    };
    let bound = |micros| lit(ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into())));
    frame = frame.filter(ident("Timestamp").gt_eq(bound(from)).and(ident("Timestamp").lt(bound(to))))?;
    Ok((frame, snapshot.files))
}

fn local_error(error: DataFusionError, limits: &Limits) -> Error {
    match error.find_root() {
        DataFusionError::ResourcesExhausted(detail) => {
            Error::MemoryLimit { limit_mib: limits.memory_bytes >> 20, detail: detail.clone() }
        }
        DataFusionError::External(inner) if inner.is::<Error>() => Error::Query(inner.to_string()),
        _ => Error::from(error),
    }
}

/// Where the hunting tables live in Trino.
#[derive(Clone, Debug)]
pub struct TrinoTables {
    pub catalog: String,
    pub schema: String,
}

/// The statements that map the store's layout under `location` (`local:///path`,
/// `s3://bucket/prefix`) to Trino's tables: the schema, and each table external, Parquet,
/// partitioned by the `date` and `hour` directories. Each may run again.
pub fn trino_setup_statements(tables: &TrinoTables, location: &str) -> Vec<String> {
    let location = if location.ends_with('/') { location.to_owned() } else { format!("{location}/") };
    let mut statements = vec![format!("CREATE SCHEMA IF NOT EXISTS {}.{}", tables.catalog, tables.schema)];
    for table in Table::ALL {
        let columns: Vec<String> =
            table.columns().iter().map(|c| format!("\"{}\" {}", c.name, c.kind.trino())).collect();
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS {}.{}.{} ({}, \"date\" varchar, \"hour\" varchar) WITH (external_location = \
             '{location}{}', format = 'PARQUET', partitioned_by = ARRAY['date', 'hour'])",
            tables.catalog,
            tables.schema,
            table.name().to_ascii_lowercase(),
            columns.join(", "),
            table.name(),
        ));
    }
    statements
}

/// Runs a hunt on Trino, over the same layout: each table read becomes a named subquery of
/// its partitions and rows in the window, ahead of the query's own.
pub async fn run_trino(
    client: &TrinoClient,
    tables: &TrinoTables,
    hunt: &Hunt,
    limits: &Limits,
    now: i64,
) -> Result<HuntResult> {
    check_window(hunt, limits, now)?;
    let sql = sql_of(hunt, Dialect::Trino)?;
    let checked = check_sql(&sql)?;
    let read: Vec<Table> = checked.tables.iter().copied().collect();
    let bound = bind_window_for_trino(checked, tables, hunt, limits.max_rows + 1)?;
    let started = Instant::now();
    // The metastore learns of the hours written since (new directories); new files in
    // known ones are read without it.
    for table in read {
        let sync = format!(
            "CALL {}.system.sync_partition_metadata('{}', '{}', 'ADD')",
            tables.catalog,
            tables.schema,
            table.name().to_ascii_lowercase()
        );
        client.execute(&sync, limits.timeout).await?;
    }
    let result = client.query(&bound, limits.timeout).await?;
    let columns: Vec<ResultColumn> =
        result.columns.iter().map(|c| ResultColumn { name: c.name.clone(), type_name: c.type_name.clone() }).collect();
    let mut rows: Vec<Vec<Value>> = result
        .rows
        .into_iter()
        .map(|row| row.into_iter().zip(&columns).map(|(value, column)| trino_value(value, &column.type_name)).collect())
        .collect();
    let truncated = rows.len() > limits.max_rows;
    rows.truncate(limits.max_rows);
    Ok(HuntResult {
        columns,
        rows,
        truncated,
        engine: "trino".into(),
        sql,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The query Trino runs: the window's subqueries first, the row limit last.
pub fn bind_window_for_trino(
    checked: CheckedQuery,
    tables: &TrinoTables,
    hunt: &Hunt,
    row_limit: usize,
) -> Result<String> {
    let CheckedQuery { mut query, tables: read, .. } = checked;
    let first_date = Partition::of(Table::CloudAuditEvents, hunt.from).date();
    let last_date = Partition::of(Table::CloudAuditEvents, hunt.to - 1).date();
    let mut windows = Vec::new();
    for table in &read {
        let columns = table.columns().iter().map(|c| format!("\"{}\"", c.name)).collect::<Vec<_>>().join(", ");
        windows.push(format!(
            "\"{name}\" AS (SELECT {columns} FROM {catalog}.{schema}.{lower} WHERE \"date\" BETWEEN '{first_date}' AND \
             '{last_date}' AND \"Timestamp\" >= TIMESTAMP '{from}' AND \"Timestamp\" < TIMESTAMP '{to}')",
            name = table.name(),
            catalog = tables.catalog,
            schema = tables.schema,
            lower = table.name().to_ascii_lowercase(),
            from = format_naive_utc(hunt.from),
            to = format_naive_utc(hunt.to),
        ));
    }
    if !windows.is_empty() {
        let mut with = parse_query(&format!("WITH {} SELECT 1", windows.join(", ")))?.with.expect("written with WITH");
        if let Some(theirs) = query.with.take() {
            with.recursive = theirs.recursive;
            with.cte_tables.extend(theirs.cte_tables);
        }
        query.with = Some(with);
    }
    let limit = Expr::value(SqlValue::Number(row_limit.to_string(), false));
    let within = |expr: &Expr| matches!(expr, Expr::Value(v) if matches!(&v.value, SqlValue::Number(n, _) if n.parse::<usize>().is_ok_and(|n| n <= row_limit)));
    match &mut query.limit_clause {
        Some(LimitClause::LimitOffset { limit: Some(existing), .. }) if within(existing) => {}
        Some(LimitClause::LimitOffset { limit: slot, .. }) => *slot = Some(limit),
        Some(LimitClause::OffsetCommaLimit { .. }) => {
            return Err(Error::SqlSyntax("LIMIT offset, count is MySQL's: write LIMIT count OFFSET offset".into()));
        }
        None => {
            query.limit_clause = Some(LimitClause::LimitOffset { limit: Some(limit), offset: None, limit_by: vec![] })
        }
    }
    Ok(query.to_string())
}

fn parse_query(sql: &str) -> Result<Query> {
    match Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| Error::SqlSyntax(e.to_string()))?.pop() {
        Some(Statement::Query(query)) => Ok(*query),
        _ => Err(Error::SqlSyntax(format!("not a query: {sql}"))),
    }
}

/// A Trino value in the form DataFusion's rows take: timestamps as RFC 3339.
fn trino_value(value: Value, type_name: &str) -> Value {
    match value {
        Value::String(text) if type_name.starts_with("timestamp") => Value::String(rfc3339_of_trino(&text)),
        other => other,
    }
}

/// `2026-12-01 10:00:00.123456 UTC` → `2026-12-01T10:00:00.123456Z`.
fn rfc3339_of_trino(text: &str) -> String {
    let text = text.strip_suffix(" UTC").unwrap_or(text);
    let (date_time, fraction) = text.split_once('.').map_or((text, ""), |(d, f)| (d, f));
    let mut micros: String = fraction.chars().take(6).collect();
    while micros.len() < 6 {
        micros.push('0');
    }
    format!("{}.{micros}Z", date_time.replacen(' ', "T", 1))
}

fn append_rows(batch: &RecordBatch, rows: &mut Vec<Vec<Value>>) -> Result<(), DataFusionError> {
    let start = rows.len();
    rows.extend((0..batch.num_rows()).map(|_| Vec::with_capacity(batch.num_columns())));
    for column in batch.columns() {
        let values = json_values(column)?;
        for (row, value) in rows[start..].iter_mut().zip(values) {
            row.push(value);
        }
    }
    Ok(())
}

/// The cells of an Arrow column as JSON.
fn json_values(array: &ArrayRef) -> Result<Vec<Value>, DataFusionError> {
    macro_rules! numbers {
        ($type:ty) => {
            array.as_primitive::<$type>().iter().map(|v| v.map_or(Value::Null, |v| serde_json::json!(v))).collect()
        };
    }
    macro_rules! timestamps {
        ($type:ty, $to_micros:expr) => {
            array
                .as_primitive::<$type>()
                .iter()
                .map(|v| v.map_or(Value::Null, |v| Value::String(format_micros($to_micros(v)))))
                .collect()
        };
    }
    Ok(match array.data_type() {
        DataType::Null => vec![Value::Null; array.len()],
        DataType::Boolean => array.as_boolean().iter().map(|v| v.map_or(Value::Null, Value::Bool)).collect(),
        DataType::Int8 => numbers!(Int8Type),
        DataType::Int16 => numbers!(Int16Type),
        DataType::Int32 => numbers!(Int32Type),
        DataType::Int64 => numbers!(Int64Type),
        DataType::UInt8 => numbers!(UInt8Type),
        DataType::UInt16 => numbers!(UInt16Type),
        DataType::UInt32 => numbers!(UInt32Type),
        DataType::UInt64 => numbers!(UInt64Type),
        DataType::Float32 => numbers!(Float32Type),
        DataType::Float64 => numbers!(Float64Type),
        DataType::Utf8 => array.as_string::<i32>().iter().map(|v| v.map_or(Value::Null, |s| s.into())).collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(|v| v.map_or(Value::Null, |s| s.into())).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(|v| v.map_or(Value::Null, |s| s.into())).collect(),
        DataType::Timestamp(TimeUnit::Second, _) => timestamps!(TimestampSecondType, |v: i64| v * 1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => timestamps!(TimestampMillisecondType, |v: i64| v * 1000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => timestamps!(TimestampMicrosecondType, |v: i64| v),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            timestamps!(TimestampNanosecondType, |v: i64| v.div_euclid(1000))
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            (0..list.len())
                .map(|i| if list.is_null(i) { Ok(Value::Null) } else { json_values(&list.value(i)).map(Value::Array) })
                .collect::<Result<_, _>>()?
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            (0..list.len())
                .map(|i| if list.is_null(i) { Ok(Value::Null) } else { json_values(&list.value(i)).map(Value::Array) })
                .collect::<Result<_, _>>()?
        }
        _ => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
            (0..array.len())
                .map(|i| if array.is_null(i) { Value::Null } else { Value::String(formatter.value(i).to_string()) })
                .collect()
        }
    })
}
