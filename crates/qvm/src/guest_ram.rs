//! [`GuestRam`]: how the VMM reads and writes its guest's RAM. The host implements it over the
//! VM's host-physical RAM; tests implement it over a `Vec`.

use crate::gpa::{Gpa, GpaRange};
use core::fmt;

/// An access outside the guest's RAM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutsideRam {
    /// First guest-physical address of the access.
    pub gpa: Gpa,
    /// Its length.
    pub len: u64,
}

impl fmt::Display for OutsideRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at GPA {} are not inside the guest's RAM",
            self.len, self.gpa
        )
    }
}

/// The guest's RAM, seen from the VMM.
///
/// Every method checks the whole range against [`GuestRam::range`] first and changes nothing
/// when it is not inside: implementations must never touch memory outside it.
pub trait GuestRam {
    /// Where the RAM is in the guest-physical space.
    fn range(&self) -> GpaRange;
    /// Copies `bytes` to guest-physical `gpa`.
    ///
    /// # Errors
    /// [`OutsideRam`] when `[gpa, gpa + bytes.len())` is not entirely RAM.
    fn write(&mut self, gpa: Gpa, bytes: &[u8]) -> Result<(), OutsideRam>;
    /// Copies guest-physical `[gpa, gpa + buf.len())` into `buf`.
    ///
    /// # Errors
    /// [`OutsideRam`] as for `write`.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutsideRam>;
    /// Zeroes `[gpa, gpa + len)`.
    ///
    /// # Errors
    /// [`OutsideRam`] as for `write`.
    fn zero(&mut self, gpa: Gpa, len: u64) -> Result<(), OutsideRam>;
}

/// A [`GuestRam`] over a byte slice: what tests and the host's own copies use.
#[derive(Debug)]
pub struct SliceRam<'a> {
    range: GpaRange,
    bytes: &'a mut [u8],
}

impl<'a> SliceRam<'a> {
    /// RAM at `base` whose contents are `bytes`; `None` when empty or it would wrap.
    pub fn new(base: Gpa, bytes: &'a mut [u8]) -> Option<Self> {
        let range = GpaRange::new(base, u64::try_from(bytes.len()).ok()?)?;
        Some(Self { range, bytes })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    fn span(&self, gpa: Gpa, len: usize) -> Result<core::ops::Range<usize>, OutsideRam> {
        let outside = OutsideRam {
            gpa,
            len: len as u64,
        };
        let start = gpa
            .get()
            .checked_sub(self.range.start().get())
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(outside)?;
        let end = start.checked_add(len).ok_or(outside)?;
        if end > self.bytes.len() {
            return Err(outside);
        }
        Ok(start..end)
    }
}

impl GuestRam for SliceRam<'_> {
    fn range(&self) -> GpaRange {
        self.range
    }
    fn write(&mut self, gpa: Gpa, bytes: &[u8]) -> Result<(), OutsideRam> {
        let r = self.span(gpa, bytes.len())?;
        if let Some(dst) = self.bytes.get_mut(r) {
            dst.copy_from_slice(bytes);
        }
        Ok(())
    }
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let r = self.span(gpa, buf.len())?;
        if let Some(src) = self.bytes.get(r) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }
    fn zero(&mut self, gpa: Gpa, len: u64) -> Result<(), OutsideRam> {
        let n = usize::try_from(len).map_err(|_| OutsideRam { gpa, len })?;
        let r = self.span(gpa, n)?;
        if let Some(dst) = self.bytes.get_mut(r) {
            dst.fill(0);
        }
        Ok(())
    }
}
