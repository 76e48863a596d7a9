//! [`Unit`]: one DMA-remapping unit (one DRHD), brought up without ever opening a window.
//!
//! # Bring-up ([`Unit::bring_up`])
//! While GSTS.TES = 0 the unit does not translate at all: every DMA reaches memory untranslated.
//! So nothing may be enabled before the tables deny everything, and translation, once on,
//! is never turned off:
//!
//! 1. Decode CAP/ECAP; refuse a unit without queued invalidation or usable address width.
//! 2. Shadow the persistent GCMD bits from GSTS (TE, QIE, IRE): GCMD_REG reads as 0 and QEMU
//!    acts on GSTS ^ written value, so every later write is `shadow | one-shot bit`; a write of
//!    SRTP alone would turn translation **off** on a unit firmware left on. A queue firmware
//!    left enabled is disabled (register-based invalidation needs QI off).
//! 3. Mask fault events (FECTL.IM = 1), clear stale records (each FRCD.F, FSTS.PFO/IQE/ICE/ITE).
//! 4. Build the deny tables: a root table whose 256 entries are all present and point at one
//!    shared context table whose 256 entries are all not present. Every requester the unit
//!    covers is then blocked with a record (reason 0x2, FPD does not apply to a not-present
//!    entry). Both pages are flushed to memory when ECAP.C = 0.
//! 5. RTADDR_REG = root (TTM = legacy); GCMD = shadow | SRTP; wait GSTS.RTPS.
//! 6. Register-based global context-cache invalidation (CCMD.ICC, wait ICC = 0), then global
//!    IOTLB invalidation (IOTLB.IVT, wait IVT = 0): nothing cached from earlier tables
//!    survives. GCMD.WBF when CAP.RWBF.
//! 7. Queued invalidation: IQT = 0, IQA = queue page, clear ICS.IWC, GCMD = shadow | QIE, wait
//!    GSTS.QIES; one global context + IOTLB invalidation through the queue proves it works.
//! 8. GCMD = shadow | TE; wait GSTS.TES.
//!
//! Every wait is bounded ([`POLL_LIMIT`] reads) and fails with [`VtdError::Timeout`] naming
//! the register and bit.

use crate::context::{
    context_entry_addr, root_entry, root_entry_addr, ContextEntry, DomainTag, ENTRIES,
};
use crate::error::{RegisterName, VtdError};
use crate::fault::{FaultDrainReport, FaultRecord};
use crate::features::{field, Features};
use crate::mmio::{Reg32, Reg64, RegisterAccess};
use crate::owed::Owed;
use crate::qi::InvDescriptor;
use crate::regs::{CCMD, FECTL, FRCD_HI, FSTS, GCMD, GSTS, IOTLB, IQA, IQH, IQT, RTADDR};
use iommu_core::{Bdf, DmaMemory, PhysAddr, PAGE_SIZE};

/// Reads of a status bit before a wait gives up.
pub const POLL_LIMIT: u32 = 1_000_000;

/// Descriptors in the invalidation queue (one 4 KiB page of 128-bit descriptors, IQA.QS = 0).
pub const QUEUE_ENTRIES: u16 = 256;

/// Counters a caller may print.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stats {
    /// Queue submissions completed.
    pub submissions: u64,
    /// Descriptors submitted (wait descriptors included).
    pub descriptors: u64,
    /// Queue errors recovered from (IQE, ITE, ICE).
    pub queue_errors: u64,
    /// Fault records delivered.
    pub faults: u64,
    /// Times FSTS.PFO was found set: at least one fault was lost each time.
    pub fault_overflows: u64,
}

/// The invalidation queue's memory and software tail.
#[derive(Clone, Copy, Debug)]
struct Queue {
    base: PhysAddr,
    /// Where wait descriptors write their status.
    status: PhysAddr,
    tail: u16,
    seq: u32,
}

/// The root table, the shared deny context table and each bus's own context table.
#[derive(Debug)]
struct Tables {
    root: PhysAddr,
    deny: PhysAddr,
    bus: [Option<PhysAddr>; ENTRIES],
}

