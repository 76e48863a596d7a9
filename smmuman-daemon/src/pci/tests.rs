//! Enumeration against a fake configuration space.

use super::config::*;
use super::enumerate::*;
use super::fake::{FakeBar, FakeConfig};
use crate::board::PciWindow;
use iommu_core::{Bdf, PhysAddr, StreamId};

const MIB: u64 = 1 << 20;

fn qemu_window() -> PciWindow {
    PciWindow {
        cpu_base: PhysAddr(0x1000_0000),
        pci_base: 0x1000_0000,
        size: 0x2eff_0000,
    }
}

fn identity_sid(bdf: Bdf) -> Option<StreamId> {
    Some(StreamId(bdf.rid().into()))
}

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

/// QEMU virt with `-nic none` and two edu devices.
fn qemu_like() -> FakeConfig {
    let mut cfg = FakeConfig::default();
    cfg.add(None, 0, 0, (0x1b36, 0x0008), HEADER_TYPE_ENDPOINT, &[]);
    cfg.endpoint(None, 1, &FakeBar::mem32(1 << 20));
    cfg.endpoint(None, 2, &FakeBar::mem32(1 << 20));
    cfg
}

#[test]
fn two_edus_get_bars_memory_decoding_and_their_stream_ids() {
    let bus = enumerate(qemu_like(), qemu_window(), 0, 255, &identity_sid).unwrap();
    let f = bus.functions();
    assert_eq!(f.len(), 3);
    let edus: Vec<_> = bus.find(0x1234, 0x11e8).collect();
    assert_eq!(edus.len(), 2);
    assert_eq!(edus[0].bdf, bdf(0, 1, 0));
    assert_eq!(edus[0].sid, Some(StreamId(8)));
    assert_eq!(edus[1].sid, Some(StreamId(0x10)));
    let bar = edus[0].bars[0].unwrap();
    assert_eq!(
        bar.kind,
        BarKind::Mem32 {
            prefetchable: false
        }
    );
    assert_eq!(
        (bar.cpu_address, bar.size),
        (Some(PhysAddr(0x1000_0000)), MIB)
    );
    assert_eq!(
        edus[1].bars[0].unwrap().cpu_address,
        Some(PhysAddr(0x1010_0000))
    );
    let cfg = bus_config(bus);
    assert_eq!(cfg.reg(bdf(0, 1, 0), BAR0), 0x1000_0000);
    assert_eq!(cfg.reg(bdf(0, 2, 0), BAR0), 0x1010_0000);
    assert_eq!(cfg.command(bdf(0, 1, 0)) & COMMAND_MEM, COMMAND_MEM);
    assert_eq!(
        cfg.command(bdf(0, 0, 0)) & COMMAND_MEM,
        0,
        "no BAR, no decoding"
    );
}

fn bus_config(mut bus: PciBus<FakeConfig>) -> FakeConfig {
    std::mem::take(bus.config())
}

#[test]
fn enumeration_never_enables_bus_mastering() {
    let mut cfg = qemu_like();
    // Firmware left DMA on: enumeration must switch it off.
    cfg.functions[1].regs[1] = u32::from(COMMAND_BUS_MASTER | COMMAND_IO);
    let mut bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    for f in bus.functions().to_vec() {
        assert!(
            !bus.is_bus_master(f.bdf),
            "{} may DMA after enumeration",
            f.bdf
        );
    }
    assert_eq!(bus.config().command(bdf(0, 1, 0)) & COMMAND_IO, 0);
    bus.enable_bus_master(bdf(0, 2, 0)).unwrap();
    assert!(bus.is_bus_master(bdf(0, 2, 0)));
    assert!(
        !bus.is_bus_master(bdf(0, 1, 0)),
        "only the device asked for"
    );
    bus.disable_bus_master(bdf(0, 2, 0)).unwrap();
    assert!(!bus.is_bus_master(bdf(0, 2, 0)));
    assert_eq!(
        bus.enable_bus_master(bdf(0, 9, 0)),
        Err(PciError::UnknownFunction(bdf(0, 9, 0)))
    );
}

