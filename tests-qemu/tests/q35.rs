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

/// How many edus the image made bus masters (`EDU ... bus_master=1`), as text.
fn edu_count(run: &Run) -> String {
    run.records("EDU")
        .filter(|r| r.get("bus_master") == Some("1"))
        .count()
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
    // Every edu (00:02.0 and 00:03.0), each refused and recorded with its own source-id.
    let edus: Vec<String> = run
        .records("EDU")
        .filter_map(|r| r.get("bdf").map(str::to_string))
        .collect();
    assert_eq!(edus.len(), 2, "{}", run.describe());
    for edu in &edus {
        let of = |step: &str| {
            run.records("CHECK")
                .find(|r| r.get("step") == Some(step) && r.get("bdf") == Some(edu.as_str()))
                .unwrap_or_else(|| panic!("no CHECK {step} for {edu}; {}", run.describe()))
        };
        let src = hex(of("deny-read-recorded"), "addr");
        let read_faults = fault_at(&run, edu, src, "read");
        assert_eq!(read_faults.len(), 1, "{edu}; {}", run.describe());
        // Context entry not present: nobody attached edu.
        assert_eq!(read_faults[0].get("reason"), Some("0x02"));
        assert_eq!(of("deny-write-blocked").get("landed"), Some("0"));
        let dst = hex(of("deny-write-recorded"), "addr");
        assert_eq!(
            fault_at(&run, edu, dst, "write").len(),
            1,
            "{edu}; {}",
            run.describe()
        );
    }

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
    // A normal exit goes through the fail-safe too: the unit blocks everything, and every edu
    // the scenario made a bus master is stopped before the image exits.
    let f = run.record("FAILSAFE").expect("FAILSAFE at the exit");
    assert_eq!(f.get("reason"), Some("exit"), "{}", f.line);
    assert_eq!(
        f.get("bus_masters_stopped"),
        Some(edu_count(&run).as_str()),
        "{}",
        f.line
    );
    assert_unit_blocking(&run, true);

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
    // The refusal leaves through the fail-safe, like every exit: the unit, never brought up
    // (translation off: DMA would pass untranslated), is left blocking.
    assert_eq!(
        run.record("FAILSAFE").and_then(|f| f.get("reason")),
        Some("exit"),
        "{}",
        run.describe()
    );
    assert_unit_blocking(&run, false);
}

#[test]
fn a_command_line_refused_before_discovery_still_leaves_the_unit_blocking() {
    let run = boot("scenario=boot scenario=deny");
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    let fatal = run.record("FATAL").expect("FATAL");
    assert_eq!(fatal.get("reason"), Some("bootargs"), "{}", fatal.line);
    assert!(run.record("ACPI").is_none(), "refused before discovery");
    // The units were found for the fail-safe alone: from translation off to blocking.
    assert_unit_blocking(&run, false);
}

#[test]
fn an_exception_or_a_panic_after_bring_up_is_reported_and_stops_edu() {
    let run = boot("scenario=fault-after-bringup");
    assert_eq!(run.exit_code, Some(3), "{}", run.describe());
    let e = run.record("EXCEPTION").expect("EXCEPTION");
    assert_eq!((e.get("vector"), e.get("name")), (Some("6"), Some("#UD")));
    let f = run.record("FAILSAFE").expect("FAILSAFE");
    assert_eq!(f.get("reason"), Some("exception"));
    assert_masters_stopped(&run, f);

    let run = boot("scenario=panic-after-bringup");
    assert_eq!(run.exit_code, Some(101), "{}", run.describe());
    assert!(run.record("PANIC").is_some(), "{}", run.describe());
    assert_masters_stopped(&run, run.record("FAILSAFE").expect("FAILSAFE"));
    assert!(run.record("RESULT").is_none());
}

/// Every edu was a bus master: the fail-safe stopped all of them but the one its DMA probe
/// needs (stopped after the probe).
fn assert_masters_stopped(run: &Run, f: &Record) {
    let stopped: usize = f.get("bus_masters_stopped").unwrap().parse().unwrap();
    let kept: usize = f
        .get("bus_masters_kept_for_probe")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(kept, 1, "{}", f.line);
    assert_eq!(
        (stopped + kept).to_string(),
        edu_count(run),
        "every edu was a bus master: {}",
        f.line
    );
}

