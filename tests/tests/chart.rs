//! The Helm chart: it lints, renders, is accepted by a real apiserver, and its RBAC is
//! enough for the operator and no more. Its detection side: the audit policy and the webhook
//! kubeconfig it renders for kube-apiserver are accepted by a real one, which then records
//! what the rules need and never a Secret's content.

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use riposte::local::Options;
use riposte_crds::Phase;
use riposte_e2e::{Env, helm, repo_path};
use serde_json::{Value, json};

fn chart() -> String {
    repo_path("charts/riposte").display().to_string()
}

/// `helm template` of release `riposte` in riposte-system: the documents, or Helm's error.
fn try_render(extra: &[&str]) -> Result<Vec<Value>, String> {
    let out = std::process::Command::new(helm())
        .args(["template", "riposte", &chart(), "--namespace", "riposte-system"])
        .args(extra)
        .output()
        .expect("helm runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("the chart renders as text");
    Ok(serde_yaml::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect())
}

fn render(extra: &[&str]) -> Vec<Value> {
    try_render(extra).unwrap_or_else(|e| panic!("helm template {extra:?}: {e}"))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn typed<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str, name: &str) -> T {
    let doc = find(docs, kind, name).unwrap_or_else(|| panic!("{kind} {name} is rendered"));
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

fn secret_text(secret: &Secret, key: &str) -> String {
    let data = secret.data.as_ref().and_then(|d| d.get(key)).unwrap_or_else(|| panic!("Secret key {key}"));
    String::from_utf8(data.0.clone()).expect("Secret data is text")
}

fn container_args(deployment: &Deployment) -> Vec<String> {
    deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].args.clone().unwrap_or_default()
}

/// A request as the audit policy sees it: `path` for non-resource requests (`/healthz`).
struct Request<'a> {
    user: &'a str,
    groups: &'a [&'a str],
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: &'a str,
    path: Option<&'a str>,
}

fn request<'a>(verb: &'a str, group: &'a str, resource: &'a str, namespace: &'a str) -> Request<'a> {
    Request { user: "alice", groups: &["system:authenticated"], verb, group, resource, namespace, path: None }
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value[key].as_array().into_iter().flatten().map(|v| v.as_str().expect("a string").to_owned()).collect()
}

fn resource_matches(pattern: &str, resource: &str) -> bool {
    pattern == resource
        || pattern == "*"
        || pattern == "*/*"
        || pattern.strip_suffix('*').is_some_and(|prefix| prefix.ends_with('/') && resource.starts_with(prefix))
        || pattern.strip_prefix('*').is_some_and(|suffix| suffix.starts_with('/') && resource.ends_with(suffix))
}

fn rule_matches(rule: &Value, r: &Request) -> bool {
    let (users, groups, verbs) = (strings(rule, "users"), strings(rule, "userGroups"), strings(rule, "verbs"));
    let (urls, namespaces) = (strings(rule, "nonResourceURLs"), strings(rule, "namespaces"));
    let resources = rule["resources"].as_array().cloned().unwrap_or_default();
    if (!users.is_empty() && !users.iter().any(|u| u == r.user))
        || (!groups.is_empty() && !r.groups.iter().any(|g| groups.iter().any(|x| x == g)))
        || (!verbs.is_empty() && !verbs.iter().any(|v| v == r.verb))
    {
        return false;
    }
    match r.path {
        Some(path) => {
            resources.is_empty()
                && namespaces.is_empty()
                && (urls.is_empty()
                    || urls.iter().any(|u| u.strip_suffix('*').map_or(u == path, |prefix| path.starts_with(prefix))))
        }
        None => {
            urls.is_empty()
                && (namespaces.is_empty() || namespaces.iter().any(|n| n == r.namespace))
                && (resources.is_empty()
                    || resources.iter().any(|gr| {
                        let patterns = strings(gr, "resources");
                        gr["group"].as_str().unwrap_or("") == r.group
                            && (patterns.is_empty() || patterns.iter().any(|p| resource_matches(p, r.resource)))
                    }))
        }
    }
}

/// The level kube-apiserver records a request at: the first matching rule's, else None.
fn level(policy: &Value, r: &Request) -> String {
    let rules = policy["rules"].as_array().expect("the policy has rules");
    rules
        .iter()
        .find(|rule| rule_matches(rule, r))
        .map_or("None".to_owned(), |rule| rule["level"].as_str().unwrap().to_owned())
}

/// Whether a rule could record a Secret's content, whatever its position and its user, verb
/// and namespace conditions.
fn could_record_secret_bodies(rule: &Value) -> bool {
    if !matches!(rule["level"].as_str(), Some("Request" | "RequestResponse")) {
        return false;
    }
    let Some(resources) = rule["resources"].as_array() else {
        return rule["nonResourceURLs"].as_array().is_none_or(|urls| urls.is_empty());
    };
    resources.is_empty()
        || resources.iter().any(|gr| {
            let patterns = strings(gr, "resources");
            matches!(gr["group"].as_str().unwrap_or(""), "" | "*")
                && (patterns.is_empty() || patterns.iter().any(|p| resource_matches(p, "secrets")))
        })
}

const CLUSTER_IP: &str = "10.0.0.200";

