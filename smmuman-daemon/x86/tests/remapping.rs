//! The unit plan (`smmuman_x86::remapping`) from built DMAR tables, and the manager over a
//! model IOMMU reached through the image's direct transport: RMRRs identity-mapped for the
//! devices they name, their ranges refused to every client, the held devices not offered; the
//! controls show the same requests granted where nothing is reserved.

#[path = "../../../crates/vtd/tests/dmar_builder.rs"]
mod builder;

use builder::*;
use core::cell::RefCell;
use iommu_core::{Access, Bdf, Iova, PhysAddr, StreamId};
use smmuman_api::{
    CallError, Client, DeviceSel, DmaWindow, DomainError, IovaRange, MapFlags, ObjectFlags,
};
use smmuman_daemon::pci::{FunctionKind, PciFunction};
use smmuman_server::fake::FakeIommu;
use smmuman_server::{Grant, GrantKind, Manager, ManagerConfig, PhysRange};
use smmuman_x86::acpi::DmarCopy;
use smmuman_x86::direct::Direct;
use smmuman_x86::remapping::{identity_map, plan, unit_for, PlanError};
use vtd::dmar::UnitIndex;

const RMRR_BASE: u64 = 0x7f00_0000;
const RMRR_LIMIT: u64 = 0x7f00_ffff;
const RAM: u64 = 0x4000_0000;

fn bdf(dev: u8) -> Bdf {
    Bdf::new(0, dev, 0).unwrap()
}

fn function(dev: u8) -> PciFunction {
    PciFunction {
        bdf: bdf(dev),
        vendor_id: 0x1234,
        device_id: 0x11e8,
        class: 0x00ff_0000,
        revision: 0,
        kind: FunctionKind::Endpoint,
        bars: [None; 6],
        upstream: None,
        dma_alias: bdf(dev),
        sid: None,
    }
}

/// q35's DRHD (root-bus endpoints 00:00.0..00:03.0, not INCLUDE_PCI_ALL) and an RMRR naming
/// 00:03.0 and 00:05.0 (absent).
fn table_with_rmrr(base: u64, limit: u64) -> Vec<u8> {
    let scopes = [0, 1, 2, 3].map(|d| Scope::endpoint(0, d, 0)).to_vec();
    DmarBuilder::new(48)
        .with(Structure::drhd(0, 0, 0xfed9_0000, scopes))
        .with(Structure::rmrr(
            0,
            base,
            limit,
            vec![Scope::endpoint(0, 3, 0), Scope::endpoint(0, 5, 0)],
        ))
        .build()
}

fn functions() -> Vec<PciFunction> {
    // 00:04.0 is in no device scope: no unit translates it.
    [0, 2, 3, 4].map(function).to_vec()
}

fn now() -> core::time::Duration {
    core::time::Duration::ZERO
}

#[test]
fn the_unit_covers_the_listed_endpoints_and_the_rmrr_names_its_device() {
    let copy = DmarCopy::from_bytes(&table_with_rmrr(RMRR_BASE, RMRR_LIMIT)).unwrap();
    let dmar = copy.dmar().unwrap();
    let fns = functions();
    assert_eq!(unit_for(&dmar, &fns, bdf(2)), Some(UnitIndex(0)));
    assert_eq!(unit_for(&dmar, &fns, bdf(4)), None);
    let p = plan(&dmar, UnitIndex(0), &fns).unwrap();
    let devices: Vec<Bdf> = p.devices.iter().map(|d| d.0).collect();
    assert_eq!(devices, [bdf(0), bdf(2), bdf(3)]);
    assert_eq!(p.regions.len(), 1);
    assert_eq!(
        p.regions[0].range,
        PhysRange {
            start: PhysAddr(RMRR_BASE),
            len: 0x1_0000
        }
    );
    // 00:05.0 is absent: only 00:03.0 is named.
    assert_eq!(p.regions[0].devices.as_slice(), [bdf(3)]);
    assert!(p.held(bdf(3)) && !p.held(bdf(2)));
    let offered: Vec<_> = p.manager_devices().iter().map(|d| d.id).collect();
    assert_eq!(
        offered,
        [
            smmuman_server::DeviceId::Pci(bdf(0)),
            smmuman_server::DeviceId::Pci(bdf(2))
        ]
    );
}

#[test]
fn a_misaligned_rmrr_is_a_typed_error() {
    let copy = DmarCopy::from_bytes(&table_with_rmrr(RMRR_BASE + 0x800, RMRR_LIMIT));
    // Either the DMAR walker or the plan refuses it; never a panic, never a partial map.
    if let Ok(copy) = copy {
        let dmar = copy.dmar().unwrap();
        assert!(matches!(
            plan(&dmar, UnitIndex(0), &functions()),
            Err(PlanError::BadRegion { .. })
        ));
    }
}