fn ok(run: &Run, step: &str) -> bool {
    check(run, step).get("ok") == Some("1")
}

/// The `CLIENT_FAULT` records a VM's client read back.
fn client_faults<'r>(run: &'r Run, vm: &str) -> Vec<&'r Record> {
    run.records("CLIENT_FAULT")
        .filter(|r| r.get("vm") == Some(vm))
        .collect()
}

#[test]
fn two_vms_through_the_manager_each_in_its_own_memory_with_its_own_faults() {
    let run = boot("scenario=vms");
    run.assert_pass();
    let m = run.record("MANAGER").expect("MANAGER");
    assert_eq!(m.get("backend"), Some("vtd"), "{}", run.describe());
    // The two VMs: same IOVA, different host RAM, different edus.
    let vms: Vec<&Record> = run.records("VM").collect();
    assert_eq!(vms.len(), 2, "{}", run.describe());
    assert_eq!(vms[0].get("iova"), vms[1].get("iova"));
    assert_ne!(vms[0].get("ram"), vms[1].get("ram"));
    assert_ne!(vms[0].get("sid"), vms[1].get("sid"));
    for vm in ["vm1", "vm2"] {
        let own = check(&run, &format!("{vm}-dma-own-ram"));
        assert_eq!(own.get("landed"), Some("1"), "{}", own.line);
        assert_eq!(own.get("other_vm_bytes"), Some("0"), "{}", own.line);
        // The DMA past the window: refused (memory unchanged) ...
        let rogue = check(&run, &format!("{vm}-rogue-refused-and-recorded"));
        assert_eq!(rogue.get("landed"), Some("0"), "{}", rogue.line);
        // ... and the record, with this VM's edu's source-id, address and direction, went to
        // this VM's client only.
        let sid = vms
            .iter()
            .find(|r| r.get("vm") == Some(vm))
            .and_then(|r| r.get("sid"))
            .unwrap();
        let mine = client_faults(&run, vm);
        assert_eq!(mine.len(), 1, "{}", run.describe());
        assert_eq!(mine[0].get("sid"), Some(sid));
        assert_eq!(mine[0].get("addr"), rogue.get("iova"));
        assert_eq!(mine[0].get("dir"), Some("write"));
        assert_eq!(rogue.get("other_records"), Some("0"));
        assert!(ok(&run, &format!("{vm}-ledger-not-readable-by-other")));
    }
    // vm2's client went away without cleaning up: its edu is back in deny, its DMA refused
    // and recorded as the host's (unclaimed) ...
    let gone = check(&run, "client-gone-device-denied");
    assert_eq!(gone.get("context"), Some("deny"));
    assert_eq!(gone.get("landed"), Some("0"), "{}", gone.line);
    assert_eq!(gone.get("unclaimed_record"), Some("1"));
    assert!(run
        .records("UNCLAIMED")
        .any(|r| r.get("sid") == Some("0x0018")));
    // ... while (control) vm1's DMA, through the window it kept, still lands afterwards.
    let vm1_runs: Vec<&Record> = run
        .records("CHECK")
        .filter(|r| r.get("step") == Some("vm1-dma-own-ram"))
        .collect();
    assert_eq!(vm1_runs.len(), 2);
    assert_eq!(vm1_runs[1].get("landed"), Some("1"));
    assert!(ok(&run, "all-clients-gone"));
}

#[test]
fn the_client_rules_refuse_or_warn_and_a_known_device_starts() {
    let run = boot("scenario=vmm-rules");
    run.assert_pass();
    let decision = |manager: &str, vm: &str, device: &str| {
        run.records("VMM")
            .find(|r| {
                r.get("manager") == Some(manager)
                    && r.get("vm") == Some(vm)
                    && r.get("device") == Some(device)
            })
            .and_then(|r| r.get("decision"))
            .unwrap_or_else(|| panic!("no VMM {vm} manager={manager}; {}", run.describe()))
            .to_string()
    };
    // No manager: a DMA VM refuses to start; a unity VM starts with the warning.
    assert_eq!(decision("0", "dma-vm", "00:02.0"), "refuse");
    assert_eq!(decision("0", "unity-vm", "00:02.0"), "start-unisolated");
    assert!(run.console.contains("starts WITHOUT DMA ISOLATION"));
    // A device the manager does not know: refused; unity: warned.
    assert_eq!(decision("1", "dma-vm", "00:1e.0"), "refuse");
    assert_eq!(decision("1", "unity-vm", "00:1e.0"), "start-unisolated");
    // Control: the same VM with a device the manager knows starts, isolated.
    assert_eq!(decision("1", "dma-vm", "00:02.0"), "start");
}

