//! Go hunt: from an alert, every event of its entities within an hour either side, newest
//! first, as one timeline of what the API saw (who created the pod, who exec'd into it, what
//! the alert's user did) and what ran inside (every process and its files and connections),
//! with Riposte's own alerts and actions on them.
//!
//! The timeline is plain SQL over the hunting tables, the same on DataFusion and Trino.

use crate::query::{Hunt, Language};

/// What an alert is about, as far as it knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entities {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub image: Option<String>,
    pub user: Option<String>,
    pub source_ip: Option<String>,
    /// Users whose requests are bookkeeping, not activity (Riposte's own identity, which
    /// reads the alert and reviews the hunter's token for every hunt).
    pub ignored_users: Vec<String>,
}

/// How far either side of the alert a go hunt looks.
pub const GO_HUNT_SPAN_MICROS: i64 = 3_600_000_000;

/// The timeline's columns, the same for every kind of row.
pub const TIMELINE_COLUMNS: [&str; 10] = [
    "Timestamp",
    "Table",
    "ActionType",
    "KubernetesNamespace",
    "KubernetesPodName",
    "ContainerName",
    "Account",
    "Activity",
    "IPAddress",
    "ReportId",
];

/// The go hunt of an alert raised at `at` (microseconds since the epoch). `None` when the
/// alert names no entity a hunt can follow.
pub fn go_hunt(entities: &Entities, at: i64) -> Option<Hunt> {
    let mut parts = Vec::new();
    if let Some(condition) = process_condition(entities) {
        parts.push(format!(
            "SELECT \"Timestamp\", 'CloudProcessEvents' AS \"Table\", \"ActionType\", \"KubernetesNamespace\", \
             \"KubernetesPodName\", \"ContainerName\", \"AccountName\" AS \"Account\", \
             CASE WHEN \"ActionType\" = 'exec' THEN \"ProcessCommandLine\" \
             ELSE \"ActionType\" || ' ' || COALESCE(\"TargetFilePath\", \"RemoteIP\", '') || ' by ' || \"ProcessName\" END \
             AS \"Activity\", \"RemoteIP\" AS \"IPAddress\", \"ReportId\" FROM \"CloudProcessEvents\" WHERE {condition}"
        ));
    }
    if let Some(condition) = audit_condition(entities) {
        let ignored = if entities.ignored_users.is_empty() {
            String::new()
        } else {
            let users: Vec<String> = entities.ignored_users.iter().map(|u| literal(u)).collect();
            format!(" AND \"UserName\" NOT IN ({})", users.join(", "))
        };
        // One row per request, at its first stage after receipt: a long exec's start
        // (ResponseStarted), else its completion.
        parts.push(format!(
            "SELECT \"Timestamp\", 'CloudAuditEvents' AS \"Table\", \"OperationName\" AS \"ActionType\", \
             \"KubernetesNamespace\", CASE WHEN \"Resource\" = 'pods' THEN \"ObjectName\" END AS \"KubernetesPodName\", \
             CAST(NULL AS VARCHAR) AS \"ContainerName\", \"UserName\" AS \"Account\", \
             \"OperationName\" || ' ' || \"ResourceId\" || ' (' || COALESCE(CAST(\"ResponseCode\" AS VARCHAR), '-') || ')' \
             AS \"Activity\", \"IPAddress\", \"ReportId\" FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY \"AuditId\" \
             ORDER BY \"Timestamp\") AS \"StageRank\" FROM \"CloudAuditEvents\" WHERE \"ActionType\" <> 'RequestReceived' \
             AND ({condition}){ignored}) AS requests WHERE \"StageRank\" = 1"
        ));
    }
    if parts.is_empty() {
        return None;
    }
    if let Some(condition) = alert_condition(entities) {
        parts.push(format!(
            "SELECT \"Timestamp\", 'RiposteAlerts' AS \"Table\", \"AlertType\" AS \"ActionType\", \"KubernetesNamespace\", \
             \"KubernetesPodName\", \"ContainerName\", \"UserName\" AS \"Account\", \
             \"Title\" || ' [' || \"State\" || ']' AS \"Activity\", \"IPAddress\", \"ReportId\" FROM \"RiposteAlerts\" \
             WHERE {condition}"
        ));
    }
    if let (Some(namespace), Some(pod)) = (&entities.namespace, &entities.pod) {
        parts.push(format!(
            "SELECT \"Timestamp\", 'RiposteActions' AS \"Table\", \"ActionType\", \"KubernetesNamespace\", \
             \"KubernetesPodName\", CAST(NULL AS VARCHAR) AS \"ContainerName\", \"RequestedBy\" AS \"Account\", \
             \"ActionType\" || ' ' || \"ActionName\" || ' ' || COALESCE(\"Phase\", '') AS \"Activity\", \
             CAST(NULL AS VARCHAR) AS \"IPAddress\", \"ReportId\" FROM \"RiposteActions\" \
             WHERE \"KubernetesNamespace\" = {} AND \"KubernetesPodName\" = {}",
            literal(namespace),
            literal(pod)
        ));
    }
    Some(Hunt {
        text: format!("{} ORDER BY \"Timestamp\" DESC, \"ReportId\"", parts.join(" UNION ALL ")),
        language: Language::Sql,
        from: at - GO_HUNT_SPAN_MICROS,
        to: at + GO_HUNT_SPAN_MICROS,
    })
}

