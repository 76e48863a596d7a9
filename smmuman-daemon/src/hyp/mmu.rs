//! The MMU at EL2: an identity map (VA = PA) written with Google's `aarch64-paging`, then
//! MAIR_EL2 / TCR_EL2 / TTBR0_EL2 and SCTLR_EL2.{M, C, I}.
//!
//! What is mapped is [`AddressMap::for_board`]: RAM as Normal write-back cacheable, inner
//! shareable (MAIR attribute 1); every register block the daemon touches as Device-nGnRE,
//! execute-never (MAIR attribute 0); nothing else. The translation tables come from a static
//! pool inside the image (daemon memory, never the guest pool; the memory plan reserves the
//! whole image from both allocators) and are never freed or changed once the MMU is on.
//!
//! Spec references (Arm ARM DDI 0487): D8.2 (VMSAv8-64 translation, 4 KiB granule, a level-0
//! root for a 48-bit input range), D8.3 (descriptor formats), D8.4 (MAIR and memory types),
//! D19.2 (MAIR_EL2, TCR_EL2, TTBR0_EL2, SCTLR_EL2, ID_AA64MMFR0_EL1). With HCR_EL2.E2H = 0
//! EL2 has one VA range (TTBR0_EL2) and no ASIDs.

use super::el2_regs::{sctlr_mmu_on, tcr, T0SZ_BITS};
use crate::address_map::{parange_bits, ps_for_bits, AddressMap, MemKind};
use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
use aarch64_paging::descriptor::{El23Attributes, PhysicalAddress};
use aarch64_paging::mair::{Mair, MairAttribute, NormalMemory};
use aarch64_paging::paging::{Constraints, El2, MemoryRegion, PageTable, Translation};
use aarch64_paging::Mapping;
use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use iommu_core::PhysAddr;

/// Pages in the translation-table pool: enough for [`AddressMap::table_pages_bound`] of a full
/// map.
const POOL_PAGES: usize = 1 + 6 * crate::address_map::MAX_REGIONS;

/// MAIR_EL2 (Arm ARM D19.2.97 / D8.4.4): attribute 0 Device-nGnRE (0x04), attribute 1 Normal
/// inner and outer write-back non-transient read/write-allocate (0xff).
const MAIR: Mair = Mair::EMPTY
    .with_attribute(0, MairAttribute::DEVICE_NGNRE)
    .with_attribute(
        1,
        MairAttribute::normal(
            NormalMemory::WriteBackNonTransientReadWriteAllocate,
            NormalMemory::WriteBackNonTransientReadWriteAllocate,
        ),
    );

/// Leaf attributes of RAM: MAIR index 1, inner shareable, access flag set (no access-flag
/// faults), AP[1] RES1 in a one-privilege-level regime (Arm ARM D8.3.2), writable, executable.
const NORMAL: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ATTRIBUTE_INDEX_1)
    .union(El23Attributes::INNER_SHAREABLE)
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1);

/// Leaf attributes of registers: MAIR index 0 (Device-nGnRE; shareability is ignored for
/// device memory), access flag set, AP[1] RES1, execute-never (XN, bit 54).
const DEVICE: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ATTRIBUTE_INDEX_0)
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1)
    .union(El23Attributes::XN);

/// Root level of the tables `aarch64-paging` builds for `T0SZ` = 16.
const ROOT_LEVEL: usize = 0;

/// The pool: page-aligned, zeroed (.bss), handed out once.
#[repr(C, align(4096))]
struct Pool(UnsafeCell<[PageTable<El23Attributes>; POOL_PAGES]>);

// SAFETY: the pool is reached only through `PoolTranslation`, of which `POOL_TAKEN` lets one
// exist, on the one CPU the daemon runs on.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([PageTable::EMPTY; POOL_PAGES]));
static POOL_TAKEN: AtomicBool = AtomicBool::new(false);
/// Pages the map used (for the `MMU` record).
static PAGES_USED: AtomicUsize = AtomicUsize::new(0);
/// A page the map leaves unmapped (0: the MMU is off), for a deliberate translation fault.
static UNMAPPED: AtomicU64 = AtomicU64::new(0);

/// Hands out the pool's pages in order; never frees (the map is never changed once live).
struct PoolTranslation {
    next: usize,
}

impl Translation<El23Attributes> for PoolTranslation {
    fn allocate_table(&mut self) -> (NonNull<PageTable<El23Attributes>>, PhysicalAddress) {
        // `enable` checked `table_pages_bound() <= POOL_PAGES` first, so this cannot run out;
        // running out would be a bug in that bound, not an input.
        assert!(self.next < POOL_PAGES, "translation-table pool exhausted");
        let base = POOL.0.get().cast::<PageTable<El23Attributes>>();
        // SAFETY: `next < POOL_PAGES`, so the page is inside the pool; the pool is .bss
        // (zeroed, a valid empty table) and each page is handed out once.
        let page = unsafe { base.add(self.next) };
        self.next += 1;
        PAGES_USED.store(self.next, Ordering::Relaxed);
        let pa = PhysicalAddress(page as usize);
        (NonNull::new(page).unwrap_or(NonNull::dangling()), pa)
    }

