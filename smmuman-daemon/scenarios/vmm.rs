//! A "qvm-like" client: a VMM that starts a VM with one pass-through `edu`, in its own execution
//! context. It knows its VM's configuration, its guest RAM and its device, and reaches the
//! manager only through `smmuman_api::Client` over its mailbox: it never calls the manager's
//! code or reads its state.
//!
//! It applies the client rules with `VmmDmaPolicy` before starting, then (depending on its
//! [`Plan`]) drives its device's DMA the way a guest driver would and checks what the manager
//! and the SMMU let through. Each check prints `CHECK vm=<name> step=<step> ok=0|1 ...`.

use crate::dma_scenarios::Device;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use iommu_core::{Access, Bdf, Direction, FaultReason, Iova, PhysAddr, StreamId};
use smmuman_api::{
    CallError, Client, Decision, DeviceSel, DmaWindow, DomainError, FaultBatch, FaultRecord,
    IovaSpan, LookupDeviceReply, MapFlags, ObjectFlags, ObjectId, PassThrough, PciMatch, Transport,
    VmDescription, VmmDmaPolicy,
};
use smmuman_daemon::hyp::tasks::Yielder;
use smmuman_daemon::mailbox::{Mailbox, MailboxTransport};
use smmuman_daemon::manager_task::MAILBOXES;
use smmuman_daemon::memory::{GuestMemory, PhysRange};
use smmuman_daemon::runtime::clock::GenericTimer;
use smmuman_daemon::runtime::console;
use smmuman_server::Grant;
use spin::Mutex;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Where the VM's RAM starts in guest-physical space (the IOVA its devices use).
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;
/// The DMA window: the first 2 MiB of guest RAM.
pub const WINDOW: u64 = 2 * MIB;
/// Bytes per test DMA (16 fault records when refused: QEMU records one per 4 bytes).
const DMA_LEN: u32 = 64;
/// Scheduling rounds a VMM waits for a notification before giving up.
pub(crate) const NOTIFY_PATIENCE: u32 = 1000;

/// Whether a scripted VMM's object holds its group (set by [`group`] from its attach to its
/// destroy): how a trespasser knows it tries while the owner holds the device, now that the
/// manager does not tell a client who holds a device it was not given.
static GROUP_HELD: AtomicBool = AtomicBool::new(false);

/// What the VMM does once it may start.
// The hostile plan (seven targets) is larger than the others; a plan is built once per VMM
// and moved into its task, and there is no heap to box it in.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// Only apply the start-up rules and report.
    StartOnly,
    /// The VM's whole DMA life: window, DMA inside and outside, its own faults, refused
    /// trespasses, unmap, exit.
    Life {
        /// Offset past the window its rogue DMA uses (so two VMs' faults differ).
        rogue_offset: u64,
        /// Another VM's device, to try (and fail) to take.
        foreign_device: Option<Bdf>,
        /// Another VM's RAM, to try (and fail) to map.
        foreign_ram: Option<PhysAddr>,
        /// Destroy the VM object before exiting (false: just go away).
        clean_exit: bool,
    },
    /// Create a VM object, wait until the manager says another object owns `device`, then try
    /// to attach it: the manager must refuse with one of `expect`.
    Trespass {
        /// What to try to take.
        device: DeviceSel,
        /// The refusals that are right.
        expect: [DomainError; 2],
    },
    /// Select devices the other two ways: by raw StreamID (refused where the board config does
    /// not allow it; where it does, the device's DMA then uses the window) and by MMIO base.
    Selectors {
        /// A StreamID the config does not let clients select raw.
        raw_refused: StreamId,
        /// A platform device's register base.
        mmio: PhysAddr,
    },
    /// A device that shares its StreamID with others: attaching it alone is refused, attaching
    /// the whole group works and every member's DMA then uses the VM's window.
    Group {
        /// The whole group, as a wildcard.
        whole: PciMatch,
        /// The other members' drivers, to prove their DMA lands too.
        others: usize,
    },
    /// A hostile VMM: asks for host memory that is not its VM's (`crate::hostile`).
    Hostile(crate::hostile::HostilePlan),
    /// Many windows in batches (`crate::many`).
    Many,
    /// The hostile VMM's victim (`crate::hostile`).
    Victim(crate::hostile::VictimPlan),
    /// The VMM written in C (`crate::c_vmm`): its own client rules, window, DMA, faults, unmap,
    /// through libsmmu.
    C,
}

