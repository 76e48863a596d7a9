//! Firmware's VT-d view: what the ACPI DMAR table (VT-d chapter 8) says, as plain data the
//! daemon fills from `vtd::dmar` ([`FirmwareVtd`]), and its conversion ([`from_dmar`]) into
//! the same [`Topology`] the device tree gives, so that [`crate::combine()`] applies a
//! config to it by the same rules.
//!
//! * Each DRHD (VT-d §8.3) becomes a [`crate::IommuKind::Vtd`] unit named `drhd@BASE`, with
//!   `size`, `segment` and `include-pci-all` stated.
//! * Each PCI endpoint scope (§8.3.1, type 1) becomes a binding of that function, whose
//!   StreamID is its requester ID ([`requester_id`]): VT-d tells functions apart by source-id.
//! * Each PCI sub-hierarchy scope (type 2) becomes a binding of the bridge itself and a
//!   requester-ID range over the buses below it (`secondary..=subordinate`, read by the daemon
//!   from the bridge's type 1 header after bus numbering).
//! * INCLUDE_PCI_ALL becomes a range over the whole segment, placed after every other
//!   binding, so that a function another unit lists (or a bridge range covers) is not taken
//!   by it (§8.3: such a unit covers only what no other unit of its segment lists).
//! * Each RMRR (§8.4) becomes a [`ReservedRegion`].
//!
//! Contradictions are [`VtdError`]s naming the DRHD or RMRR by its index and what it clashes
//! with; nothing is guessed.

use crate::device::{Device, PciRange, StreamSource};
use crate::topology::{
    CapacityExceeded, Origin, ReservedRegion, StreamBinding, Topology, MAX_REGION_DEVICES,
};
use crate::unit::{IommuUnit, Stated, UnitId, UnitName};
use core::fmt;
use core::fmt::Write as _;
use iommu_core::{Bdf, PhysAddr, StreamId, PAGE_SIZE};

/// One DRHD (VT-d §8.3) as the daemon read it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FirmwareUnit<'a> {
    /// Register Base Address (4 KiB aligned).
    pub base: PhysAddr,
    /// Bytes of the register set (DRHD Size: 2^N 4 KiB pages; `vtd::dmar::Drhd::register_set_size`).
    pub size: u64,
    /// Segment Number.
    pub segment: u16,
    /// Flags bit 0, INCLUDE_PCI_ALL.
    pub include_pci_all: bool,
    /// The functions its PCI endpoint scopes (type 1) resolve to.
    pub endpoints: &'a [Bdf],
    /// The bridges its PCI sub-hierarchy scopes (type 2) resolve to, with their bus numbers.
    pub bridges: &'a [FirmwareBridge],
}

/// A PCI sub-hierarchy scope (VT-d §8.3.1 type 2): a bridge and every function below it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FirmwareBridge {
    /// The bridge function.
    pub bridge: Bdf,
    /// Its Secondary Bus Number (type 1 header offset 0x19): the bus right below it.
    pub secondary: u8,
    /// Its Subordinate Bus Number (offset 0x1a): the highest bus below it.
    pub subordinate: u8,
}

/// One RMRR (VT-d §8.4) as the daemon read it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FirmwareRegion<'a> {
    /// Reserved Memory Region Base Address (4 KiB aligned).
    pub base: PhysAddr,
    /// Reserved Memory Region Limit Address: the last byte (limit + 1 is 4 KiB aligned).
    pub limit: PhysAddr,
    /// Segment Number.
    pub segment: u16,
    /// The functions its device scopes resolve to.
    pub devices: &'a [Bdf],
}

/// Everything the DMAR says that board-config uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FirmwareVtd<'a> {
    /// The DRHDs, in table order.
    pub units: &'a [FirmwareUnit<'a>],
    /// The RMRRs, in table order.
    pub reserved: &'a [FirmwareRegion<'a>],
}

/// What names a wrong DMAR structure in a [`VtdError`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Structure {
    /// DRHD number N (from 0, table order) and its base.
    Drhd(usize, PhysAddr),
    /// RMRR number N (from 0, table order).
    Rmrr(usize),
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Drhd(i, base) => write!(f, "DMAR: DRHD {i} (base {base})"),
            Self::Rmrr(i) => write!(f, "DMAR: RMRR {i}"),
        }
    }
}

