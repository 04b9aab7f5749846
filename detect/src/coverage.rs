//! Audit coverage: did the audit stream report the objects that the cluster holds?
//!
//! kube-apiserver can lose audit events without telling anyone: its webhook backend drops a
//! whole batch when one event in it fails to encode (an attacker's server-side apply with a
//! YAML body did exactly that on v1.34), when its buffer is full, or when the webhook is
//! down longer than its retries. A watch of the cluster's objects sees every creation
//! regardless, so each creation it sees must be matched by an audit event within a grace
//! period; the ones that are not are audit loss, raised so that nobody trusts a silent log.
//!
//! Pure: the caller says when each sighting happened (the instant it arrived), and asks for
//! the creations that went unreported.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::audit::{Event, Stage};
use crate::rules::took_effect;

/// Sightings kept at most, on each side: beyond, the oldest half-grace is forgotten first
/// (a flood of creations cannot grow memory without bound).
pub const MAX_TRACKED: usize = 100_000;

/// An object, as both the audit log and a watch name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The API group, empty for the core group.
    pub group: String,
    /// The resource (plural): `pods`, `deployments`, ...
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { String::new() } else { format!(".{}", self.group) };
        write!(f, "{}{group} {}/{}", self.resource, self.namespace, self.name)
    }
}

/// Where creations without a name in their audit event (`generateName`, at a level that
/// did not record the response) happened.
type Place = (String, String, String);

/// The two sides of the comparison, waiting for each other.
#[derive(Debug)]
pub struct AuditCoverage {
    grace: Duration,
    /// The resources whose creations are compared (group, resource).
    watched: Vec<(String, String)>,
    /// Creations that the audit stream reported, not yet seen by the watch.
    audited: HashMap<ObjectKey, Instant>,
    /// Creations reported with no name, not yet matched, per place.
    unnamed: HashMap<Place, VecDeque<Instant>>,
    /// Creations the watch saw that the audit stream has not reported yet.
    awaiting: HashMap<ObjectKey, Instant>,
    /// Whether any audit event arrived at all: without an audit stream there is nothing to
    /// miss, and no creation is reported as lost.
    audit_seen: bool,
}

impl AuditCoverage {
    /// Compares the creations of `watched` resources (group, plural), allowing an audit
    /// event `grace` to arrive after its object was seen, or the other way round.
    pub fn new(grace: Duration, watched: &[(&str, &str)]) -> Self {
        AuditCoverage {
            grace,
            watched: watched.iter().map(|(g, r)| ((*g).to_owned(), (*r).to_owned())).collect(),
            audited: HashMap::new(),
            unnamed: HashMap::new(),
            awaiting: HashMap::new(),
            audit_seen: false,
        }
    }

    /// How long one side may wait for the other.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Takes one audit event in: a creation of a watched resource that took effect is
    /// matched with the watch's sighting, or waits for it.
    pub fn audited(&mut self, event: &Event, now: Instant) {
        self.audit_seen = true;
        let Some(object) = &event.object_ref else { return };
        if event.verb != "create"
            || event.stage != Stage::ResponseComplete
            || !object.subresource.is_empty()
            || !took_effect(event)
            || !self.watches(&object.api_group, &object.resource)
        {
            return;
        }
        let name = if object.name.is_empty() { created_name(event).unwrap_or_default() } else { object.name.clone() };
        if name.is_empty() {
            let place = (object.api_group.clone(), object.resource.clone(), object.namespace.clone());
            // A named sighting of the same place that waits is this creation, as near as
            // the log lets anyone tell.
            let waiting = self
                .awaiting
                .iter()
                .filter(|(key, _)| key.group == place.0 && key.resource == place.1 && key.namespace == place.2)
                .min_by_key(|(_, seen)| **seen)
                .map(|(key, _)| key.clone());
            match waiting {
                Some(key) => {
                    self.awaiting.remove(&key);
                }
                None => {
                    self.unnamed.entry(place).or_default().push_back(now);
                }
            }
            return;
        }
        let key = ObjectKey {
            group: object.api_group.clone(),
            resource: object.resource.clone(),
            namespace: object.namespace.clone(),
            name,
        };
        if self.awaiting.remove(&key).is_none() {
            bound(&mut self.audited, self.grace);
            self.audited.insert(key, now);
        }
    }

    /// Takes the watch's sighting of a newly created object in.
    pub fn observed_creation(&mut self, key: ObjectKey, now: Instant) {
        if self.audited.remove(&key).is_some() {
            return;
        }
        let place = (key.group.clone(), key.resource.clone(), key.namespace.clone());
        if let Some(unnamed) = self.unnamed.get_mut(&place)
            && unnamed.pop_front().is_some()
        {
            if unnamed.is_empty() {
                self.unnamed.remove(&place);
            }
            return;
        }
        bound(&mut self.awaiting, self.grace);
        self.awaiting.insert(key, now);
    }

    /// The creations seen more than the grace period ago that no audit event reported, in
    /// order; they are forgotten once returned. Audit events that never met their object
    /// (created and deleted between two watch events, or a dry run the log did not flag)
    /// are forgotten after twice the grace.
    pub fn unreported(&mut self, now: Instant) -> Vec<ObjectKey> {
        let grace = self.grace;
        let expired = |at: &Instant| now.saturating_duration_since(*at) > grace;
        self.audited.retain(|_, at| now.saturating_duration_since(*at) <= grace * 2);
        self.unnamed.retain(|_, queue| {
            queue.retain(|at| now.saturating_duration_since(*at) <= grace * 2);
            !queue.is_empty()
        });
        let mut lost: Vec<ObjectKey> =
            self.awaiting.iter().filter(|(_, at)| expired(at)).map(|(k, _)| k.clone()).collect();
        for key in &lost {
            self.awaiting.remove(key);
        }
        if !self.audit_seen {
            return Vec::new();
        }
        lost.sort();
        lost
    }

