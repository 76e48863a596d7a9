//! The manager over the VT-d backend and its clients, each reaching it only through
//! `smmuman_api::Client` over the image's direct transport ([`smmuman_x86::direct::Direct`]):
//! the same manager, client library, authority model and client rules as above the SMMUv3.
//!
//! * `vms`: two clients, each with a VM object, its own edu attached and its own 2 MiB window
//!   at the same IOVA onto different host RAM the host assigned it (`Manager::assign`). Each
//!   edu's DMA lands in its own RAM only; each one's DMA past its window is refused, recorded
//!   with its source-id, address and direction, and read back by its client alone
//!   (`read_faults`; the other gets nothing, and `NotFound` for the other's object). Then
//!   client 2 goes away without cleaning up: its edu is back in deny (its DMA refused, the
//!   record unclaimed) while client 1's window still lands (the control).
//! * `vmm-rules`: `VmmDmaPolicy` with no manager (a DMA VM refuses to start, a unity VM starts
//!   with the warning) and with one that does not know a device (refused; unity: warned);
//!   control: a known device starts isolated.
//! * `vmm-hostile`: a client asks to map the VT-d registers, the image's own memory, the other
//!   client's RAM and RAM assigned shared without `SHARED`: each refused; its edu's DMA at the
//!   IOVA it wanted is refused and recorded; attaching the other edu, which the host did not
//!   give it, is refused (`DeviceNotAssigned`). Control: a client the host assigned the VT-d
//!   frame (as a peer BAR) and that edu gets the same map and attach.
//! * `mmio-refused`: a platform (MMIO) device in the manager's table (the I/O APIC the DMAR
//!   scopes, as a board config could state it) cannot be attached on VT-d (`Unsupported`,
//!   value = its base): the unit cannot tell platform devices apart. Control: a PCI edu
//!   attaches.

// A failing step returns the `RESULT` record it becomes.
#![allow(clippy::result_large_err)]

use crate::host::{self, Mgr};
use crate::scenarios::{check, Rig, Step, DMA_LEN, SUPERPAGE, WINDOW_IOVA};
use crate::{console, ram};
use core::cell::RefCell;
use core::fmt;
use iommu_core::{Access, Bdf, Direction, Iova, PhysAddr, StreamId};
use smmuman_api::{
    CallError, Client, ClientId, DeviceSel, DmaWindow, DomainError, FaultBatch, FaultRecord,
    MapFlags, NoManager, ObjectFlags, ObjectId, PassThrough, VmDescription, VmmDmaPolicy,
};
use smmuman_daemon::report::Outcome;
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, PhysRange};
use smmuman_x86::direct::Direct;
use vtd::dmar::{Dmar, ScopeType};

type Conn<'m> = Client<Direct<'m, host::Backend>>;

/// The VT-d unit's register frame (QEMU's DRHD), for the hostile maps.
fn vtd_frame(r: &Rig<'_>) -> PhysAddr {
    r.plan.register_base
}

/// Hands the backend to a new manager.
pub(crate) fn manager(r: &mut Rig<'_>, extra: &[DeviceEntry]) -> Step<RefCell<Mgr>> {
    let backend = r
        .backend
        .take()
        .ok_or_else(|| Outcome::fail().with("reason", "no backend"))?;
    host::start(backend, &r.plan, &r.limits, extra).map(RefCell::new)
}

/// The host's assignment for `client`: its memory and its devices (`Manager::assign`).
fn assign(
    m: &RefCell<Mgr>,
    client: ClientId,
    name: &str,
    grants: &[Grant],
    devices: &[DeviceSel],
) -> Step {
    let r = m.borrow_mut().assign(client, grants, devices);
    match r {
        Ok(()) => {
            console::line(format_args!(
                "ASSIGN vm={name} client={client} grants={} devices={}",
                grants.len(),
                devices.len()
            ));
            for g in grants {
                console::line(format_args!("ASSIGN_GRANT vm={name} grant=\"{g}\""));
            }
            for d in devices {
                console::line(format_args!("ASSIGN_DEVICE vm={name} device=\"{d}\""));
            }
            Ok(())
        }
        Err(e) => Err(Outcome::fail()
            .with("reason", "assignment refused")
            .with("detail", e)),
    }
}

