//! `riposte sensor`: the node side of the runtime detections, one per node (a DaemonSet).
//!
//! Two sources, both optional: Riposte's own eBPF sensor (`riposte-sensor`), and the JSON
//! export file of a Tetragon running on the same node, followed across rotations. Both
//! become [`ProcessEvent`]s, attributed to the node's pods and evaluated here, so that the
//! events of a container stay in order for the stateful rules and an Alert is written a few
//! milliseconds after the process acted.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::Client;
use riposte_detect::runtime::{Follower, RuntimeConfig, Start, tetragon};
use tracing::{info, warn};

use super::runtime::{self, Inlet, Input, PodIndex, RuntimeSettings};
use crate::error::{Error, Result};
use crate::metrics::{DetectionMetrics, RuntimeMetrics};

/// Events waiting for the rules, at most.
const QUEUE: usize = 65_536;
/// How often the kernel's drop count is published.
const DROP_PUBLISH_INTERVAL: Duration = Duration::from_secs(2);
/// How long the follower waits when the export file has nothing new.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);
/// Tetragon's longest lines (an exec with a long command line) are a few KiB.
const MAX_TETRAGON_LINE: usize = 1 << 20;

/// What the node side runs with.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// This node's name: the pods it attributes events to are those scheduled on it.
    pub node: String,
    /// The operator's namespace: home of the alerts about the node's own processes.
    pub namespace: String,
    pub config: RuntimeConfig,
    /// Run Riposte's own eBPF sensor.
    pub ebpf: bool,
    /// Follow the export file of a Tetragon on this node.
    pub tetragon_export: Option<PathBuf>,
    /// Make the isolation of this node's pods cut their open connections too (the node's
    /// connection tracking forgets them; needs the node's network namespace and
    /// CAP_NET_ADMIN).
    pub forget_isolated_connections: bool,
    /// Where the node's evaluated events are kept for hunting.
    pub hunting: crate::hunting::HuntingSink,
}

/// Runs the sources and the rules until `stop` completes.
pub async fn run(
    client: Client,
    settings: NodeSettings,
    metrics: DetectionMetrics,
    runtime_metrics: RuntimeMetrics,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    if !settings.ebpf && settings.tetragon_export.is_none() {
        return Err(Error::Detection(
            "the node sensor has no source: leave the eBPF sensor on, or give --tetragon-export".into(),
        ));
    }
    let (inlet, receiver) = runtime::inlet(QUEUE, runtime_metrics.clone());
    let pods = Arc::new(RwLock::new(PodIndex::default()));
    // Aborted when this future ends or is dropped, so that a stopped sensor detaches.
    let mut tasks = AbortOnDrop(Vec::new());
    tasks.0.push(tokio::spawn(runtime::watch_pods(client.clone(), Some(settings.node.clone()), pods.clone())));
    if settings.forget_isolated_connections {
        tasks.0.push(tokio::spawn(forget_isolated_connections(client.clone(), settings.node.clone())));
    }
    if settings.ebpf {
        let sensor = riposte_sensor::Sensor::start(riposte_sensor::Options::default())
            .map_err(|e| Error::Detection(format!("the eBPF sensor cannot start: {e}")))?;
        info!(node = settings.node, "eBPF sensor attached");
        tasks.0.push(tokio::spawn(forward_sensor(sensor, inlet.clone(), runtime_metrics.clone())));
    }
    if let Some(path) = settings.tetragon_export.clone() {
        info!(path = %path.display(), "following Tetragon's export");
        let inlet = inlet.clone();
        // A blocking thread cannot be aborted: it stops when the inlet closes.
        let follower = Follower::new(path, Start::End, MAX_TETRAGON_LINE);
        tasks.0.push(tokio::task::spawn_blocking(move || follow_tetragon(follower, &inlet)));
    }
    drop(inlet);
    // The node's events are evaluated here, and kept by `settings.hunting`: the operator's
    // store through its API, or this node's spool copied to the hunting bucket.
    let runtime_settings = RuntimeSettings {
        config: settings.config,
        namespace: settings.namespace,
        node: Some(settings.node),
        hunting: settings.hunting,
    };
    runtime::run(client, runtime_settings, pods, receiver, metrics, runtime_metrics, stop).await;
    drop(tasks);
    Ok(())
}

