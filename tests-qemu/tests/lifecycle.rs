//! The VM life cycle on the host: a VM whose guest stops is started again in the same RAM with
//! the same device (the plan's `restart 1`), and what the second guest finds shows the host's
//! order on stop: devices quiesced (bus mastering off, FLR where offered, 100 ms), VM object
//! destroyed, RAM scrubbed, only then the RAM handed out again. Each test has its control in
//! the test image (`scenario=host-plan control=skip-scrub|skip-quiesce`), which shows the
//! leak the step prevents.

use tests_qemu::host::{run_host, HostBoot};
use tests_qemu::{Record, Run};

const SCRUB: &str = include_str!("../plans/scrub.plan");
const STALE_DMA: &str = include_str!("../plans/stale-dma.plan");

fn host(plan: &str, name: &str, control: Option<&'static str>) -> Run {
    let extra: &[&str] = match control {
        Some("skip-scrub") => &["control=skip-scrub"],
        Some("skip-quiesce") => &["control=skip-quiesce"],
        _ => &[],
    };
    run_host(&HostBoot {
        plan,
        name,
        scenario: control.map(|_| ("host-plan", extra)),
        ..HostBoot::default()
    })
    .unwrap()
}

/// The guest's `kind` lines (`LEFTOVER`, `STALE`), one per run, in order.
fn seen(run: &Run, kind: &str) -> Vec<Record> {
    let lines: Vec<Record> = run
        .guest("vm1")
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect();
    assert_eq!(lines.len(), 2, "two runs of vm1; {}", run.describe());
    lines
}

/// vm1's life-cycle steps in the order the host logged them.
fn steps(run: &Run) -> Vec<&'static str> {
    run.records
        .iter()
        .filter(|r| r.get("vm") == Some("vm1"))
        .filter_map(|r| match r.kind.as_str() {
            "VMM" if r.line.contains(" started") => Some("start"),
            "QUIESCE" => Some("quiesce"),
            "VMM" if r.line.contains(" finished ") => Some("destroyed"),
            "SCRUB" if r.get("when") == Some("before-first-start") => Some("first-scrub"),
            "SCRUB" => Some("scrub"),
            "VM" if r.line.contains(" state=stopped") => Some("stopped"),
            _ => None,
        })
        .collect()
}

/// Both runs of vm1 exited 0, and the host's records came in the life cycle's order: the
/// quiesce before the object's destruction (`VMM ... finished`), the scrub after it, the next
/// start after the scrub; the host then ended on its own.
fn assert_two_runs_in_order(run: &Run) {
    let stops: Vec<_> = run
        .records("VM")
        .filter(|r| r.get("vm") == Some("vm1") && r.get("reason").is_some())
        .collect();
    assert_eq!(stops.len(), 2, "{}", run.describe());
    for s in &stops {
        assert_eq!(s.get("status"), Some("0"), "{}", run.describe());
    }
    assert_eq!(
        steps(run),
        [
            "first-scrub",
            "start",
            "quiesce",
            "destroyed",
            "scrub",
            "start",
            "quiesce",
            "destroyed",
            "scrub",
            "stopped"
        ],
        "{}",
        run.describe()
    );
    assert_eq!(
        run.result().and_then(|r| r.get("runs")),
        Some("2"),
        "{}",
        run.describe()
    );
    run.assert_pass();
}

#[test]
fn a_restarted_guest_reads_zeros_where_the_previous_one_left_a_pattern() {
    let run = host(SCRUB, "life-scrub", None);
    assert_two_runs_in_order(&run);
    let [first, second] = <[Record; 2]>::try_from(seen(&run, "LEFTOVER")).unwrap();
    assert_eq!(first.get("nonzero_bytes"), Some("0"), "{}", run.describe());
    // The first run wrote its pattern (its CHECK passed); the scrub took it.
    assert_eq!(second.get("pattern"), Some("0"), "{}", run.describe());
    assert_eq!(second.get("nonzero_bytes"), Some("0"), "{}", run.describe());
    for s in run.records("SCRUB") {
        assert_eq!(s.get("bytes"), Some("4194304"), "{}", run.describe());
    }
}

#[test]
fn control_without_the_scrub_the_restarted_guest_reads_the_old_bytes() {
    let run = host(SCRUB, "life-scrub-control", Some("skip-scrub"));
    assert!(
        run.record("HOST_LIFE_CONTROL").is_some(),
        "{}",
        run.describe()
    );
    let [_, second] = <[Record; 2]>::try_from(seen(&run, "LEFTOVER")).unwrap();
    assert_eq!(second.get("pattern"), Some("1"), "{}", run.describe());
}

