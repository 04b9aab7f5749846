//! The hunting tables: their columns, what each means, and their Arrow schemas.
//!
//! Column names and meanings follow the reference product's advanced-hunting tables
//! (CloudProcessEvents, CloudAuditEvents), minus the cloud resource ids, plus what
//! Kubernetes users need (cluster, node, pod UID, exec ids, the audit request's user,
//! resource, subresource, object name and response code out of the raw event). One list
//! here is the truth for the Parquet files, the in-memory tail, Trino's DDL, the KQL
//! compiler and the column reference in `docs/hunting.md`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// An instant, microseconds since the epoch, UTC.
    Timestamp,
    String,
    Int64,
    Int32,
    Boolean,
    /// A list of strings (groups, source IPs, arguments): what `mv-expand` expands.
    StringList,
    /// A JSON document kept as text (KQL's `dynamic`): `RawEventData`, `AdditionalFields`.
    Json,
}

impl ColumnType {
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::StringList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }

    /// The column's type in Trino's Hive connector over the same Parquet files.
    pub fn trino(self) -> &'static str {
        match self {
            // The Hive connector reads Parquet's UTC-adjusted microseconds as this instant
            // in UTC (hunts run with the session's time zone set to UTC).
            ColumnType::Timestamp => "timestamp(6)",
            ColumnType::String | ColumnType::Json => "varchar",
            ColumnType::Int64 => "bigint",
            ColumnType::Int32 => "integer",
            ColumnType::Boolean => "boolean",
            ColumnType::StringList => "array(varchar)",
        }
    }
}

/// One column of a hunting table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
    pub description: &'static str,
}

const fn column(name: &'static str, kind: ColumnType, description: &'static str) -> Column {
    Column { name, kind, description }
}

use ColumnType::{Boolean, Int32, Int64, Json, String as Text, StringList, Timestamp};

/// A hunting table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    CloudProcessEvents,
    CloudAuditEvents,
    RiposteAlerts,
    RiposteActions,
}

impl Table {
    pub const ALL: [Table; 4] =
        [Table::CloudProcessEvents, Table::CloudAuditEvents, Table::RiposteAlerts, Table::RiposteActions];

    pub fn name(self) -> &'static str {
        match self {
            Table::CloudProcessEvents => "CloudProcessEvents",
            Table::CloudAuditEvents => "CloudAuditEvents",
            Table::RiposteAlerts => "RiposteAlerts",
            Table::RiposteActions => "RiposteActions",
        }
    }

    /// The table named `name`, compared without case (SQL users and Trino fold it).
    pub fn named(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    pub fn description(self) -> &'static str {
        match self {
            Table::CloudProcessEvents => {
                "What processes did inside containers and on nodes: executions, exits, files, connections, \
                 namespaces, mounts, ptrace and signals, from Riposte's node sensor, Falco and Tetragon."
            }
            Table::CloudAuditEvents => {
                "Every Kubernetes audit event Riposte received: the apiserver's audit webhook, audit log files, \
                 and the managed clusters' streams (EKS through Firehose, AKS through Event Hubs, GKE through Pub/Sub)."
            }
            Table::RiposteAlerts => {
                "Riposte's Alerts, a row each time one is raised or changes (occurrences, triage, linked actions)."
            }
            Table::RiposteActions => {
                "Riposte's ResponseActions (isolate, terminate, release), a row each time one changes phase."
            }
        }
    }

    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::CloudProcessEvents => PROCESS_COLUMNS,
            Table::CloudAuditEvents => AUDIT_COLUMNS,
            Table::RiposteAlerts => ALERT_COLUMNS,
            Table::RiposteActions => ACTION_COLUMNS,
        }
    }

    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|c| c.name == name)
    }

    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns()
                .iter()
                .map(|c| Field::new(c.name, c.kind.arrow(), c.name != "Timestamp"))
                .collect::<Vec<_>>(),
        ))
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const PROCESS_COLUMNS: &[Column] = &[
    column("Timestamp", Timestamp, "When the process acted, as the sensor saw it."),
    column("ReportId", Text, "A unique id of this row."),
    column("ClusterName", Text, "The cluster Riposte runs in (`--cluster-name`)."),
    column("NodeName", Text, "The node the process ran on."),
    column("DataSource", Text, "The sensor: `riposte-sensor`, `falco` or `tetragon`."),
    column(
        "ActionType",
        Text,
        "What the process did: `exec`, `exit`, `fileOpen`, `fileDelete`, `fileRename`, `fileTimestamp`, `connect`, \
         `socketRedirect`, `namespace`, `mount`, `ptrace`, `signal`, `other`.",
    ),
    column("KubernetesNamespace", Text, "The pod's namespace; empty for a process of the node itself."),
    column("KubernetesPodName", Text, "The pod's name."),
    column("PodUid", Text, "The pod's UID: tells a pod from a later one of the same name."),
    column("ServiceAccountName", Text, "The pod's service account."),
    column("ContainerName", Text, "The container's name in the pod."),
    column("ContainerId", Text, "The runtime's container id (64 hex digits for containerd; Falco gives 12)."),
    column("ContainerImageName", Text, "The container's image."),
    column("Privileged", Boolean, "Whether the container runs privileged, when known."),
    column("FileName", Text, "The executable's file name (the process image)."),
    column("FolderPath", Text, "The executable's full path, as the process saw it inside the container."),
    column("ProcessId", Int64, "The process id as the node sees it."),
    column("ProcessName", Text, "The process name: the executable's file name, or the kernel's `comm`."),
    column("ProcessCommandLine", Text, "The command line: program and arguments, quoted where they hold a space."),
    column("ProcessArgs", StringList, "The arguments after the program name (`argv[1..]`), for `mv-expand`."),
    column("ProcessCreationTime", Timestamp, "When the process started."),
    column("ProcessCurrentWorkingDirectory", Text, "The working directory, when the sensor read it."),
    column("AccountName", Text, "The user the process ran as: its name when known, else its uid."),
    column("AccountUid", Int64, "The uid the process ran as."),
    column("ExecId", Text, "The sensor's id of this execution (a pid is reused; this is not)."),
    column("ParentExecId", Text, "The parent's ExecId: how a process tree is walked."),
    column("ExecSession", Boolean, "Started by an exec into the container (`kubectl exec`) or descended from one."),
    column("ParentProcessName", Text, "The parent's process name."),
    column("ParentProcessId", Int64, "The parent's process id."),
    column("ParentProcessCommandLine", Text, "The parent's command line, when the sensor knew it."),
    column("ParentProcessCreationTime", Timestamp, "When the parent started."),
    column("ProcessAncestors", StringList, "The names of the ancestors above the parent, nearest first."),
    column("TargetFilePath", Text, "The file acted on: opened, deleted, renamed to, or touched."),
    column("PreviousFilePath", Text, "A renamed file's previous path."),
    column("RemoteIP", Text, "The far end of a connection or of a redirected socket: an IP, or a Unix socket's path."),
    column("RemotePort", Int32, "The far end's port."),
    column("AdditionalFields", Json, "The whole action as JSON (flags, signal, mount source and type, ...)."),
];

