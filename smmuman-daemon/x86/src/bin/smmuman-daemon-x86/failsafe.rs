//! The safe state every way out of the image leaves behind: every VT-d unit the DMAR lists
//! blocks all DMA, and no function the image made a bus master still masters the bus.
//!
//! The remapping units come first. Translation off (GSTS.TES = 0, QEMU's reset state and the
//! state of a start refused before bring-up) lets DMA through untranslated, and a unit the
//! scenarios brought up keeps translating through whatever windows it holds. So [`stop`]
//! points each unit at an empty root table (a page of zeroes in the image, zeroed and flushed
//! again right before use) and makes sure translation is on, from its registers alone, with
//! [`vtd::block_all_dma`]: every request of every requester then fails its root-entry lookup
//! and is recorded (reason 0x1, VT-d §3.4.2, §9.1). A queue that will not turn off is used
//! for the invalidations instead, through word access to the DMA pool alone
//! ([`crate::dma::QueueWords`]). The units are known as soon as the DMAR is
//! parsed ([`arm_units`]), so a start refused later (a bad config, an unknown scenario) leaves
//! them blocking too. Then bus mastering is turned off on every function the image enabled
//! (PCI COMMAND.BME = 0, PCI Local Bus Specification 3.0 §6.2.2), written straight to ECAM.
//!
//! [`stop`] prints nothing and takes no lock failing code could hold; it is safe to run again
//! (each unit and each master is taken on once). `crate::exit`, the image's only way out,
//! runs [`leave_safe`] first: [`stop`], then the report (one `FAILSAFE` record and one
//! `VTD_BLOCK` per unit: what the unit confirmed, `blocking=1` only when every step was
//! acknowledged), then the DMA probe a test scenario planned ([`crate::failsafe_probe`]).
//! The panic and exception handlers and `fatal` run [`stop`] before they report.

use crate::failsafe_probe;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use iommu_core::{Bdf, PhysAddr};
use vtd::{BlockReport, FrameError};

/// ECAM base of bus 0 (0: not known yet).
static ECAM: AtomicU64 = AtomicU64::new(0);
/// Requester IDs (bus << 8 | devfn) of functions whose bus mastering was turned on, +1 (0 = free).
static MASTERS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static DONE: AtomicBool = AtomicBool::new(false);

/// PCI COMMAND register offset and its BME bit.
const COMMAND: u64 = 0x04;
const COMMAND_BME: u16 = 1 << 2;

/// Remapping units remembered at most.
const MAX_UNITS: usize = 4;
/// Register frame base and size of each unit (0: free).
static UNIT_BASES: [AtomicU64; MAX_UNITS] = [const { AtomicU64::new(0) }; MAX_UNITS];
static UNIT_SIZES: [AtomicU64; MAX_UNITS] = [const { AtomicU64::new(0) }; MAX_UNITS];
static UNIT_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Index of the next unit [`stop`] takes on (a fault in the middle continues with the next).
static NEXT_UNIT: AtomicUsize = AtomicUsize::new(0);
/// What the block left on each unit, for the report.
static BLOCKED: spin::Mutex<[Option<Blocked>; MAX_UNITS]> = spin::Mutex::new([None; MAX_UNITS]);

/// Reads of a status bit before one fail-safe step gives up (each a trap to QEMU: well under a
/// second per step that never acknowledges).
const POLL_LIMIT: u32 = 100_000;

/// What [`stop`] did on one unit.
#[derive(Clone, Copy)]
enum Blocked {
    /// The block ran; what the unit confirmed.
    Ran(BlockReport),
    /// The register frame could not be used.
    Frame(FrameError),
}

/// The empty root table: 256 root entries, all not present (VT-d §9.1: P = 0).
#[repr(C, align(4096))]
struct ZeroRoot(UnsafeCell<[u64; 512]>);

// SAFETY: only `block_units` writes it (zeroes, with the units that may read it about to be
// pointed at it), and `NEXT_UNIT` gives each unit to one caller.
unsafe impl Sync for ZeroRoot {}

static ZERO_ROOT: ZeroRoot = ZeroRoot(UnsafeCell::new([0; 512]));

/// Remembers where configuration space is.
pub fn set_ecam(base: u64) {
    ECAM.store(base, Ordering::SeqCst);
}

/// Remembers the register frames of every remapping unit (from the DMAR: those below 4 GiB,
/// which the identity map covers uncached). Later calls replace the list.
pub fn arm_units(frames: impl Iterator<Item = (PhysAddr, u64)>) {
    UNIT_COUNT.store(0, Ordering::SeqCst);
    let mut n = 0;
    for (base, size) in frames.take(MAX_UNITS) {
        UNIT_BASES[n].store(base.0, Ordering::SeqCst);
        UNIT_SIZES[n].store(size, Ordering::SeqCst);
        n += 1;
    }
    UNIT_COUNT.store(n, Ordering::SeqCst);
}

/// The register frame of remembered unit `i`.
pub fn unit_base(i: usize) -> Option<PhysAddr> {
    (i < UNIT_COUNT.load(Ordering::SeqCst)).then(|| PhysAddr(UNIT_BASES[i].load(Ordering::SeqCst)))
}