#[test]
fn the_chart_lints_cleanly() {
    let out = std::process::Command::new(helm()).args(["lint", "--strict", &chart()]).output().unwrap();
    assert!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_chart_renders_the_audit_webhook_its_kubeconfig_and_a_policy_that_never_records_secrets() {
    let docs = render(&["--set", &format!("detection.auditWebhook.service.clusterIP={CLUSTER_IP}")]);

    // The audit policy: the chart's file, verbatim, an audit.k8s.io/v1 Policy.
    let policy_map: ConfigMap = typed(&docs, "ConfigMap", "riposte-audit-policy");
    let text = policy_map.data.as_ref().unwrap()["audit-policy.yaml"].clone();
    let file = std::fs::read_to_string(repo_path("charts/riposte/files/audit-policy.yaml")).unwrap();
    assert_eq!(text.trim(), file.trim(), "the ConfigMap holds files/audit-policy.yaml");
    let policy: Value = serde_yaml::from_str(&text).expect("the audit policy is YAML");
    assert_eq!(policy["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(policy["kind"], "Policy");
    assert_eq!(strings(&policy, "omitStages"), ["RequestReceived"]);
    let rules = policy["rules"].as_array().unwrap();
    for rule in rules {
        assert!(!could_record_secret_bodies(rule), "this rule could record Secrets above Metadata: {rule}");
        assert!(matches!(rule["level"].as_str(), Some("None" | "Metadata" | "Request" | "RequestResponse")), "{rule}");
    }
    // Every request is recorded at least at Metadata, and Secrets, tokens and application
    // ConfigMaps never above it, whoever asks.
    for verb in ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"] {
        for namespace in ["default", "kube-system", ""] {
            for (group, resource) in [
                ("", "secrets"),
                ("", "serviceaccounts/token"),
                ("authentication.k8s.io", "tokenreviews"),
                ("", "pods/exec"),
                ("", "nodes"),
                ("coordination.k8s.io", "leases"),
                ("example.com", "widgets"),
            ] {
                for (user, groups) in [
                    ("alice", &["system:authenticated"][..]),
                    ("system:apiserver", &["system:masters"][..]),
                    ("system:node:n1", &["system:nodes", "system:authenticated"][..]),
                    ("system:anonymous", &["system:unauthenticated"][..]),
                ] {
                    let r = Request { user, groups, ..request(verb, group, resource, namespace) };
                    assert_eq!(level(&policy, &r), "Metadata", "{verb} {group}/{resource} in {namespace:?} by {user}");
                }
            }
            let configmaps = level(&policy, &request(verb, "", "configmaps", namespace));
            let expected = if namespace == "kube-system" && !matches!(verb, "get" | "list" | "watch") {
                "RequestResponse"
            } else {
                "Metadata"
            };
            assert_eq!(configmaps, expected, "{verb} configmaps in {namespace:?} (CoreDNS only in kube-system)");
        }
    }
    // The writes whose content the rules read are recorded in full; reads and other
    // subresources are not.
    for (group, resource) in [
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("", "replicationcontrollers"),
        ("", "services"),
        ("apps", "deployments"),
        ("apps", "daemonsets"),
        ("apps", "statefulsets"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ] {
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            assert_eq!(
                level(&policy, &request(verb, group, resource, "default")),
                "RequestResponse",
                "{verb} {resource}"
            );
        }
        for verb in ["get", "list", "watch"] {
            assert_eq!(level(&policy, &request(verb, group, resource, "default")), "Metadata", "{verb} {resource}");
        }
    }
    assert_eq!(level(&policy, &request("patch", "", "pods/status", "default")), "Metadata");
    assert_eq!(level(&policy, &request("update", "apps", "deployments/scale", "default")), "Metadata");
    for group in ["", "events.k8s.io"] {
        for verb in ["delete", "deletecollection"] {
            assert_eq!(level(&policy, &request(verb, group, "events", "default")), "Metadata", "{verb} {group} events");
        }
    }
    // Health checks: dropped for nodes and control-plane components only.
    let health = |user: &str, groups: &[&str], path: &str| {
        level(&policy, &Request { user, groups, path: Some(path), ..request("get", "", "", "") })
    };
    assert_eq!(health("system:node:n1", &["system:nodes"], "/healthz"), "None");
    assert_eq!(health("system:kube-scheduler", &["system:authenticated"], "/readyz?verbose"), "None");
    assert_eq!(health("system:anonymous", &["system:unauthenticated"], "/healthz"), "Metadata");
    assert_eq!(health("system:anonymous", &["system:unauthenticated"], "/version"), "Metadata");
    assert_eq!(health("system:node:n1", &["system:nodes"], "/api"), "Metadata");

    // The webhook kubeconfig for kube-apiserver: HTTPS to /audit on the fixed ClusterIP, the
    // serving certificate's CA, and the token the webhook checks.
    let kubeconfig_secret: Secret = typed(&docs, "Secret", "riposte-audit-webhook-kubeconfig");
    let kubeconfig: Value = serde_yaml::from_str(&secret_text(&kubeconfig_secret, "kubeconfig")).unwrap();
    assert_eq!(kubeconfig["kind"], "Config");
    let cluster = &kubeconfig["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], format!("https://{CLUSTER_IP}:8443/audit"));
    let tls: Secret = typed(&docs, "Secret", "riposte-audit-tls");
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    let ca = secret_text(&tls, "ca.crt");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert!(secret_text(&tls, "tls.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(secret_text(&tls, "tls.key").contains("PRIVATE KEY-----"));
    let ca_data = cluster["certificate-authority-data"].as_str().expect("certificate-authority-data");
    let decoded: k8s_openapi::ByteString = serde_json::from_value(json!(ca_data)).expect("base64");
    assert_eq!(String::from_utf8(decoded.0).unwrap(), ca, "the kubeconfig trusts the serving certificate's CA");
    let sans = &tls.metadata.annotations.as_ref().unwrap()["riposte.dev/subject-alternative-names"];
    assert!(sans.contains("riposte-audit.riposte-system.svc") && sans.contains(CLUSTER_IP), "{sans}");
    let token: Secret = typed(&docs, "Secret", "riposte-audit-token");
    let token = secret_text(&token, "token");
    assert!(token.len() >= 32, "a long random token");
    assert_eq!(kubeconfig["users"][0]["user"]["token"], token.as_str());
    assert_eq!(kubeconfig["contexts"][0]["context"]["cluster"], kubeconfig["clusters"][0]["name"]);
    assert_eq!(kubeconfig["current-context"], kubeconfig["contexts"][0]["name"]);

    // The Service in front of the operator's pods.
    let service: Service = typed(&docs, "Service", "riposte-audit");
    let spec = service.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some(CLUSTER_IP));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.port, 8443);
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("https-audit".into()))
    );

    // The Deployment runs the webhook with the mounted certificate, token and config.
    let deployment: Deployment = typed(&docs, "Deployment", "riposte");
    let deployment_spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.selector, deployment_spec.selector.match_labels);
    let args = container_args(&deployment);
    for flag in [
        "--audit-webhook-addr=0.0.0.0:8443",
        "--audit-webhook-tls-cert=/etc/riposte/audit-tls/tls.crt",
        "--audit-webhook-tls-key=/etc/riposte/audit-tls/tls.key",
        "--audit-webhook-token-file=/etc/riposte/audit-token/token",
        "--audit-webhook-max-body-bytes=33554432",
        "--audit-queue-events=100000",
        "--detection-config=/etc/riposte/detection/detection.yaml",
        "--baseline-learning-hours=72",
        "--config-scan-interval-seconds=600",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--audit-webhook-client-ca")), "no client CA unless configured");
    let pod = deployment_spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert!(
        container.ports.iter().flatten().any(|p| p.name.as_deref() == Some("https-audit") && p.container_port == 8443)
    );
    assert_eq!(container.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    for file in args.iter().filter_map(|a| a.split_once("=/").map(|(_, path)| format!("/{path}"))) {
        let mount = mounts
            .iter()
            .find(|m| file.starts_with(&format!("{}/", m.mount_path)))
            .unwrap_or_else(|| panic!("{file} is on a mounted volume"));
        let volume = volumes.iter().find(|v| v.name == mount.name).unwrap_or_else(|| panic!("volume {}", mount.name));
        let key = file.rsplit('/').next().unwrap();
        let provided = match (&volume.secret, &volume.config_map) {
            (Some(secret), _) => {
                let name = secret.secret_name.clone().unwrap();
                assert!(find(&docs, "Secret", &name).is_some(), "Secret {name} is rendered");
                secret.items.iter().flatten().any(|i| i.path == key)
            }
            (_, Some(map)) => {
                let rendered: ConfigMap = typed(&docs, "ConfigMap", &map.name);
                rendered.data.unwrap_or_default().contains_key(key)
            }
            _ => false,
        };
        assert!(provided, "{file} is provided by volume {}", volume.name);
    }
    let annotations = deployment_spec.template.metadata.as_ref().unwrap().annotations.clone().unwrap_or_default();
    let checksum = annotations.get("checksum/detection-config").expect("a checksum of the detection config").clone();
    let detection_config: ConfigMap = typed(&docs, "ConfigMap", "riposte-detection-config");
    assert_eq!(detection_config.data.unwrap()["detection.yaml"].trim(), "{}");

    // The detection config is passed verbatim, and changing it rolls the pods.
    let tuned = render(&["--set", "detection.config.proxyNetworks={192.0.2.0/24}"]);
    let tuned_config: ConfigMap = typed(&tuned, "ConfigMap", "riposte-detection-config");
    let parsed: Value = serde_yaml::from_str(&tuned_config.data.unwrap()["detection.yaml"]).unwrap();
    assert_eq!(parsed, json!({ "proxyNetworks": ["192.0.2.0/24"] }));
    let tuned_deployment: Deployment = typed(&tuned, "Deployment", "riposte");
    let tuned_annotations = tuned_deployment.spec.unwrap().template.metadata.unwrap().annotations.unwrap();
    assert_ne!(tuned_annotations["checksum/detection-config"], checksum);
    // Without a fixed ClusterIP, the kubeconfig names the Service.
    let by_name: Secret = typed(&tuned, "Secret", "riposte-audit-webhook-kubeconfig");
    let by_name: Value = serde_yaml::from_str(&secret_text(&by_name, "kubeconfig")).unwrap();
    assert_eq!(by_name["clusters"][0]["cluster"]["server"], "https://riposte-audit.riposte-system.svc:8443/audit");

    // Client certificates: the CA is mounted and passed; with neither a token nor a client CA
    // the chart refuses to render.
    let with_ca = render(&["--set", "detection.auditWebhook.auth.clientCA=-----BEGIN CERTIFICATE-----"]);
    assert!(
        container_args(&typed(&with_ca, "Deployment", "riposte"))
            .iter()
            .any(|a| a == "--audit-webhook-client-ca=/etc/riposte/audit-client-ca/ca.crt")
    );
    assert!(find(&with_ca, "ConfigMap", "riposte-audit-client-ca").is_some());
    let refused = try_render(&["--set", "detection.auditWebhook.auth.token.enabled=false"]).unwrap_err();
    assert!(refused.contains("auth.clientCA"), "{refused}");
}

#[test]
fn with_detection_disabled_the_chart_renders_no_webhook_no_flags_and_no_detection_rights() {
    let docs = render(&["--set", "detection.enabled=false"]);
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert!(!name.contains("audit") && !name.contains("detection"), "{} {name} is rendered", doc["kind"]);
    }
    let deployment: Deployment = typed(&docs, "Deployment", "riposte");
    let args = container_args(&deployment);
    assert!(
        !args
            .iter()
            .any(|a| ["--audit", "--detection", "--baseline", "--config-scan"].iter().any(|f| a.starts_with(f))),
        "{args:?}"
    );
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert!(pod.volumes.is_none() && pod.containers[0].volume_mounts.is_none());
    assert!(!pod.containers[0].ports.iter().flatten().any(|p| p.name.as_deref() == Some("https-audit")));
    let role = find(&docs, "ClusterRole", "riposte").unwrap();
    for rule in role["rules"].as_array().unwrap() {
        let resources = strings(rule, "resources");
        let verbs = strings(rule, "verbs");
        assert!(!resources.iter().any(|r| r == "services" || r == "deployments"), "{rule}");
        assert!(!(resources.iter().any(|r| r == "alerts") && verbs.iter().any(|v| v == "create")), "{rule}");
        // Pods are listed and watched without detection too: isolation watches isolated pods.
        assert!(
            !(resources.iter().any(|r| r == "replicationcontrollers") && verbs.iter().any(|v| v == "list")),
            "{rule}"
        );
    }
    let own = find(&docs, "Role", "riposte-own-namespace").unwrap();
    assert!(!own.to_string().contains("riposte-detection-baseline"));
}

#[test]
fn managed_cluster_inputs_render_their_flags_and_mount_only_their_secrets() {
    let none = render(&[]);
    let args = container_args(&typed(&none, "Deployment", "riposte"));
    assert!(
        !args.iter().any(|a| a.starts_with("--firehose") || a.starts_with("--event-hubs") || a.starts_with("--pubsub"))
    );

    let docs = render(&[
        "--set",
        "detection.managedClusters.firehose.accessKeySecret=firehose-key",
        "--set",
        "detection.managedClusters.eventHubs.namespace=aks-audit.servicebus.windows.net",
        "--set",
        "detection.managedClusters.eventHubs.connectionStringSecret=event-hubs",
        "--set",
        "detection.managedClusters.eventHubs.hubs={insights-logs-kube-audit,insights-logs-kube-audit-admin}",
        "--set",
        "detection.managedClusters.pubsub.audience=https://riposte.example.com/pubsub",
        "--set",
        "detection.managedClusters.pubsub.serviceAccount=audit-push@shop.iam.gserviceaccount.com",
    ]);
    let deployment: Deployment = typed(&docs, "Deployment", "riposte");
    let args = container_args(&deployment);
    for expected in [
        "--firehose-access-key-file=/etc/riposte/firehose/access-key",
        "--event-hubs-namespace=aks-audit.servicebus.windows.net",
        "--event-hubs-connection-string-file=/etc/riposte/event-hubs/connection-string",
        "--event-hubs-hub=insights-logs-kube-audit,insights-logs-kube-audit-admin",
        "--event-hubs-consumer-group=riposte",
        "--pubsub-audience=https://riposte.example.com/pubsub",
        "--pubsub-service-account=audit-push@shop.iam.gserviceaccount.com",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} missing from {args:?}");
    }
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let volumes = pod.volumes.unwrap();
    let secret = |volume: &str| {
        let secret = volumes.iter().find(|v| v.name == volume).and_then(|v| v.secret.clone()).unwrap();
        let item = secret.items.unwrap().remove(0);
        (secret.secret_name.unwrap(), item.key, item.path)
    };
    assert_eq!(secret("firehose-access-key"), ("firehose-key".into(), "accessKey".into(), "access-key".into()));
    assert_eq!(
        secret("event-hubs-connection-string"),
        ("event-hubs".into(), "connectionString".into(), "connection-string".into())
    );
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    for (volume, path) in
        [("firehose-access-key", "/etc/riposte/firehose"), ("event-hubs-connection-string", "/etc/riposte/event-hubs")]
    {
        assert!(
            mounts.iter().any(|m| m.name == volume && m.mount_path == path && m.read_only == Some(true)),
            "{volume}"
        );
    }

    // Half a configuration is an error at install, not a pod that fails to start.
    let error =
        try_render(&["--set", "detection.managedClusters.eventHubs.namespace=aks-audit.servicebus.windows.net"])
            .unwrap_err();
    assert!(error.contains("connectionStringSecret is required"), "{error}");
    let error = try_render(&["--set", "detection.managedClusters.pubsub.audience=https://riposte.example.com/pubsub"])
        .unwrap_err();
    assert!(error.contains("pubsub.serviceAccount is required"), "{error}");
}