fn connect<'m>(m: &'m RefCell<Mgr>, client: ClientId, name: &str) -> Step<Conn<'m>> {
    let c = Client::connect(Direct::new(m, client, host::now));
    let ok = c.is_ok();
    console::line(format_args!(
        "VMM vm={name} connect={} client={client}",
        if ok { "ok" } else { "error" }
    ));
    c.map_err(|e| Outcome::fail().with("reason", "connect").with("detail", e))
}

/// Displays a call's result in a `CHECK` record.
struct Res<'a, T>(&'a Result<T, CallError>);

impl<T> fmt::Display for Res<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(_) => f.write_str("result=ok"),
            Err(CallError::Refused(r)) => {
                write!(f, "result=refused error={:?} value={:#x}", r.error, r.value)
            }
            Err(e) => write!(f, "result=error detail=\"{e}\""),
        }
    }
}

fn refused_with<T>(r: &Result<T, CallError>, e: DomainError) -> bool {
    matches!(r, Err(CallError::Refused(x)) if x.error == e)
}

fn call<T>(step: &str, r: Result<T, CallError>) -> Step<T> {
    r.map_err(|e| Outcome::fail().with("failed_step", step).with("detail", e))
}

fn window(iova: u64, pa: PhysAddr, len: u64) -> Step<DmaWindow> {
    DmaWindow::new(Iova(iova), pa, len).map_err(|_| Outcome::fail().with("reason", "bad window"))
}

/// Every fault record of `object` the client can read (at most 32).
fn read_all(
    c: &mut Conn<'_>,
    object: ObjectId,
) -> Result<heapless::Vec<FaultRecord, 32>, CallError> {
    let mut all = heapless::Vec::new();
    for _ in 0..8 {
        let page = c.read_faults(object, FaultBatch::PAGE)?.page;
        for rec in page.records() {
            let _ = all.push(*rec);
        }
        if page.remaining() == 0 {
            break;
        }
    }
    Ok(all)
}

fn print_faults(vm: &str, records: &[FaultRecord]) {
    for f in records {
        console::line(format_args!(
            "CLIENT_FAULT vm={vm} seq={} sid={:#06x} addr={} dir={} reason={:?} code={:#04x}",
            f.seq,
            f.sid.0,
            f.addr,
            match f.dir {
                Some(Direction::Read) => "read",
                Some(Direction::Write) => "write",
                None => "none",
            },
            f.reason,
            f.code
        ));
    }
}

/// One VM of `vms`: its client, object, edu and RAM.
pub(crate) struct Vm<'m> {
    pub name: &'static str,
    pub client: Conn<'m>,
    pub object: ObjectId,
    pub edu: usize,
    pub bdf: Bdf,
    pub sid: StreamId,
    pub ram: PhysRange,
    pub pattern: u8,
}

/// A client with a VM object, edu `index` attached and a 2 MiB window at `WINDOW_IOVA` onto
/// host RAM the host assigned it.
pub(crate) fn start_vm<'m>(
    r: &mut Rig<'_>,
    m: &'m RefCell<Mgr>,
    index: usize,
    name: &'static str,
    pattern: u8,
) -> Step<Vm<'m>> {
    let ram = r
        .ram
        .take(1)
        .ok_or_else(|| Outcome::fail().with("reason", "no host RAM"))?;
    let client_id = ClientId(index as u32 + 1);
    let (bdf, sid) = r
        .edus
        .get(index)
        .map(|d| (d.bdf, d.sid))
        .ok_or_else(|| Outcome::fail().with("reason", "needs two edus (qemu.args)"))?;
    assign(
        m,
        client_id,
        name,
        &[Grant {
            range: ram,
            kind: GrantKind::Ram,
        }],
        &[DeviceSel::pci(bdf)],
    )?;
    let mut client = connect(m, client_id, name)?;
    let object = call("create-object", client.create_object(ObjectFlags::empty()))?.object;
    let a = client.attach(object, DeviceSel::pci(bdf));
    check(
        &step(name, "attach-own-edu"),
        matches!(a, Ok(x) if x.devices == 1),
        format_args!("vm={name} bdf={bdf} {}", Res(&a)),
    )?;
    let w = client.map(
        object,
        window(WINDOW_IOVA, ram.start, SUPERPAGE)?,
        Access::RW,
        MapFlags::empty(),
    );
    check(
        &step(name, "map-own-ram"),
        w.is_ok(),
        format_args!(
            "vm={name} iova={WINDOW_IOVA:#018x} pa={} size={SUPERPAGE:#x} {}",
            ram.start,
            Res(&w)
        ),
    )?;
    console::line(format_args!(
        "VM vm={name} client={client_id} object={} edu={bdf} sid={:#06x} iova={WINDOW_IOVA:#018x} ram={}",
        object.0, sid.0, ram
    ));
    Ok(Vm {
        name,
        client,
        object,
        edu: index,
        bdf,
        sid,
        ram,
        pattern,
    })
}

