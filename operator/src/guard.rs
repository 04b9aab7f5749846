//! Guardrails: where Riposte refuses to act, whatever it is asked.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct Guardrails {
    /// Namespaces in which no pod is ever isolated or terminated.
    pub protected_namespaces: BTreeSet<String>,
    /// The operator's own pod, when it runs in the cluster (from the downward API).
    pub own_pod: Option<(String, String)>,
}

/// Why an action was refused; shown as the action's message.
pub fn refusal(guardrails: &Guardrails, pod: &Pod) -> Option<String> {
    let namespace = pod.namespace().unwrap_or_default();
    if guardrails.protected_namespaces.contains(&namespace) {
        return Some(format!(
            "refused: namespace {namespace} is protected (protected namespaces: {})",
            guardrails.protected_namespaces.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if guardrails.own_pod.as_ref() == Some(&(namespace, pod.name_any())) {
        return Some("refused: the target is the Riposte operator's own pod".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ns: &str, name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn protected_namespaces_and_own_pod_are_refused() {
        let g = Guardrails {
            protected_namespaces: ["kube-system".to_string(), "riposte-system".to_string()].into(),
            own_pod: Some(("ops".into(), "riposte-abc".into())),
        };
        assert!(refusal(&g, &pod("kube-system", "coredns")).unwrap().contains("namespace kube-system is protected"));
        assert!(refusal(&g, &pod("ops", "riposte-abc")).unwrap().contains("own pod"));
        assert_eq!(refusal(&g, &pod("ops", "other")), None);
        assert_eq!(refusal(&g, &pod("shop", "web-1")), None);
    }
}
