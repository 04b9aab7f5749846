//! Detections from the control plane, with the truth: a real kube-apiserver auditing with
//! the chart's policy into Riposte's webhook, an attacker's steps taken with kubectl and
//! curl, and the Alerts that appear. Benign work (deployments, rollouts, scaling, RBAC for
//! an application, the apiserver's own bootstrap) must raise none.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use riposte::detection::pipeline::{self, BASELINE_CONFIG_MAP};
use riposte::detection::webhook::Credentials;
use riposte::local::LocalAuditWebhook;
use riposte::metrics::ReasonLabels;
use riposte_crds::{Alert, Phase, ResponseAction};
use riposte_e2e::{Env, default_guardrails, detection_settings, eventually, post_with_curl, serve_audit_webhook};
use serde_json::json;

const SOURCE_LABEL: &str = "riposte.dev/source";

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(env: &Env, yaml: &str) {
    ok(env.kubectl_stdin(&["apply", "-f", "-"], yaml));
}

/// Every Alert the detection path raised so far.
async fn detected(env: &Env) -> Vec<Alert> {
    Api::<Alert>::all(env.client.clone())
        .list(&ListParams::default().labels(SOURCE_LABEL))
        .await
        .expect("alerts list")
        .items
}

/// Waits for an Alert of `alert_type` that `matches`.
async fn alert(env: &Env, alert_type: &str, matches: impl Fn(&Alert) -> bool) -> Alert {
    eventually(&format!("a {alert_type} alert"), || async {
        detected(env).await.into_iter().find(|a| a.spec.alert_type.0 == alert_type && matches(a))
    })
    .await
}

fn evidence<'a>(alert: &'a Alert, name: &str) -> Option<&'a str> {
    alert.spec.evidence.iter().find(|e| e.name == name).map(|e| e.value.as_str())
}

/// Waits until the webhook has received and the rules evaluated everything sent so far:
/// the apiserver's batches leave within 100ms, so two quiet seconds with an empty queue
/// mean nothing is in flight.
async fn settle(env: &Env) {
    let metrics = &env.audit.as_ref().expect("audited").metrics;
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let evaluated = metrics.events_evaluated.get();
        if evaluated == last && metrics.queued_events.get() == 0 {
            return;
        }
        last = evaluated;
    }
}

