//! The rules of `docs/config.md` § Combining, one test each: firmware (device-tree fixtures)
//! combined with a config (inline text).

mod common;

use board_config::combine::UnitValue;
use board_config::{
    combine, config, dt, CombineError, Device, Irq, Mode, Origin, Topology, Trigger, Unclaimed,
    UnitId,
};
use common::dtb;
use iommu_core::{Bdf, PhysAddr, StreamId};

fn firmware(name: &str) -> Topology {
    dt::from_blob(&dtb(name)).unwrap()
}

fn user(text: &str) -> Topology {
    config::parse("test.conf", text).unwrap_or_else(|e| panic!("{e}"))
}

fn both(fw: &str, text: &str) -> Result<Topology, CombineError> {
    combine(&firmware(fw), Some(&user(text)))
}

fn pci(bus: u8, dev: u8, func: u8) -> Device {
    Device::pci(Bdf::new(bus, dev, func).unwrap())
}

fn edge(intid: u32) -> Option<Irq> {
    Some(Irq {
        intid,
        trigger: Trigger::Edge,
    })
}

const SMMU0: &str = "[smmu smmu0]\nbase 0x0905_0000\n";
const QEMU: &str = "qemu-virt.dts";

#[test]
fn without_a_config_firmware_is_taken_as_it_is() {
    let fw = firmware(QEMU);
    let t = combine(&fw, None).unwrap();
    assert_eq!(t, fw);
    assert_eq!(t.sid_for(pci(0, 1, 0)), Ok(Some((UnitId(0), StreamId(8)))));
}

#[test]
fn an_empty_config_changes_nothing() {
    let fw = firmware(QEMU);
    let t = combine(&fw, Some(&user("# nothing to override\n"))).unwrap();
    assert_eq!(
        t.units().map(|(_, u)| u).collect::<Vec<_>>(),
        fw.units().map(|(_, u)| u).collect::<Vec<_>>()
    );
    assert_eq!(t.streams(), fw.streams());
    assert_eq!(
        (t.mode(), t.fault_log_size()),
        (Mode::Override, board_config::DEFAULT_FAULT_LOG)
    );
}

#[test]
fn a_unit_section_with_only_a_base_names_the_firmware_unit_and_changes_nothing_else() {
    let t = both(QEMU, SMMU0).unwrap();
    assert_eq!(t.unit_count(), 1);
    let u = t.unit(UnitId(0)).unwrap();
    assert_eq!(u.name.as_str(), "smmu0", "the config's name");
    assert_eq!(u.irqs.eventq, edge(106));
    assert_eq!(u.irqs.gerror, edge(109));
    assert!(u.coherent);
    assert_eq!(u.size, 0x2_0000);
}

#[test]
fn override_a_pci_function_and_the_range_no_longer_applies_to_it() {
    let t = both(
        QEMU,
        &format!("{SMMU0}[device pci 00:01.0]\nunit smmu0\nsid 0x9\n"),
    )
    .unwrap();
    assert_eq!(t.sid_for(pci(0, 1, 0)), Ok(Some((UnitId(0), StreamId(9)))));
    assert_eq!(
        t.sid_for(pci(0, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x10)))),
        "its neighbours still follow firmware's iommu-map"
    );
    let (b, _) = t.bindings_for(pci(0, 1, 0)).next().unwrap();
    assert_eq!(b.origin, Origin::Config { line: 5 });
}

#[test]
fn override_unit_properties_replace_only_what_the_config_states() {
    let t = both(
        QEMU,
        &format!("{SMMU0}irq priq none\nirq gerror 0d120 level\ncoherent no\n"),
    )
    .unwrap();
    let u = t.unit(UnitId(0)).unwrap();
    assert_eq!(u.irqs.priq, None);
    assert_eq!(
        u.irqs.gerror,
        Some(Irq {
            intid: 120,
            trigger: Trigger::Level
        })
    );
    assert_eq!(u.irqs.eventq, edge(106), "not stated: firmware's");
    assert_eq!(u.irqs.cmdq_sync, edge(108));
    assert!(!u.coherent);
}

#[test]
fn override_a_platform_device_and_all_of_firmwares_stream_ids_for_it_go() {
    let dma = Device::Mmio(PhysAddr(0x1c09_0000));
    assert_eq!(
        firmware("base.dts").sid_for(dma),
        Ok(Some((UnitId(0), StreamId(0x20))))
    );
    let t = both(
        "base.dts",
        "[smmu s]\nbase 0x0905_0000\n[device mmio 0x1c09_0000]\nunit s\nsid 0x21\n",
    )
    .unwrap();
    assert_eq!(
        t.streams_of(dma).collect::<Vec<_>>(),
        [(UnitId(0), StreamId(0x21))]
    );
}