fn step(vm: &str, what: &str) -> heapless::String<48> {
    let mut s = heapless::String::new();
    let _ = fmt::Write::write_fmt(&mut s, format_args!("{vm}-{what}"));
    s
}

/// The VM's edu copies `pattern` from its RAM to another page of it through its window.
fn own_dma(r: &mut Rig<'_>, vm: &Vm<'_>, other: PhysRange) -> Step {
    r.ram.fill(vm.ram.start, 4096, vm.pattern);
    r.dev_reads(vm.edu, WINDOW_IOVA)?;
    r.dev_writes(vm.edu, WINDOW_IOVA + 0x1000)?;
    let mine = r.landed_ram(PhysAddr(vm.ram.start.0 + 0x1000), vm.pattern);
    let theirs = r
        .ram
        .count(PhysAddr(other.start.0 + 0x1000), DMA_LEN.into(), vm.pattern);
    check(
        &step(vm.name, "dma-own-ram"),
        mine && theirs == 0,
        format_args!(
            "vm={} bdf={} iova={:#018x} landed={} other_vm_bytes={theirs}",
            vm.name,
            vm.bdf,
            WINDOW_IOVA + 0x1000,
            u8::from(mine)
        ),
    )
}

/// The VM's edu writes past its window: refused, and the record goes to its client only.
fn rogue(r: &mut Rig<'_>, vm: &mut Vm<'_>, other: &mut Vm<'_>) -> Step {
    let past = WINDOW_IOVA + SUPERPAGE;
    r.dev_writes(vm.edu, past)?;
    let escaped = r.landed_ram(PhysAddr(vm.ram.start.0 + SUPERPAGE), vm.pattern)
        || r.landed_ram(PhysAddr(other.ram.start.0), vm.pattern);
    let mine = call("read-faults", read_all(&mut vm.client, vm.object))?;
    print_faults(vm.name, &mine);
    let theirs = call(
        "read-faults-other",
        read_all(&mut other.client, other.object),
    )?;
    print_faults(other.name, &theirs);
    let ok = !escaped
        && mine.len() == 1
        && mine
            .iter()
            .all(|f| f.sid == vm.sid && f.addr == Iova(past) && f.dir == Some(Direction::Write))
        && theirs.is_empty();
    check(
        &step(vm.name, "rogue-refused-and-recorded"),
        ok,
        format_args!(
            "vm={} sid={:#06x} iova={past:#018x} dir=write landed={} own_records={} other_records={}",
            vm.name,
            vm.sid.0,
            u8::from(escaped),
            mine.len(),
            theirs.len()
        ),
    )?;
    // The other client cannot read this one's ledger at all.
    let peek = other.client.read_faults(vm.object, FaultBatch::PAGE);
    check(
        &step(vm.name, "ledger-not-readable-by-other"),
        refused_with(&peek, DomainError::NotFound),
        format_args!(
            "reader={} object={} {}",
            other.name,
            vm.object.0,
            Res(&peek)
        ),
    )
}

