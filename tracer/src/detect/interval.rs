//! The interval clock of the detectors that report per interval
//! (`drop_summary`, `retransmit_rollup`): event time cut into intervals
//! aligned on multiples of their length since the Unix epoch.
//!
//! A detector that reports per interval holds an [`IntervalClock`] and
//! implements [`PerInterval`] (what it says for one interval); starting,
//! advancing and flushing at the end of a run come with the trait.

use super::Sink;

/// Which interval event time is in, and when it started.
#[derive(Clone, Debug)]
pub(crate) struct IntervalClock {
    /// Interval length (ns, at least 1).
    len: i128,
    /// Index of the current interval (`start / len`).
    epoch: i64,
    /// When the current interval started (ns).
    start: i128,
}

impl IntervalClock {
    pub(crate) fn new(len: i128) -> Self {
        Self {
            len: len.max(1),
            epoch: 0,
            start: 0,
        }
    }

    /// Places the clock in the interval of `now` (first event).
    pub(crate) fn start(&mut self, now: i128) {
        self.epoch = epoch_of(now, self.len);
        self.start = i128::from(self.epoch) * self.len;
    }

    /// Index of the current interval: equal for two events of one interval.
    pub(crate) fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Interval length (ns).
    pub(crate) fn len(&self) -> i128 {
        self.len
    }

    /// Time since the current interval started (its span so far, for the
    /// unfinished interval at the end of a run).
    pub(crate) fn elapsed(&self, now: i128) -> i128 {
        (now - self.start).max(0)
    }

    /// When `now` is in a later interval: the end of the current one (it
    /// lasted [`len`](Self::len)), and the clock moves to `now`'s
    /// interval. Intervals without events in between are skipped.
    pub(crate) fn tick(&mut self, now: i128) -> Option<i128> {
        // Still in the current interval (checked on every event: no i128
        // division for that).
        if now < self.start + self.len {
            return None;
        }
        let e = epoch_of(now, self.len);
        if e <= self.epoch {
            return None;
        }
        let end = (i128::from(self.epoch) + 1) * self.len;
        self.epoch = e;
        self.start = i128::from(e) * self.len;
        Some(end)
    }
}

/// A detector that reports once per interval (`drop_summary`,
/// `retransmit_rollup`).
pub(crate) trait PerInterval {
    fn clock(&mut self) -> &mut IntervalClock;

    /// The lines of the interval ending at `ts`, which lasted `span` ns.
    fn emit(&mut self, ts: i128, span: i128, sink: &mut Sink);

    /// First event: the clock starts in `now`'s interval.
    fn start(&mut self, now: i128) {
        self.clock().start(now);
    }

    /// The lines of every finished interval up to `now`.
    fn advance(&mut self, now: i128, sink: &mut Sink) {
        let clock = self.clock();
        if let Some(end) = clock.tick(now) {
            let len = clock.len();
            self.emit(end, len, sink);
        }
    }

    /// The lines of the current, unfinished interval (end of run).
    fn flush(&mut self, now: i128, sink: &mut Sink) {
        let span = self.clock().elapsed(now);
        self.emit(now, span, sink);
    }
}

fn epoch_of(t: i128, len: i128) -> i64 {
    i64::try_from(t.div_euclid(len)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_once_per_finished_interval_at_its_aligned_end() {
        let mut c = IntervalClock::new(10);
        c.start(23);
        assert_eq!((c.epoch(), c.elapsed(23)), (2, 3));
        assert_eq!(c.tick(29), None);
        assert_eq!(c.tick(30), Some(30));
        assert_eq!((c.epoch(), c.elapsed(30)), (3, 0));
        assert_eq!(c.tick(30), None);
        // Empty intervals in between are skipped: one end, the current one's.
        assert_eq!(c.tick(75), Some(40));
        assert_eq!((c.epoch(), c.elapsed(79)), (7, 9));
        // Time going backwards never ticks nor moves the clock.
        assert_eq!(c.tick(12), None);
        assert_eq!((c.epoch(), c.elapsed(12)), (7, 0));
    }

    #[test]
    fn negative_times_and_degenerate_lengths() {
        let mut c = IntervalClock::new(10);
        c.start(-5);
        assert_eq!(c.epoch(), -1);
        assert_eq!(c.tick(0), Some(0));
        let mut z = IntervalClock::new(0);
        assert_eq!(z.len(), 1);
        z.start(5);
        assert_eq!(z.tick(6), Some(6));
        let mut far = IntervalClock::new(1);
        far.start(i128::MAX / 2);
        assert_eq!(far.epoch(), i64::MAX);
    }
}
