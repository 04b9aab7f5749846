//! A local control plane (etcd and kube-apiserver, no nodes) for running Riposte without a
//! cluster and for testing it against the real API machinery, much as controller-runtime's
//! envtest does. The binaries are built once from Go modules into a cache outside the
//! repository (`operator/controlplane/build.sh`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use tokio::process::{Child, Command};
use tracing::info;

use crate::detection::webhook::Credentials;
use crate::error::{Error, Result};

pub const KUBERNETES_VERSION: &str = "v1.33.13";
/// The etcd that this Kubernetes release pins in its go.mod.
pub const ETCD_VERSION: &str = "v3.5.21";
const BUILD_SCRIPT: &str = include_str!("../controlplane/build.sh");
const ADMIN_USER: &str = "riposte-admin";
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A user the apiserver will authenticate by bearer token (for tests of RBAC).
#[derive(Clone, Debug)]
pub struct StaticUser {
    pub name: String,
    pub token: String,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Users besides the admin, who is in system:masters.
    pub users: Vec<StaticUser>,
    /// More kube-apiserver flags.
    pub extraapiserver_args: Vec<String>,
    /// Send the apiserver's audit events to this webhook, with the chart's audit policy.
    pub audit_webhook: Option<AuditWebhookTarget>,
    /// Serve a node: without it the control plane is API-only (RBAC authorization, no
    /// ServiceAccount admission, since nothing would create the ServiceAccounts it wants).
    pub node: Option<NodeAccess>,
}

/// What a control plane needs to serve one real node (its kubelet, controller-manager and
/// scheduler): Node,RBAC authorization with NodeRestriction, ServiceAccount admission (a
/// kube-controller-manager must then run its ServiceAccount and root CA controllers), a
/// bearer token for `system:node:<name>`, and a client certificate for the apiserver's own
/// requests to the kubelet (exec, logs, port-forward).
#[derive(Clone, Debug)]
pub struct NodeAccess {
    pub node_name: String,
    /// Where the apiserver binds and what it advertises: an address of this host that the
    /// node's pods can reach, unlike loopback. The apiserver's certificate is made for it.
    pub address: std::net::IpAddr,
}

/// The node's credentials and the files a node's components need, made by
/// [`LocalControlPlane::start`] for [`Options::node`].
#[derive(Clone, Debug)]
pub struct NodeCredentials {
    /// Bearer token of `system:node:<name>`, in group `system:nodes`.
    pub node_token: String,
    /// The CA that signed the apiserver's client certificate: the kubelet's `clientCAFile`.
    pub kubelet_client_ca: PathBuf,
    /// The ServiceAccount signing key: kube-controller-manager's `--service-account-private-key-file`.
    pub service_account_key: PathBuf,
}

/// The chart's audit policy: what the apiserver records, at which level, for the rules.
pub const AUDIT_POLICY: &str = include_str!("../../charts/riposte/files/audit-policy.yaml");

/// Where the apiserver's webhook audit backend sends its batches: the URL, the CA that
/// signed the webhook's serving certificate, and the client certificate it presents.
#[derive(Clone, Debug)]
pub struct AuditWebhookTarget {
    pub url: String,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// The audit webhook of a local control plane: bound on loopback with a serving
/// certificate and a client CA made for it, and the target to give the apiserver.
pub struct LocalAuditWebhook {
    pub webhook: crate::detection::webhook::Webhook,
    pub target: AuditWebhookTarget,
}

impl LocalAuditWebhook {
    /// Makes a throwaway CA, the webhook's serving certificate (127.0.0.1) and the
    /// apiserver's client certificate, and binds the webhook on a free loopback port.
    pub async fn bind(max_body_bytes: usize) -> Result<LocalAuditWebhook> {
        LocalAuditWebhook::bind_with(max_body_bytes, Credentials::default()).await
    }

