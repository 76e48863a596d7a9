//! The scenario registry: `scenario=<name>` picks one.
//!
//! Add a scenario by writing `fn(&mut Platform) -> Outcome` and listing it in [`REGISTRY`].

use crate::dma_scenarios;
use crate::vm_scenarios;
use iommu_core::{Bdf, PhysAddr};
use smmuman_daemon::arch::aarch64::boot;
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::clock::Clock;
use smmuman_daemon::mmio::Mmio;
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;
use smmuman_daemon::scenario::Scenario;

/// Every scenario the daemon can run.
pub const REGISTRY: &[Scenario<Platform>] = &[
    Scenario {
        name: "boot",
        about: "bring the platform up and check it, no DMA",
        run: boot,
    },
    Scenario {
        name: "demo",
        about: "scenarios 1-4 in one boot, narrated in plain words",
        run: dma_scenarios::demo,
    },
    Scenario {
        name: "window",
        about: "1: device A's DMA inside its 2 MiB window lands, both directions",
        run: dma_scenarios::window,
    },
    Scenario {
        name: "outside",
        about: "2: device A's DMA just past its window is blocked and recorded",
        run: dma_scenarios::outside,
    },
    Scenario {
        name: "unclaimed",
        about: "3: device B, claimed by nobody, is blocked everywhere and recorded",
        run: dma_scenarios::unclaimed,
    },
    Scenario {
        name: "remap",
        about: "4: unmap half of a cached window (blocked at once), remap it elsewhere",
        run: dma_scenarios::remap,
    },
    Scenario {
        name: "overflow",
        about: "6: a rogue DMA overflows the event queue; losses counted, later faults intact",
        run: dma_scenarios::overflow,
    },
    Scenario {
        name: "absorb",
        about: "the same rogue DMA into the default-sized event queue: all 1,024 records kept",
        run: dma_scenarios::absorb,
    },
    Scenario {
        name: "vms",
        about: "two VMMs program their VMs' DMA windows through the manager, over mailboxes",
        run: vm_scenarios::vms,
    },
    Scenario {
        name: "vmm-c",
        about: "a VMM written in C drives its VM's DMA through libsmmu (the C API)",
        run: vm_scenarios::vmm_c,
    },
    Scenario {
        name: "vmm-no-manager",
        about: "client rule: no manager -> a DMA VM refuses to start, a unity VM starts warned",
        run: vm_scenarios::vmm_no_manager,
    },
    Scenario {
        name: "vmm-unknown-device",
        about: "client rule: unknown device -> refuse; unity VM starts warned; known starts",
        run: vm_scenarios::vmm_unknown_device,
    },
    Scenario {
        name: "vmm-board-owned",
        about: "devices with a reserved StreamID or a static window are not offered to clients",
        run: vm_scenarios::vmm_board_owned,
    },
    Scenario {
        name: "vmm-selectors",
        about: "devices by raw StreamID (only where the config allows) and by MMIO base",
        run: vm_scenarios::vmm_selectors,
    },
    Scenario {
        name: "vmm-hostile",
        about: "a hostile VMM asks to map the SMMU, GIC, UART, ECAM, another VM's RAM: refused (control=unchecked: the host assigns it the SMMU frame and its DMA reads SMMU_IDR0)",
        run: vm_scenarios::vmm_hostile,
    },
    Scenario {
        name: "vmm-many",
        about: "a VMM maps 10,000 windows in batches, DMAs through a sample, unmaps them all: one CMD_SYNC per unmap batch, every table page given back",
        run: vm_scenarios::vmm_many,
    },
    Scenario {
        name: "vms-group",
        about: "devices sharing a StreamID move as one group (boards/qemu-virt-bridge)",
        run: vm_scenarios::vms_group,
    },
    Scenario {
        name: "vcpu",
        about: "the EL2 world switch: a hand-encoded guest's HVC, data abort, WFI and time-slice exits; AT S12E1R against the stage-2 table",
        run: crate::vcpu_scenarios::vcpu,
    },
    Scenario {
        name: "host-audit",
        about: "the product's host plan (initrd), then the host reads the 64 bytes at audit=<hpa> for the rogue guest's pattern",
        run: crate::host_scenarios::host_audit,
    },
    Scenario {
        name: "host-unswitched",
        about: "control: the product's host plan (initrd) with the world switch's PMU/debug traps and per-VM virtual timer and ICH_VMCR_EL2 left out",
        run: crate::host_scenarios::host_unswitched,
    },
    Scenario {
        name: "host-lifecycle-api",
        about: "the host plan with a script calling the life cycle's API: stop_vm, start_vm, stop_vm on the first VM",
        run: crate::host_scenarios::host_lifecycle_api,
    },
    Scenario {
        name: "host-plan",
        about: "the product's host plan (initrd); control=fresh-slice: the old time-slice accounting (the fairness test's control); control=skip-scrub|skip-quiesce: the life-cycle tests' controls",
        run: crate::host_scenarios::host_plan,
    },
    Scenario {
        name: "cmdq-error",
        about: "an illegal command is reported and recovered; invalidation still works",
        run: dma_scenarios::cmdq_error,
    },
    Scenario {
        name: "sid-probe",
        about: "discovery: a window for the first edu's StreamID; whose DMA lands, which StreamIDs fault",
        run: crate::discovery_scenarios::sid_probe,
    },
    Scenario {
        name: "static-window",
        about: "discovery: the config's static windows are live from start-up; other edus are refused",
        run: crate::discovery_scenarios::static_window,
    },
    Scenario {
        name: "panic-after-bringup",
        about: "failure path: SMMU, manager and a live window up, then a panic; DMA probe after the abort",
        run: crate::failsafe_scenarios::panic_after_bringup,
    },
    Scenario {
        name: "fault-after-bringup",
        about: "failure path: as panic-after-bringup, then a load from an unmapped address",
        run: crate::failsafe_scenarios::fault_after_bringup,
    },
    Scenario {
        name: "panic-while-reporting",
        about: "failure path: as panic-after-bringup, and the panic's report panics again; DMA probe after the abort",
        run: crate::failsafe_scenarios::panic_while_reporting,
    },
    Scenario {
        name: "iommu-event-error",
        about: "failure path: as panic-after-bringup, then the manager loop's event-queue drain fails (injected SFM_ERR): FATAL, fail-safe, exit",
        run: crate::failsafe_scenarios::iommu_event_error,
    },
    Scenario {
        name: "irq-eventq",
        about: "a refused DMA's fault reaches the manager through the eventq interrupt (smmu-irq=off: polled)",
        run: crate::irq_scenarios::irq_eventq,
    },
    Scenario {
        name: "selftest-panic",
        about: "panic on purpose (checks the panic report)",
        run: selftest_panic,
    },
    Scenario {
        name: "selftest-fault",
        about: "load from an unmapped address (checks the MMU and the exception report)",
        run: selftest_fault,
    },
];

