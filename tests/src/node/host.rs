//! What the test node changes on the host, recorded before it starts and put back after it
//! stops: sysctls, iptables rules and chains, ipsets, network links, mounts, cgroups, a few
//! well-known directories, and the processes it started.
//!
//! The machine may be shared with other work (a colleague's container build, say), so the
//! restore removes only what is recognisably the node's (Kubernetes' chains and ipsets, links
//! named `riposte-*` or enslaved to its bridge, `kubepods` cgroups, mounts under its
//! directories) rather than resetting everything to the snapshot; the comparison of
//! [`Snapshot`]s then reports anything else that differs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The sysctls the kubelet sets (`vm.overcommit_memory`, `kernel.panic`, ...), the CNI
/// bridge plugin sets (forwarding) and Kubernetes networking commonly touches: restored to
/// their values before the node.
const RESTORED_SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/default/forwarding",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
];

/// Subtrees of /proc/sys compared before and after (per-interface entries left out: the
/// interfaces come and go with the node).
const WATCHED_SYSCTL_TREES: &[&str] = &[
    "kernel",
    "vm",
    "net/core",
    "net/ipv4",
    "net/ipv6/conf/all",
    "net/ipv6/conf/default",
    "net/bridge",
    "net/netfilter",
];

/// Sysctls that change on their own.
const VOLATILE_SYSCTLS: &[&str] = &["kernel/ns_last_pid", "kernel/random/", "kernel/perf_event_max_sample_rate"];

/// Directories the node's components create or fill outside the node's own directory
/// (containerd's shim sockets, CNI's cache, network namespaces, the kubelet's log links).
pub const WATCHED_PATHS: &[&str] = &[
    "/run/netns",
    "/run/containerd",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/var/lib/kube-router",
    "/etc/kubernetes",
    "/etc/cni",
    "/opt/cni",
    "/usr/libexec/kubernetes",
];

const IPTABLES: &[(&str, &str)] = &[("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")];

/// The parts of the host the node may change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `iptables-save` and `ip6tables-save`, by command.
    pub iptables: BTreeMap<String, String>,
    pub ipsets: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    pub sysctls: BTreeMap<String, String>,
    pub mounts: BTreeSet<String>,
    /// Top-level cgroups of each hierarchy.
    pub cgroups: BTreeMap<String, BTreeSet<String>>,
    /// Entries of each watched directory, `None` when it did not exist.
    pub paths: BTreeMap<String, Option<BTreeSet<String>>>,
}

/// A process the node started, recognised again by its start time (a PID can be reused).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Process {
    pub name: String,
    pub pid: u32,
    pub start_time: u64,
}

/// Everything needed to put the host back, also after a run that was killed: saved in
/// [`STATE_FILE`] before anything changes and whenever a process starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub before: Snapshot,
    pub processes: Vec<Process>,
    /// containerd's socket: its shims name it, which is how they are found.
    pub containerd_socket: PathBuf,
    /// Directories to unmount everything under and remove.
    pub dirs: Vec<PathBuf>,
    /// The links the node creates.
    pub bridges: Vec<String>,
}

/// The machine-wide directory of the node's state and lock. Under /run: it is cleared at
/// boot together with everything it describes.
pub const RUN_DIR: &str = "/run/riposte-node";
pub const STATE_FILE: &str = "/run/riposte-node/state";

impl State {
    pub fn save(&self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| format!("cannot serialise the node state: {e}"))?;
        let partial = format!("{STATE_FILE}.partial");
        std::fs::write(&partial, text).map_err(|e| format!("cannot write {partial}: {e}"))?;
        std::fs::rename(&partial, STATE_FILE).map_err(|e| format!("cannot write {STATE_FILE}: {e}"))
    }

    /// The state a run left behind without tearing down (it was killed), if any.
    pub fn stale() -> Result<Option<State>, String> {
        match std::fs::read_to_string(STATE_FILE) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| format!("{STATE_FILE} is unreadable: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {STATE_FILE}: {e}")),
        }
    }

    pub fn record(&mut self, name: &str, pid: u32) -> Result<(), String> {
        let start_time = start_time(pid).ok_or_else(|| format!("{name} (pid {pid}) exited at once"))?;
        self.processes.push(Process { name: name.into(), pid, start_time });
        self.save()
    }

    /// Stops everything the node started and undoes its changes; returns what could not
    /// be undone. Safe to run again, and on a state whose processes are long gone.
    pub fn restore(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // The kubelet first, or it restarts the containers being killed.
        for process in self.processes.iter().filter(|p| p.name == "kubelet") {
            stop(process, &mut problems);
        }
        kill_pods(&mut problems);
        for shim in shims_of(&self.containerd_socket) {
            stop(&shim, &mut problems);
        }
        for process in self.processes.iter().rev().filter(|p| p.name != "kubelet") {
            stop(process, &mut problems);
        }
        unmount_under(&[PathBuf::from("/run/netns")], &mut problems);
        problems.extend(discard(&self.dirs));
        restore_iptables(&self.before, &mut problems);
        destroy_ipsets(&self.before, &mut problems);
        delete_links(&self.before, &self.bridges, &mut problems);
        restore_sysctls(&self.before, &mut problems);
        remove_cgroups(&mut problems);
        remove_paths(&self.before, &mut problems);
        problems
    }
}

