//! Enumeration and BAR assignment.

use super::config::*;
use crate::board::PciWindow;
use core::fmt;
use heapless::Vec;
use iommu_core::{Bdf, PhysAddr, StreamId};

/// Most functions recorded.
pub const MAX_FUNCTIONS: usize = 32;

/// Granularity of a bridge's memory window (PCI-to-PCI Bridge Architecture Specification 1.2
/// §3.2.5.8: base and limit hold address bits 31:20).
const BRIDGE_WINDOW_ALIGN: u64 = 1 << 20;

/// Smallest alignment given to a memory BAR, so that no two devices share a page and each BAR
/// can be mapped on its own.
const MIN_BAR_ALIGN: u64 = 4096;

/// What a BAR decodes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BarKind {
    /// 32-bit memory space.
    Mem32 {
        /// Reads have no side effects.
        prefetchable: bool,
    },
    /// 64-bit memory space (the BAR and the next one).
    Mem64 {
        /// Reads have no side effects.
        prefetchable: bool,
    },
    /// I/O space: sized but not assigned (the daemon decodes no I/O).
    Io,
}

/// One base address register after assignment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Bar {
    /// BAR number (0..=5).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// The PCI bus address programmed into it (memory BARs only).
    pub pci_address: Option<u64>,
    /// Where the CPU reaches it (memory BARs only).
    pub cpu_address: Option<PhysAddr>,
}

impl fmt::Display for Bar {
    /// `bar0=0x0000000010000000+0x100000` (memory) or `bar1=io+0x100` (unassigned I/O).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cpu_address {
            Some(cpu) => write!(f, "bar{}={}+{:#x}", self.index, cpu, self.size),
            None => write!(f, "bar{}=io+{:#x}", self.index, self.size),
        }
    }
}

/// What kind of bus a bridge leads to, which decides the requester ID DMA from behind it
/// carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BridgeType {
    /// A PCI Express port (root, switch, or PCI-to-PCIe bridge): its secondary bus is PCI
    /// Express and every function keeps its own requester ID.
    PciePort,
    /// A PCI Express to PCI bridge: it takes ownership of transactions from its conventional
    /// secondary bus and issues them with requester ID (secondary bus, 0, 0) (PCI Express to
    /// PCI/PCI-X Bridge Specification 1.0 §2.3).
    PcieToPci,
    /// A conventional PCI-to-PCI bridge: DMA from behind it carries the bridge's own requester
    /// ID.
    Conventional,
}

/// Header layout of a function.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FunctionKind {
    /// Type 0: an endpoint (or the host bridge itself).
    Endpoint,
    /// Type 1: a PCI-to-PCI bridge and the buses behind it.
    Bridge {
        /// Bus directly behind it.
        secondary: u8,
        /// Highest bus behind it.
        subordinate: u8,
        /// The bus it leads to.
        bridge_type: BridgeType,
    },
    /// Another layout (CardBus): recorded, not configured.
    Other(u8),
}

/// One function found by enumeration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Class code: base class (23:16), subclass (15:8), programming interface (7:0).
    pub class: u32,
    /// Revision ID.
    pub revision: u8,
    /// Header layout.
    pub kind: FunctionKind,
    /// Its BARs (memory BARs assigned; a 64-bit BAR occupies the slot of its low half).
    pub bars: [Option<Bar>; 6],
    /// The bridge it sits behind, if any.
    pub upstream: Option<Bdf>,
    /// The requester ID its DMA carries when it reaches the host bridge: its own, unless a
    /// bridge above it takes ownership of its transactions (see [`BridgeType`]). Functions with
    /// the same alias cannot be told apart by the IOMMU.
    pub dma_alias: Bdf,
    /// The StreamID its DMA carries (from `dma_alias`), or `None` when it is not behind the SMMU.
    pub sid: Option<StreamId>,
}

impl PciFunction {
    /// Its memory BARs.
    pub fn memory_bars(&self) -> impl Iterator<Item = &Bar> {
        self.bars
            .iter()
            .flatten()
            .filter(|b| b.cpu_address.is_some())
    }
}

