//! The manager's scenarios: VMMs in their own execution contexts program their VMs' DMA
//! windows through the client library, over their mailboxes, while the SMMU contains the real
//! DMA of their pass-through `edu` devices.

// A failing step returns the `RESULT` record it becomes: a fixed-size text buffer (there is no
// heap to box it in), returned only on the failure path.
#![allow(clippy::result_large_err)]

use crate::dma_scenarios::Device;
use crate::hostile::{HostilePlan, Target, VictimPlan};
use crate::vmm::{Plan, Verdict, Vmm};
use core::fmt;
use iommu_core::{Bdf, PhysAddr, StreamId};
use smmuman_api::{DeviceSel, DomainError, PciMatch};
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::manager_task::{self, Mgr, MAX_CLIENTS};
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;
use smmuman_server::{Grant, GrantKind, PhysRange as ServerRange};
use smmuv3::mmio::{Reg32, RegisterAccess};

/// A PCI address nothing answers at on `virt` (no IOMMU controls it).
const UNKNOWN_DEVICE: Bdf = Bdf {
    bus: 0,
    dev: 0x1d,
    func: 0,
};

type Step<T = ()> = Result<T, Outcome>;
type Vmms = heapless::Vec<Vmm, MAX_CLIENTS>;

fn fail(reason: &str, detail: impl fmt::Display) -> Outcome {
    Outcome::fail()
        .with("reason", reason)
        .with("detail", detail)
}

fn device(p: &mut Platform, bdf: Bdf, sid: StreamId) -> Step<Device> {
    let edu = p.take_edu(bdf).map_err(|e| fail("edu unavailable", e))?;
    Ok(Device { edu, bdf, sid })
}

/// Gives `vm` what the host assigned it in the config's `[vm NAME]` section: the VMM's view of
/// its RAM, and the grants the manager gets before the VMM starts (that memory, and the VM's
/// pass-through device).
fn give_memory(p: &Platform, vm: &mut Vmm) -> Step {
    let mem = p
        .vm_memory(vm.name)
        .map_err(|e| fail("vm memory", format_args!("vm {}: {e}", vm.name)))?;
    vm.assignment = mem.grants;
    vm.ram = Some((mem.first, mem.view));
    vm.devices.clear();
    let _ = vm.devices.push(DeviceSel::pci(vm.pass_through));
    Ok(())
}

fn two_edus(p: &Platform) -> Step<[(Bdf, StreamId); 2]> {
    match crate::clients::edus(p)[..] {
        [a, b, ..] => Ok([a, b]),
        _ => Err(fail("needs two edu devices behind the SMMU", "")),
    }
}

fn vmm(name: &'static str, unity: bool, pass_through: Bdf, plan: Plan) -> Vmm {
    Vmm {
        name,
        unity,
        pass_through,
        device: None,
        group_members: heapless::Vec::new(),
        ram: None,
        assignment: heapless::Vec::new(),
        devices: heapless::Vec::new(),
        plan,
    }
}

/// Prints one `VERDICT` per VMM and checks them against `expected` (name, decision); a pass
/// needs every VMM's checks to have passed too.
fn judge(verdicts: &[Verdict], expected: &[(&str, &str)]) -> Step {
    for v in verdicts {
        console::line(format_args!(
            "VERDICT vm={} decision={} ok={} failed_step={}",
            v.name,
            v.decision,
            u8::from(v.ok),
            v.failed_step.unwrap_or("none")
        ));
    }
    let got = verdicts.iter().map(|v| (v.name, v.decision));
    if !got.eq(expected.iter().copied()) {
        return Err(fail("unexpected decisions", "see VERDICT records"));
    }
    match verdicts.iter().find(|v| !v.ok) {
        Some(v) => Err(Outcome::fail()
            .with("reason", "a VMM check failed")
            .with("vm", v.name)
            .with("failed_step", v.failed_step.unwrap_or("none"))),
        None => Ok(()),
    }
}

fn counters(m: &Mgr) {
    let c = m.counters();
    console::line(format_args!(
        "MANAGER_STATS requests={} protocol_errors={} refusals={} faults={} unclaimed={} dropped={} hw_lost_at_least={} iommu_errors={} objects={}",
        c.requests,
        c.protocol_errors,
        c.refusals,
        c.faults,
        c.unclaimed,
        c.dropped,
        c.hw_lost_at_least,
        c.iommu_errors,
        m.object_count()
    ));
}

