//! The rules over audit log files, offline: `riposte detect --audit-log FILE`.
//!
//! The same engine as the operator's audit webhook, fed from files (JSON lines, as
//! kube-apiserver's log backend writes them, or a managed cluster's export in its provider's
//! envelope: see [`envelope`] and `docs/managed-clusters.md`), and the same
//! [`alert_for`]: the alerts printed are the Alerts the operator would create, with the same
//! names. What differs, and why:
//!
//! - Time comes from the events. A new service-account baseline learns from the first event's
//!   timestamp for the configured period, then reports: a week-long log learns first, then
//!   detects, as the live stream would have. `--baseline` carries on from a saved baseline
//!   instead, `--save-baseline` keeps what was learned.
//! - The cluster view (the pods and workloads that the exposure rules look for behind a
//!   Service) is a file of objects (`kubectl get ... -o json`), or empty. The Services in that
//!   file are scanned as the operator's configuration scan scans existing Services; an
//!   exposure already raised from the log is not raised again by the scan.
//! - One Alert per name, as the apiserver's create would have it: a request seen twice (two
//!   files overlapping, a log with repeated lines) is reported once.
//!
//! Files are streamed: one line in memory at a time ([`envelope::Lines`]), each line an event
//! or an envelope of events, the format told from each line's content and gzip-compressed
//! files decompressed as they are read. A file that is a single JSON document over many lines
//! (an indented `EventList` or Event Hubs payload, `gcloud logging read --format=json`'s
//! array) is recognised by its first line and read whole: such a document cannot be cut into
//! events before it is parsed.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use riposte_crds::Alert;
use riposte_detect::audit::Event;
use riposte_detect::envelope;
use riposte_detect::{Baseline, Config, Engine, LearningPeriod, Service, Workload};
use serde::Deserialize;
use serde_json::Value;

use super::pipeline::BASELINE_KEY;
use super::{AUDIT_SOURCE, ExposureKey, SCAN_SOURCE, alert_for, detected_at, exposure_key, service_write_namespace};
use crate::error::{Error, Result};

/// How often the progress line is redrawn, at most.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Reads from a file at a time.
const READ_BUFFER: usize = 256 * 1024;
/// The kinds whose pods the exposure rules look at.
const WORKLOAD_KINDS: [&str; 8] =
    ["Pod", "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "ReplicationController", "Job", "CronJob"];

/// How the alerts are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per alert: time, namespace, type, severity, entity, summary.
    #[default]
    Table,
    /// JSON lines: one Alert object per line.
    Json,
    /// A stream of YAML documents, `---` separated, ready for `kubectl apply -f -`.
    Yaml,
}

/// What the rules run with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    /// How long a new baseline learns, from the first event's timestamp.
    pub learning: Duration,
    /// A baseline to carry on from, instead of a new one.
    pub baseline: Option<Baseline>,
    /// Where alerts about cluster-scoped objects go (the operator's namespace).
    pub namespace: String,
    /// The pods and workloads the exposure rules see.
    pub cluster: Vec<Workload>,
}

impl Settings {
    pub fn new(config: Config, learning: Duration) -> Self {
        Settings { config, learning, baseline: None, namespace: "riposte-system".into(), cluster: Vec::new() }
    }
}

/// A Service of the cluster file, for the configuration scan.
#[derive(Clone, Debug)]
pub struct ClusterService {
    /// `namespace/name`.
    pub name: String,
    pub service: Service,
    /// The scan's occurrence, as the operator names it: `scan/<uid>/<resourceVersion>`.
    pub occurrence: String,
}

/// The engine, its cluster view and what it raised so far.
pub struct Offline {
    config: Config,
    learning: Duration,
    /// The baseline to start from, until the engine takes it.
    loaded: Option<Baseline>,
    /// Built at the first event with a timestamp: the baseline's learning starts there.
    engine: Option<Engine>,
    cluster: Vec<Workload>,
    namespace: String,
    names: HashSet<String>,
    exposures: HashSet<ExposureKey>,
    service_writes: u64,
}

impl Offline {
    pub fn new(settings: Settings) -> Self {
        Offline {
            config: settings.config,
            learning: settings.learning,
            loaded: settings.baseline,
            engine: None,
            cluster: settings.cluster,
            namespace: settings.namespace,
            names: HashSet::new(),
            exposures: HashSet::new(),
            service_writes: 0,
        }
    }

    /// The new Alerts of one event: those not raised before (by name).
    pub fn feed(&mut self, event: &Event) -> Vec<Alert> {
        if service_write_namespace(event).is_some() {
            self.service_writes += 1;
        }
        if self.engine.is_none() {
            let learning = self.learning.as_secs() as i64;
            let baseline = self.loaded.take().or_else(|| {
                event.timestamp().map(|start| Baseline::new(LearningPeriod { start, end: start.add_seconds(learning) }))
            });
            if let Some(baseline) = baseline {
                self.engine = Some(Engine::new(self.config.clone(), baseline));
            }
        }
        let findings = match &mut self.engine {
            Some(engine) => engine.evaluate(event, &self.cluster),
            // No timestamp yet to start learning from: the baseline rule needs one anyway.
            None => scratch_engine(&self.config).evaluate(event, &self.cluster),
        };
        if findings.is_empty() {
            return Vec::new();
        }
        let mut alerts = Vec::new();
        for finding in &findings {
            let alert = alert_for(finding, &event.audit_id, detected_at(event), AUDIT_SOURCE, &self.namespace);
            if self.remember(&alert) {
                alerts.push(alert);
            }
        }
        alerts
    }

    /// The configuration scan of `services` against the cluster view; an exposure already
    /// raised (from the log, or by an earlier Service) is not raised again.
    pub fn scan(&mut self, services: &[ClusterService]) -> Vec<Alert> {
        let scratch;
        let engine = match &self.engine {
            Some(engine) => engine,
            None => {
                scratch = scratch_engine(&self.config);
                &scratch
            }
        };
        let now = Time(jiff::Timestamp::now());
        let mut alerts = Vec::new();
        for service in services {
            for finding in engine.scan_service(&service.service, &self.cluster) {
                let alert = alert_for(&finding, &service.occurrence, now.clone(), SCAN_SOURCE, &self.namespace);
                if self.exposures.contains(&exposure_key(&alert)) {
                    continue;
                }
                if self.names.insert(alert.metadata.name.clone().unwrap_or_default()) {
                    self.exposures.insert(exposure_key(&alert));
                    alerts.push(alert);
                }
            }
        }
        alerts
    }

    /// The baseline as learned so far (or as loaded, before any event).
    pub fn baseline(&self) -> Option<&Baseline> {
        self.engine.as_ref().map(Engine::baseline).or(self.loaded.as_ref())
    }

    /// Service writes seen (create, update, patch): what the exposure rules check against
    /// the cluster view.
    pub fn service_writes(&self) -> u64 {
        self.service_writes
    }

