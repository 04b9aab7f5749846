//! `audit.k8s.io/v1` events, exactly as kube-apiserver's audit webhook and log backends
//! write them, and a parser for the three shapes they arrive in: an `EventList` (a webhook
//! batch), a single `Event`, and JSON lines (a log file, one event per line).
//!
//! Request and response objects are kept as raw JSON ([`RawValue`]): most events never need
//! them, and the rules that do parse only the few fields they read, into small typed structs.
//! Building a `serde_json::Value` tree for every object costs more than all the rules
//! together (see `benches/rules.rs`, which measures both).

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::Error;

/// One audit event: a request at one stage of its handling.
///
/// Only `verb` is required: the rules dispatch on it. Exporters drop other fields, and an
/// event is never lost to one of them: `level` absent is inferred from the bodies present,
/// `stage` absent means the exporter kept completed requests only (ResponseComplete),
/// `auditID` absent is derived from the event's content (so that a retried delivery of the
/// same event names the same alerts), `user` and `requestURI` absent are empty.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "WireEvent")]
pub struct Event {
    /// `Event`; absent on the items of some EventLists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, ...), or the lowercased HTTP method for non-resource requests.
    pub verb: String,
    /// Who sent the request (the authenticated user).
    pub user: UserInfo,
    /// Whom the request impersonated, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    /// The client's address first, then any proxies' (from X-Forwarded-For, then the peer).
    #[serde(default, rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The object the request is about; absent for non-resource requests (`/healthz`, `/api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    /// Present from the ResponseStarted stage on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<Status>,
    /// The request body (at levels Request and RequestResponse): for `patch`, the patch
    /// document, not the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Box<RawValue>>,
    /// The response body (at level RequestResponse): for writes, the object as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_received_timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_timestamp: Option<Timestamp>,
    /// Such as `authorization.k8s.io/decision` and `pod-security.kubernetes.io/*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A batch of events, as the webhook backend posts it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default)]
    pub items: Vec<Event>,
}

/// An event as written, before the defaults of what the exporter left out.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    level: Option<Level>,
    #[serde(default, rename = "auditID")]
    audit_id: Option<String>,
    #[serde(default)]
    stage: Option<Stage>,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    verb: String,
    #[serde(default)]
    user: UserInfo,
    #[serde(default)]
    impersonated_user: Option<UserInfo>,
    #[serde(default, rename = "sourceIPs")]
    source_ips: Vec<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    object_ref: Option<ObjectReference>,
    #[serde(default)]
    response_status: Option<Status>,
    #[serde(default)]
    request_object: Option<Box<RawValue>>,
    #[serde(default)]
    response_object: Option<Box<RawValue>>,
    #[serde(default)]
    request_received_timestamp: Option<Timestamp>,
    #[serde(default)]
    stage_timestamp: Option<Timestamp>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl From<WireEvent> for Event {
    fn from(wire: WireEvent) -> Event {
        let level = wire
            .level
            .unwrap_or_else(|| Level::of_bodies(wire.request_object.is_some(), wire.response_object.is_some()));
        let mut event = Event {
            kind: wire.kind,
            api_version: wire.api_version,
            level,
            audit_id: wire.audit_id.unwrap_or_default(),
            stage: wire.stage.unwrap_or(Stage::ResponseComplete),
            request_uri: wire.request_uri,
            verb: wire.verb,
            user: wire.user,
            impersonated_user: wire.impersonated_user,
            source_ips: wire.source_ips,
            user_agent: wire.user_agent,
            object_ref: wire.object_ref,
            response_status: wire.response_status,
            request_object: wire.request_object,
            response_object: wire.response_object,
            request_received_timestamp: wire.request_received_timestamp,
            stage_timestamp: wire.stage_timestamp,
            annotations: wire.annotations,
        };
        if event.audit_id.is_empty() {
            event.audit_id = derived_audit_id(&event);
        }
        event
    }
}

/// An id for an event that came without one: a hash of everything else it says, so the same
/// event delivered twice gets the same id (and raises its alerts once). FNV-1a, written out,
/// because std's hasher may change between Rust releases and the id must not.
pub fn derived_audit_id(event: &Event) -> String {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    let content =
        serde_json::to_vec(&Event { audit_id: String::new(), ..event.clone() }).expect("an event serialises to JSON");
    let hash = content.iter().fold(OFFSET, |hash, &byte| (hash ^ u128::from(byte)).wrapping_mul(PRIME));
    format!("derived-{hash:032x}")
}

