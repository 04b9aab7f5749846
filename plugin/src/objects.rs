//! The objects and patches the plugin sends, built without touching the cluster.

use kube::ResourceExt;
use riposte_crds::{
    ActionKind, AlertRef, AlertState, Approval, ApprovalDecision, Classification, Comment, EvidenceCapture,
    EvidenceOptions, IsolationOptions, ReleaseOptions, ResponseAction, ResponseActionSpec, Target, TerminateOptions,
};
use serde_json::{Value, json};

use crate::error::Error;

/// The apiserver appends five random characters to a generateName, and an action's name
/// must fit in a label value (63 characters).
const MAX_GENERATE_NAME: usize = 57;

/// The ConfigMap, in the operator's namespace, whose `data.paused` stops every ResponsePolicy.
pub const AUTOMATION_CONFIG_MAP: &str = "riposte-automation";
/// Who last paused or resumed automation; the ConfigMap itself does not say.
pub const CHANGED_BY_ANNOTATION: &str = "riposte.dev/changed-by";

/// What every action the plugin creates carries, whatever its kind.
#[derive(Clone, Debug)]
pub struct Request {
    pub namespace: String,
    pub pod: String,
    /// The identity the apiserver authenticated: the admission policy rejects any other.
    pub requested_by: String,
    pub comment: Option<String>,
    pub alert: Option<String>,
    pub approval_required: bool,
    pub dry_run: bool,
}

/// The options of the one kind of action being requested.
#[derive(Clone, Debug)]
pub enum Options {
    Isolate(IsolationOptions),
    Terminate(TerminateOptions),
    Release(ReleaseOptions),
}

impl Options {
    fn kind(&self) -> ActionKind {
        match self {
            Options::Isolate(_) => ActionKind::Isolate,
            Options::Terminate(_) => ActionKind::Terminate,
            Options::Release(_) => ActionKind::Release,
        }
    }
}

/// A new ResponseAction, named by the apiserver from `<action>-<pod>-`.
pub fn action(request: &Request, options: Options) -> ResponseAction {
    let kind = options.kind();
    // Options equal to the defaults are left out, so the spec says only what was asked.
    let (isolation, terminate, release) = match options {
        Options::Isolate(o) => ((o != IsolationOptions::default()).then_some(o), None, None),
        Options::Terminate(o) => (None, (o != TerminateOptions::default()).then_some(o), None),
        Options::Release(o) => (None, None, (o != ReleaseOptions::default()).then_some(o)),
    };
    let spec = ResponseActionSpec {
        action: kind,
        target: Target { pod: request.pod.clone() },
        requested_by: request.requested_by.clone(),
        comment: request.comment.clone(),
        alert_ref: request.alert.clone().map(|name| AlertRef { name }),
        policy_ref: None,
        approval_required: request.approval_required,
        approval: None,
        dry_run: request.dry_run,
        isolation,
        terminate,
        release,
        comments: Vec::new(),
    };
    let mut action = ResponseAction::new("", spec);
    action.metadata.name = None;
    action.metadata.generate_name = Some(generate_name(kind, &request.pod));
    action.metadata.namespace = Some(request.namespace.clone());
    action
}

/// `isolate-web-1-`: the pod's name cut so that the generated name stays within 63 characters.
pub fn generate_name(kind: ActionKind, pod: &str) -> String {
    let verb = kind.to_string().to_lowercase();
    let room = MAX_GENERATE_NAME - verb.len() - 2;
    let cut: String = pod.chars().take(room).collect();
    // A cut pod name may end in '.' or '-', which would leave an invalid name.
    format!("{verb}-{}-", cut.trim_end_matches(['.', '-']))
}

/// Terminate options from the command line; evidence without a log limit gets the CRD's default.
pub fn terminate_options(
    grace_period_seconds: Option<i64>,
    capture: Option<EvidenceCapture>,
    log_limit_bytes: Option<i64>,
) -> TerminateOptions {
    let evidence = capture.map(|capture| {
        let mut options: EvidenceOptions =
            serde_json::from_value(json!({ "capture": capture })).expect("EvidenceOptions defaults all but capture");
        if let Some(limit) = log_limit_bytes {
            options.log_limit_bytes = limit;
        }
        options
    });
    TerminateOptions { grace_period_seconds, evidence }
}