/// `vms`: see the module docs.
pub fn vms(r: &mut Rig<'_>) -> Step {
    let m = manager(r, &[])?;
    let mut vm1 = start_vm(r, &m, 0, "vm1", 0x11)?;
    let mut vm2 = start_vm(r, &m, 1, "vm2", 0x22)?;
    own_dma(r, &vm1, vm2.ram)?;
    own_dma(r, &vm2, vm1.ram)?;
    rogue(r, &mut vm1, &mut vm2)?;
    rogue(r, &mut vm2, &mut vm1)?;
    // vm2's VMM goes away without destroying anything: dropping its client is its channel
    // closing; the manager puts its edu back in deny and drops its object.
    let (gone_edu, gone_sid, gone_ram) = (vm2.edu, vm2.sid, vm2.ram);
    let Vm { client, .. } = vm2;
    drop(client);
    let denied = m.borrow().backend().stream_domain(gone_sid) == Some(None);
    let objects = m.borrow().object_count();
    r.ram.fill(gone_ram.start, 4096, 0x33);
    r.dev_writes(gone_edu, WINDOW_IOVA + 0x3000)?;
    let landed = r.landed_ram(PhysAddr(gone_ram.start.0 + 0x3000), 0x22)
        || r.landed_ram(PhysAddr(gone_ram.start.0 + 0x3000), 0x11);
    // The record is the host's now (the unclaimed ledger): drain and read it.
    let drained = m.borrow_mut().on_iommu_event(host::now());
    let unclaimed = m.borrow_mut().read_unclaimed(FaultBatch::PAGE);
    let host_saw = unclaimed
        .records()
        .any(|f| f.sid == gone_sid && f.addr == Iova(WINDOW_IOVA + 0x3000));
    for f in unclaimed.records() {
        console::line(format_args!(
            "UNCLAIMED sid={:#06x} addr={} reason={:?}",
            f.sid.0, f.addr, f.reason
        ));
    }
    check(
        "client-gone-device-denied",
        denied && objects == 1 && !landed && host_saw,
        format_args!(
            "vm=vm2 sid={:#06x} context=deny objects_left={objects} landed={} unclaimed_record={} drain_ok={}",
            gone_sid.0,
            u8::from(landed),
            u8::from(host_saw),
            u8::from(drained.is_ok())
        ),
    )?;
    // Control: vm1's window is untouched and its DMA still lands.
    vm1.pattern = 0x44;
    own_dma(r, &vm1, gone_ram)?;
    drop(vm1);
    let left = m.borrow().object_count();
    check(
        "all-clients-gone",
        left == 0,
        format_args!("objects_left={left}"),
    )
}

/// `vmm-rules`: see the module docs.
pub fn rules(r: &mut Rig<'_>) -> Step {
    let (edu, _) = r
        .edus
        .first()
        .map(|d| (d.bdf, d.sid))
        .ok_or_else(|| Outcome::fail().with("reason", "no edu"))?;
    // A device no unit covers: 00:1e.0 is on no scope of QEMU's DRHD (and not present).
    let unknown = Bdf::new(0, 0x1e, 0).map_err(|_| Outcome::fail().with("reason", "bdf"))?;
    let decide = |label: &str,
                  unity: bool,
                  device: Bdf,
                  client: Option<&mut Conn<'_>>,
                  manager: bool|
     -> &'static str {
        let devices = [PassThrough {
            name: "edu",
            device: DeviceSel::pci(device),
            dma: true,
        }];
        let vm = VmDescription {
            name: label,
            unity_mapped: unity,
            devices: &devices,
        };
        let d = VmmDmaPolicy::assess(&vm, client);
        let kind = match d {
            smmuman_api::Decision::Start => "start",
            smmuman_api::Decision::StartUnisolated { .. } => "start-unisolated",
            smmuman_api::Decision::Refuse { .. } => "refuse",
        };
        if kind == "start-unisolated" {
            log::warn!("!!! {d}");
        }
        console::line(format_args!(
            "VMM vm={label} manager={} device={device} unity={} decision={kind} message=\"{d}\"",
            u8::from(manager),
            u8::from(unity)
        ));
        kind
    };
    // No manager: nothing answers (the transport of a VMM that found no channel).
    let none = Client::connect(NoManager);
    console::line(format_args!(
        "VMM vm=probe connect={} manager=0",
        if none.is_ok() { "ok" } else { "error" }
    ));
    let k = decide("dma-vm", false, edu, None, false);
    check(
        "no-manager-dma-vm-refused",
        k == "refuse",
        format_args!("decision={k}"),
    )?;
    let k = decide("unity-vm", true, edu, None, false);
    check(
        "no-manager-unity-vm-warned",
        k == "start-unisolated",
        format_args!("decision={k}"),
    )?;
    let m = manager(r, &[])?;
    let mut c = connect(&m, ClientId(1), "rules")?;
    let k = decide("dma-vm", false, unknown, Some(&mut c), true);
    check(
        "unknown-device-refused",
        k == "refuse",
        format_args!("decision={k}"),
    )?;
    let k = decide("unity-vm", true, unknown, Some(&mut c), true);
    check(
        "unknown-device-unity-warned",
        k == "start-unisolated",
        format_args!("decision={k}"),
    )?;
    // Control: a device the manager knows starts isolated.
    let k = decide("dma-vm", false, edu, Some(&mut c), true);
    check(
        "control-known-device-starts",
        k == "start",
        format_args!("decision={k}"),
    )
}

