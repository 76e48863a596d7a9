//! The EL2 world switch keeps each VM's CPU state its own (docs/world-switch.md): two guests
//! time-share the CPU, `cpu-noisy` programs the PMU, debug, virtual-timer and GIC
//! CPU-interface registers over and over, `cpu-check` must see reset values at its entry and
//! only its own values across its slices; PMU accesses are UNDEFINED, debug registers ignore
//! writes, and ID_AA64DFR0_EL1 says so. The control (test image, `host-unswitched`) skips the
//! new trapping and switching: the checker then sees its neighbour's values.

use tests_qemu::host::{run_host, HostBoot};
use tests_qemu::{Record, Run};

const PLAN: &str = include_str!("../plans/cpu-state.plan");

fn records(run: &Run, vm: &str, kind: &str) -> Vec<Record> {
    run.guest(vm)
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect()
}

fn traps(run: &Run, vm: &str) -> Record {
    records(run, vm, "CPU_TRAPS")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no CPU_TRAPS from {vm}; {}", run.describe()))
}

fn check(run: &Run, vm: &str, name: &str) -> Record {
    records(run, vm, "CHECK")
        .into_iter()
        .find(|r| r.get("name") == Some(name))
        .unwrap_or_else(|| panic!("no CHECK {name} from {vm}; {}", run.describe()))
}

#[test]
fn each_vm_sees_only_its_own_cpu_state_and_pmu_and_debug_are_trapped() {
    let run = run_host(&HostBoot {
        plan: PLAN,
        name: "cpu-state",
        ..HostBoot::default()
    })
    .unwrap();
    let context = run.describe();
    // The checker: reset values at entry, its own across many slices of both VMs.
    for name in ["entry-reset", "slices-own"] {
        assert_eq!(
            check(&run, "vm2", name).get("ok"),
            Some("1"),
            "{name}; {context}"
        );
    }
    let slices: u32 = check(&run, "vm2", "slices-own")
        .get("slices")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(slices >= 5, "only {slices} slices; {context}");
    assert!(
        records(&run, "vm2", "CPU_SEEN")
            .iter()
            .all(|r| !r.get("seen").unwrap_or("").starts_with("neighbour")),
        "{context}"
    );
    let vm2 = run.vm_stop("vm2").expect("vm2 stop record");
    assert_eq!(vm2.get("reason"), Some("exit"), "{context}");
    assert_eq!(vm2.get("status"), Some("0"), "{context}");
    // The noisy guest kept its own values too, and survived set/way maintenance.
    for name in ["noisy-own", "set-way"] {
        assert_eq!(
            check(&run, "vm1", name).get("ok"),
            Some("1"),
            "{name}; {context}"
        );
    }
    // PMU: every access UNDEFINED, and the ID register says there is no PMU. Debug: the
    // registers ignore writes; the ID register says Armv8.0 debug.
    for (vm, pmu, debug) in [("vm1", "5", "5"), ("vm2", "4", "5")] {
        let t = traps(&run, vm);
        assert_eq!(t.get("pmu_undef"), Some(pmu), "{vm}; {context}");
        assert_eq!(t.get("pmu_direct"), Some("0"), "{vm}; {context}");
        assert_eq!(t.get("debug_ignored"), Some(debug), "{vm}; {context}");
        assert_eq!(t.get("debug_kept"), Some("0"), "{vm}; {context}");
        assert_eq!(t.get("pmuver"), Some("0"), "{vm}; {context}");
        assert_eq!(t.get("debugver"), Some("6"), "{vm}; {context}");
    }
    // The trapped register nobody emulates: the stop names it from the syndrome.
    let vm1 = run.vm_stop("vm1").expect("vm1 stop record");
    assert_eq!(vm1.get("reason"), Some("sysreg"), "{context}");
    let detail = vm1.get("detail").unwrap_or("");
    assert!(
        detail.contains("msr CNTP_CTL_EL0, x3")
            && detail.contains("op0=3 op1=3 crn=14 crm=2 op2=1"),
        "{detail}; {context}"
    );
    assert!(!detail.contains("FAR"), "{detail}");
}

#[test]
fn control_without_the_switch_the_neighbours_cpu_state_shows() {
    let run = run_host(&HostBoot {
        plan: PLAN,
        name: "cpu-state-control",
        scenario: Some(("host-unswitched", &[])),
        ..HostBoot::default()
    })
    .unwrap();
    let context = run.describe();
    assert!(
        context.contains("CPU_SWITCH control=skip"),
        "the control did not run; {context}"
    );
    let leaked: Vec<_> = records(&run, "vm2", "CPU_SEEN")
        .into_iter()
        .filter(|r| r.get("seen").is_some_and(|s| s.starts_with("neighbour")))
        .filter_map(|r| r.get("reg").map(str::to_string))
        .collect();
    // The PMU and debug registers reached directly, the timer and GIC state shared.
    for reg in ["pmccfiltr_el0", "mdscr_el1", "cntv_cval_el0", "icc_pmr_el1"] {
        assert!(
            leaked.iter().any(|r| r == reg),
            "{reg} did not leak: {leaked:?}; {context}"
        );
    }
    assert_ne!(traps(&run, "vm2").get("pmu_direct"), Some("0"), "{context}");
}
