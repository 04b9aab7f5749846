//! The process table: what each live process's exec said, so that every event names its
//! process, parent and ancestors, and a signal its target.

use std::collections::HashMap;

use riposte_detect::audit::Timestamp;
use riposte_detect::runtime::{Action, Container, Process, ProcessEvent, Sensor};

use crate::proc::{self, ProcInfo};
use crate::record::{AT_FDCWD, Body, Exec, Header, Record, SyscallPath};

/// Converts CLOCK_BOOTTIME nanoseconds (the BPF timestamps, task start times) to wall clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall_minus_boot_ns: i128,
    ns_per_tick: u64,
}

impl Clock {
    pub(crate) fn now() -> Clock {
        let ns = |t: rustix::time::Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
        let boot = ns(rustix::time::clock_gettime(rustix::time::ClockId::Boottime));
        let wall = ns(rustix::time::clock_gettime(rustix::time::ClockId::Realtime));
        Clock { wall_minus_boot_ns: wall - boot, ns_per_tick: 1_000_000_000 / rustix::param::clock_ticks_per_second() }
    }

    pub(crate) fn wall(&self, boot_ns: u64) -> Timestamp {
        Timestamp::from_unix_micros(((self.wall_minus_boot_ns + boot_ns as i128) / 1000) as i64)
    }
}

/// A sensor-wide id of one execution: when it started (boot clock) and its pid. A pid is
/// reused, a boot-clock nanosecond with it is not.
pub(crate) fn exec_id(boot_ns: u64, pid: u32) -> String {
    format!("{boot_ns:016x}{pid:08x}")
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Debug, Clone)]
struct Entry {
    process: Process,
    ppid: u32,
    container: Option<Container>,
    /// The pid in the process's own pid namespace (a container's), which is how processes
    /// there name it: a signal's target.
    ns_pid: Option<u32>,
    /// Insertion order, to evict the oldest when the table is full.
    seq: u64,
}

pub(crate) struct Table {
    entries: HashMap<u32, Entry>,
    max_entries: usize,
    max_ancestors: usize,
    seq: u64,
    clock: Clock,
}

impl Table {
    pub(crate) fn new(clock: Clock, max_entries: usize, max_ancestors: usize) -> Table {
        Table { entries: HashMap::new(), max_entries: max_entries.max(1), max_ancestors, seq: 0, clock }
    }

    /// Fills the table with the processes running now. Parents are resolved after all are
    /// read, since a parent may have a higher pid than its child.
    pub(crate) fn seed(&mut self) -> std::io::Result<()> {
        let infos: HashMap<u32, ProcInfo> =
            proc::pids()?.into_iter().filter_map(|pid| Some((pid, proc::read(pid)?))).collect();
        let mut sessions: HashMap<u32, bool> = HashMap::new();
        for &pid in infos.keys() {
            session_of(pid, &infos, &mut sessions, 0);
        }
        for info in infos.values() {
            let mut entry = self.entry_from_proc(info);
            entry.process.exec_session = sessions.get(&info.pid).copied();
            entry.process.parent_exec_id = infos.get(&info.ppid).map(|p| self.proc_exec_id(p));
            self.insert(info.pid, entry);
        }
        Ok(())
    }

    fn proc_exec_id(&self, info: &ProcInfo) -> String {
        exec_id(info.start_ticks * self.clock.ns_per_tick, info.pid)
    }

    fn entry_from_proc(&self, info: &ProcInfo) -> Entry {
        let binary = info.exe.clone().unwrap_or_default();
        let name = if binary.is_empty() { info.comm.clone() } else { file_name(&binary).to_owned() };
        let start_ns = info.start_ticks * self.clock.ns_per_tick;
        Entry {
            process: Process {
                pid: info.pid,
                exec_id: Some(self.proc_exec_id(info)),
                binary,
                name,
                args: info.argv.iter().skip(1).cloned().collect(),
                cwd: info.cwd.clone(),
                uid: info.uid,
                start_time: Some(self.clock.wall(start_ns)),
                ..Process::default()
            },
            ppid: info.ppid,
            container: info.container.clone(),
            ns_pid: Some(info.ns_pid),
            seq: 0,
        }
    }

