//! [`Topology`]: the IOMMU units of a board and which StreamID each DMA master uses, as one
//! source (device tree, config) describes it or as [`crate::combine()`] makes of both.

use crate::device::{Device, StreamSource};
use crate::unit::{IommuUnit, UnitId};
use crate::vm::{VmAssignment, MAX_VMS};
use core::fmt;
use iommu_core::{Access, Bdf, Iova, PhysAddr, StreamId};

/// Most units a topology holds.
pub const MAX_UNITS: usize = 8;
/// Most stream bindings (devices and PCI ranges) a topology holds.
pub const MAX_BINDINGS: usize = 64;
/// Most reserved StreamID ranges a topology holds.
pub const MAX_RESERVED: usize = 16;
/// Most static windows a topology holds.
pub const MAX_WINDOWS: usize = 16;
/// Most reserved memory regions (DMAR RMRRs, config `reserved` lines) a topology holds.
pub const MAX_REGIONS: usize = 8;
/// Most devices one reserved memory region names.
pub const MAX_REGION_DEVICES: usize = 8;
/// Fault-log size (records per ledger) when the config does not set one: what the manager's
/// storage holds (`smmuman_server::config::FAULT_LOG_DEPTH`).
pub const DEFAULT_FAULT_LOG: u32 = 32;
/// Largest fault-log size a config may ask for.
pub const MAX_FAULT_LOG: u32 = 0x10_0000;
/// Mappings the manager holds in all VMs when the config does not say (`mappings`): the
/// daemon's heap is sized from it (512 bytes a mapping, 64 MiB for this default).
pub const DEFAULT_MAPPINGS: u32 = 131_072;
/// Mappings one VM object may hold when the config does not say (`mappings-per-vm`).
pub const DEFAULT_MAPPINGS_PER_VM: u32 = 65_536;
/// Largest `mappings` / `mappings-per-vm` a config may ask for.
pub const MAX_MAPPINGS: u32 = 0x100_0000;

/// Where a statement came from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Origin {
    /// Firmware: the flattened device tree.
    DeviceTree,
    /// Firmware: the ACPI DMAR table (VT-d chapter 8), converted by [`crate::vtd`].
    Dmar,
    /// The user configuration, at this line (1-based).
    Config {
        /// Line of the statement.
        line: u32,
    },
}

impl Origin {
    /// Whether firmware (device tree or DMAR) made the statement.
    pub const fn is_firmware(self) -> bool {
        matches!(self, Self::DeviceTree | Self::Dmar)
    }

    /// The config line of the statement, or 0 for firmware's.
    pub const fn line(self) -> u32 {
        match self {
            Self::Config { line } => line,
            Self::DeviceTree | Self::Dmar => 0,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceTree => f.write_str("the device tree"),
            Self::Dmar => f.write_str("the DMAR"),
            Self::Config { line } => write!(f, "config line {line}"),
        }
    }
}

/// How a user configuration combines with firmware's description (see `docs/config.md`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Mode {
    /// What the config states replaces what firmware states about the same unit property or
    /// device. The default.
    #[default]
    Override,
    /// Firmware's statements stay; the config may only add to them, and a contradiction is an
    /// error.
    Merge,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Override => "override",
            Self::Merge => "merge",
        })
    }
}

/// "This device (or requester-ID range) reaches this unit with this StreamID."
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StreamBinding {
    /// The unit.
    pub unit: UnitId,
    /// The device or range.
    pub source: StreamSource,
    /// The StreamID (of `rid_base` for a range).
    pub sid: StreamId,
    /// The config declared that other devices use this StreamID too (`shared yes`).
    pub shared: bool,
    /// Clients may select the device by its raw StreamID (`raw-sid yes`; never from firmware).
    pub raw_sid: bool,
    /// Where it was stated.
    pub origin: Origin,
}