impl fmt::Display for PciFunction {
    /// `bdf=00:01.0 vendor=0x1234 device=0x11e8 class=0x00ff00 bar0=...+0x100000 sid=0x8`; a
    /// function outside the SMMU shows `sid=none (not behind the SMMU)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bdf={} vendor={:#06x} device={:#06x} class={:#08x}",
            self.bdf, self.vendor_id, self.device_id, self.class
        )?;
        if let FunctionKind::Bridge {
            secondary,
            subordinate,
            bridge_type,
        } = self.kind
        {
            let t = match bridge_type {
                BridgeType::PciePort => "pcie-port",
                BridgeType::PcieToPci => "pcie-to-pci",
                BridgeType::Conventional => "pci-to-pci",
            };
            write!(
                f,
                " bridge={secondary:02x}..{subordinate:02x} bridge_type={t}"
            )?;
        }
        for bar in self.bars.iter().flatten() {
            write!(f, " {bar}")?;
        }
        if let Some(up) = self.upstream {
            write!(f, " upstream={up}")?;
        }
        if self.dma_alias != self.bdf {
            write!(f, " dma_alias={}", self.dma_alias)?;
        }
        match self.sid {
            Some(sid) => write!(f, " sid={sid}"),
            None => write!(f, " sid=none (not behind the SMMU)"),
        }
    }
}

/// Enumeration or configuration failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PciError {
    /// A memory BAR does not fit in what is left of the 32-bit window.
    BarDoesNotFit {
        /// The function.
        bdf: Bdf,
        /// The BAR number.
        bar: u8,
        /// Its size.
        size: u64,
    },
    /// A BAR reports a size that is not a power of two or a reserved type.
    BadBar {
        /// The function.
        bdf: Bdf,
        /// The BAR number.
        bar: u8,
        /// The value read back after writing all ones.
        probe: u32,
    },
    /// A bridge needs a bus number beyond `bus-range`.
    OutOfBusNumbers {
        /// The bridge.
        bridge: Bdf,
    },
    /// More than [`MAX_FUNCTIONS`] functions.
    TooManyFunctions,
    /// No function with this address was enumerated.
    UnknownFunction(Bdf),
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BarDoesNotFit { bdf, bar, size } => {
                write!(
                    f,
                    "PCI {bdf} BAR{bar} of {size:#x} bytes does not fit in the 32-bit window"
                )
            }
            Self::BadBar { bdf, bar, probe } => {
                write!(
                    f,
                    "PCI {bdf} BAR{bar} reads back {probe:#010x} when sized: not a valid BAR"
                )
            }
            Self::OutOfBusNumbers { bridge } => {
                write!(f, "PCI bridge {bridge} needs a bus number beyond bus-range")
            }
            Self::TooManyFunctions => write!(f, "more than {MAX_FUNCTIONS} PCI functions"),
            Self::UnknownFunction(bdf) => write!(f, "no PCI function {bdf} was enumerated"),
        }
    }
}

/// Hands out PCI bus addresses from the window, upwards.
struct WindowAllocator {
    window: PciWindow,
    next: u64,
}

impl WindowAllocator {
    fn end(&self) -> u64 {
        self.window.pci_base + self.window.size
    }

    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let start = self.next.checked_next_multiple_of(align)?;
        let end = start.checked_add(size)?;
        (end <= self.end()).then(|| {
            self.next = end;
            start
        })
    }

    /// Moves the cursor to the next multiple of `align` (at most to the window's end).
    fn align(&mut self, align: u64) {
        self.next = self
            .next
            .checked_next_multiple_of(align)
            .unwrap_or(u64::MAX)
            .min(self.end());
    }
}

/// The enumerated PCI hierarchy and the configuration access to change it.
#[derive(Debug)]
pub struct PciBus<C: ConfigSpace> {
    config: C,
    functions: Vec<PciFunction, MAX_FUNCTIONS>,
}

