//! [`Ledger`]: one bounded log of fault records, with sequence numbers, an exact drop count and a
//! one-shot notification.

use crate::config::FAULT_LOG_DEPTH;
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
    /// Whether it was kept (false: the ledger was full).
    pub kept: bool,
}

/// A bounded FIFO of fault records: when full, **new** records are dropped and counted.
#[derive(Debug)]
pub(crate) struct Ledger {
    records: heapless::Deque<FaultRecord, FAULT_LOG_DEPTH>,
    /// Records kept before new ones are dropped (at most [`FAULT_LOG_DEPTH`]).
    depth: usize,
    next_seq: u64,
    dropped: u64,
    recorded: u64,
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
            depth: depth.clamp(1, FAULT_LOG_DEPTH),
            next_seq: 1,
            dropped: 0,
            recorded: 0,
            notify: Notify::Idle,
        }
    }

    /// Offers a record (its `seq` is assigned here); fires an armed notification.
    pub fn record(&mut self, mut rec: FaultRecord) -> Recorded {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        self.recorded = self.recorded.saturating_add(1);
        rec.seq = seq;
        let kept = self.records.len() < self.depth && self.records.push_back(rec).is_ok();
        if !kept {
            self.dropped = self.dropped.saturating_add(1);
        }
        if let Notify::Armed(client) = self.notify {
            self.notify = Notify::Fired(client);
        }
        Recorded { seq, kept }
    }

    /// Pops up to `max` records, oldest first.
    pub fn pop_page(&mut self, max: FaultBatch) -> FaultPage {
        let mut page = FaultPage::new(0, self.dropped);
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
            sid: StreamId(8),
            reason: FaultReason::Translation,
            dir: None,
            code: 0x10,
        }
    }

    #[test]
    fn a_full_ledger_drops_new_records_and_counts_them_exactly() {
        let mut l = Ledger::default();
        for i in 0..FAULT_LOG_DEPTH as u64 + 5 {
            let r = l.record(rec(i));
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
        let kept: Vec<bool> = (0..5).map(|i| l.record(rec(i)).kept).collect();
        assert_eq!(kept, [true, true, true, false, false]);
        let page = l.pop_page(FaultBatch::PAGE);
        assert_eq!(page.records().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(page.dropped(), 2);
        assert!(l.record(rec(9)).kept, "room again once read");
    }
}
