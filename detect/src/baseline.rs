//! What each service account normally does (K8S_ServiceAccountRareOperation).
//!
//! During a learning period the baseline records, per service account, every operation it
//! performs: verb, resource (with subresource and API group) and scope (a namespace, or
//! cluster-wide). Afterwards an operation outside that set is rare: reported once, then
//! learned. A service account first seen after the learning period gets a learning period of
//! the same length from its first request, so that each new application does not raise a
//! burst of findings on its first day.
//!
//! An operation seen in [`GENERALISE_AFTER_NAMESPACES`] namespaces is generalised to any
//! namespace: a controller that works in every namespace would otherwise be reported each
//! time a namespace is created.
//!
//! The baseline is bounded (so that it cannot grow without limit, and its JSON fits in a
//! ConfigMap, under 1 MiB): at most [`MAX_ACCOUNTS`] accounts, [`MAX_OPERATIONS_PER_ACCOUNT`]
//! operations per account and [`MAX_OPERATIONS`] in all. An account that needs more is too
//! varied to baseline and is no longer followed; past the total, new accounts and
//! operations are not followed. Time comes from the events: no clock is read here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::audit::Timestamp;

/// At most this many service accounts are followed.
pub const MAX_ACCOUNTS: usize = 2_000;
/// An account that performs more distinct operations than this is no longer followed.
pub const MAX_OPERATIONS_PER_ACCOUNT: usize = 128;
/// At most this many operations are recorded over all accounts (about 600 KB of JSON).
pub const MAX_OPERATIONS: usize = 10_000;
/// An operation seen in this many namespaces is learned for every namespace.
pub const GENERALISE_AFTER_NAMESPACES: usize = 3;

const ANY_NAMESPACE: &str = "*";

/// When the baseline learns: from `start` (inclusive) to `end` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearningPeriod {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// The learned operations of every followed service account. Serialise it to persist it
/// (for example in a ConfigMap) and deserialise it at start-up to carry on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "StoredBaseline")]
pub struct Baseline {
    learning: LearningPeriod,
    accounts: BTreeMap<String, Account>,
    #[serde(skip)]
    operations: usize,
    #[serde(skip)]
    key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    first_seen: Timestamp,
    /// `verb resource[/subresource][.group] @scope`, scope being a namespace, `*` or `cluster`.
    operations: BTreeSet<String>,
    /// Too many distinct operations to baseline: no longer followed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    saturated: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredBaseline {
    learning: LearningPeriod,
    accounts: BTreeMap<String, Account>,
}

impl From<StoredBaseline> for Baseline {
    fn from(stored: StoredBaseline) -> Self {
        let operations = stored.accounts.values().map(|a| a.operations.len()).sum();
        Baseline { learning: stored.learning, accounts: stored.accounts, operations, key: String::new() }
    }
}

/// What one observed operation was, for the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Recorded during the account's learning period.
    Learned,
    /// Already in the account's baseline.
    Known,
    /// Outside the baseline after learning: report it. It is in the baseline from now on.
    Rare,
    /// Before the learning period, or beyond the baseline's bounds.
    NotFollowed,
}

impl Baseline {
    pub fn new(learning: LearningPeriod) -> Self {
        Baseline { learning, accounts: BTreeMap::new(), operations: 0, key: String::new() }
    }

    pub fn learning(&self) -> LearningPeriod {
        self.learning
    }

    /// How many service accounts are followed.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// How many operations are recorded, over all accounts.
    pub fn operations(&self) -> usize {
        self.operations
    }

    /// When `account` stops learning: the end of the learning period, or for an account first
    /// seen after it, the same length after its first request.
    pub fn learning_until(&self, account: &str) -> Option<Timestamp> {
        self.accounts.get(account).map(|a| self.account_learning_end(a.first_seen))
    }

    fn account_learning_end(&self, first_seen: Timestamp) -> Timestamp {
        let LearningPeriod { start, end } = self.learning;
        if first_seen < end {
            end
        } else {
            Timestamp::from_unix_micros(first_seen.unix_micros() + (end.unix_micros() - start.unix_micros()))
        }
    }

