//! The command queue (IHI 0070 §3.5, §4, §6.3.25-§6.3.27): a circular buffer of 16-byte
//! commands in DMA memory that the SMMU consumes, with error recovery (IHI 0070 §7.1).
//!
//! The driver is the only producer and waits for each batch to complete, so the queue is empty
//! whenever [`CommandQueue::submit`] starts.

use crate::cmd::Command;
use crate::driver::Stats;
use crate::error::{CommandErrorKind, SmmuError};
use crate::gerror::GerrorFlags;
use crate::mmio::{Reg32, RegisterAccess};
use crate::queue::QueueGeometry;
use crate::queue_memory::QueueMemory;
use crate::regs::{CMDQ_BASE, CMDQ_CONS};
use iommu_core::{DmaMemory, PhysAddr};

/// Size of one command (IHI 0070 §4: two 64-bit words).
pub(crate) const ENTRY_SIZE: u64 = 16;

/// How many times a command whose fetch aborted (CERROR_ABT), or a CMD_SYNC that failed on
/// ATC invalidation (CERROR_ATC_INV_SYNC), is tried before the driver gives up on it.
pub const COMMAND_ATTEMPTS: u32 = 4;

/// A command queue in DMA memory and the driver's copy of CMDQ_PROD.
#[derive(Debug)]
pub(crate) struct CommandQueue {
    q: QueueMemory,
    prod: u32,
}

impl CommandQueue {
    /// Allocates a queue of 2^`log2size` commands.
    pub(crate) fn alloc(
        mem: &mut (impl DmaMemory + ?Sized),
        log2size: u8,
    ) -> Result<Self, SmmuError> {
        Ok(Self {
            q: QueueMemory::alloc(mem, log2size, ENTRY_SIZE)?,
            prod: 0,
        })
    }

    /// Returns the memory.
    pub(crate) fn free(self, mem: &mut (impl DmaMemory + ?Sized)) {
        self.q.free(mem);
    }

    /// The queue's geometry.
    pub(crate) fn geometry(&self) -> QueueGeometry {
        self.q.geom
    }

    /// The SMMU_CMDQ_BASE value: RA (read-allocate), ADDR and LOG2SIZE (IHI 0070 §6.3.25).
    pub(crate) fn base_reg(&self) -> u64 {
        (CMDQ_BASE::RA::SET + CMDQ_BASE::LOG2SIZE.val(self.q.geom.log2size().into())).value
            | self.q.addr_field()
    }

    fn slot(&self, p: u32) -> PhysAddr {
        self.q.slot(p)
    }

