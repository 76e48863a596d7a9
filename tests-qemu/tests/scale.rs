//! The manager at scale under QEMU: 10,000 windows into one VM through the client library in
//! batches, DMA through a sample, all unmapped in batches; the SMMU's counts show one CMD_SYNC
//! per unmap batch (a map needs none), and every page-table page is back in the daemon pool.

use tests_qemu::{run, Record, Run};

fn counts(run: &Run, when: &str) -> (u64, u64, u64) {
    let r: &Record = run
        .records("IOMMU_COUNTS")
        .find(|r| r.get("when") == Some(when))
        .unwrap_or_else(|| panic!("no IOMMU_COUNTS {when}\n{}", run.describe()));
    let n = |k: &str| {
        let v = r.get(k).unwrap_or("?");
        v.strip_prefix("0x")
            .map_or_else(|| v.parse(), |h| u64::from_str_radix(h, 16))
            .unwrap_or_else(|_| panic!("{k}={v}"))
    };
    (n("commands"), n("syncs"), n("pool_free"))
}

#[test]
fn ten_thousand_windows_in_batches_cost_one_sync_per_unmap_batch_and_leak_no_table() {
    let run = run("vmm-many", &[]).unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    let check = |step: &str| {
        let r = run
            .records("CHECK")
            .filter(|r| r.get("step") == Some(step))
            .collect::<Vec<_>>();
        assert!(!r.is_empty(), "no CHECK {step}\n{}", run.describe());
        assert!(r.iter().all(|r| r.get("ok") == Some("1")), "{step}");
        r.first().map(|r| r.line.clone()).unwrap_or_default()
    };
    let maps = check("map-batches");
    assert!(maps.contains("windows=10000 batches=313"), "{maps}");
    assert_eq!(
        run.records("CHECK")
            .filter(|r| r.get("step") == Some("sample-dma-lands"))
            .count(),
        5
    );
    let unmaps = check("unmap-batches");
    assert!(unmaps.contains("batches=167"), "{unmaps}");
    check("after-unmap-blocked");
    let (_, syncs0, free0) = counts(&run, "before");
    let (_, syncs1, free1) = counts(&run, "after");
    // 167 unmap batches, plus the attach, the detach on destroy and a few more.
    let syncs = syncs1 - syncs0;
    assert!(
        (167..=167 + 8).contains(&syncs),
        "{syncs} CMD_SYNCs for 313 map batches and 167 unmap batches"
    );
    assert_eq!(
        free1, free0,
        "every page-table page is back in the daemon pool"
    );
}

/// The quota comes from the config (`mappings`), and the heap is sized for it: with 5,000 the
/// 157th batch of 32 (windows 4,992 to 5,023) is refused whole, and the heap is 4 MiB.
#[test]
fn the_configs_mappings_set_the_quota_and_the_heap() {
    let config = tests_qemu::repo_file("tests-qemu/fixtures/qemu-mappings-small.conf");
    let boot = tests_qemu::Boot {
        initrd: Some(&config),
        ..tests_qemu::Boot::default()
    };
    let run = tests_qemu::run_on(&boot, "vmm-many", &[]).unwrap_or_else(|e| panic!("{e}"));
    let heap = run
        .record("HEAP")
        .unwrap_or_else(|| panic!("{}", run.describe()));
    assert_eq!(heap.get("mappings"), Some("5000"), "{}", heap.line);
    assert_eq!(heap.get("bytes"), Some("0x400000"), "{}", heap.line);
    let refused = run
        .records("CHECK")
        .find(|r| r.get("step") == Some("map-batches"))
        .unwrap_or_else(|| panic!("{}", run.describe()));
    assert_eq!(refused.get("ok"), Some("0"), "{}", refused.line);
    assert_eq!(refused.get("window"), Some("5024"), "{}", refused.line);
    // Control: the default config's quota (131,072) takes all 10,000.
    let run = run_default();
    let heap = run.record("HEAP").unwrap();
    assert_eq!(heap.get("mappings"), Some("131072"), "{}", heap.line);
}

fn run_default() -> Run {
    let run = run("vmm-many", &[]).unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    run
}