    /// Records that `account` performed `action` (`verb resource[/subresource][.group]`) in
    /// `namespace` (`None`: cluster-wide) at `at`.
    pub fn observe(&mut self, account: &str, action: &str, namespace: Option<&str>, at: Timestamp) -> Observation {
        if at < self.learning.start {
            return Observation::NotFollowed;
        }
        if !self.accounts.contains_key(account) {
            if self.accounts.len() >= MAX_ACCOUNTS || self.operations >= MAX_OPERATIONS {
                return Observation::NotFollowed;
            }
            self.accounts
                .insert(account.to_owned(), Account { first_seen: at, operations: BTreeSet::new(), saturated: false });
        }
        let learning_end = {
            let first_seen = self.accounts[account].first_seen;
            self.account_learning_end(first_seen)
        };
        let Some(state) = self.accounts.get_mut(account) else {
            return Observation::NotFollowed;
        };
        if state.saturated {
            return Observation::NotFollowed;
        }
        self.key.clear();
        let scope = namespace.unwrap_or("cluster");
        let _ = write!(self.key, "{action} @{scope}");
        if state.operations.contains(&self.key) {
            return Observation::Known;
        }
        if namespace.is_some() {
            self.key.truncate(action.len());
            self.key.push_str(" @");
            self.key.push_str(ANY_NAMESPACE);
            if state.operations.contains(&self.key) {
                return Observation::Known;
            }
        }
        if state.operations.len() >= MAX_OPERATIONS_PER_ACCOUNT {
            state.saturated = true;
            return Observation::NotFollowed;
        }
        if self.operations >= MAX_OPERATIONS {
            return Observation::NotFollowed;
        }
        let before = state.operations.len();
        learn(&mut state.operations, action, scope, namespace.is_some());
        self.operations = self.operations + state.operations.len() - before;
        if at < learning_end { Observation::Learned } else { Observation::Rare }
    }
}

impl Baseline {
    /// Adds what `other` learned (another replica's baseline, or the stored one) to this
    /// one: each account keeps its earliest first sighting and the union of operations,
    /// within the same bounds as learning. The learning period stays this baseline's.
    pub fn merge(&mut self, other: &Baseline) {
        for (name, theirs) in &other.accounts {
            if !self.accounts.contains_key(name) {
                if self.accounts.len() >= MAX_ACCOUNTS || self.operations >= MAX_OPERATIONS {
                    continue;
                }
                self.accounts.insert(
                    name.clone(),
                    Account { first_seen: theirs.first_seen, operations: BTreeSet::new(), saturated: false },
                );
            }
            let Some(ours) = self.accounts.get_mut(name) else {
                continue;
            };
            ours.first_seen = ours.first_seen.min(theirs.first_seen);
            ours.saturated |= theirs.saturated;
            for operation in &theirs.operations {
                if ours.operations.len() >= MAX_OPERATIONS_PER_ACCOUNT {
                    ours.saturated = true;
                    break;
                }
                if self.operations >= MAX_OPERATIONS {
                    break;
                }
                if ours.operations.insert(operation.clone()) {
                    self.operations += 1;
                }
            }
        }
    }
}

