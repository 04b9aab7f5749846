//! `ResponsePolicy`: automated response. A policy matches Alerts and answers them with
//! ResponseActions that reference the alert and name the policy, so every automated step
//! lands in the same action center as a manual one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::{ActionKind, AlertType, IsolationOptions, Severity, Tactic, TerminateOptions};

/// Matches Alerts and responds to them with ResponseActions. Cluster-scoped: a platform
/// team decides where Riposte may act on its own. Never acts in protected namespaces.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "riposte.dev",
    version = "v1alpha1",
    kind = "ResponsePolicy",
    status = "ResponsePolicyStatus",
    shortname = "rpol",
    category = "riposte",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Matched", type_ = "integer", json_path = ".status.matchedAlerts"),
    printcolumn(name = "Actions", type_ = "integer", json_path = ".status.actionsCreated"),
    printcolumn(name = "Last action", type_ = "date", json_path = ".status.lastActionTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("a ResponsePolicy name must be at most 40 characters: it is part of the names of the actions it creates"),
)]
#[x_kube(validation = Rule::new("self.actions.all(a, self.actions.filter(b, b.action == a.action).size() == 1)").message("each action kind may appear at most once in spec.actions"))]
#[serde(rename_all = "camelCase")]
pub struct ResponsePolicySpec {
    /// Automatic: act at once. ApprovalRequired: create the actions, which wait until a
    /// responder approves them. DryRun: create dry-run actions that record what would be done.
    pub mode: PolicyMode,

    /// Stop this policy from acting, without deleting it.
    #[serde(default)]
    pub suspend: bool,

    /// Which Alerts this policy responds to. Every set criterion must hold.
    #[serde(default)]
    pub r#match: AlertMatch,

    /// Alerts this policy never responds to, even when they match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<PolicyExclusions>,

    /// The responses, carried out on the alert's pod in this order.
    #[schemars(length(min = 1, max = 2))]
    pub actions: Vec<PolicyAction>,

    /// At most this many actions per hour from this policy, across the cluster; alerts
    /// beyond it are recorded as rate-limited and left to analysts.
    #[serde(default = "default_max_actions_per_hour")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_actions_per_hour: i32,

    /// After acting on a pod, do not act on the same pod again for this long (seconds).
    #[serde(default = "default_cooldown_seconds")]
    #[schemars(range(min = 0, max = 604800))]
    pub cooldown_seconds: i64,
}

fn default_max_actions_per_hour() -> i32 {
    20
}

fn default_cooldown_seconds() -> i64 {
    900
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum PolicyMode {
    Automatic,
    ApprovalRequired,
    DryRun,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Automatic => "Automatic",
            PolicyMode::ApprovalRequired => "ApprovalRequired",
            PolicyMode::DryRun => "DryRun",
        }
    }
}

/// Criteria on an Alert and its pod. Empty lists match everything.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertMatch {
    /// Alert types (catalog ids); any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub alert_types: Vec<AlertType>,
    /// The lowest severity that matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// The alert must carry at least one of these tactics; any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub tactics: Vec<Tactic>,
    /// Namespaces of the alert's pod; any (but the protected ones) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// Labels of the alert's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyExclusions {
    /// Namespaces never acted on by this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// Pods never acted on by this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// One response of a policy: Isolate or Terminate, with that action's options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.action != 'Release'").message("a policy responds with Isolate or Terminate; releases are for analysts"))]
#[x_kube(validation = Rule::new("self.action == 'Isolate' || !has(self.isolation)").message("isolation applies only to action Isolate"))]
#[x_kube(validation = Rule::new("self.action == 'Terminate' || !has(self.terminate)").message("terminate applies only to action Terminate"))]
pub struct PolicyAction {
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<TerminateOptions>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponsePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Alerts that matched this policy.
    #[serde(default)]
    pub matched_alerts: i64,
    /// ResponseActions this policy created.
    #[serde(default)]
    pub actions_created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action_time: Option<Time>,
    /// The latest decisions of this policy, newest last (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_decisions: Vec<PolicyDecisionRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What a policy decided about one alert.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDecisionRecord {
    pub time: Time,
    /// The alert, as namespace/name.
    pub alert: String,
    pub decision: PolicyDecision,
    pub message: String,
}

/// The outcome of matching an alert against a policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum PolicyDecision {
    /// Actions were created and run at once.
    Acted,
    /// Actions were created and wait for a responder's approval.
    AwaitingApproval,
    /// Dry-run actions were created.
    DryRun,
    /// The policy's hourly limit was reached.
    RateLimited,
    /// The policy acted on this pod within its cooldown.
    CoolingDown,
    /// The alert's namespace or pod is excluded, or protected.
    Excluded,
    /// The alert names no pod that exists to act on.
    NoTarget,
    /// The policy is suspended, or automation is paused cluster-wide.
    Suspended,
}

impl PolicyDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyDecision::Acted => "Acted",
            PolicyDecision::AwaitingApproval => "AwaitingApproval",
            PolicyDecision::DryRun => "DryRun",
            PolicyDecision::RateLimited => "RateLimited",
            PolicyDecision::CoolingDown => "CoolingDown",
            PolicyDecision::Excluded => "Excluded",
            PolicyDecision::NoTarget => "NoTarget",
            PolicyDecision::Suspended => "Suspended",
        }
    }
}