/// StreamIDs `first..=last` of `unit` belong to the system: no client may ever claim them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ReservedSids {
    /// The unit.
    pub unit: UnitId,
    /// First reserved StreamID.
    pub first: StreamId,
    /// Last reserved StreamID (inclusive).
    pub last: StreamId,
    /// Where it was stated.
    pub origin: Origin,
}

/// A mapping the daemon installs itself, for a device no client will program.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StaticWindow {
    /// The device.
    pub device: Device,
    /// First I/O virtual address (4 KiB aligned).
    pub iova: Iova,
    /// Physical address it maps to (4 KiB aligned).
    pub pa: PhysAddr,
    /// Length in bytes (a non-zero multiple of 4 KiB).
    pub len: u64,
    /// What the device may do.
    pub access: Access,
    /// Where it was stated.
    pub origin: Origin,
}

/// Host-physical memory that some PCI functions must keep reaching by DMA (a DMAR RMRR,
/// VT-d §8.4, or a config `reserved` line): the daemon maps it identity (IOVA = PA) for each
/// of them, and no client may map it (a VM's `ram` must not overlap it).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ReservedRegion {
    /// First byte (4 KiB aligned).
    pub start: PhysAddr,
    /// Length in bytes (a non-zero multiple of 4 KiB; `start + len - 1` does not wrap).
    pub len: u64,
    /// PCI segment of the devices.
    pub segment: u16,
    /// The functions that use it (at least one, each once).
    pub devices: heapless::Vec<Bdf, MAX_REGION_DEVICES>,
    /// Where it was stated.
    pub origin: Origin,
}

impl ReservedRegion {
    /// The last byte, `start + len - 1`.
    pub fn last(&self) -> u64 {
        self.start.0.saturating_add(self.len.saturating_sub(1))
    }

    /// Whether `start .. start + len` shares a byte with the region (`len` 0: never).
    pub fn overlaps(&self, start: PhysAddr, len: u64) -> bool {
        len != 0
            && u128::from(self.start.0) < u128::from(start.0) + u128::from(len)
            && u128::from(start.0) < u128::from(self.start.0) + u128::from(self.len)
    }

    /// Whether `device` is one of the functions that use the region.
    pub fn serves(&self, device: Device) -> bool {
        matches!(device, Device::Pci { segment, bdf } if segment == self.segment && self.devices.contains(&bdf))
    }
}

/// A bounded list was full.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CapacityExceeded {
    /// What the list holds ("units", "stream bindings", ...).
    pub what: &'static str,
    /// Its capacity.
    pub max: usize,
}

impl fmt::Display for CapacityExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "more than {} {} (the most smmuman keeps)",
            self.max, self.what
        )
    }
}

/// A lookup found something the caller must not guess about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LookupError {
    /// The device has several StreamIDs: use [`Topology::streams_of`].
    SeveralStreams {
        /// The device.
        device: Device,
        /// How many.
        count: usize,
    },
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SeveralStreams { device, count } => {
                write!(f, "{device} has {count} StreamIDs, not one")
            }
        }
    }
}

/// A StreamID does not fit in the unit's StreamID width (IHI 0070 §6.3.2 IDR1.SIDSIZE), which
/// only the running hardware can tell.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SidRangeError {
    /// The unit.
    pub unit: UnitId,
    /// The largest StreamID the statement needs.
    pub sid: u64,
    /// The unit's StreamID width.
    pub sid_bits: u8,
    /// Where the statement came from.
    pub origin: Origin,
}

impl fmt::Display for SidRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: StreamID {:#x} ({}) does not fit the unit's {} StreamID bits",
            self.unit, self.sid, self.origin, self.sid_bits
        )
    }
}

/// Devices that share one StreamID of one unit: the SMMU cannot tell them apart, so the
/// manager must treat them as one (assign them together, to one domain).
#[derive(Clone, Copy, Debug)]
pub struct SidGroup<'t> {
    /// The unit.
    pub unit: UnitId,
    /// The shared StreamID.
    pub sid: StreamId,
    topology: &'t Topology,
}