/// Enumerates the hierarchy below bus `bus_start` and assigns memory BARs from `window`.
///
/// Memory decoding is enabled on every function with a memory BAR and on bridges with an open
/// window; I/O decoding and bus mastering are disabled everywhere. `sid_for` gives the StreamID
/// of a requester ID (from the device tree's `iommu-map`).
///
/// # Errors
/// A [`PciError`] when a BAR does not fit or is malformed, bus numbers run out, or there are
/// too many functions.
pub fn enumerate<C: ConfigSpace>(
    config: C,
    window: PciWindow,
    bus_start: u8,
    bus_end: u8,
    sid_for: &dyn Fn(Bdf) -> Option<StreamId>,
) -> Result<PciBus<C>, PciError> {
    let mut walker = Walker {
        bus: PciBus {
            config,
            functions: Vec::new(),
        },
        alloc: WindowAllocator {
            window,
            next: window.pci_base,
        },
        last_bus: bus_start,
        bus_end,
        sid_for,
    };
    walker.scan_bus(bus_start, None)?;
    Ok(walker.bus)
}

struct Walker<'s, C: ConfigSpace> {
    bus: PciBus<C>,
    alloc: WindowAllocator,
    /// Highest bus number given out so far.
    last_bus: u8,
    bus_end: u8,
    sid_for: &'s dyn Fn(Bdf) -> Option<StreamId>,
}

