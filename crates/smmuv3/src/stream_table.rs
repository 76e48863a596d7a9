//! The stream table (IHI 0070 §3.3, §6.3.23-§6.3.24): where the SMMU looks up the STE of a
//! StreamID, either one linear array of STEs or a level-1 array of descriptors pointing at
//! level-2 arrays of STEs that are allocated on first use.
//!
//! Entries nobody configured stay invalid (V == 0): the SMMU terminates that traffic and records
//! C_BAD_STE. STE updates never let the SMMU see a half-written entry (see
//! [`StreamTable::write_ste`]).

use crate::error::{Requirement, SmmuError};
use crate::features::Features;
use crate::regs::{addr_bits, STRTAB_BASE, STRTAB_BASE_CFG};
use crate::ste::Ste;
use iommu_core::{DmaMemory, PhysAddr, StreamId};

/// How the caller wants the stream table laid out.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum StreamTableFormat {
    /// 2-level when the SMMU supports it (IDR0.ST_LEVEL) and the StreamIDs need more than one
    /// level-2 table; linear otherwise.
    #[default]
    Auto,
    /// One array of 2^sid_bits STEs.
    Linear,
    /// Level-1 descriptors, each covering 2^[`SPLIT`] StreamIDs.
    TwoLevel,
}

/// StreamID bits resolved by a level-2 table (IHI 0070 §6.3.24 STRTAB_BASE_CFG.SPLIT; 6, 8 and
/// 10 are architected, QEMU accepts all three): 256 STEs, 16 KiB per level-2 table.
pub const SPLIT: u8 = 8;

/// Widest StreamID space a linear table may cover here (64 Ki STEs, 4 MiB).
pub const MAX_LINEAR_SID_BITS: u8 = 16;

/// Widest StreamID space a 2-level table may cover here (level-1 array of at most 1 MiB).
pub const MAX_TWO_LEVEL_SID_BITS: u8 = SPLIT + 17;

/// IHI 0070 §3.3.2 level-1 stream table descriptor: Span in [4:0], L2Ptr in [51:6].
const L1STD_SPAN_MASK: u64 = 0x1f;
const L1STD_SIZE: u64 = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    Linear,
    TwoLevel,
}

/// A stream table in DMA memory.
#[derive(Debug)]
pub(crate) struct StreamTable {
    /// The linear table, or the level-1 table.
    base: PhysAddr,
    layout: Layout,
    sid_bits: u8,
}

impl StreamTable {
    /// Allocates an empty table for StreamIDs of `sid_bits` bits (clamped to IDR1.SIDSIZE).
    ///
    /// # Errors
    /// [`SmmuError::Unsupported`] when 2-level is forced but not implemented,
    /// [`SmmuError::InvalidConfig`] when the table would be too large,
    /// [`SmmuError::OutOfMemory`].
    pub(crate) fn new(
        mem: &mut (impl DmaMemory + ?Sized),
        features: &Features,
        format: StreamTableFormat,
        sid_bits: u8,
    ) -> Result<Self, SmmuError> {
        if sid_bits > 32 {
            return Err(SmmuError::InvalidConfig {
                what: "sid_bits",
                value: sid_bits.into(),
            });
        }
        let clamped = sid_bits.min(features.sid_bits);
        if clamped < sid_bits {
            log::info!(
                "smmuv3: {sid_bits}-bit StreamIDs requested, SMMU supports {clamped} (IDR1.SIDSIZE)"
            );
        }
        let layout = match format {
            StreamTableFormat::Linear => Layout::Linear,
            StreamTableFormat::TwoLevel if !features.two_level_stream_table => {
                return Err(SmmuError::Unsupported(Requirement::TwoLevelStreamTable))
            }
            StreamTableFormat::TwoLevel => Layout::TwoLevel,
            StreamTableFormat::Auto if features.two_level_stream_table && clamped > SPLIT => {
                Layout::TwoLevel
            }
            StreamTableFormat::Auto => Layout::Linear,
        };
        let max = match layout {
            Layout::Linear => MAX_LINEAR_SID_BITS,
            Layout::TwoLevel => MAX_TWO_LEVEL_SID_BITS,
        };
        if clamped > max {
            return Err(SmmuError::InvalidConfig {
                what: "sid_bits for this table format",
                value: clamped.into(),
            });
        }
        let table = Self {
            base: PhysAddr(0),
            layout,
            sid_bits: clamped,
        };
        let bytes = table.top_bytes();
        let base = mem.alloc_zeroed(bytes, bytes.max(64))?;
        Ok(Self { base, ..table })
    }

