//! The normalized runtime event: what a process did, in which container of which pod.
//!
//! Riposte's node sensor, Falco and Tetragon all become this model, so that one set of
//! rules reads them and one table (`CloudProcessEvents` of the hunting store) keeps them.
//! The fields follow Defender's CloudProcessEvents columns (container, pod, namespace,
//! image, process, parent, command line, working directory, account, process ids and
//! creation times), plus what Kubernetes users need (node, pod UID, the sensor's exec ids
//! for process trees) and the object of the action: a file, a connection, a signal.
//!
//! Every field a sensor may not know is optional: Falco's `<NA>`, a process that exited
//! before its working directory was read, a host process without a container.

use serde::{Deserialize, Serialize};

use crate::audit::Timestamp;

/// One thing a process did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessEvent {
    /// When it happened.
    pub time: Timestamp,
    /// Which sensor saw it.
    pub sensor: Sensor,
    /// The node it happened on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The container it happened in; `None` for a process of the node itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    pub process: Process,
    /// The parent, as far as the sensor knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Process>,
    /// The names of the ancestors above the parent, nearest first (grandparent, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<String>,
    pub action: Action,
}

impl ProcessEvent {
    /// What identifies the execution that acted, on every sensor and every retry: the
    /// container and the sensor's exec id, else the pid and its start time.
    pub fn execution_key(&self) -> String {
        let container = self.container.as_ref().map_or("", |c| c.id.as_str());
        match &self.process.exec_id {
            Some(id) => format!("{container}/{id}"),
            // A sensor that names no process id (Falco's stock rules): the same command
            // line under the same parent within the same second is taken as one execution.
            None if self.process.pid == 0 => format!(
                "{container}/{}/{}/{}",
                self.process.command_line(),
                self.parent.as_ref().map_or("", |p| p.name.as_str()),
                self.time.unix_micros() / 1_000_000
            ),
            None => format!(
                "{container}/{}/{}",
                self.process.pid,
                self.process.start_time.map_or(self.time.unix_micros(), |t| t.unix_micros())
            ),
        }
    }
}

/// The sensor an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sensor {
    /// Riposte's own eBPF sensor.
    Riposte,
    Falco,
    Tetragon,
}

impl Sensor {
    pub fn as_str(self) -> &'static str {
        match self {
            Sensor::Riposte => "riposte-sensor",
            Sensor::Falco => "falco",
            Sensor::Tetragon => "tetragon",
        }
    }
}

/// Where in Kubernetes a process ran. The container id is what every sensor knows (from
/// the cgroup); the rest comes from the node's pods, and may be missing for a container
/// that started a moment ago or was never part of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// The runtime's id (64 hex digits for containerd; Falco gives the first 12).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Whether the container runs privileged (`securityContext.privileged`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
}

/// A process: the one that acted, or its parent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// The process id as the node sees it.
    pub pid: u32,
    /// A sensor-wide unique id of this execution (a pid is reused; this is not), which
    /// `parentExecId` of its children names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_exec_id: Option<String>,
    /// The executable's path, as the process saw it (inside the container).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binary: String,
    /// The process name: the executable's file name (the kernel's `comm` when the path is
    /// unknown).
    pub name: String,
    /// The arguments after the program name (`argv[1..]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// Started by an exec into the container (`kubectl exec`), or descended from one,
    /// rather than from the container's own entry point. `None` when the sensor cannot
    /// tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_session: Option<bool>,
}

impl Process {
    /// The command line as one string: the name (or path) and the arguments, each quoted
    /// when it holds a space, the way CloudProcessEvents shows ProcessCommandLine.
    pub fn command_line(&self) -> String {
        let program = if self.binary.is_empty() { &self.name } else { &self.binary };
        let mut line = String::with_capacity(program.len() + self.args.iter().map(|a| a.len() + 1).sum::<usize>());
        line.push_str(program);
        for arg in &self.args {
            line.push(' ');
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                line.push('"');
                line.push_str(arg);
                line.push('"');
            } else {
                line.push_str(arg);
            }
        }
        line
    }
}

