use std::io;

/// What failed while starting or running the sensor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The BPF object was refused: parsing, map creation or CO-RE relocation.
    #[error("loading the sensor's BPF object{hint}: {source}")]
    Load {
        #[source]
        source: aya::EbpfError,
        hint: Hint,
    },
    /// The verifier or the kernel refused a program.
    #[error("loading BPF program {program}{hint}: {source}")]
    LoadProgram {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
        hint: Hint,
    },
    #[error("attaching BPF program {program} to raw tracepoint {tracepoint}{hint}: {source}")]
    Attach {
        program: &'static str,
        tracepoint: &'static str,
        #[source]
        source: aya::programs::ProgramError,
        hint: Hint,
    },
    /// The object lacks a program or map this crate expects (the build is inconsistent).
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("ring buffer: {0}")]
    RingBuffer(#[source] aya::maps::MapError),
    #[error("invalid path filter pattern {pattern:?}: {reason}")]
    Filter { pattern: String, reason: &'static str },
    #[error("reading {path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Duplicating the futimens program's descriptor for the sys_enter tail-call map.
    #[error("setting up the futimens tail call: {0}")]
    TailCall(#[source] io::Error),
    #[error("starting the sensor's reader thread: {0}")]
    Thread(#[source] io::Error),
    /// Forgetting an isolated pod's tracked connections (needs CAP_NET_ADMIN in the node's
    /// network namespace).
    #[error("connection tracking: {0}")]
    Conntrack(String),
}

/// A note on a refusal that is about privileges, empty otherwise.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hint(bool);

impl Hint {
    /// Whether some cause of `error` is EPERM or EACCES.
    pub(crate) fn of(error: &(dyn std::error::Error + 'static)) -> Hint {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<io::Error>()
                && io.kind() == io::ErrorKind::PermissionDenied
            {
                return Hint(true);
            }
            cause = e.source();
        }
        Hint(false)
    }
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 {
            f.write_str(
                " (permission denied: the sensor needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; see its README)",
            )
        } else {
            Ok(())
        }
    }
}