/// A release must name an isolation of the same pod; the operator would fail it otherwise,
/// later and less clearly.
pub fn check_release_of(isolation: &ResponseAction, pod: &str) -> Result<(), Error> {
    let namespace = isolation.namespace().unwrap_or_default();
    let name = isolation.name_any();
    if isolation.spec.action != ActionKind::Isolate {
        return Err(Error::NotAnIsolation { namespace, name, kind: isolation.spec.action.to_string() });
    }
    if isolation.spec.target.pod != pod {
        return Err(Error::OtherTarget {
            namespace,
            name,
            isolated: isolation.spec.target.pod.clone(),
            pod: pod.into(),
        });
    }
    Ok(())
}

/// Appends a comment, only to the version of the object that was read: the `test` makes the
/// apiserver refuse the patch if anyone wrote in between, so no comment is ever lost or
/// overwritten. The first comment creates the list.
pub fn comment_patch(resource_version: &str, has_comments: bool, comment: &Comment) -> json_patch::Patch {
    let add = if has_comments {
        json!({ "op": "add", "path": "/spec/comments/-", "value": comment })
    } else {
        json!({ "op": "add", "path": "/spec/comments", "value": [comment] })
    };
    let test = json!({ "op": "test", "path": "/metadata/resourceVersion", "value": resource_version });
    serde_json::from_value(json!([test, add])).expect("a test and an add are valid JSON patch operations")
}

/// Refuses to decide an action that needs no decision or already has one.
pub fn check_undecided(action: &ResponseAction) -> Result<(), Error> {
    let namespace = action.namespace().unwrap_or_default();
    let name = action.name_any();
    if !action.spec.approval_required {
        return Err(Error::ApprovalNotRequired { namespace, name });
    }
    match &action.spec.approval {
        Some(approval) => Err(Error::AlreadyDecided {
            namespace,
            name,
            decision: decision_word(approval.decision),
            by: approval.by.clone(),
        }),
        None => Ok(()),
    }
}

pub fn decision_word(decision: ApprovalDecision) -> &'static str {
    match decision {
        ApprovalDecision::Approved => "approved",
        ApprovalDecision::Rejected => "rejected",
    }
}

/// The decision on an action, as a merge patch that applies only to the version that was
/// read, so two responders deciding at once cannot both win.
pub fn approval_patch(resource_version: &str, decision: ApprovalDecision, by: &str, comment: Option<String>) -> Value {
    let approval = Approval { decision, by: by.to_owned(), comment };
    json!({ "metadata": { "resourceVersion": resource_version }, "spec": { "approval": approval } })
}

/// Who owns an alert after a triage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignee {
    To(String),
    Nobody,
}

/// The lifecycle changes of one triage; unset fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct Triage {
    pub state: Option<AlertState>,
    pub assignee: Option<Assignee>,
    pub classification: Option<Classification>,
}

/// The triage as a merge patch, signed by `by` as the admission policy requires.
pub fn triage_patch(triage: &Triage, by: &str) -> Value {
    let mut spec = json!({ "triagedBy": by });
    if let Some(state) = triage.state {
        spec["state"] = json!(state);
    }
    match &triage.assignee {
        Some(Assignee::To(user)) => spec["assignee"] = json!(user),
        // null removes the field in a merge patch.
        Some(Assignee::Nobody) => spec["assignee"] = Value::Null,
        None => {}
    }
    if let Some(classification) = triage.classification {
        spec["classification"] = json!(classification);
    }
    json!({ "spec": spec })
}

