//! The engine: every rule that can apply to an event, in one pass.
//!
//! Most audit events are reads and watches by controllers and kubelets. The engine first
//! drops the stages that would repeat a request (only ResponseComplete is read), runs the
//! few rules that look at every request (client and service-account rules, each a lookup or
//! two), and dispatches writes on (API group, resource) to the one rule family that reads
//! that kind of object, so that an object body is parsed only when a rule needs it.
//!
//! Besides the baseline and the client rules' memory, it remembers which workloads' pod
//! templates the workload rules read ([`Templates`]), so that what controllers make from a
//! template is read only when the log never showed it.

use crate::audit::{Event, Stage};
use crate::bounded::Bounded;
use crate::objects::{ClusterView, Service};
use crate::rules::client::ClientRules;
use crate::rules::workload::{Owner, Reading, TemplateKey, TemplateWrite};
use crate::rules::{
    Entities, Finding, SERVICE_ACCOUNT_RARE_OPERATION, control_plane, exposure, rbac, request_evidence, workload,
};
use crate::{Baseline, Config, Observation};

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Holds the configuration, the service-account baseline, what the client rules remember
/// and which pod templates the workload rules read, and evaluates events against all rules.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    baseline: Baseline,
    clients: ClientRules,
    templates: Templates,
    action: String,
}

