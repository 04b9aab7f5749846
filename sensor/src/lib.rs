//! Riposte's node sensor: eBPF programs on raw tracepoints watch every process of the
//! node (execs, exits, and the syscalls the runtime rules read) and this crate turns what
//! they report into [`riposte_detect::runtime::ProcessEvent`]s.
//!
//! ```no_run
//! # async fn run() -> Result<(), riposte_sensor::Error> {
//! let mut sensor = riposte_sensor::Sensor::start(riposte_sensor::Options::default())?;
//! while let Some(event) = sensor.recv().await {
//!     println!("{} {}", event.process.name, event.action.kind());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The BPF side is `bpf/sensor.bpf.c`, compiled by `build.rs` and embedded; loading it is
//! aya's, in Rust, so a static binary needs no libbpf.

#![forbid(unsafe_code)]

pub mod conntrack;
mod error;
mod filter;
mod proc;
mod record;
mod sensor;
mod table;

pub use error::{Error, Hint};
pub use filter::{DEFAULT_PREFIXES, DEFAULT_SUFFIXES, MAX_PATTERN_LEN, MAX_PATTERNS, PathFilter};
pub use sensor::{Options, Sensor};
