//! Test harness: a real etcd and kube-apiserver per test (started by `riposte::local`), the
//! CRDs from `crds/`, and the operator running in-process against them.
#![forbid(unsafe_code)]

pub mod node;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use riposte::controller::Settings;
use riposte::detection::cluster::{self, ClusterSettings};
use riposte::detection::pipeline::{self, DetectionSettings};
use riposte::guard::Guardrails;
use riposte::local::{self, LocalControlPlane, Options};
use riposte::metrics::{DetectionMetrics, Metrics};
use riposte_crds::{Phase, ResponseAction, ResponseActionStatus};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(30);
/// The local control plane's admin, in system:masters.
pub const ADMIN: &str = "riposte-admin";

/// A control plane with the CRDs installed, and optionally the operator running.
pub struct Env {
    pub plane: LocalControlPlane,
    pub client: Client,
    operator: Option<JoinHandle<()>>,
    /// Where the running operator serves /metrics, /healthz and /readyz.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The audit webhook's side, when the apiserver audits into Riposte.
    pub audit: Option<Audit>,
}

/// Riposte's audit webhook, serving in this process for the apiserver of an [`Env`], and
/// the rules, started and stopped by the test.
pub struct Audit {
    /// The webhook's URL and CA, and the client certificate the apiserver uses.
    pub target: local::AuditWebhookTarget,
    pub metrics: DetectionMetrics,
    receiver: Option<pipeline::Receiver>,
    detector: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<pipeline::Receiver>)>,
    cluster_watch: Option<JoinHandle<()>>,
    server: JoinHandle<()>,
}

/// The detection queue of the tests and benchmarks: as the operator's defaults.
pub const AUDIT_QUEUE: pipeline::QueueLimits = pipeline::QueueLimits { events: 100_000, bytes: 64 << 20 };

/// Serves `webhook` into a new queue of `limits`, in the background: the task serving, the
/// rules' end of the queue, and the metrics the webhook counts in.
pub fn serve_audit_webhook(
    webhook: riposte::detection::webhook::Webhook,
    limits: pipeline::QueueLimits,
) -> (JoinHandle<()>, pipeline::Receiver, DetectionMetrics) {
    let (server, receiver, metrics, _runtime) = serve_webhooks(webhook, limits);
    (server, receiver, metrics)
}