/// The kill switch, for server-side apply; the annotation records who threw it.
pub fn automation_config_map(namespace: &str, paused: bool, by: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": AUTOMATION_CONFIG_MAP,
            "namespace": namespace,
            "annotations": { CHANGED_BY_ANNOTATION: by },
        },
        "data": { "paused": paused.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_crds::{AllowList, Phase, ResponseActionStatus};

    fn request() -> Request {
        Request {
            namespace: "shop".into(),
            pod: "web-1".into(),
            requested_by: "alice".into(),
            comment: None,
            alert: None,
            approval_required: false,
            dry_run: false,
        }
    }

    fn spec_json(action: &ResponseAction) -> Value {
        serde_json::to_value(&action.spec).unwrap()
    }

    #[test]
    fn an_isolation_carries_the_requester_and_its_allow_lists() {
        let request = Request {
            comment: Some("reverse shell".into()),
            alert: Some("shell-web".into()),
            approval_required: true,
            ..request()
        };
        let isolation = IsolationOptions {
            allow_dns: true,
            ingress: AllowList { namespaces: vec!["forensics".into()], ..Default::default() },
            egress: AllowList { cidrs: vec!["10.20.0.0/16".into()], ..Default::default() },
        };
        let action = action(&request, Options::Isolate(isolation));
        assert_eq!(action.metadata.name, None);
        assert_eq!(action.metadata.generate_name.as_deref(), Some("isolate-web-1-"));
        assert_eq!(action.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            spec_json(&action),
            json!({
                "action": "Isolate",
                "target": { "pod": "web-1" },
                "requestedBy": "alice",
                "comment": "reverse shell",
                "alertRef": { "name": "shell-web" },
                "approvalRequired": true,
                "dryRun": false,
                "isolation": {
                    "allowDns": true,
                    "ingress": { "namespaces": ["forensics"], "cidrs": [], "ports": [] },
                    "egress": { "namespaces": [], "cidrs": ["10.20.0.0/16"], "ports": [] },
                },
            })
        );
    }

    #[test]
    fn a_full_isolation_has_no_options() {
        let action = action(&Request { dry_run: true, ..request() }, Options::Isolate(IsolationOptions::default()));
        assert_eq!(
            spec_json(&action),
            json!({
                "action": "Isolate", "target": { "pod": "web-1" }, "requestedBy": "alice",
                "approvalRequired": false, "dryRun": true,
            })
        );
    }

    #[test]
    fn a_termination_carries_grace_period_and_evidence() {
        let options = terminate_options(Some(0), Some(EvidenceCapture::Required), Some(4096));
        let action = action(&request(), Options::Terminate(options));
        assert_eq!(action.metadata.generate_name.as_deref(), Some("terminate-web-1-"));
        assert_eq!(
            spec_json(&action)["terminate"],
            json!({ "gracePeriodSeconds": 0, "evidence": { "capture": "Required", "logLimitBytes": 4096 } })
        );
        // Evidence without a limit gets the CRD's default limit; no options, no terminate field.
        let best_effort = terminate_options(None, Some(EvidenceCapture::BestEffort), None);
        assert_eq!(
            serde_json::to_value(&best_effort).unwrap(),
            json!({ "evidence": { "capture": "BestEffort", "logLimitBytes": 65536 } })
        );
        let plain = action_spec(Options::Terminate(terminate_options(None, None, None)));
        assert_eq!(plain.get("terminate"), None);
        assert_eq!(plain["action"], "Terminate");
    }

    fn action_spec(options: Options) -> Value {
        spec_json(&action(&request(), options))
    }

    #[test]
    fn a_release_names_the_isolation_it_undoes_when_given() {
        let one = action_spec(Options::Release(ReleaseOptions { action_name: Some("isolate-web-1-abcde".into()) }));
        assert_eq!(one["action"], "Release");
        assert_eq!(one["release"], json!({ "actionName": "isolate-web-1-abcde" }));
        let every = action_spec(Options::Release(ReleaseOptions::default()));
        assert_eq!(every.get("release"), None);
    }

    #[test]
    fn generated_names_fit_in_a_label_value() {
        let long_pod = format!("{}.{}", "a".repeat(40), "b".repeat(40));
        for kind in [ActionKind::Isolate, ActionKind::Terminate, ActionKind::Release] {
            let prefix = generate_name(kind, &long_pod);
            assert!(prefix.len() <= MAX_GENERATE_NAME, "{prefix} is too long");
            assert!(prefix.len() + 5 <= 63);
            assert!(prefix.ends_with('-') && !prefix.ends_with("--") && !prefix.contains(".-"), "{prefix}");
        }
        // The cut falls right after the dot here: the dot is dropped, not left before the dash.
        let cut_at_dot = format!("{}.tail", "a".repeat(47));
        assert_eq!(generate_name(ActionKind::Isolate, &cut_at_dot), format!("isolate-{}-", "a".repeat(47)));
    }

    fn stored(name: &str, kind: ActionKind, pod: &str) -> ResponseAction {
        let mut options = request();
        options.pod = pod.into();
        let opts = match kind {
            ActionKind::Isolate => Options::Isolate(IsolationOptions::default()),
            ActionKind::Terminate => Options::Terminate(TerminateOptions::default()),
            ActionKind::Release => Options::Release(ReleaseOptions::default()),
        };
        let mut a = action(&options, opts);
        a.metadata.name = Some(name.into());
        a
    }

    #[test]
    fn a_release_must_name_an_isolation_of_the_same_pod() {
        assert!(check_release_of(&stored("iso", ActionKind::Isolate, "web-1"), "web-1").is_ok());
        let e = check_release_of(&stored("iso", ActionKind::Isolate, "web-2"), "web-1").unwrap_err();
        assert_eq!(e.to_string(), "responseaction shop/iso isolates pod web-2, not web-1");
        let e = check_release_of(&stored("term", ActionKind::Terminate, "web-1"), "web-1").unwrap_err();
        assert_eq!(e.to_string(), "responseaction shop/term is a Terminate action; a release undoes an Isolate action");
    }

    #[test]
    fn a_comment_is_appended_only_to_the_version_read() {
        let comment = Comment { message: "memory dump taken".into(), author: "alice".into(), time: None };
        let first = serde_json::to_value(comment_patch("41", false, &comment)).unwrap();
        assert_eq!(
            first,
            json!([
                { "op": "test", "path": "/metadata/resourceVersion", "value": "41" },
                { "op": "add", "path": "/spec/comments", "value": [{ "message": "memory dump taken", "author": "alice" }] },
            ])
        );
        let next = serde_json::to_value(comment_patch("42", true, &comment)).unwrap();
        assert_eq!(
            next,
            json!([
                { "op": "test", "path": "/metadata/resourceVersion", "value": "42" },
                { "op": "add", "path": "/spec/comments/-", "value": { "message": "memory dump taken", "author": "alice" } },
            ])
        );
    }

    #[test]
    fn the_comment_patch_appends_and_refuses_a_newer_version() {
        let comment = Comment { message: "second".into(), author: "bob".into(), time: None };
        let mut object = json!({
            "metadata": { "resourceVersion": "42" },
            "spec": { "comments": [{ "message": "first", "author": "alice" }] },
        });
        json_patch::patch(&mut object, &comment_patch("42", true, &comment)).unwrap();
        assert_eq!(object["spec"]["comments"][1], json!({ "message": "second", "author": "bob" }));
        assert_eq!(object["spec"]["comments"][0]["message"], "first");
        let mut changed = json!({ "metadata": { "resourceVersion": "43" }, "spec": {} });
        assert!(json_patch::patch(&mut changed, &comment_patch("42", false, &comment)).is_err());
    }

    #[test]
    fn only_an_undecided_action_that_requires_approval_can_be_decided() {
        let mut action = stored("iso", ActionKind::Isolate, "web-1");
        action.status = Some(ResponseActionStatus { phase: Some(Phase::Succeeded), ..Default::default() });
        assert_eq!(
            check_undecided(&action).unwrap_err().to_string(),
            "responseaction shop/iso does not require approval: it runs without one"
        );
        action.spec.approval_required = true;
        assert!(check_undecided(&action).is_ok());
        action.spec.approval =
            Some(Approval { decision: ApprovalDecision::Rejected, by: "carol".into(), comment: None });
        assert_eq!(
            check_undecided(&action).unwrap_err().to_string(),
            "responseaction shop/iso was already rejected by carol"
        );
    }

    #[test]
    fn an_approval_applies_to_the_version_read_and_names_the_approver() {
        assert_eq!(
            approval_patch("7", ApprovalDecision::Approved, "bob", Some("go ahead".into())),
            json!({
                "metadata": { "resourceVersion": "7" },
                "spec": { "approval": { "decision": "Approved", "by": "bob", "comment": "go ahead" } },
            })
        );
        assert_eq!(
            approval_patch("7", ApprovalDecision::Rejected, "bob", None)["spec"]["approval"],
            json!({ "decision": "Rejected", "by": "bob" })
        );
    }

    #[test]
    fn a_triage_patches_only_what_changes_and_is_always_signed() {
        let full = Triage {
            state: Some(AlertState::Resolved),
            assignee: Some(Assignee::To("alice".into())),
            classification: Some(Classification::TruePositive),
        };
        assert_eq!(
            triage_patch(&full, "alice"),
            json!({ "spec": { "state": "Resolved", "assignee": "alice", "classification": "TruePositive", "triagedBy": "alice" } })
        );
        let unassign = Triage { assignee: Some(Assignee::Nobody), ..Default::default() };
        assert_eq!(triage_patch(&unassign, "bob"), json!({ "spec": { "assignee": null, "triagedBy": "bob" } }));
    }

    #[test]
    fn the_kill_switch_says_paused_and_who_threw_it() {
        let cm = automation_config_map("riposte-system", true, "alice");
        assert_eq!(cm["metadata"]["name"], "riposte-automation");
        assert_eq!(cm["metadata"]["namespace"], "riposte-system");
        assert_eq!(cm["metadata"]["annotations"]["riposte.dev/changed-by"], "alice");
        assert_eq!(cm["data"], json!({ "paused": "true" }));
        assert_eq!(automation_config_map("ops", false, "bob")["data"], json!({ "paused": "false" }));
    }
}
