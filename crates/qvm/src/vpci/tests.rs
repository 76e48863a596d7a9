use super::*;
use std::cell::RefCell;
use std::rc::Rc;

/// An edu-like function: vendor 1234, device 11e8, revision 10, class 00ff00, a capability
/// list, BAR0 = 1 MiB 32-bit memory, BAR1 = I/O, BAR2/3 = 64-bit prefetchable 16 KiB.
/// Records every write that reaches it.
#[derive(Clone, Default)]
pub(crate) struct FakeFunction {
    pub(crate) writes: Rc<RefCell<std::vec::Vec<(u16, u16)>>>,
    pub(crate) header_type: u8,
}

pub(crate) const BAR0_HPA: u64 = 0x80_1000_0000;
pub(crate) const BAR2_HPA: u64 = 0x80_2000_0000;

impl HostFunction for FakeFunction {
    fn config_read32(&mut self, offset: u16) -> u32 {
        match offset {
            0x00 => 0x11e8_1234,
            // Status: capabilities list (bit 4) and a 66 MHz bit (5); command as written.
            0x04 => {
                (0x0030 << 16)
                    | u32::from(
                        self.writes
                            .borrow()
                            .iter()
                            .rev()
                            .find(|w| w.0 == 4)
                            .map_or(0, |w| w.1),
                    )
            }
            0x08 => 0x00ff_0010,
            // Header type (multi-function bit set), latency 0x40, cache line 0x10.
            0x0c => (u32::from(self.header_type | 0x80) << 16) | 0x4010,
            0x2c => 0x1100_1af4,
            0x34 => 0x40,
            0x30 => 0xfffe_0001,
            _ => 0xdead_beef,
        }
    }
    fn config_write16(&mut self, offset: u16, value: u16) {
        self.writes.borrow_mut().push((offset, value));
    }
    fn bar(&self, index: u8) -> Option<HostBar> {
        match index {
            0 => Some(HostBar {
                kind: BarKind::Mem32,
                hpa: PhysAddr(BAR0_HPA),
                size: 1 << 20,
                prefetchable: false,
            }),
            1 => Some(HostBar {
                kind: BarKind::Io,
                hpa: PhysAddr(0x1000),
                size: 0x100,
                prefetchable: false,
            }),
            2 => Some(HostBar {
                kind: BarKind::Mem64,
                hpa: PhysAddr(BAR2_HPA),
                size: 16 << 10,
                prefetchable: true,
            }),
            _ => None,
        }
    }
}

fn ecam(dev: u64, func: u64, reg: u64) -> u64 {
    (dev << 15) | (func << 12) | reg
}

fn bus() -> (Vpci<FakeFunction>, FakeFunction) {
    let f = FakeFunction::default();
    let mut v = Vpci::new();
    let guest = v.add(Bdf::new(0, 1, 0).unwrap(), f.clone()).unwrap();
    assert_eq!(guest, Bdf::new(0, 1, 0).unwrap());
    f.writes.borrow_mut().clear();
    (v, f)
}

#[test]
fn a_scan_finds_exactly_the_pass_through_function() {
    let f = FakeFunction::default();
    let mut v = Vpci::new();
    // Host 00:03.0 appears as guest 00:01.0: the guest address is not the host's.
    assert_eq!(
        v.add(Bdf::new(0, 3, 0).unwrap(), f).unwrap(),
        Bdf::new(0, 1, 0).unwrap()
    );
    assert_eq!(v.host_bdf(1), Some(Bdf::new(0, 3, 0).unwrap()));
    let mut found = vec![];
    for dev in 0..32 {
        for func in 0..8 {
            let id = v.read(ecam(dev, func, 0), 4);
            if id != 0xffff_ffff {
                found.push((dev, func, id));
            }
        }
    }
    assert_eq!(found, [(1, 0, 0x11e8_1234)]);
    assert_eq!(v.read(ecam(1, 0, 0), 2), 0x1234);
    assert_eq!(v.read(ecam(1, 0, 2), 2), 0x11e8);
    assert_eq!(v.read(ecam(1, 0, 8), 4), 0x00ff_0010);
    assert_eq!(v.read(ecam(1, 0, 0x2c), 4), 0x1100_1af4);
    // Header type 0, not multi-function, nothing else of that register.
    assert_eq!(v.read(ecam(1, 0, 0xc), 4), 0);
    assert_eq!(v.read(ecam(1, 0, 0xe), 1), 0);
    // Empty slots read all-ones at every size.
    assert_eq!(v.read(ecam(2, 0, 0), 2), 0xffff);
    assert_eq!(v.read(ecam(0, 0, 0), 1), 0xff);
    // A misaligned access reads all-ones too.
    assert_eq!(v.read(ecam(1, 0, 1), 2), 0xffff);
    // So does an 8-byte access (ECAM takes 1, 2 and 4).
    assert_eq!(v.read(ecam(1, 0, 0), 8), u64::MAX);
}

