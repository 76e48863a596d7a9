//! The x86-64 image on QEMU `q35` with an Intel VT-d unit (`intel-iommu`) and `edu`: QEMU's
//! VT-d model walks our root, context and second-level tables and caches translations in its
//! IOTLB, so a wrong entry or a missing invalidation shows as a DMA that lands where it should
//! not. Every refusal is checked twice: by memory (the bytes did not change) and by the unit's
//! fault record (source-id = edu's requester id, page address, direction). Every security test
//! has a control run that shows the same DMA lands when the protection is taken away.
//!
//! Each boot takes well under a second (`-icount shift=10,sleep=off` in the board's
//! `qemu.args` makes edu's 100 ms DMA timer virtual).

use tests_qemu::{q35, Record, Run};

fn boot(bootargs: &str) -> Run {
    q35::run(bootargs).unwrap_or_else(|e| panic!("{e}"))
}

/// edu's address as the image found it (`EDU bdf=...`).
fn edu_bdf(run: &Run) -> String {
    run.record("EDU")
        .and_then(|r| r.get("bdf"))
        .unwrap_or_else(|| panic!("no EDU record; {}", run.describe()))
        .to_string()
}

fn check<'r>(run: &'r Run, step: &str) -> &'r Record {
    run.records("CHECK")
        .find(|r| r.get("step") == Some(step))
        .unwrap_or_else(|| panic!("no CHECK step={step}; {}", run.describe()))
}

fn faults(run: &Run) -> Vec<&Record> {
    run.records("FAULT").collect()
}

/// The `FAULT` records of `source` at `addr` in direction `dir`.
fn fault_at<'r>(run: &'r Run, source: &str, addr: u64, dir: &str) -> Vec<&'r Record> {
    let addr = format!("{addr:#018x}");
    faults(run)
        .into_iter()
        .filter(|f| {
            f.get("source") == Some(source)
                && f.get("addr") == Some(addr.as_str())
                && f.get("dir") == Some(dir)
        })
        .collect()
}

fn hex(r: &Record, key: &str) -> u64 {
    let v = r
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {}", r.line));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn boot_finds_the_unit_through_pvh_and_acpi_and_denies_everyone() {
    let run = boot("scenario=boot");
    run.assert_pass();
    let b = run.record("BOOT").expect("BOOT");
    assert_eq!(b.get("arch"), Some("x86_64"), "{}", run.describe());
    assert_eq!(b.get("entry"), Some("pvh"));
    assert_eq!(b.get("cmdline"), Some("scenario=boot"));
    let acpi = run.record("ACPI").expect("ACPI");
    assert!(acpi.get("tables").unwrap().split(' ').any(|t| t == "DMAR"));
    let drhd = run.record("DRHD").expect("DRHD");
    assert_eq!(hex(drhd, "base"), 0xfed9_0000);
    assert_eq!(hex(run.record("ECAM").expect("ECAM"), "base"), 0xb000_0000);
    let edu = edu_bdf(&run);
    assert!(run
        .records("PCI")
        .any(|p| p.get("bdf") == Some(edu.as_str())
            && p.get("vendor") == Some("0x1234")
            && p.get("device") == Some("0x11e8")));
    let vtd = run.record("VTD").expect("VTD");
    assert_eq!(
        vtd.get("coherent"),
        Some("0"),
        "QEMU's unit does not snoop: {}",
        vtd.line
    );
    assert_eq!(check(&run, "vtd-bring-up").get("translating"), Some("1"));
    assert!(faults(&run).is_empty(), "{}", run.describe());
}

#[test]
fn deny_refuses_and_records_edu_both_ways_and_the_control_lands() {
    let run = boot("scenario=deny");
    run.assert_pass();
    let edu = edu_bdf(&run);
    let read = check(&run, "deny-read-recorded");
    let src = hex(read, "addr");
    let read_faults = fault_at(&run, &edu, src, "read");
    assert_eq!(read_faults.len(), 1, "{}", run.describe());
    // Context entry not present: nobody attached edu.
    assert_eq!(read_faults[0].get("reason"), Some("0x02"));
    assert_eq!(check(&run, "deny-write-blocked").get("landed"), Some("0"));
    let dst = hex(check(&run, "deny-write-recorded"), "addr");
    assert_eq!(
        fault_at(&run, &edu, dst, "write").len(),
        1,
        "{}",
        run.describe()
    );

    // Control: the unit never enabled, the same DMAs land, nothing is recorded.
    let control = boot("scenario=deny vtd=off");
    control.assert_pass();
    let c = check(&control, "control-dma-lands");
    assert_eq!(c.get("landed"), Some("1"), "{}", control.describe());
    assert!(
        control
            .records("CHECK")
            .all(|r| r.get("step") != Some("vtd-bring-up")),
        "the control must not bring the unit up; {}",
        control.describe()
    );
    assert!(faults(&control).is_empty(), "{}", control.describe());
}