/// Processes of the pod (or of its container), and of the image anywhere.
fn process_condition(entities: &Entities) -> Option<String> {
    let mut any = Vec::new();
    if let (Some(namespace), Some(pod)) = (&entities.namespace, &entities.pod) {
        let mut pod_condition =
            format!("\"KubernetesNamespace\" = {} AND \"KubernetesPodName\" = {}", literal(namespace), literal(pod));
        if let Some(container) = &entities.container {
            pod_condition.push_str(&format!(" AND \"ContainerName\" = {}", literal(container)));
        }
        any.push(format!("({pod_condition})"));
    }
    if let Some(image) = &entities.image {
        any.push(format!("\"ContainerImageName\" = {}", literal(image)));
    }
    (!any.is_empty()).then(|| any.join(" OR "))
}

/// Requests about the pod (its creation, exec, attach, logs, deletion), and every request of
/// the alert's user and from its source address.
fn audit_condition(entities: &Entities) -> Option<String> {
    let mut any = Vec::new();
    if let (Some(namespace), Some(pod)) = (&entities.namespace, &entities.pod) {
        any.push(format!(
            "(\"Resource\" = 'pods' AND \"KubernetesNamespace\" = {} AND \"ObjectName\" = {})",
            literal(namespace),
            literal(pod)
        ));
    }
    if let Some(user) = &entities.user {
        any.push(format!("\"UserName\" = {}", literal(user)));
    }
    if let Some(ip) = &entities.source_ip {
        any.push(format!("\"IPAddress\" = {}", literal(ip)));
    }
    (!any.is_empty()).then(|| any.join(" OR "))
}

fn alert_condition(entities: &Entities) -> Option<String> {
    let mut any = Vec::new();
    if let (Some(namespace), Some(pod)) = (&entities.namespace, &entities.pod) {
        any.push(format!(
            "(\"KubernetesNamespace\" = {} AND \"KubernetesPodName\" = {})",
            literal(namespace),
            literal(pod)
        ));
    }
    if let Some(user) = &entities.user {
        any.push(format!("\"UserName\" = {}", literal(user)));
    }
    (!any.is_empty()).then(|| any.join(" OR "))
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::check_sql;

    #[test]
    fn a_go_hunt_reads_every_table_of_its_entities_and_quotes_them() {
        let entities = Entities {
            namespace: Some("shop".into()),
            pod: Some("web-0".into()),
            user: Some("o'brien".into()),
            ..Entities::default()
        };
        let hunt = go_hunt(&entities, 10 * GO_HUNT_SPAN_MICROS).unwrap();
        assert_eq!((hunt.from, hunt.to), (9 * GO_HUNT_SPAN_MICROS, 11 * GO_HUNT_SPAN_MICROS));
        assert!(hunt.text.contains("\"UserName\" = 'o''brien'"), "{}", hunt.text);
        let checked = check_sql(&hunt.text).unwrap();
        assert_eq!(checked.tables.len(), 4);
        assert_eq!(go_hunt(&Entities { source_ip: None, ..Entities::default() }, 0), None);
    }
}
