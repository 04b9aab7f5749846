//! A real node for the suites that need running pods: a control plane serving a node
//! (`riposte::local` with [`NodeAccess`]), containerd with runc and the CNI bridge,
//! kubelet, kube-controller-manager, kube-scheduler, and kube-router enforcing
//! NetworkPolicies, all on this machine and all built or installed locally.
//!
//! There is one node per machine (its names, address and ports are fixed): a suite starts
//! it once, through [`run_trials`], and its tests keep apart by namespace. Everything the
//! node changes on the host is recorded first (in [`host::STATE_FILE`]) and put back at
//! teardown, when the harness is dropped (a failed start, a panic), and at the next start
//! after a run that was killed. See `docs/testing-node.md`.

pub mod host;
pub mod images;
pub mod riposte_image;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use riposte::local::{self, LocalControlPlane, NodeAccess, Options};
use serde_json::{Value, json};

use host::{Snapshot, State};

pub const NODE_NAME: &str = "riposte-node";
/// The node's address, on a bridge of its own with no ports (this machine kind has no
/// dummy links, and the kubelet refuses a loopback node IP). The apiserver listens on it
/// too, so that pods can reach it.
pub const NODE_IP: &str = "10.213.0.1";
const NODE_BRIDGE: &str = "riposte-node0";
const CNI_BRIDGE: &str = "riposte-cni0";
pub const POD_SUBNET: &str = "10.244.0.0/24";
/// The `kubernetes` Service's address: the first of the local control plane's range.
pub const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";
pub const KUBE_ROUTER_VERSION: &str = "v2.1.0";
const KUBE_ROUTER_HEALTH_PORT: u16 = 20244;
/// Ports of [`Cluster::server_pod`].
pub const SERVER_TCP_PORTS: [u16; 2] = [8080, 9090];
pub const SERVER_UDP_PORT: u16 = 5353;
const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
const START_TIMEOUT: Duration = Duration::from_secs(120);
pub const POD_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the node keeps containerd's and the kubelet's data: fixed, as the node is.
fn node_dir() -> PathBuf {
    std::env::temp_dir().join("riposte-node")
}

/// The components' logs, kept after teardown for a look at what went wrong.
pub fn log_dir() -> PathBuf {
    std::env::temp_dir().join("riposte-node-logs")
}

/// The images every node has.
#[derive(Clone, Debug)]
pub struct Images {
    pub pause: String,
    /// Busybox with `netcheck` (see [`Cluster::probe`]).
    pub busybox: String,
}

/// The running node and its control plane.
pub struct Cluster {
    // Declared first, so dropped first: the node stops while its apiserver still answers.
    guard: Guard,
    plane: LocalControlPlane,
    pub client: Client,
    pub images: Images,
    containerd_socket: PathBuf,
    debian: tokio::sync::OnceCell<String>,
    /// How long the start took, binaries and images already built.
    pub bring_up: Duration,
}

/// The host's state and the processes started: restores the host when dropped.
struct Guard {
    state: State,
    children: Vec<(String, Child)>,
    restored: bool,
    // Held for the node's life: one node per machine.
    _lock: File,
}

impl Guard {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> Result<(), String> {
        let log = log_dir().join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        self.state.record(name, pid)
    }

    /// Fails with the end of its log when a process the node started has exited.
    fn check_alive(&mut self) -> Result<(), String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited ({status}); the end of its log:\n{}", tail(name)));
            }
        }
        Ok(())
    }

    fn restore(&mut self) -> Vec<String> {
        if self.restored {
            return Vec::new();
        }
        self.restored = true;
        let problems = self.state.restore();
        for (_, child) in &mut self.children {
            let _ = child.wait();
        }
        if problems.is_empty() {
            let _ = std::fs::remove_file(host::STATE_FILE);
        }
        problems
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let problems = self.restore();
        if !problems.is_empty() {
            eprintln!(
                "riposte node: the host could not be fully restored ({} keeps the record):\n  {}",
                host::STATE_FILE,
                problems.join("\n  ")
            );
        }
    }
}

/// The end of a component's log.
fn tail(name: &str) -> String {
    local::tail_of(&log_dir().join(format!("{name}.log")), 20)
}

/// What a connection attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Connected; with what the server answered, if anything.
    Connected(String),
    /// Rejected: a TCP reset or an ICMP unreachable (kube-router's REJECT).
    Refused,
    /// Nothing came back within the timeout (a DROP).
    TimedOut,
}

