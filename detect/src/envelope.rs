//! Audit events as managed clusters deliver them: wrapped in their provider's envelope.
//!
//! [`unwrap`] tells the envelope from the body and takes the `audit.k8s.io/v1` events out:
//!
//! - [`Format::KubernetesAudit`]: what kube-apiserver writes (an EventList, one Event, JSON
//!   lines of events);
//! - [`Format::AksDiagnostics`]: AKS diagnostic settings records, `{"records":[...]}` as Event
//!   Hubs delivers them, or one record per line as a storage account's `PT1H.json` holds them;
//!   each `kube-audit` or `kube-audit-admin` record's `properties.log` is one event;
//! - [`Format::CloudWatchLogs`]: an EKS cluster's log group through a CloudWatch Logs
//!   subscription, gzip-compressed or plain; each log event's `message` is one event;
//! - [`Format::FirehoseDelivery`]: a Firehose HTTP endpoint delivery, each record's `data`
//!   (base64) being such a CloudWatch Logs payload; [`firehose`] has the protocol's request
//!   and response;
//! - [`Format::GkeAuditLog`]: GKE's Cloud Audit Logs `LogEntry`, converted field by field
//!   (one entry, a JSON array of them as `gcloud logging read --format=json` writes, or JSON
//!   lines);
//! - [`Format::PubSubPush`]: a Pub/Sub push request whose message's `data` is a LogEntry.
//!
//! A gzip-compressed body is decompressed first. Records that hold no audit event by design
//! (another log category, a control message, another log stream) are [`Skipped`], with
//! why; a record that should hold one and does not is [`Malformed`], with what was seen,
//! and its neighbours are still read. Only a body that is none of the formats fails whole.
//! The formats and the documentation they come from are listed in
//! `detect/tests/data/providers/SOURCES.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};

use base64::Engine as _;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::Error;
use crate::audit::{self, Event, Level, ObjectReference, Stage, Status, Timestamp, UserInfo};

/// The envelopes [`unwrap`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    KubernetesAudit,
    AksDiagnostics,
    CloudWatchLogs,
    FirehoseDelivery,
    GkeAuditLog,
    PubSubPush,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::KubernetesAudit => "Kubernetes audit events",
            Format::AksDiagnostics => "AKS diagnostic records",
            Format::CloudWatchLogs => "CloudWatch Logs payload",
            Format::FirehoseDelivery => "Firehose HTTP endpoint delivery",
            Format::GkeAuditLog => "GKE audit LogEntries",
            Format::PubSubPush => "Pub/Sub push request",
        })
    }
}

/// What a body held.
#[derive(Debug)]
pub struct Unwrapped {
    /// The envelope (of the first document, when the body has several).
    pub format: Format,
    pub events: Vec<Event>,
    pub skipped: Vec<Skipped>,
    pub malformed: Vec<Malformed>,
}

/// A record that holds no audit event by design.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is, such as `records[3]` or `line 2: logEvents[0]`.
    pub record: String,
    pub reason: SkipReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// An AKS record of another category than `kube-audit` and `kube-audit-admin`.
    OtherCategory(String),
    /// A CloudWatch Logs control message (its check that the destination is reachable).
    ControlMessage,
    /// A log event of an EKS log stream other than the audit's (`authenticator-*`, ...).
    OtherLogStream(String),
    /// A LogEntry of another service than Kubernetes' own (GKE's API is
    /// `container.googleapis.com`), or of no audited service at all.
    OtherService(String),
    /// A part after the first of a LogEntry that Cloud Logging split for its size: its
    /// request's metadata is the first part's.
    SplitPart { index: u64, total: u64 },
    /// An empty Firehose record or Pub/Sub message (both protocols allow them).
    EmptyRecord,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::OtherCategory(category) => write!(f, "an AKS record of category {category}, not kube-audit"),
            SkipReason::ControlMessage => f.write_str("a CloudWatch Logs control message"),
            SkipReason::OtherLogStream(stream) => {
                write!(f, "a log event of the EKS log stream {stream}, not the audit's")
            }
            SkipReason::OtherService(service) => write!(f, "a LogEntry of {service}, not of k8s.io"),
            SkipReason::SplitPart { index, total } => {
                write!(
                    f,
                    "part {} of {total} of a LogEntry split by Cloud Logging; the first part has the event",
                    index + 1
                )
            }
            SkipReason::EmptyRecord => f.write_str("an empty record"),
        }
    }
}

/// A record that should hold an audit event and does not.
#[derive(Debug)]
pub struct Malformed {
    pub record: String,
    pub error: Error,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.record, self.error)
    }
}

/// Envelopes inside envelopes (Firehose records, Pub/Sub messages, gzip) go at most this
/// deep: deeper is not a format, and would let a body nest without end.
const MAX_NESTING: usize = 4;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The events of a body in any of the formats, told by its content.
pub fn unwrap(body: &[u8]) -> Result<Unwrapped, Error> {
    unwrap_nested(None, body, 0).map(named_body)
}