fn hostile_map(
    c: &mut Conn<'_>,
    obj: ObjectId,
    what: &str,
    iova: u64,
    pa: PhysAddr,
    flags: MapFlags,
    expect: DomainError,
) -> Step {
    let r = c.map(obj, window(iova, pa, 0x1000)?, Access::RW, flags);
    check(
        &step("hostile", what),
        refused_with(&r, expect),
        format_args!("pa={pa} iova={iova:#018x} expect={expect:?} {}", Res(&r)),
    )
}

/// `vmm-hostile`: see the module docs.
pub fn hostile(r: &mut Rig<'_>) -> Step {
    let m = manager(r, &[])?;
    let own = r
        .ram
        .take(1)
        .ok_or_else(|| Outcome::fail().with("reason", "no RAM"))?;
    let shared = r
        .ram
        .take(1)
        .ok_or_else(|| Outcome::fail().with("reason", "no RAM"))?;
    let victim = r
        .ram
        .take(1)
        .ok_or_else(|| Outcome::fail().with("reason", "no RAM"))?;
    let (bdf, sid) = r
        .edus
        .first()
        .map(|d| (d.bdf, d.sid))
        .ok_or_else(|| Outcome::fail().with("reason", "no edu"))?;
    assign(
        &m,
        ClientId(1),
        "hostile",
        &[
            Grant {
                range: own,
                kind: GrantKind::Ram,
            },
            Grant {
                range: shared,
                kind: GrantKind::SharedRam,
            },
        ],
        &[DeviceSel::pci(bdf)],
    )?;
    assign(
        &m,
        ClientId(2),
        "victim",
        &[Grant {
            range: victim,
            kind: GrantKind::Ram,
        }],
        &[],
    )?;
    let other_edu = r
        .edus
        .get(1)
        .map(|d| d.bdf)
        .ok_or_else(|| Outcome::fail().with("reason", "needs two edus (qemu.args)"))?;
    let mut c = connect(&m, ClientId(1), "hostile")?;
    let obj = call("create-object", c.create_object(ObjectFlags::empty()))?.object;
    call("attach", c.attach(obj, DeviceSel::pci(bdf)))?;
    // A device the host did not give it (nobody holds it): refused as not its own.
    let t = c.attach(obj, DeviceSel::pci(other_edu));
    check(
        &step("hostile", "other-edu-refused"),
        refused_with(&t, DomainError::DeviceNotAssigned),
        format_args!("bdf={other_edu} {}", Res(&t)),
    )?;
    let mut v = connect(&m, ClientId(2), "victim")?;
    let vobj = call("victim-create", v.create_object(ObjectFlags::empty()))?.object;
    call(
        "victim-map",
        v.map(
            vobj,
            window(WINDOW_IOVA, victim.start, SUPERPAGE)?,
            Access::RW,
            MapFlags::empty(),
        ),
    )?;
    let frame = vtd_frame(r);
    hostile_map(
        &mut c,
        obj,
        "vtd-registers-refused",
        WINDOW_IOVA,
        frame,
        MapFlags::empty(),
        DomainError::NotAssigned,
    )?;
    hostile_map(
        &mut c,
        obj,
        "image-memory-refused",
        WINDOW_IOVA,
        ram::image().start,
        MapFlags::empty(),
        DomainError::NotOwned,
    )?;
    hostile_map(
        &mut c,
        obj,
        "other-vms-ram-refused",
        WINDOW_IOVA,
        victim.start,
        MapFlags::empty(),
        DomainError::NotAssigned,
    )?;
    hostile_map(
        &mut c,
        obj,
        "shared-without-flag-refused",
        WINDOW_IOVA,
        shared.start,
        MapFlags::empty(),
        DomainError::NeedsShared,
    )?;
    // Its edu DMAs at the IOVA it wanted the VT-d registers at: nothing is mapped there.
    r.dev_reads(0, WINDOW_IOVA)?;
    let faults = call("read-faults", read_all(&mut c, obj))?;
    print_faults("hostile", &faults);
    let recorded = faults
        .iter()
        .any(|f| f.sid == sid && f.addr == Iova(WINDOW_IOVA) && f.dir == Some(Direction::Read));
    check(
        "hostile-dma-refused-and-recorded",
        recorded,
        format_args!(
            "sid={:#06x} iova={WINDOW_IOVA:#018x} dir=read records={}",
            sid.0,
            faults.len()
        ),
    )?;
    // The victim's RAM is untouched by all of this and still its own.
    let vm = v.object_status(vobj);
    check(
        "victim-window-intact",
        matches!(vm, Ok(s) if s.mappings == 1),
        format_args!("{}", Res(&vm)),
    )?;
    // Control: the host assigns a third client the VT-d frame (as a peer BAR) and the shared
    // RAM; the same maps are granted (the refusals above were the assignment's, not the
    // request's shape).
    assign(
        &m,
        ClientId(3),
        "control",
        &[Grant {
            range: PhysRange {
                start: frame,
                len: 0x1000,
            },
            kind: GrantKind::Peer,
        }],
        &[DeviceSel::pci(other_edu)],
    )?;
    let mut k = connect(&m, ClientId(3), "control")?;
    let kobj = call("control-create", k.create_object(ObjectFlags::empty()))?.object;
    let a = k.attach(kobj, DeviceSel::pci(other_edu));
    check(
        "control-assigned-edu-attaches",
        matches!(a, Ok(x) if x.devices == 1),
        format_args!("bdf={other_edu} {}", Res(&a)),
    )?;
    let g = k.map(
        kobj,
        window(WINDOW_IOVA, frame, 0x1000)?,
        Access::READ,
        MapFlags::empty(),
    );
    check(
        "control-assigned-frame-granted",
        g.is_ok(),
        format_args!("pa={frame} {}", Res(&g)),
    )?;
    let s = c.map(
        obj,
        window(WINDOW_IOVA, shared.start, 0x1000)?,
        Access::RW,
        MapFlags::SHARED,
    );
    check(
        "control-shared-with-flag-granted",
        s.is_ok(),
        format_args!("pa={} {}", shared.start, Res(&s)),
    )
}

