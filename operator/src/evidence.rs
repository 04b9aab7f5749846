//! Evidence kept before a pod is terminated: its manifest and its containers' recent logs,
//! in one immutable ConfigMap in the operator's namespace, where the compromised workload's
//! own credentials cannot reach it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use riposte_crds::{EvidenceItem, EvidenceRecord, ObjectReference};

/// ConfigMaps hold at most 1 MiB; this leaves room for the keys and metadata.
pub const MAX_TOTAL_BYTES: usize = 960 * 1024;
pub const MANIFEST_KEY: &str = "pod.yaml";
pub const ACTION_NAMESPACE_LABEL: &str = "riposte.dev/evidence-for-namespace";
pub const ACTION_NAME_LABEL: &str = "riposte.dev/evidence-for";

/// The containers whose logs are kept: init containers first, as they ran.
pub fn containers(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else { return Vec::new() };
    spec.init_containers.iter().flatten().chain(spec.containers.iter()).map(|c| c.name.clone()).collect()
}

pub fn log_key(container: &str) -> String {
    format!("logs-{container}.txt")
}

/// `evidence-<namespace>-<action>`: unique per action, and a valid ConfigMap name.
pub fn config_map_name(action_namespace: &str, action: &str) -> String {
    format!("evidence-{action_namespace}-{action}")
}

/// The pod as it was, without the bookkeeping that only adds noise.
pub fn manifest(pod: &Pod) -> String {
    let mut pod = pod.clone();
    pod.metadata.managed_fields = None;
    serde_yaml::to_string(&pod).unwrap_or_else(|e| format!("# the pod could not be serialised: {e}\n"))
}

/// Builds the ConfigMap and the record of what it holds. `logs` has one entry per
/// container: its recent log, or why it could not be fetched.
pub fn package(
    namespace: &str,
    action_namespace: &str,
    action: &str,
    pod: &Pod,
    logs: Vec<(String, Result<String, String>)>,
    now: &Time,
) -> (ConfigMap, EvidenceRecord) {
    let name = config_map_name(action_namespace, action);
    let mut data = BTreeMap::new();
    let mut items = Vec::new();
    let mut complete = true;
    let manifest = manifest(pod);
    let mut used = manifest.len();
    items.push(EvidenceItem { key: MANIFEST_KEY.into(), bytes: manifest.len() as i64, note: None });
    data.insert(MANIFEST_KEY.to_owned(), manifest);
    for (container, log) in logs {
        let key = log_key(&container);
        match log {
            Ok(mut text) => {
                let mut note = None;
                let room = MAX_TOTAL_BYTES.saturating_sub(used);
                if text.len() > room {
                    // Keep the end of the log: the most recent lines matter most.
                    let mut start = text.len() - room;
                    while !text.is_char_boundary(start) {
                        start += 1;
                    }
                    text = text.split_off(start);
                    note = Some("cut short to fit the ConfigMap size limit".to_owned());
                    complete = false;
                }
                used += text.len();
                items.push(EvidenceItem { key: key.clone(), bytes: text.len() as i64, note });
                data.insert(key, text);
            }
            Err(why) => {
                complete = false;
                items.push(EvidenceItem {
                    key,
                    bytes: 0,
                    note: Some(format!("the logs of container {container} could not be fetched: {why}")),
                });
            }
        }
    }
    let labels = BTreeMap::from([
        (ACTION_NAMESPACE_LABEL.to_owned(), action_namespace.to_owned()),
        (ACTION_NAME_LABEL.to_owned(), action.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "riposte".to_owned()),
    ]);
    let annotations = BTreeMap::from([
        ("riposte.dev/pod".to_owned(), format!("{action_namespace}/{}", pod.name_any())),
        ("riposte.dev/pod-uid".to_owned(), pod.uid().unwrap_or_default()),
    ]);
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        data: Some(data),
        // Evidence must not be edited after the fact.
        immutable: Some(true),
        ..ConfigMap::default()
    };
    let record = EvidenceRecord {
        config_map: ObjectReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: namespace.to_owned(),
            name,
        },
        captured_at: now.clone(),
        complete,
        items,
    };
    (config_map, record)
}

/// What a fetch of a log's last lines showed. The kubelet's `limitBytes` keeps the *start*
/// of what it returns, so the newest lines are asked for by count (`tailLines`), as many as
/// it takes to fill the limit, with `limitBytes` only as a cap on one answer.
#[derive(Debug, PartialEq, Eq)]
pub enum LogWindow {
    /// At least the limit: keep its end ([`keep_latest`]).
    Enough,
    /// Fewer lines than asked for: this is the whole log.
    Whole,
    /// Not yet the limit: ask for more lines.
    TooFew,
    /// The cap cut the answer, so its end may not be the newest line: ask for fewer.
    Capped,
}

/// How many lines to ask for first: an estimate at 100 bytes a line.
pub fn first_log_window(limit_bytes: usize) -> i64 {
    (limit_bytes / 100).max(16) as i64
}

/// The cap on one answer: four times the limit, so that doubling the lines asked for after
/// [`LogWindow::TooFew`] rarely meets it.
pub fn log_fetch_cap(limit_bytes: usize) -> usize {
    limit_bytes * 4
}

/// Judges what `tail_lines` lines of a log, fetched with [`log_fetch_cap`], gave.
pub fn judge_log_window(text: &str, tail_lines: i64, limit_bytes: usize) -> LogWindow {
    if text.len() >= log_fetch_cap(limit_bytes) {
        LogWindow::Capped
    } else if text.len() >= limit_bytes {
        LogWindow::Enough
    } else if (text.lines().count() as i64) < tail_lines {
        LogWindow::Whole
    } else {
        LogWindow::TooFew
    }
}