/// How much of a request the audit policy asked to record. A level this version does not
/// know is kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
    Other(String),
}

/// The stage of the request's handling at which the event was written. A stage this
/// version does not know is kept as written (and is not read by the rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
    Other(String),
}

/// The names of a string enum's known values, for serde by hand: an unknown value is kept.
macro_rules! open_string_enum {
    ($name:ident { $($variant:ident),* }) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => stringify!($variant),)*
                    $name::Other(text) => text,
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $(stringify!($variant) => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name"))
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        Ok($name::from(text))
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

open_string_enum!(Level { None, Metadata, Request, RequestResponse });

impl Level {
    /// The level an event was recorded at, told by the bodies it holds, for exporters that
    /// leave the level out.
    pub fn of_bodies(request: bool, response: bool) -> Level {
        match (request, response) {
            (_, true) => Level::RequestResponse,
            (true, false) => Level::Request,
            (false, false) => Level::Metadata,
        }
    }
}
open_string_enum!(Stage { RequestReceived, ResponseStarted, ResponseComplete, Panic });

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// Empty for requests that failed authentication.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The object of a request. Empty strings stand for absent fields: `api_group` is empty for
/// the core group, `namespace` for cluster-scoped objects, `name` for lists and creates
/// with `generateName`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The response's status (a `metav1.Status` without details).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Event {
    /// The HTTP status code of the response, when the event has one.
    pub fn status_code(&self) -> Option<i32> {
        self.response_status.as_ref().and_then(|s| s.code)
    }

    /// The user the request acted as: the impersonated user if any, else the sender.
    pub fn effective_user(&self) -> &UserInfo {
        self.impersonated_user.as_ref().unwrap_or(&self.user)
    }

    /// When the request happened: its receipt, else the stage's time.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.request_received_timestamp.or(self.stage_timestamp)
    }

    /// A server-side dry run (`?dryRun=All`): the apiserver persisted nothing.
    pub fn is_dry_run(&self) -> bool {
        self.request_uri.split_once('?').is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("dryRun=")))
    }
}

/// Parses a request body: an `EventList`, a single `Event` (compact or indented), or JSON
/// lines. Strict: the first malformed event fails the whole body, with its line number; use
/// [`JsonLines`] to skip bad lines instead.
pub fn parse_body(body: &[u8]) -> Result<Vec<Event>, Error> {
    let body = without_bom(body);
    match document_kind(body)?.as_deref() {
        Some("EventList") => Ok(parse_event_list(body)?.items),
        Some("Event") | None => match std::str::from_utf8(body) {
            Ok(text) => events_of(serde_json::Deserializer::from_str(text).into_iter()),
            Err(_) => events_of(serde_json::Deserializer::from_slice(body).into_iter()),
        },
        Some(other) => Err(Error::UnexpectedKind(other.to_owned())),
    }
}

/// The events of a stream of JSON documents, or the first error with its line.
fn events_of<'de, R: serde_json::de::Read<'de>>(
    stream: serde_json::StreamDeserializer<'de, R, Event>,
) -> Result<Vec<Event>, Error> {
    stream.map(|event| event.map_err(|source| Error::MalformedLine { line: source.line(), source })).collect()
}

/// Parses a webhook batch, when the caller knows it is one.
pub fn parse_event_list(body: &[u8]) -> Result<EventList, Error> {
    from_json(body).map_err(Error::MalformedBody)
}

/// Parses one event (one line of an audit log).
pub fn parse_event(json: &[u8]) -> Result<Event, serde_json::Error> {
    from_json(json)
}

/// Checks the text once, then parses it as text: serde_json would otherwise check every
/// string it reads, raw objects included, which costs a tenth of the parse. Invalid UTF-8 is
/// left to serde_json, whose error says where it is.
fn from_json<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, serde_json::Error> {
    let json = without_bom(json);
    match std::str::from_utf8(json) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(json),
    }
}

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// The text without the UTF-8 byte-order mark that some Windows tools and exporters write
/// first in a file, which JSON does not allow.
pub fn without_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(UTF8_BOM).unwrap_or(text)
}

