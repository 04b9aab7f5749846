//! `Alert`: a detection, the entities it involves, its triage by analysts, and the
//! responses taken to it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::catalog::Guidance;
use crate::{Comment, HistoryEntry, Phase, PolicyDecision, catalog};

/// The detection fields that are optional and never change once the Alert exists.
const IMMUTABLE_OPTIONAL_FIELDS: [&str; 2] = ["source", "evidence"];

/// A detection of a threat in the cluster, and its triage.
///
/// What was detected (type, severity, entities, evidence...) is immutable: a detection is a
/// record of what was seen. Analysts move it through its lifecycle with `state`, `assignee`,
/// `classification` and append-only `comments`; the controller records every change in
/// `status.history`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "riposte.dev",
    version = "v1alpha1",
    kind = "Alert",
    namespaced,
    status = "AlertStatus",
    category = "riposte",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Severity", type_ = "string", json_path = ".spec.severity"),
    printcolumn(name = "State", type_ = "string", json_path = ".spec.state"),
    printcolumn(name = "Pod", type_ = "string", json_path = ".spec.entities.pod"),
    printcolumn(name = "Seen", type_ = "integer", json_path = ".status.occurrences"),
    printcolumn(name = "Assignee", type_ = "string", json_path = ".spec.assignee"),
    printcolumn(name = "Detected", type_ = "date", json_path = ".spec.detectedAt"),
    printcolumn(name = "Actions", type_ = "integer", json_path = ".status.actionCount"),
    printcolumn(name = "Workload", type_ = "string", json_path = ".spec.entities.workloadName", priority = 1),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.entities.user", priority = 1),
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title", priority = 1)
)]
#[x_kube(validation = Rule::new(crate::unchanged_when_present_rule(&IMMUTABLE_OPTIONAL_FIELDS)).message("an Alert's detection is immutable: a detection is a record of what was seen"))]
#[x_kube(validation = Rule::new("self.state != 'Resolved' || has(self.classification)").message("a Resolved alert needs a classification (TruePositive, FalsePositive or BenignPositive)"))]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// The alert type, an id of the alert catalog such as K8S_PrivilegedContainer.
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("an Alert's detection is immutable: spec.type cannot change"))]
    pub alert_type: AlertType,
    /// A one-line description; the catalog's title when left empty by the detector.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("an Alert's detection is immutable: spec.title cannot change"))]
    pub title: String,
    #[x_kube(validation = Rule::new("self == oldSelf").message("an Alert's detection is immutable: spec.severity cannot change"))]
    pub severity: Severity,
    /// MITRE ATT&CK tactics.
    #[serde(default)]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("an Alert's detection is immutable: spec.tactics cannot change"))]
    pub tactics: Vec<Tactic>,
    #[x_kube(validation = Rule::new("self == oldSelf").message("an Alert's detection is immutable: spec.detectedAt cannot change"))]
    pub detected_at: Time,
    /// What produced the alert, such as riposte-audit, falco or an analyst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub source: Option<String>,
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("an Alert's detection is immutable: spec.entities cannot change"))]
    pub entities: Entities,
    /// What was seen, as named facts: the request, the user, the field, the process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub evidence: Vec<Evidence>,

    /// Where the alert is in its lifecycle: New, then InProgress, then Resolved or
    /// Dismissed. A closed alert may be reopened (InProgress), never made New again.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf || self != 'New'").message("an alert cannot go back to New; reopen it as InProgress"))]
    pub state: AlertState,
    /// The analyst who owns the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub assignee: Option<String>,
    /// The analyst's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Who made the latest change of state, assignee or classification. The chart's
    /// admission policy requires it to be the identity the apiserver authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub triaged_by: Option<String>,
    /// Analysts' comments. Append-only: existing comments can be neither edited nor removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    #[x_kube(validation = Rule::new(crate::APPEND_ONLY_RULE).message(crate::APPEND_ONLY_MESSAGE))]
    pub comments: Vec<Comment>,
}

impl AlertSpec {
    /// A new, untriaged detection.
    pub fn detected(alert_type: &str, title: String, severity: Severity, detected_at: Time) -> AlertSpec {
        AlertSpec {
            alert_type: AlertType(alert_type.to_owned()),
            title,
            severity,
            tactics: Vec::new(),
            detected_at,
            source: None,
            entities: Entities::default(),
            evidence: Vec::new(),
            state: AlertState::New,
            assignee: None,
            classification: None,
            triaged_by: None,
            comments: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum AlertState {
    /// Not yet looked at.
    #[default]
    New,
    /// An analyst is investigating.
    InProgress,
    /// Investigated and handled.
    Resolved,
    /// Closed without action (a false positive, or accepted risk).
    Dismissed,
}

impl AlertState {
    /// Open alerts absorb repeated detections of the same thing.
    pub fn is_open(self) -> bool {
        matches!(self, AlertState::New | AlertState::InProgress)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::New => "New",
            AlertState::InProgress => "InProgress",
            AlertState::Resolved => "Resolved",
            AlertState::Dismissed => "Dismissed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Classification {
    /// A real attack or policy violation.
    TruePositive,
    /// The detection was wrong.
    FalsePositive,
    /// The detection was right, but the activity was legitimate (a test, an admin task).
    BenignPositive,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::TruePositive => "TruePositive",
            Classification::FalsePositive => "FalsePositive",
            Classification::BenignPositive => "BenignPositive",
        }
    }
}

/// The Kubernetes entities involved in a detection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The workload the detection concerns: Deployment, DaemonSet, StatefulSet, Job,
    /// CronJob..., or Service for an exposure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_name: Option<String>,
    /// The user who made the request that was detected, as the apiserver authenticated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// An alert type id. Its schema is the list of ids in the bundled alert catalog.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct AlertType(pub String);

impl JsonSchema for AlertType {
    fn schema_name() -> Cow<'static, str> {
        "AlertType".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let ids: Vec<&str> = catalog::entries().iter().map(|e| e.id.as_str()).collect();
        json_schema!({
            "type": "string",
            "description": "An alert type id from the alert catalog, such as K8S_PrivilegedContainer.",
            "enum": ids,
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
}

/// MITRE ATT&CK tactics, as the alert catalog names them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Tactic {
    InitialAccess,
    Execution,
    Persistence,
    PrivilegeEscalation,
    DefenseEvasion,
    CredentialAccess,
    Discovery,
    LateralMovement,
    Collection,
    Exfiltration,
    CommandAndControl,
    Probing,
    Exploitation,
    Unknown,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many times this was detected: repeated detections of the same alert type on the
    /// same entities while the alert is open are folded into it.
    #[serde(default)]
    pub occurrences: i64,
    /// When it was last detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// What the alert type means, how to check it and how to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<Guidance>,
    /// The triage as last recorded in the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<RecordedTriage>,
    /// The ResponseActions that reference this alert, kept up to date by the controller.
    #[serde(default)]
    pub actions: Vec<LinkedAction>,
    #[serde(default)]
    pub action_count: i32,
    /// What each ResponsePolicy decided about this alert, once, when it was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_decisions: Option<Vec<AlertPolicyDecision>>,
    /// Every detection, triage change, comment and response, oldest first. Never rewritten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// The lifecycle fields of the spec as the history last recorded them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedTriage {
    pub state: AlertState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkedAction {
    pub name: String,
    pub action: crate::ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The ResponsePolicy that created it, for automated actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertPolicyDecision {
    pub policy: String,
    pub time: Time,
    pub decision: PolicyDecision,
    pub message: String,
    /// The ResponseActions the policy created for this alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}