/// The newest whole lines of `text` that fit in `limit_bytes`; the end of the last line
/// when it alone is longer.
pub fn keep_latest(text: &str, limit_bytes: usize) -> String {
    if text.len() <= limit_bytes {
        return text.to_owned();
    }
    let mut start = text.len() - limit_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    // From the first line that starts inside the window, unless that leaves nothing.
    match text[start..].find('\n') {
        Some(newline) if start + newline + 1 < text.len() && text.as_bytes()[start - 1] != b'\n' => {
            text[start + newline + 1..].to_owned()
        }
        _ => text[start..].to_owned(),
    }
}

/// One line for the history: what was kept, and what is missing.
pub fn summary(record: &EvidenceRecord) -> String {
    let kept: Vec<String> =
        record.items.iter().filter(|i| i.note.is_none()).map(|i| format!("{} ({} bytes)", i.key, i.bytes)).collect();
    let mut text = format!(
        "evidence kept in ConfigMap {}/{}: {}",
        record.config_map.namespace,
        record.config_map.name,
        if kept.is_empty() { "nothing".to_owned() } else { kept.join(", ") }
    );
    let missing: Vec<&str> = record.items.iter().filter_map(|i| i.note.as_deref()).collect();
    if !missing.is_empty() {
        text.push_str(&format!("; {}", missing.join("; ")));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_newest_whole_lines_are_kept() {
        let log: String = (1..=100).map(|i| format!("line {i:04}\n")).collect();
        let kept = super::keep_latest(&log, 35);
        assert_eq!(kept, "line 0098\nline 0099\nline 0100\n", "whole lines, the newest");
        assert_eq!(super::keep_latest(&log, 30), "line 0098\nline 0099\nline 0100\n", "a window on a line boundary");
        assert_eq!(super::keep_latest("short\n", 100), "short\n");
        assert_eq!(super::keep_latest("one very long line\n", 5), "line\n", "the end of a line longer than the limit");
        assert_eq!(super::keep_latest("ééé", 3), "é", "never inside a character");
    }

    #[test]
    fn the_log_window_grows_until_it_holds_the_limit_and_shrinks_when_capped() {
        use super::{LogWindow, judge_log_window};
        let lines =
            |n: usize, width: usize| -> String { (0..n).map(|_| format!("{}\n", "x".repeat(width - 1))).collect() };
        assert_eq!(judge_log_window(&lines(10, 10), 10, 1024), LogWindow::TooFew);
        assert_eq!(judge_log_window(&lines(7, 10), 10, 1024), LogWindow::Whole);
        assert_eq!(judge_log_window(&lines(103, 10), 103, 1024), LogWindow::Enough);
        assert_eq!(judge_log_window(&lines(10, 500), 10, 1024), LogWindow::Capped);
        assert_eq!(judge_log_window("", 16, 1024), LogWindow::Whole);
    }

    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "web-1", "namespace": "shop", "uid": "u1",
                          "managedFields": [{ "manager": "kubectl", "operation": "Apply" }] },
            "spec": {
                "initContainers": [{ "name": "init", "image": "busybox" }],
                "containers": [{ "name": "app", "image": "nginx" }, { "name": "sidecar", "image": "envoy" }]
            }
        }))
        .unwrap()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn logs_of_every_container_and_the_manifest_are_kept_immutably() {
        let pod = pod();
        assert_eq!(containers(&pod), vec!["init", "app", "sidecar"]);
        let logs = containers(&pod).into_iter().map(|c| (c.clone(), Ok(format!("{c} says hi\n")))).collect();
        let (cm, record) = package("riposte-system", "shop", "kill-web", &pod, logs, &now());
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(cm.metadata.name.as_deref(), Some("evidence-shop-kill-web"));
        let data = cm.data.unwrap();
        assert_eq!(data["logs-app.txt"], "app says hi\n");
        assert!(data[MANIFEST_KEY].contains("name: web-1") && !data[MANIFEST_KEY].contains("managedFields"));
        assert!(record.complete);
        assert_eq!(record.items.len(), 4);
        assert!(summary(&record).contains("logs-sidecar.txt (16 bytes)"));
    }

    #[test]
    fn logs_that_cannot_be_fetched_are_named_with_the_reason() {
        let logs = vec![
            ("app".to_string(), Err("pod web-1 does not have a host assigned".to_string())),
            ("sidecar".to_string(), Ok("ok\n".to_string())),
        ];
        let (cm, record) = package("riposte-system", "shop", "kill-web", &pod(), logs, &now());
        assert!(!record.complete);
        assert!(!cm.data.unwrap().contains_key("logs-app.txt"));
        let text = summary(&record);
        assert!(
            text.contains("the logs of container app could not be fetched: pod web-1 does not have a host"),
            "{text}"
        );
        assert!(text.contains("logs-sidecar.txt (3 bytes)"), "{text}");
    }

    #[test]
    fn the_config_map_stays_under_its_size_limit_keeping_the_latest_lines() {
        let big = "x".repeat(600 * 1024) + "LAST LINE\n";
        let logs = vec![("app".to_string(), Ok(big.clone())), ("sidecar".to_string(), Ok(big))];
        let (cm, record) = package("riposte-system", "shop", "kill-web", &pod(), logs, &now());
        let total: usize = cm.data.as_ref().unwrap().values().map(String::len).sum();
        assert!(total <= MAX_TOTAL_BYTES, "{total}");
        assert!(cm.data.unwrap()["logs-sidecar.txt"].ends_with("LAST LINE\n"));
        assert!(!record.complete);
        assert_eq!(record.items[2].note.as_deref(), Some("cut short to fit the ConfigMap size limit"));
    }
}