/// The events of a body in the given format. A gzip-compressed body is decompressed first.
pub fn unwrap_as(format: Format, body: &[u8]) -> Result<Unwrapped, Error> {
    unwrap_nested(Some(format), body, 0).map(named_body)
}

/// Records found at the top of a body are the body.
fn named_body(mut unwrapped: Unwrapped) -> Unwrapped {
    for skipped in unwrapped.skipped.iter_mut().filter(|s| s.record.is_empty()) {
        skipped.record = "the body".into();
    }
    for malformed in unwrapped.malformed.iter_mut().filter(|m| m.record.is_empty()) {
        malformed.record = "the body".into();
    }
    unwrapped
}

fn unwrap_nested(forced: Option<Format>, body: &[u8], depth: usize) -> Result<Unwrapped, Error> {
    if depth > MAX_NESTING {
        return Err(Error::NestedTooDeep(MAX_NESTING));
    }
    if body.starts_with(&GZIP_MAGIC) {
        let inflated = gunzip(body, "the body")?;
        return unwrap_nested(forced, &inflated, depth + 1);
    }
    let text = std::str::from_utf8(audit::without_bom(body)).map_err(|e| Error::UnknownEnvelope {
        seen: format!("bytes that are neither UTF-8 text nor gzip (invalid UTF-8 at byte {})", e.valid_up_to()),
    })?;
    if forced.is_none_or(|f| f == Format::KubernetesAudit) && first_is_event(text) {
        let (events, stopped) = stream_events(text);
        let mut out = Unwrapped { format: Format::KubernetesAudit, events, skipped: Vec::new(), malformed: Vec::new() };
        match stopped {
            None => return Ok(out),
            Some(offset) if !out.events.is_empty() => {
                // JSON lines with a bad line: the lines from it on are read one by one.
                let first_line = 1 + text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count();
                for (i, line) in text[offset..].split('\n').enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let place = format!("line {}", first_line + i);
                    let found = detect(line)
                        .and_then(|format| (Found { place: &place, out: &mut out, depth }).document(format, line));
                    if let Err(error) = found {
                        out.malformed.push(Malformed { record: place, error });
                    }
                }
                return Ok(out);
            }
            // The first event is bad: read as any other body, for the error to say why.
            Some(_) => {}
        }
    }
    let documents = documents(text)?;
    let Some((_, first)) = documents.first() else {
        return Err(Error::UnknownEnvelope { seen: "an empty body".into() });
    };
    let format = match forced {
        Some(format) => format,
        None => detect(first)?,
    };
    let mut out = Unwrapped { format, events: Vec::new(), skipped: Vec::new(), malformed: Vec::new() };
    if let [(_, document)] = documents.as_slice() {
        Found { place: "", out: &mut out, depth }.document(format, document)?;
        return Ok(out);
    }
    for (place, document) in &documents {
        // The documents of a body are of one format, as a rule: told again only for one
        // that is not of the first's.
        let Err(error) = (Found { place, out: &mut out, depth }).document(format, document) else {
            continue;
        };
        let error = match forced {
            Some(_) => error,
            None => match detect(document) {
                Ok(other) if other != format => {
                    match (Found { place, out: &mut out, depth }).document(other, document) {
                        Ok(()) => continue,
                        Err(error) => error,
                    }
                }
                Ok(_) => error,
                Err(unknown) => unknown,
            },
        };
        out.malformed.push(Malformed { record: place.clone(), error });
    }
    Ok(out)
}

/// Whether the text starts with one audit event (not an EventList): then it is read as a
/// stream of events, in one pass.
fn first_is_event(text: &str) -> bool {
    if let Some(kind) = leading_kind(text) {
        return kind == "Event";
    }
    let Some(Ok(first)) = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>().next() else {
        return false;
    };
    matches!(serde_json::from_str(first.get()), Ok(Keys::Object(keys))
        if keys.iter().any(|k| k == "verb") && !keys.iter().any(|k| k == "items"))
}

/// The events of JSON lines (or of consecutive event documents) in one pass, as the
/// apiserver's log backend writes them: the common case, read at the speed of a plain parse.
/// Stops at the first document that is not an event, with its byte offset.
fn stream_events(text: &str) -> (Vec<Event>, Option<usize>) {
    let mut events = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Event>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => return (events, None),
            Some(Ok(event)) => events.push(event),
            Some(Err(_)) => return (events, Some(start)),
        }
    }
}

