//! The proxy's response cache: bounded in bytes, least recently used out first, every entry
//! with its own expiry (an immutable object for its `max-age`, a blocking-reload answer for a
//! few seconds). Pure: time is passed in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// What an entry costs beyond its body (key, headers, bookkeeping), so a flood of tiny
/// answers is bounded too.
pub const ENTRY_OVERHEAD: usize = 512;

struct Entry<V> {
    value: Arc<V>,
    size: usize,
    expires: Instant,
    /// Position in `order` (larger: used more recently).
    tick: u64,
}

/// A byte-bounded LRU of `Arc<V>` by string key, with per-entry expiry.
pub struct Lru<V> {
    cap: usize,
    bytes: usize,
    next_tick: u64,
    map: HashMap<String, Entry<V>>,
    /// tick -> key, oldest use first.
    order: BTreeMap<u64, String>,
    /// (expiry, tick) -> key, soonest first: expired entries go before live ones are evicted.
    expiry: BTreeMap<(Instant, u64), String>,
}

impl<V> Lru<V> {
    pub fn new(cap: usize) -> Lru<V> {
        Lru {
            cap,
            bytes: 0,
            next_tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
            expiry: BTreeMap::new(),
        }
    }

    /// Bytes held (bodies plus [`ENTRY_OVERHEAD`] each).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The fresh value under `key`, marked as just used; an expired one is dropped.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Arc<V>> {
        let (expires, tick) = {
            let e = self.map.get(key)?;
            (e.expires, e.tick)
        };
        if expires <= now {
            self.remove(key);
            return None;
        }
        let new_tick = self.tick();
        let e = self.map.get_mut(key)?;
        e.tick = new_tick;
        let value = e.value.clone();
        if let Some(k) = self.order.remove(&tick) {
            self.order.insert(new_tick, k);
        }
        if let Some(k) = self.expiry.remove(&(expires, tick)) {
            self.expiry.insert((expires, new_tick), k);
        }
        Some(value)
    }

    /// Stores `value` (of `body_len` bytes) until `expires`, replacing what was under `key`
    /// and evicting expired, then least recently used, entries to stay within the bound. A
    /// value larger than an eighth of the bound is not stored (it would flush the cache).
    pub fn insert(
        &mut self,
        key: String,
        value: Arc<V>,
        body_len: usize,
        expires: Instant,
        now: Instant,
    ) {
        self.remove(&key);
        let size = body_len + ENTRY_OVERHEAD;
        if size > self.cap / 8 || expires <= now {
            return;
        }
        self.purge_expired(now);
        while self.bytes + size > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
        let tick = self.tick();
        self.order.insert(tick, key.clone());
        self.expiry.insert((expires, tick), key.clone());
        self.bytes += size;
        self.map.insert(
            key,
            Entry {
                value,
                size,
                expires,
                tick,
            },
        );
    }

    /// Drops every entry that has expired by `now`.
    pub fn purge_expired(&mut self, now: Instant) {
        while let Some(((at, _), _)) = self.expiry.first_key_value() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.expiry.pop_first() {
                self.remove(&key);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.size;
            self.order.remove(&e.tick);
            self.expiry.remove(&(e.expires, e.tick));
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn entries_expire_on_their_own_clock() {
        let t0 = Instant::now();
        let mut c = Lru::new(1 << 20);
        c.insert("part".into(), Arc::new(1), 100, t0 + 86_400 * S, t0);
        c.insert("blocking".into(), Arc::new(2), 100, t0 + 6 * S, t0);
        assert_eq!(c.get("blocking", t0 + 5 * S).as_deref(), Some(&2));
        assert_eq!(c.get("blocking", t0 + 6 * S), None, "gone at its expiry");
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("part", t0 + 3600 * S).as_deref(), Some(&1));
        c.insert("stale".into(), Arc::new(3), 100, t0, t0);
        assert_eq!(c.len(), 1, "an already expired answer is not stored");
    }

    #[test]
    fn the_byte_bound_evicts_the_least_recently_used() {
        let t0 = Instant::now();
        let far = t0 + 3600 * S;
        let e = 1000 + ENTRY_OVERHEAD;
        // Exactly eight entries fit.
        let mut c = Lru::new(8 * e);
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
        for k in keys {
            c.insert(k.into(), Arc::new(k), 1000, far, t0);
        }
        assert_eq!((c.len(), c.bytes()), (8, 8 * e));
        assert!(c.get("a", t0).is_some(), "a is now the most recent");
        c.insert("i".into(), Arc::new("i"), 1000, far, t0);
        assert_eq!(c.len(), 8);
        assert!(c.get("b", t0).is_none(), "b was the least recently used");
        assert!(c.get("a", t0).is_some() && c.get("i", t0).is_some());
        c.insert("big".into(), Arc::new("big"), 1001, far, t0);
        assert!(
            c.get("big", t0).is_none(),
            "above an eighth of the bound: not stored"
        );
        assert_eq!(c.len(), 8, "and nothing was evicted for it");
    }

    #[test]
    fn expired_entries_make_room_before_live_ones() {
        let t0 = Instant::now();
        let cap = 8 * 2 * (100 + ENTRY_OVERHEAD);
        let mut c = Lru::new(cap);
        let body = cap / 8 - ENTRY_OVERHEAD;
        c.insert("short".into(), Arc::new(1), body, t0 + S, t0);
        c.insert("long".into(), Arc::new(2), body, t0 + 3600 * S, t0);
        for i in 0..6 {
            c.insert(format!("x{i}"), Arc::new(3), body, t0 + 3600 * S, t0);
        }
        c.get("short", t0); // recently used, but it expires first
        c.insert("new".into(), Arc::new(4), body, t0 + 3600 * S, t0 + 2 * S);
        assert!(c.get("short", t0).is_none());
        assert!(
            c.get("long", t0 + 2 * S).is_some(),
            "the expired one made the room"
        );
    }

    #[test]
    fn replacing_a_key_keeps_the_byte_count_right() {
        let t0 = Instant::now();
        let mut c = Lru::new(1 << 20);
        c.insert("k".into(), Arc::new(1), 100, t0 + S, t0);
        c.insert("k".into(), Arc::new(2), 300, t0 + S, t0);
        assert_eq!(c.bytes(), 300 + ENTRY_OVERHEAD);
        assert_eq!(c.get("k", t0).as_deref(), Some(&2));
        c.purge_expired(t0 + S);
        assert_eq!((c.len(), c.bytes()), (0, 0));
        assert!(c.is_empty());
    }
}
