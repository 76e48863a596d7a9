//! The fail-safe: a remapping unit made to block every DMA it handles, from its registers
//! alone ([`block_all_dma`]). No allocation, no lock, no driver state: a panic handler can run
//! it with a fresh register handle while the [`crate::Unit`] that owned the frame is lost.
//!
//! # How it blocks
//! Translation off (GSTS.TES = 0, the reset state) lets every DMA through untranslated, so
//! "off" is not safe. Instead the unit is pointed at a root table whose 256 root entries are
//! all not present (a zeroed 4 KiB page the caller reserved) and translation is turned on:
//! every request of every bus then fails its root-entry lookup, is blocked and recorded with
//! fault reason 0x1 (VT-d §3.4.2 "Legacy Mode Address Translation", §9.1 "Root Entry" P = 0,
//! Appendix A reason 1h). Windows the manager had granted go too: their context and
//! second-level entries are no longer reachable from the root.
//!
//! Steps, each wait bounded by the caller's poll limit and each outcome kept in the
//! [`BlockReport`] (a step that timed out does not stop the next):
//! 1. FECTL.IM = 1 (§11.4.9.2): fault events stay masked; records are still written.
//! 2. RTADDR_REG = the zeroed page, TTM = legacy (§11.4.6); GCMD.SRTP; wait GSTS.RTPS (§11.4.4,
//!    §11.4.5).
//! 3. Queued invalidation, if on (GSTS.QIES), is turned off: register-based invalidation is
//!    not allowed while it is on (§6.5 "Invalidation of Translation Caches"). First a bounded
//!    wait for the queue to drain (IQH_REG = IQT_REG, §11.4.12.1-2), then GCMD.QIE = 0 and
//!    wait GSTS.QIES = 0 (§11.4.4). A queue that will not turn off (stopped at an error,
//!    §6.5.2.10, or with descriptors pending) is used instead when the caller lends the
//!    fail-safe word access to the queue's memory ([`QueueAccess`]): the descriptor a queue
//!    error (FSTS.IQE) stopped at is overwritten with a harmless wait and IQE, ITE, ICE are cleared
//!    so that hardware goes on (§6.5.2.10), then a global context-cache invalidation, a global
//!    IOTLB invalidation and a wait descriptor with a status write (§6.5.2.1, §6.5.2.3,
//!    §6.5.2.8) are queued and the status polled: [`QueueState::Recovered`]. Without that
//!    access, or when it does not complete, [`QueueState::Stuck`]: the invalidations are not
//!    confirmed and step 4 is skipped.
//! 4. Register-based global context-cache invalidation (CCMD_REG.ICC, CIRG = global; wait ICC =
//!    0, §11.4.7), then global IOTLB invalidation with draining (IOTLB_REG.IVT, IIRG = global,
//!    DR/DW as CAP.DRD/DWD allow; wait IVT = 0, §11.4.8.1): the spec requires both after a new
//!    root table pointer (§6.5, §11.4.6: hardware may keep using cached entries of the old
//!    tables until then). GCMD.WBF when CAP.RWBF (§6.8).
//! 5. GCMD.TE = 1 if GSTS.TES = 0; wait TES (§11.4.4). Translation is never turned off.
//!
//! Every GCMD_REG write is the persistent state read from GSTS_REG just before (TE, QIE, IRE)
//! with exactly one bit changed or one one-shot bit added (§11.4.4: GCMD reads as 0, and a
//! write acts on every bit it holds).

use crate::context::ADDR_MASK;
use crate::features::field;
use crate::mmio::{Reg32, Reg64, RegisterAccess};
use crate::qi::InvDescriptor;
use crate::regs::{CAP, CCMD, FECTL, FSTS, GCMD, GSTS, IOTLB, IQA, IQH, IQT, RTADDR};
use iommu_core::PhysAddr;

const fn bit(f: tock_registers::fields::Field<u32, impl tock_registers::RegisterLongName>) -> u32 {
    f.mask << f.shift
}

/// The persistent GCMD bits, at the same positions in GSTS as their status (§11.4.4-5).
const PERSISTENT: u32 = bit(GCMD::TE) | bit(GCMD::QIE) | bit(GCMD::IRE);

