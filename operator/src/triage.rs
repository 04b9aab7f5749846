//! The alert lifecycle, decided purely: which open Alert a repeated detection folds into,
//! and what the history records when analysts triage an alert or its actions progress.

use std::time::Duration;

use kube::ResourceExt;
use riposte_crds::{Alert, LinkedAction, RecordedTriage};

/// History events of an Alert.
pub mod event {
    pub const DETECTED: &str = "Detected";
    pub const DETECTED_AGAIN: &str = "DetectedAgain";
    pub const STATE_CHANGED: &str = "StateChanged";
    pub const ASSIGNED: &str = "Assigned";
    pub const CLASSIFIED: &str = "Classified";
    pub const ACTION: &str = "Action";
    pub const POLICY_DECISION: &str = "PolicyDecision";
    pub const ACTIONS_CREATED: &str = "ActionsCreated";
}

/// Whether the controller has taken the alert in (recorded its first detection).
pub fn is_registered(alert: &Alert) -> bool {
    alert.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.event == event::DETECTED))
}

/// The open Alert that `alert` repeats, if any: same namespace, type and entities, created
/// before it, and last seen within `window` of its detection. The oldest such alert wins, so
/// that a burst of duplicates all fold into one, whatever order they are looked at in.
pub fn primary_for<'a>(alert: &Alert, others: impl Iterator<Item = &'a Alert>, window: Duration) -> Option<&'a Alert> {
    let detected = alert.spec.detected_at.0;
    let order = |a: &Alert| (a.creation_timestamp().map(|t| t.0), a.name_any());
    others
        .filter(|other| other.namespace() == alert.namespace() && other.name_any() != alert.name_any())
        .filter(|other| other.metadata.deletion_timestamp.is_none() && order(other) < order(alert))
        .filter(|other| other.spec.alert_type == alert.spec.alert_type && other.spec.entities == alert.spec.entities)
        .filter(|other| other.spec.state.is_open())
        .filter(|other| {
            let last_seen =
                other.status.as_ref().and_then(|s| s.last_seen.as_ref()).map_or(other.spec.detected_at.0, |t| t.0);
            detected.duration_since(last_seen).unsigned_abs() <= window
        })
        .min_by_key(|other| order(other))
}

/// The history entries (event, message) for how the triage fields moved since they were
/// last recorded.
pub fn triage_changes(alert: &Alert, recorded: &RecordedTriage) -> Vec<(&'static str, String)> {
    let spec = &alert.spec;
    let mut changes = Vec::new();
    if spec.state != recorded.state {
        changes.push((event::STATE_CHANGED, format!("{} → {}", recorded.state.as_str(), spec.state.as_str())));
    }
    if spec.assignee != recorded.assignee {
        changes.push((
            event::ASSIGNED,
            match &spec.assignee {
                Some(who) => format!("assigned to {who}"),
                None => "unassigned".to_owned(),
            },
        ));
    }
    if spec.classification != recorded.classification {
        changes.push((
            event::CLASSIFIED,
            match spec.classification {
                Some(c) => format!("classified {}", c.as_str()),
                None => "classification removed".to_owned(),
            },
        ));
    }
    changes
}

pub fn recorded_triage(alert: &Alert) -> RecordedTriage {
    RecordedTriage {
        state: alert.spec.state,
        assignee: alert.spec.assignee.clone(),
        classification: alert.spec.classification,
    }
}

/// One history line per linked action that appeared or changed phase.
pub fn action_changes(before: &[LinkedAction], after: &[LinkedAction]) -> Vec<String> {
    after
        .iter()
        .filter(|a| !before.iter().any(|b| b.name == a.name && b.phase == a.phase))
        .map(|a| {
            let phase = a.phase.map_or("Pending", |p| p.as_str());
            let how = match &a.policy {
                Some(policy) => format!(" (ResponsePolicy {policy})"),
                None => a.requested_by.as_deref().map(|r| format!(" (requested by {r})")).unwrap_or_default(),
            };
            format!("{} {}{how}: {phase}", a.action, a.name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use riposte_crds::{ActionKind, AlertSpec, AlertState, AlertStatus, Classification, Phase, Severity};

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + secs).unwrap())
    }

    fn alert(name: &str, created: i64, pod: &str) -> Alert {
        let mut spec = AlertSpec::detected("K8S.NODE_ReverseShell", "t".into(), Severity::High, at(created));
        spec.entities.pod = Some(pod.into());
        let mut alert = Alert::new(name, spec);
        alert.metadata.namespace = Some("shop".into());
        alert.metadata.creation_timestamp = Some(at(created));
        alert
    }

    #[test]
    fn a_repeat_folds_into_the_oldest_open_alert_within_the_window() {
        let window = Duration::from_secs(600);
        let first = alert("a", 0, "web-1");
        let second = alert("b", 10, "web-1");
        let third = alert("c", 20, "web-1");
        let all = [first.clone(), second.clone(), third.clone()];
        assert_eq!(primary_for(&third, all.iter(), window).map(ResourceExt::name_any).as_deref(), Some("a"));
        assert_eq!(primary_for(&second, all.iter(), window).map(ResourceExt::name_any).as_deref(), Some("a"));
        assert!(primary_for(&first, all.iter(), window).is_none(), "the oldest is the primary");

        let other_pod = alert("d", 30, "web-2");
        assert!(primary_for(&other_pod, all.iter(), window).is_none());
        let mut other_type = alert("e", 30, "web-1");
        other_type.spec.alert_type.0 = "K8S.NODE_DigitalCurrencyMining".into();
        assert!(primary_for(&other_type, all.iter(), window).is_none());

        let late = alert("f", 700, "web-1");
        assert!(primary_for(&late, [first.clone()].iter(), window).is_none(), "outside the window");
        let mut seen_recently = first.clone();
        seen_recently.status = Some(AlertStatus { last_seen: Some(at(650)), ..AlertStatus::default() });
        assert!(primary_for(&late, [seen_recently].iter(), window).is_some(), "the window runs from the last sighting");

        let mut closed = first;
        closed.spec.state = AlertState::Resolved;
        assert!(primary_for(&second, [closed].iter(), window).is_none(), "a closed alert absorbs nothing");
    }

    #[test]
    fn triage_moves_are_recorded_one_line_each() {
        let mut a = alert("a", 0, "web-1");
        assert!(triage_changes(&a, &RecordedTriage::default()).is_empty());
        a.spec.state = AlertState::Resolved;
        a.spec.assignee = Some("bob".into());
        a.spec.classification = Some(Classification::TruePositive);
        let changes = triage_changes(&a, &RecordedTriage::default());
        assert_eq!(
            changes,
            vec![
                (event::STATE_CHANGED, "New → Resolved".to_string()),
                (event::ASSIGNED, "assigned to bob".to_string()),
                (event::CLASSIFIED, "classified TruePositive".to_string()),
            ]
        );
        assert!(triage_changes(&a, &recorded_triage(&a)).is_empty());
    }

    #[test]
    fn linked_actions_are_recorded_when_they_appear_and_change_phase() {
        let linked = |phase: Option<Phase>| LinkedAction {
            name: "iso".into(),
            action: ActionKind::Isolate,
            phase,
            requested_by: Some("carol".into()),
            policy: None,
        };
        assert_eq!(action_changes(&[], &[linked(None)]), vec!["Isolate iso (requested by carol): Pending"]);
        assert!(action_changes(&[linked(None)], &[linked(None)]).is_empty());
        assert_eq!(
            action_changes(&[linked(None)], &[linked(Some(Phase::Succeeded))]),
            vec!["Isolate iso (requested by carol): Succeeded"]
        );
    }
}
