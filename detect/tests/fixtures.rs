//! The rules against audit events written by a real kube-apiserver v1.33.13 (etcd 3.5.21),
//! run with an audit policy at RequestResponse for pods, workloads, Services, ConfigMaps,
//! RBAC and webhook configurations, Metadata for the rest. The fixtures are its log lines,
//! unchanged, split by topic:
//!
//! - `bootstrap`: the apiserver creating its own high-privilege roles and bindings;
//! - `benign-other`, `benign-workloads`: a namespace and service accounts, a Deployment and
//!   its rollout (set image, rollout restart, scale), the ReplicaSet and DaemonSet
//!   controllers creating pods, CoreDNS and kube-proxy installed in kube-system, a ClusterRole
//!   without wildcards, Redis behind a ClusterIP Service, a refused (403) privileged pod, a
//!   server-side dry run, a label on the CoreDNS ConfigMap;
//! - `request-received`: the RequestReceived stage of every attack request;
//! - `attack-workloads`, `attack-exposure`, `attack-control-plane`, `clients`: the
//!   attacker's steps with kubectl and curl, and a certificate rotation of a webhook;
//! - `attack-workload-chain`: a privileged Deployment, the ReplicaSet the Deployment
//!   controller makes of it and the pods the ReplicaSet controller makes of that;
//! - `attack-controller-pods`: a log that begins after a privileged Deployment and its
//!   ReplicaSet, and a CronJob mounting the Docker socket, were written: only the pods, the
//!   Job and its pod that the controllers make of them;
//! - `attack-roles`: roles granting the RBAC good practices' escalation paths, and two
//!   lookalikes (a read-only rule in every API group, a token for one named account);
//! - `attack-volume-and-dns`: a PersistentVolume on the node's `/`, an ordinary hostPath one,
//!   and CoreDNS overridden through `kube-system/coredns-custom`, as on AKS.
//!
//! These four were recorded later, with `persistentvolumes` added to the policy's
//! RequestResponse resources; the controllers' writes there are sent with the controllers'
//! own service-account tokens and user agents, in the bodies kube-controller-manager sends.
//!
//! The learning period of the service-account baseline ends at a marker request
//! (`GET /version` with user agent `fixture-phase/learning-ended`).

use std::io::BufReader;

use riposte_detect::audit::{Event, JsonLines, Timestamp, parse_body};
use riposte_detect::{Baseline, Config, Engine, Finding, LearningPeriod, Service, Workload};

mod support;

const FIXTURES: [&str; 12] = [
    "bootstrap.jsonl",
    "request-received.jsonl",
    "benign-other.jsonl",
    "benign-workloads.jsonl",
    "clients.jsonl",
    "attack-workloads.jsonl",
    "attack-exposure.jsonl",
    "attack-control-plane.jsonl",
    "attack-workload-chain.jsonl",
    "attack-controller-pods.jsonl",
    "attack-roles.jsonl",
    "attack-volume-and-dns.jsonl",
];

fn path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Vec<Event> {
    let file = std::fs::File::open(path(name)).expect("fixture exists");
    JsonLines::new(BufReader::new(file)).map(|e| e.expect("fixture lines are audit events")).collect()
}

/// The engine fed in order, with the cluster's workloads kept as an informer would keep them.
struct Replay {
    engine: Engine,
    cluster: Vec<Workload>,
}

impl Replay {
    fn new(config: Config) -> Self {
        let start = load("bootstrap.jsonl")[0].timestamp().expect("events have timestamps");
        let end = load("clients.jsonl")
            .iter()
            .find(|e| e.user_agent.as_deref() == Some("fixture-phase/learning-ended"))
            .and_then(Event::timestamp)
            .expect("the learning marker is in the fixture");
        Replay { engine: Engine::new(config, Baseline::new(LearningPeriod { start, end })), cluster: Vec::new() }
    }

    fn run(&mut self, name: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        for event in load(name) {
            findings.extend(self.engine.evaluate(&event, &self.cluster));
            support::observe(&event, &mut self.cluster);
        }
        findings
    }
}

/// `alert namespace/object container by user`, the entities a responder acts on.
fn describe(f: &Finding) -> String {
    let e = &f.entities;
    let object = e.workload_name.as_deref().or(e.pod.as_deref()).or(e.service_account.as_deref()).unwrap_or("-");
    format!(
        "{} {}/{object} {} by {}",
        f.alert_type,
        e.namespace.as_deref().unwrap_or("-"),
        e.container.as_deref().unwrap_or("-"),
        e.user.as_deref().unwrap_or("-")
    )
}