impl Snapshot {
    pub fn take() -> Result<Snapshot, String> {
        let mut iptables = BTreeMap::new();
        for (save, _) in IPTABLES {
            iptables.insert(save.to_string(), run(save, &[])?);
        }
        let ipsets = run("ipset", &["list", "-n"])?.lines().map(str::to_owned).collect();
        let links = links()?;
        let routes = run("ip", &["route", "show", "table", "all"])?
            .lines()
            .chain(run("ip", &["-6", "route", "show", "table", "all"])?.lines())
            .map(str::to_owned)
            .collect();
        let mut sysctls = BTreeMap::new();
        for tree in WATCHED_SYSCTL_TREES {
            read_sysctls(&Path::new("/proc/sys").join(tree), &mut sysctls);
        }
        let mounts = mounts()?;
        let mut cgroups = BTreeMap::new();
        for hierarchy in cgroup_hierarchies() {
            cgroups.insert(hierarchy.display().to_string(), subdirs(&hierarchy));
        }
        let paths = WATCHED_PATHS
            .iter()
            .map(|path| {
                let entries = std::fs::read_dir(path).ok().map(|dir| {
                    dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<BTreeSet<_>>()
                });
                (path.to_string(), entries)
            })
            .collect();
        Ok(Snapshot { iptables, ipsets, links, routes, sysctls, mounts, cgroups, paths })
    }

    /// What differs from `before`, one line each; iptables compared by tables, chains and
    /// rules (an empty table that only exists now is no change: iptables-nft cannot delete
    /// a table, and an empty one filters nothing).
    pub fn differences(before: &Snapshot, after: &Snapshot) -> Vec<String> {
        let mut found = Vec::new();
        for (command, saved) in &before.iptables {
            let (old, new) = (iptables_rules(saved), iptables_rules(after.iptables.get(command).map_or("", |s| s)));
            for rule in new.difference(&old) {
                found.push(format!("{command}: added {rule}"));
            }
            for rule in old.difference(&new) {
                found.push(format!("{command}: removed {rule}"));
            }
        }
        set_changes("ipset", &before.ipsets, &after.ipsets, &mut found);
        set_changes("link", &before.links, &after.links, &mut found);
        set_changes("route", &before.routes, &after.routes, &mut found);
        set_changes("mount", &before.mounts, &after.mounts, &mut found);
        for (key, value) in &before.sysctls {
            match after.sysctls.get(key) {
                Some(now) if now != value => found.push(format!("sysctl {key}: {value} before, {now} after")),
                None => found.push(format!("sysctl {key}: gone")),
                _ => {}
            }
        }
        for (hierarchy, groups) in &before.cgroups {
            let now = after.cgroups.get(hierarchy).cloned().unwrap_or_default();
            set_changes(&format!("cgroup in {hierarchy}"), groups, &now, &mut found);
        }
        for (path, entries) in &before.paths {
            match (entries, after.paths.get(path).cloned().flatten()) {
                (None, Some(_)) => found.push(format!("{path} created")),
                (Some(_), None) => found.push(format!("{path} removed")),
                (Some(old), Some(new)) => set_changes(&format!("entry of {path}"), old, &new, &mut found),
                (None, None) => {}
            }
        }
        found
    }
}

/// Unmounts everything under these directories and removes them; what could not be done.
pub fn discard(dirs: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    unmount_under(dirs, &mut problems);
    for dir in dirs {
        remove_in_background(dir, &mut problems);
    }
    problems
}

