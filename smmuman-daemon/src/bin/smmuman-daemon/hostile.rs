//! A hostile VMM and its victim (scenario `vmm-hostile`): the memory authority proven by DMA.
//!
//! The hostile VMM has its own `edu` and its own RAM, as the host assigned it. It asks the
//! manager to map everything a malicious client would want its device to reach: the SMMU's own
//! register frame (with it, a DMA can turn translation off), the GIC, the UART, PCI ECAM, the
//! manager's memory, RAM just past the end of its own, and the victim VM's RAM, before and
//! after the victim maps it. Every one must be refused. Then it points its device at the SMMU
//! registers anyway and checks what the DMA brought back. In the control run the host
//! (scenario) has assigned it the SMMU frame: the same map is granted and the same DMA reads
//! SMMU_IDR0, which shows the check is what stops it.

use crate::vmm::{create_with, map_guest_ram, refused_with, window, Ctx, Res, Step, Vmm};
use crate::vmm::{GUEST_RAM_BASE, NOTIFY_PATIENCE};
use core::sync::atomic::{AtomicBool, Ordering};
use iommu_core::{Access, Iova, PhysAddr};
use smmuman_api::{Client, DomainError, MapFlags, Transport};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// I/O addresses the hostile VMM asks for: one 1 MiB slot per target, above its RAM window.
const SLOTS: u64 = GUEST_RAM_BASE + 0x100 * MIB;

/// Host memory the hostile VMM tries to grant its device, and what the manager must answer.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// For the `CHECK` step name.
    pub name: &'static str,
    /// The host address.
    pub pa: PhysAddr,
    /// The refusal expected; `None`: granted (the control run's SMMU frame).
    pub expect: Option<DomainError>,
}

/// What the hostile VMM tries.
#[derive(Clone, Copy, Debug)]
pub struct HostilePlan {
    /// Every target; the first is the SMMU register frame (the DMA goes there).
    pub targets: [Target; 7],
    /// The victim VM's RAM.
    pub victim_ram: PhysAddr,
    /// SMMU_IDR0's value, to recognise a DMA that read the SMMU's registers.
    pub smmu_idr0: u32,
}

/// The hostile VMM tried the victim's RAM before the victim mapped it.
static TRIED_BEFORE: AtomicBool = AtomicBool::new(false);
/// The victim mapped its RAM.
static VICTIM_MAPPED: AtomicBool = AtomicBool::new(false);
/// The hostile VMM is done.
static HOSTILE_DONE: AtomicBool = AtomicBool::new(false);

/// Resets the hand-shakes (before the scenario starts its VMMs).
pub fn reset() {
    for flag in [&TRIED_BEFORE, &VICTIM_MAPPED, &HOSTILE_DONE] {
        flag.store(false, Ordering::SeqCst);
    }
}

/// Yields until `flag` is set (bounded).
fn wait_for(ctx: &Ctx<'_>, flag: &AtomicBool) -> bool {
    for _ in 0..NOTIFY_PATIENCE {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        ctx.y.yield_now();
    }
    false
}

