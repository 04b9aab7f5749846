//! What the consumer loop decides: which records of a batch it still owns, which offsets an
//! accepted batch commits, how long it waits after a refusal.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::Record;

/// The partitions this consumer holds, and when it got each: `epoch` counts the rebalance
/// events seen, so a record received at epoch `e` is still this consumer's to deliver if
/// its partition was assigned at or before `e` and not revoked since.
#[derive(Debug, Default)]
pub(crate) struct Assignment {
    epoch: u64,
    assigned_at: HashMap<String, HashMap<i32, u64>>,
}

impl Assignment {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn assign<'a>(&mut self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        self.epoch += 1;
        for (topic, partition) in partitions {
            self.assigned_at.entry(topic.to_string()).or_default().insert(partition, self.epoch);
        }
    }

    pub(crate) fn revoke<'a>(&mut self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        self.epoch += 1;
        for (topic, partition) in partitions {
            if let Some(partitions) = self.assigned_at.get_mut(topic) {
                partitions.remove(&partition);
                if partitions.is_empty() {
                    self.assigned_at.remove(topic);
                }
            }
        }
    }

    /// Whether a record of this partition received at `epoch` is still this consumer's.
    fn owns_since(&self, topic: &str, partition: i32, epoch: u64) -> bool {
        self.assigned_at.get(topic).and_then(|partitions| partitions.get(&partition)).is_some_and(|at| *at <= epoch)
    }

    /// The partitions held now, sorted.
    pub(crate) fn partitions(&self) -> Vec<(String, i32)> {
        let mut held: Vec<(String, i32)> = self
            .assigned_at
            .iter()
            .flat_map(|(topic, partitions)| partitions.keys().map(move |partition| (topic.clone(), *partition)))
            .collect();
        held.sort();
        held
    }
}

/// Records received and not yet accepted, each with the assignment epoch it arrived in.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    records: Vec<Record>,
    received_at: Vec<u64>,
}

impl Batch {
    pub(crate) fn push(&mut self, record: Record, epoch: u64) {
        self.records.push(record);
        self.received_at.push(epoch);
    }

    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.received_at.clear();
    }

    /// Drops the records of partitions revoked since they arrived (the partition's next
    /// owner, this consumer included after a reassignment, reads them again from the
    /// committed offset); how many it dropped.
    pub(crate) fn retain_owned(&mut self, assignment: &Assignment) -> usize {
        let before = self.records.len();
        let mut kept_records = Vec::with_capacity(before);
        let mut kept_epochs = Vec::with_capacity(before);
        for (record, epoch) in self.records.drain(..).zip(self.received_at.drain(..)) {
            if assignment.owns_since(&record.topic, record.partition, epoch) {
                kept_records.push(record);
                kept_epochs.push(epoch);
            }
        }
        self.records = kept_records;
        self.received_at = kept_epochs;
        before - self.records.len()
    }

    /// The offsets committing this batch: per partition, the one after its last record
    /// (Kafka's committed offset is the next record to read).
    pub(crate) fn offsets_to_commit(&self) -> BTreeMap<(&str, i32), i64> {
        let mut next = BTreeMap::new();
        for record in &self.records {
            let offset = next.entry((record.topic.as_str(), record.partition)).or_insert(record.offset + 1);
            *offset = (*offset).max(record.offset + 1);
        }
        next
    }
}

/// The pause before offering a batch again after its `refusals`-th refusal (1 for the
/// first): `initial`, doubling each time, at most `max`.
pub(crate) fn refusal_backoff(initial: Duration, max: Duration, refusals: u32) -> Duration {
    let doublings = refusals.saturating_sub(1).min(31);
    initial.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, partition: i32, offset: i64) -> Record {
        Record {
            topic: topic.to_string(),
            partition,
            offset,
            key: None,
            value: bytes::Bytes::from_static(b"{}"),
            timestamp: None,
        }
    }

    #[test]
    fn an_accepted_batch_commits_the_offset_after_each_partitions_last_record() {
        let mut batch = Batch::default();
        for (partition, offset) in [(0, 7), (1, 3), (0, 8), (1, 4), (0, 9)] {
            batch.push(record("audit", partition, offset), 1);
        }
        batch.push(record("audit-admin", 0, 41), 1);
        let offsets = batch.offsets_to_commit();
        assert_eq!(offsets, BTreeMap::from([(("audit", 0), 10), (("audit", 1), 5), (("audit-admin", 0), 42)]));
    }

    #[test]
    fn records_of_a_revoked_partition_are_dropped_and_those_read_after_reassignment_kept() {
        let mut assignment = Assignment::default();
        assignment.assign([("audit", 0), ("audit", 1)]);
        let mut batch = Batch::default();
        batch.push(record("audit", 0, 5), assignment.epoch());
        batch.push(record("audit", 1, 5), assignment.epoch());
        // An eager rebalance: everything revoked, partition 0 given back, 1 to someone else.
        assignment.revoke([("audit", 0), ("audit", 1)]);
        assignment.assign([("audit", 0)]);
        // Partition 0 is read again from its committed offset.
        batch.push(record("audit", 0, 5), assignment.epoch());

        assert_eq!(batch.retain_owned(&assignment), 2);
        assert_eq!(batch.records(), [record("audit", 0, 5)]);
        assert_eq!(assignment.partitions(), [("audit".to_string(), 0)]);
    }

    #[test]
    fn a_batch_survives_a_rebalance_that_leaves_its_partitions_in_place() {
        let mut assignment = Assignment::default();
        assignment.assign([("audit", 0)]);
        let mut batch = Batch::default();
        batch.push(record("audit", 0, 1), assignment.epoch());
        // Cooperative: only another partition moves.
        assignment.assign([("audit", 1)]);
        assignment.revoke([("audit", 1)]);
        assert_eq!(batch.retain_owned(&assignment), 0);
        assert_eq!(batch.len(), 1);
        batch.clear();
        assert!(batch.is_empty());
    }

    #[test]
    fn the_refusal_backoff_doubles_up_to_its_cap() {
        let pauses: Vec<u64> = (1..=7)
            .map(|refusals| refusal_backoff(Duration::from_secs(1), Duration::from_secs(30), refusals).as_secs())
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(refusal_backoff(Duration::from_secs(1), Duration::from_secs(30), u32::MAX), Duration::from_secs(30));
    }
}
