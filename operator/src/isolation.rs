//! Isolation as NetworkPolicies: the policy that cuts a pod off, and the handling of the
//! existing policies that would still let traffic through.
//!
//! NetworkPolicies are additive: a pod selected by several policies may send and receive
//! whatever any of them allows. A deny-all policy for the isolated pod is therefore not
//! enough. Every existing policy of the namespace that selects the pod and allows traffic
//! gets one extra `matchExpression` (`riposte.dev/isolated DoesNotExist`), so it stops
//! selecting pods under isolation and keeps selecting their siblings; release removes that
//! expression again, leaving the policy exactly as it was.
//!
//! Everything here is pure: it builds objects and patches, the controller sends them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use riposte_crds::{AllowList, IsolationOptions, Protocol, ResponseAction};
use serde_json::{Value, json};

/// The label put on an isolated pod; its value is the name of the isolating ResponseAction.
pub const ISOLATED_LABEL: &str = "riposte.dev/isolated";
/// On an existing policy: the isolations (ResponseAction names) that keep it from selecting
/// isolated pods. The exclusion is removed when the last of them is released.
pub const EXCLUDED_FOR_ANNOTATION: &str = "riposte.dev/excluded-for";
/// Marks the objects Riposte creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "riposte";
/// On a created policy: the ResponseAction it belongs to.
pub const ACTION_LABEL: &str = "riposte.dev/action";

const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The name of the NetworkPolicy that isolates the target of `action_name`.
pub fn policy_name(action_name: &str) -> String {
    format!("riposte-isolate-{action_name}")
}

/// The NetworkPolicy that cuts the pod labelled by this action off, except for what the
/// isolation options allow. Owned by the action, so it never outlives it.
pub fn isolation_policy(action: &ResponseAction) -> NetworkPolicy {
    let name = action.name_any();
    let options = action.spec.isolation.clone().unwrap_or_default();
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(policy_name(&name)),
            namespace: action.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (ACTION_LABEL.to_owned(), name.clone()),
            ])),
            owner_references: action.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(ISOLATED_LABEL.to_owned(), name)])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(
                allowed_peers(&options.ingress)
                    .map(|(peers, ports)| NetworkPolicyIngressRule { from: Some(peers), ports })
                    .into_iter()
                    .collect(),
            ),
            egress: Some(egress_rules(&options)),
        }),
    }
}

/// Whether the isolation policy in the cluster is already the one `desired` describes: same
/// rules and selector, and still carrying Riposte's labels and the action as its owner. An
/// unchanged isolation is then not written again: every new generation of a policy makes the
/// enforcer on every node recompute its rules.
pub fn policy_is_current(existing: &NetworkPolicy, desired: &NetworkPolicy) -> bool {
    let labels_kept = desired.labels().iter().all(|(k, v)| existing.labels().get(k) == Some(v));
    let owned = desired.owner_references().iter().all(|o| existing.owner_references().contains(o));
    let spec = |p: &NetworkPolicy| p.spec.as_ref().map(|s| without_empty(serde_json::to_value(s).unwrap_or_default()));
    labels_kept && owned && spec(existing) == spec(desired)
}

/// A JSON value without nulls, empty lists and empty objects: the apiserver stores an empty
/// list of rules as no list at all, and both mean the same.
fn without_empty(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, without_empty(v))).filter(|(_, v)| !is_empty(v)).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_empty).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn egress_rules(options: &IsolationOptions) -> Vec<NetworkPolicyEgressRule> {
    let mut rules: Vec<NetworkPolicyEgressRule> = allowed_peers(&options.egress)
        .map(|(peers, ports)| NetworkPolicyEgressRule { to: Some(peers), ports })
        .into_iter()
        .collect();
    if options.allow_dns {
        rules.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespaces_selector(&["kube-system".to_owned()])),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())])),
                    match_expressions: None,
                }),
                ip_block: None,
            }]),
            ports: Some(vec![port(53, Protocol::Udp), port(53, Protocol::Tcp)]),
        });
    }
    rules
}

