//! The alert catalog: every alert type users know, with its source, severity and tactics.
//!
//! The data is `alert-catalog.yaml`, bundled at compile time; the Alert CRD's schema
//! validates alert types against it, so an unknown id is rejected by the apiserver.

use serde::Deserialize;
use std::sync::LazyLock;

const CATALOG_YAML: &str = include_str!("alert-catalog.yaml");

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_every_alert_type_once() {
        let ids: std::collections::BTreeSet<_> = entries().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(entries().len(), 58);
        assert_eq!(ids.len(), 58, "alert ids are unique");
        assert_eq!(lookup("K8S_PrivilegedContainer").unwrap().source, Source::Audit);
        assert_eq!(lookup("K8S.NODE_ReverseShell").unwrap().source, Source::Runtime);
        assert!(lookup("K8S_NoSuchThing").is_none());
    }
}
