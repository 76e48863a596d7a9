//! Board discovery against QEMU's real device tree and one hand-built tree per failure.

use super::fdt_builder::{cells, strs, virt, Node};
use super::*;

const QEMU_VIRT: &[u8] = include_bytes!("../../fixtures/qemu-virt-10.0.dtb");
const SMMU: &str = "smmuv3@9050000";
const PCIE: &str = "pcie@10000000";

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

fn parse(tree: &Node) -> Result<BoardInfo<'static>, BoardError<'static>> {
    let blob: &'static [u8] = Box::leak(tree.build(&[]).into_boxed_slice());
    BoardInfo::from_blob(blob)
}

fn edit(f: impl FnOnce(&mut Node)) -> Node {
    let mut tree = virt();
    f(&mut tree);
    tree
}

#[test]
fn qemu_virt_device_tree() {
    let board = BoardInfo::from_blob(QEMU_VIRT).unwrap();
    assert_eq!(
        board.ram.as_slice(),
        &[PhysRange::new(PhysAddr(0x4000_0000), 512 << 20).unwrap()]
    );
    assert_eq!(
        board.uart,
        UartNode {
            base: PhysAddr(0x900_0000),
            size: 0x1000
        }
    );
    assert_eq!(board.smmu.base, PhysAddr(0x905_0000));
    assert_eq!(board.smmu.size, 0x20000);
    assert!(board.smmu.coherent);
    assert_eq!(board.smmu.phandle, 0x8004);
    let edge = |intid| {
        Some(Irq {
            intid,
            trigger: Trigger::Edge,
        })
    };
    assert_eq!(
        board.smmu.irqs,
        SmmuIrqs {
            eventq: edge(106),
            priq: edge(107),
            cmdq_sync: edge(108),
            gerror: edge(109),
            combined: None
        }
    );
    assert_eq!(
        board.pcie.ecam,
        PhysRange::new(PhysAddr(0x40_1000_0000), 0x1000_0000).unwrap()
    );
    assert_eq!((board.pcie.bus_start, board.pcie.bus_end), (0, 255));
    assert_eq!(
        board.pcie.mmio32,
        PciWindow {
            cpu_base: PhysAddr(0x1000_0000),
            pci_base: 0x1000_0000,
            size: 0x2eff_0000
        }
    );
    assert_eq!(board.bootargs, "scenario=boot st=linear");
    assert_eq!(board.dtb_size, QEMU_VIRT.len() as u64);
    assert!(board.reserved.is_empty());
    // Requester ID = StreamID on virt: edu at 00:01.0 is SID 8, the second at 00:02.0 is 0x10.
    assert_eq!(board.sid_for(bdf(0, 1, 0)), Some(StreamId(0x8)));
    assert_eq!(board.sid_for(bdf(0, 2, 0)), Some(StreamId(0x10)));
    assert_eq!(board.sid_for(bdf(1, 0, 0)), Some(StreamId(0x100)));
}

#[test]
fn the_built_tree_matches_qemu() {
    let board = parse(&virt()).unwrap();
    let real = BoardInfo::from_blob(QEMU_VIRT).unwrap();
    assert_eq!(board.smmu, real.smmu);
    assert_eq!(board.pcie, real.pcie);
    assert_eq!(board.uart, real.uart);
    assert_eq!(board.bootargs, "scenario=boot st=2level");
}

#[test]
fn not_a_device_tree() {
    assert_eq!(
        BoardInfo::from_blob(&[0u8; 64]).unwrap_err(),
        BoardError::BadBlob(fdt::FdtError::BadMagic)
    );
    let mut blob = virt().build(&[]);
    blob.truncate(blob.len() - 4);
    assert_eq!(
        BoardInfo::from_blob(&blob).unwrap_err(),
        BoardError::BadBlob(fdt::FdtError::BufferTooSmall)
    );
}

#[test]
fn a_structurally_corrupt_device_tree_is_an_error_not_a_panic() {
    // The header's off_dt_strings (offset 12) pointed past the blob: the fdt crate would slice
    // out of bounds; the validator names the block and the offset instead.
    let mut blob = QEMU_VIRT.to_vec();
    blob[12..16].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    let err = open(&blob).unwrap_err();
    assert!(matches!(err, BoardError::CorruptBlob(_)), "{err:?}");
    assert!(err.to_string().starts_with("device tree: "), "{err}");
    // The same through the whole board parse.
    assert!(matches!(
        BoardInfo::from_blob(&blob),
        Err(BoardError::CorruptBlob(_))
    ));
}

