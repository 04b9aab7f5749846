//! Hunting end to end: a real kube-apiserver auditing into Riposte's webhook, the events kept
//! in a real store on disk, the hunting API checking real users' tokens with the apiserver,
//! and `kubectl riposte hunt` / `go-hunt` as the analysts run them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, ResourceExt};
use riposte::hunting::forward::{ForwardSettings, Forwarder};
use riposte::hunting::server::Backend;
use riposte::hunting::{HuntingSink, record_objects};
use riposte::local::{LocalHuntingApi, Options, StaticUser};
use riposte::metrics::ForwardMetrics;
use riposte_crds::Alert;
use riposte_detect::audit::Timestamp;
use riposte_detect::runtime::{Action, Container, Endpoint, Process, ProcessEvent, Sensor};
use riposte_e2e::{Env, detection_settings, eventually};
use riposte_hunt::query::Limits;
use riposte_hunt::store::{Store, StoreSettings};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn plugin(kubeconfig: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-riposte"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("the plugin runs");
    Run {
        code: out.status.code().expect("the plugin exits by itself"),
        stdout: String::from_utf8(out.stdout).expect("output is text"),
        stderr: String::from_utf8(out.stderr).expect("output is text"),
    }
}

fn kubeconfig_of(env: &Env, user: &str) -> PathBuf {
    let path = env.plane.kubeconfig_path().with_file_name(format!("kubeconfig-{user}"));
    std::fs::write(&path, env.plane.kubeconfig_for(user, &format!("token-{user}"))).unwrap();
    path
}

fn json_rows(run: &Run) -> Vec<serde_json::Map<String, Value>> {
    assert_eq!(run.code, 0, "the hunt failed:\n{}{}", run.stdout, run.stderr);
    let result: Value = serde_json::from_str(&run.stdout).expect("JSON output");
    result["rows"].as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect()
}

const PRIVILEGED_PODS: &str = r#"CloudAuditEvents
| where Timestamp > ago(1d)
| where OperationName == "create"
| where RawEventData.ObjectRef.resource == "pods" and isnull(RawEventData.ObjectRef.subresource)
| where RawEventData.ResponseStatus.code startswith "20"
| extend PodName = RawEventData.RequestObject.metadata.name
| extend PodNamespace = RawEventData.ObjectRef.namespace
| mv-expand Container = RawEventData.RequestObject.spec.containers
| extend ContainerName = Container.name
| where Container.securityContext.privileged == "true"
| extend Username = RawEventData.User.username
| project Timestamp, AzureResourceId , OperationName, IPAddress, UserAgent, PodName, PodNamespace, ContainerName, Username"#;