/// The peers and ports of one allow-list, or nothing when it allows no peer.
fn allowed_peers(list: &AllowList) -> Option<(Vec<NetworkPolicyPeer>, Option<Vec<NetworkPolicyPort>>)> {
    let mut peers = Vec::new();
    if !list.namespaces.is_empty() {
        peers.push(NetworkPolicyPeer {
            namespace_selector: Some(namespaces_selector(&list.namespaces)),
            ..NetworkPolicyPeer::default()
        });
    }
    peers.extend(list.cidrs.iter().map(|cidr| NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.clone(), except: None }),
        ..NetworkPolicyPeer::default()
    }));
    if peers.is_empty() {
        return None;
    }
    let ports = (!list.ports.is_empty()).then(|| list.ports.iter().map(|p| port(p.port, p.protocol)).collect());
    Some((peers, ports))
}

fn namespaces_selector(namespaces: &[String]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.to_owned(),
            operator: "In".to_owned(),
            values: Some(namespaces.to_vec()),
        }]),
    }
}

fn port(number: i32, protocol: Protocol) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.as_str().to_owned()),
        end_port: None,
    }
}

/// Whether a label selector selects an object with these labels, with Kubernetes' semantics
/// (an empty selector selects everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        match (req.operator.as_str(), labels.get(&req.key)) {
            ("In", Some(v)) => values.contains(v),
            ("In", None) => false,
            ("NotIn", Some(v)) => !values.contains(v),
            ("NotIn", None) => true,
            ("Exists", found) => found.is_some(),
            ("DoesNotExist", found) => found.is_none(),
            // An unknown operator selects nothing, as the apiserver would reject it anyway.
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The directions in which a policy lets traffic reach or leave the pods it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Openings {
    pub ingress: bool,
    pub egress: bool,
}

impl Openings {
    pub fn any(self) -> bool {
        self.ingress || self.egress
    }
    pub fn describe(self) -> &'static str {
        match (self.ingress, self.egress) {
            (true, true) => "ingress and egress",
            (true, false) => "ingress",
            (false, true) => "egress",
            (false, false) => "nothing",
        }
    }
}

/// What a policy allows for the pods it selects. A policy whose types include a direction
/// but that has no rule for it only denies, and so cannot defeat an isolation.
pub fn openings(policy: &NetworkPolicy) -> Openings {
    let Some(spec) = &policy.spec else {
        return Openings::default();
    };
    let has_type = |t: &str| match &spec.policy_types {
        Some(types) => types.iter().any(|x| x == t),
        // The apiserver's default: Ingress always, Egress when egress rules are present.
        None => t == "Ingress" || spec.egress.is_some(),
    };
    Openings {
        ingress: has_type("Ingress") && spec.ingress.as_ref().is_some_and(|r| !r.is_empty()),
        egress: has_type("Egress") && spec.egress.as_ref().is_some_and(|r| !r.is_empty()),
    }
}

/// An existing policy that selects the pod and lets traffic through: isolation holds only
/// once it no longer selects the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defeating {
    pub name: String,
    pub openings: Openings,
}

/// The policies (of the pod's namespace) that would defeat an isolation of `pod`. Riposte's
/// own policies are left out: they only ever allow what an isolation's allow-lists permit.
/// A policy already excluded for another isolation still counts: the exclusion is removed
/// when that other isolation is released, and this one must be on record as needing it.
/// A policy whose author wrote the exclusion themselves (no isolation is recorded on it)
/// never selects isolated pods, and is left alone.
pub fn defeating_policies(policies: &[NetworkPolicy], pod: &Pod) -> Vec<Defeating> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    policies
        .iter()
        .filter(|p| !is_managed_by_riposte(p))
        .filter_map(|p| {
            let mut selector = p.spec.as_ref()?.pod_selector.clone().unwrap_or_default();
            if !excluded_for(p).is_empty()
                && let Some(expressions) = selector.match_expressions.as_mut()
            {
                expressions.retain(|e| *e != exclusion_requirement());
            }
            let openings = openings(p);
            (openings.any() && selector_matches(&selector, &labels)).then(|| Defeating { name: p.name_any(), openings })
        })
        .collect()
}

/// Whether a policy could let traffic reach or leave some isolated pod: it allows something,
/// is not Riposte's, and does not exclude isolated pods.
pub fn may_reopen_isolated_pods(policy: &NetworkPolicy) -> bool {
    openings(policy).any() && !is_managed_by_riposte(policy) && !expressions(policy).contains(&exclusion_requirement())
}