/// One VMM to run.
pub struct Vmm {
    /// The VM's name.
    pub name: &'static str,
    /// Guest-physical == host-physical.
    pub unity: bool,
    /// The pass-through device in the VM's configuration.
    pub pass_through: Bdf,
    /// Its driver, when the VMM will DMA with it (its own StreamID noted).
    pub device: Option<Device>,
    /// More devices of the same group (for [`Plan::Group`]).
    pub group_members: heapless::Vec<Device, 3>,
    /// The VM's RAM (4 MiB: the first 2 MiB are its DMA window) and the VMM's view of it.
    pub ram: Option<(PhysRange, GuestMemory)>,
    /// What the host lets this VMM grant its devices (its VM's RAM, shared RAM, peer BARs):
    /// handed to the manager before the VMM starts.
    pub assignment: heapless::Vec<Grant, MAX_GRANTS>,
    /// The devices the host assigns it with that memory (its VM's pass-through devices): the
    /// manager refuses its attach of any other.
    pub devices: heapless::Vec<DeviceSel, MAX_DEVICES>,
    /// What it does.
    pub plan: Plan,
}

pub use smmuman_daemon::bringup::platform::MAX_GRANTS;
/// Most devices the host assigns one scripted VMM.
pub const MAX_DEVICES: usize = 4;

/// How a VMM ended.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The VM's name.
    pub name: &'static str,
    /// What the start-up rule decided: `start`, `start-unisolated` or `refuse`.
    pub decision: &'static str,
    /// Every check passed.
    pub ok: bool,
    /// The first check that failed.
    pub failed_step: Option<&'static str>,
}

static HANDED: Mutex<[Option<Vmm>; smmuman_daemon::manager_task::MAX_CLIENTS]> =
    Mutex::new([const { None }; smmuman_daemon::manager_task::MAX_CLIENTS]);
static VERDICTS: Mutex<[Option<Verdict>; smmuman_daemon::manager_task::MAX_CLIENTS]> =
    Mutex::new([const { None }; smmuman_daemon::manager_task::MAX_CLIENTS]);

/// Gives `vmm` to client task `index` (its stack takes it over when it starts).
pub fn hand_over(index: usize, vmm: Vmm) {
    let mut h = HANDED.lock();
    if let Some(slot) = h.get_mut(index) {
        *slot = Some(vmm);
    }
    if let Some(slot) = VERDICTS.lock().get_mut(index) {
        *slot = None;
    }
}

/// The verdicts of clients `0..n` (a client that never reported counts as failed).
pub fn verdicts(n: usize) -> heapless::Vec<Verdict, { smmuman_daemon::manager_task::MAX_CLIENTS }> {
    let mut v = VERDICTS.lock();
    v.iter_mut()
        .take(n)
        .map(|slot| {
            slot.take().unwrap_or(Verdict {
                name: "?",
                decision: "none",
                ok: false,
                failed_step: Some("never-finished"),
            })
        })
        .collect()
}

/// A check failed: the step's name.
pub(crate) type Step<T = ()> = Result<T, &'static str>;

pub(crate) struct Ctx<'y> {
    name: &'static str,
    pub y: &'y Yielder,
    mailbox: &'static Mailbox,
    pub clock: GenericTimer,
}

