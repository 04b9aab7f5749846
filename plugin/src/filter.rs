//! Selecting and ordering what the list commands show, and reading durations.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use riposte_crds::{Alert, AlertState, Phase, ResponseAction, Severity, catalog};

use crate::error::Error;

/// A duration written as numbers with units, such as `30m`, `2h`, `7d` or `1h30m`.
pub fn parse_duration(input: &str) -> Result<Duration, Error> {
    let invalid = |reason: String| Error::InvalidDuration { input: input.to_owned(), reason };
    let text = input.trim();
    if text.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid(format!("expected a number at {rest:?}")));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "" => return Err(invalid(format!("{number} has no unit (s, m, h or d)"))),
            other => return Err(invalid(format!("unknown unit {other:?} (use s, m, h or d)"))),
        };
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds_per_unit))
            .and_then(|s| s.checked_add(total))
            .ok_or_else(|| invalid("it is too long".into()))?;
        rest = next;
    }
    if total == 0 {
        return Err(invalid("it must be longer than zero".into()));
    }
    Ok(Duration::from_secs(total))
}

/// An action not yet seen by the operator has no phase; for the analyst it is pending.
pub fn phase_of(action: &ResponseAction) -> Phase {
    action.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Pending)
}

#[derive(Clone, Debug, Default)]
pub struct ActionFilter {
    pub target: Option<String>,
    pub phase: Option<Phase>,
    /// Only actions created within this long before now.
    pub since: Option<Duration>,
    pub policy: Option<String>,
    pub alert: Option<String>,
}

/// The actions that pass the filter, oldest first, so that the newest is the last line
/// above the prompt.
pub fn select_actions(actions: Vec<ResponseAction>, filter: &ActionFilter, now: Timestamp) -> Vec<ResponseAction> {
    let oldest =
        filter.since.map(|since| now.as_second().saturating_sub(since.as_secs().try_into().unwrap_or(i64::MAX)));
    let mut selected: Vec<ResponseAction> = actions
        .into_iter()
        .filter(|a| filter.target.as_ref().is_none_or(|t| &a.spec.target.pod == t))
        .filter(|a| filter.phase.is_none_or(|p| phase_of(a) == p))
        .filter(|a| filter.policy.as_ref().is_none_or(|p| a.spec.policy_ref.as_ref().is_some_and(|r| &r.name == p)))
        .filter(|a| filter.alert.as_ref().is_none_or(|n| a.spec.alert_ref.as_ref().is_some_and(|r| &r.name == n)))
        .filter(|a| oldest.is_none_or(|oldest| a.creation_timestamp().is_some_and(|c| c.0.as_second() >= oldest)))
        .collect();
    selected.sort_by_key(|a| (a.creation_timestamp().map(|t| t.0), a.namespace(), a.name_any()));
    selected
}

#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    /// A catalog id, as returned by [`alert_type`].
    pub alert_type: Option<String>,
    pub min_severity: Option<Severity>,
    pub state: Option<AlertState>,
    /// Only New and InProgress alerts.
    pub open: bool,
}

/// The alerts that pass the filter, the most severe first and, within a severity, the
/// newest first: the order in which an analyst should pick them up.
pub fn select_alerts(alerts: Vec<Alert>, filter: &AlertFilter) -> Vec<Alert> {
    let mut selected: Vec<Alert> = alerts
        .into_iter()
        .filter(|a| filter.alert_type.as_ref().is_none_or(|t| &a.spec.alert_type.0 == t))
        .filter(|a| filter.min_severity.is_none_or(|min| a.spec.severity >= min))
        .filter(|a| filter.state.is_none_or(|s| a.spec.state == s))
        .filter(|a| !filter.open || a.spec.state.is_open())
        .collect();
    selected.sort_by(|a, b| {
        b.spec
            .severity
            .cmp(&a.spec.severity)
            .then_with(|| b.spec.detected_at.0.cmp(&a.spec.detected_at.0))
            .then_with(|| (a.namespace(), a.name_any()).cmp(&(b.namespace(), b.name_any())))
    });
    selected
}