#[test]
fn capabilities_and_rom_are_hidden() {
    let (mut v, _) = bus();
    // STATUS.CAP_LIST (bit 4 of the status half) reads 0; the 66 MHz bit is the device's.
    assert_eq!(v.read(ecam(1, 0, 6), 2), 0x0020);
    assert_eq!(v.read(ecam(1, 0, 0x34), 1), 0);
    assert_eq!(v.read(ecam(1, 0, 0x30), 4), 0);
    assert_eq!(v.read(ecam(1, 0, 0x40), 4), 0);
    assert_eq!(v.read(ecam(1, 0, 0x100), 4), 0);
    // The control: the real function does have them.
    let mut f = FakeFunction::default();
    assert_ne!(f.config_read32(0x04) & (1 << 20), 0);
    assert_eq!(f.config_read32(0x34), 0x40);
}

#[test]
fn bars_size_and_move_32_and_64_bit() {
    let (mut v, _) = bus();
    // Pre-assigned: BAR0 at the window's start, BAR2 after it (16 KiB-aligned).
    assert_eq!(v.read(ecam(1, 0, 0x10), 4), abi::PCI_MMIO_BASE);
    assert_eq!(v.read(ecam(1, 0, 0x14), 4), 0, "I/O BAR hidden");
    assert_eq!(
        v.read(ecam(1, 0, 0x18), 4),
        (abi::PCI_MMIO_BASE + (1 << 20)) | 0b1100
    );
    assert_eq!(v.read(ecam(1, 0, 0x1c), 4), 0);
    // 32-bit sizing.
    assert_eq!(v.write(ecam(1, 0, 0x10), 4, 0xffff_ffff), None);
    assert_eq!(v.read(ecam(1, 0, 0x10), 4), 0xfff0_0000);
    // 64-bit sizing: both halves.
    v.write(ecam(1, 0, 0x18), 4, 0xffff_ffff);
    v.write(ecam(1, 0, 0x1c), 4, 0xffff_ffff);
    assert_eq!(v.read(ecam(1, 0, 0x18), 4), 0xffff_c00c);
    assert_eq!(v.read(ecam(1, 0, 0x1c), 4), 0xffff_ffff);
    // An I/O BAR sizes to 0: the guest sees no BAR there.
    v.write(ecam(1, 0, 0x14), 4, 0xffff_ffff);
    assert_eq!(v.read(ecam(1, 0, 0x14), 4), 0);
    // Moves.
    let new = abi::PCI_MMIO_BASE + 0x0100_0000;
    assert_eq!(
        v.write(ecam(1, 0, 0x10), 4, new),
        Some(BarEvent::Moved {
            device: 1,
            bar: 0,
            old: Gpa(abi::PCI_MMIO_BASE),
            new: Gpa(new)
        })
    );
    assert_eq!(v.read(ecam(1, 0, 0x10), 4), new);
    let new64 = abi::PCI_MMIO_BASE + 0x0200_4000;
    assert!(matches!(
        v.write(ecam(1, 0, 0x18), 4, new64),
        Some(BarEvent::Moved { bar: 2, .. })
    ));
    assert_eq!(
        v.write(ecam(1, 0, 0x1c), 4, 0),
        None,
        "high half unchanged: no move"
    );
    assert_eq!(v.read(ecam(1, 0, 0x18), 4), new64 | 0b1100);
    assert_eq!(v.read(ecam(1, 0, 0x1c), 4), 0);
    let bars: std::vec::Vec<_> = v
        .bars()
        .map(|(b, on)| (b.bar, b.gpa, b.host.hpa, on))
        .collect();
    assert_eq!(
        bars,
        [
            (0, Gpa(new), PhysAddr(BAR0_HPA), false),
            (2, Gpa(new64), PhysAddr(BAR2_HPA), false)
        ]
    );
}