impl Reach {
    pub fn connected(&self) -> bool {
        matches!(self, Reach::Connected(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl Cluster {
    /// Builds what is missing (binaries, images), recovers the host from a run that was
    /// killed, and starts the node; returns once the node is Ready and kube-router enforces.
    pub async fn start() -> Result<Cluster, String> {
        prerequisites()?;
        std::fs::create_dir_all(host::RUN_DIR).map_err(|e| format!("cannot create {}: {e}", host::RUN_DIR))?;
        let lock = File::create(Path::new(host::RUN_DIR).join("lock")).map_err(|e| format!("node lock: {e}"))?;
        if lock.try_lock().is_err() {
            eprintln!("riposte node: another test process runs the node; waiting for it to finish");
            lock.lock().map_err(|e| format!("node lock: {e}"))?;
        }
        if let Some(stale) = State::stale()? {
            eprintln!(
                "riposte node: a run was killed before it tore its node down; restoring the host from its record"
            );
            let problems = stale.restore();
            if !problems.is_empty() {
                return Err(format!("cannot restore the host after a killed run:\n  {}", problems.join("\n  ")));
            }
            std::fs::remove_file(host::STATE_FILE).map_err(|e| format!("cannot remove {}: {e}", host::STATE_FILE))?;
        }

        local::ensure_binaries().await.map_err(|e| e.to_string())?;
        let node_bin = local::ensure_node_binaries().await.map_err(|e| e.to_string())?;
        let kube_router = ensure_kube_router()?;
        let programs = images::test_programs()?;
        let pause = images::pause(&programs)?;
        let busybox = images::busybox(&programs)?;

        let started = Instant::now();
        let dir = node_dir();
        // Left by a run that died before recording anything, or from before a reboot (which
        // clears /run, not /tmp): its containerd data must not be picked up.
        let problems = host::discard(std::slice::from_ref(&dir));
        if !problems.is_empty() {
            return Err(format!("cannot clear {}: {}", dir.display(), problems.join("; ")));
        }
        let containerd_socket = dir.join("containerd/containerd.sock");
        let state = State {
            before: Snapshot::take()?,
            processes: Vec::new(),
            containerd_socket: containerd_socket.clone(),
            dirs: vec![dir.clone()],
            bridges: vec![CNI_BRIDGE.into(), NODE_BRIDGE.into()],
        };
        state.save()?;
        // From here on, dropping the guard puts the host back.
        let mut guard = Guard { state, children: Vec::new(), restored: false, _lock: lock };
        let _ = std::fs::remove_dir_all(log_dir());
        for sub in
            ["containerd", "cni/net.d", "cni/ipam", "kubelet/root", "kubelet/pods-logs", "kubelet/volume-plugins"]
        {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("cannot create {sub}: {e}"))?;
        }
        std::fs::create_dir_all(log_dir()).map_err(|e| format!("cannot create {}: {e}", log_dir().display()))?;

        // Pods on one bridge talk without routing: iptables, and so kube-router, only sees
        // their packets with br_netfilter's hook on (restored at teardown).
        std::fs::write(BRIDGE_NF_CALL_IPTABLES, "1")
            .map_err(|e| format!("cannot set {BRIDGE_NF_CALL_IPTABLES}: {e}"))?;
        host::run("ip", &["link", "add", NODE_BRIDGE, "type", "bridge"])?;
        host::run("ip", &["addr", "add", &format!("{NODE_IP}/32"), "dev", NODE_BRIDGE])?;
        host::run("ip", &["link", "set", NODE_BRIDGE, "up"])?;

        let node_ip: IpAddr = NODE_IP.parse().expect("a valid address");
        let options =
            Options { node: Some(NodeAccess { node_name: NODE_NAME.into(), address: node_ip }), ..Options::default() };
        let plane = LocalControlPlane::start(options).await.map_err(|e| format!("the control plane: {e}"))?;
        guard.state.dirs.push(plane.dir().to_path_buf());
        for (name, pid) in plane.pids() {
            guard.state.record(name, pid)?;
        }
        let client = plane.client().await.map_err(|e| e.to_string())?;

        start_containerd(&mut guard, &dir, &pause.reference).await?;
        for image in [&pause, &busybox] {
            ctr(&containerd_socket, &["images", "import", &image.archive.display().to_string()])?;
        }
        write_cni_config(&dir)?;

        let credentials = plane.node_credentials().expect("started for a node").clone();
        let admin_kubeconfig = plane.kubeconfig_path().display().to_string();
        guard.spawn(
            "kube-controller-manager",
            &node_bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={admin_kubeconfig}"),
                format!("--service-account-private-key-file={}", credentials.service_account_key.display()),
                format!("--root-ca-file={}", plane.ca_path().display()),
                "--use-service-account-credentials=false".into(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                // The node gets POD_SUBNET as its podCIDR, which kube-router reads.
                "--allocate-node-cidrs=true".into(),
                "--cluster-cidr=10.244.0.0/16".into(),
                "--node-cidr-mask-size=24".into(),
                format!("--service-cluster-ip-range={}", local::SERVICE_CLUSTER_IP_RANGE),
            ],
        )?;
        guard.spawn(
            "kube-scheduler",
            &node_bin.join("kube-scheduler"),
            &[
                format!("--kubeconfig={admin_kubeconfig}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
            ],
        )?;
        let kubelet_dir = dir.join("kubelet");
        let kubeconfig = plane.kubeconfig_for(&format!("system:node:{NODE_NAME}"), &credentials.node_token);
        std::fs::write(kubelet_dir.join("kubeconfig"), kubeconfig).map_err(|e| format!("kubelet kubeconfig: {e}"))?;
        std::fs::write(
            kubelet_dir.join("config.yaml"),
            kubelet_config(&kubelet_dir, &containerd_socket, &credentials.kubelet_client_ca),
        )
        .map_err(|e| format!("kubelet config: {e}"))?;
        guard.spawn(
            "kubelet",
            &node_bin.join("kubelet"),
            &[
                format!("--config={}", kubelet_dir.join("config.yaml").display()),
                format!("--kubeconfig={}", kubelet_dir.join("kubeconfig").display()),
                format!("--root-dir={}", kubelet_dir.join("root").display()),
                format!("--cert-dir={}", kubelet_dir.join("pki").display()),
                format!("--node-ip={NODE_IP}"),
                format!("--hostname-override={NODE_NAME}"),
                "--v=1".into(),
            ],
        )?;

        let nodes: Api<Node> = Api::all(client.clone());
        wait(&mut guard, "the node to become Ready", &["kubelet", "containerd"], || async {
            let node = nodes.get_opt(NODE_NAME).await.ok().flatten()?;
            let conditions = node.status?.conditions?;
            conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await?;
        // No kube-proxy runs, so no Service routes; the `kubernetes` Service does, so that
        // pods using in-cluster configuration (an operator pod) reach the apiserver.
        let api_port = plane.server().rsplit(':').next().unwrap_or_default().to_owned();
        host::run(
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-d",
                &format!("{KUBERNETES_SERVICE_IP}/32"),
                "-p",
                "tcp",
                "--dport",
                "443",
                "-m",
                "comment",
                "--comment",
                "riposte-node: the kubernetes Service",
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{NODE_IP}:{api_port}"),
            ],
        )?;

        let mut cluster = Cluster {
            guard,
            plane,
            client,
            images: Images { pause: pause.reference, busybox: busybox.reference },
            containerd_socket,
            debian: tokio::sync::OnceCell::new(),
            bring_up: Duration::ZERO,
        };
        cluster.kube_router_rbac()?;
        cluster.start_kube_router_at(&kube_router).await?;
        cluster.bring_up = started.elapsed();
        eprintln!("riposte node: {NODE_NAME} Ready, kube-router enforcing, in {:.1} s", cluster.bring_up.as_secs_f64());
        Ok(cluster)
    }

    /// Stops the node and restores the host; returns what could not be restored.
    pub fn teardown(mut self) -> Vec<String> {
        self.guard.restore()
    }

    /// What the host looked like before the node started.
    pub fn host_before(&self) -> &Snapshot {
        &self.guard.state.before
    }

    pub fn plane(&self) -> &LocalControlPlane {
        &self.plane
    }

    pub fn kubeconfig(&self) -> &Path {
        self.plane.kubeconfig_path()
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        crate::kubectl_with(self.kubeconfig(), args, None)
    }

    /// kubectl as the admin, with YAML or JSON on its standard input.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        crate::kubectl_with(self.kubeconfig(), args, Some(input))
    }

    /// kubectl as the admin, which must succeed; its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply` of one object, which must succeed.
    pub fn apply(&self, object: &Value) {
        let out = self.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &object.to_string());
        assert!(out.status.success(), "kubectl apply of {object}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Creates a namespace and waits until pods can run in it (its `default` ServiceAccount
    /// and root CA ConfigMap exist, made by kube-controller-manager).
    pub async fn namespace(&self, name: &str) {
        let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).expect("a valid namespace");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), name);
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), name);
        crate::eventually(&format!("namespace {name}'s default ServiceAccount and kube-root-ca.crt"), || async {
            let account = accounts.get_opt("default").await.ok().flatten();
            let ca = config_maps.get_opt("kube-root-ca.crt").await.ok().flatten();
            (account.is_some() && ca.is_some()).then_some(())
        })
        .await;
    }

    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// A pod running `command` in `image` (never pulled: the node has only local images),
    /// that stops within a second when deleted.
    pub fn pod_manifest(&self, name: &str, labels: &[(&str, &str)], image: &str, command: &[&str]) -> Value {
        let labels: BTreeMap<_, _> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "labels": labels },
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{ "name": "main", "image": image, "imagePullPolicy": "Never", "command": command }],
            },
        })
    }

    /// Runs a pod from [`Cluster::pod_manifest`] and waits until it is Running and Ready.
    pub async fn run_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        image: &str,
        command: &[&str],
    ) -> Pod {
        self.run_pod_manifest(namespace, self.pod_manifest(name, labels, image, command)).await
    }

    /// Creates a pod from a manifest and waits until it is Running and Ready; panics with
    /// its status, its events and the kubelet's log if it does not get there.
    pub async fn run_pod_manifest(&self, namespace: &str, manifest: Value) -> Pod {
        let name = manifest["metadata"]["name"].as_str().expect("the pod has a name").to_owned();
        let pod: Pod = serde_json::from_value(manifest).expect("a valid pod");
        let pods = self.pods(namespace);
        pods.create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("creating pod {namespace}/{name}: {e}"));
        match self.wait_ready(namespace, &name, POD_TIMEOUT).await {
            Some(pod) => pod,
            None => panic!("{}", self.pod_report(namespace, &name, "did not become Running and Ready")),
        }
    }

    /// The pod once Running and Ready, or None after `timeout`.
    pub async fn wait_ready(&self, namespace: &str, name: &str, timeout: Duration) -> Option<Pod> {
        let pods = self.pods(namespace);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(pod)) = pods.get_opt(name).await {
                let status = pod.status.as_ref();
                let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if running && ready {
                    return Some(pod);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// A pod's status, its events and the end of the kubelet's log, to explain a failure.
    pub fn pod_report(&self, namespace: &str, name: &str, what: &str) -> String {
        let describe = self.kubectl(&["describe", "pod", "-n", namespace, name]);
        format!(
            "pod {namespace}/{name} {what}\n--- kubectl describe ---\n{}{}\n--- kubelet.log ---\n{}\n--- containerd.log ---\n{}",
            String::from_utf8_lossy(&describe.stdout),
            String::from_utf8_lossy(&describe.stderr),
            tail("kubelet"),
            tail("containerd"),
        )
    }

    /// The pod's IP address.
    pub async fn pod_ip(&self, namespace: &str, name: &str) -> IpAddr {
        let pod =
            self.pods(namespace).get(name).await.unwrap_or_else(|e| panic!("reading pod {namespace}/{name}: {e}"));
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_else(|| panic!("pod {namespace}/{name} has no IP"));
        ip.parse().unwrap_or_else(|e| panic!("pod {namespace}/{name}'s IP {ip}: {e}"))
    }

    /// `kubectl exec` into the pod's (first) container.
    pub fn exec(&self, namespace: &str, pod: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", "-n", namespace, pod, "--"];
        args.extend_from_slice(command);
        self.kubectl(&args)
    }

    /// A busybox pod that answers `riposte tcp:<port>` on [`SERVER_TCP_PORTS`] and
    /// `riposte udp:<port>` on [`SERVER_UDP_PORT`], Ready once it listens.
    pub async fn server_pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
        let mut endpoints: Vec<String> = SERVER_TCP_PORTS.iter().map(|p| format!("tcp:{p}")).collect();
        endpoints.push(format!("udp:{SERVER_UDP_PORT}"));
        let mut command = vec!["/bin/netcheck", "serve"];
        command.extend(endpoints.iter().map(String::as_str));
        let mut manifest = self.pod_manifest(name, labels, &self.images.busybox, &command);
        // Probed from inside, so that no NetworkPolicy under test decides readiness.
        let probe = format!("127.0.0.1:{}", SERVER_TCP_PORTS[0]);
        manifest["spec"]["containers"][0]["readinessProbe"] = json!({
            "exec": { "command": ["/bin/netcheck", "probe", "tcp", probe, "1s"] },
            "periodSeconds": 1,
        });
        self.run_pod_manifest(namespace, manifest).await
    }

    /// A busybox pod that sleeps, to probe from.
    pub async fn client_pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
        self.run_pod(namespace, name, labels, &self.images.busybox, &["sleep", "86400"]).await
    }

    /// From pod `from`, one connection attempt to `target` (IP:port) with a one-second timeout.
    pub fn probe(&self, namespace: &str, from: &str, target: &str, protocol: Protocol) -> Reach {
        self.probe_within(namespace, from, target, protocol, Duration::from_secs(1))
    }

    pub fn probe_within(
        &self,
        namespace: &str,
        from: &str,
        target: &str,
        protocol: Protocol,
        timeout: Duration,
    ) -> Reach {
        let timeout = format!("{}ms", timeout.as_millis());
        let out = self.exec(namespace, from, &["/bin/netcheck", "probe", protocol.name(), target, &timeout]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.trim();
        match line.split_once(' ').map_or((line, ""), |(word, rest)| (word, rest)) {
            ("connected", answer) => Reach::Connected(answer.to_owned()),
            ("refused", _) => Reach::Refused,
            ("timeout", _) => Reach::TimedOut,
            _ => panic!(
                "probing {} {target} from {namespace}/{from}: unexpected outcome {line:?} ({}): {}",
                protocol.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Polls [`Cluster::probe`] until `wanted` holds: how long it took and the outcome, or
    /// the last outcome after `timeout`.
    pub async fn probe_until(
        &self,
        namespace: &str,
        from: &str,
        target: &str,
        protocol: Protocol,
        timeout: Duration,
        wanted: impl Fn(&Reach) -> bool,
    ) -> Result<(Duration, Reach), Reach> {
        let started = Instant::now();
        loop {
            let reach = self.probe(namespace, from, target, protocol);
            if wanted(&reach) {
                return Ok((started.elapsed(), reach));
            }
            if started.elapsed() > timeout {
                return Err(reach);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `riposte.test/debian:<tag>` (bash, curl, python3, netcat), built on first use (a few
    /// minutes; cached) and imported into the node.
    pub async fn debian_image(&self) -> String {
        self.debian
            .get_or_init(|| async {
                // Blocks only this trial's thread: trials run their futures with block_on.
                let image = images::debian().unwrap_or_else(|e| panic!("{e}"));
                ctr(&self.containerd_socket, &["images", "import", &image.archive.display().to_string()])
                    .unwrap_or_else(|e| panic!("{e}"));
                image.reference
            })
            .await
            .clone()
    }

    /// The ServiceAccount and the rules kube-router needs (as in its own manifests).
    fn kube_router_rbac(&self) -> Result<(), String> {
        let manifest = r#"
apiVersion: v1
kind: ServiceAccount
metadata: { name: kube-router, namespace: kube-system }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: kube-router }
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [list, get, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, get, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, get, watch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
- apiGroups: [""]
  resources: [services/status]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: kube-router }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-router }
subjects:
- { kind: ServiceAccount, name: kube-router, namespace: kube-system }
"#;
        let out = self.kubectl_stdin(&["apply", "--server-side", "-f", "-"], manifest);
        if !out.status.success() {
            return Err(format!("kube-router's RBAC: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let token = self.kubectl(&["create", "token", "kube-router", "-n", "kube-system", "--duration=24h"]);
        if !token.status.success() {
            return Err(format!("kube-router's token: {}", String::from_utf8_lossy(&token.stderr)));
        }
        let token = String::from_utf8_lossy(&token.stdout);
        std::fs::write(kube_router_kubeconfig_path(), self.plane.kubeconfig_for("kube-router", token.trim()))
            .map_err(|e| format!("kube-router kubeconfig: {e}"))
    }

    /// Starts kube-router as the DaemonSet `kube-system/kube-router` (the name Riposte's
    /// enforcer detection knows) and waits until it enforces.
    pub async fn start_kube_router(&self) {
        let binary = ensure_kube_router().unwrap_or_else(|e| panic!("{e}"));
        self.start_kube_router_at(&binary).await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The DaemonSet's pod is privileged on the host network and runs the host's kube-router
    /// build with the host's iptables and ipset (by chroot), as kube-router's own image
    /// would, since that image cannot be pulled here.
    async fn start_kube_router_at(&self, binary: &Path) -> Result<(), String> {
        self.apply_kube_router(binary, None)?;
        self.wait_for_kube_router().await
    }

    /// kube-router's DaemonSet; with a node selector that no node matches, it stays
    /// installed with no pod.
    fn apply_kube_router(&self, binary: &Path, node_selector: Option<Value>) -> Result<(), String> {
        let command = [
            "chroot".to_string(),
            "/host".into(),
            binary.display().to_string(),
            format!("--kubeconfig={}", kube_router_kubeconfig_path().display()),
            "--run-firewall=true".into(),
            "--run-router=false".into(),
            "--run-service-proxy=false".into(),
            format!("--hostname-override={NODE_NAME}"),
            format!("--service-cluster-ip-range={}", local::SERVICE_CLUSTER_IP_RANGE),
            format!("--health-port={KUBE_ROUTER_HEALTH_PORT}"),
        ];
        let daemonset = json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": { "name": "kube-router", "namespace": "kube-system", "labels": { "k8s-app": "kube-router" } },
            "spec": {
                "selector": { "matchLabels": { "k8s-app": "kube-router" } },
                "template": {
                    "metadata": { "labels": { "k8s-app": "kube-router" } },
                    "spec": {
                        "hostNetwork": true,
                        "serviceAccountName": "kube-router",
                        "automountServiceAccountToken": false,
                        "terminationGracePeriodSeconds": 5,
                        "tolerations": [{ "operator": "Exists" }],
                        "containers": [{
                            "name": "kube-router",
                            "image": self.images.busybox,
                            "imagePullPolicy": "Never",
                            "command": command,
                            // The host's PATH, for the host's iptables and ipset once in the chroot.
                            "env": [{ "name": "PATH", "value": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }],
                            "securityContext": { "privileged": true },
                            "readinessProbe": {
                                "httpGet": { "path": "/healthz", "port": KUBE_ROUTER_HEALTH_PORT },
                                "periodSeconds": 1,
                            },
                            "volumeMounts": [{ "name": "host", "mountPath": "/host" }],
                        }],
                        "volumes": [{ "name": "host", "hostPath": { "path": "/" } }],
                    },
                },
            },
        });
        let mut daemonset = daemonset;
        if let Some(selector) = node_selector {
            daemonset["spec"]["template"]["spec"]["nodeSelector"] = selector;
        }
        let out = self.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &daemonset.to_string());
        if !out.status.success() {
            return Err(format!("applying kube-router's DaemonSet: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    async fn wait_for_kube_router(&self) -> Result<(), String> {
        let pods = self.pods("kube-system");
        let started = Instant::now();
        loop {
            let list =
                pods.list(&ListParams::default().labels("k8s-app=kube-router")).await.map_err(|e| e.to_string())?;
            let ready = list.items.iter().any(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            // Its chains in the filter table are how it enforces.
            let chains = host::run("iptables-save", &["-t", "filter"]).unwrap_or_default();
            if ready && chains.contains(":KUBE-ROUTER-FORWARD") {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                let logs = self.kubectl(&["logs", "-n", "kube-system", "daemonset/kube-router", "--tail=30"]);
                let name = list.items.first().and_then(|p| p.metadata.name.clone()).unwrap_or_default();
                return Err(format!(
                    "kube-router did not start enforcing within {START_TIMEOUT:?}\n--- its log ---\n{}{}\n{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr),
                    self.pod_report("kube-system", &name, "is kube-router's"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Leaves kube-router's DaemonSet installed but with no pod (a node selector no node
    /// matches), as an enforcer that is down; [`Cluster::start_kube_router`] brings it back.
    pub async fn suspend_kube_router(&self) {
        let binary = ensure_kube_router().unwrap_or_else(|e| panic!("{e}"));
        let selector = json!({ "riposte.dev/no-such-node": "true" });
        self.apply_kube_router(&binary, Some(selector)).unwrap_or_else(|e| panic!("{e}"));
        self.wait_for_no_kube_router_pod().await;
    }

    async fn wait_for_no_kube_router_pod(&self) {
        let pods = self.pods("kube-system");
        crate::eventually("kube-router's pod to be gone", || async {
            let listed = pods.list(&ListParams::default().labels("k8s-app=kube-router")).await.ok()?;
            listed.items.is_empty().then_some(())
        })
        .await;
    }

    /// Deletes kube-router's DaemonSet and waits until its pod is gone. Its rules stay in
    /// iptables as they were (kube-router does not remove them when it stops), but nothing
    /// updates them any more.
    pub async fn stop_kube_router(&self) {
        let daemonsets: Api<DaemonSet> = Api::namespaced(self.client.clone(), "kube-system");
        daemonsets
            .delete("kube-router", &DeleteParams::foreground())
            .await
            .unwrap_or_else(|e| panic!("deleting kube-router's DaemonSet: {e}"));
        crate::eventually("kube-router's DaemonSet to be gone", || async {
            daemonsets.get_opt("kube-router").await.ok()?.is_none().then_some(())
        })
        .await;
        self.wait_for_no_kube_router_pod().await;
    }
}

/// Root, and the host packages the node runs on (tests/run.sh installs them).
fn prerequisites() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        return Err("the node tests need root (they run containerd, the kubelet and iptables)".into());
    }
    let missing: Vec<&str> = ["containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "ipset", "conntrack"]
        .into_iter()
        .filter(|c| host::run("sh", &["-c", &format!("command -v {c}")]).is_err())
        .chain(
            ["/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", "/bin/busybox"]
                .into_iter()
                .filter(|p| !Path::new(p).exists()),
        )
        .collect();
    if !Path::new(BRIDGE_NF_CALL_IPTABLES).exists() {
        return Err(format!(
            "{BRIDGE_NF_CALL_IPTABLES} is missing: the br_netfilter module is not loaded, so no NetworkPolicy \
             would be enforced between pods on the node's bridge (modprobe br_netfilter)"
        ));
    }
    if !missing.is_empty() {
        return Err(format!(
            "missing on this host: {}; install: apt-get install --no-install-recommends containerd runc \
             containernetworking-plugins iptables ipset conntrack busybox-static (tests/run.sh does)",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// Polls `check` until it returns Some, failing with the named logs when a process of the
/// node exits or [`START_TIMEOUT`] passes.
async fn wait<T, F, Fut>(guard: &mut Guard, what: &str, logs: &[&str], mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(found) = check().await {
            return Ok(found);
        }
        guard.check_alive().map_err(|e| format!("waiting for {what}: {e}"))?;
        if Instant::now() > deadline {
            let tails: Vec<String> = logs.iter().map(|l| format!("--- {l}.log ---\n{}", tail(l))).collect();
            return Err(format!("timed out after {START_TIMEOUT:?} waiting for {what}\n{}", tails.join("\n")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_containerd(guard: &mut Guard, dir: &Path, pause: &str) -> Result<(), String> {
    let containerd = dir.join("containerd");
    let socket = containerd.join("containerd.sock");
    // runc's state under the node's dir; the CNI config and IPAM state too; OOM score
    // adjustments kept within what this host allows (no CAP_SYS_RESOURCE).
    let config = format!(
        r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        root = containerd.join("root").display(),
        state = containerd.join("state").display(),
        socket = socket.display(),
        opt = containerd.join("opt").display(),
        runc = containerd.join("runc").display(),
        cni = dir.join("cni/net.d").display(),
    );
    let config_path = containerd.join("config.toml");
    std::fs::write(&config_path, config).map_err(|e| format!("containerd config: {e}"))?;
    guard.spawn("containerd", Path::new("containerd"), &[format!("--config={}", config_path.display())])?;
    wait(guard, "containerd to serve", &["containerd"], || async { ctr(&socket, &["version"]).ok() }).await?;
    Ok(())
}

fn ctr(socket: &Path, args: &[&str]) -> Result<String, String> {
    let address = socket.display().to_string();
    let mut all = vec!["--address", &address, "--namespace", "k8s.io"];
    all.extend_from_slice(args);
    host::run("ctr", &all)
}

/// A bridge with host-local addresses from [`POD_SUBNET`], routed by the host, without
/// masquerading: pods reach each other and the node, nothing outside the machine.
fn write_cni_config(dir: &Path) -> Result<(), String> {
    let config = json!({
        "cniVersion": "0.4.0",
        "name": "riposte",
        "plugins": [{
            "type": "bridge",
            "bridge": CNI_BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": POD_SUBNET }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": dir.join("cni/ipam").display().to_string(),
            },
        }],
    });
    std::fs::write(dir.join("cni/net.d/10-riposte.conflist"), config.to_string())
        .map_err(|e| format!("CNI config: {e}"))
}

/// The kubelet for this machine kind: cgroup v1 with cgroupfs, swap tolerated, no image
/// garbage collection (local images cannot be pulled again), the apiserver's client
/// certificate trusted and authorised by webhook, every path under the node's directory.
fn kubelet_config(dir: &Path, containerd_socket: &Path, client_ca: &Path) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {client_ca}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
podLogsDir: {logs}
volumePluginDir: {plugins}
serializeImagePulls: false
registerNode: true
clusterDomain: cluster.local
"#,
        client_ca = client_ca.display(),
        socket = containerd_socket.display(),
        logs = dir.join("pods-logs").display(),
        plugins = dir.join("volume-plugins").display(),
    )
}

fn kube_router_kubeconfig_path() -> PathBuf {
    node_dir().join("kube-router.kubeconfig")
}

/// kube-router, built by `go install` into the cache unless there.
pub fn ensure_kube_router() -> Result<PathBuf, String> {
    let dir = local::cache_dir().join("tools").join(format!("kube-router-{KUBE_ROUTER_VERSION}"));
    let binary = dir.join("kube-router");
    if binary.exists() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock = File::create(dir.join(".build.lock")).map_err(|e| format!("kube-router build lock: {e}"))?;
    lock.lock().map_err(|e| format!("kube-router build lock: {e}"))?;
    if binary.exists() {
        return Ok(binary);
    }
    eprintln!("riposte node: building kube-router {KUBE_ROUTER_VERSION} (first time only; a few minutes)");
    let partial = dir.join("partial");
    let status = Command::new("go")
        .args(["install", &format!("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@{KUBE_ROUTER_VERSION}")])
        .env("GOBIN", &partial)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .status()
        .map_err(|e| format!("cannot run go (is Go installed?): {e}"))?;
    if !status.success() {
        return Err(format!("go install kube-router {KUBE_ROUTER_VERSION} failed ({status}); see the output above"));
    }
    std::fs::rename(partial.join("kube-router"), &binary)
        .map_err(|e| format!("cannot move kube-router into place: {e}"))?;
    let _ = std::fs::remove_dir_all(partial);
    Ok(binary)
}

/// A trial's body, run on the calling thread with the suite's runtime.
type TrialRun = Box<dyn FnOnce(&Cluster, &tokio::runtime::Handle) + Send>;

/// A test of a node suite: an async function of the shared cluster.
pub struct NodeTrial {
    name: String,
    run: TrialRun,
}

/// Names `test` as a trial of a suite.
pub fn trial<F>(name: &str, test: F) -> NodeTrial
where
    F: AsyncFnOnce(&Cluster) + Send + 'static,
{
    NodeTrial { name: name.to_owned(), run: Box::new(move |cluster, runtime| runtime.block_on(test(cluster))) }
}

/// The whole of a node suite's `main` (a `harness = false` test target): starts the node
/// when the first selected trial runs (none selected, none started), runs the trials one
/// at a time (they share the node, and some stop parts of it) with panics caught per trial,
/// tears the node down, and then checks, as one more trial, that the host is as it was.
/// Prints libtest's summary lines, so `cargo test` and tests/run.sh count these trials.
pub fn run_trials(trials: Vec<NodeTrial>) -> std::process::ExitCode {
    crate::init_logging();
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let cluster: Arc<OnceLock<Result<Cluster, String>>> = Arc::new(OnceLock::new());
    let failure_reported = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tests = trials
        .into_iter()
        .map(|trial| {
            let (cluster, handle) = (cluster.clone(), runtime.handle().clone());
            let failure_reported = failure_reported.clone();
            libtest_mimic::Trial::test(trial.name, move || {
                let started = cluster.get_or_init(|| handle.block_on(Cluster::start()));
                let cluster = started.as_ref().map_err(|e| {
                    if failure_reported.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        "the node did not start (the first failed trial says why)".to_owned()
                    } else {
                        format!("the node did not start: {e}")
                    }
                })?;
                let run = trial.run;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cluster, &handle)))
                    .map_err(|panic| panic_message(&panic).into())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, tests);
    let Some(Ok(started)) = Arc::into_inner(cluster).and_then(OnceLock::into_inner) else {
        return conclusion.exit_code();
    };
    let before = started.host_before().clone();
    let bring_up = started.bring_up;
    let began = Instant::now();
    let problems = {
        let _runtime = runtime.enter();
        started.teardown()
    };
    eprintln!(
        "riposte node: brought up in {:.1} s, torn down in {:.1} s",
        bring_up.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    let check = libtest_mimic::Trial::test("node::host_is_restored_after_teardown", move || {
        if !problems.is_empty() {
            return Err(format!("teardown failed:\n  {}", problems.join("\n  ")).into());
        }
        let after = Snapshot::take()?;
        let differences = Snapshot::differences(&before, &after);
        if differences.is_empty() {
            Ok(())
        } else {
            Err(format!("the host differs from before the node:\n  {}", differences.join("\n  ")).into())
        }
    });
    // Whatever the trials were filtered by, a node that ran is checked.
    let check_args = libtest_mimic::Arguments { filter: None, skip: Vec::new(), exact: false, ..args };
    let restored = libtest_mimic::run(&check_args, vec![check]);
    if conclusion.has_failed() || restored.has_failed() {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the trial panicked".into())
}
