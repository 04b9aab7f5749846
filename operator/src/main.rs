//! The `riposte` binary: runs the operator against the current cluster, or against a local
//! control plane it starts itself when there is no cluster at hand.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use riposte::controller::Settings;
use riposte::guard::Guardrails;
use riposte::leader;
use riposte::local::{self, LocalControlPlane};
use riposte::metrics::Metrics;
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
    Run(RunArgs),
    /// Print the CRDs as YAML (the same as the files under crds/).
    Crds,
    /// Build the local control plane's binaries (etcd, kube-apiserver) unless cached, and
    /// print where they are.
    Prepare,
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
    /// A detection repeating an open Alert (same type, same entities) within this many
    /// seconds of its last sighting is folded into it.
    #[arg(long, default_value_t = 3600, env = "RIPOSTE_ALERT_DEDUP_WINDOW_SECONDS")]
    alert_dedup_window_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Prepare => {
                let dir = local::ensure_binaries().await?;
                println!("{}", dir.display());
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
    let (client, _local) = if args.local {
        start_local(&namespace).await?
    } else {
        match Client::try_default().await {
            Ok(client) => (client, None),
            Err(e) => {
                warn!("no cluster configuration found ({e}); starting a local control plane instead");
                start_local(&namespace).await?
            }
        }
    };
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

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
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
    tokio::select! {
        operated = operated => operated,
        served = server => served,
    }
}

/// Starts a local control plane with the CRDs and the operator's namespace.
async fn start_local(namespace: &str) -> riposte::Result<(Client, Option<LocalControlPlane>)> {
    let plane = LocalControlPlane::start(local::Options::default()).await?;
    let client = plane.client().await?;
    local::install_crds(&client).await?;
    local::create_namespace(&client, namespace).await?;
    println!(
        "\nRiposte is running against a local control plane (no nodes: pods are stored, never run).\n\
         In another terminal:\n\n  export KUBECONFIG={}\n  kubectl apply -f examples/scenario.yaml\n  kubectl get riposte -A\n\n\
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