    /// Writes `entries` followed by one CMD_SYNC, hands them to the SMMU and waits (at most
    /// `poll_limit` reads per wait) until the SMMU has consumed the CMD_SYNC.
    ///
    /// A full queue is handed over and waited on before more entries are written. Command
    /// errors are recovered as [`CommandQueue::recover`] says (skip an illegal command, retry a
    /// fetch abort), so the rest of the batch runs and the queue keeps working; the first
    /// command that was not carried out is returned after the batch completed.
    ///
    /// # Errors
    /// [`SmmuError::Command`] for the first skipped command (index in `entries`; `len` is the
    /// trailing CMD_SYNC), [`SmmuError::CommandRetriesExhausted`] when a retried command was
    /// given up, [`SmmuError::Timeout`] naming CMDQ_CONS when the SMMU stops consuming. On any
    /// error the caller must assume that none of `entries` took effect.
    pub(crate) fn submit<R, M>(
        &mut self,
        regs: &mut R,
        mem: &mut M,
        entries: impl IntoIterator<Item = [u64; 2]>,
        poll_limit: u32,
        stats: &mut Stats,
    ) -> Result<(), SmmuError>
    where
        R: RegisterAccess + ?Sized,
        M: DmaMemory + ?Sized,
    {
        let mut batch = Batch {
            regs,
            mem,
            start: self.prod,
            polls: poll_limit.max(1),
            stats,
            first_error: None,
            retry: None,
        };
        if cmdq_err_active(batch.regs) {
            // Left behind by a batch that timed out (whose caller already heard of the
            // failure): unblock the queue before using it.
            match self.recover(&mut batch)? {
                Some(stale) => log::warn!(
                    "smmuv3: skipped a failed command left from an earlier batch: {stale}"
                ),
                None => log::warn!("smmuv3: retrying a command left from an earlier batch"),
            }
        }
        let mut count = 0u64;
        for entry in entries {
            self.push(&mut batch, entry)?;
            count += 1;
        }
        self.push(&mut batch, Command::Sync.encode())?;
        batch.stats.commands += count;
        batch.stats.syncs += 1;
        batch.mem.publish();
        batch.regs.write32(Reg32::CmdqProd, self.prod);
        self.wait_for_space(&mut batch, self.q.geom.entries())?;
        match batch.first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn push<R, M>(&mut self, b: &mut Batch<'_, R, M>, entry: [u64; 2]) -> Result<(), SmmuError>
    where
        R: RegisterAccess + ?Sized,
        M: DmaMemory + ?Sized,
    {
        let cons = self.q.geom.ptr(b.regs.read32(Reg32::CmdqCons));
        if self.q.geom.space(self.prod, cons) == 0 {
            // Full: hand over what is written and wait for the SMMU to make room.
            b.mem.publish();
            b.regs.write32(Reg32::CmdqProd, self.prod);
            self.wait_for_space(b, 1)?;
        }
        let slot = self.slot(self.prod);
        b.mem.write_u64(slot, entry[0]);
        b.mem.write_u64(PhysAddr(slot.get() + 8), entry[1]);
        self.prod = self.q.geom.advance(self.prod, 1);
        Ok(())
    }

    /// Polls CMDQ_CONS until at least `space` entries are free, recovering command errors on
    /// the way.
    fn wait_for_space<R, M>(&mut self, b: &mut Batch<'_, R, M>, space: u32) -> Result<(), SmmuError>
    where
        R: RegisterAccess + ?Sized,
        M: DmaMemory + ?Sized,
    {
        for _ in 0..b.polls {
            if cmdq_err_active(b.regs) {
                if let Some(e) = self.recover(b)? {
                    b.first_error.get_or_insert(e);
                }
                continue;
            }
            let cons = self.q.geom.ptr(b.regs.read32(Reg32::CmdqCons));
            if self.q.geom.space(self.prod, cons) >= space {
                return Ok(());
            }
        }
        Err(SmmuError::Timeout {
            register: "CMDQ_CONS",
            polls: b.polls,
        })
    }

    /// Recovers from CMDQ_ERR (IHI 0070 §7.1). The SMMU stopped with CMDQ_CONS.RD at the
    /// failing command and the reason in CMDQ_CONS.ERR; GERRORN.CMDQ_ERR toggled to match
    /// GERROR restarts consumption at that same entry, so what happens next depends on what is
    /// left in the slot:
    ///
    /// * CERROR_ILL (and any unknown code): the command itself is bad and would fail again. It
    ///   is overwritten with a CMD_SYNC (skipped) and its loss is returned, so the operation it
    ///   belonged to fails: a lost TLBI or CFGI is never reported as success.
    /// * CERROR_ABT: the *fetch* of the command failed (an external abort reading the queue),
    ///   the command is fine. It is left in place and fetched again, up to
    ///   [`COMMAND_ATTEMPTS`] times; then it is skipped like an illegal one and reported as
    ///   [`SmmuError::CommandRetriesExhausted`].
    /// * CERROR_ATC_INV_SYNC: a CMD_SYNC waited too long for ATC invalidations. As Linux does,
    ///   the CMD_SYNC is left in place and run again; after [`COMMAND_ATTEMPTS`] the error is
    ///   left active and returned as `Err` (a CMD_SYNC cannot be skipped meaningfully); the
    ///   next submission starts by retrying it.
    ///
    /// Returns `Ok(None)` when the command is being retried, `Ok(Some(e))` when it was skipped.
    fn recover<R, M>(&mut self, b: &mut Batch<'_, R, M>) -> Result<Option<SmmuError>, SmmuError>
    where
        R: RegisterAccess + ?Sized,
        M: DmaMemory + ?Sized,
    {
        let cons_reg = b.regs.read32(Reg32::CmdqCons);
        let error = CommandErrorKind::from_code(CMDQ_CONS::ERR.read(cons_reg) as u8);
        let cons = self.q.geom.ptr(cons_reg);
        let slot = self.slot(cons);
        let opcode = b.mem.read_u64(slot) as u8;
        let index = self.q.geom.distance(b.start, cons) as usize;
        let retryable = matches!(
            error,
            CommandErrorKind::Abort | CommandErrorKind::AtcInvSync
        );
        let attempts = match b.retry {
            Some((at, n)) if at == cons => n + 1,
            _ => 1,
        };
        b.retry = Some((cons, attempts));
        let exhausted = SmmuError::CommandRetriesExhausted {
            index,
            opcode,
            error,
            attempts,
        };
        if retryable && attempts >= COMMAND_ATTEMPTS && error == CommandErrorKind::AtcInvSync {
            log::error!(
                "smmuv3: CMD_SYNC #{index} failed {attempts} times with {error}; giving up"
            );
            return Err(exhausted);
        }
        let skip = !retryable || attempts >= COMMAND_ATTEMPTS;
        if skip {
            let [w0, w1] = Command::Sync.encode();
            b.mem.write_u64(slot, w0);
            b.mem.write_u64(PhysAddr(slot.get() + 8), w1);
            b.mem.publish();
        }
        let bit = GerrorFlags::CMDQ_ERR.bits();
        let gerror = b.regs.read32(Reg32::Gerror);
        let gerrorn = b.regs.read32(Reg32::Gerrorn);
        b.regs
            .write32(Reg32::Gerrorn, (gerrorn & !bit) | (gerror & bit));
        b.stats.command_errors_recovered += 1;
        if !skip {
            log::warn!(
                "smmuv3: command #{index} (opcode {opcode:#04x}) failed with {error}; retrying \
                 (attempt {attempts} of {COMMAND_ATTEMPTS})"
            );
            return Ok(None);
        }
        log::warn!(
            "smmuv3: command #{index} (opcode {opcode:#04x}) failed with {error}; replaced by \
             CMD_SYNC, not carried out"
        );
        Ok(Some(if retryable {
            exhausted
        } else {
            SmmuError::Command {
                index,
                opcode,
                error,
            }
        }))
    }
}

/// What one submission works with.
struct Batch<'a, R: ?Sized, M: ?Sized> {
    regs: &'a mut R,
    mem: &'a mut M,
    /// CMDQ_PROD when the batch started: index 0 of the batch.
    start: u32,
    /// Reads per wait.
    polls: u32,
    stats: &'a mut Stats,
    /// The first command error seen (the batch still runs to its CMD_SYNC).
    first_error: Option<SmmuError>,
    /// The CMDQ_CONS pointer of the command being retried and how often it was tried.
    retry: Option<(u32, u32)>,
}

/// Whether GERROR.CMDQ_ERR is active (differs from GERRORN.CMDQ_ERR).
fn cmdq_err_active<R: RegisterAccess + ?Sized>(regs: &R) -> bool {
    GerrorFlags::active(regs.read32(Reg32::Gerror), regs.read32(Reg32::Gerrorn))
        .contains(GerrorFlags::CMDQ_ERR)
}
