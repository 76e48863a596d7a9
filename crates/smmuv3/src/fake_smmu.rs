//! An emulated SMMUv3 for host tests, modelled on what QEMU 10.0 does: CR0ACK follows CR0,
//! GBPA updates complete at once, commands are consumed synchronously inside the CMDQ_PROD write
//! (or lazily, a few per CMDQ_CONS read, to exercise waiting), unknown opcodes stop the queue
//! with CERROR_ILL until GERRORN is written, STEs are cached until CMD_CFGI_*, and a full event
//! queue raises GERROR.EVENTQ_ABT_ERR (or, in spec mode, toggles EVENTQ_PROD.OVFLG).

use crate::cmd::opcode;
use crate::mmio::{Reg32, Reg64, RegisterAccess};
use crate::queue::QueueGeometry;
use iommu_core::fake::FakeMemory;
use iommu_core::{DmaMemory, OutOfMemory, PhysAddr};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// QEMU 10.0 `virt` ID registers (IDR3 = HAD | XNX | RIL | BBML2).
pub(crate) const QEMU_IDR: [u32; 6] = [0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x74];

/// One step of what happened, in order: a command the SMMU consumed, or memory the driver gave
/// back. Lets a test prove that tables are freed only after the CMD_SYNC that made them unused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tick {
    /// The SMMU consumed a command with this opcode.
    Command(u8),
    /// The driver freed the allocation at this address.
    Free(PhysAddr),
}

/// DMA memory shared between the driver (as its `mem` argument) and the emulated SMMU, and the
/// timeline both append to.
#[derive(Clone, Default)]
pub struct SharedMem(
    pub(crate) Rc<RefCell<FakeMemory>>,
    pub(crate) Rc<RefCell<Vec<Tick>>>,
);

impl SharedMem {
    /// Everything that happened since the timeline was last cleared.
    pub(crate) fn timeline(&self) -> Vec<Tick> {
        self.1.borrow().clone()
    }

    /// Forgets the timeline so far.
    pub(crate) fn clear_timeline(&self) {
        self.1.borrow_mut().clear();
    }
}

impl DmaMemory for SharedMem {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        self.0.borrow_mut().alloc_zeroed(size, align)
    }
    fn free(&mut self, pa: PhysAddr, size: usize) {
        self.1.borrow_mut().push(Tick::Free(pa));
        self.0.borrow_mut().free(pa, size)
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.0.borrow().read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.0.borrow_mut().write_u64(pa, value)
    }
    fn publish(&mut self) {}
    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.0.borrow_mut().sync_for_device(pa, len)
    }
    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.0.borrow_mut().sync_for_cpu(pa, len)
    }
}

/// A register write, in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Write {
    R32(Reg32, u32),
    R64(Reg64, u64),
}

/// How the emulated SMMU signals event queue overflow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Overflow {
    /// GERROR.EVENTQ_ABT_ERR, as QEMU does.
    Qemu,
    /// EVENTQ_PROD.OVFLG, as IHI 0070 §7.2 specifies.
    Spec,
}

/// A command the emulated SMMU fails on purpose: the next `times` commands with `opcode` stop
/// the queue with CMDQ_CONS.ERR = `error` (IHI 0070 §7.1: 1 CERROR_ILL, 2 CERROR_ABT,
/// 3 CERROR_ATC_INV_SYNC) instead of being consumed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Inject {
    pub opcode: u8,
    pub error: u8,
    /// Commands with `opcode` let through before the failures start.
    pub after: u32,
    pub times: u32,
}