/// Writes the webhook's CA and a client's certificate and key into `dir` (for curl's
/// `--cacert dir/ca.crt`); returns curl's arguments that present the client certificate.
pub fn write_webhook_credentials(target: &riposte::local::AuditWebhookTarget, dir: &std::path::Path) -> Vec<String> {
    for (name, pem) in
        [("ca.crt", &target.ca_pem), ("client.crt", &target.client_cert_pem), ("client.key", &target.client_key_pem)]
    {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    vec![
        "--cert".to_owned(),
        dir.join("client.crt").display().to_string(),
        "--key".to_owned(),
        dir.join("client.key").display().to_string(),
    ]
}

/// The runtime side of the webhooks: Falco's alerts as queued for the rules.
pub struct RuntimeInputs {
    pub receiver: tokio::sync::mpsc::Receiver<(riposte::detection::runtime::Input, std::time::Instant)>,
    pub metrics: riposte::metrics::RuntimeMetrics,
}

/// As [`serve_audit_webhook`], with the Falco endpoints' queue too.
pub fn serve_webhooks(
    webhook: riposte::detection::webhook::Webhook,
    limits: pipeline::QueueLimits,
) -> (JoinHandle<()>, pipeline::Receiver, DetectionMetrics, RuntimeInputs) {
    let mut registry = Registry::default();
    let metrics = DetectionMetrics::register(&mut registry);
    let runtime_metrics = riposte::metrics::RuntimeMetrics::register(&mut registry);
    let (queue, receiver) = pipeline::queue(limits, metrics.clone());
    let (inlet, runtime_receiver) = riposte::detection::runtime::inlet(1024, runtime_metrics.clone());
    let served = metrics.clone();
    let server = tokio::spawn(async move {
        webhook.serve(queue, inlet, served).await.expect("the webhooks serve");
    });
    (server, receiver, metrics, RuntimeInputs { receiver: runtime_receiver, metrics: runtime_metrics })
}

/// How the rules run in tests: the default lists, a baseline that learns for `learning`,
/// saved every second, in riposte-system.
pub fn detection_settings(config: riposte_detect::Config, learning: Duration) -> DetectionSettings {
    DetectionSettings {
        config,
        learning,
        scan_interval: Duration::from_secs(3600),
        namespace: "riposte-system".into(),
        baseline_save_interval: Duration::from_secs(1),
        hunting: riposte::hunting::HuntingSink::default(),
    }
}

impl Env {
    /// A control plane with Riposte's CRDs installed from the YAML under `crds/`.
    pub async fn start() -> Env {
        Env::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Env {
        init_logging();
        let plane = LocalControlPlane::start(options).await.expect("local control plane starts");
        let client = plane.client().await.expect("admin client");
        let env = Env { plane, client, operator: None, metrics_addr: None, audit: None };
        let out = env.kubectl(&["apply", "--server-side", "-f", &repo_path("crds").display().to_string()]);
        assert!(out.status.success(), "kubectl apply -f crds/ failed: {}", String::from_utf8_lossy(&out.stderr));
        env.wait_for_crds().await;
        env
    }

    /// A control plane whose apiserver audits, with the chart's policy, into Riposte's
    /// webhook on loopback. The webhook queues from the start; the rules run from
    /// [`Env::start_detection`] on.
    pub async fn with_audit_webhook() -> Env {
        Env::with_audit_webhook_and(Options::default(), 32 * 1024 * 1024).await
    }

    /// As [`Env::with_audit_webhook`], with more `options` (more users), and a webhook that
    /// refuses bodies over `max_body_bytes` (413: the apiserver drops those batches).
    pub async fn with_audit_webhook_and(options: Options, max_body_bytes: usize) -> Env {
        let local = riposte::local::LocalAuditWebhook::bind(max_body_bytes).await.expect("the audit webhook binds");
        let options = Options { audit_webhook: Some(local.target.clone()), ..options };
        let mut env = Env::start_with(options).await;
        let (server, receiver, metrics) = serve_audit_webhook(local.webhook, AUDIT_QUEUE);
        env.audit = Some(Audit {
            target: local.target,
            metrics,
            receiver: Some(receiver),
            detector: None,
            cluster_watch: None,
            server,
        });
        env.namespace("riposte-system").await;
        env
    }

    /// Starts evaluating the audit events (those queued so far first) with `client`.
    pub fn start_detection(&mut self, client: Client, settings: DetectionSettings) {
        self.start_pipeline(client, settings, None);
    }

    /// Starts evaluating the audit events, and the second source beside them: the cluster
    /// watch, comparing what it sees with the audit events for audit loss after `grace`.
    /// The watch runs until the Env is dropped.
    pub fn start_detection_with_cluster_watch(&mut self, client: Client, settings: DetectionSettings, grace: Duration) {
        let coverage = Arc::new(std::sync::Mutex::new(riposte_detect::coverage::AuditCoverage::new(
            grace,
            &cluster::WATCHED_RESOURCES,
        )));
        let cluster_settings =
            ClusterSettings { config: settings.config.clone(), namespace: settings.namespace.clone() };
        let metrics = self.audit.as_ref().expect("an Env with_audit_webhook").metrics.clone();
        let watch =
            cluster::run(client.clone(), cluster_settings, Some(coverage.clone()), metrics, std::future::pending());
        self.audit.as_mut().expect("audited").cluster_watch = Some(tokio::spawn(watch));
        self.start_pipeline(client, settings, Some(coverage));
    }

    fn start_pipeline(
        &mut self,
        client: Client,
        settings: DetectionSettings,
        coverage: Option<Arc<std::sync::Mutex<riposte_detect::coverage::AuditCoverage>>>,
    ) {
        let audit = self.audit.as_mut().expect("an Env with_audit_webhook");
        let receiver = audit.receiver.take().expect("detection is not running already");
        let metrics = audit.metrics.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let detector = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            pipeline::run(client, settings, receiver, coverage, metrics, stopped).await.expect("detection runs")
        });
        audit.detector = Some((stop, detector));
    }

    /// Stops evaluating, as on SIGTERM: the baseline is saved; events keep queueing.
    pub async fn stop_detection(&mut self) {
        let audit = self.audit.as_mut().expect("an Env with_audit_webhook");
        let (stop, detector) = audit.detector.take().expect("detection is running");
        let _ = stop.send(());
        audit.receiver = Some(detector.await.expect("detection stops cleanly"));
    }

    /// Control plane, CRDs and the operator (as the admin).
    pub async fn with_operator() -> Env {
        let mut env = Env::start().await;
        env.run_operator(env.client.clone(), default_guardrails());
        env
    }

    async fn wait_for_crds(&self) {
        let client = self.client.clone();
        eventually("CRDs to be served", || {
            let client = client.clone();
            async move {
                let ok_actions = Api::<ResponseAction>::all(client.clone()).list(&Default::default()).await.is_ok();
                let ok_alerts = Api::<riposte_crds::Alert>::all(client).list(&Default::default()).await.is_ok();
                (ok_actions && ok_alerts).then_some(())
            }
        })
        .await;
    }

    /// Runs the operator in this process with the given client, replacing one already running.
    pub fn run_operator(&mut self, client: Client, guardrails: Guardrails) {
        self.stop_operator();
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let ready = Arc::new(AtomicBool::new(false));
        let reporter = Reporter { controller: "riposte".into(), instance: Some("riposte-test".into()) };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().unwrap();
        drop(listener);
        self.metrics_addr = Some(addr);
        let server = riposte::http::serve(addr, Arc::new(registry), ready.clone());
        self.operator = Some(tokio::spawn(async move {
            let settings = settings(&client, guardrails).await;
            let controller = riposte::controller::run(client, settings, metrics, reporter, ready);
            tokio::select! {
                () = controller => {}
                served = server => served.expect("the metrics endpoint serves"),
            }
        }));
    }

    /// Starts one replica of the operator with leader election on the Lease
    /// `riposte-system/riposte-leader`, with short timings; abort the handle to crash it.
    pub fn spawn_replica(&self, client: Client, identity: &str) -> JoinHandle<riposte::Result<()>> {
        self.spawn_replica_on(client, identity, "riposte-leader")
    }

    /// A replica electing its leader on the Lease `riposte-system/<lease>`.
    pub fn spawn_replica_on(&self, client: Client, identity: &str, lease: &str) -> JoinHandle<riposte::Result<()>> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let reporter = Reporter { controller: "riposte".into(), instance: Some(identity.into()) };
        let config = riposte::leader::Config {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(250),
            ..riposte::leader::Config::new(lease, identity)
        };
        let leases = Api::namespaced(client.clone(), "riposte-system");
        let ready = Arc::new(AtomicBool::new(false));
        tokio::spawn(async move {
            let settings = settings(&client, default_guardrails()).await;
            riposte::leader::run(leases, config, move || {
                riposte::controller::run(client, settings, metrics, reporter, ready)
            })
            .await
        })
    }

    /// Stops the operator abruptly, as a crash would.
    pub fn stop_operator(&mut self) {
        if let Some(handle) = self.operator.take() {
            handle.abort();
        }
    }

    /// Renders the Helm chart as release `riposte` in riposte-system (which must exist) and
    /// applies it server-side: the operator's RBAC, the roles for people, the admission
    /// policy, the kill switch.
    pub fn install_chart(&self) {
        let rendered = std::process::Command::new(helm())
            .args([
                "template",
                "riposte",
                &repo_path("charts/riposte").display().to_string(),
                "--namespace",
                "riposte-system",
                "--include-crds",
                "--set",
                "metrics.serviceMonitor.enabled=false",
            ])
            .output()
            .expect("helm runs");
        assert!(rendered.status.success(), "helm template: {}", String::from_utf8_lossy(&rendered.stderr));
        let manifest = String::from_utf8(rendered.stdout).expect("the chart renders as text");
        let out = self.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifest);
        assert!(out.status.success(), "applying the rendered chart: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Waits until the apiserver enforces the chart's admission policy: a policy and its
    /// binding take effect a moment after they are created.
    pub async fn wait_for_admission_policy(&self) {
        let actions: Api<ResponseAction> = Api::namespaced(self.client.clone(), "default");
        let forged: ResponseAction = serde_json::from_value(json!({
            "metadata": { "name": "provenance-probe" },
            "spec": { "action": "Isolate", "target": { "pod": "probe" }, "requestedBy": "not-the-admin" },
        }))
        .expect("a valid probe");
        let dry_run = PostParams { dry_run: true, ..PostParams::default() };
        eventually("the provenance admission policy to be enforced", || async {
            matches!(actions.create(&dry_run, &forged).await, Err(kube::Error::Api(e)) if e.code == 403).then_some(())
        })
        .await;
    }

    /// A client with the token of the chart's ServiceAccount, as the operator runs in the cluster.
    pub async fn chart_operator_client(&self) -> Client {
        let token = self.kubectl(&["create", "token", "riposte", "-n", "riposte-system"]);
        assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
        let token = String::from_utf8(token.stdout).expect("a token is text");
        self.plane
            .client_for("system:serviceaccount:riposte-system:riposte", token.trim())
            .await
            .expect("a client for the chart's ServiceAccount")
    }

    /// Runs kubectl as the admin against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(self.plane.kubeconfig_path(), args, None)
    }

    /// Runs kubectl with YAML or JSON on its standard input.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        kubectl_with(self.plane.kubeconfig_path(), args, Some(input))
    }

    pub async fn namespace(&self, name: &str) {
        let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace created");
    }

    /// Creates a pod (never scheduled: there are no nodes).
    pub async fn pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
        let labels: BTreeMap<_, _> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels },
            "spec": { "containers": [{ "name": "app", "image": "nginx:1.27" }] },
        }))
        .unwrap();
        self.pods(namespace).create(&PostParams::default(), &pod).await.expect("pod created")
    }

    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn policies(&self, namespace: &str) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn actions(&self, namespace: &str) -> Api<ResponseAction> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates any object from JSON, as the admin, with server-side apply.
    pub async fn apply<K>(&self, namespace: &str, object: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let name = object["metadata"]["name"].as_str().expect("object has a name").to_owned();
        Api::<K>::namespaced(self.client.clone(), namespace)
            .patch(&name, &PatchParams::apply("riposte-tests").force(), &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("applying {name} failed: {e}"))
    }

    /// Creates a ResponseAction from its spec, requested by the admin unless it names a requester.
    pub async fn action(&self, namespace: &str, name: &str, mut spec: Value) -> ResponseAction {
        if spec.get("requestedBy").is_none() {
            spec["requestedBy"] = json!(ADMIN);
        }
        self.apply(namespace, json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction", "metadata": { "name": name }, "spec": spec }))
            .await
    }

    /// Creates a ResponseAction, waits until it reaches `phase`, and returns its status.
    pub async fn run_action(&self, namespace: &str, name: &str, spec: Value, phase: Phase) -> ResponseActionStatus {
        self.action(namespace, name, spec).await;
        self.wait_for_phase(namespace, name, phase).await.status.expect("a reconciled action has a status")
    }

    /// Waits until the action reaches `phase`, and returns it.
    pub async fn wait_for_phase(&self, namespace: &str, name: &str, phase: Phase) -> ResponseAction {
        let api = self.actions(namespace);
        let last = std::sync::Mutex::new(None);
        let found = eventually_or(&format!("ResponseAction {namespace}/{name} to reach {phase:?}"), || async {
            let action = api.get_opt(name).await.ok().flatten()?;
            let reached = action.status.as_ref().and_then(|s| s.phase) == Some(phase);
            *last.lock().unwrap() = Some(action.clone());
            reached.then_some(action)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "ResponseAction {namespace}/{name} did not reach {phase:?}; last seen:\n{}",
                serde_yaml::to_string(&*last.lock().unwrap()).unwrap()
            )
        })
    }

    /// Waits until a condition on the API holds.
    pub async fn until<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        eventually(what, check).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_operator();
        if let Some(audit) = self.audit.take() {
            audit.server.abort();
            if let Some((_, detector)) = audit.detector {
                detector.abort();
            }
            if let Some(watch) = audit.cluster_watch {
                watch.abort();
            }
        }
    }
}

