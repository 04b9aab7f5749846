//! Rows of the hunting tables, made from what Riposte ingests, and Arrow batches made of rows.
//!
//! A row is kept as cells in its table's column order until it is flushed: the in-memory
//! tail is small (seconds of events), and one row type for every table keeps one writer,
//! one flush and one query path.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::record_batch::RecordBatch;
use riposte_detect::audit::{self, Timestamp};
use riposte_detect::runtime::{Action, ProcessEvent};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::schema::{ColumnType, Table};

/// One cell of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Timestamp(i64),
    Text(String),
    Int64(i64),
    Int32(i32),
    Boolean(bool),
    List(Vec<String>),
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Self {
        value.map_or(Cell::Null, Cell::Text)
    }
}

impl From<Option<&str>> for Cell {
    fn from(value: Option<&str>) -> Self {
        value.map_or(Cell::Null, |v| Cell::Text(v.to_owned()))
    }
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Cell::Text(value)
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Cell::Text(value.to_owned())
    }
}

/// A row of one table. `Timestamp` and `ReportId`, the first two columns of every table,
/// are kept apart: the store partitions by the first and numbers rows for the second.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub table: Table,
    /// Microseconds since the epoch, UTC.
    pub time: i64,
    /// The cells of the columns after `ReportId`, in the table's order.
    pub cells: Vec<Cell>,
}

/// Text that is empty is no value: Kubernetes writes `""` for an absent namespace.
fn text(value: &str) -> Cell {
    if value.is_empty() { Cell::Null } else { Cell::Text(value.to_owned()) }
}

fn time(value: Option<Timestamp>) -> Cell {
    value.map_or(Cell::Null, |t| Cell::Timestamp(t.unix_micros()))
}

fn json(value: &impl Serialize) -> Cell {
    serde_json::to_string(value).map_or(Cell::Null, Cell::Text)
}

/// The row of what a process did.
pub fn process_record(event: &ProcessEvent, cluster: &str) -> Record {
    let container = event.container.as_ref();
    let process = &event.process;
    let parent = event.parent.as_ref();
    let (target, previous, remote) = match &event.action {
        Action::FileOpen { path, .. } | Action::FileDelete { path } | Action::FileTimestamp { path } => {
            (Some(path.as_str()), None, None)
        }
        Action::FileRename { from, to } => (Some(to.as_str()), Some(from.as_str()), None),
        Action::Connect(endpoint) => (None, None, Some(endpoint)),
        Action::SocketRedirect { remote, .. } => (None, None, remote.as_ref()),
        Action::Mount { target, .. } => (Some(target.as_str()), None, None),
        _ => (None, None, None),
    };
    let file_name = if process.binary.is_empty() {
        process.name.clone()
    } else {
        process.binary.rsplit('/').next().unwrap_or(&process.binary).to_owned()
    };
    Record {
        table: Table::CloudProcessEvents,
        time: event.time.unix_micros(),
        cells: vec![
            text(cluster),
            event.node.as_deref().into(),
            event.sensor.as_str().into(),
            event.action.kind().into(),
            container.and_then(|c| c.namespace.as_deref()).into(),
            container.and_then(|c| c.pod.as_deref()).into(),
            container.and_then(|c| c.pod_uid.as_deref()).into(),
            container.and_then(|c| c.service_account.as_deref()).into(),
            container.and_then(|c| c.name.as_deref()).into(),
            container.map(|c| text(&c.id)).unwrap_or(Cell::Null),
            container.and_then(|c| c.image.as_deref()).into(),
            container.and_then(|c| c.privileged).map_or(Cell::Null, Cell::Boolean),
            text(&file_name),
            text(&process.binary),
            Cell::Int64(i64::from(process.pid)),
            text(&process.name),
            Cell::Text(process.command_line()),
            Cell::List(process.args.clone()),
            time(process.start_time),
            process.cwd.as_deref().into(),
            process.user.clone().or_else(|| process.uid.map(|u| u.to_string())).into(),
            process.uid.map_or(Cell::Null, |u| Cell::Int64(i64::from(u))),
            process.exec_id.as_deref().into(),
            process.parent_exec_id.as_deref().or(parent.and_then(|p| p.exec_id.as_deref())).into(),
            process.exec_session.map_or(Cell::Null, Cell::Boolean),
            parent.map_or(Cell::Null, |p| text(&p.name)),
            parent.map_or(Cell::Null, |p| Cell::Int64(i64::from(p.pid))),
            parent.map_or(Cell::Null, |p| text(&p.command_line())),
            time(parent.and_then(|p| p.start_time)),
            Cell::List(event.ancestors.clone()),
            target.into(),
            previous.into(),
            remote.map_or(Cell::Null, |r| text(&r.address)),
            remote.map_or(Cell::Null, |r| Cell::Int32(i32::from(r.port))),
            json(&event.action),
        ],
    }
}