impl Engine {
    pub fn new(config: Config, baseline: Baseline) -> Self {
        let clients = ClientRules::new(&config);
        let templates = Templates { read: Bounded::new(config.template_memory) };
        Engine { config, baseline, clients, templates, action: String::new() }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The baseline as learned so far, to persist.
    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// Every finding of one audit event. `cluster` is consulted only for Services.
    pub fn evaluate(&mut self, event: &Event, cluster: &dyn ClusterView) -> Vec<Finding> {
        let mut findings = Vec::new();
        if event.stage != Stage::ResponseComplete {
            return findings;
        }
        self.clients.evaluate(event, &self.config, &mut findings);
        if event.user.username.starts_with(SERVICE_ACCOUNT_PREFIX)
            && !self.config.baseline_exempt_service_accounts.contains(&event.user.username)
        {
            self.service_account_operation(event, &mut findings);
        }
        let Some(object_ref) = &event.object_ref else {
            return findings;
        };
        if !matches!(&*event.verb, "create" | "update" | "patch" | "delete" | "deletecollection") {
            return findings;
        }
        let config = &self.config;
        let found = match (object_ref.api_group.as_str(), object_ref.resource.as_str()) {
            (group, resource) if workload::pod_spec_location(group, resource).is_some() => {
                self.templates.evaluate(event, config)
            }
            ("", "persistentvolumes") => workload::persistent_volume(event, config),
            ("rbac.authorization.k8s.io", "clusterrolebindings" | "rolebindings") => {
                rbac::cluster_admin_binding(event, config)
            }
            ("rbac.authorization.k8s.io", "clusterroles" | "roles") => rbac::high_privileges_role(event, config),
            ("", "services") => exposure::service_write(event, cluster, config),
            ("" | "events.k8s.io", "events") => control_plane::deleted_events(event, config),
            ("", "configmaps") => control_plane::coredns_modified(event, config),
            ("admissionregistration.k8s.io", "mutatingwebhookconfigurations" | "validatingwebhookconfigurations") => {
                control_plane::webhook_configuration(event, config)
            }
            _ => Vec::new(),
        };
        findings.extend(found);
        findings
    }

    /// The exposure findings of an existing Service (the configuration scan at start-up).
    pub fn scan_service(&self, service: &Service, cluster: &dyn ClusterView) -> Vec<Finding> {
        exposure::evaluate_service(service, cluster, &self.config)
    }

    /// K8S_ServiceAccountRareOperation: the request of a service account checked against
    /// its baseline.
    fn service_account_operation(&mut self, event: &Event, findings: &mut Vec<Finding>) {
        let Some(at) = event.timestamp() else {
            return;
        };
        self.action.clear();
        self.action.push_str(&event.verb);
        self.action.push(' ');
        let namespace = match &event.object_ref {
            Some(o) => {
                self.action.push_str(&o.resource);
                if !o.subresource.is_empty() {
                    self.action.push('/');
                    self.action.push_str(&o.subresource);
                }
                if !o.api_group.is_empty() {
                    self.action.push('.');
                    self.action.push_str(&o.api_group);
                }
                (!o.namespace.is_empty()).then_some(o.namespace.as_str())
            }
            None => {
                self.action.push_str(event.request_uri.split('?').next().unwrap_or_default());
                None
            }
        };
        let account = &event.user.username;
        if self.baseline.observe(account, &self.action, namespace, at) != Observation::Rare {
            return;
        }
        let (sa_namespace, sa_name) = account[SERVICE_ACCOUNT_PREFIX.len()..]
            .split_once(':')
            .unwrap_or(("", &account[SERVICE_ACCOUNT_PREFIX.len()..]));
        let scope = namespace.map_or_else(|| "cluster-wide".to_owned(), |ns| format!("in namespace {ns}"));
        let mut evidence = request_evidence(event);
        evidence.push(("operation".to_owned(), format!("{} {scope}", self.action)));
        if let Some(until) = self.baseline.learning_until(account) {
            evidence.push(("learnedUntil".to_owned(), until.to_string()));
        }
        findings.push(Finding {
            alert_type: SERVICE_ACCOUNT_RARE_OPERATION,
            entities: Entities {
                namespace: Some(sa_namespace.to_owned()),
                service_account: Some(sa_name.to_owned()),
                user: Some(account.clone()),
                ..Entities::default()
            },
            evidence,
            summary: format!(
                "Service account {sa_namespace}/{sa_name} did something it had not done before: {} {scope}",
                self.action
            ),
        });
    }
}

/// What the workload rules read of a workload's pod template.
#[derive(Debug, PartialEq, Eq)]
enum Known {
    /// The whole object: its own create or update, or its creation by a controller from a
    /// template read already. Every revision, as long as its later writes are seen.
    Whole,
    /// An object that a controller made from this revision of it: a pod, a ReplicaSet.
    Revision(String),
}

/// The workloads whose pod template the workload rules read, so that what their controllers
/// make from it (ReplicaSets, Jobs, and pods, one per replica) is not read again: one attack,
/// one alert. What a controller makes from a template the log never showed (the log begins
/// after the Deployment was written, or the audit policy records workloads without bodies)
/// is read, and the first pod or ReplicaSet raises the alerts; its owner's template is known
/// from then on. So is a workload's own patch the first time the log shows it, read whole.
/// Bounded: a workload forgotten has its next pod read again.
#[derive(Debug)]
struct Templates {
    read: Bounded<TemplateKey, Known>,
}

impl Templates {
    /// The workload rules over a write of a pod or pod template, unless a controller made
    /// it from a template read already.
    fn evaluate(&mut self, event: &Event, config: &Config) -> Vec<Finding> {
        let written = match workload::template_write(event, config) {
            None => return Vec::new(),
            Some(TemplateWrite::Unseen(workload)) => {
                self.read.entries.remove(&workload);
                return Vec::new();
            }
            Some(TemplateWrite::Read(written)) => written,
        };
        let namespace = written.namespace();
        if written.derived_from.as_ref().is_some_and(|owner| self.covers(namespace, owner)) {
            // Its own children are made from what was read.
            if let Some(workload) = written.template().filter(|_| written.shows_whole_object()) {
                self.read.insert(workload, Known::Whole);
            }
            return Vec::new();
        }
        let template = written.template();
        // Pods are not remembered: a patch of one reads only what it changes.
        let first_sight = template.as_ref().is_some_and(|t| !self.read.entries.contains_key(t));
        let reading = if first_sight && written.shows_whole_object() { Reading::Whole } else { Reading::Changes };
        let Some(findings) = workload::evaluate(&written, reading, config) else {
            if let Some(workload) = template {
                self.read.entries.remove(&workload);
            }
            return Vec::new();
        };
        // A patch without its result leaves what is known as it was: what it changed was read.
        if written.shows_whole_object() {
            if let Some(owner) = &written.derived_from {
                self.learn_revision(namespace, owner);
            }
            if let Some(workload) = template {
                self.read.insert(workload, Known::Whole);
            }
        }
        findings
    }

    /// Whether the owner's template, or that of the workload that made the owner, was read
    /// at the revision the object was made from.
    fn covers(&self, namespace: &str, owner: &Owner) -> bool {
        let known = |kind: &str, name: &str| {
            let key = TemplateKey { namespace: namespace.to_owned(), kind: kind.to_owned(), name: name.to_owned() };
            match self.read.entries.get(&key) {
                Some(Known::Whole) => true,
                Some(Known::Revision(revision)) => *revision == owner.revision,
                None => false,
            }
        };
        known(&owner.kind, &owner.name) || owner.maker().is_some_and(|(kind, name)| known(kind, name))
    }