#[test]
fn a_unit_only_the_config_describes_is_added() {
    let t = both(
        QEMU,
        "[smmu extra]\nbase 0x2b40_0000\nsize 1M\n[device mmio 0x2b50_0000]\nunit extra\nsid 0x7\n",
    )
    .unwrap();
    assert_eq!(t.unit_count(), 2);
    assert_eq!(t.unit(UnitId(0)).unwrap().name.as_str(), "smmuv3@9050000");
    let extra = t.unit(UnitId(1)).unwrap();
    assert_eq!((extra.base, extra.size), (PhysAddr(0x2b40_0000), 0x10_0000));
    assert_eq!(
        t.sid_for(Device::Mmio(PhysAddr(0x2b50_0000))),
        Ok(Some((UnitId(1), StreamId(7))))
    );
}

#[test]
fn a_new_unit_overlapping_a_firmware_unit_is_refused() {
    let e = both(QEMU, "[smmu extra]\nbase 0x0906_0000\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unit extra (config line 1) overlaps unit smmuv3@9050000"
    );
}

#[test]
fn a_firmware_unit_grown_by_the_config_must_not_reach_into_another() {
    let e = both("board-multi.dts", "[smmu a]\nbase 0x2b40_0000\nsize 2M\n").unwrap_err();
    assert!(
        matches!(e, CombineError::UnitsOverlap { ref unit, ref other, line: 1 } if unit == "a" && other == "iommu@2b500000"),
        "{e}"
    );
}

#[test]
fn unit_names_must_stay_unique() {
    let fw = user("[smmu a]\nbase 0x1000_0000\n");
    let e = combine(&fw, Some(&user("[smmu a]\nbase 0x2000_0000\n"))).unwrap_err();
    assert!(matches!(e, CombineError::DuplicateUnitName { ref name, line: 1 } if name == "a"));
}

#[test]
fn merge_keeps_firmware_and_adds_what_it_lacks() {
    let t = both(
        QEMU,
        &format!("mode merge\n{SMMU0}[device mmio 0x0a00_0000]\nunit smmu0\nsid 0x30\n"),
    )
    .unwrap();
    assert_eq!(t.mode(), Mode::Merge);
    assert_eq!(t.sid_for(pci(0, 1, 0)), Ok(Some((UnitId(0), StreamId(8)))));
    assert_eq!(
        t.sid_for(Device::Mmio(PhysAddr(0x0a00_0000))),
        Ok(Some((UnitId(0), StreamId(0x30))))
    );
}

#[test]
fn merge_accepts_a_statement_that_agrees_with_firmware() {
    let t = both(
        QEMU,
        &format!("mode merge\n{SMMU0}[device pci 00:01.0]\nunit smmu0\nsid 0x8\n"),
    )
    .unwrap();
    assert_eq!(t.streams().len(), 1, "nothing to add");
}

#[test]
fn merge_refuses_another_stream_id_and_names_both_sources() {
    let e = both(
        QEMU,
        &format!("mode merge\n{SMMU0}[device pci 00:01.0]\nunit smmu0\nsid 0x9\n"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "merge: pci 0000:00:01.0 has StreamID 0x8 of smmu0 in the device tree but StreamID 0x9 of smmu0 on config line 6"
    );
}

#[test]
fn merge_refuses_a_different_unit_property() {
    let e = both(QEMU, &format!("mode merge\n{SMMU0}irq eventq 0d110 edge\n")).unwrap_err();
    assert_eq!(
        e,
        CombineError::UnitConflict {
            unit: "smmu0".try_into().unwrap(),
            property: "irq eventq",
            firmware: UnitValue::Irq(edge(106)),
            config: UnitValue::Irq(edge(110)),
            line: 2,
            source: board_config::FirmwareSource::DeviceTree,
        }
    );
}

#[test]
fn merge_adds_an_interrupt_firmware_does_not_name() {
    let t = both(
        "board-multi.dts",
        "mode merge\n[smmu b]\nbase 0x2b50_0000\nirq priq 0d120 edge\n",
    )
    .unwrap();
    let b = t.unit(UnitId(1)).unwrap();
    assert_eq!(b.irqs.priq, edge(120));
    assert_eq!(b.irqs.eventq, edge(142));
}

#[test]
fn bypass_of_unclaimed_streams_comes_from_the_config_in_both_modes() {
    for mode in ["override", "merge"] {
        let t = both(
            QEMU,
            &format!("mode {mode}\n{SMMU0}unclaimed bypass\nallow-bypass yes\n"),
        )
        .unwrap();
        assert_eq!(t.unit(UnitId(0)).unwrap().unclaimed, Unclaimed::Bypass);
        assert!(t.unit(UnitId(0)).unwrap().bypasses_unclaimed());
    }
}

#[test]
fn sharing_a_firmware_devices_stream_id_must_be_declared() {
    let text = "[smmu s]\nbase 0x0905_0000\n[device mmio 0x1c0a_0000]\nunit s\nsid 0x20\n";
    let e = both("base.dts", text).unwrap_err();
    assert_eq!(
        e,
        CombineError::UndeclaredSharing {
            device: Device::Mmio(PhysAddr(0x1c0a_0000)),
            other: Device::Mmio(PhysAddr(0x1c09_0000)),
            other_origin: Origin::DeviceTree,
            unit: "s".try_into().unwrap(),
            sid: StreamId(0x20),
            line: 5,
        }
    );
    let t = both("base.dts", &format!("{text}shared yes\n")).unwrap();
    let groups: Vec<Vec<Device>> = t.groups().map(|g| g.members().collect()).collect();
    assert_eq!(
        groups,
        [vec![
            Device::Mmio(PhysAddr(0x1c09_0000)),
            Device::Mmio(PhysAddr(0x1c0a_0000))
        ]]
    );
}

#[test]
fn a_window_needs_a_device_with_a_stream_id() {
    let e = both(
        QEMU,
        "[device mmio 0x1234_0000]\nwindow iova 0x0 pa 0x5000_0000 len 4K access rw\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        CombineError::WindowDeviceUnbound {
            device: Device::Mmio(PhysAddr(0x1234_0000)),
            line: 2
        }
    );
    // 00:02.0 has its StreamID from firmware's iommu-map.
    let t = both(
        QEMU,
        "[device pci 00:02.0]\nwindow iova 0x0 pa 0x5000_0000 len 4K access rw\n",
    )
    .unwrap();
    assert_eq!(t.windows_of(pci(0, 2, 0)).count(), 1);
}