impl Ctx<'_> {
    pub fn check(&self, step: &'static str, ok: bool, detail: impl fmt::Display) -> Step {
        console::line(format_args!(
            "CHECK vm={} step={step} ok={} {detail}",
            self.name,
            u8::from(ok)
        ));
        if ok {
            Ok(())
        } else {
            Err(step)
        }
    }

    fn say(&self, args: fmt::Arguments<'_>) {
        console::line(format_args!("SAY [{}] {args}", self.name));
    }

    /// Waits (yielding) until the manager notifies this client.
    fn wait_notification(&self) -> bool {
        for _ in 0..NOTIFY_PATIENCE {
            if self.mailbox.take_notifications() > 0 {
                return true;
            }
            self.y.yield_now();
        }
        false
    }
}

/// `Display` for a call's outcome.
pub(crate) struct Res<'a, T>(pub &'a Result<T, CallError>);

impl<T> fmt::Display for Res<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(_) => f.write_str("result=ok"),
            Err(e) => write!(f, "result=\"{e}\""),
        }
    }
}

/// `Display` for a `lookup_device` answer (its counts, or the error).
struct Looked<'a>(&'a Result<LookupDeviceReply, CallError>);

impl fmt::Display for Looked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(l) => write!(
                f,
                "devices={} not_assigned={} free={} mine={} others={}",
                l.devices, l.not_assigned, l.free, l.mine, l.others
            ),
            Err(e) => write!(f, "result=\"{e}\""),
        }
    }
}

pub(crate) fn refused_with<T>(r: &Result<T, CallError>, error: DomainError) -> bool {
    matches!(r, Err(CallError::Refused(x)) if x.error == error)
}

/// Entry of a client task: takes its VMM from [`hand_over`] and runs it.
pub fn main(y: &Yielder, index: usize) {
    let Some(vmm) = HANDED.lock().get_mut(index).and_then(Option::take) else {
        return;
    };
    let mailbox = &MAILBOXES[index];
    let ctx = Ctx {
        name: vmm.name,
        y,
        mailbox,
        clock: GenericTimer::new(),
    };
    let verdict = if matches!(vmm.plan, Plan::C) {
        crate::c_vmm::run(&ctx, mailbox, vmm)
    } else {
        run(&ctx, vmm)
    };
    console::line(format_args!(
        "VMM vm={} exit decision={} ok={} failed_step={}",
        verdict.name,
        verdict.decision,
        u8::from(verdict.ok),
        verdict.failed_step.unwrap_or("none")
    ));
    if let Some(slot) = VERDICTS.lock().get_mut(index) {
        *slot = Some(verdict);
    }
    // The VMM process ends: its channel closes, and the manager cleans up after it.
    mailbox.close();
}

fn run(ctx: &Ctx<'_>, mut vmm: Vmm) -> Verdict {
    let transport = MailboxTransport::new(ctx.mailbox, || ctx.y.yield_now());
    let mut client = match Client::connect(transport) {
        Ok(c) => {
            console::line(format_args!(
                "VMM vm={} connect=ok client={}",
                vmm.name,
                c.id()
            ));
            Some(c)
        }
        Err(e) => {
            console::line(format_args!(
                "VMM vm={} connect=error detail=\"{e}\"",
                vmm.name
            ));
            None
        }
    };
    let devices = [PassThrough {
        name: "edu",
        device: DeviceSel::pci(vmm.pass_through),
        dma: true,
    }];
    let vm = VmDescription {
        name: vmm.name,
        unity_mapped: vmm.unity,
        devices: &devices,
    };
    let decision = VmmDmaPolicy::assess(&vm, client.as_mut());
    let kind = match decision {
        Decision::Start => "start",
        Decision::StartUnisolated { .. } => "start-unisolated",
        Decision::Refuse { .. } => "refuse",
    };
    console::line(format_args!(
        "VMM vm={} decision={kind} unity={} message=\"{decision}\"",
        vmm.name,
        u8::from(vmm.unity)
    ));
    let mut verdict = Verdict {
        name: vmm.name,
        decision: kind,
        ok: true,
        failed_step: None,
    };
    match decision {
        Decision::Refuse { .. } => {
            ctx.say(format_args!("refusing to start, exiting: {decision}"));
            return verdict;
        }
        Decision::StartUnisolated { .. } => {
            log::warn!("!!! {decision}");
            console::line(format_args!("VMM vm={} started=1 isolated=0", vmm.name));
            return verdict;
        }
        Decision::Start => console::line(format_args!("VMM vm={} started=1 isolated=1", vmm.name)),
    }
    let result = match (vmm.plan, client.as_mut()) {
        (Plan::StartOnly, _) => Ok(()),
        (plan @ Plan::Life { .. }, Some(c)) => life(ctx, c, &mut vmm, plan),
        (Plan::Group { whole, others }, Some(c)) => group(ctx, c, &mut vmm, whole, others),
        (Plan::Selectors { raw_refused, mmio }, Some(c)) => {
            selectors(ctx, c, &mut vmm, raw_refused, mmio)
        }
        (Plan::Trespass { device, expect }, Some(c)) => trespass(ctx, c, device, expect),
        (Plan::Hostile(plan), Some(c)) => crate::hostile::hostile(ctx, c, &mut vmm, plan),
        (Plan::Victim(plan), Some(c)) => crate::hostile::victim(ctx, c, &mut vmm, plan),
        (Plan::Many, Some(c)) => crate::many::many(ctx, c, &mut vmm),
        (Plan::C, _) => Err("c-vmm-in-rust"),
        (_, None) => Err("no-manager"),
    };
    if let Err(step) = result {
        verdict.ok = false;
        verdict.failed_step = Some(step);
    }
    verdict
}

