//! [`MemoryPlan`]: how RAM is split between what the daemon is made of, the daemon's own pool
//! (SMMU tables and queues) and the guest pool (memory DMA masters may be granted).
//!
//! Rule: the guest pool is the upper half of RAM, trimmed to 2 MiB boundaries so that a 2 MiB
//! block mapping can cover it; the daemon pool is the rest. Reserved ranges (the image with its
//! stacks, the device tree, anything firmware reserved) are cut out of both.

use super::range::PhysRange;
use core::fmt;
use heapless::Vec;
use iommu_core::{PhysAddr, PAGE_SIZE};

/// Alignment of the guest pool's bounds: the largest block stage 2 maps with a 4 KiB granule
/// below 1 GiB (Arm ARM D8.3, level-2 block).
pub const GUEST_POOL_ALIGN: u64 = 2 << 20;

/// Most reserved ranges a plan holds.
pub const MAX_RESERVED: usize = 16;

/// Most disjoint ranges one pool can consist of after the reserved ranges are cut out.
pub const MAX_POOL_RANGES: usize = 8;

/// What a reserved range holds (for the log).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReservedKind {
    /// RAM below the image, where the boot loader stub lives.
    BootStub,
    /// The daemon's image: code, data, bss and stacks.
    Image,
    /// The flattened device tree.
    DeviceTree,
    /// The initrd the boot loader placed (the daemon's `smmuman.conf`): boot loaders need not
    /// reserve it (QEMU does not), so the daemon does.
    Initrd,
    /// A `/memreserve/` entry or a `/reserved-memory` child.
    Firmware,
}

impl fmt::Display for ReservedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BootStub => "boot-stub",
            Self::Image => "image",
            Self::DeviceTree => "dtb",
            Self::Initrd => "initrd",
            Self::Firmware => "firmware",
        })
    }
}

/// A range the allocators must never hand out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reserved {
    /// The addresses (grown to whole pages by the plan).
    pub range: PhysRange,
    /// What lives there.
    pub kind: ReservedKind,
}

/// The memory plan cannot be made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LayoutError {
    /// More than [`MAX_RESERVED`] reserved ranges.
    TooManyReserved,
    /// A reserved range that must lie in RAM (image, device tree) does not.
    ReservedOutsideRam(Reserved),
    /// RAM is too small for a 2 MiB-aligned guest pool in its upper half.
    NoGuestPool(PhysRange),
    /// Nothing is left for the daemon pool.
    NoDaemonPool(PhysRange),
    /// Reserved ranges cut a pool into more than [`MAX_POOL_RANGES`] pieces.
    TooFragmented,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyReserved => write!(f, "more than {MAX_RESERVED} reserved memory ranges"),
            Self::ReservedOutsideRam(r) => write!(f, "{} at {} is not inside RAM", r.kind, r.range),
            Self::NoGuestPool(ram) => {
                write!(f, "RAM {ram} too small for a 2 MiB-aligned guest pool")
            }
            Self::NoDaemonPool(ram) => write!(f, "no free RAM left for the daemon pool in {ram}"),
            Self::TooFragmented => {
                write!(
                    f,
                    "reserved ranges cut a pool into more than {MAX_POOL_RANGES} pieces"
                )
            }
        }
    }
}

/// The split of one RAM region.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    ram: PhysRange,
    reserved: Vec<Reserved, MAX_RESERVED>,
    daemon_span: PhysRange,
    guest_span: PhysRange,
    daemon_pool: Vec<PhysRange, MAX_POOL_RANGES>,
    guest_pool: Vec<PhysRange, MAX_POOL_RANGES>,
}