/// The row of one audit event, delivered by `input` (`webhook`, `file`, `firehose`, ...).
pub fn audit_record(event: &audit::Event, input: &str, cluster: &str) -> Record {
    let object = event.object_ref.as_ref();
    let path = request_path(&event.request_uri);
    let resource_id = match object {
        Some(o) if !o.resource.is_empty() => object_path(o),
        _ => path.to_owned(),
    };
    Record {
        table: Table::CloudAuditEvents,
        time: event.stage_timestamp.or(event.request_received_timestamp).map_or(0, |t| t.unix_micros()),
        cells: vec![
            text(cluster),
            text(input),
            event.stage.as_str().into(),
            text(&event.verb),
            text(&event.audit_id),
            Cell::Text(resource_id),
            text(&event.request_uri),
            object.map_or(Cell::Null, |o| text(&o.api_group)),
            object.map_or(Cell::Null, |o| text(&o.api_version)),
            object.map_or(Cell::Null, |o| text(&o.resource)),
            object.map_or(Cell::Null, |o| text(&o.subresource)),
            object.map_or(Cell::Null, |o| text(&o.namespace)),
            object.map_or(Cell::Null, |o| text(&o.name)),
            text(&event.user.username),
            Cell::List(event.user.groups.clone()),
            event.impersonated_user.as_ref().map_or(Cell::Null, |u| text(&u.username)),
            event.source_ips.first().map_or(Cell::Null, |ip| text(ip)),
            Cell::List(event.source_ips.clone()),
            event.user_agent.as_deref().into(),
            event.status_code().map_or(Cell::Null, Cell::Int32),
            event.annotations.get("authorization.k8s.io/decision").map(String::as_str).into(),
            json(event),
        ],
    }
}

fn request_path(uri: &str) -> &str {
    uri.split_once('?').map_or(uri, |(path, _)| path)
}

/// The API path of an object: `/api/v1/namespaces/NS/pods/NAME`, `/apis/G/V/RESOURCE/NAME`.
fn object_path(object: &audit::ObjectReference) -> String {
    let mut path = if object.api_group.is_empty() {
        format!("/api/{}", if object.api_version.is_empty() { "v1" } else { &object.api_version })
    } else {
        format!("/apis/{}/{}", object.api_group, object.api_version)
    };
    if !object.namespace.is_empty() {
        path.push_str("/namespaces/");
        path.push_str(&object.namespace);
    }
    path.push('/');
    path.push_str(&object.resource);
    if !object.name.is_empty() {
        path.push('/');
        path.push_str(&object.name);
    }
    if !object.subresource.is_empty() {
        path.push('/');
        path.push_str(&object.subresource);
    }
    path
}

/// An Alert as the hunting table keeps it: what the operator reads off the object.
#[derive(Clone, Debug, Default)]
pub struct AlertRow {
    pub time: i64,
    pub name: String,
    pub namespace: String,
    pub alert_type: String,
    pub title: String,
    pub severity: String,
    pub tactics: Vec<String>,
    pub detected_at: Option<i64>,
    pub source: Option<String>,
    pub state: String,
    pub occurrences: i64,
    pub pod_namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub image: Option<String>,
    pub node: Option<String>,
    pub user: Option<String>,
    pub ip_address: Option<String>,
    /// The object's spec and status, as JSON.
    pub raw: String,
}

pub fn alert_record(alert: &AlertRow, cluster: &str) -> Record {
    Record {
        table: Table::RiposteAlerts,
        time: alert.time,
        cells: vec![
            text(cluster),
            text(&alert.name),
            text(&alert.namespace),
            text(&alert.alert_type),
            text(&alert.title),
            text(&alert.severity),
            Cell::List(alert.tactics.clone()),
            alert.detected_at.map_or(Cell::Null, Cell::Timestamp),
            alert.source.clone().into(),
            text(&alert.state),
            Cell::Int64(alert.occurrences),
            alert.pod_namespace.clone().into(),
            alert.pod.clone().into(),
            alert.container.clone().into(),
            alert.image.clone().into(),
            alert.node.clone().into(),
            alert.user.clone().into(),
            alert.ip_address.clone().into(),
            text(&alert.raw),
        ],
    }
}