    /// Whether `alert` is new; remembers it.
    fn remember(&mut self, alert: &Alert) -> bool {
        let new = self.names.insert(alert.metadata.name.clone().unwrap_or_default());
        if new {
            self.exposures.insert(exposure_key(alert));
        }
        new
    }

    /// Reads one audit log, in any of the formats of [`envelope`] (told from its content,
    /// gzip-compressed or not): one event or envelope per line (streamed), or a single
    /// document over many lines (read whole). Malformed lines and records are reported on
    /// `report` and skipped, as are counted the records that hold no audit event by design;
    /// an error reading the input ends the file.
    pub fn read_log<R: BufRead, O: Write, E: Write>(
        &mut self,
        name: &str,
        reader: R,
        report: &mut Report<O, E>,
    ) -> Result<FileStats> {
        report.stats.files += 1;
        let mut file = FileStats::default();
        let mut format = None;
        for result in envelope::Lines::new(reader) {
            if report.closed {
                break;
            }
            match result {
                Ok(unwrapped) => {
                    format.get_or_insert(unwrapped.format);
                    for event in &unwrapped.events {
                        self.event(event, report, &mut file)?;
                    }
                    for skipped in &unwrapped.skipped {
                        *report.stats.skipped.entry(skipped.reason.to_string()).or_default() += 1;
                    }
                    for malformed in &unwrapped.malformed {
                        file.malformed += 1;
                        report.malformed_record(name, &malformed.record, &malformed.error.to_string());
                    }
                }
                Err(riposte_detect::Error::ReadInput { line, source }) => return Err(read_error(name, line, source)),
                Err(riposte_detect::Error::EnvelopeLine { line, source }) => {
                    file.malformed += 1;
                    report.malformed(name, line, &line_error(&source));
                }
                Err(other) => {
                    file.malformed += 1;
                    report.malformed(name, 0, &other.to_string());
                }
            }
        }
        if let Some(format) = format {
            report.stats.formats.push((name.to_owned(), format));
        }
        Ok(file)
    }

    /// Reads an opened input, with its size and bytes read for the progress line.
    pub fn read_input<O: Write, E: Write>(&mut self, input: Input, report: &mut Report<O, E>) -> Result<FileStats> {
        report.start_file(&input.name, input.size, input.read.clone());
        let name = input.name.clone();
        self.read_log(&name, input.reader, report)
    }

    fn event<O: Write, E: Write>(
        &mut self,
        event: &Event,
        report: &mut Report<O, E>,
        file: &mut FileStats,
    ) -> Result<()> {
        file.events += 1;
        report.stats.events += 1;
        for alert in self.feed(event) {
            report.alert(&alert)?;
        }
        report.tick();
        Ok(())
    }
}

/// An engine for the rules that need no baseline.
fn scratch_engine(config: &Config) -> Engine {
    let epoch = riposte_detect::audit::Timestamp::from_unix_micros(0);
    Engine::new(config.clone(), Baseline::new(LearningPeriod { start: epoch, end: epoch }))
}

/// Why a line was skipped: what it is, when it is none of the formats.
fn line_error(error: &riposte_detect::Error) -> String {
    match error {
        riposte_detect::Error::UnknownEnvelope { .. } => format!("not an audit.k8s.io/v1 event: {error}"),
        other => other.to_string(),
    }
}

fn read_error(name: &str, line: usize, e: io::Error) -> Error {
    Error::Detection(format!("cannot read the audit log {name} at line {line}: {e}"))
}

/// Events and malformed lines of one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub events: u64,
    pub malformed: u64,
}

/// Counts over every file.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub files: usize,
    pub events: u64,
    pub malformed: u64,
    /// Records that hold no audit event by design (another log category, a control
    /// message...), by why.
    pub skipped: BTreeMap<String, u64>,
    /// The format of each file read (of its first line, for JSON lines).
    pub formats: Vec<(String, envelope::Format)>,
    /// Alerts printed, by type.
    pub alerts: BTreeMap<String, u64>,
}

impl Stats {
    pub fn alert_count(&self) -> u64 {
        self.alerts.values().sum()
    }
}

/// Bytes read so far from an input, shared with the progress line.
#[derive(Clone, Debug, Default)]
pub struct ByteCount(Rc<Cell<u64>>);

impl ByteCount {
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A reader that counts what it reads.
struct Counting<R> {
    inner: R,
    count: ByteCount,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count.0.set(self.count.0.get() + read as u64);
        Ok(read)
    }
}

/// An audit log, opened.
pub struct Input {
    name: String,
    size: Option<u64>,
    read: ByteCount,
    reader: BufReader<Counting<Box<dyn Read>>>,
}

impl Input {
    /// Opens an audit log; `-` is stdin.
    pub fn open(path: &Path) -> Result<Input> {
        if path.as_os_str() == "-" {
            return Ok(Input::from_reader("stdin", io::stdin().lock(), None));
        }
        let name = path.display().to_string();
        let cannot = |e: &dyn std::fmt::Display| {
            Error::Detection(format!(
                "cannot read the audit log {name}: {e}; pass the path of a kube-apiserver audit log \
                 (JSON lines, --audit-log-path), or - to read it from stdin"
            ))
        };
        let file = File::open(path).map_err(|e| cannot(&e))?;
        let metadata = file.metadata().map_err(|e| cannot(&e))?;
        if metadata.is_dir() {
            return Err(cannot(&"it is a directory"));
        }
        let size = metadata.is_file().then_some(metadata.len());
        Ok(Input::from_reader(name, file, size))
    }