impl<'t> SidGroup<'t> {
    /// The devices explicitly bound to this StreamID, in statement order.
    pub fn members(&self) -> impl Iterator<Item = Device> + 't {
        let (unit, sid) = (self.unit, self.sid);
        self.topology
            .streams
            .iter()
            .filter(move |b| b.unit == unit && b.sid == sid)
            .filter_map(|b| match b.source {
                StreamSource::Device(d) => Some(d),
                StreamSource::PciRange(_) => None,
            })
    }
}

/// IOMMU units and who uses which StreamID.
///
/// Built by [`crate::dt::from_fdt`], [`crate::config::parse`] and [`crate::combine()`]; every
/// [`UnitId`] inside refers to one of its units.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Topology {
    units: heapless::Vec<IommuUnit, MAX_UNITS>,
    streams: heapless::Vec<StreamBinding, MAX_BINDINGS>,
    reserved: heapless::Vec<ReservedSids, MAX_RESERVED>,
    windows: heapless::Vec<StaticWindow, MAX_WINDOWS>,
    regions: heapless::Vec<ReservedRegion, MAX_REGIONS>,
    vms: heapless::Vec<VmAssignment, MAX_VMS>,
    fault_log: Option<u32>,
    mappings: Option<u32>,
    mappings_per_vm: Option<u32>,
    mode: Mode,
}

