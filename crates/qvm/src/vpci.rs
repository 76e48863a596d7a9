//! The guest's PCI bus 0: an emulated ECAM (PCIe Base Specification §7.2.2) in which each
//! pass-through function appears as guest device 1, 2, ... function 0, with a type 0 header
//! (PCI Local Bus Specification 3.0 §6.1) that the VMM filters:
//!
//! * identity (vendor, device, revision, class, subsystem) is read from the real function;
//! * the BARs are virtual: the guest sizes them and places them anywhere aligned inside
//!   [`abi::PCI_MMIO_BASE`]..+[`abi::PCI_MMIO_SIZE`]; I/O BARs are hidden;
//! * COMMAND: only Memory Space, Bus Master and Interrupt Disable reach the device, I/O Space
//!   never;
//! * capabilities are hidden (STATUS.Capabilities List reads 0, the pointer 0), the expansion
//!   ROM reads 0, every other write is ignored.
//!
//! Empty slots read all-ones (a configuration read nobody claims completes with all-ones,
//! PCIe Base §2.3.2), which is how a scan tells them apart.

use crate::abi;
use crate::gpa::Gpa;
use core::fmt;
use iommu_core::{Bdf, PhysAddr, PAGE_SIZE};

/// Pass-through functions on the guest's bus.
pub const MAX_FUNCTIONS: usize = 2;
/// BARs of a type 0 header (§6.2.5.1: offsets 0x10..=0x24).
pub const BARS: usize = 6;

/// Type 0 header offsets (PCI Local Bus Specification 3.0 §6.1, figure 6-1).
pub mod reg {
    /// Vendor ID (15:0), Device ID (31:16).
    pub const ID: u16 = 0x00;
    /// Command (15:0), Status (31:16).
    pub const COMMAND: u16 = 0x04;
    /// Revision ID (7:0), Class Code (31:8).
    pub const CLASS_REV: u16 = 0x08;
    /// Cache Line Size, Latency Timer, Header Type (23:16), BIST.
    pub const HEADER: u16 = 0x0c;
    /// Base Address Register 0; BAR n is at 0x10 + 4n.
    pub const BAR0: u16 = 0x10;
    /// Subsystem Vendor ID (15:0), Subsystem ID (31:16).
    pub const SUBSYSTEM: u16 = 0x2c;
    /// Expansion ROM base address.
    pub const ROM: u16 = 0x30;
    /// Capabilities Pointer (7:0).
    pub const CAP_PTR: u16 = 0x34;
}

/// Command register bits (PCI Local Bus Specification 3.0 §6.2.2).
pub mod command {
    /// Bit 0: I/O Space enable.
    pub const IO: u16 = 1 << 0;
    /// Bit 1: Memory Space enable.
    pub const MEMORY: u16 = 1 << 1;
    /// Bit 2: Bus Master enable.
    pub const BUS_MASTER: u16 = 1 << 2;
    /// Bit 10: Interrupt Disable (INTx).
    pub const INTX_DISABLE: u16 = 1 << 10;
    /// What the guest may change on the real device.
    pub const PASSED: u16 = MEMORY | BUS_MASTER | INTX_DISABLE;
}

/// Status register bit 4 (§6.2.3): Capabilities List.
const STATUS_CAP_LIST: u32 = 1 << 4;
/// Header Type bit 7 (§6.2.1): multi-function device.
const HEADER_MULTI_FUNCTION: u32 = 1 << 23;
/// Header Type bits 6:0 = 0: a type 0 (endpoint) header.
const HEADER_TYPE_MASK: u32 = 0x7f << 16;

/// Memory BAR low bits (§6.2.5.1): bit 0 = 0 memory, bits 2:1 type (00 32-bit, 10 64-bit),
/// bit 3 prefetchable.
const BAR_TYPE_64: u32 = 0b10 << 1;
const BAR_PREFETCH: u32 = 1 << 3;

/// What a real BAR is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BarKind {
    /// A 32-bit memory BAR.
    Mem32,
    /// A 64-bit memory BAR (this BAR and the next form the address).
    Mem64,
    /// An I/O BAR (hidden from the guest).
    Io,
}

/// One BAR of the real function: where its registers are in host-physical memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostBar {
    /// Its kind.
    pub kind: BarKind,
    /// Host-physical base.
    pub hpa: PhysAddr,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// Prefetchable.
    pub prefetchable: bool,
}

/// The real function behind a guest's PCI device, as the host gives it.
pub trait HostFunction {
    /// Reads the 32-bit configuration register at `offset` (a multiple of 4, below 0x1000).
    fn config_read32(&mut self, offset: u16) -> u32;
    /// Writes the 16-bit configuration register at `offset` (a multiple of 2).
    fn config_write16(&mut self, offset: u16, value: u16);
    /// BAR `index` (0..=5): `None` when it is not implemented or is the upper half of a
    /// 64-bit BAR.
    fn bar(&self, index: u8) -> Option<HostBar>;
}

