//! The audit rules judged on other people's data: audit events published by rule test suites
//! and exporters (Falco, Panther, Elastic, audit2rbac), kept unmodified in
//! `tests/data/thirdparty/<source>/` with their provenance and licence in `SOURCES.md`.
//!
//! `expectations.yaml` says, per sample (a file, or one test case of a Panther rule file),
//! which catalog alert types the catalog's definitions call for, whatever the source's own rule
//! decided, and whether a correct reader accepts every document of it. Where today's code
//! does not do that, the sample carries `known_miss: <reason>`: the test then requires the
//! miss, so that a fix shows up as a marker to remove, and fails on any other difference.
//!
//! `cargo test -p riposte-detect --test thirdparty -- --nocapture` prints the report per
//! source: documents read and refused (with the reason), alerts fired by type,
//! expected-but-missing and fired-but-unexpected types, and the known misses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use riposte_detect::audit::{Event, Timestamp};
use riposte_detect::envelope;
use riposte_detect::rules::ALERT_TYPES;
use riposte_detect::{Baseline, Config, Engine, LearningPeriod, Workload};
use serde::Deserialize;

mod support;

/// The operator's default `--baseline-learning-hours`: the samples are shorter, so no
/// service account is judged against a baseline it never had time to learn.
const LEARNING_HOURS: i64 = 72;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/thirdparty")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    samples: Vec<Expectation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    /// Relative to `tests/data/thirdparty/`; its first component names the source.
    file: String,
    /// The test case of a Panther rule file (its `Name`).
    #[serde(default)]
    test: Option<String>,
    /// What the source itself says of the sample (its test's verdict).
    label: String,
    /// The alert types that should fire, one entry per finding.
    #[serde(default)]
    fires: Vec<String>,
    /// Types the source's label suggests that must not fire, for the record (`why` says why).
    #[serde(default)]
    not: Vec<String>,
    /// Whether a correct reader accepts every document of the sample.
    #[serde(default = "accepted")]
    read: bool,
    #[serde(default)]
    why: Option<String>,
    /// Today's code does not meet the expectation, for this reason.
    #[serde(default)]
    known_miss: Option<String>,
}

fn accepted() -> bool {
    true
}

impl Expectation {
    fn source(&self) -> &str {
        self.file.split('/').next().unwrap_or_default()
    }

    fn name(&self) -> String {
        match &self.test {
            Some(test) => format!("{} [{test}]", self.file),
            None => self.file.clone(),
        }
    }
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(data_dir().join("expectations.yaml")).expect("the manifest exists");
    serde_yaml::from_str(&text).expect("the manifest is valid")
}

/// A Panther rule file: its `Tests`, each with the log it is judged on.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PantherRule {
    tests: Vec<PantherTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PantherTest {
    name: String,
    log: serde_yaml::Value,
}

fn panther_tests(file: &str) -> Vec<PantherTest> {
    let text = std::fs::read_to_string(data_dir().join(file)).expect("the sample exists");
    serde_yaml::from_str::<PantherRule>(&text).expect("a Panther rule file").tests
}

/// The documents of a sample, each as a reader receives it: a Panther test's log as JSON
/// (its YAML mapping, written as JSON), a `.json` file whole, any other file line by line.
fn documents(sample: &Expectation) -> Vec<String> {
    if let Some(test) = &sample.test {
        let log = panther_tests(&sample.file)
            .into_iter()
            .find(|t| &t.name == test)
            .unwrap_or_else(|| panic!("{}: no such test", sample.name()))
            .log;
        return vec![serde_json::to_string(&log).expect("a YAML mapping is JSON")];
    }
    let text = std::fs::read_to_string(data_dir().join(&sample.file)).expect("the sample exists");
    if sample.file.ends_with(".json") {
        return vec![text];
    }
    text.lines().filter(|line| !line.trim().is_empty()).map(str::to_owned).collect()
}

/// The one place that turns a document into audit events, as the webhook and `riposte
/// detect` do.
fn read(document: &str) -> (Vec<Event>, Vec<String>) {
    match envelope::unwrap(document.as_bytes()) {
        Ok(unwrapped) => {
            (unwrapped.events, unwrapped.malformed.iter().map(|bad| format!("{}: {}", bad.record, bad.error)).collect())
        }
        Err(e) => (Vec::new(), vec![e.to_string()]),
    }
}

/// What today's code makes of one sample.
#[derive(Debug, Default)]
struct Outcome {
    documents: usize,
    events: usize,
    refused: Vec<String>,
    fired: Vec<String>,
}

/// Reads the sample's documents and replays their events, in order, through a new engine,
/// keeping the cluster's workloads as an informer would (as `tests/fixtures.rs` does).
fn run(sample: &Expectation) -> Outcome {
    let mut outcome = Outcome::default();
    let mut events = Vec::new();
    for document in documents(sample) {
        outcome.documents += 1;
        let (read, refused) = read(&document);
        events.extend(read);
        outcome.refused.extend(refused);
    }
    outcome.events = events.len();
    let start = events.iter().filter_map(Event::timestamp).min().unwrap_or(Timestamp::from_unix_micros(0));
    let period = LearningPeriod { start, end: start.add_seconds(LEARNING_HOURS * 3600) };
    let mut engine = Engine::new(Config::default(), Baseline::new(period));
    let mut cluster: Vec<Workload> = Vec::new();
    for event in &events {
        outcome.fired.extend(engine.evaluate(event, &cluster).iter().map(|f| f.alert_type.to_owned()));
        support::observe(event, &mut cluster);
    }
    outcome.fired.sort();
    outcome
}

