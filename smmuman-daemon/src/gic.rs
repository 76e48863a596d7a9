//! A small GICv3 driver: the distributor and this PE's redistributor, over [`Mmio`] so that it
//! runs against recorded registers in host tests. The CPU interface (ICC_* system registers)
//! lives in `hyp/irq.rs`; the register encodings it needs are here.
//!
//! Only what the daemon uses: affinity routing with Group 1 enabled, and wired SPIs (the
//! SMMU's `eventq` and `gerror` lines) configured one by one: group 1, a priority, edge or
//! level as the device tree says, routed to this PE, enabled. Every register and field cites
//! the GICv3 architecture specification, Arm IHI 0069 (chapter 12, "Programmers' model").

use crate::board::Trigger;
use crate::mmio::Mmio;
use core::fmt;

/// GICD_CTLR (IHI 0069 §12.9.4).
pub const GICD_CTLR: usize = 0x0000;
/// GICD_TYPER (§12.9.38): ITLinesNumber in bits 4:0.
pub const GICD_TYPER: usize = 0x0004;
/// `GICD_IGROUPR<n>` (§12.9.15): one bit per INTID, 1 = Group 1.
pub const GICD_IGROUPR: usize = 0x0080;
/// `GICD_ISENABLER<n>` (§12.9.29): write 1 to enable forwarding.
pub const GICD_ISENABLER: usize = 0x0100;
/// `GICD_ICENABLER<n>` (§12.9.8): write 1 to disable forwarding.
pub const GICD_ICENABLER: usize = 0x0180;
/// `GICD_ISPENDR<n>` (§12.9.33): read 1 = pending.
pub const GICD_ISPENDR: usize = 0x0200;
/// `GICD_ICPENDR<n>` (§12.9.12): write 1 to clear the pending state.
pub const GICD_ICPENDR: usize = 0x0280;
/// `GICD_IPRIORITYR<n>` (§12.9.24): one byte per INTID.
pub const GICD_IPRIORITYR: usize = 0x0400;
/// `GICD_ICFGR<n>` (§12.9.10): two bits per INTID, the upper one set for edge-triggered.
pub const GICD_ICFGR: usize = 0x0c00;
/// `GICD_IROUTER<n>` (§12.9.27): 64 bits per SPI, the target PE's affinity.
pub const GICD_IROUTER: usize = 0x6000;
/// GICD_PIDR2 (§12.1.13 and §12.9.31): ArchRev in bits 7:4 (3 = GICv3, 4 = GICv4).
pub const GICD_PIDR2: usize = 0xffe8;

/// GICD_CTLR.RWP, bit 31: a write to CTLR (or ICENABLER) is still in progress.
pub const CTLR_RWP: u32 = 1 << 31;
/// GICD_CTLR.DS, bit 6 (§12.9.4): the GIC has a single security state.
pub const CTLR_DS: u32 = 1 << 6;
/// GICD_CTLR bit 4: ARE (single security state) or ARE_NS (Non-secure view): affinity routing.
pub const CTLR_ARE: u32 = 1 << 4;
/// GICD_CTLR bit 1: EnableGrp1 (single security state) or EnableGrp1A (Non-secure view with
/// ARE_NS): forwarding of Group 1 interrupts. Both views put it here.
pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// GICD_CTLR bit 0: EnableGrp0 (single security state); EnableGrp1 of the Non-secure view
/// without affinity routing, which the daemon never uses.
pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;

/// GICR_TYPER (§12.10.39), 64 bits: Affinity in bits 63:32, Last bit 4, VLPIS bit 1.
pub const GICR_TYPER: usize = 0x0008;
/// GICR_WAKER (§12.10.42): ProcessorSleep bit 1, ChildrenAsleep bit 2.
pub const GICR_WAKER: usize = 0x0014;
/// GICR_WAKER.ProcessorSleep.
pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// GICR_WAKER.ChildrenAsleep.
pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICR_TYPER.Last: the last redistributor of the region.
pub const TYPER_LAST: u64 = 1 << 4;
/// GICR_TYPER.VLPIS: the redistributor has the two extra GICv4 frames.
pub const TYPER_VLPIS: u64 = 1 << 1;
/// Size of one redistributor: RD_base and SGI_base, 64 KiB each (§12.10).
pub const REDIST_STRIDE: usize = 0x2_0000;
/// Size of one GICv4 redistributor with VLPI_base and a reserved frame (§12.10).
pub const REDIST_STRIDE_VLPI: usize = 0x4_0000;