#[test]
fn bars_are_aligned_to_their_size() {
    let mut cfg = FakeConfig::default();
    let bars = [
        FakeBar::mem32(0x1000)[0],
        FakeBar::mem32(1 << 20)[0],
        FakeBar::mem32(0x100)[0],
    ];
    cfg.endpoint(None, 0, &bars);
    let bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    let f = bus.functions()[0];
    let addr = |i: usize| f.bars[i].unwrap().cpu_address.unwrap().0;
    assert_eq!(addr(0), 0x1000_0000);
    assert_eq!(addr(1), 0x1010_0000, "1 MiB BAR on a 1 MiB boundary");
    assert_eq!(
        addr(2),
        0x1020_0000,
        "small BARs still get a page of their own"
    );
}

#[test]
fn io_bars_are_sized_not_assigned_and_64_bit_bars_take_two_slots() {
    let mut cfg = FakeConfig::default();
    let mut bars = vec![FakeBar::io(0x100)[0]];
    bars.extend(FakeBar::mem64_prefetchable(0x4000));
    cfg.endpoint(None, 0, &bars);
    let bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    let f = bus.functions()[0];
    let io = f.bars[0].unwrap();
    assert_eq!(
        (io.kind, io.size, io.cpu_address),
        (BarKind::Io, 0x100, None)
    );
    let mem = f.bars[1].unwrap();
    assert_eq!(mem.kind, BarKind::Mem64 { prefetchable: true });
    assert_eq!(mem.size, 0x4000);
    assert_eq!(mem.cpu_address, Some(PhysAddr(0x1000_0000)));
    assert_eq!(f.bars[2], None, "the upper half is not a BAR of its own");
    assert_eq!(format!("{}", f.bars[0].unwrap()), "bar0=io+0x100");
    let cfg = bus_config(bus);
    assert_eq!(cfg.reg(bdf(0, 0, 0), BAR0 + 4), 0x1000_000c);
    assert_eq!(cfg.reg(bdf(0, 0, 0), BAR0 + 8), 0);
}

#[test]
fn devices_behind_a_bridge_get_a_bus_a_window_and_upstream_bus_mastering() {
    let mut cfg = FakeConfig::default();
    cfg.endpoint(None, 1, &FakeBar::mem32(1 << 20));
    let bridge = cfg.bridge(None, 3, Some(PCIE_TYPE_ROOT_PORT));
    cfg.endpoint(Some(bridge), 0, &FakeBar::mem32(0x1000));
    let mut bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    let behind = *bus
        .function(bdf(1, 0, 0))
        .expect("device behind the bridge found on bus 1");
    assert_eq!(behind.upstream, Some(bdf(0, 3, 0)));
    assert_eq!(behind.sid, Some(StreamId(0x100)));
    let b = *bus.function(bdf(0, 3, 0)).unwrap();
    assert_eq!(
        b.kind,
        FunctionKind::Bridge {
            secondary: 1,
            subordinate: 1,
            bridge_type: BridgeType::PciePort
        }
    );
    let bar = behind.bars[0].unwrap().cpu_address.unwrap().0;
    assert_eq!(
        bar, 0x1010_0000,
        "the bridge window starts on a 1 MiB boundary"
    );
    let cfg = bus.config();
    assert_eq!(
        cfg.reg(bdf(0, 3, 0), BRIDGE_BUS_NUMBERS) & 0x00ff_ffff,
        0x01_01_00
    );
    // Memory base 0x1010_0000, limit 0x101f_ffff: bits 31:20 in bits 15:4 of each half.
    assert_eq!(cfg.reg(bdf(0, 3, 0), BRIDGE_MEMORY_BASE_LIMIT), 0x1010_1010);
    assert_eq!(cfg.command(bdf(0, 3, 0)) & COMMAND_MEM, COMMAND_MEM);
    assert_eq!(
        cfg.reg(bdf(0, 3, 0), BRIDGE_PREF_BASE_LIMIT),
        0x0000_fff0,
        "prefetchable window closed"
    );
    bus.enable_bus_master(bdf(1, 0, 0)).unwrap();
    assert!(bus.is_bus_master(bdf(1, 0, 0)));
    assert!(
        bus.is_bus_master(bdf(0, 3, 0)),
        "the bridge forwards the DMA upstream"
    );
    assert!(!bus.is_bus_master(bdf(0, 1, 0)));
}