/// Types in `a` beyond those in `b`, counting repeats.
fn beyond(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest = b.to_vec();
    a.iter()
        .filter(|t| match rest.iter().position(|r| r == *t) {
            Some(i) => {
                rest.remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

#[derive(Default)]
struct SourceReport {
    samples: usize,
    documents: usize,
    events: usize,
    refused: BTreeMap<String, usize>,
    fired: BTreeMap<String, usize>,
    missing: Vec<String>,
    unexpected: Vec<String>,
    known_misses: Vec<String>,
}

/// The reason a refusal gives, without the line and column that differ per document.
fn refusal_reason(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

#[test]
fn third_party_samples_raise_what_the_catalog_calls_for() {
    let manifest = manifest();
    let mut reports: BTreeMap<String, SourceReport> = BTreeMap::new();
    let mut failures = Vec::new();
    for sample in &manifest.samples {
        let outcome = run(sample);
        let mut expected = sample.fires.clone();
        expected.sort();
        let missing = beyond(&expected, &outcome.fired);
        let unexpected = beyond(&outcome.fired, &expected);
        let read_as_expected = outcome.refused.is_empty() == sample.read;
        let meets = missing.is_empty() && unexpected.is_empty() && read_as_expected;

        let report = reports.entry(sample.source().to_owned()).or_default();
        report.samples += 1;
        report.documents += outcome.documents;
        report.events += outcome.events;
        for reason in &outcome.refused {
            *report.refused.entry(refusal_reason(reason)).or_default() += 1;
        }
        for alert in &outcome.fired {
            *report.fired.entry(alert.clone()).or_default() += 1;
        }
        let name = sample.name();
        report.missing.extend(missing.iter().map(|t| format!("{t} in {name}")));
        report.unexpected.extend(unexpected.iter().map(|t| format!("{t} in {name}")));
        if !read_as_expected {
            let what = if sample.read { "refused" } else { "read but should be refused" };
            report.missing.push(format!("{name}: {what} {:?}", outcome.refused));
        }
        match (&sample.known_miss, meets) {
            (Some(reason), false) => report.known_misses.push(format!("{name}: {reason}")),
            (Some(reason), true) => {
                failures.push(format!("{name}: meets its expectation now; remove `known_miss: {reason}`"))
            }
            (None, false) => failures.push(format!(
                "{name}: expected {expected:?} (read: {}), fired {:?}, refused {:?}",
                sample.read, outcome.fired, outcome.refused
            )),
            (None, true) => {}
        }
    }
    for (source, report) in &reports {
        println!(
            "== {source}: {} samples, {} documents, {} events read",
            report.samples, report.documents, report.events
        );
        for (reason, count) in &report.refused {
            println!("   refused {count}x: {reason}");
        }
        for (alert, count) in &report.fired {
            println!("   fired {count}x {alert}");
        }
        for line in &report.missing {
            println!("   expected but missing: {line}");
        }
        for line in &report.unexpected {
            println!("   fired but unexpected: {line}");
        }
        for line in &report.known_misses {
            println!("   known miss: {line}");
        }
    }
    let total: usize = reports.values().map(|r| r.events).sum();
    let known: usize = reports.values().map(|r| r.known_misses.len()).sum();
    println!("== {} samples, {total} events read, {known} known misses", manifest.samples.len());
    assert!(failures.is_empty(), "{} samples differ from expectations.yaml:\n{}", failures.len(), failures.join("\n"));
}

/// Every data file and every Panther test case has exactly one expectation, and every file
/// has its provenance in SOURCES.md.
#[test]
fn every_sample_is_labelled_and_has_its_provenance() {
    let manifest = manifest();
    let sources = std::fs::read_to_string(data_dir().join("SOURCES.md")).expect("SOURCES.md exists");
    let mut expected_keys = BTreeSet::new();
    for source in std::fs::read_dir(data_dir()).unwrap() {
        let source = source.unwrap().path();
        if !source.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&source).unwrap() {
            let path = file.unwrap().path();
            let relative = path.strip_prefix(data_dir()).unwrap().to_str().unwrap().to_owned();
            assert!(sources.contains(&format!("`{relative}`")), "{relative} is not in SOURCES.md");
            if relative.ends_with(".yml") {
                expected_keys.extend(panther_tests(&relative).into_iter().map(|t| (relative.clone(), Some(t.name))));
            } else {
                expected_keys.insert((relative, None));
            }
        }
    }
    let mut keys = BTreeSet::new();
    for sample in &manifest.samples {
        assert!(keys.insert((sample.file.clone(), sample.test.clone())), "{} is listed twice", sample.name());
    }
    assert_eq!(keys, expected_keys, "expectations.yaml lists exactly the samples on disk");
}

/// The manifest names catalog alert types only, and never one both to fire and not to.
#[test]
fn expectations_name_catalog_alert_types_consistently() {
    for sample in manifest().samples {
        for alert in sample.fires.iter().chain(&sample.not) {
            assert!(
                ALERT_TYPES.contains(&alert.as_str()),
                "{}: {alert} is not an audit or config alert",
                sample.name()
            );
        }
        assert!(
            sample.not.iter().all(|alert| !sample.fires.contains(alert)),
            "{}: an alert type both fires and does not",
            sample.name()
        );
        assert!(!sample.label.trim().is_empty(), "{}: the source's label is missing", sample.name());
        if !sample.not.is_empty() {
            assert!(sample.why.is_some(), "{}: a departure from the source's label says why", sample.name());
        }
    }
}