/// Every fault record of `object`, oldest first (at most 64).
fn read_all<T: Transport>(
    c: &mut Client<T>,
    object: ObjectId,
) -> Result<heapless::Vec<FaultRecord, 64>, CallError> {
    let mut all = heapless::Vec::new();
    for _ in 0..16 {
        let page = c.read_faults(object, FaultBatch::PAGE)?.page;
        for r in page.records() {
            let _ = all.push(*r);
        }
        if page.remaining() == 0 {
            break;
        }
    }
    Ok(all)
}

/// Whether every record is a translation fault of `sid` in `[addr, addr + len)`.
fn all_mine(records: &[FaultRecord], sid: StreamId, addr: u64, len: u64, dir: Direction) -> bool {
    !records.is_empty()
        && records.iter().all(|r| {
            r.sid == sid
                && (addr..addr + len).contains(&r.addr.0)
                && r.dir == Some(dir)
                && r.reason == FaultReason::Translation
        })
}

pub(crate) fn window(iova: u64, pa: PhysAddr, len: u64) -> Step<DmaWindow> {
    DmaWindow::new(Iova(iova), pa, len).map_err(|_| "bad-window")
}

/// A new VM object for this VMM.
pub(crate) fn create<T: Transport>(c: &mut Client<T>) -> Step<ObjectId> {
    c.create_object(ObjectFlags::empty())
        .map(|r| r.object)
        .map_err(|_| "create-object")
}

/// A new VM object for this VMM with its own device attached (`CHECK attach-own-device`).
pub(crate) fn create_with<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    bdf: Bdf,
) -> Step<ObjectId> {
    let obj = create(c)?;
    let r = c.attach(obj, DeviceSel::pci(bdf));
    ctx.check("attach-own-device", r.is_ok(), Res(&r))?;
    Ok(obj)
}

/// Maps the first [`WINDOW`] bytes of the VM's RAM at [`GUEST_RAM_BASE`], read/write.
pub(crate) fn map_guest_ram<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    obj: ObjectId,
    ram: PhysRange,
) -> Step {
    let mapped = c.map(
        obj,
        window(GUEST_RAM_BASE, ram.start(), WINDOW)?,
        Access::RW,
        MapFlags::empty(),
    );
    ctx.check("map-guest-ram", mapped.is_ok(), Res(&mapped))
}

