//! A device is free only once the IOMMU confirmed it: failed attaches, detaches and domain
//! destructions never let an object's host memory go to another client while a device may
//! still translate through its domain. Over the real SMMUv3 backend and its emulated SMMU
//! (CERROR_ILL injected on CMD_CFGI_STE, IHI 0070 §7.1), and over the model IOMMU for the
//! manager's own bookkeeping.

use super::*;
use crate::fake::FakeOp;
use smmuman_api::{
    AttachRequest, CreateObjectRequest, DestroyObjectRequest, DeviceSel, DomainError, ManagerOps,
    MapFlags, MapRequest, ObjectFlags, ObjectId,
};
use smmuv3::cmd::opcode;
use smmuv3::fake_smmu::{qemu_rig, FakeSmmu, SharedMem};
use smmuv3::Smmuv3Backend;

type Smmu = Smmuv3Backend<SharedMem, FakeSmmu>;

const CERROR_ILL: u8 = 1;
/// Client A's RAM page, which the host later gives client B.
const RAM: u64 = 0x8000_0000;

fn smmu_manager() -> (Manager<Smmu>, FakeSmmu) {
    let (backend, fake) = qemu_rig().unwrap();
    let devices = board();
    let config = ManagerConfig {
        fault_log_depth: 32,
        max_mappings_per_object: 64,
        max_mappings: 256,
        ..test_config(&devices)
    };
    let mut m = Manager::new(backend, &config).unwrap();
    // A may pass the edu through, B the NIC (device authority).
    for (client, device) in [(A, pci(0, 1, 0)), (B, pci(0, 2, 0))] {
        m.assign(client, &everything_but_the_manager(), &[sel(device)])
            .unwrap();
    }
    (m, fake)
}

fn create<I: iommu_core::IommuBackend>(m: &mut Manager<I>, c: ClientId) -> ObjectId {
    m.create_object(
        c,
        CreateObjectRequest {
            flags: ObjectFlags::empty(),
        },
    )
    .unwrap()
    .object
}

fn attach<I: iommu_core::IommuBackend>(
    m: &mut Manager<I>,
    c: ClientId,
    object: ObjectId,
    dev: Bdf,
) -> Result<(), Refusal> {
    m.attach(
        c,
        AttachRequest {
            object,
            device: DeviceSel::pci(dev),
        },
    )
    .map(|_| ())
}

fn map<I: iommu_core::IommuBackend>(
    m: &mut Manager<I>,
    c: ClientId,
    object: ObjectId,
    iova: u64,
    pa: u64,
) -> Result<(), Refusal> {
    m.map(
        c,
        MapRequest {
            object,
            window: win(iova, pa, 0x1000),
            access: Access::RW,
            flags: MapFlags::empty(),
        },
    )
    .map(|_| ())
}

fn destroy<I: iommu_core::IommuBackend>(
    m: &mut Manager<I>,
    c: ClientId,
    object: ObjectId,
) -> Result<(), Refusal> {
    m.destroy_object(c, DestroyObjectRequest { object })
        .map(|_| ())
}

/// The attack of issue 14: A's attach of the edu fails on its second CMD_CFGI_STE (the STE in
/// memory already points at A's domain), A destroys its object, the host's RAM page goes to
/// B, B maps it for its own device. Returns where the edu's DMA at IOVA 0 then lands.
fn attack(failures: u32) -> (Manager<Smmu>, FakeSmmu, Result<(), Refusal>, Option<u64>) {
    let (mut m, fake) = smmu_manager();
    let a = create(&mut m, A);
    map(&mut m, A, a, 0, RAM).unwrap();
    if failures > 0 {
        // Unclaimed → A's domain changes several STE words: break-before-make, two
        // CMD_CFGI_STE. The first goes through, the next `failures` fail.
        fake.inject_after(opcode::CFGI_STE, CERROR_ILL, 1, failures);
    }
    let attached = attach(&mut m, A, a, pci(0, 1, 0));
    assert_eq!(attached.is_err(), failures > 0);
    let _ = destroy(&mut m, A, a);
    // The host reassigns A's RAM to B, whose VMM maps it for its own device.
    m.client_gone(A);
    // From here the SMMU works again (B's own attach goes through).
    fake.clear_injections();
    let b = create(&mut m, B);
    attach(&mut m, B, b, pci(0, 2, 0)).unwrap();
    let b_mapped = map(&mut m, B, b, 0x10_0000, RAM);
    let landed = fake.translate(EDU.0, 0);
    (m, fake, b_mapped, landed)
}