#[test]
fn hunting_renders_its_volume_port_flags_and_only_the_review_rights_it_uses() {
    let none = render(&[]);
    let args = container_args(&typed(&none, "Deployment", "riposte"));
    assert!(!args.iter().any(|a| a.starts_with("--hunting")), "hunting is off by default: {args:?}");
    let role = find(&none, "ClusterRole", "riposte").unwrap().to_string();
    assert!(!role.contains("tokenreviews") && !role.contains("subjectaccessreviews"));
    // Every role may be bound; only the responder's grants hunting.
    let responder = find(&none, "ClusterRole", "riposte-responder").unwrap();
    assert!(
        responder["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| strings(r, "resources") == ["hunts"] && strings(r, "verbs") == ["create"])
    );
    for name in ["riposte-viewer", "riposte-alert-manager"] {
        assert!(!find(&none, "ClusterRole", name).unwrap().to_string().contains("hunts"), "{name}");
    }

    let docs = render(&[
        "--set",
        "hunting.enabled=true",
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "hunting.clusterName=prod-eu",
    ]);
    let deployment: Deployment = typed(&docs, "Deployment", "riposte");
    let args = container_args(&deployment);
    for expected in [
        "--hunting-dir=/var/lib/riposte/hunting",
        "--hunting-addr=0.0.0.0:8443",
        "--hunting-tls-cert=/etc/riposte/audit-tls/tls.crt",
        "--hunting-retention-days=30",
        "--hunting-memory-mib=512",
        "--cluster-name=prod-eu",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} missing from {args:?}");
    }
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == "hunting").unwrap();
    assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "riposte-hunting");
    assert!(pod.containers[0].ports.iter().flatten().any(|p| p.name.as_deref() == Some("https-hunting")));
    let claim = find(&docs, "PersistentVolumeClaim", "riposte-hunting").unwrap();
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    let role = find(&docs, "ClusterRole", "riposte").unwrap();
    for (group, resource) in
        [("authentication.k8s.io", "tokenreviews"), ("authorization.k8s.io", "subjectaccessreviews")]
    {
        assert!(role["rules"].as_array().unwrap().iter().any(|r| strings(r, "apiGroups") == [group]
            && strings(r, "resources") == [resource]
            && strings(r, "verbs") == ["create"]));
    }
    let service = find(&docs, "Service", "riposte-audit").unwrap();
    assert!(service.to_string().contains("https-hunting"));

    // Two replicas cannot share a volume that only one pod may mount.
    let error = try_render(&["--set", "hunting.enabled=true"]).unwrap_err();
    assert!(error.contains("needs a ReadWriteMany volume"), "{error}");
    assert!(
        try_render(&["--set", "hunting.enabled=true", "--set", "hunting.persistence.accessModes={ReadWriteMany}"])
            .is_ok()
    );
    let error = try_render(&["--set", "hunting.enabled=true", "--set", "detection.enabled=false"]).unwrap_err();
    assert!(error.contains("hunting.enabled needs detection.enabled"), "{error}");
}

