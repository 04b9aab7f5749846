//! The sensor against real processes on this machine. These need root (the sensor needs
//! CAP_BPF and CAP_PERFMON; unshare and nsenter need CAP_SYS_ADMIN) and a kernel with BTF.
//! Without them they fail, saying why, rather than skip: CI runs them as root.

use std::process::Command;
use std::time::{Duration, Instant};

use riposte_detect::runtime::{Action, Endpoint, ProcessEvent};
use riposte_sensor::{Options, Sensor};

fn start() -> Sensor {
    Sensor::start(Options::default()).unwrap_or_else(|e| {
        panic!(
            "the sensor did not start (these tests need root (the sensor itself CAP_BPF + CAP_PERFMON) and BTF at /sys/kernel/btf/vmlinux): {e}\n{e:?}"
        )
    })
}

/// Waits (up to 10 s) for an event matching `want`; on timeout, shows what the processes
/// of interest did.
async fn expect(sensor: &mut Sensor, what: &str, mut want: impl FnMut(&ProcessEvent) -> bool) -> ProcessEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sensor.recv()).await {
            Ok(Some(event)) if want(&event) => return event,
            Ok(Some(event)) => {
                if seen.len() < 2000 {
                    seen.push(event);
                }
            }
            Ok(None) => panic!("the sensor stopped before {what}"),
            Err(_) => {
                let shown: Vec<String> = seen
                    .iter()
                    .filter(|e| !matches!(e.action, Action::Exit { .. }))
                    .map(|e| format!("{} {} {:?}", e.process.pid, e.process.name, e.action))
                    .collect();
                panic!("no {what} within 10 s; saw:\n{}", shown.join("\n"));
            }
        }
    }
}

fn sh(script: &str) -> u32 {
    let mut child = Command::new("/bin/sh").arg("-c").arg(script).spawn().expect("spawning /bin/sh");
    let pid = child.id();
    std::thread::spawn(move || child.wait());
    pid
}

#[tokio::test]
async fn exec_of_sh_carries_args_and_parent() {
    let mut sensor = start();
    let marker = "riposte-exec-marker";
    let pid = sh(&format!("echo {marker} >/dev/null; /bin/true"));
    let event = expect(&mut sensor, "the exec of /bin/sh", |e| e.process.pid == pid && e.action == Action::Exec).await;
    assert_eq!(event.process.binary, "/bin/sh");
    assert_eq!(event.process.name, "sh");
    assert_eq!(event.process.args, ["-c", &format!("echo {marker} >/dev/null; /bin/true")]);
    assert_eq!(event.process.uid, Some(0));
    assert!(event.process.exec_id.is_some());
    assert!(event.process.start_time.is_some());
    assert_eq!(event.process.exec_session, Some(false));
    assert_eq!(event.container, None);
    let parent = event.parent.expect("the test process is the parent");
    assert_eq!(parent.pid, std::process::id());
    assert_eq!(event.process.parent_exec_id, parent.exec_id);

    let child = expect(&mut sensor, "the exec of /bin/true", |e| {
        e.action == Action::Exec && e.parent.as_ref().is_some_and(|p| p.pid == pid)
    })
    .await;
    assert_eq!(child.process.name, "true");
    assert_eq!(child.parent.unwrap().name, "sh");
    assert!(!child.ancestors.is_empty(), "the test binary is the grandparent");
    expect(&mut sensor, "the exit of sh", |e| e.process.pid == pid && e.action == Action::Exit { code: Some(0) }).await;
}

/// A directory of its own for a test, under /tmp.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("riposte-sensor-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A local TCP listener that accepts (and holds) connections in the background.
fn listener() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn child_of(event: &ProcessEvent, pid: u32) -> bool {
    event.parent.as_ref().is_some_and(|p| p.pid == pid)
}

#[tokio::test]
async fn reading_etc_shadow_is_an_open_not_for_writing() {
    let mut sensor = start();
    let pid = sh("cat /etc/shadow >/dev/null");
    let event = expect(&mut sensor, "cat's open of /etc/shadow", |e| {
        child_of(e, pid) && matches!(&e.action, Action::FileOpen { path, .. } if path == "/etc/shadow")
    })
    .await;
    assert_eq!(event.process.name, "cat");
    assert_eq!(event.process.args, ["/etc/shadow"]);
    assert_eq!(event.action, Action::FileOpen { path: "/etc/shadow".into(), write: false, truncate: false });
}

