//! The rules: one per `audit` and `config` entry of the alert catalog
//! (`crds/src/alert-catalog.yaml`). Each returns [`Finding`]s named by the catalog id; the
//! operator adds the severity, tactics and title from the catalog.
//!
//! | module | alert types |
//! |---|---|
//! | `workload` | K8S_PrivilegedContainer, K8S_SensitiveMount, K8S_KubeSystemContainer, K8S_MaliciousContainerImage |
//! | `rbac` | K8S_ClusterAdminBinding, K8S_HighPrivilegesRole |
//! | `exposure` | K8S_ExposedDashboard, K8S_ExposedKubeflow, K8S_ExposedRedis, K8S_ExposedService, K8S_ExposedPostgresTrustAuth, K8S_ExposedPostgresBroadIPRange |
//! | `control_plane` | K8S_DeleteEvents, K8S_CoreDnsModification, K8S_AdmissionController |
//! | `client` | K8S_PenTestToolsKubeHunter, K8S_TI_Proxy |
//! | [`Baseline`](crate::Baseline), through the engine | K8S_ServiceAccountRareOperation |
//!
//! The rules run through [`Engine`](crate::Engine); `detect/README.md` has the table of what
//! each one sees and does not see.
//!
//! Rules about writes see only requests that took effect: the ResponseComplete stage (each
//! request is audited at several stages), a status below 400, and no server-side dry run.

use serde::Serialize;

use crate::audit::Event;

pub(crate) mod client;
pub(crate) mod control_plane;
pub(crate) mod exposure;
pub(crate) mod rbac;
pub(crate) mod workload;

pub const EXPOSED_POSTGRES_TRUST_AUTH: &str = "K8S_ExposedPostgresTrustAuth";
pub const EXPOSED_POSTGRES_BROAD_IP_RANGE: &str = "K8S_ExposedPostgresBroadIPRange";
pub const SERVICE_ACCOUNT_RARE_OPERATION: &str = "K8S_ServiceAccountRareOperation";
pub const SENSITIVE_MOUNT: &str = "K8S_SensitiveMount";
pub const CORE_DNS_MODIFICATION: &str = "K8S_CoreDnsModification";
pub const ADMISSION_CONTROLLER: &str = "K8S_AdmissionController";
pub const MALICIOUS_CONTAINER_IMAGE: &str = "K8S_MaliciousContainerImage";
pub const EXPOSED_KUBEFLOW: &str = "K8S_ExposedKubeflow";
pub const EXPOSED_DASHBOARD: &str = "K8S_ExposedDashboard";
pub const EXPOSED_SERVICE: &str = "K8S_ExposedService";
pub const EXPOSED_REDIS: &str = "K8S_ExposedRedis";
pub const TI_PROXY: &str = "K8S_TI_Proxy";
pub const DELETE_EVENTS: &str = "K8S_DeleteEvents";
pub const PEN_TEST_TOOLS: &str = "K8S_PenTestToolsKubeHunter";
pub const KUBE_SYSTEM_CONTAINER: &str = "K8S_KubeSystemContainer";
pub const HIGH_PRIVILEGES_ROLE: &str = "K8S_HighPrivilegesRole";
pub const PRIVILEGED_CONTAINER: &str = "K8S_PrivilegedContainer";
pub const CLUSTER_ADMIN_BINDING: &str = "K8S_ClusterAdminBinding";

/// Every alert type these rules raise, in catalog order.
pub const ALERT_TYPES: [&str; 18] = [
    EXPOSED_POSTGRES_TRUST_AUTH,
    EXPOSED_POSTGRES_BROAD_IP_RANGE,
    SERVICE_ACCOUNT_RARE_OPERATION,
    SENSITIVE_MOUNT,
    CORE_DNS_MODIFICATION,
    ADMISSION_CONTROLLER,
    MALICIOUS_CONTAINER_IMAGE,
    EXPOSED_KUBEFLOW,
    EXPOSED_DASHBOARD,
    EXPOSED_SERVICE,
    EXPOSED_REDIS,
    TI_PROXY,
    DELETE_EVENTS,
    PEN_TEST_TOOLS,
    KUBE_SYSTEM_CONTAINER,
    HIGH_PRIVILEGES_ROLE,
    PRIVILEGED_CONTAINER,
    CLUSTER_ADMIN_BINDING,
];

/// Something a rule saw: the alert type, what it concerns, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The catalog id, such as `K8S_PrivilegedContainer`.
    pub alert_type: &'static str,
    pub entities: Entities,
    /// Named facts, in order: which request (auditID, verb, requestURI), by whom, from
    /// which addresses, with which user agent, and which field of which object.
    pub evidence: Vec<(String, String)>,
    /// One sentence for people.
    pub summary: String,
}

/// What a finding is about; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Entities {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub image: Option<String>,
    pub node: Option<String>,
    pub service_account: Option<String>,
    /// The workload's kind (Deployment, DaemonSet, ..., Service for exposures).
    pub workload_kind: Option<String>,
    pub workload_name: Option<String>,
    /// The user the request acted as.
    pub user: Option<String>,
}

