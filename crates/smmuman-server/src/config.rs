//! What the manager is told at start: the board's devices, its own memory, the I/O space.

use core::fmt;
use iommu_core::{Bdf, PhysAddr, StreamId, PAGE_SIZE};
use smmuman_api::IovaRange;

/// Most devices the board's table may list.
pub const MAX_DEVICES: usize = 64;
/// Most VM objects alive at once.
pub const MAX_OBJECTS: usize = 16;
/// Most VM objects one client may hold.
pub const OBJECTS_PER_CLIENT: usize = 8;
/// Most mappings one object may hold (the default of [`ManagerConfig::max_mappings_per_object`]).
pub const MAPPINGS_PER_OBJECT: usize = 65_536;
/// Most mappings the manager holds in all (the default of [`ManagerConfig::max_mappings`]).
pub const MAX_MAPPINGS: usize = 1_048_576;
/// Heap bytes one mapping may cost at most: its entry in the object's B-tree and up to two
/// ownership regions, each at the worst fill a B-tree node allows (half full), with the
/// allocator's rounding. The daemon sizes its heap as `max_mappings × MAPPING_BYTES` (plus the
/// fixed part), so the worst case is known at boot.
pub const MAPPING_BYTES: usize = 512;
/// Records one fault ledger can keep (its storage); [`ManagerConfig::fault_log_depth`] chooses
/// how many of them it does keep before it drops new ones.
pub const FAULT_LOG_DEPTH: usize = 32;
/// Runs of fault records each ledger remembers for the operator (`peek_faults`) whether or not
/// its client read them: the newest ones, folded as runs. 8 × 48 bytes per ledger, 6.4 KiB for
/// the [`MAX_OBJECTS`] ledgers and the unclaimed one, inline in the manager.
pub const FAULT_HISTORY_DEPTH: usize = 8;
/// Most reserved (never mappable) host ranges.
pub const MAX_RESERVED: usize = 16;
/// [`crate::Manager::retry_orphans_paced`] retries at most once per this much of the daemon's
/// clock: a retry of an orphan the IOMMU still refuses costs commands and a wait for their
/// completion, which a loop must not pay on every pass.
pub const ORPHAN_RETRY_PERIOD: core::time::Duration = core::time::Duration::from_millis(100);
/// Most usable I/O ranges.
pub const MAX_IOVA_RANGES: usize = smmuman_api::types::MAX_IOVA_RANGES;

/// How the board names a DMA master.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DeviceId {
    /// A PCI function.
    Pci(Bdf),
    /// A platform device, by the base address of its registers.
    Mmio(PhysAddr),
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(bdf) => write!(f, "{bdf}"),
            Self::Mmio(base) => write!(f, "mmio@{base}"),
        }
    }
}

/// One DMA master the manager controls. Entries that share a StreamID form one group.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DeviceEntry {
    /// The device.
    pub id: DeviceId,
    /// The StreamID its DMA carries (IHI 0070 §3.2; on PCIe derived from the requester ID
    /// through the firmware's `iommu-map`).
    pub sid: StreamId,
    /// Whether clients may select it by raw StreamID.
    pub raw_sid_allowed: bool,
}

/// A host-physical range `[start, start + len)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// Length in bytes (non-zero).
    pub len: u64,
}

impl PhysRange {
    /// Whether it shares a byte with `[start, start + len)`.
    pub const fn overlaps(&self, start: PhysAddr, len: u64) -> bool {
        ranges_overlap(self.start.0, self.len, start.0, len)
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}", self.start, self.len)
    }
}

