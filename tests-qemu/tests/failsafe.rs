//! The failure path: once the SMMU's base is known, a panic or an unexpected exception leaves
//! every SMMU aborting all DMA (GBPA.ABORT = 1, SMMUEN = 0, read back) before the daemon
//! exits. Each test brings the SMMU and the manager up, gives the first edu a live identity
//! window with bus mastering, fails on purpose, and lets the edu DMA into its window after
//! the abort: the RAM must be unchanged. The control skips the abort and sees the same DMA
//! land, so the probe can fail.
//!
//! Every other way out goes through the same fail-safe (the daemon's one exit): a panic whose
//! report panics again, a drain of the event queue the SMMU refuses in the manager loop, an
//! unknown `scenario=` (the SMMU as QEMU resets it lets DMA through until then), and a
//! `scenario=` given to the product image.

use tests_qemu::host::run_product;
use tests_qemu::{run, Record, Run};

fn boot(scenario: &str, extra: &[&str]) -> Run {
    run(scenario, extra).unwrap_or_else(|e| panic!("{e}"))
}

fn one<'r>(run: &'r Run, kind: &str) -> &'r Record {
    let all: Vec<&Record> = run.records(kind).collect();
    assert_eq!(
        all.len(),
        1,
        "one {kind} record expected; {}",
        run.describe()
    );
    all[0]
}

fn check<'r>(run: &'r Run, step: &str) -> &'r Record {
    run.records("CHECK")
        .find(|r| r.get("step") == Some(step))
        .unwrap_or_else(|| panic!("no CHECK step={step}; {}", run.describe()))
}

/// The window worked before the failure: the device's DMA landed in it.
fn assert_window_was_live(run: &Run) {
    let w = one(run, "FAILSAFE_WINDOW");
    assert_eq!(w.get("bdf"), Some("00:01.0"), "{}", w.line);
    assert_eq!(w.get("bus_master"), Some("1"), "{}", w.line);
    assert_eq!(w.get("iova"), w.get("pa"), "an identity window: {}", w.line);
    assert_eq!(check(run, "failsafe-window-lands").get("ok"), Some("1"));
}

