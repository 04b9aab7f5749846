//! The `riposte` binary: runs the operator against the current cluster, or against a local
//! control plane it starts itself when there is no cluster at hand.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use riposte::controller::Settings;
use riposte::detection::cluster::{self, ClusterSettings};
use riposte::detection::event_hubs::{self, EventHubsSettings};
use riposte::detection::pipeline::{self, DetectionSettings, QueueLimits};
use riposte::detection::runtime::{self, RuntimeSettings};
use riposte::detection::webhook::{Credentials, PubSubPush, Webhook, WebhookSettings};
use riposte::guard::Guardrails;
use riposte::hunting::forward::{ForwardSettings, Forwarder};
use riposte::hunting::server::{Backend, HuntingServer, ServerSettings};
use riposte::hunting::{self, HuntingSink};
use riposte::leader;
use riposte::local::{self, LocalAuditWebhook, LocalControlPlane, LocalHuntingApi};
use riposte::metrics::{DetectionMetrics, ForwardMetrics, HuntingMetrics, Metrics, RuntimeMetrics};
use riposte_detect::coverage::AuditCoverage;
use riposte_hunt::bucket::{BucketSettings, Mirror};
use riposte_hunt::query::TrinoTables;
use riposte_hunt::store::{Store, StoreSettings};
use riposte_hunt::trino::{TrinoClient, TrinoSettings};
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(name = "riposte", version, about = "Kubernetes threat response: isolate, terminate and release pods")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "RIPOSTE_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the CRDs as YAML (the same as the files under crds/).
    Crds,
    /// Build the local control plane's binaries (etcd, kube-apiserver) unless cached, and
    /// print where they are.
    Prepare,
    /// Run the detection rules over audit log files, offline, and print the alerts they would
    /// raise.
    Detect(DetectArgs),
    /// Run the node side of the runtime detections (one per node, as a DaemonSet): Riposte's
    /// eBPF sensor and/or a Tetragon export file in, K8S.NODE_* Alerts out.
    Sensor(Box<SensorArgs>),
    /// Print the Trino statements that make the hunting tables over the store's layout at a
    /// location (a bucket, or a directory Trino reads), to run once in Trino.
    TrinoTables(TrinoTablesArgs),
}

/// `riposte trino-tables`: the hunting tables for Trino's Hive connector.
#[derive(clap::Args)]
struct TrinoTablesArgs {
    /// Where the layout is, as Trino names it: `s3://<bucket>/<prefix>/`, `local:///`.
    #[arg(long)]
    location: String,
    #[arg(long, default_value = "hive")]
    catalog: String,
    #[arg(long, default_value = "riposte")]
    schema: String,
}

impl TrinoTablesArgs {
    /// The statements, each ending with `;`, as Trino's CLI takes them.
    fn script(&self) -> String {
        let tables = TrinoTables { catalog: self.catalog.clone(), schema: self.schema.clone() };
        riposte_hunt::query::trino_setup_statements(&tables, &self.location)
            .into_iter()
            .map(|statement| format!("{statement};\n"))
            .collect()
    }
}

/// `riposte sensor`: the runtime detections of one node.
#[derive(clap::Args)]
struct SensorArgs {
    /// This node's name (from the downward API's spec.nodeName): events are attributed to
    /// the pods scheduled on it.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The operator's namespace, home of the alerts about the node's own processes.
    #[arg(long, default_value = "riposte-system", env = "POD_NAMESPACE")]
    namespace: String,
    /// Do not load Riposte's eBPF sensor (a node where Tetragon is the only source).
    #[arg(long, env = "RIPOSTE_SENSOR_NO_EBPF")]
    no_ebpf: bool,
    /// Follow this Tetragon JSON export file (Tetragon's --export-filename), across
    /// rotations, from its current end.
    #[arg(long, env = "RIPOSTE_SENSOR_TETRAGON_EXPORT")]
    tetragon_export: Option<PathBuf>,
    /// Leave the open connections of this node's isolated pods alone (by default the node's
    /// connection tracking forgets them, so that an isolation also cuts a shell opened
    /// before it; that needs the node's network namespace and CAP_NET_ADMIN).
    #[arg(long, env = "RIPOSTE_SENSOR_KEEP_ISOLATED_CONNECTIONS")]
    keep_isolated_connections: bool,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, default_value = "0.0.0.0:8081", env = "RIPOSTE_METRICS_ADDR")]
    metrics_addr: SocketAddr,
    #[command(flatten)]
    detection: DetectionArgs,
    #[command(flatten)]
    hunting: HuntingStoreArgs,
    /// Send the node's process events to the operator's hunting API at this address
    /// (https://host:port), to be kept in its store; with a bucket, the node's spool
    /// (--hunting-dir, --hunting-bucket) is the other way.
    #[arg(
        long,
        env = "RIPOSTE_HUNTING_FORWARD_URL",
        conflicts_with = "hunting_dir",
        requires = "hunting_forward_ca_file"
    )]
    hunting_forward_url: Option<String>,
    /// The CA certificates (PEM) of the hunting API's certificate.
    #[arg(long, env = "RIPOSTE_HUNTING_FORWARD_CA_FILE", requires = "hunting_forward_url")]
    hunting_forward_ca_file: Option<PathBuf>,
    /// The token the sensor presents to the hunting API, read at each request.
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token",
        env = "RIPOSTE_HUNTING_FORWARD_TOKEN_FILE"
    )]
    hunting_forward_token_file: PathBuf,
}