/// Largest INTID of an SPI (§2.2: 32..=1019).
pub const MAX_SPI: u32 = 1019;

/// A GIC operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GicError {
    /// Not GICv3 or GICv4 (GICD_PIDR2.ArchRev).
    NotGicV3(u32),
    /// The INTID is not an SPI this distributor implements (GICD_TYPER.ITLinesNumber).
    NotAnSpi(u32),
    /// The INTID is not a PPI (16..=31).
    NotAPpi(u32),
    /// A register did not settle within the poll limit.
    Timeout(&'static str),
    /// No redistributor in the region has this PE's affinity.
    NoRedistributor(u32),
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGicV3(rev) => write!(f, "GICD_PIDR2.ArchRev {rev} is not a GICv3/v4"),
            Self::NotAnSpi(i) => write!(f, "INTID {i} is not an SPI of this distributor"),
            Self::NotAPpi(i) => write!(f, "INTID {i} is not a PPI (16..=31)"),
            Self::Timeout(r) => write!(f, "{r} did not settle"),
            Self::NoRedistributor(a) => write!(f, "no redistributor has affinity {a:#x}"),
        }
    }
}

/// Offset and bit of INTID `intid` in a one-bit-per-INTID register array at `base`
/// (IGROUPR, ISENABLER, ICENABLER, ISPENDR, ICPENDR: §12.9, register n covers INTIDs
/// 32n..32n+31).
pub const fn bit_slot(base: usize, intid: u32) -> (usize, u32) {
    (base + 4 * (intid as usize / 32), 1 << (intid % 32))
}

/// Offset of the 32-bit GICD_IPRIORITYR word holding `intid`'s priority byte, and the byte's
/// shift within it (§12.9.24: byte n of the array is INTID n).
pub const fn priority_slot(intid: u32) -> (usize, u32) {
    (GICD_IPRIORITYR + (intid as usize & !3), 8 * (intid % 4))
}

/// Offset of `intid`'s GICD_ICFGR word and the mask of its Int_config bit (§12.9.10: two bits
/// per INTID, 16 per register; the upper bit set means edge-triggered).
pub const fn config_slot(intid: u32) -> (usize, u32) {
    (
        GICD_ICFGR + 4 * (intid as usize / 16),
        1 << (2 * (intid % 16) + 1),
    )
}

/// Offset of the 64-bit GICD_IROUTER of SPI `intid` (§12.9.27).
pub const fn irouter_offset(intid: u32) -> usize {
    GICD_IROUTER + 8 * intid as usize
}

/// GICD_IROUTER value that routes to the PE with this MPIDR_EL1 (Arm ARM D19.2.99): Aff3 in
/// bits 39:32, Aff2 23:16, Aff1 15:8, Aff0 7:0; Interrupt_Routing_Mode (bit 31) = 0, to this
/// PE only.
pub const fn irouter_value(mpidr: u64) -> u64 {
    (mpidr & 0xff_00ff_ffff) & !(1 << 31)
}

