//! The engines' memories: maps that keep at most a given number of entries, so that what
//! they remember of an endless stream of events stays bounded.

use std::collections::{HashMap, VecDeque};

/// A map that keeps at most its capacity of entries, forgetting the oldest first.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    pub(crate) entries: HashMap<K, V>,
    /// Keys in insertion order; a key removed from `entries` meanwhile is skipped.
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Bounded { entries: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Inserts or replaces; returns the value replaced, if any.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(old) = self.entries.get_mut(&key) {
            return Some(std::mem::replace(old, value));
        }
        while self.entries.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        // Removed keys leave their place in the order: keep it from growing without bound.
        if self.order.len() >= 2 * self.capacity {
            self.order.retain(|k| self.entries.contains_key(k));
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, value);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn a_bounded_map_forgets_its_oldest_entries_and_skips_removed_ones() {
        let mut map = Bounded::new(2);
        assert_eq!(map.insert("a", 1), None);
        assert_eq!(map.insert("b", 2), None);
        assert_eq!(map.insert("a", 3), Some(1), "replaced, not added");
        map.entries.remove("a");
        assert_eq!(map.insert("c", 4), None);
        assert_eq!(map.insert("d", 5), None);
        let mut kept: Vec<_> = map.entries.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, ["c", "d"], "b, the oldest still there, was forgotten");
    }
}
