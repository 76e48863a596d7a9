//! [`Ledger`]: one bounded log of fault records, with sequence numbers, runs folded when full, an
//! exact drop count, a count of the IOMMU's losses that may have been its records, and a
//! one-shot notification; and the operator's history of it, which the client's reads do not
//! take.

use crate::config::{FAULT_HISTORY_DEPTH, FAULT_LOG_DEPTH};
use smmuman_api::{ClientId, FaultBatch, FaultPage, FaultRecord, NotifyState};

/// A ledger's notification: who armed it, and whether it fired.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) enum Notify {
    #[default]
    Idle,
    Armed(ClientId),
    Fired(ClientId),
}

impl Notify {
    pub fn state(self) -> NotifyState {
        match self {
            Self::Idle => NotifyState::Idle,
            Self::Armed(_) => NotifyState::Armed,
            Self::Fired(_) => NotifyState::Fired,
        }
    }
}

/// What became of one record offered to a ledger.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Recorded {
    /// The sequence number it got.
    pub seq: u64,
    /// Whether it is in the ledger, as a record of its own or folded into the newest one's run
    /// (false: the ledger was full and it continued no run: dropped).
    pub kept: bool,
}

/// A bounded FIFO of fault records. When full, a **new** record that continues the run of the
/// newest one ([`FaultRecord::continued_by`]) is folded into it (its `count` and `addr_last`);
/// any other new record is dropped and counted.
///
/// Apart from that FIFO, which its client empties, the ledger remembers the newest
/// [`FAULT_HISTORY_DEPTH`] runs of the records it kept, for the operator: every kept record
/// that continues the newest run ([`FaultRecord::continued_by`]: the next sequence number too)
/// is folded into it, any other one starts a run and pushes the oldest out. A record the
/// ledger dropped is not remembered either (its number is a gap, which no run spans).
#[derive(Debug)]
pub(crate) struct Ledger {
    records: heapless::Deque<FaultRecord, FAULT_LOG_DEPTH>,
    /// The operator's view: the newest runs kept, whether or not the client read them.
    history: heapless::Deque<FaultRecord, FAULT_HISTORY_DEPTH>,
    /// Records kept before new ones are dropped (at most [`FAULT_LOG_DEPTH`]).
    depth: usize,
    next_seq: u64,
    dropped: u64,
    recorded: u64,
    possibly_lost: u64,
    pub notify: Notify,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::with_depth(FAULT_LOG_DEPTH)
    }
}

impl Ledger {
    /// An empty ledger that keeps `depth` records (clamped to 1..=[`FAULT_LOG_DEPTH`]).
    pub fn with_depth(depth: usize) -> Self {
        Self {
            records: heapless::Deque::new(),
            history: heapless::Deque::new(),
            depth: depth.clamp(1, FAULT_LOG_DEPTH),
            next_seq: 1,
            dropped: 0,
            recorded: 0,
            possibly_lost: 0,
            notify: Notify::Idle,
        }
    }