/// The catalog id an analyst meant: exact, or differing only in case. Otherwise the error
/// suggests the ids that contain what was typed.
pub fn alert_type(input: &str) -> Result<String, Error> {
    let entries = catalog::entries();
    if let Some(entry) =
        entries.iter().find(|e| e.id == input).or_else(|| entries.iter().find(|e| e.id.eq_ignore_ascii_case(input)))
    {
        return Ok(entry.id.clone());
    }
    let wanted = input.to_ascii_lowercase();
    let suggestions =
        entries.iter().filter(|e| e.id.to_ascii_lowercase().contains(&wanted)).map(|e| e.id.clone()).take(5).collect();
    Err(Error::UnknownAlertType { input: input.to_owned(), suggestions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use riposte_crds::{ActionKind, AlertRef, AlertSpec, PolicyRef, ResponseActionSpec, ResponseActionStatus, Target};

    const NOW: i64 = 1_800_000_000;

    fn at(seconds_ago: i64) -> Time {
        Time(Timestamp::from_second(NOW - seconds_ago).unwrap())
    }

    fn action(name: &str, pod: &str, created_ago: i64, phase: Option<Phase>) -> ResponseAction {
        let mut a = ResponseAction::new(
            name,
            ResponseActionSpec {
                action: ActionKind::Isolate,
                target: Target { pod: pod.into() },
                requested_by: "alice".into(),
                comment: None,
                alert_ref: None,
                policy_ref: None,
                approval_required: false,
                approval: None,
                dry_run: false,
                isolation: None,
                terminate: None,
                release: None,
                comments: vec![],
            },
        );
        a.metadata.namespace = Some("shop".into());
        a.metadata.creation_timestamp = Some(at(created_ago));
        a.status = phase.map(|phase| ResponseActionStatus { phase: Some(phase), ..Default::default() });
        a
    }

    fn names<K: ResourceExt>(objects: &[K]) -> Vec<String> {
        objects.iter().map(|o| o.name_any()).collect()
    }

    #[test]
    fn durations_are_numbers_with_units() {
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_duration(" 1h30m ").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        let reason = |input: &str| match parse_duration(input) {
            Err(Error::InvalidDuration { reason, .. }) => reason,
            other => panic!("{input:?} parsed as {other:?}"),
        };
        assert_eq!(reason(""), "it is empty");
        assert_eq!(reason("30"), "30 has no unit (s, m, h or d)");
        assert_eq!(reason("3w"), "unknown unit \"w\" (use s, m, h or d)");
        assert_eq!(reason("2 hours"), "unknown unit \" hours\" (use s, m, h or d)");
        assert_eq!(reason("h"), "expected a number at \"h\"");
        assert_eq!(reason("-5m"), "expected a number at \"-5m\"");
        assert_eq!(reason("0s"), "it must be longer than zero");
        assert_eq!(reason("99999999999999999999d"), "it is too long");
        let message = parse_duration("30").unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid duration \"30\": 30 has no unit (s, m, h or d); write numbers with units, such as 45s, 30m, 2h, 7d or 1h30m"
        );
    }

    #[test]
    fn actions_are_filtered_by_target_phase_and_age_and_listed_oldest_first() {
        let now = Timestamp::from_second(NOW).unwrap();
        let actions = vec![
            action("c-new", "web-1", 60, Some(Phase::Succeeded)),
            action("a-old", "web-1", 3 * 3600, Some(Phase::Released)),
            action("b-mid", "db-0", 1800, None),
        ];
        assert_eq!(names(&select_actions(actions.clone(), &ActionFilter::default(), now)), ["a-old", "b-mid", "c-new"]);
        let by_target = ActionFilter { target: Some("web-1".into()), ..Default::default() };
        assert_eq!(names(&select_actions(actions.clone(), &by_target, now)), ["a-old", "c-new"]);
        let since = ActionFilter { since: Some(parse_duration("30m").unwrap()), ..Default::default() };
        assert_eq!(names(&select_actions(actions.clone(), &since, now)), ["b-mid", "c-new"]);
        // Not yet reconciled counts as Pending.
        let pending = ActionFilter { phase: Some(Phase::Pending), ..Default::default() };
        assert_eq!(names(&select_actions(actions.clone(), &pending, now)), ["b-mid"]);
        let released = ActionFilter { phase: Some(Phase::Released), ..Default::default() };
        assert_eq!(names(&select_actions(actions, &released, now)), ["a-old"]);
    }

    #[test]
    fn actions_are_filtered_by_alert_and_policy() {
        let now = Timestamp::from_second(NOW).unwrap();
        let mut automated = action("auto", "web-1", 10, None);
        automated.spec.policy_ref = Some(PolicyRef { name: "isolate-shells".into() });
        automated.spec.alert_ref = Some(AlertRef { name: "shell-1".into() });
        let mut manual = action("manual", "web-1", 20, None);
        manual.spec.alert_ref = Some(AlertRef { name: "shell-2".into() });
        let actions = vec![automated, manual];
        let by_policy = ActionFilter { policy: Some("isolate-shells".into()), ..Default::default() };
        assert_eq!(names(&select_actions(actions.clone(), &by_policy, now)), ["auto"]);
        let by_alert = ActionFilter { alert: Some("shell-2".into()), ..Default::default() };
        assert_eq!(names(&select_actions(actions, &by_alert, now)), ["manual"]);
    }

    fn alert(name: &str, alert_type: &str, severity: Severity, detected_ago: i64, state: AlertState) -> Alert {
        let mut spec = AlertSpec::detected(alert_type, "t".into(), severity, at(detected_ago));
        spec.state = state;
        let mut a = Alert::new(name, spec);
        a.metadata.namespace = Some("shop".into());
        a
    }

    #[test]
    fn alerts_are_ordered_most_severe_then_newest_first() {
        let alerts = vec![
            alert("low-new", "K8S_PrivilegedContainer", Severity::Low, 10, AlertState::New),
            alert("high-old", "K8S.NODE_ReverseShell", Severity::High, 5000, AlertState::New),
            alert("high-new", "K8S.NODE_ReverseShell", Severity::High, 100, AlertState::InProgress),
            alert("medium", "K8S_PrivilegedContainer", Severity::Medium, 50, AlertState::Resolved),
            alert("info", "K8S_PrivilegedContainer", Severity::Informational, 1, AlertState::Dismissed),
        ];
        let all = select_alerts(alerts.clone(), &AlertFilter::default());
        assert_eq!(names(&all), ["high-new", "high-old", "medium", "low-new", "info"]);
        let medium_up = AlertFilter { min_severity: Some(Severity::Medium), ..Default::default() };
        assert_eq!(names(&select_alerts(alerts.clone(), &medium_up)), ["high-new", "high-old", "medium"]);
        let open = AlertFilter { open: true, ..Default::default() };
        assert_eq!(names(&select_alerts(alerts.clone(), &open)), ["high-new", "high-old", "low-new"]);
        let resolved = AlertFilter { state: Some(AlertState::Resolved), ..Default::default() };
        assert_eq!(names(&select_alerts(alerts.clone(), &resolved)), ["medium"]);
        let shells = AlertFilter { alert_type: Some("K8S.NODE_ReverseShell".into()), ..Default::default() };
        assert_eq!(names(&select_alerts(alerts, &shells)), ["high-new", "high-old"]);
    }

    #[test]
    fn alert_types_are_catalog_ids_in_any_case() {
        assert_eq!(alert_type("K8S_PrivilegedContainer").unwrap(), "K8S_PrivilegedContainer");
        assert_eq!(alert_type("k8s.node_reverseshell").unwrap(), "K8S.NODE_ReverseShell");
        match alert_type("ReverseShell") {
            Err(Error::UnknownAlertType { suggestions, .. }) => {
                assert!(suggestions.contains(&"K8S.NODE_ReverseShell".into()))
            }
            other => panic!("{other:?}"),
        }
        match alert_type("NoSuchAlert") {
            Err(Error::UnknownAlertType { suggestions, .. }) => assert!(suggestions.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