fn finish(body: impl FnOnce() -> Step<Outcome>) -> Outcome {
    body().unwrap_or_else(|o| o)
}

/// Two VMs, each with its own `edu`: windows, DMA inside (lands) and outside (blocked), each
/// reads back only its own faults, trespasses are refused, unmap takes the access away; vm1
/// destroys its object, vm2 just exits and the manager cleans up after it.
pub fn vms(p: &mut Platform) -> Outcome {
    finish(|| {
        let m = manager_task::start(p, crate::options::iommu_options(p))?;
        let [(a, a_sid), (b, b_sid)] = two_edus(p)?;
        let a = device(p, a, a_sid)?;
        let b = device(p, b, b_sid)?;
        two_vms(p, m, a, b)
    })
}

/// The two-VM life of [`vms`] on a running manager, with devices `a` (vm1) and `b` (vm2).
pub fn two_vms(p: &mut Platform, mut m: Mgr, a: Device, b: Device) -> Step<Outcome> {
    let (a_sid, b_sid) = (a.sid, b.sid);
    let mut vm1 = vmm(
        "vm1",
        false,
        a.bdf,
        Plan::Life {
            rogue_offset: 0,
            foreign_device: None,
            foreign_ram: None,
            clean_exit: true,
        },
    );
    let a_bdf = a.bdf;
    vm1.device = Some(a);
    give_memory(p, &mut vm1)?;
    let ram1_pa = vm1.ram.as_ref().map_or(PhysAddr(0), |r| r.0.start());
    let mut vm2 = vmm(
        "vm2",
        false,
        b.bdf,
        Plan::Life {
            rogue_offset: 0x1_0000,
            foreign_device: Some(a_bdf),
            foreign_ram: Some(ram1_pa),
            clean_exit: false,
        },
    );
    vm2.device = Some(b);
    give_memory(p, &mut vm2)?;
    manager_task::open_mailboxes();
    let mut vmms = Vmms::new();
    let _ = vmms.push(vm1);
    let _ = vmms.push(vm2);
    let verdicts = crate::clients::run(p, Some(&mut m), vmms);
    counters(&m);
    judge(&verdicts, &[("vm1", "start"), ("vm2", "start")])?;
    let (a_denied, b_denied) = (
        crate::clients::is_denied(&m, a_sid),
        crate::clients::is_denied(&m, b_sid),
    );
    let clean = m.object_count() == 0 && a_denied && b_denied;
    console::line(format_args!(
        "CHECK step=all-devices-back-to-deny ok={} objects={} a_denied={} b_denied={}",
        u8::from(clean),
        m.object_count(),
        u8::from(a_denied),
        u8::from(b_denied)
    ));
    if !clean {
        return Err(fail("a device was left attached", "see CHECK"));
    }
    Ok(Outcome::pass().with("vms", 2))
}

/// The client rule when no manager runs: a VM with a DMA pass-through device refuses to start;
/// a unity-mapped one starts, with a loud warning.
pub fn vmm_no_manager(p: &mut Platform) -> Outcome {
    finish(|| {
        let [(a, _), _] = two_edus(p)?;
        // The mailboxes are never opened: nothing answers a VMM that connects.
        let mut vmms = Vmms::new();
        let _ = vmms.push(vmm("isolated", false, a, Plan::StartOnly));
        let _ = vmms.push(vmm("unity", true, a, Plan::StartOnly));
        let verdicts = crate::clients::run(p, None, vmms);
        judge(
            &verdicts,
            &[("isolated", "refuse"), ("unity", "start-unisolated")],
        )?;
        Ok(Outcome::pass())
    })
}

/// The client rule for a device the manager does not know: the VMM reports it and exits; a
/// unity-mapped VM reports it and starts with a warning; a known device starts normally.
pub fn vmm_unknown_device(p: &mut Platform) -> Outcome {
    finish(|| {
        let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
        let [(a, _), _] = two_edus(p)?;
        manager_task::open_mailboxes();
        let mut vmms = Vmms::new();
        let _ = vmms.push(vmm("unknown", false, UNKNOWN_DEVICE, Plan::StartOnly));
        let _ = vmms.push(vmm("unity-unknown", true, UNKNOWN_DEVICE, Plan::StartOnly));
        let _ = vmms.push(vmm("known", false, a, Plan::StartOnly));
        let verdicts = crate::clients::run(p, Some(&mut m), vmms);
        counters(&m);
        judge(
            &verdicts,
            &[
                ("unknown", "refuse"),
                ("unity-unknown", "start-unisolated"),
                ("known", "start"),
            ],
        )?;
        Ok(Outcome::pass())
    })
}

