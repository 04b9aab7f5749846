//! What the read commands print: the action center and the alert queue as tables, one
//! action or alert in full, and the state of automation.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use riposte_crds::{
    ActionKind, Alert, AllowList, HistoryEntry, IsolationOptions, Phase, ResponseAction, ResponsePolicy, catalog,
};

use crate::error::Error;
use crate::filter::phase_of;
use crate::objects::{AUTOMATION_CONFIG_MAP, CHANGED_BY_ANNOTATION, decision_word};
use crate::table::{self, Column, NONE};

/// The action center: one line per action, in the order given.
pub fn actions_table(actions: &[ResponseAction], all_namespaces: bool, now: Timestamp) -> String {
    let mut columns = vec![
        Column::new("NAME"),
        Column::new("ACTION"),
        Column::max("TARGET", 40),
        Column::new("PHASE"),
        Column::max("REQUESTED BY", 32),
        Column::new("AGE"),
        Column::max("ALERT", 32),
        Column::max("MESSAGE", 60),
    ];
    let rows = actions.iter().map(|a| {
        let mut row = vec![
            a.name_any(),
            action_label(a),
            a.spec.target.pod.clone(),
            phase_of(a).as_str().to_owned(),
            a.spec.requested_by.clone(),
            age(now, a.creation_timestamp().as_ref()),
            a.spec.alert_ref.as_ref().map_or_else(String::new, |r| r.name.clone()),
            a.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default(),
        ];
        if all_namespaces {
            row.insert(0, a.namespace().unwrap_or_default());
        }
        row
    });
    let rows: Vec<Vec<String>> = rows.collect();
    if all_namespaces {
        columns.insert(0, Column::new("NAMESPACE"));
    }
    table::render(&columns, &rows)
}

/// A dry run must never read as a response that was carried out.
fn action_label(action: &ResponseAction) -> String {
    if action.spec.dry_run { format!("{} (dry run)", action.spec.action) } else { action.spec.action.to_string() }
}

