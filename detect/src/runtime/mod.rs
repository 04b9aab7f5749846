//! Runtime detections: process, file and network events from inside containers in,
//! `K8S.NODE_*` findings out.
//!
//! - [`event`]: the normalized [`ProcessEvent`] that every sensor becomes.
//! - [`rules`]: one rule per `source: runtime` entry of the alert catalog.
//! - [`RuntimeConfig`]: the lists and thresholds the rules use, with defaults.
//! - [`RuntimeEngine`]: the rules over each event, the stateful ones' memory, one alert per
//!   (type, process).
//! - [`falco`]: Falco's alerts (its `http_output`, Falcosidekick's webhook, JSON lines),
//!   with the Riposte alert type of each rule.
//! - [`tetragon`]: Tetragon's JSON export lines.
//! - [`follow`]: a follower of the export file a Tetragon DaemonSet writes (the crate's one
//!   piece of I/O).

mod config;
mod engine;
pub mod event;
pub mod falco;
pub mod follow;
pub mod rules;
pub mod tetragon;

pub use config::RuntimeConfig;
pub use engine::{RuntimeEngine, SENSOR_RULE, SensorAlert};
pub use event::{Action, Container, Endpoint, Process, ProcessEvent, Sensor};
pub use falco::{FalcoAlert, Priority, Severity};
pub use follow::{Follower, Start};
pub use tetragon::TetragonEvent;
