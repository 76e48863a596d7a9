//! The safe state a panic, an exception or a fatal error leaves behind: no device may DMA.
//!
//! Before the remapping unit is up, translation is off and a bus master would reach all of
//! memory; enumeration leaves bus mastering off everywhere, and only a scenario turns it on
//! for `edu`. So the safe state is "every bus master the image enabled is disabled again"
//! (PCI COMMAND.BME = 0, PCI Local Bus Specification 3.0 §6.2.2), written straight to ECAM
//! without locks. A unit that is already translating keeps translating: the driver never
//! turns translation off. Every exit runs it (`crate::exit` is the image's only way out and
//! calls [`leave_safe`] first), and the panic and exception handlers run [`stop`] before
//! they report.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use iommu_core::Bdf;

/// ECAM base of bus 0 (0: not known yet).
static ECAM: AtomicU64 = AtomicU64::new(0);
/// Requester IDs (bus << 8 | devfn) of functions whose bus mastering was turned on, +1 (0 = free).
static MASTERS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static DONE: AtomicBool = AtomicBool::new(false);

/// PCI COMMAND register offset and its BME bit.
const COMMAND: u64 = 0x04;
const COMMAND_BME: u16 = 1 << 2;

/// Remembers where configuration space is.
pub fn set_ecam(base: u64) {
    ECAM.store(base, Ordering::SeqCst);
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

/// Turns bus mastering off on every function [`add_master`] named, printing nothing: the
/// panic and exception handlers call it before their report, so a second failure while
/// reporting still leaves no master running. Safe to run again (each master is taken off
/// the list as it is stopped).
pub fn stop() {
    let ecam = ECAM.load(Ordering::SeqCst);
    if ecam == 0 {
        return;
    }
    for slot in &MASTERS {
        let rid = slot.swap(0, Ordering::SeqCst);
        if rid == 0 {
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
/// then one `FAILSAFE` record (once).
pub fn leave_safe(why: &str) {
    stop();
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    crate::console::emergency(format_args!(
        "FAILSAFE reason={why} bus_masters_stopped={}",
        STOPPED.load(Ordering::SeqCst)
    ));
}