impl<C: ConfigSpace> Walker<'_, C> {
    fn scan_bus(&mut self, bus: u8, upstream: Option<Bdf>) -> Result<(), PciError> {
        for dev in 0..32 {
            let first = Bdf { bus, dev, func: 0 };
            if self.bus.config.read16(first, VENDOR_ID) == 0xffff {
                continue;
            }
            let multi = self.bus.config.read8(first, HEADER_DWORD + 2) & HEADER_MULTI_FUNCTION != 0;
            for func in 0..if multi { 8 } else { 1 } {
                let bdf = Bdf { bus, dev, func };
                if self.bus.config.read16(bdf, VENDOR_ID) != 0xffff {
                    self.probe(bdf, upstream)?;
                }
            }
        }
        Ok(())
    }

    fn probe(&mut self, bdf: Bdf, upstream: Option<Bdf>) -> Result<(), PciError> {
        let cfg = &mut self.bus.config;
        let ids = cfg.read32(bdf, VENDOR_ID);
        let class_rev = cfg.read32(bdf, CLASS_REVISION);
        let header = cfg.read8(bdf, HEADER_DWORD + 2) & !HEADER_MULTI_FUNCTION;
        // No decoding and no DMA while BARs change (PCI 3.0 §6.2.5.1 sizing procedure).
        let command = cfg.read16(bdf, COMMAND);
        cfg.write16(
            bdf,
            COMMAND,
            command & !(COMMAND_IO | COMMAND_MEM | COMMAND_BUS_MASTER),
        );
        let dma_alias = self.dma_alias(bdf, upstream);
        let mut function = PciFunction {
            bdf,
            vendor_id: ids as u16,
            device_id: (ids >> 16) as u16,
            class: class_rev >> 8,
            revision: class_rev as u8,
            kind: FunctionKind::Other(header),
            bars: [None; 6],
            upstream,
            dma_alias,
            sid: (self.sid_for)(dma_alias),
        };
        let mut decode_memory = false;
        match header {
            HEADER_TYPE_ENDPOINT => {
                function.kind = FunctionKind::Endpoint;
                decode_memory = self.assign_bars(&mut function, 6)?;
            }
            HEADER_TYPE_BRIDGE => {
                decode_memory = self.assign_bars(&mut function, 2)?;
                let window_open = self.configure_bridge(function)?;
                self.enable_memory(bdf, decode_memory || window_open);
                return Ok(());
            }
            _ => {}
        }
        self.push(function)?;
        self.enable_memory(bdf, decode_memory);
        Ok(())
    }

    fn push(&mut self, function: PciFunction) -> Result<(), PciError> {
        self.bus
            .functions
            .push(function)
            .map_err(|_| PciError::TooManyFunctions)
    }

    fn enable_memory(&mut self, bdf: Bdf, on: bool) {
        if on {
            let command = self.bus.config.read16(bdf, COMMAND);
            self.bus.config.write16(bdf, COMMAND, command | COMMAND_MEM);
        }
    }

    /// Sizes and assigns the first `count` BARs (PCI 3.0 §6.2.5.1); returns whether any memory
    /// BAR was assigned.
    fn assign_bars(&mut self, function: &mut PciFunction, count: u8) -> Result<bool, PciError> {
        let bdf = function.bdf;
        let cfg = &mut self.bus.config;
        let mut any_memory = false;
        let mut index = 0;
        while index < count {
            let offset = BAR0 + u16::from(index) * 4;
            let original = cfg.read32(bdf, offset);
            cfg.write32(bdf, offset, u32::MAX);
            let probe = cfg.read32(bdf, offset);
            let slot = index;
            index += 1;
            if probe == 0 {
                cfg.write32(bdf, offset, original);
                continue; // Not implemented.
            }
            // Bit 0: I/O space. Memory: bits 2:1 type (00: 32-bit, 10: 64-bit), bit 3
            // prefetchable, address bits from bit 4.
            if probe & 1 == 1 {
                cfg.write32(bdf, offset, original);
                let mask = probe & !0x3;
                let mask = if mask >> 16 == 0 {
                    mask | 0xffff_0000
                } else {
                    mask
                };
                function.bars[usize::from(slot)] = Some(Bar {
                    index: slot,
                    kind: BarKind::Io,
                    size: u64::from((!mask).wrapping_add(1)),
                    pci_address: None,
                    cpu_address: None,
                });
                continue;
            }
            let prefetchable = probe & 0x8 != 0;
            let (kind, mask) = match (probe >> 1) & 0b11 {
                0b00 => (
                    BarKind::Mem32 { prefetchable },
                    0xffff_ffff_0000_0000 | u64::from(probe & !0xf),
                ),
                0b10 if index < count => {
                    let high = offset + 4;
                    cfg.write32(bdf, high, u32::MAX);
                    let upper = cfg.read32(bdf, high);
                    index += 1;
                    (
                        BarKind::Mem64 { prefetchable },
                        (u64::from(upper) << 32) | u64::from(probe & !0xf),
                    )
                }
                _ => {
                    return Err(PciError::BadBar {
                        bdf,
                        bar: slot,
                        probe,
                    })
                }
            };
            let size = (!mask).wrapping_add(1);
            if !size.is_power_of_two() {
                return Err(PciError::BadBar {
                    bdf,
                    bar: slot,
                    probe,
                });
            }
            let oversize = PciError::BarDoesNotFit {
                bdf,
                bar: slot,
                size,
            };
            let pci = self
                .alloc
                .alloc(size, size.max(MIN_BAR_ALIGN))
                .ok_or(oversize)?;
            let cpu = self.alloc.window.cpu_address(pci).ok_or(oversize)?;
            cfg.write32(bdf, offset, pci as u32);
            if let BarKind::Mem64 { .. } = kind {
                cfg.write32(bdf, offset + 4, (pci >> 32) as u32);
            }
            function.bars[usize::from(slot)] = Some(Bar {
                index: slot,
                kind,
                size,
                pci_address: Some(pci),
                cpu_address: Some(cpu),
            });
            any_memory = true;
        }
        Ok(any_memory)
    }

    /// The requester ID DMA from `bdf` carries at the host bridge: walking up from its bus,
    /// each conventional bus hands the transaction to the bridge above it, which re-issues it
    /// under its own ID ((secondary, 0, 0) for a PCIe-to-PCI bridge, its own BDF for a PCI
    /// bridge). This is the alias rule QEMU and Linux (`pci_for_each_dma_alias`) apply.
    fn dma_alias(&self, bdf: Bdf, upstream: Option<Bdf>) -> Bdf {
        let mut alias = bdf;
        let mut next = upstream;
        while let Some(bridge) = next.and_then(|b| self.bus.function(b)) {
            if let FunctionKind::Bridge {
                secondary,
                bridge_type,
                ..
            } = bridge.kind
            {
                match bridge_type {
                    BridgeType::PciePort => {}
                    BridgeType::PcieToPci => {
                        alias = Bdf {
                            bus: secondary,
                            dev: 0,
                            func: 0,
                        }
                    }
                    BridgeType::Conventional => alias = bridge.bdf,
                }
            }
            next = bridge.upstream;
        }
        alias
    }

    /// The bridge's type from its PCI Express capability, if it has one.
    fn bridge_type(&self, bridge: Bdf) -> BridgeType {
        let cfg = &self.bus.config;
        if cfg.read16(bridge, STATUS) & STATUS_CAP_LIST == 0 {
            return BridgeType::Conventional;
        }
        let mut at = u16::from(cfg.read8(bridge, CAPABILITIES_POINTER) & 0xfc);
        // At most 48 capabilities fit in the 192 bytes after the header.
        for _ in 0..48 {
            if at < 0x40 {
                break;
            }
            if cfg.read8(bridge, at) == CAP_ID_PCIE {
                let port_type = (cfg.read16(bridge, at + PCIE_CAPABILITIES) >> 4) as u8 & 0xf;
                return match port_type {
                    PCIE_TYPE_PCIE_TO_PCI => BridgeType::PcieToPci,
                    PCIE_TYPE_ROOT_PORT
                    | PCIE_TYPE_UPSTREAM_PORT
                    | PCIE_TYPE_DOWNSTREAM_PORT
                    | PCIE_TYPE_PCI_TO_PCIE => BridgeType::PciePort,
                    _ => BridgeType::Conventional,
                };
            }
            at = u16::from(cfg.read8(bridge, at + 1) & 0xfc);
        }
        BridgeType::Conventional
    }

    /// Records the bridge, numbers its buses, scans behind it and opens its memory window over
    /// what the devices behind it got (PCI-to-PCI Bridge Architecture Specification 1.2
    /// §3.2.5). Returns whether the window is open.
    fn configure_bridge(&mut self, mut function: PciFunction) -> Result<bool, PciError> {
        let bridge = function.bdf;
        if self.last_bus >= self.bus_end {
            return Err(PciError::OutOfBusNumbers { bridge });
        }
        self.last_bus += 1;
        let secondary = self.last_bus;
        let bridge_type = self.bridge_type(bridge);
        // Recorded before its children (the list reads top-down, and their alias needs it).
        function.kind = FunctionKind::Bridge {
            secondary,
            subordinate: self.bus_end,
            bridge_type,
        };
        let index = self.bus.functions.len();
        self.push(function)?;
        let latency = self.bus.config.read32(bridge, BRIDGE_BUS_NUMBERS) & 0xff00_0000;
        let numbers = |sub: u8| {
            latency | u32::from(bridge.bus) | (u32::from(secondary) << 8) | (u32::from(sub) << 16)
        };
        // Forward every bus up to bus_end while scanning; narrow it afterwards.
        self.bus
            .config
            .write32(bridge, BRIDGE_BUS_NUMBERS, numbers(self.bus_end));
        // I/O and prefetchable windows closed (base above limit).
        self.bus
            .config
            .write16(bridge, BRIDGE_IO_BASE_LIMIT, 0x00f0);
        self.bus.config.write32(bridge, BRIDGE_IO_UPPER, 0);
        self.bus
            .config
            .write32(bridge, BRIDGE_PREF_BASE_LIMIT, 0x0000_fff0);
        self.bus.config.write32(bridge, BRIDGE_PREF_BASE_UPPER, 0);
        self.bus.config.write32(bridge, BRIDGE_PREF_LIMIT_UPPER, 0);

        self.alloc.align(BRIDGE_WINDOW_ALIGN);
        let start = self.alloc.next;
        self.scan_bus(secondary, Some(bridge))?;
        self.alloc.align(BRIDGE_WINDOW_ALIGN);
        let end = self.alloc.next;

        let subordinate = self.last_bus;
        self.bus
            .config
            .write32(bridge, BRIDGE_BUS_NUMBERS, numbers(subordinate));
        if let Some(f) = self.bus.functions.get_mut(index) {
            f.kind = FunctionKind::Bridge {
                secondary,
                subordinate,
                bridge_type,
            };
        }
        let open = end > start;
        let base_limit = if open {
            let base = ((start >> 16) as u32) & 0xfff0;
            let limit = (((end - 1) >> 16) as u32) & 0xfff0;
            base | (limit << 16)
        } else {
            0x0000_fff0
        };
        self.bus
            .config
            .write32(bridge, BRIDGE_MEMORY_BASE_LIMIT, base_limit);
        Ok(open)
    }
}

