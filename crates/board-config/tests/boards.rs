//! The configurations under `boards/` and the QEMU scenario configs, combined with the device
//! trees they are written for, and the examples in `docs/config.md` and the board READMEs.

mod common;

use board_config::{
    combine, config, dt, load, CombineError, ConfigFile, Device, LoadError, Mode, StreamSource,
    Topology, UnitId,
};
use common::{board_file, config_text, dtb};
use iommu_core::{Bdf, PhysAddr, StreamId};
use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn firmware(name: &str) -> Topology {
    dt::from_blob(&dtb(name)).unwrap()
}

fn combined(fixture: &str, config_name: &str, text: &str) -> Result<Topology, CombineError> {
    let user = config::parse(config_name, text).unwrap_or_else(|e| panic!("{e}"));
    combine(&firmware(fixture), Some(&user))
}

fn pci(bus: u8, dev: u8, func: u8) -> Device {
    Device::pci(Bdf::new(bus, dev, func).unwrap())
}

#[test]
fn qemu_virt_config_keeps_the_device_trees_view() {
    let path = board_file("qemu-virt", "smmuman.conf");
    let t = combined(
        "qemu-virt.dts",
        "boards/qemu-virt/smmuman.conf",
        &read(&path),
    )
    .unwrap();
    let fw = firmware("qemu-virt.dts");
    assert_eq!(t.streams(), fw.streams());
    assert_eq!(t.unit(UnitId(0)), fw.unit(UnitId(0)));
    assert_eq!(
        t.sid_for(pci(0, 1, 0)),
        Ok(Some((UnitId(0), StreamId(0x8))))
    );
    assert_eq!(
        t.sid_for(pci(0, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x10))))
    );
    assert_eq!(
        (t.mode(), t.fault_log_size()),
        (Mode::Override, board_config::DEFAULT_FAULT_LOG)
    );
}

/// QEMU's device tree is the same with the bridge (boards/qemu-virt-bridge/README.md), so the
/// plain virt fixture is the bridge board's firmware.
#[test]
fn bridge_config_gives_both_edus_the_bridges_alias() {
    let path = board_file("qemu-virt-bridge", "smmuman.conf");
    let text = read(&path);
    let fw = firmware("qemu-virt.dts");
    assert_eq!(
        fw.sid_for(pci(1, 1, 0)),
        Ok(Some((UnitId(0), StreamId(0x108)))),
        "what firmware alone would say"
    );
    let t = combined("qemu-virt.dts", "bridge", &text).unwrap();
    assert_eq!(
        t.sid_for(pci(1, 1, 0)),
        Ok(Some((UnitId(0), StreamId(0x100))))
    );
    assert_eq!(
        t.sid_for(pci(1, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x100))))
    );
    assert_eq!(
        t.sid_for(pci(0, 3, 0)),
        Ok(Some((UnitId(0), StreamId(0x18)))),
        "the bridge itself"
    );
    let groups: Vec<(StreamId, Vec<Device>)> =
        t.groups().map(|g| (g.sid, g.members().collect())).collect();
    assert_eq!(
        groups,
        [(StreamId(0x100), vec![pci(1, 1, 0), pci(1, 2, 0)])]
    );

    // The same statements in merge mode contradict the device tree.
    let merged = text.replace("mode override", "mode merge");
    let e = combined("qemu-virt.dts", "bridge", &merged).unwrap_err();
    assert!(
        matches!(e, CombineError::StreamConflict { device, firmware: (_, StreamId(0x108)), config: (_, StreamId(0x100)), .. } if device == pci(1, 1, 0)),
        "{e}"
    );
}

#[test]
fn bridge_qemu_args_put_the_edus_behind_a_pcie_to_pci_bridge() {
    let args = read(&board_file("qemu-virt-bridge", "qemu.args"));
    let args: Vec<&str> = args
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let devices: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "-device")
        .map(|w| w[1])
        .collect();
    assert_eq!(
        devices,
        [
            "pcie-pci-bridge,id=br0,bus=pcie.0,addr=0x3",
            "edu,bus=br0,addr=0x1,dma_mask=0xffffffffffffffff",
            "edu,bus=br0,addr=0x2,dma_mask=0xffffffffffffffff",
        ]
    );
    assert!(args.contains(&"virt,iommu=smmuv3,virtualization=on,gic-version=3"));
}

