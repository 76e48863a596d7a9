//! A device is free only once the unit confirmed it: the attack of issue 14 over the VT-d
//! backend (an ITE at the attach's wait, VT-d §6.5.2.10), and a detach whose context-cache
//! invalidation failed (IQE, ICE, ITE) and is retried.

use super::*;
use crate::fake::Inject;
use smmuman_api::DestroyObjectRequest;

/// Client A's RAM page, which the host later gives client B.
const RAM: u64 = 0x8000_0000;

fn create(m: &mut Manager<Backend>, c: ClientId) -> ObjectId {
    m.create_object(
        c,
        CreateObjectRequest {
            flags: ObjectFlags::empty(),
        },
    )
    .unwrap()
    .object
}

fn attach(
    m: &mut Manager<Backend>,
    c: ClientId,
    object: ObjectId,
    dev: Bdf,
) -> Result<(), DomainError> {
    m.attach(
        c,
        AttachRequest {
            object,
            device: DeviceSel::pci(dev),
        },
    )
    .map(|_| ())
    .map_err(|r| r.error)
}

fn detach(
    m: &mut Manager<Backend>,
    c: ClientId,
    object: ObjectId,
    dev: Bdf,
) -> Result<(), DomainError> {
    m.detach(
        c,
        smmuman_api::DetachRequest {
            object,
            device: DeviceSel::pci(dev),
        },
    )
    .map(|_| ())
    .map_err(|r| r.error)
}

fn try_map(
    m: &mut Manager<Backend>,
    c: ClientId,
    object: ObjectId,
    iova: u64,
    pa: u64,
) -> Result<(), DomainError> {
    m.map(
        c,
        MapRequest {
            object,
            window: DmaWindow::new(Iova(iova), PhysAddr(pa), 0x1000).unwrap(),
            access: Access::RW,
            flags: MapFlags::empty(),
        },
    )
    .map(|_| ())
    .map_err(|r| r.error)
}

fn destroy(m: &mut Manager<Backend>, c: ClientId, object: ObjectId) -> Result<(), DomainError> {
    m.destroy_object(c, DestroyObjectRequest { object })
        .map(|_| ())
        .map_err(|r| r.error)
}

/// A's attach of edu A fails at its wait descriptor (`fail`), A destroys its object and goes
/// away, B maps the same RAM page for edu B. Returns what edu A's DMA at IOVA 0 then does.
fn attack(
    fail: bool,
) -> (
    Manager<Backend>,
    SharedUnit,
    Result<(), DomainError>,
    DmaOutcome,
) {
    let (mut m, unit) = rig();
    let a = create(&mut m, A);
    try_map(&mut m, A, a, 0, RAM).unwrap();
    if fail {
        unit.get().inject(Inject::Ite);
    }
    assert_eq!(attach(&mut m, A, a, edu_a()).is_err(), fail);
    let _ = destroy(&mut m, A, a);
    m.client_gone(A);
    let b = create(&mut m, B);
    attach(&mut m, B, b, edu_b()).unwrap();
    let b_mapped = try_map(&mut m, B, b, 0x10_0000, RAM);
    let outcome = dma(&unit, edu_a(), 0, true);
    (m, unit, b_mapped, outcome)
}

#[test]
fn a_failed_attach_never_leaves_the_device_translating_into_memory_given_to_another_client() {
    // Control: no failure, an ordinary sequence: B's page is B's, edu A (never attached) is
    // denied, B's device lands.
    let (_, unit, b_mapped, outcome) = attack(false);
    assert_eq!(b_mapped, Ok(()));
    assert!(blocked(outcome), "{outcome:?}");
    assert_eq!(dma(&unit, edu_b(), 0x10_0000, true), landed(RAM));

    // The attach's wait times out (its context entry is in memory, maybe in use): the manager
    // detaches edu A again, confirmed, before anything of A's is released.
    let (m, unit, b_mapped, outcome) = attack(true);
    assert_eq!(b_mapped, Ok(()));
    assert!(
        blocked(outcome),
        "edu A's DMA must not land in B's page: {outcome:?}"
    );
    assert_eq!(dma(&unit, edu_b(), 0x10_0000, true), landed(RAM));
    assert_eq!(m.counters().orphaned_objects, 0);
}

/// The context-cache invalidation of a detach is refused (`inject`); the entry in memory is
/// already not present. The retried detach must still send it.
fn retried_detach(inject: Inject) {
    let (mut m, unit) = rig();
    let a = create(&mut m, A);
    attach(&mut m, A, a, edu_a()).unwrap();
    try_map(&mut m, A, a, 0, RAM).unwrap();
    // Cached by the emulated unit's context cache and IOTLB.
    assert_eq!(dma(&unit, edu_a(), 0, true), landed(RAM));
    unit.get().inject(inject);
    assert_eq!(
        detach(&mut m, A, a, edu_a()),
        Err(DomainError::Iommu),
        "{inject:?}"
    );
    assert!(m.backend().unit().owes_invalidation(edu_a()));
    let after_failure = dma(&unit, edu_a(), 0, true);
    unit.get().processed.clear();
    detach(&mut m, A, a, edu_a()).unwrap();
    // The retry sent the device-selective context-cache invalidation of A's domain-id.
    let ctx = InvDescriptor::ContextDevice {
        did: crate::DomainTag(1),
        sid: edu_a().rid(),
    }
    .encode();
    assert!(
        unit.get().processed.contains(&ctx),
        "{inject:?}: the retried detach invalidated the context cache"
    );
    assert!(!m.backend().unit().owes_invalidation(edu_a()));
    // The unit no longer translates for the device, and its domain can go.
    assert!(refused(&mut m, &unit, edu_a(), 0, true), "{inject:?}");
    destroy(&mut m, A, a).unwrap();
    assert!(blocked(dma(&unit, edu_a(), 0, true)), "{inject:?}");
    if inject == Inject::Iqe {
        // Control: the refused invalidation really left the stale context entry in use.
        assert_eq!(after_failure, landed(RAM));
    }
}

#[test]
fn a_detach_whose_invalidation_was_refused_sends_it_on_the_retry() {
    for inject in [Inject::Iqe, Inject::Ice, Inject::Ite] {
        retried_detach(inject);
    }
}

#[test]
fn a_confirmed_detach_owes_nothing_and_its_retry_sends_no_context_invalidation() {
    // Control for the test above: without a failure nothing is owed, and a second detach
    // (the entry already not present) has nothing to send.
    let (mut m, unit) = rig();
    let a = create(&mut m, A);
    attach(&mut m, A, a, edu_a()).unwrap();
    detach(&mut m, A, a, edu_a()).unwrap();
    assert!(!m.backend().unit().owes_invalidation(edu_a()));
    unit.get().processed.clear();
    m.backend_mut().detach(sid(edu_a())).unwrap();
    assert!(unit.get().processed.is_empty());
}
