//! Issue 4's proof under QEMU: one image, four kinds of config passed as initrd (firmware only,
//! a user override, `merge`, a broken file), and the bridge board whose devices share one
//! StreamID. What the daemon decided is read from its `TOPOLOGY`/`BINDING`/`STREAM`/`GROUP`
//! records; that the decision is real is shown by DMA (`sid-probe`, `static-window`), or, for a
//! refused start, by the SMMU's registers and a DMA that must not land.

use std::path::PathBuf;
use tests_qemu::{repo_file, run_on, Boot, Record, Run};

/// The board-config crate's QEMU scenario configs.
fn fixture(name: &str) -> PathBuf {
    repo_file(&format!("crates/board-config/tests/fixtures/config/{name}"))
}

/// This crate's QEMU scenario configs.
fn own_fixture(name: &str) -> PathBuf {
    repo_file(&format!("tests-qemu/fixtures/{name}"))
}

fn boot_with(board: Option<&str>, initrd: Option<&PathBuf>, scenario: &str, extra: &[&str]) -> Run {
    let boot = Boot {
        board,
        initrd: initrd.map(PathBuf::as_path),
        qemu_args: &[],
    };
    run_on(&boot, scenario, extra).unwrap_or_else(|e| panic!("{e}"))
}

fn with_config(config: &PathBuf, scenario: &str, extra: &[&str]) -> Run {
    boot_with(None, Some(config), scenario, extra)
}

fn one<'r>(run: &'r Run, kind: &str) -> &'r Record {
    let all: Vec<&Record> = run.records(kind).collect();
    assert_eq!(all.len(), 1, "expected one {kind}; {}", run.describe());
    all[0]
}

fn field<'r>(r: &'r Record, key: &str) -> &'r str {
    r.get(key)
        .unwrap_or_else(|| panic!("no {key}= in {}", r.line))
}

/// The `STREAM` record of `bdf`.
fn stream<'r>(run: &'r Run, bdf: &str) -> &'r Record {
    run.records("STREAM")
        .find(|r| r.get("bdf") == Some(bdf))
        .unwrap_or_else(|| panic!("no STREAM for {bdf}; {}", run.describe()))
}

/// (bdf, sid, decision, source) of every `STREAM` record.
fn streams(run: &Run) -> Vec<(String, String, String, String)> {
    run.records("STREAM")
        .map(|r| {
            let f = |k| r.get(k).unwrap_or("?").to_string();
            (f("bdf"), f("sid"), f("decision"), f("source"))
        })
        .collect()
}

fn owned(rows: &[(&str, &str, &str, &str)]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect()
}

/// The `PROBE` record of `bdf`: (landed, fault_sid).
fn probe(run: &Run, bdf: &str) -> (String, String) {
    let r = run
        .records("PROBE")
        .find(|r| r.get("bdf") == Some(bdf))
        .unwrap_or_else(|| panic!("no PROBE for {bdf}; {}", run.describe()));
    (
        field(r, "landed").to_string(),
        field(r, "fault_sid").to_string(),
    )
}

fn check_passed<'r>(run: &'r Run, step: &str) -> &'r Record {
    let rec = run
        .records("CHECK")
        .find(|r| r.get("step") == Some(step))
        .unwrap_or_else(|| panic!("no CHECK {step}; {}", run.describe()));
    assert_eq!(rec.get("ok"), Some("1"), "{}", rec.line);
    rec
}

/// The refusal every broken start must end in: exit code 4, exactly one `FATAL reason=config`
/// at `stage`, every SMMU aborting (GBPA.ABORT read back set, SMMUEN clear), and nothing of
/// what a started daemon prints (no STE decision, no scenario). Returns the FATAL detail.
fn assert_refused(run: &Run, stage: &str) -> String {
    assert_eq!(run.exit_code, Some(4), "{}", run.describe());
    let fatal = one(run, "FATAL");
    assert_eq!(fatal.get("reason"), Some("config"), "{}", fatal.line);
    assert_eq!(fatal.get("stage"), Some(stage), "{}", fatal.line);
    let abort = one(run, "SMMU_ABORT");
    assert_eq!(
        abort.get("base"),
        Some("0x0000000009050000"),
        "{}",
        abort.line
    );
    for (key, value) in [
        ("aborting", "1"),
        ("abort", "1"),
        ("smmuen", "0"),
        ("acknowledged", "1"),
    ] {
        assert_eq!(abort.get(key), Some(value), "{key}: {}", abort.line);
    }
    let gbpa = u32::from_str_radix(field(abort, "gbpa").trim_start_matches("0x"), 16).unwrap();
    assert_ne!(gbpa & (1 << 20), 0, "GBPA.ABORT (bit 20): {}", abort.line);
    for kind in ["STREAM", "SMMU_UP", "RESULT"] {
        assert_eq!(
            run.records(kind).count(),
            0,
            "{kind} after a refusal; {}",
            run.describe()
        );
    }
    field(fatal, "detail").to_string()
}