#[test]
fn out_of_window_and_unaligned_bar_writes_are_refused() {
    let (mut v, _) = bus();
    let at = abi::PCI_MMIO_BASE;
    for bad in [
        at + 0x1000,                                        // not 1 MiB-aligned
        abi::PCI_MMIO_BASE - (1 << 20),                     // below the window
        abi::PCI_MMIO_BASE + abi::PCI_MMIO_SIZE,            // past it
        abi::PCI_MMIO_BASE + abi::PCI_MMIO_SIZE - 0x8_0000, // straddles its end (and unaligned)
        0x4000_0000,                                        // guest RAM
    ] {
        assert_eq!(
            v.write(ecam(1, 0, 0x10), 4, bad),
            Some(BarEvent::Refused {
                device: 1,
                bar: 0,
                value: bad as u32
            }),
            "{bad:#x}"
        );
        assert_eq!(v.read(ecam(1, 0, 0x10), 4), at, "unchanged after {bad:#x}");
    }
    // 64-bit: an upper half that leaves the window is refused.
    assert!(matches!(
        v.write(ecam(1, 0, 0x1c), 4, 1),
        Some(BarEvent::Refused { bar: 3, .. })
    ));
    assert_eq!(v.read(ecam(1, 0, 0x1c), 4), 0);
    // The control: an aligned address inside the window is taken.
    assert!(matches!(
        v.write(ecam(1, 0, 0x10), 4, at + (3 << 20)),
        Some(BarEvent::Moved { .. })
    ));
}

#[test]
fn io_enable_never_reaches_the_device_memory_does() {
    let (mut v, f) = bus();
    // The guest asks for I/O only: the device gets nothing enabled.
    assert_eq!(v.write(ecam(1, 0, 4), 2, u64::from(command::IO)), None);
    assert_eq!(f.writes.borrow().last(), Some(&(4, 0)));
    assert_eq!(v.read(ecam(1, 0, 4), 2), 0);
    // The control: MEMORY | BUS_MASTER | IO: memory and bus master reach it, I/O does not.
    let all = command::IO | command::MEMORY | command::BUS_MASTER | (1 << 8) | (1 << 6);
    assert_eq!(
        v.write(ecam(1, 0, 4), 2, u64::from(all)),
        Some(BarEvent::Memory {
            device: 1,
            on: true
        })
    );
    assert_eq!(
        f.writes.borrow().last(),
        Some(&(4, command::MEMORY | command::BUS_MASTER))
    );
    assert_eq!(
        v.read(ecam(1, 0, 4), 2),
        u64::from(command::MEMORY | command::BUS_MASTER)
    );
    // A byte write of the high half sets INTx disable.
    assert_eq!(v.write(ecam(1, 0, 5), 1, 0x04), None);
    assert_eq!(
        f.writes.borrow().last(),
        Some(&(
            4,
            command::MEMORY | command::BUS_MASTER | command::INTX_DISABLE
        ))
    );
    // Memory off is an event too.
    assert_eq!(
        v.write(ecam(1, 0, 4), 4, 0xffff_0000),
        Some(BarEvent::Memory {
            device: 1,
            on: false
        })
    );
    assert!(f.writes.borrow().iter().all(|&(_, w)| w & command::IO == 0));
    // Other writes are ignored: nothing reaches the device.
    let before = f.writes.borrow().len();
    for reg in [0u64, 8, 0xc, 0x2c, 0x30, 0x34, 0x3c, 0x40, 0x100] {
        assert_eq!(v.write(ecam(1, 0, reg), 4, 0xffff_ffff), None);
    }
    assert_eq!(f.writes.borrow().len(), before);
}

#[test]
fn functions_that_cannot_be_passed_are_refused() {
    let mut v = Vpci::new();
    let bridge = FakeFunction {
        header_type: 1,
        ..Default::default()
    };
    assert_eq!(
        v.add(Bdf::new(0, 1, 0).unwrap(), bridge),
        Err(VpciError::NotEndpoint {
            bdf: Bdf::new(0, 1, 0).unwrap(),
            header_type: 1
        })
    );
    v.add(Bdf::new(0, 1, 0).unwrap(), FakeFunction::default())
        .unwrap();
    assert_eq!(
        v.add(Bdf::new(0, 2, 0).unwrap(), FakeFunction::default())
            .unwrap()
            .dev,
        2
    );
    assert_eq!(
        v.add(Bdf::new(0, 3, 0).unwrap(), FakeFunction::default()),
        Err(VpciError::TooManyFunctions)
    );
}

#[test]
fn random_config_accesses_never_panic_nor_enable_io() {
    let (mut v, f) = bus();
    let mut rng = crate::plan::tests::Rng(99);
    for _ in 0..50_000 {
        let off = rng.next() % (abi::ECAM_SIZE + 0x100);
        let size = 1 << (rng.next() % 4);
        if rng.next().is_multiple_of(2) {
            let _ = v.write(off, size, rng.next());
        } else {
            let _ = v.read(off, size);
        }
        for (b, _) in v.bars() {
            assert!(in_window(b.gpa.get(), b.host.size));
            assert_eq!(b.gpa.get() % b.host.size, 0);
        }
    }
    assert!(f.writes.borrow().iter().all(|&(_, w)| w & command::IO == 0));
}