/// Remembers that `bdf` may master the bus (call before enabling it).
pub fn add_master(bdf: Bdf) {
    let rid = u64::from(bdf.rid()) + 1;
    for slot in &MASTERS {
        if slot
            .compare_exchange(0, rid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
            || slot.load(Ordering::SeqCst) == rid
        {
            return;
        }
    }
}

/// Bus masters [`stop`] turned off so far.
static STOPPED: AtomicU64 = AtomicU64::new(0);

/// The fail-safe alone, printing nothing (the panic and exception handlers call it before their
/// report): every remembered unit blocks all DMA, then bus mastering is off on every function
/// [`add_master`] named, except the one a planned DMA probe still needs (the probe must show
/// the unit blocks, not the function). Safe to run again.
pub fn stop() {
    if !failsafe_probe::skips_block() {
        block_units();
    }
    stop_masters();
}

/// Points every remembered unit, once each, at the empty root table with translation on.
fn block_units() {
    let n = UNIT_COUNT.load(Ordering::SeqCst);
    loop {
        let i = NEXT_UNIT.fetch_add(1, Ordering::SeqCst);
        if i >= n {
            return;
        }
        let root = ZERO_ROOT.0.get();
        // SAFETY: the page is ours (a static no one else writes); zeroes are what every unit
        // pointed at it must see. Volatile: the unit reads it by DMA.
        unsafe {
            for k in 0..512 {
                core::ptr::write_volatile(root.cast::<u64>().add(k), 0);
            }
        }
        crate::dma::flush(root as u64, 4096);
        let base = UNIT_BASES[i].load(Ordering::SeqCst) as usize;
        let size = UNIT_SIZES[i].load(Ordering::SeqCst) as usize;
        // SAFETY: `arm_units` stored a DRHD register frame from the DMAR, below 4 GiB and so
        // uncached in the identity map. The code that held the other handle failed or has
        // finished and never runs again, so this handle is the only one in use; it lives for
        // this call.
        let outcome = match unsafe { vtd::Mmio::new(base, size.max(0x1000)) } {
            Ok(mut regs) => Blocked::Ran(vtd::block_all_dma(
                &mut regs,
                PhysAddr(root as u64),
                &mut crate::dma::QueueWords,
                POLL_LIMIT,
            )),
            Err(e) => Blocked::Frame(e),
        };
        if let Some(mut done) = BLOCKED.try_lock() {
            done[i] = Some(outcome);
        }
    }
}

/// Turns bus mastering off on every function [`add_master`] named but the probe's.
fn stop_masters() {
    let ecam = ECAM.load(Ordering::SeqCst);
    if ecam == 0 {
        return;
    }
    for slot in &MASTERS {
        let rid = slot.load(Ordering::SeqCst);
        if rid == 0 || failsafe_probe::keeps_master(rid - 1) {
            continue;
        }
        if slot.swap(0, Ordering::SeqCst) != rid {
            continue;
        }
        let at = ecam + ((rid - 1) << 12) + COMMAND;
        // SAFETY: `at` is the COMMAND register of a function enumeration found, in the ECAM
        // window the identity map covers (uncached); clearing BME only stops its DMA.
        unsafe {
            let p = at as *mut u16;
            p.write_volatile(p.read_volatile() & !COMMAND_BME);
        }
        STOPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// The fail-safe, on every way out of the image (`crate::exit` runs it first): [`stop`],
/// then the report (once), then the planned probe (once) and bus mastering off for its
/// function too.
pub fn leave_safe(why: &str) {
    stop();
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    report(why);
    if failsafe_probe::run() {
        stop_masters();
    }
}

/// One `FAILSAFE` record, then one `VTD_BLOCK` per unit.
fn report(why: &str) {
    let n = UNIT_COUNT.load(Ordering::SeqCst);
    let block = if failsafe_probe::skips_block() {
        "skipped"
    } else {
        "all"
    };
    crate::console::emergency(format_args!(
        "FAILSAFE reason={why} vtd_units={n} block={block} bus_masters_stopped={} bus_masters_kept_for_probe={}",
        STOPPED.load(Ordering::SeqCst),
        u8::from(failsafe_probe::planned()),
    ));
    if block == "skipped" {
        return;
    }
    let done = BLOCKED.try_lock().map(|d| *d);
    for (i, base) in UNIT_BASES.iter().enumerate().take(n) {
        let base = base.load(Ordering::SeqCst);
        match done.and_then(|d| d[i]) {
            Some(Blocked::Ran(r)) => {
                crate::console::emergency(format_args!("VTD_BLOCK base={base:#018x} {r}"))
            }
            Some(Blocked::Frame(e)) => crate::console::emergency(format_args!(
                "VTD_BLOCK base={base:#018x} blocking=0 detail=\"{e}\""
            )),
            None => crate::console::emergency(format_args!(
                "VTD_BLOCK base={base:#018x} blocking=0 detail=\"the block of this unit did not complete\""
            )),
        }
    }
}