/// Moves `dir` aside and removes it in a process of its own: containerd's unpacked images
/// are thousands of files, which take this machine kind's disk tens of seconds to delete,
/// and nothing needs them gone before the next node starts (it uses a new directory).
fn remove_in_background(dir: &Path, problems: &mut Vec<String>) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".removing-{}-{nanos}", std::process::id()));
    match std::fs::rename(dir, &aside) {
        Ok(()) => {
            let removal = Command::new("rm").arg("-rf").arg(&aside).stdin(Stdio::null()).stderr(Stdio::null()).spawn();
            if let Err(e) = removal {
                problems.push(format!("cannot start removing {}: {e}", Path::new(&aside).display()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("cannot move {} aside to remove it: {e}", dir.display())),
    }
}

fn set_changes(what: &str, before: &BTreeSet<String>, after: &BTreeSet<String>, found: &mut Vec<String>) {
    for added in after.difference(before) {
        found.push(format!("{what} added: {added}"));
    }
    for removed in before.difference(after) {
        found.push(format!("{what} removed: {removed}"));
    }
}

/// `table chain-or-rule` lines of an iptables-save output, without counters, dropping the
/// built-in chains that accept by default (they exist in every table).
fn iptables_rules(saved: &str) -> BTreeSet<String> {
    let mut rules = BTreeSet::new();
    let mut table = "";
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name;
        } else if let Some(chain) = line.strip_prefix(':') {
            let mut parts = chain.split_whitespace();
            let (name, policy) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if policy != "ACCEPT" {
                rules.insert(format!("*{table} :{name} {policy}"));
            }
        } else if line.starts_with('-') {
            rules.insert(format!("*{table} {line}"));
        }
    }
    rules
}

/// Whether an iptables chain or rule is one the node's components made: the kubelet's and
/// kube-router's chains are all KUBE-*, and the harness's own rules say riposte-node.
fn is_nodes(text: &str) -> bool {
    text.contains("KUBE-") || text.contains("riposte-node")
}

/// Deletes the rules and chains the node added (by [`is_nodes`]) with `iptables-restore
/// --noflush`, leaving every other rule as it is.
fn restore_iptables(before: &Snapshot, problems: &mut Vec<String>) {
    for (save, restore) in IPTABLES {
        let now = match run(save, &[]) {
            Ok(now) => now,
            Err(e) => return problems.push(e),
        };
        let old = iptables_rules(before.iptables.get(*save).map_or("", |s| s));
        let mut script = String::new();
        let mut table = "";
        let mut deletions = Vec::new();
        let mut chains = Vec::new();
        for line in now.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name;
            } else if let Some(chain) = line.strip_prefix(':') {
                let name = chain.split_whitespace().next().unwrap_or("");
                if name.starts_with("KUBE-") && !old.contains(&format!("*{table} :{name} -")) {
                    chains.push((table.to_owned(), name.to_owned()));
                }
            } else if let Some(rule) = line.strip_prefix("-A ")
                && is_nodes(rule)
                && !old.contains(&format!("*{table} {line}"))
                // A chain that goes is flushed whole.
                && !chains.iter().any(|(t, c)| t == table && rule.split_whitespace().next() == Some(c.as_str()))
            {
                deletions.push((table.to_owned(), format!("-D {rule}")));
            }
        }
        let tables: BTreeSet<&String> = deletions.iter().map(|(t, _)| t).chain(chains.iter().map(|(t, _)| t)).collect();
        for table in tables {
            script.push_str(&format!("*{table}\n"));
            for (_, deletion) in deletions.iter().filter(|(t, _)| t == table) {
                script.push_str(deletion);
                script.push('\n');
            }
            for (_, chain) in chains.iter().filter(|(t, _)| t == table) {
                script.push_str(&format!("-F {chain}\n"));
            }
            for (_, chain) in chains.iter().filter(|(t, _)| t == table) {
                script.push_str(&format!("-X {chain}\n"));
            }
            script.push_str("COMMIT\n");
        }
        if !script.is_empty()
            && let Err(e) = run_with_input(restore, &["--noflush"], &script)
        {
            problems.push(format!("{e}\nthe script was:\n{script}"));
        }
    }
}

fn destroy_ipsets(before: &Snapshot, problems: &mut Vec<String>) {
    let now = match run("ipset", &["list", "-n"]) {
        Ok(now) => now,
        Err(e) => return problems.push(e),
    };
    // kube-router's sets are KUBE-SRC-*, KUBE-DST-*, kube-router-* (and inet6: twins).
    let nodes = |name: &str| name.trim_start_matches("inet6:").to_ascii_lowercase().starts_with("kube");
    for set in now.lines().filter(|s| !before.ipsets.contains(*s) && nodes(s)) {
        if let Err(e) = run("ipset", &["destroy", set]) {
            problems.push(e);
        }
    }
}