/// Devices the board keeps for itself (a StreamID reserved for the system, a device the
/// config gave a static window) are not the clients': a VMM that asks for one hears that the
/// manager does not know it and refuses to start; the other devices start normally. One VMM
/// per PCI function behind the SMMU (at most [`MAX_CLIENTS`]).
pub fn vmm_board_owned(p: &mut Platform) -> Outcome {
    finish(|| {
        let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
        let names = ["dev0", "dev1", "dev2", "dev3"];
        let mut expected: heapless::Vec<(&str, &str), MAX_CLIENTS> = heapless::Vec::new();
        let mut vmms = Vmms::new();
        let functions: heapless::Vec<(Bdf, StreamId), MAX_CLIENTS> = p
            .pci
            .functions()
            .iter()
            .filter_map(|f| f.sid.map(|sid| (f.bdf, sid)))
            .take(MAX_CLIENTS)
            .collect();
        for (i, (bdf, sid)) in functions.into_iter().enumerate() {
            let board_owned = p.is_reserved_sid(sid) || p.is_static_window_sid(sid);
            console::line(format_args!(
                "DEVICE name={} bdf={bdf} sid={sid} board_owned={}",
                names[i],
                u8::from(board_owned)
            ));
            let _ = vmms.push(vmm(names[i], false, bdf, Plan::StartOnly));
            let _ = expected.push((names[i], if board_owned { "refuse" } else { "start" }));
        }
        manager_task::open_mailboxes();
        let verdicts = crate::clients::run(p, Some(&mut m), vmms);
        counters(&m);
        judge(&verdicts, &expected)?;
        Ok(Outcome::pass().with("devices", expected.len()))
    })
}

/// The other ways to name a device (boot with a config that allows raw StreamIDs for the first
/// `edu` and declares a platform device, e.g. board-config's `raw-sid.conf` fixture): by raw
/// StreamID, refused where the config does not allow it and working (DMA included) where it
/// does; and a platform device by its register base.
pub fn vmm_selectors(p: &mut Platform) -> Outcome {
    finish(|| {
        let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
        let [(a, a_sid), (_, b_sid)] = two_edus(p)?;
        let Some((mmio, _, _)) = p.mmio_devices().next() else {
            return Err(fail(
                "no platform device behind the SMMU",
                "boot with a config that declares one",
            ));
        };
        let mut vm = vmm(
            "vm-selectors",
            false,
            a,
            Plan::Selectors {
                raw_refused: b_sid,
                mmio,
            },
        );
        vm.device = Some(device(p, a, a_sid)?);
        give_memory(p, &mut vm)?;
        // The platform device is this VM's too (the other edu's raw StreamID is not).
        let _ = vm.devices.push(DeviceSel::Mmio(mmio));
        manager_task::open_mailboxes();
        let mut vmms = Vmms::new();
        let _ = vmms.push(vm);
        let verdicts = crate::clients::run(p, Some(&mut m), vmms);
        counters(&m);
        judge(&verdicts, &[("vm-selectors", "start")])?;
        Ok(Outcome::pass().with("mmio", mmio))
    })
}

