//! Small building blocks shared by the detectors: a bounded map that evicts
//! its least recently seen entries, a ring of recent timestamps, an episode
//! (threshold crossing and re-alert pacing) and a string interner.
//!
//! None of them reads a clock: time is the event time handed in.

use std::{collections::HashMap, hash::Hash};

/// Hash maps of the detectors. Their keys come from packets (IPs, MACs,
/// ports), so the hasher is seeded at random per process (foldhash's
/// `quality` variant, the same family hashbrown defaults to); every table is
/// also size-capped. Output never depends on iteration order: evictions
/// and summaries sort by time and key.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// An entry that knows when it was last touched (event time, Unix ns).
pub(crate) trait Stamped {
    fn last_seen(&self) -> i128;
}

/// `HashMap` with a size cap. When full, the least recently seen entries
/// (ties broken by key order, so the choice is deterministic) are evicted in
/// a batch of 1/16 of the capacity, which keeps the cost per insert O(1)
/// amortised. Evictions are counted.
pub(crate) struct Bounded<K, V> {
    map: FastMap<K, V>,
    cap: usize,
    pub(crate) evicted: u64,
    pub(crate) expired: u64,
    scratch: Vec<(i128, K)>,
}

impl<K: Copy + Eq + Hash + Ord, V: Stamped> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: FastMap::default(),
            cap: cap.max(1),
            evicted: 0,
            expired: 0,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k)
    }

    /// The entry for `k`, created by `make` (after evicting if full).
    pub(crate) fn entry(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            self.evict_batch();
        }
        self.map.entry(k).or_insert_with(make)
    }

    fn evict_batch(&mut self) {
        let n = (self.cap / 16).max(1).min(self.map.len());
        if n == 0 {
            return;
        }
        self.scratch.clear();
        self.scratch
            .extend(self.map.iter().map(|(k, v)| (v.last_seen(), *k)));
        if n < self.scratch.len() {
            self.scratch.select_nth_unstable(n - 1);
        }
        for (_, k) in self.scratch.drain(..).take(n) {
            self.map.remove(&k);
            self.evicted += 1;
        }
    }

    /// Drops entries for which `keep` says no (idle state), counted as expired.
    pub(crate) fn expire(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let before = self.map.len();
        self.map.retain(|_, v| keep(v));
        self.expired += (before - self.map.len()) as u64;
    }
}

/// The last `cap` timestamps of something, oldest first. Up to
/// [`TimeRing::INLINE`] of them live inline (no allocation); a larger
/// threshold allocates once when the ring is made.
#[derive(Clone, Debug)]
pub(crate) struct TimeRing {
    inline: [i128; TimeRing::INLINE],
    spill: Vec<i128>,
    cap: u32,
    len: u32,
    head: u32,
}

impl TimeRing {
    pub(crate) const INLINE: usize = 4;

    pub(crate) fn new(cap: u32) -> Self {
        let cap = cap.max(1);
        Self {
            inline: [0; Self::INLINE],
            spill: if cap as usize > Self::INLINE {
                vec![0; cap as usize]
            } else {
                Vec::new()
            },
            cap,
            len: 0,
            head: 0,
        }
    }

    fn slots(&mut self) -> &mut [i128] {
        if self.spill.is_empty() {
            &mut self.inline[..]
        } else {
            &mut self.spill[..]
        }
    }

    fn slot(&self, i: u32) -> i128 {
        let i = i as usize;
        if self.spill.is_empty() {
            self.inline[i]
        } else {
            self.spill[i]
        }
    }

    pub(crate) fn push(&mut self, t: i128) {
        let cap = self.cap;
        let pos = (self.head + self.len) % cap;
        self.slots()[pos as usize] = t;
        if self.len < cap {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % cap;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.head = 0;
    }

    pub(crate) fn oldest(&self) -> Option<i128> {
        (self.len > 0).then(|| self.slot(self.head))
    }

    /// True when the ring holds `cap` timestamps and the oldest is at most
    /// `window` before `now` (i.e. `cap` events within the window, edges
    /// included).
    pub(crate) fn full_within(&self, now: i128, window: i128) -> bool {
        self.len == self.cap && self.oldest().is_some_and(|o| now - o <= window)
    }
}

/// What one more occurrence means for an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Below threshold, nothing to say.
    Quiet,
    /// Threshold crossed now (first alert of the episode).
    Crossed,
    /// Still at or over the threshold and a window has passed since the last
    /// alert: alert again with the updated count.
    Again,
    /// Part of an alerted episode, but an alert was sent less than a window
    /// ago: keep the incident alive, say nothing.
    Ongoing,
}

/// "≥ threshold occurrences within window", with an episode around it: the
/// episode ends after a quiet window; within it, one alert when the threshold
/// is crossed and then at most one per window while it continues.
#[derive(Clone, Debug)]
pub(crate) struct Episode {
    pub(crate) ring: TimeRing,
    /// Occurrences in this episode (since the crossing once alerted).
    pub(crate) count: u64,
    pub(crate) first: i128,
    pub(crate) last: i128,
    pub(crate) alerted: bool,
    pub(crate) last_alert: i128,
}

