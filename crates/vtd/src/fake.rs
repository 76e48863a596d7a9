//! An emulated remapping unit for host tests, modelled on QEMU 10.0's `intel-iommu` (see
//! `qemu-q35-vtd-facts.md`):
//!
//! * CAP/ECAP as QEMU presents them (`aw-bits=48,caching-mode=on` by default);
//! * GCMD acts on GSTS ^ written value for TE, QIE and IRE (so a write of SRTP alone turns
//!   translation off), SRTP latches RTADDR and sets RTPS (and, as the spec allows and unlike
//!   QEMU, keeps every cached entry: software must invalidate); GCMD reads as 0; QIE = 0 is
//!   refused while descriptors are pending (IQH != IQT), as QEMU does; [`FakeUnit::stick`]
//!   makes status bits that never acknowledge;
//! * register-based invalidation completes at once, and is **ignored** once queued
//!   invalidation is on (ICC / IVT then stay set);
//! * the queue is processed inside the IQT write; a bad descriptor (as QEMU 10.0 judges it:
//!   also a wait descriptor with neither SW nor IF) sets FSTS.IQE and stops the queue at it
//!   until IQE is cleared; ITE and ICE can be injected;
//! * the context cache and the IOTLB cache what walks found, per source-id and per (domain,
//!   page), and with CAP.CM = 1 **not-present** results too, so a missing invalidation shows;
//! * table walks read memory as a non-snooping device when ECAP.C = 0
//!   ([`FakeMemory::read_u64_device`]): an unflushed table write is invisible to them;
//! * faults are recorded round robin into CAP.NFR + 1 registers, compressed per source-id
//!   while one is pending, dropped with FSTS.PFO when the next register is full; a fault event
//!   counts as an interrupt when FECTL.IM = 0, else sets FECTL.IP. A permission fault that hits
//!   a cached translation is blocked but not recorded (as QEMU).

use crate::context::{root_entry_addr, ContextEntry, ADDR_MASK, ROOT_P};
use crate::mmio::{Reg32, Reg64, RegisterAccess};
use crate::second_level::{decode, SlEntry, PAGE_LEVEL, SL_PS};
use iommu_core::fake::FakeMemory;
use iommu_core::{Access, Bdf, DmaMemory, Iova, OutOfMemory, PhysAddr};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// QEMU 10.0.2, `aw-bits=48,caching-mode=on`.
pub const QEMU_CAP: u64 = 0x00d2_008c_222f_0686;
/// QEMU 10.0.2 ECAP (QI, IR, PT; IRO = 0xf; C = 0).
pub const QEMU_ECAP: u64 = 0xf0_0f4a;

/// DMA memory shared between the driver (its `mem` argument) and the emulated unit.
#[derive(Clone, Default)]
pub struct SharedMem(pub Rc<RefCell<FakeMemory>>);

impl DmaMemory for SharedMem {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        self.0.borrow_mut().alloc_zeroed(size, align)
    }
    fn free(&mut self, pa: PhysAddr, size: usize) {
        self.0.borrow_mut().free(pa, size)
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.0.borrow().read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.0.borrow_mut().write_u64(pa, value)
    }
    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.0.borrow_mut().sync_for_device(pa, len)
    }
    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.0.borrow_mut().sync_for_cpu(pa, len)
    }
}

/// A queue error the test asks the unit to raise.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Inject {
    /// Treat the next descriptor as invalid (FSTS.IQE).
    Iqe,
    /// Time out at the next wait descriptor (FSTS.ITE); it is discarded.
    Ite,
    /// Report an invalid completion (FSTS.ICE) at the next wait descriptor, which completes.
    Ice,
}

/// What a DMA did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DmaOutcome {
    /// Every byte reached memory; the first byte's physical address.
    Landed(PhysAddr),
    /// Blocked at this address (the first page that faulted).
    Blocked {
        /// Where.
        at: Iova,
        /// The fault reason code.
        reason: u8,
        /// Whether a fault record was written (compression, overflow and cached permission
        /// faults drop it).
        recorded: bool,
    },
}