fn delete_links(before: &Snapshot, bridges: &[String], problems: &mut Vec<String>) {
    for bridge in bridges {
        // Veths whose pods were killed without a CNI DEL go with their namespace, but one
        // still held open would keep the bridge's address in use.
        if let Ok(ports) = run("ip", &["-o", "link", "show", "master", bridge]) {
            for port in ports.lines().filter_map(link_name) {
                let _ = run("ip", &["link", "delete", &port]);
            }
        }
        let exists = links().map(|l| l.contains(bridge)).unwrap_or(false);
        if exists
            && !before.links.contains(bridge)
            && let Err(e) = run("ip", &["link", "delete", bridge])
        {
            problems.push(e);
        }
    }
}

fn restore_sysctls(before: &Snapshot, problems: &mut Vec<String>) {
    for key in RESTORED_SYSCTLS {
        let path = Path::new("/proc/sys").join(key);
        let (Some(value), Ok(now)) = (before.sysctls.get(*key), std::fs::read_to_string(&path)) else {
            continue;
        };
        if now.trim() != value
            && let Err(e) = std::fs::write(&path, value)
        {
            problems.push(format!("cannot put sysctl {key} back to {value}: {e}"));
        }
    }
}

fn read_sysctls(dir: &Path, into: &mut BTreeMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let key = path.strip_prefix("/proc/sys").unwrap_or(&path).display().to_string();
        let per_interface = ["/conf/", "/neigh/"].iter().any(|part| {
            key.split_once(part).is_some_and(|(_, rest)| !rest.starts_with("all") && !rest.starts_with("default"))
        });
        if per_interface || VOLATILE_SYSCTLS.iter().any(|v| key.starts_with(v)) {
            continue;
        }
        let Ok(metadata) = entry.metadata() else { continue };
        if metadata.is_dir() {
            read_sysctls(&path, into);
        } else if metadata.permissions().mode() & 0o600 == 0o600
            && let Ok(value) = std::fs::read_to_string(&path)
        {
            into.insert(key, value.trim().to_owned());
        }
    }
}

fn links() -> Result<BTreeSet<String>, String> {
    Ok(run("ip", &["-o", "link", "show"])?.lines().filter_map(link_name).collect())
}

/// The name in a line of `ip -o link`: `2: eth0@if5: <...>` → `eth0`.
fn link_name(line: &str) -> Option<String> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next().unwrap_or(name).to_owned())
}

fn mounts() -> Result<BTreeSet<String>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("cannot read mountinfo: {e}"))?;
    Ok(text.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mount).collect())
}

fn unescape_mount(field: &str) -> String {
    field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Unmounts (lazily, so that nothing still open holds it) every mount under these
/// directories, deepest first.
fn unmount_under(dirs: &[PathBuf], problems: &mut Vec<String>) {
    for _ in 0..5 {
        let Ok(all) = mounts() else { return };
        let mut under: Vec<String> =
            all.into_iter().filter(|m| dirs.iter().any(|d| Path::new(m).starts_with(d) && Path::new(m) != d)).collect();
        if under.is_empty() {
            return;
        }
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in &under {
            let _ = run("umount", &["--lazy", mount]);
        }
    }
    problems.push(format!("mounts under {dirs:?} remain after unmounting five times"));
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut hierarchies: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.join("cgroup.procs").exists()).collect();
    hierarchies.sort();
    hierarchies
}

fn subdirs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The kubelet's cgroups (with the cgroupfs driver, `kubepods` and below in every
/// hierarchy): nothing but pods runs in them.
fn pod_cgroups() -> Vec<PathBuf> {
    cgroup_hierarchies()
        .into_iter()
        .flat_map(|h| subdirs(&h).into_iter().filter(|g| g.starts_with("kubepods")).map(move |g| h.join(g)))
        .collect()
}

/// Every cgroup at or below `dir`, deepest first.
fn cgroup_tree(dir: &Path) -> Vec<PathBuf> {
    let mut tree = Vec::new();
    for child in subdirs(dir) {
        tree.extend(cgroup_tree(&dir.join(child)));
    }
    tree.push(dir.to_path_buf());
    tree
}