/// Runs the node's runtime detections until SIGTERM.
async fn sense(args: SensorArgs) -> riposte::Result<()> {
    let config = args.detection.config()?.runtime;
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let detection_metrics = DetectionMetrics::register(&mut registry);
    let runtime_metrics = RuntimeMetrics::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(true));
    // The node's events are kept in its own store (a spool on the node), named after the
    // node, and copied to the bucket that the operator's replicas write too.
    // Without one, they are sent to the operator's store.
    let hunting_store = args.hunting.open(None, Some(&args.node_name)).await?;
    let (hunting_sink, forwarded) = match (&hunting_store, args.hunting_forward_url, args.hunting_forward_ca_file) {
        (Some(opened), _, _) => {
            HuntingMetrics::register(&mut registry, opened.store.clone());
            (opened.sink.clone(), None)
        }
        (None, Some(url), Some(ca_file)) => {
            let settings = ForwardSettings { url, ca_file, token_file: args.hunting_forward_token_file };
            let (forwarder, task) = Forwarder::start(settings, ForwardMetrics::register(&mut registry))?;
            (HuntingSink::forwarding(forwarder), Some(task))
        }
        _ => (HuntingSink::default(), None),
    };
    let server = riposte::http::serve(args.metrics_addr, Arc::new(registry), ready);
    let settings = riposte::detection::node::NodeSettings {
        node: args.node_name,
        namespace: args.namespace,
        config,
        ebpf: !args.no_ebpf,
        tetragon_export: args.tetragon_export,
        forget_isolated_connections: !args.keep_isolated_connections,
        hunting: hunting_sink,
    };
    let stored = hunting_store.map(OpenedStore::spawn);
    let result = tokio::select! {
        sensed = riposte::detection::node::run(client, settings, detection_metrics, runtime_metrics, terminated()) => sensed,
        served = server => served,
    };
    // The sensor's sinks are dropped with its run: what they hold is committed, or sent.
    for task in stored.into_iter().chain(forwarded) {
        let _ = tokio::time::timeout(HUNTING_FLUSH_GRACE, task).await;
    }
    result
}

/// `riposte detect`: the operator's detection rules over audit log files.
#[derive(clap::Args)]
#[command(after_help = "\
The alerts are those the operator would create from the same events (same names, `kubectl apply -f -` \
takes `-o yaml`). Time comes from the events: the service-account baseline learns from the first \
event's timestamp for --baseline-learning-hours, then reports operations outside it. Large files \
are streamed; a file that is a single EventList document is read whole. Managed clusters' exports are \
read as they are, gzip-compressed or not: AKS diagnostic records (Event Hubs, storage), EKS's CloudWatch \
Logs payloads and Firehose deliveries, GKE's LogEntries and Pub/Sub pushes (docs/managed-clusters.md). \
Malformed lines and records are reported on stderr and skipped. A progress line is drawn on stderr when \
it is a terminal.

Exit status: 0 when every file was read, 1 when a file cannot be read or holds no audit event.

Example:
  riposte detect --audit-log /var/log/kubernetes/audit/audit.log \
      --workloads <(kubectl get pods,deployments,daemonsets,statefulsets,replicasets,jobs,cronjobs,services -A -o json)")]
struct DetectArgs {
    /// An audit log: JSON lines of audit.k8s.io/v1 events, as kube-apiserver's log backend
    /// writes them, or a managed cluster's export (AKS, EKS, GKE envelopes; gzip too); `-`
    /// reads stdin. Repeat it, or give several files, to read them in order.
    #[arg(long = "audit-log", value_name = "FILE", required = true, num_args = 1..)]
    audit_logs: Vec<PathBuf>,
    /// The cluster that the exposure rules (K8S_Exposed*) look at behind Services: the output
    /// of `kubectl get pods,deployments,daemonsets,statefulsets,replicasets,jobs,cronjobs,services
    /// -A -o json` (or -o yaml). Its Services are also scanned for exposures, as the
    /// operator's configuration scan does. Without it the cluster view is empty: Service
    /// writes in the log raise no exposure alert.
    #[arg(long, value_name = "FILE")]
    workloads: Option<PathBuf>,
    /// Carry on from this service-account baseline (JSON, as written by --save-baseline or
    /// kept by the operator in ConfigMap riposte-detection-baseline; the ConfigMap itself
    /// is read too) instead of learning from the first event.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Write the service-account baseline learned (JSON) to this file at the end.
    #[arg(long, value_name = "FILE")]
    save_baseline: Option<PathBuf>,
    /// The namespace of alerts about cluster-scoped objects and clients (the operator's).
    #[arg(long, default_value = "riposte-system")]
    namespace: String,
    /// How alerts are printed: a table, JSON lines (one Alert per line) or YAML documents.
    #[arg(short, long, value_enum, default_value = "table")]
    output: riposte::detection::offline::Format,
    /// No progress line and no summary on stderr (malformed lines are still reported).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    detection: DetectionArgs,
}

