//! Pure status bookkeeping: conditions with preserved transition times, an append-only
//! history, and the recording of analysts' comments.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use riposte_crds::{Comment, HistoryEntry, Phase, ResponseActionStatus};

/// Condition types of a ResponseAction.
pub mod condition {
    /// The action reached its goal (the pod is isolated, deleted or released).
    pub const COMPLETED: &str = "Completed";
    /// For Isolate: whether every policy that could let traffic through is handled.
    pub const ISOLATED: &str = "Isolated";
    /// For Isolate: True while a policy that could not be changed still lets traffic through;
    /// Riposte keeps retrying.
    pub const DEGRADED: &str = "Degraded";
    /// For Isolate: whether a NetworkPolicy enforcer appears to run in the cluster.
    pub const ENFORCEMENT: &str = "NetworkPolicyEnforcement";
    /// For an action that requires approval: whether it was approved.
    pub const APPROVED: &str = "Approved";
}

/// Sets a condition, keeping its lastTransitionTime when its status does not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// Appends a history entry unless the same event with the same message is already there:
/// a step repeated after a crash or a conflict is recorded once.
pub fn record(status: &mut ResponseActionStatus, event: &str, message: impl Into<String>, now: &Time) {
    append(&mut status.history, event, message.into(), None, now);
}

/// Appends a history entry even when the same one is there: for what can happen again,
/// such as an isolation undone by someone else and put back.
pub fn record_occurrence(status: &mut ResponseActionStatus, event: &str, message: impl Into<String>, now: &Time) {
    status.history.push(HistoryEntry { time: now.clone(), event: event.to_owned(), message: message.into(), by: None });
}

/// Appends a history entry naming who did it, once (see [`record`]).
pub fn append(history: &mut Vec<HistoryEntry>, event: &str, message: String, by: Option<&str>, now: &Time) {
    if !history.iter().any(|h| h.event == event && h.message == message) {
        history.push(HistoryEntry { time: now.clone(), event: event.to_owned(), message, by: by.map(str::to_owned) });
    }
}

pub const COMMENT_EVENT: &str = "Comment";

/// Copies the comments not yet in the history into it, in order, with their author and their
/// own time when they carry one. Comments are append-only, so the count already recorded
/// tells which are new.
pub fn record_comments(comments: &[Comment], history: &mut Vec<HistoryEntry>, now: &Time) {
    let recorded = history.iter().filter(|h| h.event == COMMENT_EVENT).count();
    for comment in comments.iter().skip(recorded) {
        history.push(HistoryEntry {
            time: comment.time.clone().unwrap_or_else(|| now.clone()),
            event: COMMENT_EVENT.to_owned(),
            message: comment.message.clone(),
            by: Some(comment.author.clone()),
        });
    }
}

/// Moves to `phase` with a one-line message, stamping start and completion times.
pub fn transition(status: &mut ResponseActionStatus, phase: Phase, message: impl Into<String>, now: &Time) {
    status.start_time.get_or_insert_with(|| now.clone());
    if phase.is_terminal() && status.phase != Some(phase) {
        status.completion_time = Some(now.clone());
    }
    status.phase = Some(phase);
    status.message = Some(message.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use riposte_crds::{ActionKind, ResponseActionSpec, Target};

    fn comment(message: &str, time: Option<Time>) -> Comment {
        Comment { message: message.into(), author: "alice".into(), time }
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let mut c = Vec::new();
        set_condition(&mut c, "Isolated", "True", "PolicyApplied", "a", Some(1), &at(0));
        set_condition(&mut c, "Isolated", "True", "PolicyApplied", "b", Some(2), &at(10));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, at(0));
        assert_eq!(c[0].message, "b");
        set_condition(&mut c, "Isolated", "False", "DefeatedByPolicy", "c", Some(2), &at(20));
        assert_eq!(c[0].last_transition_time, at(20));
    }

    #[test]
    fn history_records_each_step_once() {
        let mut s = ResponseActionStatus::default();
        record(&mut s, "PolicyApplied", "x", &at(0));
        record(&mut s, "PolicyApplied", "x", &at(5));
        record(&mut s, "PolicyApplied", "y", &at(6));
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.history[0].time, at(0));
    }

    #[test]
    fn comments_are_recorded_once_in_order_with_their_time() {
        let mut spec = ResponseActionSpec {
            action: ActionKind::Isolate,
            target: Target { pod: "p".into() },
            requested_by: "alice".into(),
            policy_ref: None,
            approval_required: false,
            approval: None,
            comment: None,
            alert_ref: None,
            dry_run: false,
            isolation: None,
            terminate: None,
            release: None,
            comments: vec![comment("first", Some(at(1)))],
        };
        let mut s = ResponseActionStatus::default();
        record(&mut s, "TargetResolved", "pod p", &at(0));
        record_comments(&spec.comments, &mut s.history, &at(2));
        record_comments(&spec.comments, &mut s.history, &at(3));
        spec.comments.push(comment("same text", None));
        spec.comments.push(comment("same text", None));
        record_comments(&spec.comments, &mut s.history, &at(4));
        let comments: Vec<_> = s
            .history
            .iter()
            .filter(|h| h.event == COMMENT_EVENT)
            .map(|h| (h.message.as_str(), h.time.clone(), h.by.as_deref()))
            .collect();
        let alice = Some("alice");
        assert_eq!(comments, vec![("first", at(1), alice), ("same text", at(4), alice), ("same text", at(4), alice)]);
    }

    #[test]
    fn completion_time_is_set_once_on_reaching_a_terminal_phase() {
        let mut s = ResponseActionStatus::default();
        transition(&mut s, Phase::Running, "working", &at(0));
        assert_eq!((s.start_time.clone(), s.completion_time.clone()), (Some(at(0)), None));
        transition(&mut s, Phase::Succeeded, "done", &at(5));
        transition(&mut s, Phase::Succeeded, "still done", &at(9));
        assert_eq!(s.completion_time, Some(at(5)));
        transition(&mut s, Phase::Released, "released", &at(20));
        assert_eq!((s.start_time.clone(), s.completion_time.clone()), (Some(at(0)), Some(at(20))));
    }
}