    /// Offers one record (its `seq` is assigned here, its `count` and `addr_last` set to a
    /// single record's); fires an armed notification.
    pub fn record(&mut self, mut rec: FaultRecord) -> Recorded {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        self.recorded = self.recorded.saturating_add(1);
        rec.seq = seq;
        rec.addr_last = rec.addr;
        rec.count = 1;
        let kept = if self.records.len() < self.depth {
            self.records.push_back(rec).is_ok()
        } else {
            self.fold(&rec)
        };
        if kept {
            self.remember(&rec);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
        self.fire();
        Recorded { seq, kept }
    }

    /// Folds `rec` into the newest record when it continues that record's run (and the run's
    /// count has room); returns whether it did.
    fn fold(&mut self, rec: &FaultRecord) -> bool {
        match self.records.back_mut() {
            Some(run) if run.count < u32::MAX && run.continued_by(rec) => {
                run.count += 1;
                run.addr_last = rec.addr;
                true
            }
            _ => false,
        }
    }

    /// Adds a kept record to the history: folded into the newest run when it continues it,
    /// otherwise a new run (the oldest one forgotten when the history is full).
    fn remember(&mut self, rec: &FaultRecord) {
        if let Some(run) = self.history.back_mut() {
            if run.count < u32::MAX && run.continued_by(rec) {
                run.count += 1;
                run.addr_last = rec.addr;
                return;
            }
        }
        if self.history.is_full() {
            self.history.pop_front();
        }
        // Cannot fail: there is room now.
        let _ = self.history.push_back(*rec);
    }

    /// The IOMMU lost records without saying whose, and this ledger's devices may have raised
    /// some of them: counted, and an armed notification fires (the reader should know).
    pub fn mark_possibly_lost(&mut self) {
        self.possibly_lost = self.possibly_lost.saturating_add(1);
        self.fire();
    }

    /// Times the IOMMU lost records that may have been this ledger's
    /// ([`Ledger::mark_possibly_lost`]).
    pub fn possibly_lost(&self) -> u64 {
        self.possibly_lost
    }

    fn fire(&mut self) {
        if let Notify::Armed(client) = self.notify {
            self.notify = Notify::Fired(client);
        }
    }

    /// Pops up to `max` records, oldest first.
    pub fn pop_page(&mut self, max: FaultBatch) -> FaultPage {
        let mut page = FaultPage::new(0, self.dropped);
        page.set_possibly_lost(self.possibly_lost);
        for _ in 0..max.get() {
            match self.records.pop_front() {
                Some(rec) => {
                    page.push(rec);
                }
                None => break,
            }
        }
        page.set_remaining(self.pending());
        page
    }

    /// Arms the notification for `client` unless records are waiting; returns how many are.
    pub fn arm(&mut self, client: ClientId) -> u32 {
        let pending = self.pending();
        if pending == 0 {
            self.notify = Notify::Armed(client);
        }
        pending
    }

    /// Takes a fired notification (back to idle).
    pub fn take_fired(&mut self) -> Option<ClientId> {
        match self.notify {
            Notify::Fired(client) => {
                self.notify = Notify::Idle;
                Some(client)
            }
            _ => None,
        }
    }

    /// Records waiting to be read.
    pub fn pending(&self) -> u32 {
        u32::try_from(self.records.len()).unwrap_or(u32::MAX)
    }

    /// Records dropped because the ledger was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records offered in total.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The newest runs of records the ledger kept, oldest first, whether or not its client read
    /// them (the operator's view; sequence numbers missing before or between them are the
    /// records it forgot, read or dropped).
    pub fn history(&self) -> impl Iterator<Item = &FaultRecord> {
        self.history.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_core::{FaultReason, Iova, StreamId};
    use smmuman_api::FAULTS_PER_PAGE;

    fn rec(addr: u64) -> FaultRecord {
        FaultRecord {
            seq: 0,
            time_ns: 0,
            addr: Iova(addr),
            addr_last: Iova(0),
            count: 0,
            sid: StreamId(8),
            reason: FaultReason::Translation,
            dir: None,
            code: 0x10,
        }
    }

    #[test]
    fn a_full_ledger_drops_new_records_and_counts_them_exactly() {
        let mut l = Ledger::default();
        // A page apart: no record continues another's run.
        for i in 0..FAULT_LOG_DEPTH as u64 + 5 {
            let r = l.record(rec(0x1000 * i));
            assert_eq!(r.seq, i + 1);
            assert_eq!(r.kept, i < FAULT_LOG_DEPTH as u64);
        }
        assert_eq!(l.dropped(), 5);
        assert_eq!(l.recorded(), FAULT_LOG_DEPTH as u64 + 5);
        let page = l.pop_page(FaultBatch::PAGE);
        assert_eq!(page.dropped(), 5);
        assert_eq!(
            page.records().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=FAULTS_PER_PAGE as u64).collect::<Vec<_>>()
        );
        assert_eq!(page.remaining(), (FAULT_LOG_DEPTH - FAULTS_PER_PAGE) as u32);
        // Space again: the next record is kept and its seq shows the gap.
        let r = l.record(rec(0));
        assert_eq!(
            r,
            Recorded {
                seq: FAULT_LOG_DEPTH as u64 + 6,
                kept: true
            }
        );
    }

    #[test]
    fn a_run_into_a_full_ledger_is_folded_into_its_newest_record_with_the_exact_count() {
        // A refused 4 KiB DMA recorded per 4 bytes (QEMU's SMMUv3): 1,024 records into a
        // ledger of 32.
        let mut l = Ledger::default();
        for i in 0..1024u64 {
            let r = l.record(rec(0x4800_0000 + 4 * i));
            assert_eq!(
                r,
                Recorded {
                    seq: i + 1,
                    kept: true
                }
            );
        }
        assert_eq!((l.dropped(), l.recorded(), l.pending()), (0, 1024, 32));
        let mut all = Vec::new();
        while l.pending() > 0 {
            all.extend(l.pop_page(FaultBatch::PAGE).records().copied());
        }
        assert_eq!(all.len(), 32);
        assert!(all[..31]
            .iter()
            .all(|r| r.count == 1 && r.addr_last == r.addr));
        let run = all[31];
        assert_eq!(
            (run.seq, run.seq_last(), run.count, run.addr, run.addr_last),
            (32, 1024, 993, Iova(0x4800_007c), Iova(0x4800_0ffc))
        );
        assert_eq!(all.iter().map(|r| u64::from(r.count)).sum::<u64>(), 1024);
    }

    #[test]
    fn a_full_ledger_folds_only_what_continues_its_newest_record() {
        let mut l = Ledger::with_depth(2);
        l.record(rec(0x1000));
        l.record(rec(0x1004));
        // Full. Far away: dropped; then even the next address of the run is dropped (the
        // sequence numbers no longer follow on).
        assert!(!l.record(rec(0x9000)).kept);
        assert!(!l.record(rec(0x1008)).kept);
        // Another stream, direction or a step back: dropped.
        let mut l = Ledger::with_depth(1);
        l.record(rec(0x1000));
        assert!(
            !l.record(FaultRecord {
                sid: StreamId(9),
                ..rec(0x1004)
            })
            .kept
        );
        let mut l = Ledger::with_depth(1);
        l.record(rec(0x1000));
        assert!(
            !l.record(FaultRecord {
                dir: Some(iommu_core::Direction::Read),
                ..rec(0x1004)
            })
            .kept
        );
        let mut l = Ledger::with_depth(1);
        l.record(rec(0x1000));
        assert!(!l.record(rec(0x1000)).kept);
        // Control: the next address, close above, is folded.
        let mut l = Ledger::with_depth(1);
        l.record(rec(0x1000));
        assert!(l.record(rec(0x1040)).kept);
        let page = l.pop_page(FaultBatch::PAGE);
        assert_eq!(page.dropped(), 0);
        let r = page.records().next().unwrap();
        assert_eq!((r.count, r.addr_last), (2, Iova(0x1040)));
    }

    #[test]
    fn a_possible_loss_is_counted_on_every_page_and_fires_the_notification() {
        let mut l = Ledger::default();
        assert_eq!(l.pop_page(FaultBatch::PAGE).possibly_lost(), 0);
        assert_eq!(l.arm(ClientId(1)), 0);
        l.mark_possibly_lost();
        assert_eq!(l.take_fired(), Some(ClientId(1)));
        let page = l.pop_page(FaultBatch::PAGE);
        assert_eq!((page.len(), page.possibly_lost()), (0, 1));
        // It stays: it is a count since the object was created, like `dropped`.
        assert_eq!(l.pop_page(FaultBatch::PAGE).possibly_lost(), 1);
    }

    #[test]
    fn notification_is_one_shot_and_not_armed_over_waiting_records() {
        let mut l = Ledger::default();
        assert_eq!(l.arm(ClientId(1)), 0);
        assert_eq!(l.notify.state(), NotifyState::Armed);
        assert_eq!(l.take_fired(), None);
        l.record(rec(0));
        assert_eq!(l.notify.state(), NotifyState::Fired);
        assert_eq!(l.take_fired(), Some(ClientId(1)));
        assert_eq!(l.take_fired(), None);
        l.record(rec(1));
        assert_eq!(l.take_fired(), None, "not re-armed");
        assert_eq!(l.arm(ClientId(1)), 2, "records waiting: not armed");
        assert_eq!(l.notify.state(), NotifyState::Idle);
    }

    #[test]
    fn a_shallower_ledger_drops_sooner_and_counts_exactly() {
        let mut l = Ledger::with_depth(3);
        let kept: Vec<bool> = (0..5).map(|i| l.record(rec(0x1000 * i)).kept).collect();
        assert_eq!(kept, [true, true, true, false, false]);
        let page = l.pop_page(FaultBatch::PAGE);
        assert_eq!(page.records().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(page.dropped(), 2);
        assert!(l.record(rec(9)).kept, "room again once read");
    }

    #[test]
    fn the_history_keeps_the_newest_runs_after_the_client_read_them_and_skips_dropped_records() {
        let mut l = Ledger::with_depth(2);
        // A run of 3 (kept one by one in the ledger, one run in the history), then a record
        // the full ledger drops, then one after it.
        for i in 0..3 {
            assert!(l.record(rec(0x1000 + 4 * i)).kept);
        }
        assert_eq!(
            l.pending(),
            2,
            "the third record was folded into the second"
        );
        assert!(!l.record(rec(0x9000)).kept);
        while l.pending() > 0 {
            l.pop_page(FaultBatch::PAGE);
        }
        assert!(l.record(rec(0x9004)).kept);
        l.pop_page(FaultBatch::PAGE);
        let seen: Vec<_> = l
            .history()
            .map(|r| (r.seq, r.count, r.addr_last.0))
            .collect();
        // The dropped seq 4 is a gap: seq 5 starts its own run although its address follows.
        assert_eq!(seen, [(1, 3, 0x1008), (5, 1, 0x9004)]);
        // Past its depth, the oldest runs are forgotten.
        for i in 0..FAULT_HISTORY_DEPTH as u64 {
            l.record(rec(0x10_0000 + 0x1000 * i));
            l.pop_page(FaultBatch::PAGE);
        }
        let seqs: Vec<_> = l.history().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (6..6 + FAULT_HISTORY_DEPTH as u64).collect::<Vec<_>>()
        );
        assert_eq!(l.pending(), 0);
    }
}
