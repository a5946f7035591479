//! A bounded memo: a value made once per key and kept for the calls after it, the least
//! recently used dropped first. Analyses of passages and quizzes are kept this way, so that the
//! lessons in use are analysed once rather than for every question. A memo serves one version
//! of the catalog: a reload makes new ones, since an id may then name new text.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub struct Memo<K: Hash + Eq, V: ?Sized>(Mutex<lru::LruCache<K, Arc<V>>>);

impl<K: Hash + Eq, V: ?Sized> Memo<K, V> {
    /// A memo of at most `capacity` values (at least one).
    pub fn new(capacity: usize) -> Memo<K, V> {
        let capacity = std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN);
        Memo(Mutex::new(lru::LruCache::new(capacity)))
    }

    /// The value of `key`, made by `make` when not kept. `make` runs outside the lock: two
    /// first uses at once make it twice, harmlessly, rather than one waiting on the other.
    pub fn get_or_make<Q>(&self, key: &Q, make: impl FnOnce() -> Arc<V>) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = lock().get(key) {
            return value.clone();
        }
        let value = make();
        lock().put(key.to_owned(), value.clone());
        value
    }
}

impl<K: Hash + Eq, V: ?Sized> Memo<K, V> {
    /// The value of `key` when kept.
    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(key).cloned()
    }

    /// Keeps `value` for `key`.
    pub fn put(&self, key: K, value: Arc<V>) {
        self.lock().put(key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<K, Arc<V>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq, V: ?Sized> std::fmt::Debug for Memo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.0.lock().map_or(0, |m| m.len());
        write!(f, "Memo({kept} kept)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_made_once_and_the_least_recently_used_goes_first() {
        let memo: Memo<String, str> = Memo::new(2);
        let made = std::cell::Cell::new(0);
        let get = |key: &str| {
            memo.get_or_make(key, || {
                made.set(made.get() + 1);
                Arc::from(key.to_uppercase())
            })
        };
        assert_eq!(&*get("a"), "A");
        assert_eq!(&*get("a"), "A");
        assert_eq!(made.get(), 1, "kept");
        get("b");
        get("a"); // "b" is now the least recently used
        get("c");
        assert_eq!(made.get(), 3);
        get("a");
        assert_eq!(made.get(), 3, "a was kept");
        get("b");
        assert_eq!(made.get(), 4, "b was dropped");
    }
}