/// What is wrong with firmware's VT-d view.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VtdErrorKind {
    /// Register base not 4 KiB aligned, size zero or not a multiple of 4 KiB, or base + size
    /// past 2^64.
    BadFrame {
        /// The size.
        size: u64,
    },
    /// Another DRHD has the same register base.
    DuplicateBase {
        /// Index of the other DRHD.
        other: usize,
    },
    /// The register set overlaps another DRHD's.
    UnitsOverlap {
        /// Index of the other DRHD.
        other: usize,
    },
    /// Two INCLUDE_PCI_ALL DRHDs for one segment (§8.3 allows one per segment).
    TwoIncludeAll {
        /// Index of the other DRHD.
        other: usize,
        /// The segment.
        segment: u16,
    },
    /// A function listed by two DRHDs: it cannot be behind both.
    DeviceInTwoUnits {
        /// The function.
        device: Device,
        /// Index of the other DRHD.
        other: usize,
    },
    /// A bridge whose bus numbers are not `0 < secondary <= subordinate`.
    BadBridge {
        /// The bridge.
        bridge: Bdf,
        /// Its secondary bus.
        secondary: u8,
        /// Its subordinate bus.
        subordinate: u8,
    },
    /// The buses below a bridge overlap those below another DRHD's bridge.
    BridgeOverlap {
        /// The bridge.
        bridge: Bdf,
        /// Index of the other DRHD.
        other: usize,
    },
    /// Base not 4 KiB aligned, limit + 1 not 4 KiB aligned, or limit below base.
    BadRegion {
        /// Its last byte.
        limit: PhysAddr,
    },
    /// An RMRR with no device.
    RegionWithoutDevices,
    /// An RMRR overlaps another one without being the same range of the same segment.
    RegionOverlap {
        /// Index of the other RMRR.
        other: usize,
    },
    /// A list is full.
    TooMany(CapacityExceeded),
}

/// Firmware's VT-d view contradicts itself: which structure, and what.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VtdError {
    /// The structure.
    pub at: Structure,
    /// What is wrong.
    pub kind: VtdErrorKind,
}

impl fmt::Display for VtdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.at)?;
        match self.kind {
            VtdErrorKind::BadFrame { size } => write!(
                f,
                "register set of {size:#x} bytes is not whole 4 KiB pages at a 4 KiB aligned base"
            ),
            VtdErrorKind::DuplicateBase { other } => {
                write!(f, "DRHD {other} has the same register base")
            }
            VtdErrorKind::UnitsOverlap { other } => {
                write!(f, "register set overlaps DRHD {other}'s")
            }
            VtdErrorKind::TwoIncludeAll { other, segment } => write!(
                f,
                "INCLUDE_PCI_ALL for segment {segment:04x}, which DRHD {other} already includes whole"
            ),
            VtdErrorKind::DeviceInTwoUnits { device, other } => {
                write!(f, "{device} is also listed by DRHD {other}")
            }
            VtdErrorKind::BadBridge {
                bridge,
                secondary,
                subordinate,
            } => write!(
                f,
                "bridge {bridge}: buses {secondary:#x}..={subordinate:#x} are not a bus range below it"
            ),
            VtdErrorKind::BridgeOverlap { bridge, other } => write!(
                f,
                "the buses below bridge {bridge} are also below a bridge of DRHD {other}"
            ),
            VtdErrorKind::BadRegion { limit } => write!(
                f,
                "limit {limit} does not end a whole number of 4 KiB pages from a 4 KiB aligned base"
            ),
            VtdErrorKind::RegionWithoutDevices => f.write_str("names no device"),
            VtdErrorKind::RegionOverlap { other } => {
                write!(f, "overlaps RMRR {other} without being the same range")
            }
            VtdErrorKind::TooMany(c) => write!(f, "{c}"),
        }
    }
}

/// The StreamID of a PCI function behind a VT-d unit: its requester ID (bus << 8 | device << 3
/// | function), the source-id of its DMA (VT-d §3.4.1) and of its fault records (§10.4.14).
pub fn requester_id(bdf: Bdf) -> StreamId {
    StreamId(u32::from(bdf.rid()))
}

