//! QEMU's `edu` device (QEMU `docs/specs/edu.rst`, `hw/misc/edu.c`) as a DMA master.
//!
//! BAR 0 registers: 0x00 identification (0x010000ed: version 1.0), 0x80 DMA source address,
//! 0x88 DMA destination address, 0x90 DMA byte count, 0x98 DMA command (bit 0 start/busy,
//! bit 1 direction: 0 = RAM → device, 1 = device → RAM). The device's side of a transfer is its
//! 4 KiB buffer at 0x40000. QEMU 10.0.2's `edu` only *logs* a range outside that buffer
//! (`LOG_GUEST_ERROR`) and then copies anyway: past its own buffer in QEMU's heap, which can
//! crash QEMU or read and write another `edu`'s state. So every transfer's device side is checked
//! here first and refused with [`DmaError::OutsideBuffer`]: a limit of the test device, not of
//! smmuman (the IOMMU sees only the RAM side of a transfer). Addresses are the bus addresses the
//! device puts out: guest-physical ones under qvm. `edu` cannot tell a DMA the IOMMU refused from
//! one that landed: callers check the bytes.

use crate::clock::{Clock, Deadline};
use crate::phys::Phys;
use core::fmt;

/// PCI vendor ID of `edu`.
pub const VENDOR: u16 = 0x1234;
/// PCI device ID of `edu`.
pub const DEVICE: u16 = 0x11e8;
/// Identification register and its value.
pub const IDENT: u64 = 0x00;
/// Identification value of edu 1.0 (major in bits 31:24, minor in 23:16, 0xed).
pub const IDENT_VALUE: u32 = 0x0100_00ed;
const DMA_SRC: u64 = 0x80;
const DMA_DST: u64 = 0x88;
const DMA_COUNT: u64 = 0x90;
const DMA_CMD: u64 = 0x98;
const CMD_START: u64 = 1 << 0;
const CMD_TO_RAM: u64 = 1 << 1;
/// The device's DMA buffer, as a DMA address inside the device.
pub const BUFFER: u64 = 0x4_0000;
/// Its size.
pub const BUFFER_SIZE: u64 = 0x1000;
/// How long one DMA may take (edu's own timer is 100 ms of virtual time).
pub const TIMEOUT_MS: u64 = 5_000;

/// A DMA did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The device-side range is not inside edu's buffer.
    OutsideBuffer {
        /// Offset in the buffer.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// The command's start bit did not clear in time.
    Timeout,
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideBuffer { offset, len } => {
                write!(
                    f,
                    "edu buffer offset {offset:#x} + {len:#x} is outside its 4 KiB"
                )
            }
            Self::Timeout => write!(f, "edu DMA did not finish in {TIMEOUT_MS} ms"),
        }
    }
}

/// An `edu` whose BAR 0 is at `bar`.
pub struct Edu<'a> {
    phys: &'a dyn Phys,
    clock: &'a dyn Clock,
    bar: u64,
}

impl<'a> Edu<'a> {
    /// The device with BAR 0 at `bar` (memory decoding and bus mastering on).
    pub fn new(phys: &'a dyn Phys, clock: &'a dyn Clock, bar: u64) -> Self {
        Self { phys, clock, bar }
    }

    /// The identification register.
    pub fn ident(&self) -> u32 {
        self.phys.read32(self.bar + IDENT)
    }

    /// Copies `len` bytes from bus address `ram` into the device buffer at `offset`.
    ///
    /// # Errors
    /// [`DmaError`].
    pub fn read_from(&self, ram: u64, offset: u64, len: u64) -> Result<(), DmaError> {
        let dev = device_side(offset, len)?;
        self.run(ram, dev, len, 0)
    }

    /// Copies `len` bytes from the device buffer at `offset` to bus address `ram`.
    ///
    /// # Errors
    /// [`DmaError`].
    pub fn write_to(&self, offset: u64, ram: u64, len: u64) -> Result<(), DmaError> {
        let dev = device_side(offset, len)?;
        self.run(dev, ram, len, CMD_TO_RAM)
    }

    /// Asks the device to copy `len` bytes of its buffer at `offset` to bus address `ram` and
    /// returns at once: QEMU's `edu` starts the transfer 100 ms later (a DMA still queued when
    /// its owner stops: the life-cycle test).
    ///
    /// # Errors
    /// [`DmaError::OutsideBuffer`].
    pub fn queue_write_to(&self, offset: u64, ram: u64, len: u64) -> Result<(), DmaError> {
        let dev = device_side(offset, len)?;
        self.start(dev, ram, len, CMD_TO_RAM);
        Ok(())
    }

    fn start(&self, src: u64, dst: u64, len: u64, direction: u64) {
        self.phys.write64(self.bar + DMA_SRC, src);
        self.phys.write64(self.bar + DMA_DST, dst);
        self.phys.write64(self.bar + DMA_COUNT, len);
        self.phys.write64(self.bar + DMA_CMD, CMD_START | direction);
    }

    fn run(&self, src: u64, dst: u64, len: u64, direction: u64) -> Result<(), DmaError> {
        self.start(src, dst, len, direction);
        let deadline = Deadline::after_ms(self.clock, TIMEOUT_MS);
        while self.phys.read64(self.bar + DMA_CMD) & CMD_START != 0 {
            if deadline.passed(self.clock) {
                return Err(DmaError::Timeout);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }
}

/// The device-side DMA address of `[offset, offset + len)` of the buffer.
fn device_side(offset: u64, len: u64) -> Result<u64, DmaError> {
    match offset.checked_add(len) {
        Some(end) if len > 0 && end <= BUFFER_SIZE => Ok(BUFFER + offset),
        _ => Err(DmaError::OutsideBuffer { offset, len }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ranges_inside_the_buffer_reach_the_device() {
        assert_eq!(device_side(0, BUFFER_SIZE), Ok(BUFFER));
        assert_eq!(device_side(0xff8, 8), Ok(BUFFER + 0xff8));
        // One byte past the end, an empty transfer, an offset past it, a wrapping sum: refused
        // before any register is written.
        for (offset, len) in [(0xff8, 9), (0, 0), (BUFFER_SIZE, 1), (u64::MAX, 2)] {
            assert_eq!(
                device_side(offset, len),
                Err(DmaError::OutsideBuffer { offset, len })
            );
        }
        assert_eq!(
            DmaError::OutsideBuffer {
                offset: 0xff8,
                len: 9
            }
            .to_string(),
            "edu buffer offset 0xff8 + 0x9 is outside its 4 KiB"
        );
    }
}
