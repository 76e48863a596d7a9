//! PCI through ECAM: find a function on bus 0, give its BAR 0 an address, enable it.
//!
//! ECAM (PCI Express Base Specification 5.0, §7.2.2): function `bus:dev.fn`'s 4 KiB of
//! configuration space start at `ecam + (bus << 20 | dev << 15 | fn << 12)`. Registers of the
//! type 0 header (PCI Local Bus Specification 3.0, §6.1): Vendor ID (0x00, 0xffff = no
//! function), Device ID (0x02), Command (0x04), Header Type (0x0e, bit 7 = multi-function),
//! BAR 0 (0x10). Configuration space is read and written in aligned 32-bit words.

use crate::layout::Range;
use crate::phys::Phys;
use core::fmt;

/// Vendor ID / Device ID word.
const ID: u64 = 0x00;
/// Command (low half) / Status (high half) word.
const COMMAND: u64 = 0x04;
/// Word holding Header Type in its bits 23:16.
const HEADER_WORD: u64 = 0x0c;
/// BAR 0.
const BAR0: u64 = 0x10;
/// Command.Memory Space Enable (PCI 3.0 §6.2.2).
pub const COMMAND_MEMORY: u32 = 1 << 1;
/// Command.Bus Master Enable.
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;
/// BAR bit 0: 1 = I/O space (PCI 3.0 §6.2.5.1).
const BAR_IO: u32 = 1;
/// BAR bits 2:1: 0b10 = 64-bit memory BAR.
const BAR_TYPE_MASK: u32 = 0b110;
/// BAR bits 3:0 are flags; the address is above.
const BAR_FLAGS: u32 = 0xf;

/// A function found on bus 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Device number (0..32).
    pub dev: u8,
    /// Function number (0..8).
    pub func: u8,
    /// Its configuration space.
    pub config: u64,
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00:{:02x}.{}", self.dev, self.func)
    }
}

/// BAR 0 as the guest left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Its CPU address (the window's CPU = PCI address on `virt` and under qvm).
    pub base: u64,
    /// Its size.
    pub size: u64,
    /// Whether the guest assigned it (it read 0), rather than finding it assigned.
    pub assigned: bool,
}

/// BAR 0 cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarError {
    /// It is an I/O or 64-bit BAR (the guests handle 32-bit memory BARs only).
    NotMem32(u32),
    /// Writing all ones read back no size.
    NoSize(u32),
    /// It does not fit in the window.
    NoRoom {
        /// Its size.
        size: u64,
    },
    /// Already assigned outside the window.
    OutsideWindow(u64),
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMem32(v) => write!(f, "BAR 0 {v:#x} is not a 32-bit memory BAR"),
            Self::NoSize(v) => write!(f, "BAR 0 sizing read back {v:#x}"),
            Self::NoRoom { size } => write!(f, "BAR 0 ({size:#x} bytes) does not fit the window"),
            Self::OutsideWindow(a) => write!(f, "BAR 0 at {a:#x} is outside the memory window"),
        }
    }
}

/// The first function on bus 0 of `ecam` with this vendor and device ID.
pub fn find(phys: &dyn Phys, ecam: Range, vendor: u16, device: u16) -> Option<Function> {
    let want = u32::from(device) << 16 | u32::from(vendor);
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let offset = u64::from(dev) << 15 | u64::from(func) << 12;
            if offset >= ecam.size {
                return None;
            }
            let config = ecam.base + offset;
            let id = phys.read32(config + ID);
            if id & 0xffff == 0xffff {
                if func == 0 {
                    break;
                }
                continue;
            }
            if id == want {
                return Some(Function { dev, func, config });
            }
            let multi = phys.read32(config + HEADER_WORD) & (1 << 23) != 0;
            if func == 0 && !multi {
                break;
            }
        }
    }
    None
}