/// A ResponseAction as the hunting table keeps it.
#[derive(Clone, Debug, Default)]
pub struct ActionRow {
    pub time: i64,
    pub name: String,
    pub namespace: String,
    pub action: String,
    pub pod: Option<String>,
    pub phase: Option<String>,
    pub requested_by: Option<String>,
    pub alert: Option<String>,
    pub policy: Option<String>,
    pub raw: String,
}

pub fn action_record(action: &ActionRow, cluster: &str) -> Record {
    Record {
        table: Table::RiposteActions,
        time: action.time,
        cells: vec![
            text(cluster),
            text(&action.name),
            text(&action.namespace),
            text(&action.action),
            action.pod.clone().into(),
            action.phase.clone().into(),
            action.requested_by.clone().into(),
            action.alert.clone().into(),
            action.policy.clone().into(),
            text(&action.raw),
        ],
    }
}

/// Rows of one table, numbered, as one Arrow batch: a row's `ReportId` is `report_prefix`
/// and its number in hexadecimal.
pub fn to_batch<'a>(
    table: Table,
    report_prefix: &str,
    records: impl IntoIterator<Item = (u64, &'a Record)>,
) -> Result<RecordBatch> {
    let columns = table.columns();
    let mut builders: Vec<Builder> = columns.iter().map(|c| Builder::new(c.kind)).collect();
    for (number, record) in records {
        debug_assert_eq!(record.table, table);
        builders[0].push(table, 0, &Cell::Timestamp(record.time))?;
        builders[1].push(table, 1, &Cell::Text(format!("{report_prefix}{number:x}")))?;
        if record.cells.len() != columns.len() - 2 {
            return Err(Error::RowShape { table, expected: columns.len() - 2, found: record.cells.len() });
        }
        for (index, cell) in record.cells.iter().enumerate() {
            builders[index + 2].push(table, index + 2, cell)?;
        }
    }
    let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
    Ok(RecordBatch::try_new(table.schema(), arrays)?)
}

enum Builder {
    Timestamp(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    Int64(Int64Builder),
    Int32(Int32Builder),
    Boolean(BooleanBuilder),
    List(ListBuilder<StringBuilder>),
}

impl Builder {
    fn new(kind: ColumnType) -> Builder {
        match kind {
            ColumnType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            ColumnType::String | ColumnType::Json => Builder::Text(StringBuilder::new()),
            ColumnType::Int64 => Builder::Int64(Int64Builder::new()),
            ColumnType::Int32 => Builder::Int32(Int32Builder::new()),
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::new()),
            ColumnType::StringList => Builder::List(ListBuilder::new(StringBuilder::new())),
        }
    }