/// A cached translation of one 4 KiB page, or (caching mode) a cached fault.
#[derive(Clone, Copy, Debug)]
enum Cached {
    Page { pa: u64, access: Access },
    Fault(u8),
}

/// The emulated unit.
pub struct FakeUnit {
    mem: SharedMem,
    cap: u64,
    ecap: u64,
    gsts: u32,
    rtaddr: u64,
    root: Option<u64>,
    ccmd: u64,
    iva: u64,
    iotlb_reg: u64,
    fsts: u32,
    fectl: u32,
    fedata: u32,
    feaddr: u32,
    feuaddr: u32,
    iqa: u64,
    iqh: u64,
    iqt: u64,
    ics: u32,
    frcd: Vec<(u64, u64)>,
    next_frcd: usize,
    context_cache: HashMap<u16, Option<ContextEntry>>,
    iotlb: HashMap<(u16, u64), Cached>,
    inject: Option<Inject>,
    /// Further times `inject` is raised after the next one.
    inject_again: u32,
    /// GSTS bits that never change (a unit that does not acknowledge those commands).
    stuck: u32,
    /// Fault events delivered (FECTL.IM = 0).
    pub interrupts: u32,
    /// Every GCMD value written, in order.
    pub gcmd_writes: Vec<u32>,
    /// Every queued descriptor processed, in order.
    pub processed: Vec<[u64; 2]>,
}

impl FakeUnit {
    /// A unit with QEMU's registers over `mem`.
    pub fn qemu(mem: SharedMem) -> Self {
        Self::with_caps(mem, QEMU_CAP, QEMU_ECAP)
    }

    /// A unit with the given CAP/ECAP.
    pub fn with_caps(mem: SharedMem, cap: u64, ecap: u64) -> Self {
        let nfr = ((cap >> 40) & 0xff) as usize + 1;
        Self {
            mem,
            cap,
            ecap,
            gsts: 0,
            rtaddr: 0,
            root: None,
            ccmd: 0,
            iva: 0,
            iotlb_reg: 0,
            fsts: 0,
            fectl: 1 << 31,
            fedata: 0,
            feaddr: 0,
            feuaddr: 0,
            iqa: 0,
            iqh: 0,
            iqt: 0,
            ics: 0,
            frcd: vec![(0, 0); nfr],
            next_frcd: 0,
            context_cache: HashMap::new(),
            iotlb: HashMap::new(),
            inject: None,
            inject_again: 0,
            stuck: 0,
            interrupts: 0,
            gcmd_writes: Vec::new(),
            processed: Vec::new(),
        }
    }

    /// Makes the GSTS bits in `mask` never change again: the commands they report on (TE, SRTP,
    /// QIE, ... at the same bit in GCMD) are ignored.
    pub fn stick(&mut self, mask: u32) {
        self.stuck = mask;
    }

    /// Raises `inject` at the next opportunity.
    pub fn inject(&mut self, inject: Inject) {
        self.inject_times(inject, 1);
    }

    /// Raises `inject` at each of the next `times` opportunities (0: cancels).
    pub fn inject_times(&mut self, inject: Inject, times: u32) {
        self.inject = (times > 0).then_some(inject);
        self.inject_again = times.saturating_sub(1);
    }

    /// The injected error was raised once.
    fn injected(&mut self) {
        if self.inject_again > 0 {
            self.inject_again -= 1;
        } else {
            self.inject = None;
        }
    }

    /// Entries in the IOTLB.
    pub fn iotlb_entries(&self) -> usize {
        self.iotlb.len()
    }

    fn caching_mode(&self) -> bool {
        self.cap & (1 << 7) != 0
    }

    fn coherent(&self) -> bool {
        self.ecap & 1 != 0
    }

    /// A table word as the walker reads it.
    fn walk_read(&self, pa: u64) -> u64 {
        let mem = self.mem.0.borrow();
        if self.coherent() {
            mem.read_u64(PhysAddr(pa))
        } else {
            mem.read_u64_device(PhysAddr(pa))
        }
    }

    fn qi_on(&self) -> bool {
        self.gsts & (1 << 26) != 0
    }

