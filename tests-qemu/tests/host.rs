//! The product image as a host: it boots, reads its host plan from the initrd, starts the
//! manager and one qvm VMM per VM, and the VMs' own guests (tests-qemu/guests) drive their
//! pass-through `edu`s with guest-physical addresses. Asserted from the console records:
//! the host's (`STAGE2_CHECK`, `VM`, `DMA_FAULT`, `RESULT`) and each guest's own lines
//! (`GUEST [<vm>] CHECK ...`).

use tests_qemu::host::{run_host, HostBoot};
use tests_qemu::{Record, Run};

const BOARD_PLAN: &str = include_str!("../../boards/qemu-virt/host.plan");
const ROGUE_CONTROL: &str = include_str!("../plans/rogue-control.plan");
const ROGUE_4K: &str = include_str!("../plans/rogue-4k.plan");
const LOOPER: &str = include_str!("../plans/looper.plan");
const CRASHER: &str = include_str!("../plans/crasher.plan");
const NO_MANAGER: &str = include_str!("../plans/no-manager.plan");
const UNKNOWN_DEVICE: &str = include_str!("../plans/unknown-device.plan");
const BAD: &str = include_str!("../plans/bad.plan");

/// The driver guest's checks (tests-qemu/guests/src/driver.rs).
const DRIVER_CHECKS: [&str; 7] = [
    "pci-scan",
    "bar0",
    "edu-ident",
    "dma-small",
    "dma-page-cross",
    "dma-full-buffer",
    "dma-other-2mib",
];

fn host(plan: &str, name: &str) -> Run {
    run_host(&HostBoot {
        plan,
        name,
        ..HostBoot::default()
    })
    .unwrap()
}

fn assert_checks_pass(run: &Run, vm: &str, names: &[&str]) {
    let context = format!("vm {vm}; {}", run.describe());
    tests_qemu::assert_checks(&run.guest_checks(vm), names, &context);
}

/// `DMA_FAULT` records the VMM of `vm` logged, as (first address, last address, direction).
fn faults(run: &Run, vm: &str) -> Vec<(u64, u64, String)> {
    let hex = |r: &Record, k: &str| {
        r.get(k)
            .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    };
    run.records("DMA_FAULT")
        .filter(|r| r.get("vm") == Some(vm))
        .map(|r| {
            let first = hex(r, "addr").unwrap_or(u64::MAX);
            let last = hex(r, "addr_last").unwrap_or(first);
            (first, last, r.get("dir").unwrap_or("").to_string())
        })
        .collect()
}

fn stop<'r>(run: &'r Run, vm: &str) -> &'r Record {
    run.vm_stop(vm)
        .unwrap_or_else(|| panic!("no VM stop record for {vm}; {}", run.describe()))
}

#[test]
fn two_vms_run_their_guests_the_driver_dma_lands_and_the_rogue_is_contained() {
    let run = host(BOARD_PLAN, "board-plan");
    run.assert_pass();
    // The host compared both VMs' CPU and SMMU translations before their guests ran.
    let checks: Vec<_> = run.records("STAGE2_CHECK").collect();
    assert_eq!(checks.len(), 2, "{}", run.describe());
    for c in &checks {
        assert_eq!(c.get("pages"), Some("1024"), "{}", run.describe());
        assert_eq!(c.get("mismatches"), Some("0"), "{}", run.describe());
    }
    // vm1: its own driver found its edu on the emulated PCI bus and DMAed with GPAs.
    assert_checks_pass(&run, "vm1", &DRIVER_CHECKS);
    let vm1 = stop(&run, "vm1");
    assert_eq!(vm1.get("reason"), Some("exit"));
    assert_eq!(vm1.get("status"), Some("0"));
    assert!(faults(&run, "vm1").is_empty(), "{}", run.describe());
    // vm2: the rogue's control DMA in its own RAM landed; each rogue access is on vm2's
    // record with vm2's device, the address and the direction, and none in vm1's.
    assert_checks_pass(&run, "vm2", &["control"]);
    let logged = faults(&run, "vm2");
    for target in [0x4800_0000u64, 0x5030_0000, 0x0905_0000] {
        for dir in ["write", "read"] {
            assert!(
                logged
                    .iter()
                    .any(|(first, last, d)| *first <= target && target <= *last && d == dir),
                "no {dir} fault at {target:#x} in vm2's log {logged:x?}; {}",
                run.describe()
            );
        }
    }
    let device = run
        .records("DMA_FAULT")
        .filter(|r| r.get("vm") == Some("vm2"))
        .all(|r| r.get("device") == Some("00:02.0") && r.get("sid") == Some("0x10"));
    assert!(device, "{}", run.describe());
    let vm2 = stop(&run, "vm2");
    assert_eq!(vm2.get("reason"), Some("exit"));
    assert_eq!(vm2.get("dropped"), Some("0"), "{}", run.describe());
}