fn life<T: Transport>(ctx: &Ctx<'_>, c: &mut Client<T>, vmm: &mut Vmm, plan: Plan) -> Step {
    let Plan::Life {
        rogue_offset,
        foreign_device,
        foreign_ram,
        clean_exit,
    } = plan
    else {
        return Err("wrong-plan");
    };
    let (Some(dev), Some((ram, mem))) = (vmm.device.as_mut(), vmm.ram.as_mut()) else {
        return Err("no-device-or-ram");
    };
    let ram = *ram;
    let obj = create(c)?;
    let attached = c.attach(obj, DeviceSel::pci(dev.bdf));
    ctx.check(
        "attach-own-device",
        matches!(attached, Ok(r) if r.devices == 1),
        Res(&attached),
    )?;
    map_guest_ram(ctx, c, obj, ram)?;
    ctx.say(format_args!(
        "its edu ({}, StreamID {}) may DMA to guest-physical {:#x}..+2 MiB = host {}",
        dev.bdf,
        dev.sid,
        GUEST_RAM_BASE,
        ram.start()
    ));
    let armed = c.arm_notify(obj);
    ctx.check("arm-notify", armed.is_ok(), Res(&armed))?;

    // Trespasses the manager refuses (tried while the other VM surely holds its window: both
    // VMMs advance one request per round).
    if let Some(other) = foreign_device {
        // Not Busy: the host did not give it that device, whoever holds it.
        let r = c.attach(obj, DeviceSel::pci(other));
        ctx.check(
            "other-vms-device-refused",
            refused_with(&r, DomainError::DeviceNotAssigned),
            Res(&r),
        )?;
    }
    if let Some(pa) = foreign_ram {
        let r = c.map(
            obj,
            window(GUEST_RAM_BASE + 8 * MIB, pa, 4 * KIB)?,
            Access::RW,
            MapFlags::empty(),
        );
        ctx.check(
            "other-vms-ram-refused",
            refused_with(&r, DomainError::NotAssigned),
            Res(&r),
        )?;
    }
    let manager_memory = crate::clients::manager_memory();
    let r = c.map(
        obj,
        window(GUEST_RAM_BASE + 16 * MIB, manager_memory, 4 * KIB)?,
        Access::RW,
        MapFlags::empty(),
    );
    ctx.check(
        "manager-memory-refused",
        refused_with(&r, DomainError::NotOwned),
        Res(&r),
    )?;

    // Inside the window: the device reads guest RAM and writes it back elsewhere.
    let at = |off: u64| PhysAddr(ram.start().0 + off);
    mem.fill_pattern(at(0x1000), u64::from(DMA_LEN), 21);
    dev.edu
        .dma_to_device(Iova(GUEST_RAM_BASE + 0x1000), 0, DMA_LEN, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    dev.edu
        .dma_from_device(0, Iova(GUEST_RAM_BASE + 0x3000), DMA_LEN, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    let landed = mem.check_pattern(at(0x3000), u64::from(DMA_LEN), 21);
    ctx.check(
        "dma-inside-lands",
        landed.is_none(),
        format_args!("pa={}", at(0x3000)),
    )?;

    // Outside: just past the window, where the rest of the VM's RAM is not granted.
    let rogue = GUEST_RAM_BASE + WINDOW + rogue_offset;
    mem.fill_pattern(at(WINDOW), 2 * MIB, 22);
    dev.edu
        .dma_from_device(0, Iova(rogue), DMA_LEN, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    ctx.check(
        "dma-outside-blocked",
        mem.check_pattern(at(WINDOW), 2 * MIB, 22).is_none(),
        format_args!("iova={:#x}", rogue),
    )?;
    let notified = ctx.wait_notification();
    ctx.check("fault-notified", notified, "")?;
    let faults = read_all(c, obj).map_err(|_| "read-faults")?;
    ctx.check(
        "reads-only-its-own-faults",
        faults.len() == (DMA_LEN / 4) as usize
            && all_mine(
                &faults,
                dev.sid,
                rogue,
                u64::from(DMA_LEN),
                Direction::Write,
            ),
        format_args!(
            "records={} first_sid={} first_addr={} first_seq={}",
            faults.len(),
            faults.first().map_or(StreamId(u32::MAX), |r| r.sid),
            faults.first().map_or(Iova(0), |r| r.addr),
            faults.first().map_or(0, |r| r.seq)
        ),
    )?;

    // Unmap: the access that worked is gone.
    let unmapped = c.unmap(
        obj,
        IovaSpan::new(Iova(GUEST_RAM_BASE), WINDOW).map_err(|_| "bad-span")?,
    );
    ctx.check(
        "unmap",
        matches!(unmapped, Ok(r) if r.bytes == WINDOW),
        Res(&unmapped),
    )?;
    mem.fill_pattern(at(0x3000), 4 * KIB, 23);
    dev.edu
        .dma_from_device(0, Iova(GUEST_RAM_BASE + 0x3000), DMA_LEN, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    ctx.check(
        "after-unmap-blocked",
        mem.check_pattern(at(0x3000), 4 * KIB, 23).is_none(),
        "",
    )?;
    ctx.wait_notification();
    let faults = read_all(c, obj).map_err(|_| "read-faults")?;
    ctx.check(
        "after-unmap-recorded",
        all_mine(
            &faults,
            dev.sid,
            GUEST_RAM_BASE + 0x3000,
            u64::from(DMA_LEN),
            Direction::Write,
        ),
        format_args!("records={}", faults.len()),
    )?;

    if clean_exit {
        let destroyed = c.destroy_object(obj);
        ctx.check("destroy", destroyed.is_ok(), Res(&destroyed))?;
        let looked = c.lookup_device(DeviceSel::pci(dev.bdf));
        ctx.check(
            "device-free-after-destroy",
            matches!(looked, Ok(r) if r.free == 1 && r.mine == 0),
            Res(&looked),
        )?;
        ctx.say(format_args!("destroyed its VM object and exits"));
    } else {
        ctx.say(format_args!(
            "exits without cleaning up: the manager must do it"
        ));
    }
    Ok(())
}

fn selectors<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    vmm: &mut Vmm,
    raw_refused: StreamId,
    mmio: PhysAddr,
) -> Step {
    let (Some(dev), Some((ram, mem))) = (vmm.device.as_mut(), vmm.ram.as_mut()) else {
        return Err("no-device-or-ram");
    };
    let ram = *ram;
    let obj = create(c)?;
    let r = c.attach(obj, DeviceSel::Sid(raw_refused));
    ctx.check(
        "raw-sid-refused-where-not-allowed",
        refused_with(&r, DomainError::Unsupported),
        format_args!("sid={raw_refused} {}", Res(&r)),
    )?;
    let r = c.attach(obj, DeviceSel::Sid(dev.sid));
    ctx.check(
        "attach-by-raw-sid",
        matches!(r, Ok(a) if a.devices == 1),
        format_args!("sid={} {}", dev.sid, Res(&r)),
    )?;
    map_guest_ram(ctx, c, obj, ram)?;
    let at = |off: u64| PhysAddr(ram.start().0 + off);
    mem.fill_pattern(at(0x1000), u64::from(DMA_LEN), 41);
    dev.edu
        .dma_to_device(Iova(GUEST_RAM_BASE + 0x1000), 0, DMA_LEN, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    dev.edu
        .dma_from_device(0, Iova(GUEST_RAM_BASE + 0x5000), DMA_LEN, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    ctx.check(
        "raw-sid-device-dma-lands",
        mem.check_pattern(at(0x5000), u64::from(DMA_LEN), 41)
            .is_none(),
        format_args!("bdf={} sid={}", dev.bdf, dev.sid),
    )?;
    let r = c.attach(obj, DeviceSel::Mmio(mmio));
    ctx.check(
        "attach-mmio-device",
        matches!(r, Ok(a) if a.devices == 1),
        format_args!("base={mmio} {}", Res(&r)),
    )?;
    let destroyed = c.destroy_object(obj);
    ctx.check("destroy", destroyed.is_ok(), Res(&destroyed))
}

fn trespass<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    device: DeviceSel,
    expect: [DomainError; 2],
) -> Step {
    let obj = create(c)?;
    let held_before = GROUP_HELD.load(Ordering::Relaxed);
    let before = c.lookup_device(device);
    // Wait (yielding) until the other VM's object holds the device.
    let mut owned = false;
    for _ in 0..NOTIFY_PATIENCE {
        if GROUP_HELD.load(Ordering::Relaxed) {
            owned = true;
            break;
        }
        ctx.y.yield_now();
    }
    ctx.check(
        "another-vm-owns-it",
        owned,
        format_args!("device=\"{device}\""),
    )?;
    // The manager says the device exists and is not this VM's, and nothing else: the same
    // answer while the other VM holds it as before.
    let during = c.lookup_device(device);
    let tells_nothing = matches!((before, during), (Ok(b), Ok(d))
        if b == d && d.devices > 0 && d.not_assigned == d.devices
            && d.free == 0 && d.mine == 0 && d.others == 0);
    ctx.check(
        "lookup-tells-nothing-about-the-holder",
        tells_nothing,
        format_args!(
            "device=\"{device}\" held_before={} {}",
            u8::from(held_before),
            Looked(&during)
        ),
    )?;
    let r = c.attach(obj, device);
    ctx.check(
        "take-part-of-anothers-group-refused",
        expect.iter().any(|e| refused_with(&r, *e)),
        format_args!("device=\"{device}\" {}", Res(&r)),
    )?;
    let destroyed = c.destroy_object(obj);
    ctx.check("destroy", destroyed.is_ok(), Res(&destroyed))
}

fn group<T: Transport>(
    ctx: &Ctx<'_>,
    c: &mut Client<T>,
    vmm: &mut Vmm,
    whole: PciMatch,
    others: usize,
) -> Step {
    let (Some(dev), Some((ram, mem))) = (vmm.device.as_mut(), vmm.ram.as_mut()) else {
        return Err("no-device-or-ram");
    };
    let ram = *ram;
    let obj = create(c)?;
    let part = c.attach(obj, DeviceSel::pci(dev.bdf));
    ctx.check(
        "attach-part-of-group-refused",
        refused_with(&part, DomainError::GroupSplit),
        Res(&part),
    )?;
    let all = c.attach(obj, DeviceSel::Pci(whole));
    ctx.check(
        "attach-whole-group",
        matches!(all, Ok(r) if usize::from(r.devices) == others + 1 && r.groups == 1),
        Res(&all),
    )?;
    GROUP_HELD.store(true, Ordering::Relaxed);
    map_guest_ram(ctx, c, obj, ram)?;
    let at = |off: u64| PhysAddr(ram.start().0 + off);
    mem.fill_pattern(at(0x1000), u64::from(DMA_LEN), 31);
    let mut members = heapless::Vec::<&mut Device, 4>::new();
    let _ = members.push(dev);
    for m in vmm.group_members.iter_mut() {
        let _ = members.push(m);
    }
    for (i, m) in members.iter_mut().enumerate() {
        let dst = 0x10_0000 + i as u64 * 0x1000;
        m.edu
            .dma_to_device(Iova(GUEST_RAM_BASE + 0x1000), 0, DMA_LEN, &ctx.clock)
            .map_err(|_| "edu-dma")?;
        m.edu
            .dma_from_device(0, Iova(GUEST_RAM_BASE + dst), DMA_LEN, &ctx.clock)
            .map_err(|_| "edu-dma")?;
        ctx.check(
            "group-member-dma-lands",
            mem.check_pattern(at(dst), u64::from(DMA_LEN), 31).is_none(),
            format_args!("bdf={} sid={}", m.bdf, m.sid),
        )?;
    }
    // Keep the VM running a while (other VMMs act meanwhile), then shut it down.
    for _ in 0..16 {
        ctx.y.yield_now();
    }
    GROUP_HELD.store(false, Ordering::Relaxed);
    let destroyed = c.destroy_object(obj);
    ctx.check("destroy", destroyed.is_ok(), Res(&destroyed))
}