impl DetectArgs {
    fn run(self) -> riposte::Result<()> {
        use riposte::detection::offline;
        let options = offline::Options {
            config: self.detection.config()?,
            learning: self.detection.learning(),
            audit_logs: self.audit_logs,
            baseline: self.baseline,
            save_baseline: self.save_baseline,
            workloads: self.workloads,
            namespace: self.namespace,
            format: self.output,
            quiet: self.quiet,
        };
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        offline::run(options, std::io::stdout().lock(), std::io::stderr().lock(), progress).map(drop)
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Start a local control plane (etcd and kube-apiserver on loopback) and run against it.
    /// Also used when no kubeconfig or in-cluster configuration is found.
    #[arg(long)]
    local: bool,
    /// Namespaces where no pod is ever isolated or terminated; the operator's own namespace
    /// is always added.
    #[arg(long, value_delimiter = ',', default_value = "kube-system", env = "RIPOSTE_PROTECTED_NAMESPACES")]
    protected_namespaces: Vec<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, default_value = "0.0.0.0:8080", env = "RIPOSTE_METRICS_ADDR")]
    metrics_addr: SocketAddr,
    /// The operator's own pod, from the downward API; never acted upon.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// The operator's own namespace, from the downward API; protected.
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: Option<String>,
    /// Run as one of several replicas: only the holder of a Lease in the operator's
    /// namespace acts; the others stand by and take over if it stops renewing.
    #[arg(long, env = "RIPOSTE_LEADER_ELECTION", requires = "pod_namespace")]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "riposte-leader", env = "RIPOSTE_LEASE_NAME")]
    lease_name: String,
    /// Where the operator keeps evidence and reads the automation kill switch (ConfigMap
    /// riposte-automation) when it does not run in a pod.
    #[arg(long, default_value = "riposte-system", env = "RIPOSTE_NAMESPACE")]
    namespace: String,
    /// A detection repeating an open Alert (same type, same place: namespace, pod,
    /// container, image, workload, and no disagreement on user, node or service account)
    /// within this many seconds of its last sighting is folded into it.
    #[arg(long, default_value_t = 3600, env = "RIPOSTE_ALERT_DEDUP_WINDOW_SECONDS")]
    alert_dedup_window_seconds: u64,
    #[command(flatten)]
    audit_webhook: AuditWebhookArgs,
    #[command(flatten)]
    event_hubs: EventHubsArgs,
    #[command(flatten)]
    detection: DetectionArgs,
    #[command(flatten)]
    hunting: HuntingArgs,
    /// How often the existing Services are scanned for exposures (K8S_Exposed*); also once
    /// at start.
    #[arg(long, default_value_t = 600, env = "RIPOSTE_CONFIG_SCAN_INTERVAL_SECONDS")]
    config_scan_interval_seconds: u64,
    /// Do not watch the pods and workloads to run the workload rules on what the cluster
    /// holds (the second source, which audit loss cannot blind, and which sees the pods that
    /// controllers create).
    #[arg(long, env = "RIPOSTE_NO_CLUSTER_WATCH")]
    no_cluster_watch: bool,
    /// How long the creation of a pod or workload that the cluster watch saw may wait for
    /// its audit event before Riposte reports audit loss (Riposte.AuditLoss); 0 turns the
    /// comparison off. Only with an audit webhook.
    #[arg(long, default_value_t = 60, env = "RIPOSTE_AUDIT_LOSS_GRACE_SECONDS")]
    audit_loss_grace_seconds: u64,
}

/// The audit webhook that kube-apiserver's webhook audit backend posts to.
#[derive(clap::Args)]
struct AuditWebhookArgs {
    /// Serve the audit webhook (HTTPS, POST /audit) at this address. Off when unset, except
    /// with a local control plane, which gets one on loopback.
    #[arg(long, env = "RIPOSTE_AUDIT_WEBHOOK_ADDR", requires_all = ["audit_webhook_tls_cert", "audit_webhook_tls_key"])]
    audit_webhook_addr: Option<SocketAddr>,
    /// The webhook's serving certificate (PEM, with its chain).
    #[arg(long, env = "RIPOSTE_AUDIT_WEBHOOK_TLS_CERT", requires = "audit_webhook_addr")]
    audit_webhook_tls_cert: Option<PathBuf>,
    /// The serving certificate's private key (PEM).
    #[arg(long, env = "RIPOSTE_AUDIT_WEBHOOK_TLS_KEY", requires = "audit_webhook_addr")]
    audit_webhook_tls_key: Option<PathBuf>,
    /// Accept clients presenting a certificate signed by this CA (PEM), such as the
    /// apiserver's client certificate.
    #[arg(long, env = "RIPOSTE_AUDIT_WEBHOOK_CLIENT_CA", requires = "audit_webhook_addr")]
    audit_webhook_client_ca: Option<PathBuf>,
    /// Accept clients sending `Authorization: Bearer <token>` with the token in this file.
    #[arg(long, env = "RIPOSTE_AUDIT_WEBHOOK_TOKEN_FILE", requires = "audit_webhook_addr")]
    audit_webhook_token_file: Option<PathBuf>,
    /// Serve POST /firehose to an Amazon Data Firehose stream (HTTP endpoint destination)
    /// configured with the access key in this file: EKS audit logs delivered by a CloudWatch
    /// Logs subscription (docs/managed-clusters.md).
    #[arg(long, env = "RIPOSTE_FIREHOSE_ACCESS_KEY_FILE", requires = "audit_webhook_addr")]
    firehose_access_key_file: Option<PathBuf>,
    /// Serve POST /pubsub to a Pub/Sub push subscription of a GKE cluster's audit log (a log
    /// sink to a topic), authenticating its OIDC tokens: this is the audience they must name
    /// (the subscription's audience, by default its push endpoint's URL).
    #[arg(long, env = "RIPOSTE_PUBSUB_AUDIENCE", requires_all = ["audit_webhook_addr", "pubsub_service_account"])]
    pubsub_audience: Option<String>,
    /// The service account the push subscription authenticates as (the tokens' email).
    #[arg(long, env = "RIPOSTE_PUBSUB_SERVICE_ACCOUNT", requires = "pubsub_audience")]
    pubsub_service_account: Option<String>,
    /// Where the keys that sign push tokens are published (Google's, unless testing or
    /// going through a mirror).
    #[arg(long, env = "RIPOSTE_PUBSUB_JWKS_URL", default_value = riposte_streams::oidc::GOOGLE_JWKS_URL)]
    pubsub_jwks_url: String,
    /// CA certificates (PEM) trusted for the key set's server beside the public roots.
    #[arg(long, env = "RIPOSTE_PUBSUB_JWKS_CA_FILE", requires = "pubsub_audience")]
    pubsub_jwks_ca_file: Option<PathBuf>,
    /// Larger request bodies are refused with 413.
    #[arg(long, default_value_t = 32 * 1024 * 1024, env = "RIPOSTE_AUDIT_WEBHOOK_MAX_BODY_BYTES")]
    audit_webhook_max_body_bytes: usize,
    /// Audit events waiting for the rules, at most; beyond, batches are dropped and counted
    /// (riposte_audit_events_dropped_total) rather than holding the apiserver up.
    #[arg(long, default_value_t = 100_000, env = "RIPOSTE_AUDIT_QUEUE_EVENTS")]
    audit_queue_events: usize,
    /// Bytes of audit bodies waiting for the rules, at most (the memory the queue may
    /// take); beyond, batches are dropped and counted as above.
    #[arg(long, default_value_t = 64 * 1024 * 1024, env = "RIPOSTE_AUDIT_QUEUE_BYTES")]
    audit_queue_bytes: usize,
}