/// One DMA-remapping unit.
#[derive(Debug)]
pub struct Unit<R: RegisterAccess> {
    regs: R,
    features: Features,
    /// The persistent GCMD bits as last set (TE, QIE, IRE).
    gcmd: u32,
    tables: Option<Tables>,
    queue: Option<Queue>,
    stats: Stats,
    /// Invalidations requesters are still owed after a failed submission.
    owed: Owed,
}

const fn bit32(
    f: tock_registers::fields::Field<u32, impl tock_registers::RegisterLongName>,
) -> u32 {
    f.mask << f.shift
}

impl<R: RegisterAccess> Unit<R> {
    /// Reads VER/CAP/ECAP and decodes them. Touches nothing else.
    ///
    /// # Errors
    /// [`VtdError::Features`] for a unit this driver cannot drive.
    pub fn new(regs: R) -> Result<Self, VtdError> {
        let features = Features::decode(
            regs.read32(Reg32::Ver),
            regs.read64(Reg64::Cap),
            regs.read64(Reg64::Ecap),
        )?;
        Ok(Self {
            regs,
            features,
            gcmd: 0,
            tables: None,
            queue: None,
            stats: Stats::default(),
            owed: Owed::default(),
        })
    }

    /// What the unit can do.
    pub const fn features(&self) -> &Features {
        &self.features
    }

    /// Counters.
    pub const fn stats(&self) -> Stats {
        self.stats
    }

    /// The register frame (tests read the emulated unit through it).
    pub const fn regs(&self) -> &R {
        &self.regs
    }

    /// The register frame, mutably.
    pub fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// The root table, once brought up.
    pub fn root_table(&self) -> Option<PhysAddr> {
        self.tables.as_ref().map(|t| t.root)
    }

