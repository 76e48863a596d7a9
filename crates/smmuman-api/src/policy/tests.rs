use super::*;
use crate::types::PciMatch;
use iommu_core::{Bdf, PhysAddr};

const NIC: PassThrough<'static> = PassThrough {
    name: "nic",
    device: DeviceSel::Pci(PciMatch::exact(Bdf {
        bus: 0,
        dev: 1,
        func: 0,
    })),
    dma: true,
};
const GPU: PassThrough<'static> = PassThrough {
    name: "gpu",
    device: DeviceSel::Mmio(PhysAddr(0x0a00_0000)),
    dma: true,
};
const UART: PassThrough<'static> = PassThrough {
    name: "uart",
    device: DeviceSel::Mmio(PhysAddr(0x0900_0000)),
    dma: false,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    Start,
    Unisolated(usize),
    Refuse(usize),
}

fn outcome(d: &Decision<'_>) -> Want {
    match d {
        Decision::Start => Want::Start,
        Decision::StartUnisolated { warnings } => Want::Unisolated(warnings.len()),
        Decision::Refuse { reason } => Want::Refuse(reason.len()),
    }
}

/// what, devices, unity-mapped, manager, answers, expected outcome
type Row<'a> = (
    &'a str,
    &'a [PassThrough<'a>],
    bool,
    Reachability,
    &'a [Known],
    Want,
);

#[test]
fn the_three_rules_as_a_table() {
    use Known::*;
    use Reachability::*;
    let err = NoAnswer(CallError::Transport(crate::TransportError::Disconnected));
    #[rustfmt::skip]
    let table: &[Row<'_>] = &[
        // rule 1: no manager, DMA devices → refuse; unity → start with warnings
        ("no manager, dma",           &[NIC, GPU],  false, NotRunning, &[],          Want::Refuse(2)),
        ("no manager, dma, unity",    &[NIC, GPU],  true,  NotRunning, &[],          Want::Unisolated(2)),
        // no DMA device: the manager does not matter
        ("no manager, no dma",        &[UART],      false, NotRunning, &[],          Want::Start),
        ("nothing passed through",    &[],          false, NotRunning, &[],          Want::Start),
        // rule 2: manager runs but does not know a device → refuse; unity → warn
        ("unknown device",            &[NIC, GPU],  false, Running,    &[Yes, No],   Want::Refuse(1)),
        ("unknown device, unity",     &[NIC, GPU],  true,  Running,    &[Yes, No],   Want::Unisolated(1)),
        ("no answer counts as unknown", &[NIC],     false, Running,    &[err],       Want::Refuse(1)),
        ("not asked counts too",      &[NIC, GPU],  false, Running,    &[Yes],       Want::Refuse(1)),
        // all known → start, unity or not
        ("all known",                 &[NIC, GPU],  false, Running,    &[Yes, Yes],  Want::Start),
        ("all known, unity",          &[NIC, GPU],  true,  Running,    &[Yes, Yes],  Want::Start),
        // a non-DMA device's answer is ignored
        ("non-dma unknown",           &[UART, NIC], false, Running,    &[No, Yes],   Want::Start),
    ];
    for (what, devices, unity, manager, known, want) in table {
        let vm = VmDescription {
            name: "vm0",
            unity_mapped: *unity,
            devices,
        };
        let d = VmmDmaPolicy::decide(&vm, *manager, known);
        assert_eq!(outcome(&d), *want, "{what}: {d}");
    }
}

#[test]
fn messages_name_the_vm_and_the_devices() {
    let vm = VmDescription {
        name: "linux0",
        unity_mapped: false,
        devices: &[NIC, GPU],
    };
    let refuse = VmmDmaPolicy::decide(&vm, Reachability::NotRunning, &[]);
    let text = format!("{refuse}");
    assert!(
        text.starts_with("refusing to start VM 'linux0': "),
        "{text}"
    );
    assert!(text.contains("'nic' (pci 00:01.0)"), "{text}");
    assert!(text.contains("'gpu' (mmio 0x000000000a000000)"), "{text}");
    assert!(text.contains("not running"), "{text}");

    let unknown = VmmDmaPolicy::decide(&vm, Reachability::Running, &[Known::Yes, Known::No]);
    let text = format!("{unknown}");
    assert!(
        text.contains("does not know pass-through DMA device 'gpu'"),
        "{text}"
    );
    assert!(!text.contains("'nic'"), "{text}");

    let unity = VmDescription {
        unity_mapped: true,
        ..vm
    };
    let warn = VmmDmaPolicy::decide(&unity, Reachability::NotRunning, &[]);
    let text = format!("{warn}");
    assert!(
        text.starts_with("WARNING: VM 'linux0' is unity-mapped"),
        "{text}"
    );
    assert!(text.contains("WITHOUT DMA ISOLATION"), "{text}");
}

#[test]
fn many_problems_are_counted_not_lost() {
    let devices = [NIC; MAX_PROBLEMS + 3];
    let vm = VmDescription {
        name: "big",
        unity_mapped: false,
        devices: &devices,
    };
    let Decision::Refuse { reason } = VmmDmaPolicy::decide(&vm, Reachability::NotRunning, &[])
    else {
        panic!("expected a refusal");
    };
    assert_eq!(reason.len(), MAX_PROBLEMS + 3);
    assert_eq!(reason.iter().count(), MAX_PROBLEMS);
    assert_eq!(reason.omitted(), 3);
    assert!(format!("{reason}").ends_with("; and 3 more"));
}

#[test]
fn assess_without_a_manager_follows_rule_one() {
    let vm = VmDescription {
        name: "vm",
        unity_mapped: false,
        devices: &[NIC],
    };
    let d = VmmDmaPolicy::assess::<crate::NoManager>(&vm, None);
    assert_eq!(outcome(&d), Want::Refuse(1));
}
