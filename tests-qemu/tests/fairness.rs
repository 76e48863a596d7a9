//! A guest that makes its host work for it does not starve its neighbour.
//!
//! The `worker` guest counts rounds of fixed CPU work for one second of its clock, once
//! beside a neighbour that only spins (`looper`: it uses its whole slices and makes the host
//! do nothing) and once beside `flooder`, which makes its host work as hard as a guest can
//! (ECAM sweeps, BAR moves with memory decoding on, console bytes, hypercalls). The host
//! charges its work for a VM's exits to that VM's slice and bounds what one slice may make it
//! do, so the worker keeps at least half of its baseline rounds. The control boots the test
//! image with the old accounting (`scenario=host-plan control=fresh-slice`: every entry a
//! full slice, no bounds) and shows the same flood takes the worker's CPU away.
//!
//! Timing under TCG is noisy, and the machine may be shared: the boots run with `-icount`
//! (guest time counted in instructions, so the rounds do not depend on how busy the machine
//! running QEMU is: repeated runs give the same counts), one at a time, and the margin is
//! wide (the fixed host keeps the worker at about its baseline, the old accounting leaves it
//! a few percent).

use std::sync::{Mutex, OnceLock};
use tests_qemu::host::{run_host, HostBoot};
use tests_qemu::Run;

const IDLE: &str = include_str!("../plans/fair-idle.plan");
const FLOOD: &str = include_str!("../plans/fair-flood.plan");

/// Guest time counted in instructions (QEMU `-icount`, 2^4 ns per instruction): the rounds
/// measure the CPU each VM got, not how busy the machine running QEMU was.
const ICOUNT: &[&str] = &["-icount", "shift=4"];

/// One QEMU at a time: parallel boots would share the CPU and skew the rounds.
static SERIAL: Mutex<()> = Mutex::new(());

fn boot(plan: &str, name: &str, scenario: Option<(&str, &[&str])>) -> Run {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_host(&HostBoot {
        plan,
        name,
        scenario,
        qemu_args: ICOUNT,
        ..HostBoot::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The worker's `(rounds, max_gap_ms)`.
fn worker(run: &Run) -> (u64, u64) {
    let w = run
        .guest("vm1")
        .into_iter()
        .find(|r| r.kind == "WORKER")
        .unwrap_or_else(|| panic!("no WORKER line; {}", run.describe()));
    let n = |k: &str| w.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (n("rounds"), n("max_gap_ms"))
}

/// The worker's rounds beside the spinning neighbour (booted once per process).
fn baseline() -> u64 {
    static BASELINE: OnceLock<u64> = OnceLock::new();
    *BASELINE.get_or_init(|| {
        let run = boot(IDLE, "fair-idle", None);
        let vm1 = run.vm_stop("vm1").expect("vm1 stop");
        assert_eq!(vm1.get("reason"), Some("exit"), "{}", run.describe());
        let (rounds, _) = worker(&run);
        assert!(rounds > 50, "the baseline did work: {}", run.describe());
        rounds
    })
}

/// The flooder flooded: it ran its window and made its host do all four kinds of work.
fn assert_flooded(run: &Run) {
    let f = run
        .guest("vm2")
        .into_iter()
        .find(|r| r.kind == "FLOODER")
        .unwrap_or_else(|| panic!("no FLOODER line; {}", run.describe()));
    eprintln!("{}", f.line);
    for k in [
        "iterations",
        "ecam_reads",
        "bar_moves",
        "console_bytes",
        "hypercalls",
    ] {
        let v: u64 = f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(v > 0, "flooder {k}=0: {}", f.line);
    }
}

#[test]
fn a_trap_flooding_neighbour_leaves_the_worker_at_least_half_its_cpu() {
    let base = baseline();
    let run = boot(FLOOD, "fair-flood", None);
    assert_flooded(&run);
    let (rounds, gap) = worker(&run);
    let vmm2 = run
        .records("VMM")
        .find(|r| r.get("vm") == Some("vm2") && r.get("throttled").is_some())
        .unwrap_or_else(|| panic!("no VMM finished line for vm2; {}", run.describe()));
    eprintln!(
        "worker rounds: {rounds} beside the flooder, {base} beside the spinner; longest gap {gap} ms; flooder slices ended early: {:?}",
        vmm2.get("throttled")
    );
    assert!(
        rounds * 2 >= base,
        "the worker did {rounds} rounds beside the flooder, {base} beside an idle neighbour; {}",
        run.describe()
    );
    // Nor is the worker left waiting long: a few slices at most (the old accounting left it
    // waiting for the whole flood, 1.5 s).
    assert!(gap <= 250, "the worker waited {gap} ms; {}", run.describe());
    // (Whether the flood also reached a per-slice bound, `throttled=`, depends on how fast
    // TCG runs its traps; the bounds themselves are tested in qvm's host tests.)
    run.assert_pass();
}

/// The control: with the old accounting (every entry a full slice, the host's work charged to
/// nobody, no bounds) the same flood starves the worker.
#[test]
fn with_the_old_slice_accounting_the_same_flood_starves_the_worker() {
    let base = baseline();
    let run = boot(
        FLOOD,
        "fair-flood-control",
        Some(("host-plan", &["control=fresh-slice"])),
    );
    assert_eq!(
        run.record("HOST_ACCOUNTING").and_then(|r| r.get("slice")),
        Some("fresh-per-entry"),
        "{}",
        run.describe()
    );
    assert_flooded(&run);
    let (rounds, gap) = worker(&run);
    eprintln!(
        "control: worker rounds {rounds} beside the flooder, {base} beside the spinner; longest gap {gap} ms"
    );
    assert!(
        rounds * 2 < base,
        "the control should starve the worker: {rounds} rounds against {base}; {}",
        run.describe()
    );
    assert!(gap > 250, "{}", run.describe());
}