#[test]
fn without_an_initrd_the_image_uses_its_embedded_board_config() {
    let run = boot_with(None, None, "boot", &[]);
    run.assert_pass();
    let config = one(&run, "CONFIG");
    assert_eq!(config.get("source"), Some("embedded"), "{}", config.line);
    assert_eq!(
        config.get("file"),
        Some("boards/qemu-virt/smmuman.conf"),
        "{}",
        config.line
    );
    let topology = one(&run, "TOPOLOGY");
    assert_eq!(topology.get("mode"), Some("override"), "{}", topology.line);
    assert_eq!(topology.get("windows"), Some("0"), "{}", topology.line);
    // qemu-virt's file states nothing: firmware's iommu-map is the one binding.
    let binding = one(&run, "BINDING");
    assert_eq!(binding.get("source"), Some("firmware"), "{}", binding.line);
    assert_eq!(
        binding.get("range"),
        Some("pci:0000:0x0..=0xffff"),
        "{}",
        binding.line
    );
    assert_eq!(field(one(&run, "SMMU_PROBE"), "sid_bits"), "16");
}

/// (a) Firmware only: a comment-only initrd. Every binding is the device tree's, and DMA
/// follows it: a window for 00:01.0's StreamID (0x8) lets 00:01.0's DMA through, and
/// 00:02.0's is refused and recorded as StreamID 0x10.
#[test]
fn a_firmware_only_config_keeps_the_device_trees_bindings_and_dma_follows_them() {
    let run = with_config(&fixture("qemu-firmware-only.conf"), "sid-probe", &[]);
    run.assert_pass();
    let config = one(&run, "CONFIG");
    assert_eq!(config.get("source"), Some("initrd"), "{}", config.line);
    assert_eq!(
        config.get("range").map(|r| &r[..18]),
        Some("0x0000000048000000")
    );
    assert!(run.records("BINDING").count() >= 1);
    for b in run.records("BINDING") {
        assert_eq!(b.get("source"), Some("firmware"), "{}", b.line);
    }
    assert_eq!(
        streams(&run),
        owned(&[
            ("00:00.0", "0x0", "deny-and-record", "firmware"),
            ("00:01.0", "0x8", "deny-and-record", "firmware"),
            ("00:02.0", "0x10", "deny-and-record", "firmware"),
        ]),
        "{}",
        run.describe()
    );
    assert_eq!(probe(&run, "00:01.0"), ("1".into(), "none".into()));
    assert_eq!(probe(&run, "00:02.0"), ("0".into(), "0x10".into()));
    let result = run.result().unwrap();
    assert_eq!(result.get("window_sid"), Some("0x8"), "{}", result.line);
    assert_eq!(result.get("landed"), Some("00:01.0"), "{}", result.line);
    // The initrd is never handed out (QEMU does not reserve it).
    assert!(
        run.records("RESERVED")
            .any(|r| r.get("kind") == Some("initrd")
                && r.get("range") == Some("0x0000000048000000+0x1000")),
        "{}",
        run.describe()
    );
}

/// (b) Override: the config swaps the StreamIDs of 00:01.0 and 00:02.0. The daemon uses the
/// config's (source=config), so the window it gives "00:01.0's StreamID" (now 0x10) lets
/// 00:02.0's DMA through, and 00:01.0's DMA, which really carries 0x8, is refused and recorded
/// as 0x8. Compare with the firmware-only run above, where it is the other way round.
#[test]
fn a_config_override_decides_whose_dma_gets_through() {
    let run = with_config(&own_fixture("qemu-override-swap.conf"), "sid-probe", &[]);
    run.assert_pass();
    let bindings: Vec<(&str, &str, &str)> = run
        .records("BINDING")
        .filter_map(|b| Some((b.get("device")?, field(b, "sid"), field(b, "source"))))
        .collect();
    assert_eq!(
        bindings,
        [
            ("pci:0000:00:01.0", "0x10", "config"),
            ("pci:0000:00:02.0", "0x8", "config")
        ],
        "{}",
        run.describe()
    );
    assert_eq!(
        streams(&run),
        owned(&[
            ("00:00.0", "0x0", "deny-and-record", "firmware"),
            ("00:01.0", "0x10", "deny-and-record", "config"),
            ("00:02.0", "0x8", "deny-and-record", "config"),
        ]),
        "{}",
        run.describe()
    );
    assert_eq!(probe(&run, "00:01.0"), ("0".into(), "0x8".into()));
    assert_eq!(probe(&run, "00:02.0"), ("1".into(), "none".into()));
    let result = run.result().unwrap();
    assert_eq!(result.get("window_sid"), Some("0x10"), "{}", result.line);
    assert_eq!(result.get("landed"), Some("00:02.0"), "{}", result.line);
}