/// What the fail-safe found the invalidation queue in and left it in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueueState {
    /// GSTS.QIES was already 0.
    WasOff,
    /// Turned off (GSTS.QIES read 0 within the bound).
    TurnedOff,
    /// Could not be turned off; its errors were cleared and the invalidations went through it
    /// (see the module docs).
    Recovered,
    /// Still on after the bound (a queue stopped at an error, or a unit that did not
    /// acknowledge), and the invalidations could not be sent through it either.
    Stuck,
}

/// Word access to the memory of a unit's invalidation queue, lent to the fail-safe for a queue
/// that will not turn off. An implementation refuses (returns `false` / `None`) any address
/// outside the memory it knows may hold the queue and the status word: the queue base is read
/// from IQA_REG, which the fail-safe does not trust further.
pub trait QueueAccess {
    /// Writes one aligned 64-bit word at `pa`, visible to the unit before the next register
    /// write; `false` when `pa` is not queue memory.
    fn write_u64(&mut self, pa: PhysAddr, value: u64) -> bool;
    /// Reads one aligned 64-bit word at `pa` as the unit last wrote it (`None`: not queue
    /// memory).
    fn read_u64(&mut self, pa: PhysAddr) -> Option<u64>;
    /// Where the wait descriptor writes its status (8-byte aligned, writable through
    /// [`QueueAccess::write_u64`]).
    fn status_word(&self) -> PhysAddr;
}

/// No queue access: a queue that will not turn off stays [`QueueState::Stuck`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoQueueAccess;

impl QueueAccess for NoQueueAccess {
    fn write_u64(&mut self, _: PhysAddr, _: u64) -> bool {
        false
    }
    fn read_u64(&mut self, _: PhysAddr) -> Option<u64> {
        None
    }
    fn status_word(&self) -> PhysAddr {
        PhysAddr(0)
    }
}

impl QueueState {
    const fn name(self) -> &'static str {
        match self {
            Self::WasOff => "was-off",
            Self::TurnedOff => "off",
            Self::Recovered => "recovered",
            Self::Stuck => "stuck",
        }
    }
}

/// What [`block_all_dma`] did and what the unit confirmed (register values read back).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BlockReport {
    /// GSTS_REG before the fail-safe touched the unit.
    pub gsts_before: u32,
    /// GSTS_REG at the end.
    pub gsts: u32,
    /// RTADDR_REG at the end (what was written: the register is not a latch read-back).
    pub rtaddr: u64,
    /// GSTS.RTPS read 1 after GCMD.SRTP: the unit latched the empty root table.
    pub root_latched: bool,
    /// The invalidation queue.
    pub queue: QueueState,
    /// CCMD_REG.ICC read 0 after a global context-cache invalidation.
    pub context_invalidated: bool,
    /// IOTLB_REG.IVT read 0 after a global IOTLB invalidation.
    pub iotlb_invalidated: bool,
    /// GSTS.WBFS read 0 after GCMD.WBF, or CAP.RWBF = 0 (no flush needed).
    pub write_buffer_flushed: bool,
}

impl BlockReport {
    /// GSTS.TES at the end.
    pub const fn translating(&self) -> bool {
        self.gsts & bit(GSTS::TES) != 0
    }

    /// Every step confirmed: translation on over the empty root table, nothing cached from
    /// earlier tables. Anything less, and some DMA may still be translated or pass.
    pub const fn blocking(&self) -> bool {
        self.root_latched
            && self.translating()
            && self.context_invalidated
            && self.iotlb_invalidated
            && self.write_buffer_flushed
    }
}

impl core::fmt::Display for BlockReport {
    /// `blocking=1 translating=1 root_latched=1 qi=off context_invalidated=1 ...`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "blocking={} translating={} root_latched={} qi={} context_invalidated={} iotlb_invalidated={} write_buffer_flushed={} gsts_before={:#010x} gsts={:#010x} rtaddr={:#018x}",
            u8::from(self.blocking()),
            u8::from(self.translating()),
            u8::from(self.root_latched),
            self.queue.name(),
            u8::from(self.context_invalidated),
            u8::from(self.iotlb_invalidated),
            u8::from(self.write_buffer_flushed),
            self.gsts_before,
            self.gsts,
            self.rtaddr
        )
    }
}

