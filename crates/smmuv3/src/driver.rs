//! [`Smmu`]: bring-up, STE installation, TLB invalidation, event and global-error handling.

use crate::cmd::{tlbi_s2_range, Command};
use crate::cmdq::CommandQueue;
use crate::coherency::Dma;
use crate::error::{Requirement, SmmuError};
use crate::event::Event;
use crate::evtq::{DrainReport, EventQueue};
use crate::features::{Features, StallModel, TableEndian};
use crate::gerror::{GerrorFlags, GerrorReport};
use crate::mmio::{Mmio, Reg32, Reg64, RegisterAccess};
use crate::regs::{CMDQ_BASE, CR0, CR1, CR2, EVENTQ_BASE, GBPA, IRQ_CTRL, STRTAB_BASE};
use crate::ste::Ste;
use crate::stream_table::{StreamTable, StreamTableFormat};
use iommu_core::{DmaMemory, Iova, StreamId, Vmid};

/// Parameters of [`Smmu::bring_up`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BringUpConfig {
    /// Stream table layout.
    pub stream_table: StreamTableFormat,
    /// StreamID width the platform needs (clamped to IDR1.SIDSIZE).
    pub sid_bits: u8,
    /// Log2 of the command queue entries (clamped to IDR1.CMDQS).
    pub cmdq_log2: u8,
    /// Most bytes the event queue may take. It gets 2^n records of 32 bytes (IHI 0070 §7.3),
    /// n = min(IDR1.EVENTQS, log2(`evtq_bytes` / 32)) (IHI 0070 §6.3.2, §6.3.28): as many as
    /// the SMMU allows within the budget. At least 32.
    pub evtq_bytes: u64,
    /// Register reads per bounded wait before giving up with [`SmmuError::Timeout`] (0 acts
    /// as 1).
    pub poll_limit: u32,
    /// The platform says the SMMU's table walks and queue accesses snoop the CPU caches (the
    /// device tree's `dma-coherent`, or the config's `coherent yes`). The driver treats the
    /// SMMU as coherent only when this **and** SMMU_IDR0.COHACC (IHI 0070 §6.3.1) say so;
    /// otherwise every table and queue write is cleaned to the point of coherency
    /// ([`iommu_core::DmaMemory::sync_for_device`]) and the SMMU is told to use non-cacheable
    /// accesses. `false` (the default) is always safe, only slower.
    pub coherent: bool,
}

/// Size of one event record (IHI 0070 §7.3).
const EVENT_RECORD_BYTES: u64 = crate::evtq::ENTRY_SIZE;

/// Log2 of the event-queue records: the most that fit in `budget` bytes, capped at the SMMU's
/// IDR1.EVENTQS (and the register width, [`crate::queue::MAX_LOG2SIZE`]).
fn evtq_log2_for(budget: u64, eventqs: u8) -> Result<u8, SmmuError> {
    let records = budget / EVENT_RECORD_BYTES;
    if records == 0 {
        return Err(SmmuError::InvalidConfig {
            what: "event queue budget (bytes, at least one 32-byte record)",
            value: budget,
        });
    }
    let fits = records.ilog2() as u8;
    Ok(fits.min(eventqs).min(crate::queue::MAX_LOG2SIZE))
}

impl Default for BringUpConfig {
    /// Auto stream table for 16-bit StreamIDs (PCI requester IDs), 256 commands, a 64 KiB event
    /// queue budget (2,048 records where IDR1.EVENTQS allows), a million polls per wait.
    fn default() -> Self {
        Self {
            stream_table: StreamTableFormat::Auto,
            sid_bits: 16,
            cmdq_log2: 8,
            evtq_bytes: 64 * 1024,
            poll_limit: 1_000_000,
            coherent: false,
        }
    }
}

/// Cumulative counters since [`Smmu`] was created.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stats {
    /// Commands submitted, not counting the CMD_SYNC that ends each batch.
    pub commands: u64,
    /// Batches (each ends with one CMD_SYNC).
    pub syncs: u64,
    /// Commands the SMMU rejected and the driver recovered from.
    pub command_errors_recovered: u64,
    /// Event records delivered to callers.
    pub events_delivered: u64,
    /// Event queue overflow episodes.
    pub event_overflows: u64,
    /// Lower bound on event records lost to overflow (one per episode: the SMMU does not say
    /// how many it dropped).
    pub events_lost_at_least: u64,
}