/// The `kind` of the first JSON document of the body. The apiserver writes `kind` first, so
/// this usually reads a few bytes; otherwise it skims the first document.
fn document_kind(body: &[u8]) -> Result<Option<String>, Error> {
    if let Some(kind) = leading_kind(body) {
        return Ok(Some(kind.to_owned()));
    }
    #[derive(Deserialize)]
    struct Head {
        kind: Option<String>,
    }
    match serde_json::Deserializer::from_slice(body).into_iter::<Head>().next() {
        Some(Ok(head)) => Ok(head.kind),
        Some(Err(e)) => Err(Error::MalformedBody(e)),
        None => Ok(None),
    }
}

/// `K` when the body starts with `{"kind":"K"` (whitespace allowed).
fn leading_kind(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(&body[..body.len().min(64)]).ok()?;
    let rest = text.trim_start().strip_prefix('{')?.trim_start().strip_prefix("\"kind\"")?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// Reads JSON lines (an audit log file): one event per line, blank lines skipped. A bad line
/// yields an error naming its line number, and reading goes on with the next line; an I/O
/// error ends the iteration.
pub struct JsonLines<R> {
    reader: R,
    line: usize,
    buffer: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> JsonLines<R> {
    pub fn new(reader: R) -> Self {
        JsonLines { reader, line: 0, buffer: Vec::new(), failed: false }
    }
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    if without_bom(&self.buffer).iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let line = self.line;
                    return Some(parse_event(&self.buffer).map_err(|source| Error::MalformedLine { line, source }));
                }
                Err(source) => {
                    self.failed = true;
                    return Some(Err(Error::ReadInput { line: self.line + 1, source }));
                }
            }
        }
        None
    }
}

/// An instant with microsecond precision, as audit events record it (`MicroTime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_micros: i64,
}

const MICROS_PER_SECOND: i64 = 1_000_000;

impl Timestamp {
    pub const fn from_unix_micros(unix_micros: i64) -> Self {
        Timestamp { unix_micros }
    }

    pub const fn unix_micros(self) -> i64 {
        self.unix_micros
    }

