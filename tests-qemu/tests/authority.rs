//! Memory authority under QEMU, proven by DMA: a hostile VMM asks the manager to grant its
//! device the SMMU's registers, the GIC, the UART, PCI ECAM, the manager's memory, RAM past its
//! own, another device's BAR and another VM's RAM (before and after that VM maps it). Every map
//! is refused and its DMA cannot reach the SMMU; the BAR the victim's config names for it is
//! granted and reached by DMA. The control run assigns it the SMMU frame: the same map is
//! granted and the same DMA reads SMMU_IDR0, so the test can fail.
//!
//! Device authority: once the victim released its edu, the hostile VMM attaches it to its own
//! object (which maps its RAM where the victim's guest points the device): refused with
//! `DeviceNotAssigned`, and the victim's DMA leaves the hostile VM's RAM untouched. The control
//! run (`control=device-assigned`) gives the hostile VM that edu: the same attach is granted
//! and the same DMA lands in its RAM.

use tests_qemu::{run, Run};

fn passed(extra: &[&str]) -> Run {
    let run = run("vmm-hostile", extra).unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    run
}

/// The `CHECK` of `vm` named `step`: it passed; its line.
fn check(run: &Run, vm: &str, step: &str) -> String {
    let r = run
        .records("CHECK")
        .find(|r| r.get("vm") == Some(vm) && r.get("step") == Some(step))
        .unwrap_or_else(|| panic!("no CHECK {vm} {step}\n{}", run.describe()));
    assert_eq!(r.get("ok"), Some("1"), "{}", r.line);
    r.line.to_string()
}

#[test]
fn a_hostile_vmm_is_refused_everything_outside_its_assignment_and_its_dma_misses_the_smmu() {
    let run = passed(&[]);
    let not_assigned = "host memory outside the RAM and BARs the host assigned to this VM";
    for step in [
        "victim-ram-before-it-maps-refused",
        "victim-ram-after-it-maps-refused",
        "smmu-registers-refused",
        "gic-refused",
        "uart-refused",
        "ecam-refused",
        "past-its-own-ram-refused",
        "other-devices-bar-refused",
    ] {
        let line = check(&run, "hostile", step);
        assert!(line.contains(not_assigned), "{line}");
    }
    let line = check(&run, "hostile", "smmu-registers-refused");
    assert!(line.contains("pa=0x0000000009050000"), "{line}");
    let line = check(&run, "hostile", "manager-memory-refused");
    assert!(line.contains("the manager's own"), "{line}");
    // The operator's ops are not a VMM's: its list_vms is an unknown op on its channel (the
    // operator's channel serves it: tests/operator.rs).
    let line = check(&run, "hostile", "admin-op-refused");
    assert!(line.contains("unknown operation 260"), "{line}");
    // The victim mapped its RAM only after the first attempt, and its own DMA works.
    check(&run, "victim", "hostile-tried-first");
    check(&run, "victim", "dma-inside-lands");
    // Peer-to-peer where the config names the BAR (`peer pci 00:02.0 bar 0`): granted, and
    // the victim's edu reads the other edu's identification register by DMA. The hostile VM,
    // whose config names no BAR, was refused the victim's edu BAR above.
    let line = check(&run, "victim", "peer-bar-granted");
    assert!(line.contains("pa=0x0000000010100000"), "{line}");
    let line = check(&run, "victim", "peer-bar-dma-reads-its-id");
    assert!(line.contains("read=0x010000ed"), "{line}");
    // The device aimed at the SMMU's IDR0 anyway: blocked and recorded against its StreamID.
    let line = check(&run, "hostile", "dma-to-smmu-registers-blocked");
    assert!(line.contains("reached=0"), "{line}");
    let fault = run
        .records("FAULT")
        .find(|f| f.get("sid") == Some("0x10"))
        .unwrap_or_else(|| panic!("no fault of the hostile device\n{}", run.describe()));
    assert_eq!(fault.get("dir"), Some("read"), "{}", fault.line);
    assert_eq!(fault.get("obj"), Some("1"), "{}", fault.line);
}

#[test]
fn a_hostile_vmm_cannot_attach_the_device_another_vm_released_and_its_dma_misses_its_ram() {
    let run = passed(&[]);
    check(&run, "victim", "release-own-device");
    let line = check(&run, "hostile", "victims-device-refused");
    assert!(line.contains("device=00:01.0"), "{line}");
    assert!(
        line.contains("a device the host did not assign to this VM"),
        "{line}"
    );
    check(&run, "victim", "hostile-tried-device");
    let line = check(&run, "hostile", "victims-device-dma-missed-its-ram");
    assert!(line.contains("changed=0"), "{line}");
    // The victim's edu, back in deny, was refused and recorded against nobody's object.
    let fault = run
        .records("FAULT")
        .find(|f| f.get("sid") == Some("0x8") && f.get("obj") == Some("unclaimed"))
        .unwrap_or_else(|| panic!("no unclaimed fault of the victim's edu\n{}", run.describe()));
    assert_eq!(fault.get("dir"), Some("write"), "{}", fault.line);
}

#[test]
fn control_with_the_victims_edu_assigned_to_it_the_same_attach_is_granted_and_the_dma_lands() {
    let run = passed(&["control=device-assigned"]);
    let line = check(&run, "hostile", "victims-device-granted");
    assert!(line.contains("device=00:01.0"), "{line}");
    let line = check(&run, "hostile", "victims-device-dma-reached-its-ram");
    assert!(line.contains("changed=1"), "{line}");
    // The memory checks are unchanged by it.
    check(&run, "hostile", "smmu-registers-refused");
    check(&run, "hostile", "dma-to-smmu-registers-blocked");
}

#[test]
fn control_with_the_smmu_frame_assigned_the_same_dma_reads_smmu_idr0() {
    let run = passed(&["control=unchecked"]);
    check(&run, "hostile", "smmu-registers-granted");
    let line = check(&run, "hostile", "dma-reached-smmu-registers");
    assert!(line.contains("reached=1"), "{line}");
    let host = run.record("HOSTILE").unwrap();
    let idr0 = host.get("smmu_idr0").unwrap();
    assert!(
        line.contains(&format!("read={idr0}")),
        "{line} vs {}",
        host.line
    );
    // Everything else is still refused: only the SMMU frame was assigned.
    check(&run, "hostile", "gic-refused");
    check(&run, "hostile", "victim-ram-after-it-maps-refused");
}
