//! The runtime engine: every rule over each event, the stateful rules' memory per
//! container, and one alert per (type, process).

use std::collections::{HashMap, VecDeque};

use super::config::RuntimeConfig;
use super::event::{Action, Endpoint, ProcessEvent, Sensor};
use super::rules::{self, DOWNLOAD_AND_RUN_COMBO, Hit, RECONNAISSANCE_ARTIFACTS_BURST, REVERSE_SHELL};
use crate::audit::Timestamp;
use crate::bounded::Bounded;
use crate::rules::{Entities, Finding};

/// The alert type of a sensor's rule that maps onto no catalog id.
pub const SENSOR_RULE: &str = "Riposte.SensorRule";

/// An alert raised by a sensor's own rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorAlert {
    /// The catalog id the rule maps onto, if any.
    pub alert_type: Option<&'static str>,
    pub rule: String,
    pub priority: String,
    pub output: String,
}

/// The most files a container is remembered to have downloaded.
const MAX_DOWNLOADS_PER_CONTAINER: usize = 64;

/// Holds the configuration and what the stateful rules remember, and evaluates events.
#[derive(Debug)]
pub struct RuntimeEngine {
    config: RuntimeConfig,
    containers: HashMap<String, ContainerMemory>,
    raised: Bounded<(&'static str, String), ()>,
    /// The last connection of recent executions, to tell a redirection onto a standard
    /// stream that a sensor could not classify: a socket's, or a file's.
    connections: Bounded<String, Endpoint>,
}

/// What the stateful rules remember of one container (or of the node's own processes).
#[derive(Debug, Default)]
struct ContainerMemory {
    last_seen: i64,
    /// Reconnaissance commands of the current window: when, and which.
    recon: VecDeque<(Timestamp, String)>,
    /// Files downloaded lately: when, where to, from where.
    downloads: VecDeque<(Timestamp, String, String)>,
}

impl RuntimeEngine {
    pub fn new(config: RuntimeConfig) -> Self {
        let memory = config.dedup_memory;
        RuntimeEngine {
            config,
            containers: HashMap::new(),
            raised: Bounded::new(memory),
            connections: Bounded::new(memory),
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Every finding of one event: at most one per alert type and process.
    pub fn evaluate(&mut self, event: &ProcessEvent) -> Vec<Finding> {
        let mut hits = Vec::new();
        rules::evaluate(event, &self.config, &mut hits);
        match &event.action {
            Action::Exec => self.remember(event, &mut hits),
            Action::Exit { .. } => {
                if !self.connections.entries.is_empty() {
                    self.connections.entries.remove(&event.execution_key());
                }
                return Vec::new();
            }
            Action::Connect(remote) => self.connected(&event.execution_key(), remote),
            Action::SocketRedirect { fd, remote: None } if event.sensor != Sensor::Riposte => {
                if let Some(remote) = self.connections.entries.get(&event.execution_key())
                    && !self.config.socket_servers.contains(&event.process.name)
                {
                    hits.push(Hit {
                        alert_type: REVERSE_SHELL,
                        summary: format!(
                            "standard stream {fd} was redirected by a process connected to {}",
                            rules::endpoint(remote)
                        ),
                        evidence: vec![
                            ("fd".to_owned(), fd.to_string()),
                            ("remoteAddress".to_owned(), rules::endpoint(remote)),
                        ],
                    });
                }
            }
            _ => {}
        }
        if hits.is_empty() {
            return Vec::new();
        }
        let process_key = event.execution_key();
        let mut findings = Vec::with_capacity(hits.len());
        for hit in hits {
            if findings.iter().any(|f: &Finding| f.alert_type == hit.alert_type)
                || !self.first_time(hit.alert_type, &process_key)
            {
                continue;
            }
            findings.push(finding(event, hit));
        }
        findings
    }

    /// The finding of an alert that a sensor raised with its own rule (Falco's): the catalog
    /// id it maps onto, else [`SENSOR_RULE`], with the sensor's rule, priority and output as
    /// evidence. `None` when that type was already raised for the process, by the sensor or
    /// by Riposte's own rules over the same event.
    pub fn sensor_alert(&mut self, event: &ProcessEvent, alert: &SensorAlert) -> Option<Finding> {
        let alert_type = alert.alert_type.unwrap_or(SENSOR_RULE);
        if !self.first_time(alert_type, &event.execution_key()) {
            return None;
        }
        let mut evidence =
            vec![("rule".to_owned(), alert.rule.clone()), ("priority".to_owned(), alert.priority.clone())];
        if !alert.output.is_empty() {
            evidence.push(("output".to_owned(), alert.output.clone()));
        }
        Some(finding(
            event,
            Hit { alert_type, summary: format!("{} rule {:?}", event.sensor.as_str(), alert.rule), evidence },
        ))
    }

    fn connected(&mut self, process: &str, remote: &Endpoint) {
        self.connections.insert(process.to_owned(), remote.clone());
    }

    /// Whether `alert_type` was not raised for this process yet; remembers it.
    fn first_time(&mut self, alert_type: &'static str, process: &str) -> bool {
        self.raised.insert((alert_type, process.to_owned()), ()).is_none()
    }

    /// The stateful rules: a burst of reconnaissance, a download then its execution.
    fn remember(&mut self, event: &ProcessEvent, hits: &mut Vec<Hit>) {
        let config = &self.config;
        let key = event.container.as_ref().map_or("", |c| c.id.as_str());
        if !self.containers.contains_key(key) && self.containers.len() >= config.max_tracked_containers.max(1) {
            let oldest = self.containers.iter().min_by_key(|(_, m)| m.last_seen).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.containers.remove(&oldest);
            }
        }
        if !self.containers.contains_key(key) {
            self.containers.insert(key.to_owned(), ContainerMemory::default());
        }
        let Some(memory) = self.containers.get_mut(key) else { return };
        let now = event.time;
        memory.last_seen = now.unix_micros();
        let process = &event.process;

        let window = config.recon_burst_window_seconds;
        while memory.recon.front().is_some_and(|(at, _)| at.add_seconds(window) < now) {
            memory.recon.pop_front();
        }
        if rules::programs(process, config).iter().any(|n| config.recon_commands.iter().any(|r| r == n)) {
            if !memory.recon.iter().any(|(_, n)| *n == process.name) {
                memory.recon.push_back((now, process.name.clone()));
            }
            if memory.recon.len() >= config.recon_burst_threshold.max(1) {
                let commands: Vec<&str> = memory.recon.iter().map(|(_, n)| n.as_str()).collect();
                hits.push(Hit {
                    alert_type: RECONNAISSANCE_ARTIFACTS_BURST,
                    summary: format!("{} reconnaissance commands ran within {window} s", commands.len()),
                    evidence: vec![("commands".to_owned(), commands.join(", "))],
                });
                memory.recon.clear();
            }
        }

        let keep = config.download_run_window_seconds;
        while memory.downloads.front().is_some_and(|(at, ..)| at.add_seconds(keep) < now) {
            memory.downloads.pop_front();
        }
        let ran = std::iter::once(process.binary.clone())
            .chain(
                config
                    .interpreters
                    .contains(&process.name)
                    .then(|| process.args.iter().find(|a| !a.starts_with('-')))
                    .flatten()
                    .map(|script| rules::resolve(script, process.cwd.as_deref())),
            )
            .filter(|path| !path.is_empty())
            .collect::<Vec<_>>();
        if let Some((_, path, url)) = memory.downloads.iter().find(|(_, path, _)| ran.contains(path)) {
            hits.push(Hit {
                alert_type: DOWNLOAD_AND_RUN_COMBO,
                summary: format!("{path}, downloaded from {url}, was run"),
                evidence: vec![("file".to_owned(), path.clone()), ("url".to_owned(), url.clone())],
            });
        }
        if config.download_tools.contains(&process.name)
            && let Some(output) = rules::download_output(process)
        {
            let url = rules::urls(process).next().unwrap_or_default().to_owned();
            if memory.downloads.len() >= MAX_DOWNLOADS_PER_CONTAINER {
                memory.downloads.pop_front();
            }
            memory.downloads.push_back((now, output, url));
        }
    }
}

/// The finding of a hit: the entities of the pod and the process evidence.
fn finding(event: &ProcessEvent, hit: Hit) -> Finding {
    let container = event.container.as_ref();
    let entities = Entities {
        namespace: container.and_then(|c| c.namespace.clone()),
        pod: container.and_then(|c| c.pod.clone()),
        container: container.and_then(|c| c.name.clone()),
        image: container.and_then(|c| c.image.clone()),
        node: event.node.clone(),
        service_account: container.and_then(|c| c.service_account.clone()),
        ..Entities::default()
    };
    let process = &event.process;
    let command_line = process.command_line();
    let place = match (container, &event.node) {
        (Some(c), _) if c.pod.is_some() => format!(
            "pod {}/{}{}",
            c.namespace.as_deref().unwrap_or("?"),
            c.pod.as_deref().unwrap_or("?"),
            c.name.as_deref().map(|n| format!(" (container {n})")).unwrap_or_default()
        ),
        (Some(c), _) => format!("container {}", &c.id[..c.id.len().min(12)]),
        (None, Some(node)) => format!("node {node}"),
        (None, None) => "the node".to_owned(),
    };
    let mut evidence = vec![
        ("sensor".to_owned(), event.sensor.as_str().to_owned()),
        ("time".to_owned(), event.time.to_string()),
        ("action".to_owned(), event.action.kind().to_owned()),
        ("commandLine".to_owned(), command_line.clone()),
        ("processId".to_owned(), process.pid.to_string()),
    ];
    let mut push = |name: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            evidence.push((name.to_owned(), value));
        }
    };
    push("binary", Some(process.binary.clone()));
    push("execId", process.exec_id.clone());
    push("cwd", process.cwd.clone());
    push("user", process.user.clone().or_else(|| process.uid.map(|u| format!("uid {u}"))));
    push("parentCommandLine", event.parent.as_ref().map(|p| p.command_line()));
    let mut tree = vec![process.name.as_str()];
    tree.extend(event.parent.as_ref().map(|p| p.name.as_str()));
    tree.extend(event.ancestors.iter().map(String::as_str));
    push("processTree", Some(tree.join(" < ")));
    push("containerId", container.map(|c| c.id.clone()));
    push("node", event.node.clone());
    evidence.extend(hit.evidence);
    Finding {
        alert_type: hit.alert_type,
        entities,
        evidence,
        summary: format!("{} in {place}: {command_line}", hit.summary),
    }
}