    /// A DMA of `len` bytes at `addr` by `source`: translated page by page as QEMU does.
    pub fn dma(&mut self, source: Bdf, addr: Iova, len: u64, write: bool) -> DmaOutcome {
        let mut first = None;
        let end = addr.0 + len.max(1);
        let mut cur = addr.0;
        while cur < end {
            match self.translate(source.rid(), cur, write) {
                Ok(pa) => {
                    first.get_or_insert(pa);
                }
                Err((reason, record)) => {
                    let recorded = record && self.record(source.rid(), cur, write, reason);
                    return DmaOutcome::Blocked {
                        at: Iova(cur),
                        reason,
                        recorded,
                    };
                }
            }
            cur = (cur & !0xfff) + 0x1000;
        }
        DmaOutcome::Landed(first.unwrap_or(PhysAddr(0)))
    }

    /// Translates one address: `Ok(pa)` or `Err((reason, record?))`.
    fn translate(&mut self, sid: u16, addr: u64, write: bool) -> Result<PhysAddr, (u8, bool)> {
        if self.gsts & (1 << 31) == 0 {
            return Ok(PhysAddr(addr));
        }
        let ctx = match self.context_cache.get(&sid) {
            Some(c) => *c,
            None => {
                let c = self.walk_context(sid)?;
                if c.is_some() || self.caching_mode() {
                    self.context_cache.insert(sid, c);
                }
                c
            }
        };
        let Some(ctx) = ctx else {
            return Err((0x2, true));
        };
        let sagaw = (self.cap >> 8) & 0x1f;
        if sagaw & (1 << ctx.aw.aw()) == 0 {
            return Err((0x3, true));
        }
        let mgaw = ((self.cap >> 16) & 0x3f) + 1;
        let width = u64::from(ctx.aw.bits()).min(mgaw);
        if addr >> width != 0 {
            return Err((0x4, true));
        }
        let did = ctx.did.0;
        let page = addr >> 12;
        let need = if write { Access::WRITE } else { Access::READ };
        let perm_reason = if write { 0x5 } else { 0x6 };
        if let Some(c) = self.iotlb.get(&(did, page)) {
            return match *c {
                Cached::Page { pa, access } if access.contains(need) => {
                    Ok(PhysAddr(pa | (addr & 0xfff)))
                }
                // A cached translation without the permission: blocked, not recorded (QEMU).
                Cached::Page { .. } => Err((perm_reason, false)),
                Cached::Fault(r) => Err((r, true)),
            };
        }
        match self.walk_second_level(ctx, addr) {
            Ok((pa, access)) => {
                self.iotlb.insert(
                    (did, page),
                    Cached::Page {
                        pa: pa & !0xfff,
                        access,
                    },
                );
                if access.contains(need) {
                    Ok(PhysAddr(pa))
                } else {
                    Err((perm_reason, true))
                }
            }
            Err(None) => {
                if self.caching_mode() {
                    self.iotlb.insert((did, page), Cached::Fault(perm_reason));
                }
                Err((perm_reason, true))
            }
            Err(Some(r)) => Err((r, true)),
        }
    }

    fn walk_context(&self, sid: u16) -> Result<Option<ContextEntry>, (u8, bool)> {
        let Some(root) = self.root else {
            return Err((0x8, true));
        };
        let bus = (sid >> 8) as u8;
        let re = self.walk_read(root_entry_addr(PhysAddr(root), bus).0);
        if re & ROOT_P == 0 {
            return Err((0x1, true));
        }
        let ct = re & ADDR_MASK;
        let at = ct + u64::from(sid & 0xff) * 16;
        let lo = self.walk_read(at);
        let hi = self.walk_read(at + 8);
        match ContextEntry::decode([lo, hi]) {
            Ok(c) => Ok(Some(c)),
            Err(crate::context::ContextDecode::NotPresent) => Ok(None),
            Err(_) => Err((0x3, true)),
        }
    }