fn evidence<'f>(finding: &'f Finding, name: &str) -> Option<&'f str> {
    finding.evidence.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn proxy_feed() -> Config {
    Config { proxy_networks: vec!["203.0.113.0/24".parse().expect("a CIDR")], ..Config::default() }
}

#[test]
fn every_fixture_reads_the_same_as_json_lines_a_body_and_an_event_list() {
    for name in FIXTURES {
        let text = std::fs::read_to_string(path(name)).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(text.len() < 100 * 1024, "{name} stays small");
        let from_lines = load(name);
        let from_body = parse_body(text.as_bytes()).unwrap();
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
            lines.join(",")
        );
        let from_list = parse_body(list.as_bytes()).unwrap();
        let ids = |events: &[Event]| events.iter().map(|e| e.audit_id.clone()).collect::<Vec<_>>();
        assert_eq!(from_lines.len(), lines.len(), "{name}");
        assert_eq!(ids(&from_body), ids(&from_lines), "{name}");
        assert_eq!(ids(&from_list), ids(&from_lines), "{name}");
    }
}

#[test]
fn benign_activity_and_request_received_stages_raise_nothing() {
    let mut replay = Replay::new(proxy_feed());
    for name in ["bootstrap.jsonl", "request-received.jsonl", "benign-other.jsonl", "benign-workloads.jsonl"] {
        let findings = replay.run(name);
        assert!(findings.is_empty(), "{name}: {:#?}", findings.iter().map(|f| &f.summary).collect::<Vec<_>>());
    }
    // The apiserver records no body and no status at RequestReceived: read as complete
    // requests, the deletion of events and the proxy request among them would count twice.
    let received = load("request-received.jsonl");
    assert!(received.iter().all(|e| e.request_object.is_none() && e.response_status.is_none()));
    assert!(
        received.iter().any(|e| e.verb == "delete" && e.object_ref.as_ref().is_some_and(|o| o.resource == "events"))
    );
    assert!(received.iter().any(|e| e.source_ips.first().is_some_and(|ip| ip == "203.0.113.66")));
}

/// Replays the benign fixtures first (the cluster and the baseline as they were), then `name`.
fn after_benign(name: &str) -> Vec<Finding> {
    let mut replay = Replay::new(proxy_feed());
    for benign in ["bootstrap.jsonl", "benign-other.jsonl", "benign-workloads.jsonl"] {
        replay.run(benign);
    }
    replay.run(name)
}

#[test]
fn workload_attacks_are_reported_with_their_container_and_field() {
    let findings = after_benign("attack-workloads.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "K8S_PrivilegedContainer shop/attacker attacker by mallory",
            "K8S_SensitiveMount shop/node-shell shell by mallory",
            "K8S_PrivilegedContainer shop/web web by mallory",
            "K8S_KubeSystemContainer kube-system/node-agent agent by mallory",
            "K8S_PrivilegedContainer shop/cache-warmer warmer by mallory",
            "K8S_MaliciousContainerImage shop/cache-warmer warmer by mallory",
            "K8S_PrivilegedContainer shop/cleanup prepare by mallory",
            "K8S_SensitiveMount shop/cleanup prepare by mallory",
            "K8S_KubeSystemContainer kube-system/coredns-7c65d6cfc9-x2x9k debugger-zqw5d by mallory",
        ],
        "the cache-warmer pod created by the ReplicaSet controller repeats nothing"
    );
    let fields: Vec<&str> = findings.iter().filter_map(|f| evidence(f, "field")).collect();
    assert_eq!(
        fields,
        [
            "spec.containers[0].securityContext.privileged",
            "spec.containers[0].volumeMounts[0]",
            "spec.template.spec.containers[0].securityContext.privileged",
            "spec.template.spec.containers[0].image",
            "spec.template.spec.containers[0].securityContext.privileged",
            "spec.template.spec.containers[0].image",
            "spec.jobTemplate.spec.template.spec.initContainers[0].securityContext.privileged",
            "spec.jobTemplate.spec.template.spec.initContainers[0].volumeMounts[0]",
            "spec.ephemeralContainers[0].image",
        ]
    );
    let patch = &findings[2];
    assert_eq!(evidence(patch, "verb"), Some("patch"));
    assert_eq!(evidence(patch, "sourceIPs"), Some("127.0.0.1"));
    assert!(evidence(patch, "userAgent").is_some_and(|a| a.starts_with("kubectl/")));
    assert_eq!(patch.entities.workload_kind.as_deref(), Some("Deployment"));
    assert_eq!(evidence(&findings[1], "sensitivePath"), Some("/etc/kubernetes"));
}