/// The JSON documents of the text, each with where it is: one document (compact or
/// indented), JSON lines (`line N`), or a JSON array, whose items are documents (`[i]`).
fn documents(text: &str) -> Result<Vec<(String, &str)>, Error> {
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|e| Error::UnknownEnvelope { seen: format!("a JSON array that does not parse ({e})") })?;
        return Ok(items.into_iter().enumerate().map(|(i, item)| (format!("[{i}]"), item.get())).collect());
    }
    let newlines = |range: std::ops::Range<usize>| text.as_bytes()[range].iter().filter(|&&b| b == b'\n').count();
    let mut found = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    let (mut line, mut counted) = (1, 0);
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => return Ok(found),
            Some(Ok(document)) => {
                let begins = text.len() - text[start..].trim_start().len();
                line += newlines(counted..begins);
                counted = begins;
                found.push((format!("line {line}"), document.get()));
            }
            Some(Err(e)) if found.is_empty() => {
                return Err(Error::UnknownEnvelope { seen: format!("text that is not JSON ({e})") });
            }
            // A broken line among good ones: read line by line from there, so that the
            // lines after it are not lost.
            Some(Err(_)) => {
                let first = line + newlines(counted..start);
                for (offset, raw) in text[start..].split('\n').enumerate() {
                    if !raw.trim().is_empty() {
                        found.push((format!("line {}", first + offset), raw));
                    }
                }
                return Ok(found);
            }
        }
    }
}

/// The format of one JSON document, from its keys.
pub fn detect(document: &str) -> Result<Format, Error> {
    if let Some(kind) = leading_kind(document) {
        return match kind {
            "Event" | "EventList" => Ok(Format::KubernetesAudit),
            other => Err(Error::UnknownEnvelope { seen: format!("a Kubernetes {other}") }),
        };
    }
    let keys: Keys = serde_json::from_str(document)
        .map_err(|e| Error::UnknownEnvelope { seen: format!("text that is not JSON ({e})") })?;
    let Keys::Object(keys) = keys else {
        return Err(Error::UnknownEnvelope { seen: keys.to_string() });
    };
    let has = |key: &str| keys.iter().any(|k| k == key);
    let format = if has("protoPayload") {
        Format::GkeAuditLog
    } else if has("records") && has("requestId") {
        Format::FirehoseDelivery
    } else if has("records") || has("category") {
        Format::AksDiagnostics
    } else if has("messageType") && has("logEvents") {
        Format::CloudWatchLogs
    } else if has("message") && has("subscription") {
        Format::PubSubPush
    } else if has("verb") || has("items") {
        Format::KubernetesAudit
    } else {
        return Err(Error::UnknownEnvelope { seen: Keys::Object(keys).to_string() });
    };
    Ok(format)
}

