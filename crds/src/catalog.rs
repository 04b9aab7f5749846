//! The alert catalog: every alert type users know, with its source, severity and tactics.
//!
//! The data is `alert-catalog.yaml`, bundled at compile time; the Alert CRD's schema
//! validates alert types against it, so an unknown id is rejected by the apiserver.
//! `alert-guidance.yaml`, also bundled, tells analysts what each alert type means, how to
//! check it and how to fix it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::LazyLock;

const CATALOG_YAML: &str = include_str!("alert-catalog.yaml");
const GUIDANCE_YAML: &str = include_str!("alert-guidance.yaml");

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    pub id: String,
    pub source: Source,
    pub severity: crate::Severity,
    #[serde(default)]
    pub tactics: Vec<crate::Tactic>,
    pub title: String,
    pub evidence: String,
    #[serde(default)]
    pub preview: bool,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Audit,
    Config,
    Runtime,
    Cloud,
    /// A sensor's own rule that maps onto no other id.
    Sensor,
    /// Riposte's comparison of the cluster's objects with the audit stream.
    Cluster,
}

#[derive(Deserialize)]
struct CatalogFile {
    alerts: Vec<CatalogEntry>,
}

static CATALOG: LazyLock<Vec<CatalogEntry>> = LazyLock::new(|| {
    serde_yaml::from_str::<CatalogFile>(CATALOG_YAML)
        .expect("the bundled alert catalog is valid: a unit test parses it")
        .alerts
});

/// Every alert type, in catalog order.
pub fn entries() -> &'static [CatalogEntry] {
    &CATALOG
}

/// The catalog entry of an alert type id, such as `K8S_PrivilegedContainer`.
pub fn lookup(id: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.id == id)
}

/// Remediation guidance for analysts: what an alert means, how to check it, how to fix it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Guidance {
    /// What the alert means and why it matters: the attacker technique and what it gains.
    pub meaning: String,
    /// How to verify the alert and investigate it: numbered steps with kubectl commands, one
    /// per line, and what benign explanations look like.
    pub check: String,
    /// How to respond: containment with Riposte where it fits, then the durable fix; numbered
    /// steps, one per line.
    pub fix: String,
}

#[derive(Deserialize)]
struct GuidanceFile {
    guidance: BTreeMap<String, Guidance>,
}

static GUIDANCE: LazyLock<BTreeMap<String, Guidance>> = LazyLock::new(|| {
    serde_yaml::from_str::<GuidanceFile>(GUIDANCE_YAML)
        .expect("the bundled alert guidance is valid: a unit test parses it")
        .guidance
});

/// The remediation guidance of an alert type id, such as `K8S_PrivilegedContainer`.
pub fn guidance(id: &str) -> Option<&'static Guidance> {
    GUIDANCE.get(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_every_alert_type_once() {
        let ids: std::collections::BTreeSet<_> = entries().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(entries().len(), 60, "the reference's 58, Riposte.SensorRule and Riposte.AuditLoss");
        assert_eq!(ids.len(), 60, "alert ids are unique");
        assert_eq!(lookup("K8S_PrivilegedContainer").unwrap().source, Source::Audit);
        assert_eq!(lookup("K8S.NODE_ReverseShell").unwrap().source, Source::Runtime);
        assert!(lookup("K8S_NoSuchThing").is_none());
    }

    #[test]
    fn every_alert_type_has_guidance() {
        let missing: Vec<&str> = entries().iter().map(|e| e.id.as_str()).filter(|id| guidance(id).is_none()).collect();
        assert!(missing.is_empty(), "alert types without guidance in alert-guidance.yaml: {missing:?}");
        assert!(guidance("K8S_NoSuchThing").is_none());
    }

    #[test]
    fn guidance_names_only_catalog_ids() {
        let unknown: Vec<&str> = GUIDANCE.keys().map(String::as_str).filter(|id| lookup(id).is_none()).collect();
        assert!(unknown.is_empty(), "alert-guidance.yaml names ids that are not in the catalog: {unknown:?}");
        assert_eq!(GUIDANCE.len(), entries().len());
    }

    #[test]
    fn guidance_is_in_catalog_order() {
        let file: serde_yaml::Value = serde_yaml::from_str(GUIDANCE_YAML).expect("alert-guidance.yaml is YAML");
        let keys: Vec<&str> = file["guidance"]
            .as_mapping()
            .expect("alert-guidance.yaml has a guidance mapping")
            .keys()
            .map(|k| k.as_str().expect("guidance keys are strings"))
            .collect();
        let ids: Vec<&str> = entries().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(keys, ids, "alert-guidance.yaml lists the catalog's ids once each, in catalog order");
    }

    #[test]
    fn guidance_fields_are_filled_and_short() {
        for (id, g) in GUIDANCE.iter() {
            for (field, text) in [("meaning", &g.meaning), ("check", &g.check), ("fix", &g.fix)] {
                let len = text.trim().chars().count();
                assert!(len > 0, "{id}: {field} is empty");
                assert!(len <= 1000, "{id}: {field} has {len} characters, more than 1,000");
            }
        }
    }
}