    /// `Ok((pa, access))`, `Err(None)` for a not-present entry, `Err(Some(reason))` else.
    fn walk_second_level(&self, ctx: ContextEntry, addr: u64) -> Result<(u64, Access), Option<u8>> {
        let levels = ctx.aw.levels();
        let mut table = ctx.slptptr.0;
        let mut access = Access::RW;
        let sllps = (self.cap >> 34) & 0xf;
        for level in (4 - levels)..=PAGE_LEVEL {
            let shift = 12 + 9 * u32::from(PAGE_LEVEL - level);
            let raw = self.walk_read(table + ((addr >> shift) & 511) * 8);
            // Superpage where SLLPS has none: reserved bit set (reason 0xC).
            if (level == 1 || level == 2) && raw & SL_PS != 0 && raw & 3 != 0 {
                let bit = if level == 2 { 1 } else { 2 };
                if sllps & bit == 0 {
                    return Err(Some(0xC));
                }
            }
            match decode(level, raw) {
                SlEntry::NotPresent => return Err(None),
                SlEntry::Table { next } => {
                    access &= decode_perm(raw);
                    table = next.0;
                }
                SlEntry::Leaf { pa, access: a } => {
                    access &= a;
                    if access.is_empty() {
                        return Err(None);
                    }
                    return Ok((pa.0 | (addr & ((1 << shift) - 1)), access));
                }
            }
        }
        Err(None)
    }

    /// Records a fault as QEMU does; returns whether a record was written.
    fn record(&mut self, sid: u16, addr: u64, write: bool, reason: u8) -> bool {
        if self.fsts & 1 != 0 {
            return false; // PFO set: dropped.
        }
        if self
            .frcd
            .iter()
            .any(|&(_, hi)| hi >> 63 != 0 && hi as u16 == sid)
        {
            return false; // compressed
        }
        let n = self.next_frcd;
        if self.frcd[n].1 >> 63 != 0 {
            self.fsts |= 1; // PFO
            self.event();
            return false;
        }
        let t = if write { 0 } else { 1u64 << 62 };
        self.frcd[n] = (
            addr & !0xfff,
            (1 << 63) | t | (u64::from(reason) << 32) | u64::from(sid),
        );
        self.next_frcd = (n + 1) % self.frcd.len();
        self.event();
        true
    }

    fn event(&mut self) {
        if self.fectl & (1 << 31) == 0 {
            self.interrupts += 1;
        } else {
            self.fectl |= 1 << 30;
        }
    }

    fn fsts_value(&self) -> u32 {
        let mut v = self.fsts & !(0xff02);
        if let Some(i) = self.frcd.iter().position(|&(_, hi)| hi >> 63 != 0) {
            v |= 2 | ((i as u32) << 8);
        }
        v
    }

    fn gcmd(&mut self, value: u32) {
        self.gcmd_writes.push(value);
        // A command whose status bit is stuck is not carried out at all.
        let changed = (self.gsts ^ value) & !self.stuck;
        if changed & (1 << 31) != 0 {
            self.gsts ^= 1 << 31;
        }
        if value & (1 << 30) != 0 && self.stuck & (1 << 30) == 0 {
            self.root = Some(self.rtaddr & ADDR_MASK);
            self.gsts |= 1 << 30;
        }
        if changed & (1 << 26) != 0 {
            if value & (1 << 26) != 0 {
                self.gsts |= 1 << 26;
                self.process_queue();
            } else if self.iqh == self.iqt {
                self.gsts &= !(1 << 26);
                self.iqh = 0;
            }
            // Else (QEMU: `vtd_queued_inv_disable_check`): a queue with descriptors still
            // pending, e.g. stopped at an error, stays on.
        }
        if changed & (1 << 25) != 0 {
            self.gsts ^= 1 << 25;
        }
    }

    fn process_queue(&mut self) {
        if !self.qi_on() || self.fsts & ((1 << 4) | (1 << 6)) != 0 {
            return;
        }
        let base = self.iqa & ADDR_MASK;
        let entries = 256u64 << (self.iqa & 7);
        while self.iqh != self.iqt {
            let index = (self.iqh >> 4) % entries;
            let at = PhysAddr(base + index * 16);
            let (lo, hi) = {
                let mem = self.mem.0.borrow();
                (mem.read_u64(at), mem.read_u64(PhysAddr(at.0 + 8)))
            };
            if self.inject == Some(Inject::Iqe) {
                self.injected();
                self.fsts |= 1 << 4;
                self.event();
                return;
            }
            if !self.execute(lo, hi) {
                self.fsts |= 1 << 4;
                self.event();
                return;
            }
            self.processed.push([lo, hi]);
            self.iqh = ((index + 1) % entries) << 4;
            if lo & 0xf == 5 && self.fsts & (1 << 6) != 0 {
                return; // ITE: stop after the discarded wait descriptor.
            }
        }
    }