/// Register state and knobs of the emulated SMMU.
pub(crate) struct State {
    pub idr: [u32; 6],
    pub aidr: u32,
    pub cr0: u32,
    pub cr0ack: u32,
    pub cr1: u32,
    pub cr2: u32,
    pub gbpa: u32,
    pub irq_ctrl: u32,
    pub gerror: u32,
    pub gerrorn: u32,
    pub strtab_base: u64,
    pub strtab_cfg: u32,
    pub cmdq_base: u64,
    pub cmdq_prod: u32,
    pub cmdq_cons: u32,
    pub evtq_base: u64,
    pub evtq_prod: u32,
    pub evtq_cons: u32,
    /// Every register write.
    pub writes: Vec<Write>,
    /// Every command consumed (failed ones excluded).
    pub commands: Vec<[u64; 2]>,
    /// CR0ACK ignores CR0 writes.
    pub cr0ack_stuck: bool,
    /// Consume at most this many commands per CMDQ_CONS read instead of in the PROD write.
    pub lazy: Option<u32>,
    pub overflow: Overflow,
    /// Raise GERROR.SFM_ERR when EVENTQEN is set.
    pub sfm_on_eventqen: bool,
    /// Records dropped because the event queue was full.
    pub dropped_events: u32,
    /// Cached STEs (StreamID → words), filled on lookup, emptied by CFGI.
    pub ste_cache: HashMap<u32, [u64; 8]>,
    /// Commands to fail (see [`Inject`]).
    pub inject: Vec<Inject>,
    /// Stop consuming, without an error, at the first command with this opcode (a CMD_SYNC
    /// that never completes: the driver's wait times out).
    pub hold: Option<u8>,
    /// The SMMU snoops the CPU caches (IHI 0070 §6.3.1 IDR0.COHACC, by default). When false it
    /// reads commands, STEs and tables from memory as a non-coherent device does
    /// ([`FakeMemory::read_u64_device`]): what the CPU wrote but did not clean is stale. And it
    /// writes event records to memory only ([`FakeMemory::write_u64_device`]): the CPU reads
    /// its stale cached copy of a slot until it invalidates the line.
    pub coherent: bool,
}

impl State {
    fn new(idr: [u32; 6]) -> Self {
        Self {
            idr,
            aidr: 1,
            cr0: 0,
            cr0ack: 0,
            cr1: 0,
            cr2: 0,
            gbpa: 0x1000, // QEMU's reset value: bypass, SHCFG = incoming
            irq_ctrl: 0,
            gerror: 0,
            gerrorn: 0,
            strtab_base: 0,
            strtab_cfg: 0,
            cmdq_base: 19,
            cmdq_prod: 0,
            cmdq_cons: 0,
            evtq_base: 19,
            evtq_prod: 0,
            evtq_cons: 0,
            writes: Vec::new(),
            commands: Vec::new(),
            cr0ack_stuck: false,
            lazy: None,
            overflow: Overflow::Qemu,
            sfm_on_eventqen: false,
            dropped_events: 0,
            ste_cache: HashMap::new(),
            inject: Vec::new(),
            hold: None,
            coherent: idr[0] & 1 << 4 != 0,
        }
    }

    /// A word of memory as this SMMU reads it (through the caches only when coherent).
    fn read(&self, mem: &FakeMemory, pa: u64) -> u64 {
        if self.coherent {
            mem.read_u64(PhysAddr(pa))
        } else {
            mem.read_u64_device(PhysAddr(pa))
        }
    }

    /// A word of memory as this SMMU writes it (into the CPU caches only when coherent).
    fn write(&self, mem: &mut FakeMemory, pa: u64, value: u64) {
        if self.coherent {
            mem.write_u64_snooping(PhysAddr(pa), value);
        } else {
            mem.write_u64_device(PhysAddr(pa), value);
        }
    }

    fn base(reg: u64) -> u64 {
        reg & 0x000f_ffff_ffff_ffe0
    }

    fn cmdq_geom(&self) -> QueueGeometry {
        QueueGeometry::new((self.cmdq_base & 0x1f) as u8)
    }

    fn evtq_geom(&self) -> QueueGeometry {
        QueueGeometry::new((self.evtq_base & 0x1f) as u8)
    }

    fn illegal(&self, op: u8) -> bool {
        let s1p = self.idr[0] & 2 != 0;
        let s2p = self.idr[0] & 1 != 0;
        match op {
            opcode::PREFETCH_CONFIG
            | opcode::PREFETCH_ADDR
            | opcode::CFGI_STE
            | opcode::CFGI_STE_RANGE => false,
            opcode::CFGI_CD | opcode::CFGI_CD_ALL | opcode::TLBI_NSNH_ALL | opcode::SYNC => false,
            opcode::TLBI_NH_ALL
            | opcode::TLBI_NH_ASID
            | opcode::TLBI_NH_VA
            | opcode::TLBI_NH_VAA => !s1p,
            opcode::TLBI_S12_VMALL | opcode::TLBI_S2_IPA => !s2p,
            opcode::TLBI_EL3_ALL
            | opcode::TLBI_EL3_VA
            | opcode::TLBI_EL2_ALL
            | opcode::TLBI_EL2_ASID => false,
            opcode::TLBI_EL2_VA | opcode::TLBI_EL2_VAA | opcode::ATC_INV | opcode::PRI_RESP => {
                false
            }
            opcode::RESUME | opcode::STALL_TERM => false,
            _ => true,
        }
    }

