//! Detections from the control plane: audit events in, `Alert`s out.
//!
//! The rules live in `riposte-detect` (pure, no Kubernetes client). Here:
//! - this module turns a rule's [`Finding`] into the `Alert` object to create (pure);
//! - [`webhook`]: the HTTPS endpoint kube-apiserver's audit webhook backend posts to (and
//!   Falco, Firehose for EKS, Pub/Sub push for GKE);
//! - [`event_hubs`]: AKS audit logs read from Event Hubs as a Kafka consumer group;
//! - [`pipeline`]: the bounded queue between them, the engine, the configuration scan and
//!   the persisted service-account baseline, and the writes of Alerts;
//! - [`offline`]: the same rules over an audit log file (`riposte detect --audit-log`).

pub mod cluster;
pub mod event_hubs;
pub mod node;
pub mod offline;
pub mod pipeline;
pub mod runtime;
pub mod webhook;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use riposte_crds::{Alert, AlertSpec, Entities, Evidence, catalog};
use riposte_detect::Finding;
use riposte_detect::audit::{Event, Stage};

/// `spec.source` of the Alerts raised from audit events and from the configuration scan.
pub const AUDIT_SOURCE: &str = "riposte-audit";
pub const SCAN_SOURCE: &str = "riposte-config-scan";
/// The label that says which detector raised an Alert, for `kubectl get alerts -l`.
pub const SOURCE_LABEL: &str = "riposte.dev/source";

const MAX_TITLE: usize = 512;
const MAX_EVIDENCE_ITEMS: usize = 64;
const MAX_EVIDENCE_VALUE: usize = 4096;

