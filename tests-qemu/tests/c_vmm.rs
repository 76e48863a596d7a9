//! A VMM written in C (`smmuman-daemon/c/c_vmm.c`, compiled for the bare-metal target and linked
//! into the test image with libsmmu) runs in a host task under QEMU and does, through the C
//! API, what the Rust VMM does: the client rules, its edu attached, its window mapped as an
//! array, the manager's memory refused with the right code and message, real DMA inside the
//! window landing and outside it blocked, those faults read back as its own, unmap, destroy.

use tests_qemu::run;

#[test]
fn a_c_vmm_maps_dmas_and_reads_its_faults_through_libsmmu() {
    let run = run("vmm-c", &[]).unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    let check = |step: &str| {
        let r = run
            .records("CHECK")
            .find(|r| r.get("step") == Some(step))
            .unwrap_or_else(|| panic!("no CHECK {step}\n{}", run.describe()));
        assert_eq!(r.get("ok"), Some("1"), "{}", r.line);
        r.get("value").unwrap_or_default().to_owned()
    };
    for step in [
        "c-connect",
        "c-decide-start",
        "c-create",
        "c-attach-own-device",
        "c-map-array",
        "c-unmap",
        "c-destroy",
        "c-disconnect",
    ] {
        check(step);
    }
    // The refused map: SMMU_ERR_NOT_OWNED (104), and the message names the manager's memory.
    assert_eq!(check("c-manager-memory-refused"), "0x68");
    let refusal = run
        .records("C_VMM")
        .find_map(|r| r.get("refusal").map(str::to_owned))
        .unwrap_or_else(|| panic!("no refusal\n{}", run.describe()));
    assert!(
        refusal.starts_with("refused: host memory that is not this VM's to map"),
        "{refusal}"
    );
    // The control first: inside the window the DMA lands (the same check, the same pattern);
    // outside, and after the unmap, it does not, and the 16 refused accesses (64 bytes, one
    // record per 4 bytes) are read back as the C VMM's own, each time.
    check("c-dma-inside-lands");
    check("c-dma-outside-blocked");
    assert_eq!(check("c-reads-its-faults"), "0x10");
    check("c-after-unmap-blocked");
    assert_eq!(check("c-after-unmap-recorded"), "0x10");
    // A destroyed object is gone: SMMU_ERR_NOT_FOUND (101).
    assert_eq!(check("c-destroyed-object-gone"), "0x65");
    let verdict = run
        .record("VERDICT")
        .unwrap_or_else(|| panic!("{}", run.describe()));
    assert_eq!(verdict.get("ok"), Some("1"), "{}", verdict.line);
}