#[test]
fn exposures_are_reported_for_the_selected_workloads() {
    let findings = after_benign("attack-exposure.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "K8S_ExposedDashboard shop/kubernetes-dashboard kubernetes-dashboard by mallory",
            "K8S_ExposedRedis shop/cache redis by mallory",
            "K8S_ExposedPostgresTrustAuth shop/db postgres by mallory",
            "K8S_ExposedPostgresBroadIPRange shop/db postgres by mallory",
            "K8S_ExposedService shop/notebook notebook by mallory",
            "K8S_ExposedKubeflow istio-system/istio-ingressgateway istio-proxy by mallory",
        ]
    );
    assert_eq!(evidence(&findings[0], "service"), Some("Service shop/dashboard"));
    assert_eq!(evidence(&findings[0], "port"), Some("443 -> 8443 (container kubernetes-dashboard)"));
    assert_eq!(evidence(&findings[4], "exposedBy"), Some("NodePort"));
}

#[test]
fn the_configuration_scan_finds_the_same_exposures_in_existing_services() {
    let mut replay = Replay::new(Config::default());
    for name in ["benign-other.jsonl", "benign-workloads.jsonl", "attack-exposure.jsonl"] {
        replay.run(name);
    }
    let services: Vec<Service> = load("attack-exposure.jsonl")
        .iter()
        .filter(|e| e.verb == "create" && e.object_ref.as_ref().is_some_and(|o| o.resource == "services"))
        .filter_map(|e| Service::from_json(e.response_object.as_ref()?.get()).ok())
        .collect();
    let scanned: Vec<&str> =
        services.iter().flat_map(|s| replay.engine.scan_service(s, &replay.cluster)).map(|f| f.alert_type).collect();
    assert_eq!(
        scanned,
        [
            "K8S_ExposedDashboard",
            "K8S_ExposedRedis",
            "K8S_ExposedPostgresTrustAuth",
            "K8S_ExposedPostgresBroadIPRange",
            "K8S_ExposedService",
            "K8S_ExposedKubeflow",
        ]
    );
}

#[test]
fn rbac_and_control_plane_attacks_are_reported_and_certificate_rotation_is_not() {
    let findings = after_benign("attack-control-plane.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "K8S_ClusterAdminBinding shop/backdoor - by mallory",
            "K8S_HighPrivilegesRole -/everything - by mallory",
            "K8S_HighPrivilegesRole shop/secret-reader - by mallory",
            "K8S_HighPrivilegesRole shop/exec - by mallory",
            "K8S_DeleteEvents shop/- - by mallory",
            "K8S_CoreDnsModification kube-system/- - by mallory",
            "K8S_AdmissionController -/pod-defaults - by mallory",
        ],
        "alice's caBundle patch and replace of pod-defaults follow the creation without a finding"
    );
    assert_eq!(evidence(&findings[0], "subjects[0]"), Some("ServiceAccount shop/web"));
    assert_eq!(findings[0].entities.service_account.as_deref(), Some("web"));
    assert_eq!(
        evidence(&findings[6], "webhooks[0]"),
        Some("pod-defaults.example.com -> https://203.0.113.9:8443/mutate")
    );
}

#[test]
fn a_deployment_its_replicaset_and_its_pods_raise_one_alert() {
    let findings = after_benign("attack-workload-chain.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(described, ["K8S_PrivilegedContainer shop/metrics-agent agent by mallory"]);
    assert_eq!(findings[0].entities.workload_kind.as_deref(), Some("Deployment"));
}

#[test]
fn a_log_that_begins_after_the_workloads_were_written_raises_their_alerts_from_what_controllers_make() {
    let findings = after_benign("attack-controller-pods.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "K8S_PrivilegedContainer shop/cache-sync-5b8d9f6c47 sync by system:serviceaccount:kube-system:replicaset-controller",
            "K8S_SensitiveMount shop/log-rotate-29935711 rotate by system:serviceaccount:kube-system:cronjob-controller",
        ],
        "one alert for the three replicas, one for the Job and its pod"
    );
    let pod = &findings[0];
    assert_eq!(pod.entities.pod.as_deref(), Some("cache-sync-5b8d9f6c47-rl7ll"));
    assert_eq!(pod.entities.workload_kind.as_deref(), Some("ReplicaSet"));
    assert_eq!(evidence(pod, "controlledBy"), Some("ReplicaSet cache-sync-5b8d9f6c47 (of Deployment cache-sync)"));
    let job = &findings[1];
    assert_eq!(job.entities.workload_kind.as_deref(), Some("Job"));
    assert_eq!(evidence(job, "controlledBy"), Some("CronJob log-rotate"));
    assert_eq!(evidence(job, "hostPath"), Some("spec.template.spec.volumes[0].hostPath.path: /var/run/docker.sock"));
}

