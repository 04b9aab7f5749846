//! Riposte: a Kubernetes threat-response operator.
//!
//! The pure parts (`isolation`, `guard`, `status`, `enforcer`) decide; `controller` reads
//! and writes the API around them; `local` runs a control plane for use without a cluster.
#![forbid(unsafe_code)]

pub mod controller;
pub mod enforcer;
pub mod error;
pub mod guard;
pub mod http;
pub mod isolation;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod status;

pub use error::{Error, Result};