#[test]
fn a_hostile_client_cannot_map_what_the_host_did_not_assign_it() {
    let run = boot("scenario=vmm-hostile");
    run.assert_pass();
    for (step, error) in [
        ("hostile-vtd-registers-refused", "NotAssigned"),
        ("hostile-image-memory-refused", "NotOwned"),
        ("hostile-other-vms-ram-refused", "NotAssigned"),
        ("hostile-shared-without-flag-refused", "NeedsShared"),
        ("hostile-other-edu-refused", "DeviceNotAssigned"),
    ] {
        let c = check(&run, step);
        assert_eq!(c.get("ok"), Some("1"), "{}", c.line);
        assert_eq!(c.get("error"), Some(error), "{}", c.line);
    }
    assert_eq!(
        hex(check(&run, "hostile-vtd-registers-refused"), "value"),
        0xfed9_0000
    );
    // Its edu's DMA at the IOVA it wanted is refused and recorded for it.
    assert!(ok(&run, "hostile-dma-refused-and-recorded"));
    assert_eq!(client_faults(&run, "hostile").len(), 1);
    assert!(ok(&run, "victim-window-intact"));
    // Control: assigned by the host, the same maps are granted.
    assert_eq!(
        check(&run, "control-assigned-frame-granted").get("result"),
        Some("ok")
    );
    assert_eq!(
        check(&run, "control-shared-with-flag-granted").get("result"),
        Some("ok")
    );
    assert_eq!(
        check(&run, "control-assigned-edu-attaches").get("result"),
        Some("ok")
    );
}

#[test]
fn a_platform_device_is_refused_on_vtd_and_a_pci_device_attaches() {
    let run = boot("scenario=mmio-refused");
    run.assert_pass();
    let c = check(&run, "platform-device-refused");
    assert_eq!(c.get("error"), Some("Unsupported"), "{}", c.line);
    assert_eq!(hex(c, "value"), hex(c, "base"));
    assert!(run.console.contains("cannot tell platform devices apart"));
    // Control: a PCI function behind the same unit attaches.
    assert_eq!(
        check(&run, "control-pci-device-attaches").get("result"),
        Some("ok")
    );
}