#[test]
fn fvp_config_agrees_with_the_fvp_device_tree() {
    let text = read(&board_file("fvp-base-revc", "smmuman.conf"));
    let t = combined("fvp-base-revc.dts", "fvp", &text).unwrap();
    assert_eq!((t.mode(), t.fault_log_size()), (Mode::Merge, 32));
    let (id, smmu) = t.units().next().unwrap();
    assert_eq!(
        (smmu.name.as_str(), smmu.base),
        ("smmu0", PhysAddr(0x2b40_0000))
    );
    assert_eq!(t.unit_count(), 1);
    assert_eq!(t.sid_for(pci(1, 0, 0)), Ok(Some((id, StreamId(0x100)))));

    // A device tree that disagrees stops the manager; the README quotes the message.
    let wrong = text.replace("0d111", "0d112");
    let e = combined("fvp-base-revc.dts", "fvp", &wrong).unwrap_err();
    let readme = read(&board_file("fvp-base-revc", "README.md"));
    assert!(
        readme.contains(&format!("    {e}\n")),
        "README must quote: {e}"
    );
}

#[test]
fn qemu_scenario_configs() {
    let firmware_only = combined(
        "qemu-virt.dts",
        "qemu-firmware-only.conf",
        &config_text("qemu-firmware-only.conf"),
    )
    .unwrap();
    assert_eq!(firmware_only.streams(), firmware("qemu-virt.dts").streams());

    let merged = combined(
        "qemu-virt.dts",
        "qemu-merge.conf",
        &config_text("qemu-merge.conf"),
    )
    .unwrap();
    assert_eq!(merged.mode(), Mode::Merge);
    assert!(merged.is_reserved(UnitId(0), StreamId(0)));
    assert_eq!(merged.windows_of(pci(0, 2, 0)).count(), 1);
    assert_eq!(
        merged.sid_for(pci(0, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x10))))
    );

    let e = combined(
        "qemu-virt.dts",
        "qemu-merge-conflict.conf",
        &config_text("qemu-merge-conflict.conf"),
    )
    .unwrap_err();
    assert!(matches!(e, CombineError::StreamConflict { .. }), "{e}");
}

/// The example in docs/config.md is `tests/fixtures/config/full.conf`, and parses.
#[test]
fn the_documented_example_is_the_tested_one() {
    let doc = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md"));
    let start = doc
        .find("<!-- full example -->\n```\n")
        .expect("docs/config.md has the full example")
        + "<!-- full example -->\n```\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let example = &doc[start..end];
    assert_eq!(example, config_text("full.conf"));
    let t = config::parse("docs/config.md", example).unwrap();
    assert!(t
        .streams()
        .iter()
        .any(|b| b.source == StreamSource::Device(Device::Mmio(PhysAddr(0x1c09_0000)))));
}

#[test]
fn load_runs_the_whole_start_up_sequence() {
    let blob = dtb("qemu-virt.dts");
    let fdt = fdt::Fdt::new(&blob).unwrap();
    let bridge = read(&board_file("qemu-virt-bridge", "smmuman.conf"));
    let t = load(
        &fdt,
        Some(ConfigFile {
            name: "initrd",
            bytes: bridge.as_bytes(),
        }),
    )
    .unwrap();
    assert_eq!(
        t.sid_for(pci(1, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x100))))
    );
    assert_eq!(load(&fdt, None).unwrap(), firmware("qemu-virt.dts"));

    let broken = config_text("bad-number.conf");
    let e = load(
        &fdt,
        Some(ConfigFile {
            name: "initrd",
            bytes: broken.as_bytes(),
        }),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "config: initrd:7:5: expected a StreamID (number), found \"zz\""
    );

    let conflict = config_text("qemu-merge-conflict.conf");
    let e = load(
        &fdt,
        Some(ConfigFile {
            name: "initrd",
            bytes: conflict.as_bytes(),
        }),
    )
    .unwrap_err();
    assert!(
        matches!(e, LoadError::Combine(CombineError::StreamConflict { .. })),
        "{e}"
    );

    let bad_tree = dtb("iommu-map-truncated.dts");
    let e = load(&fdt::Fdt::new(&bad_tree).unwrap(), None).unwrap_err();
    assert!(matches!(e, LoadError::DeviceTree(_)), "{e}");
}
