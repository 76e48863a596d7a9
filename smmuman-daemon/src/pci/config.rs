//! [`ConfigSpace`]: access to PCI configuration registers, and the register map enumeration
//! uses (PCI Local Bus Specification 3.0 §6.1 and §6.2; PCI-to-PCI Bridge Architecture
//! Specification 1.2 §3.2).

use iommu_core::Bdf;

/// Vendor ID (16 bits); 0xffff reads back where no function exists.
pub const VENDOR_ID: u16 = 0x00;
/// Device ID (16 bits).
pub const DEVICE_ID: u16 = 0x02;
/// Command register (16 bits).
pub const COMMAND: u16 = 0x04;
/// COMMAND.IO (bit 0): decode I/O space.
pub const COMMAND_IO: u16 = 1 << 0;
/// COMMAND.MEM (bit 1): decode memory space.
pub const COMMAND_MEM: u16 = 1 << 1;
/// COMMAND.BME (bit 2): the function may master the bus, i.e. issue DMA.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Status register (16 bits).
pub const STATUS: u16 = 0x06;
/// STATUS.CAP_LIST (bit 4): the capabilities pointer is valid.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Revision ID (bits 7:0) and class code (bits 31:8).
pub const CLASS_REVISION: u16 = 0x08;
/// Cache line size, latency timer, header type (bits 23:16), BIST.
pub const HEADER_DWORD: u16 = 0x0c;
/// Header type bit 7: the device has more than one function.
pub const HEADER_MULTI_FUNCTION: u8 = 0x80;
/// Header layout 0: an endpoint with six BARs.
pub const HEADER_TYPE_ENDPOINT: u8 = 0x00;
/// Header layout 1: a PCI-to-PCI bridge with two BARs.
pub const HEADER_TYPE_BRIDGE: u8 = 0x01;
/// First base address register (each is 32 bits; a 64-bit BAR takes two).
pub const BAR0: u16 = 0x10;
/// Capabilities pointer (bits 7:0, low two bits reserved).
pub const CAPABILITIES_POINTER: u16 = 0x34;
/// Capability ID of the PCI Express capability (PCIe Base Specification §7.5.3).
pub const CAP_ID_PCIE: u8 = 0x10;
/// PCI Express Capabilities register, at offset 2 of the capability; bits 7:4 are the
/// Device/Port Type (PCIe Base Specification §7.5.3.2).
pub const PCIE_CAPABILITIES: u16 = 0x02;
/// Device/Port Type: root port of a root complex.
pub const PCIE_TYPE_ROOT_PORT: u8 = 0x4;
/// Device/Port Type: upstream port of a switch.
pub const PCIE_TYPE_UPSTREAM_PORT: u8 = 0x5;
/// Device/Port Type: downstream port of a switch.
pub const PCIE_TYPE_DOWNSTREAM_PORT: u8 = 0x6;
/// Device/Port Type: PCI Express to PCI/PCI-X bridge.
pub const PCIE_TYPE_PCIE_TO_PCI: u8 = 0x7;
/// Device/Port Type: PCI/PCI-X to PCI Express bridge.
pub const PCIE_TYPE_PCI_TO_PCIE: u8 = 0x8;
/// Bridge: primary (7:0), secondary (15:8) and subordinate (23:16) bus numbers, secondary
/// latency timer (31:24).
pub const BRIDGE_BUS_NUMBERS: u16 = 0x18;
/// Bridge: I/O base (7:0) and limit (15:8).
pub const BRIDGE_IO_BASE_LIMIT: u16 = 0x1c;
/// Bridge: memory base (15:0) and limit (31:16); bits 15:4 of each are address bits 31:20.
pub const BRIDGE_MEMORY_BASE_LIMIT: u16 = 0x20;
/// Bridge: prefetchable memory base (15:0) and limit (31:16).
pub const BRIDGE_PREF_BASE_LIMIT: u16 = 0x24;
/// Bridge: upper 32 bits of the prefetchable base.
pub const BRIDGE_PREF_BASE_UPPER: u16 = 0x28;
/// Bridge: upper 32 bits of the prefetchable limit.
pub const BRIDGE_PREF_LIMIT_UPPER: u16 = 0x2c;
/// Bridge: upper 16 bits of the I/O base and limit.
pub const BRIDGE_IO_UPPER: u16 = 0x30;

/// Reads and writes the configuration registers of any function.
///
/// Offsets are within the function's 4 KiB space and naturally aligned. A read from a function
/// that does not exist returns all ones, as a master abort does on real hardware.
pub trait ConfigSpace {
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32);
    /// Writes the 16-bit register at `offset` without touching its neighbour (the command
    /// register's neighbour, status, has write-one-to-clear bits).
    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16);

    /// Reads the 16-bit register at `offset`.
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (self.read32(bdf, offset & !3) >> ((offset & 2) * 8)) as u16
    }

    /// Reads the 8-bit register at `offset`.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (self.read32(bdf, offset & !3) >> ((offset & 3) * 8)) as u8
    }
}