    /// Executes one descriptor; false when it is invalid.
    fn execute(&mut self, lo: u64, hi: u64) -> bool {
        let g = (lo >> 4) & 3;
        let did = (lo >> 16) as u16;
        match lo & 0xf {
            1 => {
                let sid = (lo >> 32) as u16;
                match g {
                    1 => self.context_cache.clear(),
                    2 => self
                        .context_cache
                        .retain(|_, c| c.is_none_or(|c| c.did.0 != did)),
                    3 => {
                        self.context_cache.remove(&sid);
                    }
                    _ => return false,
                }
                hi == 0
            }
            2 => {
                match g {
                    1 => self.iotlb.clear(),
                    2 => self.iotlb.retain(|&(d, _), _| d != did),
                    3 => {
                        let am = hi & 0x3f;
                        let mamv = (self.cap >> 48) & 0x3f;
                        if self.cap & (1 << 39) == 0 || am > mamv {
                            return false;
                        }
                        let first = (hi >> 12) & !((1 << am) - 1);
                        let last = first + (1 << am);
                        self.iotlb
                            .retain(|&(d, p), _| d != did || p < first || p >= last);
                    }
                    _ => return false,
                }
                true
            }
            3 | 4 => true,
            5 => {
                if lo & (0b11 << 4) == 0 {
                    return false; // Neither SW nor IF: QEMU 10.0 refuses it ("unknown type").
                }
                match self.inject {
                    Some(Inject::Ite) => {
                        self.injected();
                        self.fsts |= 1 << 6;
                        self.event();
                        return true;
                    }
                    Some(Inject::Ice) => {
                        self.injected();
                        self.fsts |= 1 << 5;
                    }
                    _ => {}
                }
                if lo & (1 << 5) != 0 {
                    let at = PhysAddr(hi & !7);
                    let mut mem = self.mem.0.borrow_mut();
                    let old = mem.read_u64(at);
                    let new = (old & !0xffff_ffff) | (lo >> 32);
                    mem.write_u64_snooping(at, new);
                }
                if lo & (1 << 4) != 0 {
                    self.ics |= 1;
                }
                true
            }
            _ => false,
        }
    }
}

fn decode_perm(raw: u64) -> Access {
    let mut a = Access::empty();
    if raw & 1 != 0 {
        a |= Access::READ;
    }
    if raw & 2 != 0 {
        a |= Access::WRITE;
    }
    a
}

impl RegisterAccess for FakeUnit {
    fn read32(&self, reg: Reg32) -> u32 {
        match reg {
            Reg32::Ver => 0x10,
            Reg32::Gcmd => 0,
            Reg32::Gsts => self.gsts,
            Reg32::Fsts => self.fsts_value(),
            Reg32::Fectl => self.fectl,
            Reg32::Fedata => self.fedata,
            Reg32::Feaddr => self.feaddr,
            Reg32::Feuaddr => self.feuaddr,
            Reg32::Ics => self.ics,
        }
    }

    fn write32(&mut self, reg: Reg32, value: u32) {
        match reg {
            Reg32::Gcmd => self.gcmd(value),
            Reg32::Fsts => {
                self.fsts &= !(value & 0x71);
                if self.fsts & 0x71 & !1 == 0 {
                    self.process_queue();
                }
            }
            Reg32::Fectl => {
                self.fectl = (self.fectl & (1 << 30)) | (value & (1 << 31));
                if value & (1 << 31) == 0 && self.fectl & (1 << 30) != 0 {
                    self.fectl &= !(1 << 30);
                    self.interrupts += 1;
                }
            }
            Reg32::Fedata => self.fedata = value,
            Reg32::Feaddr => self.feaddr = value,
            Reg32::Feuaddr => self.feuaddr = value,
            Reg32::Ics => self.ics &= !(value & 1),
            Reg32::Ver | Reg32::Gsts => {}
        }
    }