/// Boots with `text` as the config, passed as `-initrd` (a file under the target directory).
fn boot_with_config(name: &str, text: &str, bootargs: &str) -> Run {
    let dir = std::env::temp_dir().join(format!("smmuman-q35-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    q35::run_with_initrd(bootargs, Some(&file)).unwrap_or_else(|e| panic!("{e}"))
}

/// A config that adds what q35's DMAR does not have: a reserved region (an RMRR) at 128 MiB
/// for edu 00:02.0 and a binding of 00:04.0 (absent here, unlisted by the DMAR), in `merge`
/// mode (the DMAR's unit and bindings stay), and a smaller fault log.
const RESERVED_CONF: &str = "\
# merge: the DMAR's unit and its bindings stay; this file adds to them
mode merge
fault-log 0d8

[vtd dmar0]
base 0xfed9_0000
reserved 0x0800_0000 2M pci 00:02.0

[device pci 00:04.0]
unit dmar0
";

#[test]
fn a_config_in_the_initrd_reserves_memory_the_dmar_does_not_and_edu_reaches_only_it() {
    let run = boot_with_config("reserved.conf", RESERVED_CONF, "scenario=reserved");
    run.assert_pass();
    let t = run.record("TOPOLOGY").expect("TOPOLOGY");
    assert_eq!(t.get("config"), Some("initrd"), "{}", run.describe());
    assert_eq!(t.get("mode"), Some("merge"));
    assert_eq!(t.get("fault_log"), Some("8"));
    assert_eq!(t.get("reserved_regions"), Some("1"));
    assert!(run.record("INITRD").is_some(), "{}", run.describe());
    // The DMAR's bindings stay (merge), the region is the config's.
    assert!(run
        .records("BINDING")
        .any(|b| b.get("device") == Some("pci:0000:00:02.0")
            && b.get("sid") == Some("0x10")
            && b.get("source") == Some("firmware")));
    assert!(
        run.records("BINDING")
            .any(|b| b.get("device") == Some("pci:0000:00:04.0")
                && b.get("sid") == Some("0x20")
                && b.get("source") == Some("config")
                && b.get("line") == Some("10")),
        "{}",
        run.describe()
    );
    let region = run.record("RESERVED_REGION").expect("RESERVED_REGION");
    assert_eq!(hex(region, "start"), 0x0800_0000);
    assert_eq!(hex(region, "len"), 0x20_0000);
    assert_eq!(region.get("devices"), Some("00:02.0"));
    assert_eq!(region.get("source"), Some("config"));
    assert_eq!(region.get("line"), Some("7"));
    assert!(run
        .records("UNIT_DEVICE")
        .any(|d| d.get("bdf") == Some("00:02.0") && d.get("held") == Some("1")));
    let map = run.record("RMRR_MAP").expect("RMRR_MAP");
    assert_eq!(map.get("identity"), Some("1"), "{}", run.describe());
    // By DMA: edu reaches the region identity-mapped, and nothing past it.
    let dma = check(&run, "reserved-dma");
    assert_eq!(dma.get("held"), Some("1"));
    assert_eq!(dma.get("landed"), Some("1"), "{}", run.describe());
    let past = check(&run, "reserved-past-refused");
    assert_eq!(past.get("landed"), Some("0"));
    assert_eq!(
        fault_at(&run, "00:02.0", 0x0820_0000, "write").len(),
        1,
        "{}",
        run.describe()
    );
    assert!(fault_at(&run, "00:02.0", 0x0800_0000, "read").is_empty());

    // Control: the board's embedded config reserves nothing there: the same DMAs are refused
    // and recorded.
    let control = boot("scenario=reserved");
    control.assert_pass();
    let t = control.record("TOPOLOGY").expect("TOPOLOGY");
    assert_eq!(t.get("config"), Some("boards/qemu-q35/smmuman.conf"));
    assert_eq!(t.get("reserved_regions"), Some("0"));
    assert!(control
        .records("BINDING")
        .all(|b| b.get("device") != Some("pci:0000:00:04.0")));
    let dma = check(&control, "reserved-dma");
    assert_eq!(dma.get("held"), Some("0"));
    assert_eq!(dma.get("landed"), Some("0"), "{}", control.describe());
    assert_eq!(fault_at(&control, "00:02.0", 0x0800_0000, "read").len(), 1);
    assert_eq!(fault_at(&control, "00:02.0", 0x0800_1000, "write").len(), 1);
}

#[test]
fn a_config_in_the_initrd_sets_the_managers_fault_log_and_quota() {
    let conf = "mode merge\nfault-log 0d4\nmappings-per-vm 0d16\n";
    let run = boot_with_config("quota.conf", conf, "scenario=vms");
    run.assert_pass();
    let log = run.record("FAULT_LOG").expect("FAULT_LOG");
    assert_eq!(log.get("depth"), Some("4"), "{}", run.describe());
    let quota = run.record("QUOTA").expect("QUOTA");
    assert_eq!(quota.get("mappings_per_vm"), Some("16"));
    // Control: the board's config keeps the defaults.
    let control = boot("scenario=vms");
    control.assert_pass();
    assert_eq!(
        control.record("FAULT_LOG").and_then(|f| f.get("depth")),
        Some("32")
    );
}

#[test]
fn a_wrong_config_is_refused_with_its_line_and_column_before_vtd_is_touched() {
    // Line 7, column 5: `sid` in a device behind a VT-d unit.
    let conf = "mode merge\n\n[vtd dmar0]\nbase 0xfed9_0000\n\n[device pci 00:02.0]\nsid 0x10\nunit dmar0\n";
    let run = boot_with_config("bad.conf", conf, "scenario=deny");
    assert_eq!(run.exit_code, Some(4), "{}", run.describe());
    let fatal = run.record("FATAL").expect("FATAL");
    assert_eq!(fatal.get("reason"), Some("config"));
    let detail = fatal.get("detail").unwrap();
    assert!(
        detail.starts_with("initrd:7:5: ") && detail.contains("requester ID"),
        "{detail}"
    );
    assert_eq!(run.records("FATAL").count(), 1);
    // VT-d never brought up, no bus master, no DMA, no scenario; the exit's fail-safe took
    // the unit from translation off (DMA untranslated) to blocking.
    assert!(run.record("VTD").is_none() && run.record("EDU").is_none());
    assert_unit_blocking(&run, false);
    assert!(run
        .records("CHECK")
        .all(|r| r.get("step") != Some("vtd-bring-up")));
    assert!(run.record("RESULT").is_none());
    assert_eq!(
        run.record("FAILSAFE")
            .and_then(|f| f.get("bus_masters_stopped")),
        Some("0")
    );

    // A config the DMAR contradicts: a unit where the DMAR has none.
    let nowhere = "[vtd dmar9]\nbase 0xfed9_1000\n";
    let run = boot_with_config("nowhere.conf", nowhere, "scenario=deny");
    assert_eq!(run.exit_code, Some(4), "{}", run.describe());
    let d = run.record("FATAL").and_then(|f| f.get("detail")).unwrap();
    assert!(d.contains("not a DRHD of the DMAR"), "{d}");

    // Control: the board's config boots and the scenario runs.
    let control = boot("scenario=deny");
    control.assert_pass();
    assert!(control.record("FATAL").is_none());
    assert_eq!(
        check(&control, "vtd-bring-up").get("translating"),
        Some("1")
    );
}

#[test]
fn a_refused_dmas_record_arrives_through_the_fault_interrupt_and_the_control_polls_it() {
    let run = boot("scenario=irq-fault");
    run.assert_pass();
    let ev = run.record("VTD_FAULT_EVENT").expect("VTD_FAULT_EVENT");
    assert_eq!(ev.get("masked"), Some("0"), "{}", run.describe());
    // FEADDR/FEDATA read back: an MSI to the boot CPU's APIC (0xFEE, destination 0), vector
    // 0x40, fixed and edge (SDM Vol. 3A §11.11).
    assert_eq!(hex(ev, "feaddr"), 0xfee0_0000);
    assert_eq!(hex(ev, "fedata"), 0x40);
    let irq = run.record("IRQ").expect("IRQ");
    assert!(irq.line.starts_with("IRQ vtd-fault "), "{}", irq.line);
    assert_eq!(irq.get("count"), Some("1"), "{}", run.describe());
    assert_eq!(irq.get("path"), Some("irq"));
    let f = fault_at(&run, "00:02.0", 0x1000_0000, "write");
    assert_eq!(f.len(), 1, "{}", run.describe());
    assert_eq!(f[0].get("when"), Some("irq"));

    // Control: FECTL left masked: no interrupt, FECTL.IP set, and the poll finds the record.
    let control = boot("scenario=irq-fault vtd-irq=off");
    control.assert_pass();
    let ev = control.record("VTD_FAULT_EVENT").expect("VTD_FAULT_EVENT");
    assert_eq!(ev.get("masked"), Some("1"));
    assert_eq!(hex(ev, "feaddr"), 0);
    let irq = control.record("IRQ").expect("IRQ");
    assert_eq!(irq.get("count"), Some("0"), "{}", control.describe());
    assert_eq!(irq.get("fectl_ip"), Some("1"));
    assert_eq!(irq.get("path"), Some("poll"));
    let f = fault_at(&control, "00:02.0", 0x1000_0000, "write");
    assert_eq!(f.len(), 1, "{}", control.describe());
    assert_eq!(f[0].get("when"), Some("poll"));
}

/// `(records, possibly_lost)` of `vm`'s ledger as the scenario read it (`LEDGER vm=...`).
fn ledger(run: &Run, vm: &str) -> (String, String) {
    let r = run
        .records("LEDGER")
        .find(|r| r.get("vm") == Some(vm))
        .unwrap_or_else(|| panic!("no LEDGER vm={vm}; {}", run.describe()));
    (
        r.get("records").unwrap_or("?").to_string(),
        r.get("possibly_lost").unwrap_or("?").to_string(),
    )
}

#[test]
fn a_record_the_unit_lost_is_announced_and_the_fault_interrupt_prevents_the_loss() {
    // QEMU's unit has one recording register: vm1's edu faults, then vm2's. With nothing
    // draining between them, vm2's record is lost (FSTS.PFO); its ledger is empty but says
    // possibly_lost=1, and so does vm1's (the unit names nobody).
    let lost = boot("scenario=lost-records vtd-irq=off");
    lost.assert_pass();
    assert!(check(&lost, "lost-records-announced").get("ok") == Some("1"));
    assert_eq!(
        ledger(&lost, "vm1"),
        ("1".into(), "1".into()),
        "{}",
        lost.describe()
    );
    assert_eq!(
        ledger(&lost, "vm2"),
        ("0".into(), "1".into()),
        "{}",
        lost.describe()
    );
    // The manager drains on the fault interrupt: the register is free again before vm2's
    // fault, both records arrive and no ledger is marked.
    let drained = boot("scenario=lost-records");
    drained.assert_pass();
    assert!(drained
        .records("IRQ")
        .any(|r| r.line.starts_with("IRQ vtd-fault drain ")));
    assert_eq!(
        ledger(&drained, "vm1"),
        ("1".into(), "0".into()),
        "{}",
        drained.describe()
    );
    assert_eq!(
        ledger(&drained, "vm2"),
        ("1".into(), "0".into()),
        "{}",
        drained.describe()
    );
}

/// The `VTD_BLOCK` record of QEMU's one unit: the fail-safe confirmed every step.
fn assert_unit_blocking(run: &Run, translating_before: bool) {
    let qi = if translating_before { "off" } else { "was-off" };
    assert_unit_blocking_qi(run, translating_before, qi);
}

/// [`assert_unit_blocking`], with the invalidation queue's fate `qi`.
fn assert_unit_blocking_qi(run: &Run, translating_before: bool, qi: &str) {
    let all: Vec<&Record> = run.records("VTD_BLOCK").collect();
    assert_eq!(all.len(), 1, "one unit; {}", run.describe());
    let b = all[0];
    assert_eq!(hex(b, "base"), 0xfed9_0000, "{}", b.line);
    for key in [
        "blocking",
        "translating",
        "root_latched",
        "context_invalidated",
        "iotlb_invalidated",
    ] {
        assert_eq!(b.get(key), Some("1"), "{key}: {}", b.line);
    }
    // GSTS.TES (bit 31) before: on after bring-up, off (QEMU's reset state) before it.
    let before = hex(b, "gsts_before");
    assert_eq!(before & (1 << 31) != 0, translating_before, "{}", b.line);
    assert_eq!(b.get("qi"), Some(qi), "{}", b.line);
    assert_ne!(hex(b, "gsts") & (1 << 31), 0, "TES at the end: {}", b.line);
}

/// After the fail-safe the edu, still a bus master, wrote its buffer over the patterned
/// target: unchanged, and the unit recorded the write (root entry not present). The records'
/// order shows the block and its report came before the DMA.
fn assert_probe_blocked(run: &Run, failure: &str) {
    let probe = check(run, "failsafe-dma-blocked");
    assert_eq!(probe.get("ok"), Some("1"), "{}", probe.line);
    assert_eq!(probe.get("landed"), Some("0"), "{}", probe.line);
    assert_eq!(probe.get("dma"), Some("done"), "{}", probe.line);
    assert_eq!(probe.get("recorded"), Some("1"), "{}", probe.line);
    assert_eq!(probe.get("reason"), Some("0x01"), "{}", probe.line);
    let planned = run.record("FAILSAFE_PROBE").expect("FAILSAFE_PROBE");
    assert_eq!(probe.get("target"), planned.get("target"), "{}", probe.line);
    assert_eq!(probe.get("bdf"), planned.get("bdf"), "{}", probe.line);
    assert_eq!(probe.get("bdf"), Some("00:02.0"), "edu 0: {}", probe.line);
    let order: Vec<&str> = run
        .records
        .iter()
        .filter_map(|r| match r.kind.as_str() {
            "CHECK" if r.get("step") == Some("failsafe-dma-blocked") => Some("PROBE"),
            k if [failure, "FAILSAFE", "VTD_BLOCK"].contains(&k) => Some(k),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [failure, "FAILSAFE", "VTD_BLOCK", "PROBE"],
        "{}",
        run.describe()
    );
}

#[test]
fn every_way_out_after_bring_up_leaves_the_unit_blocking_a_live_window_included() {
    // (scenario, exit code, the failure's own record, FAILSAFE reason=)
    for (scenario, code, failure, reason) in [
        ("exit-after-bringup", 0, "RESULT", "exit"),
        ("fatal-after-bringup", 4, "FATAL", "scenario"),
        ("panic-after-bringup", 101, "PANIC", "panic"),
        ("fault-after-bringup", 3, "EXCEPTION", "exception"),
    ] {
        let run = boot(&format!("scenario={scenario}"));
        assert_eq!(run.exit_code, Some(code), "{scenario}: {}", run.describe());
        // The window was live: the edu's DMA landed in it before the way out.
        assert_eq!(check(&run, "failsafe-window-lands").get("ok"), Some("1"));
        let f = run.record("FAILSAFE").expect("FAILSAFE");
        assert_eq!(f.get("reason"), Some(reason), "{scenario}: {}", f.line);
        assert_eq!(f.get("block"), Some("all"), "{}", f.line);
        assert_eq!(f.get("vtd_units"), Some("1"), "{}", f.line);
        assert_unit_blocking(&run, true);
        assert_probe_blocked(&run, failure);
    }
}

/// A failure in the middle of a submission leaves the invalidation queue stopped at a
/// descriptor the unit refused (FSTS.IQE); QEMU will not turn such a queue off. The fail-safe
/// clears the error, sends its invalidations through the queue (`qi=recovered`) and blocks.
#[test]
fn a_queue_stopped_at_an_error_is_recovered_by_the_fail_safe() {
    let run = boot("scenario=queue-error-after-bringup");
    assert_eq!(run.exit_code, Some(101), "{}", run.describe());
    let stopped = check(&run, "queue-stopped");
    assert_eq!(stopped.get("ok"), Some("1"), "{}", stopped.line);
    assert_ne!(hex(stopped, "fsts") & (1 << 4), 0, "IQE: {}", stopped.line);
    assert_unit_blocking_qi(&run, true, "recovered");
    assert_probe_blocked(&run, "PANIC");
}

#[test]
fn a_refused_start_takes_the_unit_from_translation_off_to_blocking() {
    let run = boot("scenario=nosuch failsafe-probe=1");
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    assert!(
        run.record("VTD").is_none(),
        "never brought up: {}",
        run.describe()
    );
    assert_unit_blocking(&run, false);
    assert_probe_blocked(&run, "FATAL");
}

/// The controls: the same runs with the block skipped. The unit keeps translating through the
/// live window (or, for the refused start, stays off), and the same DMA lands, without a
/// record: without the block the probe fails.
#[test]
fn without_the_block_the_same_dma_lands() {
    for bootargs in [
        "scenario=exit-after-bringup failsafe-probe=skip-block-control",
        "scenario=panic-after-bringup failsafe-probe=skip-block-control",
        "scenario=nosuch failsafe-probe=skip-block-control",
    ] {
        let run = boot(bootargs);
        let f = run.record("FAILSAFE").expect("FAILSAFE");
        assert_eq!(f.get("block"), Some("skipped"), "{bootargs}: {}", f.line);
        assert_eq!(run.records("VTD_BLOCK").count(), 0, "{}", run.describe());
        let c = check(&run, "failsafe-control-dma-lands");
        assert_eq!(c.get("ok"), Some("1"), "{bootargs}: {}", c.line);
        assert_eq!(c.get("landed"), Some("1"), "{}", c.line);
        assert_eq!(c.get("recorded"), Some("0"), "{}", c.line);
    }
}
