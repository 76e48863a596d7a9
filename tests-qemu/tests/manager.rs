//! The manager under QEMU: VMMs in their own execution contexts talk to it only through the
//! client library over mailboxes, while the SMMU contains their devices' real DMA.

use tests_qemu::{repo_file, run, run_on, run_with_qemu_args, Boot, Run};

fn passed(scenario: &str, extra: &[&str]) -> Run {
    let run = run(scenario, extra).unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    run
}

/// Boots `scenario` with the repository file `config` as the initrd config; it must pass.
fn passed_with_config(config: &str, scenario: &str) -> Run {
    let config = repo_file(config);
    let boot = Boot {
        initrd: Some(&config),
        ..Boot::default()
    };
    let run = run_on(&boot, scenario, &[]).unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    run
}

/// The `CHECK` of VMM `vm` named `step` passed.
fn vm_check(run: &Run, vm: &str, step: &str) -> String {
    let rec = run
        .records("CHECK")
        .find(|r| r.get("vm") == Some(vm) && r.get("step") == Some(step))
        .unwrap_or_else(|| panic!("no CHECK vm={vm} step={step}; {}", run.describe()));
    assert_eq!(rec.get("ok"), Some("1"), "{}", rec.line);
    rec.line.clone()
}

/// `(vm, decision)` of every VERDICT, in order.
fn decisions(run: &Run) -> Vec<(String, String)> {
    run.records("VERDICT")
        .map(|r| {
            assert_eq!(r.get("ok"), Some("1"), "{}", r.line);
            (
                r.get("vm").unwrap_or("?").to_string(),
                r.get("decision").unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn two_vms_program_their_windows_and_see_only_their_own_faults() {
    for st in ["st=linear", "st=2level"] {
        let run = passed("vms", &[st]);
        assert_eq!(
            decisions(&run),
            pairs(&[("vm1", "start"), ("vm2", "start")])
        );
        for vm in ["vm1", "vm2"] {
            for step in [
                "attach-own-device",
                "map-guest-ram",
                "dma-inside-lands",
                "dma-outside-blocked",
                "fault-notified",
                "unmap",
                "after-unmap-blocked",
                "after-unmap-recorded",
                "manager-memory-refused",
            ] {
                vm_check(&run, vm, step);
            }
        }
        // Each VM read back exactly its own 16 records: its StreamID, its rogue address.
        let vm1 = vm_check(&run, "vm1", "reads-only-its-own-faults");
        assert!(
            vm1.contains("records=16 first_sid=0x8 first_addr=0x0000000040200000"),
            "{vm1}"
        );
        let vm2 = vm_check(&run, "vm2", "reads-only-its-own-faults");
        assert!(
            vm2.contains("records=16 first_sid=0x10 first_addr=0x0000000040210000"),
            "{vm2}"
        );
        // vm2 cannot take vm1's device nor map vm1's RAM; the device refusal says it is not
        // vm2's (not that vm1 holds it).
        assert!(vm_check(&run, "vm2", "other-vms-device-refused")
            .contains("a device the host did not assign to this VM"));
        assert!(vm_check(&run, "vm2", "other-vms-ram-refused")
            .contains("outside the RAM and BARs the host assigned to this VM"));
        // vm1 destroyed its object; vm2 just left and the manager cleaned up after it.
        vm_check(&run, "vm1", "device-free-after-destroy");
        let gone: Vec<_> = run
            .records("CLIENT_GONE")
            .map(|r| r.get("objects_released").unwrap_or("?").to_string())
            .collect();
        assert_eq!(gone, ["0", "1"], "{}", run.describe());
        let back = run
            .records("CHECK")
            .find(|r| r.get("step") == Some("all-devices-back-to-deny"))
            .unwrap_or_else(|| panic!("{}", run.describe()));
        assert_eq!(back.get("ok"), Some("1"), "{}", back.line);
        // The default fault log fits the manager's ledgers as it is.
        let log = run.record("FAULT_LOG").unwrap();
        assert_eq!(
            (log.get("requested"), log.get("depth"), log.get("clamped")),
            (Some("32"), Some("32"), Some("0")),
            "{}",
            log.line
        );
        // Every fault went to its owner's ledger; the log has one line per burst (a refused
        // 64-byte DMA: 16 records, one line) whose counts add up exactly.
        let stats = run.record("MANAGER_STATS").unwrap();
        assert_eq!(stats.get("faults"), Some("64"), "{}", stats.line);
        assert_eq!(stats.get("unclaimed"), Some("0"), "{}", stats.line);
        assert_eq!(stats.get("protocol_errors"), Some("0"), "{}", stats.line);
        let bursts: Vec<_> = run
            .records("FAULT")
            .filter(|f| f.get("seq").is_some())
            .collect();
        let count = |f: &tests_qemu::Record, k: &str| -> u64 {
            f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        let total: u64 = bursts.iter().map(|f| count(f, "count")).sum();
        let kept: u64 = bursts.iter().map(|f| count(f, "kept")).sum();
        assert_eq!((total, kept), (64, 64), "{}", run.describe());
        assert!(
            bursts.len() <= 8,
            "{} lines for 4 refused DMAs",
            bursts.len()
        );
    }
}

#[test]
fn without_a_manager_a_dma_vm_refuses_to_start_and_a_unity_vm_starts_warned() {
    let run = passed("vmm-no-manager", &[]);
    assert_eq!(
        decisions(&run),
        pairs(&[("isolated", "refuse"), ("unity", "start-unisolated")])
    );
    assert!(run
        .console
        .contains("needs the smmuman manager, which is not running"));
    assert!(run.console.contains(
        "[WARN ] !!! WARNING: VM 'unity' is unity-mapped and starts WITHOUT DMA ISOLATION"
    ));
    assert!(!run.console.contains("VMM vm=isolated started=1"));
}

#[test]
fn an_unknown_device_stops_the_vm_unless_it_is_unity_mapped() {
    let run = passed("vmm-unknown-device", &[]);
    assert_eq!(
        decisions(&run),
        pairs(&[
            ("unknown", "refuse"),
            ("unity-unknown", "start-unisolated"),
            ("known", "start"),
        ])
    );
    assert!(run
        .console
        .contains("smmuman does not know pass-through DMA device 'edu' (pci 00:1d.0)"));
    assert!(run.console.contains("VMM vm=known started=1 isolated=1"));
}

#[test]
fn devices_sharing_a_streamid_behind_a_bridge_move_as_one_group() {
    let bridge = [
        "-device",
        "pcie-pci-bridge,id=br0,bus=pcie.0,addr=0x3",
        "-device",
        "edu,bus=br0,addr=0x1,dma_mask=0xffffffffffffffff",
        "-device",
        "edu,bus=br0,addr=0x2,dma_mask=0xffffffffffffffff",
    ];
    let run = run_with_qemu_args("vms-group", &[], &bridge).unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    assert_eq!(run.result().unwrap().get("group_sid"), Some("0x100"));
    assert!(vm_check(&run, "vm-group", "attach-part-of-group-refused").contains("moves as a whole"));
    vm_check(&run, "vm-group", "attach-whole-group");
    let landed = run
        .records("CHECK")
        .filter(|r| r.get("step") == Some("group-member-dma-lands") && r.get("ok") == Some("1"))
        .map(|r| r.get("bdf").unwrap_or("?").to_string())
        .collect::<Vec<_>>();
    assert_eq!(landed, ["01:01.0", "01:02.0"], "{}", run.describe());
    vm_check(&run, "vm-other", "another-vm-owns-it");
    // Its lookups say only that the device exists and is not its own, the same while vm-group
    // holds it as before.
    assert!(
        vm_check(&run, "vm-other", "lookup-tells-nothing-about-the-holder")
            .contains("devices=1 not_assigned=1 free=0 mine=0 others=0")
    );
    assert!(
        vm_check(&run, "vm-other", "take-part-of-anothers-group-refused")
            .contains("a device the host did not assign to this VM")
    );
}

#[test]
fn devices_the_board_keeps_are_not_offered_to_clients() {
    // The merge fixture reserves StreamID 0 (the host bridge) and gives 00:02.0 a static window.
    let run = passed_with_config(
        "crates/board-config/tests/fixtures/config/qemu-merge.conf",
        "vmm-board-owned",
    );
    let owned: Vec<_> = run
        .records("DEVICE")
        .map(|r| {
            (
                r.get("bdf").unwrap_or("?").to_string(),
                r.get("board_owned").unwrap_or("?").to_string(),
            )
        })
        .collect();
    assert_eq!(
        owned,
        pairs(&[("00:00.0", "1"), ("00:01.0", "0"), ("00:02.0", "1")]),
        "{}",
        run.describe()
    );
    assert_eq!(
        decisions(&run),
        pairs(&[("dev0", "refuse"), ("dev1", "start"), ("dev2", "refuse")])
    );
    // Without the config the same devices are all the clients' to claim.
    let plain = passed("vmm-board-owned", &[]);
    assert_eq!(
        decisions(&plain),
        pairs(&[("dev0", "start"), ("dev1", "start"), ("dev2", "start")])
    );
}

#[test]
fn a_fault_log_larger_than_the_ledgers_is_clamped_and_announced() {
    let run = passed_with_config(
        "tests-qemu/fixtures/qemu-fault-log-large.conf",
        "vmm-unknown-device",
    );
    let log = run.record("FAULT_LOG").unwrap();
    assert_eq!(
        (log.get("requested"), log.get("depth"), log.get("clamped")),
        (Some("1024"), Some("32"), Some("1")),
        "{}",
        log.line
    );
    assert!(
        run.console
            .contains("fault-log 1024 is more than the manager keeps per ledger: using 32"),
        "{}",
        run.describe()
    );
}

#[test]
fn devices_by_raw_streamid_only_where_the_config_allows_and_by_mmio_base() {
    // 00:01.0 (0x8) and a platform device at 0x0a000000 (0x40) say raw-sid yes; 00:02.0 no.
    let run = passed_with_config(
        "crates/board-config/tests/fixtures/config/raw-sid.conf",
        "vmm-selectors",
    );
    // The platform device got its deny-and-record STE like any PCI function.
    let mmio = run
        .records("STREAM")
        .find(|r| r.get("mmio").is_some())
        .unwrap_or_else(|| panic!("no STREAM for the platform device; {}", run.describe()));
    assert_eq!(
        (mmio.get("mmio"), mmio.get("sid"), mmio.get("decision")),
        (
            Some("0x000000000a000000"),
            Some("0x40"),
            Some("deny-and-record")
        ),
        "{}",
        mmio.line
    );
    let raw: Vec<_> = run
        .records("BINDING")
        .filter(|r| r.get("raw_sid") == Some("1"))
        .map(|r| r.get("device").unwrap_or("?").to_string())
        .collect();
    assert_eq!(raw, ["mmio:0x000000000a000000", "pci:0000:00:01.0"]);
    assert!(
        vm_check(&run, "vm-selectors", "raw-sid-refused-where-not-allowed").contains("sid=0x10")
    );
    vm_check(&run, "vm-selectors", "attach-by-raw-sid");
    vm_check(&run, "vm-selectors", "raw-sid-device-dma-lands");
    vm_check(&run, "vm-selectors", "attach-mmio-device");
}