impl MemoryPlan {
    /// Splits `ram` around the `reserved` ranges (each grown to whole pages).
    ///
    /// # Errors
    /// A [`LayoutError`] when a reserved image or device tree lies outside RAM, when RAM is too
    /// small for both pools, or when the reserved ranges fragment a pool too much.
    pub fn new(ram: PhysRange, reserved: &[Reserved]) -> Result<Self, LayoutError> {
        let mut list: Vec<Reserved, MAX_RESERVED> = Vec::new();
        for r in reserved {
            let range = r.range.grow_to_align(PAGE_SIZE).unwrap_or(r.range);
            let must_be_in_ram = matches!(
                r.kind,
                ReservedKind::Image | ReservedKind::DeviceTree | ReservedKind::Initrd
            );
            if must_be_in_ram && !ram.contains(r.range) {
                return Err(LayoutError::ReservedOutsideRam(*r));
            }
            list.push(Reserved {
                range,
                kind: r.kind,
            })
            .map_err(|_| LayoutError::TooManyReserved)?;
        }
        let middle = ram.start().0 + ram.size() / 2;
        let guest_start = middle.checked_next_multiple_of(GUEST_POOL_ALIGN);
        let guest_end = ram.end().0 & !(GUEST_POOL_ALIGN - 1);
        let guest_span = guest_start
            .and_then(|s| PhysRange::from_bounds(PhysAddr(s), PhysAddr(guest_end)))
            .ok_or(LayoutError::NoGuestPool(ram))?;
        let daemon_span = PhysRange::from_bounds(ram.start(), guest_span.start())
            .ok_or(LayoutError::NoDaemonPool(ram))?;
        let daemon_pool = subtract(daemon_span, &list)?;
        if daemon_pool.is_empty() {
            return Err(LayoutError::NoDaemonPool(ram));
        }
        let guest_pool = subtract(guest_span, &list)?;
        if guest_pool.is_empty() {
            return Err(LayoutError::NoGuestPool(ram));
        }
        Ok(Self {
            ram,
            reserved: list,
            daemon_span,
            guest_span,
            daemon_pool,
            guest_pool,
        })
    }

    /// The RAM region the plan splits.
    pub fn ram(&self) -> PhysRange {
        self.ram
    }

    /// The reserved ranges (page aligned).
    pub fn reserved(&self) -> &[Reserved] {
        &self.reserved
    }

    /// The addresses from which the daemon pool is carved (reserved ranges included).
    pub fn daemon_span(&self) -> PhysRange {
        self.daemon_span
    }

    /// The addresses from which the guest pool is carved (2 MiB aligned).
    pub fn guest_span(&self) -> PhysRange {
        self.guest_span
    }

    /// The free ranges of the daemon pool.
    pub fn daemon_pool(&self) -> &[PhysRange] {
        &self.daemon_pool
    }

    /// The free ranges of the guest pool.
    pub fn guest_pool(&self) -> &[PhysRange] {
        &self.guest_pool
    }

    /// Whether any byte of `[pa, pa + len)` belongs to the daemon: its image and stacks, the
    /// device tree, firmware reservations, or the daemon pool. A DMA window over such memory
    /// would let a device rewrite the daemon or the SMMU's tables. A range that wraps the
    /// address space counts as daemon memory; `len == 0` never does.
    pub fn is_daemon_memory(&self, pa: PhysAddr, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let Some(range) = PhysRange::new(pa, len) else {
            return true;
        };
        range.overlaps(self.daemon_span) || self.reserved.iter().any(|r| r.range.overlaps(range))
    }

    /// Whether all of `[pa, pa + len)` lies in the guest pool's span and outside every reserved
    /// range: memory that may be granted to a DMA master.
    pub fn is_guest_memory(&self, pa: PhysAddr, len: u64) -> bool {
        PhysRange::new(pa, len).is_some_and(|range| {
            self.guest_span.contains(range)
                && !self.reserved.iter().any(|r| r.range.overlaps(range))
        })
    }
}

