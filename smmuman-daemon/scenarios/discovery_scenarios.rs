//! Scenarios that prove what start-up discovery decided, by DMA: which device's DMA gets
//! through a window given to the StreamID the topology names (`sid-probe`), and that the
//! config's static windows are live (`static-window`).

use board_config::Device;
use core::fmt::Write;
use iommu_core::{Access, Bdf, IommuBackend, Iova, PhysAddr, StreamId};
use smmuman_daemon::bringup::iommu::{self, Backend, Drained, IommuOptions};
use smmuman_daemon::bringup::platform::{DeviceName, Platform};
use smmuman_daemon::edu::Edu;
use smmuman_daemon::memory::GuestMemory;
use smmuman_daemon::mmio::MmioRegion;
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Bytes per probe DMA.
const DMA_LEN: u32 = 64;
/// Most `edu` devices a scenario drives.
const MAX_EDUS: usize = 4;
/// Pattern seed of probe buffers.
const SEED: u8 = 0x77;

fn fail(reason: &str) -> Outcome {
    Outcome::fail().with("reason", reason)
}

/// The `edu` devices a scenario drives: address, StreamID, driver.
type Edus = heapless::Vec<(Bdf, Option<StreamId>, Edu<MmioRegion>), MAX_EDUS>;

/// Brings the IOMMU up and takes every `edu` (at most [`MAX_EDUS`]).
#[allow(clippy::result_large_err)] // The error is the scenario's final `Outcome`.
fn devices(p: &mut Platform) -> Result<(Backend, Edus), Outcome> {
    let backend = iommu::bring_up(p, IommuOptions::default()).map_err(|e| {
        Outcome::fail()
            .with("reason", "iommu bring-up failed")
            .with("detail", e)
    })?;
    let found: heapless::Vec<(Bdf, Option<StreamId>), MAX_EDUS> =
        p.edus().take(MAX_EDUS).map(|f| (f.bdf, f.sid)).collect();
    let mut out = heapless::Vec::new();
    for (bdf, sid) in found {
        let edu = p.take_edu(bdf).map_err(|e| {
            Outcome::fail()
                .with("reason", "edu unavailable")
                .with("detail", e)
        })?;
        let _ = out.push((bdf, sid, edu));
    }
    if out.is_empty() {
        return Err(fail("no edu device"));
    }
    Ok((backend, out))
}