    fn read64(&self, reg: Reg64) -> u64 {
        match reg {
            Reg64::Cap => self.cap,
            Reg64::Ecap => self.ecap,
            Reg64::Rtaddr => self.rtaddr,
            Reg64::Ccmd => self.ccmd,
            Reg64::Iqh => self.iqh,
            Reg64::Iqt => self.iqt,
            Reg64::Iqa => self.iqa,
            Reg64::Iva => self.iva,
            Reg64::Iotlb => self.iotlb_reg,
            Reg64::FrcdLo(n) => self.frcd.get(n as usize).map_or(0, |r| r.0),
            Reg64::FrcdHi(n) => self.frcd.get(n as usize).map_or(0, |r| r.1),
        }
    }

    fn write64(&mut self, reg: Reg64, value: u64) {
        match reg {
            Reg64::Rtaddr => self.rtaddr = value,
            Reg64::Ccmd => {
                self.ccmd = value;
                if value >> 63 != 0 && !self.qi_on() {
                    match (value >> 61) & 3 {
                        1 => self.context_cache.clear(),
                        2 => {
                            let did = value as u16;
                            self.context_cache
                                .retain(|_, c| c.is_none_or(|c| c.did.0 != did));
                        }
                        3 => {
                            self.context_cache.remove(&((value >> 16) as u16));
                        }
                        _ => {}
                    }
                    self.ccmd &= !(1 << 63);
                }
            }
            Reg64::Iqt => {
                self.iqt = value & 0x7fff0;
                self.process_queue();
            }
            Reg64::Iqa => self.iqa = value,
            Reg64::Iva => self.iva = value,
            Reg64::Iotlb => {
                self.iotlb_reg = value;
                if value >> 63 != 0 && !self.qi_on() {
                    match (value >> 60) & 3 {
                        1 => self.iotlb.clear(),
                        2 | 3 => {
                            let did = (value >> 32) as u16;
                            self.iotlb.retain(|&(d, _), _| d != did);
                        }
                        _ => {}
                    }
                    self.iotlb_reg &= !(1 << 63);
                }
            }
            Reg64::FrcdHi(n) => {
                if value >> 63 != 0 {
                    if let Some(r) = self.frcd.get_mut(n as usize) {
                        r.1 &= !(1 << 63);
                    }
                }
            }
            Reg64::FrcdLo(_) | Reg64::Cap | Reg64::Ecap | Reg64::Iqh => {}
        }
    }
}

/// A [`FakeUnit`] that the test keeps a handle to while the driver owns "the registers".
#[derive(Clone)]
pub struct SharedUnit(pub Rc<RefCell<FakeUnit>>);

impl SharedUnit {
    /// The unit, to drive DMA and inspect.
    pub fn get(&self) -> std::cell::RefMut<'_, FakeUnit> {
        self.0.borrow_mut()
    }
}

impl RegisterAccess for SharedUnit {
    fn read32(&self, reg: Reg32) -> u32 {
        self.0.borrow().read32(reg)
    }
    fn write32(&mut self, reg: Reg32, value: u32) {
        self.0.borrow_mut().write32(reg, value)
    }
    fn read64(&self, reg: Reg64) -> u64 {
        self.0.borrow().read64(reg)
    }
    fn write64(&mut self, reg: Reg64, value: u64) {
        self.0.borrow_mut().write64(reg, value)
    }
}

/// Memory, a QEMU-like unit over it and a handle to the unit.
pub fn qemu_rig() -> (SharedMem, SharedUnit) {
    rig(QEMU_CAP, QEMU_ECAP)
}

/// Memory, a unit with `cap`/`ecap` over it and a handle to the unit.
pub fn rig(cap: u64, ecap: u64) -> (SharedMem, SharedUnit) {
    let mem = SharedMem::default();
    let unit = SharedUnit(Rc::new(RefCell::new(FakeUnit::with_caps(
        mem.clone(),
        cap,
        ecap,
    ))));
    (mem, unit)
}