/// Sizes BAR 0 (write all ones, read back, restore: PCI 3.0 §6.2.5.1, with memory decoding
/// off meanwhile), assigns it the lowest size-aligned address of `window` if it reads 0, and
/// enables memory decoding and bus mastering.
///
/// # Errors
/// [`BarError`].
pub fn enable_bar0(phys: &dyn Phys, f: Function, window: Range) -> Result<Bar, BarError> {
    let command = phys.read32(f.config + COMMAND) & 0xffff;
    phys.write32(f.config + COMMAND, command & !COMMAND_MEMORY);
    let original = phys.read32(f.config + BAR0);
    if original & BAR_IO != 0 || original & BAR_TYPE_MASK != 0 {
        return Err(BarError::NotMem32(original));
    }
    phys.write32(f.config + BAR0, u32::MAX);
    let probe = phys.read32(f.config + BAR0);
    phys.write32(f.config + BAR0, original);
    let mask = probe & !BAR_FLAGS;
    if mask == 0 {
        return Err(BarError::NoSize(probe));
    }
    let size = u64::from(!mask) + 1;
    let current = u64::from(original & !BAR_FLAGS);
    let (base, assigned) = if current == 0 {
        let base = window
            .base
            .checked_add(size - 1)
            .map(|b| b & !(size - 1))
            .filter(|b| window.covers(&Range::new(*b, size)))
            .ok_or(BarError::NoRoom { size })?;
        let word = u32::try_from(base).map_err(|_| BarError::NoRoom { size })?;
        phys.write32(f.config + BAR0, word | (original & BAR_FLAGS));
        (base, true)
    } else if window.covers(&Range::new(current, size)) {
        (current, false)
    } else {
        return Err(BarError::OutsideWindow(current));
    };
    phys.write32(
        f.config + COMMAND,
        command | COMMAND_MEMORY | COMMAND_BUS_MASTER,
    );
    Ok(Bar {
        base,
        size,
        assigned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const ECAM: u64 = 0x3000_0000;

    /// Configuration space of bus 0 with one type 0 function at 00:01.0 whose BAR 0 decodes
    /// `size` bytes (its low bits read back as zeros after all ones are written).
    struct FakeBus {
        words: RefCell<HashMap<u64, u32>>,
        size: u32,
    }

    impl FakeBus {
        fn new(bar0: u32, size: u32) -> Self {
            let f = ECAM + (1 << 15);
            let words = HashMap::from([(f, 0x11e8_1234), (f + BAR0, bar0), (f + COMMAND, 0)]);
            Self {
                words: RefCell::new(words),
                size,
            }
        }

        fn word(&self, pa: u64) -> u32 {
            self.words.borrow().get(&pa).copied().unwrap_or(0)
        }
    }

    impl Phys for FakeBus {
        fn read8(&self, _: u64) -> u8 {
            0
        }
        fn write8(&self, _: u64, _: u8) {}
        fn read32(&self, pa: u64) -> u32 {
            // Absent functions read all ones (PCIe Base 5.0 §2.3.2, Unsupported Request).
            self.words
                .borrow()
                .get(&pa)
                .copied()
                .unwrap_or(if pa & 0xfff == 0 { u32::MAX } else { 0 })
        }
        fn write32(&self, pa: u64, value: u32) {
            let value = if pa & 0xfff == BAR0 {
                (value & !(self.size - 1)) | (self.word(pa) & BAR_FLAGS)
            } else {
                value
            };
            self.words.borrow_mut().insert(pa, value);
        }
        fn read64(&self, _: u64) -> u64 {
            0
        }
        fn write64(&self, _: u64, _: u64) {}
    }

    const WINDOW: Range = Range::new(0x1000_0000, 0x1000_0000);

    #[test]
    fn the_scan_finds_the_function_and_stops_at_the_ecam_end() {
        let bus = FakeBus::new(0, 1 << 20);
        let ecam = Range::new(ECAM, 1 << 20);
        let f = find(&bus, ecam, 0x1234, 0x11e8).unwrap();
        assert_eq!((f.dev, f.func, f.config), (1, 0, ECAM + 0x8000));
        assert_eq!(f.to_string(), "00:01.0");
        assert_eq!(find(&bus, ecam, 0x1234, 0x0001), None);
        assert_eq!(find(&bus, Range::new(ECAM, 0x8000), 0x1234, 0x11e8), None);
    }

    #[test]
    fn an_unassigned_bar_gets_the_first_aligned_window_address_and_decoding_is_on() {
        let bus = FakeBus::new(0, 1 << 20);
        let f = find(&bus, Range::new(ECAM, 1 << 20), 0x1234, 0x11e8).unwrap();
        let window = Range::new(0x1008_0000, 0x40_0000);
        let bar = enable_bar0(&bus, f, window).unwrap();
        assert_eq!(
            bar,
            Bar {
                base: 0x1010_0000,
                size: 1 << 20,
                assigned: true
            }
        );
        assert_eq!(bus.word(f.config + BAR0), 0x1010_0000);
        assert_eq!(
            bus.word(f.config + COMMAND),
            COMMAND_MEMORY | COMMAND_BUS_MASTER
        );
    }

    #[test]
    fn an_assigned_bar_is_kept_only_inside_the_window() {
        let bus = FakeBus::new(0x1020_0000, 1 << 20);
        let f = find(&bus, Range::new(ECAM, 1 << 20), 0x1234, 0x11e8).unwrap();
        assert_eq!(
            enable_bar0(&bus, f, WINDOW).unwrap(),
            Bar {
                base: 0x1020_0000,
                size: 1 << 20,
                assigned: false
            }
        );
        assert_eq!(bus.word(f.config + BAR0), 0x1020_0000);
        let outside = Range::new(0x2000_0000, 0x100_0000);
        assert_eq!(
            enable_bar0(&bus, f, outside),
            Err(BarError::OutsideWindow(0x1020_0000))
        );
        let small = FakeBus::new(0, 1 << 20);
        assert_eq!(
            enable_bar0(&small, f, Range::new(0x1000_0000, 0x8_0000)),
            Err(BarError::NoRoom { size: 1 << 20 })
        );
        let bar64 = FakeBus::new(0b100, 1 << 20);
        assert_eq!(
            enable_bar0(&bar64, f, WINDOW),
            Err(BarError::NotMem32(0b100))
        );
    }
}