    /// Remembers that the owner's template (and its maker's) was read at the revision an
    /// object made from it shows.
    fn learn_revision(&mut self, namespace: &str, owner: &Owner) {
        for (kind, name) in std::iter::once((owner.kind.as_str(), owner.name.as_str())).chain(owner.maker()) {
            let key = TemplateKey { namespace: namespace.to_owned(), kind: kind.to_owned(), name: name.to_owned() };
            if self.read.entries.get(&key) != Some(&Known::Whole) {
                self.read.insert(key, Known::Revision(owner.revision.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LearningPeriod;
    use crate::audit::Timestamp;
    use crate::objects::Workload;
    use crate::rules::test_support::{event, with_request, with_response};
    use crate::rules::{DELETE_EVENTS, SERVICE_ACCOUNT_RARE_OPERATION};

    fn engine() -> Engine {
        let learning =
            LearningPeriod { start: Timestamp::from_unix_micros(0), end: "2025-06-01T00:00:00Z".parse().unwrap() };
        Engine::new(Config::default(), Baseline::new(learning))
    }

    const NO_CLUSTER: &Vec<Workload> = &Vec::new();

    #[test]
    fn only_the_response_complete_stage_is_read() {
        let complete = event("deletecollection", "", "events", "shop", "", "mallory");
        assert_eq!(
            engine().evaluate(&complete, NO_CLUSTER).iter().map(|f| f.alert_type).collect::<Vec<_>>(),
            [DELETE_EVENTS]
        );
        // As the apiserver writes it on receipt: no status yet, and the same request.
        let mut received = complete.clone();
        received.stage = Stage::RequestReceived;
        received.response_status = None;
        assert!(engine().evaluate(&received, NO_CLUSTER).is_empty());
    }

    #[test]
    fn a_service_account_doing_something_new_after_learning_is_reported_once() {
        let mut engine = engine();
        let sa = "system:serviceaccount:shop:web";
        let mut learning = event("get", "", "configmaps", "shop", "settings", sa);
        learning.request_received_timestamp = Some("2025-05-31T10:00:00Z".parse().unwrap());
        assert!(engine.evaluate(&learning, NO_CLUSTER).is_empty());
        let mut known = learning.clone();
        known.request_received_timestamp = Some("2025-06-02T10:00:00Z".parse().unwrap());
        assert!(engine.evaluate(&known, NO_CLUSTER).is_empty());
        let mut rare = event("list", "", "secrets", "", "", sa);
        rare.request_received_timestamp = known.request_received_timestamp;
        let findings = engine.evaluate(&rare, NO_CLUSTER);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].alert_type, SERVICE_ACCOUNT_RARE_OPERATION);
        assert_eq!(
            findings[0].summary,
            "Service account shop/web did something it had not done before: list secrets cluster-wide"
        );
        assert_eq!(findings[0].entities.service_account.as_deref(), Some("web"));
        assert!(engine.evaluate(&rare, NO_CLUSTER).is_empty(), "learned once reported");
        assert_eq!(engine.baseline().operations(), 2);
    }

    const REPLICASET_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";
    const DEPLOYMENT_CONTROLLER: &str = "system:serviceaccount:kube-system:deployment-controller";
    const JOB_CONTROLLER: &str = "system:serviceaccount:kube-system:job-controller";
    const DAEMON_SET_CONTROLLER: &str = "system:serviceaccount:kube-system:daemon-set-controller";

    /// A pod spec with a privileged container, as a controller copies it from a template.
    const PRIVILEGED_SPEC: &str =
        r#"{"containers":[{"name":"web","image":"nginx:1.27","securityContext":{"privileged":true}}]}"#;

    fn deployment_created(name: &str) -> Event {
        let body = format!(
            r#"{{"kind":"Deployment","metadata":{{"name":"{name}","namespace":"shop"}},"spec":{{"template":{{"spec":{PRIVILEGED_SPEC}}}}}}}"#
        );
        with_response(event("create", "apps", "deployments", "shop", name, "mallory"), &body)
    }

    /// An object a controller made: `kind` named `name`, owned by `owner` (kind, name),
    /// labelled with its template's `revision` (label, value; no label when empty).
    fn made_by(controller: &str, kind: &str, name: &str, owner: (&str, &str), revision: (&str, &str)) -> Event {
        let (group, resource) = match kind {
            "Pod" => ("", "pods"),
            "ReplicaSet" => ("apps", "replicasets"),
            _ => ("batch", "jobs"),
        };
        let (owner_kind, owner_name) = owner;
        let (label, hash) = revision;
        let labels = if label.is_empty() { String::new() } else { format!(r#","labels":{{"{label}":"{hash}"}}"#) };
        let spec = if kind == "Pod" {
            PRIVILEGED_SPEC.to_owned()
        } else {
            format!(r#"{{"template":{{"spec":{PRIVILEGED_SPEC}}}}}"#)
        };
        let body = format!(
            r#"{{"kind":"{kind}","metadata":{{"name":"{name}","namespace":"shop"{labels},
               "ownerReferences":[{{"kind":"{owner_kind}","name":"{owner_name}","uid":"u","controller":true}}]}},"spec":{spec}}}"#
        );
        with_response(event("create", group, resource, "shop", name, controller), &body)
    }

    fn replica(n: usize) -> Event {
        made_by(
            REPLICASET_CONTROLLER,
            "Pod",
            &format!("web-5d4f8b9c7-{n}"),
            ("ReplicaSet", "web-5d4f8b9c7"),
            ("pod-template-hash", "5d4f8b9c7"),
        )
    }

    fn replay(engine: &mut Engine, events: &[Event]) -> Vec<String> {
        events
            .iter()
            .flat_map(|e| engine.evaluate(e, NO_CLUSTER))
            .map(|f| format!("{} {}", f.alert_type, f.entities.pod.or(f.entities.workload_name).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn pods_whose_workload_the_log_never_showed_raise_the_alert_once() {
        let mut engine = engine();
        assert_eq!(
            replay(&mut engine, &[replica(1), replica(2), replica(3)]),
            ["K8S_PrivilegedContainer web-5d4f8b9c7-1"]
        );
    }

    #[test]
    fn a_deployment_its_replicaset_and_its_pods_raise_one_alert() {
        let mut engine = engine();
        assert_eq!(
            replay(&mut engine, &[deployment_created("web"), replicaset(), replica(1), replica(2)]),
            ["K8S_PrivilegedContainer web"]
        );
        // Without the ReplicaSet's own write, its name and the pods' hash lead to the Deployment.
        let mut engine = self::engine();
        assert_eq!(replay(&mut engine, &[deployment_created("web"), replica(1)]), ["K8S_PrivilegedContainer web"]);
    }

    fn replicaset() -> Event {
        made_by(
            DEPLOYMENT_CONTROLLER,
            "ReplicaSet",
            "web-5d4f8b9c7",
            ("Deployment", "web"),
            ("pod-template-hash", "5d4f8b9c7"),
        )
    }

    /// A rollout restart of the Deployment: the patch touches an annotation of the template.
    fn restarted() -> Event {
        let restart = r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-06-01T12:00:00Z"}}}}}"#;
        let deployment = deployment_created("web").response_object.unwrap();
        let patch = with_request(event("patch", "apps", "deployments", "shop", "web", "alice"), restart);
        with_response(patch, deployment.get())
    }

    #[test]
    fn a_replicaset_of_an_unseen_deployment_raises_the_alert_and_its_pods_do_not() {
        let mut engine = engine();
        assert_eq!(
            replay(&mut engine, &[replicaset(), replica(1), replica(2)]),
            ["K8S_PrivilegedContainer web-5d4f8b9c7"]
        );
    }

    #[test]
    fn a_patch_is_read_whole_the_first_time_the_log_shows_its_workload() {
        // A Deployment privileged since before the log began, restarted: the first sight of
        // its template raises the alert, the ReplicaSet and pods of the restart do not.
        let mut engine = engine();
        assert_eq!(
            replay(&mut engine, &[restarted(), replicaset(), replica(1), replica(2)]),
            ["K8S_PrivilegedContainer web"]
        );
        // Seen before, its restart says nothing new.
        let mut engine = self::engine();
        assert_eq!(replay(&mut engine, &[deployment_created("web"), restarted()]), ["K8S_PrivilegedContainer web"]);
        // A patch recorded without its result shows only what it changes.
        let mut engine = self::engine();
        let mut without_result = restarted();
        without_result.response_object = None;
        assert!(replay(&mut engine, &[without_result]).is_empty());
        assert_eq!(replay(&mut engine, &[replica(1)]), ["K8S_PrivilegedContainer web-5d4f8b9c7-1"]);
    }

    #[test]
    fn a_workload_written_without_its_body_is_read_again_from_its_pods() {
        let mut engine = engine();
        assert_eq!(replay(&mut engine, &[deployment_created("web")]), ["K8S_PrivilegedContainer web"]);
        // Recorded at Metadata: the template may be anything now.
        assert!(replay(&mut engine, &[event("update", "apps", "deployments", "shop", "web", "mallory")]).is_empty());
        assert_eq!(replay(&mut engine, &[replica(1), replica(2)]), ["K8S_PrivilegedContainer web-5d4f8b9c7-1"]);
        // Deleted and created again before the log resumes: the same.
        let mut engine = self::engine();
        replay(
            &mut engine,
            &[deployment_created("web"), event("delete", "apps", "deployments", "shop", "web", "alice")],
        );
        assert_eq!(replay(&mut engine, &[replica(1)]), ["K8S_PrivilegedContainer web-5d4f8b9c7-1"]);
    }

    #[test]
    fn each_new_revision_of_an_unseen_daemonset_is_read() {
        let mut engine = engine();
        let pod = |n: usize, revision: &str| {
            made_by(
                DAEMON_SET_CONTROLLER,
                "Pod",
                &format!("agent-{n}"),
                ("DaemonSet", "agent"),
                ("controller-revision-hash", revision),
            )
        };
        assert_eq!(
            replay(&mut engine, &[pod(1, "7f9c"), pod(2, "7f9c"), pod(3, "8a0d"), pod(4, "8a0d")]),
            ["K8S_PrivilegedContainer agent-1", "K8S_PrivilegedContainer agent-3"]
        );
    }

    #[test]
    fn the_jobs_of_a_cronjob_are_linked_to_it_by_name() {
        let pod = |job: &str| made_by(JOB_CONTROLLER, "Pod", &format!("{job}-x7k2p"), ("Job", job), ("", ""));
        // Only the pods: the first run raises the alert, the next runs do not.
        let mut engine = engine();
        assert_eq!(
            replay(&mut engine, &[pod("nightly-29412345"), pod("nightly-29413785")]),
            ["K8S_PrivilegedContainer nightly-29412345-x7k2p"]
        );
        // The CronJob, then the pods of its Jobs (whose own writes are not in the log).
        let cronjob = format!(
            r#"{{"kind":"CronJob","metadata":{{"name":"nightly","namespace":"shop"}},"spec":{{"jobTemplate":{{"spec":{{"template":{{"spec":{PRIVILEGED_SPEC}}}}}}}}}}}"#
        );
        let mut engine = self::engine();
        let created = with_response(event("create", "batch", "cronjobs", "shop", "nightly", "mallory"), &cronjob);
        assert_eq!(replay(&mut engine, &[created, pod("nightly-29412345")]), ["K8S_PrivilegedContainer nightly"]);
        // A Job of another name is not the CronJob's.
        assert_eq!(replay(&mut engine, &[pod("migrate")]), ["K8S_PrivilegedContainer migrate-x7k2p"]);
    }

    #[test]
    fn the_memory_of_templates_is_bounded() {
        let learning =
            LearningPeriod { start: Timestamp::from_unix_micros(0), end: "2025-06-01T00:00:00Z".parse().unwrap() };
        let mut engine = Engine::new(Config { template_memory: 1, ..Config::default() }, Baseline::new(learning));
        replay(&mut engine, &[deployment_created("web"), deployment_created("api")]);
        assert_eq!(
            replay(&mut engine, &[replica(1)]),
            ["K8S_PrivilegedContainer web-5d4f8b9c7-1"],
            "web was forgotten"
        );
    }

    #[test]
    fn exempt_service_accounts_are_not_baselined() {
        let operator = "system:serviceaccount:riposte-system:riposte";
        let config = Config { baseline_exempt_service_accounts: vec![operator.into()], ..Config::default() };
        let learning =
            LearningPeriod { start: Timestamp::from_unix_micros(0), end: "2025-06-01T00:00:00Z".parse().unwrap() };
        let mut engine = Engine::new(config, Baseline::new(learning));
        let mut isolation = event("patch", "", "pods", "shop", "web-1", operator);
        isolation.request_received_timestamp = Some("2025-06-02T10:00:00Z".parse().unwrap());
        assert!(engine.evaluate(&isolation, NO_CLUSTER).is_empty());
        assert_eq!(engine.baseline().accounts(), 0, "nothing learned about it either");
        let mut other = isolation.clone();
        other.user.username = "system:serviceaccount:shop:web".into();
        engine.evaluate(&other, NO_CLUSTER);
        assert_eq!(engine.baseline().accounts(), 1, "other accounts still are");
    }
}