/// (c) Merge: firmware's view stays (its iommu-map binding), the config adds a reserved
/// StreamID (0, the host bridge: reserved, bus mastering off) and a static window for
/// 00:02.0, which the daemon maps at start-up: 00:02.0's DMA lands in it at PA 0x5000_3000,
/// 00:01.0 stays refused. The window's RAM is cut out of the guest pool.
#[test]
fn merge_keeps_firmware_and_adds_a_static_window_that_device_b_uses() {
    let config = fixture("qemu-merge.conf");
    let run = with_config(&config, "static-window", &[]);
    run.assert_pass();
    assert_eq!(field(one(&run, "TOPOLOGY"), "mode"), "merge");
    let binding = one(&run, "BINDING");
    assert_eq!(binding.get("source"), Some("firmware"), "{}", binding.line);
    let reserved = one(&run, "SID_RESERVED");
    assert_eq!(reserved.get("first"), Some("0x0"), "{}", reserved.line);
    assert_eq!(reserved.get("source"), Some("config"), "{}", reserved.line);
    let window = one(&run, "STATIC_WINDOW");
    assert_eq!(
        window.get("device"),
        Some("pci:0000:00:02.0"),
        "{}",
        window.line
    );
    assert_eq!(window.get("line"), Some("10"), "{}", window.line);
    let mapped = one(&run, "WINDOW_MAPPED");
    assert_eq!(mapped.get("sid"), Some("0x10"), "{}", mapped.line);
    assert_eq!(
        mapped.get("pa"),
        Some("0x0000000050000000"),
        "{}",
        mapped.line
    );
    assert_eq!(
        streams(&run),
        owned(&[
            ("00:00.0", "0x0", "reserved", "firmware"),
            ("00:01.0", "0x8", "deny-and-record", "firmware"),
            ("00:02.0", "0x10", "static-window", "firmware"),
        ]),
        "{}",
        run.describe()
    );
    assert_eq!(stream(&run, "00:00.0").get("bus_master"), Some("0"));
    let lands = check_passed(&run, "static-window-lands");
    assert_eq!(
        lands.get("pa"),
        Some("0x0000000050003000"),
        "{}",
        lands.line
    );
    assert_eq!(lands.get("faults"), Some("0"), "{}", lands.line);
    let not_mappable = check_passed(&run, "static-window-ram-not-mappable");
    assert_eq!(
        not_mappable.get("pa"),
        Some("0x0000000050000000"),
        "{}",
        not_mappable.line
    );
    let blocked = check_passed(&run, "static-window-others-blocked");
    assert_eq!(blocked.get("fault_sid"), Some("0x8"), "{}", blocked.line);
    assert!(
        run.records("RESERVED")
            .any(|r| r.get("kind") == Some("static-window")
                && r.get("range") == Some("0x0000000050000000+0x200000")),
        "{}",
        run.describe()
    );

    // The static window's RAM is never handed out again: device A's own window (scenario 1)
    // gets the next 2 MiB of the guest pool.
    let window = with_config(&config, "window", &[]);
    window.assert_pass();
    let result = window.result().unwrap();
    assert_eq!(
        result.get("window_pa"),
        Some("0x0000000050200000"),
        "{}",
        result.line
    );
}

/// (c) Merge conflict: the config says 00:01.0 is StreamID 0x9, the device tree 0x8. The
/// daemon refuses to start, names both sources, leaves the SMMU aborting, and an edu's DMA
/// after the refusal is blocked.
#[test]
fn a_merge_conflict_refuses_to_start_naming_both_sources() {
    let run = with_config(
        &fixture("qemu-merge-conflict.conf"),
        "window",
        &["refused-dma-probe=1"],
    );
    let detail = assert_refused(&run, "combine");
    assert_eq!(
        detail,
        "merge: pci 0000:00:01.0 has StreamID 0x8 of smmu0 in the device tree but StreamID 0x9 of smmu0 on config line 10"
    );
    let probe = check_passed(&run, "refused-start-dma-blocked");
    assert_eq!(probe.get("landed"), Some("0"), "{}", probe.line);
}