/// The operator running in this process against any cluster (a real node's included), with
/// Riposte's CRDs installed and its namespace riposte-system; stopped when dropped, so a
/// panicking test stops it too.
pub struct InProcessOperator(JoinHandle<()>);

impl InProcessOperator {
    pub async fn start(client: &Client) -> InProcessOperator {
        local::install_crds(client).await.expect("Riposte's CRDs are installed");
        local::create_namespace(client, "riposte-system").await.expect("riposte-system exists");
        let metrics = Metrics::register(&mut Registry::default());
        let reporter = Reporter { controller: "riposte".into(), instance: Some("riposte-test".into()) };
        let settings = settings(client, default_guardrails()).await;
        let ready = Arc::new(AtomicBool::new(false));
        InProcessOperator(tokio::spawn(riposte::controller::run(client.clone(), settings, metrics, reporter, ready)))
    }
}

impl Drop for InProcessOperator {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The rank `p` (0-100) of sorted durations, as benchmarks report them.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Creates these ResponseActions (name, spec), `concurrency` at a time, and times each from
/// its creation until a watch sees it `Succeeded`; panics if one fails or takes a minute.
/// Returns the latencies, in the order given.
pub async fn time_actions_until_succeeded(
    api: &Api<ResponseAction>,
    actions: Vec<(String, Value)>,
    concurrency: usize,
) -> Vec<Duration> {
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::{WatchStreamExt, watcher};
    type Waiters = Arc<std::sync::Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Sender<Instant>>>>;
    let waiters: Waiters = Arc::default();
    let (watch_waiters, watch_api) = (waiters.clone(), api.clone());
    let watch = tokio::spawn(async move {
        let mut stream = watcher(watch_api, watcher::Config::default()).applied_objects().boxed();
        while let Ok(Some(action)) = stream.try_next().await {
            match action.status.as_ref().and_then(|s| s.phase) {
                Some(Phase::Succeeded) => {
                    if let Some(tx) = watch_waiters.lock().unwrap().remove(&action.name_any()) {
                        let _ = tx.send(Instant::now());
                    }
                }
                Some(Phase::Failed) => panic!("{} failed: {:?}", action.name_any(), action.status.unwrap().message),
                _ => {}
            }
        }
    });
    // The watch is established before the first action exists.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let tasks: Vec<_> = actions
        .into_iter()
        .map(|(name, spec)| {
            let (api, gate, waiters) = (api.clone(), gate.clone(), waiters.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let (tx, rx) = tokio::sync::oneshot::channel();
                waiters.lock().unwrap().insert(name.clone(), tx);
                let action = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction", "metadata": { "name": name }, "spec": spec });
                let begun = Instant::now();
                api.patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&action)).await.unwrap();
                let done = tokio::time::timeout(Duration::from_secs(60), rx)
                    .await
                    .unwrap_or_else(|_| panic!("{name} did not succeed within 60 s"))
                    .unwrap();
                done - begun
            })
        })
        .collect();
    let latencies = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    watch.abort();
    latencies
}