#[test]
fn a_window_lets_dma_in_and_refuses_it_one_byte_past() {
    let run = boot("scenario=window");
    run.assert_pass();
    let edu = edu_bdf(&run);
    let w = run.record("WINDOW").expect("WINDOW");
    let (base, size) = (hex(w, "iova"), hex(w, "size"));
    assert_eq!(size, 2 << 20);
    let inside = check(&run, "window-dma-lands");
    assert_eq!(inside.get("landed"), Some("1"));
    assert_eq!(inside.get("faults"), Some("0"));
    let past = check(&run, "past-window-refused");
    assert_eq!(hex(past, "iova"), base + size);
    assert_eq!(past.get("landed"), Some("0"), "{}", run.describe());
    let f = fault_at(&run, &edu, base + size, "write");
    assert_eq!(f.len(), 1, "{}", run.describe());
    assert_eq!(faults(&run).len(), 1, "only the DMA past the window faults");

    // Control: a 4 MiB window; the same DMA past the first 2 MiB lands, without a fault.
    let control = boot("scenario=window control=wide");
    control.assert_pass();
    let c = check(&control, "control-past-window-lands");
    assert_eq!(hex(c, "iova"), base + size);
    assert_eq!(c.get("landed"), Some("1"), "{}", control.describe());
    assert!(faults(&control).is_empty(), "{}", control.describe());
}

#[test]
fn an_unmap_blocks_only_after_the_iotlb_invalidation() {
    let run = boot("scenario=remap");
    run.assert_pass();
    let edu = edu_bdf(&run);
    assert_eq!(check(&run, "remap-mapped-lands").get("landed"), Some("1"));
    assert!(run
        .record("UNMAP")
        .is_some_and(|u| u.get("invalidated") == Some("1")));
    let after = check(&run, "remap-blocked-after-invalidation");
    assert_eq!(after.get("landed"), Some("0"), "{}", run.describe());
    assert_eq!(
        fault_at(&run, &edu, hex(after, "iova"), "write").len(),
        1,
        "{}",
        run.describe()
    );

    // Control: the same unmap without the invalidation; QEMU's IOTLB still holds the
    // translation and the DMA lands. This is what the invalidation above prevents.
    let control = boot("scenario=remap control=no-invalidate");
    control.assert_pass();
    let c = check(&control, "control-stale-translation-lands");
    assert_eq!(c.get("landed"), Some("1"), "{}", control.describe());
    assert!(faults(&control).is_empty(), "{}", control.describe());
}

#[test]
fn an_unknown_scenario_is_refused_before_any_dma() {
    let run = boot("scenario=nosuch");
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    let fatal = run.record("FATAL").expect("FATAL");
    assert_eq!(fatal.get("reason"), Some("unknown-scenario"));
    assert!(
        run.record("EDU").is_none(),
        "edu was never made a bus master"
    );
}

#[test]
fn an_exception_or_a_panic_after_bring_up_is_reported_and_stops_edu() {
    let run = boot("scenario=fault-after-bringup");
    assert_eq!(run.exit_code, Some(3), "{}", run.describe());
    let e = run.record("EXCEPTION").expect("EXCEPTION");
    assert_eq!((e.get("vector"), e.get("name")), (Some("6"), Some("#UD")));
    let f = run.record("FAILSAFE").expect("FAILSAFE");
    assert_eq!(f.get("reason"), Some("exception"));
    assert_eq!(
        f.get("bus_masters_stopped"),
        Some("1"),
        "edu was a bus master"
    );

    let run = boot("scenario=panic-after-bringup");
    assert_eq!(run.exit_code, Some(101), "{}", run.describe());
    assert!(run.record("PANIC").is_some(), "{}", run.describe());
    assert_eq!(
        run.record("FAILSAFE")
            .and_then(|f| f.get("bus_masters_stopped")),
        Some("1")
    );
    assert!(run.record("RESULT").is_none());
}