impl<C: ConfigSpace> PciBus<C> {
    /// Every function found, bridges before the functions behind them.
    pub fn functions(&self) -> &[PciFunction] {
        &self.functions
    }

    /// The function at `bdf`.
    pub fn function(&self, bdf: Bdf) -> Option<&PciFunction> {
        self.functions.iter().find(|f| f.bdf == bdf)
    }

    /// The functions with this vendor and device ID.
    pub fn find(&self, vendor_id: u16, device_id: u16) -> impl Iterator<Item = &PciFunction> {
        self.functions
            .iter()
            .filter(move |f| f.vendor_id == vendor_id && f.device_id == device_id)
    }

    /// Decides every function's StreamID again with `sid_of`, which sees the whole function
    /// (its own address and its DMA alias): for a rule that enumeration's requester-ID lookup
    /// cannot express, such as a user's statement about one function behind a bridge.
    pub fn resolve_sids(&mut self, sid_of: &dyn Fn(&PciFunction) -> Option<StreamId>) {
        for f in self.functions.iter_mut() {
            f.sid = sid_of(f);
        }
    }

    /// The configuration access (for drivers that need more than enumeration did).
    pub fn config(&mut self) -> &mut C {
        &mut self.config
    }

    /// Lets `bdf` issue DMA: sets COMMAND.BME on it and on every bridge above it (a bridge only
    /// forwards upstream transactions with its own BME set, PCI-to-PCI Bridge Architecture
    /// Specification 1.2 §3.2.2.1). Only call this once the SMMU has a decision (an STE) for the
    /// device's StreamID.
    ///
    /// # Errors
    /// [`PciError::UnknownFunction`] when `bdf` was not enumerated.
    pub fn enable_bus_master(&mut self, bdf: Bdf) -> Result<(), PciError> {
        let mut next = Some(
            self.function(bdf)
                .ok_or(PciError::UnknownFunction(bdf))?
                .bdf,
        );
        while let Some(at) = next {
            let command = self.config.read16(at, COMMAND);
            self.config
                .write16(at, COMMAND, command | COMMAND_BUS_MASTER);
            next = self.function(at).and_then(|f| f.upstream);
        }
        Ok(())
    }

    /// Stops `bdf` issuing DMA (clears its COMMAND.BME; bridges are left as they are, since other
    /// devices may sit behind them).
    ///
    /// # Errors
    /// [`PciError::UnknownFunction`] when `bdf` was not enumerated.
    pub fn disable_bus_master(&mut self, bdf: Bdf) -> Result<(), PciError> {
        self.function(bdf).ok_or(PciError::UnknownFunction(bdf))?;
        let command = self.config.read16(bdf, COMMAND);
        self.config
            .write16(bdf, COMMAND, command & !COMMAND_BUS_MASTER);
        Ok(())
    }

    /// Whether `bdf` has COMMAND.BME set right now.
    pub fn is_bus_master(&self, bdf: Bdf) -> bool {
        self.config.read16(bdf, COMMAND) & COMMAND_BUS_MASTER != 0
    }
}