    fn watches(&self, group: &str, resource: &str) -> bool {
        self.watched.iter().any(|(g, r)| g == group && r == resource)
    }
}

/// The name of the object a create made, from the response when the level recorded it.
fn created_name(event: &Event) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Created {
        metadata: Metadata,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        name: String,
    }
    let response = event.response_object.as_ref()?;
    serde_json::from_str::<Created>(response.get()).ok().map(|c| c.metadata.name)
}

/// Keeps `map` under [`MAX_TRACKED`] by forgetting what is older than half the grace, then
/// anything, oldest first.
fn bound(map: &mut HashMap<ObjectKey, Instant>, grace: Duration) {
    if map.len() < MAX_TRACKED {
        return;
    }
    if let Some(newest) = map.values().max().copied() {
        map.retain(|_, at| newest.saturating_duration_since(*at) <= grace / 2);
    }
    while map.len() >= MAX_TRACKED {
        let Some(oldest) = map.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) else { break };
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);
    const WATCHED: [(&str, &str); 2] = [("", "pods"), ("apps", "deployments")];

    fn create(group: &str, resource: &str, namespace: &str, name: &str, code: i32) -> Event {
        let version = if group.is_empty() { "v1".to_owned() } else { format!("{group}/v1") };
        let uri = format!("/apis/{version}/namespaces/{namespace}/{resource}");
        serde_json::from_value(serde_json::json!({
            "level": "Metadata", "auditID": format!("id-{name}"), "stage": "ResponseComplete",
            "requestURI": uri, "verb": "create", "user": {"username": "alice"},
            "objectRef": {"resource": resource, "namespace": namespace, "name": name, "apiGroup": group},
            "responseStatus": {"code": code},
        }))
        .unwrap()
    }

    fn key(group: &str, resource: &str, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey { group: group.into(), resource: resource.into(), namespace: namespace.into(), name: name.into() }
    }

    #[test]
    fn a_creation_reported_either_side_of_its_sighting_is_covered() {
        let mut coverage = AuditCoverage::new(GRACE, &WATCHED);
        let start = Instant::now();
        coverage.audited(&create("", "pods", "shop", "before", 201), start);
        coverage.observed_creation(key("", "pods", "shop", "before"), start + Duration::from_secs(1));
        coverage.observed_creation(key("apps", "deployments", "shop", "after"), start);
        coverage.audited(&create("apps", "deployments", "shop", "after", 201), start + Duration::from_secs(20));
        assert!(coverage.unreported(start + Duration::from_secs(120)).is_empty());
    }

    #[test]
    fn a_creation_nobody_reported_is_lost_once_the_grace_is_over_and_said_once() {
        let mut coverage = AuditCoverage::new(GRACE, &WATCHED);
        let start = Instant::now();
        coverage.audited(&create("", "pods", "shop", "other", 201), start);
        coverage.observed_creation(key("", "pods", "shop", "other"), start);
        coverage.observed_creation(key("", "pods", "shop", "evil"), start);
        assert!(coverage.unreported(start + GRACE).is_empty(), "still within the grace");
        assert_eq!(coverage.unreported(start + GRACE + Duration::from_secs(1)), [key("", "pods", "shop", "evil")]);
        assert!(coverage.unreported(start + GRACE * 3).is_empty(), "reported once");
    }

    #[test]
    fn failed_and_unwatched_creations_do_not_cover_anything() {
        let mut coverage = AuditCoverage::new(GRACE, &WATCHED);
        let start = Instant::now();
        coverage.audited(&create("", "pods", "shop", "evil", 403), start);
        coverage.audited(&create("", "configmaps", "shop", "evil", 201), start);
        coverage.observed_creation(key("", "pods", "shop", "evil"), start);
        assert_eq!(coverage.unreported(start + GRACE * 2), [key("", "pods", "shop", "evil")]);
    }

    #[test]
    fn a_creation_without_a_name_covers_one_sighting_in_its_namespace() {
        let mut coverage = AuditCoverage::new(GRACE, &WATCHED);
        let start = Instant::now();
        coverage.audited(&create("", "pods", "shop", "", 201), start);
        coverage.observed_creation(key("", "pods", "shop", "web-abcde"), start);
        coverage.observed_creation(key("", "pods", "shop", "web-fghij"), start);
        coverage.observed_creation(key("", "pods", "bank", "web-klmno"), start);
        let lost = coverage.unreported(start + GRACE * 2);
        assert_eq!(lost, [key("", "pods", "bank", "web-klmno"), key("", "pods", "shop", "web-fghij")]);
    }

    #[test]
    fn without_any_audit_event_nothing_is_called_lost() {
        let mut coverage = AuditCoverage::new(GRACE, &WATCHED);
        let start = Instant::now();
        coverage.observed_creation(key("", "pods", "shop", "web"), start);
        assert!(coverage.unreported(start + GRACE * 2).is_empty());
    }
}