    /// An input from any reader (`size`: its length, when known).
    pub fn from_reader(name: impl Into<String>, reader: impl Read + 'static, size: Option<u64>) -> Input {
        let read = ByteCount::default();
        let counting = Counting { inner: Box::new(reader) as Box<dyn Read>, count: read.clone() };
        Input { name: name.into(), size, read, reader: BufReader::with_capacity(READ_BUFFER, counting) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where alerts, malformed lines, the progress line and the summary go.
pub struct Report<O: Write, E: Write> {
    format: Format,
    out: O,
    err: E,
    quiet: bool,
    progress: Option<Progress>,
    header_written: bool,
    /// The output was closed (`| head`): stop reading.
    closed: bool,
    started: Instant,
    pub stats: Stats,
}

struct Progress {
    interval: Duration,
    last: Option<Instant>,
    shown: bool,
    ticks: u64,
    file: String,
    size: Option<u64>,
    read: ByteCount,
}

impl<O: Write, E: Write> Report<O, E> {
    /// `progress`: draw a progress line on `err` (a terminal).
    pub fn new(format: Format, out: O, err: E, quiet: bool, progress: bool) -> Self {
        let progress = (progress && !quiet).then(|| Progress {
            interval: PROGRESS_INTERVAL,
            last: None,
            shown: false,
            ticks: 0,
            file: String::new(),
            size: None,
            read: ByteCount::default(),
        });
        Report {
            format,
            out,
            err,
            quiet,
            progress,
            header_written: false,
            closed: false,
            started: Instant::now(),
            stats: Stats::default(),
        }
    }

    /// Redraws the progress line at most this often.
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        if let Some(progress) = &mut self.progress {
            progress.interval = interval;
        }
        self
    }

    /// Whether the output was closed by its reader; nothing more is written to it.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn start_file(&mut self, name: &str, size: Option<u64>, read: ByteCount) {
        if let Some(progress) = &mut self.progress {
            progress.file = Path::new(name).file_name().map_or(name.to_owned(), |n| n.to_string_lossy().into_owned());
            progress.size = size;
            progress.read = read;
            progress.last = None;
        }
        self.tick();
    }

    /// Prints an alert.
    pub fn alert(&mut self, alert: &Alert) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.clear_progress();
        *self.stats.alerts.entry(alert.spec.alert_type.0.clone()).or_default() += 1;
        match self.write_alert(alert) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Error::Detection(format!("cannot write the alerts to the output: {e}"))),
        }
    }

    fn write_alert(&mut self, alert: &Alert) -> io::Result<()> {
        match self.format {
            Format::Table => {
                if !self.header_written {
                    writeln!(
                        self.out,
                        "{}",
                        table_row(["TIME", "NAMESPACE", "TYPE", "SEVERITY", "ENTITY", "SUMMARY"])
                    )?;
                    self.header_written = true;
                }
                let spec = &alert.spec;
                let row = table_row([
                    // As the Alert records it: to the second.
                    &format!("{:.0}", spec.detected_at.0),
                    alert.metadata.namespace.as_deref().unwrap_or("-"),
                    &spec.alert_type.0,
                    &format!("{:?}", spec.severity),
                    &entity(alert),
                    &spec.title,
                ]);
                writeln!(self.out, "{row}")?;
            }
            Format::Json => {
                serde_json::to_writer(&mut self.out, alert)?;
                self.out.write_all(b"\n")?;
            }
            Format::Yaml => {
                let yaml = serde_yaml::to_string(alert).map_err(io::Error::other)?;
                write!(self.out, "---\n{yaml}")?;
            }
        }
        self.out.flush()
    }

    /// Reports a malformed line (always, even when quiet).
    pub fn malformed(&mut self, file: &str, line: usize, error: &str) {
        self.malformed_record(file, &format!("line {line}"), error);
    }

    /// Reports a malformed record of an envelope, such as `line 3: records[2]` (always).
    pub fn malformed_record(&mut self, file: &str, record: &str, error: &str) {
        self.stats.malformed += 1;
        self.clear_progress();
        let _ = writeln!(self.err, "riposte detect: {file}: {record} skipped: {error}");
    }

    /// Redraws the progress line if it is due.
    fn tick(&mut self) {
        let Some(progress) = &mut self.progress else {
            return;
        };
        progress.ticks += 1;
        // Reading the clock for every event would cost more than needed.
        if progress.last.is_some() && progress.ticks % 16 != 0 {
            return;
        }
        let now = Instant::now();
        if progress.last.is_some_and(|last| now.duration_since(last) < progress.interval) {
            return;
        }
        progress.last = Some(now);
        progress.shown = true;
        let read = progress.read.get();
        let size = match progress.size {
            Some(size) if size > 0 => {
                format!("{} / {} ({}%)", bytes(read), bytes(size), (read.min(size) * 100 / size))
            }
            _ => bytes(read),
        };
        let line = format!(
            "{}: {size}, {} events, {} alerts, {} events/s",
            progress.file,
            self.stats.events,
            self.stats.alerts.values().sum::<u64>(),
            rate(self.stats.events, self.started.elapsed())
        );
        let _ = write!(self.err, "\r\x1b[2K{line}");
        let _ = self.err.flush();
    }

    fn clear_progress(&mut self) {
        if let Some(progress) = &mut self.progress
            && progress.shown
        {
            progress.shown = false;
            let _ = write!(self.err, "\r\x1b[2K");
            let _ = self.err.flush();
        }
    }

    /// Writes what is left: erases the progress line and prints the summary (unless quiet).
    pub fn finish(&mut self, offline: &Offline, cluster_given: bool) {
        self.clear_progress();
        let _ = self.out.flush();
        if self.quiet {
            return;
        }
        let stats = &self.stats;
        let elapsed = self.started.elapsed();
        let mut summary = format!(
            "riposte detect: {} file{}, {} events, {} malformed lines skipped, {} alerts in {:.2}s ({} events/s)\n",
            stats.files,
            if stats.files == 1 { "" } else { "s" },
            stats.events,
            stats.malformed,
            stats.alert_count(),
            elapsed.as_secs_f64(),
            rate(stats.events, elapsed)
        );
        for (alert_type, count) in &stats.alerts {
            summary.push_str(&format!("  {count:>6}  {alert_type}\n"));
        }
        for (file, format) in &stats.formats {
            summary.push_str(&format!("{file}: {format}\n"));
        }
        if !stats.skipped.is_empty() {
            summary.push_str("records without audit events, skipped:\n");
            for (reason, count) in &stats.skipped {
                summary.push_str(&format!("  {count:>6}  {reason}\n"));
            }
        }
        if let Some(baseline) = offline.baseline() {
            let learning = baseline.learning();
            summary.push_str(&format!(
                "service-account baseline: {} accounts, {} operations, learning from {} until {}\n",
                baseline.accounts(),
                baseline.operations(),
                learning.start,
                learning.end
            ));
        }
        if !cluster_given && offline.service_writes() > 0 {
            summary.push_str(&format!(
                "no --workloads: the exposure rules (K8S_Exposed*) saw no pods behind the {} Service writes\n",
                offline.service_writes()
            ));
        }
        let _ = self.err.write_all(summary.as_bytes());
        let _ = self.err.flush();
    }
}

fn table_row(columns: [&str; 6]) -> String {
    let [time, namespace, alert_type, severity, entity, summary] = columns;
    format!("{time:<20}  {namespace:<16}  {alert_type:<31}  {severity:<13}  {entity:<32}  {summary}")
}

/// What the alert is about: its pod, else its workload (or role, webhook...), else its user.
fn entity(alert: &Alert) -> String {
    let e = &alert.spec.entities;
    if let Some(pod) = &e.pod {
        return format!("pod/{pod}");
    }
    if let Some(name) = &e.workload_name {
        return match &e.workload_kind {
            Some(kind) => format!("{}/{name}", kind.to_ascii_lowercase()),
            None => name.clone(),
        };
    }
    match &e.user {
        Some(user) => format!("user/{user}"),
        None => "-".into(),
    }
}

fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn rate(events: u64, elapsed: Duration) -> u64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 { 0 } else { (events as f64 / seconds) as u64 }
}

/// The objects of a `--workloads` file.
#[derive(Debug, Default)]
pub struct ClusterObjects {
    pub workloads: Vec<Workload>,
    pub services: Vec<ClusterService>,
    /// Objects of other kinds, by kind.
    pub ignored: BTreeMap<String, usize>,
    /// Objects of the kinds read that could not be read, with why.
    pub invalid: Vec<String>,
}

/// Reads the pods, workloads and Services of `kubectl get ... -o json` (a List, or several
/// JSON documents) or `-o yaml` (a List, or several YAML documents). Items of typed lists
/// (`PodList`) may omit their kind.
pub fn parse_cluster(text: &str) -> std::result::Result<ClusterObjects, String> {
    let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("not valid JSON: {e}"))?
    } else {
        serde_yaml::Deserializer::from_str(text)
            .map(Value::deserialize)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("not valid YAML: {e}"))?
    };
    let mut objects = ClusterObjects::default();
    for document in documents {
        collect(document, None, &mut objects);
    }
    Ok(objects)
}

fn collect(value: Value, list_kind: Option<&str>, objects: &mut ClusterObjects) {
    let mut value = match value {
        Value::Null => return,
        Value::Array(items) => {
            for item in items {
                collect(item, None, objects);
            }
            return;
        }
        Value::Object(map) => map,
        other => {
            objects.invalid.push(format!("not an object: {other}"));
            return;
        }
    };
    let kind = value.get("kind").and_then(Value::as_str).or(list_kind).unwrap_or_default().to_owned();
    if let Some(Value::Array(items)) = value.remove("items") {
        let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
        for item in items {
            collect(item, item_kind, objects);
        }
        return;
    }
    let metadata = value.get("metadata");
    let field = |name: &str| metadata.and_then(|m| m.get(name)).and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = format!("{}/{}", field("namespace"), field("name"));
    if kind == "Service" {
        let occurrence = format!("scan/{}/{}", field("uid"), field("resourceVersion"));
        match serde_json::from_value::<Service>(Value::Object(value)) {
            Ok(service) => objects.services.push(ClusterService { name, service, occurrence }),
            Err(e) => objects.invalid.push(format!("Service {name}: {e}")),
        }
    } else if WORKLOAD_KINDS.contains(&kind.as_str()) {
        value.insert("kind".into(), Value::String(kind.clone()));
        match serde_json::from_value::<Workload>(Value::Object(value)) {
            Ok(workload) => objects.workloads.push(workload),
            Err(e) => objects.invalid.push(format!("{kind} {name}: {e}")),
        }
    } else {
        let kind = if kind.is_empty() { "(no kind)".to_owned() } else { kind };
        *objects.ignored.entry(kind).or_default() += 1;
    }
}

/// Reads a baseline as the operator persists it: its JSON, or the ConfigMap that holds it
/// (`kubectl get configmap riposte-detection-baseline -o json` or `-o yaml`).
pub fn parse_baseline(text: &str) -> std::result::Result<Baseline, String> {
    let error = match serde_json::from_str::<Baseline>(text) {
        Ok(baseline) => return Ok(baseline),
        Err(e) => e,
    };
    let document: Option<Value> = serde_json::from_str(text).ok().or_else(|| serde_yaml::from_str(text).ok());
    let stored = document
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("ConfigMap"))
        .and_then(|d| d.get("data")?.get(BASELINE_KEY)?.as_str().map(str::to_owned));
    match stored {
        Some(json) => {
            serde_json::from_str(&json).map_err(|e| format!("the ConfigMap's {BASELINE_KEY} is invalid: {e}"))
        }
        None => Err(error.to_string()),
    }
}

/// What `riposte detect` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// Audit logs, read in order; `-` is stdin.
    pub audit_logs: Vec<PathBuf>,
    pub config: Config,
    pub learning: Duration,
    pub baseline: Option<PathBuf>,
    pub save_baseline: Option<PathBuf>,
    pub workloads: Option<PathBuf>,
    pub namespace: String,
    pub format: Format,
    pub quiet: bool,
}

