//! Typed addresses. Printed as `{:#018x}`.

use core::fmt;

/// Size of the translation granule every smmuman table uses (4 KiB).
pub const PAGE_SIZE: u64 = 4096;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The address as a number.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// `self + offset`, or `None` when it overflows the 64-bit address space.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// The address rounded down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#018x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#018x}", self.0)
            }
        }
    };
}

address_type!(
    /// A host-physical address: what the IOMMU emits after translation, and where its own tables live.
    PhysAddr
);
address_type!(
    /// An I/O virtual address: what a DMA master puts on the bus before translation (for a VM, its
    /// guest-physical address; with stage 2 this is the IPA of IHI 0070).
    Iova
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_18_wide_hex() {
        assert_eq!(format!("{}", PhysAddr(0x4000_0000)), "0x0000000040000000");
        assert_eq!(format!("{:?}", Iova(0x20_0000)), "Iova(0x0000000000200000)");
    }

    #[test]
    fn checked_add_reports_overflow() {
        assert_eq!(Iova(u64::MAX).checked_add(1), None);
        assert_eq!(Iova(1).checked_add(1), Some(Iova(2)));
    }

    #[test]
    fn alignment() {
        assert!(PhysAddr(0x20_0000).is_aligned(0x20_0000));
        assert!(!PhysAddr(0x20_1000).is_aligned(0x20_0000));
        assert_eq!(
            PhysAddr(0x20_1234).align_down(PAGE_SIZE),
            PhysAddr(0x20_1000)
        );
    }
}