#[test]
fn the_rogue_leaves_the_other_vms_ram_untouched_and_the_control_shows_the_audit_sees_it() {
    let audit = |plan: &str, name: &str, hpa: &str| {
        let arg = format!("audit={hpa}");
        let run = run_host(&HostBoot {
            plan,
            name,
            scenario: Some(("host-audit", &[arg.as_str()])),
            ..HostBoot::default()
        })
        .unwrap();
        let rogue = run
            .record("AUDIT")
            .and_then(|r| r.get("rogue_bytes"))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no AUDIT record; {}", run.describe()));
        (run, rogue)
    };
    let (run, rogue) = audit(BOARD_PLAN, "audit", "0x50300000");
    assert_eq!(
        rogue,
        0,
        "the rogue's write reached vm1's RAM; {}",
        run.describe()
    );
    // Control: the rogue aims inside its own RAM (GPA 0x4030_0000 = HPA 0x5070_0000): the
    // same audit finds all 64 bytes, so a landed rogue write would have been seen above.
    let (control, rogue) = audit(ROGUE_CONTROL, "audit-control", "0x50700000");
    assert_eq!(rogue, 64, "{}", control.describe());
}

#[test]
fn a_guest_that_never_stops_is_stopped_at_its_time_limit_and_its_vm_object_destroyed() {
    let run = host(LOOPER, "looper");
    let vm1 = stop(&run, "vm1");
    assert_eq!(vm1.get("reason"), Some("time-limit"), "{}", run.describe());
    assert!(
        run.console.contains("client1: object 1 destroyed"),
        "{}",
        run.describe()
    );
    assert!(run.record("FATAL").is_none(), "{}", run.describe());
    // The looper printed its line first: it really ran.
    assert!(!run.guest("vm1").is_empty(), "{}", run.describe());
}

#[test]
fn a_guest_that_touches_what_its_vm_does_not_have_is_stopped_with_the_address_named() {
    let run = host(CRASHER, "crasher");
    let vm1 = stop(&run, "vm1");
    assert_eq!(vm1.get("reason"), Some("outside"), "{}", run.describe());
    let detail = vm1.get("detail").unwrap_or("");
    assert!(
        detail.contains("wrote 4 bytes") && detail.contains("0x0000000020001230"),
        "{detail}; {}",
        run.describe()
    );
    // It ran up to the store, and not past it.
    let lines = run.guest("vm1");
    assert!(
        lines.iter().any(|r| r.kind == "CRASHER"),
        "{}",
        run.describe()
    );
    assert!(
        !run.console.contains("CRASHER survived"),
        "{}",
        run.describe()
    );
    assert!(
        run.console.contains("client1: object 1 destroyed"),
        "{}",
        run.describe()
    );
}

#[test]
fn without_a_manager_a_unity_guest_starts_warned_and_a_dma_guest_refuses() {
    let run = host(NO_MANAGER, "no-manager");
    assert!(
        run.console.contains("HOST manager=off"),
        "{}",
        run.describe()
    );
    let warned = run
        .console
        .lines()
        .any(|l| l.contains("vm=unity") && l.contains("WARNING"));
    assert!(
        warned,
        "no loud warning for the unity VM; {}",
        run.describe()
    );
    let unity = stop(&run, "unity");
    assert_eq!(unity.get("reason"), Some("exit"), "{}", run.describe());
    assert!(!run.guest("unity").is_empty(), "{}", run.describe());
    let vm1 = stop(&run, "vm1");
    assert_eq!(vm1.get("reason"), Some("refused"), "{}", run.describe());
    assert!(
        run.guest("vm1").is_empty(),
        "vm1's guest ran; {}",
        run.describe()
    );
}