/// `riposte detect`: reads every audit log in order and prints the alerts; `progress`: draw a
/// progress line on `err` (when it is a terminal). Fails when an input cannot be opened or
/// read, or when one holds no audit event at all (after reading the others).
pub fn run<O: Write, E: Write>(options: Options, out: O, mut err: E, progress: bool) -> Result<Stats> {
    if options.audit_logs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(Error::Detection("stdin (-) can be read only once; give --audit-log - once".into()));
    }
    let baseline = options
        .baseline
        .as_deref()
        .map(|path| {
            let text = read_text(path, "baseline")?;
            parse_baseline(&text).map_err(|e| {
                Error::Detection(format!(
                    "the baseline {} is not a service-account baseline ({e}); pass a file written by --save-baseline \
                     or the operator's ConfigMap riposte-detection-baseline",
                    path.display()
                ))
            })
        })
        .transpose()?;
    let cluster = match &options.workloads {
        Some(path) => {
            let text = read_text(path, "workloads file")?;
            let objects = parse_cluster(&text).map_err(|e| {
                Error::Detection(format!(
                    "the workloads file {} is {e}; pass the output of kubectl get pods,deployments,daemonsets,\
                     statefulsets,replicasets,jobs,cronjobs,services -A -o json",
                    path.display()
                ))
            })?;
            for invalid in &objects.invalid {
                let _ = writeln!(err, "riposte detect: {}: skipped {invalid}", path.display());
            }
            if !options.quiet {
                let ignored: Vec<String> = objects.ignored.iter().map(|(k, n)| format!("{n} {k}")).collect();
                let _ = writeln!(
                    err,
                    "riposte detect: {}: {} pods and workloads, {} Services{}",
                    path.display(),
                    objects.workloads.len(),
                    objects.services.len(),
                    if ignored.is_empty() { String::new() } else { format!(" (ignored: {})", ignored.join(", ")) }
                );
            }
            Some(objects)
        }
        None => None,
    };
    // Every input opens before anything is printed: a wrong path fails at once.
    let inputs = options.audit_logs.iter().map(|path| Input::open(path)).collect::<Result<Vec<_>>>()?;

    let cluster_given = cluster.is_some();
    let (workloads, services) = cluster.map(|c| (c.workloads, c.services)).unwrap_or_default();
    let mut offline = Offline::new(Settings {
        config: options.config,
        learning: options.learning,
        baseline,
        namespace: options.namespace,
        cluster: workloads,
    });
    let mut report = Report::new(options.format, out, err, options.quiet, progress);
    let mut failures = Vec::new();
    for input in inputs {
        if report.closed() {
            break;
        }
        let name = input.name().to_owned();
        match offline.read_input(input, &mut report) {
            Ok(file) if file.events == 0 && !report.closed() => failures.push(format!(
                "no audit event in {name} ({} malformed lines): is it a kube-apiserver audit log \
                 (JSON lines of audit.k8s.io/v1 events) or a managed cluster's export of one (AKS \
                 diagnostic records, a CloudWatch Logs payload or Firehose delivery, GKE LogEntries, \
                 a Pub/Sub push)?",
                file.malformed
            )),
            Ok(_) => {}
            Err(e) => failures.push(e.to_string()),
        }
    }
    for alert in offline.scan(&services) {
        report.alert(&alert)?;
    }
    if let Some(path) = &options.save_baseline {
        match offline.baseline() {
            Some(baseline) if failures.is_empty() => {
                let json = serde_json::to_string(baseline).map_err(|e| Error::Detection(e.to_string()))?;
                std::fs::write(path, json)
                    .map_err(|e| Error::Detection(format!("cannot write the baseline to {}: {e}", path.display())))?;
            }
            Some(_) => failures.push(format!("the baseline was not saved to {}", path.display())),
            None => failures.push(format!("no event: no baseline learned, {} not written", path.display())),
        }
    }
    report.finish(&offline, cluster_given);
    if failures.is_empty() { Ok(report.stats) } else { Err(Error::Detection(failures.join("; "))) }
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Detection(format!("cannot read the {what} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_detect::audit::Timestamp;
    use riposte_detect::rules::ALERT_TYPES;
    use std::collections::BTreeSet;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../detect/tests/fixtures");
    const BENIGN: [&str; 4] =
        ["bootstrap.jsonl", "request-received.jsonl", "benign-other.jsonl", "benign-workloads.jsonl"];
    const ATTACKS: [&str; 4] =
        ["attack-workloads.jsonl", "attack-exposure.jsonl", "attack-control-plane.jsonl", "clients.jsonl"];

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture exists")
    }

    fn events(name: &str) -> Vec<Event> {
        riposte_detect::audit::parse_body(fixture(name).as_bytes()).expect("fixtures are audit events")
    }

    /// The settings the detect tests replay with: a proxy feed, and the baseline learning
    /// until the fixtures' marker request (the fixtures span seconds, not hours).
    fn attack_settings() -> Settings {
        let end = events("clients.jsonl")
            .iter()
            .find(|e| e.user_agent.as_deref() == Some("fixture-phase/learning-ended"))
            .and_then(Event::timestamp)
            .expect("the learning marker is in the fixture");
        let config = Config { proxy_networks: vec!["203.0.113.0/24".parse().expect("a CIDR")], ..Config::default() };
        let mut settings = Settings::new(config, Duration::from_secs(3600));
        settings.baseline = Some(Baseline::new(LearningPeriod { start: Timestamp::from_unix_micros(0), end }));
        settings
    }

    /// The pods, workloads and Services the fixtures leave behind, as a kubectl List.
    fn cluster_list() -> String {
        let mut items: Vec<Value> = Vec::new();
        for name in BENIGN.iter().chain(&ATTACKS) {
            for event in events(name) {
                let (Some(object_ref), Some(object)) = (&event.object_ref, &event.response_object) else {
                    continue;
                };
                let written = matches!(event.verb.as_str(), "create" | "update" | "patch")
                    && object_ref.subresource.is_empty()
                    && !event.is_dry_run()
                    && event.status_code().is_some_and(|c| c < 400);
                let object: Value = serde_json::from_str(object.get()).unwrap();
                let kind = object["kind"].as_str().unwrap_or_default();
                if !written || !(kind == "Service" || WORKLOAD_KINDS.contains(&kind)) {
                    continue;
                }
                let id =
                    |o: &Value| (o["kind"].clone(), o["metadata"]["namespace"].clone(), o["metadata"]["name"].clone());
                items.retain(|o| id(o) != id(&object));
                items.push(object);
            }
        }
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    }

    struct Run {
        stats: Stats,
        out: String,
        err: String,
    }

    fn replay(offline: &mut Offline, names: &[&str], format: Format) -> Run {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let stats = {
            let mut report = Report::new(format, &mut out, &mut err, false, false);
            for name in names {
                offline.read_log(name, fixture(name).as_bytes(), &mut report).unwrap();
            }
            report.finish(offline, true);
            report.stats
        };
        Run { stats, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
    }

    fn types(stats: &Stats) -> BTreeSet<&str> {
        stats.alerts.keys().map(String::as_str).collect()
    }

    #[test]
    fn the_benign_run_raises_nothing() {
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(72 * 3600)));
        let run = replay(&mut offline, &BENIGN, Format::Table);
        assert_eq!(run.stats.events, 19 + 107 + 56 + 19);
        assert_eq!(run.stats.alert_count(), 0, "{}", run.out);
        assert_eq!((run.stats.malformed, run.out.as_str()), (0, ""), "no alert, no table header");
        assert!(
            run.err.starts_with("riposte detect: 4 files, 201 events, 0 malformed lines skipped, 0 alerts"),
            "{}",
            run.err
        );
    }

    #[test]
    fn the_attacker_run_raises_every_alert_type_of_the_rules() {
        let mut settings = attack_settings();
        let cluster = parse_cluster(&cluster_list()).unwrap();
        settings.cluster = cluster.workloads;
        let mut offline = Offline::new(settings);
        let benign = replay(&mut offline, &BENIGN, Format::Table);
        assert_eq!(benign.stats.alert_count(), 0, "{}", benign.out);
        let attacks = replay(&mut offline, &ATTACKS, Format::Table);
        assert_eq!(types(&attacks.stats), ALERT_TYPES.into_iter().collect(), "{}", attacks.out);
        let expected: BTreeMap<String, u64> = [
            ("K8S_AdmissionController", 1),
            ("K8S_ClusterAdminBinding", 1),
            ("K8S_CoreDnsModification", 1),
            ("K8S_DeleteEvents", 1),
            ("K8S_ExposedDashboard", 1),
            ("K8S_ExposedKubeflow", 1),
            ("K8S_ExposedPostgresBroadIPRange", 1),
            ("K8S_ExposedPostgresTrustAuth", 1),
            ("K8S_ExposedRedis", 1),
            ("K8S_ExposedService", 1),
            ("K8S_HighPrivilegesRole", 3),
            ("K8S_KubeSystemContainer", 2),
            ("K8S_MaliciousContainerImage", 1),
            ("K8S_PenTestToolsKubeHunter", 2),
            ("K8S_PrivilegedContainer", 4),
            ("K8S_SensitiveMount", 2),
            ("K8S_ServiceAccountRareOperation", 2),
            ("K8S_TI_Proxy", 1),
        ]
        .into_iter()
        .map(|(t, n)| (t.to_owned(), n))
        .collect();
        assert_eq!(attacks.stats.alerts, expected);
        // The table: a header, then one line per alert with its entity.
        let lines: Vec<&str> = attacks.out.lines().collect();
        assert!(lines[0].starts_with("TIME") && lines[0].contains("SEVERITY"), "{}", lines[0]);
        assert_eq!(lines.len() as u64, 1 + attacks.stats.alert_count());
        assert!(
            lines.iter().any(|l| l.contains("K8S_PrivilegedContainer") && l.contains("pod/attacker")),
            "{}",
            attacks.out
        );
        assert!(lines.iter().any(|l| l.contains("K8S_PrivilegedContainer") && l.contains("deployment/web")));
        assert!(lines[1].starts_with("2026-11-22T20:43:27Z  "), "detectedAt is the event's time: {}", lines[1]);

        // The configuration scan finds the same exposures in the existing Services: already
        // raised from the log, nothing new.
        let services = parse_cluster(&cluster_list()).unwrap().services;
        assert!(services.len() >= 6);
        assert!(offline.scan(&services).is_empty());
    }

    #[test]
    fn without_a_cluster_view_service_writes_expose_nothing_and_the_summary_says_so() {
        let mut offline = Offline::new(attack_settings());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut report = Report::new(Format::Json, &mut out, &mut err, false, false);
        offline.read_log("exposure", fixture("attack-exposure.jsonl").as_bytes(), &mut report).unwrap();
        report.finish(&offline, false);
        assert_eq!(report.stats.alert_count(), 0);
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("no --workloads: the exposure rules (K8S_Exposed*) saw no pods"), "{err}");
    }

    #[test]
    fn the_scan_of_the_workloads_file_raises_the_exposures_of_existing_services() {
        let cluster = parse_cluster(&cluster_list()).unwrap();
        let mut settings = Settings::new(Config::default(), Duration::from_secs(3600));
        settings.cluster = cluster.workloads;
        let mut offline = Offline::new(settings);
        let alerts = offline.scan(&cluster.services);
        let scanned: Vec<&str> = alerts.iter().map(|a| a.spec.alert_type.0.as_str()).collect();
        assert_eq!(
            scanned,
            [
                "K8S_ExposedDashboard",
                "K8S_ExposedRedis",
                "K8S_ExposedPostgresTrustAuth",
                "K8S_ExposedPostgresBroadIPRange",
                "K8S_ExposedService",
                "K8S_ExposedKubeflow",
            ]
        );
        assert!(alerts.iter().all(|a| a.spec.source.as_deref() == Some(SCAN_SOURCE)));
        assert!(offline.scan(&cluster.services).is_empty(), "a second scan repeats nothing");
    }

    #[test]
    fn malformed_lines_are_reported_with_their_numbers_counted_and_skipped() {
        let lines: Vec<String> = fixture("attack-control-plane.jsonl").lines().map(str::to_owned).collect();
        let input = format!(
            "\n{}\nnot json\n{{\"kind\":\"Event\",\"level\":\"Metadata\"}}\n\n{}\n{{\"truncated\n",
            lines[..3].join("\n"),
            lines[3..].join("\n")
        );
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut report = Report::new(Format::Table, &mut out, &mut err, true, false);
        let file = offline.read_log("cut.jsonl", input.as_bytes(), &mut report).unwrap();
        assert_eq!(file, FileStats { events: lines.len() as u64, malformed: 3 });
        assert_eq!(report.stats.malformed, 3);
        assert_eq!(report.stats.alerts["K8S_ClusterAdminBinding"], 1, "the lines around the bad ones are read");
        let err = String::from_utf8(err).unwrap();
        let skipped: Vec<&str> = err.lines().collect();
        assert_eq!(skipped.len(), 3, "{err}");
        assert!(skipped[0].starts_with("riposte detect: cut.jsonl: line 5 skipped: not an audit.k8s.io/v1 event"));
        assert!(skipped[1].starts_with("riposte detect: cut.jsonl: line 6 skipped: "), "{err}");
        let last = 1 + 3 + 2 + 1 + (lines.len() - 3) + 1;
        assert!(skipped[2].starts_with(&format!("riposte detect: cut.jsonl: line {last} skipped: ")), "{err}");

        // A malformed first line does not stop the file either.
        let input = format!("garbage\n{}\n", lines.join("\n"));
        let mut report = Report::new(Format::Table, Vec::new(), Vec::new(), true, false);
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let file = offline.read_log("first.jsonl", input.as_bytes(), &mut report).unwrap();
        assert_eq!(file, FileStats { events: lines.len() as u64, malformed: 1 });
        assert!(String::from_utf8_lossy(&report.err).contains("first.jsonl: line 1 skipped"));
    }

    const PROVIDERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../detect/tests/data/providers");

    fn provider_data(name: &str) -> Vec<u8> {
        std::fs::read(format!("{PROVIDERS}/{name}")).expect("provider test data exists")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn managed_clusters_envelopes_raise_the_alerts_of_the_plain_events_named_alike() {
        let read = |name: &str, body: &[u8]| {
            let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let stats = {
                let mut report = Report::new(Format::Json, &mut out, &mut err, false, false);
                offline.read_log(name, body, &mut report).unwrap();
                report.finish(&offline, true);
                report.stats
            };
            let names: Vec<String> = String::from_utf8(out)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Alert>(l).unwrap().metadata.name.unwrap())
                .collect();
            (stats, names, String::from_utf8(err).unwrap())
        };
        let (_, plain, _) = read("plain", provider_plain().as_bytes());
        assert_eq!(plain.len(), 2, "the privileged pod and the cluster-admin binding");
        let cases: [(&str, Vec<u8>, envelope::Format); 4] = [
            ("eks.json.gz", gzip(&provider_data("eks-cloudwatch-audit.json")), envelope::Format::CloudWatchLogs),
            ("aks.json", provider_data("aks-event-hubs.json"), envelope::Format::AksDiagnostics),
            ("firehose.json", provider_data("firehose-delivery.json"), envelope::Format::FirehoseDelivery),
            ("gke.json", provider_data("gke-logentries.json"), envelope::Format::GkeAuditLog),
        ];
        for (name, body, format) in cases {
            let (stats, names, err) = read(name, &body);
            assert_eq!(names, plain, "{name}: the same alerts, the same names (from the audit IDs)");
            assert_eq!(stats.formats, [(name.to_owned(), format)]);
            assert!(err.contains(&format!("\n{name}: {format}\n")), "the summary names the format: {err}");
            if name == "aks.json" {
                assert_eq!(stats.malformed, 1, "{err}");
                assert!(
                    err.contains("riposte detect: aks.json: records[5] skipped: an AKS diagnostic record"),
                    "{err}"
                );
                assert_eq!(stats.skipped["an AKS record of category guard, not kube-audit"], 1);
                assert!(err.contains("records without audit events, skipped:\n"), "{err}");
            }
        }
    }

    /// The two attacks of the provider test data, as the apiserver wrote them.
    fn provider_plain() -> String {
        let ids = ["729aa701-7cf0-427e-a2f4-c8da83c50166", "5c702f43-bced-461f-a70c-5ba99419f476"];
        let mut lines = Vec::new();
        for (name, id) in ["attack-workloads.jsonl", "attack-control-plane.jsonl"].into_iter().zip(ids) {
            lines
                .push(fixture(name).lines().find(|l| l.contains(id)).expect("the attack is in the fixture").to_owned());
        }
        lines.join("\n")
    }

    #[test]
    fn a_gzip_compressed_log_with_a_byte_order_mark_reads_as_the_plain_log() {
        let text = fixture("attack-control-plane.jsonl");
        let expected = {
            let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
            replay(&mut offline, &["attack-control-plane.jsonl"], Format::Json).out
        };
        let mut body = "\u{feff}".as_bytes().to_vec();
        body.extend_from_slice(text.as_bytes());
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut report = Report::new(Format::Json, &mut out, &mut err, true, false);
        let file = offline.read_log("audit.log.gz", &gzip(&body)[..], &mut report).unwrap();
        assert_eq!(file, FileStats { events: text.lines().count() as u64, malformed: 0 });
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn a_file_of_none_of_the_formats_says_what_it_saw() {
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let mut report = Report::new(Format::Json, Vec::new(), Vec::new(), true, false);
        let file = offline.read_log("x.json", &b"{\"foo\": 1, \"bar\": 2}\n"[..], &mut report).unwrap();
        assert_eq!(file, FileStats { events: 0, malformed: 1 });
        let err = String::from_utf8(report.err).unwrap();
        assert!(
            err.starts_with(
                "riposte detect: x.json: line 1 skipped: not an audit.k8s.io/v1 event: a JSON object with keys [foo, bar]; \
                 expected an audit event, an EventList, AKS diagnostic records"
            ),
            "{err}"
        );
    }

    #[test]
    fn repeated_events_are_reported_once() {
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let first = replay(&mut offline, &["attack-control-plane.jsonl"], Format::Json);
        assert!(first.stats.alert_count() >= 5);
        let again = replay(&mut offline, &["attack-control-plane.jsonl"], Format::Json);
        assert_eq!((again.stats.alert_count(), again.out.as_str()), (0, ""), "the same requests, read again");
        assert_eq!(again.stats.events, first.stats.events);

        // Within one file: an event repeated on the next line.
        let binding = fixture("attack-control-plane.jsonl")
            .lines()
            .find(|l| {
                l.contains("clusterrolebindings") && l.contains("\"verb\":\"create\"") && l.contains("ResponseComplete")
            })
            .expect("the binding's creation")
            .to_owned();
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut report = Report::new(Format::Json, &mut out, &mut err, true, false);
        let twice = format!("{binding}\n{binding}\n");
        offline.read_log("twice", twice.as_bytes(), &mut report).unwrap();
        assert_eq!(report.stats.events, 2);
        assert_eq!(report.stats.alert_count(), 1);
    }

    #[test]
    fn json_lines_and_yaml_output_parse_back_into_alerts() {
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let json = replay(&mut offline, &["attack-workloads.jsonl"], Format::Json);
        let from_json: Vec<Alert> = json.out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(from_json.len() as u64, json.stats.alert_count());
        assert!(from_json.len() >= 8);

        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let yaml = replay(&mut offline, &["attack-workloads.jsonl"], Format::Yaml);
        assert!(yaml.out.starts_with("---\napiVersion: riposte.dev/v1alpha1\nkind: Alert\n"), "{}", yaml.out);
        let from_yaml: Vec<Alert> = serde_yaml::Deserializer::from_str(&yaml.out)
            .map(|document| Alert::deserialize(document).expect("each document is an Alert"))
            .collect();
        let values = |alerts: &[Alert]| serde_json::to_value(alerts).unwrap();
        assert_eq!(values(&from_yaml), values(&from_json), "the same Alerts in both formats");
        let first = &from_yaml[0];
        assert_eq!(first.spec.source.as_deref(), Some(AUDIT_SOURCE));
        assert!(first.metadata.name.as_deref().is_some_and(|n| n.starts_with("k8s-privilegedcontainer-")));
        assert_eq!(first.metadata.namespace.as_deref(), Some("shop"));
        let names: HashSet<_> = from_yaml.iter().map(|a| a.metadata.name.clone()).collect();
        assert_eq!(names.len(), from_yaml.len());
    }

    #[test]
    fn alerts_are_those_the_operator_would_create() {
        let event = events("attack-control-plane.jsonl")
            .into_iter()
            .find(|e| e.verb == "create" && e.object_ref.as_ref().is_some_and(|o| o.resource == "clusterrolebindings"))
            .unwrap();
        let mut engine = scratch_engine(&Config::default());
        let finding = engine.evaluate(&event, &Vec::<Workload>::new()).remove(0);
        let at = jiff::Timestamp::from_microsecond(event.timestamp().unwrap().unix_micros()).unwrap();
        let expected = alert_for(&finding, &event.audit_id, Time(at), AUDIT_SOURCE, "security");
        let mut settings = Settings::new(Config::default(), Duration::from_secs(3600));
        settings.namespace = "security".into();
        let alerts = Offline::new(settings).feed(&event);
        assert_eq!(serde_json::to_value(alerts).unwrap(), serde_json::to_value([expected]).unwrap());
    }

    #[test]
    fn an_event_list_document_reads_as_its_lines_do() {
        let text = fixture("attack-control-plane.jsonl");
        let items: Vec<&str> = text.lines().collect();
        let compact = format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#, items.join(","));
        let indented = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&compact).unwrap()).unwrap();
        let expected = {
            let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
            replay(&mut offline, &["attack-control-plane.jsonl"], Format::Json).out
        };
        for document in [compact, format!("\n{indented}\n")] {
            let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut report = Report::new(Format::Json, &mut out, &mut err, true, false);
            let file = offline.read_log("list.json", document.as_bytes(), &mut report).unwrap();
            assert_eq!(file, FileStats { events: items.len() as u64, malformed: 0 });
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        // A broken document is one error, not one per line.
        let broken = "{\n  \"kind\": \"EventList\",\n  \"items\": [\n";
        let mut report = Report::new(Format::Json, Vec::new(), Vec::new(), true, false);
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let file = offline.read_log("broken.json", broken.as_bytes(), &mut report).unwrap();
        assert_eq!(file, FileStats { events: 0, malformed: 1 });
    }

    fn event_at(user: &str, verb: &str, resource: &str, at: &str) -> String {
        serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": format!("{verb}-{at}"),
            "stage": "ResponseComplete", "requestURI": format!("/api/v1/namespaces/shop/{resource}"), "verb": verb,
            "user": {"username": user}, "objectRef": {"resource": resource, "namespace": "shop", "apiVersion": "v1"},
            "responseStatus": {"code": 200}, "requestReceivedTimestamp": at, "stageTimestamp": at,
        })
        .to_string()
    }

    #[test]
    fn the_baseline_learns_from_the_first_event_for_the_learning_period_then_reports() {
        let sa = "system:serviceaccount:shop:web";
        let log = [
            event_at(sa, "get", "configmaps", "2026-01-01T00:00:00Z"),
            event_at(sa, "list", "pods", "2026-01-02T00:00:00Z"),
            event_at(sa, "get", "configmaps", "2026-01-04T00:00:00Z"),
            event_at(sa, "list", "secrets", "2026-01-04T01:00:00Z"),
        ]
        .join("\n");
        let read = |learning_hours: u64, baseline: Option<Baseline>| {
            let mut settings = Settings::new(Config::default(), Duration::from_secs(learning_hours * 3600));
            settings.baseline = baseline;
            let mut offline = Offline::new(settings);
            let mut report = Report::new(Format::Json, Vec::new(), Vec::new(), true, false);
            offline.read_log("sa.jsonl", log.as_bytes(), &mut report).unwrap();
            let saved = serde_json::to_string(offline.baseline().unwrap()).unwrap();
            (report.stats.alerts.get("K8S_ServiceAccountRareOperation").copied().unwrap_or(0), saved)
        };
        let (rare, saved) = read(72, None);
        assert_eq!(rare, 1, "learned for 72 hours from the first event, then list secrets is new");
        let restored = parse_baseline(&saved).unwrap();
        assert_eq!(restored.learning().start, "2026-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(restored.learning().end, "2026-01-04T00:00:00Z".parse().unwrap());
        assert_eq!(read(96, None).0, 0, "still learning after 96 hours");
        // Carrying on from the saved baseline: list secrets is known now.
        assert_eq!(read(72, Some(restored)).0, 0);
        // The operator's ConfigMap is read too.
        let config_map = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {BASELINE_KEY: saved}});
        assert!(parse_baseline(&config_map.to_string()).is_ok());
        assert!(parse_baseline(&serde_yaml::to_string(&config_map).unwrap()).is_ok());
        assert!(parse_baseline("{\"kind\":\"Pod\"}").is_err());
    }

    #[test]
    fn cluster_files_take_lists_typed_lists_and_yaml() {
        let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
  spec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: nginx}]}}}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop, uid: u1, resourceVersion: "7"}
  spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: shop}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: web-1, namespace: shop, labels: {app: web}}
  spec: {containers: [{name: web, image: nginx}]}
