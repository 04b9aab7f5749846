//! What /proc says about a process that the sensor did not see start: the processes that
//! already ran when it started, and any whose fork or exec record was lost.

use std::fs;
use std::path::Path;

use riposte_detect::runtime::Container;

/// Bounds what is kept of a process read from /proc, like the kernel's records.
const MAX_CMDLINE: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Start, in clock ticks since boot (field 22 of stat).
    pub start_ticks: u64,
    pub uid: Option<u32>,
    pub argv: Vec<String>,
    pub exe: Option<String>,
    pub cwd: Option<String>,
    pub container: Option<Container>,
    /// How many pid namespaces the process is in (NSpid's length), and its pid in the last.
    pub ns_levels: usize,
    pub ns_pid: u32,
}

pub(crate) fn pids() -> std::io::Result<Vec<u32>> {
    Ok(fs::read_dir("/proc")?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
}

pub(crate) fn read_link(path: &str) -> Option<String> {
    fs::read_link(path).ok().map(|p| p.to_string_lossy().into_owned())
}

pub(crate) fn read(pid: u32) -> Option<ProcInfo> {
    let dir = format!("/proc/{pid}");
    let (ppid, start_ticks, comm) = parse_stat(&fs::read_to_string(format!("{dir}/stat")).ok()?)?;
    let status = fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    let (uid, ns_levels, ns_pid) = parse_status(&status);
    let mut cmdline = fs::read(format!("{dir}/cmdline")).unwrap_or_default();
    cmdline.truncate(MAX_CMDLINE);
    let argv = cmdline
        .strip_suffix(&[0])
        .unwrap_or(&cmdline)
        .split(|&c| c == 0)
        .filter(|_| !cmdline.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let container = fs::read_to_string(format!("{dir}/cgroup"))
        .ok()
        .and_then(|text| parse_cgroup(&text))
        .and_then(|(leaf, parent)| container_of(&leaf, &parent));
    Some(ProcInfo {
        pid,
        ppid,
        comm,
        start_ticks,
        uid,
        argv,
        exe: read_link(&format!("{dir}/exe")),
        cwd: read_link(&format!("{dir}/cwd")),
        container,
        ns_levels: ns_levels.max(1),
        ns_pid: ns_pid.unwrap_or(pid),
    })
}

/// (ppid, starttime, comm) from /proc/<pid>/stat; comm may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(u32, u64, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is the state (field 3): ppid is field 4, starttime field 22.
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?, comm))
}

/// (real uid, pid-namespace depth, pid in the innermost namespace) from /proc/<pid>/status.
fn parse_status(status: &str) -> (Option<u32>, usize, Option<u32>) {
    let mut uid = None;
    let mut levels = 0;
    let mut ns_pid = None;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid = rest.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(rest) = line.strip_prefix("NSpid:") {
            let pids: Vec<&str> = rest.split_whitespace().collect();
            levels = pids.len();
            ns_pid = pids.last().and_then(|p| p.parse().ok());
        }
    }
    (uid, levels, ns_pid)
}

/// The leaf and parent names of the cgroup the kernel side reads: the memory controller's
/// (cgroup v1), else the unified hierarchy's.
pub(crate) fn parse_cgroup(text: &str) -> Option<(String, String)> {
    let mut unified = None;
    let mut memory = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            memory = Some(path);
        } else if id == "0" && controllers.is_empty() {
            unified = Some(path);
        }
    }
    let path = Path::new(memory.or(unified)?);
    let name = |p: Option<&Path>| p.and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
    Some((name(Some(path)).unwrap_or_default(), name(path.parent()).unwrap_or_default()))
}