const AUDIT_COLUMNS: &[Column] = &[
    column("Timestamp", Timestamp, "When the apiserver recorded this stage of the request (`stageTimestamp`)."),
    column("ReportId", Text, "A unique id of this row: the audit id and the stage."),
    column("ClusterName", Text, "The cluster Riposte runs in (`--cluster-name`)."),
    column(
        "DataSource",
        Text,
        "Which input delivered it: `webhook`, `file`, `firehose`, `event-hubs`, `pubsub` (the `input` label of \
         Riposte's metrics).",
    ),
    column("ActionType", Text, "The audit stage: `RequestReceived`, `ResponseStarted`, `ResponseComplete`, `Panic`."),
    column("OperationName", Text, "The Kubernetes verb (`create`, `get`, `patch`, ...), or the HTTP method."),
    column("AuditId", Text, "The apiserver's audit id of the request."),
    column(
        "ResourceId",
        Text,
        "The object's path, as the API names it: `/api/v1/namespaces/NS/pods/NAME`, or the request URI without \
         its query for other requests.",
    ),
    column("RequestUri", Text, "The request URI, with its query."),
    column("ApiGroup", Text, "The resource's API group (empty for the core group)."),
    column("ApiVersion", Text, "The resource's API version."),
    column("Resource", Text, "The resource (`pods`, `clusterrolebindings`, ...)."),
    column("Subresource", Text, "The subresource (`exec`, `log`, `status`, ...)."),
    column("KubernetesNamespace", Text, "The object's namespace."),
    column("ObjectName", Text, "The object's name."),
    column("UserName", Text, "Who sent the request (the authenticated user)."),
    column("UserGroups", StringList, "That user's groups."),
    column("ImpersonatedUserName", Text, "Whom the request impersonated, if it did."),
    column("IPAddress", Text, "The client's address (the first source IP)."),
    column("SourceIPs", StringList, "Every source IP: the client's first, then any proxies'."),
    column("UserAgent", Text, "The client's user agent."),
    column("ResponseCode", Int32, "The HTTP status of the response, from ResponseStarted on."),
    column("AuthorizationDecision", Text, "The authorizer's decision (`allow`, `forbid`), when annotated."),
    column("RawEventData", Json, "The whole audit event as the apiserver sent it (camelCase keys)."),
];