/// `span` minus every reserved range, as sorted disjoint ranges.
fn subtract(
    span: PhysRange,
    reserved: &[Reserved],
) -> Result<Vec<PhysRange, MAX_POOL_RANGES>, LayoutError> {
    let mut holes: Vec<PhysRange, MAX_RESERVED> = reserved
        .iter()
        .map(|r| r.range)
        .filter(|r| r.overlaps(span))
        .collect();
    holes.sort_unstable();
    let mut out = Vec::new();
    let mut cursor = span.start();
    for hole in holes {
        if let Some(piece) = PhysRange::from_bounds(cursor, hole.start().min(span.end())) {
            out.push(piece).map_err(|_| LayoutError::TooFragmented)?;
        }
        cursor = cursor.max(hole.end());
    }
    if let Some(piece) = PhysRange::from_bounds(cursor, span.end()) {
        out.push(piece).map_err(|_| LayoutError::TooFragmented)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn r(start: u64, size: u64) -> PhysRange {
        PhysRange::new(PhysAddr(start), size).unwrap()
    }

    /// The layout QEMU `virt -m 512M` gives us.
    fn qemu_512m() -> MemoryPlan {
        MemoryPlan::new(
            r(0x4000_0000, 512 * MIB),
            &[
                Reserved {
                    range: r(0x4000_0000, 0x8_0000),
                    kind: ReservedKind::BootStub,
                },
                Reserved {
                    range: r(0x4008_0000, 0x2_1234),
                    kind: ReservedKind::Image,
                },
                Reserved {
                    range: r(0x4800_0000, MIB),
                    kind: ReservedKind::DeviceTree,
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn guest_pool_is_the_upper_half_and_2mib_aligned() {
        let plan = qemu_512m();
        assert_eq!(plan.guest_span(), r(0x5000_0000, 256 * MIB));
        assert_eq!(plan.guest_pool(), &[r(0x5000_0000, 256 * MIB)]);
        assert_eq!(plan.daemon_span(), r(0x4000_0000, 256 * MIB));
    }

    #[test]
    fn reserved_ranges_are_cut_out_of_the_daemon_pool() {
        let plan = qemu_512m();
        // The image end is grown to a page: 0x400a_1234 -> 0x400a_2000.
        assert_eq!(
            plan.daemon_pool(),
            &[
                r(0x400a_2000, 0x4800_0000 - 0x400a_2000),
                r(0x4810_0000, 0x5000_0000 - 0x4810_0000)
            ]
        );
    }

    #[test]
    fn daemon_memory_covers_image_dtb_and_pool_but_not_guest_memory() {
        let plan = qemu_512m();
        assert!(plan.is_daemon_memory(PhysAddr(0x4008_0000), 8), "image");
        assert!(
            plan.is_daemon_memory(PhysAddr(0x4800_0000), 4096),
            "device tree"
        );
        assert!(
            plan.is_daemon_memory(PhysAddr(0x4900_0000), 4096),
            "daemon pool"
        );
        assert!(
            plan.is_daemon_memory(PhysAddr(0x4fff_f000), 0x2000),
            "straddles into the pool"
        );
        assert!(plan.is_daemon_memory(PhysAddr(u64::MAX), 2), "wrapping");
        assert!(!plan.is_daemon_memory(PhysAddr(0x5000_0000), 2 * MIB));
        assert!(!plan.is_daemon_memory(PhysAddr(0x4008_0000), 0));
        assert!(plan.is_guest_memory(PhysAddr(0x5000_0000), 2 * MIB));
        assert!(!plan.is_guest_memory(PhysAddr(0x4fff_f000), 0x2000));
        assert!(
            !plan.is_guest_memory(PhysAddr(0x9050000), 0x1000),
            "MMIO is not guest memory"
        );
    }

    #[test]
    fn a_device_tree_in_the_upper_half_is_cut_out_of_the_guest_pool() {
        // QEMU puts the DTB at RAM + min(ram/2, 128 MiB): with -m 128M that is the middle.
        let plan = MemoryPlan::new(
            r(0x4000_0000, 128 * MIB),
            &[
                Reserved {
                    range: r(0x4008_0000, 0x3_0000),
                    kind: ReservedKind::Image,
                },
                Reserved {
                    range: r(0x4400_0000, MIB),
                    kind: ReservedKind::DeviceTree,
                },
            ],
        )
        .unwrap();
        assert_eq!(plan.guest_pool(), &[r(0x4410_0000, 64 * MIB - MIB)]);
        assert!(plan.is_daemon_memory(PhysAddr(0x4400_0000), 1));
        assert!(!plan.is_guest_memory(PhysAddr(0x4400_0000), 1));
    }

    #[test]
    fn an_image_outside_ram_is_refused() {
        let image = Reserved {
            range: r(0x1000, 0x1000),
            kind: ReservedKind::Image,
        };
        assert_eq!(
            MemoryPlan::new(r(0x4000_0000, 512 * MIB), &[image]).unwrap_err(),
            LayoutError::ReservedOutsideRam(image)
        );
    }

    #[test]
    fn tiny_ram_is_refused() {
        let ram = r(0x4000_0000, 2 * MIB);
        assert_eq!(
            MemoryPlan::new(ram, &[]).unwrap_err(),
            LayoutError::NoGuestPool(ram)
        );
    }
}