/// What [`Smmu::abort_all_traffic`] left behind, read back from the SMMU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AbortState {
    /// SMMU_GBPA (IHI 0070 §6.3.14).
    pub gbpa: u32,
    /// SMMU_CR0ACK (IHI 0070 §6.3.10: the CR0 value in effect).
    pub cr0ack: u32,
    /// Whether every write was acknowledged within the poll limit.
    pub acknowledged: bool,
}

impl AbortState {
    /// GBPA.ABORT: with SMMUEN clear, incoming transactions are terminated.
    pub fn gbpa_abort(&self) -> bool {
        self.gbpa & GBPA::ABORT::SET.value != 0
    }

    /// CR0ACK.SMMUEN: translation (and so the stream table) is in effect.
    pub fn smmuen(&self) -> bool {
        self.cr0ack & CR0::SMMUEN::SET.value != 0
    }

    /// Whether all traffic is terminated: GBPA.ABORT set and SMMUEN clear.
    pub fn aborting(&self) -> bool {
        self.gbpa_abort() && !self.smmuen()
    }
}

#[derive(Debug)]
struct Running {
    strtab: StreamTable,
    cmdq: CommandQueue,
    evtq: EventQueue,
}

/// One SMMUv3.
///
/// Created over a register frame, it reads the ID registers; [`Smmu::bring_up`] then builds the
/// stream table and queues and enables translation. Methods that touch tables or queues take
/// the DMA memory they live in as an argument.
#[derive(Debug)]
pub struct Smmu<R: RegisterAccess = Mmio> {
    regs: R,
    features: Features,
    running: Option<Running>,
    stats: Stats,
    poll_limit: u32,
    /// The SMMU snoops the CPU caches: IDR0.COHACC and the platform's word
    /// ([`BringUpConfig::coherent`]) both say so. Decided at bring-up.
    coherent: bool,
}

impl Smmu<Mmio> {
    /// The SMMU whose register frame is at `base` (from the device tree's `reg`).
    ///
    /// Reads the ID registers only; nothing is written until [`Smmu::bring_up`].
    ///
    /// # Safety
    /// `base` is the 128 KiB SMMU register frame, mapped as device memory, not used by anything
    /// else for the lifetime of the value.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: forwarded from this function's own contract.
        Self::with_registers(unsafe { Mmio::new(base) })
    }
}

impl<R: RegisterAccess> Smmu<R> {
    /// The SMMU behind `regs` (an emulated one in tests). Reads the ID registers.
    pub fn with_registers(regs: R) -> Self {
        let idr = [
            Reg32::Idr0,
            Reg32::Idr1,
            Reg32::Idr2,
            Reg32::Idr3,
            Reg32::Idr4,
            Reg32::Idr5,
        ]
        .map(|r| regs.read32(r));
        let features = Features::decode(idr, regs.read32(Reg32::Aidr));
        Self {
            regs,
            features,
            running: None,
            stats: Stats::default(),
            poll_limit: 1,
            coherent: false,
        }
    }

    /// What the SMMU implements.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Cumulative counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether [`Smmu::bring_up`] succeeded (and [`Smmu::shutdown`] was not called since).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The stream table in use: resolved format (never `Auto`) and StreamID width.
    pub fn stream_table_layout(&self) -> Option<(StreamTableFormat, u8)> {
        self.running
            .as_ref()
            .map(|r| (r.strtab.format(), r.strtab.sid_bits()))
    }

    /// Whether the driver treats the SMMU as cache-coherent (SMMU_IDR0.COHACC and
    /// [`BringUpConfig::coherent`] both set). When not, every table and queue write is cleaned
    /// to the point of coherency and the SMMU makes Non-cacheable accesses.
    pub fn is_coherent(&self) -> bool {
        self.coherent
    }

    /// Log2 of the event queue's entries, once running.
    pub fn evtq_log2(&self) -> Option<u8> {
        self.running.as_ref().map(|r| r.evtq.geometry().log2size())
    }

    /// The register frame (for tests that inspect an emulated SMMU).
    pub fn registers(&self) -> &R {
        &self.regs
    }