/// The I/O APIC's source-id as the DMAR scopes it (VT-d §8.3.1, type 3), and its base
/// (q35's, 0xfec00000: ACPI MADT; the DMAR names the requester, not the registers).
fn ioapic(dmar: &Dmar<'_>) -> Option<(PhysAddr, StreamId)> {
    dmar.units().find_map(|(_, u)| {
        u.scopes.iter().find_map(|s| {
            if s.scope_type != ScopeType::IoApic {
                return None;
            }
            let e = s.path.entries().next()?;
            let bdf = Bdf::new(s.path.start_bus(), e.device, e.function).ok()?;
            Some((PhysAddr(0xfec0_0000), StreamId(u32::from(bdf.rid()))))
        })
    })
}

/// `mmio-refused`: see the module docs.
pub fn mmio_refused(r: &mut Rig<'_>, dmar: &Dmar<'_>) -> Step {
    let (base, sid) =
        ioapic(dmar).ok_or_else(|| Outcome::fail().with("reason", "no IOAPIC scope in DMAR"))?;
    let extra = [DeviceEntry {
        id: DeviceId::Mmio(base),
        sid,
        raw_sid_allowed: false,
    }];
    let m = manager(r, &extra)?;
    let (bdf, _) = r
        .edus
        .first()
        .map(|d| (d.bdf, d.sid))
        .ok_or_else(|| Outcome::fail().with("reason", "no edu"))?;
    // The host gives the client both: the refusal is the IOMMU's limit, not the authority.
    assign(
        &m,
        ClientId(1),
        "platform",
        &[],
        &[DeviceSel::Mmio(base), DeviceSel::pci(bdf)],
    )?;
    let mut c = connect(&m, ClientId(1), "platform")?;
    let obj = call("create-object", c.create_object(ObjectFlags::empty()))?.object;
    let known = c.lookup_device(DeviceSel::Mmio(base));
    console::line(format_args!(
        "PLATFORM_DEVICE base={base} sid={:#06x} known={}",
        sid.0,
        u8::from(known.is_ok())
    ));
    let a = c.attach(obj, DeviceSel::Mmio(base));
    let value_ok = matches!(&a, Err(CallError::Refused(x)) if x.error == DomainError::Unsupported && x.value == base.0);
    check(
        "platform-device-refused",
        value_ok,
        format_args!("base={base} {}", Res(&a)),
    )?;
    let p = c.attach(obj, DeviceSel::pci(bdf));
    check(
        "control-pci-device-attaches",
        matches!(p, Ok(x) if x.devices == 1),
        format_args!("bdf={bdf} {}", Res(&p)),
    )
}
