//! Device-tree discovery against `.dts` fixtures compiled by `dtc`: the real QEMU `virt`
//! tree, an FVP Base RevC excerpt, a tree with everything discovery reads, and one fixture per
//! failure case, each asserting the exact error (node path, property, kind).

// `DtError` holds the node's path inline (no allocator), which makes it larger than clippy's
// default threshold; see `dt`'s module comment.
#![allow(clippy::result_large_err)]

mod common;

use board_config::dt::{self, DtError, DtErrorKind, Initrd};
use board_config::{
    Device, Irq, IrqName, Origin, PciRange, Stated, StreamSource, Topology, Trigger, Unclaimed,
    UnitId,
};
use common::dtb;
use iommu_core::{Bdf, PhysAddr, StreamId};

fn discover(name: &str) -> Topology {
    dt::from_blob(&dtb(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fails(name: &str) -> DtError {
    match dt::from_blob(&dtb(name)) {
        Ok(t) => panic!("{name} was accepted:\n{t}"),
        Err(e) => e,
    }
}

/// Asserts the node, property and kind of `name`'s error.
fn assert_fails(name: &str, node: &str, property: &str, kind: DtErrorKind) {
    let e = fails(name);
    assert_eq!(
        (e.node.as_str(), e.property, &e.kind),
        (node, property, &kind),
        "{name}: {e}"
    );
}

fn pci(segment: u16, bus: u8, dev: u8, func: u8) -> Device {
    Device::Pci {
        segment,
        bdf: Bdf::new(bus, dev, func).unwrap(),
    }
}

fn edge(intid: u32) -> Option<Irq> {
    Some(Irq {
        intid,
        trigger: Trigger::Edge,
    })
}

// ---- boards that must be read ------------------------------------------------------------

#[test]
fn qemu_virt_has_one_smmu_with_four_named_lines_and_an_identity_iommu_map() {
    let t = discover("qemu-virt.dts");
    assert_eq!(t.unit_count(), 1);
    let (id, smmu) = t.units().next().unwrap();
    assert_eq!(smmu.name.as_str(), "smmuv3@9050000");
    assert_eq!(smmu.base, PhysAddr(0x0905_0000));
    assert_eq!(smmu.size, 0x2_0000);
    assert!(smmu.coherent);
    // interrupts = <0 0x4a 1> ... : SPI 74..77, edge rising.
    assert_eq!(smmu.irqs.eventq, edge(106));
    assert_eq!(smmu.irqs.priq, edge(107));
    assert_eq!(smmu.irqs.cmdq_sync, edge(108));
    assert_eq!(smmu.irqs.gerror, edge(109));
    assert_eq!(smmu.irqs.combined, None);
    assert_eq!(smmu.unclaimed, Unclaimed::DenyAndRecord);
    assert_eq!(
        smmu.stated,
        Stated::SIZE
            | Stated::COHERENT
            | Stated::EVENTQ
            | Stated::PRIQ
            | Stated::CMDQ_SYNC
            | Stated::GERROR
    );
    assert_eq!(t.streams().len(), 1);
    let b = t.streams()[0];
    assert_eq!(b.unit, id);
    assert_eq!(
        b.source,
        StreamSource::PciRange(PciRange {
            segment: 0,
            rid_base: 0,
            len: 0x10000,
            mask: u32::MAX
        })
    );
    assert_eq!(b.sid, StreamId(0));
    assert_eq!(b.origin, Origin::DeviceTree);
    // StreamID = requester ID.
    assert_eq!(t.sid_for(pci(0, 0, 1, 0)), Ok(Some((id, StreamId(0x8)))));
    assert_eq!(t.sid_for(pci(0, 0, 2, 0)), Ok(Some((id, StreamId(0x10)))));
    assert_eq!(t.sid_for(pci(0, 1, 1, 0)), Ok(Some((id, StreamId(0x108)))));
    assert_eq!(
        t.sid_for(pci(1, 0, 1, 0)),
        Ok(None),
        "no second PCI segment"
    );
    assert!(t.reserved().is_empty() && t.windows().is_empty());
    assert_eq!(t.validate_against(id, 16), Ok(()));
}

#[test]
fn fvp_base_revc_smmu_pcie_and_motherboard() {
    let t = discover("fvp-base-revc.dts");
    assert_eq!(t.unit_count(), 1);
    let (id, smmu) = t.units().next().unwrap();
    assert_eq!(smmu.name.as_str(), "iommu@2b400000");
    assert_eq!((smmu.base, smmu.size), (PhysAddr(0x2b40_0000), 0x10_0000));
    assert!(smmu.coherent);
    // interrupt-names lists eventq, gerror, priq, cmdq-sync: SPI 74, 79, 75, 77.
    assert_eq!(smmu.irqs.eventq, edge(106));
    assert_eq!(smmu.irqs.gerror, edge(111));
    assert_eq!(smmu.irqs.priq, edge(107));
    assert_eq!(smmu.irqs.cmdq_sync, edge(109));
    assert_eq!(t.streams().len(), 1, "only PCIe is behind the SMMU");
    assert_eq!(t.sid_for(pci(0, 1, 0, 0)), Ok(Some((id, StreamId(0x100)))));
    // The motherboard UART is reached through two `ranges` but has no `iommus`.
    assert_eq!(t.sid_for(Device::Mmio(PhysAddr(0x1c09_0000))), Ok(None));
}

#[test]
fn board_multi_reads_every_kind_of_statement() {
    let t = discover("board-multi.dts");
    let names: Vec<_> = t.units().map(|(_, u)| u.name.as_str()).collect();
    assert_eq!(
        names,
        ["iommu@2b400000", "iommu@2b500000"],
        "the disabled unit is skipped"
    );
    let (a, b) = (UnitId(0), UnitId(1));
    let ua = t.unit(a).unwrap();
    assert_eq!(
        ua.irqs.combined,
        Some(Irq {
            intid: 132,
            trigger: Trigger::Level
        })
    );
    assert!(!ua.coherent);
    let ub = t.unit(b).unwrap();
    assert_eq!(ub.size, 0x4_0000);
    assert_eq!(ub.irqs.eventq, edge(142));
    assert_eq!(ub.irqs.gerror, edge(4101), "extended SPI 5");
    assert_eq!(ub.irqs.priq, None);
    assert!(!ub.stated.contains(Stated::PRIQ));

    // Host A, segment 0: bus 0 -> smmu-a 0x100.., bus 1 uncovered, bus 2 -> smmu-b 0x400...
    assert_eq!(t.sid_for(pci(0, 0, 1, 0)), Ok(Some((a, StreamId(0x108)))));
    assert_eq!(t.sid_for(pci(0, 1, 0, 0)), Ok(None));
    assert_eq!(
        t.sid_for(pci(0, 2, 0x1f, 7)),
        Ok(Some((b, StreamId(0x4ff))))
    );
    // Host B, segment 2 (linux,pci-domain), mask 0x7: every function 3 -> 0x23.
    assert_eq!(t.sid_for(pci(2, 0, 1, 3)), Ok(Some((b, StreamId(0x23)))));
    assert_eq!(t.sid_for(pci(2, 5, 0x1f, 3)), Ok(Some((b, StreamId(0x23)))));
    assert_eq!(t.sid_for(pci(1, 0, 1, 3)), Ok(None));

    // The DMA controller: soc maps 0 -> 0x1000_0000, peripherals 0 -> 0x200_0000.
    let dma = Device::Mmio(PhysAddr(0x1204_0000));
    let sids: Vec<_> = t.streams_of(dma).collect();
    assert_eq!(sids, [(a, StreamId(0x10)), (a, StreamId(0x11))]);
    assert!(t.sid_for(dma).is_err(), "two StreamIDs are not one");
    assert_eq!(t.streams().len(), 5);
}

#[test]
fn the_base_of_the_failure_fixtures_is_itself_valid() {
    let t = discover("base.dts");
    assert_eq!(t.unit_count(), 1);
    assert_eq!(
        t.sid_for(Device::Mmio(PhysAddr(0x1c09_0000))),
        Ok(Some((UnitId(0), StreamId(0x20))))
    );
    assert_eq!(
        t.sid_for(pci(0, 0, 3, 0)),
        Ok(Some((UnitId(0), StreamId(0x18))))
    );
}

// ---- one fixture per failure -------------------------------------------------------------

#[test]
fn truncated_iommu_map() {
    let e = fails("iommu-map-truncated.dts");
    assert_eq!(
        e.to_string(),
        "/pcie@10000000: iommu-map: 7 cells is not a multiple of 4 (rid-base, iommu, sid-base, length)"
    );
    assert_eq!(e.kind, DtErrorKind::IommuMapLength { cells: 7 });
}

#[test]
fn sid_range_overflow() {
    assert_fails(
        "iommu-map-sid-overflow.dts",
        "/pcie@10000000",
        "iommu-map",
        DtErrorKind::IdOverflow {
            entry: 0,
            which: "sid-base",
            base: 0xffff_0000,
            length: 0x2_0000,
        },
    );
}

#[test]
fn rid_range_overflow() {
    assert_fails(
        "iommu-map-rid-overflow.dts",
        "/pcie@10000000",
        "iommu-map",
        DtErrorKind::IdOverflow {
            entry: 0,
            which: "rid-base",
            base: 0xffff_8000,
            length: 0x1_0000,
        },
    );
}

#[test]
fn zero_length_iommu_map_entry() {
    assert_fails(
        "iommu-map-zero-length.dts",
        "/pcie@10000000",
        "iommu-map",
        DtErrorKind::EmptyIdRange { entry: 1 },
    );
}

#[test]
fn empty_iommu_map() {
    assert_fails(
        "iommu-map-empty.dts",
        "/pcie@10000000",
        "iommu-map",
        DtErrorKind::Empty,
    );
}

#[test]
fn unknown_smmu_phandle_in_iommu_map() {
    let e = fails("iommu-map-unknown-phandle.dts");
    assert_eq!(
        e.to_string(),
        "/pcie@10000000: iommu-map: phandle 0x1234 names no node"
    );
    assert_eq!(e.kind, DtErrorKind::UnknownPhandle { phandle: 0x1234 });
}

#[test]
fn iommu_map_pointing_at_something_else() {
    let e = fails("iommu-map-not-smmu.dts");
    assert_eq!(
        (e.node.as_str(), e.property),
        ("/pcie@10000000", "iommu-map")
    );
    match e.kind {
        DtErrorKind::NotAnSmmuV3 { target, .. } => assert_eq!(target.as_str(), "intc@8000000"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn iommu_map_pointing_at_a_disabled_smmu() {
    let e = fails("iommu-map-disabled-smmu.dts");
    assert_eq!(
        (e.node.as_str(), e.property),
        ("/pcie@10000000", "iommu-map")
    );
    match e.kind {
        DtErrorKind::IommuDisabled { target, .. } => {
            assert_eq!(target.as_str(), "iommu@9050000")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn iommu_map_mask_of_two_cells() {
    assert_fails(
        "iommu-map-mask-two-cells.dts",
        "/pcie@10000000",
        "iommu-map-mask",
        DtErrorKind::NotOneCell { bytes: 8 },
    );
}

#[test]
fn iommus_with_an_odd_cell_count() {
    let e = fails("iommus-odd-cells.dts");
    assert_eq!(
        e.to_string(),
        "/soc/dma@90000: iommus: 3 cells is not a whole number of (iommu, StreamID) pairs"
    );
}

#[test]
fn unknown_smmu_phandle_in_iommus() {
    assert_fails(
        "iommus-unknown-phandle.dts",
        "/soc/dma@90000",
        "iommus",
        DtErrorKind::UnknownPhandle { phandle: 0x4321 },
    );
}

#[test]
fn platform_device_without_reg() {
    assert_fails(
        "iommus-no-reg.dts",
        "/soc/dma@90000",
        "reg",
        DtErrorKind::Missing,
    );
}

#[test]
fn reg_of_a_bad_length() {
    assert_fails(
        "reg-bad-length.dts",
        "/soc/dma@90000",
        "reg",
        DtErrorKind::RegLength { cells: 3, entry: 2 },
    );
}

#[test]
fn smmu_frame_of_size_zero() {
    assert_fails(
        "reg-zero-size.dts",
        "/iommu@9050000",
        "reg",
        DtErrorKind::BadRange {
            address: 0x0905_0000,
            size: 0,
        },
    );
}

#[test]
fn device_on_a_bus_without_ranges() {
    let e = fails("untranslatable.dts");
    assert_eq!(
        e.to_string(),
        "/soc/dma@90000: reg: address 0x90000 on bus /soc has no CPU address (the bus has no ranges, or none covers it)"
    );
}

#[test]
fn smmu_with_two_iommu_cells() {
    assert_fails(
        "smmu-iommu-cells.dts",
        "/iommu@9050000",
        "#iommu-cells",
        DtErrorKind::IommuCells { cells: 2 },
    );
}

#[test]
fn smmu_without_iommu_cells() {
    assert_fails(
        "smmu-no-iommu-cells.dts",
        "/iommu@9050000",
        "#iommu-cells",
        DtErrorKind::Missing,
    );
}

#[test]
fn interrupt_names_and_interrupts_of_different_lengths() {
    let e = fails("interrupt-names-mismatch.dts");
    assert_eq!(
        e.to_string(),
        "/iommu@9050000: interrupt-names: 3 names for 4 interrupts"
    );
}

#[test]
fn unknown_interrupt_name() {
    let e = fails("interrupt-name-unknown.dts");
    assert_eq!(
        (e.node.as_str(), e.property),
        ("/iommu@9050000", "interrupt-names")
    );
    assert!(matches!(e.kind, DtErrorKind::UnknownInterruptName { ref name } if name == "gerr"));
}

#[test]
fn interrupt_name_given_twice() {
    assert_fails(
        "interrupt-name-duplicate.dts",
        "/iommu@9050000",
        "interrupt-names",
        DtErrorKind::DuplicateInterruptName {
            name: IrqName::Eventq,
        },
    );
}

#[test]
fn ppi_as_an_smmu_line() {
    assert_fails(
        "interrupt-ppi.dts",
        "/iommu@9050000",
        "interrupts",
        DtErrorKind::NotSpi { kind: 1, number: 9 },
    );
}

#[test]
fn interrupt_without_a_trigger() {
    assert_fails(
        "interrupt-no-trigger.dts",
        "/iommu@9050000",
        "interrupts",
        DtErrorKind::BadTrigger { flags: 0 },
    );
}

#[test]
fn interrupt_parent_that_is_not_a_gic() {
    let e = fails("interrupt-parent-not-gic.dts");
    assert_eq!(
        e.to_string(),
        "/iommu@9050000: interrupt-parent: interrupt parent pcie@10000000 is not an Arm GIC"
    );
}

#[test]
fn interrupts_extended_is_refused() {
    assert_fails(
        "interrupts-extended.dts",
        "/iommu@9050000",
        "interrupts-extended",
        DtErrorKind::InterruptsExtended,
    );
}

#[test]
fn duplicate_platform_device() {
    let e = fails("duplicate-device.dts");
    assert_eq!(
        (e.node.as_str(), e.property),
        ("/soc/dma-copy@90000", "reg")
    );
    match e.kind {
        DtErrorKind::DuplicateDevice { device, other } => {
            assert_eq!(device, Device::Mmio(PhysAddr(0x1c09_0000)));
            assert_eq!(other.as_str(), "dma@90000");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_smmu() {
    let e = fails("duplicate-smmu.dts");
    assert_eq!(
        e.to_string(),
        "/iommu-copy@9050000: reg: base 0x0000000009050000 is also the base of iommu@9050000"
    );
}

#[test]
fn overlapping_smmus() {
    let e = fails("smmu-overlap.dts");
    assert_eq!(
        e.to_string(),
        "/iommu@9060000: reg: register frame overlaps that of iommu@9050000"
    );
}

#[test]
fn two_hosts_in_one_pci_segment() {
    let e = fails("duplicate-pci-domain.dts");
    assert_eq!(
        (e.node.as_str(), e.property),
        ("/pcie@20000000", "linux,pci-domain")
    );
    assert!(matches!(
        e.kind,
        DtErrorKind::DuplicatePciDomain { segment: 0, ref other } if other == "pcie@10000000"
    ));
}

#[test]
fn not_a_device_tree() {
    let e = dt::from_blob(b"smmuman").unwrap_err();
    assert_eq!(e.kind, DtErrorKind::BadBlob(fdt::FdtError::BufferTooSmall));
}

// ---- the initrd that carries the config --------------------------------------------------

fn initrd_of(name: &str) -> Result<Option<Initrd>, DtError> {
    let blob = dtb(name);
    let fdt = fdt::Fdt::new(&blob).unwrap();
    dt::initrd(&fdt)
}

#[test]
fn initrd_as_qemu_writes_it() {
    let i = initrd_of("initrd.dts").unwrap().unwrap();
    assert_eq!(
        (i.start, i.end, i.len()),
        (PhysAddr(0x4800_0000), PhysAddr(0x4800_000e), 14)
    );
    let i = initrd_of("initrd-one-cell.dts").unwrap().unwrap();
    assert_eq!(i.len(), 0x1000);
    assert_eq!(initrd_of("base.dts"), Ok(None), "no initrd, no config blob");
}

#[test]
fn initrd_errors() {
    let e = initrd_of("initrd-no-end.dts").unwrap_err();
    assert_eq!(e.to_string(), "/chosen: linux,initrd-end: missing");
    let e = initrd_of("initrd-backwards.dts").unwrap_err();
    assert_eq!(
        e.kind,
        DtErrorKind::InitrdRange {
            start: 0x4800_0000,
            end: 0x4700_0000
        }
    );
    let e = initrd_of("initrd-three-cells.dts").unwrap_err();
    assert_eq!(
        (e.property, e.kind),
        (
            "linux,initrd-start",
            DtErrorKind::NotOneOrTwoCells { bytes: 12 }
        )
    );
}

// ---- cell counts and lengths that once panicked or misreported -------------------------

#[test]
fn ranges_whose_entries_have_no_cells() {
    // Used to divide by zero in `translate`.
    let e = fails("ranges-zero-cells.dts");
    assert_eq!(
        e.to_string(),
        "/soc/mid: ranges: 4 bytes, but the #address-cells and #size-cells in force make \
         each entry 0 cells long"
    );
    assert_eq!(e.kind, DtErrorKind::ZeroCellEntries { bytes: 4 });
}

#[test]
fn reg_whose_entries_have_no_cells() {
    let e = fails("reg-zero-cells.dts");
    assert_eq!(
        e.to_string(),
        "/soc/dma@90000: reg: 8 bytes, but the #address-cells and #size-cells in force make \
         each entry 0 cells long"
    );
}

#[test]
fn ranges_of_a_bad_length() {
    let e = fails("ranges-bad-length.dts");
    assert_eq!(
        e.to_string(),
        "/soc: ranges: 5 cells is not a whole number of 4-cell (child address, parent address, \
         length) entries"
    );
    assert_eq!(e.kind, DtErrorKind::RangesLength { cells: 5, entry: 4 });
}

#[test]
fn ranges_not_whole_cells() {
    assert_fails(
        "ranges-not-whole-cells.dts",
        "/soc",
        "ranges",
        DtErrorKind::NotWholeCells { bytes: 5 },
    );
}

#[test]
fn ranges_running_past_the_address_space() {
    let e = fails("ranges-past-end.dts");
    assert_eq!(
        e.to_string(),
        "/soc: ranges: range 0xfffffffffffff000 size 0x10000 is empty or runs past the end of \
         the address space"
    );
}