/// Why a function cannot be passed through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VpciError {
    /// More than [`MAX_FUNCTIONS`].
    TooManyFunctions,
    /// Its header is not type 0 (a bridge).
    NotEndpoint {
        /// The function.
        bdf: Bdf,
        /// Its header type.
        header_type: u8,
    },
    /// A memory BAR smaller than a page, not a power of two, or not page-aligned on the host:
    /// the CPU stage 2 could not give it to the guest without neighbours.
    BarShape {
        /// The function.
        bdf: Bdf,
        /// The BAR.
        bar: u8,
        /// Its size.
        size: u64,
    },
    /// The BARs do not fit in the guest's PCI memory window.
    WindowFull {
        /// The function.
        bdf: Bdf,
        /// The BAR that did not fit.
        bar: u8,
    },
}

impl fmt::Display for VpciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyFunctions => {
                write!(f, "more than {MAX_FUNCTIONS} pass-through functions")
            }
            Self::NotEndpoint { bdf, header_type } => write!(
                f,
                "pci {bdf}: header type {header_type:#x} is not an endpoint (type 0)"
            ),
            Self::BarShape { bdf, bar, size } => write!(
                f,
                "pci {bdf}: BAR{bar} of {size:#x} bytes is not a power of two of at least 4 KiB \
                 at a 4 KiB-aligned host address"
            ),
            Self::WindowFull { bdf, bar } => write!(
                f,
                "pci {bdf}: BAR{bar} does not fit in the guest's PCI memory window"
            ),
        }
    }
}

/// A change the VMM must bring the CPU stage 2 in line with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BarEvent {
    /// The guest moved a BAR.
    Moved {
        /// Guest device number (1..).
        device: u8,
        /// The BAR (the lower one of a 64-bit pair).
        bar: u8,
        /// Where it was.
        old: Gpa,
        /// Where it is.
        new: Gpa,
    },
    /// The guest turned Memory Space decoding on or off.
    Memory {
        /// Guest device number.
        device: u8,
        /// On.
        on: bool,
    },
    /// A BAR write the VMM refused (unaligned or outside the window); the BAR is unchanged.
    Refused {
        /// Guest device number.
        device: u8,
        /// The BAR register written.
        bar: u8,
        /// The value.
        value: u32,
    },
}

/// One virtual BAR.
#[derive(Clone, Copy, Debug)]
struct VBar {
    host: HostBar,
    /// Guest-physical address.
    gpa: u64,
    /// The guest wrote all-ones to the low / high register and reads the size mask.
    sizing_lo: bool,
    sizing_hi: bool,
}

/// A BAR as the guest currently sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestBar {
    /// Guest device number.
    pub device: u8,
    /// BAR index.
    pub bar: u8,
    /// Guest-physical base.
    pub gpa: Gpa,
    /// The host BAR.
    pub host: HostBar,
}

/// A pass-through function on the guest's bus.
#[derive(Debug)]
struct Function<H> {
    host: H,
    host_bdf: Bdf,
    /// Index = BAR register; the upper half of a 64-bit BAR and hidden BARs are `None`.
    bars: [Option<VBar>; BARS],
    /// The guest's view of COMMAND (only [`command::PASSED`] bits).
    command: u16,
}

/// The guest's bus 0.
#[derive(Debug)]
pub struct Vpci<H> {
    functions: heapless::Vec<Function<H>, MAX_FUNCTIONS>,
    /// Next free address in the window for pre-assignment.
    next_free: u64,
}

impl<H: HostFunction> Default for Vpci<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: HostFunction> Vpci<H> {
    /// An empty bus.
    pub const fn new() -> Self {
        Self {
            functions: heapless::Vec::new(),
            next_free: abi::PCI_MMIO_BASE,
        }
    }