/// The affinity value GICR_TYPER.Affinity (bits 63:32) holds for the PE with this MPIDR_EL1:
/// Aff3.Aff2.Aff1.Aff0, one byte each.
pub const fn typer_affinity(mpidr: u64) -> u32 {
    (((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff)) as u32
}

/// Highest INTID the distributor implements: 32 * (ITLinesNumber + 1) - 1, capped at 1019
/// (§12.9.38).
pub const fn max_intid(typer: u32) -> u32 {
    let lines = (typer & 0x1f) + 1;
    let max = 32 * lines - 1;
    if max > MAX_SPI {
        MAX_SPI
    } else {
        max
    }
}

/// The GICv3 distributor.
#[derive(Debug)]
pub struct Distributor<M: Mmio> {
    regs: M,
    polls: u32,
}

impl<M: Mmio> Distributor<M> {
    /// The distributor behind `regs`; every wait is bounded by `polls` reads.
    ///
    /// # Errors
    /// [`GicError::NotGicV3`] when GICD_PIDR2.ArchRev is neither 3 nor 4.
    pub fn new(regs: M, polls: u32) -> Result<Self, GicError> {
        let rev = (regs.read32(GICD_PIDR2) >> 4) & 0xf;
        if rev != 3 && rev != 4 {
            return Err(GicError::NotGicV3(rev));
        }
        Ok(Self {
            regs,
            polls: polls.max(1),
        })
    }

    fn wait_rwp(&self) -> Result<(), GicError> {
        for _ in 0..self.polls {
            if self.regs.read32(GICD_CTLR) & CTLR_RWP == 0 {
                return Ok(());
            }
        }
        Err(GicError::Timeout("GICD_CTLR.RWP"))
    }

    /// Turns on affinity routing and Group 1 forwarding (GICD_CTLR, §12.9.4). Affinity routing
    /// may only change while every group is disabled, so a distributor without it is first
    /// disabled, then given ARE, then Group 1. Returns the CTLR value read back.
    ///
    /// # Errors
    /// [`GicError::Timeout`] when RWP does not clear.
    pub fn enable(&mut self) -> Result<u32, GicError> {
        let ctlr = self.regs.read32(GICD_CTLR);
        if ctlr & CTLR_ARE == 0 {
            let off = ctlr & !(CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1 | CTLR_RWP);
            self.regs.write32(GICD_CTLR, off);
            self.wait_rwp()?;
            self.regs.write32(GICD_CTLR, off | CTLR_ARE);
            self.wait_rwp()?;
        }
        let now = self.regs.read32(GICD_CTLR) & !CTLR_RWP;
        self.regs
            .write32(GICD_CTLR, now | CTLR_ARE | CTLR_ENABLE_GRP1);
        self.wait_rwp()?;
        Ok(self.regs.read32(GICD_CTLR))
    }

    /// Configures SPI `intid`: disabled and not pending while it changes, Group 1, priority
    /// `priority`, edge or level, routed to the PE `mpidr`, then enabled.
    ///
    /// # Errors
    /// [`GicError::NotAnSpi`], [`GicError::Timeout`].
    pub fn configure_spi(
        &mut self,
        intid: u32,
        trigger: Trigger,
        priority: u8,
        mpidr: u64,
    ) -> Result<(), GicError> {
        let max = max_intid(self.regs.read32(GICD_TYPER));
        if !(32..=max).contains(&intid) {
            return Err(GicError::NotAnSpi(intid));
        }
        self.disable_spi(intid)?;
        let (off, bit) = bit_slot(GICD_ICPENDR, intid);
        self.regs.write32(off, bit);
        let (off, bit) = bit_slot(GICD_IGROUPR, intid);
        let group = self.regs.read32(off);
        self.regs.write32(off, group | bit);
        let (off, shift) = priority_slot(intid);
        let prio = self.regs.read32(off) & !(0xff << shift);
        self.regs.write32(off, prio | u32::from(priority) << shift);
        let (off, edge) = config_slot(intid);
        let cfg = self.regs.read32(off) & !edge;
        let cfg = match trigger {
            Trigger::Edge => cfg | edge,
            Trigger::Level => cfg,
        };
        self.regs.write32(off, cfg);
        self.regs
            .write64(irouter_offset(intid), irouter_value(mpidr));
        let (off, bit) = bit_slot(GICD_ISENABLER, intid);
        self.regs.write32(off, bit);
        Ok(())
    }

    /// Stops forwarding SPI `intid` (GICD_ICENABLER; RWP tracks its completion, §12.9.4).
    ///
    /// # Errors
    /// [`GicError::Timeout`].
    pub fn disable_spi(&mut self, intid: u32) -> Result<(), GicError> {
        let (off, bit) = bit_slot(GICD_ICENABLER, intid);
        self.regs.write32(off, bit);
        self.wait_rwp()
    }

    /// Whether `intid` is pending (GICD_ISPENDR).
    pub fn is_pending(&self, intid: u32) -> bool {
        let (off, bit) = bit_slot(GICD_ISPENDR, intid);
        self.regs.read32(off) & bit != 0
    }

    /// Whether `intid` is enabled (GICD_ISENABLER reads the enable state).
    pub fn is_enabled(&self, intid: u32) -> bool {
        let (off, bit) = bit_slot(GICD_ISENABLER, intid);
        self.regs.read32(off) & bit != 0
    }
}

/// Finds the redistributor of the PE with this MPIDR_EL1 in a redistributor region (walking
/// the frames by GICR_TYPER until its Last bit) and wakes it (GICR_WAKER.ProcessorSleep = 0,
/// then ChildrenAsleep reads 0: §12.10.42; the CPU interface may only be used once its
/// redistributor is awake). Returns the redistributor's offset in the region.
///
/// # Errors
/// [`GicError::NoRedistributor`], [`GicError::Timeout`].
pub fn wake_redistributor<M: Mmio>(
    region: &mut M,
    region_size: u64,
    mpidr: u64,
    polls: u32,
) -> Result<usize, GicError> {
    let want = typer_affinity(mpidr);
    let mut offset = 0usize;
    loop {
        if (offset + REDIST_STRIDE) as u64 > region_size {
            return Err(GicError::NoRedistributor(want));
        }
        let typer = region.read64(offset + GICR_TYPER);
        if (typer >> 32) as u32 == want {
            break;
        }
        if typer & TYPER_LAST != 0 {
            return Err(GicError::NoRedistributor(want));
        }
        offset += if typer & TYPER_VLPIS != 0 {
            REDIST_STRIDE_VLPI
        } else {
            REDIST_STRIDE
        };
    }
    let waker = region.read32(offset + GICR_WAKER);
    region.write32(offset + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
    for _ in 0..polls.max(1) {
        if region.read32(offset + GICR_WAKER) & WAKER_CHILDREN_ASLEEP == 0 {
            return Ok(offset);
        }
    }
    Err(GicError::Timeout("GICR_WAKER.ChildrenAsleep"))
}

/// Offset of SGI_base, the redistributor's second 64 KiB frame (§12.10).
pub const SGI_FRAME: usize = 0x1_0000;
/// GICR_IGROUPR0 in SGI_base (§12.11.3): bit n puts SGI/PPI n in Group 1.
pub const GICR_IGROUPR0: usize = SGI_FRAME + 0x0080;
/// GICR_ISENABLER0 in SGI_base (§12.11.8): writing bit n enables SGI/PPI n.
pub const GICR_ISENABLER0: usize = SGI_FRAME + 0x0100;
/// GICR_IPRIORITYR\<n\> in SGI_base (§12.11.15): one priority byte per SGI/PPI.
pub const GICR_IPRIORITYR: usize = SGI_FRAME + 0x0400;
/// INTID of the EL2 physical timer's PPI (Arm's Server Base System Architecture and the
/// `arm,armv8-timer` binding: the fourth `interrupts` entry, PPI 10 = INTID 26).
pub const INTID_HYP_TIMER: u32 = 26;

/// Puts PPI `intid` (16..=31) of the redistributor at `rd` (an offset from
/// [`wake_redistributor`]) in Group 1 at `priority` and enables it. Level-sensitive PPIs like
/// the timers need no GICR_ICFGR1 change.
///
/// # Errors
/// [`GicError::NotAPpi`] for an INTID outside 16..=31.
pub fn enable_ppi<M: Mmio>(
    region: &mut M,
    rd: usize,
    intid: u32,
    priority: u8,
) -> Result<(), GicError> {
    if !(16..=31).contains(&intid) {
        return Err(GicError::NotAPpi(intid));
    }
    let bit = 1u32 << intid;
    let group = region.read32(rd + GICR_IGROUPR0);
    region.write32(rd + GICR_IGROUPR0, group | bit);
    // IPRIORITYR is byte-accessible, but the Mmio trait has 32-bit accesses: read-modify-write
    // the word that holds this INTID's byte.
    let word = rd + GICR_IPRIORITYR + (intid as usize & !3);
    let shift = (intid % 4) * 8;
    let old = region.read32(word) & !(0xff << shift);
    region.write32(word, old | (u32::from(priority) << shift));
    region.write32(rd + GICR_ISENABLER0, bit);
    Ok(())
}

/// ICC_SRE_EL2 value (IHI 0069 §12.7.8): SRE (bit 0) system-register interface at EL2,
/// Enable (bit 3) lets EL1 use it too; DFB/DIB (bits 1, 2) keep FIQ/IRQ bypass disabled.
pub const ICC_SRE_EL2_VALUE: u64 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3);
/// ICC_PMR_EL1 (§12.2.19): the priority mask; 0xff lets every priority through.
pub const ICC_PMR_ALL: u64 = 0xff;
/// ICC_IAR1_EL1 INTIDs 1020..=1023 are special (§2.2.1): 1023 means nothing is pending.
pub const INTID_SPURIOUS: u32 = 1023;

/// Whether an ICC_IAR1_EL1 value is a real interrupt to handle and EOI (not 1020..=1023).
pub const fn is_real_intid(intid: u32) -> bool {
    !matches!(intid, 1020..=1023)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_mmio::FakeRegs;

    #[test]
    fn one_bit_registers_index_by_32() {
        assert_eq!(bit_slot(GICD_ISENABLER, 106), (0x10c, 1 << 10));
        assert_eq!(bit_slot(GICD_ICENABLER, 31), (0x180, 1 << 31));
        assert_eq!(bit_slot(GICD_IGROUPR, 32), (0x84, 1));
    }

    #[test]
    fn priorities_are_bytes_and_config_is_two_bits_per_intid() {
        // INTID 106: IPRIORITYR byte 106 = word 0x468, byte 2.
        assert_eq!(priority_slot(106), (0x468, 16));
        // INTID 106: ICFGR6 (0xc18), Int_config bits 21:20, edge bit 21.
        assert_eq!(config_slot(106), (0xc18, 1 << 21));
        assert_eq!(config_slot(109), (0xc18, 1 << 27));
        assert_eq!(config_slot(32), (0xc08, 1 << 1));
    }

    #[test]
    fn routing_uses_the_affinity_fields_of_mpidr() {
        assert_eq!(irouter_offset(106), 0x6350);
        // MPIDR with U (bit 30) and MT (bit 24) and Aff3 = 1, Aff2 = 2, Aff1 = 3, Aff0 = 4.
        let mpidr = (1 << 32) | (1 << 30) | (2 << 16) | (3 << 8) | 4 | (1 << 31);
        assert_eq!(irouter_value(mpidr), (1 << 32) | (2 << 16) | (3 << 8) | 4);
        assert_eq!(typer_affinity(mpidr), 0x0102_0304);
        // QEMU's single CPU: MPIDR_EL1 = 0x8000_0000 (RES1 bit 31), affinity 0.
        assert_eq!(irouter_value(0x8000_0000), 0);
    }

    #[test]
    fn special_intids_are_not_handled() {
        assert!(is_real_intid(106));
        assert!(!is_real_intid(INTID_SPURIOUS));
        assert!(!is_real_intid(1020));
        assert_eq!(max_intid(0x1f), MAX_SPI);
        assert_eq!(max_intid(0x3), 127);
    }

    fn gicv3() -> FakeRegs {
        FakeRegs::with(&[(GICD_PIDR2, 0x3b), (GICD_TYPER, 0x3), (GICD_CTLR, 0x40)])
    }

    fn dist() -> Distributor<FakeRegs> {
        let Ok(d) = Distributor::new(gicv3(), 10) else {
            panic!("a GICv3")
        };
        d
    }

    #[test]
    fn a_spi_is_configured_disabled_first_and_enabled_last() {
        let mut d = dist();
        d.configure_spi(106, Trigger::Edge, 0x80, 0x8000_0000)
            .unwrap();
        let writes = &d.regs.writes;
        assert_eq!(writes.first(), Some(&(0x18c, 1 << 10)), "ICENABLER first");
        assert_eq!(writes.last(), Some(&(0x10c, 1 << 10)), "ISENABLER last");
        assert!(writes.contains(&(0x28c, 1 << 10)), "pending cleared");
        assert!(writes.contains(&(0x8c, 1 << 10)), "group 1");
        assert!(writes.contains(&(0x468, 0x80 << 16)), "priority byte");
        assert!(writes.contains(&(0xc18, 1 << 21)), "edge");
        assert!(writes.contains(&(0x6350, 0)), "routed to affinity 0");
        let mut d = dist();
        d.configure_spi(109, Trigger::Level, 0x80, 0).unwrap();
        assert!(d.regs.writes.contains(&(0xc18, 0)), "level: bit clear");
        assert_eq!(
            d.configure_spi(128, Trigger::Edge, 0x80, 0),
            Err(GicError::NotAnSpi(128)),
            "ITLinesNumber 3 implements INTIDs up to 127"
        );
        assert_eq!(
            d.configure_spi(27, Trigger::Edge, 0x80, 0),
            Err(GicError::NotAnSpi(27))
        );
    }

    #[test]
    fn enabling_turns_on_affinity_routing_before_group_1() {
        let mut d = dist();
        let ctlr = d.enable().unwrap();
        assert_eq!(ctlr, 0x40 | CTLR_ARE | CTLR_ENABLE_GRP1);
        let ctlr_writes: Vec<u64> = d
            .regs
            .writes
            .iter()
            .filter(|(o, _)| *o == GICD_CTLR)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(ctlr_writes, [0x40, 0x50, 0x52]);
    }

    #[test]
    fn a_distributor_that_never_settles_or_is_not_v3_is_an_error() {
        assert!(matches!(
            Distributor::new(FakeRegs::with(&[(GICD_PIDR2, 0x2b)]), 1),
            Err(GicError::NotGicV3(2))
        ));
        let busy = FakeRegs::with(&[(GICD_PIDR2, 0x3b), (GICD_CTLR, u64::from(CTLR_RWP))]);
        let Ok(mut d) = Distributor::new(busy, 5) else {
            panic!("a GICv3")
        };
        d.regs.on_write = Some(Box::new(|r, o| {
            if o == GICD_CTLR {
                *r.get_mut(&o).unwrap() |= u64::from(CTLR_RWP);
            }
        }));
        assert_eq!(d.enable(), Err(GicError::Timeout("GICD_CTLR.RWP")));
    }

    #[test]
    fn a_ppi_is_put_in_group_1_with_its_priority_and_enabled() {
        let rd = REDIST_STRIDE;
        let mut r = FakeRegs::with(&[
            (rd + GICR_IGROUPR0, 0x1),
            (rd + GICR_IPRIORITYR + 24, 0x1122_3344),
            (rd + GICR_ISENABLER0, 0),
        ]);
        assert_eq!(enable_ppi(&mut r, rd, INTID_HYP_TIMER, 0x80), Ok(()));
        let regs = r.regs.borrow();
        assert_eq!(regs[&(rd + GICR_IGROUPR0)], 0x1 | (1 << 26));
        assert_eq!(regs[&(rd + GICR_IPRIORITYR + 24)], 0x1180_3344);
        assert_eq!(regs[&(rd + GICR_ISENABLER0)], 1 << 26);
        drop(regs);
        assert_eq!(enable_ppi(&mut r, rd, 40, 0x80), Err(GicError::NotAPpi(40)));
    }

    #[test]
    fn the_redistributor_of_this_pe_is_found_and_woken() {
        // Two redistributors: affinity 0 at 0, affinity 1 (Last) at 0x20000.
        let mut r = FakeRegs::with(&[
            (GICR_TYPER, 0),
            (
                GICR_WAKER,
                u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP),
            ),
            (REDIST_STRIDE + GICR_TYPER, (1 << 32) | TYPER_LAST),
            (
                REDIST_STRIDE + GICR_WAKER,
                u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP),
            ),
        ]);
        r.on_write = Some(Box::new(|regs, o| {
            // The model: clearing ProcessorSleep wakes the children.
            if o % REDIST_STRIDE == GICR_WAKER && regs[&o] & 2 == 0 {
                regs.insert(o, 0);
            }
        }));
        assert_eq!(
            wake_redistributor(&mut r, 0x40000, 1, 10),
            Ok(REDIST_STRIDE)
        );
        assert_eq!(r.regs.borrow()[&(REDIST_STRIDE + GICR_WAKER)], 0);
        assert_eq!(
            r.regs.borrow()[&GICR_WAKER],
            u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP),
            "the other PE's redistributor is left alone"
        );
        assert_eq!(
            wake_redistributor(&mut r, 0x40000, 2, 10),
            Err(GicError::NoRedistributor(2))
        );
        assert_eq!(
            wake_redistributor(&mut r, 0x10000, 0, 10),
            Err(GicError::NoRedistributor(0)),
            "a region too small for one frame pair"
        );
    }
}
