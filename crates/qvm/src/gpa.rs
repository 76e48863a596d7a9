//! Guest-physical addresses: the address space the guest's CPU (through its stage 2) and its
//! pass-through devices (through the SMMU, where the GPA is the IOVA) both use.

use core::fmt;

/// A guest-physical address (an IPA in Arm ARM terms, D8.1: the output of stage 1 and the input
/// of stage 2; the guest runs with its MMU off, so it is also what the guest's code uses).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Gpa(pub u64);

impl Gpa {
    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + offset`, or `None` on overflow.
    pub const fn checked_add(self, offset: u64) -> Option<Self> {
        match self.0.checked_add(offset) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

/// A non-empty guest-physical range `[start, start + len)` that does not wrap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GpaRange {
    start: Gpa,
    len: u64,
}

impl GpaRange {
    /// The range, or `None` when it is empty or would pass the end of the address space.
    pub const fn new(start: Gpa, len: u64) -> Option<Self> {
        if len == 0 || start.0.checked_add(len).is_none() {
            None
        } else {
            Some(Self { start, len })
        }
    }

    /// First address.
    pub const fn start(&self) -> Gpa {
        self.start
    }

    /// Length in bytes (never 0).
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Always false: ranges are not empty.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// One past the last address (no overflow: checked at construction).
    pub const fn end(&self) -> u64 {
        self.start.0 + self.len
    }

    /// Whether `[addr, addr + len)` lies entirely inside (a zero `len` counts when `addr` is
    /// inside or at the end).
    pub const fn contains(&self, addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(end) => addr >= self.start.0 && end <= self.end(),
            None => false,
        }
    }

    /// Whether the two ranges share an address.
    pub const fn overlaps(&self, other: &GpaRange) -> bool {
        self.start.0 < other.end() && other.start.0 < self.end()
    }
}

impl fmt::Display for GpaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {:#018x})", self.start, self.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_empty_and_wrapping() {
        assert!(GpaRange::new(Gpa(0), 0).is_none());
        assert!(GpaRange::new(Gpa(u64::MAX), 2).is_none());
        let r = GpaRange::new(Gpa(0x1000), 0x1000).unwrap();
        assert!(r.contains(0x1000, 0x1000));
        assert!(!r.contains(0x1000, 0x1001));
        assert!(!r.contains(u64::MAX, 2));
        assert!(r.overlaps(&GpaRange::new(Gpa(0x1fff), 1).unwrap()));
        assert!(!r.overlaps(&GpaRange::new(Gpa(0x2000), 1).unwrap()));
        assert_eq!(r.to_string(), "[0x0000000000001000, 0x0000000000002000)");
    }
}