/// `Some` of a non-empty string.
fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The evidence every audit finding starts with: which request, by whom, from where.
pub(crate) fn request_evidence(event: &Event) -> Vec<(String, String)> {
    let mut evidence = vec![
        ("auditID".to_owned(), event.audit_id.clone()),
        ("verb".to_owned(), event.verb.clone()),
        ("requestURI".to_owned(), event.request_uri.clone()),
        ("user".to_owned(), event.user.username.clone()),
    ];
    if let Some(impersonated) = &event.impersonated_user {
        evidence.push(("impersonatedUser".to_owned(), impersonated.username.clone()));
    }
    if !event.source_ips.is_empty() {
        evidence.push(("sourceIPs".to_owned(), event.source_ips.join(", ")));
    }
    if let Some(agent) = &event.user_agent {
        evidence.push(("userAgent".to_owned(), agent.clone()));
    }
    if let Some(code) = event.status_code() {
        evidence.push(("responseCode".to_owned(), code.to_string()));
    }
    if let Some(time) = event.timestamp() {
        evidence.push(("time".to_owned(), time.to_string()));
    }
    evidence
}

/// A write that took effect: answered with success, and not a dry run.
pub(crate) fn took_effect(event: &Event) -> bool {
    event.status_code().is_some_and(|code| code < 400) && !event.is_dry_run()
}

/// The object a write produced: the response (the object as stored) when the audit level
/// recorded it, else the request, which for a patch is only the patch document.
pub(crate) fn written_object(event: &Event) -> Option<&str> {
    event.response_object.as_deref().or(event.request_object.as_deref()).map(|raw| raw.get())
}

/// Whether the write may have changed one of `keys`: a patch says which fields it sets
/// (see [`crate::patch`]); any other write may have changed anything.
pub(crate) fn write_touches(event: &Event, keys: &[&str]) -> bool {
    match (&*event.verb, &event.request_object) {
        ("patch", Some(patch)) => crate::patch::patch_touches(patch.get(), keys),
        _ => true,
    }
}

/// `created`, `updated`, `patched`... for summaries.
pub(crate) fn past_tense(verb: &str) -> &str {
    match verb {
        "create" => "created",
        "update" => "updated",
        "patch" => "patched",
        "delete" => "deleted",
        "deletecollection" => "deleted",
        other => other,
    }
}

/// The user the request acted as, for entities.
pub(crate) fn acting_user(event: &Event) -> Option<String> {
    non_empty(&event.effective_user().username)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Audit events shaped as kube-apiserver v1.33 writes them, for the rules' unit tests.

    use crate::audit::Event;

    /// A ResponseComplete, successful event of `verb` on `resource`, without objects.
    pub fn event(verb: &str, group: &str, resource: &str, namespace: &str, name: &str, user: &str) -> Event {
        let version = if group.is_empty() { "v1".to_owned() } else { format!("{group}/v1") };
        let prefix = if group.is_empty() { "/api/v1".to_owned() } else { format!("/apis/{version}") };
        let ns_path = if namespace.is_empty() { String::new() } else { format!("/namespaces/{namespace}") };
        let name_path = if name.is_empty() || verb == "create" { String::new() } else { format!("/{name}") };
        let code = if verb == "create" { 201 } else { 200 };
        serde_json::from_value(serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": "0b6c8f4e-1d2a-4c55-9a7e-3f1e2d4c5b6a", "stage": "ResponseComplete",
            "requestURI": format!("{prefix}{ns_path}/{resource}{name_path}"), "verb": verb,
            "user": {"username": user, "groups": ["system:authenticated"]},
            "sourceIPs": ["192.0.2.10"], "userAgent": "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
            "objectRef": {"resource": resource, "namespace": namespace, "name": name, "apiGroup": group, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": "2025-06-01T12:00:00.000000Z",
            "stageTimestamp": "2025-06-01T12:00:00.010000Z",
        }))
        .expect("test events are audit events")
    }

    fn raw(json: &str) -> Box<serde_json::value::RawValue> {
        let compact = serde_json::from_str::<serde_json::Value>(json).expect("test objects are JSON").to_string();
        serde_json::value::RawValue::from_string(compact).expect("compact JSON is raw JSON")
    }

    pub fn with_request(mut event: Event, json: &str) -> Event {
        event.request_object = Some(raw(json));
        event
    }

    pub fn with_response(mut event: Event, json: &str) -> Event {
        event.response_object = Some(raw(json));
        event
    }

    pub fn evidence<'f>(finding: &'f crate::Finding, name: &str) -> Option<&'f str> {
        finding.evidence.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
pub(crate) mod catalog {
    //! The alert catalog's ids by source, for the tests that the rules cover it exactly.

    #[derive(serde::Deserialize)]
    struct Catalog {
        alerts: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
        source: String,
    }

    /// The ids of the catalog entries of `sources`, in catalog order.
    pub fn ids(sources: &[&str]) -> Vec<String> {
        let catalog: Catalog = serde_yaml::from_str(include_str!("../../../crds/src/alert-catalog.yaml")).unwrap();
        catalog.alerts.into_iter().filter(|e| sources.contains(&e.source.as_str())).map(|e| e.id).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rules_cover_exactly_the_audit_and_config_entries_of_the_catalog() {
        assert_eq!(super::catalog::ids(&["audit", "config"]), super::ALERT_TYPES);
    }
}
