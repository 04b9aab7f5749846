//! `Alert`: a detection, the entities it involves, and the responses taken to it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::{Phase, catalog};

/// A detection of a threat in the cluster.
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
    printcolumn(name = "Pod", type_ = "string", json_path = ".spec.entities.pod"),
    printcolumn(name = "Detected", type_ = "date", json_path = ".spec.detectedAt"),
    printcolumn(name = "Actions", type_ = "integer", json_path = ".status.actionCount"),
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title", priority = 1)
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an Alert's spec is immutable: a detection is a record of what was seen"))]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// The alert type, an id of the alert catalog such as K8S_PrivilegedContainer.
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    /// A one-line description; the catalog's title when left empty by the detector.
    #[schemars(length(min = 1, max = 512))]
    pub title: String,
    pub severity: Severity,
    /// MITRE ATT&CK tactics.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub tactics: Vec<Tactic>,
    pub detected_at: Time,
    /// What produced the alert, such as riposte-audit, falco or an analyst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub source: Option<String>,
    #[serde(default)]
    pub entities: Entities,
    /// What was seen, as named facts: the request, the user, the field, the process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub evidence: Vec<Evidence>,
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
    /// The ResponseActions that reference this alert, kept up to date by the controller.
    #[serde(default)]
    pub actions: Vec<LinkedAction>,
    #[serde(default)]
    pub action_count: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkedAction {
    pub name: String,
    pub action: crate::ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
}