#[test]
fn no_smmu() {
    let tree = edit(|t| t.children.retain(|c| c.name != SMMU));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::MissingNode {
            what: "arm,smmu-v3"
        }
    );
}

#[test]
fn two_smmus() {
    let tree = edit(|t| {
        let second = t.at(SMMU).clone();
        t.children.push(Node {
            name: "smmuv3@9070000".into(),
            ..second
        });
    });
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::Ambiguous {
            compatible: "arm,smmu-v3",
            count: 2
        }
    );
}

#[test]
fn smmu_without_reg() {
    let tree = edit(|t| t.at(SMMU).remove("reg"));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::MissingProperty {
            node: SMMU,
            property: "reg"
        }
    );
}

#[test]
fn smmu_reg_of_the_wrong_length() {
    let tree = edit(|t| t.at(SMMU).set("reg", cells(&[0, 0x905_0000, 0])));
    assert!(matches!(
        parse(&tree).unwrap_err(),
        BoardError::BadProperty {
            node: SMMU,
            property: "reg",
            ..
        }
    ));
}

#[test]
fn smmu_without_phandle() {
    let tree = edit(|t| t.at(SMMU).remove("phandle"));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::MissingProperty {
            node: SMMU,
            property: "phandle"
        }
    );
}

#[test]
fn smmu_interrupt_name_unknown() {
    let tree = edit(|t| {
        t.at(SMMU).set(
            "interrupt-names",
            strs(&["eventq", "priq", "sync", "gerror"]),
        )
    });
    assert!(matches!(
        parse(&tree).unwrap_err(),
        BoardError::BadProperty {
            node: SMMU,
            property: "interrupt-names",
            ..
        }
    ));
}

#[test]
fn smmu_fewer_names_than_interrupts() {
    let tree = edit(|t| t.at(SMMU).set("interrupt-names", strs(&["eventq", "priq"])));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::MissingProperty {
            node: SMMU,
            property: "interrupt-names"
        }
    );
}

#[test]
fn smmu_interrupts_of_a_non_gic_parent() {
    let tree = edit(|t| {
        t.at("intc@8000000")
            .set("compatible", strs(&["riscv,plic0"]))
    });
    assert!(matches!(
        parse(&tree).unwrap_err(),
        BoardError::Unsupported {
            node: SMMU,
            property: "interrupts",
            ..
        }
    ));
}

#[test]
fn smmu_with_a_level_combined_interrupt() {
    let tree = edit(|t| {
        let smmu = t.at(SMMU);
        smmu.set("interrupts", cells(&[0, 10, 4]));
        smmu.set("interrupt-names", strs(&["combined"]));
    });
    let irqs = parse(&tree).unwrap().smmu.irqs;
    assert_eq!(
        irqs.combined,
        Some(Irq {
            intid: 42,
            trigger: Trigger::Level
        })
    );
    assert_eq!(irqs.eventq, None);
}

#[test]
fn pcie_without_a_32_bit_window() {
    let tree = edit(|t| {
        t.at(PCIE)
            .set("ranges", cells(&[0x0300_0000, 0x80, 0, 0x80, 0, 0x80, 0]))
    });
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::BadProperty {
            node: PCIE,
            property: "ranges",
            reason: "no non-prefetchable 32-bit memory window"
        }
    );
}

#[test]
fn pcie_ecam_smaller_than_its_buses() {
    let tree = edit(|t| {
        t.at(PCIE)
            .set("reg", cells(&[0x40, 0x1000_0000, 0, 0x10_0000]))
    });
    assert!(matches!(
        parse(&tree).unwrap_err(),
        BoardError::BadProperty {
            node: PCIE,
            property: "reg",
            ..
        }
    ));
    let narrowed = edit(|t| {
        let p = t.at(PCIE);
        p.set("reg", cells(&[0x40, 0x1000_0000, 0, 0x20_0000]));
        p.set("bus-range", cells(&[0, 1]));
    });
    assert_eq!(parse(&narrowed).unwrap().pcie.bus_end, 1);
}

#[test]
fn iommu_map_to_an_unknown_phandle() {
    let tree = edit(|t| t.at(PCIE).set("iommu-map", cells(&[0, 0x9999, 0, 0x10000])));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::UnknownPhandle {
            node: PCIE,
            property: "iommu-map",
            phandle: 0x9999
        }
    );
}