#[test]
fn a_dma_queued_by_the_previous_guest_does_not_land_in_the_next_ones_ram() {
    let run = host(STALE_DMA, "life-stale", None);
    assert_two_runs_in_order(&run);
    // QEMU's edu offers no Function Level Reset: the record says so.
    let quiesces: Vec<_> = run.records("QUIESCE").collect();
    assert_eq!(quiesces.len(), 2, "{}", run.describe());
    for q in &quiesces {
        assert_eq!(q.get("bus_master"), Some("off"), "{}", run.describe());
        assert_eq!(q.get("flr"), Some("not-offered"), "{}", run.describe());
        assert_eq!(q.get("device"), Some("00:01.0"), "{}", run.describe());
    }
    let [_, second] = <[Record; 2]>::try_from(seen(&run, "STALE")).unwrap();
    assert_eq!(second.get("pattern"), Some("0"), "{}", run.describe());
    assert_eq!(second.get("nonzero_bytes"), Some("0"), "{}", run.describe());
    let context = run.describe();
    tests_qemu::assert_checks(
        &run.guest_checks("vm1"),
        &[
            "pci-scan",
            "bar0",
            "edu-ident",
            "stale-buffer-loaded",
            "stale-dma-queued",
            "pci-scan",
            "bar0",
            "edu-ident",
            "stale-buffer-loaded",
            "stale-dma-queued",
        ],
        &context,
    );
}

#[test]
fn control_without_the_quiesce_the_stale_dma_lands_in_the_next_guests_ram() {
    let run = host(STALE_DMA, "life-stale-control", Some("skip-quiesce"));
    assert!(
        run.record("HOST_LIFE_CONTROL").is_some(),
        "{}",
        run.describe()
    );
    for q in run.records("QUIESCE") {
        assert_eq!(q.get("flr"), Some("skipped-control"), "{}", run.describe());
    }
    let [_, second] = <[Record; 2]>::try_from(seen(&run, "STALE")).unwrap();
    assert_eq!(second.get("pattern"), Some("1"), "{}", run.describe());
}

#[test]
fn with_stay_the_host_stays_resident_after_its_vms_stopped() {
    let run = run_host(&HostBoot {
        plan: SCRUB,
        name: "life-stay",
        bootargs: "stay=1",
        until: Some("HOST state=resident"),
        ..HostBoot::default()
    })
    .unwrap();
    // Killed while it served: it neither ended the plan nor left through the fail-safe.
    assert_eq!(run.exit_code, None, "{}", run.describe());
    assert!(run.record("RESULT").is_none(), "{}", run.describe());
    assert!(run.record("SMMU_ABORT").is_none(), "{}", run.describe());
    let steps = steps(&run);
    assert_eq!(steps.last(), Some(&"stopped"), "{}", run.describe());
    let resident = run
        .records
        .iter()
        .position(|r| r.kind == "HOST" && r.get("state") == Some("resident"));
    let stopped = run
        .records
        .iter()
        .position(|r| r.kind == "VM" && r.line.contains(" state=stopped"));
    assert!(
        resident.is_some() && stopped < resident,
        "resident after the last VM stopped; {}",
        run.describe()
    );
}

#[test]
fn stop_vm_and_start_vm_take_a_vm_round_its_cycle_twice() {
    const PLAN: &str = include_str!("../plans/lifecycle-api.plan");
    let run = run_host(&HostBoot {
        plan: PLAN,
        name: "life-api",
        scenario: Some(("host-lifecycle-api", &[])),
        ..HostBoot::default()
    })
    .unwrap();
    let api: Vec<String> = run
        .records("API")
        .map(|r| r.line.trim().to_string())
        .collect();
    assert_eq!(
        api,
        [
            "API stop_vm vm=vm1 ok=1",
            "API start_vm vm=vm1 ok=1",
            "API stop_vm vm=vm1 ok=1"
        ],
        "{}",
        run.describe()
    );
    // Both runs stopped on request, each quiesced, destroyed and scrubbed before the next.
    let stops: Vec<_> = run
        .records("VM")
        .filter(|r| r.get("vm") == Some("vm1") && r.get("reason").is_some())
        .collect();
    assert_eq!(stops.len(), 2, "{}", run.describe());
    for s in &stops {
        assert_eq!(s.get("reason"), Some("requested"), "{}", run.describe());
    }
    assert_eq!(
        steps(&run),
        [
            "first-scrub",
            "start",
            "quiesce",
            "destroyed",
            "scrub",
            "stopped",
            "start",
            "quiesce",
            "destroyed",
            "scrub",
            "stopped"
        ],
        "{}",
        run.describe()
    );
    // The host ended on its own once nothing was left to run, the SMMU aborting.
    assert_eq!(
        run.result().and_then(|r| r.get("runs")),
        Some("2"),
        "{}",
        run.describe()
    );
    assert!(run.record("SMMU_ABORT").is_some(), "{}", run.describe());
    assert!(run.record("FATAL").is_none(), "{}", run.describe());
}