#[test]
fn the_node_sensors_events_go_to_the_operators_store_or_with_a_bucket_to_the_nodes_spool() {
    let hunting =
        ["--set", "hunting.enabled=true", "--set", "leaderElection.enabled=false", "--set", "sensor.enabled=true"];
    let sensor_pod = |docs: &[Value]| {
        let daemon_set: DaemonSet = typed(docs, "DaemonSet", "riposte-sensor");
        daemon_set.spec.unwrap().template.spec.unwrap()
    };
    // Without a bucket, the sensor keeps nothing on its node: it sends its events to the
    // operator's hunting API, trusting the audit webhook's CA, with the right to.
    let docs = render(&hunting);
    let pod = sensor_pod(&docs);
    let args = pod.containers[0].args.clone().unwrap();
    let forwarding = [
        "--hunting-forward-url=https://riposte-audit.riposte-system.svc:8443",
        "--hunting-forward-ca-file=/etc/riposte/hunting-ca/ca.crt",
    ];
    assert_eq!(args.iter().filter(|a| a.starts_with("--hunting")).collect::<Vec<_>>(), forwarding, "{args:?}");
    assert!(!pod.volumes.iter().flatten().any(|v| v.name == "hunting-spool"));
    let ca = pod.volumes.unwrap().into_iter().find(|v| v.name == "hunting-ca").unwrap().secret.unwrap();
    assert_eq!(ca.secret_name.as_deref(), Some("riposte-audit-tls"));
    assert_eq!(ca.items.unwrap().iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["ca.crt"]);
    let sensor_role = |docs: &[Value]| find(docs, "ClusterRole", "riposte-sensor").unwrap()["rules"].clone();
    let sends_events = |rules: &Value| {
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| strings(r, "resources") == ["hunts/events"] && strings(r, "verbs") == ["create"])
    };
    assert!(sends_events(&sensor_role(&docs)));
    let without_hunting = render(&["--set", "sensor.enabled=true"]);
    assert!(!sends_events(&sensor_role(&without_hunting)), "no right to send events when nothing keeps them");
    let pod = sensor_pod(&without_hunting);
    assert!(!pod.containers[0].args.iter().flatten().any(|a| a.starts_with("--hunting")));

    let with_bucket = [
        "--set",
        "hunting.objectStorage.bucket=s3://hunting/riposte/prod-eu",
        "--set",
        "hunting.objectStorage.endpoint=https://minio.storage.svc:9000",
        "--set",
        "hunting.objectStorage.credentialsSecret=hunting-s3",
    ];
    let docs = render(&[&hunting[..], &with_bucket[..]].concat());
    let bucket_args =
        ["--hunting-bucket=s3://hunting/riposte/prod-eu", "--hunting-bucket-endpoint=https://minio.storage.svc:9000"];
    let credentials = |container: &k8s_openapi::api::core::v1::Container| {
        container
            .env_from
            .iter()
            .flatten()
            .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.clone()))
            .collect::<Vec<_>>()
    };
    let deployment: Deployment = typed(&docs, "Deployment", "riposte");
    let args = container_args(&deployment);
    for expected in bucket_args {
        assert!(args.iter().any(|a| a == expected), "{expected} missing from the operator's {args:?}");
    }
    assert_eq!(credentials(&deployment.spec.unwrap().template.spec.unwrap().containers[0]), ["hunting-s3"]);

    let pod = sensor_pod(&docs);
    let args = pod.containers[0].args.clone().unwrap();
    for expected in bucket_args.into_iter().chain([
        "--hunting-dir=/var/lib/riposte/hunting-spool",
        "--hunting-max-gib=5",
        "--hunting-max-memory-rows=100000",
        "--hunting-retention-days=30",
    ]) {
        assert!(args.iter().any(|a| a == expected), "{expected} missing from the sensor's {args:?}");
    }
    assert_eq!(credentials(&pod.containers[0]), ["hunting-s3"]);
    assert!(!args.iter().any(|a| a.starts_with("--hunting-forward")), "the spool, not the API: {args:?}");
    assert!(!sends_events(&sensor_role(&docs)));
    let spool = pod.volumes.unwrap().into_iter().find(|v| v.name == "hunting-spool").unwrap().host_path.unwrap();
    assert_eq!(
        (spool.path.as_str(), spool.type_.as_deref()),
        ("/var/lib/riposte/hunting-spool", Some("DirectoryOrCreate"))
    );
    assert!(pod.containers[0].volume_mounts.iter().flatten().any(|m| m.name == "hunting-spool"
        && m.mount_path == "/var/lib/riposte/hunting-spool"
        && m.read_only != Some(true)));

    let error =
        try_render(&[&hunting[..], &["--set", "hunting.objectStorage.bucket=hunting"][..]].concat()).unwrap_err();
    assert!(error.contains("s3://<bucket>/<prefix>"), "{error}");
}