    /// Puts the real function `host_bdf` on the bus as the next guest device (1, 2, ...) and
    /// pre-assigns its memory BARs aligned addresses in the window, as firmware would. Its
    /// COMMAND starts with everything off (I/O, memory, bus master).
    ///
    /// # Errors
    /// [`VpciError`].
    pub fn add(&mut self, host_bdf: Bdf, mut host: H) -> Result<Bdf, VpciError> {
        if self.functions.is_full() {
            return Err(VpciError::TooManyFunctions);
        }
        let header = host.config_read32(reg::HEADER);
        let header_type = ((header & HEADER_TYPE_MASK) >> 16) as u8;
        if header_type != 0 {
            return Err(VpciError::NotEndpoint {
                bdf: host_bdf,
                header_type,
            });
        }
        let mut bars = [None; BARS];
        let mut next = self.next_free;
        for i in 0..BARS as u8 {
            let Some(hb) = host.bar(i) else { continue };
            if hb.kind == BarKind::Io || (hb.kind == BarKind::Mem64 && usize::from(i) + 1 >= BARS) {
                continue;
            }
            if !hb.size.is_power_of_two() || hb.size < PAGE_SIZE || !hb.hpa.is_aligned(PAGE_SIZE) {
                return Err(VpciError::BarShape {
                    bdf: host_bdf,
                    bar: i,
                    size: hb.size,
                });
            }
            let at = next
                .checked_add(hb.size - 1)
                .map(|v| v & !(hb.size - 1))
                .filter(|a| in_window(*a, hb.size))
                .ok_or(VpciError::WindowFull {
                    bdf: host_bdf,
                    bar: i,
                })?;
            next = at + hb.size;
            if let Some(slot) = bars.get_mut(usize::from(i)) {
                *slot = Some(VBar {
                    host: hb,
                    gpa: at,
                    sizing_lo: false,
                    sizing_hi: false,
                });
            }
        }
        // Everything off on the real device until the guest asks.
        host.config_write16(reg::COMMAND, 0);
        let device = self.functions.len() as u8 + 1;
        self.functions
            .push(Function {
                host,
                host_bdf,
                bars,
                command: 0,
            })
            .map_err(|_| VpciError::TooManyFunctions)?;
        self.next_free = next;
        Ok(Bdf {
            bus: 0,
            dev: device,
            func: 0,
        })
    }

    /// The host function behind guest device `device`.
    pub fn host_bdf(&self, device: u8) -> Option<Bdf> {
        self.function(device).map(|f| f.host_bdf)
    }

    /// Every memory BAR the guest sees, with whether its function decodes memory now.
    pub fn bars(&self) -> impl Iterator<Item = (GuestBar, bool)> + '_ {
        self.functions.iter().enumerate().flat_map(|(i, f)| {
            let on = f.command & command::MEMORY != 0;
            f.bars.iter().enumerate().filter_map(move |(b, v)| {
                v.map(|v| {
                    (
                        GuestBar {
                            device: i as u8 + 1,
                            bar: b as u8,
                            gpa: Gpa(v.gpa),
                            host: v.host,
                        },
                        on,
                    )
                })
            })
        })
    }

    /// The host functions, in guest device order.
    pub fn hosts_mut(&mut self) -> impl Iterator<Item = &mut H> {
        self.functions.iter_mut().map(|f| &mut f.host)
    }

    /// The host functions, in the order they were added.
    pub fn into_hosts(self) -> heapless::Vec<H, MAX_FUNCTIONS> {
        self.functions.into_iter().map(|f| f.host).collect()
    }

    fn function(&self, device: u8) -> Option<&Function<H>> {
        self.functions.get(usize::from(device).checked_sub(1)?)
    }

    /// A guest read of `size` bytes at `offset` in the ECAM window.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        let Some((device, regoff)) = split(offset, size) else {
            return ones(size);
        };
        let Some(f) = usize::from(device)
            .checked_sub(1)
            .and_then(|i| self.functions.get_mut(i))
        else {
            return ones(size);
        };
        let dword = f.read32(regoff & !3);
        let shift = u32::from(regoff & 3) * 8;
        let v = u64::from(dword >> shift);
        match size {
            1 => v & 0xff,
            2 => v & 0xffff,
            _ => v & 0xffff_ffff,
        }
    }

    /// A guest write of `size` bytes at `offset` in the ECAM window; what the VMM must do
    /// about it, if anything.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> Option<BarEvent> {
        let (device, regoff) = split(offset, size)?;
        let f = self
            .functions
            .get_mut(usize::from(device).checked_sub(1)?)?;
        f.write(device, regoff, size, value as u32)
    }
}

/// Whether `[a, a + size)` lies in the PCI memory window.
fn in_window(a: u64, size: u64) -> bool {
    a >= abi::PCI_MMIO_BASE
        && a.checked_add(size)
            .is_some_and(|e| e <= abi::PCI_MMIO_BASE + abi::PCI_MMIO_SIZE)
}