"#;
        let objects = parse_cluster(text).unwrap();
        let workloads: Vec<(&str, &str)> = objects.workloads.iter().map(|w| (w.kind(), w.name())).collect();
        assert_eq!(workloads, [("Deployment", "web"), ("Pod", "web-1")]);
        assert_eq!(objects.services.len(), 1);
        assert_eq!(
            (objects.services[0].name.as_str(), objects.services[0].occurrence.as_str()),
            ("shop/web", "scan/u1/7")
        );
        assert_eq!(objects.ignored, BTreeMap::from([("ConfigMap".to_owned(), 1)]));
        assert!(objects.invalid.is_empty());

        let json = r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"a"},"spec":{"containers":"oops"}}]}
{"kind":"DeploymentList","items":[{"metadata":{"name":"d","namespace":"x"},"spec":{}}]}"#;
        let objects = parse_cluster(json).unwrap();
        assert_eq!(objects.workloads.len(), 1, "the valid Deployment of the second document");
        assert_eq!(objects.invalid.len(), 1, "the Pod whose containers are not a list: {:?}", objects.invalid);
        assert!(parse_cluster("{\"kind\": ").is_err());
    }

    #[test]
    fn the_progress_line_is_drawn_only_when_asked_and_erased_at_the_end() {
        let text = fixture("request-received.jsonl");
        let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
        let mut err = Vec::new();
        {
            let mut report =
                Report::new(Format::Table, Vec::new(), &mut err, false, true).with_progress_interval(Duration::ZERO);
            let size = text.len() as u64;
            let input = Input::from_reader("/var/log/audit/audit.log", io::Cursor::new(text.into_bytes()), Some(size));
            offline.read_input(input, &mut report).unwrap();
            report.finish(&offline, true);
        }
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("\r\x1b[2Kaudit.log: "), "{err:?}");
        assert!(err.contains("61.5 KiB / 61.5 KiB (100%), ") && err.contains(" events, 0 alerts, "), "{err:?}");
        let (progress, summary) = err.rsplit_once("\r\x1b[2K").unwrap();
        assert!(progress.contains("events/s"));
        assert!(
            summary.starts_with("riposte detect: 1 file, 107 events, 0 malformed lines skipped, 0 alerts"),
            "{summary:?}"
        );

        for (quiet, progress) in [(false, false), (true, true)] {
            let mut offline = Offline::new(Settings::new(Config::default(), Duration::from_secs(3600)));
            let mut report = Report::new(Format::Table, Vec::new(), Vec::new(), quiet, progress)
                .with_progress_interval(Duration::ZERO);
            offline.read_log("a", fixture("request-received.jsonl").as_bytes(), &mut report).unwrap();
            report.finish(&offline, true);
            let err = String::from_utf8(report.err).unwrap();
            assert!(!err.contains('\r'), "no progress line: {err:?}");
            assert_eq!(err.is_empty(), quiet, "{err:?}");
        }
    }

    #[test]
    fn run_fails_naming_a_missing_file_before_printing_anything() {
        let options = Options {
            audit_logs: vec![format!("{FIXTURES}/attack-control-plane.jsonl").into(), "/nonexistent/audit.log".into()],
            config: Config::default(),
            learning: Duration::from_secs(3600),
            baseline: None,
            save_baseline: None,
            workloads: None,
            namespace: "riposte-system".into(),
            format: Format::Table,
            quiet: false,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let error = run(options.clone(), &mut out, &mut err, false).unwrap_err().to_string();
        assert!(error.contains("cannot read the audit log /nonexistent/audit.log: "), "{error}");
        assert!(out.is_empty());

        let empty = std::env::temp_dir().join(format!("riposte-offline-empty-{}.jsonl", std::process::id()));
        std::fs::write(&empty, "\n\n").unwrap();
        let options = Options { audit_logs: vec![options.audit_logs[0].clone(), empty.clone()], ..options };
        let error = run(options, &mut out, &mut err, false).unwrap_err().to_string();
        std::fs::remove_file(&empty).unwrap();
        assert!(error.contains("no audit event in ") && error.contains("riposte-offline-empty"), "{error}");
        assert!(String::from_utf8(out).unwrap().contains("K8S_ClusterAdminBinding"), "the other file was read");
    }
}