/// A container from its cgroup's leaf and parent names: cgroupfs (`<id>` under
/// `pod<uid>`) or systemd (`cri-containerd-<id>.scope` under `kubepods-…-pod<uid>.slice`).
/// Anything without a 64-hex id is the node's own.
pub(crate) fn container_of(leaf: &str, parent: &str) -> Option<Container> {
    let leaf = leaf.strip_suffix(".scope").unwrap_or(leaf);
    let id = leaf.rsplit('-').next().unwrap_or(leaf);
    if id.len() != 64 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let parent = parent.strip_suffix(".slice").unwrap_or(parent);
    let pod_uid = parent
        .rfind("pod")
        .map(|at| parent[at + 3..].replace('_', "-"))
        .filter(|uid| uid.len() == 36 && uid.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
    Some(Container { id: id.to_ascii_lowercase(), pod_uid, ..Container::default() })
}

/// The pid of `pid` in its own (innermost) pid namespace.
pub(crate) fn ns_pid(pid: u32) -> Option<u32> {
    parse_status(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?).2
}

/// The node's pid of the process that `sender`'s pid namespace calls `pid`: a signal's
/// target as the sender named it (`kill $!` in a container names the container's pid).
/// Scans /proc, which is affordable for signals, the rare events that need it.
pub(crate) fn host_pid(sender: u32, pid: u32) -> Option<u32> {
    let namespace = read_link(&format!("/proc/{sender}/ns/pid"))?;
    if read_link("/proc/self/ns/pid").as_deref() == Some(namespace.as_str()) {
        return Some(pid);
    }
    pids().ok()?.into_iter().find(|candidate| {
        read_link(&format!("/proc/{candidate}/ns/pid")).as_deref() == Some(namespace.as_str())
            && std::fs::read_to_string(format!("/proc/{candidate}/status")).ok().is_some_and(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("NSpid:"))
                    .and_then(|ids| ids.split_whitespace().last())
                    .and_then(|id| id.parse::<u32>().ok())
                    == Some(pid)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1e2d4c5b6a79880716253443526170f1e2d3c4b5a6978800112233445566aa";
    const UID: &str = "0c2f1a44-1b2c-4d5e-8f90-123456789abc";

    #[test]
    fn containers_come_from_cgroupfs_and_systemd_names() {
        let c = container_of(ID, &format!("pod{UID}")).unwrap();
        assert_eq!((c.id.as_str(), c.pod_uid.as_deref()), (ID, Some(UID)));
        let systemd_parent = format!("kubepods-besteffort-pod{}.slice", UID.replace('-', "_"));
        let c = container_of(&format!("cri-containerd-{ID}.scope"), &systemd_parent).unwrap();
        assert_eq!((c.id.as_str(), c.pod_uid.as_deref()), (ID, Some(UID)));
        assert_eq!(container_of(ID, "kubepods").unwrap().pod_uid, None);
        assert_eq!(container_of("1e287ba0ba9c9fcfc432795f6ecc1849", "process_api"), None);
        assert_eq!(container_of("", ""), None);
        assert_eq!(container_of("session-3.scope", "user-0.slice"), None);
    }

    #[test]
    fn cgroup_files_give_the_memory_hierarchy_first() {
        let v1 = format!("5:devices:/x\n4:memory:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n");
        assert_eq!(parse_cgroup(&v1), Some((ID.to_owned(), format!("pod{UID}"))));
        assert_eq!(parse_cgroup("0::/system.slice/ssh.service\n"), Some(("ssh.service".into(), "system.slice".into())));
        assert_eq!(parse_cgroup("3:cpu,memory:/\n"), Some((String::new(), String::new())));
    }

    #[test]
    fn stat_and_status_parse_odd_names() {
        let stat = "1234 (a b) c) S 77 1234 1234 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5555 1000 1";
        assert_eq!(parse_stat(stat), Some((77, 5555, "a b) c".into())));
        let status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nNSpid:\t4242\t7\n";
        assert_eq!(parse_status(status), (Some(1000), 2, Some(7)));
    }

    #[test]
    fn this_process_reads_from_proc() {
        let me = read(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.argv.is_empty());
        assert!(me.exe.is_some());
    }
}