/// All-ones of `size` bytes.
const fn ones(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// ECAM offset (PCIe Base §7.2.2: bus 27:20, device 19:15, function 14:12, register 11:0) to
/// (device, register) for function 0 of bus 0; `None` for another function, a misaligned
/// access or a size other than 1, 2, 4.
fn split(offset: u64, size: u8) -> Option<(u8, u16)> {
    if offset >= abi::ECAM_SIZE
        || !matches!(size, 1 | 2 | 4)
        || !offset.is_multiple_of(u64::from(size))
    {
        return None;
    }
    let device = ((offset >> 15) & 0x1f) as u8;
    let function = (offset >> 12) & 7;
    if function != 0 {
        return None;
    }
    Some((device, (offset & 0xfff) as u16))
}

impl<H: HostFunction> Function<H> {
    fn read32(&mut self, off: u16) -> u32 {
        match off {
            reg::ID | reg::CLASS_REV | reg::SUBSYSTEM => self.host.config_read32(off),
            reg::COMMAND => {
                let status = self.host.config_read32(reg::COMMAND) & 0xffff_0000;
                (status & !(STATUS_CAP_LIST << 16)) | u32::from(self.command)
            }
            // Header type only, single-function; cache line, latency and BIST read 0.
            reg::HEADER => {
                self.host.config_read32(reg::HEADER) & HEADER_TYPE_MASK & !HEADER_MULTI_FUNCTION
            }
            0x10..=0x24 => self.bar_read(usize::from((off - reg::BAR0) / 4)),
            _ => 0,
        }
    }

    fn bar_read(&self, i: usize) -> u32 {
        if let Some(Some(b)) = self.bars.get(i) {
            let flags = match b.host.kind {
                BarKind::Mem64 => BAR_TYPE_64,
                _ => 0,
            } | if b.host.prefetchable { BAR_PREFETCH } else { 0 };
            let mask = !(b.host.size - 1);
            let lo = if b.sizing_lo {
                mask as u32
            } else {
                b.gpa as u32
            };
            return (lo & !0xf) | flags;
        }
        // The upper half of a 64-bit BAR.
        if let Some(Some(b)) = i.checked_sub(1).and_then(|p| self.bars.get(p)) {
            if b.host.kind == BarKind::Mem64 {
                let mask = !(b.host.size - 1);
                return if b.sizing_hi {
                    (mask >> 32) as u32
                } else {
                    (b.gpa >> 32) as u32
                };
            }
        }
        0
    }

    fn write(&mut self, device: u8, off: u16, size: u8, value: u32) -> Option<BarEvent> {
        match (off, size) {
            // COMMAND, as a 16- or 32-bit write (the status half of a 32-bit write is ignored),
            // or its low byte.
            (reg::COMMAND, 2 | 4) | (reg::COMMAND, 1) => {
                let v = if size == 1 {
                    (self.command & 0xff00) | (value as u16 & 0xff)
                } else {
                    value as u16
                };
                self.set_command(device, v)
            }
            (0x05, 1) => {
                let v = (self.command & 0x00ff) | ((value as u16 & 0xff) << 8);
                self.set_command(device, v)
            }
            (0x10..=0x24, 4) => self.bar_write(device, usize::from((off - reg::BAR0) / 4), value),
            _ => None,
        }
    }

    fn set_command(&mut self, device: u8, v: u16) -> Option<BarEvent> {
        let new = v & command::PASSED;
        let old = self.command;
        self.command = new;
        // The real device gets the passed bits only: I/O Space stays off.
        self.host.config_write16(reg::COMMAND, new);
        ((old ^ new) & command::MEMORY != 0).then_some(BarEvent::Memory {
            device,
            on: new & command::MEMORY != 0,
        })
    }

    fn bar_write(&mut self, device: u8, i: usize, value: u32) -> Option<BarEvent> {
        let (index, high) = match self.bars.get(i) {
            Some(Some(_)) => (i, false),
            _ => match i.checked_sub(1) {
                Some(p) if matches!(self.bars.get(p), Some(Some(b)) if b.host.kind == BarKind::Mem64) => {
                    (p, true)
                }
                _ => return None,
            },
        };
        let b = self.bars.get_mut(index)?.as_mut()?;
        let mask = !(b.host.size - 1);
        let refused = BarEvent::Refused {
            device,
            bar: i as u8,
            value,
        };
        // Sizing (§6.2.5.1): all ones in the address bits.
        if !high && value | 0xf == u32::MAX {
            b.sizing_lo = true;
            return None;
        }
        if high && value == u32::MAX && b.host.kind == BarKind::Mem64 {
            b.sizing_hi = true;
            return None;
        }
        let new = if high {
            (u64::from(value) << 32) | (b.gpa & 0xffff_ffff)
        } else {
            (b.gpa & !0xffff_ffff) | u64::from(value & !0xf)
        };
        if new & !mask != 0 || !in_window(new, b.host.size) {
            // Unaligned or outside the window: refused, the BAR keeps its address. The sizing
            // read is over all the same: the guest wrote an address.
            if high {
                b.sizing_hi = false;
            } else {
                b.sizing_lo = false;
            }
            return Some(refused);
        }
        if high {
            b.sizing_hi = false;
        } else {
            b.sizing_lo = false;
        }
        let old = b.gpa;
        b.gpa = new;
        (old != new).then_some(BarEvent::Moved {
            device,
            bar: index as u8,
            old: Gpa(old),
            new: Gpa(new),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