/// A plain HTTP GET against the operator's endpoints: (status code, body); code 0 while
/// nothing listens yet.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// The guardrails the tests run with: kube-system and riposte-system are protected, and
/// the operator's own pod is riposte-system/riposte-0.
pub fn default_guardrails() -> Guardrails {
    Guardrails {
        protected_namespaces: ["kube-system".to_string(), "riposte-system".to_string()].into(),
        own_pod: Some(("riposte-system".into(), "riposte-0".into())),
    }
}

/// The operator's settings in tests: its namespace is riposte-system, repeats within an
/// hour are folded, and its identity is whatever the apiserver says the client is.
pub async fn settings(client: &Client, guardrails: Guardrails) -> Settings {
    Settings {
        guardrails,
        namespace: "riposte-system".into(),
        identity: riposte::controller::identity(client).await.expect("the operator learns who it is"),
        alert_dedup_window: Duration::from_secs(3600),
    }
}

/// Polls `check` until it returns Some, for up to [`WAIT`]; panics naming `what` if it never does.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or(what, check).await.unwrap_or_else(|| panic!("timed out after {WAIT:?} waiting for {what}"))
}

async fn eventually_or<T, F, Fut>(_what: &str, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs `body` over TLS to `url` with curl, trusting `ca` and adding `args` (headers, a
/// client certificate); returns (HTTP code, body). The body is written beside `ca`. A
/// transport error (no HTTP answer at all) is retried: on a loaded machine curl can still be
/// sending when the server answers early and closes.
pub fn post_with_curl(url: &str, ca: &Path, body: &[u8], args: &[&str]) -> (u16, String) {
    let file = ca.parent().expect("the CA is in a directory").join("body");
    std::fs::write(&file, body).unwrap();
    let mut failures = Vec::new();
    for _ in 0..3 {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(ca)
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .args(args)
            .arg(url)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        match code.trim().parse::<u16>() {
            Ok(code) if code != 0 => return (code, body.to_owned()),
            _ => failures.push(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
        }
    }
    panic!("curl got no answer from {url}: {failures:?}")
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").join(relative)
}

pub fn kubectl_with(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    // A fresh discovery cache per call: kubectl would otherwise keep the API list it saw
    // before the CRDs were installed, and not know the `riposte` category.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let cache = std::env::temp_dir().join(format!(
        "riposte-kubectl-cache-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", &cache)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(cache);
    output
}

/// Helm, built from Go modules into the cache at the version in `tests/tools/helm-version`.
pub fn helm() -> PathBuf {
    let version =
        std::fs::read_to_string(repo_path("tests/tools/helm-version")).expect("tests/tools/helm-version exists");
    let version = version.trim();
    let dir = local::cache_dir().join("tools").join(format!("helm-{version}"));
    let binary = dir.join("helm");
    // Tests of one binary run in parallel: one builds, the others wait for it.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !binary.exists() {
        eprintln!("building helm {version} (first time only)");
        let status = std::process::Command::new("go")
            .args(["install", &format!("helm.sh/helm/v3/cmd/helm@{version}")])
            .env("GOBIN", &dir)
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .status()
            .expect("go is installed");
        assert!(status.success(), "go install helm failed");
    }
    binary
}

/// Names of the NetworkPolicies of a namespace that select a pod with these labels.
pub fn selecting(policies: &[NetworkPolicy], pod: &Pod) -> Vec<String> {
    let labels = pod.labels().clone();
    let mut names: Vec<String> = policies
        .iter()
        .filter(|p| {
            let selector = p.spec.as_ref().and_then(|s| s.pod_selector.clone()).unwrap_or_default();
            riposte::isolation::selector_matches(&selector, &labels)
        })
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

pub(crate) fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RIPOSTE_TEST_LOG").unwrap_or_else(|_| "warn,kube_client::client::builder=off".into()),
        )
        .with_test_writer()
        .try_init();
}