#[test]
fn iommu_map_truncated() {
    let tree = edit(|t| t.at(PCIE).set("iommu-map", cells(&[0, 0x8004, 0])));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::BadProperty {
            node: PCIE,
            property: "iommu-map",
            reason: "truncated entry"
        }
    );
}

#[test]
fn iommu_map_to_an_iommu_with_two_cells() {
    let tree = edit(|t| t.at(SMMU).set("#iommu-cells", cells(&[2])));
    assert!(matches!(
        parse(&tree).unwrap_err(),
        BoardError::Unsupported {
            node: PCIE,
            property: "iommu-map",
            ..
        }
    ));
}

#[test]
fn iommu_map_with_several_entries_a_hole_and_another_iommu() {
    let tree = edit(|t| {
        t.children.push(
            Node::new("iommu@a000000")
                .prop("#iommu-cells", cells(&[1]))
                .prop("phandle", cells(&[0x77])),
        );
        // Bus 0 -> SIDs 0x800.., bus 1 uncovered, bus 2 -> the other IOMMU.
        t.at(PCIE).set(
            "iommu-map",
            cells(&[0x000, 0x8004, 0x800, 0x100, 0x200, 0x77, 0, 0x100]),
        );
    });
    let board = parse(&tree).unwrap();
    assert_eq!(board.pcie.iommu_map.entries.len(), 2);
    assert_eq!(board.sid_for(bdf(0, 1, 0)), Some(StreamId(0x808)));
    assert_eq!(board.sid_for(bdf(1, 0, 0)), None, "no entry covers bus 1");
    assert_eq!(
        board.sid_for(bdf(2, 0, 0)),
        None,
        "bus 2 is behind another IOMMU"
    );
}

#[test]
fn iommu_map_mask() {
    let tree = edit(|t| {
        let p = t.at(PCIE);
        p.set("iommu-map", cells(&[0, 0x8004, 0x40, 0x100]));
        p.set("iommu-map-mask", cells(&[0xff]));
    });
    let board = parse(&tree).unwrap();
    assert_eq!(
        board.sid_for(bdf(3, 1, 0)),
        Some(StreamId(0x48)),
        "bus bits masked off"
    );
}

#[test]
fn no_iommu_map_means_no_device_is_behind_the_smmu() {
    let tree = edit(|t| t.at(PCIE).remove("iommu-map"));
    assert_eq!(parse(&tree).unwrap().sid_for(bdf(0, 1, 0)), None);
}

#[test]
fn stdout_path_with_options_and_aliases() {
    let tree = edit(|t| {
        t.at("chosen")
            .set("stdout-path", strs(&["serial0:115200n8"]));
        t.children
            .push(Node::new("aliases").prop("serial0", strs(&["/pl011@9000000"])));
    });
    assert_eq!(parse(&tree).unwrap().uart.base, PhysAddr(0x900_0000));
}

#[test]
fn stdout_path_to_nowhere() {
    let tree = edit(|t| t.at("chosen").set("stdout-path", strs(&["/uart@1234"])));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::StdoutNotFound { path: "/uart@1234" }
    );
}

#[test]
fn stdout_that_is_not_a_pl011() {
    let tree = edit(|t| t.at("pl011@9000000").set("compatible", strs(&["ns16550a"])));
    assert!(matches!(
        parse(&tree).unwrap_err(),
        BoardError::Unsupported {
            node: "pl011@9000000",
            property: "compatible",
            ..
        }
    ));
}

#[test]
fn no_stdout_path() {
    let tree = edit(|t| t.at("chosen").remove("stdout-path"));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::MissingProperty {
            node: "chosen",
            property: "stdout-path"
        }
    );
}

#[test]
fn no_memory() {
    let tree = edit(|t| t.children.retain(|c| !c.name.starts_with("memory")));
    assert!(matches!(
        parse(&tree).unwrap_err(),
        BoardError::MissingNode { .. }
    ));
}

#[test]
fn bootargs_absent_or_not_utf8() {
    let tree = edit(|t| t.at("chosen").remove("bootargs"));
    assert_eq!(parse(&tree).unwrap().bootargs, "");
    let tree = edit(|t| t.at("chosen").set("bootargs", vec![0xff, 0xfe, 0]));
    assert_eq!(
        parse(&tree).unwrap_err(),
        BoardError::BadProperty {
            node: "chosen",
            property: "bootargs",
            reason: "not UTF-8 text"
        }
    );
}

