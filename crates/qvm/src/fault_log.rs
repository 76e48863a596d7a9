//! The VMM's log of its devices' DMA faults, as a system logger writes it: the records the
//! manager kept for the VM object, read back while the guest runs and once more when it
//! stops, one `DMA_FAULT` line per burst.
//!
//! A burst is a run of records from the same stream, in the same direction, for the same
//! reason, at rising addresses no more than [`BURST_GAP`] apart (an IOMMU such as QEMU's
//! SMMUv3 records one fault per 4 bytes of a refused DMA: a 64-byte DMA is 16 records). The
//! line gives the first and last address and sequence number and the exact count, so no
//! record is hidden: a burst's records have consecutive sequence numbers (`count` =
//! `seq_last - seq + 1`). A ledger entry may itself stand for a run (a full ledger folds the
//! records that continue its newest entry into it: `FaultRecord::count`), so a 4 KiB DMA into a
//! full ledger is still one line of `count=1024`. The records the ledger dropped are counted
//! apart (`dropped`), and so are the IOMMU's own losses that may have been the VM's
//! (`possibly_lost`).

use core::fmt::{self, Write as _};
use iommu_core::{Bdf, Direction, FaultReason, Iova, StreamId};
use smmuman_api::{FaultRecord, FAULT_RUN_GAP};

/// Largest address step between two records of one burst (the manager's run gap).
pub const BURST_GAP: u64 = FAULT_RUN_GAP;

/// An open burst.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Burst {
    /// The stream.
    pub sid: StreamId,
    /// Its direction.
    pub dir: Option<Direction>,
    /// Why the IOMMU refused it.
    pub reason: FaultReason,
    /// First and last address.
    pub addr: Iova,
    /// Last address.
    pub addr_last: Iova,
    /// First and last sequence number in the ledger.
    pub seq: u64,
    /// Last sequence number.
    pub seq_last: u64,
    /// Records folded in.
    pub count: u64,
    /// When the manager drained the first one (ns).
    pub time_ns: u64,
}

impl Burst {
    fn start(r: &FaultRecord) -> Self {
        Self {
            sid: r.sid,
            dir: r.dir,
            reason: r.reason,
            addr: r.addr,
            addr_last: r.addr_last,
            seq: r.seq,
            seq_last: r.seq_last(),
            count: u64::from(r.count),
            time_ns: r.time_ns,
        }
    }

    /// Whether `r` continues this burst.
    fn continues(&self, r: &FaultRecord) -> bool {
        r.sid == self.sid
            && r.dir == self.dir
            && r.reason == self.reason
            && r.seq == self.seq_last.wrapping_add(1)
            && r.addr.0 > self.addr_last.0
            && r.addr.0 - self.addr_last.0 <= BURST_GAP
    }
}

/// Folds records into bursts and counts them.
#[derive(Clone, Debug, Default)]
pub struct FaultLog {
    open: Option<Burst>,
    /// Records read back.
    pub records: u64,
    /// Bursts logged.
    pub bursts: u64,
    /// Records the ledger dropped since the object was created (the manager's exact count).
    pub dropped: u64,
    /// Times the IOMMU lost records that may have been the VM's (the manager's count).
    pub possibly_lost: u64,
}

impl FaultLog {
    /// Adds `r` (one record, or a run of `r.count`); returns the burst it closed, if any (to
    /// be logged).
    pub fn push(&mut self, r: &FaultRecord) -> Option<Burst> {
        self.records += u64::from(r.count);
        match &mut self.open {
            Some(b) if b.continues(r) => {
                b.addr_last = r.addr_last;
                b.seq_last = r.seq_last();
                b.count += u64::from(r.count);
                None
            }
            open => {
                let closed = open.replace(Burst::start(r));
                if closed.is_some() {
                    self.bursts += 1;
                }
                closed
            }
        }
    }

    /// Closes the open burst, if any (at the end of a read).
    pub fn flush(&mut self) -> Option<Burst> {
        let closed = self.open.take();
        if closed.is_some() {
            self.bursts += 1;
        }
        closed
    }
}

