use std::path::PathBuf;
use std::time::Duration;

use crate::schema::Table;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the hunting store or in a hunt.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a {table} row has {found} cells after Timestamp and ReportId, the table has {expected} columns there")]
    RowShape { table: Table, expected: usize, found: usize },
    #[error("a {table} row holds a value of the wrong type for column {column}")]
    CellType { table: Table, column: &'static str },
    #[error("building an Arrow batch: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "the hunting store at {0} is in use by another process (its lock is held): one writer per volume; \
         replicas that share storage need the object-store layout, each with its own writer id"
    )]
    StoreLocked(PathBuf),
    #[error("the hunting bucket's address is invalid: {0}")]
    BucketUrl(String),
    #[error("{action} {key} in the hunting bucket: {source}")]
    Bucket { action: &'static str, key: String, source: object_store::Error },
    #[error(
        "writer id {0:?} must be letters, digits, '-' and '.', starting with a letter or digit (it names the \
         store's files)"
    )]
    WriterId(String),
    #[error("the hunting store's writer has stopped; events are no longer kept")]
    WriterStopped,

    #[error("the query is not valid SQL: {0}")]
    SqlSyntax(String),
    #[error("only one SELECT query may be run at a time, found {0} statements")]
    StatementCount(usize),
    #[error("hunting is read-only: only SELECT queries run, this is {0}")]
    NotAQuery(String),
    #[error("unknown table {name}: the hunting tables are {available}")]
    UnknownTable { name: String, available: String },
    #[error("{0} is not allowed in a hunt: only the hunting tables may be read")]
    ForbiddenRelation(String),
    #[error("the time window is invalid: {0}")]
    Window(String),
    #[error("the query failed: {0}")]
    Query(String),
    #[error(
        "the hunt needs more than the {limit_mib} MiB of memory a hunt may use ({detail}): narrow the time \
         window, filter earlier, or summarize instead of returning raw rows"
    )]
    MemoryLimit { limit_mib: usize, detail: String },
    #[error("the hunt ran longer than its {0:?} limit and was cancelled: narrow the time window or filter earlier")]
    Timeout(Duration),
    #[error("the KQL query is not supported: {0}")]
    Kql(#[from] crate::kql::KqlError),
    #[error(transparent)]
    Trino(#[from] crate::trino::TrinoError),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        match error.find_root() {
            datafusion::error::DataFusionError::SQL(e, _) => Error::SqlSyntax(e.to_string()),
            root => Error::Query(root.to_string()),
        }
    }
}

/// An I/O error naming what was being done to which file.
pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { action, path, source }
}

/// An error and its sources, as one line: HTTP clients' errors say "client error (Connect)"
/// at the top and the useful part (connection refused, certificate unknown) in their sources.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