/// AKS: the audit log a diagnostic setting exports to Event Hubs, read over its Kafka
/// endpoint as a consumer group.
#[derive(clap::Args)]
struct EventHubsArgs {
    /// The Event Hubs namespace's host (`<namespace>.servicebus.windows.net`, with `:port`
    /// when not 9093). Turns the consumer on.
    #[arg(long, env = "RIPOSTE_EVENT_HUBS_NAMESPACE", requires = "event_hubs_connection_string_file")]
    event_hubs_namespace: Option<String>,
    /// A file holding a connection string of the namespace or of the hub with Listen rights.
    #[arg(long, env = "RIPOSTE_EVENT_HUBS_CONNECTION_STRING_FILE", requires = "event_hubs_namespace")]
    event_hubs_connection_string_file: Option<PathBuf>,
    /// The event hubs the diagnostic setting writes to, comma-separated.
    #[arg(long, env = "RIPOSTE_EVENT_HUBS_HUB", value_delimiter = ',', default_value = "insights-logs-kube-audit")]
    event_hubs_hub: Vec<String>,
    /// The consumer group (create it on the hubs; every replica joins it).
    #[arg(long, env = "RIPOSTE_EVENT_HUBS_CONSUMER_GROUP", default_value = "riposte")]
    event_hubs_consumer_group: String,
    /// A CA (PEM) the brokers' certificates chain to, when not one of the public roots.
    #[arg(long, env = "RIPOSTE_EVENT_HUBS_CA_FILE", requires = "event_hubs_namespace")]
    event_hubs_ca_file: Option<PathBuf>,
}

impl EventHubsArgs {
    fn settings(&self) -> riposte::Result<Option<riposte_streams::kafka::Settings>> {
        let (Some(namespace), Some(file)) = (&self.event_hubs_namespace, &self.event_hubs_connection_string_file)
        else {
            return Ok(None);
        };
        let connection_string = std::fs::read_to_string(file).map_err(|e| {
            riposte::Error::Detection(format!("cannot read the Event Hubs connection string {}: {e}", file.display()))
        })?;
        let settings = EventHubsSettings {
            namespace: namespace.clone(),
            connection_string: connection_string.trim().to_owned(),
            hubs: self.event_hubs_hub.iter().filter(|hub| !hub.is_empty()).cloned().collect(),
            consumer_group: self.event_hubs_consumer_group.clone(),
            ca_file: self.event_hubs_ca_file.clone(),
        };
        settings.kafka().map(Some)
    }
}

/// Where evaluated events are kept for hunting: shared by the operator and the node sensor.
#[derive(clap::Args)]
struct HuntingStoreArgs {
    /// Keep every evaluated event (audit, process), and in the operator a row per change of
    /// the Alerts and ResponseActions, in the embedded hunting store under this directory (the
    /// operator's persistent volume, a node's spool). With a local control plane and no
    /// directory, a temporary one.
    #[arg(long, env = "RIPOSTE_HUNTING_DIR")]
    hunting_dir: Option<PathBuf>,
    /// Partitions whose hour ended longer ago are deleted (in the bucket too).
    #[arg(long, default_value_t = 30, env = "RIPOSTE_HUNTING_RETENTION_DAYS")]
    hunting_retention_days: u64,
    /// The store's files are kept under this size: the oldest partitions are deleted first
    /// (from the store; a bucket keeps them for the retention).
    #[arg(long, default_value_t = 50, env = "RIPOSTE_HUNTING_MAX_GIB")]
    hunting_max_gib: u64,
    /// Rows held in memory at most, should the disk stall (then refused and counted).
    #[arg(long, default_value_t = 1_000_000, env = "RIPOSTE_HUNTING_MAX_MEMORY_ROWS")]
    hunting_max_memory_rows: usize,
    /// Names this process's files (letters, digits, '-', '.'); by default the pod's name, or
    /// the node's for the sensor.
    #[arg(long, env = "RIPOSTE_HUNTING_WRITER")]
    hunting_writer: Option<String>,
    /// The cluster's name, in every row's ClusterName.
    #[arg(long, default_value = "", env = "RIPOSTE_CLUSTER_NAME")]
    cluster_name: String,
    /// Copy the store's files to this S3-compatible bucket, `s3://<bucket>/<prefix>`, where
    /// every replica and node writes the same layout for Trino (credentials and region from
    /// the standard AWS_* variables, IRSA included).
    #[arg(long, env = "RIPOSTE_HUNTING_BUCKET", requires = "hunting_dir")]
    hunting_bucket: Option<String>,
    /// The endpoint of an S3-compatible server other than AWS's (http:// or https://).
    #[arg(long, env = "RIPOSTE_HUNTING_BUCKET_ENDPOINT", requires = "hunting_bucket")]
    hunting_bucket_endpoint: Option<String>,
    #[arg(long, env = "RIPOSTE_HUNTING_BUCKET_REGION", requires = "hunting_bucket")]
    hunting_bucket_region: Option<String>,
}

impl HuntingStoreArgs {
    /// The store, opened when a directory is configured (or given for a local control
    /// plane), with its bucket's mirror when one is configured.
    async fn open(&self, directory: Option<PathBuf>, writer: Option<&str>) -> riposte::Result<Option<OpenedStore>> {
        let Some(root) = self.hunting_dir.clone().or(directory) else { return Ok(None) };
        let writer =
            self.hunting_writer.clone().or_else(|| writer.map(str::to_owned)).unwrap_or_else(|| "riposte".into());
        let hunting = |e: riposte_hunt::Error| riposte::Error::Hunting(e.to_string());
        let retention = Duration::from_secs(self.hunting_retention_days * 86_400);
        let mut settings = StoreSettings::new(root, writer);
        settings.retention = retention;
        settings.max_bytes = self.hunting_max_gib << 30;
        settings.max_memory_rows = self.hunting_max_memory_rows;
        let mirror = match &self.hunting_bucket {
            Some(url) => {
                let bucket = BucketSettings {
                    url: url.clone(),
                    endpoint: self.hunting_bucket_endpoint.clone(),
                    region: self.hunting_bucket_region.clone(),
                    config: Vec::new(),
                };
                let mirror = Mirror::connect(&bucket, &settings.writer, retention).await.map_err(hunting)?;
                settings.first_generation = mirror.next_generation();
                Some(mirror)
            }
            None => None,
        };
        let store = Store::open(settings).map_err(hunting)?;
        let sink = HuntingSink::new(store.clone(), &self.cluster_name);
        Ok(Some(OpenedStore { store, mirror, sink }))
    }
}

