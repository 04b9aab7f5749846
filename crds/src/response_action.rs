//! `ResponseAction`: one response to a threat, taken on one pod.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::Comment;

/// The optional spec fields that may never change after creation. Comments (appended) and
/// the approval (given once) are the only parts of the spec that change later, so every
/// other optional field is listed here and the apiserver rejects any edit through the rule
/// generated from this list.
const IMMUTABLE_OPTIONAL_FIELDS: [&str; 6] = ["comment", "alertRef", "isolation", "terminate", "release", "policyRef"];

/// A response to a threat, carried out on one pod by the Riposte controller.
///
/// Lives in the namespace of the pod it acts on. Everything in the spec is immutable once
/// created, except that comments can be appended and a required approval given once.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "riposte.dev",
    version = "v1alpha1",
    kind = "ResponseAction",
    namespaced,
    status = "ResponseActionStatus",
    shortname = "ra",
    category = "riposte",
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.pod"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Comment", type_ = "string", json_path = ".spec.comment"),
    printcolumn(name = "Alert", type_ = "string", json_path = ".spec.alertRef.name"),
    printcolumn(name = "Requested by", type_ = "string", json_path = ".spec.requestedBy"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policyRef.name", priority = 1),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    validation = Rule::new("self.metadata.name.size() <= 63").message("a ResponseAction name must be at most 63 characters: it is used as a label value on the target pod"),
)]
#[x_kube(validation = Rule::new("self.action == 'Isolate' || !has(self.isolation)").message("spec.isolation applies only to action Isolate"))]
#[x_kube(validation = Rule::new("self.action == 'Terminate' || !has(self.terminate)").message("spec.terminate applies only to action Terminate"))]
#[x_kube(validation = Rule::new("self.action == 'Release' || !has(self.release)").message("spec.release applies only to action Release"))]
#[x_kube(validation = Rule::new("!has(oldSelf.comments) || has(self.comments)").message(crate::APPEND_ONLY_MESSAGE))]
#[x_kube(validation = Rule::new("!has(self.approval) || self.approvalRequired").message("spec.approval applies only to an action with approvalRequired: true"))]
#[x_kube(validation = Rule::new("!has(oldSelf.approval) || (has(self.approval) && self.approval == oldSelf.approval)").message("an approval cannot be changed or withdrawn once given"))]
#[x_kube(validation = Rule::new(crate::unchanged_when_present_rule(&IMMUTABLE_OPTIONAL_FIELDS)).message("spec is immutable once created, except that comments may be appended and an approval given"))]
#[serde(rename_all = "camelCase")]
pub struct ResponseActionSpec {
    /// What to do to the target pod.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.action is immutable"))]
    pub action: ActionKind,

    /// The pod to act on, in this ResponseAction's namespace.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.target is immutable"))]
    pub target: Target,

    /// Who requested this action: the identity the apiserver authenticated
    /// (`kubectl auth whoami`). The chart's admission policy rejects any other value, so
    /// the action center's record of who did what cannot be forged.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.requestedBy is immutable"))]
    pub requested_by: String,

    /// Why this action is taken. Shown in the action center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,

    /// The Alert (in this namespace) that this action responds to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_ref: Option<AlertRef>,

    /// The ResponsePolicy that created this action; set only by Riposte itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<PolicyRef>,

    /// Hold the action until a responder other than the requester approves it.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.approvalRequired is immutable"))]
    pub approval_required: bool,

    /// The decision on an action that requires approval. Given once; the chart's admission
    /// policy requires `by` to be the identity the apiserver authenticated, and not the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,

    /// Record what would be done without changing anything in the cluster.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.dryRun is immutable"))]
    pub dry_run: bool,

    /// Options of an Isolate action: what the isolated pod may still reach and be reached from.
    /// Without it the pod is cut off completely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationOptions>,

    /// Options of a Terminate action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<TerminateOptions>,

    /// Options of a Release action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseOptions>,