#[test]
fn a_failed_attach_never_leaves_the_device_translating_into_memory_given_to_another_client() {
    // Control: without a failure the sequence is ordinary: B gets the page, the edu (never
    // attached) lands nowhere.
    let (_, fake, b_mapped, landed) = attack(0);
    assert_eq!(b_mapped, Ok(()));
    assert_eq!(landed, None);
    assert_eq!(fake.translate(NIC.0, 0x10_0000), Some(RAM), "B's DMA lands");

    // One failed CMD_CFGI_STE: the manager rolls the failing group back too (its detach is
    // confirmed), so the edu is in deny and A's domain could be destroyed.
    let (m, fake, b_mapped, landed) = attack(1);
    assert_eq!(b_mapped, Ok(()));
    assert_eq!(landed, None, "the edu's DMA must not land in B's page");
    assert_eq!(fake.translate(NIC.0, 0x10_0000), Some(RAM));
    assert_eq!(m.counters().orphaned_objects, 0);
}

#[test]
fn an_unconfirmed_rollback_keeps_the_device_and_the_memory_with_the_object() {
    // Every CMD_CFGI_STE fails: neither the attach nor its rollback nor the teardown's
    // detach is confirmed. A's object stays (an orphan once A is gone) with its memory.
    let (mut m, _fake, b_mapped, landed) = attack(1000);
    assert_eq!(
        b_mapped.map_err(|r| r.error),
        Err(DomainError::Busy),
        "A's page is still A's"
    );
    // Whatever STE the SMMU uses (the last write left V = 0), the edu reaches at most A's own
    // page, which nobody else could map.
    assert!(matches!(landed, None | Some(RAM)), "{landed:x?}");
    assert_eq!(m.counters().orphaned_objects, 1);
    // The edu is not free: the host cannot give it to anyone while the orphan holds it.
    let c = ClientId(3);
    assert!(
        matches!(
            m.assign(c, &[], &[sel(pci(0, 1, 0))]),
            Err(crate::AssignError::DeviceAttached(_))
        ),
        "the edu is not free"
    );
    let b = ObjectId(2);
    // B can still map other memory.
    map(&mut m, B, b, 0x20_0000, RAM + 0x10_0000).unwrap();
}

// ---- The manager's bookkeeping, over the model IOMMU ----

#[test]
fn an_attach_whose_rollback_fails_stays_recorded_as_attached() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    // The attach fails, then the rollback's detach of that group fails too.
    rig.fake_mut().fail(FakeOp::Attach, 0);
    rig.fake_mut().fail(FakeOp::Detach, 0);
    let r = refusal(rig.as_(A).attach(obj, sel(pci(0, 1, 0))));
    assert_eq!((r.error, r.value), (DomainError::Iommu, EDU.0.into()));
    let l = rig.as_(A).lookup_device(sel(pci(0, 1, 0))).unwrap();
    assert_eq!(
        (l.free, l.mine),
        (0, 1),
        "not free until a detach is confirmed"
    );
    // Not free for A's other object either.
    let other = rig.object(A);
    assert_eq!(
        refusal(rig.as_(A).attach(other, sel(pci(0, 1, 0)))).error,
        DomainError::Busy
    );
    // A confirmed detach frees it.
    rig.as_(A).detach(obj, sel(pci(0, 1, 0))).unwrap();
    rig.as_(A).attach(other, sel(pci(0, 1, 0))).unwrap();
}

#[test]
fn a_detach_whose_rollback_fails_stays_recorded_as_attached() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, bus(0)).unwrap();
    // The second group's detach fails, then re-attaching the first fails too.
    rig.fake_mut().fail(FakeOp::Detach, 1);
    rig.fake_mut().fail(FakeOp::Attach, 0);
    assert_eq!(
        refusal(rig.as_(A).detach(obj, bus(0))).error,
        DomainError::Iommu
    );
    let l = rig.as_(A).lookup_device(bus(0)).unwrap();
    assert_eq!((l.free, l.mine), (0, 2));
    rig.as_(A).detach(obj, bus(0)).unwrap();
    assert_eq!(rig.as_(A).lookup_device(bus(0)).unwrap().free, 2);
}

