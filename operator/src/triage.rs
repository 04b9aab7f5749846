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

/// How long after its creation an Alert that was taken in may still fold into another:
/// two sources (the audit stream and the cluster watch) raise the same thing within
/// milliseconds, and the controller may take both in before either sees the other.
pub const RACE_WINDOW: Duration = Duration::from_secs(10);

/// Whether `alert` may still fold into another: not taken in yet, or taken in moments ago,
/// with no action created for it and no analyst's triage.
pub fn may_fold(alert: &Alert, now: k8s_openapi::jiff::Timestamp) -> bool {
    if !is_registered(alert) {
        return true;
    }
    let young =
        alert.creation_timestamp().is_some_and(|created| now.duration_since(created.0).unsigned_abs() <= RACE_WINDOW);
    let acted_on = alert
        .status
        .as_ref()
        .and_then(|s| s.policy_decisions.as_ref())
        .is_some_and(|decisions| decisions.iter().any(|d| !d.actions.is_empty()));
    let triaged = alert.spec.assignee.is_some() || alert.spec.classification.is_some() || !alert.spec.state.is_open();
    young && !acted_on && !triaged
}

/// Whether the controller has taken the alert in (recorded its first detection).
pub fn is_registered(alert: &Alert) -> bool {
    alert.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.event == event::DETECTED))
}

/// The open Alert that `alert` repeats, if any: same namespace, type and place (see
/// [`same_place`]), ahead of it, and last seen within `window` of its detection. Alerts
/// already taken in come first, then the oldest (by creation, then name), so that a burst of
/// duplicates all fold into one, whatever order they are looked at in, and an Alert created
/// in the same second as one already taken in folds into it whatever their names.
pub fn primary_for<'a>(alert: &Alert, others: impl Iterator<Item = &'a Alert>, window: Duration) -> Option<&'a Alert> {
    let detected = alert.spec.detected_at.0;
    let order = |a: &Alert| (!is_registered(a), a.creation_timestamp().map(|t| t.0), a.name_any());
    others
        .filter(|other| other.namespace() == alert.namespace() && other.name_any() != alert.name_any())
        .filter(|other| other.metadata.deletion_timestamp.is_none() && order(other) < order(alert))
        .filter(|other| {
            other.spec.alert_type == alert.spec.alert_type && same_place(&other.spec.entities, &alert.spec.entities)
        })
        .filter(|other| other.spec.state.is_open())
        .filter(|other| {
            let last_seen =
                other.status.as_ref().and_then(|s| s.last_seen.as_ref()).map_or(other.spec.detected_at.0, |t| t.0);
            detected.duration_since(last_seen).unsigned_abs() <= window
        })
        .min_by_key(|other| order(other))
}

/// Whether two detections are about the same thing: the same place (namespace, pod,
/// container, image, workload), and no contradiction in what only one source may know. The
/// audit log knows who made a pod but not where it was scheduled; a watch of the cluster
/// knows the node and the defaulted service account but not who wrote the object.
pub fn same_place(a: &riposte_crds::Entities, b: &riposte_crds::Entities) -> bool {
    let agree = |x: &Option<String>, y: &Option<String>| x.is_none() || y.is_none() || x == y;
    a.namespace == b.namespace
        && a.pod == b.pod
        && a.container == b.container
        && a.image == b.image
        && a.workload_kind == b.workload_kind
        && a.workload_name == b.workload_name
        && agree(&a.user, &b.user)
        && agree(&a.node, &b.node)
        && agree(&a.service_account, &b.service_account)
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

        // One already taken in wins over an older-looking one that is not.
        let mut registered = alert("z", 0, "web-1");
        registered.status = Some(AlertStatus {
            history: vec![riposte_crds::HistoryEntry {
                time: at(0),
                event: event::DETECTED.into(),
                message: String::new(),
                by: None,
            }],
            ..AlertStatus::default()
        });
        let twin = alert("y", 0, "web-1");
        assert_eq!(
            primary_for(&twin, [registered.clone()].iter(), window).map(ResourceExt::name_any).as_deref(),
            Some("z")
        );
        assert!(primary_for(&registered, [twin].iter(), window).is_none());
        // Two taken in at once: the later folds into the earlier, while it is young.
        let mut registered_twin = registered.clone();
        registered_twin.metadata.name = Some("zz".into());
        assert_eq!(
            primary_for(&registered_twin, [registered.clone()].iter(), window).map(ResourceExt::name_any).as_deref(),
            Some("z")
        );
        assert!(may_fold(&registered_twin, at(RACE_WINDOW.as_secs() as i64).0));
        assert!(!may_fold(&registered_twin, at(RACE_WINDOW.as_secs() as i64 + 1).0));
        registered_twin.spec.assignee = Some("bob".into());
        assert!(!may_fold(&registered_twin, at(1).0), "an analyst took it");

        let mut closed = first;
        closed.spec.state = AlertState::Resolved;
        assert!(primary_for(&second, [closed].iter(), window).is_none(), "a closed alert absorbs nothing");
    }

    #[test]
    fn detections_from_two_sources_fold_when_what_both_know_agrees() {
        let window = Duration::from_secs(600);
        let mut from_audit = alert("audit", 0, "debug");
        from_audit.spec.entities.user = Some("mallory".into());
        let mut from_watch = alert("watch", 1, "debug");
        from_watch.spec.entities.node = Some("node-1".into());
        from_watch.spec.entities.service_account = Some("default".into());
        assert_eq!(
            primary_for(&from_watch, [from_audit.clone()].iter(), window).map(ResourceExt::name_any).as_deref(),
            Some("audit")
        );
        let mut elsewhere = from_watch.clone();
        elsewhere.spec.entities.container = Some("other".into());
        assert!(primary_for(&elsewhere, [from_audit.clone()].iter(), window).is_none(), "another container");
        let mut someone_else = alert("other-user", 2, "debug");
        someone_else.spec.entities.user = Some("alice".into());
        assert!(primary_for(&someone_else, [from_audit].iter(), window).is_none(), "two users disagree");
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
