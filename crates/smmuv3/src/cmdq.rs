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
    /// A full queue is handed over and waited on before more entries are written. A command
    /// the SMMU rejects is replaced by a CMD_SYNC and the error acknowledged, so the rest of
    /// the batch runs and the queue keeps working; the first such error is returned after the
    /// batch completed.
    ///
    /// # Errors
    /// [`SmmuError::Command`] for the first rejected command (index in `entries`; `len` is the
    /// trailing CMD_SYNC), [`SmmuError::Timeout`] naming CMDQ_CONS when the SMMU stops
    /// consuming.
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
        };
        if cmdq_err_active(batch.regs) {
            // Left behind by a batch that timed out: unblock the queue before using it.
            let stale = self.recover(&mut batch);
            log::warn!("smmuv3: recovered a command error left from an earlier batch: {stale}");
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
                let e = self.recover(b);
                b.first_error.get_or_insert(e);
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

    /// Recovers from CMDQ_ERR (IHI 0070 §7.1): the SMMU stopped with CONS at the failing
    /// command and the reason in CMDQ_CONS.ERR. Unless the failure was the CMD_SYNC itself
    /// waiting on ATC invalidation (which is retried as is), the command is overwritten with a
    /// CMD_SYNC; then GERRORN.CMDQ_ERR is toggled to match GERROR, which restarts consumption.
    fn recover<R, M>(&mut self, b: &mut Batch<'_, R, M>) -> SmmuError
    where
        R: RegisterAccess + ?Sized,
        M: DmaMemory + ?Sized,
    {
        let cons_reg = b.regs.read32(Reg32::CmdqCons);
        let error = CommandErrorKind::from_code(CMDQ_CONS::ERR.read(cons_reg) as u8);
        let cons = self.q.geom.ptr(cons_reg);
        let slot = self.slot(cons);
        let opcode = b.mem.read_u64(slot) as u8;
        if error != CommandErrorKind::AtcInvSync {
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
        let index = self.q.geom.distance(b.start, cons) as usize;
        log::warn!(
            "smmuv3: command #{index} (opcode {opcode:#04x}) failed with {error}; replaced by CMD_SYNC"
        );
        SmmuError::Command {
            index,
            opcode,
            error,
        }
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
}

/// Whether GERROR.CMDQ_ERR is active (differs from GERRORN.CMDQ_ERR).
fn cmdq_err_active<R: RegisterAccess + ?Sized>(regs: &R) -> bool {
    GerrorFlags::active(regs.read32(Reg32::Gerror), regs.read32(Reg32::Gerrorn))
        .contains(GerrorFlags::CMDQ_ERR)
}
