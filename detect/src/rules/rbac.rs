//! RBAC rules: K8S_ClusterAdminBinding and K8S_HighPrivilegesRole.
//!
//! A role is high-privilege for what it grants, wildcards included, judged against the
//! privilege escalation paths of the Kubernetes RBAC good practices.
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

/// K8S_HighPrivilegesRole: a Role or ClusterRole that grants one of the privilege
/// escalation paths of the Kubernetes RBAC good practices, wildcards included for what they
/// grant (see [`ESCALATION_PATHS`]).
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
    let privileges = privileges(&role.rules.unwrap_or_default(), cluster_scoped);
    if privileges.is_empty() {
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
    for privilege in &privileges {
        evidence.push(("privilege".to_owned(), privilege.granted.clone()));
        evidence.push(("risk".to_owned(), privilege.risk.to_owned()));
    }
    let granted: Vec<&str> = privileges.iter().map(|p| p.granted.as_str()).collect();
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
            granted.join("; "),
            past_tense(&event.verb),
            event.effective_user().username
        ),
    }]
}

/// One high privilege a role grants: which rules grant what, and what its holder can do with it.
#[derive(Debug, PartialEq, Eq)]
struct Privilege {
    /// `rules[1]: get nodes/proxy`.
    granted: String,
    risk: &'static str,
}