fn manager_over(
    fake: FakeIommu,
    table: &[u8],
) -> (Manager<FakeIommu>, smmuman_x86::remapping::UnitPlan) {
    let copy = DmarCopy::from_bytes(table).unwrap();
    let dmar = copy.dmar().unwrap();
    let p = plan(&dmar, UnitIndex(0), &functions()).unwrap();
    let mut fake = fake;
    identity_map(&mut fake, &p).unwrap();
    let devices = p.manager_devices();
    let reserved: Vec<PhysRange> = p.reserved_ranges().collect();
    let iova = [IovaRange {
        first: Iova(0),
        last: Iova((1 << 48) - 1),
    }];
    let config = ManagerConfig {
        devices: &devices,
        reserved: &reserved,
        iova_ranges: &iova,
        page_sizes: (1 << 12) | (1 << 21) | (1 << 30),
        fault_log_depth: 32,
        max_mappings_per_object: 64,
        max_mappings: 256,
        clock: now,
    };
    (Manager::new(fake, &config).unwrap(), p)
}

fn refused(r: Result<impl Sized, CallError>, e: DomainError) -> bool {
    matches!(r, Err(CallError::Refused(x)) if x.error == e)
}

#[test]
fn rmrr_is_identity_mapped_for_its_device_and_refused_to_every_client() {
    let (mut m, _) = manager_over(FakeIommu::new(), &table_with_rmrr(RMRR_BASE, RMRR_LIMIT));
    // The held device reaches its region at IOVA = PA, and nothing else.
    let held = StreamId(u32::from(bdf(3).rid()));
    assert_eq!(
        m.backend().translate(held, Iova(RMRR_BASE + 0x1000)),
        Some((PhysAddr(RMRR_BASE + 0x1000), Access::RW))
    );
    assert_eq!(m.backend().translate(held, Iova(RAM)), None);
    // The host cannot even assign it.
    let c1 = smmuman_api::ClientId(1);
    let rmrr = PhysRange {
        start: PhysAddr(RMRR_BASE),
        len: 0x1_0000,
    };
    assert!(m
        .assign(
            c1,
            &[Grant {
                range: rmrr,
                kind: GrantKind::Ram
            }],
            &[]
        )
        .is_err());
    // Nor its device.
    assert!(m.assign(c1, &[], &[DeviceSel::pci(bdf(3))]).is_err());
    let ram = PhysRange {
        start: PhysAddr(RAM),
        len: 2 << 20,
    };
    m.assign(
        c1,
        &[Grant {
            range: ram,
            kind: GrantKind::Ram,
        }],
        &[DeviceSel::pci(bdf(2))],
    )
    .unwrap();
    let m = RefCell::new(m);
    let mut c = Client::connect(Direct::new(&m, c1, now)).unwrap();
    assert!(refused(
        c.lookup_device(DeviceSel::pci(bdf(3))),
        DomainError::NotFound
    ));
    let obj = c.create_object(ObjectFlags::empty()).unwrap().object;
    assert!(refused(
        c.attach(obj, DeviceSel::pci(bdf(3))),
        DomainError::NotFound
    ));
    c.attach(obj, DeviceSel::pci(bdf(2))).unwrap();
    let w = DmaWindow::new(Iova(0), PhysAddr(RMRR_BASE), 0x1_0000).unwrap();
    assert!(refused(
        c.map(obj, w, Access::RW, MapFlags::empty()),
        DomainError::NotOwned
    ));
    // Control: the same map of assigned RAM is granted.
    let w = DmaWindow::new(Iova(0), PhysAddr(RAM), 0x1_0000).unwrap();
    c.map(obj, w, Access::RW, MapFlags::empty()).unwrap();
    let edu = StreamId(u32::from(bdf(2).rid()));
    assert_eq!(
        m.borrow().backend().translate(edu, Iova(0x1000)),
        Some((PhysAddr(RAM + 0x1000), Access::RW))
    );
    // The client goes away without cleaning up: its device is back in deny, the RMRR device
    // keeps its identity map.
    drop(c);
    assert_eq!(m.borrow().backend().translate(edu, Iova(0x1000)), None);
    assert_eq!(m.borrow().object_count(), 0);
    assert!(m
        .borrow()
        .backend()
        .translate(held, Iova(RMRR_BASE))
        .is_some());
}

#[test]
fn control_without_rmrr_the_device_is_offered() {
    let table = DmarBuilder::new(48)
        .with(Structure::drhd(
            0,
            0,
            0xfed9_0000,
            [0, 2, 3].map(|d| Scope::endpoint(0, d, 0)).to_vec(),
        ))
        .build();
    let (mut m, p) = manager_over(FakeIommu::new(), &table);
    assert!(p.regions.is_empty());
    m.assign(smmuman_api::ClientId(1), &[], &[DeviceSel::pci(bdf(3))])
        .unwrap();
    let m = RefCell::new(m);
    let mut c = Client::connect(Direct::new(&m, smmuman_api::ClientId(1), now)).unwrap();
    let obj = c.create_object(ObjectFlags::empty()).unwrap().object;
    c.attach(obj, DeviceSel::pci(bdf(3))).unwrap();
}

#[test]
fn a_reentrant_call_is_an_error_not_a_panic() {
    let (m, _) = manager_over(FakeIommu::new(), &table_with_rmrr(RMRR_BASE, RMRR_LIMIT));
    let m = RefCell::new(m);
    let _held = m.borrow_mut();
    let r = Client::connect(Direct::new(&m, smmuman_api::ClientId(1), now));
    assert!(matches!(
        r,
        Err(CallError::Transport(
            smmuman_api::TransportError::Other { .. }
        ))
    ));
    drop(_held);
}
