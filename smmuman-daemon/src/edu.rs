//! QEMU's `edu` educational PCI device (QEMU docs/specs/edu.rst), used as a DMA master.
//!
//! BAR0 holds 1 MiB of registers. Registers below 0x80 only answer 32-bit accesses; the DMA
//! registers at 0x80 and above answer 32- or 64-bit accesses (64-bit is used, so that an IOVA
//! above 4 GiB reaches the device whole). The device has a 4 KiB buffer that it addresses as
//! `0x40000..0x41000` in the DMA registers; it is not visible through BAR0, so data goes in and
//! out by DMA only.
//!
//! A DMA takes about 100 ms of virtual time (a timer in the model) and its completion looks the
//! same whether the transfer succeeded or the SMMU blocked it: check memory and the event queue.

use crate::clock::{wait_until, Clock};
use crate::mmio::Mmio;
use core::fmt;
use core::time::Duration;
use iommu_core::Iova;

/// PCI vendor ID of QEMU's emulated devices.
pub const VENDOR_ID: u16 = 0x1234;
/// PCI device ID of `edu`.
pub const DEVICE_ID: u16 = 0x11e8;

/// Identification register: `0xRRrr00ed`, major.minor version and the `0xed` signature.
const REG_ID: usize = 0x00;
/// Liveness register: reads back the bitwise inverse of what was written.
const REG_LIVENESS: usize = 0x04;
/// DMA source address.
const REG_DMA_SRC: usize = 0x80;
/// DMA destination address.
const REG_DMA_DST: usize = 0x88;
/// DMA transfer length in bytes.
const REG_DMA_COUNT: usize = 0x90;
/// DMA command: bit 0 starts a transfer and reads as 1 until it finishes; bit 1 is the
/// direction (0: RAM to device buffer, 1: device buffer to RAM); bit 2 asks for an interrupt.
const REG_DMA_CMD: usize = 0x98;
const DMA_CMD_RUN: u64 = 1 << 0;
const DMA_CMD_TO_RAM: u64 = 1 << 1;

/// Low byte of the identification register.
const ID_SIGNATURE: u32 = 0xed;

/// Where the device buffer starts in the DMA address registers.
pub const BUFFER_BASE: u64 = 0x40000;
/// Size of the device buffer.
pub const BUFFER_SIZE: u32 = 4096;

/// How long a transfer may take before the driver gives up (the model needs 100 ms of virtual
/// time; TCG on a loaded host can stretch that).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which way a transfer goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// From RAM (at an IOVA) into the device buffer: the device reads memory.
    ToDevice,
    /// From the device buffer to RAM (at an IOVA): the device writes memory.
    FromDevice,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ToDevice => "to-device",
            Self::FromDevice => "from-device",
        })
    }
}

/// What went wrong driving `edu`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EduError {
    /// The identification register does not carry the `edu` signature.
    NotEdu {
        /// The value read.
        id: u32,
    },
    /// The transfer would leave the 4 KiB device buffer. QEMU 10.0.2's `edu` logs such a
    /// range and copies anyway, past its buffer in QEMU's heap (QEMU can crash, or another
    /// `edu`'s state be read): a limit of the test device, so the driver never starts one.
    BufferRange {
        /// Offset into the device buffer.
        offset: u32,
        /// Length of the transfer.
        len: u32,
    },
    /// A zero-length transfer was requested.
    ZeroLength,
    /// The IOVA range wraps the 64-bit address space.
    IovaOverflow {
        /// The start of the transfer in RAM.
        iova: Iova,
        /// Length of the transfer.
        len: u32,
    },
    /// A previous transfer is still running.
    Busy,
    /// The transfer did not finish in time.
    Timeout {
        /// Direction of the transfer.
        direction: Direction,
        /// How long the driver waited.
        waited: Duration,
    },
}

impl fmt::Display for EduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEdu { id } => write!(f, "not an edu device: ID register {id:#010x}"),
            Self::BufferRange { offset, len } => write!(
                f,
                "transfer of {len:#x} bytes at buffer offset {offset:#x} leaves the {BUFFER_SIZE}-byte edu buffer"
            ),
            Self::ZeroLength => write!(f, "zero-length edu transfer"),
            Self::IovaOverflow { iova, len } => {
                write!(f, "transfer of {len:#x} bytes at IOVA {iova} wraps the address space")
            }
            Self::Busy => write!(f, "edu DMA engine busy"),
            Self::Timeout { direction, waited } => {
                write!(f, "edu DMA {direction} not finished after {} ms", waited.as_millis())
            }
        }
    }
}

