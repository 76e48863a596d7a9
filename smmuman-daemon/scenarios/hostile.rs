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
//!
//! Then the device authority: once the victim has released its `edu` (detached it, as a VMM
//! does before it hands the device back or resets it), the hostile VMM attaches that `edu` to
//! its own object, whose window maps its own RAM at the same I/O addresses the victim's guest
//! uses. The manager refuses (`DeviceNotAssigned`: the host never gave it that device), and
//! the victim's still-programmed DMA leaves the hostile VM's RAM untouched. In the control run
//! (`control=device-assigned`) the host assigns the victim's `edu` to the hostile VM instead:
//! the same attach is granted and the same DMA lands in the hostile VM's RAM.

use crate::vmm::{create_with, map_guest_ram, refused_with, window, Ctx, Res, Step, Vmm};
use crate::vmm::{GUEST_RAM_BASE, NOTIFY_PATIENCE};
use core::sync::atomic::{AtomicBool, Ordering};
use iommu_core::{Access, Bdf, Iova, PhysAddr};
use smmuman_api::{Client, DeviceSel, DomainError, MapFlags, Transport};

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
    /// The victim's `edu`, to attach once the victim released it.
    pub victim_device: Bdf,
    /// The refusal expected for it; `None`: granted (the host assigned it to the hostile VM,
    /// the control run).
    pub victim_device_expect: Option<DomainError>,
}

/// What the victim does.
#[derive(Clone, Copy, Debug)]
pub struct VictimPlan {
    /// The peer BAR its config names (its device reads that device's identification register
    /// through it).
    pub peer: Option<PhysAddr>,
    /// Whether the host gave it its `edu` (false in the device control run: the host gave it
    /// to the hostile VM, and the victim only drives its DMA).
    pub owns_device: bool,
}

/// Where, in both VMs' windows, the victim's released `edu` writes: the hostile VM's RAM
/// there is what a device that moved to its object would overwrite.
const DEVICE_PROBE: u64 = 0x10_0000;

/// The hostile VMM tried the victim's RAM before the victim mapped it.
static TRIED_BEFORE: AtomicBool = AtomicBool::new(false);
/// The victim mapped its RAM.
static VICTIM_MAPPED: AtomicBool = AtomicBool::new(false);
/// The hostile VMM is done with memory.
static HOSTILE_DONE: AtomicBool = AtomicBool::new(false);
/// The victim released its `edu`.
static VICTIM_RELEASED: AtomicBool = AtomicBool::new(false);
/// The hostile VMM tried to attach the victim's `edu`.
static DEVICE_TRIED: AtomicBool = AtomicBool::new(false);
/// The victim's `edu` made its DMA after that.
static VICTIM_DMA_DONE: AtomicBool = AtomicBool::new(false);