/// A privilege escalation path: whoever may do one of `verbs` to one of `resources` of
/// `group` can gain more than the words say.
struct EscalationPath {
    group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    /// Whether a Role grants it too. A Role reaches only objects of its namespace, and the
    /// namespace itself through a RoleBinding; the cluster-scoped resources a Role names
    /// (nodes, PersistentVolumes, webhooks, users) grant nothing.
    namespaced: bool,
    /// Whether `resourceNames` confine it to harmless objects: reading one named Secret, or
    /// issuing the token of one named service account, is how operators are scoped. A named
    /// Deployment still runs what its template says and a named node's kubelet still execs
    /// into all its pods, so names do not confine those.
    confined_by_names: bool,
    risk: &'static str,
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

const WORKLOAD_RISK: &str = "runs pods as any service account of the namespace, with its Secrets and ConfigMaps, \
    privileged or with the node's files where Pod Security allows it";

/// The paths of "Kubernetes RBAC - privilege escalation risks" in the RBAC good practices
/// (<https://kubernetes.io/docs/concepts/security/rbac-good-practices/#privilege-escalation-risks>),
/// with exec and ephemeral containers, which give the same as running a pod.
///
/// Namespaced or cluster-wide, per the page: listing Secrets, workload creation, token
/// requests, escalate, bind, impersonating service accounts and namespace modification
/// ("through a namespaced RoleBinding to a Role") are escalations within a namespace, whose
/// boundaries the page calls weak: a Role that grants them is reported. `nodes/proxy`,
/// PersistentVolume creation, CSR approval, impersonating users and groups and admission
/// webhooks are cluster-scoped: only a ClusterRole grants them.
///
/// Not here: `update`/`patch` of pods. A pod's service account, privileges and volumes are
/// immutable; an image change runs code with that pod's own identity only, and every
/// controller that labels pods (Riposte's isolation among them) needs the right, which RBAC
/// cannot narrow to labels.
const ESCALATION_PATHS: &[EscalationPath] = &[
    EscalationPath {
        group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch"],
        namespaced: true,
        confined_by_names: true,
        risk: "reads Secrets (list and watch return their contents too), service-account tokens included",
    },
    EscalationPath {
        group: "",
        resources: &["pods"],
        verbs: &["create"],
        namespaced: true,
        confined_by_names: false,
        risk: WORKLOAD_RISK,
    },
    EscalationPath {
        group: "apps",
        resources: &["deployments", "daemonsets", "statefulsets", "replicasets"],
        verbs: &["create", "update", "patch"],
        namespaced: true,
        confined_by_names: false,
        risk: WORKLOAD_RISK,
    },
    EscalationPath {
        group: "batch",
        resources: &["jobs", "cronjobs"],
        verbs: &["create", "update", "patch"],
        namespaced: true,
        confined_by_names: false,
        risk: WORKLOAD_RISK,
    },
    EscalationPath {
        group: "",
        resources: &["replicationcontrollers"],
        verbs: &["create", "update", "patch"],
        namespaced: true,
        confined_by_names: false,
        risk: WORKLOAD_RISK,
    },
    // Before Kubernetes 1.35, `get` also opens an exec session (over WebSocket).
    EscalationPath {
        group: "",
        resources: &["pods/exec", "pods/attach"],
        verbs: &["create", "get"],
        namespaced: true,
        confined_by_names: true,
        risk: "runs commands in running containers, with their service accounts and volumes",
    },
    EscalationPath {
        group: "",
        resources: &["pods/ephemeralcontainers"],
        verbs: &["update", "patch"],
        namespaced: true,
        confined_by_names: true,
        risk: "adds containers, privileged if they ask, to running pods, with their service accounts and volumes",
    },
    EscalationPath {
        group: "",
        resources: &["serviceaccounts/token"],
        verbs: &["create"],
        namespaced: true,
        confined_by_names: true,
        risk: "issues tokens of service accounts, with their rights",
    },
    EscalationPath {
        group: RBAC_GROUP,
        resources: &["roles", "clusterroles"],
        verbs: &["escalate"],
        namespaced: true,
        confined_by_names: false,
        risk: "writes roles with rights its holder does not have",
    },
    EscalationPath {
        group: RBAC_GROUP,
        resources: &["roles", "clusterroles"],
        verbs: &["bind"],
        namespaced: true,
        confined_by_names: false,
        risk: "binds roles with rights its holder does not have",
    },
    EscalationPath {
        group: "",
        resources: &["serviceaccounts"],
        verbs: &["impersonate"],
        namespaced: true,
        confined_by_names: false,
        risk: "acts as service accounts, with their rights",
    },
    EscalationPath {
        group: "",
        resources: &["users", "groups"],
        verbs: &["impersonate"],
        namespaced: false,
        confined_by_names: false,
        risk: "acts as other users and groups, with their rights (system:masters included)",
    },
    EscalationPath {
        group: "",
        resources: &["namespaces"],
        verbs: &["update", "patch"],
        namespaced: true,
        confined_by_names: false,
        risk: "relabels namespaces: their Pod Security level, and which NetworkPolicies select them",
    },
    // Every verb that the kubelet authorises a request with, not only create: `get` is
    // enough to exec over WebSocket.
    EscalationPath {
        group: "",
        resources: &["nodes/proxy"],
        verbs: &["get", "create", "update", "patch", "delete"],
        namespaced: false,
        confined_by_names: false,
        risk: "the kubelet's API: runs commands in every pod of the nodes, unaudited and past admission",
    },
    EscalationPath {
        group: "",
        resources: &["persistentvolumes"],
        verbs: &["create"],
        namespaced: false,
        confined_by_names: false,
        risk: "creates hostPath volumes: the node's files, for any pod that claims them",
    },
    EscalationPath {
        group: "admissionregistration.k8s.io",
        resources: &["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
        verbs: &["create", "update", "patch"],
        namespaced: false,
        confined_by_names: false,
        risk: "sends the objects written to the cluster to a webhook of its choosing, which may change them",
    },
];

/// The signers whose certificates the apiserver accepts as client credentials, with the
/// names a signer right can be given by (`<domain>/*` covers every signer of the domain).
const CLIENT_SIGNERS: &[&str] =
    &["kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/*"];

/// What makes a role's rules high-privilege.
fn privileges(rules: &[PolicyRule], cluster_scoped: bool) -> Vec<Privilege> {
    let mut found = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        // Rules on non-resource URLs (/healthz, /metrics) have no resources: they reach no objects.
        if rule.resources.as_deref().unwrap_or_default().is_empty() {
            continue;
        }
        if rule.grants_everything() {
            found.push(Privilege {
                granted: format!("rules[{index}]: every verb on every resource of every API group"),
                risk: if cluster_scoped {
                    "all of the cluster, as cluster-admin, and every resource type added later"
                } else {
                    "all of the namespace, and every resource type added later"
                },
            });
            continue;
        }
        for path in ESCALATION_PATHS.iter().filter(|p| cluster_scoped || p.namespaced) {
            if path.confined_by_names && rule.names_objects() {
                continue;
            }
            let resources: Vec<&str> =
                path.resources.iter().copied().filter(|r| rule.grants_resource(path.group, r)).collect();
            let Some(first) = resources.first() else {
                continue;
            };
            let verbs = rule.granted_verbs(first, path.verbs);
            if !verbs.is_empty() {
                found.push(Privilege {
                    granted: format!("rules[{index}]: {} {}", verbs.join("/"), resources.join(", ")),
                    risk: path.risk,
                });
            }
        }
    }
    if cluster_scoped {
        found.extend(certificate_approval(rules));
    }
    found
}

/// CSRs and certificate issuing: approving a CSR takes `update` on
/// `certificatesigningrequests/approval` and `approve` on its signer, possibly in two
/// rules. For a client signer, the certificate authenticates whoever it names, the control
/// plane's own components included. A rule that grants everything is reported as such.
fn certificate_approval(rules: &[PolicyRule]) -> Option<Privilege> {
    let group = "certificates.k8s.io";
    let approval = rules.iter().position(|r| {
        !r.grants_everything()
            && r.grants_resource(group, "certificatesigningrequests/approval")
            && !r.granted_verbs("certificatesigningrequests/approval", &["update"]).is_empty()
    })?;
    let signer = rules.iter().position(|r| {
        let names = r.resource_names.as_deref().unwrap_or_default();
        !r.grants_everything()
            && r.grants_resource(group, "signers")
            && !r.granted_verbs("signers", &["approve"]).is_empty()
            && (names.is_empty() || names.iter().any(|n| CLIENT_SIGNERS.contains(&n.as_str())))
    })?;
    let rules = if approval == signer {
        format!("rules[{approval}]")
    } else {
        format!("rules[{approval}] and rules[{signer}]")
    };
    Some(Privilege {
        granted: format!("{rules}: update certificatesigningrequests/approval, approve signers"),
        risk: "approves client certificates for any user or group, the control plane's own included",
    })
}

/// Whether an RBAC list (verbs, API groups) names `item`, or `*`.
fn covers(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == "*" || x == item)
}