#[test]
fn nested_bridges_number_buses_depth_first() {
    let mut cfg = FakeConfig::default();
    let outer = cfg.bridge(None, 1, Some(PCIE_TYPE_UPSTREAM_PORT));
    let inner = cfg.bridge(Some(outer), 0, Some(PCIE_TYPE_DOWNSTREAM_PORT));
    cfg.endpoint(Some(inner), 0, &FakeBar::mem32(0x1000));
    cfg.bridge(None, 2, None);
    let bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    let kind = |b| bus.function(b).unwrap().kind;
    assert_eq!(
        kind(bdf(0, 1, 0)),
        FunctionKind::Bridge {
            secondary: 1,
            subordinate: 2,
            bridge_type: BridgeType::PciePort
        }
    );
    assert_eq!(
        kind(bdf(1, 0, 0)),
        FunctionKind::Bridge {
            secondary: 2,
            subordinate: 2,
            bridge_type: BridgeType::PciePort
        }
    );
    assert_eq!(
        kind(bdf(0, 2, 0)),
        FunctionKind::Bridge {
            secondary: 3,
            subordinate: 3,
            bridge_type: BridgeType::Conventional
        }
    );
    assert_eq!(
        bus.function(bdf(2, 0, 0)).unwrap().dma_alias,
        bdf(2, 0, 0),
        "PCIe all the way"
    );
    assert!(bus.function(bdf(2, 0, 0)).is_some());
    let order: Vec<_> = bus.functions().iter().map(|f| f.bdf).collect();
    assert_eq!(
        order,
        [bdf(0, 1, 0), bdf(1, 0, 0), bdf(2, 0, 0), bdf(0, 2, 0)]
    );
}

#[test]
fn an_empty_bridge_keeps_its_window_closed() {
    let mut cfg = FakeConfig::default();
    cfg.bridge(None, 1, None);
    let mut bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    assert_eq!(
        bus.config().reg(bdf(0, 1, 0), BRIDGE_MEMORY_BASE_LIMIT),
        0x0000_fff0
    );
    assert_eq!(bus.config().command(bdf(0, 1, 0)) & COMMAND_MEM, 0);
}

#[test]
fn running_out_of_bus_numbers_is_an_error() {
    let mut cfg = FakeConfig::default();
    cfg.bridge(None, 1, None);
    assert_eq!(
        enumerate(cfg, qemu_window(), 0, 0, &identity_sid).err(),
        Some(PciError::OutOfBusNumbers {
            bridge: bdf(0, 1, 0)
        })
    );
}

#[test]
fn a_bar_larger_than_the_window_is_an_error() {
    let mut cfg = FakeConfig::default();
    cfg.endpoint(None, 4, &FakeBar::mem32(1 << 30));
    assert_eq!(
        enumerate(cfg, qemu_window(), 0, 255, &identity_sid).err(),
        Some(PciError::BarDoesNotFit {
            bdf: bdf(0, 4, 0),
            bar: 0,
            size: 1 << 30
        })
    );
}

#[test]
fn functions_beyond_zero_only_on_multi_function_devices() {
    let mut cfg = FakeConfig::default();
    cfg.add(
        None,
        1,
        0,
        (0x1234, 1),
        HEADER_TYPE_ENDPOINT | HEADER_MULTI_FUNCTION,
        &[],
    );
    cfg.add(None, 1, 3, (0x1234, 2), HEADER_TYPE_ENDPOINT, &[]);
    cfg.add(None, 2, 0, (0x1234, 3), HEADER_TYPE_ENDPOINT, &[]);
    cfg.add(None, 2, 1, (0x1234, 4), HEADER_TYPE_ENDPOINT, &[]);
    let bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    let found: Vec<_> = bus.functions().iter().map(|f| f.bdf).collect();
    assert_eq!(found, [bdf(0, 1, 0), bdf(0, 1, 3), bdf(0, 2, 0)]);
}