struct OpenedStore {
    store: Store,
    mirror: Option<Mirror>,
    sink: HuntingSink,
}

impl OpenedStore {
    /// Flushes, maintains and mirrors until SIGTERM, then commits what is left.
    fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.store.run(self.mirror, terminated()))
    }
}

/// Hunting: every evaluated event kept, and searched through an HTTPS API (docs/hunting.md).
#[derive(clap::Args)]
struct HuntingArgs {
    #[command(flatten)]
    store: HuntingStoreArgs,
    /// Serve the hunting API (HTTPS: POST /v1/hunt, /v1/go-hunt) at this address. With a
    /// local control plane and no address, on a free loopback port.
    #[arg(long, env = "RIPOSTE_HUNTING_ADDR", requires_all = ["hunting_tls_cert", "hunting_tls_key"])]
    hunting_addr: Option<SocketAddr>,
    /// The hunting API's serving certificate (PEM, with its chain).
    #[arg(long, env = "RIPOSTE_HUNTING_TLS_CERT", requires = "hunting_addr")]
    hunting_tls_cert: Option<PathBuf>,
    /// The hunting API's private key (PEM).
    #[arg(long, env = "RIPOSTE_HUNTING_TLS_KEY", requires = "hunting_addr")]
    hunting_tls_key: Option<PathBuf>,
    /// Send hunts to this Trino coordinator (http:// or https://), which reads the store's
    /// layout with its Hive connector, instead of running them in the operator.
    #[arg(long, env = "RIPOSTE_HUNTING_TRINO_ENDPOINT")]
    hunting_trino_endpoint: Option<String>,
    #[arg(long, default_value = "riposte", env = "RIPOSTE_HUNTING_TRINO_USER")]
    hunting_trino_user: String,
    #[arg(long, default_value = "hive", env = "RIPOSTE_HUNTING_TRINO_CATALOG")]
    hunting_trino_catalog: String,
    #[arg(long, default_value = "riposte", env = "RIPOSTE_HUNTING_TRINO_SCHEMA")]
    hunting_trino_schema: String,
    /// A PEM file of CAs to trust for the Trino coordinator's certificate.
    #[arg(long, env = "RIPOSTE_HUNTING_TRINO_CA_FILE")]
    hunting_trino_ca_file: Option<PathBuf>,
    /// The most rows a hunt returns.
    #[arg(long, default_value_t = 30_000, env = "RIPOSTE_HUNTING_MAX_ROWS")]
    hunting_max_rows: usize,
    /// A hunt running longer is cancelled.
    #[arg(long, default_value_t = 600, env = "RIPOSTE_HUNTING_TIMEOUT_SECONDS")]
    hunting_timeout_seconds: u64,
    /// The memory a hunt may use in the operator; past it, the hunt fails with an error.
    #[arg(long, default_value_t = 512, env = "RIPOSTE_HUNTING_MEMORY_MIB")]
    hunting_memory_mib: usize,
}

impl HuntingArgs {
    fn limits(&self) -> riposte_hunt::query::Limits {
        riposte_hunt::query::Limits {
            max_rows: self.hunting_max_rows,
            timeout: Duration::from_secs(self.hunting_timeout_seconds),
            memory_bytes: self.hunting_memory_mib << 20,
            ..riposte_hunt::query::Limits::default()
        }
    }

    fn backend(&self, store: Option<&Store>) -> riposte::Result<Backend> {
        if let Some(endpoint) = &self.hunting_trino_endpoint {
            let client = TrinoClient::new(TrinoSettings {
                endpoint: endpoint.clone(),
                user: self.hunting_trino_user.clone(),
                catalog: self.hunting_trino_catalog.clone(),
                schema: self.hunting_trino_schema.clone(),
                ca_file: self.hunting_trino_ca_file.clone(),
            })
            .map_err(|e| riposte::Error::Hunting(e.to_string()))?;
            let tables =
                TrinoTables { catalog: self.hunting_trino_catalog.clone(), schema: self.hunting_trino_schema.clone() };
            return Ok(Backend::Trino(Arc::new(client), tables));
        }
        match store {
            Some(store) => Ok(Backend::Local(store.clone())),
            None => Err(riposte::Error::Hunting(
                "the hunting API needs events to hunt: a store (--hunting-dir) or Trino (--hunting-trino-endpoint)"
                    .into(),
            )),
        }
    }
}

/// What the detection rules look for, shared by `run` and `detect`.
#[derive(clap::Args)]
struct DetectionArgs {
    /// The detection lists and thresholds (YAML: systemImages, sensitiveHostPaths,
    /// miningImages, proxyNetworks...); every key is optional, unknown keys are refused.
    #[arg(long, env = "RIPOSTE_DETECTION_CONFIG")]
    detection_config: Option<PathBuf>,
    /// A new service-account baseline learns for this long before it reports operations
    /// outside it (K8S_ServiceAccountRareOperation).
    #[arg(long, default_value_t = 72, env = "RIPOSTE_BASELINE_LEARNING_HOURS")]
    baseline_learning_hours: u64,
}

impl DetectionArgs {
    fn config(&self) -> riposte::Result<riposte_detect::Config> {
        let Some(path) = &self.detection_config else {
            return Ok(riposte_detect::Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            riposte::Error::Detection(format!("cannot read the detection config {}: {e}", path.display()))
        })?;
        serde_yaml::from_str(&text)
            .map_err(|e| riposte::Error::Detection(format!("the detection config {} is invalid: {e}", path.display())))
    }