/// (d) A broken config: the daemon says where (file:line:col) and what it expected, refuses to
/// start (exit 4), leaves the SMMU aborting (GBPA.ABORT set, SMMUEN clear, read back from the
/// SMMU), and an edu that is then allowed to master the bus cannot write RAM.
#[test]
fn a_broken_config_refuses_to_start_with_the_smmu_aborting_and_dma_blocked() {
    let run = with_config(
        &fixture("bad-number.conf"),
        "window",
        &["refused-dma-probe=1"],
    );
    let detail = assert_refused(&run, "parse");
    assert_eq!(
        detail,
        "initrd:7:5: expected a StreamID (number), found \"zz\""
    );
    assert_eq!(field(one(&run, "FATAL"), "file"), "initrd");
    let probe = check_passed(&run, "refused-start-dma-blocked");
    assert_eq!(probe.get("bdf"), Some("00:01.0"), "{}", probe.line);
    assert_eq!(probe.get("landed"), Some("0"), "{}", probe.line);
    // The probe comes after the abort: it tests the state the refusal leaves.
    let order: Vec<&str> = run
        .records
        .iter()
        .map(|r| r.kind.as_str())
        .filter(|k| ["FATAL", "SMMU_ABORT", "CHECK"].contains(k))
        .collect();
    assert_eq!(
        order,
        ["FATAL", "SMMU_ABORT", "CHECK"],
        "{}",
        run.describe()
    );
}

/// The DMA probe can fail: run before the abort, with the SMMU as QEMU resets it (GBPA.ABORT
/// clear: bypass), the same DMA lands.
#[test]
fn the_refused_start_probe_sees_dma_land_when_the_smmu_is_not_yet_aborting() {
    let run = with_config(
        &fixture("bad-number.conf"),
        "window",
        &["refused-dma-probe=bypass-control"],
    );
    assert_refused(&run, "parse");
    let control = check_passed(&run, "refused-start-control-dma-lands");
    assert_eq!(control.get("landed"), Some("1"), "{}", control.line);
}

/// The refused start's DMA probe is a test control: the product image ignores
/// `refused-dma-probe=` (the shim starts with `StartOptions::PRODUCT`), so a product image
/// whose config is refused lets no device DMA, not even the control's, and still refuses
/// with the SMMU aborting. Its control is the test above: the test image, same config and
/// bootarg, runs the probe and the DMA lands.
#[test]
fn the_product_image_ignores_the_refused_start_probe() {
    let config = fixture("bad-number.conf");
    let boot = Boot {
        initrd: Some(&config),
        ..Boot::default()
    };
    let run = tests_qemu::host::run_product_on(&boot, "refused-dma-probe=bypass-control")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_refused(&run, "parse");
    assert_eq!(run.records("CHECK").count(), 0, "{}", run.describe());
}

/// Well-formed configs that ask for what the board cannot do are refused the same way: a window
/// over the daemon's own image, a StreamID wider than the SMMU's IDR1.SIDSIZE (known only once
/// the SMMU is probed), a second SMMU the device tree does not list.
#[test]
fn impossible_configs_refuse_to_start() {
    let run = with_config(&own_fixture("qemu-window-over-image.conf"), "boot", &[]);
    let detail = assert_refused(&run, "windows");
    assert!(
        detail.contains("pa 0x0000000040080000+0x10000 is not free guest memory"),
        "{detail}"
    );
    assert!(detail.contains("config line 5"), "{detail}");

    let run = with_config(&own_fixture("qemu-sid-too-wide.conf"), "boot", &[]);
    let detail = assert_refused(&run, "sid-width");
    assert!(detail.contains("StreamID 0x10000"), "{detail}");
    assert!(detail.contains("16 StreamID bits"), "{detail}");
    assert_eq!(field(one(&run, "SMMU_PROBE"), "sid_bits"), "16");

    let run = with_config(&own_fixture("qemu-second-unit.conf"), "boot", &[]);
    let detail = assert_refused(&run, "units");
    assert!(detail.contains("smmu1"), "{detail}");

    // Memory authority: a VM's RAM must be free guest memory, a peer BAR must exist.
    let run = with_config(&own_fixture("qemu-vm-ram-over-image.conf"), "boot", &[]);
    let detail = assert_refused(&run, "windows");
    assert!(
        detail.starts_with(
            "line 7: vm greedy: ram 0x0000000040000000+0x400000 is not free guest memory"
        ),
        "{detail}"
    );
    let run = with_config(&own_fixture("qemu-vm-peer-missing.conf"), "boot", &[]);
    let detail = assert_refused(&run, "windows");
    assert_eq!(
        detail,
        "line 4: vm vm1: peer pci 0000:00:07.0 bar 0: no such PCI function on this board"
    );
}