#[tokio::test]
async fn hunts_find_the_attackers_api_calls_and_only_hunters_may_hunt() {
    let users = ["vera", "rita", "mallory"]
        .iter()
        .map(|name| StaticUser { name: (*name).into(), token: format!("token-{name}"), groups: vec![] })
        .collect();
    let mut env = Env::with_audit_webhook_and(Options { users, ..Options::default() }, 32 << 20).await;
    env.install_chart();
    for (user, role) in [("vera", "riposte-viewer"), ("rita", "riposte-responder"), ("mallory", "cluster-admin")] {
        let binding = format!("{user}-{role}");
        let out = env.kubectl(&["create", "clusterrolebinding", &binding, "--clusterrole", role, "--user", user]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let root = std::env::temp_dir().join(format!("riposte-hunt-e2e-{}", std::process::id()));
    let store = Store::open(StoreSettings::new(&root, "e2e")).expect("the store opens");
    let sink = HuntingSink::new(store.clone(), "e2e-cluster");
    let settings = riposte::detection::pipeline::DetectionSettings {
        hunting: sink.clone(),
        ..detection_settings(riposte_detect::Config::default(), Duration::ZERO)
    };
    env.start_detection(env.client.clone(), settings);
    tokio::spawn(record_objects(env.client.clone(), sink));
    let api = LocalHuntingApi::bind(Limits::default()).await.expect("the hunting API binds");
    let ca = root.with_extension("ca.crt");
    std::fs::write(&ca, &api.ca_pem).unwrap();
    tokio::spawn(api.server.serve(env.client.clone(), Backend::Local(store.clone()), HuntingSink::default()));
    let endpoint = ["--url", api.url.as_str(), "--ca-file", ca.to_str().unwrap()];

    env.namespace("shop").await;
    let mallory = kubeconfig_of(&env, "mallory");
    let created = riposte_e2e::kubectl_with(
        &mallory,
        &["run", "miner", "-n", "shop", "--image=busybox", "--privileged", "--", "sleep", "3600"],
        None,
    );
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    // No node runs it: the exec is refused, and audited all the same.
    let exec = riposte_e2e::kubectl_with(&mallory, &["exec", "miner", "-n", "shop", "--", "id"], None);
    assert!(!exec.status.success());
    let alert = eventually("the privileged container's alert", || async {
        Api::<Alert>::namespaced(env.client.clone(), "shop")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|a| a.spec.alert_type.0 == "K8S_PrivilegedContainer")
    })
    .await;

    let (vera, rita) = (kubeconfig_of(&env, "vera"), kubeconfig_of(&env, "rita"));
    let hunt = |kubeconfig: PathBuf, args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        plugin(&kubeconfig, &args).await
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        all.extend(endpoint.iter().map(|s| (*s).to_owned()));
        all
    };

    // A viewer reads alerts and actions but may not hunt; a stranger is not let in at all.
    let refused = hunt(vera.clone(), args(&["hunt", "CloudAuditEvents | take 1"])).await;
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("vera may not hunt") && refused.stderr.contains("(403)"), "{}", refused.stderr);
    let stranger = hunt(vera.clone(), args(&["hunt", "CloudAuditEvents | take 1", "--token", "not-a-token"])).await;
    assert!(stranger.stderr.contains("does not accept this token (401)"), "{}", stranger.stderr);

    // The documented hunt for privileged pods, as written, finds mallory's.
    let found = eventually("mallory's pod in the privileged-pods hunt", || {
        let run = hunt(rita.clone(), args(&["hunt", PRIVILEGED_PODS, "--format", "json"]));
        async move {
            let rows = json_rows(&run.await);
            rows.into_iter().find(|r| r["PodName"] == "miner")
        }
    })
    .await;
    assert_eq!(found["Username"], "mallory");
    assert_eq!(found["PodNamespace"], "shop");
    assert_eq!(found["ContainerName"], "miner");
    assert_eq!(found["OperationName"], "create");
    // Defender's AzureResourceId names the cluster: ClusterName here.
    assert_eq!(found["AzureResourceId"], "e2e-cluster");

    // Go hunt: the alert's pod and user, newest first: the refused exec after the creation,
    // and the alert itself.
    let timeline = eventually("the go hunt's timeline", || {
        let run = hunt(rita.clone(), args(&["go-hunt", &alert.name_any(), "-n", "shop", "--format", "json"]));
        async move {
            let rows = json_rows(&run.await);
            let has = |table: &str, activity: &str| {
                rows.iter().any(|r| r["Table"] == table && r["Activity"].as_str().is_some_and(|a| a.contains(activity)))
            };
            let alerted =
                rows.iter().any(|r| r["Table"] == "RiposteAlerts" && r["ActionType"] == "K8S_PrivilegedContainer");
            (has("CloudAuditEvents", " /api/v1/namespaces/shop/pods/miner/exec")
                && has("CloudAuditEvents", "create /api/v1/namespaces/shop/pods/miner (201)")
                && alerted)
                .then_some(rows)
        }
    })
    .await;
    let times: Vec<&str> = timeline.iter().map(|r| r["Timestamp"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let position = |activity: &str| timeline.iter().position(|r| r["Activity"].as_str().unwrap().contains(activity));
    assert!(
        position("pods/miner/exec") < position("pods/miner (201)"),
        "the exec came after the creation: {timeline:#?}"
    );
    assert!(timeline.iter().any(|r| r["Account"] == "mallory"));
    let execs = timeline.iter().filter(|r| r["Activity"].as_str().unwrap().contains("pods/miner/exec")).count();
    assert_eq!(execs, 2, "one row per request (kubectl tries a websocket, then SPDY): {timeline:#?}");
    assert!(
        timeline.iter().all(|r| r["Account"] != "riposte-admin"),
        "Riposte's own reads of the alert and reviews of the hunter are left out"
    );

    // SQL, from a file, as CSV; and what is not a hunt is refused with the reason.
    let file = root.with_extension("sql");
    std::fs::write(
        &file,
        r#"SELECT "UserName", count(*) AS n FROM "CloudAuditEvents" WHERE "UserName" = 'mallory' GROUP BY 1"#,
    )
    .unwrap();
    let csv = hunt(rita.clone(), args(&["hunt", "-f", file.to_str().unwrap(), "--format", "csv"])).await;
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    assert!(csv.stdout.starts_with("UserName,n\r\nmallory,"), "{}", csv.stdout);
    let drop = hunt(rita.clone(), args(&["hunt", "DROP TABLE \"CloudAuditEvents\""])).await;
    assert!(drop.stderr.contains("hunting is read-only"), "{}", drop.stderr);
    let old = hunt(rita.clone(), args(&["hunt", "CloudAuditEvents | take 1", "--since", "40d"])).await;
    assert!(old.stderr.contains("more than 30 days back"), "{}", old.stderr);
    let table = hunt(
        rita,
        args(&["hunt", "CloudAuditEvents | where UserName == 'mallory' | summarize count() by OperationName"]),
    )
    .await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("OperationName"), "{}", table.stdout);
    let _ = std::fs::remove_dir_all(&root);
}

/// The Role a node sensor's ServiceAccount has for sending events (charts/riposte's sensor.yaml).
const SENSOR_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: test-sensor-events }
rules:
  - apiGroups: ["riposte.dev"]
    resources: ["hunts/events"]
    verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: test-sensor-events }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: test-sensor-events }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: node-sensor }]