/// kube-apiserver v1.33 starts with the chart's audit policy and webhook kubeconfig, and
/// records what the rules need (bodies of pod and CoreDNS writes) and nothing more (no
/// Secret, token or application ConfigMap content). The chart reads its generated
/// certificate and token back on upgrade.
#[tokio::test]
async fn kube_apiserver_accepts_the_audit_policy_and_webhook_kubeconfig_and_records_no_secret() {
    let docs = render(&["--set", &format!("detection.auditWebhook.service.clusterIP={CLUSTER_IP}")]);
    let dir: PathBuf = std::env::temp_dir().join(format!("riposte-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy: ConfigMap = typed(&docs, "ConfigMap", "riposte-audit-policy");
    let policy_file = dir.join("audit-policy.yaml");
    std::fs::write(&policy_file, &policy.data.unwrap()["audit-policy.yaml"]).unwrap();
    let kubeconfig: Secret = typed(&docs, "Secret", "riposte-audit-webhook-kubeconfig");
    let kubeconfig_file = dir.join("audit-webhook-kubeconfig.yaml");
    std::fs::write(&kubeconfig_file, secret_text(&kubeconfig, "kubeconfig")).unwrap();
    let log = dir.join("audit.log");
    let flags = vec![
        format!("--audit-policy-file={}", policy_file.display()),
        format!("--audit-log-path={}", log.display()),
        format!("--audit-webhook-config-file={}", kubeconfig_file.display()),
        "--audit-webhook-mode=batch".to_owned(),
        "--audit-webhook-batch-max-wait=1s".to_owned(),
        "--audit-webhook-version=audit.k8s.io/v1".to_owned(),
    ];
    let env = Env::start_with(Options { extraapiserver_args: flags, ..Options::default() }).await;

    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    ok(env.kubectl(&["create", "configmap", "coredns", "-n", "kube-system", "--from-literal=Corefile=.:53 {}"]));
    ok(env.kubectl(&[
        "patch",
        "configmap",
        "coredns",
        "-n",
        "kube-system",
        "-p",
        r#"{"data":{"Corefile":".:53 { forward . 192.0.2.1 }"}}"#,
    ]));
    ok(env.kubectl(&["create", "configmap", "app", "-n", "default", "--from-literal=password=hunter2"]));
    ok(env.kubectl(&["create", "secret", "generic", "db", "-n", "default", "--from-literal=password=hunter2"]));
    ok(env.kubectl(&["get", "secret", "db", "-n", "default"]));
    ok(env.kubectl(&["create", "serviceaccount", "app", "-n", "default"]));
    let requested_token = ok(env.kubectl(&["create", "token", "app", "-n", "default"]));
    env.pod("default", "web", &[("app", "web")]).await;
    Api::<k8s_openapi::api::core::v1::Event>::namespaced(env.client.clone(), "default")
        .delete_collection(&kube::api::DeleteParams::default(), &ListParams::default())
        .await
        .expect("Events deleted");
    ok(env.kubectl(&["get", "--raw", "/healthz"]));

    let events: Vec<Value> = env
        .until("the audit log records the requests", || async {
            let text = std::fs::read_to_string(&log).ok()?;
            let events: Vec<Value> =
                text.lines().map(|l| serde_json::from_str(l).expect("an audit event per line")).collect();
            events.iter().any(|e| e["requestURI"] == "/healthz").then_some(events)
        })
        .await;
    let complete = |verb, resource, subresource, namespace| completed(&events, verb, resource, subresource, namespace);
    assert!(events.iter().all(|e| e["stage"] != "RequestReceived"), "RequestReceived is omitted");

    let pod = complete("create", "pods", "", "default");
    assert_eq!(pod["level"], "RequestResponse");
    assert_eq!(pod["responseObject"]["spec"]["containers"][0]["image"], "nginx:1.27");
    assert!(pod["requestObject"].is_object());
    let coredns = complete("patch", "configmaps", "", "kube-system");
    assert_eq!(coredns["level"], "RequestResponse");
    assert!(coredns["requestObject"]["data"]["Corefile"].as_str().unwrap().contains("192.0.2.1"), "{coredns}");
    for (verb, resource, subresource) in [
        ("create", "configmaps", ""),
        ("create", "secrets", ""),
        ("get", "secrets", ""),
        ("create", "serviceaccounts", "token"),
        ("deletecollection", "events", ""),
    ] {
        let event = complete(verb, resource, subresource, "default");
        assert_eq!(event["level"], "Metadata", "{event}");
        assert!(event.get("requestObject").is_none() && event.get("responseObject").is_none(), "{event}");
        assert!(
            !event["user"]["username"].as_str().unwrap_or("").is_empty() && event["sourceIPs"].is_array(),
            "{event}"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMg=="),
        "no Secret or application ConfigMap content is recorded"
    );
    assert!(!text.contains(requested_token.trim()), "no requested token is recorded");
    assert!(events.iter().filter(|e| e["objectRef"]["resource"] == "secrets").all(|e| e["level"] == "Metadata"));
    let health = events.iter().find(|e| e["requestURI"] == "/healthz").unwrap();
    assert_eq!(health["level"], "Metadata", "the admin's health check is recorded");

    // On upgrade the chart reads its certificate and token back (helm's lookup): the files
    // copied to the control plane stay valid. Only new names re-sign the certificate, with
    // the same CA.
    env.namespace("riposte-system").await;
    env.install_chart();
    let cluster_secret = |name: &str| {
        let out = ok(env.kubectl(&["get", "secret", name, "-n", "riposte-system", "-o", "json"]));
        serde_json::from_str::<Secret>(&out).unwrap()
    };
    let (installed_tls, installed_token) = (cluster_secret("riposte-audit-tls"), cluster_secret("riposte-audit-token"));
    let kubeconfig_path = env.plane.kubeconfig_path().display().to_string();
    let upgrade = |extra: &[&str]| {
        let mut args = vec!["--dry-run=server", "--kubeconfig", &kubeconfig_path];
        args.extend_from_slice(extra);
        render(&args)
    };
    let again = upgrade(&[]);
    let tls: Secret = typed(&again, "Secret", "riposte-audit-tls");
    let token: Secret = typed(&again, "Secret", "riposte-audit-token");
    for key in ["tls.crt", "tls.key", "ca.crt", "ca.key"] {
        assert_eq!(secret_text(&tls, key), secret_text(&installed_tls, key), "{key} is kept");
    }
    assert_eq!(secret_text(&token, "token"), secret_text(&installed_token, "token"));
    let kubeconfig: Secret = typed(&again, "Secret", "riposte-audit-webhook-kubeconfig");
    assert!(secret_text(&kubeconfig, "kubeconfig").contains(&secret_text(&installed_token, "token")));
    let pinned = upgrade(&["--set", &format!("detection.auditWebhook.service.clusterIP={CLUSTER_IP}")]);
    let tls: Secret = typed(&pinned, "Secret", "riposte-audit-tls");
    assert_ne!(secret_text(&tls, "tls.crt"), secret_text(&installed_tls, "tls.crt"), "re-signed for the address");
    assert_eq!(secret_text(&tls, "ca.crt"), secret_text(&installed_tls, "ca.crt"), "by the same CA");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ResponseComplete audit event of a request.
fn completed<'a>(events: &'a [Value], verb: &str, resource: &str, subresource: &str, namespace: &str) -> &'a Value {
    events
        .iter()
        .find(|e| {
            e["stage"] == "ResponseComplete"
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["subresource"].as_str().unwrap_or("") == subresource
                && e["objectRef"]["namespace"].as_str().unwrap_or("") == namespace
        })
        .unwrap_or_else(|| panic!("{verb} {resource}/{subresource} in {namespace} is recorded"))
}

/// Whether the client may do this, as the apiserver's authorizer answers.
async fn can(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": { "resourceAttributes": { "verb": verb, "group": group, "resource": resource, "namespace": namespace, "name": name } }
    }))
    .unwrap();
    let answer =
        Api::<SelfSubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await.unwrap();
    answer.status.unwrap().allowed
}