#[test]
fn roles_granting_escalation_paths_are_reported_and_their_lookalikes_are_not() {
    let findings = after_benign("attack-roles.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "K8S_HighPrivilegesRole -/kubelet-debug - by mallory",
            "K8S_HighPrivilegesRole shop/deployer - by mallory",
            "K8S_HighPrivilegesRole -/token-issuer - by mallory",
            "K8S_HighPrivilegesRole -/csr-approver - by mallory",
            "K8S_HighPrivilegesRole -/volume-maker - by mallory",
        ],
        "alice's read-only rule in every API group and her token for one named account raise nothing"
    );
    let privileges: Vec<&str> = findings.iter().filter_map(|f| evidence(f, "privilege")).collect();
    assert_eq!(
        privileges,
        [
            "rules[0]: get/create nodes/proxy",
            "rules[0]: create/update/patch deployments",
            "rules[0]: create serviceaccounts/token",
            "rules[1] and rules[2]: update certificatesigningrequests/approval, approve signers",
            "rules[0]: create persistentvolumes",
        ]
    );
    assert!(evidence(&findings[0], "risk").is_some_and(|r| r.contains("runs commands in every pod of the nodes")));
}

#[test]
fn a_host_root_persistent_volume_and_a_coredns_override_are_reported() {
    let findings = after_benign("attack-volume-and-dns.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(
        described,
        ["K8S_SensitiveMount shop/host-root - by mallory", "K8S_CoreDnsModification kube-system/- - by mallory"],
        "alice's PersistentVolume on /mnt/scratch raises nothing"
    );
    assert_eq!(evidence(&findings[0], "hostPath"), Some("spec.hostPath.path: /"));
    assert_eq!(evidence(&findings[0], "claimRef"), Some("shop/data"));
    assert_eq!(findings[0].entities.workload_kind.as_deref(), Some("PersistentVolume"));
    assert_eq!(evidence(&findings[1], "object"), Some("ConfigMap kube-system/coredns-custom"));
    assert_eq!(evidence(&findings[1], "dataKeys"), Some("internal.server, log.override"));
}

#[test]
fn scanners_tools_proxies_and_a_service_account_out_of_habit_are_reported() {
    let findings = after_benign("clients.jsonl");
    let described: Vec<String> = findings.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "K8S_PenTestToolsKubeHunter -/- - by system:anonymous",
            "K8S_PenTestToolsKubeHunter shop/web - by system:serviceaccount:shop:web",
            "K8S_ServiceAccountRareOperation shop/web - by system:serviceaccount:shop:web",
            "K8S_TI_Proxy kube-system/- - by mallory",
            "K8S_ServiceAccountRareOperation shop/web - by system:serviceaccount:shop:web",
        ]
    );
    assert_eq!(
        evidence(&findings[0], "deniedRequests"),
        Some("list namespaces, list pods, list secrets, list clusterroles")
    );
    assert_eq!(evidence(&findings[1], "tool"), Some("peirates"));
    assert_eq!(evidence(&findings[2], "operation"), Some("list secrets in namespace shop"));
    assert_eq!(evidence(&findings[3], "sourceIPs"), Some("203.0.113.66, 127.0.0.1"));
    assert_eq!(evidence(&findings[4], "operation"), Some("list secrets in namespace kube-system"));
}

#[test]
fn without_a_feed_or_after_learning_everything_the_same_clients_raise_less() {
    let mut replay = Replay::new(Config::default());
    let everything =
        LearningPeriod { start: Timestamp::from_unix_micros(0), end: Timestamp::from_unix_micros(i64::MAX / 2) };
    replay.engine = Engine::new(Config::default(), Baseline::new(everything));
    let alert_types: Vec<&str> = replay.run("clients.jsonl").iter().map(|f| f.alert_type).collect();
    assert_eq!(alert_types, ["K8S_PenTestToolsKubeHunter", "K8S_PenTestToolsKubeHunter"]);
}
