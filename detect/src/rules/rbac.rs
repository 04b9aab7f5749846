//! RBAC rules: K8S_ClusterAdminBinding and K8S_HighPrivilegesRole.
//!
//! Not seen: the apiserver writing its bootstrap roles and bindings at start-up, the
//! aggregation controller filling admin, edit and view from other roles (each of those was
//! checked when written), and patches that leave the rules, subjects and role reference alone.

use serde::Deserialize;

use crate::Config;
use crate::audit::Event;
use crate::rules::{
    CLUSTER_ADMIN_BINDING, Entities, Finding, HIGH_PRIVILEGES_ROLE, acting_user, non_empty, past_tense,
    request_evidence, took_effect, write_touches, written_object,
};

const CLUSTER_ADMIN: &str = "cluster-admin";
const AGGREGATION_CONTROLLER: &str = "system:serviceaccount:kube-system:clusterrole-aggregation-controller";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Binding {
    metadata: Metadata,
    role_ref: RoleRef,
    subjects: Option<Vec<Subject>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Subject {
    kind: String,
    name: String,
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Role {
    metadata: Metadata,
    rules: Option<Vec<PolicyRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PolicyRule {
    api_groups: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    verbs: Vec<String>,
    resource_names: Option<Vec<String>>,
}

/// Whether the write can produce a binding or role worth reading.
fn is_effective_write(event: &Event, config: &Config) -> bool {
    matches!(&*event.verb, "create" | "update" | "patch")
        && took_effect(event)
        && !config.control_plane_users.contains(&event.user.username)
}

/// K8S_ClusterAdminBinding: a ClusterRoleBinding or RoleBinding to the ClusterRole
/// cluster-admin, however it came to be (create, update, patch).
pub fn cluster_admin_binding(event: &Event, config: &Config) -> Vec<Finding> {
    if !is_effective_write(event, config) || !write_touches(event, &["subjects", "roleRef"]) {
        return Vec::new();
    }
    let Some(binding) = written_object(event).and_then(|o| serde_json::from_str::<Binding>(o).ok()) else {
        return Vec::new();
    };
    if binding.role_ref.kind != "ClusterRole" || binding.role_ref.name != CLUSTER_ADMIN {
        return Vec::new();
    }
    let object_ref = event.object_ref.as_ref();
    let kind =
        if object_ref.is_some_and(|o| o.resource == "rolebindings") { "RoleBinding" } else { "ClusterRoleBinding" };
    let name = binding.metadata.name.or_else(|| object_ref.map(|o| o.name.clone())).unwrap_or_default();
    let namespace = binding.metadata.namespace.or_else(|| object_ref.and_then(|o| non_empty(&o.namespace)));
    let subjects = binding.subjects.unwrap_or_default();
    let service_account = subjects.iter().find(|s| s.kind == "ServiceAccount");

    let mut evidence = request_evidence(event);
    let qualified = match &namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    evidence.push(("object".to_owned(), qualified.clone()));
    evidence.push(("field".to_owned(), "roleRef.name: cluster-admin".to_owned()));
    for (i, subject) in subjects.iter().enumerate() {
        let who = match &subject.namespace {
            Some(ns) if !ns.is_empty() => format!("{} {ns}/{}", subject.kind, subject.name),
            _ => format!("{} {}", subject.kind, subject.name),
        };
        evidence.push((format!("subjects[{i}]"), who));
    }
    let names: Vec<String> = subjects.iter().map(|s| s.name.clone()).collect();
    vec![Finding {
        alert_type: CLUSTER_ADMIN_BINDING,
        entities: Entities {
            namespace: namespace.clone().or_else(|| service_account.and_then(|s| s.namespace.clone())),
            service_account: service_account.map(|s| s.name.clone()),
            workload_kind: Some(kind.to_owned()),
            workload_name: non_empty(&name),
            user: acting_user(event),
            ..Entities::default()
        },
        evidence,
        summary: format!(
            "{qualified} grants cluster-admin to {}, {} by {}",
            if names.is_empty() { "no one yet".to_owned() } else { names.join(", ") },
            past_tense(&event.verb),
            event.effective_user().username
        ),
    }]
}

/// K8S_HighPrivilegesRole: a Role or ClusterRole with a wildcard verb, resource or API group,
/// read access to all secrets, the escalate, bind or impersonate verbs, or exec into pods.
pub fn high_privileges_role(event: &Event, config: &Config) -> Vec<Finding> {
    if !is_effective_write(event, config) || !write_touches(event, &["rules"]) {
        return Vec::new();
    }
    let Some(role) = written_object(event).and_then(|o| serde_json::from_str::<Role>(o).ok()) else {
        return Vec::new();
    };
    let object_ref = event.object_ref.as_ref();
    let cluster_scoped = object_ref.is_some_and(|o| o.resource == "clusterroles");
    let name = role.metadata.name.or_else(|| object_ref.map(|o| o.name.clone())).unwrap_or_default();
    let aggregated = cluster_scoped
        && matches!(event.user.username.as_str(), AGGREGATION_CONTROLLER | "system:kube-controller-manager")
        && config.aggregated_cluster_roles.contains(&name);
    if aggregated {
        return Vec::new();
    }
    let reasons: Vec<String> =
        role.rules.unwrap_or_default().iter().enumerate().flat_map(|(i, r)| privileges(i, r)).collect();
    if reasons.is_empty() {
        return Vec::new();
    }
    let kind = if cluster_scoped { "ClusterRole" } else { "Role" };
    let namespace = role.metadata.namespace.or_else(|| object_ref.and_then(|o| non_empty(&o.namespace)));
    let qualified = match &namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let mut evidence = request_evidence(event);
    evidence.push(("object".to_owned(), qualified.clone()));
    evidence.extend(reasons.iter().map(|r| ("privilege".to_owned(), r.clone())));
    vec![Finding {
        alert_type: HIGH_PRIVILEGES_ROLE,
        entities: Entities {
            namespace,
            workload_kind: Some(kind.to_owned()),
            workload_name: non_empty(&name),
            user: acting_user(event),
            ..Entities::default()
        },
        evidence,
        summary: format!(
            "{qualified} has high privileges ({}), {} by {}",
            reasons.join("; "),
            past_tense(&event.verb),
            event.effective_user().username
        ),
    }]
}

/// What makes one policy rule high-privilege, as `rules[i]...` descriptions.
fn privileges(index: usize, rule: &PolicyRule) -> Vec<String> {
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let resources = rule.resources.as_deref().unwrap_or_default();
    let verbs = &rule.verbs;
    // Rules on non-resource URLs (/healthz, /metrics) have no resources: they reach no objects.
    if resources.is_empty() {
        return Vec::new();
    }
    let has = |list: &[String], item: &str| list.iter().any(|x| x == item);
    let mut found = Vec::new();
    for (field, list) in [("verbs", verbs.as_slice()), ("resources", resources), ("apiGroups", groups)] {
        if has(list, "*") {
            found.push(format!("rules[{index}].{field}: *"));
        }
    }
    let core = has(groups, "") || has(groups, "*");
    // Reading one named secret is how many operators are scoped; reading them all is not.
    let unnamed = rule.resource_names.as_deref().unwrap_or_default().is_empty();
    let reads: Vec<&str> = ["get", "list", "watch"].into_iter().filter(|v| has(verbs, v)).collect();
    if core && unnamed && has(resources, "secrets") && !reads.is_empty() {
        found.push(format!("rules[{index}]: {} secrets", reads.join("/")));
    }
    for verb in ["escalate", "bind", "impersonate"] {
        if has(verbs, verb) {
            found.push(format!("rules[{index}].verbs: {verb}"));
        }
    }
    // Before Kubernetes 1.35, `get` on pods/exec also opens an exec session (over WebSocket).
    let exec = ["create", "get"].into_iter().filter(|v| has(verbs, v)).collect::<Vec<_>>();
    if core && (has(resources, "pods/exec") || has(resources, "pods/*")) && !exec.is_empty() {
        found.push(format!("rules[{index}]: {} pods/exec", exec.join("/")));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_support::{event, evidence, with_request, with_response};

    const RBAC: &str = "rbac.authorization.k8s.io";

    #[test]
    fn a_binding_to_cluster_admin_names_its_subjects() {
        let binding = r#"{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor"},
            "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
            "subjects":[{"kind":"ServiceAccount","name":"builder","namespace":"ci"}]}"#;
        let e = with_response(event("create", RBAC, "clusterrolebindings", "", "backdoor", "mallory"), binding);
        let findings = cluster_admin_binding(&e, &Config::default());
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.alert_type, CLUSTER_ADMIN_BINDING);
        assert_eq!(evidence(f, "subjects[0]"), Some("ServiceAccount ci/builder"));
        assert_eq!(f.entities.service_account.as_deref(), Some("builder"));
        assert_eq!(f.entities.namespace.as_deref(), Some("ci"));
        assert_eq!(f.summary, "ClusterRoleBinding backdoor grants cluster-admin to builder, created by mallory");
    }

    #[test]
    fn rolebindings_count_and_other_roles_and_bootstrap_do_not() {
        let to = |role: &str| {
            format!(
                r#"{{"metadata":{{"name":"b","namespace":"shop"}},"roleRef":{{"kind":"ClusterRole","name":"{role}"}},"subjects":[{{"kind":"User","name":"bob"}}]}}"#
            )
        };
        let e = with_request(event("create", RBAC, "rolebindings", "shop", "b", "alice"), &to("cluster-admin"));
        assert_eq!(cluster_admin_binding(&e, &Config::default()).len(), 1);
        let e = with_request(event("create", RBAC, "rolebindings", "shop", "b", "alice"), &to("edit"));
        assert!(cluster_admin_binding(&e, &Config::default()).is_empty());
        let e = with_request(
            event("create", RBAC, "clusterrolebindings", "", "cluster-admin", "system:apiserver"),
            &to("cluster-admin"),
        );
        assert!(cluster_admin_binding(&e, &Config::default()).is_empty());
        // A patch that adds a subject to an existing cluster-admin binding grants it anew.
        let patch = r#"{"subjects":[{"kind":"User","name":"bob"}]}"#;
        let e = with_response(
            with_request(event("patch", RBAC, "rolebindings", "shop", "b", "alice"), patch),
            &to("cluster-admin"),
        );
        assert_eq!(cluster_admin_binding(&e, &Config::default()).len(), 1);
        let relabel = r#"{"metadata":{"labels":{"team":"x"}}}"#;
        let e = with_response(
            with_request(event("patch", RBAC, "rolebindings", "shop", "b", "alice"), relabel),
            &to("cluster-admin"),
        );
        assert!(cluster_admin_binding(&e, &Config::default()).is_empty());
    }

    fn role_event(rules: &str, user: &str) -> Event {
        let role = format!(r#"{{"kind":"ClusterRole","metadata":{{"name":"r"}},"rules":{rules}}}"#);
        with_response(event("create", RBAC, "clusterroles", "", "r", user), &role)
    }

    #[test]
    fn each_kind_of_high_privilege_is_named() {
        let cases = [
            (
                r#"[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]"#,
                "rules[0].verbs: *; rules[0].resources: *; rules[0].apiGroups: *",
            ),
            (r#"[{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list"]}]"#, "rules[0]: get/list secrets"),
            (
                r#"[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"verbs":["escalate","bind"]}]"#,
                "rules[0].verbs: escalate; rules[0].verbs: bind",
            ),
            (
                r#"[{"apiGroups":[""],"resources":["users","groups","serviceaccounts"],"verbs":["impersonate"]}]"#,
                "rules[0].verbs: impersonate",
            ),
            (
                r#"[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]},{"apiGroups":[""],"resources":["pods/exec"],"verbs":["create"]}]"#,
                "rules[1]: create pods/exec",
            ),
        ];
        for (rules, expected) in cases {
            let findings = high_privileges_role(&role_event(rules, "alice"), &Config::default());
            assert_eq!(findings.len(), 1, "{rules}");
            assert!(findings[0].summary.contains(expected), "{rules}: {}", findings[0].summary);
        }
    }

    #[test]
    fn ordinary_roles_and_control_plane_writes_are_not_high_privilege() {
        let reader = r#"[{"apiGroups":["","apps"],"resources":["pods","deployments","configmaps"],"verbs":["get","list","watch"]},
                         {"apiGroups":[""],"resources":["secrets"],"resourceNames":["tls-cert"],"verbs":["get"]},
                         {"nonResourceURLs":["*"],"verbs":["get"]}]"#;
        assert!(high_privileges_role(&role_event(reader, "alice"), &Config::default()).is_empty());
        let wildcard = r#"[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]"#;
        assert!(high_privileges_role(&role_event(wildcard, "system:apiserver"), &Config::default()).is_empty());
        let mut denied = role_event(wildcard, "mallory");
        denied.response_status.as_mut().unwrap().code = Some(403);
        assert!(high_privileges_role(&denied, &Config::default()).is_empty());
    }

    #[test]
    fn the_aggregation_controller_filling_admin_is_not_a_finding_but_filling_another_role_is() {
        let admin = r#"{"metadata":{"name":"admin"},"aggregationRule":{},"rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list","watch"]}]}"#;
        let e = with_response(event("update", RBAC, "clusterroles", "", "admin", AGGREGATION_CONTROLLER), admin);
        assert!(high_privileges_role(&e, &Config::default()).is_empty());
        let sneaky = admin.replace(r#""name":"admin""#, r#""name":"harmless-looking""#);
        let e = with_response(
            event("update", RBAC, "clusterroles", "", "harmless-looking", AGGREGATION_CONTROLLER),
            &sneaky,
        );
        assert_eq!(high_privileges_role(&e, &Config::default()).len(), 1);
    }
}
