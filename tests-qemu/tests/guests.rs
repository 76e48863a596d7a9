//! The qvm test guests on plain QEMU `virt` (EL1, no VMM, no SMMU): their device tree, PCI,
//! BAR assignment and `edu` DMA code works, so what a VMM run shows is about the VMM and the
//! SMMU. Without an SMMU every DMA lands: guest-physical = physical here.

use std::time::Duration;
use tests_qemu::plain::{run_guest, GuestRun};

const LIMIT: Duration = Duration::from_secs(60);

fn assert_all_pass(run: &GuestRun, expected: &[&str]) {
    let context = format!("console:\n{}", run.console);
    tests_qemu::assert_checks(&run.checks(), expected, &context);
    assert_eq!(run.status(), Some(0), "{context}");
    assert!(!run.timed_out);
}

#[test]
fn driver_finds_edu_and_its_dma_round_trips_land() {
    let run = run_guest("driver", "", LIMIT).unwrap();
    assert_all_pass(
        &run,
        &[
            "pci-scan",
            "bar0",
            "edu-ident",
            "dma-small",
            "dma-page-cross",
            "dma-full-buffer",
            "dma-other-2mib",
        ],
    );
    let bar = run
        .records("CHECK")
        .find(|r| r.get("name") == Some("bar0"))
        .unwrap();
    assert_eq!(
        bar.get("assigned"),
        Some("1"),
        "QEMU's BAR reads 0 without firmware"
    );
}

#[test]
fn rogue_announces_each_target_and_its_dma_is_really_issued() {
    let run = run_guest(
        "rogue",
        "rogue.outside=0x60000000 rogue.host=0x50000000 rogue.smmu=0x9050000",
        LIMIT,
    )
    .unwrap();
    assert_all_pass(&run, &["bootargs", "control"]);
    let attempts: Vec<_> = run
        .records("ROGUE")
        .map(|r| {
            (
                r.get("target").unwrap_or(""),
                r.get("addr").unwrap_or(""),
                r.get("dir").unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("outside", "0x60000000", "write"),
            ("outside", "0x60000000", "read"),
            ("host", "0x50000000", "write"),
            ("host", "0x50000000", "read"),
            ("smmu", "0x9050000", "write"),
            ("smmu", "0x9050000", "read"),
        ]
    );
    // No SMMU here: the write to 0x5000_0000 (guest RAM on plain virt) landed and the read
    // brought the pattern back.
    let host = run
        .records("ROGUE_READ")
        .find(|r| r.get("target") == Some("host"))
        .unwrap();
    assert_eq!(
        host.get("first"),
        Some("52".repeat(16).as_str()),
        "{}",
        run.console
    );
}

#[test]
fn rogue_refuses_a_malformed_target() {
    let run = run_guest("rogue", "rogue.host=0x5000_0000", LIMIT).unwrap();
    assert!(
        run.checks().contains(&("bootargs".to_string(), false)),
        "{}",
        run.console
    );
    assert_eq!(run.status(), Some(1), "{}", run.console);
}

#[test]
fn unity_runs_where_it_is_linked_and_tries_one_dma() {
    let run = run_guest("unity", "", LIMIT).unwrap();
    assert_all_pass(&run, &["unity-layout", "pci-scan"]);
    let unity = run.records("UNITY").next().unwrap();
    assert_eq!(
        unity.get("image").map(|i| i.starts_with("0x51880000+")),
        Some(true),
        "{}",
        run.console
    );
    let dma = run.records("UNITY_DMA").next().unwrap();
    assert_eq!(dma.get("landed"), Some("1"), "no SMMU: {}", run.console);
}

#[test]
fn looper_prints_then_spins_until_killed() {
    let run = run_guest("looper", "", Duration::from_secs(3)).unwrap();
    assert!(run.timed_out, "{}", run.console);
    assert!(run.records("LOOPER").next().is_some(), "{}", run.console);
    assert_eq!(run.status(), None);
}