#[tokio::test]
async fn truncating_a_history_is_an_open_for_writing_and_truncating() {
    let mut sensor = start();
    let dir = scratch_dir("truncate");
    let history = dir.join(".bash_history");
    let pid = sh(&format!(": > {}", history.display()));
    let event = expect(&mut sensor, "the shell's truncating open", |e| {
        e.process.pid == pid && matches!(&e.action, Action::FileOpen { .. })
    })
    .await;
    assert_eq!(event.action, Action::FileOpen { path: history.display().to_string(), write: true, truncate: true });
}

#[tokio::test]
async fn relative_history_paths_match_and_are_resolved() {
    let mut sensor = start();
    let dir = scratch_dir("relative");
    let pid = sh(&format!("cd {} && : > .zsh_history", dir.display()));
    let event = expect(&mut sensor, "the relative open", |e| {
        e.process.pid == pid && matches!(&e.action, Action::FileOpen { .. })
    })
    .await;
    let Action::FileOpen { path, .. } = event.action else { unreachable!() };
    assert!(path == dir.join(".zsh_history").display().to_string() || path == ".zsh_history", "{path}");
}

#[tokio::test]
async fn removing_a_history_is_a_delete() {
    let mut sensor = start();
    let dir = scratch_dir("rm");
    let history = dir.join("x_history");
    std::fs::write(&history, "ls\n").unwrap();
    let pid = sh(&format!("rm -f {}", history.display()));
    let event = expect(&mut sensor, "rm's unlink", |e| {
        (e.process.pid == pid || child_of(e, pid)) && matches!(&e.action, Action::FileDelete { .. })
    })
    .await;
    assert_eq!(event.process.name, "rm");
    assert_eq!(event.action, Action::FileDelete { path: history.display().to_string() });
}

#[tokio::test]
async fn renaming_onto_a_watched_name_is_a_rename() {
    let mut sensor = start();
    let dir = scratch_dir("mv");
    let from = dir.join("notes");
    let to = dir.join(".bash_history");
    std::fs::write(&from, "x").unwrap();
    let pid = sh(&format!("mv {} {}", from.display(), to.display()));
    let event = expect(&mut sensor, "mv's rename", |e| {
        (e.process.pid == pid || child_of(e, pid)) && matches!(&e.action, Action::FileRename { .. })
    })
    .await;
    assert_eq!(event.action, Action::FileRename { from: from.display().to_string(), to: to.display().to_string() });
}

#[tokio::test]
async fn touch_with_a_date_on_a_watched_file_is_a_timestamp_change() {
    let mut sensor = start();
    let dir = scratch_dir("touch");
    let wtmp = dir.join("wtmp");
    std::fs::write(&wtmp, "").unwrap();
    let pid = sh(&format!("touch -d '2020-01-01 00:00' {}", wtmp.display()));
    let event = expect(&mut sensor, "touch's utimensat", |e| {
        (e.process.pid == pid || child_of(e, pid)) && matches!(&e.action, Action::FileTimestamp { .. })
    })
    .await;
    assert_eq!(event.process.name, "touch");
    assert_eq!(event.action, Action::FileTimestamp { path: wtmp.display().to_string() });
}

#[tokio::test]
async fn files_outside_the_filter_produce_nothing() {
    let mut sensor = start();
    let dir = scratch_dir("unwatched");
    let plain = dir.join("plain.txt");
    let pid = sh(&format!("echo x > {p}; cat {p} >/dev/null; touch -d '2020-01-01' {p}; rm {p}", p = plain.display()));
    // The shell's exit comes after everything it and its children did.
    let mut file_events = Vec::new();
    expect(&mut sensor, "the shell's exit", |e| {
        if matches!(
            &e.action,
            Action::FileOpen { path, .. } | Action::FileDelete { path } | Action::FileTimestamp { path }
                if path.contains("plain.txt")
        ) {
            file_events.push(e.clone());
        }
        e.process.pid == pid && matches!(e.action, Action::Exit { .. })
    })
    .await;
    assert!(file_events.is_empty(), "unwatched path reported: {file_events:?}");
}