impl Topology {
    /// A topology with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push_unit(&mut self, unit: IommuUnit) -> Result<UnitId, CapacityExceeded> {
        let id = UnitId(self.units.len() as u8);
        self.units.push(unit).map_err(|_| CapacityExceeded {
            what: "IOMMU units",
            max: MAX_UNITS,
        })?;
        Ok(id)
    }

    pub(crate) fn unit_mut(&mut self, id: UnitId) -> Option<&mut IommuUnit> {
        self.units.get_mut(id.index())
    }

    pub(crate) fn push_stream(&mut self, b: StreamBinding) -> Result<(), CapacityExceeded> {
        self.streams.push(b).map_err(|_| CapacityExceeded {
            what: "stream bindings",
            max: MAX_BINDINGS,
        })
    }

    pub(crate) fn push_reserved(&mut self, r: ReservedSids) -> Result<(), CapacityExceeded> {
        self.reserved.push(r).map_err(|_| CapacityExceeded {
            what: "reserved StreamID ranges",
            max: MAX_RESERVED,
        })
    }

    pub(crate) fn push_window(&mut self, w: StaticWindow) -> Result<(), CapacityExceeded> {
        self.windows.push(w).map_err(|_| CapacityExceeded {
            what: "static windows",
            max: MAX_WINDOWS,
        })
    }

    pub(crate) fn push_region(&mut self, r: ReservedRegion) -> Result<(), CapacityExceeded> {
        self.regions.push(r).map_err(|_| CapacityExceeded {
            what: "reserved memory regions",
            max: MAX_REGIONS,
        })
    }

    pub(crate) fn regions_mut(&mut self) -> &mut [ReservedRegion] {
        &mut self.regions
    }

    pub(crate) fn push_vm(&mut self, vm: VmAssignment) -> Result<(), CapacityExceeded> {
        self.vms.push(vm).map_err(|_| CapacityExceeded {
            what: "[vm] sections",
            max: MAX_VMS,
        })
    }

    pub(crate) fn set_mappings(&mut self, total: Option<u32>, per_vm: Option<u32>) {
        self.mappings = total;
        self.mappings_per_vm = per_vm;
    }

    /// The config's `mappings` and `mappings-per-vm`, where it set them.
    pub fn mappings_stated(&self) -> (Option<u32>, Option<u32>) {
        (self.mappings, self.mappings_per_vm)
    }

    /// Most mappings the manager holds in all VM objects: the config's `mappings`, else
    /// [`DEFAULT_MAPPINGS`]. The daemon sizes its heap from it, so the worst case is known at
    /// boot.
    pub fn mappings(&self) -> u32 {
        self.mappings.unwrap_or(DEFAULT_MAPPINGS)
    }

    /// Most mappings one VM object holds: the config's `mappings-per-vm`, else
    /// [`DEFAULT_MAPPINGS_PER_VM`] (never more than [`Topology::mappings`]).
    pub fn mappings_per_vm(&self) -> u32 {
        self.mappings_per_vm
            .unwrap_or(DEFAULT_MAPPINGS_PER_VM)
            .min(self.mappings())
    }

    pub(crate) fn set_fault_log(&mut self, records: Option<u32>) {
        self.fault_log = records;
    }

    pub(crate) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// The units with their ids.
    pub fn units(&self) -> impl Iterator<Item = (UnitId, &IommuUnit)> + '_ {
        self.units
            .iter()
            .enumerate()
            .map(|(i, u)| (UnitId(i as u8), u))
    }

    /// How many units there are.
    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    /// The unit `id`.
    pub fn unit(&self, id: UnitId) -> Option<&IommuUnit> {
        self.units.get(id.index())
    }

    /// The unit whose register frame starts at `base`.
    pub fn unit_by_base(&self, base: PhysAddr) -> Option<UnitId> {
        self.units().find(|(_, u)| u.base == base).map(|(id, _)| id)
    }

    /// The unit called `name`.
    pub fn unit_by_name(&self, name: &str) -> Option<UnitId> {
        self.units()
            .find(|(_, u)| u.name.as_str() == name)
            .map(|(id, _)| id)
    }

    /// Every stream binding, in statement order.
    pub fn streams(&self) -> &[StreamBinding] {
        &self.streams
    }

    /// Every reserved StreamID range.
    pub fn reserved(&self) -> &[ReservedSids] {
        &self.reserved
    }

    /// Every static window.
    pub fn windows(&self) -> &[StaticWindow] {
        &self.windows
    }

    /// The static windows of `device`.
    pub fn windows_of(&self, device: Device) -> impl Iterator<Item = &StaticWindow> + '_ {
        self.windows.iter().filter(move |w| w.device == device)
    }

    /// Every reserved memory region (DMAR RMRRs and config `reserved` lines): memory the named
    /// functions keep reaching, identity-mapped, that no client may map.
    pub fn reserved_regions(&self) -> &[ReservedRegion] {
        &self.regions
    }

    /// The reserved memory regions `device` must keep reaching.
    pub fn regions_of(&self, device: Device) -> impl Iterator<Item = &ReservedRegion> + '_ {
        self.regions.iter().filter(move |r| r.serves(device))
    }

    /// The first reserved memory region that shares a byte with `start .. start + len`.
    pub fn region_overlapping(&self, start: PhysAddr, len: u64) -> Option<&ReservedRegion> {
        self.regions.iter().find(|r| r.overlaps(start, len))
    }

    /// The VMs the host assigns memory to (`[vm NAME]` sections; config only), in file order.
    pub fn vms(&self) -> &[VmAssignment] {
        &self.vms
    }

    /// The VM called `name`, if the config has a `[vm name]` section.
    pub fn vm(&self, name: &str) -> Option<&VmAssignment> {
        self.vms.iter().find(|v| v.name == name)
    }

    /// The fault-log size the config set, if it set one.
    pub fn fault_log(&self) -> Option<u32> {
        self.fault_log
    }

    /// How many fault records the manager keeps: the config's `fault-log`, else
    /// [`DEFAULT_FAULT_LOG`].
    pub fn fault_log_size(&self) -> u32 {
        self.fault_log.unwrap_or(DEFAULT_FAULT_LOG)
    }

    /// `override` or `merge`, as the config asked (meaningless for a firmware topology).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The bindings that give `device` its StreamIDs, each with the StreamID it yields.
    ///
    /// Bindings that name the device itself win; only when there are none does the first
    /// PCI range covering a PCI device's requester ID apply (device-tree order, as Linux's
    /// `of_map_id`). That precedence is what lets a config statement about one function
    /// override the firmware range around it.
    pub fn bindings_for(
        &self,
        device: Device,
    ) -> impl Iterator<Item = (&StreamBinding, StreamId)> + '_ {
        let has_own = self
            .streams
            .iter()
            .any(|b| b.source == StreamSource::Device(device));
        let own = self
            .streams
            .iter()
            .filter(move |b| has_own && b.source == StreamSource::Device(device))
            .map(|b| (b, b.sid));
        let range = if has_own {
            None
        } else {
            match device {
                Device::Pci { segment, bdf } => self.streams.iter().find_map(|b| match b.source {
                    StreamSource::PciRange(r) => r.translate(segment, bdf, b.sid).map(|s| (b, s)),
                    StreamSource::Device(_) => None,
                }),
                Device::Mmio(_) => None,
            }
        };
        own.chain(range)
    }

    /// Every `(unit, StreamID)` of `device` (several for a platform device whose `iommus`
    /// lists several).
    pub fn streams_of(&self, device: Device) -> impl Iterator<Item = (UnitId, StreamId)> + '_ {
        self.bindings_for(device).map(|(b, sid)| (b.unit, sid))
    }

    /// The unit and StreamID of `device`, or `None` when no IOMMU described here sees it.
    ///
    /// # Errors
    /// [`LookupError::SeveralStreams`] when the device has more than one StreamID.
    pub fn sid_for(&self, device: Device) -> Result<Option<(UnitId, StreamId)>, LookupError> {
        let mut it = self.streams_of(device);
        let first = it.next();
        let more = it.count();
        if more > 0 {
            return Err(LookupError::SeveralStreams {
                device,
                count: more + 1,
            });
        }
        Ok(first)
    }

    /// The groups of devices bound to one `(unit, StreamID)`, each once, in statement order.
    ///
    /// Only bindings that name devices count. Functions behind a PCI range that share a
    /// StreamID (an `iommu-map-mask`) are found by comparing [`Topology::sid_for`] of the
    /// functions PCI enumeration finds.
    pub fn groups(&self) -> impl Iterator<Item = SidGroup<'_>> + '_ {
        let key = |b: &StreamBinding| match b.source {
            StreamSource::Device(_) => Some((b.unit, b.sid)),
            StreamSource::PciRange(_) => None,
        };
        self.streams.iter().enumerate().filter_map(move |(i, b)| {
            let k = key(b)?;
            let first = !self.streams[..i].iter().any(|o| key(o) == Some(k));
            let more = self.streams[i + 1..].iter().any(|o| key(o) == Some(k));
            (first && more).then_some(SidGroup {
                unit: k.0,
                sid: k.1,
                topology: self,
            })
        })
    }

    /// Whether `sid` of `unit` is reserved for the system.
    pub fn is_reserved(&self, unit: UnitId, sid: StreamId) -> bool {
        self.reserved
            .iter()
            .any(|r| r.unit == unit && r.first <= sid && sid <= r.last)
    }

    /// Checks every StreamID of `unit` against the unit's StreamID width, which the driver
    /// reads from IDR1.SIDSIZE (IHI 0070 §6.3.2) once the unit is probed.
    ///
    /// # Errors
    /// [`SidRangeError`] for the first binding or reservation that needs a larger StreamID.
    pub fn validate_against(&self, unit: UnitId, sid_bits: u8) -> Result<(), SidRangeError> {
        let limit = 1u64.checked_shl(u32::from(sid_bits)).unwrap_or(u64::MAX);
        let too_big = |sid: u64, origin| {
            (sid >= limit).then_some(SidRangeError {
                unit,
                sid,
                sid_bits,
                origin,
            })
        };
        for b in self.streams.iter().filter(|b| b.unit == unit) {
            let last = match b.source {
                StreamSource::Device(_) => u64::from(b.sid.0),
                StreamSource::PciRange(r) => u64::from(b.sid.0) + u64::from(r.len) - 1,
            };
            if let Some(e) = too_big(last, b.origin) {
                return Err(e);
            }
        }
        for r in self.reserved.iter().filter(|r| r.unit == unit) {
            if let Some(e) = too_big(u64::from(r.last.0), r.origin) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn unit_label(&self, id: UnitId) -> &str {
        self.unit(id).map_or("?", |u| u.name.as_str())
    }
}

impl fmt::Display for Topology {
    /// One line per item, for the daemon's start-up log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "mode {}, fault log {} records",
            self.mode,
            self.fault_log_size()
        )?;
        for (id, u) in self.units() {
            writeln!(f, "{id}: {u} [{}]", u.origin)?;
        }
        for b in &self.streams {
            writeln!(
                f,
                "stream: {} -> {} sid {}{}{} [{}]",
                b.source,
                self.unit_label(b.unit),
                b.sid,
                if matches!(b.source, StreamSource::PciRange(_)) {
                    ".."
                } else {
                    ""
                },
                if b.shared { " shared" } else { "" },
                b.origin
            )?;
        }
        for r in &self.reserved {
            writeln!(
                f,
                "reserved: {} sid {}..={} [{}]",
                self.unit_label(r.unit),
                r.first,
                r.last,
                r.origin
            )?;
        }
        for w in &self.windows {
            writeln!(
                f,
                "window: {} iova {} -> pa {} len {:#x} {:?} [{}]",
                w.device, w.iova, w.pa, w.len, w.access, w.origin
            )?;
        }
        for r in &self.regions {
            write!(
                f,
                "reserved memory: {} len {:#x} pci {:04x}:",
                r.start, r.len, r.segment
            )?;
            for (i, bdf) in r.devices.iter().enumerate() {
                write!(f, "{}{bdf}", if i == 0 { "" } else { "," })?;
            }
            writeln!(f, " [{}]", r.origin)?;
        }
        for v in &self.vms {
            writeln!(f, "{v} [config line {}]", v.line)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::PciRange;
    use crate::unit::unit_name;
    use iommu_core::Bdf;

    fn pci(bus: u8, dev: u8, func: u8) -> Device {
        Device::pci(Bdf::new(bus, dev, func).unwrap())
    }

    fn topology() -> Topology {
        let mut t = Topology::new();
        let u = t
            .push_unit(IommuUnit::smmu_v3(
                unit_name("smmu0"),
                PhysAddr(0x0905_0000),
                Origin::DeviceTree,
            ))
            .unwrap();
        t.push_stream(StreamBinding {
            unit: u,
            source: StreamSource::PciRange(PciRange {
                segment: 0,
                rid_base: 0,
                len: 0x10000,
                mask: u32::MAX,
            }),
            sid: StreamId(0),
            shared: false,
            raw_sid: false,
            origin: Origin::DeviceTree,
        })
        .unwrap();
        t
    }

    fn bind(t: &mut Topology, device: Device, sid: u32) {
        t.push_stream(StreamBinding {
            unit: UnitId(0),
            source: StreamSource::Device(device),
            sid: StreamId(sid),
            shared: true,
            raw_sid: false,
            origin: Origin::Config { line: 1 },
        })
        .unwrap();
    }

    #[test]
    fn a_range_answers_for_any_function_it_covers() {
        let t = topology();
        assert_eq!(t.sid_for(pci(0, 1, 0)), Ok(Some((UnitId(0), StreamId(8)))));
        assert_eq!(
            t.sid_for(pci(0xff, 0x1f, 7)),
            Ok(Some((UnitId(0), StreamId(0xffff))))
        );
        assert_eq!(t.sid_for(Device::Mmio(PhysAddr(0x1000))), Ok(None));
        let other_segment = Device::Pci {
            segment: 1,
            bdf: Bdf::new(0, 1, 0).unwrap(),
        };
        assert_eq!(t.sid_for(other_segment), Ok(None));
    }

    #[test]
    fn a_device_statement_shadows_the_range_around_it() {
        let mut t = topology();
        bind(&mut t, pci(1, 1, 0), 0x100);
        assert_eq!(
            t.sid_for(pci(1, 1, 0)),
            Ok(Some((UnitId(0), StreamId(0x100))))
        );
        assert_eq!(
            t.sid_for(pci(1, 2, 0)),
            Ok(Some((UnitId(0), StreamId(0x110)))),
            "its neighbour still follows the range"
        );
    }

    #[test]
    fn several_streams_are_reported_not_guessed() {
        let mut t = topology();
        let dev = Device::Mmio(PhysAddr(0x2b50_0000));
        bind(&mut t, dev, 1);
        bind(&mut t, dev, 2);
        assert_eq!(
            t.sid_for(dev),
            Err(LookupError::SeveralStreams {
                device: dev,
                count: 2
            })
        );
        let all: heapless::Vec<_, 4> = t.streams_of(dev).collect();
        assert_eq!(
            all.as_slice(),
            &[(UnitId(0), StreamId(1)), (UnitId(0), StreamId(2))]
        );
    }

    #[test]
    fn groups_list_each_shared_stream_once_with_its_members() {
        let mut t = topology();
        bind(&mut t, pci(1, 1, 0), 0x100);
        bind(&mut t, pci(1, 2, 0), 0x100);
        bind(&mut t, pci(1, 3, 0), 0x200);
        bind(&mut t, pci(1, 4, 0), 0x100);
        let groups: heapless::Vec<_, 4> = t.groups().collect();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].sid, StreamId(0x100));
        let members: heapless::Vec<_, 4> = groups[0].members().collect();
        assert_eq!(
            members.as_slice(),
            &[pci(1, 1, 0), pci(1, 2, 0), pci(1, 4, 0)]
        );
    }

    #[test]
    fn validate_against_checks_the_last_stream_id_of_a_range() {
        let t = topology();
        assert_eq!(t.validate_against(UnitId(0), 16), Ok(()));
        assert_eq!(
            t.validate_against(UnitId(0), 8),
            Err(SidRangeError {
                unit: UnitId(0),
                sid: 0xffff,
                sid_bits: 8,
                origin: Origin::DeviceTree
            })
        );
    }

    #[test]
    fn reserved_ranges_are_inclusive() {
        let mut t = topology();
        t.push_reserved(ReservedSids {
            unit: UnitId(0),
            first: StreamId(0),
            last: StreamId(7),
            origin: Origin::Config { line: 3 },
        })
        .unwrap();
        assert!(t.is_reserved(UnitId(0), StreamId(7)));
        assert!(!t.is_reserved(UnitId(0), StreamId(8)));
        assert_eq!(
            t.validate_against(UnitId(0), 2).unwrap_err().origin,
            Origin::DeviceTree,
            "the range binding is checked first"
        );
    }

    #[test]
    fn a_topology_fits_comfortably_on_a_boot_stack() {
        // docs/config.md says "about 7 KiB" (2.5 KiB of it [vm] sections); the daemon's boot
        // stack is 256 KiB.
        let size = core::mem::size_of::<Topology>();
        assert!((6 * 1024..=8 * 1024).contains(&size), "{size} bytes");
    }

    #[test]
    fn capacity_is_an_error_not_a_panic() {
        let mut t = Topology::new();
        for i in 0..MAX_UNITS {
            t.push_unit(IommuUnit::smmu_v3(
                unit_name("u"),
                PhysAddr(i as u64 * 0x10_0000),
                Origin::DeviceTree,
            ))
            .unwrap();
        }
        let err = t
            .push_unit(IommuUnit::smmu_v3(
                unit_name("u"),
                PhysAddr(0xf000_0000),
                Origin::DeviceTree,
            ))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "more than 8 IOMMU units (the most smmuman keeps)"
        );
    }
}