    fn check_features(&self) -> Result<(), SmmuError> {
        let f = &self.features;
        let missing = if !f.s2p {
            Some(Requirement::Stage2)
        } else if !f.ttf.aarch64() {
            Some(Requirement::AArch64Tables)
        } else if !f.gran4k {
            Some(Requirement::Granule4K)
        } else if f.ttendian == TableEndian::Big {
            Some(Requirement::LittleEndianTables)
        } else if f.oas_bits.is_none() {
            Some(Requirement::OutputAddressSize)
        } else if f.tables_preset || f.queues_preset {
            Some(Requirement::ProgrammableBases)
        } else if !matches!(
            f.stall_model,
            StallModel::StallAndTerminate | StallModel::TerminateOnly
        ) {
            // IHI 0070 §6.3.1 IDR0.STALL_MODEL: 0b10 forces stalling of every stallable fault,
            // and a stalled transaction waits for CMD_RESUME / CMD_STALL_TERM, which we never
            // send; 0b11 is reserved. With 0b00 stalling is per STE (S2S), and ours keep it 0.
            Some(Requirement::TerminateModel)
        } else {
            None
        };
        match missing {
            Some(req) => Err(SmmuError::Unsupported(req)),
            None => Ok(()),
        }
    }

    /// Polls `reg` until `done(value)`, at most `poll_limit` reads.
    fn wait(
        &self,
        reg: Reg32,
        what: &'static str,
        done: impl Fn(u32) -> bool,
    ) -> Result<u32, SmmuError> {
        let polls = self.poll_limit.max(1);
        for _ in 0..polls {
            let v = self.regs.read32(reg);
            if done(v) {
                return Ok(v);
            }
        }
        Err(SmmuError::Timeout {
            register: what,
            polls,
        })
    }

    /// Writes CR0 and waits for CR0ACK to match (IHI 0070 §6.3.9: every CR0 change is
    /// acknowledged before it takes effect).
    fn write_cr0(&mut self, value: u32) -> Result<(), SmmuError> {
        self.regs.write32(Reg32::Cr0, value);
        self.wait(Reg32::Cr0Ack, "CR0ACK", |ack| ack == value)
            .map(|_| ())
    }

    /// Sets GBPA.ABORT so that traffic is terminated whenever SMMUEN == 0 (IHI 0070 §6.3.14:
    /// the write takes effect when UPDATE reads back as 0).
    fn abort_bypass(&mut self) -> Result<(), SmmuError> {
        let update = GBPA::UPDATE::SET.value;
        let gbpa = self.wait(Reg32::Gbpa, "GBPA.UPDATE", |v| v & update == 0)?;
        self.regs
            .write32(Reg32::Gbpa, gbpa | GBPA::ABORT::SET.value | update);
        self.wait(Reg32::Gbpa, "GBPA.UPDATE", |v| v & update == 0)
            .map(|_| ())
    }

    /// Makes the SMMU terminate all traffic without bringing it up, for a manager that refuses
    /// to start: GBPA.ABORT first (QEMU resets to bypass), then CR0 = 0 (SMMUEN and the queues
    /// off), each write waited for at most `poll_limit` reads. Only GBPA and CR0 are written;
    /// no memory is touched. Returns the state read back, even when a wait ran out (then
    /// `acknowledged` is false): the caller reports it either way.
    ///
    /// # Errors
    /// [`SmmuError::AlreadyRunning`] on a brought-up SMMU (use [`Smmu::shutdown`], which also
    /// returns its memory).
    pub fn abort_all_traffic(&mut self, poll_limit: u32) -> Result<AbortState, SmmuError> {
        if self.running.is_some() {
            return Err(SmmuError::AlreadyRunning);
        }
        self.poll_limit = poll_limit.max(1);
        let acknowledged = self.abort_bypass().is_ok() && self.write_cr0(0).is_ok();
        Ok(AbortState {
            gbpa: self.regs.read32(Reg32::Gbpa),
            cr0ack: self.regs.read32(Reg32::Cr0Ack),
            acknowledged,
        })
    }

    /// Acknowledges every active global error, logging it.
    fn clear_gerror(&mut self, when: &str) -> GerrorFlags {
        let gerror = self.regs.read32(Reg32::Gerror);
        let active = GerrorFlags::active(gerror, self.regs.read32(Reg32::Gerrorn));
        if !active.is_empty() {
            log::warn!("smmuv3: clearing stale global errors {when}: {active}");
            self.regs.write32(Reg32::Gerrorn, gerror);
        }
        active
    }