/// The abort happened and was read back: translation was on, then GBPA.ABORT set, SMMUEN
/// clear, acknowledged.
fn assert_aborted(run: &Run, trigger: &str) {
    let f = one(run, "FAILSAFE");
    assert_eq!(f.get("trigger"), Some(trigger), "{}", f.line);
    assert_eq!(f.get("abort"), Some("all"), "{}", f.line);
    assert_eq!(f.get("smmus"), Some("1"), "{}", f.line);
    let before = one(run, "SMMU_BEFORE_ABORT");
    // CR0ACK = SMMUEN | EVENTQEN | CMDQEN (IHI 0070 §6.3.10): the SMMU was translating.
    assert_eq!(before.get("cr0ack"), Some("0x0000000d"), "{}", before.line);
    let a = one(run, "SMMU_ABORT");
    assert_eq!(a.get("base"), Some("0x0000000009050000"), "{}", a.line);
    assert_eq!(a.get("aborting"), Some("1"), "{}", a.line);
    assert_eq!(a.get("abort"), Some("1"), "{}", a.line);
    assert_eq!(a.get("smmuen"), Some("0"), "{}", a.line);
    assert_eq!(a.get("acknowledged"), Some("1"), "{}", a.line);
    // GBPA.ABORT is bit 20 (IHI 0070 §6.3.14), CR0ACK reads 0: everything off.
    let gbpa = u32::from_str_radix(a.get("gbpa").unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_ne!(gbpa & (1 << 20), 0, "{}", a.line);
    assert_eq!(gbpa & (1 << 31), 0, "GBPA.Update completed: {}", a.line);
    assert_eq!(a.get("cr0ack"), Some("0x00000000"), "{}", a.line);
}

/// After the abort the edu writes into its (formerly live) window at IOVA = PA: the RAM is
/// unchanged. The order of records shows the DMA came after the abort.
fn assert_dma_blocked(run: &Run, failure: &str) {
    let probe = check(run, "failsafe-dma-blocked");
    assert_eq!(probe.get("ok"), Some("1"), "{}", probe.line);
    assert_eq!(probe.get("landed"), Some("0"), "{}", probe.line);
    assert_eq!(probe.get("dma"), Some("done"), "{}", probe.line);
    let order: Vec<&str> = run
        .records
        .iter()
        .map(|r| r.kind.as_str())
        .filter(|k| [failure, "FAILSAFE", "SMMU_ABORT", "CHECK"].contains(k))
        .collect();
    assert_eq!(
        order,
        ["CHECK", failure, "FAILSAFE", "SMMU_ABORT", "CHECK"],
        "{}",
        run.describe()
    );
}

#[test]
fn a_panic_after_bring_up_leaves_the_smmu_aborting_and_dma_blocked() {
    let run = boot("panic-after-bringup", &[]);
    assert_eq!(run.exit_code, Some(101), "{}", run.describe());
    assert_window_was_live(&run);
    assert!(
        one(&run, "PANIC")
            .get("message")
            .is_some_and(|m| m.starts_with("panic-after-bringup")),
        "{}",
        run.describe()
    );
    assert_aborted(&run, "panic");
    assert_dma_blocked(&run, "PANIC");
    assert!(run.result().is_none(), "{}", run.describe());
}

/// The control: the same run with the abort skipped. The SMMU keeps translating, and the same
/// DMA lands in the window: without the abort the probe fails.
#[test]
fn without_the_abort_the_same_dma_lands() {
    let run = boot(
        "panic-after-bringup",
        &["failsafe-probe=skip-abort-control"],
    );
    assert_eq!(run.exit_code, Some(101), "{}", run.describe());
    assert_window_was_live(&run);
    let f = one(&run, "FAILSAFE");
    assert_eq!(f.get("abort"), Some("skipped"), "{}", f.line);
    assert_eq!(run.records("SMMU_ABORT").count(), 0, "{}", run.describe());
    let control = check(&run, "failsafe-control-dma-lands");
    assert_eq!(control.get("ok"), Some("1"), "{}", control.line);
    assert_eq!(control.get("landed"), Some("1"), "{}", control.line);
    assert_eq!(
        control.get("target"),
        one(&run, "FAILSAFE_PROBE").get("target"),
        "{}",
        run.describe()
    );
    assert!(
        run.records("CHECK")
            .all(|r| r.get("step") != Some("failsafe-dma-blocked")),
        "{}",
        run.describe()
    );
}

/// An unexpected synchronous exception (a load from an address the MMU does not map) takes the
/// same path: decoded, every SMMU aborting, DMA blocked, exit 3.
#[test]
fn an_unexpected_exception_after_bring_up_leaves_the_smmu_aborting_and_dma_blocked() {
    let run = boot("fault-after-bringup", &[]);
    assert_eq!(run.exit_code, Some(3), "{}", run.describe());
    assert_window_was_live(&run);
    let ex = one(&run, "EXCEPTION");
    assert_eq!(ex.get("fsc_name"), Some("translation_fault"), "{}", ex.line);
    assert_eq!(
        ex.get("far"),
        run.record("SELFTEST").and_then(|r| r.get("fault_address")),
        "{}",
        ex.line
    );
    assert_aborted(&run, "exception");
    assert_dma_blocked(&run, "EXCEPTION");
}

/// The FAILSAFE report of an abort that left the SMMU terminating all traffic.
fn assert_left_aborting(run: &Run) {
    let f = one(run, "FAILSAFE");
    assert_eq!(f.get("abort"), Some("all"), "{}", f.line);
    let a = one(run, "SMMU_ABORT");
    assert_eq!(a.get("base"), Some("0x0000000009050000"), "{}", a.line);
    for (k, v) in [("aborting", "1"), ("abort", "1"), ("smmuen", "0")] {
        assert_eq!(a.get(k), Some(v), "{k}: {}", a.line);
    }
}

/// The probe ran after the abort and the DMA did not land.
fn assert_probe_blocked(run: &Run) {
    let probe = check(run, "failsafe-dma-blocked");
    assert_eq!(probe.get("ok"), Some("1"), "{}", probe.line);
    assert_eq!(probe.get("landed"), Some("0"), "{}", probe.line);
    assert_eq!(probe.get("dma"), Some("done"), "{}", probe.line);
}

/// A second panic while the first is being reported (its message panics when formatted):
/// the abort came before the report, so the SMMU is aborting and the DMA blocked all the
/// same. (Before the abort came first, this run exited at the second panic with the SMMU
/// translating and no FAILSAFE record.)
#[test]
fn a_panic_while_reporting_a_panic_still_leaves_the_smmu_aborting_and_dma_blocked() {
    let run = boot("panic-while-reporting", &[]);
    assert_eq!(run.exit_code, Some(101), "{}", run.describe());
    assert_window_was_live(&run);
    assert_eq!(one(&run, "FAILSAFE").get("trigger"), Some("panic"));
    assert_left_aborting(&run);
    assert_probe_blocked(&run);
    assert!(run.result().is_none(), "{}", run.describe());
}

/// The manager loop's drain of the event queue fails (injected: the SMMU's Service Failure
/// Mode): `FATAL reason=iommu-event`, and the run ends through the fail-safe instead of
/// serving on. (Before, the loop printed the FATAL and served on: the scenario's RESULT
/// followed with the SMMU translating.)
#[test]
fn a_refused_event_drain_ends_the_run_through_the_fail_safe() {
    let run = boot("iommu-event-error", &[]);
    assert_eq!(run.exit_code, Some(1), "{}", run.describe());
    assert_window_was_live(&run);
    let fatal = one(&run, "FATAL");
    assert_eq!(fatal.get("reason"), Some("iommu-event"), "{}", fatal.line);
    assert_eq!(one(&run, "FAILSAFE").get("trigger"), Some("iommu-event"));
    assert_left_aborting(&run);
    assert_probe_blocked(&run);
    assert!(run.result().is_none(), "{}", run.describe());
}

/// An unknown scenario: the SMMU was never brought up (QEMU's reset state lets DMA through),
/// and the exit's fail-safe leaves it aborting: the edu's DMA at IOVA = PA is blocked.
#[test]
fn an_unknown_scenario_exits_through_the_fail_safe_and_dma_is_blocked() {
    let run = boot("no-such-scenario", &["failsafe-probe=1"]);
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    let fatal = one(&run, "FATAL");
    assert_eq!(
        fatal.get("reason"),
        Some("unknown-scenario"),
        "{}",
        fatal.line
    );
    // The SMMU as QEMU reset it: not translating, not aborting.
    let before = one(&run, "SMMU_BEFORE_ABORT");
    assert_eq!(before.get("cr0ack"), Some("0x00000000"), "{}", before.line);
    assert_left_aborting(&run);
    assert_probe_blocked(&run);
}

/// The control: the same run with the abort skipped; the reset SMMU lets the DMA land.
#[test]
fn without_the_abort_an_unknown_scenarios_dma_lands() {
    let run = boot("no-such-scenario", &["failsafe-probe=skip-abort-control"]);
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    assert_eq!(one(&run, "FAILSAFE").get("abort"), Some("skipped"));
    let control = check(&run, "failsafe-control-dma-lands");
    assert_eq!(control.get("ok"), Some("1"), "{}", control.line);
    assert_eq!(control.get("landed"), Some("1"), "{}", control.line);
}

/// The product image has no scenarios: `scenario=` is refused, and the exit leaves the SMMU
/// aborting (it was never brought up: without the fail-safe it would be in bypass).
#[test]
fn the_product_image_refuses_a_scenario_through_the_fail_safe() {
    let run = run_product("scenario=window").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    let fatal = one(&run, "FATAL");
    assert_eq!(fatal.get("reason"), Some("no-scenarios"), "{}", fatal.line);
    assert_eq!(
        one(&run, "SMMU_BEFORE_ABORT").get("cr0ack"),
        Some("0x00000000"),
        "{}",
        run.describe()
    );
    assert_left_aborting(&run);
}