/// Resets the hand-shakes (before the scenario starts its VMMs).
pub fn reset() {
    for flag in [
        &TRIED_BEFORE,
        &VICTIM_MAPPED,
        &HOSTILE_DONE,
        &VICTIM_RELEASED,
        &DEVICE_TRIED,
        &VICTIM_DMA_DONE,
    ] {
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

/// An operator's op (`list_vms`) sent on the VMM's own channel: the manager's client entry
/// point does not know it (`UnknownOp`), so no VMM reads what the operator sees. The control
/// is the operator's channel, which serves the same op (`tests-qemu/tests/operator.rs`).
fn admin_op_refused<T: Transport>(ctx: &Ctx<'_>, c: &mut Client<T>) -> Step {
    use smmuman_admin_api::client::{decode_reply, encode_request};
    use smmuman_admin_api::{AdminCallError, ListVmsRequest};
    use smmuman_api::wire::MAX_MESSAGE;
    const ID: u32 = 0xad;
    let mut request = [0u8; MAX_MESSAGE];
    let n = encode_request(&ListVmsRequest { from: 0 }, ID, &mut request);
    let mut reply = [0u8; MAX_MESSAGE];
    let r = c
        .transport_mut()
        .call(request.get(..n).unwrap_or(&[]), &mut reply)
        .map_err(AdminCallError::Transport)
        .and_then(|len| decode_reply::<ListVmsRequest>(reply.get(..len).unwrap_or(&[]), ID));
    let refused = matches!(
        r,
        Err(AdminCallError::Protocol(
            smmuman_api::ProtocolError::UnknownOp { .. }
        ))
    );
    match r {
        Ok(_) => ctx.check("admin-op-refused", refused, "served=1"),
        Err(e) => ctx.check("admin-op-refused", refused, format_args!("detail=\"{e}\"")),
    }
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
    admin_op_refused(ctx, c)?;

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

    // Device authority: the victim's edu, released by the victim, attached to this object
    // (whose window maps this VM's RAM where the victim's guest points its device).
    ctx.check(
        "victim-released-its-device",
        wait_for(ctx, &VICTIM_RELEASED),
        "",
    )?;
    let probe = PhysAddr(ram.start().0 + DEVICE_PROBE);
    mem.fill_pattern(probe, 64, 54);
    let r = c.attach(obj, DeviceSel::pci(plan.victim_device));
    let granted = plan.victim_device_expect.is_none();
    let ok = match plan.victim_device_expect {
        Some(e) => refused_with(&r, e),
        None => r.is_ok(),
    };
    ctx.check(
        if granted {
            "victims-device-granted"
        } else {
            "victims-device-refused"
        },
        ok,
        format_args!("device={} {}", plan.victim_device, Res(&r)),
    )?;
    DEVICE_TRIED.store(true, Ordering::SeqCst);
    ctx.check("victim-dma-done", wait_for(ctx, &VICTIM_DMA_DONE), "")?;
    let changed = mem.check_pattern(probe, 64, 54).is_some();
    ctx.check(
        if granted {
            "victims-device-dma-reached-its-ram"
        } else {
            "victims-device-dma-missed-its-ram"
        },
        changed == granted,
        format_args!("pa={probe} changed={}", u8::from(changed)),
    )?;
    let r = c.destroy_object(obj);
    ctx.check("destroy", r.is_ok(), Res(&r))
}

/// `edu`'s identification register (QEMU `hw/misc/edu.c`, offset 0x00): version 1.0.
const EDU_ID: u32 = 0x0100_00ed;

/// The victim: maps its RAM only after the hostile VMM tried it, DMAs inside its window
/// (a control that its grant works), reads the peer BAR its config names by DMA (peer-to-peer
/// works where the host allows it), and once the hostile VMM is done with memory releases its
/// `edu` and, after the hostile VMM tried to take it, DMAs with it again as a guest that still
/// programs its device would.
pub fn victim<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    vmm: &mut Vmm,
    plan: VictimPlan,
) -> Step {
    let (Some(dev), Some((ram, mem))) = (vmm.device.as_mut(), vmm.ram.as_mut()) else {
        return Err("no-device-or-ram");
    };
    let ram = *ram;
    let obj = if plan.owns_device {
        create_with(ctx, c, dev.bdf)?
    } else {
        crate::vmm::create(c)?
    };
    ctx.check("hostile-tried-first", wait_for(ctx, &TRIED_BEFORE), "")?;
    map_guest_ram(ctx, c, obj, ram)?;
    VICTIM_MAPPED.store(true, Ordering::SeqCst);
    if plan.owns_device {
        own_dma(ctx, c, obj, dev, ram, mem, plan.peer)?;
    }
    ctx.check("hostile-done", wait_for(ctx, &HOSTILE_DONE), "")?;
    if plan.owns_device {
        let r = c.detach(obj, DeviceSel::pci(dev.bdf));
        ctx.check("release-own-device", r.is_ok(), Res(&r))?;
    }
    VICTIM_RELEASED.store(true, Ordering::SeqCst);
    ctx.check("hostile-tried-device", wait_for(ctx, &DEVICE_TRIED), "")?;
    // Its guest still programs the device with an address of its window.
    dev.edu
        .dma_from_device(0, Iova(GUEST_RAM_BASE + DEVICE_PROBE), 64, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    VICTIM_DMA_DONE.store(true, Ordering::SeqCst);
    let r = c.destroy_object(obj);
    ctx.check("destroy", r.is_ok(), Res(&r))
}

/// The victim's own DMA: inside its window, and to the peer BAR its config names.
fn own_dma<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    obj: smmuman_api::ObjectId,
    dev: &mut crate::dma_scenarios::Device,
    ram: smmuman_daemon::memory::PhysRange,
    mem: &mut smmuman_daemon::memory::GuestMemory,
    peer: Option<PhysAddr>,
) -> Step {
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
    Ok(())
}