const ALERT_COLUMNS: &[Column] = &[
    column("Timestamp", Timestamp, "When this row was written: the alert raised, or changed."),
    column("ReportId", Text, "A unique id of this row."),
    column("ClusterName", Text, "The cluster Riposte runs in."),
    column("AlertName", Text, "The Alert object's name."),
    column("AlertNamespace", Text, "The Alert object's namespace."),
    column("AlertType", Text, "The catalog id (`K8S_PrivilegedContainer`, `K8S.NODE_ReverseShell`, ...)."),
    column("Title", Text, "The alert's title."),
    column("Severity", Text, "`Informational`, `Low`, `Medium` or `High`."),
    column("Tactics", StringList, "The MITRE ATT&CK tactics."),
    column("DetectedAt", Timestamp, "When the detection happened."),
    column("Source", Text, "What raised it (`audit`, `scan`, `riposte-sensor`, `falco`, `tetragon`, a user)."),
    column("State", Text, "The triage state: `New`, `InProgress`, `Resolved`, `Dismissed`."),
    column("Occurrences", Int64, "How many detections the alert folds."),
    column("KubernetesNamespace", Text, "The namespace entity."),
    column("KubernetesPodName", Text, "The pod entity."),
    column("ContainerName", Text, "The container entity."),
    column("ContainerImageName", Text, "The image entity."),
    column("NodeName", Text, "The node entity."),
    column("UserName", Text, "The user entity."),
    column("IPAddress", Text, "The source IP in the alert's evidence, if any."),
    column("RawEventData", Json, "The Alert's spec and status as JSON."),
];

const ACTION_COLUMNS: &[Column] = &[
    column("Timestamp", Timestamp, "When this row was written: the action created, or its phase changed."),
    column("ReportId", Text, "A unique id of this row."),
    column("ClusterName", Text, "The cluster Riposte runs in."),
    column("ActionName", Text, "The ResponseAction's name."),
    column("KubernetesNamespace", Text, "The ResponseAction's namespace (the target pod's)."),
    column("ActionType", Text, "`Isolate`, `Terminate` or `Release`."),
    column("KubernetesPodName", Text, "The target pod."),
    column("Phase", Text, "The action's phase (`Pending`, `Succeeded`, `Failed`, ...)."),
    column("RequestedBy", Text, "Who created the action (from the apiserver's provenance)."),
    column("AlertName", Text, "The Alert the action answers, if any."),
    column("PolicyName", Text, "The ResponsePolicy that created it, if any."),
    column("RawEventData", Json, "The ResponseAction's spec and status as JSON."),
];

/// The column reference of every table, as `docs/hunting.md` holds it between its markers
/// (a test fails when the two differ).
pub fn reference_markdown() -> String {
    let mut text = String::new();
    for table in Table::ALL {
        text.push_str(&format!(
            "### {}\n\n{}\n\n| Column | Type | Meaning |\n|---|---|---|\n",
            table,
            table.description()
        ));
        for column in table.columns() {
            let kind = match column.kind {
                ColumnType::Timestamp => "datetime",
                ColumnType::String => "string",
                ColumnType::Int64 => "long",
                ColumnType::Int32 => "int",
                ColumnType::Boolean => "bool",
                ColumnType::StringList => "string array",
                ColumnType::Json => "dynamic (JSON)",
            };
            text.push_str(&format!("| `{}` | {kind} | {} |\n", column.name, column.description.replace('|', "\\|")));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_column_reference_is_the_schema() {
        let doc = include_str!("../../docs/hunting.md");
        let (start, end) = ("<!-- columns:begin -->\n", "<!-- columns:end -->");
        let begin = doc.find(start).expect("docs/hunting.md marks its column reference") + start.len();
        let stop = doc[begin..].find(end).expect("and its end") + begin;
        assert!(
            doc[begin..stop] == reference_markdown(),
            "docs/hunting.md's column reference differs from the schema; replace it with:\n{}",
            reference_markdown()
        );
    }

    #[test]
    fn every_table_starts_with_a_timestamp_and_names_each_column_once() {
        for table in Table::ALL {
            let columns = table.columns();
            assert_eq!(columns[0].name, "Timestamp", "{table}");
            assert_eq!(columns[0].kind, ColumnType::Timestamp);
            let mut names: Vec<_> = columns.iter().map(|c| c.name.to_ascii_lowercase()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), columns.len(), "{table} names a column twice (Trino folds case)");
            assert!(columns.iter().all(|c| !c.description.is_empty()));
        }
        assert_eq!(Table::named("cloudprocessevents"), Some(Table::CloudProcessEvents));
        assert_eq!(Table::named("Events"), None);
    }
}