/// Panics, to show the panic report and exit code.
fn selftest_panic(_: &mut Platform) -> Outcome {
    panic!("selftest-panic asked for a panic")
}

/// Loads a word from an address the EL2 identity map leaves unmapped (`mmu.rs`): a
/// translation fault, i.e. a data abort at EL2 (ESR_EL2.EC 0x25, DFSC 0x04..0x07) with
/// FAR_EL2 = the address.
fn selftest_fault(_: &mut Platform) -> Outcome {
    let Some(target) = smmuman_daemon::hyp::mmu::unmapped_address() else {
        return Outcome::fail().with("reason", "the MMU is off: no unmapped address");
    };
    console::line(format_args!("SELFTEST fault_address={target:#018x}"));
    let value: u64;
    // SAFETY: nothing is mapped at `target`, so the load faults before it reads anything, and
    // the exception handler ends the run.
    unsafe {
        core::arch::asm!("ldr {v}, [{a}]", v = out(reg) value, a = in(reg) target, options(nostack, readonly));
    }
    Outcome::fail()
        .with("reason", "the load from an unmapped address did not fault")
        .with("value", value)
}

/// IHI 0070 §6.3.1 SMMU_IDR0: features of the SMMU, at offset 0 of register page 0.
const SMMU_IDR0: usize = 0x0;

