//! `smmuman_x86::topology::load` on built DMARs: scopes resolved on an enumerated, bus-numbered
//! hierarchy (a root port's buses become a requester-ID range), the config combined in
//! `override` and `merge` mode, a wrong config refused with `file:line:col`; and the unit plan
//! the image takes from the result (`remapping::plan_from_topology`).

#[path = "../../../crates/vtd/tests/dmar_builder.rs"]
mod builder;

use board_config::{ConfigFile, Device, Mode, StreamSource};
use iommu_core::{Bdf, PhysAddr, StreamId};
use smmuman_daemon::pci::{BridgeType, FunctionKind, PciFunction};
use smmuman_x86::acpi::DmarCopy;
use smmuman_x86::remapping::plan_from_topology;
use smmuman_x86::topology::{load, LoadError};
use vtd::dmar::UnitIndex;

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

fn function(at: Bdf, kind: FunctionKind) -> PciFunction {
    PciFunction {
        bdf: at,
        vendor_id: 0x1234,
        device_id: 0x11e8,
        class: 0x00ff_0000,
        revision: 0,
        kind,
        bars: [None; 6],
        upstream: None,
        dma_alias: at,
        sid: None,
    }
}

/// q35's functions plus a root port at 00:1c.0 (buses 1..=2) with an endpoint on bus 1.
fn functions() -> Vec<PciFunction> {
    let mut f: Vec<_> = [(0, 0), (1, 0), (2, 0), (0x1f, 0), (0x1f, 2), (0x1f, 3)]
        .map(|(d, n)| function(bdf(0, d, n), FunctionKind::Endpoint))
        .to_vec();
    f.push(function(
        bdf(0, 0x1c, 0),
        FunctionKind::Bridge {
            secondary: 1,
            subordinate: 2,
            bridge_type: BridgeType::PciePort,
        },
    ));
    f.push(function(bdf(1, 0, 0), FunctionKind::Endpoint));
    f
}

fn conf(text: &str) -> ConfigFile<'_> {
    ConfigFile {
        name: "initrd",
        bytes: text.as_bytes(),
    }
}

#[test]
fn the_dmar_alone_binds_its_endpoints_and_the_buses_below_the_root_port() {
    let copy = DmarCopy::from_bytes(&builder::qemu_q35_root_port().build()).unwrap();
    let dmar = copy.dmar().unwrap();
    let t = load(&dmar, &functions(), None).unwrap();
    assert_eq!(t.unit_count(), 1);
    let (unit, sid) = t.sid_for(Device::pci(bdf(0, 2, 0))).unwrap().unwrap();
    assert_eq!(sid, StreamId(0x10));
    // Behind the root port: by the bridge's bus range (1..=2), from its type 1 header.
    assert_eq!(
        t.sid_for(Device::pci(bdf(1, 0, 0))).unwrap(),
        Some((unit, StreamId(0x100)))
    );
    assert!(t
        .streams()
        .iter()
        .any(|b| matches!(b.source, StreamSource::PciRange(r) if r.rid_base == 0x100 && r.rid_last() == 0x2ff)));
    // Control: not listed, not bound.
    assert_eq!(t.sid_for(Device::pci(bdf(0, 4, 0))).unwrap(), None);
    let plan =
        plan_from_topology(&t, unit, UnitIndex(0), PhysAddr(0xfed9_0000), &functions()).unwrap();
    assert!(plan.regions.is_empty());
    assert!(plan.devices.iter().any(|d| d.0 == bdf(1, 0, 0)));
}

#[test]
fn a_merge_config_adds_a_reserved_region_and_an_unlisted_function() {
    let copy = DmarCopy::from_bytes(&builder::qemu_q35().build()).unwrap();
    let dmar = copy.dmar().unwrap();
    let mut fns = functions();
    fns.push(function(bdf(0, 4, 0), FunctionKind::Endpoint));
    let text = "mode merge\nfault-log 0d8\n[vtd dmar0]\nbase 0xfed9_0000\nreserved 0x0800_0000 2M pci 00:02.0\n[device pci 00:04.0]\nunit dmar0\n";
    let t = load(&dmar, &fns, Some(conf(text))).unwrap();
    assert_eq!(t.mode(), Mode::Merge);
    assert_eq!(t.fault_log_size(), 8);
    let (unit, _) = t.sid_for(Device::pci(bdf(0, 2, 0))).unwrap().unwrap();
    assert_eq!(
        t.sid_for(Device::pci(bdf(0, 4, 0))).unwrap(),
        Some((unit, StreamId(0x20)))
    );
    let plan = plan_from_topology(&t, unit, UnitIndex(0), PhysAddr(0xfed9_0000), &fns).unwrap();
    assert_eq!(plan.regions.len(), 1);
    assert_eq!(plan.regions[0].range.start, PhysAddr(0x0800_0000));
    assert!(plan.held(bdf(0, 2, 0)) && !plan.held(bdf(0, 4, 0)));
    // The held function is not the manager's; the added one is.
    let offered: Vec<_> = plan.manager_devices().iter().map(|d| d.sid).collect();
    assert!(!offered.contains(&StreamId(0x10)) && offered.contains(&StreamId(0x20)));
}

#[test]
fn a_wrong_config_is_a_file_line_column_error() {
    let copy = DmarCopy::from_bytes(&builder::qemu_q35().build()).unwrap();
    let dmar = copy.dmar().unwrap();
    let text = "[vtd dmar0]\nbase 0xfed9_0000\n[device pci 00:02.0]\nunit dmar0\nsid 0x10\n";
    let e = load(&dmar, &functions(), Some(conf(text))).unwrap_err();
    assert!(matches!(e, LoadError::Config(_)));
    assert!(e.to_string().starts_with("initrd:5:5: "), "{e}");
    // A kind the DMAR contradicts: refused when combining.
    let smmu = "[smmu s]\nbase 0xfed9_0000\n";
    let e = load(&dmar, &functions(), Some(conf(smmu))).unwrap_err();
    assert!(matches!(e, LoadError::Combine(_)), "{e}");
}