    /// Takes the SMMU from whatever state firmware left it in to translating, without ever
    /// letting traffic through untranslated:
    ///
    /// 1. GBPA.ABORT (QEMU resets to bypass), then CR0 = 0 (SMMUEN, queues off) and interrupts
    ///    off (we poll); an SMMU in service failure mode (GERROR.SFM_ERR) is refused here, other
    ///    stale global errors are acknowledged;
    /// 2. CR1 (write-back, inner-shareable table and queue accesses when coherent, see
    ///    [`BringUpConfig::coherent`]; Non-cacheable otherwise), CR2 (RECINVSID, PTM);
    /// 3. stream table (every entry invalid) and command queue programmed, CMDQEN;
    /// 4. CMD_CFGI_ALL + CMD_TLBI_NSNH_ALL + CMD_SYNC (legal with or without stage 1);
    /// 5. event queue programmed, EVENTQEN; global errors checked;
    /// 6. SMMUEN.
    ///
    /// Every wait is bounded by `cfg.poll_limit`.
    ///
    /// # Errors
    /// [`SmmuError::AlreadyRunning`]; [`SmmuError::Unsupported`] without stage 2, AArch64
    /// tables, the 4 KiB granule, little-endian walks, programmable bases, or with forced
    /// stalling (IDR0.STALL_MODEL = 0b10, [`Requirement::TerminateModel`]);
    /// [`SmmuError::ServiceFailureBeforeBringUp`]; [`SmmuError::InvalidConfig`] or
    /// [`SmmuError::OutOfMemory`] for the tables; [`SmmuError::Timeout`] naming the register
    /// that did not respond; [`SmmuError::Command`] if the invalidation is rejected;
    /// [`SmmuError::ServiceFailure`]. On failure the SMMU is left disabled with GBPA.ABORT set
    /// and the memory is returned (unless the SMMU did not acknowledge being disabled, in
    /// which case the memory is deliberately leaked).
    pub fn bring_up(
        &mut self,
        mem: &mut impl DmaMemory,
        cfg: BringUpConfig,
    ) -> Result<(), SmmuError> {
        if self.running.is_some() {
            return Err(SmmuError::AlreadyRunning);
        }
        self.check_features()?;
        self.poll_limit = cfg.poll_limit;
        self.coherent = cfg.coherent && self.features.cohacc;
        let mem = &mut Dma::new(mem, self.coherent);
        let cmdq_log2 = cfg.cmdq_log2.min(self.features.cmdq_log2);
        let evtq_log2 = evtq_log2_for(cfg.evtq_bytes, self.features.eventq_log2)?;
        let strtab = StreamTable::new(mem, &self.features, cfg.stream_table, cfg.sid_bits)?;
        let cmdq = match CommandQueue::alloc(mem, cmdq_log2) {
            Ok(q) => q,
            Err(e) => {
                strtab.free(mem);
                return Err(e);
            }
        };
        let evtq = match EventQueue::alloc(mem, evtq_log2) {
            Ok(q) => q,
            Err(e) => {
                strtab.free(mem);
                cmdq.free(mem);
                return Err(e);
            }
        };
        let mut run = Running { strtab, cmdq, evtq };
        match self.program(mem, &mut run) {
            Ok(()) => {
                log::info!(
                    "smmuv3: enabled: {:?} stream table ({}-bit StreamIDs), cmdq 2^{}, evtq 2^{}",
                    run.strtab.format(),
                    run.strtab.sid_bits(),
                    run.cmdq.geometry().log2size(),
                    run.evtq.geometry().log2size()
                );
                self.running = Some(run);
                Ok(())
            }
            Err(e) => {
                match self.disable() {
                    Ok(()) => {
                        run.strtab.free(mem);
                        run.cmdq.free(mem);
                        run.evtq.free(mem);
                    }
                    Err(d) => log::error!(
                        "smmuv3: could not disable after failed bring-up ({d}); leaking its memory"
                    ),
                }
                Err(e)
            }
        }
    }