/// What the process did. `actionType` names it, as the hunting table's ActionType column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "actionType", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Action {
    /// The process started a program (execve): `process` is the new program.
    Exec,
    /// The process ended.
    Exit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
    },
    /// A file was opened; `write` when for writing, `truncate` when emptied by the open.
    FileOpen {
        path: String,
        write: bool,
        truncate: bool,
    },
    FileDelete {
        path: String,
    },
    FileRename {
        from: String,
        to: String,
    },
    /// A file's access and modification times were set (utimensat and friends).
    FileTimestamp {
        path: String,
    },
    /// An outgoing connection was attempted (whether or not it succeeded).
    Connect(Endpoint),
    /// A socket was made the process's standard input, output or error (dup2/dup3): how
    /// a reverse shell hands its connection to a shell.
    SocketRedirect {
        /// The standard descriptor replaced: 0, 1 or 2.
        fd: u32,
        /// The remote end of that socket, when it is connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<Endpoint>,
    },
    /// A new Linux namespace was created (unshare, clone) or joined (setns).
    Namespace {
        syscall: String,
        flags: u64,
    },
    Mount {
        source: String,
        target: String,
        fs_type: String,
    },
    Ptrace {
        request: u64,
        target_pid: u32,
    },
    /// A signal was sent to another process.
    Signal {
        target_pid: u32,
        signal: u32,
        /// The target's name, when the sensor knew the process.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_name: Option<String>,
    },
    /// Something the model has no variant for, named by its syscall or event: what a
    /// sensor's own alert was about when its output did not say more.
    Other {
        event: String,
    },
}

impl Action {
    /// The ActionType column's value.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Exec => "exec",
            Action::Exit { .. } => "exit",
            Action::FileOpen { .. } => "fileOpen",
            Action::FileDelete { .. } => "fileDelete",
            Action::FileRename { .. } => "fileRename",
            Action::FileTimestamp { .. } => "fileTimestamp",
            Action::Connect(_) => "connect",
            Action::SocketRedirect { .. } => "socketRedirect",
            Action::Namespace { .. } => "namespace",
            Action::Mount { .. } => "mount",
            Action::Ptrace { .. } => "ptrace",
            Action::Signal { .. } => "signal",
            Action::Other { .. } => "other",
        }
    }
}

/// The far end of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// An IP address (v4 or v6), or a path for a Unix socket.
    pub address: String,
    pub port: u16,
    /// `tcp`, `udp` or `unix`.
    pub protocol: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_arguments_with_spaces() {
        let process = Process {
            binary: "/bin/sh".into(),
            name: "sh".into(),
            args: vec!["-c".into(), "curl x | sh".into(), String::new()],
            ..Process::default()
        };
        assert_eq!(process.command_line(), r#"/bin/sh -c "curl x | sh" """#);
    }

    #[test]
    fn events_round_trip_as_json_with_their_action_type() {
        let event = ProcessEvent {
            time: "2026-12-01T10:00:00.123456Z".parse().unwrap(),
            sensor: Sensor::Riposte,
            node: Some("node-1".into()),
            container: Some(Container { id: "c0ffee".into(), pod: Some("web".into()), ..Container::default() }),
            process: Process { pid: 7, name: "bash".into(), ..Process::default() },
            parent: None,
            ancestors: Vec::new(),
            action: Action::SocketRedirect {
                fd: 0,
                remote: Some(Endpoint { address: "10.0.0.1".into(), port: 4444, protocol: "tcp".into() }),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["action"]["actionType"], "socketRedirect");
        assert_eq!(json["action"]["remote"]["port"], 4444);
        assert_eq!(json["sensor"], "riposte");
        assert_eq!(serde_json::from_value::<ProcessEvent>(json).unwrap(), event);
    }
}