/// Whether `[a, a + alen)` and `[b, b + blen)` share a byte (an empty range shares none).
pub(crate) const fn ranges_overlap(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    if alen == 0 || blen == 0 {
        return false;
    }
    // Compare last bytes so that a range ending at 2^64 does not overflow.
    a <= b.saturating_add(blen - 1) && b <= a.saturating_add(alen - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_by_byte_and_safe_at_the_edges() {
        assert!(ranges_overlap(0x1000, 0x1000, 0x1fff, 1));
        assert!(!ranges_overlap(0x1000, 0x1000, 0x2000, 0x1000));
        assert!(ranges_overlap(u64::MAX - 0xfff, 0x1000, u64::MAX, 1));
        assert!(!ranges_overlap(0, 0, 0, 0x1000));
        let r = PhysRange {
            start: PhysAddr(0x4000_0000),
            len: 0,
        };
        assert!(!r.overlaps(PhysAddr(0x4000_0000), 0x1000));
    }
}

/// Everything the manager is configured with.
#[derive(Clone, Copy, Debug)]
pub struct ManagerConfig<'a> {
    /// The DMA masters the IOMMU controls (from the device tree / board configuration).
    pub devices: &'a [DeviceEntry],
    /// The manager's own memory: image, stacks, stream tables, page tables, queues.
    pub reserved: &'a [PhysRange],
    /// The I/O addresses mappings may use (from the IOMMU's input address size).
    pub iova_ranges: &'a [IovaRange],
    /// Bit `n` set: the IOMMU maps pages of `2^n` bytes. The lowest bit set is the granule;
    /// it must be at least 4 KiB (bit 12).
    pub page_sizes: u64,
    /// Records each fault ledger keeps before it drops new ones (and counts them):
    /// 1 to [`FAULT_LOG_DEPTH`] (the board configuration's `fault-log`).
    pub fault_log_depth: usize,
    /// Most mappings one object may hold (quota; `QuotaExceeded` past it).
    pub max_mappings_per_object: usize,
    /// Most mappings the manager holds in all objects together.
    pub max_mappings: usize,
    /// The monotonic clock fault records are stamped with (the daemon's generic timer), read
    /// when the manager drains the IOMMU by itself: before an ownership change and as the
    /// fault barrier of `read_faults`.
    pub clock: fn() -> core::time::Duration,
}

/// A configuration the manager cannot run with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigError<E> {
    /// More than [`MAX_DEVICES`] devices.
    TooManyDevices(usize),
    /// The same device is listed twice.
    DuplicateDevice(DeviceId),
    /// More than [`MAX_RESERVED`] reserved ranges.
    TooManyReserved(usize),
    /// A reserved range is empty or runs past 2^64.
    BadReserved(PhysRange),
    /// No usable I/O range, or more than [`MAX_IOVA_RANGES`].
    IovaRangeCount(usize),
    /// An I/O range is backwards or not aligned to the granule.
    BadIovaRange(IovaRange),
    /// The page sizes have no granule of at least 4 KiB.
    PageSizes(u64),
    /// The fault-log depth is 0 or more than [`FAULT_LOG_DEPTH`].
    FaultLogDepth(usize),
    /// The IOMMU refused to put a device in default deny.
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for ConfigError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyDevices(n) => write!(f, "{n} devices listed, at most {MAX_DEVICES}"),
            Self::DuplicateDevice(d) => write!(f, "device {d} is listed twice"),
            Self::TooManyReserved(n) => {
                write!(f, "{n} reserved ranges, at most {MAX_RESERVED}")
            }
            Self::BadReserved(r) => write!(f, "reserved range {r} is empty or wraps"),
            Self::IovaRangeCount(n) => {
                write!(f, "{n} usable I/O ranges; need 1 to {MAX_IOVA_RANGES}")
            }
            Self::BadIovaRange(r) => write!(
                f,
                "I/O range {}..={} is backwards or not page aligned",
                r.first, r.last
            ),
            Self::PageSizes(p) => {
                write!(
                    f,
                    "page sizes {p:#x} have no granule of at least {PAGE_SIZE:#x}"
                )
            }
            Self::FaultLogDepth(n) => {
                write!(f, "fault-log depth {n}: must be 1 to {FAULT_LOG_DEPTH}")
            }
            Self::Backend(e) => write!(f, "IOMMU: {e}"),
        }
    }
}