    /// Consumes up to `budget` commands, like QEMU's smmuv3_cmdq_consume.
    fn consume(&mut self, mem: &FakeMemory, timeline: &RefCell<Vec<Tick>>, budget: u32) {
        if self.cr0 & 8 == 0 {
            return;
        }
        let q = self.cmdq_geom();
        for _ in 0..budget {
            if q.is_empty(self.cmdq_prod, self.cmdq_cons) || (self.gerror ^ self.gerrorn) & 1 != 0 {
                return;
            }
            let slot = Self::base(self.cmdq_base) + u64::from(q.index(self.cmdq_cons)) * 16;
            let cmd = [self.read(mem, slot), self.read(mem, slot + 8)];
            let op = cmd[0] as u8;
            if self.hold == Some(op) {
                return;
            }
            if let Some(inj) = self
                .inject
                .iter_mut()
                .find(|i| i.opcode == op && i.times > 0)
            {
                if inj.after > 0 {
                    inj.after -= 1;
                } else {
                    inj.times -= 1;
                    self.cmdq_cons = (self.cmdq_cons & !(0x7f << 24)) | u32::from(inj.error) << 24;
                    self.gerror ^= 1;
                    return;
                }
            }
            if self.illegal(op) {
                self.cmdq_cons = (self.cmdq_cons & !(0x7f << 24)) | 1 << 24; // CERROR_ILL
                self.gerror ^= 1;
                return;
            }
            match op {
                opcode::CFGI_STE => {
                    self.ste_cache.remove(&((cmd[0] >> 32) as u32));
                }
                opcode::CFGI_STE_RANGE => {
                    let range = (cmd[1] & 0x1f) as u32;
                    let mask = if range >= 31 {
                        u32::MAX
                    } else {
                        (2u32 << range) - 1
                    };
                    let start = ((cmd[0] >> 32) as u32) & !mask;
                    self.ste_cache.retain(|sid, _| *sid & !mask != start);
                }
                _ => {}
            }
            self.commands.push(cmd);
            timeline.borrow_mut().push(Tick::Command(op));
            let next = q.advance(self.cmdq_cons, 1);
            self.cmdq_cons = (self.cmdq_cons & !q.ptr_mask()) | next;
        }
    }

    /// Finds the STE of `sid` as QEMU's smmu_find_ste does: `Err(event type)` on failure.
    fn find_ste(&self, mem: &FakeMemory, sid: u32) -> Result<[u64; 8], u8> {
        let log2size = self.strtab_cfg & 0x3f;
        if u64::from(sid) >> log2size.min(self.idr[1] & 0x3f) != 0 {
            return Err(0x02); // C_BAD_STREAMID
        }
        let base = self.strtab_base & 0x000f_ffff_ffff_ffc0;
        let addr = if (self.strtab_cfg >> 16) & 3 == 1 {
            let split = (self.strtab_cfg >> 6) & 0x1f;
            let l1std = self.read(mem, base + u64::from(sid >> split) * 8);
            let span = l1std & 0x1f;
            if span == 0 {
                return Err(0x02);
            }
            if u64::from(sid & ((1 << split) - 1)) >= 1 << (span - 1) {
                return Err(0x04);
            }
            (l1std & 0x000f_ffff_ffff_ffc0) + u64::from(sid & ((1 << split) - 1)) * 64
        } else {
            base + u64::from(sid) * 64
        };
        let mut ste = [0; 8];
        for (i, w) in ste.iter_mut().enumerate() {
            *w = self.read(mem, addr + 8 * i as u64);
        }
        if ste[0] & 1 == 0 {
            return Err(0x04); // C_BAD_STE
        }
        Ok(ste)
    }
}

/// The emulated register frame; clones share the state.
#[derive(Clone)]
pub struct FakeSmmu {
    pub(crate) st: Rc<RefCell<State>>,
    pub(crate) mem: SharedMem,
}

impl FakeSmmu {
    pub(crate) fn new(idr: [u32; 6]) -> Self {
        Self {
            st: Rc::new(RefCell::new(State::new(idr))),
            mem: SharedMem::default(),
        }
    }

    pub(crate) fn qemu() -> Self {
        Self::new(QEMU_IDR)
    }

    /// The STE the SMMU uses for `sid`: the cached one, else fetched (and cached if valid).
    pub(crate) fn config(&self, sid: u32) -> Result<[u64; 8], u8> {
        let mut st = self.st.borrow_mut();
        if let Some(ste) = st.ste_cache.get(&sid) {
            return Ok(*ste);
        }
        let ste = st.find_ste(&self.mem.0.borrow(), sid)?;
        st.ste_cache.insert(sid, ste);
        Ok(ste)
    }