/// A driver for one `edu` device.
#[derive(Debug)]
pub struct Edu<M: Mmio> {
    regs: M,
    timeout: Duration,
}

impl<M: Mmio> Edu<M> {
    /// Takes over the device behind `regs` (its BAR0) after checking its signature.
    ///
    /// # Errors
    /// [`EduError::NotEdu`] when the identification register is wrong.
    pub fn new(regs: M) -> Result<Self, EduError> {
        let id = regs.read32(REG_ID);
        if id & 0xff != ID_SIGNATURE {
            return Err(EduError::NotEdu { id });
        }
        Ok(Self {
            regs,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes how long a transfer may take.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The device version from the identification register, as (major, minor).
    pub fn version(&self) -> (u8, u8) {
        let id = self.regs.read32(REG_ID);
        ((id >> 24) as u8, (id >> 16) as u8)
    }

    /// Writes `value` to the liveness register and checks the device answers with its inverse.
    pub fn is_alive(&mut self, value: u32) -> bool {
        self.regs.write32(REG_LIVENESS, value);
        self.regs.read32(REG_LIVENESS) == !value
    }

    /// Copies `len` bytes from RAM at `src` into the device buffer at `offset` (the device
    /// reads memory), and waits for the engine to finish.
    ///
    /// # Errors
    /// [`EduError::ZeroLength`], [`EduError::BufferRange`], [`EduError::IovaOverflow`],
    /// [`EduError::Busy`], [`EduError::Timeout`].
    pub fn dma_to_device(
        &mut self,
        src: Iova,
        offset: u32,
        len: u32,
        clock: &impl Clock,
    ) -> Result<Duration, EduError> {
        let buffer = check(src, offset, len)?;
        self.transfer(src.0, buffer, len, 0, Direction::ToDevice, clock)
    }

    /// Copies `len` bytes from the device buffer at `offset` to RAM at `dst` (the device writes
    /// memory), and waits for the engine to finish.
    ///
    /// # Errors
    /// As [`Edu::dma_to_device`].
    pub fn dma_from_device(
        &mut self,
        offset: u32,
        dst: Iova,
        len: u32,
        clock: &impl Clock,
    ) -> Result<Duration, EduError> {
        let buffer = check(dst, offset, len)?;
        self.transfer(
            buffer,
            dst.0,
            len,
            DMA_CMD_TO_RAM,
            Direction::FromDevice,
            clock,
        )
    }

    fn transfer(
        &mut self,
        src: u64,
        dst: u64,
        len: u32,
        direction_bit: u64,
        direction: Direction,
        clock: &impl Clock,
    ) -> Result<Duration, EduError> {
        if self.regs.read64(REG_DMA_CMD) & DMA_CMD_RUN != 0 {
            return Err(EduError::Busy);
        }
        self.regs.write64(REG_DMA_SRC, src);
        self.regs.write64(REG_DMA_DST, dst);
        self.regs.write64(REG_DMA_COUNT, len.into());
        self.regs.write64(REG_DMA_CMD, DMA_CMD_RUN | direction_bit);
        let regs = &self.regs;
        wait_until(clock, self.timeout, || {
            regs.read64(REG_DMA_CMD) & DMA_CMD_RUN == 0
        })
        .map_err(|waited| EduError::Timeout { direction, waited })
    }
}

/// Validates a transfer and returns the device-buffer address for `offset`.
fn check(iova: Iova, offset: u32, len: u32) -> Result<u64, EduError> {
    if len == 0 {
        return Err(EduError::ZeroLength);
    }
    if offset.checked_add(len).is_none_or(|end| end > BUFFER_SIZE) {
        return Err(EduError::BufferRange { offset, len });
    }
    if iova.checked_add(u64::from(len) - 1).is_none() {
        return Err(EduError::IovaOverflow { iova, len });
    }
    Ok(BUFFER_BASE + u64::from(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::fake::StepClock;
    use crate::fake_mmio::FakeRegs;

    fn edu_model(polls_until_done: u32) -> FakeRegs {
        let mut regs = FakeRegs::with(&[(REG_ID, 0x0100_00ed)]);
        let polls = std::cell::Cell::new(0);
        regs.on_read = Some(Box::new(move |r, offset| {
            if offset == REG_DMA_CMD && r.get(&REG_DMA_CMD).is_some_and(|c| c & 1 != 0) {
                polls.set(polls.get() + 1);
                if polls.get() > polls_until_done {
                    *r.get_mut(&REG_DMA_CMD).unwrap() &= !1;
                }
            }
        }));
        regs
    }

    fn clock() -> StepClock {
        StepClock::new(Duration::from_millis(1))
    }

    #[test]
    fn to_device_programs_src_dst_count_then_cmd() {
        let mut edu = Edu::new(edu_model(3)).unwrap();
        edu.dma_to_device(Iova(0x1_2345_6000), 0x10, 0x100, &clock())
            .unwrap();
        assert_eq!(
            edu.regs.writes,
            [
                (0x80, 0x1_2345_6000),
                (0x88, 0x40010),
                (0x90, 0x100),
                (0x98, 0b01)
            ]
        );
    }

    #[test]
    fn from_device_sets_the_direction_bit() {
        let mut edu = Edu::new(edu_model(0)).unwrap();
        edu.dma_from_device(0, Iova(0x20_0000), 4096, &clock())
            .unwrap();
        assert_eq!(
            edu.regs.writes,
            [
                (0x80, 0x40000),
                (0x88, 0x20_0000),
                (0x90, 4096),
                (0x98, 0b11)
            ]
        );
    }

    #[test]
    fn transfers_leaving_the_buffer_never_reach_the_device() {
        let mut edu = Edu::new(edu_model(0)).unwrap();
        let c = clock();
        assert_eq!(
            edu.dma_to_device(Iova(0), 4000, 100, &c),
            Err(EduError::BufferRange {
                offset: 4000,
                len: 100
            })
        );
        assert_eq!(
            edu.dma_from_device(u32::MAX, Iova(0), 2, &c),
            Err(EduError::BufferRange {
                offset: u32::MAX,
                len: 2
            })
        );
        assert_eq!(
            edu.dma_to_device(Iova(0), 0, 0, &c),
            Err(EduError::ZeroLength)
        );
        assert_eq!(
            edu.dma_to_device(Iova(u64::MAX), 0, 2, &c),
            Err(EduError::IovaOverflow {
                iova: Iova(u64::MAX),
                len: 2
            })
        );
        assert!(edu.regs.writes.is_empty());
    }

    #[test]
    fn a_transfer_that_never_finishes_times_out() {
        let mut edu = Edu::new(edu_model(u32::MAX)).unwrap();
        edu.set_timeout(Duration::from_millis(50));
        match edu.dma_to_device(Iova(0x1000), 0, 8, &clock()) {
            Err(EduError::Timeout {
                direction: Direction::ToDevice,
                waited,
            }) => {
                assert!(waited >= Duration::from_millis(50))
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(
            edu.dma_to_device(Iova(0x1000), 0, 8, &clock()),
            Err(EduError::Busy)
        );
    }

    #[test]
    fn a_device_without_the_signature_is_refused() {
        let regs = FakeRegs::with(&[(REG_ID, 0x1234_5678)]);
        assert_eq!(
            Edu::new(regs).err(),
            Some(EduError::NotEdu { id: 0x1234_5678 })
        );
    }

    #[test]
    fn liveness_expects_the_inverse() {
        let mut regs = FakeRegs::with(&[(REG_ID, 0x0100_00ed)]);
        regs.on_write = Some(Box::new(|r, offset| {
            if offset == REG_LIVENESS {
                let v = r[&REG_LIVENESS];
                r.insert(REG_LIVENESS, !v & 0xffff_ffff);
            }
        }));
        let mut edu = Edu::new(regs).unwrap();
        assert!(edu.is_alive(0x1234_5678));
        assert_eq!(edu.version(), (1, 0));
    }
}