/// Devices that share one StreamID (behind a PCIe-to-PCI bridge: boot with
/// `boards/qemu-virt-bridge`) are one unit: attaching one alone is refused with GroupSplit,
/// attaching the group works, and every member's DMA then uses the VM's window.
pub fn vms_group(p: &mut Platform) -> Outcome {
    finish(|| {
        let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
        let edus = crate::clients::edus(p);
        let Some(&(first, sid)) = edus
            .iter()
            .find(|(_, sid)| edus.iter().filter(|(_, s)| s == sid).count() > 1)
        else {
            return Err(fail(
                "no two edu devices share a StreamID",
                "boot boards/qemu-virt-bridge",
            ));
        };
        let members: heapless::Vec<Bdf, 4> = edus
            .iter()
            .filter(|(_, s)| *s == sid)
            .map(|(b, _)| *b)
            .collect();
        let whole =
            PciMatch::new(Some(first.bus), None, None).map_err(|_| fail("bad match", first))?;
        let mut vm = vmm(
            "vm-group",
            false,
            first,
            Plan::Group {
                whole,
                others: members.len() - 1,
            },
        );
        vm.device = Some(device(p, first, sid)?);
        for &bdf in members.iter().skip(1) {
            let d = device(p, bdf, sid)?;
            let _ = vm.group_members.push(d);
        }
        give_memory(p, &mut vm)?;
        // The host gives the group whole.
        vm.devices.clear();
        let _ = vm.devices.push(DeviceSel::Pci(whole));
        // Another VM, given none of it, wants one member of the group once vm-group holds it:
        // refused as not its own, not as Busy or GroupSplit (which would say who holds it).
        let other_member = members.get(1).copied().unwrap_or(first);
        let thief = vmm(
            "vm-other",
            false,
            other_member,
            Plan::Trespass {
                device: DeviceSel::pci(other_member),
                expect: [DomainError::DeviceNotAssigned; 2],
            },
        );
        manager_task::open_mailboxes();
        let mut vmms = Vmms::new();
        let _ = vmms.push(vm);
        let _ = vmms.push(thief);
        let verdicts = crate::clients::run(p, Some(&mut m), vmms);
        counters(&m);
        judge(&verdicts, &[("vm-group", "start"), ("vm-other", "start")])?;
        Ok(Outcome::pass()
            .with("group_sid", sid)
            .with("members", members.len()))
    })
}

/// The GIC distributor of QEMU `virt` (a hostile VMM knows its board).
const VIRT_GICD: PhysAddr = PhysAddr(0x0800_0000);

/// A hostile VMM asks the manager to map what a malicious client wants its device to reach
/// (`crate::hostile`): every map is refused and its DMA cannot reach the SMMU's registers. With
/// `control=unchecked` the host (this scenario) assigns it the SMMU frame as well: the same map
/// is granted and the same DMA reads SMMU_IDR0, so the check is what made the difference.
/// Then it attaches the victim's `edu` once the victim released it: refused, and the victim's
/// DMA misses its RAM. With `control=device-assigned` the host assigns it that `edu` instead
/// of the victim: the same attach is granted and the same DMA lands in its RAM.
pub fn vmm_hostile(p: &mut Platform) -> Outcome {
    finish(|| {
        let control = p.args.get("control") == Some("unchecked");
        let device_control = p.args.get("control") == Some("device-assigned");
        let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
        let [(a, a_sid), (b, b_sid)] = two_edus(p)?;
        let victim_dev = device(p, a, a_sid)?;
        let hostile_dev = device(p, b, b_sid)?;
        let bar0 = |bdf| {
            p.pci
                .function(bdf)
                .and_then(|f| f.bars[0])
                .and_then(|b| b.cpu_address)
                .ok_or(fail("edu has no memory BAR 0", bdf))
        };
        let (victim_bar, hostile_bar) = (bar0(a)?, bar0(b)?);
        // The victim's config names the hostile VM's edu BAR as its peer.
        let peer = p
            .topology
            .vm("victim")
            .and_then(|v| v.peers.first())
            .map(|_| hostile_bar);
        let mut victim = vmm(
            "victim",
            false,
            a,
            Plan::Victim(VictimPlan {
                peer: peer.filter(|_| !device_control),
                owns_device: !device_control,
            }),
        );
        victim.device = Some(victim_dev);
        give_memory(p, &mut victim)?;
        let mut hostile = vmm("hostile", false, b, Plan::StartOnly);
        hostile.device = Some(hostile_dev);
        give_memory(p, &mut hostile)?;
        if device_control {
            // The control: a host that (wrongly) gave the victim's edu to the hostile VM.
            victim.devices.clear();
            let _ = hostile.devices.push(DeviceSel::pci(a));
        }
        let victim_pa = victim.ram.as_ref().map_or(PhysAddr(0), |r| r.0.start());
        let past_own = hostile.ram.as_ref().map_or(PhysAddr(0), |r| r.0.end());
        let smmu = p.board.smmu.base;
        let idr0 = m.backend().smmu().registers().read32(Reg32::Idr0);
        console::line(format_args!(
            "HOSTILE control={} device_control={} smmu={smmu} smmu_idr0={idr0:#010x}",
            u8::from(control),
            u8::from(device_control)
        ));
        let refused = Some(DomainError::NotAssigned);
        let target = |name, pa, expect| Target { name, pa, expect };
        let plan = HostilePlan {
            targets: [
                if control {
                    target("smmu-registers-granted", smmu, None)
                } else {
                    target("smmu-registers-refused", smmu, refused)
                },
                target("gic-refused", VIRT_GICD, refused),
                target("uart-refused", p.board.uart.base, refused),
                target("ecam-refused", p.board.pcie.ecam.start(), refused),
                target(
                    "manager-memory-refused",
                    crate::clients::manager_memory(),
                    Some(DomainError::NotOwned),
                ),
                target("past-its-own-ram-refused", past_own, refused),
                target("other-devices-bar-refused", victim_bar, refused),
            ],
            victim_ram: victim_pa,
            smmu_idr0: idr0,
            victim_device: a,
            victim_device_expect: if device_control {
                None
            } else {
                Some(DomainError::DeviceNotAssigned)
            },
        };
        hostile.plan = Plan::Hostile(plan);
        if control {
            // The control: a host that (wrongly) assigned this VM the SMMU's register page.
            let _ = hostile.assignment.push(Grant {
                range: ServerRange {
                    start: smmu,
                    len: 0x1000,
                },
                kind: GrantKind::Peer,
            });
        }
        crate::hostile::reset();
        manager_task::open_mailboxes();
        let mut vmms = Vmms::new();
        let _ = vmms.push(hostile);
        let _ = vmms.push(victim);
        let verdicts = crate::clients::run(p, Some(&mut m), vmms);
        counters(&m);
        judge(&verdicts, &[("hostile", "start"), ("victim", "start")])?;
        Ok(Outcome::pass()
            .with("control", u8::from(control))
            .with("device_control", u8::from(device_control)))
    })
}