#[test]
fn reserved_stream_ids_follow_their_unit_into_the_result() {
    let t = both(
        "board-multi.dts",
        "[smmu b]\nbase 0x2b50_0000\nreserve-sid 0x0-0xf\n",
    )
    .unwrap();
    assert!(t.is_reserved(UnitId(1), StreamId(0xf)));
    assert!(!t.is_reserved(UnitId(0), StreamId(0)));
}

#[test]
fn fault_log_and_mode_come_from_the_config() {
    let t = both(QEMU, "mode merge\nfault-log 0x1000\nmappings 0x8000\n").unwrap();
    assert_eq!((t.mode(), t.fault_log_size()), (Mode::Merge, 0x1000));
    assert_eq!(t.mappings(), 0x8000);
}

#[test]
fn nothing_to_manage_is_an_error() {
    assert_eq!(combine(&Topology::new(), None), Err(CombineError::NoUnits));
    assert_eq!(
        combine(&Topology::new(), Some(&user("mode merge\n"))),
        Err(CombineError::NoUnits)
    );
}

#[test]
fn a_config_alone_can_describe_the_board() {
    let t = combine(
        &Topology::new(),
        Some(&user(&format!(
            "{SMMU0}[device pci 00:01.0]\nunit smmu0\nsid 0x8\n"
        ))),
    )
    .unwrap();
    assert_eq!(t.sid_for(pci(0, 1, 0)), Ok(Some((UnitId(0), StreamId(8)))));
    assert_eq!(
        t.sid_for(pci(0, 2, 0)),
        Ok(None),
        "no range: only listed devices"
    );
}

// ---- [vm] sections: memory authority ------------------------------------------------------

#[test]
fn vm_sections_pass_through_unchanged_in_both_modes() {
    let vms = common::config_text("vm.conf");
    let alone = user(&vms);
    assert_eq!(alone.vms().len(), 2);
    for mode in ["mode override\n", "mode merge\n"] {
        let t = both(QEMU, &format!("{mode}{SMMU0}{vms}")).unwrap();
        let shifted = user(&format!("{mode}{SMMU0}{vms}"));
        assert_eq!(t.vms(), shifted.vms(), "{mode}");
        assert_eq!(t.vm("vm2").unwrap().ram.len(), 4);
        // The rest of the topology is firmware's, as without the [vm] sections.
        let without = both(QEMU, &format!("{mode}{SMMU0}")).unwrap();
        assert_eq!(t.streams(), without.streams());
    }
    // Firmware never assigns memory.
    assert!(firmware(QEMU).vms().is_empty());
    assert!(combine(&firmware(QEMU), None).unwrap().vms().is_empty());
}

#[test]
fn vm_ram_over_an_smmus_registers_is_refused() {
    // The unit is firmware's: only combining can see it.
    let text = common::config_text("vm-ram-over-smmu.conf");
    let e = both(QEMU, &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "vm vm1: ram 0x0000000009000000 len 0x100000 (config line 3) overlaps the register frame \
         of unit smmuv3@9050000"
    );
    assert!(matches!(
        e,
        CombineError::RamOverlapsUnit {
            line: 3,
            start: PhysAddr(0x0900_0000),
            ..
        }
    ));
    // Just below the frame is RAM like any other.
    both(QEMU, "[vm vm1]\nram 0x0904_0000 64K\n").unwrap();
}