/// Adds an operation, generalising it to any namespace once it has been seen in enough.
fn learn(operations: &mut BTreeSet<String>, action: &str, scope: &str, namespaced: bool) {
    operations.insert(format!("{action} @{scope}"));
    if !namespaced {
        return;
    }
    let prefix = format!("{action} @");
    let namespaces: Vec<String> = operations
        .range(prefix.clone()..)
        .take_while(|op| op.starts_with(&prefix))
        .filter(|op| op[prefix.len()..] != *"cluster")
        .cloned()
        .collect();
    if namespaces.len() >= GENERALISE_AFTER_NAMESPACES {
        for op in namespaces {
            operations.remove(&op);
        }
        operations.insert(format!("{prefix}{ANY_NAMESPACE}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_micros(seconds * 1_000_000)
    }

    fn baseline() -> Baseline {
        Baseline::new(LearningPeriod { start: at(0), end: at(1000) })
    }

    const SA: &str = "system:serviceaccount:shop:web";

    #[test]
    fn operations_are_learned_then_rare_once() {
        let mut b = baseline();
        assert_eq!(b.observe(SA, "get configmaps", Some("shop"), at(-1)), Observation::NotFollowed);
        assert_eq!(b.observe(SA, "get configmaps", Some("shop"), at(10)), Observation::Learned);
        assert_eq!(b.observe(SA, "get configmaps", Some("shop"), at(2000)), Observation::Known);
        assert_eq!(b.observe(SA, "list secrets", None, at(2000)), Observation::Rare);
        assert_eq!(b.observe(SA, "list secrets", None, at(2001)), Observation::Known);
        assert_eq!(b.observe(SA, "get configmaps", Some("kube-system"), at(2002)), Observation::Rare);
        assert_eq!(b.operations(), 3);
    }

    #[test]
    fn an_account_first_seen_late_gets_its_own_learning_period() {
        let mut b = baseline();
        assert_eq!(b.observe(SA, "get pods", Some("shop"), at(5000)), Observation::Learned);
        assert_eq!(b.learning_until(SA), Some(at(6000)));
        assert_eq!(b.observe(SA, "list pods", Some("shop"), at(5999)), Observation::Learned);
        assert_eq!(b.observe(SA, "delete pods", Some("shop"), at(6000)), Observation::Rare);
    }

    #[test]
    fn operations_seen_in_several_namespaces_generalise() {
        let mut b = baseline();
        for ns in ["a", "b"] {
            assert_eq!(b.observe(SA, "update leases.coordination.k8s.io", Some(ns), at(1)), Observation::Learned);
        }
        assert_eq!(b.observe(SA, "update leases.coordination.k8s.io", Some("c"), at(1)), Observation::Learned);
        assert_eq!(b.operations(), 1, "three namespaces became one generalised operation");
        assert_eq!(b.observe(SA, "update leases.coordination.k8s.io", Some("new"), at(5000)), Observation::Known);
        assert_eq!(
            b.observe(SA, "update leases.coordination.k8s.io", None, at(5000)),
            Observation::Rare,
            "cluster-wide is not a namespace"
        );
    }

    #[test]
    fn merging_unions_what_two_replicas_learned() {
        let mut ours = baseline();
        let mut theirs = baseline();
        assert_eq!(ours.observe(SA, "get configmaps", Some("shop"), at(20)), Observation::Learned);
        assert_eq!(theirs.observe(SA, "list secrets", None, at(10)), Observation::Learned);
        let other = "system:serviceaccount:shop:batch";
        assert_eq!(theirs.observe(other, "create jobs.batch", Some("shop"), at(10)), Observation::Learned);
        ours.merge(&theirs);
        assert_eq!((ours.accounts(), ours.operations()), (2, 3));
        assert_eq!(ours.observe(SA, "list secrets", None, at(2000)), Observation::Known);
        assert_eq!(ours.observe(other, "create jobs.batch", Some("shop"), at(2000)), Observation::Known);
        ours.merge(&theirs);
        assert_eq!(ours.operations(), 3, "merging twice adds nothing");
        let restored: Baseline = serde_json::from_str(&serde_json::to_string(&ours).unwrap()).unwrap();
        assert_eq!(restored.operations(), 3);
        assert_eq!(restored.learning_until(SA), Some(at(1000)), "the earliest sighting is kept");
    }

    #[test]
    fn an_account_beyond_the_per_account_bound_is_no_longer_followed() {
        let mut b = baseline();
        for i in 0..MAX_OPERATIONS_PER_ACCOUNT {
            assert_eq!(b.observe(SA, &format!("get thing{i}"), None, at(1)), Observation::Learned);
        }
        assert_eq!(b.observe(SA, "get one-more", None, at(5000)), Observation::NotFollowed);
        assert_eq!(b.observe(SA, "get another", None, at(5001)), Observation::NotFollowed);
        assert_eq!(b.operations(), MAX_OPERATIONS_PER_ACCOUNT);
    }

    #[test]
    fn a_full_baseline_stays_within_its_bounds_and_fits_a_configmap() {
        let mut b = baseline();
        let mut learned = 0;
        'fill: for account in 0..MAX_ACCOUNTS + 10 {
            let name = format!("system:serviceaccount:team-{account:04}:controller-manager");
            for op in 0..20 {
                match b.observe(&name, &format!("list customresources{op}.example.platform.io"), None, at(1)) {
                    Observation::Learned => learned += 1,
                    Observation::NotFollowed => break 'fill,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(learned, MAX_OPERATIONS);
        assert_eq!(b.operations(), MAX_OPERATIONS);
        assert!(b.accounts() <= MAX_ACCOUNTS);
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.len() < 1024 * 1024, "{} bytes", json.len());
        let restored: Baseline = serde_json::from_str(&json).unwrap();
        assert_eq!(restored.operations(), MAX_OPERATIONS);
        assert_eq!(serde_json::to_string(&restored).unwrap(), json);
    }
}