/// Gives the StreamID the topology gives the first `edu` a 2 MiB window, lets every `edu`
/// write 64 bytes (its zeroed buffer) at its own IOVA (0x1000 * (i + 1)) and reports whose DMA
/// landed and which StreamIDs the SMMU recorded faults for. Passes when every DMA either
/// landed or was recorded as a fault (nothing vanished); the records say who got through:
///
/// * `PROBE bdf=.. topology_sid=.. landed=0|1 faults=N fault_sid=..`, one per device;
/// * `RESULT ... window_sid=.. landed=<bdf,bdf>`.
///
/// With the device tree's view on `virt`, only 00:01.0 lands. With a config that swaps the
/// StreamIDs of 00:01.0 and 00:02.0, the window goes to 0x10 and 00:02.0's DMA lands while
/// 00:01.0's is recorded with its real StreamID 0x8: the daemon used the config's binding.
/// Behind a PCIe-to-PCI bridge both devices share the window's StreamID and both land.
pub fn sid_probe(p: &mut Platform) -> Outcome {
    let (mut backend, mut edus) = match devices(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let outcome = sid_probe_body(p, &mut backend, &mut edus).unwrap_or_else(|o| o);
    iommu::print_stats(&backend);
    outcome
}

#[allow(clippy::result_large_err)] // The error is the scenario's final `Outcome`.
fn sid_probe_body(
    p: &mut Platform,
    backend: &mut Backend,
    edus: &mut [(Bdf, Option<StreamId>, Edu<MmioRegion>)],
) -> Result<Outcome, Outcome> {
    let Some(window_sid) = edus[0].1 else {
        return Err(fail("the first edu has no StreamID"));
    };
    let buf = p
        .guest_memory
        .alloc(2 * MIB, 2 * MIB)
        .map_err(|e| Outcome::fail().with("reason", e))?;
    let refused = |what: &str, e: &dyn core::fmt::Display| {
        Outcome::fail().with("reason", what).with("detail", e)
    };
    let d = backend
        .create_domain()
        .map_err(|e| refused("create_domain", &e))?;
    backend
        .attach(window_sid, d)
        .map_err(|e| refused("attach", &e))?;
    backend
        .map(d, Iova(0), buf.start(), 2 * MIB, Access::RW)
        .map_err(|e| refused("map", &e))?;
    console::line(format_args!(
        "SAY StreamID {window_sid} (the topology's for {}) gets a 2 MiB window; every edu now writes 64 bytes at its own IOVA.",
        edus[0].0
    ));
    let mut landed_list: heapless::String<64> = heapless::String::new();
    let mut all_accounted = true;
    for (i, (bdf, sid, edu)) in edus.iter_mut().enumerate() {
        let offset = 0x1000 * (i as u64 + 1);
        let target = PhysAddr(buf.start().0 + offset);
        p.guest_memory
            .fill_pattern(target, u64::from(DMA_LEN), SEED);
        edu.dma_from_device(0, Iova(offset), DMA_LEN, &p.clock)
            .map_err(|e| refused("edu DMA", &e))?;
        let landed = p
            .guest_memory
            .check_pattern(target, u64::from(DMA_LEN), SEED)
            .is_some();
        let drained = iommu::drain(p, backend).map_err(|e| refused("drain", &e))?;
        let fault_sid = drained.first.map(|f| f.sid);
        console::line(format_args!(
            "PROBE bdf={bdf} topology_sid={} landed={} faults={} fault_sid={}",
            iommu::Maybe(*sid),
            u8::from(landed),
            drained.totals.delivered,
            iommu::Maybe(fault_sid)
        ));
        if landed {
            let sep = if landed_list.is_empty() { "" } else { "," };
            let _ = write!(landed_list, "{sep}{bdf}");
        }
        all_accounted &= landed != (drained.totals.delivered > 0);
    }
    backend
        .detach(window_sid)
        .map_err(|e| refused("detach", &e))?;
    let _ = backend.unmap(d, Iova(0), 2 * MIB);
    let _ = backend.destroy_domain(d);
    if let Err(e) = p.guest_memory.free(buf) {
        log::error!("guest memory: free of {buf} refused: {e}");
    }
    let status = if all_accounted {
        Outcome::pass()
    } else {
        Outcome::fail().with("reason", "a DMA neither landed nor faulted")
    };
    Ok(status.with("window_sid", window_sid).with(
        "landed",
        if landed_list.is_empty() {
            "none"
        } else {
            landed_list.as_str()
        },
    ))
}

/// The config's static windows are live from start-up: each `edu` with a window of at least
/// 16 KiB that allows reads and writes reads a patterned 64 bytes at `iova + 0x1000` and
/// writes them back at `iova + 0x3000`; the bytes must be at `pa + 0x3000`, with no fault
/// recorded. Every other `edu` is checked to be refused (its write at IOVA 0x1000 faults).
pub fn static_window(p: &mut Platform) -> Outcome {
    let (mut backend, mut edus) = match devices(p) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let outcome = static_window_body(p, &mut backend, &mut edus).unwrap_or_else(|o| o);
    iommu::print_stats(&backend);
    outcome
}

#[allow(clippy::result_large_err)] // The error is the scenario's final `Outcome`.
fn static_window_body(
    p: &mut Platform,
    backend: &mut Backend,
    edus: &mut [(Bdf, Option<StreamId>, Edu<MmioRegion>)],
) -> Result<Outcome, Outcome> {
    let mut windowed = 0;
    let mut blocked = 0;
    let dma_error = |e: &dyn core::fmt::Display| {
        Outcome::fail()
            .with("reason", "edu DMA error")
            .with("detail", e)
    };
    for (bdf, sid, edu) in edus.iter_mut() {
        let window = p
            .topology
            .windows_of(Device::pci(*bdf))
            .find(|w| w.len >= 16 * KIB && w.access.contains(Access::RW))
            .copied();
        let drain = |p: &Platform, backend: &mut Backend| -> Result<Drained, Outcome> {
            iommu::drain(p, backend).map_err(|e| Outcome::fail().with("reason", e))
        };
        match window {
            Some(w) => {
                let Some(mem) = p.window_memory.as_mut() else {
                    return Err(fail("a static window but no window memory"));
                };
                let src = PhysAddr(w.pa.0 + 0x1000);
                let dst = PhysAddr(w.pa.0 + 0x3000);
                mem.fill_pattern(src, u64::from(DMA_LEN), SEED);
                mem.fill_pattern(dst, u64::from(DMA_LEN), SEED.wrapping_add(1));
                edu.dma_to_device(Iova(w.iova.0 + 0x1000), 0, DMA_LEN, &p.clock)
                    .map_err(|e| dma_error(&e))?;
                edu.dma_from_device(0, Iova(w.iova.0 + 0x3000), DMA_LEN, &p.clock)
                    .map_err(|e| dma_error(&e))?;
                let lands = holds(mem, dst, SEED);
                let d = drain(p, backend)?;
                let ok = lands && d.totals.delivered == 0;
                console::line(format_args!(
                    "CHECK step=static-window-lands ok={} device={} sid={} iova={} pa={} faults={}",
                    u8::from(ok),
                    DeviceName(w.device),
                    iommu::Maybe(*sid),
                    Iova(w.iova.0 + 0x3000),
                    dst,
                    d.totals.delivered
                ));
                if !ok {
                    return Err(Outcome::fail().with("failed_step", "static-window-lands"));
                }
                windowed += 1;
            }
            None if sid.is_some_and(|s| p.is_static_window_sid(s)) => {
                // A group member: its DMA uses its group's window, like the windowed device's.
                console::line(format_args!(
                    "SAY {bdf} shares StreamID {} with a device that has a static window: it uses that window too.",
                    iommu::Maybe(*sid)
                ));
            }
            None => {
                edu.dma_from_device(0, Iova(0x1000), DMA_LEN, &p.clock)
                    .map_err(|e| dma_error(&e))?;
                let d = drain(p, backend)?;
                let ok = d.totals.delivered > 0 && d.first.map(|f| f.sid) == *sid;
                console::line(format_args!(
                    "CHECK step=static-window-others-blocked ok={} bdf={bdf} sid={} faults={} fault_sid={}",
                    u8::from(ok),
                    iommu::Maybe(*sid),
                    d.totals.delivered,
                    iommu::Maybe(d.first.map(|f| f.sid))
                ));
                if !ok {
                    return Err(Outcome::fail().with("failed_step", "static-window-others-blocked"));
                }
                blocked += 1;
            }
        }
    }
    if windowed == 0 {
        return Err(fail(
            "no edu has a static read/write window of at least 16 KiB",
        ));
    }
    // The windows' RAM belongs to their devices: no other domain (a client's VM) may map it.
    for r in p.static_window_ranges() {
        let d = backend
            .create_domain()
            .map_err(|e| Outcome::fail().with("reason", e))?;
        let result = backend.map(d, Iova(0), r.start(), 4 * KIB, Access::RW);
        let refused = matches!(result, Err(smmuv3::BackendError::ReservedMemory { .. }));
        let _ = backend.destroy_domain(d);
        console::line(format_args!(
            "CHECK step=static-window-ram-not-mappable ok={} pa={}",
            u8::from(refused),
            r.start()
        ));
        if !refused {
            return Err(Outcome::fail().with("failed_step", "static-window-ram-not-mappable"));
        }
    }
    Ok(Outcome::pass()
        .with("windowed", windowed)
        .with("blocked", blocked))
}

/// Whether `len` bytes at `pa` hold pattern `seed`.
fn holds(mem: &GuestMemory, pa: PhysAddr, seed: u8) -> bool {
    mem.check_pattern(pa, u64::from(DMA_LEN), seed).is_none()
}
