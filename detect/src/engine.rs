//! The engine: every rule that can apply to an event, in one pass.
//!
//! Most audit events are reads and watches by controllers and kubelets. The engine first
//! drops the stages that would repeat a request (only ResponseComplete is read), runs the
//! few rules that look at every request (client and service-account rules, each a lookup or
//! two), and dispatches writes on (API group, resource) to the one rule family that reads
//! that kind of object, so that an object body is parsed only when a rule needs it.

use crate::audit::{Event, Stage};
use crate::objects::{ClusterView, Service};
use crate::rules::client::ClientRules;
use crate::rules::{
    Entities, Finding, SERVICE_ACCOUNT_RARE_OPERATION, control_plane, exposure, rbac, request_evidence, workload,
};
use crate::{Baseline, Config, Observation};

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Holds the configuration, the service-account baseline and what the client rules
/// remember, and evaluates events against all rules.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    baseline: Baseline,
    clients: ClientRules,
    action: String,
}

impl Engine {
    pub fn new(config: Config, baseline: Baseline) -> Self {
        let clients = ClientRules::new(&config);
        Engine { config, baseline, clients, action: String::new() }
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
                workload::evaluate(event, config)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LearningPeriod;
    use crate::audit::Timestamp;
    use crate::objects::Workload;
    use crate::rules::test_support::event;
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