/// When each newly isolated pod's connections are forgotten, after its label appears: the
/// enforcer programs the isolation policy within a few seconds, and until then a forgotten
/// connection's next packet is tracked anew and still let through.
const FORGET_AFTER: [Duration; 5] =
    [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(3), Duration::from_secs(6), Duration::from_secs(12)];

/// Watches the node's isolated pods (label riposte.dev/isolated) and has the node's
/// connection tracking forget each one's connections, so that a reverse shell opened before
/// the isolation stops with it. Enforcers accept the packets of tracked connections before
/// any NetworkPolicy.
async fn forget_isolated_connections(client: Client, node: String) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher;
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={node}")).labels(crate::isolation::ISOLATED_LABEL);
    let mut stream = std::pin::pin!(watcher(kube::Api::<Pod>::all(client), config));
    let mut isolated = std::collections::HashSet::new();
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(watcher::Event::Delete(pod)) => {
                // Released or gone: a later isolation forgets again.
                isolated.remove(&pod.metadata.uid.unwrap_or_default());
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(e) => {
                warn!("the isolated pods' watch failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let addresses: Vec<std::net::IpAddr> =
            pod.status.iter().flat_map(|s| s.pod_ips.iter().flatten()).filter_map(|ip| ip.ip.parse().ok()).collect();
        if addresses.is_empty() || !isolated.insert(uid) {
            continue;
        }
        let name = format!("{}/{}", pod.metadata.namespace.unwrap_or_default(), pod.metadata.name.unwrap_or_default());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for after in FORGET_AFTER {
                tokio::time::sleep_until(started + after).await;
                for address in addresses.clone() {
                    let forgotten =
                        tokio::task::spawn_blocking(move || riposte_sensor::conntrack::forget(address)).await;
                    match forgotten {
                        Ok(Ok(0)) => {}
                        Ok(Ok(count)) => {
                            info!(pod = name, %address, count, "isolation: the pod's open connections were forgotten")
                        }
                        Ok(Err(e)) => {
                            warn!(pod = name, %address, "isolation: cannot forget the pod's open connections: {e}")
                        }
                        Err(e) => warn!(pod = name, "isolation: {e}"),
                    }
                }
            }
        });
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The eBPF sensor's events into the inlet, and its drop count into the metrics.
async fn forward_sensor(mut sensor: riposte_sensor::Sensor, inlet: Inlet, metrics: RuntimeMetrics) {
    let mut publish = tokio::time::interval(DROP_PUBLISH_INTERVAL);
    loop {
        tokio::select! {
            event = sensor.recv() => {
                let Some(event) = event else {
                    warn!("the eBPF sensor's reader stopped");
                    return;
                };
                if inlet.is_closed() {
                    return;
                }
                inlet.offer(Input::Event(event));
            }
            _ = publish.tick() => {
                metrics.kernel_drops.set(i64::try_from(sensor.dropped()).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Tetragon's export lines into the inlet; a malformed line is counted and logged, and the
/// stream goes on. Runs until the inlet closes.
fn follow_tetragon(mut follower: Follower, inlet: &Inlet) {
    loop {
        if inlet.is_closed() {
            return;
        }
        let Some(line) = follower.poll() else {
            std::thread::sleep(FOLLOW_INTERVAL);
            continue;
        };
        let parsed = line.and_then(|line| tetragon::parse_line(&line));
        match parsed {
            Ok(tetragon::Outcome::Event(mapped)) => {
                inlet.offer(Input::Event(mapped.event));
            }
            Ok(tetragon::Outcome::Unmapped { .. } | tetragon::Outcome::NotProcessEvent { .. }) => {}
            Err(e) => {
                inlet.reject("tetragon");
                warn!(path = %follower.path().display(), "a Tetragon export line was rejected: {e}");
            }
        }
    }
}