/// The Alert a finding raises. `occurrence` identifies this sighting (the audit ID of the
/// request, or the scan that saw it), so that a retried delivery of the same audit batch
/// names the same Alert and is created once. Cluster-scoped findings (a ClusterRoleBinding,
/// a webhook configuration, a client) are raised in `home_namespace`.
pub fn alert_for(finding: &Finding, occurrence: &str, detected_at: Time, source: &str, home_namespace: &str) -> Alert {
    let entities = entities(finding);
    let namespace = entities.namespace.clone().unwrap_or_else(|| home_namespace.to_owned());
    let (severity, tactics) = catalog::lookup(finding.alert_type)
        .map(|entry| (entry.severity, entry.tactics.clone()))
        .unwrap_or((riposte_crds::Severity::Medium, Vec::new()));
    let mut spec =
        AlertSpec::detected(finding.alert_type, truncate(&finding.summary, MAX_TITLE), severity, detected_at);
    spec.tactics = tactics;
    spec.source = Some(source.to_owned());
    spec.evidence = finding
        .evidence
        .iter()
        .take(MAX_EVIDENCE_ITEMS)
        .map(|(name, value)| Evidence { name: name.clone(), value: truncate(value, MAX_EVIDENCE_VALUE) })
        .collect();
    spec.entities = entities;
    Alert {
        metadata: ObjectMeta {
            name: Some(alert_name(finding, occurrence)),
            namespace: Some(namespace),
            labels: Some([(SOURCE_LABEL.to_owned(), source.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The Alert's entities; the detector's are a superset of the CRD's fields.
pub fn entities(finding: &Finding) -> Entities {
    let e = &finding.entities;
    Entities {
        namespace: e.namespace.clone(),
        pod: e.pod.clone(),
        container: e.container.clone(),
        image: e.image.clone(),
        node: e.node.clone(),
        service_account: e.service_account.clone(),
        workload_kind: e.workload_kind.clone(),
        workload_name: e.workload_name.clone(),
        user: e.user.clone(),
    }
}

/// What identifies an exposure, whoever wrote the Service and whichever scan saw it: the
/// alert type and where it is (namespace, workload kind and name, pod, container).
pub type ExposureKey = (String, [Option<String>; 5]);

pub fn exposure_key(alert: &Alert) -> ExposureKey {
    let e = &alert.spec.entities;
    (
        alert.spec.alert_type.0.clone(),
        [e.namespace.clone(), e.workload_kind.clone(), e.workload_name.clone(), e.pod.clone(), e.container.clone()],
    )
}

/// The namespace of a Service that `event` wrote, whose exposure the rules check against
/// the workloads of that namespace.
pub fn service_write_namespace(event: &Event) -> Option<&str> {
    let object = event.object_ref.as_ref()?;
    (event.stage == Stage::ResponseComplete
        && object.api_group.is_empty()
        && object.resource == "services"
        && object.subresource.is_empty()
        && matches!(&*event.verb, "create" | "update" | "patch"))
    .then_some(object.namespace.as_str())
}

/// When the request was made, as the apiserver recorded it (now, if it did not say).
pub fn detected_at(event: &Event) -> Time {
    Time(
        event
            .timestamp()
            .and_then(|t| k8s_openapi::jiff::Timestamp::from_microsecond(t.unix_micros()).ok())
            .unwrap_or_else(k8s_openapi::jiff::Timestamp::now),
    )
}

/// `k8s-privilegedcontainer-<12 hex digits>`: readable, and the same for the same
/// sighting of the same thing on every replica and every retry.
pub fn alert_name(finding: &Finding, occurrence: &str) -> String {
    let mut hash = Fnv::default();
    hash.write(finding.alert_type);
    hash.write(occurrence);
    let e = &finding.entities;
    for field in [
        &e.namespace,
        &e.pod,
        &e.container,
        &e.image,
        &e.node,
        &e.service_account,
        &e.workload_kind,
        &e.workload_name,
        &e.user,
    ] {
        hash.write(field.as_deref().unwrap_or("\u{0}"));
    }
    let slug: String = finding
        .alert_type
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("{slug}-{:012x}", hash.finish() & 0xffff_ffff_ffff)
}

/// FNV-1a: stable across processes and releases, unlike std's hasher.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, text: &str) {
        for byte in text.bytes().chain(std::iter::once(0xff)) {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// At most `max` bytes, cut at a character boundary, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_crds::{Severity, Tactic};
    use riposte_detect::rules::{CLUSTER_ADMIN_BINDING, PRIVILEGED_CONTAINER};

    fn privileged_pod() -> Finding {
        Finding {
            alert_type: PRIVILEGED_CONTAINER,
            entities: riposte_detect::Entities {
                namespace: Some("shop".into()),
                pod: Some("miner".into()),
                container: Some("c".into()),
                image: Some("busybox".into()),
                user: Some("mallory".into()),
                ..Default::default()
            },
            evidence: vec![("auditID".into(), "a1".into()), ("field".into(), "x".repeat(5000))],
            summary: "Pod shop/miner runs privileged container c".into(),
        }
    }

    fn now() -> Time {
        Time("2026-11-22T10:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_finding_becomes_an_alert_with_the_catalogs_severity_and_tactics() {
        let alert = alert_for(&privileged_pod(), "a1", now(), AUDIT_SOURCE, "riposte-system");
        assert_eq!(alert.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(alert.spec.alert_type.0, "K8S_PrivilegedContainer");
        assert_eq!(alert.spec.severity, Severity::Informational);
        assert_eq!(alert.spec.tactics, [Tactic::PrivilegeEscalation]);
        assert_eq!(alert.spec.title, "Pod shop/miner runs privileged container c");
        assert_eq!(alert.spec.source.as_deref(), Some(AUDIT_SOURCE));
        assert_eq!(alert.spec.entities.user.as_deref(), Some("mallory"));
        assert_eq!(alert.spec.entities.pod.as_deref(), Some("miner"));
        assert_eq!(
            alert.spec.evidence[1].value.len(),
            MAX_EVIDENCE_VALUE,
            "long evidence is cut to the schema's limit"
        );
        assert!(alert.spec.evidence[1].value.ends_with('…'));
        assert_eq!(alert.metadata.labels.unwrap()[SOURCE_LABEL], AUDIT_SOURCE);
    }

    #[test]
    fn names_are_stable_per_sighting_and_differ_between_sightings() {
        let finding = privileged_pod();
        let name = alert_name(&finding, "a1");
        assert!(name.starts_with("k8s-privilegedcontainer-"), "{name}");
        assert_eq!(name.len(), "k8s-privilegedcontainer-".len() + 12);
        assert_eq!(name, alert_name(&finding, "a1"), "a retried delivery names the same Alert");
        assert_ne!(name, alert_name(&finding, "a2"));
        let mut other_pod = finding.clone();
        other_pod.entities.pod = Some("web".into());
        assert_ne!(name, alert_name(&other_pod, "a1"), "one request can raise one alert per pod");
        // Names must not change between releases: a retried batch after an upgrade would
        // raise its alerts twice.
        assert_eq!(name, "k8s-privilegedcontainer-e98a1378779f");
    }

    #[test]
    fn cluster_scoped_findings_land_in_the_operators_namespace() {
        let finding = Finding {
            alert_type: CLUSTER_ADMIN_BINDING,
            entities: riposte_detect::Entities { user: Some("mallory".into()), ..Default::default() },
            evidence: Vec::new(),
            summary: "ClusterRoleBinding pwn grants cluster-admin to mallory".into(),
        };
        let alert = alert_for(&finding, "a9", now(), AUDIT_SOURCE, "riposte-system");
        assert_eq!(alert.metadata.namespace.as_deref(), Some("riposte-system"));
        assert_eq!(alert.spec.severity, Severity::Informational, "as the catalog rates it");
    }

    #[test]
    fn only_service_writes_fetch_workloads() {
        let mut event: Event = serde_json::from_value(serde_json::json!({
            "level": "Metadata", "auditID": "a", "stage": "ResponseComplete", "verb": "create", "requestURI": "/api/v1/namespaces/shop/services",
            "user": {"username": "u"}, "objectRef": {"resource": "services", "namespace": "shop", "apiVersion": "v1"},
        }))
        .unwrap();
        assert_eq!(service_write_namespace(&event), Some("shop"));
        event.verb = "get".into();
        assert_eq!(service_write_namespace(&event), None);
        event.verb = "patch".into();
        event.object_ref.as_mut().unwrap().subresource = "status".into();
        assert_eq!(service_write_namespace(&event), None, "a load balancer's status is not an exposure change");
    }

    #[test]
    fn titles_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 3), "…");
        assert_eq!(truncate("abcdef", 5), "ab…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
