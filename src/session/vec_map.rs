//! A small map kept as a vector of pairs: nothing allocated while empty, exactly as many slots as entries (an
//! idle connection with one subscription holds one slot, where a `HashMap` holds a table of 4 buckets plus
//! control bytes), lookups by a linear scan. For per-connection maps bounded by a small limit (a connection's
//! subscriptions, at most `limits.max_subscriptions`).

/// A map of at most a few dozen entries, in insertion order (see the module docs).
#[derive(Debug)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap { entries: Vec::new() }
    }
}

impl<K: PartialEq, V> VecMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        self.entries.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v)
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some((_, v)) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(v, value));
        }
        self.entries.reserve_exact(1);
        self.entries.push((key, value));
        None
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        let at = self.entries.iter().position(|(k, _)| k.borrow() == key)?;
        let (_, value) = self.entries.swap_remove(at);
        if self.entries.len() <= self.entries.capacity() / 2 {
            self.entries.shrink_to_fit();
        }
        Some(value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_its_entries() {
        let mut map = VecMap::new();
        assert_eq!(map.entries.capacity(), 0);
        assert_eq!(map.insert("a".to_string(), 1), None);
        assert_eq!(map.entries.capacity(), 1, "one slot for one entry");
        assert_eq!(map.insert("b".to_string(), 2), None);
        assert_eq!(map.insert("a".to_string(), 3), Some(1), "replaced");
        assert_eq!((map.len(), map.get("a"), map.get("b"), map.get("c")), (2, Some(&3), Some(&2), None));
        assert_eq!(map.remove("a"), Some(3));
        assert_eq!(map.remove("a"), None);
        assert_eq!(map.keys().collect::<Vec<_>>(), [&"b".to_string()]);
        assert_eq!(map.values().sum::<i32>(), 2);
        assert_eq!(map.iter().count(), 1);
        assert_eq!(map.remove("b"), Some(2));
        assert_eq!(map.entries.capacity(), 0, "nothing kept once empty");
    }
}