/// `K` when the document starts with `{"kind":"K"` (whitespace allowed), as the apiserver
/// writes it: the common case is told without reading the document twice.
fn leading_kind(document: &str) -> Option<&str> {
    let rest = document.trim_start().strip_prefix('{')?.trim_start().strip_prefix("\"kind\"")?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The top-level shape of a JSON document: an object's keys, or what else it is.
enum Keys {
    Object(Vec<String>),
    Other(&'static str),
}

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 12;
        match self {
            Keys::Object(keys) if keys.is_empty() => f.write_str("an empty JSON object"),
            Keys::Object(keys) => {
                let more = keys.len().saturating_sub(SHOWN);
                let shown = keys.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join(", ");
                if more > 0 {
                    write!(f, "a JSON object with keys [{shown}, and {more} more]")
                } else {
                    write!(f, "a JSON object with keys [{shown}]")
                }
            }
            Keys::Other(what) => f.write_str(what),
        }
    }
}

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Keys, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Keys, M::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(Keys::Object(keys))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Keys, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Keys::Other("a JSON array"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Keys, E> {
                Ok(Keys::Other("a JSON string"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Keys, E> {
                Ok(Keys::Other("a JSON boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Keys, E> {
                Ok(Keys::Other("a JSON number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Keys, E> {
                Ok(Keys::Other("a JSON number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Keys, E> {
                Ok(Keys::Other("a JSON number"))
            }
            fn visit_unit<E>(self) -> Result<Keys, E> {
                Ok(Keys::Other("JSON null"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Where the records of one document go, and where the document is.
struct Found<'p, 'o> {
    place: &'p str,
    out: &'o mut Unwrapped,
    depth: usize,
}

impl Found<'_, '_> {
    /// `record` within this document, as reported.
    fn at(&self, record: &str) -> String {
        match (self.place.is_empty(), record.is_empty()) {
            (true, _) => record.to_owned(),
            (false, true) => self.place.to_owned(),
            (false, false) => format!("{}: {record}", self.place),
        }
    }

    fn skip(&mut self, record: &str, reason: SkipReason) {
        let record = self.at(record);
        self.out.skipped.push(Skipped { record, reason });
    }

    fn malformed(&mut self, record: &str, error: Error) {
        let record = self.at(record);
        self.out.malformed.push(Malformed { record, error });
    }

    /// One document; an error means the document is not of the format at all.
    fn document(&mut self, format: Format, document: &str) -> Result<(), Error> {
        match format {
            Format::KubernetesAudit => self.kubernetes(document),
            Format::AksDiagnostics => self.aks(document),
            Format::CloudWatchLogs => self.cloudwatch(document),
            Format::FirehoseDelivery => self.firehose(document),
            Format::GkeAuditLog => self.gke(document),
            Format::PubSubPush => self.pubsub(document),
        }
    }

    fn kubernetes(&mut self, document: &str) -> Result<(), Error> {
        #[derive(Deserialize)]
        struct List<'a> {
            #[serde(borrow)]
            items: Vec<&'a RawValue>,
        }
        let is_list = match leading_kind(document) {
            Some(kind) => kind == "EventList",
            None => {
                matches!(serde_json::from_str(document), Ok(Keys::Object(keys)) if keys.iter().any(|k| k == "items"))
            }
        };
        if !is_list {
            let event = serde_json::from_str::<Event>(document).map_err(Error::MalformedEvent)?;
            self.out.events.push(event);
            return Ok(());
        }
        let list: List = serde_json::from_str(document)
            .map_err(|source| Error::MalformedEnvelope { format: Format::KubernetesAudit, source })?;
        for (i, item) in list.items.iter().enumerate() {
            match serde_json::from_str::<Event>(item.get()) {
                Ok(event) => self.out.events.push(event),
                Err(source) => {
                    let what = format!("EventList item {i} ({})", excerpt(item.get()));
                    self.malformed(&format!("items[{i}]"), Error::NotAnAuditEvent { what, source });
                }
            }
        }
        Ok(())
    }

    fn aks(&mut self, document: &str) -> Result<(), Error> {
        #[derive(Deserialize)]
        struct Document<'a> {
            #[serde(default, borrow)]
            records: Option<Vec<&'a RawValue>>,
        }
        let parsed: Document = serde_json::from_str(document)
            .map_err(|source| Error::MalformedEnvelope { format: Format::AksDiagnostics, source })?;
        match parsed.records {
            // One record per line, as a storage account's PT1H.json holds them.
            None => self.aks_record("", document),
            Some(records) => {
                for (i, record) in records.iter().enumerate() {
                    self.aks_record(&format!("records[{i}]"), record.get());
                }
            }
        }
        Ok(())
    }

    fn aks_record(&mut self, at: &str, record: &str) {
        #[derive(Deserialize)]
        struct Record {
            category: Option<String>,
            properties: Option<Properties>,
        }
        #[derive(Deserialize)]
        struct Properties {
            /// The event as a JSON string, as Azure writes it; some shippers (Elastic's
            /// agent, for one) have already decoded it into an object.
            log: Option<Box<serde_json::value::RawValue>>,
        }
        let what = || "an Azure resource log record".to_owned();
        let record: Record = match serde_json::from_str(record) {
            Ok(record) => record,
            Err(source) => {
                return self.malformed(at, Error::InvalidRecord { what: what(), problem: source.to_string() });
            }
        };
        let Some(category) = record.category else {
            return self.malformed(at, Error::InvalidRecord { what: what(), problem: "it has no category".into() });
        };
        if category != "kube-audit" && category != "kube-audit-admin" {
            return self.skip(at, SkipReason::OtherCategory(category));
        }
        let what = format!("an AKS diagnostic record (category {category})");
        let Some(raw) = record.properties.and_then(|p| p.log) else {
            return self.malformed(at, Error::InvalidRecord { what, problem: "it has no properties.log".into() });
        };
        let log = match raw.get().starts_with('"') {
            true => match serde_json::from_str::<String>(raw.get()) {
                Ok(log) => log,
                Err(source) => return self.malformed(at, Error::InvalidRecord { what, problem: source.to_string() }),
            },
            false => raw.get().to_owned(),
        };
        match audit::parse_event(log.as_bytes()) {
            Ok(event) => self.out.events.push(event),
            Err(source) => {
                let what = format!("{what} whose properties.log ({})", excerpt(&log));
                self.malformed(at, Error::NotAnAuditEvent { what, source });
            }
        }
    }

    fn cloudwatch(&mut self, document: &str) -> Result<(), Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Payload<'a> {
            message_type: String,
            #[serde(default)]
            log_group: String,
            #[serde(default)]
            log_stream: String,
            #[serde(default, borrow)]
            log_events: Vec<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct LogEvent {
            #[serde(default)]
            id: Option<String>,
            message: String,
        }
        let payload: Payload = serde_json::from_str(document)
            .map_err(|source| Error::MalformedEnvelope { format: Format::CloudWatchLogs, source })?;
        match payload.message_type.as_str() {
            "DATA_MESSAGE" => {}
            "CONTROL_MESSAGE" => {
                self.skip("", SkipReason::ControlMessage);
                return Ok(());
            }
            other => {
                let what = "a CloudWatch Logs payload".to_owned();
                let problem = format!("messageType is {other:?}, neither DATA_MESSAGE nor CONTROL_MESSAGE");
                self.malformed("", Error::InvalidRecord { what, problem });
                return Ok(());
            }
        }
        // An EKS cluster's log group holds every control-plane log the cluster exports; a
        // subscription on it delivers all of them, and only the audit's streams hold events.
        let eks_group = payload.log_group.starts_with("/aws/eks/") && payload.log_group.ends_with("/cluster");
        let other_stream = eks_group && !payload.log_stream.starts_with("kube-apiserver-audit");
        for (i, raw) in payload.log_events.iter().enumerate() {
            let record = format!("logEvents[{i}]");
            if other_stream {
                self.skip(&record, SkipReason::OtherLogStream(payload.log_stream.clone()));
                continue;
            }
            let log_event: LogEvent = match serde_json::from_str(raw.get()) {
                Ok(log_event) => log_event,
                Err(source) => {
                    let what = "a CloudWatch log event".to_owned();
                    self.malformed(&record, Error::InvalidRecord { what, problem: source.to_string() });
                    continue;
                }
            };
            match audit::parse_event(log_event.message.as_bytes()) {
                Ok(event) => self.out.events.push(event),
                Err(source) => {
                    let what = format!(
                        "a CloudWatch log event (log stream {}, id {}) whose message ({})",
                        payload.log_stream,
                        log_event.id.as_deref().unwrap_or("-"),
                        excerpt(&log_event.message)
                    );
                    self.malformed(&record, Error::NotAnAuditEvent { what, source });
                }
            }
        }
        Ok(())
    }

    fn firehose(&mut self, document: &str) -> Result<(), Error> {
        let delivery = firehose::parse_request(document.as_bytes())?;
        for (i, record) in delivery.records.into_iter().enumerate() {
            let at = format!("records[{i}]");
            match record {
                Ok(data) if data.is_empty() => self.skip(&at, SkipReason::EmptyRecord),
                Ok(data) => self.nested(&at, &data),
                Err(error) => self.malformed(&at, error),
            }
        }
        Ok(())
    }

    fn pubsub(&mut self, document: &str) -> Result<(), Error> {
        #[derive(Deserialize)]
        struct Push {
            message: Message,
        }
        #[derive(Deserialize)]
        struct Message {
            #[serde(default)]
            data: Option<String>,
        }
        let push: Push = serde_json::from_str(document)
            .map_err(|source| Error::MalformedEnvelope { format: Format::PubSubPush, source })?;
        let data = push.message.data.unwrap_or_default();
        match base64::engine::general_purpose::STANDARD.decode(&data) {
            Ok(data) if data.is_empty() => self.skip("message", SkipReason::EmptyRecord),
            Ok(data) => self.nested("message.data", &data),
            Err(source) => self.malformed("message", Error::Base64 { what: "message.data".into(), source }),
        }
        Ok(())
    }

    /// The data of a record, itself any of the formats (usually gzip-compressed).
    fn nested(&mut self, at: &str, data: &[u8]) {
        match unwrap_nested(None, data, self.depth + 1) {
            Ok(inner) => {
                self.out.events.extend(inner.events);
                for skipped in inner.skipped {
                    self.skip(&join(at, &skipped.record), skipped.reason);
                }
                for malformed in inner.malformed {
                    self.malformed(&join(at, &malformed.record), malformed.error);
                }
            }
            Err(error) => self.malformed(at, error),
        }
    }

    fn gke(&mut self, document: &str) -> Result<(), Error> {
        let entry: gke::LogEntry = serde_json::from_str(document)
            .map_err(|source| Error::MalformedEnvelope { format: Format::GkeAuditLog, source })?;
        match gke::event(entry) {
            Ok(event) => self.out.events.push(event),
            Err(gke::NotAnEvent::Skipped(reason)) => self.skip("", reason),
            Err(gke::NotAnEvent::Malformed(error)) => self.malformed("", error),
        }
        Ok(())
    }
}

fn join(outer: &str, inner: &str) -> String {
    if inner.is_empty() { outer.to_owned() } else { format!("{outer}.{inner}") }
}

/// The start of a text that was not what it should be, to show in the error.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 80;
    let text = text.trim();
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

fn gunzip(data: &[u8], what: &str) -> Result<Vec<u8>, Error> {
    let mut inflated = Vec::with_capacity(data.len() * 8);
    // CloudWatch and Firehose concatenate gzip members; a single decoder would stop at the
    // first one.
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut inflated)
        .map_err(|source| Error::Gzip { what: what.to_owned(), source })?;
    Ok(inflated)
}

/// Firehose's HTTP endpoint delivery protocol: the request it sends, the response it expects.
pub mod firehose {
    use super::*;

    /// A delivery request.
    #[derive(Debug)]
    pub struct Delivery {
        /// To be echoed in the response (the same across retries of the same delivery).
        pub request_id: String,
        /// When Firehose generated the request, milliseconds since the epoch.
        pub timestamp: Option<i64>,
        /// Each record's data, decoded from base64, or why it could not be.
        pub records: Vec<Result<Vec<u8>, Error>>,
    }

    /// Parses a delivery request body (decompressed, when Content-Encoding was gzip).
    pub fn parse_request(body: &[u8]) -> Result<Delivery, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Request<'a> {
            request_id: String,
            #[serde(default)]
            timestamp: Option<i64>,
            #[serde(borrow)]
            records: Vec<Record<'a>>,
        }
        #[derive(Deserialize)]
        struct Record<'a> {
            #[serde(borrow)]
            data: &'a RawValue,
        }
        let text = std::str::from_utf8(audit::without_bom(body)).map_err(|e| Error::UnknownEnvelope {
            seen: format!("a body that is not UTF-8 text (invalid at byte {})", e.valid_up_to()),
        })?;
        let request: Request = serde_json::from_str(text)
            .map_err(|source| Error::MalformedEnvelope { format: Format::FirehoseDelivery, source })?;
        let records = request.records.iter().enumerate().map(|(i, record)| data(i, record.data)).collect();
        Ok(Delivery { request_id: request.request_id, timestamp: request.timestamp, records })
    }

    /// A record's data: base64, as the protocol says; the documentation's own example of a
    /// CloudWatch Logs delivery shows the payload as a JSON object instead, taken as it is.
    fn data(index: usize, data: &RawValue) -> Result<Vec<u8>, Error> {
        let what = || format!("the data of record {index}");
        match serde_json::from_str::<String>(data.get()) {
            Ok(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|source| Error::Base64 { what: what(), source }),
            Err(_) if data.get().starts_with('{') => Ok(data.get().as_bytes().to_vec()),
            Err(_) => Err(Error::InvalidRecord {
                what: what(),
                problem: format!("expected a base64 string, saw {}", excerpt(data.get())),
            }),
        }
    }

    /// The largest `errorMessage` Firehose takes.
    pub const MAX_ERROR_MESSAGE: usize = 8192;

    /// The response body: `requestId` echoed, `timestamp` when the endpoint processed it
    /// (`now`, milliseconds since the epoch), and on failure `errorMessage` (cut to
    /// [`MAX_ERROR_MESSAGE`] bytes at a character boundary). Send it with status 200 on
    /// success; Firehose retries any other status but 413.
    pub fn response_body(request_id: &str, now: i64, error: Option<&str>) -> String {
        let mut body = serde_json::Map::new();
        body.insert("requestId".into(), request_id.into());
        body.insert("timestamp".into(), now.into());
        if let Some(message) = error {
            let mut end = message.len().min(MAX_ERROR_MESSAGE);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            body.insert("errorMessage".into(), message[..end].into());
        }
        serde_json::Value::Object(body).to_string()
    }
}

/// GKE's Kubernetes audit log: a Cloud Logging `LogEntry` whose `protoPayload` is an
/// `AuditLog`, converted to the audit event kube-apiserver wrote.
mod gke {
    use super::*;

    const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";
    const KUBERNETES_SERVICE: &str = "k8s.io";
    /// Annotations for what a LogEntry says that an audit event has no field for.
    const RESOURCE_LABEL_PREFIX: &str = "riposte.dev/gke-resource-";
    const RECEIVED_ANNOTATION: &str = "riposte.dev/gke-receive-timestamp";

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct LogEntry {
        #[serde(default)]
        insert_id: Option<String>,
        #[serde(default)]
        timestamp: Option<Timestamp>,
        #[serde(default)]
        receive_timestamp: Option<Timestamp>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        resource: Option<Resource>,
        #[serde(default)]
        operation: Option<Operation>,
        #[serde(default)]
        split: Option<Split>,
        #[serde(default)]
        proto_payload: Option<AuditLog>,
    }

    #[derive(Deserialize)]
    struct Resource {
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }

    #[derive(Deserialize)]
    struct Operation {
        #[serde(default)]
        id: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Split {
        #[serde(default)]
        index: u64,
        #[serde(default)]
        total_splits: u64,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AuditLog {
        #[serde(default, rename = "@type")]
        type_url: Option<String>,
        #[serde(default)]
        service_name: Option<String>,
        #[serde(default)]
        method_name: Option<String>,
        #[serde(default)]
        resource_name: Option<String>,
        #[serde(default)]
        authentication_info: Option<AuthenticationInfo>,
        #[serde(default)]
        authorization_info: Vec<AuthorizationInfo>,
        #[serde(default)]
        request_metadata: Option<RequestMetadata>,
        #[serde(default)]
        status: Option<RpcStatus>,
        #[serde(default)]
        request: Option<Box<RawValue>>,
        #[serde(default)]
        response: Option<Box<RawValue>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AuthenticationInfo {
        #[serde(default)]
        principal_email: Option<String>,
    }

    #[derive(Deserialize)]
    struct AuthorizationInfo {
        #[serde(default)]
        granted: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RequestMetadata {
        #[serde(default)]
        caller_ip: Option<String>,
        #[serde(default)]
        caller_supplied_user_agent: Option<String>,
    }

    #[derive(Deserialize)]
    struct RpcStatus {
        #[serde(default)]
        code: Option<i32>,
        #[serde(default)]
        message: Option<String>,
    }

    pub(super) enum NotAnEvent {
        Skipped(SkipReason),
        Malformed(Error),
    }

    pub(super) fn event(entry: LogEntry) -> Result<Event, NotAnEvent> {
        let Some(payload) = entry.proto_payload else {
            return Err(NotAnEvent::Skipped(SkipReason::OtherService("a log without protoPayload".into())));
        };
        let service = payload.service_name.as_deref().unwrap_or_default();
        let type_url = payload.type_url.as_deref().unwrap_or(AUDIT_LOG_TYPE);
        if service != KUBERNETES_SERVICE || type_url != AUDIT_LOG_TYPE {
            let what = if service.is_empty() { type_url.to_owned() } else { service.to_owned() };
            return Err(NotAnEvent::Skipped(SkipReason::OtherService(what)));
        }
        let invalid = |problem: String| {
            let what = format!("a GKE audit LogEntry (insertId {})", entry.insert_id.as_deref().unwrap_or("-"));
            NotAnEvent::Malformed(Error::InvalidRecord { what, problem })
        };
        let mut split_body = false;
        if let Some(split) = &entry.split {
            if split.index > 0 {
                return Err(NotAnEvent::Skipped(SkipReason::SplitPart {
                    index: split.index,
                    total: split.total_splits,
                }));
            }
            split_body = true;
        }
        let method = payload.method_name.as_deref().unwrap_or_default();
        let Some(verb) = method.rsplit_once('.').map(|(_, verb)| verb).filter(|v| !v.is_empty()) else {
            return Err(invalid(format!(
                "its methodName {method:?} names no verb (io.k8s.<group>.<version>.<resource>.<verb>)"
            )));
        };
        let resource_name = payload.resource_name.as_deref().unwrap_or_default();
        let object_ref = object_reference(resource_name, method, verb);
        let request_uri = request_uri(resource_name, object_ref.as_ref(), verb);
        let audit_id = entry.operation.and_then(|o| o.id).or(entry.insert_id).unwrap_or_default();

        let mut annotations = entry.labels;
        if !annotations.contains_key("authorization.k8s.io/decision")
            && let Some(granted) = payload.authorization_info.iter().find_map(|a| a.granted)
        {
            annotations.insert("authorization.k8s.io/decision".into(), if granted { "allow" } else { "forbid" }.into());
        }
        for (label, value) in entry.resource.map(|r| r.labels).unwrap_or_default() {
            annotations.insert(format!("{RESOURCE_LABEL_PREFIX}{label}"), value);
        }
        if let Some(received) = entry.receive_timestamp {
            annotations.insert(RECEIVED_ANNOTATION.into(), received.to_string());
        }

        // A split entry's first part holds only the start of the bodies: a part of an object
        // would read as an object without what was cut off.
        let (request, response) = if split_body { (None, None) } else { (payload.request, payload.response) };
        let status = payload.status.unwrap_or(RpcStatus { code: None, message: None });
        let metadata = payload.request_metadata;
        let mut event = Event {
            kind: Some("Event".into()),
            api_version: Some("audit.k8s.io/v1".into()),
            level: Level::of_bodies(request.is_some(), response.is_some()),
            audit_id,
            // GKE's audit policy omits the RequestReceived stage: an entry is a completed request.
            stage: Stage::ResponseComplete,
            request_uri,
            verb: verb.to_owned(),
            user: UserInfo {
                username: payload.authentication_info.and_then(|a| a.principal_email).unwrap_or_default(),
                ..UserInfo::default()
            },
            impersonated_user: None,
            source_ips: metadata.as_ref().and_then(|m| m.caller_ip.clone()).into_iter().collect(),
            user_agent: metadata.and_then(|m| m.caller_supplied_user_agent),
            object_ref,
            response_status: Some(Status {
                code: Some(http_status(status.code.unwrap_or(0))),
                status: None,
                reason: None,
                message: status.message.filter(|m| !m.is_empty()),
            }),
            request_object: request,
            response_object: response,
            request_received_timestamp: entry.timestamp,
            stage_timestamp: None,
            annotations,
        };
        if event.audit_id.is_empty() {
            event.audit_id = audit::derived_audit_id(&event);
        }
        Ok(event)
    }

    /// The object of `group/version/[namespaces/NS/]resource[/name[/subresource]]`; none for
    /// a non-resource request (`/healthz`, `/version`), whose resourceName is a bare path.
    fn object_reference(resource_name: &str, method: &str, verb: &str) -> Option<ObjectReference> {
        let mut segments = resource_name.split('/');
        let (group, version) = (segments.next()?, segments.next()?);
        let rest: Vec<&str> = segments.collect();
        let namespace_subresource = |sub: &str| method.ends_with(&format!(".namespaces.{sub}.{verb}"));
        let (namespace, resource, name, subresource) = match rest.as_slice() {
            [] => return None,
            ["namespaces", ns, sub] if namespace_subresource(sub) => ("", "namespaces", *ns, *sub),
            ["namespaces", ns, resource, tail @ ..] => {
                (*ns, *resource, tail.first().copied().unwrap_or(""), tail.get(1).copied().unwrap_or(""))
            }
            [resource, tail @ ..] => {
                ("", *resource, tail.first().copied().unwrap_or(""), tail.get(1).copied().unwrap_or(""))
            }
        };
        Some(ObjectReference {
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            api_group: if group == "core" { String::new() } else { group.to_owned() },
            api_version: version.to_owned(),
            subresource: subresource.to_owned(),
            ..ObjectReference::default()
        })
    }

    /// The request's path as the apiserver would have recorded it (GKE records none): a
    /// create goes to the collection. The query (`?dryRun=All`, `?watch=true`) is not known.
    fn request_uri(resource_name: &str, object: Option<&ObjectReference>, verb: &str) -> String {
        let Some(object) = object else {
            return format!("/{}", resource_name.trim_start_matches('/'));
        };
        let mut uri = if object.api_group.is_empty() {
            format!("/api/{}", object.api_version)
        } else {
            format!("/apis/{}/{}", object.api_group, object.api_version)
        };
        if !object.namespace.is_empty() {
            uri.push_str(&format!("/namespaces/{}", object.namespace));
        }
        uri.push('/');
        uri.push_str(&object.resource);
        if !object.name.is_empty() && (verb != "create" || !object.subresource.is_empty()) {
            uri.push('/');
            uri.push_str(&object.name);
        }
        if !object.subresource.is_empty() {
            uri.push('/');
            uri.push_str(&object.subresource);
        }
        uri
    }

    /// The HTTP status of a `google.rpc.Code`, as `google/rpc/code.proto` maps them. A
    /// success is 200 (the apiserver's 201 for a create is not told apart).
    pub(super) fn http_status(code: i32) -> i32 {
        match code {
            0 => 200,
            1 => 499,
            3 | 9 | 11 => 400,
            4 => 504,
            5 => 404,
            6 | 10 => 409,
            7 => 403,
            8 => 429,
            12 => 501,
            14 => 503,
            16 => 401,
            _ => 500,
        }
    }
}

/// Reads an audit log file in any of the formats, one line in memory at a time: one envelope
/// or event per line, or a single document over many lines (an indented EventList, records
/// or LogEntry array), recognised by its first line and read whole. A gzip-compressed file
/// is decompressed as it is read. A bad line yields an error with its number, and reading
/// goes on; an I/O error ends the iteration.
pub struct Lines<'r> {
    reader: Box<dyn BufRead + 'r>,
    line: usize,
    buffer: Vec<u8>,
    started: bool,
    done: bool,
}

impl<'r> Lines<'r> {
    pub fn new<R: BufRead + 'r>(mut reader: R) -> Self {
        let compressed = reader.fill_buf().is_ok_and(|head| head.starts_with(&GZIP_MAGIC));
        let reader: Box<dyn BufRead + 'r> = if compressed {
            Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(reader)))
        } else {
            Box::new(reader)
        };
        Lines { reader, line: 0, buffer: Vec::new(), started: false, done: false }
    }

    /// The number of the last line read.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The rest of the input after `self.buffer`, as one document.
    fn whole_document(&mut self) -> Result<Unwrapped, Error> {
        let first_line = self.line;
        let mut body = std::mem::take(&mut self.buffer);
        if let Err(source) = self.reader.read_to_end(&mut body) {
            return Err(Error::ReadInput { line: first_line, source });
        }
        self.line += body.iter().filter(|&&b| b == b'\n').count();
        unwrap(&body).map_err(|source| Error::EnvelopeLine { line: first_line, source: Box::new(source) })
    }
}

impl Iterator for Lines<'_> {
    type Item = Result<Unwrapped, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    let line = audit::without_bom(&self.buffer);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if !std::mem::replace(&mut self.started, true) && starts_a_document(line) {
                        self.done = true;
                        return Some(self.whole_document());
                    }
                    let number = self.line;
                    return Some(match unwrap_nested(None, line, 0) {
                        Ok(mut unwrapped) => {
                            let place = format!("line {number}");
                            for skipped in &mut unwrapped.skipped {
                                skipped.record = join_place(&place, &skipped.record);
                            }
                            for malformed in &mut unwrapped.malformed {
                                malformed.record = join_place(&place, &malformed.record);
                            }
                            Ok(unwrapped)
                        }
                        Err(source) => Err(Error::EnvelopeLine { line: number, source: Box::new(source) }),
                    });
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(Error::ReadInput { line: self.line + 1, source }));
                }
            }
        }
        None
    }
}

fn join_place(place: &str, record: &str) -> String {
    if record.is_empty() { place.to_owned() } else { format!("{place}: {record}") }
}

/// A first line that opens a JSON document it does not close: the document spans lines.
fn starts_a_document(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii_start();
    if !trimmed.starts_with(b"{") && !trimmed.starts_with(b"[") {
        return false;
    }
    match serde_json::from_slice::<IgnoredAny>(line) {
        Ok(_) => false,
        Err(e) => e.classify() == serde_json::error::Category::Eof,
    }
}