    fn insert(&mut self, pid: u32, mut entry: Entry) {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&pid) {
            self.evict();
        }
        self.seq += 1;
        entry.seq = self.seq;
        self.entries.insert(pid, entry);
    }

    /// Makes room: first the entries whose process is gone (their exit was lost), else the
    /// oldest.
    fn evict(&mut self) {
        self.entries.retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if self.entries.len() >= self.max_entries
            && let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.seq).map(|(pid, _)| *pid)
        {
            self.entries.remove(&oldest);
        }
    }

    /// The entry of `pid`, read from /proc when the sensor never saw it start.
    fn load(&mut self, pid: u32) -> Option<&Entry> {
        if !self.entries.contains_key(&pid) {
            let info = proc::read(pid)?;
            let mut entry = self.entry_from_proc(&info);
            if let Some(parent) = self.entries.get(&info.ppid) {
                entry.process.parent_exec_id = parent.process.exec_id.clone();
                entry.process.exec_session = parent.process.exec_session;
            }
            self.insert(pid, entry);
        }
        self.entries.get(&pid)
    }

    /// The parent and the names of the ancestors above it, nearest first.
    fn lineage(&self, ppid: u32) -> (Option<Process>, Vec<String>) {
        let Some(parent) = self.entries.get(&ppid) else { return (None, Vec::new()) };
        let mut ancestors = Vec::new();
        let mut next = parent.ppid;
        while ancestors.len() < self.max_ancestors
            && next != 0
            && let Some(entry) = self.entries.get(&next)
        {
            ancestors.push(entry.process.name.clone());
            if entry.ppid == next {
                break;
            }
            next = entry.ppid;
        }
        (Some(parent.process.clone()), ancestors)
    }

    /// Updates the table with a record and returns the event it stands for, if any (a fork
    /// only updates the table).
    pub(crate) fn apply(&mut self, record: Record) -> Option<ProcessEvent> {
        let Record { header, body } = record;
        let action = match body {
            Body::Exec(exec) => return Some(self.exec(header, exec)),
            Body::Fork { child, child_start_boot_ns } => {
                self.fork(header.tgid, child, child_start_boot_ns);
                return None;
            }
            Body::Exit { status } => {
                let mut event = self.event(&header, Action::Exit { code: Some(Body::exit_code(status)) });
                if let Some(entry) = self.entries.remove(&header.tgid) {
                    event.process = entry.process;
                }
                return Some(event);
            }
            Body::Open { path, write, truncate } => {
                Action::FileOpen { path: self.resolve(header.tgid, &path), write, truncate }
            }
            Body::Unlink { path } => Action::FileDelete { path: self.resolve(header.tgid, &path) },
            Body::Rename { from, to } => {
                Action::FileRename { from: self.resolve(header.tgid, &from), to: self.resolve(header.tgid, &to) }
            }
            Body::Utimes { path } => Action::FileTimestamp { path: self.resolve(header.tgid, &path) },
            Body::Connect(endpoint) => Action::Connect(endpoint),
            Body::Redirect { fd, remote } => Action::SocketRedirect { fd, remote },
            Body::Namespace { syscall, flags } => Action::Namespace { syscall: syscall.to_owned(), flags },
            Body::Mount { source, target, fs_type } => Action::Mount { source, target, fs_type },
            Body::Ptrace { request, target_pid } => Action::Ptrace { request, target_pid },
            Body::Signal { target_pid, signal } => {
                // The target as the sender's pid namespace names it: a process of the same
                // container, else (a node process) the node's pid.
                let container = self.entries.get(&header.tgid).and_then(|e| e.container.as_ref()).map(|c| c.id.clone());
                let known = self
                    .entries
                    .values()
                    .find(|e| e.ns_pid == Some(target_pid) && e.container.as_ref().map(|c| c.id.clone()) == container)
                    .map(|e| e.process.name.clone());
                let target_name = known.or_else(|| {
                    proc::host_pid(header.tgid, target_pid)
                        .and_then(|pid| self.load(pid))
                        .map(|e| e.process.name.clone())
                });
                Action::Signal { target_pid, signal, target_name }
            }
        };
        Some(self.event(&header, action))
    }

    /// An event of the process `header.tgid`, as the table knows it.
    fn event(&mut self, header: &Header, action: Action) -> ProcessEvent {
        let (process, ppid, container) = match self.load(header.tgid) {
            Some(e) => (e.process.clone(), e.ppid, e.container.clone()),
            None => (Process { pid: header.tgid, uid: Some(header.uid), ..Process::default() }, 0, None),
        };
        let (parent, ancestors) = self.lineage(ppid);
        ProcessEvent {
            time: self.clock.wall(header.boot_ns),
            sensor: Sensor::Riposte,
            node: None,
            container,
            process,
            parent,
            ancestors,
            action,
        }
    }

    fn exec(&mut self, header: Header, exec: Exec) -> ProcessEvent {
        let pid = header.tgid;
        // An exec session is inherited: from this process's previous image (which had it
        // from its parent at fork), else from the parent.
        let inherited = self
            .entries
            .get(&pid)
            .or_else(|| self.entries.get(&exec.ppid))
            .and_then(|e| e.process.exec_session)
            .unwrap_or(false);
        let parent_exec_id = self.load(exec.ppid).and_then(|p| p.process.exec_id.clone());
        let name = if exec.filename.is_empty() { exec.comm.clone() } else { file_name(&exec.filename).to_owned() };
        let process = Process {
            pid,
            exec_id: Some(exec_id(header.boot_ns, pid)),
            parent_exec_id,
            binary: exec.filename,
            name,
            args: exec.argv.into_iter().skip(1).collect(),
            cwd: proc::read_link(&format!("/proc/{pid}/cwd")),
            uid: Some(header.uid),
            user: None,
            start_time: Some(self.clock.wall(exec.start_boot_ns)),
            exec_session: Some(exec.session_entry || inherited),
        };
        let container = proc::container_of(&exec.cgroup, &exec.cgroup_parent);
        // Read while the process is young; only a container's processes have another pid.
        let ns_pid = if container.is_some() { proc::ns_pid(pid) } else { Some(pid) };
        self.insert(pid, Entry { process, ppid: exec.ppid, container, ns_pid, seq: 0 });
        self.event(&header, Action::Exec)
    }

    fn fork(&mut self, parent: u32, child: u32, child_start_boot_ns: u64) {
        let Some(entry) = self.load(parent) else { return };
        let mut entry = entry.clone();
        entry.process.parent_exec_id = entry.process.exec_id.take();
        entry.process.exec_id = Some(exec_id(child_start_boot_ns, child));
        entry.process.pid = child;
        entry.ns_pid = if entry.container.is_some() { proc::ns_pid(child) } else { Some(child) };
        entry.process.start_time = Some(self.clock.wall(child_start_boot_ns));
        entry.ppid = parent;
        self.insert(child, entry);
    }

    /// A syscall's path made absolute where /proc can say against what: the working
    /// directory, or the directory `dirfd` names. Left relative when the process or the
    /// descriptor is already gone: the working directory it had at exec is no answer, a
    /// shell's `cd dir && : > file` writes elsewhere (found by CI, where the shell had
    /// exited before its open was read).
    fn resolve(&self, pid: u32, path: &SyscallPath) -> String {
        if path.path.starts_with('/') {
            return path.path.clone();
        }
        let base = if path.dirfd == AT_FDCWD {
            proc::read_link(&format!("/proc/{pid}/cwd"))
        } else {
            proc::read_link(&format!("/proc/{pid}/fd/{}", path.dirfd)).filter(|p| p.starts_with('/'))
        };
        match base {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), path.path),
            None => path.path.clone(),
        }
    }
}