    fn push(&mut self, table: Table, index: usize, cell: &Cell) -> Result<()> {
        match (self, cell) {
            (Builder::Timestamp(b), Cell::Timestamp(v)) => b.append_value(*v),
            (Builder::Timestamp(b), Cell::Null) => b.append_null(),
            (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
            (Builder::Text(b), Cell::Null) => b.append_null(),
            (Builder::Int64(b), Cell::Int64(v)) => b.append_value(*v),
            (Builder::Int64(b), Cell::Null) => b.append_null(),
            (Builder::Int32(b), Cell::Int32(v)) => b.append_value(*v),
            (Builder::Int32(b), Cell::Null) => b.append_null(),
            (Builder::Boolean(b), Cell::Boolean(v)) => b.append_value(*v),
            (Builder::Boolean(b), Cell::Null) => b.append_null(),
            (Builder::List(b), Cell::List(items)) => {
                for item in items {
                    b.values().append_value(item);
                }
                b.append(true);
            }
            (Builder::List(b), Cell::Null) => b.append(false),
            _ => return Err(Error::CellType { table, column: table.columns()[index].name }),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Timestamp(mut b) => Arc::new(b.finish()),
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Boolean(mut b) => Arc::new(b.finish()),
            Builder::List(mut b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use riposte_detect::runtime::{Container, Endpoint, Process, Sensor};

    use super::*;

    fn process_event() -> ProcessEvent {
        ProcessEvent {
            time: "2026-12-01T10:00:00.5Z".parse().unwrap(),
            sensor: Sensor::Riposte,
            node: Some("node-1".into()),
            container: Some(Container {
                id: "c0ffee".into(),
                name: Some("app".into()),
                image: Some("nginx:1.27".into()),
                pod: Some("web-0".into()),
                namespace: Some("shop".into()),
                ..Container::default()
            }),
            process: Process {
                pid: 42,
                exec_id: Some("e42".into()),
                binary: "/usr/bin/curl".into(),
                name: "curl".into(),
                args: vec!["-s".into(), "http://10.0.0.9/x sh".into()],
                uid: Some(0),
                ..Process::default()
            },
            parent: Some(Process { pid: 7, exec_id: Some("e7".into()), name: "bash".into(), ..Process::default() }),
            ancestors: vec!["sh".into()],
            action: Action::Connect(Endpoint { address: "10.0.0.9".into(), port: 80, protocol: "tcp".into() }),
        }
    }

    #[test]
    fn every_row_builder_fills_its_tables_columns_with_their_types() {
        let audit: audit::Event = serde_json::from_str(
            r#"{"auditID":"a1","stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/shop/pods/web-0/exec?command=sh",
                "user":{"username":"mallory","groups":["devs"]},"sourceIPs":["10.1.2.3"],"userAgent":"kubectl/v1.33",
                "objectRef":{"resource":"pods","subresource":"exec","namespace":"shop","name":"web-0","apiVersion":"v1"},
                "responseStatus":{"code":101},"stageTimestamp":"2026-12-01T10:00:01Z",
                "annotations":{"authorization.k8s.io/decision":"allow"}}"#,
        )
        .unwrap();
        let records = [
            process_record(&process_event(), "prod"),
            audit_record(&audit, "webhook", "prod"),
            alert_record(&AlertRow { name: "a".into(), ..AlertRow::default() }, "prod"),
            action_record(&ActionRow { name: "b".into(), ..ActionRow::default() }, "prod"),
        ];
        for record in &records {
            let batch = to_batch(record.table, "id-", [(1, record)]).unwrap();
            assert_eq!(batch.num_rows(), 1, "{}", record.table);
        }
        let audit_cells = &records[1].cells;
        let column = |name: &str| {
            let index = Table::CloudAuditEvents.columns().iter().position(|c| c.name == name).unwrap();
            &audit_cells[index - 2]
        };
        assert_eq!(column("ResourceId"), &Cell::Text("/api/v1/namespaces/shop/pods/web-0/exec".into()));
        assert_eq!(column("ResponseCode"), &Cell::Int32(101));
        assert_eq!(column("IPAddress"), &Cell::Text("10.1.2.3".into()));
        assert_eq!(column("AuthorizationDecision"), &Cell::Text("allow".into()));
        let process_cells = &records[0].cells;
        let column = |name: &str| {
            let index = Table::CloudProcessEvents.columns().iter().position(|c| c.name == name).unwrap();
            &process_cells[index - 2]
        };
        assert_eq!(column("ProcessCommandLine"), &Cell::Text(r#"/usr/bin/curl -s "http://10.0.0.9/x sh""#.into()));
        assert_eq!(column("FileName"), &Cell::Text("curl".into()));
        assert_eq!(column("ParentExecId"), &Cell::Text("e7".into()));
        assert_eq!(column("RemotePort"), &Cell::Int32(80));
        assert_eq!(column("AccountName"), &Cell::Text("0".into()));
    }

    #[test]
    fn a_row_of_the_wrong_shape_is_refused_by_name() {
        let mut record = process_record(&process_event(), "prod");
        record.cells.pop();
        let error = to_batch(Table::CloudProcessEvents, "", [(1, &record)]).unwrap_err();
        assert!(error.to_string().contains("CloudProcessEvents"), "{error}");
        let mut record = process_record(&process_event(), "prod");
        record.cells[0] = Cell::Int64(1);
        let error = to_batch(Table::CloudProcessEvents, "", [(1, &record)]).unwrap_err();
        assert!(error.to_string().contains("ClusterName"), "{error}");
    }
}