/// The hostile VMM's life.
pub fn hostile<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    vmm: &mut Vmm,
    plan: HostilePlan,
) -> Step {
    let (Some(dev), Some((ram, mem))) = (vmm.device.as_mut(), vmm.ram.as_mut()) else {
        return Err("no-device-or-ram");
    };
    let ram = *ram;
    let obj = create_with(ctx, c, dev.bdf)?;
    // Control: its own RAM is granted.
    map_guest_ram(ctx, c, obj, ram)?;

    let map4k = |c: &mut Client<T>, slot: u64, pa: PhysAddr| -> Step<_> {
        Ok(c.map(
            obj,
            window(SLOTS + slot * MIB, pa, 4 * KIB)?,
            Access::RW,
            MapFlags::empty(),
        ))
    };
    let r = map4k(c, 10, plan.victim_ram)?;
    ctx.check(
        "victim-ram-before-it-maps-refused",
        refused_with(&r, DomainError::NotAssigned) && !VICTIM_MAPPED.load(Ordering::SeqCst),
        format_args!("pa={} {}", plan.victim_ram, Res(&r)),
    )?;
    TRIED_BEFORE.store(true, Ordering::SeqCst);
    ctx.check("victim-has-mapped", wait_for(ctx, &VICTIM_MAPPED), "")?;
    let r = map4k(c, 11, plan.victim_ram)?;
    ctx.check(
        "victim-ram-after-it-maps-refused",
        refused_with(&r, DomainError::NotAssigned),
        format_args!("pa={} {}", plan.victim_ram, Res(&r)),
    )?;
    for (slot, t) in plan.targets.iter().enumerate() {
        let r = map4k(c, slot as u64, t.pa)?;
        let ok = match t.expect {
            Some(e) => refused_with(&r, e),
            None => r.is_ok(),
        };
        ctx.check(t.name, ok, format_args!("pa={} {}", t.pa, Res(&r)))?;
    }

    // Its device reads SMMU_IDR0 through the SMMU frame's slot (4 bytes: QEMU's SMMU answers a
    // 64-bit read of a 32-bit register with 0) and writes it into its own RAM.
    let at = PhysAddr(ram.start().0 + 0x8000);
    mem.fill_pattern(at, 64, 51);
    dev.edu
        .dma_to_device(Iova(SLOTS), 0, 4, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    dev.edu
        .dma_from_device(0, Iova(GUEST_RAM_BASE + 0x8000), 4, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    let mut got = [0u8; 4];
    mem.read_bytes(at, &mut got);
    let read = u32::from_le_bytes(got);
    let reached = read == plan.smmu_idr0;
    let expect_reached = plan.targets[0].expect.is_none();
    ctx.check(
        if expect_reached {
            "dma-reached-smmu-registers"
        } else {
            "dma-to-smmu-registers-blocked"
        },
        reached == expect_reached,
        format_args!(
            "read={read:#010x} smmu_idr0={:#010x} reached={}",
            plan.smmu_idr0,
            u8::from(reached)
        ),
    )?;
    HOSTILE_DONE.store(true, Ordering::SeqCst);
    let r = c.destroy_object(obj);
    ctx.check("destroy", r.is_ok(), Res(&r))
}

/// `edu`'s identification register (QEMU `hw/misc/edu.c`, offset 0x00): version 1.0.
const EDU_ID: u32 = 0x0100_00ed;

/// The victim: maps its RAM only after the hostile VMM tried it, DMAs inside its window
/// (a control that its grant works), reads the peer BAR its config names by DMA (peer-to-peer
/// works where the host allows it), and stays until the hostile VMM is done.
pub fn victim<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    vmm: &mut Vmm,
    peer: Option<PhysAddr>,
) -> Step {
    let (Some(dev), Some((ram, mem))) = (vmm.device.as_mut(), vmm.ram.as_mut()) else {
        return Err("no-device-or-ram");
    };
    let ram = *ram;
    let obj = create_with(ctx, c, dev.bdf)?;
    ctx.check("hostile-tried-first", wait_for(ctx, &TRIED_BEFORE), "")?;
    map_guest_ram(ctx, c, obj, ram)?;
    VICTIM_MAPPED.store(true, Ordering::SeqCst);
    let at = |off: u64| PhysAddr(ram.start().0 + off);
    mem.fill_pattern(at(0x1000), 64, 52);
    dev.edu
        .dma_to_device(Iova(GUEST_RAM_BASE + 0x1000), 0, 64, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    dev.edu
        .dma_from_device(0, Iova(GUEST_RAM_BASE + 0x3000), 64, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    ctx.check(
        "dma-inside-lands",
        mem.check_pattern(at(0x3000), 64, 52).is_none(),
        "",
    )?;
    if let Some(bar) = peer {
        let iova = SLOTS + 0x20 * MIB;
        let r = c.map(
            obj,
            window(iova, bar, 4 * KIB)?,
            Access::READ,
            MapFlags::empty(),
        );
        ctx.check(
            "peer-bar-granted",
            r.is_ok(),
            format_args!("pa={bar} {}", Res(&r)),
        )?;
        mem.fill_pattern(at(0x9000), 64, 53);
        dev.edu
            .dma_to_device(Iova(iova), 0, 4, &ctx.clock)
            .map_err(|_| "edu-dma")?;
        dev.edu
            .dma_from_device(0, Iova(GUEST_RAM_BASE + 0x9000), 4, &ctx.clock)
            .map_err(|_| "edu-dma")?;
        let mut got = [0u8; 4];
        mem.read_bytes(at(0x9000), &mut got);
        let read = u32::from_le_bytes(got);
        ctx.check(
            "peer-bar-dma-reads-its-id",
            read == EDU_ID,
            format_args!("read={read:#010x} edu_id={EDU_ID:#010x}"),
        )?;
    }
    ctx.check("hostile-done", wait_for(ctx, &HOSTILE_DONE), "")?;
    let r = c.destroy_object(obj);
    ctx.check("destroy", r.is_ok(), Res(&r))
}