/// Brings the platform up and checks it without letting any device DMA: every `edu` answers
/// through its BAR and has the StreamID the device tree gives its DMA alias, DMA is off, the
/// daemon's image counts as
/// daemon memory, a 2 MiB guest buffer can be allocated, written and read back, and the SMMU's
/// registers answer.
fn boot(p: &mut Platform) -> Outcome {
    let edus: heapless::Vec<(Bdf, Bdf, Option<iommu_core::StreamId>), 8> =
        p.edus().map(|f| (f.bdf, f.dma_alias, f.sid)).collect();
    for (i, (bdf, alias, sid)) in edus.iter().enumerate() {
        // The StreamID is the board's decision (device tree, or the config that overrides it,
        // for the function's DMA alias); an edu without one is not behind the SMMU.
        if sid.is_none() || *sid != p.sid_for(*bdf) {
            return Outcome::fail()
                .with("reason", "edu has no StreamID at the SMMU")
                .with("bdf", bdf)
                .with("dma_alias", alias);
        }
        let alive = match p.take_edu(*bdf) {
            Ok(mut edu) => {
                let (major, minor) = edu.version();
                let alive = edu.is_alive(0x5a5a_0000 | i as u32);
                console::line(format_args!(
                    "EDU bdf={bdf} version={major}.{minor} alive={} bus_master={}",
                    u8::from(alive),
                    u8::from(p.pci.is_bus_master(*bdf))
                ));
                alive
            }
            Err(e) => return Outcome::fail().with("reason", e),
        };
        if !alive {
            return Outcome::fail()
                .with("reason", "edu liveness check failed")
                .with("bdf", bdf);
        }
        if p.pci.is_bus_master(*bdf) {
            return Outcome::fail()
                .with("reason", "bus mastering on before any STE")
                .with("bdf", bdf);
        }
    }

    let (image_start, _) = boot::image_bounds();
    if !p.is_daemon_memory(PhysAddr(image_start), 8) {
        return Outcome::fail().with("reason", "the image is not daemon memory");
    }
    let buffer = match p.guest_memory.alloc(2 << 20, 2 << 20) {
        Ok(b) => b,
        Err(e) => return Outcome::fail().with("reason", e),
    };
    if !p.is_guest_memory(buffer.start(), buffer.size())
        || p.is_daemon_memory(buffer.start(), buffer.size())
    {
        return Outcome::fail()
            .with("reason", "guest buffer misclassified")
            .with("buffer", buffer);
    }
    p.guest_memory.fill_pattern(buffer.start(), 4096, 3);
    if let Some(m) = p.guest_memory.check_pattern(buffer.start(), 4096, 3) {
        return Outcome::fail()
            .with("reason", "guest memory does not read back")
            .with("at", m.pa);
    }
    if let Err(e) = p.guest_memory.free(buffer) {
        return Outcome::fail().with("reason", e);
    }

    let idr0 = match p.take_smmu_registers() {
        Some(regs) => regs.read32(SMMU_IDR0),
        None => return Outcome::fail().with("reason", "SMMU registers already taken"),
    };
    Outcome::pass()
        .with("st", p.args.stream_table)
        .with("edu_devices", edus.len())
        .with(
            "behind_smmu",
            p.pci.functions().iter().filter(|f| f.sid.is_some()).count(),
        )
        .with("smmu_idr0", format_args!("{idr0:#010x}"))
        .with("timer_hz", p.clock.hz())
        .with("uptime_ms", p.clock.now().as_millis())
}