    fn learning(&self) -> Duration {
        Duration::from_secs(self.baseline_learning_hours * 3600)
    }
}

impl AuditWebhookArgs {
    /// The webhook bound as configured, or none when it is off.
    async fn bind(&self) -> riposte::Result<Option<Webhook>> {
        let (Some(addr), Some(tls_cert), Some(tls_key)) =
            (self.audit_webhook_addr, &self.audit_webhook_tls_cert, &self.audit_webhook_tls_key)
        else {
            return Ok(None);
        };
        let token = self.audit_webhook_token_file.as_deref().map(WebhookSettings::read_token).transpose()?;
        let firehose_access_key =
            self.firehose_access_key_file.as_deref().map(WebhookSettings::read_token).transpose()?;
        let pubsub = match (&self.pubsub_audience, &self.pubsub_service_account) {
            (Some(audience), Some(service_account)) => {
                let mut jwks = riposte_streams::oidc::JwksSettings::google();
                jwks.url.clone_from(&self.pubsub_jwks_url);
                jwks.extra_roots_pem = match &self.pubsub_jwks_ca_file {
                    Some(file) => Some(std::fs::read(file).map_err(|e| {
                        riposte::Error::Webhook(format!("cannot read the key set's CA {}: {e}", file.display()))
                    })?),
                    None => None,
                };
                Some(PubSubPush { audience: audience.clone(), service_account: service_account.clone(), jwks })
            }
            _ => None,
        };
        let settings = WebhookSettings {
            addr,
            tls_cert: tls_cert.clone(),
            tls_key: tls_key.clone(),
            client_ca: self.audit_webhook_client_ca.clone(),
            credentials: Credentials { token, firehose_access_key, pubsub },
            max_body_bytes: self.audit_webhook_max_body_bytes,
        };
        Ok(Some(Webhook::bind(&settings).await?))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::Sensor(args) => sense(*args).await,
            Command::Prepare => {
                let dir = local::ensure_binaries().await?;
                println!("{}", dir.display());
                Ok(())
            }
            Command::Detect(args) => {
                // Errors go to stderr, not to the log (stdout holds the alerts).
                if let Err(e) = args.run() {
                    match e {
                        riposte::Error::Detection(message) => eprintln!("riposte detect: {message}"),
                        other => eprintln!("riposte detect: {other}"),
                    }
                    std::process::exit(1);
                }
                Ok(())
            }
            Command::TrinoTables(args) => {
                print!("{}", args.script());
                Ok(())
            }
            Command::Crds => {
                for crd in riposte_crds::crds() {
                    print!("---\n{}", riposte_crds::crd_yaml(&crd));
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> riposte::Result<()> {
    let namespace = args.pod_namespace.clone().unwrap_or(args.namespace);
    let detection = args.detection.config()?;
    let event_hubs = args.event_hubs.settings()?;
    let mut webhook = args.audit_webhook.bind().await?;
    let mut hunting_api =
        match (&args.hunting.hunting_addr, &args.hunting.hunting_tls_cert, &args.hunting.hunting_tls_key) {
            (Some(addr), Some(tls_cert), Some(tls_key)) => Some(
                HuntingServer::bind(&ServerSettings {
                    addr: *addr,
                    tls_cert: tls_cert.clone(),
                    tls_key: tls_key.clone(),
                    limits: args.hunting.limits(),
                })
                .await?,
            ),
            _ => None,
        };
    let mut local_hunting_dir = None;
    let (client, _local) = match (args.local, Client::try_default().await) {
        (false, Ok(client)) => (client, None),
        (local, not_needed_or_failed) => {
            if let (false, Err(e)) = (local, not_needed_or_failed) {
                warn!("no cluster configuration found ({e}); starting a local control plane instead");
            }
            // The local apiserver sends its audit events to a webhook of our own on loopback.
            let local_webhook = match webhook {
                Some(_) => None,
                None => Some(LocalAuditWebhook::bind(args.audit_webhook.audit_webhook_max_body_bytes).await?),
            };
            let target = local_webhook.as_ref().map(|l| l.target.clone());
            webhook = webhook.or(local_webhook.map(|l| l.webhook));
            let local_hunting = match hunting_api {
                Some(_) => None,
                None => Some(LocalHuntingApi::bind(args.hunting.limits()).await?),
            };
            let hunting_ca = std::env::temp_dir().join(format!("riposte-local-hunting-{}.crt", std::process::id()));
            let hunting_url = match local_hunting {
                Some(local_hunting) => {
                    std::fs::write(&hunting_ca, &local_hunting.ca_pem)
                        .map_err(|e| riposte::Error::Hunting(format!("cannot write {}: {e}", hunting_ca.display())))?;
                    hunting_api = Some(local_hunting.server);
                    Some(local_hunting.url)
                }
                None => None,
            };
            local_hunting_dir =
                Some(std::env::temp_dir().join(format!("riposte-local-hunting-{}", std::process::id())));
            let started = start_local(&namespace, target).await?;
            if let Some(url) = hunting_url {
                println!(
                    "Every event is kept for hunting (as the local admin):\n\n  \
                     kubectl riposte hunt --url {url} --ca-file {} --since 1h \\\n    \
                     'CloudAuditEvents | where OperationName == \"create\" | project Timestamp, UserName, ResourceId'\n",
                    hunting_ca.display()
                );
            }
            started
        }
    };
    let hunting_store = args.hunting.store.open(local_hunting_dir.clone(), args.pod_name.as_deref()).await?;
    let hunting_sink = hunting_store.as_ref().map(|opened| opened.sink.clone()).unwrap_or_default();
    let hunting_backend = hunting_api
        .as_ref()
        .map(|_| args.hunting.backend(hunting_store.as_ref().map(|opened| &opened.store)))
        .transpose()?;
    let mut protected: BTreeSet<String> = args.protected_namespaces.into_iter().filter(|n| !n.is_empty()).collect();
    protected.extend(args.pod_namespace.clone());
    let guardrails =
        Guardrails { protected_namespaces: protected, own_pod: args.pod_namespace.clone().zip(args.pod_name.clone()) };
    info!(protected = ?guardrails.protected_namespaces, "guardrails");
    let identity = riposte::controller::identity(&client).await?;
    info!(%identity, "authenticated");
    let settings = Settings {
        guardrails,
        namespace,
        identity,
        alert_dedup_window: Duration::from_secs(args.alert_dedup_window_seconds),
    };

    // Riposte's own responses are in the action center; its service account is not one
    // whose habits say anything about an attack.
    let mut detection = detection;
    detection.baseline_exempt_service_accounts.push(settings.identity.clone());
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let detection_metrics = DetectionMetrics::register(&mut registry);
    let runtime_metrics = RuntimeMetrics::register(&mut registry);
    if let Some(opened) = &hunting_store {
        HuntingMetrics::register(&mut registry, opened.store.clone());
    }
    let event_hubs = event_hubs.map(|settings| {
        let counters = riposte_streams::kafka::Metrics::default();
        counters.register(&mut registry);
        (settings, counters)
    });
    let runtime_settings = RuntimeSettings {
        config: detection.runtime.clone(),
        namespace: settings.namespace.clone(),
        node: None,
        hunting: hunting_sink.clone(),
    };
    let cluster_settings = (!args.no_cluster_watch)
        .then(|| ClusterSettings { config: detection.clone(), namespace: settings.namespace.clone() });
    let audit_loss_grace = (args.audit_loss_grace_seconds > 0 && webhook.is_some())
        .then(|| Duration::from_secs(args.audit_loss_grace_seconds));
    let detected = detect(
        webhook,
        client.clone(),
        DetectionSettings {
            config: detection,
            learning: args.detection.learning(),
            scan_interval: Duration::from_secs(args.config_scan_interval_seconds),
            namespace: settings.namespace.clone(),
            baseline_save_interval: Duration::from_secs(30),
            hunting: hunting_sink.clone(),
        },
        QueueLimits { events: args.audit_webhook.audit_queue_events, bytes: args.audit_webhook.audit_queue_bytes },
        event_hubs,
        runtime_settings,
        cluster_settings,
        audit_loss_grace,
        detection_metrics,
        runtime_metrics,
    );
    let stored = hunting_store.map(|opened| {
        tokio::spawn(hunting::record_objects(client.clone(), hunting_sink.clone()));
        opened.spawn()
    });
    let hunting_client = client.clone();
    let hunting_api_sink = hunting_sink.clone();
    let hunted = async move {
        match (hunting_api, hunting_backend) {
            (Some(api), Some(backend)) => api.serve(hunting_client, backend, hunting_api_sink).await,
            _ => std::future::pending().await,
        }
    };
    let ready = Arc::new(AtomicBool::new(false));
    let reporter = Reporter { controller: "riposte".into(), instance: args.pod_name.clone() };
    let server = riposte::http::serve(args.metrics_addr, Arc::new(registry), ready.clone());
    let operator_client = client.clone();
    let operator_ready = ready.clone();
    let operate = move || riposte::controller::run(operator_client, settings, metrics, reporter, operator_ready);
    let operated = async {
        match args.pod_namespace.filter(|_| args.leader_election) {
            Some(namespace) => {
                // A standby replica is ready for its role; rollouts must not wait for leadership.
                ready.store(true, std::sync::atomic::Ordering::Relaxed);
                let identity = args.pod_name.unwrap_or_else(|| format!("riposte-{}", std::process::id()));
                let config = leader::Config::new(args.lease_name, identity);
                leader::run(Api::namespaced(client, &namespace), config, operate).await
            }
            None => {
                operate().await;
                Ok(())
            }
        }
    };
    tokio::pin!(operated);
    let result = tokio::select! {
        operated = &mut operated => operated,
        served = server => served,
        hunted = hunted => hunted,
        detected = detected => match detected {
            // Detection stops on SIGTERM, its baseline saved. The controllers stop on the same
            // signal, after which a leader releases its Lease, so that a standby takes over at
            // once instead of at the Lease's expiry; a standby has nothing to hand over.
            Ok(()) => tokio::time::timeout(LEASE_RELEASE_GRACE, &mut operated).await.unwrap_or(Ok(())),
            Err(e) => Err(e),
        },
    };
    // The hunting store commits what it holds on the same signal.
    if let Some(stored) = stored {
        let _ = tokio::time::timeout(HUNTING_FLUSH_GRACE, stored).await;
    }
    // A local control plane's store goes with it, as its etcd does.
    if let Some(directory) = local_hunting_dir.filter(|_| args.hunting.store.hunting_dir.is_none()) {
        let _ = std::fs::remove_dir_all(directory);
    }
    result
}

/// How long a stopping operator waits for the hunting store to commit its rows in memory.
const HUNTING_FLUSH_GRACE: Duration = Duration::from_secs(10);

/// How long a stopping replica waits for its controllers to stop and its Lease to be released.
const LEASE_RELEASE_GRACE: Duration = Duration::from_secs(5);

/// Watches the cluster's pods and workloads (unless told not to), serves the webhooks
/// (audit, Falco, Firehose, Pub/Sub) and reads Event Hubs when configured, and evaluates
/// what they receive. Every replica detects (the apiserver's batches reach whichever one the
/// Service picks, the hubs' partitions are shared by the group); Alerts are named after the
/// request, the execution or the object they saw, so a batch retried elsewhere, or an
/// object every replica watches, is raised once.
#[allow(clippy::too_many_arguments)]
async fn detect(
    webhook: Option<Webhook>,
    client: Client,
    settings: DetectionSettings,
    queue_limits: QueueLimits,
    event_hubs: Option<(riposte_streams::kafka::Settings, riposte_streams::kafka::Metrics)>,
    runtime_settings: RuntimeSettings,
    cluster_settings: Option<ClusterSettings>,
    audit_loss_grace: Option<Duration>,
    metrics: DetectionMetrics,
    runtime_metrics: RuntimeMetrics,
) -> riposte::Result<()> {
    // Audit loss is told by comparing the two sources: only with both.
    let coverage = audit_loss_grace
        .filter(|_| cluster_settings.is_some())
        .map(|grace| Arc::new(std::sync::Mutex::new(AuditCoverage::new(grace, &cluster::WATCHED_RESOURCES))));
    match cluster_settings {
        Some(cluster_settings) => {
            let (client, coverage, metrics) = (client.clone(), coverage.clone(), metrics.clone());
            tokio::spawn(cluster::run(client, cluster_settings, coverage, metrics, std::future::pending()));
        }
        None => info!("--no-cluster-watch: the workload rules only see what the audit events report"),
    }
    if webhook.is_none() && event_hubs.is_none() {
        info!(
            "no webhook (--audit-webhook-addr) and no Event Hubs (--event-hubs-namespace) configured: \
             detections from audit events and Falco are off"
        );
        return std::future::pending().await;
    }
    let (queue, receiver) = pipeline::queue(queue_limits, metrics.clone());
    if let Some((kafka, counters)) = event_hubs {
        tokio::spawn(event_hubs::run(kafka, queue.clone(), metrics.clone(), counters));
    }
    let (inlet, runtime_receiver) = runtime::inlet(RUNTIME_QUEUE, runtime_metrics.clone());
    let pods = Arc::new(std::sync::RwLock::new(runtime::PodIndex::default()));
    tokio::spawn(runtime::watch_pods(client.clone(), None, pods.clone()));
    let runtime_path = runtime::run(
        client.clone(),
        runtime_settings,
        pods,
        runtime_receiver,
        metrics.clone(),
        runtime_metrics,
        std::future::pending(),
    );
    let webhook_metrics = metrics.clone();
    let served = async move {
        match webhook {
            Some(webhook) => webhook.serve(queue, inlet, webhook_metrics).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = served => served,
        // On SIGTERM (a rollout, a drain) the baseline is saved before the process ends.
        evaluated = pipeline::run(client, settings, receiver, coverage, metrics, terminated()) => evaluated.map(drop),
        () = runtime_path => Ok(()),
    }
}

/// Runtime inputs (Falco alerts) waiting for the rules, at most.
const RUNTIME_QUEUE: usize = 65_536;

/// Completes on SIGTERM or Ctrl-C.
async fn terminated() {
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(sigterm) => sigterm,
        Err(e) => {
            warn!("cannot listen for SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => info!("interrupted: stopping"),
    }
}

/// Starts a local control plane with the CRDs and the operator's namespace.
async fn start_local(
    namespace: &str,
    audit_webhook: Option<local::AuditWebhookTarget>,
) -> riposte::Result<(Client, Option<LocalControlPlane>)> {
    let plane = LocalControlPlane::start(local::Options { audit_webhook, ..local::Options::default() }).await?;
    let client = plane.client().await?;
    local::install_crds(&client).await?;
    local::create_namespace(&client, namespace).await?;
    println!(
        "\nRiposte is running against a local control plane (no nodes: pods are stored, never run).\n\
         Its audit events go to Riposte's webhook, so attacks are detected as well.\n\
         In another terminal:\n\n  export KUBECONFIG={}\n  kubectl apply -f examples/scenario.yaml\n  kubectl get riposte -A\n  \
         kubectl run debug --image=busybox --privileged   # raises a K8S_PrivilegedContainer alert\n  \
         kubectl get alerts -A\n\n\
         Stop with Ctrl-C; the control plane is removed with it.\n",
        plane.kubeconfig_path().display()
    );
    Ok((client, Some(plane)))
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RIPOSTE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["riposte"].iter().chain(args))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn trino_tables_are_printed_for_a_location() {
        let Command::TrinoTables(args) =
            parse(&["trino-tables", "--location", "s3://hunting/riposte/prod-eu/"]).unwrap().command
        else {
            panic!("the trino-tables command");
        };
        let script = args.script();
        let statements: Vec<&str> = script.lines().collect();
        assert_eq!(statements[0], "CREATE SCHEMA IF NOT EXISTS hive.riposte;");
        assert_eq!(statements.len(), 1 + riposte_hunt::schema::Table::ALL.len());
        assert!(
            statements[1..]
                .iter()
                .all(|s| s.contains("external_location = 's3://hunting/riposte/prod-eu/") && s.ends_with(';')),
            "{script}"
        );
    }

    #[test]
    fn a_sensor_keeps_its_events_in_one_place() {
        let forwarding = ["sensor", "--node-name", "n1", "--hunting-forward-url", "https://riposte-audit:8443"];
        let Command::Sensor(sensor) =
            parse(&[&forwarding[..], &["--hunting-forward-ca-file", "/ca.crt"]].concat()).unwrap().command
        else {
            panic!("the sensor's command");
        };
        assert_eq!(sensor.hunting_forward_url.as_deref(), Some("https://riposte-audit:8443"));
        assert_eq!(sensor.hunting.hunting_max_memory_rows, 1_000_000);
        // The CA is needed: the API's certificate is the audit webhook's own CA's.
        assert!(parse(&forwarding).is_err());
        // Either the operator's store or a spool of its own.
        let both = [&forwarding[..], &["--hunting-forward-ca-file", "/ca.crt", "--hunting-dir", "/spool"]].concat();
        assert_eq!(parse(&both).err().map(|e| e.kind()), Some(clap::error::ErrorKind::ArgumentConflict));
        // A bucket is copied from a spool.
        let bucket = ["sensor", "--node-name", "n1", "--hunting-bucket", "s3://hunting/riposte"];
        assert!(parse(&bucket).is_err());
        assert!(parse(&[&bucket[..], &["--hunting-dir", "/spool"]].concat()).is_ok());
    }
}