    /// Analysts' comments, added over time. Append-only: existing comments can be neither
    /// edited nor removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new(crate::APPEND_ONLY_RULE).message(crate::APPEND_ONLY_MESSAGE))]
    pub comments: Vec<Comment>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum ActionKind {
    /// Cut the pod off the network, except for what the isolation options allow.
    Isolate,
    /// Delete the pod.
    Terminate,
    /// Undo an isolation.
    Release,
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ActionKind::Isolate => "Isolate",
            ActionKind::Terminate => "Terminate",
            ActionKind::Release => "Release",
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Name of the pod.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub pod: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRef {
    /// Name of the Alert, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IsolationOptions {
    /// Let the pod resolve names through the cluster DNS (pods labelled k8s-app=kube-dns in
    /// kube-system, port 53). Off by default: DNS is a common exfiltration channel.
    #[serde(default)]
    pub allow_dns: bool,
    /// Traffic the isolated pod may still receive.
    #[serde(default)]
    pub ingress: AllowList,
    /// Traffic the isolated pod may still send.
    #[serde(default)]
    pub egress: AllowList,
}

/// Peers the isolated pod may still talk with. A peer is allowed when it is a pod in one of
/// `namespaces` or an address in one of `cidrs`; with `ports`, only on those ports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.ports.size() == 0 || self.namespaces.size() + self.cidrs.size() > 0").message("ports restrict the allowed peers: name at least one namespace or CIDR with them"))]
pub struct AllowList {
    /// Namespaces whose pods are allowed peers.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// Address ranges that are allowed peers, such as a forensics workstation's address.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 49)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("every entry of cidrs must be a CIDR such as 10.0.0.0/24"))]
    pub cidrs: Vec<String>,
    /// Ports the allowed peers may use; all ports when empty.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub ports: Vec<AllowedPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedPort {
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// Name of the ResponsePolicy.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub decision: ApprovalDecision,
    /// Who decided: the identity the apiserver authenticated.
    #[schemars(length(min = 1, max = 253))]
    pub by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum ApprovalDecision {
    Approved,
    Rejected,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TerminateOptions {
    /// Seconds the pod's containers get to stop; the pod's own setting when unset, 0 to kill at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub grace_period_seconds: Option<i64>,
    /// Keep the pod's manifest and its containers' recent logs before deleting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceOptions>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceOptions {
    /// BestEffort: keep what can be captured, record what could not, and delete the pod.
    /// Required: delete the pod only once everything was captured; otherwise fail.
    #[serde(default)]
    pub capture: EvidenceCapture,
    /// The most bytes of recent log kept per container.
    #[serde(default = "default_log_limit_bytes")]
    #[schemars(range(min = 1024, max = 262144))]
    pub log_limit_bytes: i64,
}

fn default_log_limit_bytes() -> i64 {
    65536
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum EvidenceCapture {
    #[default]
    BestEffort,
    Required,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseOptions {
    /// The Isolate action to undo. When unset, every active isolation of the target pod is undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub action_name: Option<String>,
}

/// What happened to a ResponseAction, as recorded by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseActionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// One line on the current state, for the action center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The pod as resolved when the action was first carried out. Later reconciles act on
    /// this UID only, so a recreated pod with the same name is never touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ResolvedTarget>,
    /// Objects this action created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_objects: Vec<ObjectReference>,
    /// Existing NetworkPolicies that selected the isolated pod and allowed traffic, and that
    /// this isolation therefore keeps from selecting it until release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_policies: Vec<String>,
    /// For an Isolate action: the Release action that undid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    /// For a Release action: the Isolate actions it undoes, fixed when first reconciled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<String>,
    /// For a Terminate action with evidence capture: what was kept, and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Every step and comment, oldest first. Entries are never removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceRecord {
    /// The ConfigMap (immutable, in the operator's namespace) holding the evidence.
    pub config_map: ObjectReference,
    pub captured_at: Time,
    /// Whether everything asked for was captured.
    pub complete: bool,
    /// Each piece of evidence: the pod manifest and one log per container.
    pub items: Vec<EvidenceItem>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceItem {
    /// The key in the ConfigMap, such as pod.yaml or logs-app.txt.
    pub key: String,
    pub bytes: i64,
    /// Why it is missing or cut short, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Phase {
    Pending,
    /// Held until a responder approves or rejects it.
    AwaitingApproval,
    Running,
    Succeeded,
    Failed,
    /// An isolation that a Release action (or the deletion of this action, or of the pod) undid.
    Released,
    /// A responder rejected the action; nothing was done.
    Rejected,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Released | Phase::Rejected)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Rejected => "Rejected",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Released => "Released",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTarget {
    pub pod: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The pod's controller (ReplicaSet, StatefulSet, Job, ...): when set, a terminated pod
    /// comes back as a new pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerSummary>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerSummary {
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub time: Time,
    /// What the entry records, such as TargetResolved, PolicyApplied, Comment or Released.
    pub event: String,
    pub message: String,
    /// Who did it, when a person or a policy did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}