    /// Where the SMMU would send a DMA of `sid` to `iova`: the STE it uses, then a stage-2
    /// walk (VMSAv8-64, 4 KiB granule, start level from STE.S2SL0, IHI 0070 §5.2) over memory
    /// as this SMMU reads it. `None` for a fault (no TLB is modelled).
    pub fn translate(&self, sid: u32, iova: u64) -> Option<u64> {
        let ste = self.config(sid).ok()?;
        let st = self.st.borrow();
        let mem = self.mem.0.borrow();
        let mut table = ste[3] & 0x000f_ffff_ffff_f000;
        let mut level = 2 - ((ste[2] >> 38) & 3);
        loop {
            let shift = 12 + 9 * (3 - level);
            let desc = st.read(&mem, table + ((iova >> shift) & 0x1ff) * 8);
            let out = desc & 0x0000_ffff_ffff_f000;
            match (desc & 1, desc & 2 != 0, level) {
                (0, _, _) => return None,
                (_, true, 0..=2) => {
                    table = out;
                    level += 1;
                }
                (_, true, _) | (_, false, 1 | 2) => {
                    return Some(out + (iova & ((1 << shift) - 1)));
                }
                _ => return None,
            }
        }
    }

    /// The SMMU records an event (QEMU's smmuv3_record_event + smmuv3_write_eventq).
    pub(crate) fn record_event(&self, raw: [u64; 4]) {
        let mut st = self.st.borrow_mut();
        if st.cr0 & 4 == 0 {
            return;
        }
        let q = st.evtq_geom();
        if q.is_full(st.evtq_prod, st.evtq_cons) {
            st.dropped_events += 1;
            match st.overflow {
                Overflow::Qemu => {
                    if (st.gerror ^ st.gerrorn) & 4 == 0 {
                        st.gerror ^= 4;
                    }
                }
                Overflow::Spec => {
                    let ovflg = st.evtq_prod >> 31;
                    let ovack = st.evtq_cons >> 31;
                    if ovflg == ovack {
                        st.evtq_prod ^= 1 << 31;
                    }
                }
            }
            return;
        }
        let slot = State::base(st.evtq_base) + u64::from(q.index(st.evtq_prod)) * 32;
        let mut mem = self.mem.0.borrow_mut();
        for (i, w) in raw.iter().enumerate() {
            st.write(&mut mem, slot + 8 * i as u64, *w);
        }
        let next = q.advance(st.evtq_prod, 1);
        st.evtq_prod = (st.evtq_prod & (1 << 31)) | next;
    }

    /// Fails the next `times` commands with `opcode` with CMDQ_CONS.ERR = `error`.
    pub fn inject(&self, opcode: u8, error: u8, times: u32) {
        self.inject_after(opcode, error, 0, times);
    }

    /// Cancels every injected command failure still pending.
    pub fn clear_injections(&self) {
        self.st.borrow_mut().inject.clear();
    }

    /// Lets `after` commands with `opcode` through, then fails the next `times` of them
    /// (`error` as CMDQ_CONS.ERR: 1 CERROR_ILL, 2 CERROR_ABT, 3 CERROR_ATC_INV_SYNC).
    pub fn inject_after(&self, opcode: u8, error: u8, after: u32, times: u32) {
        self.st.borrow_mut().inject.push(Inject {
            opcode,
            error,
            after,
            times,
        });
    }

    /// Register writes so far, for ordering assertions.
    pub(crate) fn writes(&self) -> Vec<Write> {
        self.st.borrow().writes.clone()
    }
}

impl RegisterAccess for FakeSmmu {
    fn read32(&self, reg: Reg32) -> u32 {
        let mut st = self.st.borrow_mut();
        match reg {
            Reg32::Idr0 => st.idr[0],
            Reg32::Idr1 => st.idr[1],
            Reg32::Idr2 => st.idr[2],
            Reg32::Idr3 => st.idr[3],
            Reg32::Idr4 => st.idr[4],
            Reg32::Idr5 => st.idr[5],
            Reg32::Iidr => 0,
            Reg32::Aidr => st.aidr,
            Reg32::Cr0 => st.cr0,
            Reg32::Cr0Ack => st.cr0ack,
            Reg32::Cr1 => st.cr1,
            Reg32::Cr2 => st.cr2,
            Reg32::Statusr => 0,
            Reg32::Gbpa => st.gbpa,
            Reg32::IrqCtrl | Reg32::IrqCtrlAck => st.irq_ctrl,
            Reg32::Gerror => st.gerror,
            Reg32::Gerrorn => st.gerrorn,
            Reg32::StrtabBaseCfg => st.strtab_cfg,
            Reg32::CmdqProd => st.cmdq_prod,
            Reg32::CmdqCons => {
                if let Some(n) = st.lazy {
                    st.consume(&self.mem.0.borrow(), &self.mem.1, n);
                }
                st.cmdq_cons
            }
            Reg32::EventqProd => st.evtq_prod,
            Reg32::EventqCons => st.evtq_cons,
        }
    }