/// Reads `reg` until `done` holds, at most `limit` times.
fn poll32(regs: &impl RegisterAccess, reg: Reg32, limit: u32, done: impl Fn(u32) -> bool) -> bool {
    (0..limit.max(1)).any(|_| {
        let hit = done(regs.read32(reg));
        if !hit {
            core::hint::spin_loop();
        }
        hit
    })
}

/// Reads `reg` until `mask` reads 0, at most `limit` times.
fn poll64_clear(regs: &impl RegisterAccess, reg: Reg64, mask: u64, limit: u32) -> bool {
    (0..limit.max(1)).any(|_| {
        let hit = regs.read64(reg) & mask == 0;
        if !hit {
            core::hint::spin_loop();
        }
        hit
    })
}

/// GCMD = (GSTS's persistent bits, `cmd` set or cleared) and a bounded wait for `status` to
/// read `on` (a one-shot command: `cmd` is added, `on` is the status it reports).
fn command(
    regs: &mut impl RegisterAccess,
    cmd: u32,
    on: bool,
    status: u32,
    want: bool,
    limit: u32,
) -> bool {
    let persistent = regs.read32(Reg32::Gsts) & PERSISTENT;
    let value = if on {
        persistent | cmd
    } else {
        persistent & !cmd
    };
    regs.write32(Reg32::Gcmd, value);
    poll32(regs, Reg32::Gsts, limit, |g| (g & status != 0) == want)
}

/// The status data of the fail-safe's wait descriptor.
const WAIT_DATA: u32 = 0x5afe_b10c;

/// Clears the queue errors that stop hardware (§6.5.2.10): the descriptor IQE stopped at is
/// overwritten first with a wait descriptor that writes 0 to the status word (a wait with
/// neither SW nor IF is refused by QEMU 10.0's model, so the fail-safe does not use one).
/// `false` when that descriptor cannot be written.
fn clear_queue_errors(
    regs: &mut impl RegisterAccess,
    queue: &mut impl QueueAccess,
    base: u64,
    entries: u64,
) -> bool {
    let fsts = regs.read32(Reg32::Fsts);
    if fsts & bit(FSTS::IQE) != 0 {
        let at = base + (field(regs.read64(Reg64::Iqh), IQH::QH) % entries) * 16;
        let [lo, hi] = InvDescriptor::Wait {
            status: Some(queue.status_word()),
            data: 0,
            interrupt: false,
        }
        .encode();
        if !(queue.write_u64(PhysAddr(at + 8), hi) && queue.write_u64(PhysAddr(at), lo)) {
            return false;
        }
    }
    let errors = fsts & (bit(FSTS::IQE) | bit(FSTS::ITE) | bit(FSTS::ICE));
    if errors != 0 {
        regs.write32(Reg32::Fsts, errors);
    }
    true
}

/// Step 3's fallback for a queue that will not turn off: global context-cache and IOTLB
/// invalidations and a wait through the queue (see the module docs); whether the wait's
/// status arrived within the bound.
fn invalidate_through_queue(
    regs: &mut impl RegisterAccess,
    queue: &mut impl QueueAccess,
    poll_limit: u32,
) -> bool {
    let iqa = regs.read64(Reg64::Iqa);
    if field(iqa, IQA::DW) != 0 {
        return false; // 256-bit descriptors (scalable mode): not written by this driver.
    }
    let base = iqa & ADDR_MASK;
    let entries = 256u64 << field(iqa, IQA::QS);
    let status = queue.status_word();
    if !clear_queue_errors(regs, queue, base, entries) || !queue.write_u64(status, 0) {
        return false;
    }
    let head = field(regs.read64(Reg64::Iqh), IQH::QH) % entries;
    let mut tail = field(regs.read64(Reg64::Iqt), IQT::QT) % entries;
    let wait = InvDescriptor::Wait {
        status: Some(status),
        data: WAIT_DATA,
        interrupt: false,
    };
    let descs = [
        InvDescriptor::ContextGlobal,
        InvDescriptor::IotlbGlobal,
        wait,
    ];
    let used = (tail + entries - head) % entries;
    if entries - 1 - used < descs.len() as u64 {
        return false;
    }
    for d in descs {
        let [lo, hi] = d.encode();
        let at = base + tail * 16;
        if !(queue.write_u64(PhysAddr(at), lo) && queue.write_u64(PhysAddr(at + 8), hi)) {
            return false;
        }
        tail = (tail + 1) % entries;
    }
    regs.write64(Reg64::Iqt, IQT::QT.val(tail).value);
    (0..poll_limit.max(1)).any(|_| {
        if !clear_queue_errors(regs, queue, base, entries) {
            return false;
        }
        let done = queue
            .read_u64(status)
            .is_some_and(|w| w & 0xffff_ffff == u64::from(WAIT_DATA));
        if !done {
            core::hint::spin_loop();
        }
        done
    })
}