    fn wait32(&self, reg: Reg32, bit: &'static str, mask: u32, set: bool) -> Result<(), VtdError> {
        for _ in 0..POLL_LIMIT {
            if (self.regs.read32(reg) & mask != 0) == set {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout {
            register: reg.name(),
            bit,
        })
    }

    fn wait64_clear(&self, reg: Reg64, bit: &'static str, mask: u64) -> Result<(), VtdError> {
        for _ in 0..POLL_LIMIT {
            if self.regs.read64(reg) & mask == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout {
            register: reg.name(),
            bit,
        })
    }

    /// Writes GCMD = shadow | `one_shot` and waits for `status` to read `set`.
    fn command(
        &mut self,
        one_shot: u32,
        status: u32,
        bit: &'static str,
        set: bool,
    ) -> Result<(), VtdError> {
        self.regs.write32(Reg32::Gcmd, self.gcmd | one_shot);
        self.wait32(Reg32::Gsts, bit, status, set)
    }

    /// Changes a persistent GCMD bit and waits for its status.
    fn persistent(
        &mut self,
        cmd: u32,
        status: u32,
        bit: &'static str,
        on: bool,
    ) -> Result<(), VtdError> {
        let value = if on {
            self.gcmd | cmd
        } else {
            self.gcmd & !cmd
        };
        self.regs.write32(Reg32::Gcmd, value);
        self.wait32(Reg32::Gsts, bit, status, on)?;
        self.gcmd = value;
        Ok(())
    }

    /// Makes `[pa, pa + len)` visible to the unit's table walks when they do not snoop.
    fn flush(&self, mem: &mut impl DmaMemory, pa: PhysAddr, len: u64) {
        if !self.features.coherent {
            mem.sync_for_device(pa, len);
        }
    }

    fn alloc_table(&self, mem: &mut impl DmaMemory) -> Result<PhysAddr, VtdError> {
        let pa = mem.alloc_zeroed(PAGE_SIZE as usize, PAGE_SIZE as usize)?;
        // Zeroing is a write: a non-snooping walker must see the zeroes, not stale memory.
        self.flush(mem, pa, PAGE_SIZE);
        Ok(pa)
    }

    /// Brings the unit up as the module docs describe; afterwards every requester is denied
    /// with a record and translation is on.
    ///
    /// # Errors
    /// [`VtdError::NoQueuedInvalidation`], [`VtdError::Timeout`], [`VtdError::OutOfMemory`],
    /// or a queue error of the first queued invalidation. After an error translation may still
    /// be off (firmware's state); nothing the driver built grants access.
    pub fn bring_up(&mut self, mem: &mut impl DmaMemory) -> Result<(), VtdError> {
        if !self.features.qi {
            return Err(VtdError::NoQueuedInvalidation);
        }
        // Step 2: shadow what is on (GSTS bits sit where their GCMD bits are).
        let persistent = bit32(GCMD::TE) | bit32(GCMD::QIE) | bit32(GCMD::IRE);
        self.gcmd = self.regs.read32(Reg32::Gsts) & persistent;
        if self.gcmd & bit32(GCMD::QIE) != 0 {
            self.persistent(bit32(GCMD::QIE), bit32(GSTS::QIES), "QIES", false)?;
        }
        // Step 3.
        self.regs.write32(Reg32::Fectl, bit32(FECTL::IM));
        for n in 0..self.features.nfr {
            self.regs
                .write64(Reg64::FrcdHi(n as u8), FRCD_HI::F.mask << FRCD_HI::F.shift);
        }
        self.regs.write32(
            Reg32::Fsts,
            bit32(FSTS::PFO) | bit32(FSTS::IQE) | bit32(FSTS::ICE) | bit32(FSTS::ITE),
        );
        // Step 4.
        let root = self.alloc_table(mem)?;
        let deny = match self.alloc_table(mem) {
            Ok(d) => d,
            Err(e) => {
                mem.free(root, PAGE_SIZE as usize);
                return Err(e);
            }
        };
        for bus in 0..=255u8 {
            let [lo, hi] = root_entry(deny);
            let at = root_entry_addr(root, bus);
            mem.write_u64(PhysAddr(at.0 + 8), hi);
            mem.write_u64(at, lo);
        }
        self.flush(mem, root, PAGE_SIZE);
        mem.publish();
        self.tables = Some(Tables {
            root,
            deny,
            bus: [None; ENTRIES],
        });
        // Step 5.
        self.regs
            .write64(Reg64::Rtaddr, (root.0 & !0xfff) | RTADDR::TTM::Legacy.value);
        self.command(bit32(GCMD::SRTP), bit32(GSTS::RTPS), "RTPS", true)?;
        // Step 6.
        self.regs
            .write64(Reg64::Ccmd, (CCMD::ICC::SET + CCMD::CIRG::Global).value);
        self.wait64_clear(Reg64::Ccmd, "ICC", CCMD::ICC::SET.mask())?;
        let mut iotlb = (IOTLB::IVT::SET + IOTLB::IIRG::Global).value;
        if self.features.drain_read {
            iotlb |= IOTLB::DR::SET.value;
        }
        if self.features.drain_write {
            iotlb |= IOTLB::DW::SET.value;
        }
        self.regs.write64(Reg64::Iotlb, iotlb);
        self.wait64_clear(Reg64::Iotlb, "IVT", IOTLB::IVT::SET.mask())?;
        self.write_buffer_flush()?;
        // Step 7.
        let base = self.alloc_table(mem)?;
        let status = self.alloc_table(mem)?;
        self.regs.write64(Reg64::Iqt, 0);
        self.regs
            .write64(Reg64::Iqa, (base.0 & !0xfff) | IQA::QS.val(0).value);
        self.regs.write32(Reg32::Ics, 1);
        self.persistent(bit32(GCMD::QIE), bit32(GSTS::QIES), "QIES", true)?;
        self.queue = Some(Queue {
            base,
            status,
            tail: 0,
            seq: 0,
        });
        self.submit(
            mem,
            &[InvDescriptor::ContextGlobal, InvDescriptor::IotlbGlobal],
        )?;
        // Step 8.
        self.persistent(bit32(GCMD::TE), bit32(GSTS::TES), "TES", true)?;
        log::info!("vtd: {}", self.features);
        Ok(())
    }

    /// GCMD.WBF when CAP.RWBF asks for it (VT-d §6.8 "Write Buffer Flushing").
    fn write_buffer_flush(&mut self) -> Result<(), VtdError> {
        if self.features.rwbf {
            self.command(bit32(GCMD::WBF), bit32(GSTS::WBFS), "WBFS", false)?;
        }
        Ok(())
    }

    /// Checks a domain-id against CAP.ND (0 is reserved).
    ///
    /// # Errors
    /// [`VtdError::DomainIdOutOfRange`].
    pub fn check_did(&self, did: DomainTag) -> Result<(), VtdError> {
        if did.0 == 0 || u32::from(did.0) >= self.features.domains {
            return Err(VtdError::DomainIdOutOfRange {
                did,
                domains: self.features.domains,
            });
        }
        Ok(())
    }

    /// Points `bdf` at a second-level table (`Some`) or back to deny (`None`), then
    /// invalidates the context cache for it and the IOTLB of the domain it left, through the
    /// queue, before returning.
    ///
    /// A present entry is never rewritten in place: it is made not present first (deny with a
    /// record), so the unit can never read half an old and half a new entry.
    ///
    /// What this requester was still owed by an earlier failed call (the context-cache and
    /// IOTLB invalidations of every domain-id its entry named since the last completed
    /// invalidation: the unit remembers them per source-id, [`Unit::owes_invalidation`]) is
    /// sent with the present → not-present step, whatever the entry in memory says now; `Ok`
    /// means all of it completed.
    ///
    /// # Errors
    /// [`VtdError::NotRunning`], [`VtdError::DomainIdOutOfRange`], out of memory (a bus's
    /// first context table): nothing changed. A queue failure: the entry in memory is not
    /// present or the new one, but the unit may still use the old one (or, with CAP.CM, a
    /// cached not-present one); the invalidations stay owed to the next call for `bdf`.
    pub fn set_context(
        &mut self,
        mem: &mut impl DmaMemory,
        bdf: Bdf,
        entry: Option<ContextEntry>,
    ) -> Result<(), VtdError> {
        if let Some(e) = entry {
            self.check_did(e.did)?;
        }
        let Some(tables) = self.tables.as_ref() else {
            return Err(VtdError::NotRunning);
        };
        let bus = bdf.bus;
        let sid = bdf.rid();
        let mut root_changed = false;
        let table = match tables.bus[bus as usize] {
            Some(t) => t,
            None if entry.is_none() => {
                // No entry of this bus was ever present; pay a global debt all the same.
                return self.pay_owed(mem, sid);
            }
            None => {
                let t = self.alloc_table(mem)?;
                let tables = self.tables.as_mut().ok_or(VtdError::NotRunning)?;
                tables.bus[bus as usize] = Some(t);
                let at = root_entry_addr(tables.root, bus);
                mem.write_u64(at, root_entry(t)[0]);
                self.flush(mem, at, 16);
                root_changed = true;
                t
            }
        };
        let devfn = (sid & 0xff) as u8;
        let at = context_entry_addr(table, devfn);
        let old = ContextEntry::decode([mem.read_u64(at), mem.read_u64(PhysAddr(at.0 + 8))]).ok();
        let mut descs: heapless::Vec<InvDescriptor, 4> = heapless::Vec::new();
        if let Some(old) = old {
            // Present → not present first. Owed from here until its invalidation completes:
            // once the entry is zeroed, memory no longer says which domain may be cached.
            self.owed.owe(sid, old.did);
            mem.write_u64(at, 0);
            self.flush(mem, at, 16);
            mem.publish();
            self.write_buffer_flush()?;
        }
        self.pay_owed(mem, sid)?;
        match entry {
            Some(e) => {
                let [lo, hi] = e.encode();
                mem.write_u64(PhysAddr(at.0 + 8), hi);
                mem.write_u64(at, lo);
            }
            None => mem.write_u64(PhysAddr(at.0 + 8), 0),
        }
        self.flush(mem, at, 16);
        mem.publish();
        self.write_buffer_flush()?;
        // Not present → present: with CAP.CM the not-present entry may be cached (§6.1); we
        // invalidate whatever CM says, it is one descriptor. A changed root entry may be
        // cached with other requesters' context entries: global.
        if root_changed {
            let _ = descs.push(InvDescriptor::ContextGlobal);
        } else if entry.is_some() {
            // The entry was not present: caching-mode hardware tags what it cached of it
            // with domain-id 0 (VT-d §6.1), which is also what Linux sends.
            let _ = descs.push(InvDescriptor::ContextDevice {
                did: DomainTag(0),
                sid: bdf.rid(),
            });
        }
        if let Some(e) = entry {
            if self.features.caching_mode {
                let _ = descs.push(InvDescriptor::IotlbDomain { did: e.did });
            }
        }
        if descs.is_empty() {
            return Ok(());
        }
        let result = self.submit(mem, &descs);
        if let (Err(_), Some(e)) = (&result, entry) {
            // The new entry may be cached without its invalidation having completed: a later
            // change of this requester invalidates its domain whatever memory says then.
            self.owed.owe(sid, e.did);
        }
        result
    }

    /// Submits what `sid` is owed (see `crate::owed`) and forgets the debt once the
    /// submission completed. Nothing owed: nothing sent.
    fn pay_owed(&mut self, mem: &mut impl DmaMemory, sid: u16) -> Result<(), VtdError> {
        let descs = self.owed.payment(sid);
        if descs.is_empty() {
            return Ok(());
        }
        self.submit(mem, &descs)?;
        self.owed.paid(sid);
        Ok(())
    }

    /// Whether `bdf` is still owed a context-cache / IOTLB invalidation by an earlier failed
    /// [`Unit::set_context`] (the next call for it sends that first).
    pub fn owes_invalidation(&self, bdf: Bdf) -> bool {
        self.owed.any_for(bdf.rid())
    }

    /// The context entry `bdf` has in memory, if present and ours.
    pub fn context_of(&self, mem: &impl DmaMemory, bdf: Bdf) -> Option<ContextEntry> {
        let table = self.tables.as_ref()?.bus[bdf.bus as usize]?;
        let at = context_entry_addr(table, (bdf.rid() & 0xff) as u8);
        ContextEntry::decode([mem.read_u64(at), mem.read_u64(PhysAddr(at.0 + 8))]).ok()
    }

    /// Makes table writes visible to the walker (`sync_for_device` when ECAP.C = 0, then
    /// GCMD.WBF when CAP.RWBF). Call after every change of a second-level table.
    ///
    /// # Errors
    /// [`VtdError::Timeout`] of the write-buffer flush.
    pub fn table_written(
        &mut self,
        mem: &mut impl DmaMemory,
        pa: PhysAddr,
        len: u64,
    ) -> Result<(), VtdError> {
        self.flush(mem, pa, len);
        mem.publish();
        self.write_buffer_flush()
    }

    /// Submits `descs` followed by a wait descriptor and returns once the unit wrote its
    /// status, i.e. once every descriptor completed (§6.5.2.8).
    ///
    /// Queue errors (§6.5.2.10) are recovered from before returning the error: an invalid
    /// descriptor (IQE) is overwritten by a wait descriptor that writes the previous sequence
    /// number to the status word and IQE cleared, so the unit
    /// skips it and goes on; ITE and ICE are cleared. The requests of a failed submission must
    /// be treated as not done.
    ///
    /// # Errors
    /// [`VtdError::NotRunning`], [`VtdError::QueueFull`], [`VtdError::InvalidDescriptor`],
    /// [`VtdError::InvalidationTimeout`], [`VtdError::InvalidationCompletion`],
    /// [`VtdError::Timeout`].
    pub fn submit(
        &mut self,
        mem: &mut impl DmaMemory,
        descs: &[InvDescriptor],
    ) -> Result<(), VtdError> {
        let Some(mut q) = self.queue else {
            return Err(VtdError::NotRunning);
        };
        let head = field(self.regs.read64(Reg64::Iqh), IQH::QH) as u16 % QUEUE_ENTRIES;
        let used = q.tail.wrapping_sub(head) % QUEUE_ENTRIES;
        let free = usize::from(QUEUE_ENTRIES - 1 - used);
        let wanted = descs.len() + 1;
        if wanted > free {
            return Err(VtdError::QueueFull { wanted, free });
        }
        q.seq = q.seq.wrapping_add(1);
        mem.write_u64(q.status, 0);
        let wait = InvDescriptor::Wait {
            status: Some(q.status),
            data: q.seq,
            interrupt: false,
        };
        for d in descs.iter().chain(core::iter::once(&wait)) {
            let [lo, hi] = d.encode();
            let at = PhysAddr(q.base.0 + u64::from(q.tail) * 16);
            mem.write_u64(at, lo);
            mem.write_u64(PhysAddr(at.0 + 8), hi);
            q.tail = (q.tail + 1) % QUEUE_ENTRIES;
        }
        mem.publish();
        self.queue = Some(q);
        self.regs
            .write64(Reg64::Iqt, IQT::QT.val(u64::from(q.tail)).value);
        self.stats.descriptors += wanted as u64;
        let mut error = None;
        for _ in 0..POLL_LIMIT {
            let fsts = self.regs.read32(Reg32::Fsts);
            if fsts & bit32(FSTS::IQE) != 0 {
                let index = field(self.regs.read64(Reg64::Iqh), IQH::QH) as u16 % QUEUE_ENTRIES;
                let at = PhysAddr(q.base.0 + u64::from(index) * 16);
                let words = [mem.read_u64(at), mem.read_u64(PhysAddr(at.0 + 8))];
                // A wait that writes the previous sequence number: valid everywhere (QEMU
                // 10.0 refuses a wait with neither SW nor IF) and never taken for ours.
                let [lo, hi] = InvDescriptor::Wait {
                    status: Some(q.status),
                    data: q.seq.wrapping_sub(1),
                    interrupt: false,
                }
                .encode();
                mem.write_u64(at, lo);
                mem.write_u64(PhysAddr(at.0 + 8), hi);
                mem.publish();
                self.regs.write32(Reg32::Fsts, bit32(FSTS::IQE));
                self.stats.queue_errors += 1;
                log::warn!("vtd: invalidation descriptor {index} refused (IQE), skipped");
                error = error.or(Some(VtdError::InvalidDescriptor { index, words }));
                continue;
            }
            if fsts & bit32(FSTS::ITE) != 0 {
                // The wait descriptors after the timed-out request were discarded: ours
                // will never complete (§6.5.2.10).
                self.regs.write32(Reg32::Fsts, bit32(FSTS::ITE));
                self.stats.queue_errors += 1;
                return Err(VtdError::InvalidationTimeout);
            }
            if fsts & bit32(FSTS::ICE) != 0 {
                self.regs.write32(Reg32::Fsts, bit32(FSTS::ICE));
                self.stats.queue_errors += 1;
                error = error.or(Some(VtdError::InvalidationCompletion));
                continue;
            }
            if !self.features.coherent {
                mem.sync_for_cpu(q.status, 8);
            }
            if mem.read_u64(q.status) & 0xffff_ffff == u64::from(q.seq) {
                self.stats.submissions += 1;
                return match error {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            core::hint::spin_loop();
        }
        Err(VtdError::Timeout {
            register: RegisterName("invalidation wait status"),
            bit: "SW",
        })
    }

    /// Invalidates the IOTLB entries of `did` for `[iova, iova + len)` and waits: one
    /// page-selective descriptor per aligned power-of-two block (VT-d §6.5.2.3, AM ≤ CAP.MAMV)
    /// when CAP.PSI and at most 16 blocks do, else one domain-selective descriptor. `leaf_only`
    /// sets the invalidation hint IH: only leaves were removed, no table was unlinked, so the
    /// unit may keep its paging-structure caches.
    ///
    /// # Errors
    /// As [`Unit::submit`]; the range must then be treated as still cached.
    pub fn invalidate_range(
        &mut self,
        mem: &mut impl DmaMemory,
        did: DomainTag,
        iova: iommu_core::Iova,
        len: u64,
        leaf_only: bool,
    ) -> Result<(), VtdError> {
        let mut plan = heapless::Vec::new();
        let mut descs: heapless::Vec<InvDescriptor, 16> = heapless::Vec::new();
        let planned = self.features.psi
            && crate::qi::page_selective_plan(iova, len, self.features.mamv, 16, &mut plan)
                .is_some();
        if planned {
            for &(addr, am) in &plan {
                let _ = descs.push(InvDescriptor::IotlbPages {
                    did,
                    addr,
                    am,
                    ih: leaf_only,
                });
            }
        } else {
            let _ = descs.push(InvDescriptor::IotlbDomain { did });
        }
        self.submit(mem, &descs)
    }

    /// Call after new mappings `[iova, iova + len)` of `did` were written (and flushed with
    /// [`Unit::table_written`]). With CAP.CM = 1 the unit may have cached the not-present
    /// entries they replaced (VT-d §6.1), so they are invalidated like an unmap; with CM = 0
    /// not-present entries are never cached and nothing is sent.
    ///
    /// `tables_linked`: the mapping filled a not-present **non-leaf** entry with a new table.
    /// The invalidation hint (IOTLB invalidate descriptor IH, VT-d §6.5.2.3) promises the unit
    /// that no paging-structure entry changed, so it may keep its paging-structure caches; that
    /// holds only when leaves alone were written, so IH is set only then (a unit in caching
    /// mode may have cached the not-present non-leaf entry, as Linux assumes: it sends IH = 0
    /// for such maps).
    ///
    /// # Errors
    /// As [`Unit::invalidate_range`].
    pub fn mapped(
        &mut self,
        mem: &mut impl DmaMemory,
        did: DomainTag,
        iova: iommu_core::Iova,
        len: u64,
        tables_linked: bool,
    ) -> Result<(), VtdError> {
        if !self.features.caching_mode {
            return Ok(());
        }
        self.invalidate_range(mem, did, iova, len, !tables_linked)
    }

    /// Unmasks (`true`) or masks fault events (FECTL.IM). Unmask after programming
    /// FEDATA/FEADDR with [`Unit::set_fault_msi`].
    pub fn set_fault_events(&mut self, enabled: bool) {
        let im = if enabled { 0 } else { bit32(FECTL::IM) };
        self.regs.write32(Reg32::Fectl, im);
    }

    /// Programs the fault event's MSI (FEDATA, FEADDR, FEUADDR; VT-d §5.1.6 / §11.4.9.3-5).
    pub fn set_fault_msi(&mut self, address: u64, data: u32) {
        self.regs.write32(Reg32::Fedata, data);
        self.regs.write32(Reg32::Feaddr, address as u32 & !0b11);
        self.regs.write32(Reg32::Feuaddr, (address >> 32) as u32);
    }

    /// Hands every pending fault record to `sink`, oldest first (from FSTS.FRI round the
    /// CAP.NFR + 1 registers), clears each one's F, then clears FSTS.PFO if it was set.
    pub fn drain_faults(&mut self, mut sink: impl FnMut(FaultRecord)) -> FaultDrainReport {
        let mut report = FaultDrainReport::default();
        let nfr = self.features.nfr.max(1);
        let fsts = self.regs.read32(Reg32::Fsts);
        if fsts & bit32(FSTS::PPF) != 0 {
            // FRI from hardware is trusted only modulo the number of registers.
            let first = ((fsts >> FSTS::FRI.shift) & FSTS::FRI.mask) as u16 % nfr;
            for k in 0..nfr {
                let n = ((first + k) % nfr) as u8;
                let hi = self.regs.read64(Reg64::FrcdHi(n));
                if field(hi, FRCD_HI::F) == 0 {
                    continue;
                }
                let lo = self.regs.read64(Reg64::FrcdLo(n));
                self.regs
                    .write64(Reg64::FrcdHi(n), FRCD_HI::F.mask << FRCD_HI::F.shift);
                sink(FaultRecord::decode(n, lo, hi));
                report.delivered += 1;
            }
        }
        if self.regs.read32(Reg32::Fsts) & bit32(FSTS::PFO) != 0 {
            self.regs.write32(Reg32::Fsts, bit32(FSTS::PFO));
            report.overflowed = true;
            self.stats.fault_overflows += 1;
        }
        self.stats.faults += report.delivered;
        report
    }

    /// Whether GSTS says translation is on.
    pub fn translating(&self) -> bool {
        self.regs.read32(Reg32::Gsts) & bit32(GSTS::TES) != 0
    }

    /// The deny context table every bus without its own table points at.
    pub fn deny_table(&self) -> Option<PhysAddr> {
        self.tables.as_ref().map(|t| t.deny)
    }
}