    /// As [`LocalAuditWebhook::bind`], also accepting `credentials` (a bearer token,
    /// Firehose's access key, Pub/Sub's push tokens).
    pub async fn bind_with(max_body_bytes: usize, credentials: Credentials) -> Result<LocalAuditWebhook> {
        use rcgen::ExtendedKeyUsagePurpose;
        let ca = TestCa::new("riposte-local-audit-ca")?;
        let (server_cert, server_key) = ca.issue(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "riposte-audit",
            None,
        )?;
        let (client_cert, client_key) =
            ca.issue(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, "kube-apiserver", None)?;

        // The webhook reads its certificates from files, as in a pod; they are not needed
        // once loaded.
        let dir = std::env::temp_dir().join(format!("riposte-audit-{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(&dir).map_err(io("create the audit webhook's directory"))?;
        let files = [("ca.crt", ca.pem.clone()), ("tls.crt", server_cert), ("tls.key", server_key)];
        for (name, content) in &files {
            std::fs::write(dir.join(name), content).map_err(io("write the audit webhook's certificates"))?;
        }
        let settings = crate::detection::webhook::WebhookSettings {
            addr: "127.0.0.1:0".parse().expect("a valid address"),
            tls_cert: dir.join("tls.crt"),
            tls_key: dir.join("tls.key"),
            client_ca: Some(dir.join("ca.crt")),
            credentials,
            max_body_bytes,
        };
        let bound = crate::detection::webhook::Webhook::bind(&settings).await;
        let _ = std::fs::remove_dir_all(&dir);
        let webhook = bound?;
        let url = format!("https://{}{}", webhook.local_addr()?, crate::detection::webhook::PATH);
        Ok(LocalAuditWebhook {
            webhook,
            target: AuditWebhookTarget {
                url,
                ca_pem: ca.pem,
                client_cert_pem: client_cert,
                client_key_pem: client_key,
            },
        })
    }
}

/// The hunting API of a local control plane (and of the suites): on a free loopback port,
/// with a serving certificate of a throwaway CA, which clients are given.
pub struct LocalHuntingApi {
    pub server: crate::hunting::server::HuntingServer,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pub ca_pem: String,
}

impl LocalHuntingApi {
    pub async fn bind(limits: riposte_hunt::query::Limits) -> Result<LocalHuntingApi> {
        let ca = TestCa::new("riposte-local-hunting-ca")?;
        let (cert, key) = ca.issue(
            vec!["127.0.0.1".into(), "localhost".into()],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            "riposte-hunting",
            None,
        )?;
        let dir = std::env::temp_dir().join(format!("riposte-hunting-{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(&dir).map_err(io("create the hunting API's directory"))?;
        for (name, content) in [("tls.crt", &cert), ("tls.key", &key)] {
            std::fs::write(dir.join(name), content).map_err(io("write the hunting API's certificate"))?;
        }
        let settings = crate::hunting::server::ServerSettings {
            addr: "127.0.0.1:0".parse().expect("a valid address"),
            tls_cert: dir.join("tls.crt"),
            tls_key: dir.join("tls.key"),
            limits,
        };
        let bound = crate::hunting::server::HuntingServer::bind(&settings).await;
        let _ = std::fs::remove_dir_all(&dir);
        let server = bound?;
        let url = format!("https://{}", server.local_addr()?);
        Ok(LocalHuntingApi { server, url, ca_pem: ca.pem })
    }
}

/// A throwaway certificate authority for the local control plane's certificates.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(common_name: &str) -> Result<TestCa> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let key = KeyPair::generate().map_err(|e| cert_error("CA key", e))?;
        let mut params = CertificateParams::new(Vec::new()).map_err(|e| cert_error("CA", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        let pem = params.self_signed(&key).map_err(|e| cert_error("CA", e))?.pem();
        Ok(TestCa { issuer: rcgen::Issuer::new(params, key), pem })
    }

    /// A certificate and its key (PEM) for these names, as `common_name` in `organization`.
    fn issue(
        &self,
        names: Vec<String>,
        usage: rcgen::ExtendedKeyUsagePurpose,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<(String, String)> {
        let key = rcgen::KeyPair::generate().map_err(|e| cert_error("key", e))?;
        let mut params = rcgen::CertificateParams::new(names).map_err(|e| cert_error("certificate", e))?;
        params.extended_key_usages = vec![usage];
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, organization);
        }
        let certificate = params.signed_by(&key, &self.issuer).map_err(|e| cert_error("certificate", e))?;
        Ok((certificate.pem(), key.serialize_pem()))
    }
}

fn cert_error(what: &str, e: rcgen::Error) -> Error {
    Error::LocalControlPlane(format!("local certificate {what}: {e}"))
}

/// A running etcd and kube-apiserver on loopback (or, serving a node, on the node's
/// address); stopped and removed when dropped.
pub struct LocalControlPlane {
    dir: PathBuf,
    keep_dir: bool,
    server: String,
    admin_token: String,
    kubeconfig: PathBuf,
    node: Option<NodeCredentials>,
    // Dropping the children kills them (kill_on_drop), apiserver first.
    apiserver: Child,
    etcd_process: Child,
}

impl LocalControlPlane {
    pub async fn start(options: Options) -> Result<Self> {
        // The ports are picked free, then bound by etcd and kube-apiserver a moment later:
        // another process may take one in between. Start again on new ports when it did.
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            match LocalControlPlane::start_once(&options).await {
                Err(Error::LocalControlPlane(message))
                    if attempt < ATTEMPTS && message.contains("address already in use") =>
                {
                    attempt += 1;
                    info!("a port of the local control plane was taken meanwhile; starting again on other ports");
                }
                started => return started,
            }
        }
    }

    async fn start_once(options: &Options) -> Result<Self> {
        let bin = ensure_binaries().await?;
        let dir = std::env::temp_dir().join(format!("riposte-cp-{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(dir.join("certs")).map_err(io("create the control plane directory"))?;

        let admin_token = random_token();
        let mut tokens = format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n");
        let mut users = options.users.clone();
        let node_token = random_token();
        if let Some(node) = &options.node {
            let name = format!("system:node:{}", node.node_name);
            users.push(StaticUser { name, token: node_token.clone(), groups: vec!["system:nodes".into()] });
        }
        for user in &users {
            tokens.push_str(&format!("{},{},{},\"{}\"\n", user.token, user.name, user.name, user.groups.join(",")));
        }
        std::fs::write(dir.join("tokens.csv"), tokens).map_err(io("write the token file"))?;
        let signing_key =
            rcgen::KeyPair::generate().map_err(|e| Error::LocalControlPlane(format!("service account key: {e}")))?;
        std::fs::write(dir.join("sa.key"), signing_key.serialize_pem()).map_err(io("write the service account key"))?;
        std::fs::write(dir.join("sa.pub"), signing_key.public_key_pem())
            .map_err(io("write the service account key"))?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd = spawn(
            Command::new(bin.join("etcd")).args([
                &format!("--data-dir={}", dir.join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync",
                "--log-level=warn",
            ]),
            &dir.join("etcd.log"),
        )?;
        let address = options.node.as_ref().map_or(std::net::IpAddr::from([127, 0, 0, 1]), |n| n.address);
        let mut args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--secure-port={api_port}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", dir.join("sa.pub").display()),
            format!("--service-account-signing-key-file={}", dir.join("sa.key").display()),
            "--allow-privileged=true".into(),
        ];
        let node = match &options.node {
            None => {
                args.push("--authorization-mode=RBAC".into());
                // No controller-manager creates the default ServiceAccounts that this plugin wants.
                args.push("--disable-admission-plugins=ServiceAccount".into());
                None
            }
            Some(_) => {
                args.extend(kubelet_client_args(&dir)?);
                Some(NodeCredentials {
                    node_token,
                    kubelet_client_ca: dir.join("kubelet-client-ca.crt"),
                    service_account_key: dir.join("sa.key"),
                })
            }
        };
        if let Some(target) = &options.audit_webhook {
            args.extend(audit_webhook_args(&dir, target)?);
        }
        args.extend(options.extraapiserver_args.iter().cloned());
        let apiserver = spawn(Command::new(bin.join("kube-apiserver")).args(&args), &dir.join("kube-apiserver.log"))?;

        let server = format!("https://{}", std::net::SocketAddr::from((address, api_port)));
        let kubeconfig = dir.join("kubeconfig");
        let mut plane = LocalControlPlane {
            node,
            keep_dir: std::env::var_os("RIPOSTE_KEEP_CONTROL_PLANE_DIR").is_some(),
            dir,
            server,
            admin_token,
            kubeconfig,
            apiserver,
            etcd_process: etcd,
        };
        plane.wait_until_ready().await?;
        info!(server = %plane.server, kubeconfig = %plane.kubeconfig.display(), "local control plane ready");
        Ok(plane)
    }

    async fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = self.server.trim_start_matches("https://").to_owned();
        // Wait for the port first: the client logs every refused connection as an error.
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            self.check_alive_within(deadline, "kube-apiserver to listen")?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::fs::write(&self.kubeconfig, self.kubeconfig_for(ADMIN_USER, &self.admin_token))
            .map_err(io("write the kubeconfig"))?;
        let client = self.client().await?;
        loop {
            let request = ::http::Request::get("/readyz").body(Vec::new()).expect("a static request is valid");
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                _ => self.check_alive_within(deadline, "kube-apiserver to become ready")?,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails, with the end of both logs, when a process has exited or time is up.
    fn check_alive_within(&mut self, deadline: Instant, waiting_for: &str) -> Result<()> {
        let exited = match (self.etcd_process.try_wait(), self.apiserver.try_wait()) {
            (Ok(Some(status)), _) => Some(format!("etcd exited ({status})")),
            (_, Ok(Some(status))) => Some(format!("kube-apiserver exited ({status})")),
            _ => None,
        };
        if exited.is_none() && Instant::now() < deadline {
            return Ok(());
        }
        Err(Error::LocalControlPlane(format!(
            "{} while waiting for {waiting_for}\n{}",
            exited.unwrap_or_else(|| "timed out".to_owned()),
            self.log_tail()
        )))
    }

    /// A kubeconfig that authenticates as `user` with a bearer token.
    pub fn kubeconfig_for(&self, user: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: riposte-local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: riposte-local\n  context:\n    cluster: riposte-local\n    user: {user}\ncurrent-context: riposte-local\n",
            server = self.server,
            ca = self.ca_path().display(),
        )
    }

    /// The admin's kubeconfig file, for kubectl.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA bundle that verifies the apiserver's serving certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("certs/apiserver.crt")
    }

    /// The end of the apiserver's and etcd's logs, for errors that the control plane may explain.
    pub fn log_tail(&self) -> String {
        format!(
            "--- etcd.log ---\n{}\n--- kube-apiserver.log ---\n{}",
            tail_of(&self.dir.join("etcd.log"), 15),
            tail_of(&self.dir.join("kube-apiserver.log"), 15)
        )
    }

    /// The directory of its data, certificates and logs (removed when dropped).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process IDs of kube-apiserver and etcd, for a harness that must find them again
    /// after its own process was killed.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        [("etcd", self.etcd_process.id()), ("kube-apiserver", self.apiserver.id())]
            .into_iter()
            .filter_map(|(name, pid)| Some((name, pid?)))
            .collect()
    }

    /// What a node needs, when started with [`Options::node`].
    pub fn node_credentials(&self) -> Option<&NodeCredentials> {
        self.node.as_ref()
    }

    /// A client authenticated as the admin (system:masters).
    pub async fn client(&self) -> Result<Client> {
        self.client_for(ADMIN_USER, &self.admin_token).await
    }

    /// A client authenticated by a bearer token: a static user's or a ServiceAccount's.
    pub async fn client_for(&self, user: &str, token: &str) -> Result<Client> {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_for(user, token))
            .map_err(|e| Error::LocalControlPlane(format!("kubeconfig: {e}")))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::LocalControlPlane(format!("kubeconfig: {e}")))?;
        Ok(Client::try_from(config)?)
    }
}

impl Drop for LocalControlPlane {
    fn drop(&mut self) {
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The Service network of the local control plane.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";

/// Makes the apiserver's client certificate for kubelets (in system:masters, as kubeadm's
/// was, so that a kubelet authorising by webhook lets it exec, read logs and port-forward)
/// and the CA a kubelet trusts it by; returns the flags for a node.
fn kubelet_client_args(dir: &Path) -> Result<Vec<String>> {
    let ca = TestCa::new("riposte-local-kubelet-client-ca")?;
    let (cert, key) = ca.issue(
        Vec::new(),
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        "kube-apiserver-kubelet-client",
        Some("system:masters"),
    )?;
    for (name, content) in
        [("kubelet-client-ca.crt", &ca.pem), ("kubelet-client.crt", &cert), ("kubelet-client.key", &key)]
    {
        std::fs::write(dir.join(name), content).map_err(io("write the kubelet client certificate"))?;
    }
    Ok(vec![
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        format!("--kubelet-client-certificate={}", dir.join("kubelet-client.crt").display()),
        format!("--kubelet-client-key={}", dir.join("kubelet-client.key").display()),
        "--kubelet-preferred-address-types=InternalIP".into(),
    ])
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut last: Vec<&str> = text.lines().rev().take(lines).collect();
    last.reverse();
    last.join("\n")
}

/// Writes the audit policy and the webhook's kubeconfig, and returns the flags that use them.
/// Batches leave after at most 100ms (the default waits 30s) and are not throttled, so
/// that detections are seconds-fast locally.
fn audit_webhook_args(dir: &Path, target: &AuditWebhookTarget) -> Result<Vec<String>> {
    let audit = dir.join("audit");
    std::fs::create_dir_all(&audit).map_err(io("create the audit directory"))?;
    for (name, content) in [
        ("policy.yaml", AUDIT_POLICY),
        ("ca.crt", &target.ca_pem),
        ("client.crt", &target.client_cert_pem),
        ("client.key", &target.client_key_pem),
    ] {
        std::fs::write(audit.join(name), content).map_err(io("write the audit configuration"))?;
    }
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: riposte\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\n\
         users:\n- name: kube-apiserver\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
         contexts:\n- name: riposte\n  context:\n    cluster: riposte\n    user: kube-apiserver\ncurrent-context: riposte\n",
        url = target.url,
        ca = audit.join("ca.crt").display(),
        cert = audit.join("client.crt").display(),
        key = audit.join("client.key").display(),
    );
    std::fs::write(audit.join("webhook.kubeconfig"), kubeconfig).map_err(io("write the audit webhook kubeconfig"))?;
    Ok(vec![
        format!("--audit-policy-file={}", audit.join("policy.yaml").display()),
        format!("--audit-webhook-config-file={}", audit.join("webhook.kubeconfig").display()),
        "--audit-webhook-mode=batch".into(),
        "--audit-webhook-batch-max-wait=100ms".into(),
        "--audit-webhook-batch-throttle-enable=false".into(),
    ])
}

/// Creates a namespace unless it exists (the operator's own, for its evidence and settings).
pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespace = serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(name, &PatchParams::apply(crate::controller::MANAGER), &Patch::Apply(&namespace))
        .await?;
    Ok(())
}

/// Applies Riposte's CRDs and waits until the apiserver serves them.
pub async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in riposte_crds::crds() {
        api.patch(&crd.name_any(), &PatchParams::apply(crate::controller::MANAGER).force(), &Patch::Apply(&crd))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for crd in riposte_crds::crds() {
        loop {
            let current = api.get(&crd.name_any()).await?;
            let established = current
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::LocalControlPlane(format!("CRD {} did not become established", crd.name_any())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Where the control plane binaries are cached: `$RIPOSTE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/riposte`, else `~/.cache/riposte`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RIPOSTE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("riposte")
}

/// Builds etcd and kube-apiserver unless the cache has them; returns their directory.
pub async fn ensure_binaries() -> Result<PathBuf> {
    let bin = cache_dir().join("controlplane").join(KUBERNETES_VERSION);
    build_unless_cached(&bin, &["kube-apiserver", "etcd"], &[KUBERNETES_VERSION, ETCD_VERSION]).await?;
    Ok(bin)
}

/// Builds kubelet, kube-controller-manager and kube-scheduler unless the cache has them;
/// returns their directory.
pub async fn ensure_node_binaries() -> Result<PathBuf> {
    let bin = cache_dir().join("node").join(KUBERNETES_VERSION);
    let names = ["kubelet", "kube-controller-manager", "kube-scheduler"];
    build_unless_cached(&bin, &names, &["--node", KUBERNETES_VERSION]).await?;
    Ok(bin)
}

/// Runs `build.sh` with `args` (the output directory goes after a leading `--flag`) when
/// one of `names` is missing from `bin`.
async fn build_unless_cached(bin: &Path, names: &[&str], args: &[&str]) -> Result<()> {
    if names.iter().all(|name| bin.join(name).exists()) {
        return Ok(());
    }
    std::fs::create_dir_all(bin).map_err(io("create the binary cache"))?;
    let script = bin.join("build.sh");
    std::fs::write(&script, BUILD_SCRIPT).map_err(io("write the build script"))?;
    let (flags, versions) = args.split_at(args.iter().take_while(|a| a.starts_with("--")).count());
    let status = Command::new("bash")
        .arg(&script)
        .args(flags)
        .arg(bin)
        .args(versions)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(io("run the Kubernetes build (is Go installed?)"))?;
    if !status.success() {
        return Err(Error::LocalControlPlane(format!(
            "building {} failed ({status}); see the output above",
            names.join(", ")
        )));
    }
    Ok(())
}

fn spawn(command: &mut Command, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log).map_err(io("create a log file"))?;
    let err = out.try_clone().map_err(io("create a log file"))?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(io("start a control plane process"))
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("find a free port"))?;
    Ok(listener.local_addr().map_err(io("find a free port"))?.port())
}

fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("/dev/urandom is readable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unique within the process even for calls in the same tick of a coarse clock (parallel
/// tests start their control planes at once: two sharing a directory removed each other's).
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{nanos}-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::LocalControlPlane(format!("cannot {what}: {e}"))
}