    fn program(&mut self, mem: &mut impl DmaMemory, run: &mut Running) -> Result<(), SmmuError> {
        self.abort_bypass()?;
        self.write_cr0(0)?;
        self.regs.write32(Reg32::IrqCtrl, 0);
        self.wait(Reg32::IrqCtrlAck, "IRQ_CTRLACK", |v| v == 0)?;
        // IHI 0070 §6.3.18 GERROR.SFM_ERR: service failure mode is left only through a reset.
        // An SMMU that firmware (or an earlier owner) left in it is refused, with all traffic
        // aborted by the two writes above, and the error left visible.
        let active = GerrorFlags::active(
            self.regs.read32(Reg32::Gerror),
            self.regs.read32(Reg32::Gerrorn),
        );
        if active.contains(GerrorFlags::SFM_ERR) {
            log::error!("smmuv3: GERROR.SFM_ERR active before bring-up ({active}); refusing");
            return Err(SmmuError::ServiceFailureBeforeBringUp);
        }
        self.clear_gerror("before bring-up");

        // IHI 0070 §6.3.11 SMMU_CR1: the attributes of the SMMU's own stream table and queue
        // accesses. Coherent: write-back, inner shareable. Otherwise Non-cacheable (IC = OC =
        // 0b00), where SH is ignored and behaves as Outer Shareable; we write that value.
        let cr1 = if self.coherent {
            CR1::QUEUE_IC::WriteBack
                + CR1::QUEUE_OC::WriteBack
                + CR1::QUEUE_SH::InnerShareable
                + CR1::TABLE_IC::WriteBack
                + CR1::TABLE_OC::WriteBack
                + CR1::TABLE_SH::InnerShareable
        } else {
            CR1::QUEUE_IC::NonCacheable
                + CR1::QUEUE_OC::NonCacheable
                + CR1::QUEUE_SH::OuterShareable
                + CR1::TABLE_IC::NonCacheable
                + CR1::TABLE_OC::NonCacheable
                + CR1::TABLE_SH::OuterShareable
        };
        self.regs.write32(Reg32::Cr1, cr1.value);
        // STRTAB_BASE.RA (§6.3.23), CMDQ_BASE.RA (§6.3.25), EVENTQ_BASE.WA (§6.3.28) are
        // allocation hints for cacheable accesses; without caching they are left clear.
        let hints = if self.coherent {
            u64::MAX
        } else {
            !(STRTAB_BASE::RA::SET.value | CMDQ_BASE::RA::SET.value | EVENTQ_BASE::WA::SET.value)
        };
        // IHI 0070 §6.3.12: RECINVSID records C_BAD_STREAMID; PTM (ignore broadcast TLB
        // maintenance, which would not cover our VMIDs) exists only with IDR0.BTM and is RES0,
        // to be written as zero, otherwise. E2H stays 0 (no EL2 stage-1 contexts here).
        let mut cr2 = CR2::RECINVSID::SET.value;
        if self.features.btm {
            cr2 |= CR2::PTM::SET.value;
        }
        self.regs.write32(Reg32::Cr2, cr2);

        self.regs
            .write64(Reg64::StrtabBase, run.strtab.base_reg() & hints);
        self.regs
            .write32(Reg32::StrtabBaseCfg, run.strtab.base_cfg());
        self.regs
            .write64(Reg64::CmdqBase, run.cmdq.base_reg() & hints);
        self.regs.write32(Reg32::CmdqProd, 0);
        self.regs.write32(Reg32::CmdqCons, 0);
        // The zeroed tables and queue are visible before the SMMU may read them.
        mem.publish();
        let cmdqen = CR0::CMDQEN::SET.value;
        self.write_cr0(cmdqen)?;
        run.cmdq.submit(
            &mut self.regs,
            mem,
            [Command::CfgiAll.encode(), Command::TlbiNsnhAll.encode()],
            self.poll_limit,
            &mut self.stats,
        )?;

        self.regs
            .write64(Reg64::EventqBase, run.evtq.base_reg() & hints);
        self.regs.write32(Reg32::EventqProd, 0);
        self.regs.write32(Reg32::EventqCons, 0);
        let queues = cmdqen | CR0::EVENTQEN::SET.value;
        self.write_cr0(queues)?;

        if self
            .clear_gerror("before SMMUEN")
            .contains(GerrorFlags::SFM_ERR)
        {
            return Err(SmmuError::ServiceFailure);
        }
        self.write_cr0(queues | CR0::SMMUEN::SET.value)
    }

    /// Terminates all traffic: GBPA.ABORT, then CR0 = 0.
    fn disable(&mut self) -> Result<(), SmmuError> {
        self.abort_bypass()?;
        self.write_cr0(0)
    }