#[tokio::test]
async fn the_operator_works_with_the_charts_rbac_and_cannot_read_secrets() {
    let env = Env::start().await;
    env.namespace("riposte-system").await;
    env.install_chart();
    for kind in ["deployment", "serviceaccount", "clusterrole", "clusterrolebinding", "service"] {
        let out = env.kubectl(&["get", kind, "riposte", "-n", "riposte-system"]);
        let out = if out.status.success() {
            out
        } else {
            env.kubectl(&["get", kind, "riposte-metrics", "-n", "riposte-system"])
        };
        assert!(out.status.success(), "{kind} was created: {}", String::from_utf8_lossy(&out.stderr));
    }

    let operator = env.chart_operator_client().await;

    // Least privilege: no Secrets.
    let secrets = Api::<Secret>::all(operator.clone()).list(&ListParams::default()).await;
    assert!(matches!(secrets, Err(kube::Error::Api(ref e)) if e.code == 403), "{secrets:?}");
    // Detection's configuration scan lists Services, pods and workloads cluster-wide...
    Api::<Service>::all(operator.clone()).list(&ListParams::default()).await.expect("Services can be listed");
    Api::<Deployment>::all(operator.clone()).list(&ListParams::default()).await.expect("Deployments can be listed");
    Api::<Pod>::all(operator.clone()).list(&ListParams::default()).await.expect("pods can be listed");
    // ...and the cluster watch (the second source) watches pods, workloads and Services; it
    // never reads one object it was not given, and reads no ConfigMap but its own kill
    // switch and baseline.
    assert!(can(&operator, "watch", "", "pods", None, None).await, "pods are watched");
    assert!(can(&operator, "watch", "", "services", None, None).await, "Services are watched");
    assert!(can(&operator, "watch", "apps", "deployments", None, None).await, "workloads are watched");
    assert!(can(&operator, "watch", "batch", "cronjobs", None, None).await, "workloads are watched");
    let coredns = Api::<ConfigMap>::namespaced(operator.clone(), "kube-system").get("coredns").await;
    assert!(matches!(coredns, Err(kube::Error::Api(ref e)) if e.code == 403), "{coredns:?}");
    let configmaps = Api::<ConfigMap>::all(operator.clone()).list(&ListParams::default()).await;
    assert!(matches!(configmaps, Err(kube::Error::Api(ref e)) if e.code == 403), "{configmaps:?}");
    for (verb, group, resource, namespace, name) in [
        ("get", "", "services", Some("shop"), Some("web")),
        ("get", "apps", "deployments", Some("shop"), Some("web")),
        ("watch", "", "configmaps", Some("kube-system"), None),
        ("get", "", "configmaps", Some("riposte-system"), Some("evidence-shop-kill")),
        ("update", "", "configmaps", Some("riposte-system"), Some("riposte-automation")),
        ("list", "", "secrets", Some("riposte-system"), None),
        ("get", "", "secrets", Some("riposte-system"), Some("riposte-audit-token")),
    ] {
        assert!(
            !can(&operator, verb, group, resource, namespace, name).await,
            "{verb} {resource} {namespace:?} {name:?}"
        );
    }
    for (verb, resource, name) in [
        ("get", "configmaps", Some("riposte-detection-baseline")),
        ("update", "configmaps", Some("riposte-detection-baseline")),
        ("create", "configmaps", None),
    ] {
        assert!(can(&operator, verb, "", resource, Some("riposte-system"), name).await, "{verb} {resource} {name:?}");
    }
    assert!(can(&operator, "create", "riposte.dev", "alerts", Some("shop"), None).await, "Alerts can be raised");

    // As the chart runs it: with leader election on its Lease, through the chart's Role.
    let replica = env.spawn_replica_on(operator, "riposte-0", "riposte-leader");
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.pod("shop", "web-2", &[("app", "web")]).await;
    env.apply::<k8s_openapi::api::networking::v1::NetworkPolicy>(
        "shop",
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-web" },
                "spec": { "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{}] } }),
    )
    .await;
    env.apply::<riposte_crds::Alert>(
        "shop",
        json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": "a" },
                "spec": { "type": "K8S_PrivilegedContainer", "title": "Privileged container detected", "severity": "Informational",
                          "detectedAt": "2026-11-22T10:00:00Z" } }),
    )
    .await;
    env.action(
        "shop",
        "iso",
        json!({ "action": "Isolate", "target": { "pod": "web-1" }, "alertRef": { "name": "a" } }),
    )
    .await;
    env.wait_for_phase("shop", "iso", Phase::Succeeded).await;
    env.action("shop", "rel", json!({ "action": "Release", "target": { "pod": "web-1" } })).await;
    env.wait_for_phase("shop", "rel", Phase::Succeeded).await;
    env.wait_for_phase("shop", "iso", Phase::Released).await;
    env.action("shop", "kill", json!({ "action": "Terminate", "target": { "pod": "web-2" } })).await;
    env.wait_for_phase("shop", "kill", Phase::Succeeded).await;
    let alerts: Api<riposte_crds::Alert> = Api::namespaced(env.client.clone(), "shop");
    env.until("the alert status written with the chart's RBAC", || async {
        (alerts.get("a").await.ok()?.status?.action_count == 1).then_some(())
    })
    .await;
    let events = env.kubectl(&["get", "events", "-n", "shop", "-o", "name"]);
    assert!(!String::from_utf8_lossy(&events.stdout).trim().is_empty(), "Events were published with the chart's RBAC");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.client.clone(), "riposte-system");
    let lease = leases.get("riposte-leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("riposte-0"));
    assert!(!replica.is_finished(), "the replica still leads: {replica:?}");
    let deployment = env.kubectl(&[
        "get",
        "deployment",
        "riposte",
        "-n",
        "riposte-system",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(String::from_utf8_lossy(&deployment.stdout).contains("--lease-name=riposte-leader"));
}