#[tokio::test]
async fn dev_tcp_connects_name_the_address_and_port() {
    let mut sensor = start();
    let port = listener();
    let pid = sh(&format!("exec /bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'"));
    // bash may first ask the name service (nscd's unix socket, where it runs) about the host.
    let event = expect(&mut sensor, "bash's TCP connect", |e| {
        e.process.pid == pid && matches!(&e.action, Action::Connect(endpoint) if endpoint.protocol == "tcp")
    })
    .await;
    assert_eq!(event.process.name, "bash");
    assert_eq!(event.action, Action::Connect(Endpoint { address: "127.0.0.1".into(), port, protocol: "tcp".into() }));
}

#[tokio::test]
async fn a_reverse_shell_redirects_stdio_to_its_socket() {
    let mut sensor = start();
    let port = listener();
    let pid = sh(&format!("exec /bin/bash -c 'exec 0<>/dev/tcp/127.0.0.1/{port} 1>&0 2>&0'"));
    let remote = Some(Endpoint { address: "127.0.0.1".into(), port, protocol: "tcp".into() });
    let mut fds = Vec::new();
    while fds.len() < 3 {
        let event = expect(&mut sensor, "the redirects of 0, 1 and 2", |e| {
            e.process.pid == pid && matches!(e.action, Action::SocketRedirect { .. })
        })
        .await;
        let Action::SocketRedirect { fd, remote: got } = event.action else { unreachable!() };
        assert_eq!(got, remote);
        fds.push(fd);
    }
    fds.sort();
    assert_eq!(fds, [0, 1, 2]);
}

#[tokio::test]
async fn unshare_creates_a_namespace() {
    let mut sensor = start();
    let pid = sh("unshare -U true");
    const CLONE_NEWUSER: u64 = 0x1000_0000;
    let event = expect(&mut sensor, "unshare's namespace", |e| {
        (e.process.pid == pid || child_of(e, pid)) && matches!(e.action, Action::Namespace { .. })
    })
    .await;
    assert_eq!(event.process.name, "unshare");
    assert_eq!(event.action, Action::Namespace { syscall: "unshare".into(), flags: CLONE_NEWUSER });
}

#[tokio::test]
async fn signals_name_their_target_and_signal_zero_is_ignored() {
    let mut sensor = start();
    // The child's comm turns to sleep a moment before its exec is reported, so the shell
    // waits for it and then a little more before signalling.
    let pid = sh(concat!(
        "sleep 30 & s=$!; while read c < /proc/$s/comm; [ \"$c\" != sleep ]; do :; done; ",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; kill -0 $s; kill -TERM $s; wait"
    ));
    let mut sleep = None;
    let mut signals = Vec::new();
    expect(&mut sensor, "the shell's exit", |e| {
        if child_of(e, pid) && e.action == Action::Exec {
            sleep = Some(e.process.pid);
        }
        if e.process.pid == pid && matches!(e.action, Action::Signal { .. }) {
            signals.push(e.action.clone());
        }
        e.process.pid == pid && matches!(e.action, Action::Exit { .. })
    })
    .await;
    let sleep = sleep.expect("the sleep's exec");
    assert_eq!(
        signals,
        [Action::Signal { target_pid: sleep, signal: 15, target_name: Some("sleep".into()) }],
        "kill -0 must not be reported, kill -TERM must"
    );
}

#[tokio::test]
async fn exits_carry_their_code() {
    let mut sensor = start();
    let pid = sh("exit 3");
    let event =
        expect(&mut sensor, "the exit", |e| e.process.pid == pid && matches!(e.action, Action::Exit { .. })).await;
    assert_eq!(event.action, Action::Exit { code: Some(3) });
    assert_eq!(event.process.name, "sh");
}