/// The alert queue: one line per alert, in the order given.
pub fn alerts_table(alerts: &[Alert], all_namespaces: bool, now: Timestamp) -> String {
    let mut columns = vec![
        Column::new("NAME"),
        Column::max("TYPE", 40),
        Column::new("SEVERITY"),
        Column::new("STATE"),
        Column::max("ENTITY", 40),
        Column::new("SEEN"),
        Column::max("ASSIGNEE", 32),
        Column::new("AGE"),
        Column::new("ACTIONS"),
    ];
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let mut row = vec![
                a.name_any(),
                a.spec.alert_type.0.clone(),
                format!("{:?}", a.spec.severity),
                a.spec.state.as_str().to_owned(),
                entity(&a.spec.entities),
                a.status.as_ref().map_or_else(String::new, |s| s.occurrences.to_string()),
                a.spec.assignee.clone().unwrap_or_default(),
                table::age(now, a.spec.detected_at.0),
                a.status.as_ref().map_or(0, |s| s.actions.len()).to_string(),
            ];
            if all_namespaces {
                row.insert(0, a.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    if all_namespaces {
        columns.insert(0, Column::new("NAMESPACE"));
    }
    table::render(&columns, &rows)
}

fn age(now: Timestamp, created: Option<&Time>) -> String {
    created.map_or_else(|| NONE.to_owned(), |t| table::age(now, t.0))
}

fn when(now: Timestamp, t: &Time) -> String {
    format!("{} ({} ago)", table::time(t.0), table::age(now, t.0))
}

/// Labelled fields, the values aligned at `width`; fields without a value are left out.
fn fields(width: usize, fields: &[(&str, Option<String>)]) -> String {
    fields
        .iter()
        .filter_map(|(label, value)| value.as_ref().map(|v| format!("{:<width$}  {v}\n", format!("{label}:"))))
        .collect()
}

/// A titled table indented under its title, or nothing when it has no rows.
fn section(title: &str, columns: &[Column], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let body: String = table::render(columns, &rows).lines().map(|line| format!("  {line}\n")).collect();
    format!("\n{title}:\n{body}")
}

/// A titled block of prose, indented, kept as written (guidance is numbered steps, one per line).
fn prose(title: &str, text: &str) -> String {
    let body: String = text.trim().lines().map(|line| format!("    {line}\n")).collect();
    format!("  {title}:\n{body}")
}

fn history(entries: &[HistoryEntry]) -> String {
    let rows = entries
        .iter()
        .map(|h| vec![table::time(h.time.0), h.event.clone(), h.by.clone().unwrap_or_default(), h.message.clone()])
        .collect();
    let columns = [Column::new("TIME"), Column::new("EVENT"), Column::new("BY"), Column::new("MESSAGE")];
    section("History", &columns, rows)
}

fn allow_list(list: &AllowList) -> Option<String> {
    let mut peers = Vec::new();
    if !list.namespaces.is_empty() {
        peers.push(format!("pods in namespaces {}", list.namespaces.join(", ")));
    }
    if !list.cidrs.is_empty() {
        peers.push(format!("addresses in {}", list.cidrs.join(", ")));
    }
    if peers.is_empty() {
        return None;
    }
    let ports: Vec<String> = list.ports.iter().map(|p| format!("{}/{}", p.port, p.protocol.as_str())).collect();
    let on = if ports.is_empty() { String::new() } else { format!(" on {}", ports.join(", ")) };
    Some(format!("{}{on}", peers.join(" and ")))
}

fn isolation_summary(options: Option<&IsolationOptions>) -> String {
    let Some(options) = options else { return "cut off completely".to_owned() };
    let mut allowed = Vec::new();
    if options.allow_dns {
        allowed.push("cluster DNS".to_owned());
    }
    if let Some(ingress) = allow_list(&options.ingress) {
        allowed.push(format!("ingress from {ingress}"));
    }
    if let Some(egress) = allow_list(&options.egress) {
        allowed.push(format!("egress to {egress}"));
    }
    if allowed.is_empty() { "cut off completely".to_owned() } else { format!("cut off except {}", allowed.join("; ")) }
}

/// One action in full: what was asked, by whom, what happened, and its whole history.
pub fn show_action(action: &ResponseAction, now: Timestamp) -> String {
    let spec = &action.spec;
    let status = action.status.clone().unwrap_or_default();
    let options = match spec.action {
        ActionKind::Isolate => ("Isolation", Some(isolation_summary(spec.isolation.as_ref()))),
        ActionKind::Terminate => {
            let terminate = spec.terminate.clone().unwrap_or_default();
            let grace = terminate
                .grace_period_seconds
                .map_or_else(|| "the pod's own grace period".to_owned(), |s| format!("grace period {s}s"));
            let evidence = terminate.evidence.map_or_else(
                || "no evidence capture".to_owned(),
                |e| format!("evidence {:?} (logs up to {} bytes per container)", e.capture, e.log_limit_bytes),
            );
            ("Terminate", Some(format!("{grace}; {evidence}")))
        }
        ActionKind::Release => {
            let what = spec.release.as_ref().and_then(|r| r.action_name.clone()).map_or_else(
                || format!("every active isolation of pod {}", spec.target.pod),
                |name| format!("isolation {name}"),
            );
            ("Releases", Some(what))
        }
    };
    let approval = match (&spec.approval, spec.approval_required) {
        (_, false) => None,
        (None, true) => Some("required, not yet given".to_owned()),
        (Some(a), true) => Some(format!(
            "{} by {}{}",
            decision_word(a.decision),
            a.by,
            a.comment.as_ref().map_or_else(String::new, |c| format!(": {c}"))
        )),
    };
    let resolved = status.target.as_ref().map(|t| {
        let mut details = vec![format!("uid {}", t.uid)];
        details.extend(t.node.as_ref().map(|n| format!("node {n}")));
        details.extend(t.owner.as_ref().map(|o| format!("owned by {}/{}", o.kind, o.name)));
        format!("pod {} ({})", t.pod, details.join(", "))
    });
    let created_objects: Vec<String> =
        status.created_objects.iter().map(|o| format!("{} {}/{}", o.kind, o.namespace, o.name)).collect();
    // The values of both blocks line up after the longest label.
    let width = "Excluded policies:".len();
    let mut out = fields(
        width,
        &[
            ("Name", Some(action.name_any())),
            ("Namespace", action.namespace()),
            ("Action", Some(action_label(action))),
            ("Target", Some(format!("pod {}", spec.target.pod))),
            ("Requested by", Some(spec.requested_by.clone())),
            ("Created", action.creation_timestamp().map(|t| when(now, &t))),
            ("Comment", spec.comment.clone()),
            ("Alert", spec.alert_ref.as_ref().map(|r| r.name.clone())),
            ("Policy", spec.policy_ref.as_ref().map(|r| r.name.clone())),
            ("Approval", approval),
            options,
        ],
    );
    out.push('\n');
    out += &fields(
        width,
        &[
            ("Phase", Some(phase_of(action).as_str().to_owned())),
            ("Message", status.message.clone()),
            ("Started", status.start_time.as_ref().map(|t| when(now, t))),
            ("Completed", status.completion_time.as_ref().map(|t| when(now, t))),
            ("Resolved target", resolved),
            ("Released by", status.released_by.clone()),
            ("Undoes", (!status.releases.is_empty()).then(|| status.releases.join(", "))),
            ("Created objects", (!created_objects.is_empty()).then(|| created_objects.join(", "))),
            ("Excluded policies", (!status.excluded_policies.is_empty()).then(|| status.excluded_policies.join(", "))),
        ],
    );
    let conditions = status
        .conditions
        .iter()
        .map(|c| vec![c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()])
        .collect();
    let columns = [Column::new("TYPE"), Column::new("STATUS"), Column::new("REASON"), Column::new("MESSAGE")];
    out += &section("Conditions", &columns, conditions);
    if let Some(evidence) = &status.evidence {
        let source = &evidence.config_map;
        let completeness = if evidence.complete { "complete" } else { "incomplete" };
        out += &format!(
            "\nEvidence: ConfigMap {}/{}, captured {}, {completeness}\n",
            source.namespace,
            source.name,
            table::time(evidence.captured_at.0)
        );
        let items = evidence
            .items
            .iter()
            .map(|i| vec![i.key.clone(), i.bytes.to_string(), i.note.clone().unwrap_or_default()])
            .collect::<Vec<_>>();
        let body = table::render(&[Column::new("KEY"), Column::new("BYTES"), Column::new("NOTE")], &items);
        out += &body.lines().map(|line| format!("  {line}\n")).collect::<String>();
    }
    out += &history(&status.history);
    out
}

/// What an alert is about, in a word: its pod, else its workload (`Deployment/web`), else
/// the user who made the request.
fn entity(e: &riposte_crds::Entities) -> String {
    match (&e.pod, &e.workload_kind, &e.workload_name, &e.user) {
        (Some(pod), ..) => pod.clone(),
        (None, Some(kind), Some(name), _) => format!("{kind}/{name}"),
        (None, _, _, Some(user)) => format!("user/{user}"),
        _ => String::new(),
    }
}

/// One alert in full: the detection, its triage, what to do about it, and what was done.
pub fn show_alert(alert: &Alert, now: Timestamp) -> String {
    let spec = &alert.spec;
    let status = alert.status.clone().unwrap_or_default();
    let tactics: Vec<String> = spec.tactics.iter().map(|t| format!("{t:?}")).collect();
    let e = &spec.entities;
    let entities: Vec<String> = [
        ("namespace", &e.namespace),
        ("pod", &e.pod),
        ("container", &e.container),
        ("image", &e.image),
        ("node", &e.node),
        ("serviceAccount", &e.service_account),
        ("workloadKind", &e.workload_kind),
        ("workloadName", &e.workload_name),
        ("user", &e.user),
    ]
    .iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
    .collect();
    let width = "Classification:".len();
    let mut out = fields(
        width,
        &[
            ("Name", Some(alert.name_any())),
            ("Namespace", alert.namespace()),
            ("Type", Some(spec.alert_type.0.clone())),
            ("Title", Some(spec.title.clone())),
            ("Severity", Some(format!("{:?}", spec.severity))),
            ("Tactics", (!tactics.is_empty()).then(|| tactics.join(", "))),
            ("Detected", Some(when(now, &spec.detected_at))),
            ("Source", spec.source.clone()),
            ("Entities", (!entities.is_empty()).then(|| entities.join(" "))),
        ],
    );
    let evidence = spec.evidence.iter().map(|e| vec![e.name.clone(), e.value.clone()]).collect();
    out += &section("Evidence", &[Column::new("NAME"), Column::new("VALUE")], evidence);
    out.push('\n');
    out += &fields(
        width,
        &[
            ("State", Some(spec.state.as_str().to_owned())),
            ("Assignee", Some(spec.assignee.clone().unwrap_or_else(|| NONE.to_owned()))),
            ("Classification", spec.classification.map(|c| c.as_str().to_owned())),
            ("Triaged by", spec.triaged_by.clone()),
            ("Occurrences", Some(status.occurrences.to_string())),
            ("Last seen", status.last_seen.as_ref().map(|t| when(now, t))),
        ],
    );
    // An operator that does not fill in the guidance yet still has the catalog's.
    if let Some(guidance) = status.guidance.as_ref().or_else(|| catalog::guidance(&spec.alert_type.0)) {
        out += "\nGuidance:\n";
        out += &prose("What it means", &guidance.meaning);
        out += &prose("How to check", &guidance.check);
        out += &prose("How to fix", &guidance.fix);
    }
    let actions = status
        .actions
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.action.to_string(),
                a.phase.map_or("Pending", |p| p.as_str()).to_owned(),
                a.requested_by.clone().unwrap_or_default(),
                a.policy.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let columns = [
        Column::new("NAME"),
        Column::new("ACTION"),
        Column::new("PHASE"),
        Column::new("REQUESTED BY"),
        Column::new("POLICY"),
    ];
    out += &section("Actions", &columns, actions);
    let decisions = status
        .policy_decisions
        .iter()
        .flatten()
        .map(|d| {
            vec![
                table::time(d.time.0),
                d.policy.clone(),
                d.decision.as_str().to_owned(),
                d.actions.join(", "),
                d.message.clone(),
            ]
        })
        .collect();
    let columns = [
        Column::new("TIME"),
        Column::new("POLICY"),
        Column::new("DECISION"),
        Column::new("ACTIONS"),
        Column::new("MESSAGE"),
    ];
    out += &section("Policy decisions", &columns, decisions);
    out += &history(&status.history);
    out
}

/// What --wait reports: the phase and message of an action that got somewhere, or an error
/// (exit status 1) when it failed or was rejected.
pub fn wait_outcome(action: &ResponseAction) -> Result<String, Error> {
    let namespace = action.namespace().unwrap_or_default();
    let name = action.name_any();
    let phase = phase_of(action);
    let message = action.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
    match phase {
        Phase::Failed | Phase::Rejected => Err(Error::ActionEnded { namespace, name, phase: phase.as_str(), message }),
        _ => {
            let mut line = format!("responseaction {namespace}/{name} {}", phase.as_str());
            if !message.is_empty() {
                line += &format!(": {message}");
            }
            if phase == Phase::AwaitingApproval {
                line +=
                    &format!("\nanother responder approves it with `kubectl riposte approve {name} -n {namespace}`");
            }
            Ok(line)
        }
    }
}

/// One line on an alert's lifecycle after a triage.
pub fn triage_summary(alert: &Alert) -> String {
    let spec = &alert.spec;
    let assignee = spec.assignee.as_ref().map_or_else(|| "unassigned".to_owned(), |a| format!("assigned to {a}"));
    let classification = spec.classification.map_or_else(String::new, |c| format!(", {}", c.as_str()));
    format!(
        "alert {}/{}: {}, {assignee}{classification}",
        alert.namespace().unwrap_or_default(),
        alert.name_any(),
        spec.state.as_str()
    )
}

/// Whether the kill switch is thrown, as the operator reads it.
pub fn automation_paused(switch: Option<&ConfigMap>) -> bool {
    switch.and_then(|c| c.data.as_ref()).and_then(|d| d.get("paused")).is_some_and(|v| v.trim() == "true")
}

/// The kill switch and the policies it stops.
pub fn automation_status(
    namespace: &str,
    switch: Option<&ConfigMap>,
    policies: &[ResponsePolicy],
    now: Timestamp,
) -> String {
    let changed_by = switch
        .and_then(|c| c.annotations().get(CHANGED_BY_ANNOTATION))
        .map_or_else(String::new, |by| format!(", last changed by {by}"));
    let mut out = match (switch, automation_paused(switch)) {
        (None, _) => format!(
            "Automation: running (no ConfigMap {namespace}/{AUTOMATION_CONFIG_MAP}; `kubectl riposte automation pause` stops every policy)\n"
        ),
        (Some(_), true) => {
            format!("Automation: PAUSED by {namespace}/{AUTOMATION_CONFIG_MAP}{changed_by}; no policy acts\n")
        }
        (Some(_), false) => format!("Automation: running ({namespace}/{AUTOMATION_CONFIG_MAP}{changed_by})\n"),
    };
    if policies.is_empty() {
        out += "\nNo ResponsePolicies: nothing responds on its own.\n";
        return out;
    }
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            vec![
                p.name_any(),
                p.spec.mode.as_str().to_owned(),
                p.spec.suspend.to_string(),
                status.matched_alerts.to_string(),
                status.actions_created.to_string(),
                status.last_action_time.as_ref().map_or_else(|| NONE.to_owned(), |t| table::age(now, t.0)),
            ]
        })
        .collect();
    let columns = [
        Column::new("POLICY"),
        Column::new("MODE"),
        Column::new("SUSPENDED"),
        Column::new("MATCHED"),
        Column::new("ACTIONS CREATED"),
        Column::new("LAST ACTION"),
    ];
    out.push('\n');
    out += &table::render(&columns, &rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_crds::{
        AlertPolicyDecision, AlertSpec, AlertState, AlertStatus, Approval, ApprovalDecision, Classification,
        EvidenceItem, EvidenceRecord, LinkedAction, ObjectReference, OwnerSummary, PolicyDecision, ResolvedTarget,
        ResponseActionStatus, Severity,
    };
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn ago(seconds: i64) -> Time {
        Time(Timestamp::from_second(NOW - seconds).unwrap())
    }

    fn action(value: serde_json::Value) -> ResponseAction {
        serde_json::from_value(value).unwrap()
    }

    fn isolation() -> ResponseAction {
        let mut a = action(json!({
            "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction",
            "metadata": { "name": "isolate-web-1-x7k2p", "namespace": "shop" },
            "spec": {
                "action": "Isolate", "target": { "pod": "web-1" }, "requestedBy": "alice",
                "comment": "reverse shell", "alertRef": { "name": "shell-web" },
                "approvalRequired": true,
                "approval": { "decision": "Approved", "by": "bob", "comment": "go" },
                "isolation": { "allowDns": true, "ingress": { "namespaces": ["forensics"], "ports": [{ "port": 22 }] } },
                "comments": [{ "message": "dump taken", "author": "carol" }],
            },
        }));
        a.metadata.creation_timestamp = Some(ago(300));
        a.status = Some(ResponseActionStatus {
            phase: Some(Phase::Succeeded),
            message: Some("pod isolated".into()),
            target: Some(ResolvedTarget {
                pod: "web-1".into(),
                uid: "u-1".into(),
                node: Some("node-a".into()),
                owner: Some(OwnerSummary { kind: "ReplicaSet".into(), name: "web".into() }),
            }),
            history: vec![
                HistoryEntry {
                    time: ago(290),
                    event: "Approved".into(),
                    message: "approved".into(),
                    by: Some("bob".into()),
                },
                HistoryEntry { time: ago(280), event: "PolicyApplied".into(), message: "isolated".into(), by: None },
            ],
            ..Default::default()
        });
        a
    }

    #[test]
    fn the_action_center_lists_namespace_only_across_namespaces() {
        let mut dry = isolation();
        dry.metadata.name = Some("isolate-db-0-abcde".into());
        dry.spec.dry_run = true;
        dry.spec.alert_ref = None;
        dry.status = None;
        let out = actions_table(&[isolation(), dry.clone()], false, now());
        assert_eq!(
            out,
            "NAME                  ACTION              TARGET   PHASE       REQUESTED BY   AGE   ALERT       MESSAGE\n\
             isolate-web-1-x7k2p   Isolate             web-1    Succeeded   alice          5m    shell-web   pod isolated\n\
             isolate-db-0-abcde    Isolate (dry run)   web-1    Pending     alice          5m\n"
        );
        let all = actions_table(&[dry], true, now());
        assert!(all.starts_with("NAMESPACE   NAME"), "{all}");
        assert!(all.lines().nth(1).unwrap().starts_with("shop        isolate-db-0-abcde"), "{all}");
    }

    fn alert() -> Alert {
        let mut spec = AlertSpec::detected("K8S.NODE_ReverseShell", "Reverse shell".into(), Severity::High, ago(7200));
        spec.state = AlertState::InProgress;
        spec.assignee = Some("alice".into());
        spec.entities.pod = Some("web-1".into());
        spec.entities.namespace = Some("shop".into());
        spec.evidence = vec![riposte_crds::Evidence { name: "process".into(), value: "/bin/sh -i".into() }];
        let mut a = Alert::new("shell-web", spec);
        a.metadata.namespace = Some("shop".into());
        a.status = Some(AlertStatus {
            occurrences: 3,
            actions: vec![LinkedAction {
                name: "isolate-web-1-x7k2p".into(),
                action: ActionKind::Isolate,
                phase: Some(Phase::Succeeded),
                requested_by: Some("system:serviceaccount:riposte-system:riposte".into()),
                policy: Some("isolate-shells".into()),
            }],
            action_count: 1,
            policy_decisions: Some(vec![AlertPolicyDecision {
                policy: "isolate-shells".into(),
                time: ago(7190),
                decision: PolicyDecision::Acted,
                message: "isolated".into(),
                actions: vec!["isolate-web-1-x7k2p".into()],
            }]),
            ..Default::default()
        });
        a
    }

    #[test]
    fn the_alert_queue_shows_occurrences_and_linked_actions() {
        let out = alerts_table(&[alert()], false, now());
        assert_eq!(
            out,
            "NAME        TYPE                    SEVERITY   STATE        ENTITY   SEEN   ASSIGNEE   AGE    ACTIONS\n\
             shell-web   K8S.NODE_ReverseShell   High       InProgress   web-1    3      alice      120m   1\n"
        );
        let mut template = alert();
        template.spec.entities = riposte_crds::Entities {
            workload_kind: Some("Deployment".into()),
            workload_name: Some("web".into()),
            user: Some("mallory".into()),
            ..Default::default()
        };
        let mut binding = alert();
        binding.spec.entities = riposte_crds::Entities { user: Some("mallory".into()), ..Default::default() };
        let out = alerts_table(&[template, binding], false, now());
        let entities: Vec<&str> = out.lines().skip(1).map(|l| l.split_whitespace().nth(4).unwrap()).collect();
        assert_eq!(entities, ["Deployment/web", "user/mallory"]);
    }

    #[test]
    fn an_action_shows_its_request_outcome_and_timeline() {
        let out = show_action(&isolation(), now());
        for expected in [
            "Name:               isolate-web-1-x7k2p\n",
            "Action:             Isolate\n",
            "Requested by:       alice\n",
            "Created:            2027-01-15 07:55:00Z (5m ago)\n",
            "Approval:           approved by bob: go\n",
            "Isolation:          cut off except cluster DNS; ingress from pods in namespaces forensics on 22/TCP\n",
            "\nPhase:              Succeeded\n",
            "Resolved target:    pod web-1 (uid u-1, node node-a, owned by ReplicaSet/web)\n",
            "\nHistory:\n  TIME                   EVENT           BY    MESSAGE\n  2027-01-15 07:55:10Z   Approved        bob   approved\n  2027-01-15 07:55:20Z   PolicyApplied         isolated\n",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in\n{out}");
        }
        assert!(!out.contains("Policy:"), "an action without a policy shows no policy line:\n{out}");
    }

    #[test]
    fn a_terminate_shows_its_evidence() {
        let mut a = isolation();
        a.spec.action = ActionKind::Terminate;
        a.spec.isolation = None;
        a.spec.approval_required = false;
        a.spec.approval = None;
        a.spec.terminate =
            Some(crate::objects::terminate_options(Some(0), Some(riposte_crds::EvidenceCapture::BestEffort), None));
        a.status.as_mut().unwrap().evidence = Some(EvidenceRecord {
            config_map: ObjectReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "riposte-system".into(),
                name: "evidence-shop-web-1".into(),
            },
            captured_at: ago(100),
            complete: false,
            items: vec![
                EvidenceItem { key: "pod.yaml".into(), bytes: 1200, note: None },
                EvidenceItem { key: "logs-app.txt".into(), bytes: 0, note: Some("no kubelet".into()) },
            ],
        });
        let out = show_action(&a, now());
        assert!(
            out.contains(
                "Terminate:          grace period 0s; evidence BestEffort (logs up to 65536 bytes per container)\n"
            ),
            "{out}"
        );
        assert!(!out.contains("Approval:"), "{out}");
        assert!(
            out.contains(
                "\nEvidence: ConfigMap riposte-system/evidence-shop-web-1, captured 2027-01-15 07:58:20Z, incomplete\n  KEY            BYTES   NOTE\n  pod.yaml       1200\n  logs-app.txt   0       no kubelet\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn an_alert_shows_detection_triage_guidance_and_responses() {
        let out = show_alert(&alert(), now());
        for expected in [
            "Type:            K8S.NODE_ReverseShell\n",
            "Severity:        High\n",
            "Entities:        namespace=shop pod=web-1\n",
            "\nEvidence:\n  NAME      VALUE\n  process   /bin/sh -i\n",
            "State:           InProgress\n",
            "Assignee:        alice\n",
            "Occurrences:     3\n",
            "\nGuidance:\n  What it means:\n    ",
            "  How to check:\n",
            "  How to fix:\n",
            "isolate-web-1-x7k2p   Isolate   Succeeded   system:serviceaccount:riposte-system:riposte   isolate-shells\n",
            "\nPolicy decisions:\n",
            "isolate-shells   Acted      isolate-web-1-x7k2p   isolated\n",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in\n{out}");
        }
    }

    fn config_map(data: Option<&str>, by: Option<&str>) -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": { "name": "riposte-automation", "annotations": by.map(|b| json!({ "riposte.dev/changed-by": b })) },
            "data": data.map(|d| json!({ "paused": d })),
        }))
        .unwrap()
    }

    #[test]
    fn automation_is_paused_only_by_paused_true() {
        assert!(!automation_paused(None));
        assert!(automation_paused(Some(&config_map(Some("true"), None))));
        assert!(automation_paused(Some(&config_map(Some(" true\n"), None))));
        assert!(!automation_paused(Some(&config_map(Some("false"), None))));
        assert!(!automation_paused(Some(&config_map(Some("yes"), None))));
        assert!(!automation_paused(Some(&config_map(None, None))));
    }

    #[test]
    fn automation_status_says_who_paused_it_and_lists_policies() {
        let policy: ResponsePolicy = serde_json::from_value(json!({
            "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy",
            "metadata": { "name": "isolate-shells" },
            "spec": { "mode": "ApprovalRequired", "actions": [{ "action": "Isolate" }] },
            "status": { "matchedAlerts": 4, "actionsCreated": 2, "lastActionTime": "2027-01-15T07:00:00Z" },
        }))
        .unwrap();
        let paused =
            automation_status("riposte-system", Some(&config_map(Some("true"), Some("alice"))), &[policy], now());
        assert_eq!(
            paused,
            "Automation: PAUSED by riposte-system/riposte-automation, last changed by alice; no policy acts\n\n\
             POLICY           MODE               SUSPENDED   MATCHED   ACTIONS CREATED   LAST ACTION\n\
             isolate-shells   ApprovalRequired   false       4         2                 60m\n"
        );
        let none = automation_status("riposte-system", None, &[], now());
        assert!(none.starts_with("Automation: running (no ConfigMap riposte-system/riposte-automation;"), "{none}");
        assert!(none.ends_with("No ResponsePolicies: nothing responds on its own.\n"), "{none}");
    }

    #[test]
    fn an_undecided_approval_says_so() {
        let mut a = isolation();
        a.spec.approval = Some(Approval { decision: ApprovalDecision::Rejected, by: "dan".into(), comment: None });
        assert!(show_action(&a, now()).contains("Approval:           rejected by dan\n"));
        a.spec.approval = None;
        assert!(show_action(&a, now()).contains("Approval:           required, not yet given\n"));
    }

    #[test]
    fn waiting_ends_in_an_error_only_when_the_action_failed_or_was_rejected() {
        let mut a = isolation();
        assert_eq!(wait_outcome(&a).unwrap(), "responseaction shop/isolate-web-1-x7k2p Succeeded: pod isolated");
        let status = a.status.as_mut().unwrap();
        status.phase = Some(Phase::AwaitingApproval);
        status.message = None;
        assert_eq!(
            wait_outcome(&a).unwrap(),
            "responseaction shop/isolate-web-1-x7k2p AwaitingApproval\n\
             another responder approves it with `kubectl riposte approve isolate-web-1-x7k2p -n shop`"
        );
        for (phase, message) in [(Phase::Failed, "pod web-1 not found"), (Phase::Rejected, "rejected by bob")] {
            let status = a.status.as_mut().unwrap();
            status.phase = Some(phase);
            status.message = Some(message.into());
            let e = wait_outcome(&a).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("responseaction shop/isolate-web-1-x7k2p ended {}: {message}", phase.as_str())
            );
        }
    }

    #[test]
    fn a_triage_is_summed_up_in_one_line() {
        let mut a = alert();
        assert_eq!(triage_summary(&a), "alert shop/shell-web: InProgress, assigned to alice");
        a.spec.assignee = None;
        a.spec.state = AlertState::Resolved;
        a.spec.classification = Some(Classification::FalsePositive);
        assert_eq!(triage_summary(&a), "alert shop/shell-web: Resolved, unassigned, FalsePositive");
    }
}