    /// Size of the linear or level-1 table.
    fn top_bytes(&self) -> usize {
        match self.layout {
            Layout::Linear => (1usize << self.sid_bits) * Ste::SIZE,
            Layout::TwoLevel => {
                (1usize << self.sid_bits.saturating_sub(SPLIT)) * L1STD_SIZE as usize
            }
        }
    }

    const fn l2_bytes() -> usize {
        (1 << SPLIT) * Ste::SIZE
    }

    /// The format in use (never `Auto`).
    pub(crate) fn format(&self) -> StreamTableFormat {
        match self.layout {
            Layout::Linear => StreamTableFormat::Linear,
            Layout::TwoLevel => StreamTableFormat::TwoLevel,
        }
    }

    /// The StreamID width the table covers.
    pub(crate) fn sid_bits(&self) -> u8 {
        self.sid_bits
    }

    /// The SMMU_STRTAB_BASE value: RA (read-allocate) and `ADDR[51:6]` (IHI 0070 §6.3.23).
    pub(crate) fn base_reg(&self) -> u64 {
        STRTAB_BASE::RA::SET.value | addr_bits(self.base.get(), 6)
    }

    /// The SMMU_STRTAB_BASE_CFG value: FMT, SPLIT, LOG2SIZE (IHI 0070 §6.3.24).
    pub(crate) fn base_cfg(&self) -> u32 {
        let log2size = STRTAB_BASE_CFG::LOG2SIZE.val(self.sid_bits.into());
        match self.layout {
            Layout::Linear => (STRTAB_BASE_CFG::FMT::Linear + log2size).value,
            Layout::TwoLevel => {
                (STRTAB_BASE_CFG::FMT::TwoLevel
                    + STRTAB_BASE_CFG::SPLIT.val(SPLIT.into())
                    + log2size)
                    .value
            }
        }
    }

    fn check_sid(&self, sid: StreamId) -> Result<(), SmmuError> {
        if u64::from(sid.0) >> self.sid_bits != 0 {
            Err(SmmuError::StreamIdOutOfRange {
                sid,
                sid_bits: self.sid_bits,
            })
        } else {
            Ok(())
        }
    }

    fn l1_slot(&self, sid: StreamId) -> PhysAddr {
        PhysAddr(self.base.get() + u64::from(sid.0 >> SPLIT) * L1STD_SIZE)
    }

    fn ste_in_l2(l2: PhysAddr, sid: StreamId) -> PhysAddr {
        PhysAddr(l2.get() + u64::from(sid.0 & ((1 << SPLIT) - 1)) * Ste::SIZE as u64)
    }

    /// The address of the STE of `sid`, or `None` when its level-2 table does not exist yet.
    ///
    /// # Errors
    /// [`SmmuError::StreamIdOutOfRange`].
    pub(crate) fn ste_addr(
        &self,
        mem: &(impl DmaMemory + ?Sized),
        sid: StreamId,
    ) -> Result<Option<PhysAddr>, SmmuError> {
        self.check_sid(sid)?;
        Ok(match self.layout {
            Layout::Linear => Some(PhysAddr(
                self.base.get() + u64::from(sid.0) * Ste::SIZE as u64,
            )),
            Layout::TwoLevel => {
                let l1std = mem.read_u64(self.l1_slot(sid));
                if l1std & L1STD_SPAN_MASK == 0 {
                    None
                } else {
                    Some(Self::ste_in_l2(PhysAddr(addr_bits(l1std, 6)), sid))
                }
            }
        })
    }