#[tokio::test]
async fn entering_a_pid_namespace_from_outside_is_an_exec_session() {
    let mut sensor = start();
    // A "container": sleep as pid 1 of a new pid namespace; then an "exec" into it.
    let mut init = Command::new("unshare").args(["--pid", "--fork", "--kill-child", "sleep", "30"]).spawn().unwrap();
    let unshare = init.id();
    let sleep = expect(&mut sensor, "the namespace's init", |e| child_of(e, unshare) && e.action == Action::Exec).await;
    assert_eq!(sleep.process.exec_session, Some(false), "pid 1 of its namespace is the entry point");
    let pid = sh(&format!("nsenter -t {} -p /bin/sh -c '/bin/true; exit 0'", sleep.process.pid));
    let entered = expect(&mut sensor, "the shell in the namespace", |e| {
        e.action == Action::Exec
            && e.process.binary == "/bin/sh"
            && e.process.args.first().is_some_and(|a| a == "-c")
            && e.ancestors.first().is_some_and(|a| a == "sh")
            && e.process.pid != pid
    })
    .await;
    assert_eq!(entered.process.exec_session, Some(true));
    let child =
        expect(&mut sensor, "its child", |e| child_of(e, entered.process.pid) && e.action == Action::Exec).await;
    assert_eq!(child.process.name, "true");
    assert_eq!(child.process.exec_session, Some(true), "inherited");
    let _ = init.kill();
    let _ = init.wait();
}

#[tokio::test]
async fn processes_in_a_kubepods_cgroup_carry_the_container_and_pod() {
    let mut sensor = start();
    // A container's cgroup as the kubelet's cgroupfs driver lays it out (memory controller).
    let pod_uid = "5e1f0c2a-7b3d-4c8e-9a01-23456789abcd";
    let id = format!("{:064x}", 0x5e750u64 + u64::from(std::process::id()));
    let kubepods = "/sys/fs/cgroup/memory/kubepods";
    let kubepods_existed = std::path::Path::new(kubepods).exists();
    let pod = format!("{kubepods}/besteffort/pod{pod_uid}");
    let cgroup = format!("{pod}/{id}");
    std::fs::create_dir_all(&cgroup).unwrap_or_else(|e| panic!("creating {cgroup} (needs cgroup v1 memory): {e}"));
    let pid = sh(&format!("echo $$ > {cgroup}/cgroup.procs && exec /bin/true"));
    let event = expect(&mut sensor, "the exec in the container's cgroup", |e| {
        e.process.pid == pid && e.action == Action::Exec && e.process.name == "true"
    })
    .await;
    let container = event.container.expect("a container");
    assert_eq!(container.id, id);
    assert_eq!(container.pod_uid.as_deref(), Some(pod_uid));
    assert_eq!((container.name, container.pod, container.namespace, container.image), (None, None, None, None));
    expect(&mut sensor, "the exit", |e| e.process.pid == pid && matches!(e.action, Action::Exit { .. })).await;
    // The kernel refuses rmdir while the process (or a child cgroup) is still going away.
    let mut dirs = vec![cgroup, pod];
    if !kubepods_existed {
        dirs.extend([format!("{kubepods}/besteffort"), kubepods.to_owned()]);
    }
    for dir in dirs {
        for _ in 0..100 {
            if std::fs::remove_dir(&dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[tokio::test]
async fn mounts_name_source_target_and_type() {
    let mut sensor = start();
    let dir = scratch_dir("mount");
    let pid = sh(&format!("mount -t tmpfs riposte-test {d} && umount {d}", d = dir.display()));
    let event = expect(&mut sensor, "mount's mount", |e| {
        (e.process.pid == pid || child_of(e, pid)) && matches!(e.action, Action::Mount { .. })
    })
    .await;
    assert_eq!(
        event.action,
        Action::Mount { source: "riposte-test".into(), target: dir.display().to_string(), fs_type: "tmpfs".into() }
    );
}

#[tokio::test]
async fn unix_socket_connects_name_the_path() {
    let mut sensor = start();
    let path = scratch_dir("unix").join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let _stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let address = path.display().to_string();
    let event = expect(&mut sensor, "this process's unix connect", |e| {
        e.process.pid == std::process::id() && matches!(&e.action, Action::Connect(end) if end.address == address)
    })
    .await;
    assert_eq!(event.action, Action::Connect(Endpoint { address, port: 0, protocol: "unix".into() }));
}

#[tokio::test]
async fn ptrace_names_the_request_and_target() {
    let mut sensor = start();
    let pid = sh("exec strace -o /dev/null /bin/true");
    let event =
        expect(&mut sensor, "strace's ptrace", |e| e.process.pid == pid && matches!(e.action, Action::Ptrace { .. }))
            .await;
    assert_eq!(event.process.name, "strace");
    let Action::Ptrace { target_pid, .. } = event.action else { unreachable!() };
    assert_ne!(target_pid, 0, "strace traces its child");
}