/// Every requester ID of `segment`: what an INCLUDE_PCI_ALL unit covers.
pub(crate) fn whole_segment(segment: u16) -> PciRange {
    PciRange {
        segment,
        rid_base: 0,
        len: 0x1_0000,
        mask: u32::MAX,
    }
}

/// Whether `b` is the INCLUDE_PCI_ALL range of a VT-d unit of `t`.
pub(crate) fn is_include_all(t: &Topology, b: &StreamBinding) -> bool {
    matches!(b.source, StreamSource::PciRange(r) if r == whole_segment(r.segment))
        && t.unit(b.unit)
            .is_some_and(|u| u.kind == crate::unit::IommuKind::Vtd)
}

/// `drhd@fed90000`: the name a DMAR unit has until a config names it.
fn drhd_name(base: PhysAddr) -> UnitName {
    let mut name = UnitName::new();
    // At most 5 + 16 characters: fits UNIT_NAME_LEN.
    let _ = write!(name, "drhd@{:x}", base.0);
    name
}

/// Firmware's VT-d topology (origin [`Origin::Dmar`]).
///
/// # Errors
/// The first [`VtdError`]: DRHDs in table order (each checked against the ones before it),
/// then RMRRs.
pub fn from_dmar(fw: &FirmwareVtd<'_>) -> Result<Topology, VtdError> {
    let mut t = Topology::new();
    for (i, u) in fw.units.iter().enumerate() {
        let err = |kind| VtdError {
            at: Structure::Drhd(i, u.base),
            kind,
        };
        let mut unit = IommuUnit::vtd(drhd_name(u.base), u.base, Origin::Dmar);
        unit.size = u.size;
        unit.segment = u.segment;
        unit.include_pci_all = u.include_pci_all;
        unit.stated = Stated::SIZE | Stated::SEGMENT | Stated::INCLUDE_PCI_ALL;
        let frame_ok = u.base.0.is_multiple_of(PAGE_SIZE)
            && u.size != 0
            && u.size.is_multiple_of(PAGE_SIZE)
            && u.base.0.checked_add(u.size - 1).is_some();
        if !frame_ok {
            return Err(err(VtdErrorKind::BadFrame { size: u.size }));
        }
        for (j, o) in fw.units[..i].iter().enumerate() {
            let other = IommuUnit {
                size: o.size,
                ..IommuUnit::vtd(UnitName::new(), o.base, Origin::Dmar)
            };
            if o.base == u.base {
                return Err(err(VtdErrorKind::DuplicateBase { other: j }));
            }
            if other.overlaps(&unit) {
                return Err(err(VtdErrorKind::UnitsOverlap { other: j }));
            }
            if o.include_pci_all && u.include_pci_all && o.segment == u.segment {
                return Err(err(VtdErrorKind::TwoIncludeAll {
                    other: j,
                    segment: u.segment,
                }));
            }
        }
        let id = t
            .push_unit(unit)
            .map_err(|c| err(VtdErrorKind::TooMany(c)))?;
        let listed_by = |device: Device, t: &Topology| {
            t.streams()
                .iter()
                .find(|b| b.source == StreamSource::Device(device))
                .map(|b| b.unit)
        };
        let bridge_bdfs = u.bridges.iter().map(|b| b.bridge);
        for bdf in u.endpoints.iter().copied().chain(bridge_bdfs) {
            let device = Device::Pci {
                segment: u.segment,
                bdf,
            };
            match listed_by(device, &t) {
                Some(other) if other == id => continue, // Listed twice by one DRHD.
                Some(other) => {
                    return Err(err(VtdErrorKind::DeviceInTwoUnits {
                        device,
                        other: other.index(),
                    }))
                }
                None => {}
            }
            t.push_stream(binding(id, StreamSource::Device(device), requester_id(bdf)))
                .map_err(|c| err(VtdErrorKind::TooMany(c)))?;
        }
        for b in u.bridges {
            if b.secondary == 0 || b.subordinate < b.secondary {
                return Err(err(VtdErrorKind::BadBridge {
                    bridge: b.bridge,
                    secondary: b.secondary,
                    subordinate: b.subordinate,
                }));
            }
            let range = PciRange {
                segment: u.segment,
                rid_base: u32::from(b.secondary) << 8,
                len: (u32::from(b.subordinate) - u32::from(b.secondary) + 1) << 8,
                mask: u32::MAX,
            };
            let clash = t.streams().iter().find(|o| {
                matches!(o.source, StreamSource::PciRange(r)
                    if o.unit != id && r.segment == range.segment
                        && u64::from(r.rid_base) <= range.rid_last()
                        && u64::from(range.rid_base) <= r.rid_last())
            });
            if let Some(o) = clash {
                return Err(err(VtdErrorKind::BridgeOverlap {
                    bridge: b.bridge,
                    other: o.unit.index(),
                }));
            }
            t.push_stream(binding(
                id,
                StreamSource::PciRange(range),
                StreamId(range.rid_base),
            ))
            .map_err(|c| err(VtdErrorKind::TooMany(c)))?;
        }
    }
    // INCLUDE_PCI_ALL last: the first range covering a function wins (`Topology::bindings_for`).
    for (i, u) in fw.units.iter().enumerate() {
        if u.include_pci_all {
            let source = StreamSource::PciRange(whole_segment(u.segment));
            t.push_stream(binding(UnitId(i as u8), source, StreamId(0)))
                .map_err(|c| VtdError {
                    at: Structure::Drhd(i, u.base),
                    kind: VtdErrorKind::TooMany(c),
                })?;
        }
    }
    for (i, r) in fw.reserved.iter().enumerate() {
        let err = |kind| VtdError {
            at: Structure::Rmrr(i),
            kind,
        };
        let ok = r.base.0.is_multiple_of(PAGE_SIZE)
            && r.limit.0 >= r.base.0
            && (r.limit.0 & (PAGE_SIZE - 1)) == PAGE_SIZE - 1;
        if !ok {
            return Err(err(VtdErrorKind::BadRegion { limit: r.limit }));
        }
        if r.devices.is_empty() {
            return Err(err(VtdErrorKind::RegionWithoutDevices));
        }
        // `limit - base + 1` does not overflow unless the region is all of memory; refuse it.
        let Some(len) = (r.limit.0 - r.base.0).checked_add(1) else {
            return Err(err(VtdErrorKind::BadRegion { limit: r.limit }));
        };
        let same = fw.reserved[..i]
            .iter()
            .position(|o| o.segment == r.segment && o.base == r.base && o.limit == r.limit);
        if let Some(j) = same {
            // One range listed twice (e.g. once per device): one region for all its devices.
            let region = t
                .regions_mut()
                .iter_mut()
                .find(|g| g.segment == r.segment && g.start == r.base && g.len == len);
            if let Some(region) = region {
                add_devices(region, r.devices).map_err(|c| err(VtdErrorKind::TooMany(c)))?;
                continue;
            }
            return Err(err(VtdErrorKind::RegionOverlap { other: j }));
        }
        let overlap = fw.reserved[..i]
            .iter()
            .position(|o| o.base.0 <= r.limit.0 && r.base.0 <= o.limit.0);
        if let Some(other) = overlap {
            return Err(err(VtdErrorKind::RegionOverlap { other }));
        }
        let mut region = ReservedRegion {
            start: r.base,
            len,
            segment: r.segment,
            devices: heapless::Vec::new(),
            origin: Origin::Dmar,
        };
        add_devices(&mut region, r.devices).map_err(|c| err(VtdErrorKind::TooMany(c)))?;
        t.push_region(region)
            .map_err(|c| err(VtdErrorKind::TooMany(c)))?;
    }
    Ok(t)
}

fn binding(unit: UnitId, source: StreamSource, sid: StreamId) -> StreamBinding {
    StreamBinding {
        unit,
        source,
        sid,
        shared: false,
        raw_sid: false,
        origin: Origin::Dmar,
    }
}

/// `devices` added to `region`'s, each once.
pub(crate) fn add_devices(
    region: &mut ReservedRegion,
    devices: &[Bdf],
) -> Result<(), CapacityExceeded> {
    for bdf in devices {
        if !region.devices.contains(bdf) {
            region.devices.push(*bdf).map_err(|_| CapacityExceeded {
                what: "devices of one reserved memory region",
                max: MAX_REGION_DEVICES,
            })?;
        }
    }
    Ok(())
}
