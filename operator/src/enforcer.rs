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

/// The first known enforcer among these DaemonSets, as `namespace/name`.
pub fn known_enforcer(daemonsets: &[DaemonSet]) -> Option<String> {
    daemonsets
        .iter()
        .find(|ds| {
            let name = ds.name_any();
            KNOWN_ENFORCERS.contains(&name.as_str())
                || ds
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .is_some_and(|p| p.containers.iter().any(|c| c.name == AWS_POLICY_AGENT))
        })
        .map(|ds| format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
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

    #[test]
    fn recognises_well_known_enforcers() {
        assert_eq!(known_enforcer(&[ds("kube-system", "kube-proxy", &["kube-proxy"])]), None);
        assert_eq!(
            known_enforcer(&[ds("kube-system", "kube-proxy", &["p"]), ds("calico-system", "calico-node", &["c"])]),
            Some("calico-system/calico-node".into())
        );
        assert_eq!(known_enforcer(&[ds("kube-system", "aws-node", &["aws-node"])]), None);
        assert_eq!(
            known_enforcer(&[ds("kube-system", "aws-node", &["aws-node", AWS_POLICY_AGENT])]),
            Some("kube-system/aws-node".into())
        );
    }
}
