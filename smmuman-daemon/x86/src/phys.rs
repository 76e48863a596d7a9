//! [`PhysRead`]: reading firmware-provided memory by physical address.
//!
//! Firmware structures (hvm_start_info, ACPI tables) are untrusted input at arbitrary
//! physical addresses. Parsers never hold a pointer: they ask a [`PhysRead`] for bytes, and an
//! address the reader cannot reach is an error, not a fault.

use core::fmt;

/// A physical range the reader cannot reach (outside what the CPU maps, or wraps).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unreachable {
    /// First byte asked for.
    pub pa: u64,
    /// Bytes asked for.
    pub len: u64,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "physical range {:#018x}+{:#x} is not reachable",
            self.pa, self.len
        )
    }
}

/// Reads physical memory.
pub trait PhysRead {
    /// Fills `buf` from `[pa, pa + buf.len())`.
    ///
    /// # Errors
    /// [`Unreachable`] when any byte of the range is outside what the reader can reach.
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Unreachable>;

    /// The byte at `pa`.
    ///
    /// # Errors
    /// As [`PhysRead::read`].
    fn u8(&self, pa: u64) -> Result<u8, Unreachable> {
        let mut b = [0; 1];
        self.read(pa, &mut b)?;
        Ok(b[0])
    }

    /// The little-endian `u16` at `pa`.
    ///
    /// # Errors
    /// As [`PhysRead::read`].
    fn u16(&self, pa: u64) -> Result<u16, Unreachable> {
        let mut b = [0; 2];
        self.read(pa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// The little-endian `u32` at `pa`.
    ///
    /// # Errors
    /// As [`PhysRead::read`].
    fn u32(&self, pa: u64) -> Result<u32, Unreachable> {
        let mut b = [0; 4];
        self.read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// The little-endian `u64` at `pa`.
    ///
    /// # Errors
    /// As [`PhysRead::read`].
    fn u64(&self, pa: u64) -> Result<u64, Unreachable> {
        let mut b = [0; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// A byte image of physical memory starting at `base` (tests).
#[cfg(test)]
pub struct Image {
    /// Physical address of `bytes[0]`.
    pub base: u64,
    /// The contents.
    pub bytes: std::vec::Vec<u8>,
}

#[cfg(test)]
impl PhysRead for Image {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Unreachable> {
        let len = buf.len() as u64;
        let err = Unreachable { pa, len };
        let start = pa.checked_sub(self.base).ok_or(err)?;
        let end = start.checked_add(len).ok_or(err)?;
        let src = self.bytes.get(start as usize..end as usize).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
impl Image {
    /// `size` zero bytes at `base`.
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: std::vec![0; size],
        }
    }

    /// Copies `data` to physical address `pa`.
    pub fn put(&mut self, pa: u64, data: &[u8]) {
        let at = (pa - self.base) as usize;
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }
}