#[test]
fn a_refused_destroy_keeps_the_object_and_its_memory_until_retried() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    rig.as_(A).map(obj, win(0, RAM, 0x1000), RW, NONE).unwrap();
    rig.fake_mut().fail(FakeOp::Destroy, 0);
    assert_eq!(
        refusal(rig.as_(A).destroy_object(obj)).error,
        DomainError::Iommu
    );
    assert_eq!(rig.m.counters().refused_destroys, 1);
    // The device left it (confirmed), the memory did not.
    assert_eq!(rig.dma(EDU, 0), None);
    let ob = rig.object(B);
    assert_eq!(
        refusal(rig.as_(B).map(ob, win(0, RAM, 0x1000), RW, NONE)).error,
        DomainError::Busy
    );
    let s = rig.as_(A).object_status(obj).unwrap();
    assert_eq!((s.devices, s.mappings), (0, 1));
    // The retry succeeds and only then is the memory free.
    rig.as_(A).destroy_object(obj).unwrap();
    rig.as_(B).map(ob, win(0, RAM, 0x1000), RW, NONE).unwrap();
    // Control: the injected refusal was the only thing that kept it.
    assert_eq!(rig.fake().live_domains(), 1);
}

#[test]
fn a_client_whose_domain_cannot_be_destroyed_leaves_an_orphan_with_its_memory() {
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).map(obj, win(0, RAM, 0x1000), RW, NONE).unwrap();
    rig.fake_mut().fail(FakeOp::Destroy, 0);
    assert_eq!(rig.m.client_gone(A), 0);
    assert_eq!(rig.m.counters().orphaned_objects, 1);
    let ob = rig.object(B);
    assert_eq!(
        refusal(rig.as_(B).map(ob, win(0, RAM, 0x1000), RW, NONE)).error,
        DomainError::Busy
    );
    // Control for the orphan: once the IOMMU destroys the domain, retrying frees the memory.
    assert_eq!(rig.m.retry_orphans(), 1);
    assert_eq!(rig.m.retry_orphans(), 0, "nothing left to retry");
    rig.as_(B).map(ob, win(0, RAM, 0x1000), RW, NONE).unwrap();
    assert_eq!(rig.m.object_count(), 1);
}

#[test]
fn a_loop_retries_orphans_at_a_bounded_rate_and_logs_what_each_release_freed() {
    use crate::config::ORPHAN_RETRY_PERIOD;
    use core::time::Duration;
    let mut rig = Rig::new();
    let obj = rig.object(A);
    rig.as_(A).attach(obj, sel(pci(0, 1, 0))).unwrap();
    rig.as_(A).map(obj, win(0, RAM, 0x2000), RW, NONE).unwrap();
    // The client goes; the IOMMU will not put its device back in deny, twice (the first
    // retry too).
    rig.fake_mut().fail(FakeOp::Detach, 0);
    rig.fake_mut().fail(FakeOp::Detach, 0);
    assert_eq!(rig.m.client_gone(A), 0);
    assert_eq!(rig.m.orphan_count(), 1);
    let at = |ms: u64| Duration::from_millis(1_000 + ms);
    let failed = |rig: &Rig| rig.fake().counts().injected;
    assert_eq!(failed(&rig), 1, "client_gone's detach");
    // The first pass retries, and the IOMMU refuses again.
    assert_eq!(rig.m.retry_orphans_paced(at(0)), 0);
    assert_eq!(failed(&rig), 2);
    assert!(!rig.fake().failure_pending());
    // The IOMMU would now confirm, but passes within the period do not ask it.
    let period = ORPHAN_RETRY_PERIOD.as_millis() as u64;
    for ms in [1, period / 2, period - 1] {
        assert_eq!(rig.m.retry_orphans_paced(at(ms)), 0);
    }
    assert_eq!(
        rig.m.orphan_count(),
        1,
        "at most one retry per period: still kept"
    );
    let ob = rig.object(B);
    assert_eq!(
        refusal(rig.as_(B).map(ob, win(0, RAM, 0x1000), RW, NONE)).error,
        DomainError::Busy,
        "with its memory"
    );
    assert_eq!(rig.dma(EDU, 0), Some(RAM), "and its device");
    // One period later it is released, and the log says what that freed.
    logs::start();
    assert_eq!(rig.m.retry_orphans_paced(at(period)), 1);
    let lines = logs::take();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("orphaned object {obj} released"))
                && l.contains("1 device(s) back in default deny")
                && l.contains("1 mapping(s) of 0x2000 bytes")),
        "{lines:?}"
    );
    assert_eq!(rig.dma(EDU, 0), None, "its device is in deny");
    // Nothing left to retry; the memory is B's to map.
    assert_eq!(rig.m.orphan_count(), 0);
    assert_eq!(rig.m.retry_orphans_paced(at(10 * period)), 0);
    rig.as_(B).map(ob, win(0, RAM, 0x1000), RW, NONE).unwrap();
}