#[test]
fn a_device_the_manager_does_not_know_is_reported_and_its_vm_refused() {
    let edu = "edu,dma_mask=0xffffffffffffffff";
    let run = run_host(&HostBoot {
        plan: UNKNOWN_DEVICE,
        name: "unknown-device",
        // A third edu (00:03.0, StreamID 0x18) the config keeps from clients.
        qemu_args: &["-device", edu],
        config_extra: "[smmu smmu0]\nbase 0x0905_0000\nreserve-sid 0x18\n",
        ..HostBoot::default()
    })
    .unwrap();
    let vm1 = stop(&run, "vm1");
    assert_eq!(vm1.get("reason"), Some("refused"), "{}", run.describe());
    assert!(
        run.console
            .lines()
            .any(|l| l.starts_with("VMM vm=vm1") && l.contains("00:03.0")),
        "the refusal does not name the device; {}",
        run.describe()
    );
    // Control: the VM whose device the manager knows starts and its DMA lands.
    assert_checks_pass(&run, "vm2", &DRIVER_CHECKS);
    assert_eq!(stop(&run, "vm2").get("status"), Some("0"));
}

#[test]
fn a_wrong_plan_is_refused_with_file_and_line_and_nothing_starts() {
    let run = host(BAD, "bad-plan");
    let fatal = run
        .record("FATAL")
        .unwrap_or_else(|| panic!("no FATAL; {}", run.describe()));
    assert_eq!(fatal.get("reason"), Some("host-plan"));
    let detail = fatal.get("detail").unwrap_or("");
    assert!(
        detail.starts_with("initrd:host.plan:5:"),
        "{detail}; {}",
        run.describe()
    );
    assert!(detail.contains("00:20.0"), "{detail}");
    assert_ne!(run.exit_code, Some(0));
    assert!(run.records("VM").next().is_none(), "{}", run.describe());
    assert!(run.record("SMMU_ABORT").is_some(), "{}", run.describe());
}

#[test]
fn a_refused_4_kib_dma_is_logged_with_its_exact_count() {
    // 1,024 records per access on QEMU's SMMUv3, the ledger keeps 32: the DMA_FAULT lines of
    // each access still add up to 1,024 (before the ledger folded runs: 32), none dropped.
    let run = host(ROGUE_4K, "rogue-4k");
    run.assert_pass();
    assert_checks_pass(&run, "vm2", &["bootargs", "control"]);
    for dir in ["write", "read"] {
        let lines: Vec<_> = run
            .records("DMA_FAULT")
            .filter(|r| r.get("vm") == Some("vm2") && r.get("dir") == Some(dir))
            .collect();
        let count: u64 = lines
            .iter()
            .map(|r| {
                r.get("count")
                    .and_then(|c| c.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(count, 1024, "{dir}: {}", run.describe());
        assert!(
            lines
                .iter()
                .any(|r| r.get("addr") == Some("0x0000000048000000"))
                && lines
                    .iter()
                    .any(|r| r.get("addr_last") == Some("0x0000000048000ffc")),
            "{dir}: {}",
            run.describe()
        );
    }
    let vm2 = stop(&run, "vm2");
    assert_eq!(vm2.get("dropped"), Some("0"), "{}", run.describe());
    assert_eq!(vm2.get("faults"), Some("2048"), "{}", run.describe());
    // The default event queue holds them all: nothing lost (the control of the next test).
    assert_eq!(vm2.get("possibly_lost"), Some("0"), "{}", run.describe());
}

#[test]
fn records_the_smmu_lost_show_in_the_hosts_stop_record_as_in_the_vmms() {
    // The same 4 KiB rogue DMA into an event queue of 128 records (test image, `evtq-log2=7`):
    // QEMU's SMMU overflows it, and the records it lost may have been vm2's.
    let run = run_host(&HostBoot {
        plan: ROGUE_4K,
        name: "rogue-4k-small-evtq",
        scenario: Some(("host-plan", &["evtq-log2=7"])),
        ..HostBoot::default()
    })
    .unwrap();
    run.assert_pass();
    let vm2 = stop(&run, "vm2");
    let lost = vm2
        .get("possibly_lost")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no possibly_lost in {}; {}", vm2.line, run.describe()));
    assert!(lost > 0, "{}; {}", vm2.line, run.describe());
    // The host's per-VM summary says what the VMM's own finished line says.
    let finished = run
        .records("VMM")
        .find(|r| r.get("vm") == Some("vm2") && r.line.contains(" finished "))
        .unwrap_or_else(|| panic!("no VMM finished line for vm2; {}", run.describe()));
    assert_eq!(
        finished.get("possibly_lost"),
        vm2.get("possibly_lost"),
        "{}",
        run.describe()
    );
}