"#;

/// A reverse shell on node-7, as the node's sensor reports it.
fn reverse_shell(at: i64) -> Vec<ProcessEvent> {
    let container = Container {
        id: "c-web-0".into(),
        name: Some("app".into()),
        image: Some("shop/web:1".into()),
        pod: Some("web-0".into()),
        namespace: Some("shop".into()),
        ..Container::default()
    };
    let bash = Process {
        pid: 4242,
        name: "bash".into(),
        binary: "/bin/bash".into(),
        args: vec!["-i".into()],
        ..Process::default()
    };
    let event = |offset: i64, action: Action| ProcessEvent {
        time: Timestamp::from_unix_micros(at + offset),
        sensor: Sensor::Riposte,
        node: Some("node-7".into()),
        container: Some(container.clone()),
        process: bash.clone(),
        parent: Some(Process { pid: 1, name: "nginx".into(), ..Process::default() }),
        ancestors: vec![],
        action,
    };
    vec![
        event(0, Action::Exec),
        event(1, Action::Connect(Endpoint { address: "203.0.113.9".into(), port: 4444, protocol: "tcp".into() })),
        event(2, Action::Exit { code: Some(0) }),
    ]
}

#[tokio::test]
async fn a_node_sensors_events_reach_the_operators_store_and_only_the_sensor_may_send_them() {
    let users = ["node-sensor", "rita"]
        .iter()
        .map(|name| StaticUser { name: (*name).into(), token: format!("token-{name}"), groups: vec![] })
        .collect();
    let env = Env::start_with(Options { users, ..Options::default() }).await;
    env.namespace("riposte-system").await;
    env.install_chart();
    let out = env.kubectl_stdin(&["apply", "-f", "-"], SENSOR_ROLE);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.kubectl(&[
        "create",
        "clusterrolebinding",
        "rita-responder",
        "--clusterrole",
        "riposte-responder",
        "--user",
        "rita",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let root = std::env::temp_dir().join(format!("riposte-hunt-events-{}", std::process::id()));
    let store = Store::open(StoreSettings::new(&root, "operator")).expect("the store opens");
    let api = LocalHuntingApi::bind(Limits::default()).await.expect("the hunting API binds");
    let ca = root.with_extension("ca.crt");
    std::fs::write(&ca, &api.ca_pem).unwrap();
    let operator_sink = HuntingSink::new(store.clone(), "e2e-cluster");
    tokio::spawn(api.server.serve(env.client.clone(), Backend::Local(store.clone()), operator_sink));

    // The sensor's forwarder, with the sensor's token; and one with a hunter's token.
    let forwarder_of = |user: &str| {
        let token_file = root.with_extension(format!("{user}.token"));
        std::fs::write(&token_file, format!("token-{user}\n")).unwrap();
        let settings = ForwardSettings { url: api.url.clone(), ca_file: ca.clone(), token_file };
        let metrics = ForwardMetrics::default();
        let (forwarder, _task) = Forwarder::start(settings, metrics.clone()).expect("the forwarder starts");
        (HuntingSink::forwarding(forwarder), metrics)
    };
    let (sensor, sensor_metrics) = forwarder_of("node-sensor");
    let (impostor, impostor_metrics) = forwarder_of("rita");
    let now = riposte_hunt::store::now_micros();
    for event in reverse_shell(now - 60_000_000) {
        sensor.process(&event);
    }
    impostor.process(&reverse_shell(now - 30_000_000)[0]);

    let rita = kubeconfig_of(&env, "rita");
    let hunt = [
        "hunt",
        "CloudProcessEvents | where NodeName == 'node-7' | project Timestamp, ProcessName, ActionType, RemoteIP, RemotePort",
        "--since",
        "1h",
        "--format",
        "json",
        "--url",
        api.url.as_str(),
        "--ca-file",
        ca.to_str().unwrap(),
    ];
    let rows = eventually("the sensor's events in the operator's store", || async {
        let rows = json_rows(&plugin(&rita, &hunt).await);
        (rows.len() >= 3 && impostor_metrics.rejected.get() == 1).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 3, "the sensor's three events, none of the hunter's: {rows:#?}");
    let actions: Vec<&str> = rows.iter().map(|r| r["ActionType"].as_str().unwrap()).collect();
    assert!(actions.contains(&"connect") && actions.contains(&"exec"), "{actions:?}");
    let connect = rows.iter().find(|r| r["ActionType"] == "connect").unwrap();
    assert_eq!((connect["RemoteIP"].as_str(), connect["RemotePort"].as_i64()), (Some("203.0.113.9"), Some(4444)));
    assert_eq!(sensor_metrics.sent.get(), 3);
    assert_eq!((impostor_metrics.sent.get(), impostor_metrics.rejected.get()), (0, 1), "a hunter may not send events");
    let _ = std::fs::remove_dir_all(&root);
}