/// The SMMU's counts and the daemon pool's free bytes, as one record.
fn print_iommu(m: &mut Mgr, when: &str) {
    let stats = m.backend().smmu().stats();
    let (_, mem) = m.backend_mut().parts();
    let free = mem.frames().free_bytes();
    console::line(format_args!(
        "IOMMU_COUNTS when={when} commands={} syncs={} pool_free={free:#x}",
        stats.commands, stats.syncs
    ));
}

/// A VMM written in C (`c/c_vmm.c`) through libsmmu: the client rules, its edu attached, the
/// window mapped as an array, the manager's memory refused (code and message), DMA inside lands
/// and outside is blocked and read back as its faults, unmap blocks it, destroy.
pub fn vmm_c(p: &mut Platform) -> Outcome {
    finish(|| {
        let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
        let [(a, a_sid), _] = two_edus(p)?;
        let mut vm = vmm("vm1", false, a, Plan::C);
        vm.device = Some(device(p, a, a_sid)?);
        give_memory(p, &mut vm)?;
        manager_task::open_mailboxes();
        let mut vmms = Vmms::new();
        let _ = vmms.push(vm);
        let verdicts = crate::clients::run(p, Some(&mut m), vmms);
        counters(&m);
        judge(&verdicts, &[("vm1", "start")])?;
        Ok(Outcome::pass())
    })
}

/// A VMM maps [`crate::many::WINDOWS`] windows through the manager in batches, DMAs through a
/// sample, unmaps them all in batches: the host's counts around it show one CMD_SYNC per unmap
/// batch (maps need none) and every page-table page back in the pool.
pub fn vmm_many(p: &mut Platform) -> Outcome {
    finish(|| {
        let mut m = manager_task::start(p, crate::options::iommu_options(p))?;
        let [(a, a_sid), _] = two_edus(p)?;
        let mut vm = vmm("vm-many", false, a, Plan::Many);
        vm.device = Some(device(p, a, a_sid)?);
        give_memory(p, &mut vm)?;
        print_iommu(&mut m, "before");
        manager_task::open_mailboxes();
        let mut vmms = Vmms::new();
        let _ = vmms.push(vm);
        let verdicts = crate::clients::run(p, Some(&mut m), vmms);
        print_iommu(&mut m, "after");
        counters(&m);
        judge(&verdicts, &[("vm-many", "start")])?;
        Ok(Outcome::pass().with("windows", crate::many::WINDOWS))
    })
}