pub fn is_managed_by_riposte(policy: &NetworkPolicy) -> bool {
    policy.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

fn exclusion_requirement() -> LabelSelectorRequirement {
    LabelSelectorRequirement { key: ISOLATED_LABEL.to_owned(), operator: "DoesNotExist".to_owned(), values: None }
}

/// The isolations recorded on a policy as needing its exclusion.
pub fn excluded_for(policy: &NetworkPolicy) -> BTreeSet<String> {
    policy
        .annotations()
        .get(EXCLUDED_FOR_ANNOTATION)
        .map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn expressions(policy: &NetworkPolicy) -> Vec<LabelSelectorRequirement> {
    policy
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.as_ref())
        .and_then(|s| s.match_expressions.clone())
        .unwrap_or_default()
}

/// The JSON merge patch that makes `policy` stop selecting isolated pods and records
/// `action_name` as needing that; `None` when it already does. The patch carries the
/// policy's resourceVersion, so it fails rather than overwrite a concurrent change.
pub fn exclusion_patch(policy: &NetworkPolicy, action_name: &str) -> Option<Value> {
    let mut holders = excluded_for(policy);
    let mut exprs = expressions(policy);
    let has_requirement = exprs.contains(&exclusion_requirement());
    // With nobody recorded, the exclusion is the author's own: release must never remove it.
    if has_requirement && (holders.is_empty() || holders.contains(action_name)) {
        return None;
    }
    holders.insert(action_name.to_owned());
    if !has_requirement {
        exprs.push(exclusion_requirement());
    }
    Some(json!({
        "metadata": {
            "resourceVersion": policy.resource_version(),
            "annotations": { EXCLUDED_FOR_ANNOTATION: holders.into_iter().collect::<Vec<_>>().join(",") },
        },
        "spec": { "podSelector": { "matchExpressions": exprs } },
    }))
}

/// The JSON merge patch that withdraws `action_name`'s need for the exclusion, and removes
/// the exclusion itself (restoring the policy's own selector) once nobody needs it; `None`
/// when `action_name` is not recorded on the policy.
pub fn restore_patch(policy: &NetworkPolicy, action_name: &str) -> Option<Value> {
    let mut holders = excluded_for(policy);
    if !holders.remove(action_name) {
        return None;
    }
    let metadata = if holders.is_empty() {
        json!({ "resourceVersion": policy.resource_version(), "annotations": { EXCLUDED_FOR_ANNOTATION: null } })
    } else {
        let joined = holders.iter().cloned().collect::<Vec<_>>().join(",");
        json!({ "resourceVersion": policy.resource_version(), "annotations": { EXCLUDED_FOR_ANNOTATION: joined } })
    };
    if !holders.is_empty() {
        return Some(json!({ "metadata": metadata }));
    }
    let remaining: Vec<_> = expressions(policy).into_iter().filter(|e| *e != exclusion_requirement()).collect();
    let expressions = if remaining.is_empty() { Value::Null } else { json!(remaining) };
    Some(json!({
        "metadata": metadata,
        "spec": { "podSelector": { "matchExpressions": expressions } },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_crds::{ActionKind, AllowedPort, ResponseActionSpec, Target};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn pod(pod_labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("web-1".into()), labels: Some(labels(pod_labels)), ..Default::default() },
            ..Default::default()
        }
    }

    fn policy(name: &str, selector: LabelSelector, spec: NetworkPolicySpec) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta { name: Some(name.into()), resource_version: Some("7".into()), ..Default::default() },
            spec: Some(NetworkPolicySpec { pod_selector: Some(selector), ..spec }),
        }
    }

    fn allow_all_ingress() -> NetworkPolicySpec {
        NetworkPolicySpec { ingress: Some(vec![NetworkPolicyIngressRule::default()]), ..Default::default() }
    }

    fn action(isolation: Option<IsolationOptions>) -> ResponseAction {
        let mut a = ResponseAction::new(
            "iso-1",
            ResponseActionSpec {
                action: ActionKind::Isolate,
                target: Target { pod: "web-1".into() },
                requested_by: "carol".into(),
                policy_ref: None,
                approval_required: false,
                approval: None,
                comment: None,
                alert_ref: None,
                dry_run: false,
                isolation,
                terminate: None,
                release: None,
                comments: vec![],
            },
        );
        a.metadata.namespace = Some("shop".into());
        a.metadata.uid = Some("uid-1".into());
        a
    }

    #[test]
    fn default_isolation_denies_everything_both_ways() {
        let np = isolation_policy(&action(None));
        let spec = np.spec.unwrap();
        assert_eq!(np.metadata.name.as_deref(), Some("riposte-isolate-iso-1"));
        assert_eq!(spec.policy_types, Some(vec!["Ingress".into(), "Egress".into()]));
        assert_eq!(spec.ingress, Some(vec![]));
        assert_eq!(spec.egress, Some(vec![]));
        assert_eq!(
            spec.pod_selector.unwrap().match_labels,
            Some(labels(&[(ISOLATED_LABEL, "iso-1")])),
            "selects only the pod labelled for this action, not its siblings"
        );
        let owner = &np.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("ResponseAction", "uid-1"));
    }

    #[test]
    fn allow_lists_become_rules_per_direction() {
        let np = isolation_policy(&action(Some(IsolationOptions {
            allow_dns: true,
            ingress: AllowList {
                namespaces: vec!["forensics".into()],
                cidrs: vec!["10.1.0.0/16".into()],
                ports: vec![AllowedPort { port: 22, protocol: Protocol::Tcp }],
            },
            egress: AllowList::default(),
        })));
        let spec = np.spec.unwrap();
        let ingress = spec.ingress.unwrap();
        assert_eq!(ingress.len(), 1);
        let from = ingress[0].from.as_ref().unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(
            from[0].namespace_selector.as_ref().unwrap().match_expressions.as_ref().unwrap()[0].values,
            Some(vec!["forensics".to_string()])
        );
        assert_eq!(from[1].ip_block.as_ref().unwrap().cidr, "10.1.0.0/16");
        assert_eq!(ingress[0].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(22)));
        let egress = spec.egress.unwrap();
        assert_eq!(egress.len(), 1, "only DNS is allowed out");
        let dns_ports: Vec<_> = egress[0].ports.as_ref().unwrap().iter().map(|p| p.protocol.clone().unwrap()).collect();
        assert_eq!(dns_ports, vec!["UDP", "TCP"]);
    }

    #[test]
    fn selector_semantics_follow_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        };
        let sel =
            |exprs: Vec<LabelSelectorRequirement>| LabelSelector { match_labels: None, match_expressions: Some(exprs) };
        assert!(selector_matches(&LabelSelector::default(), &l), "empty selector selects all");
        assert!(selector_matches(
            &LabelSelector { match_labels: Some(labels(&[("app", "web")])), match_expressions: None },
            &l
        ));
        assert!(!selector_matches(
            &LabelSelector { match_labels: Some(labels(&[("app", "db")])), match_expressions: None },
            &l
        ));
        assert!(selector_matches(&sel(vec![req("app", "In", &["web", "api"])]), &l));
        assert!(!selector_matches(&sel(vec![req("env", "In", &["prod"])]), &l));
        assert!(selector_matches(&sel(vec![req("env", "NotIn", &["prod"])]), &l), "NotIn matches a missing key");
        assert!(!selector_matches(&sel(vec![req("app", "NotIn", &["web"])]), &l));
        assert!(selector_matches(&sel(vec![req("tier", "Exists", &[])]), &l));
        assert!(!selector_matches(&sel(vec![req("tier", "DoesNotExist", &[])]), &l));
        assert!(!selector_matches(&sel(vec![req("app", "Gt", &["1"])]), &l));
    }

    #[test]
    fn only_selecting_policies_that_allow_traffic_defeat_isolation() {
        let web = LabelSelector { match_labels: Some(labels(&[("app", "web")])), match_expressions: None };
        let db = LabelSelector { match_labels: Some(labels(&[("app", "db")])), match_expressions: None };
        let deny_all =
            NetworkPolicySpec { policy_types: Some(vec!["Ingress".into(), "Egress".into()]), ..Default::default() };
        let egress_only = NetworkPolicySpec {
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![NetworkPolicyEgressRule::default()]),
            ingress: Some(vec![NetworkPolicyIngressRule::default()]),
            ..Default::default()
        };
        let mut ours = policy("riposte-isolate-x", LabelSelector::default(), allow_all_ingress());
        ours.metadata.labels = Some(labels(&[(MANAGED_BY_LABEL, MANAGED_BY_VALUE)]));
        let policies = vec![
            policy("allow-web", web.clone(), allow_all_ingress()),
            policy("allow-db", db, allow_all_ingress()),
            policy("deny-all", LabelSelector::default(), deny_all),
            policy("egress-web", web, egress_only),
            policy("namespace-wide", LabelSelector::default(), allow_all_ingress()),
            ours,
        ];
        let found = defeating_policies(&policies, &pod(&[("app", "web")]));
        assert_eq!(
            found,
            vec![
                Defeating { name: "allow-web".into(), openings: Openings { ingress: true, egress: false } },
                Defeating { name: "egress-web".into(), openings: Openings { ingress: false, egress: true } },
                Defeating { name: "namespace-wide".into(), openings: Openings { ingress: true, egress: false } },
            ]
        );
    }

    #[test]
    fn a_policy_excluded_for_another_isolation_still_counts() {
        let web = LabelSelector { match_labels: Some(labels(&[("app", "web")])), match_expressions: None };
        let original = policy("allow-web", web, allow_all_ingress());
        let excluded = apply_merge_patch(&original, &exclusion_patch(&original, "iso-1").unwrap());
        let second = pod(&[("app", "web"), (ISOLATED_LABEL, "iso-2")]);
        let found = defeating_policies(std::slice::from_ref(&excluded), &second);
        assert_eq!(found.len(), 1, "iso-2 must be recorded, or releasing iso-1 would reopen its pod");
        let shared = apply_merge_patch(&excluded, &exclusion_patch(&excluded, "iso-2").unwrap());
        assert_eq!(excluded_for(&shared).len(), 2);
    }

    #[test]
    fn only_policies_that_could_select_an_isolated_pod_may_reopen_one() {
        let allowing = policy("allow", LabelSelector::default(), allow_all_ingress());
        assert!(may_reopen_isolated_pods(&allowing));
        let excluded = apply_merge_patch(&allowing, &exclusion_patch(&allowing, "iso-1").unwrap());
        assert!(!may_reopen_isolated_pods(&excluded));
        let restored = apply_merge_patch(&excluded, &restore_patch(&excluded, "iso-1").unwrap());
        assert!(may_reopen_isolated_pods(&restored), "the last release makes it a candidate again");
        let deny = policy("deny", LabelSelector::default(), NetworkPolicySpec::default());
        assert!(!may_reopen_isolated_pods(&deny));
        assert!(!may_reopen_isolated_pods(&isolation_policy(&action(None))));
    }

    #[test]
    fn implicit_policy_types_include_egress_only_when_egress_rules_exist() {
        let implicit = policy(
            "p",
            LabelSelector::default(),
            NetworkPolicySpec { egress: Some(vec![NetworkPolicyEgressRule::default()]), ..Default::default() },
        );
        assert_eq!(openings(&implicit), Openings { ingress: false, egress: true });
        assert_eq!(openings(&policy("q", LabelSelector::default(), allow_all_ingress())).describe(), "ingress");
    }

    #[test]
    fn exclusion_then_restore_gives_back_the_original_policy() {
        let original_selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Exists".into(),
                values: None,
            }]),
        };
        let original = policy("allow-web", original_selector.clone(), allow_all_ingress());
        let patch = exclusion_patch(&original, "iso-1").unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7", "optimistic lock on the user's policy");
        let excluded = apply_merge_patch(&original, &patch);
        assert!(!selector_matches(
            excluded.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(),
            &labels(&[("app", "web"), ("tier", "a"), (ISOLATED_LABEL, "iso-1")])
        ));
        assert!(
            selector_matches(
                excluded.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(),
                &labels(&[("app", "web"), ("tier", "a")])
            ),
            "siblings stay selected"
        );
        assert_eq!(exclusion_patch(&excluded, "iso-1"), None, "idempotent");

        // A second isolation shares the exclusion; the first release keeps it.
        let shared = apply_merge_patch(&excluded, &exclusion_patch(&excluded, "iso-2").unwrap());
        assert_eq!(excluded_for(&shared), BTreeSet::from(["iso-1".to_string(), "iso-2".to_string()]));
        let after_first = apply_merge_patch(&shared, &restore_patch(&shared, "iso-1").unwrap());
        assert_eq!(expressions(&after_first).len(), 2);
        assert_eq!(restore_patch(&after_first, "iso-1"), None);
        let restored = apply_merge_patch(&after_first, &restore_patch(&after_first, "iso-2").unwrap());
        assert_eq!(restored.spec.unwrap().pod_selector.unwrap(), original_selector);
        assert!(restored.metadata.annotations.unwrap_or_default().is_empty());
    }

    #[test]
    fn restore_removes_match_expressions_that_were_absent() {
        let web = LabelSelector { match_labels: Some(labels(&[("app", "web")])), match_expressions: None };
        let original = policy("allow-web", web.clone(), allow_all_ingress());
        let excluded = apply_merge_patch(&original, &exclusion_patch(&original, "iso-1").unwrap());
        let restored = apply_merge_patch(&excluded, &restore_patch(&excluded, "iso-1").unwrap());
        assert_eq!(restored.spec.unwrap().pod_selector.unwrap(), web);
    }

    #[test]
    fn an_exclusion_the_author_wrote_is_neither_taken_over_nor_removed() {
        let authored = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![exclusion_requirement()]),
        };
        let original = policy("allow-web-not-isolated", authored, allow_all_ingress());
        let isolated = pod(&[("app", "web"), (ISOLATED_LABEL, "iso-1")]);
        assert!(defeating_policies(std::slice::from_ref(&original), &isolated).is_empty(), "it never selects the pod");
        assert_eq!(exclusion_patch(&original, "iso-1"), None);
        assert_eq!(restore_patch(&original, "iso-1"), None, "release leaves it exactly as written");
        assert!(!may_reopen_isolated_pods(&original));
    }

    #[test]
    fn an_isolation_policy_as_stored_is_current_and_any_change_is_drift() {
        let desired = isolation_policy(&action(None));
        // The apiserver drops empty rule lists and adds what it manages.
        let mut stored = desired.clone();
        let spec = stored.spec.as_mut().unwrap();
        spec.ingress = None;
        spec.egress = None;
        stored.metadata.resource_version = Some("42".into());
        stored.metadata.generation = Some(1);
        stored.labels_mut().insert("team".into(), "sec".into());
        assert!(policy_is_current(&stored, &desired));

        let mut opened = stored.clone();
        opened.spec.as_mut().unwrap().ingress = Some(vec![NetworkPolicyIngressRule::default()]);
        assert!(!policy_is_current(&opened, &desired), "an allow-all rule added by someone else");
        let mut retargeted = stored.clone();
        retargeted.spec.as_mut().unwrap().pod_selector = Some(LabelSelector::default());
        assert!(!policy_is_current(&retargeted, &desired));
        let mut unlabelled = stored.clone();
        unlabelled.labels_mut().remove(MANAGED_BY_LABEL);
        assert!(!policy_is_current(&unlabelled, &desired));
        let mut orphaned = stored;
        orphaned.metadata.owner_references = None;
        assert!(!policy_is_current(&orphaned, &desired));
    }

    /// RFC 7386 merge patch, as the apiserver applies it to these objects.
    fn apply_merge_patch(policy: &NetworkPolicy, patch: &Value) -> NetworkPolicy {
        fn merge(target: &mut Value, patch: &Value) {
            if let Value::Object(p) = patch {
                if !target.is_object() {
                    *target = json!({});
                }
                let t = target.as_object_mut().unwrap();
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            } else {
                *target = patch.clone();
            }
        }
        let mut value = serde_json::to_value(policy).unwrap();
        merge(&mut value, patch);
        if value["metadata"]["annotations"].as_object().is_some_and(|a| a.is_empty()) {
            value["metadata"].as_object_mut().unwrap().remove("annotations");
        }
        serde_json::from_value(value).unwrap()
    }
}