/// Makes the unit block every DMA it handles (see the module docs) and reports what it
/// confirmed. Each wait reads its register at most `poll_limit` times; the function always
/// returns.
///
/// `zero_root` must be a 4 KiB-aligned page of zeroes the unit's table walks see (flushed to
/// memory when ECAP.C = 0) and that nothing writes while the unit may use it.
///
/// `queue` is used only when queued invalidation will not turn off ([`QueueAccess`]; pass
/// [`NoQueueAccess`] to never write memory).
pub fn block_all_dma(
    regs: &mut impl RegisterAccess,
    zero_root: PhysAddr,
    queue: &mut impl QueueAccess,
    poll_limit: u32,
) -> BlockReport {
    let gsts_before = regs.read32(Reg32::Gsts);
    let cap = regs.read64(Reg64::Cap);
    // Step 1.
    regs.write32(Reg32::Fectl, bit(FECTL::IM));
    // Step 2.
    regs.write64(
        Reg64::Rtaddr,
        (zero_root.0 & ADDR_MASK) | RTADDR::TTM::Legacy.value,
    );
    let root_latched = command(
        regs,
        bit(GCMD::SRTP),
        true,
        bit(GSTS::RTPS),
        true,
        poll_limit,
    );
    // Step 3.
    let state = if regs.read32(Reg32::Gsts) & bit(GSTS::QIES) == 0 {
        QueueState::WasOff
    } else {
        let qh = |r: &_| field(RegisterAccess::read64(r, Reg64::Iqh), IQH::QH);
        let qt = |r: &_| field(RegisterAccess::read64(r, Reg64::Iqt), IQT::QT);
        let _drained = (0..poll_limit.max(1)).any(|_| qh(&*regs) == qt(&*regs));
        if command(
            regs,
            bit(GCMD::QIE),
            false,
            bit(GSTS::QIES),
            false,
            poll_limit,
        ) {
            QueueState::TurnedOff
        } else if invalidate_through_queue(regs, queue, poll_limit) {
            QueueState::Recovered
        } else {
            QueueState::Stuck
        }
    };
    // Step 4.
    let (mut context_invalidated, mut iotlb_invalidated) = (false, false);
    if state == QueueState::Recovered {
        (context_invalidated, iotlb_invalidated) = (true, true);
    }
    if matches!(state, QueueState::WasOff | QueueState::TurnedOff) {
        regs.write64(Reg64::Ccmd, (CCMD::ICC::SET + CCMD::CIRG::Global).value);
        context_invalidated = poll64_clear(regs, Reg64::Ccmd, CCMD::ICC::SET.mask(), poll_limit);
        let mut iotlb = (IOTLB::IVT::SET + IOTLB::IIRG::Global).value;
        if field(cap, CAP::DRD) != 0 {
            iotlb |= IOTLB::DR::SET.value;
        }
        if field(cap, CAP::DWD) != 0 {
            iotlb |= IOTLB::DW::SET.value;
        }
        regs.write64(Reg64::Iotlb, iotlb);
        iotlb_invalidated = poll64_clear(regs, Reg64::Iotlb, IOTLB::IVT::SET.mask(), poll_limit);
    }
    let write_buffer_flushed = field(cap, CAP::RWBF) == 0
        || command(
            regs,
            bit(GCMD::WBF),
            true,
            bit(GSTS::WBFS),
            false,
            poll_limit,
        );
    // Step 5.
    if regs.read32(Reg32::Gsts) & bit(GSTS::TES) == 0 {
        command(regs, bit(GCMD::TE), true, bit(GSTS::TES), true, poll_limit);
    }
    BlockReport {
        gsts_before,
        gsts: regs.read32(Reg32::Gsts),
        rtaddr: regs.read64(Reg64::Rtaddr),
        root_latched,
        queue: state,
        context_invalidated,
        iotlb_invalidated,
        write_buffer_flushed,
    }
}

#[cfg(test)]
mod tests;