const BENIGN: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: web, namespace: shop }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: web-config, namespace: shop }
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: web-config, namespace: shop }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: web-config }
subjects: [{ kind: ServiceAccount, name: web, namespace: shop }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: developers-edit, namespace: shop }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit }
subjects: [{ kind: Group, name: developers, apiGroup: rbac.authorization.k8s.io }]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: web-config, namespace: shop }
data: { LOG_LEVEL: info }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      serviceAccountName: web
      containers:
        - name: web
          image: nginx:1.27
          ports: [{ containerPort: 80 }]
          volumeMounts: [{ name: cache, mountPath: /var/cache/nginx }]
          securityContext: { allowPrivilegeEscalation: false, runAsNonRoot: true }
      volumes: [{ name: cache, emptyDir: {} }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  selector: { app: web }
  ports: [{ port: 80 }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: cache, namespace: shop }
spec:
  serviceName: cache
  selector: { matchLabels: { app: cache } }
  template:
    metadata: { labels: { app: cache } }
    spec:
      containers: [{ name: redis, image: redis:7.2, ports: [{ containerPort: 6379 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: cache, namespace: shop }
spec:
  selector: { app: cache }
  ports: [{ port: 6379 }]
---
apiVersion: batch/v1
kind: CronJob
metadata: { name: report, namespace: shop }
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{ name: report, image: python:3.12-slim, command: ["python", "-c", "print('report')"] }]
---
# The cluster's own components, as kubeadm installs them: privileged, with host mounts,
# in kube-system, from the system registry.
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: kube-proxy, namespace: kube-system, labels: { k8s-app: kube-proxy } }
spec:
  selector: { matchLabels: { k8s-app: kube-proxy } }
  template:
    metadata: { labels: { k8s-app: kube-proxy } }
    spec:
      hostNetwork: true
      priorityClassName: system-node-critical
      serviceAccountName: kube-proxy
      containers:
        - name: kube-proxy
          image: registry.k8s.io/kube-proxy:v1.33.1
          command: ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"]
          securityContext: { privileged: true }
          volumeMounts:
            - { name: kube-proxy, mountPath: /var/lib/kube-proxy }
            - { name: xtables-lock, mountPath: /run/xtables.lock }
            - { name: lib-modules, mountPath: /lib/modules, readOnly: true }
      volumes:
        - { name: kube-proxy, configMap: { name: kube-proxy } }
        - { name: xtables-lock, hostPath: { path: /run/xtables.lock, type: FileOrCreate } }
        - { name: lib-modules, hostPath: { path: /lib/modules } }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: coredns, namespace: kube-system, labels: { k8s-app: kube-dns } }
spec:
  replicas: 2
  selector: { matchLabels: { k8s-app: kube-dns } }
  template:
    metadata: { labels: { k8s-app: kube-dns } }
    spec:
      priorityClassName: system-cluster-critical
      containers:
        - name: coredns
          image: registry.k8s.io/coredns/coredns:v1.12.0
          args: ["-conf", "/etc/coredns/Corefile"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: { add: [NET_BIND_SERVICE], drop: [ALL] }
---
apiVersion: v1
kind: Pod
metadata: { name: toolbox, namespace: shop, labels: { app: toolbox } }
spec:
  containers: [{ name: toolbox, image: busybox:1.36, command: ["sleep", "3600"] }]
"#;

/// What an operations team does on a normal day, beyond creating things.
fn benign_day(env: &Env) {
    apply(env, BENIGN);
    ok(env.kubectl(&["-n", "shop", "set", "image", "deployment/web", "web=nginx:1.28"]));
    ok(env.kubectl(&["-n", "shop", "scale", "deployment/web", "--replicas=4"]));
    ok(env.kubectl(&["-n", "shop", "rollout", "restart", "deployment/web"]));
    ok(env.kubectl(&["-n", "shop", "label", "pod", "toolbox", "team=payments"]));
    ok(env.kubectl(&["-n", "shop", "annotate", "deployment", "web", "owner=payments"]));
    ok(env.kubectl(&["-n", "shop", "create", "job", "report-now", "--from=cronjob/report"]));
    ok(env.kubectl(&["-n", "shop", "get", "pods,deployments,services,configmaps", "-o", "name"]));
    ok(env.kubectl(&["-n", "shop", "delete", "pod", "toolbox", "--wait=false"]));
    ok(env.kubectl(&["-n", "shop", "patch", "configmap", "web-config", "-p", r#"{"data":{"LOG_LEVEL":"debug"}}"#]));
    ok(env.kubectl(&["-n", "kube-system", "rollout", "restart", "daemonset/kube-proxy"]));
    ok(env.kubectl(&[
        "-n",
        "kube-system",
        "set",
        "image",
        "daemonset/kube-proxy",
        "kube-proxy=registry.k8s.io/kube-proxy:v1.33.2",
    ]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_workloads_raise_alerts_with_their_entities_and_a_normal_day_raises_none() {
    let mut env = Env::with_audit_webhook().await;
    // The chart's RBAC and admission policy; the rules and the operator run with the
    // chart ServiceAccount's own token, as in a cluster.
    env.install_chart();
    let operator = env.chart_operator_client().await;
    env.start_detection(
        operator.clone(),
        detection_settings(riposte_detect::Config::default(), Duration::from_secs(3600)),
    );
    env.run_operator(operator, default_guardrails());
    env.wait_for_admission_policy().await;

    benign_day(&env);
    settle(&env).await;
    let false_alerts: Vec<String> =
        detected(&env).await.iter().map(|a| format!("{} {}", a.spec.alert_type.0, a.spec.title)).collect();
    assert!(false_alerts.is_empty(), "a normal day raised alerts: {false_alerts:#?}");
    assert!(env.audit.as_ref().unwrap().metrics.events_evaluated.get() > 100, "the apiserver's events were evaluated");

    // A policy isolates pods found running privileged in shop.
    apply(
        &env,
        r#"
apiVersion: riposte.dev/v1alpha1
kind: ResponsePolicy
metadata: { name: isolate-privileged }
spec:
  mode: Automatic
  match: { alertTypes: [K8S_PrivilegedContainer], namespaces: [shop] }
  actions: [{ action: Isolate }]
"#,
    );

    // The attacker's steps.
    apply(
        &env,
        r#"
apiVersion: v1
kind: Pod
metadata: { name: debug, namespace: shop, labels: { app: debug } }
spec:
  containers:
    - name: shell
      image: busybox:1.36
      command: ["sleep", "infinity"]
      securityContext: { privileged: true }
---
apiVersion: v1
kind: Pod
metadata: { name: node-reader, namespace: shop }
spec:
  containers:
    - name: reader
      image: alpine:3.20
      volumeMounts: [{ name: host-etc, mountPath: /host/etc }]
  volumes: [{ name: host-etc, hostPath: { path: /etc } }]
"#,
    );
    ok(env.kubectl(&[
        "-n",
        "shop",
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","securityContext":{"privileged":true,"allowPrivilegeEscalation":true,"runAsNonRoot":false}}]}}}}"#,
    ]));
    ok(env.kubectl(&["-n", "shop", "run", "miner", "--image=xmrig/xmrig:6.21.0"]));
    ok(env.kubectl(&["-n", "kube-system", "run", "backdoor", "--image=alpine:3.20", "--", "sleep", "infinity"]));

    let privileged_pod =
        alert(&env, "K8S_PrivilegedContainer", |a| a.spec.entities.pod.as_deref() == Some("debug")).await;
    let e = &privileged_pod.spec.entities;
    assert_eq!(
        (e.namespace.as_deref(), e.container.as_deref(), e.image.as_deref(), e.user.as_deref()),
        (Some("shop"), Some("shell"), Some("busybox:1.36"), Some(riposte_e2e::ADMIN))
    );
    assert_eq!(privileged_pod.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(privileged_pod.spec.source.as_deref(), Some("riposte-audit"));
    assert_eq!(evidence(&privileged_pod, "verb"), Some("create"));
    assert_eq!(evidence(&privileged_pod, "user"), Some(riposte_e2e::ADMIN));
    assert!(evidence(&privileged_pod, "auditID").is_some_and(|id| !id.is_empty()));

    let template =
        alert(&env, "K8S_PrivilegedContainer", |a| a.spec.entities.workload_name.as_deref() == Some("web")).await;
    assert_eq!(template.spec.entities.workload_kind.as_deref(), Some("Deployment"));
    assert_eq!(evidence(&template, "verb"), Some("patch"), "a patch of a pod template is seen, not only create pod");

    let mount = alert(&env, "K8S_SensitiveMount", |a| a.spec.entities.pod.as_deref() == Some("node-reader")).await;
    assert_eq!(mount.spec.entities.container.as_deref(), Some("reader"));
    let miner = alert(&env, "K8S_MaliciousContainerImage", |a| a.spec.entities.pod.as_deref() == Some("miner")).await;
    assert_eq!(miner.spec.entities.image.as_deref(), Some("xmrig/xmrig:6.21.0"));
    let backdoor = alert(&env, "K8S_KubeSystemContainer", |a| a.spec.entities.pod.as_deref() == Some("backdoor")).await;
    assert_eq!(backdoor.metadata.namespace.as_deref(), Some("kube-system"));

    // The operator answers the privileged pod through the policy: isolated.
    let actions = Api::<ResponseAction>::namespaced(env.client.clone(), "shop");
    let isolation = eventually("the policy's isolation of shop/debug to succeed", || async {
        actions.list(&ListParams::default()).await.ok()?.items.into_iter().find(|a| {
            a.spec.target.pod == "debug" && a.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Succeeded))
        })
    })
    .await;
    assert_eq!(isolation.spec.policy_ref.as_ref().map(|p| p.name.as_str()), Some("isolate-privileged"));
    let policies = Api::<NetworkPolicy>::namespaced(env.client.clone(), "shop");
    assert!(!policies.list(&ListParams::default()).await.unwrap().items.is_empty(), "an isolation policy exists");
    // Guidance and history come from the alert controller, as for any alert.
    let answered = eventually("the alert's guidance", || async {
        let a = Api::<Alert>::namespaced(env.client.clone(), "shop").get(&privileged_pod.name_any()).await.ok()?;
        a.status.as_ref()?.guidance.as_ref()?;
        Some(a)
    })
    .await;
    assert!(answered.status.unwrap().actions.iter().any(|l| l.name == isolation.name_any()));

    // Exactly these detections: nothing else fired during the attack.
    settle(&env).await;
    let types: BTreeSet<String> = detected(&env).await.iter().map(|a| a.spec.alert_type.0.clone()).collect();
    assert_eq!(
        types,
        ["K8S_KubeSystemContainer", "K8S_MaliciousContainerImage", "K8S_PrivilegedContainer", "K8S_SensitiveMount"]
            .map(String::from)
            .into()
    );
    assert_eq!(env.audit.as_ref().unwrap().metrics.alert_write_failures.get(), 0);
}

/// curl against the apiserver as the admin, with extra arguments (user agent, headers).
fn curl_apiserver(env: &Env, path: &str, extra: &[&str]) -> Output {
    let token = admin_token(env);
    let url = format!("{}{path}", env.plane.server());
    std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Authorization: Bearer {token}")])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs")
}

fn admin_token(env: &Env) -> String {
    let kubeconfig = std::fs::read_to_string(env.plane.kubeconfig_path()).unwrap();
    kubeconfig.lines().find_map(|l| l.trim().strip_prefix("token: ")).expect("the admin kubeconfig has a token").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_rbac_and_the_control_plane_raise_alerts() {
    let mut env = Env::with_audit_webhook().await;
    // The cluster's CoreDNS configuration, as the installer writes it.
    apply(
        &env,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: coredns, namespace: kube-system }
data:
  Corefile: |
    .:53 {
        kubernetes cluster.local in-addr.arpa ip6.arpa
        forward . /etc/resolv.conf
    }
"#,
    );
    let config =
        riposte_detect::Config { proxy_networks: vec!["198.51.100.0/24".parse().unwrap()], ..Default::default() };
    env.start_detection(env.client.clone(), detection_settings(config, Duration::from_secs(3600)));

    ok(env.kubectl(&["create", "clusterrolebinding", "support", "--clusterrole=cluster-admin", "--user=mallory"]));
    ok(env.kubectl(&["create", "clusterrole", "everything", "--verb=*", "--resource=*"]));
    ok(env.kubectl(&["create", "namespace", "shop"]));
    ok(env.kubectl(&[
        "-n",
        "shop",
        "create",
        "rolebinding",
        "shop-admin",
        "--clusterrole=cluster-admin",
        "--user=eve",
    ]));
    ok(env.kubectl(&[
        "-n",
        "kube-system",
        "patch",
        "configmap",
        "coredns",
        "-p",
        r#"{"data":{"Corefile":".:53 {\n    forward . 203.0.113.53\n}\n"}}"#,
    ]));
    apply(
        &env,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: { name: sidecar-injector }
webhooks:
  - name: inject.example.com
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: Ignore
    clientConfig: { url: "https://203.0.113.9/inject" }
    rules: [{ operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods"] }]
"#,
    );
    ok(env.kubectl(&["-n", "shop", "create", "configmap", "noise"]));
    apply(
        &env,
        r#"
apiVersion: v1
kind: Event
metadata: { name: web.shell-spawned, namespace: shop }
involvedObject: { kind: Pod, name: web, namespace: shop }
reason: Started
message: Started container web
type: Normal
"#,
    );
    ok(env.kubectl(&["-n", "shop", "delete", "events", "--all"]));
    let hunter = curl_apiserver(&env, "/api/v1/pods", &["-A", "kube-hunter/0.6.8"]);
    assert_eq!(String::from_utf8_lossy(&hunter.stdout), "200");
    let proxied = curl_apiserver(&env, "/api/v1/namespaces", &["-H", "X-Forwarded-For: 198.51.100.7"]);
    assert_eq!(String::from_utf8_lossy(&proxied.stdout), "200");

    let binding = alert(&env, "K8S_ClusterAdminBinding", |a| {
        evidence(a, "requestURI").is_some_and(|u| u.contains("clusterrolebindings"))
    })
    .await;
    assert_eq!(
        binding.metadata.namespace.as_deref(),
        Some("riposte-system"),
        "cluster-scoped: the operator's namespace"
    );
    assert!(binding.spec.title.contains("mallory"), "{}", binding.spec.title);
    let namespaced =
        alert(&env, "K8S_ClusterAdminBinding", |a| a.spec.entities.namespace.as_deref() == Some("shop")).await;
    assert!(namespaced.spec.title.contains("eve"), "{}", namespaced.spec.title);
    let role = alert(&env, "K8S_HighPrivilegesRole", |_| true).await;
    assert!(role.spec.title.contains("everything"), "{}", role.spec.title);
    let dns = alert(&env, "K8S_CoreDnsModification", |_| true).await;
    assert_eq!(dns.metadata.namespace.as_deref(), Some("kube-system"));
    let webhook = alert(&env, "K8S_AdmissionController", |_| true).await;
    assert!(webhook.spec.title.contains("sidecar-injector"), "{}", webhook.spec.title);
    let deleted = alert(&env, "K8S_DeleteEvents", |_| true).await;
    assert_eq!(deleted.spec.entities.namespace.as_deref(), Some("shop"));
    let hunter = alert(&env, "K8S_PenTestToolsKubeHunter", |_| true).await;
    assert_eq!(evidence(&hunter, "userAgent"), Some("kube-hunter/0.6.8"));
    let proxy = alert(&env, "K8S_TI_Proxy", |_| true).await;
    assert_eq!(evidence(&proxy, "proxyAddress"), Some("198.51.100.7"));
    assert_eq!(proxy.spec.entities.user.as_deref(), Some(riposte_e2e::ADMIN));

    settle(&env).await;
    let types: BTreeSet<String> = detected(&env).await.iter().map(|a| a.spec.alert_type.0.clone()).collect();
    assert_eq!(
        types,
        [
            "K8S_AdmissionController",
            "K8S_ClusterAdminBinding",
            "K8S_CoreDnsModification",
            "K8S_DeleteEvents",
            "K8S_HighPrivilegesRole",
            "K8S_PenTestToolsKubeHunter",
            "K8S_TI_Proxy",
        ]
        .map(String::from)
        .into(),
        "the creation of the namespace and the ConfigMap raised nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_are_found_when_a_service_is_written_and_by_the_scan() {
    let mut env = Env::with_audit_webhook().await;
    let mut settings = detection_settings(riposte_detect::Config::default(), Duration::from_secs(3600));
    settings.scan_interval = Duration::from_secs(2);
    env.start_detection(env.client.clone(), settings);
    ok(env.kubectl(&["create", "namespace", "kubernetes-dashboard"]));
    ok(env.kubectl(&[
        "-n",
        "kubernetes-dashboard",
        "create",
        "deployment",
        "kubernetes-dashboard",
        "--image=kubernetesui/dashboard:v2.7.0",
        "--port=8443",
    ]));
    ok(env.kubectl(&[
        "-n",
        "kubernetes-dashboard",
        "expose",
        "deployment",
        "kubernetes-dashboard",
        "--type=LoadBalancer",
        "--port=443",
        "--target-port=8443",
    ]));
    let dashboard = alert(&env, "K8S_ExposedDashboard", |_| true).await;
    assert_eq!(dashboard.spec.source.as_deref(), Some("riposte-audit"));
    assert_eq!(dashboard.spec.entities.namespace.as_deref(), Some("kubernetes-dashboard"));
    assert_eq!(dashboard.spec.entities.user.as_deref(), Some(riposte_e2e::ADMIN));

    // A Service that exposes nothing when written; Redis appears behind it afterwards. Only
    // the scan can see it.
    ok(env.kubectl(&["create", "namespace", "cache"]));
    ok(env.kubectl(&["-n", "cache", "create", "service", "nodeport", "redis", "--tcp=6379:6379"]));
    ok(env.kubectl(&["-n", "cache", "create", "deployment", "redis", "--image=redis:7.2", "--port=6379"]));
    let redis = alert(&env, "K8S_ExposedRedis", |_| true).await;
    assert_eq!(redis.spec.source.as_deref(), Some("riposte-config-scan"));
    assert_eq!(redis.spec.entities.namespace.as_deref(), Some("cache"));

    // Later scans raise nothing new while the alerts are open.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let exposures: Vec<String> = detected(&env).await.iter().map(|a| a.spec.alert_type.0.clone()).collect();
    assert_eq!(exposures.len(), 2, "{exposures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_baseline_learns_reports_and_survives_a_restart() {
    let mut env = Env::with_audit_webhook().await;
    let learning = Duration::from_secs(6);
    env.start_detection(env.client.clone(), detection_settings(riposte_detect::Config::default(), learning));
    ok(env.kubectl(&["create", "namespace", "shop"]));
    ok(env.kubectl(&["-n", "shop", "create", "serviceaccount", "web"]));
    // No controller-manager aggregates the built-in edit and view roles here: spell out
    // what the application may do.
    ok(env.kubectl(&["-n", "shop", "create", "role", "web", "--verb=get,list", "--resource=configmaps,pods,secrets"]));
    ok(env.kubectl(&["-n", "shop", "create", "rolebinding", "web", "--role=web", "--serviceaccount=shop:web"]));
    ok(env.kubectl(&["create", "clusterrole", "namespace-reader", "--verb=get,list", "--resource=namespaces"]));
    ok(env.kubectl(&[
        "create",
        "clusterrolebinding",
        "web",
        "--clusterrole=namespace-reader",
        "--serviceaccount=shop:web",
    ]));
    let token = ok(env.kubectl(&["-n", "shop", "create", "token", "web"]));
    let kubeconfig = env.plane.kubeconfig_path().to_owned();
    let as_web =
        |args: &[&str]| ok(riposte_e2e::kubectl_with(&kubeconfig, &[&["--token", token.trim()], args].concat(), None));

    // Learning: what the application does every day.
    as_web(&["-n", "shop", "get", "configmaps"]);
    as_web(&["-n", "shop", "get", "pods"]);
    let learned_until = Api::<ConfigMap>::namespaced(env.client.clone(), "riposte-system");
    eventually("the baseline to be saved", || async {
        let saved = learned_until.get_opt(BASELINE_CONFIG_MAP).await.ok()??;
        saved.data?.get("baseline.json")?.contains("list configmaps").then_some(())
    })
    .await;
    tokio::time::sleep(learning).await;

    // After learning: the same is fine, something new is reported.
    as_web(&["-n", "shop", "get", "configmaps"]);
    as_web(&["get", "namespaces"]);
    let rare = alert(&env, "K8S_ServiceAccountRareOperation", |_| true).await;
    assert_eq!(rare.spec.entities.service_account.as_deref(), Some("web"));
    assert_eq!(rare.spec.entities.namespace.as_deref(), Some("shop"));
    assert_eq!(evidence(&rare, "operation"), Some("list namespaces cluster-wide"));

    // A restart (as on SIGTERM) keeps what was learned.
    env.stop_detection().await;
    env.start_detection(env.client.clone(), detection_settings(riposte_detect::Config::default(), learning));
    as_web(&["get", "namespaces"]);
    as_web(&["-n", "shop", "get", "pods"]);
    as_web(&["-n", "shop", "get", "secrets"]);
    let secrets = alert(&env, "K8S_ServiceAccountRareOperation", |a| {
        evidence(a, "operation").is_some_and(|o| o.contains("secrets"))
    })
    .await;
    assert_eq!(evidence(&secrets, "operation"), Some("list secrets in namespace shop"));
    settle(&env).await;
    let rare: Vec<String> = detected(&env)
        .await
        .iter()
        .filter(|a| a.spec.alert_type.0 == "K8S_ServiceAccountRareOperation")
        .filter_map(|a| evidence(a, "operation").map(str::to_owned))
        .collect();
    assert_eq!(rare.len(), 2, "namespaces and pods were known after the restart: {rare:?}");
}

fn event(audit_id: &str) -> serde_json::Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces", "verb": "list",
        "user": { "username": "alice" }, "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl/v1.33.0",
        "responseStatus": { "code": 200 },
        "requestReceivedTimestamp": "2026-11-22T10:00:00.000000Z", "stageTimestamp": "2026-11-22T10:00:00.001000Z",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_authenticates_bounds_its_input_and_reports_drops() {
    let local = LocalAuditWebhook::bind_with(
        4096,
        Credentials { token: Some("s3cret-token".into()), ..Credentials::default() },
    )
    .await
    .expect("binds");
    let target = local.target.clone();
    // Room for three events, and nothing evaluating them.
    let (server, _receiver, metrics) =
        serve_audit_webhook(local.webhook, pipeline::QueueLimits { events: 3, bytes: 1 << 20 });
    let dir = std::env::temp_dir().join(format!("riposte-webhook-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certificate = riposte_e2e::write_webhook_credentials(&target, &dir);
    let certificate: Vec<&str> = certificate.iter().map(String::as_str).collect();
    let ca = dir.join("ca.crt");
    let list = |ids: &[&str]| {
        serde_json::to_vec(&json!({ "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": ids.iter().map(|id| event(id)).collect::<Vec<_>>() }))
            .unwrap()
    };

    let (code, body) = post_with_curl(&target.url, &ca, &list(&["a"]), &[]);
    assert_eq!(code, 401, "no credentials: {body}");
    let (code, _) = post_with_curl(&target.url, &ca, &list(&["a"]), &["-H", "Authorization: Bearer wrong-token"]);
    assert_eq!(code, 401, "a wrong token");
    let (code, body) = post_with_curl(
        &target.url,
        &ca,
        b"{\"kind\":\"EventList\",\"items\":[{\"verb\":",
        &["-H", "Authorization: Bearer s3cret-token"],
    );
    assert_eq!(code, 400);
    assert!(body.contains("not an audit.k8s.io/v1"), "{body}");
    let (code, body) = post_with_curl(
        &target.url,
        &ca,
        br#"{"kind":"Pod","metadata":{}}"#,
        &["-H", "Authorization: Bearer s3cret-token"],
    );
    assert_eq!((code, body.trim()), (400, "the body is a Pod, not an audit.k8s.io/v1 EventList or Event"));
    let (code, _) = post_with_curl(&target.url, &ca, &vec![b' '; 5000], &["-H", "Authorization: Bearer s3cret-token"]);
    assert_eq!(code, 413, "over the body limit");

    // The apiserver's way: its client certificate, an EventList.
    let (code, body) = post_with_curl(&target.url, &ca, &list(&["a", "b"]), &certificate);
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":2}"#));
    // A log shipper's way: the token, JSON lines.
    let lines = format!("{}\n", event("c"));
    let (code, body) =
        post_with_curl(&target.url, &ca, lines.as_bytes(), &["-H", "Authorization: Bearer s3cret-token"]);
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":1}"#));
    // The queue is full: answered at once, dropped, counted.
    let (code, body) = post_with_curl(&target.url, &ca, &list(&["d", "e"]), &certificate);
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":0,"dropped":2}"#));
    assert_eq!(metrics.events_dropped.get_or_create(&ReasonLabels { reason: "queue_full".into() }).get(), 2);
    assert_eq!(metrics.events_received.get(), 3);
    assert_eq!(metrics.queued_events.get(), 3);
    let refused: u64 = ["401", "400", "413"]
        .iter()
        .map(|code| metrics.requests.get_or_create(&riposte::metrics::CodeLabels { code: (*code).into() }).get())
        .sum();
    assert_eq!(refused, 5);
    server.abort();
    let _ = std::fs::remove_dir_all(dir);
}
