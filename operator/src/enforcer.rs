//! Whether the cluster likely enforces NetworkPolicies. Isolation is a NetworkPolicy, which
//! does nothing without an enforcer; we can only recognise well-known ones, so the answer
//! is "found" or "unknown", never "absent".

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::ResourceExt;

/// DaemonSet names of CNI plugins and agents that enforce NetworkPolicies.
const KNOWN_ENFORCERS: &[&str] = &[
    "calico-node",
    "cilium",
    "anetd",
    "weave-net",
    "kube-router",
    "antrea-agent",
    "canal",
    "azure-npm",
    "kube-network-policies",
    "ovnkube-node",
    "romana-agent",
];

/// The container that enforces NetworkPolicies inside Amazon VPC CNI's aws-node DaemonSet.
const AWS_POLICY_AGENT: &str = "aws-network-policy-agent";

/// What the cluster's DaemonSets say of NetworkPolicy enforcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// A known enforcer with at least one ready pod, as `namespace/name`.
    Running(String),
    /// A known enforcer is installed but none of its pods is ready (stopped, crashing,
    /// being rolled out): policies are not enforced right now.
    NotRunning(String),
    /// No known enforcer: there may be one Riposte does not recognise.
    Unknown,
}

/// The enforcement that these DaemonSets show: a running known enforcer first, else an
/// installed one that does not run.
pub fn known_enforcer(daemonsets: &[DaemonSet]) -> Enforcement {
    let known: Vec<&DaemonSet> = daemonsets.iter().filter(|ds| is_known_enforcer(ds)).collect();
    let name = |ds: &DaemonSet| format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any());
    let ready = |ds: &DaemonSet| ds.status.as_ref().is_some_and(|s| s.number_ready > 0);
    match (known.iter().find(|ds| ready(ds)), known.first()) {
        (Some(running), _) => Enforcement::Running(name(running)),
        (None, Some(installed)) => Enforcement::NotRunning(name(installed)),
        (None, None) => Enforcement::Unknown,
    }
}

fn is_known_enforcer(ds: &DaemonSet) -> bool {
    KNOWN_ENFORCERS.contains(&ds.name_any().as_str())
        || ds
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|p| p.containers.iter().any(|c| c.name == AWS_POLICY_AGENT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetStatus};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ds(ns: &str, name: &str, containers: &[&str]) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        containers: containers
                            .iter()
                            .map(|c| Container { name: c.to_string(), ..Default::default() })
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ready(mut daemonset: DaemonSet, pods: i32) -> DaemonSet {
        daemonset.status = Some(DaemonSetStatus { number_ready: pods, ..Default::default() });
        daemonset
    }

    #[test]
    fn recognises_well_known_enforcers() {
        assert_eq!(known_enforcer(&[ready(ds("kube-system", "kube-proxy", &["kube-proxy"]), 1)]), Enforcement::Unknown);
        assert_eq!(
            known_enforcer(&[
                ready(ds("kube-system", "kube-proxy", &["p"]), 1),
                ready(ds("calico-system", "calico-node", &["c"]), 3)
            ]),
            Enforcement::Running("calico-system/calico-node".into())
        );
        assert_eq!(known_enforcer(&[ready(ds("kube-system", "aws-node", &["aws-node"]), 1)]), Enforcement::Unknown);
        assert_eq!(
            known_enforcer(&[ready(ds("kube-system", "aws-node", &["aws-node", AWS_POLICY_AGENT]), 1)]),
            Enforcement::Running("kube-system/aws-node".into())
        );
    }

    #[test]
    fn an_enforcer_with_no_ready_pod_does_not_enforce() {
        let stopped = ds("kube-system", "kube-router", &["kube-router"]);
        assert_eq!(
            known_enforcer(std::slice::from_ref(&stopped)),
            Enforcement::NotRunning("kube-system/kube-router".into())
        );
        assert_eq!(known_enforcer(&[ready(stopped, 0)]), Enforcement::NotRunning("kube-system/kube-router".into()));
        assert_eq!(
            known_enforcer(&[
                ds("kube-system", "kube-router", &["kube-router"]),
                ready(ds("calico-system", "calico-node", &["c"]), 1)
            ]),
            Enforcement::Running("calico-system/calico-node".into()),
            "a running enforcer wins over a stopped one"
        );
    }
}
