use super::*;
use iommu_core::{Bdf, Fault, FaultReason, StreamId};
use smmuman_server::fake::{FakeIommu, FakeOp};
use smmuman_server::DeviceId;

fn zero() -> Duration {
    Duration::ZERO
}

fn asked(fault_log: u64, mappings: u64, per_vm: u64, heap: Option<u64>) -> Requested {
    Requested {
        fault_log,
        mappings,
        mappings_per_vm: per_vm,
        heap_mappings: heap,
    }
}

const EDU: StreamId = StreamId(0x8);

fn edu() -> DeviceEntry {
    DeviceEntry {
        id: DeviceId::Pci(Bdf::new(0, 1, 0).unwrap()),
        sid: EDU,
        raw_sid_allowed: false,
    }
}

fn image() -> PhysRange {
    PhysRange {
        start: iommu_core::PhysAddr(0x4008_0000),
        len: 0x10_0000,
    }
}

#[test]
fn the_fault_log_is_kept_within_what_a_ledger_holds_and_the_record_says_so() {
    let l = Limits::of(asked(16, 100, 10, None));
    assert_eq!(l.fault_log_depth, 16);
    assert!(!l.fault_log_clamped());
    assert_eq!(
        l.fault_log_record().to_string(),
        format!("FAULT_LOG requested=16 depth=16 capacity={FAULT_LOG_DEPTH} clamped=0")
    );
    let big = Limits::of(asked(u64::MAX, 100, 10, None));
    assert_eq!(big.fault_log_depth, FAULT_LOG_DEPTH);
    assert!(big.fault_log_record().to_string().ends_with("clamped=1"));
    // 0 would make a ledger that keeps nothing: the manager refuses it, so it becomes 1.
    let none = Limits::of(asked(0, 100, 10, None));
    assert_eq!((none.fault_log_depth, none.fault_log_clamped()), (1, true));
}

#[test]
fn quotas_are_capped_by_a_fixed_heap_only() {
    // The aarch64 daemon sizes its heap from the config: the config's numbers stand.
    let l = Limits::of(asked(8, 100, 500, None));
    assert_eq!((l.max_mappings, l.max_mappings_per_object), (100, 500));
    // The x86-64 image's heap holds a fixed number: nothing past it, no VM past the total.
    let l = Limits::of(asked(8, 100_000, 50_000, Some(4_096)));
    assert_eq!((l.max_mappings, l.max_mappings_per_object), (4_096, 4_096));
    let l = Limits::of(asked(8, 1_000, 10, Some(4_096)));
    assert_eq!((l.max_mappings, l.max_mappings_per_object), (1_000, 10));
}

#[test]
fn the_io_space_is_the_whole_input_size_and_never_overflows() {
    assert_eq!(iova_space(48).last, Iova((1 << 48) - 1));
    assert_eq!(iova_space(39).first, Iova(0));
    // A unit that reports a 64-bit input size (the arithmetic the images used before,
    // `(1 << ias) - 1`, overflows there).
    assert_eq!(iova_space(64).last, Iova(u64::MAX));
    assert_eq!(iova_space(255).last, Iova(u64::MAX));
}

#[test]
fn the_manager_puts_its_devices_in_deny_and_refuses_a_bad_configuration_by_name() {
    let limits = Limits::of(asked(8, 100, 10, None));
    let m = new_manager(FakeIommu::new(), &[edu()], &[image()], 48, &limits, zero)
        .unwrap_or_else(|e| panic!("{e}"));
    // Default deny: attached to no domain.
    assert_eq!(m.backend().domain_of(EDU), None);
    let twice = [edu(), edu()];
    let Err(err) = new_manager(FakeIommu::new(), &twice, &[image()], 48, &limits, zero) else {
        panic!("a device listed twice is refused");
    };
    assert!(err.to_string().contains("00:01.0"), "{err}");
    // An I/O space of 0 bits is no I/O space.
    assert!(new_manager(FakeIommu::new(), &[edu()], &[image()], 0, &limits, zero).is_err());
}

#[test]
fn a_pass_drains_only_when_due_and_a_refused_drain_is_an_error() {
    let limits = Limits::of(asked(8, 100, 10, None));
    let mut m = new_manager(FakeIommu::new(), &[edu()], &[image()], 48, &limits, zero).unwrap();
    m.backend_mut().inject_fault(Fault {
        sid: EDU,
        addr: Iova(0x1000),
        dir: None,
        reason: FaultReason::Translation,
        code: 0x10,
    });
    let idle = service_pass(&mut m, Duration::from_millis(1), false).unwrap();
    assert_eq!(idle.drained, None);
    let pass = service_pass(&mut m, Duration::from_millis(2), true).unwrap();
    let report = pass.drained.expect("drained");
    // The device belongs to nobody: the record is charged to the unclaimed ledger.
    assert_eq!((report.records, report.unclaimed), (1, 1));
    assert_eq!(pass.orphans_released, 0);
    // The IOMMU refuses the next drain (as an SMMU in Service Failure Mode would).
    m.backend_mut().fail(FakeOp::Drain, 0);
    assert!(service_pass(&mut m, Duration::from_millis(3), true).is_err());
}