/// One `DMA_FAULT` line: `vm` and the device its stream belongs to (`None`: not one of the
/// VM's).
pub struct Line<'a> {
    /// The VM.
    pub vm: &'a str,
    /// The VM's device with this stream.
    pub device: Option<Bdf>,
    /// The burst.
    pub burst: Burst,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.burst;
        let mut dev: heapless::String<16> = heapless::String::new();
        let _ = match self.device {
            Some(d) => write!(dev, "{d}"),
            None => write!(dev, "unknown"),
        };
        let dir = match b.dir {
            Some(Direction::Read) => "read",
            Some(Direction::Write) => "write",
            None => "unknown",
        };
        write!(
            f,
            "DMA_FAULT vm={} device={dev} sid={} addr={} addr_last={} count={} dir={dir} reason={} time={}.{:06}s seq={} seq_last={}",
            self.vm,
            b.sid,
            b.addr,
            b.addr_last,
            b.count,
            b.reason,
            b.time_ns / 1_000_000_000,
            (b.time_ns % 1_000_000_000) / 1000,
            b.seq,
            b.seq_last
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, addr: u64, dir: Direction) -> FaultRecord {
        FaultRecord {
            seq,
            time_ns: 1_500_250_000,
            addr: Iova(addr),
            addr_last: Iova(addr),
            count: 1,
            sid: StreamId(0x10),
            reason: FaultReason::Translation,
            dir: Some(dir),
            code: 0x10,
        }
    }

    #[test]
    fn a_64_byte_dma_recorded_per_4_bytes_is_one_burst_of_16() {
        let mut log = FaultLog::default();
        let mut closed = Vec::new();
        for i in 0..16 {
            closed.extend(log.push(&rec(1 + i, 0x4800_0000 + 4 * i, Direction::Write)));
        }
        // A read of the same bytes is another burst.
        for i in 0..16 {
            closed.extend(log.push(&rec(17 + i, 0x4800_0000 + 4 * i, Direction::Read)));
        }
        closed.extend(log.flush());
        assert_eq!(closed.len(), 2);
        assert_eq!(
            (closed[0].count, closed[0].addr_last, closed[0].seq_last),
            (16, Iova(0x4800_003c), 16)
        );
        assert_eq!(closed[1].dir, Some(Direction::Read));
        assert_eq!((log.records, log.bursts), (32, 2));
        let line = Line {
            vm: "vm2",
            device: Bdf::new(0, 2, 0).ok(),
            burst: closed[0],
        }
        .to_string();
        assert!(
            line.starts_with("DMA_FAULT vm=vm2 device=00:02.0 sid=0x10 addr=0x0000000048000000 addr_last=0x000000004800003c count=16 dir=write reason=translation time=1.500250s seq=1 seq_last=16"),
            "{line}"
        );
    }

    #[test]
    fn a_jump_in_address_or_sequence_starts_a_new_burst() {
        let mut log = FaultLog::default();
        assert_eq!(log.push(&rec(1, 0x1000, Direction::Write)), None);
        // Far away: a new burst (the first is closed and returned).
        let closed = log.push(&rec(2, 0x9000, Direction::Write)).unwrap();
        assert_eq!(closed.count, 1);
        // A gap in the sequence (records dropped between): a new burst.
        assert!(log.push(&rec(5, 0x9004, Direction::Write)).is_some());
        // Control: the next record in sequence and address continues it.
        assert_eq!(log.push(&rec(6, 0x9008, Direction::Write)), None);
        assert_eq!(log.flush().map(|b| b.count), Some(2));
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    fn entry(seq: u64, addr: u64, addr_last: u64, count: u32) -> FaultRecord {
        FaultRecord {
            seq,
            time_ns: 0,
            addr: Iova(addr),
            addr_last: Iova(addr_last),
            count,
            sid: StreamId(8),
            reason: FaultReason::Translation,
            dir: Some(Direction::Write),
            code: 0x10,
        }
    }

    #[test]
    fn a_run_folded_by_a_full_ledger_counts_every_record_of_the_burst() {
        // What a full 32-record ledger holds after a 4 KiB DMA recorded per 4 bytes: 31
        // records, then one entry standing for the other 993.
        let mut log = FaultLog::default();
        let mut closed = Vec::new();
        for i in 0..31u64 {
            let a = 0x4800_0000 + 4 * i;
            closed.extend(log.push(&entry(1 + i, a, a, 1)));
        }
        closed.extend(log.push(&entry(32, 0x4800_007c, 0x4800_0ffc, 993)));
        closed.extend(log.flush());
        assert_eq!(closed.len(), 1);
        let b = closed[0];
        assert_eq!(
            (b.count, b.seq, b.seq_last, b.addr_last),
            (1024, 1, 1024, Iova(0x4800_0ffc))
        );
        assert_eq!(log.records, 1024);
        // A record after the run continues from its last address and sequence number.
        let mut log = FaultLog::default();
        assert_eq!(log.push(&entry(1, 0x1000, 0x1ffc, 1024)), None);
        assert_eq!(log.push(&entry(1025, 0x2000, 0x2000, 1)), None);
        assert_eq!(
            log.flush().map(|b| (b.count, b.seq_last)),
            Some((1025, 1025))
        );
    }
}