    /// The STE of `sid` as it is in memory (invalid when never written).
    ///
    /// # Errors
    /// [`SmmuError::StreamIdOutOfRange`].
    pub(crate) fn read_ste(
        &self,
        mem: &(impl DmaMemory + ?Sized),
        sid: StreamId,
    ) -> Result<Ste, SmmuError> {
        Ok(match self.ste_addr(mem, sid)? {
            Some(addr) => read_words(mem, addr),
            None => Ste::invalid(),
        })
    }

    /// The STE address for `sid`, allocating its level-2 table (all entries invalid) and
    /// writing the level-1 descriptor (Span = SPLIT + 1, L2Ptr) on first use. The new
    /// descriptor becomes visible to the SMMU through the CMD_CFGI_STE (Leaf = 0) that follows
    /// every STE write.
    fn ste_addr_alloc<M: DmaMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        sid: StreamId,
    ) -> Result<PhysAddr, SmmuError> {
        if let Some(addr) = self.ste_addr(mem, sid)? {
            return Ok(addr);
        }
        let l2 = mem.alloc_zeroed(Self::l2_bytes(), Self::l2_bytes())?;
        // The zeroed level-2 table is visible before the descriptor that points to it.
        mem.publish();
        mem.write_u64(
            self.l1_slot(sid),
            addr_bits(l2.get(), 6) | u64::from(SPLIT + 1),
        );
        Ok(Self::ste_in_l2(l2, sid))
    }

    /// Writes the STE of `sid` so that the SMMU never observes a torn entry, calling
    /// `invalidate` (which must issue CMD_CFGI_STE + CMD_SYNC for the StreamID) after every
    /// step the SMMU must see:
    ///
    /// * entry currently invalid: words 1..7, barrier, word 0, invalidate;
    /// * exactly one word changes: that word, invalidate;
    /// * several words change in a valid entry (break-before-make): word 0 with V = 0,
    ///   invalidate, words 1..7, barrier, word 0, invalidate;
    /// * nothing changes: invalidate (cheap, and repairs a cache left stale by an earlier
    ///   failure).
    ///
    /// # Errors
    /// [`SmmuError::StreamIdOutOfRange`], [`SmmuError::OutOfMemory`] for a new level-2 table,
    /// or whatever `invalidate` returns (the entry may then be left invalid, never torn).
    pub(crate) fn write_ste<M, F>(
        &mut self,
        mem: &mut M,
        sid: StreamId,
        ste: &Ste,
        mut invalidate: F,
    ) -> Result<(), SmmuError>
    where
        M: DmaMemory + ?Sized,
        F: FnMut(&mut M, StreamId) -> Result<(), SmmuError>,
    {
        let addr = self.ste_addr_alloc(mem, sid)?;
        let word = |i: usize| PhysAddr(addr.get() + 8 * i as u64);
        let old = read_words(mem, addr);
        let changed = (0..Ste::WORDS).filter(|&i| old.0[i] != ste.0[i]).count();
        if old.is_valid() && changed > 1 {
            mem.write_u64(word(0), old.0[0] & !1);
            mem.publish();
            invalidate(mem, sid)?;
        }
        if !old.is_valid() || changed > 1 {
            for i in 1..Ste::WORDS {
                if mem.read_u64(word(i)) != ste.0[i] {
                    mem.write_u64(word(i), ste.0[i]);
                }
            }
            mem.publish();
            mem.write_u64(word(0), ste.0[0]);
        } else if let Some(i) = (0..Ste::WORDS).find(|&i| old.0[i] != ste.0[i]) {
            mem.write_u64(word(i), ste.0[i]);
        }
        mem.publish();
        invalidate(mem, sid)
    }

    /// Returns all memory (the SMMU must no longer use the table).
    pub(crate) fn free(self, mem: &mut (impl DmaMemory + ?Sized)) {
        if self.layout == Layout::TwoLevel {
            for i in 0..(1u64 << self.sid_bits.saturating_sub(SPLIT)) {
                let l1std = mem.read_u64(PhysAddr(self.base.get() + i * L1STD_SIZE));
                if l1std & L1STD_SPAN_MASK != 0 {
                    mem.free(PhysAddr(addr_bits(l1std, 6)), Self::l2_bytes());
                }
            }
        }
        let bytes = self.top_bytes();
        mem.free(self.base, bytes);
    }
}