#[test]
fn firmware_reservations_are_collected() {
    let tree = edit(|t| {
        t.children.push(
            Node::new("reserved-memory")
                .prop("#address-cells", cells(&[2]))
                .prop("#size-cells", cells(&[2]))
                .child(
                    Node::new("secmon@5e000000")
                        .prop("reg", cells(&[0, 0x5e00_0000, 0, 0x20_0000])),
                )
                .child(Node::new("dynamic").prop("size", cells(&[0, 0x1000]))),
        )
    });
    let blob: &'static [u8] = Box::leak(tree.build(&[(0x4100_0000, 0x1000)]).into_boxed_slice());
    let board = BoardInfo::from_blob(blob).unwrap();
    assert_eq!(
        board.reserved.as_slice(),
        &[
            PhysRange::new(PhysAddr(0x4100_0000), 0x1000).unwrap(),
            PhysRange::new(PhysAddr(0x5e00_0000), 0x20_0000).unwrap()
        ]
    );
}

#[test]
fn errors_name_node_and_property() {
    let e = BoardError::MissingProperty {
        node: SMMU,
        property: "reg",
    };
    assert_eq!(
        e.to_string(),
        "device tree node smmuv3@9050000: property \"reg\" missing"
    );
}

#[test]
fn the_gic_v3_is_found_with_its_distributor_and_redistributors() {
    let board = BoardInfo::from_blob(QEMU_VIRT).unwrap();
    assert_eq!(
        board.gic,
        Some(GicNode {
            dist: PhysRange::new(PhysAddr(0x800_0000), 0x10000).unwrap(),
            redist: PhysRange::new(PhysAddr(0x80a_0000), 0xf6_0000).unwrap(),
        })
    );
    assert_eq!(parse(&virt()).unwrap().gic, board.gic);
}

#[test]
fn a_board_without_a_gic_v3_has_none_and_a_gic_without_redistributors_is_an_error() {
    let none = edit(|t| {
        t.at("intc@8000000")
            .props
            .retain(|(n, _)| n != "compatible")
    });
    // The SMMU's interrupts then have no GIC parent: drop them too.
    let none = {
        let mut t = none;
        t.at(SMMU)
            .props
            .retain(|(n, _)| n != "interrupts" && n != "interrupt-names");
        t
    };
    assert_eq!(parse(&none).unwrap().gic, None);
    let short = edit(|t| {
        t.at("intc@8000000")
            .set("reg", cells(&[0, 0x800_0000, 0, 0x10000]));
    });
    assert_eq!(
        parse(&short).unwrap_err(),
        BoardError::BadProperty {
            node: "intc@8000000",
            property: "reg",
            reason: "a GICv3 needs a distributor and a redistributor region",
        }
    );
}

/// The operator's channel: QEMU 10's `virt` with a second `-serial` names its second PL011
/// `serial1`.
fn with_second_uart(alias: &str) -> Node {
    let alias = alias.to_string();
    edit(move |t| {
        t.children.push(
            Node::new("pl011@9040000")
                .prop("compatible", strs(&["arm,pl011", "arm,primecell"]))
                .prop("reg", cells(&[0, 0x904_0000, 0, 0x1000])),
        );
        t.children.push(
            Node::new("aliases")
                .prop("serial0", strs(&["/pl011@9000000"]))
                .prop("serial1", strs(&[alias.as_str()])),
        );
    })
}

#[test]
fn the_operator_uart_is_the_pl011_serial1_names() {
    let board = parse(&with_second_uart("/pl011@9040000")).unwrap();
    assert_eq!(
        board.operator_uart,
        Some(UartNode {
            base: PhysAddr(0x904_0000),
            size: 0x1000
        })
    );
    // Control: QEMU's tree with one `-serial` has no second UART, so no channel.
    assert_eq!(BoardInfo::from_blob(QEMU_VIRT).unwrap().operator_uart, None);
}

#[test]
fn the_console_is_never_the_operator_uart() {
    let board = parse(&with_second_uart("/pl011@9000000")).unwrap();
    assert_eq!(board.operator_uart, None);
    let board = parse(&with_second_uart("/nowhere")).unwrap();
    assert_eq!(board.operator_uart, None);
}