/// `unclaimed bypass` with its opt-in: obeyed, and announced (BYPASS record, decision=bypass
/// for every stream no window claims). Device A's own window still works.
#[test]
fn unclaimed_bypass_is_only_applied_with_the_opt_in_and_announced() {
    let run = with_config(&own_fixture("qemu-bypass.conf"), "window", &[]);
    run.assert_pass();
    let bypass = one(&run, "BYPASS");
    assert_eq!(bypass.get("source"), Some("config"), "{}", bypass.line);
    assert!(
        run.console.contains("bypass translation"),
        "{}",
        run.describe()
    );
    for s in run.records("STREAM") {
        assert_eq!(s.get("decision"), Some("bypass"), "{}", s.line);
    }
    // The same line without the opt-in is a config error.
    let run = with_config(&fixture("bypass-without-opt-in.conf"), "window", &[]);
    let detail = assert_refused(&run, "parse");
    assert!(detail.contains("allow-bypass yes"), "{detail}");
}

/// The bridge board: both edus sit behind a pcie-pci-bridge, their DMA carries (01:00.0), i.e.
/// StreamID 0x100. The board's config says so (source=config), they form one group, and one
/// window on the shared StreamID lets both devices' DMA land: they attach as a unit.
#[test]
fn the_bridge_board_boots_with_both_edus_in_one_group_on_streamid_0x100() {
    let conf = repo_file("boards/qemu-virt-bridge/smmuman.conf");
    let run = boot_with(Some("qemu-virt-bridge"), Some(&conf), "sid-probe", &[]);
    run.assert_pass();
    for bdf in ["01:01.0", "01:02.0"] {
        let b = run
            .records("BINDING")
            .find(|b| b.get("device") == Some(&format!("pci:0000:{bdf}")))
            .unwrap_or_else(|| panic!("no BINDING for {bdf}; {}", run.describe()));
        assert_eq!(
            (b.get("sid"), b.get("shared")),
            (Some("0x100"), Some("1")),
            "{}",
            b.line
        );
        assert_eq!(b.get("source"), Some("config"), "{}", b.line);
        let s = stream(&run, bdf);
        assert_eq!(s.get("sid"), Some("0x100"), "{}", s.line);
        assert_eq!(s.get("dma_alias"), Some("01:00.0"), "{}", s.line);
        assert_eq!(s.get("source"), Some("config"), "{}", s.line);
        assert_eq!(probe(&run, bdf), ("1".into(), "none".into()));
    }
    let group = one(&run, "GROUP");
    assert_eq!(group.get("sid"), Some("0x100"), "{}", group.line);
    assert_eq!(
        group.get("members"),
        Some("01:01.0,01:02.0"),
        "{}",
        group.line
    );
    assert_eq!(field(one(&run, "TOPOLOGY"), "groups_declared"), "1");
    let result = run.result().unwrap();
    assert_eq!(
        result.get("landed"),
        Some("01:01.0,01:02.0"),
        "{}",
        result.line
    );
    assert_eq!(run.records("FAULT").count(), 0, "{}", run.describe());
}

/// Without the board's config the daemon still gets the bridge right: enumeration numbers the
/// bridge's secondary bus before any DMA and follows the DMA alias, and firmware's iommu-map
/// of the alias (01:00.0) is 0x100. Firmware's statement about 01:01.0 itself (0x108) is never
/// used for DMA that the bridge re-issues.
#[test]
fn on_the_bridge_board_firmware_alone_gives_the_alias_streamid() {
    let run = boot_with(
        Some("qemu-virt-bridge"),
        Some(&fixture("qemu-firmware-only.conf")),
        "sid-probe",
        &[],
    );
    run.assert_pass();
    for bdf in ["01:01.0", "01:02.0"] {
        let s = stream(&run, bdf);
        assert_eq!(s.get("sid"), Some("0x100"), "{}", s.line);
        assert_eq!(s.get("source"), Some("firmware"), "{}", s.line);
    }
    assert_eq!(field(one(&run, "GROUP"), "members"), "01:01.0,01:02.0");
}

#[test]
fn xtask_boards_can_be_named_and_unknown_ones_are_refused() {
    let boot = Boot {
        board: Some("no-such-board"),
        ..Boot::default()
    };
    let err = run_on(&boot, "boot", &[]).unwrap_err();
    assert!(err.contains("qemu-virt, qemu-virt-bridge"), "{err}");
}