/// Kills every process of every pod, the kubelet being stopped: containerd's shims do not
/// stop their containers when they die, so this is the only way to be sure.
fn kill_pods(problems: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: BTreeSet<u32> = pod_cgroups()
            .iter()
            .flat_map(|g| cgroup_tree(g))
            .filter_map(|g| std::fs::read_to_string(g.join("cgroup.procs")).ok())
            .flat_map(|procs| procs.lines().filter_map(|l| l.parse().ok()).collect::<Vec<u32>>())
            .collect();
        if pids.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            return problems.push(format!("pod processes {pids:?} survive SIGKILL"));
        }
        for pid in &pids {
            signal(*pid, "KILL");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove_cgroups(problems: &mut Vec<String>) {
    for group in pod_cgroups() {
        for dir in cgroup_tree(&group) {
            if let Err(e) = std::fs::remove_dir(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                problems.push(format!("cannot remove cgroup {}: {e}", dir.display()));
            }
        }
    }
}

fn remove_paths(before: &Snapshot, problems: &mut Vec<String>) {
    for (path, entries) in &before.paths {
        let path = Path::new(path);
        let result = match entries {
            None if path.exists() => std::fs::remove_dir_all(path),
            Some(old) => std::fs::read_dir(path).map(|now| {
                for entry in now.flatten() {
                    if !old.contains(&*entry.file_name().to_string_lossy()) {
                        let _ = std::fs::remove_dir_all(entry.path()).or_else(|_| std::fs::remove_file(entry.path()));
                    }
                }
            }),
            None => Ok(()),
        };
        if let Err(e) = result
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("cannot clean {}: {e}", path.display()));
        }
    }
}

/// containerd's shims for this socket: they outlive containerd (they are meant to), and
/// are recognised by the socket they were given.
fn shims_of(socket: &Path) -> Vec<Process> {
    let socket = socket.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && args.windows(2).any(|w| w[0] == b"-address" && w[1] == socket.as_bytes())
        })
        .filter_map(|pid| Some(Process { name: "containerd-shim".into(), pid, start_time: start_time(pid)? }))
        .collect()
}

/// The start time of a live (not zombie) process, in clock ticks since boot.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn alive(process: &Process) -> bool {
    start_time(process.pid) == Some(process.start_time)
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").args([format!("-{name}"), pid.to_string()]).stderr(Stdio::null()).status();
}

/// SIGTERM, then SIGKILL after five seconds.
fn stop(process: &Process, problems: &mut Vec<String>) {
    for (signal_name, wait) in [("TERM", Duration::from_secs(5)), ("KILL", Duration::from_secs(5))] {
        if !alive(process) {
            return;
        }
        if signal_name == "KILL" {
            eprintln!(
                "riposte node: {} (pid {}) did not stop within 5 s of SIGTERM; killing it",
                process.name, process.pid
            );
        }
        signal(process.pid, signal_name);
        let deadline = Instant::now() + wait;
        while alive(process) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if alive(process) {
        problems.push(format!("{} (pid {}) survives SIGKILL", process.name, process.pid));
    }
}

/// Runs a host command; its standard output, or an error with its standard error.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    run_command(program, args, None)
}

/// As [`run`], with `input` on the command's standard input.
pub fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<String, String> {
    run_command(program, args, Some(input))
}

fn run_command(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(input.as_bytes()).map_err(|e| format!("{program}: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_rules_ignore_counters_and_default_chains() {
        let saved = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [10:20]\n:FORWARD DROP [0:0]\n:KUBE-FIREWALL - [0:0]\n-A INPUT -j KUBE-FIREWALL\nCOMMIT\n";
        let rules = iptables_rules(saved);
        let expected: BTreeSet<String> =
            ["*filter :FORWARD DROP", "*filter :KUBE-FIREWALL -", "*filter -A INPUT -j KUBE-FIREWALL"]
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(rules, expected);
        assert!(iptables_rules("*mangle\n:PREROUTING ACCEPT [5:6]\nCOMMIT\n").is_empty());
    }

    #[test]
    fn link_names_drop_the_peer() {
        assert_eq!(link_name("7: veth1a2b@if3: <BROADCAST> mtu 1500").as_deref(), Some("veth1a2b"));
        assert_eq!(link_name("1: lo: <LOOPBACK,UP> mtu 65536").as_deref(), Some("lo"));
    }

    #[test]
    fn differences_name_what_changed() {
        let before =
            Snapshot { sysctls: [("kernel/panic".to_string(), "1".to_string())].into(), ..Snapshot::default() };
        let mut after = before.clone();
        assert!(Snapshot::differences(&before, &after).is_empty());
        after.sysctls.insert("kernel/panic".into(), "10".into());
        after.links.insert("riposte-cni0".into());
        let found = Snapshot::differences(&before, &after);
        assert_eq!(
            found,
            vec!["link added: riposte-cni0".to_string(), "sysctl kernel/panic: 1 before, 10 after".into()]
        );
    }
}