    /// Disables the SMMU (all traffic aborted: GBPA.ABORT, SMMUEN = 0) and returns the stream
    /// table and queues to `mem`.
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`]; [`SmmuError::Timeout`] when the SMMU does not acknowledge
    /// (the memory then stays allocated, since the SMMU may still read it, and the driver
    /// stays running).
    pub fn shutdown(&mut self, mem: &mut impl DmaMemory) -> Result<(), SmmuError> {
        if self.running.is_none() {
            return Err(SmmuError::NotRunning);
        }
        self.disable()?;
        if let Some(run) = self.running.take() {
            run.strtab.free(mem);
            run.cmdq.free(mem);
            run.evtq.free(mem);
        }
        Ok(())
    }

    /// Turns the SMMU's wired interrupts on or off: SMMU_IRQ_CTRL.EVENTQ_IRQEN and
    /// GERROR_IRQEN (IHI 0070 §6.3.16), then waits for SMMU_IRQ_CTRLACK to match (§6.3.17:
    /// the change is in effect only once acknowledged). PRIQ_IRQEN stays clear (no PRI queue).
    /// [`Smmu::bring_up`] leaves them off; the daemon calls this once the GIC routes the lines.
    /// Returns the acknowledged value.
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`]; [`SmmuError::Timeout`] naming IRQ_CTRLACK.
    pub fn set_irqs(&mut self, eventq: bool, gerror: bool) -> Result<u32, SmmuError> {
        if self.running.is_none() {
            return Err(SmmuError::NotRunning);
        }
        let mut value = 0;
        if eventq {
            value |= IRQ_CTRL::EVENTQ_IRQEN::SET.value;
        }
        if gerror {
            value |= IRQ_CTRL::GERROR_IRQEN::SET.value;
        }
        self.regs.write32(Reg32::IrqCtrl, value);
        self.wait(Reg32::IrqCtrlAck, "IRQ_CTRLACK", |ack| ack == value)
    }

    /// Installs `ste` for `sid` (see the update rules in the stream table: the SMMU never sees
    /// a torn entry) followed by CMD_CFGI_STE + CMD_SYNC. What is written is
    /// [`Ste::for_smmu`]: fields this SMMU does not implement (STE.SHCFG without
    /// SMMU_IDR1.ATTR_TYPES_OVR) are cleared, as IHI 0070 §5 requires of RES0 fields.
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`], [`SmmuError::StreamIdOutOfRange`],
    /// [`SmmuError::OutOfMemory`] (new level-2 table), or a command error/timeout from the
    /// invalidation.
    pub fn install_ste(
        &mut self,
        mem: &mut impl DmaMemory,
        sid: StreamId,
        ste: &Ste,
    ) -> Result<(), SmmuError> {
        // Fields this SMMU does not implement are RES0 and must be written as zero.
        let mut ste = ste.for_smmu(&self.features);
        if !self.coherent {
            ste = ste.with_non_cacheable_walks();
        }
        let mem = &mut Dma::new(mem, self.coherent);
        let Self {
            regs,
            running,
            stats,
            poll_limit,
            ..
        } = self;
        let Running { strtab, cmdq, .. } = running.as_mut().ok_or(SmmuError::NotRunning)?;
        strtab.write_ste(mem, sid, &ste, |mem, sid| {
            cmdq.submit(
                regs,
                mem,
                [Command::CfgiSte { sid, leaf: false }.encode()],
                *poll_limit,
                stats,
            )
        })
    }

    /// The STE of `sid` as it is in memory.
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`], [`SmmuError::StreamIdOutOfRange`].
    pub fn read_ste(&self, mem: &impl DmaMemory, sid: StreamId) -> Result<Ste, SmmuError> {
        self.running
            .as_ref()
            .ok_or(SmmuError::NotRunning)?
            .strtab
            .read_ste(mem, sid)
    }

    /// Invalidates cached stage-2 translations of `vmid` for `[iova, iova + len)` with the
    /// fewest commands ([`crate::tlbi_s2_range`]) and one CMD_SYNC. `leaf`: only last-level
    /// entries changed. Nothing is sent for `len == 0`.
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`], or a command error/timeout.
    pub fn invalidate_s2(
        &mut self,
        mem: &mut impl DmaMemory,
        vmid: Vmid,
        iova: Iova,
        len: u64,
        leaf: bool,
    ) -> Result<(), SmmuError> {
        let mut plan = tlbi_s2_range(&self.features, vmid, iova, len, leaf).peekable();
        if plan.peek().is_none() {
            return Ok(());
        }
        self.submit_encoded(mem, plan.map(|c| c.encode()))
    }

    /// Invalidates every cached translation tagged with `vmid` (CMD_TLBI_S12_VMALL + CMD_SYNC).
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`], or a command error/timeout.
    pub fn invalidate_vmid(
        &mut self,
        mem: &mut impl DmaMemory,
        vmid: Vmid,
    ) -> Result<(), SmmuError> {
        self.submit(mem, &[Command::TlbiS12Vmall { vmid }])
    }

    /// Submits `cmds` followed by one CMD_SYNC and waits for completion.
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`]; [`SmmuError::Command`] naming the first command skipped
    /// because the SMMU rejected it (CERROR_ILL; the rest of the batch ran);
    /// [`SmmuError::CommandRetriesExhausted`] for a command whose fetch kept aborting
    /// (CERROR_ABT) or a CMD_SYNC that kept failing on ATC invalidation; [`SmmuError::Timeout`].
    /// After any of them, assume none of `cmds` took effect.
    pub fn submit(&mut self, mem: &mut impl DmaMemory, cmds: &[Command]) -> Result<(), SmmuError> {
        self.submit_encoded(mem, cmds.iter().map(Command::encode))
    }

    /// **For fault-injection tests**: submits one raw command (e.g. an illegal opcode) plus a
    /// CMD_SYNC, so that a test can prove the queue recovers from CERROR_ILL. A rejected
    /// command comes back as [`SmmuError::Command`] with `index: 0`; the queue keeps working.
    ///
    /// # Errors
    /// As [`Smmu::submit`].
    pub fn submit_raw_for_fault_injection(
        &mut self,
        mem: &mut impl DmaMemory,
        raw: [u64; 2],
    ) -> Result<(), SmmuError> {
        self.submit_encoded(mem, [raw])
    }

    fn submit_encoded(
        &mut self,
        mem: &mut impl DmaMemory,
        entries: impl IntoIterator<Item = [u64; 2]>,
    ) -> Result<(), SmmuError> {
        let run = self.running.as_mut().ok_or(SmmuError::NotRunning)?;
        run.cmdq.submit(
            &mut self.regs,
            &mut Dma::new(mem, self.coherent),
            entries,
            self.poll_limit,
            &mut self.stats,
        )
    }

    /// Pops every queued event record into `f` and accounts for overflow (see
    /// [`DrainReport`]; lost records are counted as a lower bound in [`Stats`]). On an SMMU
    /// that is not coherent ([`Smmu::is_coherent`]), each record is invalidated from the CPU
    /// caches ([`iommu_core::DmaMemory::sync_for_cpu`]) after EVENTQ_PROD is read and before
    /// the record is.
    ///
    /// # Errors
    /// [`SmmuError::NotRunning`].
    pub fn drain_events(
        &mut self,
        mem: &mut impl DmaMemory,
        f: impl FnMut(Event),
    ) -> Result<DrainReport, SmmuError> {
        let run = self.running.as_mut().ok_or(SmmuError::NotRunning)?;
        let mem = &mut Dma::new(mem, self.coherent);
        Ok(run.evtq.drain(&mut self.regs, mem, f, &mut self.stats))
    }

    /// Reads the global errors and acknowledges those that need nothing else
    /// ([`GerrorFlags::ACKED_BY_POLL`]: PRI queue and MSI aborts, service failure, ...).
    /// CMDQ_ERR is left to command submission (the failing command must be replaced first) and
    /// EVENTQ_ABT_ERR to [`Smmu::drain_events`] (it counts as an overflow).
    pub fn poll_gerror(&mut self) -> GerrorReport {
        let gerrorn = self.regs.read32(Reg32::Gerrorn);
        let active = GerrorFlags::active(self.regs.read32(Reg32::Gerror), gerrorn);
        let acked = active & GerrorFlags::ACKED_BY_POLL;
        if !acked.is_empty() {
            self.regs.write32(Reg32::Gerrorn, gerrorn ^ acked.bits());
        }
        if active.contains(GerrorFlags::SFM_ERR) {
            log::error!("smmuv3: service failure mode (GERROR.SFM_ERR)");
        }
        GerrorReport { active, acked }
    }
}

#[cfg(test)]
mod tests;
