//! Riposte's hunting store: every audit and process event kept as Hive-partitioned Parquet and
//! searched with SQL or KQL, on Apache DataFusion in the operator or on Trino.
#![forbid(unsafe_code)]

pub mod bucket;
mod error;
pub mod functions;
pub mod go_hunt;
pub mod kql;
pub mod partition;
pub mod query;
pub mod record;
pub mod schema;
pub mod store;
pub mod trino;

pub use error::{Error, Result, chain as error_chain};