    unsafe fn deallocate_table(&mut self, _page_table: NonNull<PageTable<El23Attributes>>) {
        // Never freed: the pool is static and the live map never shrinks.
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<El23Attributes>> {
        // Identity: the pool's physical address is its address, before and after the MMU.
        NonNull::new(pa.0 as *mut PageTable<El23Attributes>).unwrap_or(NonNull::dangling())
    }
}

/// The MMU could not be turned on (it stays off; the caller reports and stops).
#[derive(Debug)]
pub enum MmuError {
    /// The regions need more table pages than the pool has.
    TooManyTables(usize),
    /// The CPU reports a physical address size the daemon does not handle.
    PaRange(u64),
    /// A region lies above the CPU's physical address size.
    AboveOutputRange(u64),
    /// `aarch64-paging` refused a region.
    Map(aarch64_paging::MapError),
    /// [`enable`] was called twice.
    AlreadyOn,
}

impl fmt::Display for MmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyTables(n) => {
                write!(
                    f,
                    "the map may need {n} table pages; the pool has {POOL_PAGES}"
                )
            }
            Self::PaRange(v) => write!(f, "ID_AA64MMFR0_EL1.PARange {v:#x} is not supported"),
            Self::AboveOutputRange(end) => write!(
                f,
                "a region ends at {end:#x}, beyond the CPU's physical address size"
            ),
            Self::Map(e) => write!(f, "aarch64-paging: {e}"),
            Self::AlreadyOn => f.write_str("the MMU is already on"),
        }
    }
}

/// What [`enable`] did, for the `MMU` record.
#[derive(Clone, Copy, Debug)]
pub struct MmuOn {
    /// Regions mapped.
    pub regions: usize,
    /// Translation-table pages used.
    pub tables: usize,
    /// Physical address bits (TCR_EL2.PS).
    pub pa_bits: u32,
    /// The values written.
    pub mair: u64,
    /// TCR_EL2.
    pub tcr: u64,
    /// SCTLR_EL2.
    pub sctlr: u64,
    /// TTBR0_EL2.
    pub ttbr0: u64,
}

/// Builds the identity map of `map` and turns the MMU and caches on. Call once, early, before
/// any SMMU is touched; everything the daemon accesses afterwards must be in `map`.
///
/// # Errors
/// An [`MmuError`]; the MMU is then still off and nothing changed.
pub fn enable(map: &AddressMap) -> Result<MmuOn, MmuError> {
    let bound = map.table_pages_bound();
    if bound > POOL_PAGES {
        return Err(MmuError::TooManyTables(bound));
    }
    let parange = ID_AA64MMFR0_EL1.get() & 0xf;
    let pa_bits = parange_bits(parange).ok_or(MmuError::PaRange(parange))?;
    let ps = ps_for_bits(pa_bits).ok_or(MmuError::PaRange(parange))?;
    if map.end() > 1u64 << pa_bits.min(T0SZ_BITS) {
        return Err(MmuError::AboveOutputRange(map.end()));
    }
    if POOL_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(MmuError::AlreadyOn);
    }
    let mut idmap = Mapping::new(PoolTranslation { next: 0 }, ROOT_LEVEL, El2);
    for r in map.regions() {
        let start = r.range.start().0 as usize;
        let end = r.range.end().0 as usize;
        let flags = match r.kind {
            MemKind::Normal => NORMAL,
            MemKind::Device => DEVICE,
        };
        idmap
            .map_range(
                &MemoryRegion::new(start, end),
                PhysicalAddress(start),
                flags,
                Constraints::empty(),
            )
            .map_err(MmuError::Map)?;
    }
    let ttbr0 = idmap.root_address().0 as u64;
    let mair = MAIR.0;
    let tcr = tcr(ps);
    let sctlr = sctlr_mmu_on();
    // SAFETY: the map covers the whole image (code, data, stacks: RAM), the device tree and
    // initrd (RAM), and every register block the daemon touches, each at its own address, so
    // execution continues unchanged once translation is on. The sequence follows Arm ARM
    // D8.2 / D5 "enabling the MMU": attributes and table base first, the table writes made
    // visible to the walker (DSB), stale EL2 TLB entries and instruction cache lines
    // invalidated, then SCTLR_EL2 with an ISB on each side. Nothing runs at EL2 that could
    // observe a half-done switch (no interrupts are unmasked yet).
    unsafe {
        core::arch::asm!(
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr0}",
            "dsb ish",
            "tlbi alle2",
            "ic iallu",
            "dsb ish",
            "isb",
            "msr sctlr_el2, {sctlr}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            ttbr0 = in(reg) ttbr0,
            sctlr = in(reg) sctlr,
            options(nostack),
        );
    }
    // The map is live from here: `aarch64-paging` must treat later changes as live (none are
    // made), and it must never be dropped (its Drop panics on a live map; its tables are the
    // static pool, which stays), so it is leaked on purpose.
    idmap.mark_active();
    core::mem::forget(idmap);
    if let Some(hole) = map.first_hole(PhysAddr(aarch64_paging::paging::PAGE_SIZE as u64)) {
        UNMAPPED.store(hole.0, Ordering::SeqCst);
    }
    Ok(MmuOn {
        regions: map.regions().len(),
        tables: PAGES_USED.load(Ordering::Relaxed),
        pa_bits,
        mair,
        tcr,
        sctlr,
        ttbr0,
    })
}

#[cfg(feature = "scenarios")]
/// An address the identity map leaves unmapped (a load from it takes a translation fault), or
/// `None` while the MMU is off.
pub fn unmapped_address() -> Option<u64> {
    match UNMAPPED.load(Ordering::SeqCst) {
        0 => None,
        a => Some(a),
    }
}