fn read_words(mem: &(impl DmaMemory + ?Sized), addr: PhysAddr) -> Ste {
    let mut ste = Ste::invalid();
    for (i, w) in ste.0.iter_mut().enumerate() {
        *w = mem.read_u64(PhysAddr(addr.get() + 8 * i as u64));
    }
    ste
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ste::S2Context;
    use iommu_core::fake::FakeMemory;
    use iommu_core::{OutOfMemory, Vmid};

    /// What a [`Recorder`] saw, in order.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Op {
        Write(u64, u64),
        Publish,
        Invalidate(u32),
    }

    /// FakeMemory that logs writes and barriers.
    #[derive(Default)]
    struct Recorder {
        mem: FakeMemory,
        log: Vec<Op>,
    }

    impl DmaMemory for Recorder {
        fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
            self.mem.alloc_zeroed(size, align)
        }
        fn free(&mut self, pa: PhysAddr, size: usize) {
            self.mem.free(pa, size)
        }
        fn read_u64(&self, pa: PhysAddr) -> u64 {
            self.mem.read_u64(pa)
        }
        fn write_u64(&mut self, pa: PhysAddr, value: u64) {
            self.log.push(Op::Write(pa.get(), value));
            self.mem.write_u64(pa, value)
        }
        fn publish(&mut self) {
            self.log.push(Op::Publish);
        }
        fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
            self.mem.sync_for_device(pa, len)
        }
        fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
            self.mem.sync_for_cpu(pa, len)
        }
    }

    fn record(mem: &mut Recorder, sid: StreamId) -> Result<(), SmmuError> {
        mem.log.push(Op::Invalidate(sid.0));
        Ok(())
    }

    fn qemu() -> Features {
        Features::decode([0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x74], 1)
    }

    fn s2(vmid: u16, ttb: u64) -> Ste {
        Ste::s2_translate(&S2Context {
            vmid: Vmid(vmid),
            s2ttb: PhysAddr(ttb),
            s2t0sz: 32,
            s2sl0: 1,
            s2ps: 4,
            record_faults: true,
        })
    }

    #[test]
    fn format_selection() {
        let mut mem = FakeMemory::default();
        let f = qemu();
        let auto16 = StreamTable::new(&mut mem, &f, StreamTableFormat::Auto, 16).unwrap();
        assert_eq!(auto16.format(), StreamTableFormat::TwoLevel);
        assert_eq!(auto16.base_cfg(), 1 << 16 | 8 << 6 | 16);
        let auto8 = StreamTable::new(&mut mem, &f, StreamTableFormat::Auto, 8).unwrap();
        assert_eq!(auto8.format(), StreamTableFormat::Linear);
        assert_eq!(auto8.base_cfg(), 8);
        let clamped = StreamTable::new(&mut mem, &f, StreamTableFormat::Auto, 20).unwrap();
        assert_eq!(clamped.sid_bits(), 16);
        let mut linear_only = f.clone();
        linear_only.two_level_stream_table = false;
        assert_eq!(
            StreamTable::new(&mut mem, &linear_only, StreamTableFormat::TwoLevel, 16).unwrap_err(),
            SmmuError::Unsupported(Requirement::TwoLevelStreamTable)
        );
        assert_eq!(
            StreamTable::new(&mut mem, &linear_only, StreamTableFormat::Auto, 16)
                .unwrap()
                .format(),
            StreamTableFormat::Linear
        );
        let mut wide = f.clone();
        wide.sid_bits = 32;
        assert_eq!(
            StreamTable::new(&mut mem, &wide, StreamTableFormat::Linear, 17).unwrap_err(),
            SmmuError::InvalidConfig {
                what: "sid_bits for this table format",
                value: 17
            }
        );
        assert_eq!(
            StreamTable::new(&mut mem, &f, StreamTableFormat::Auto, 33).unwrap_err(),
            SmmuError::InvalidConfig {
                what: "sid_bits",
                value: 33
            }
        );
    }

    #[test]
    fn base_register_values() {
        let mut mem = FakeMemory::default();
        let t = StreamTable::new(&mut mem, &qemu(), StreamTableFormat::Linear, 8).unwrap();
        // 256 STEs = 16 KiB, aligned to its size.
        assert!(t.base.is_aligned(16 * 1024));
        assert_eq!(t.base_reg(), 1 << 62 | t.base.get());
        assert_eq!(mem.live_bytes(), 16 * 1024);
    }

    #[test]
    fn linear_ste_address_and_first_write_order() {
        let mut mem = Recorder::default();
        let mut t = StreamTable::new(&mut mem, &qemu(), StreamTableFormat::Linear, 8).unwrap();
        let ste = s2(1, 0x4010_0000);
        t.write_ste(&mut mem, StreamId(8), &ste, record).unwrap();
        let at = t.base.get() + 8 * 64;
        assert_eq!(t.ste_addr(&mem, StreamId(8)).unwrap(), Some(PhysAddr(at)));
        // Words 1..3 (non-zero ones), barrier, word 0, barrier, invalidate.
        assert_eq!(
            mem.log,
            vec![
                Op::Write(at + 8, ste.0[1]),
                Op::Write(at + 16, ste.0[2]),
                Op::Write(at + 24, ste.0[3]),
                Op::Publish,
                Op::Write(at, ste.0[0]),
                Op::Publish,
                Op::Invalidate(8),
            ]
        );
        assert_eq!(t.read_ste(&mem, StreamId(8)).unwrap(), ste);
        assert_eq!(t.read_ste(&mem, StreamId(9)).unwrap(), Ste::invalid());
        assert_eq!(
            t.write_ste(&mut mem, StreamId(256), &ste, record),
            Err(SmmuError::StreamIdOutOfRange {
                sid: StreamId(256),
                sid_bits: 8
            })
        );
    }

    #[test]
    fn two_level_allocates_level2_on_first_use() {
        let mut mem = Recorder::default();
        let mut t = StreamTable::new(&mut mem, &qemu(), StreamTableFormat::TwoLevel, 16).unwrap();
        // 256 level-1 descriptors of 8 bytes.
        assert_eq!(mem.mem.live_bytes(), 4096);
        let sid = StreamId(0x0108); // bus 1, dev 1
        assert_eq!(t.ste_addr(&mem, sid).unwrap(), None);
        t.write_ste(&mut mem, sid, &s2(1, 0x4010_0000), record)
            .unwrap();
        assert_eq!(mem.mem.live_allocations(), 2);
        let l1std = mem.mem.read_u64(PhysAddr(t.base.get() + 8));
        let l2 = l1std & !0x3f;
        assert_eq!(
            l1std & 0x1f,
            u64::from(SPLIT) + 1,
            "Span covers 2^SPLIT STEs"
        );
        assert_eq!(l2 % (16 * 1024), 0, "L2 table aligned to its 16 KiB size");
        assert_eq!(t.ste_addr(&mem, sid).unwrap(), Some(PhysAddr(l2 + 8 * 64)));
        // The L1 descriptor is written after a barrier and before any STE word.
        let l1_write = mem
            .log
            .iter()
            .position(|op| *op == Op::Write(t.base.get() + 8, l1std))
            .unwrap();
        assert_eq!(mem.log[l1_write - 1], Op::Publish);
        assert!(mem.log[..l1_write]
            .iter()
            .all(|op| !matches!(op, Op::Write(..))));
        // A second StreamID in the same level-2 table reuses it; another range gets its own.
        t.write_ste(&mut mem, StreamId(0x01ff), &Ste::abort(), record)
            .unwrap();
        assert_eq!(mem.mem.live_allocations(), 2);
        t.write_ste(&mut mem, StreamId(0xff00), &Ste::abort(), record)
            .unwrap();
        assert_eq!(mem.mem.live_allocations(), 3);
        assert_eq!(t.read_ste(&mem, StreamId(0x0107)).unwrap(), Ste::invalid());
        assert_eq!(t.read_ste(&mem, StreamId(0x0200)).unwrap(), Ste::invalid());
        t.free(&mut mem);
        assert_eq!(mem.mem.live_allocations(), 0);
    }

    #[test]
    fn multi_word_change_breaks_before_make() {
        let mut mem = Recorder::default();
        let mut t = StreamTable::new(&mut mem, &qemu(), StreamTableFormat::Linear, 4).unwrap();
        let at = t.base.get() + 3 * 64;
        let old = s2(1, 0x4010_0000);
        t.write_ste(&mut mem, StreamId(3), &old, record).unwrap();
        mem.log.clear();
        let new = s2(2, 0x4020_0000); // DW2 (VMID) and DW3 (S2TTB) change
        t.write_ste(&mut mem, StreamId(3), &new, record).unwrap();
        assert_eq!(
            mem.log,
            vec![
                Op::Write(at, old.0[0] & !1),
                Op::Publish,
                Op::Invalidate(3),
                Op::Write(at + 16, new.0[2]),
                Op::Write(at + 24, new.0[3]),
                Op::Publish,
                Op::Write(at, new.0[0]),
                Op::Publish,
                Op::Invalidate(3),
            ]
        );
        assert_eq!(t.read_ste(&mem, StreamId(3)).unwrap(), new);
    }

    #[test]
    fn single_word_change_is_written_in_place() {
        let mut mem = Recorder::default();
        let mut t = StreamTable::new(&mut mem, &qemu(), StreamTableFormat::Linear, 4).unwrap();
        let at = t.base.get() + 64;
        t.write_ste(&mut mem, StreamId(1), &s2(1, 0x4010_0000), record)
            .unwrap();
        mem.log.clear();
        let new = s2(1, 0x4030_0000); // only S2TTB changes
        t.write_ste(&mut mem, StreamId(1), &new, record).unwrap();
        assert_eq!(
            mem.log,
            vec![Op::Write(at + 24, new.0[3]), Op::Publish, Op::Invalidate(1)]
        );
        // Valid to abort changes DW0 only (DW1..3 of the old entry stay, unused by abort).
        mem.log.clear();
        let mut abort = new;
        abort.0[0] = Ste::abort().0[0];
        t.write_ste(&mut mem, StreamId(1), &abort, record).unwrap();
        assert_eq!(
            mem.log,
            vec![Op::Write(at, 1), Op::Publish, Op::Invalidate(1)]
        );
        // Unchanged: only the invalidation.
        mem.log.clear();
        t.write_ste(&mut mem, StreamId(1), &abort, record).unwrap();
        assert_eq!(mem.log, vec![Op::Publish, Op::Invalidate(1)]);
    }

    #[test]
    fn failed_invalidation_leaves_the_entry_invalid_not_torn() {
        let mut mem = Recorder::default();
        let mut t = StreamTable::new(&mut mem, &qemu(), StreamTableFormat::Linear, 4).unwrap();
        t.write_ste(&mut mem, StreamId(2), &s2(1, 0x4010_0000), record)
            .unwrap();
        let err = SmmuError::Timeout {
            register: "CMDQ_CONS",
            polls: 1,
        };
        let got = t.write_ste(&mut mem, StreamId(2), &s2(2, 0x4020_0000), |_, _| Err(err));
        assert_eq!(got, Err(err));
        assert!(!t.read_ste(&mem, StreamId(2)).unwrap().is_valid());
    }
}