    fn write32(&mut self, reg: Reg32, value: u32) {
        assert!(
            reg.is_writable(),
            "driver wrote read-only register {}",
            reg.name()
        );
        let mut st = self.st.borrow_mut();
        st.writes.push(Write::R32(reg, value));
        let mem = self.mem.0.borrow();
        let eager = if st.lazy.is_some() { 0 } else { u32::MAX };
        match reg {
            Reg32::Cr0 => {
                st.cr0 = value;
                if !st.cr0ack_stuck {
                    st.cr0ack = value & !0xFFFF_FC20;
                }
                if st.sfm_on_eventqen && value & 4 != 0 {
                    st.gerror ^= 1 << 8;
                }
                st.consume(&mem, &self.mem.1, eager);
            }
            Reg32::Cr1 => st.cr1 = value,
            Reg32::Cr2 => st.cr2 = value,
            Reg32::Gbpa => {
                if value & (1 << 31) != 0 {
                    st.gbpa = value & !(1 << 31);
                }
            }
            Reg32::IrqCtrl => st.irq_ctrl = value,
            Reg32::Gerrorn => {
                st.gerrorn = value;
                st.consume(&mem, &self.mem.1, eager);
            }
            Reg32::StrtabBaseCfg => st.strtab_cfg = value,
            Reg32::CmdqProd => {
                st.cmdq_prod = value;
                st.consume(&mem, &self.mem.1, eager);
            }
            Reg32::CmdqCons => st.cmdq_cons = value,
            Reg32::EventqProd => st.evtq_prod = value,
            Reg32::EventqCons => st.evtq_cons = value,
            _ => unreachable!(),
        }
    }

    fn read64(&self, reg: Reg64) -> u64 {
        let st = self.st.borrow();
        match reg {
            Reg64::StrtabBase => st.strtab_base,
            Reg64::CmdqBase => st.cmdq_base,
            Reg64::EventqBase => st.evtq_base,
        }
    }

    fn write64(&mut self, reg: Reg64, value: u64) {
        let mut st = self.st.borrow_mut();
        st.writes.push(Write::R64(reg, value));
        match reg {
            Reg64::StrtabBase => st.strtab_base = value,
            Reg64::CmdqBase => st.cmdq_base = value,
            Reg64::EventqBase => st.evtq_base = value,
        }
    }
}

/// An [`crate::Smmuv3Backend`] over an emulated SMMU with QEMU 10.0's ID registers (2-level
/// stream table, coherent), brought up and ready: for benchmarks and other crates' host tests
/// (feature `fake`).
///
/// # Errors
/// When bring-up or the backend refuses (a bug in the emulation).
pub fn qemu_backend() -> Result<crate::Smmuv3Backend<SharedMem, FakeSmmu>, crate::BackendError> {
    qemu_rig().map(|(backend, _)| backend)
}

/// [`qemu_backend`] and a handle on its emulated SMMU, through which a test injects command
/// failures ([`FakeSmmu::inject_after`]) and asks where a DMA lands ([`FakeSmmu::translate`]).
///
/// # Errors
/// As [`qemu_backend`].
#[allow(clippy::type_complexity)]
pub fn qemu_rig(
) -> Result<(crate::Smmuv3Backend<SharedMem, FakeSmmu>, FakeSmmu), crate::BackendError> {
    let fake = FakeSmmu::qemu();
    let handle = fake.clone();
    let mut mem = fake.mem.clone();
    let mut smmu = crate::Smmu::with_registers(fake);
    let cfg = crate::BringUpConfig {
        stream_table: crate::StreamTableFormat::TwoLevel,
        poll_limit: 1000,
        coherent: true,
        ..crate::BringUpConfig::default()
    };
    smmu.bring_up(&mut mem, cfg)?;
    Ok((crate::Smmuv3Backend::new(smmu, mem)?, handle))
}