    /// This instant plus (or minus) whole seconds.
    pub const fn add_seconds(self, seconds: i64) -> Self {
        Timestamp { unix_micros: self.unix_micros + seconds * MICROS_PER_SECOND }
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// RFC 3339: `2025-06-01T12:00:00Z`, with optional fraction and numeric offset; also what
    /// exporters write instead: a space for the `T`, an offset without its colon (`+0200`),
    /// or no zone at all, which is read as UTC.
    fn from_str(text: &str) -> Result<Self, Error> {
        parse_rfc3339(text).ok_or_else(|| Error::InvalidTimestamp(text.to_owned()))
    }
}

fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if b[16] != b':' || !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // RFC 3339 allows a leap second (":60"); it reads as the first second of the next minute.
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    // Without a zone, as some exporters write it: read as UTC (what the apiserver writes).
    let offset_seconds = match b.get(i..)? {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] | [sign @ (b'+' | b'-'), _, _, _, _] => {
            let hours = digits(i + 1..i + 3)?;
            let minutes = digits(b.len() - 2..b.len())?;
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(Timestamp { unix_micros: seconds * MICROS_PER_SECOND + micros })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    /// The audit format: `2025-06-01T12:00:00.000000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.unix_micros.div_euclid(MICROS_PER_SECOND);
        let micros = self.unix_micros.rem_euclid(MICROS_PER_SECOND);
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let in_day = seconds.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            in_day / 3600,
            in_day % 3600 / 60,
            in_day % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                parse_rfc3339(text).ok_or_else(|| E::custom(format!("invalid RFC 3339 timestamp {text:?}")))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA_EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"4d7f0e0a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods?limit=500","verb":"list","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.33.1 (linux/amd64) kubernetes/abc","objectRef":{"resource":"pods","namespace":"shop","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-06-01T12:00:00.123456Z","stageTimestamp":"2025-06-01T12:00:00.130000Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#;

    #[test]
    fn parses_a_metadata_event_and_its_fields() {
        let events = parse_body(METADATA_EVENT.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!((&e.level, &e.stage), (&Level::Metadata, &Stage::ResponseComplete));
        assert_eq!(e.verb, "list");
        assert_eq!(e.user.username, "alice");
        assert_eq!(e.object_ref.as_ref().unwrap().api_group, "");
        assert_eq!(e.status_code(), Some(200));
        assert_eq!(e.request_received_timestamp.unwrap().to_string(), "2025-06-01T12:00:00.123456Z");
        assert!(!e.is_dry_run());
    }

    #[test]
    fn the_three_input_shapes_give_the_same_events() {
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{METADATA_EVENT},{METADATA_EVENT}]}}"#
        );
        let lines = format!("{METADATA_EVENT}\n\n{METADATA_EVENT}\n");
        let indented =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(METADATA_EVENT).unwrap()).unwrap();
        assert_eq!(parse_body(list.as_bytes()).unwrap().len(), 2);
        assert_eq!(parse_body(lines.as_bytes()).unwrap().len(), 2);
        assert_eq!(parse_body(indented.as_bytes()).unwrap()[0].audit_id, "4d7f0e0a-1");
        // kind not first: the body is skimmed for it.
        let late_kind = format!(r#"{{"items":[{METADATA_EVENT}],"kind":"EventList"}}"#);
        assert_eq!(parse_body(late_kind.as_bytes()).unwrap().len(), 1);
        assert_eq!(parse_event_list(list.as_bytes()).unwrap().items.len(), 2);
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number_and_skipped() {
        let input =
            format!("{METADATA_EVENT}\n{{\"kind\":\"Event\",\"level\":\"Metadata\"}}\nnot json\n{METADATA_EVENT}\n");
        let results: Vec<_> = JsonLines::new(input.as_bytes()).collect();
        assert_eq!(results.len(), 4);
        assert!(results[0].is_ok() && results[3].is_ok());
        assert!(matches!(results[1], Err(Error::MalformedLine { line: 2, .. })), "{:?}", results[1]);
        let message = results[2].as_ref().unwrap_err().to_string();
        assert!(message.starts_with("line 3: not an audit.k8s.io/v1 event"), "{message}");
        let strict = parse_body(input.as_bytes()).unwrap_err();
        assert!(matches!(strict, Error::MalformedLine { line: 2, .. }), "{strict}");
    }

    #[test]
    fn a_byte_order_mark_before_the_first_event_is_ignored() {
        let lines = format!("\u{feff}{METADATA_EVENT}\n{METADATA_EVENT}\n");
        let read: Vec<_> = JsonLines::new(lines.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(parse_body(lines.as_bytes()).unwrap().len(), 2);
        let list = format!("\u{feff}{{\"kind\":\"EventList\",\"items\":[{METADATA_EVENT}]}}");
        assert_eq!(parse_body(list.as_bytes()).unwrap().len(), 1);
        assert_eq!(JsonLines::new("\u{feff}\n".as_bytes()).count(), 0, "a BOM alone is a blank line");
    }

    fn without(field: &str) -> String {
        let mut value: serde_json::Value = serde_json::from_str(METADATA_EVENT).unwrap();
        value.as_object_mut().unwrap().remove(field);
        value.to_string()
    }

    #[test]
    fn an_event_missing_optional_fields_gets_their_defaults() {
        let event = parse_event(without("stage").as_bytes()).unwrap();
        assert_eq!(event.stage, Stage::ResponseComplete, "the exporter kept completed requests only");

        let with_bodies = |fields: &str| {
            let mut value: serde_json::Value = serde_json::from_str(&without("level")).unwrap();
            for field in fields.split(',').filter(|f| !f.is_empty()) {
                value[field] = serde_json::json!({"kind": "Pod"});
            }
            parse_event(value.to_string().as_bytes()).unwrap().level
        };
        assert_eq!(with_bodies(""), Level::Metadata);
        assert_eq!(with_bodies("requestObject"), Level::Request);
        assert_eq!(with_bodies("requestObject,responseObject"), Level::RequestResponse);
        assert_eq!(with_bodies("responseObject"), Level::RequestResponse);

        let event = parse_event(without("user").as_bytes()).unwrap();
        assert_eq!(event.user.username, "");
        let event = parse_event(without("requestURI").as_bytes()).unwrap();
        assert_eq!((event.request_uri.as_str(), event.verb.as_str()), ("", "list"));

        let error = parse_event(without("verb").as_bytes()).unwrap_err().to_string();
        assert!(error.starts_with("missing field `verb`"), "the one field the rules cannot do without: {error}");
    }

    #[test]
    fn an_event_without_an_id_gets_one_derived_from_its_content() {
        let anonymous = without("auditID");
        let first = parse_event(anonymous.as_bytes()).unwrap().audit_id;
        assert!(first.starts_with("derived-") && first.len() == "derived-".len() + 32, "{first}");
        let indented =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&anonymous).unwrap()).unwrap();
        assert_eq!(parse_event(indented.as_bytes()).unwrap().audit_id, first, "a retried delivery dedupes");
        let other = anonymous.replace("\"verb\":\"list\"", "\"verb\":\"watch\"");
        assert_ne!(parse_event(other.as_bytes()).unwrap().audit_id, first);
        // Pinned: the id names alerts, which must keep their names across releases.
        assert_eq!(first, "derived-06555ec44806761daa1eaad290c5ae1a");
    }

    #[test]
    fn levels_and_stages_this_version_does_not_know_are_kept() {
        let future = METADATA_EVENT.replace("\"Metadata\"", "\"Everything\"").replace("ResponseComplete", "Streaming");
        let event = parse_event(future.as_bytes()).unwrap();
        assert_eq!(event.level, Level::Other("Everything".into()));
        assert_eq!(event.stage, Stage::Other("Streaming".into()));
        let again = serde_json::to_string(&event).unwrap();
        assert!(again.contains("\"level\":\"Everything\"") && again.contains("\"stage\":\"Streaming\""), "{again}");
        assert_eq!(Stage::from("Panic"), Stage::Panic);
        assert_eq!(Level::RequestResponse.as_str(), "RequestResponse");
    }

    #[test]
    fn other_kinds_are_refused_by_name() {
        let err = parse_body(br#"{"kind":"Pod","apiVersion":"v1"}"#).unwrap_err();
        assert_eq!(err.to_string(), "the body is a Pod, not an audit.k8s.io/v1 EventList or Event");
    }

    #[test]
    fn raw_objects_survive_a_round_trip() {
        let with_object = METADATA_EVENT.replace(
            r#""requestReceivedTimestamp""#,
            r#""requestObject":{"kind":"Pod","spec":{"containers":[]}},"requestReceivedTimestamp""#,
        );
        let event = &parse_body(with_object.as_bytes()).unwrap()[0];
        assert_eq!(event.request_object.as_ref().unwrap().get(), r#"{"kind":"Pod","spec":{"containers":[]}}"#);
        let again: Event = serde_json::from_str(&serde_json::to_string(event).unwrap()).unwrap();
        assert_eq!(again.request_object.unwrap().get(), event.request_object.as_ref().unwrap().get());
    }

    #[test]
    fn dry_runs_are_recognised() {
        let mut event = parse_body(METADATA_EVENT.as_bytes()).unwrap().remove(0);
        event.request_uri = "/api/v1/namespaces/shop/pods?dryRun=All&fieldManager=kubectl".into();
        assert!(event.is_dry_run());
    }

    #[test]
    fn timestamps_parse_offsets_and_fractions() {
        let t = |s: &str| s.parse::<Timestamp>().map(|t| t.unix_micros());
        assert_eq!(t("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(t("1970-01-01T00:00:01.5Z").unwrap(), 1_500_000);
        assert_eq!(t("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert_eq!(t("2024-02-29T23:59:59.999999Z").unwrap(), 1_709_251_199_999_999);
        assert_eq!(t("2024-02-29T23:59:59.9999999Z").unwrap(), 1_709_251_199_999_999);
        assert!(t("2024-13-01T00:00:00Z").is_err());
        assert!(t("2024-01-01 00:00").is_err());
        assert!(t("2024-01-01T00:00:00.Z").is_err());
        assert!(t("2024-01-01T00:00:00+01").is_err());
        assert!(t("2024-01-01T00:00:00+01:0").is_err());
        assert!(t("2024-01-01T00:00:00 UTC").is_err());
        // What exporters write instead of RFC 3339.
        let utc = t("2025-06-01T12:00:00.123456Z").unwrap();
        assert_eq!(t("2025-06-01T12:00:00.123456").unwrap(), utc, "no zone: UTC");
        assert_eq!(t("2025-06-01 12:00:00.123456Z").unwrap(), utc, "a space for the T");
        assert_eq!(t("2025-06-01 12:00:00.123456").unwrap(), utc);
        assert_eq!(t("2025-06-01T14:00:00.123456+0200").unwrap(), utc, "an offset without its colon");
        assert_eq!(t("2025-06-01T12:00:00").unwrap(), utc - 123_456);
        for text in ["1999-12-31T23:59:59.000001Z", "2038-01-19T03:14:08.000000Z", "1969-07-20T20:17:40.000000Z"] {
            assert_eq!(text.parse::<Timestamp>().unwrap().to_string(), text);
        }
    }
}
