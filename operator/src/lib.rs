//! Riposte: a Kubernetes threat-response operator.
//!
//! The pure parts (`isolation`, `guard`, `status`, `enforcer`, `policy`, `triage`,
//! `evidence`) decide; `controller` reads and writes the API around them; `local` runs a
//! control plane for use without a cluster.
#![forbid(unsafe_code)]

pub mod controller;
pub mod detection;
pub mod enforcer;
pub mod error;
pub mod evidence;
pub mod guard;
pub mod http;
pub mod hunting;
pub mod isolation;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod policy;
pub mod status;
pub mod tls;
pub mod triage;

pub use error::{Error, Result};