impl Episode {
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            ring: TimeRing::new(threshold),
            count: 0,
            first: 0,
            last: 0,
            alerted: false,
            last_alert: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.ring.clear();
        self.count = 0;
        self.alerted = false;
    }

    pub(crate) fn step(&mut self, t: i128, window: i128) -> Verdict {
        if self.count > 0 && t - self.last > window {
            self.reset();
        }
        self.ring.push(t);
        if self.count == 0 {
            self.first = t;
        }
        self.count += 1;
        self.last = t;
        let hot = self.ring.full_within(t, window);
        if !self.alerted {
            if !hot {
                return Verdict::Quiet;
            }
            // Just crossed: exactly `threshold` occurrences are in the window.
            self.alerted = true;
            self.last_alert = t;
            self.count = u64::from(self.ring.cap);
            self.first = self.ring.oldest().unwrap_or(t);
            return Verdict::Crossed;
        }
        if hot && t - self.last_alert >= window {
            self.last_alert = t;
            return Verdict::Again;
        }
        Verdict::Ongoing
    }
}

/// Strings to small numbers, bounded. Lookups of known strings do not
/// allocate. Symbol 0 is never handed out (callers use it for "none").
pub(crate) struct Interner<T> {
    ids: FastMap<String, u32>,
    items: Vec<(String, T)>,
    cap: usize,
    /// Container handles already interned, by address (see
    /// [`Interner::intern_container`]); each entry keeps its handle alive so
    /// the address cannot be reused by another container meanwhile.
    by_addr: FastMap<usize, (crate::event::ContainerRef, u32)>,
}

impl Interner<crate::event::ContainerRef> {
    /// Symbol of a container (by id): the same as `intern(&c.id, ..)`, but a
    /// handle seen before is found by its address, without hashing and
    /// comparing the 64-character id (the index hands out one handle per
    /// container, so this is the common case).
    pub(crate) fn intern_container(&mut self, c: &crate::event::ContainerRef) -> u32 {
        if let Some((_, id)) = self.by_addr.get(&c.addr()) {
            return *id;
        }
        let id = self.intern(&c.id, || c.clone());
        if id != OVERFLOW && self.by_addr.len() < 2 * self.cap {
            self.by_addr.insert(c.addr(), (c.clone(), id));
        }
        id
    }
}

/// Symbol used when the interner is full.
pub(crate) const OVERFLOW: u32 = u32::MAX;

impl<T> Interner<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            ids: FastMap::default(),
            items: Vec::new(),
            cap: cap.max(1),
            by_addr: FastMap::default(),
        }
    }

    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// Symbol of `s`; `make` builds the value stored with it on first sight.
    /// [`OVERFLOW`] when full.
    pub(crate) fn intern(&mut self, s: &str, make: impl FnOnce() -> T) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        if self.items.len() >= self.cap {
            return OVERFLOW;
        }
        self.items.push((s.to_string(), make()));
        let id = self.items.len() as u32;
        self.ids.insert(s.to_string(), id);
        id
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        match id.checked_sub(1).and_then(|i| self.items.get(i as usize)) {
            Some((s, _)) => s,
            None => "(other)",
        }
    }

    pub(crate) fn value(&self, id: u32) -> Option<&T> {
        id.checked_sub(1)
            .and_then(|i| self.items.get(i as usize))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(i128);
    impl Stamped for E {
        fn last_seen(&self) -> i128 {
            self.0
        }
    }

    #[test]
    fn ring_counts_only_the_last_cap() {
        let mut r = TimeRing::new(3);
        r.push(1);
        r.push(2);
        assert!(!r.full_within(2, 100));
        r.push(3);
        assert!(r.full_within(3, 2));
        assert!(!r.full_within(3, 1));
        r.push(10);
        assert_eq!(r.oldest(), Some(2));
    }

    #[test]
    fn ring_spills_for_large_thresholds() {
        let mut r = TimeRing::new(10);
        for t in 0..10 {
            r.push(t);
        }
        assert!(r.full_within(9, 9));
        r.push(10);
        assert_eq!(r.oldest(), Some(1));
    }

    #[test]
    fn episode_crosses_then_paces_realerts() {
        let mut e = Episode::new(3);
        assert_eq!(e.step(0, 10), Verdict::Quiet);
        assert_eq!(e.step(1, 10), Verdict::Quiet);
        assert_eq!(e.step(2, 10), Verdict::Crossed);
        assert_eq!(e.count, 3);
        assert_eq!(e.step(5, 10), Verdict::Ongoing);
        assert_eq!(e.step(12, 10), Verdict::Again);
        assert_eq!(e.count, 5);
        // Quiet for more than a window: new episode.
        assert_eq!(e.step(30, 10), Verdict::Quiet);
        assert_eq!(e.count, 1);
    }

    #[test]
    fn bounded_evicts_oldest_and_counts() {
        let mut b: Bounded<u32, E> = Bounded::new(16);
        for k in 0..20u32 {
            b.entry(k, || E(i128::from(k)));
        }
        assert!(b.len() <= 16);
        assert_eq!(b.evicted, 4);
        assert!(b.get_mut(&0).is_none());
        assert!(b.get_mut(&19).is_some());
        b.expire(|v| v.0 >= 18);
        assert_eq!(b.len(), 2);
        assert_eq!(b.expired, 14);
    }

    #[test]
    fn interner_is_bounded() {
        let mut i: Interner<()> = Interner::new(2);
        let a = i.intern("a", || ());
        assert_eq!(i.intern("a", || ()), a);
        let b = i.intern("b", || ());
        assert_ne!(a, b);
        assert_eq!(i.intern("c", || ()), OVERFLOW);
        assert_eq!(i.name(OVERFLOW), "(other)");
        assert_eq!(i.name(b), "b");
    }
}
