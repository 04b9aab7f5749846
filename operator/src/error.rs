use std::time::Duration;

/// Why a reconcile could not finish. Invalid objects are not errors: they end in a Failed
/// status that says why and wait for a change. Everything here is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("{0} kept conflicting with concurrent writers")]
    Conflict(String),

    #[error("cannot restore {0}")]
    Restore(String),

    #[error("{0} has no namespace")]
    MissingNamespace(String),

    #[error("cannot start the local control plane: {0}")]
    LocalControlPlane(String),

    #[error("lost the leader lease {0}: could not renew it in time")]
    LostLeadership(String),

    #[error("cannot serve metrics and health endpoints: {0}")]
    Serve(#[source] std::io::Error),

    #[error("audit webhook: {0}")]
    Webhook(String),

    #[error("detection: {0}")]
    Detection(String),

    #[error("hunting: {0}")]
    Hunting(String),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Conflict(_) => "conflict",
            Error::Restore(_) => "restore",
            Error::MissingNamespace(_) => "missing_namespace",
            Error::LocalControlPlane(_) => "local_control_plane",
            Error::Serve(_) => "serve",
            Error::LostLeadership(_) => "lost_leadership",
            Error::Webhook(_) => "webhook",
            Error::Detection(_) => "detection",
            Error::Hunting(_) => "hunting",
        }
    }
}

/// Exponential backoff for repeated failures of one object: 1s, 2s, 4s ... capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(super::backoff(0).as_secs(), 1);
        assert_eq!(super::backoff(3).as_secs(), 8);
        assert_eq!(super::backoff(40).as_secs(), 256);
        assert!(super::backoff(u32::MAX).as_secs() <= 300);
    }
}