#[test]
fn functions_outside_the_smmu_say_so() {
    let bus = enumerate(qemu_like(), qemu_window(), 0, 255, &|b: Bdf| {
        (b.dev == 1).then_some(StreamId(8))
    })
    .unwrap();
    let line = format!("{}", bus.function(bdf(0, 2, 0)).unwrap());
    assert_eq!(
        line,
        "bdf=00:02.0 vendor=0x1234 device=0x11e8 class=0x00ff00 bar0=0x0000000010100000+0x100000 sid=none (not behind the SMMU)"
    );
    let line = format!("{}", bus.function(bdf(0, 1, 0)).unwrap());
    assert!(line.ends_with(" sid=0x8"), "{line}");
}

#[test]
fn dma_from_behind_a_pcie_to_pci_bridge_carries_the_bridge_alias() {
    // QEMU: -device pcie-pci-bridge,id=br0 -device edu,bus=br0,addr=1.0. Measured: the edu's
    // DMA reaches the SMMU with StreamID 0x100 (bus 1, devfn 0), not 0x108.
    let mut cfg = FakeConfig::default();
    let br = cfg.bridge(None, 3, Some(PCIE_TYPE_PCIE_TO_PCI));
    cfg.endpoint(Some(br), 1, &FakeBar::mem32(1 << 20));
    cfg.endpoint(Some(br), 2, &FakeBar::mem32(1 << 20));
    let bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    let bridge = bus.function(bdf(0, 3, 0)).unwrap();
    assert!(matches!(
        bridge.kind,
        FunctionKind::Bridge {
            bridge_type: BridgeType::PcieToPci,
            ..
        }
    ));
    for dev in [1, 2] {
        let f = bus.function(bdf(1, dev, 0)).unwrap();
        assert_eq!(f.dma_alias, bdf(1, 0, 0));
        assert_eq!(
            f.sid,
            Some(StreamId(0x100)),
            "both share the bridge's StreamID"
        );
    }
    let line = format!("{}", bus.function(bdf(1, 1, 0)).unwrap());
    assert!(
        line.contains(" upstream=00:03.0 dma_alias=01:00.0 sid=0x100"),
        "{line}"
    );
}

#[test]
fn dma_from_behind_a_conventional_bridge_carries_the_bridge_id() {
    // PCIe-to-PCI bridge at 00:01.0 (bus 1), a PCI-to-PCI bridge at 01:02.0 (bus 2) behind it,
    // an endpoint at 02:03.0: the conventional bridge re-issues the DMA as 01:02.0, which the
    // PCIe-to-PCI bridge re-issues as 01:00.0.
    let mut cfg = FakeConfig::default();
    let express = cfg.bridge(None, 1, Some(PCIE_TYPE_PCIE_TO_PCI));
    let pci = cfg.bridge(Some(express), 2, None);
    cfg.endpoint(Some(pci), 3, &FakeBar::mem32(0x1000));
    let bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    assert_eq!(bus.function(bdf(1, 2, 0)).unwrap().dma_alias, bdf(1, 0, 0));
    assert_eq!(bus.function(bdf(2, 3, 0)).unwrap().dma_alias, bdf(1, 0, 0));
    let mut cfg = FakeConfig::default();
    let pci = cfg.bridge(None, 4, None);
    cfg.endpoint(Some(pci), 3, &FakeBar::mem32(0x1000));
    let bus = enumerate(cfg, qemu_window(), 0, 255, &identity_sid).unwrap();
    assert_eq!(bus.function(bdf(1, 3, 0)).unwrap().dma_alias, bdf(0, 4, 0));
    assert_eq!(
        bus.function(bdf(1, 3, 0)).unwrap().sid,
        Some(StreamId(0x20))
    );
}

#[test]
fn resolve_sids_sees_the_function_and_its_alias() {
    // A rule enumeration's requester-ID lookup cannot express: 00:01.0 gets its own StreamID,
    // every other function keeps what its DMA alias gives.
    let mut bus = enumerate(qemu_like(), qemu_window(), 0, 255, &identity_sid).unwrap();
    bus.resolve_sids(&|f| {
        if f.bdf == bdf(0, 1, 0) {
            Some(StreamId(0x30))
        } else {
            identity_sid(f.dma_alias)
        }
    });
    assert_eq!(
        bus.function(bdf(0, 1, 0)).unwrap().sid,
        Some(StreamId(0x30))
    );
    assert_eq!(
        bus.function(bdf(0, 2, 0)).unwrap().sid,
        Some(StreamId(0x10))
    );
}