impl PolicyRule {
    fn grants_everything(&self) -> bool {
        let all = |list: &Option<Vec<String>>| list.as_deref().unwrap_or_default().iter().any(|x| x == "*");
        all(&self.api_groups) && all(&self.resources) && self.verbs.iter().any(|v| v == "*")
    }

    /// Whether the rule reaches `resource` (`resource/subresource`) of `group`, as the RBAC
    /// authorizer matches: `*` is every group or resource, `*/sub` that subresource of every
    /// resource, anything else only itself (`pods/*` is no wildcard).
    fn grants_resource(&self, group: &str, resource: &str) -> bool {
        let groups = self.api_groups.as_deref().unwrap_or_default();
        let subresource = resource.split_once('/').map(|(_, sub)| sub);
        covers(groups, group)
            && self
                .resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|r| r == "*" || r == resource || subresource.is_some_and(|sub| r.strip_prefix("*/") == Some(sub)))
    }

    /// Which of `verbs` the rule grants on `resource`. A request to create an object names
    /// none, so a rule limited to `resourceNames` never grants creating one.
    fn granted_verbs<'v>(&self, resource: &str, verbs: &[&'v str]) -> Vec<&'v str> {
        let creates_unnamed = !resource.contains('/');
        verbs
            .iter()
            .copied()
            .filter(|verb| covers(&self.verbs, verb))
            .filter(|verb| !(*verb == "create" && creates_unnamed && self.names_objects()))
            .collect()
    }

    fn names_objects(&self) -> bool {
        !self.resource_names.as_deref().unwrap_or_default().is_empty()
    }
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

    fn namespaced_role_event(rules: &str) -> Event {
        let role = format!(r#"{{"kind":"Role","metadata":{{"name":"r","namespace":"shop"}},"rules":{rules}}}"#);
        with_response(event("create", RBAC, "roles", "shop", "r", "alice"), &role)
    }

    /// The privileges named in the summary of the one finding, or nothing.
    fn granted(event: &Event) -> Option<String> {
        let findings = high_privileges_role(event, &Config::default());
        assert!(findings.len() <= 1);
        let summary = &findings.first()?.summary;
        let (_, rest) = summary.split_once("has high privileges (")?;
        Some(rest.rsplit_once("), ").map_or(rest, |(inside, _)| inside).to_owned())
    }

    #[test]
    fn each_kind_of_high_privilege_is_named() {
        let cases = [
            (
                r#"[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]"#,
                "rules[0]: every verb on every resource of every API group",
            ),
            (r#"[{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list"]}]"#, "rules[0]: get/list secrets"),
            (
                r#"[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"verbs":["escalate","bind"]}]"#,
                "rules[0]: escalate clusterroles; rules[0]: bind clusterroles",
            ),
            (
                r#"[{"apiGroups":[""],"resources":["users","groups","serviceaccounts"],"verbs":["impersonate"]}]"#,
                "rules[0]: impersonate serviceaccounts; rules[0]: impersonate users, groups",
            ),
            (
                r#"[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]},{"apiGroups":[""],"resources":["pods/exec"],"verbs":["create"]}]"#,
                "rules[1]: create pods/exec",
            ),
            (r#"[{"apiGroups":[""],"resources":["nodes/proxy"],"verbs":["get"]}]"#, "rules[0]: get nodes/proxy"),
            (r#"[{"apiGroups":[""],"resources":["nodes/proxy"],"verbs":["create"]}]"#, "rules[0]: create nodes/proxy"),
            (
                r#"[{"apiGroups":["apps"],"resources":["deployments","daemonsets"],"verbs":["*"]}]"#,
                "rules[0]: create/update/patch deployments, daemonsets",
            ),
            (r#"[{"apiGroups":["batch"],"resources":["cronjobs"],"verbs":["create"]}]"#, "rules[0]: create cronjobs"),
            (r#"[{"apiGroups":[""],"resources":["pods"],"verbs":["create"]}]"#, "rules[0]: create pods"),
            (
                r#"[{"apiGroups":[""],"resources":["serviceaccounts/token"],"verbs":["create"]}]"#,
                "rules[0]: create serviceaccounts/token",
            ),
            (
                r#"[{"apiGroups":[""],"resources":["persistentvolumes"],"verbs":["create"]}]"#,
                "rules[0]: create persistentvolumes",
            ),
            (
                r#"[{"apiGroups":[""],"resources":["pods/ephemeralcontainers"],"verbs":["patch"]}]"#,
                "rules[0]: patch pods/ephemeralcontainers",
            ),
            (r#"[{"apiGroups":[""],"resources":["namespaces"],"verbs":["patch"]}]"#, "rules[0]: patch namespaces"),
            (
                r#"[{"apiGroups":["admissionregistration.k8s.io"],"resources":["mutatingwebhookconfigurations"],"verbs":["create"]}]"#,
                "rules[0]: create mutatingwebhookconfigurations",
            ),
            (
                r#"[{"apiGroups":["certificates.k8s.io"],"resources":["certificatesigningrequests/approval"],"verbs":["update"]},
                   {"apiGroups":["certificates.k8s.io"],"resources":["signers"],"resourceNames":["kubernetes.io/kube-apiserver-client"],"verbs":["approve"]}]"#,
                "rules[0] and rules[1]: update certificatesigningrequests/approval, approve signers",
            ),
        ];
        for (rules, expected) in cases {
            assert_eq!(granted(&role_event(rules, "alice")).as_deref(), Some(expected), "{rules}");
        }
    }

    #[test]
    fn each_privilege_comes_with_its_risk() {
        let rules = r#"[{"apiGroups":[""],"resources":["nodes/proxy"],"verbs":["get"]},
                        {"apiGroups":["apps"],"resources":["deployments"],"verbs":["create"]}]"#;
        let findings = high_privileges_role(&role_event(rules, "mallory"), &Config::default());
        let pairs: Vec<(&str, &str)> = findings[0]
            .evidence
            .iter()
            .filter(|(name, _)| name == "privilege" || name == "risk")
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("privilege", "rules[0]: get nodes/proxy"),
                ("risk", "the kubelet's API: runs commands in every pod of the nodes, unaudited and past admission"),
                ("privilege", "rules[1]: create deployments"),
                ("risk", WORKLOAD_RISK),
            ]
        );
        assert!(WORKLOAD_RISK.contains("any service account of the namespace"));
    }

    #[test]
    fn wildcards_count_for_what_they_grant() {
        // The false alert: every API group, but only reading pods and deployments.
        let reader = r#"[{"apiGroups":["*"],"resources":["pods","deployments"],"verbs":["get","list","watch"]}]"#;
        assert_eq!(granted(&role_event(reader, "alice")), None);
        // Every verb, but on ConfigMaps; every resource, but of a metrics API.
        let harmless = r#"[{"apiGroups":[""],"resources":["configmaps"],"verbs":["*"]},
                           {"apiGroups":["custom.metrics.k8s.io"],"resources":["*"],"verbs":["*"]}]"#;
        assert_eq!(granted(&role_event(harmless, "alice")), None);
        // A wildcard group reaches the core group's Secrets, a wildcard resource the kubelet.
        let secrets = r#"[{"apiGroups":["*"],"resources":["secrets"],"verbs":["watch"]}]"#;
        assert_eq!(granted(&role_event(secrets, "alice")).as_deref(), Some("rules[0]: watch secrets"));
        let everything_read = r#"[{"apiGroups":[""],"resources":["*"],"verbs":["get"]}]"#;
        assert_eq!(
            granted(&role_event(everything_read, "alice")).as_deref(),
            Some("rules[0]: get secrets; rules[0]: get pods/exec, pods/attach; rules[0]: get nodes/proxy")
        );
        // `*/exec` is every resource's exec subresource; `pods/*` is no wildcard at all.
        let any_exec = r#"[{"apiGroups":[""],"resources":["*/exec"],"verbs":["create"]}]"#;
        assert_eq!(granted(&role_event(any_exec, "alice")).as_deref(), Some("rules[0]: create pods/exec"));
        let literal = r#"[{"apiGroups":[""],"resources":["pods/*"],"verbs":["create"]}]"#;
        assert_eq!(granted(&role_event(literal, "alice")), None);
    }

    #[test]
    fn resource_names_confine_reads_exec_and_tokens_but_not_workloads_or_nodes() {
        let confined = r#"[{"apiGroups":[""],"resources":["secrets"],"resourceNames":["tls"],"verbs":["get"]},
                           {"apiGroups":[""],"resources":["pods/exec"],"resourceNames":["debug"],"verbs":["create"]},
                           {"apiGroups":[""],"resources":["serviceaccounts/token"],"resourceNames":["me"],"verbs":["create"]},
                           {"apiGroups":[""],"resources":["pods"],"resourceNames":["web"],"verbs":["create","get"]}]"#;
        assert_eq!(granted(&role_event(confined, "alice")), None, "a rule with names never grants creating pods");
        let named = r#"[{"apiGroups":["apps"],"resources":["deployments"],"resourceNames":["web"],"verbs":["patch"]},
                        {"apiGroups":[""],"resources":["nodes/proxy"],"resourceNames":["node-1"],"verbs":["get"]}]"#;
        assert_eq!(
            granted(&role_event(named, "alice")).as_deref(),
            Some("rules[0]: patch deployments; rules[1]: get nodes/proxy")
        );
    }

    #[test]
    fn a_role_is_judged_on_what_it_can_grant_in_its_namespace() {
        let cluster_only = r#"[{"apiGroups":[""],"resources":["nodes/proxy","persistentvolumes"],"verbs":["get","create"]},
                               {"apiGroups":[""],"resources":["users","groups"],"verbs":["impersonate"]},
                               {"apiGroups":["admissionregistration.k8s.io"],"resources":["validatingwebhookconfigurations"],"verbs":["create"]},
                               {"apiGroups":["certificates.k8s.io"],"resources":["certificatesigningrequests/approval","signers"],"verbs":["update","approve"]}]"#;
        assert_eq!(granted(&namespaced_role_event(cluster_only)), None);
        assert!(granted(&role_event(cluster_only, "alice")).is_some(), "the same rules in a ClusterRole");
        let namespaced = r#"[{"apiGroups":["batch"],"resources":["jobs"],"verbs":["create"]},
                             {"apiGroups":[""],"resources":["serviceaccounts"],"verbs":["impersonate"]},
                             {"apiGroups":[""],"resources":["namespaces"],"verbs":["update"]}]"#;
        assert_eq!(
            granted(&namespaced_role_event(namespaced)).as_deref(),
            Some("rules[0]: create jobs; rules[1]: impersonate serviceaccounts; rules[2]: update namespaces")
        );
        let everything = r#"[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]"#;
        let findings = high_privileges_role(&namespaced_role_event(everything), &Config::default());
        assert_eq!(evidence(&findings[0], "risk"), Some("all of the namespace, and every resource type added later"));
    }

    #[test]
    fn certificate_approval_needs_a_client_signer() {
        let approval = r#"{"apiGroups":["certificates.k8s.io"],"resources":["certificatesigningrequests/approval"],"verbs":["update"]}"#;
        let signer = |name: &str| {
            format!(
                r#"{{"apiGroups":["certificates.k8s.io"],"resources":["signers"],"resourceNames":["{name}"],"verbs":["approve"]}}"#
            )
        };
        let custom = format!("[{approval},{}]", signer("example.com/internal-ca"));
        assert_eq!(granted(&role_event(&custom, "alice")), None);
        let alone = format!("[{approval}]");
        assert_eq!(granted(&role_event(&alone, "alice")), None);
        let every_kubernetes_signer = format!("[{},{approval}]", signer("kubernetes.io/*"));
        assert_eq!(
            granted(&role_event(&every_kubernetes_signer, "alice")).as_deref(),
            Some("rules[1] and rules[0]: update certificatesigningrequests/approval, approve signers")
        );
    }

    #[test]
    fn ordinary_roles_and_control_plane_writes_are_not_high_privilege() {
        let reader = r#"[{"apiGroups":["","apps"],"resources":["pods","deployments","configmaps"],"verbs":["get","list","watch"]},
                         {"apiGroups":[""],"resources":["secrets"],"resourceNames":["tls-cert"],"verbs":["get"]},
                         {"apiGroups":[""],"resources":["pods/log"],"verbs":["get"]},
                         {"nonResourceURLs":["*"],"verbs":["get"]}]"#;
        assert!(high_privileges_role(&role_event(reader, "alice"), &Config::default()).is_empty());
        // An operator that labels, deletes and lists pods and writes NetworkPolicies, as
        // Riposte's own ClusterRole does.
        let responder = r#"[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list","watch","patch","delete"]},
                            {"apiGroups":["networking.k8s.io"],"resources":["networkpolicies"],"verbs":["*"]},
                            {"apiGroups":["apps"],"resources":["daemonsets","deployments"],"verbs":["list"]}]"#;
        assert!(high_privileges_role(&role_event(responder, "alice"), &Config::default()).is_empty());
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
