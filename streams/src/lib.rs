//! Riposte's inputs from managed clusters that need their own protocols:
//!
//! - [`kafka`]: a Kafka consumer group, for AKS, whose diagnostic settings export the
//!   apiserver's audit log (`kube-audit`, `kube-audit-admin`) to Event Hubs, which speaks
//!   Kafka ([`kafka::Settings::event_hubs`]). Records go to a caller's sink, at least once.
//! - [`oidc`]: the verification of Pub/Sub push requests, for GKE, whose audit log reaches
//!   Riposte from a push subscription with a Google-signed OIDC token.
//!
//! Neither decodes the audit events: the caller hands the bytes to the detection core.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod kafka;
pub mod oidc;
mod roots;

pub use error::{Error, ErrorKind};