/// Whether a process read from /proc is in an exec session: it entered its pid namespace
/// from outside (not pid 1 there, parent in fewer namespaces), or its parent is in one.
fn session_of(pid: u32, infos: &HashMap<u32, ProcInfo>, memo: &mut HashMap<u32, bool>, depth: usize) -> bool {
    if let Some(&known) = memo.get(&pid) {
        return known;
    }
    let Some(info) = infos.get(&pid) else { return false };
    let parent = infos.get(&info.ppid);
    let entry = info.ns_levels > 1 && info.ns_pid != 1 && parent.is_some_and(|p| p.ns_levels < info.ns_levels);
    let session = entry || (depth < 64 && parent.is_some() && session_of(info.ppid, infos, memo, depth + 1));
    memo.insert(pid, session);
    session
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, ppid: u32, ns_levels: usize, ns_pid: u32) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            comm: format!("p{pid}"),
            start_ticks: 1,
            uid: Some(0),
            argv: Vec::new(),
            exe: None,
            cwd: None,
            container: None,
            ns_levels,
            ns_pid,
        }
    }

    #[test]
    fn exec_sessions_start_where_a_process_enters_a_pid_namespace_and_are_inherited() {
        // 10: runc on the node; 11: the container's init (pid 1 inside); 12: its child;
        // 13: an exec'd shell (pid 5 inside, parent on the node); 14: the shell's child.
        let infos: HashMap<u32, ProcInfo> =
            [info(10, 1, 1, 10), info(11, 10, 2, 1), info(12, 11, 2, 2), info(13, 10, 2, 5), info(14, 13, 2, 6)]
                .into_iter()
                .map(|i| (i.pid, i))
                .collect();
        let mut memo = HashMap::new();
        let sessions: Vec<bool> = [10, 11, 12, 13, 14].iter().map(|&p| session_of(p, &infos, &mut memo, 0)).collect();
        assert_eq!(sessions, [false, false, false, true, true]);
    }

    #[test]
    fn exec_ids_are_fixed_width_hex_of_start_and_pid() {
        assert_eq!(exec_id(0x1234, 7), "000000000000123400000007");
    }

    #[test]
    fn the_table_evicts_gone_processes_then_the_oldest_when_full() {
        let mut table = Table::new(Clock::now(), 2, 8);
        let me = std::process::id();
        let gone = u32::MAX - 1;
        for pid in [gone, 1, me] {
            let entry = table.entry_from_proc(&info(pid, 1, 1, pid));
            table.insert(pid, entry);
        }
        assert!(
            table.entries.contains_key(&1) && table.entries.contains_key(&me) && !table.entries.contains_key(&gone)
        );
        table.insert(gone, table.entry_from_proc(&info(gone, 1, 1, gone)));
        assert_eq!(table.entries.len(), 2);
        assert!(!table.entries.contains_key(&1), "the oldest live entry goes");
    }
}
