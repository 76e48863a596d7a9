//! [`combine`]: the user's configuration applied to firmware's description, by the rules of
//! `docs/config.md` § Combining.
//!
//! * Units are matched by base address. A property the config states replaces firmware's
//!   (`override`) or must agree with it (`merge`); the others stay as firmware said. A unit
//!   only the config describes is added; a unit only firmware describes stays.
//! * A device the config binds loses every firmware statement about it (`override`): its
//!   `iommus` bindings are dropped and the PCI ranges around it no longer apply to it. In
//!   `merge` firmware's statement stays and the config's must agree with it.
//! * Reserved StreamIDs and static windows come from the config; every window's device must
//!   have a StreamID in the result.
//! * Two devices on one StreamID need `shared yes` on the config's side.
//! * `[vm]` sections (memory authority) come from the config only and pass through unchanged
//!   in both modes; their RAM must not overlap any unit's register frame or reserved region.
//! * VT-d units (from the DMAR or `[vtd]` sections) follow the same rules. A unit's kind and
//!   segment are part of what it is: a config that states them differently from firmware is
//!   refused in both modes. INCLUDE_PCI_ALL is a property like `coherent`; its whole-segment
//!   range is rebuilt from the result's units, after every other binding. Reserved memory
//!   regions from firmware stay; a config region with the same range replaces (`override`)
//!   or adds to (`merge`) its device list; one that overlaps it otherwise is refused.

use crate::device::{Device, StreamSource};
use crate::irq::{Irq, IrqName};
use crate::topology::{CapacityExceeded, Mode, Origin, StreamBinding, Topology, MAX_UNITS};
use crate::unit::{IommuKind, IommuUnit, Stated, UnitId, UnitName};
use crate::vm::{RamGrant, VmName};
use crate::vtd::{add_devices, is_include_all, whole_segment};
use core::fmt;
use iommu_core::{PhysAddr, StreamId};

/// Which firmware made a statement, for conflict messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FirmwareSource {
    /// The flattened device tree.
    DeviceTree,
    /// The ACPI DMAR table.
    Dmar,
}

impl FirmwareSource {
    /// The firmware behind `origin` (the device tree for anything but [`Origin::Dmar`]).
    pub const fn of(origin: Origin) -> Self {
        match origin {
            Origin::Dmar => Self::Dmar,
            Origin::DeviceTree | Origin::Config { .. } => Self::DeviceTree,
        }
    }
}

impl fmt::Display for FirmwareSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DeviceTree => "the device tree",
            Self::Dmar => "the DMAR",
        })
    }
}

/// A unit property's value, for conflict messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnitValue {
    /// Frame size.
    Size(u64),
    /// Coherency.
    Coherent(bool),
    /// VT-d INCLUDE_PCI_ALL.
    IncludePciAll(bool),
    /// An interrupt line.
    Irq(Option<Irq>),
}

impl fmt::Display for UnitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size(s) => write!(f, "{s:#x}"),
            Self::Coherent(c) | Self::IncludePciAll(c) => {
                f.write_str(if *c { "yes" } else { "no" })
            }
            Self::Irq(Some(irq)) => write!(f, "{irq}"),
            Self::Irq(None) => f.write_str("none"),
        }
    }
}

/// The config and firmware cannot be combined.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CombineError {
    /// `merge`: the config states a unit property differently from firmware.
    UnitConflict {
        /// The unit (config name).
        unit: UnitName,
        /// The property (`size`, `coherent`, `irq eventq`, ...).
        property: &'static str,
        /// Firmware's value.
        firmware: UnitValue,
        /// The config's value.
        config: UnitValue,
        /// The config line of the unit's section.
        line: u32,
        /// Which firmware stated it.
        source: FirmwareSource,
    },
    /// The config describes a unit at a firmware unit's base as another kind of IOMMU.
    KindConflict {
        /// The unit (config name).
        unit: UnitName,
        /// Firmware's kind.
        firmware: IommuKind,
        /// The config's kind.
        config: IommuKind,
        /// The config line of the unit's section.
        line: u32,
        /// Which firmware described it.
        source: FirmwareSource,
    },
    /// The config states another PCI segment for a VT-d unit than firmware (in either mode:
    /// every device firmware lists for the unit is of firmware's segment).
    SegmentConflict {
        /// The unit (config name).
        unit: UnitName,
        /// Firmware's segment.
        firmware: u16,
        /// The config's segment.
        config: u16,
        /// The config line of the unit's section.
        line: u32,
        /// Which firmware described it.
        source: FirmwareSource,
    },
    /// Two VT-d units of one segment both include every PCI function (VT-d §8.3: one per
    /// segment).
    TwoIncludeAll {
        /// The unit that came second.
        unit: UnitName,
        /// The other.
        other: UnitName,
        /// The segment.
        segment: u16,
    },
    /// A PCI function bound to a VT-d unit of another segment.
    WrongSegment {
        /// The function.
        device: Device,
        /// The unit.
        unit: UnitName,
        /// The unit's segment.
        segment: u16,
        /// Where the binding comes from.
        origin: Origin,
    },
    /// A platform device bound to a VT-d unit, which cannot tell platform devices apart.
    MmioOnVtd {
        /// The device.
        device: Device,
        /// The unit.
        unit: UnitName,
        /// Where the binding comes from.
        origin: Origin,
    },
    /// A config `reserved` region overlaps a firmware one without being the same range.
    RegionConflict {
        /// Start of the config's region.
        start: PhysAddr,
        /// Its length.
        len: u64,
        /// Start of firmware's.
        other: PhysAddr,
        /// Where firmware's comes from.
        other_origin: Origin,
        /// The config line.
        line: u32,
    },
    /// A VM's `ram` overlaps a reserved memory region, which no client may map.
    RamOverlapsRegion {
        /// The VM.
        vm: VmName,
        /// Start of its `ram`.
        start: PhysAddr,
        /// Its length.
        len: u64,
        /// Start of the region.
        region: PhysAddr,
        /// Where the region comes from.
        region_origin: Origin,
        /// The config line of the `ram` statement.
        line: u32,
    },
    /// `merge`: the config gives a device another StreamID (or unit) than firmware.
    StreamConflict {
        /// The device.
        device: Device,
        /// Firmware's unit and StreamID.
        firmware: (UnitName, StreamId),
        /// The config's.
        config: (UnitName, StreamId),
        /// The config line.
        line: u32,
        /// Which firmware stated it.
        source: FirmwareSource,
    },
    /// A unit of the config overlaps another unit's register frame.
    UnitsOverlap {
        /// The config's unit.
        unit: UnitName,
        /// The other unit.
        other: UnitName,
        /// The config line of the unit.
        line: u32,
    },
    /// The config names a unit like another unit of the result.
    DuplicateUnitName {
        /// The name.
        name: UnitName,
        /// The config line of the unit.
        line: u32,
    },
    /// A device of the config shares a StreamID with another device without `shared yes`.
    UndeclaredSharing {
        /// The config's device.
        device: Device,
        /// The other device.
        other: Device,
        /// Where the other device's binding comes from.
        other_origin: Origin,
        /// The unit.
        unit: UnitName,
        /// The StreamID.
        sid: StreamId,
        /// The config line.
        line: u32,
    },
    /// A static window for a device that has no StreamID.
    WindowDeviceUnbound {
        /// The device.
        device: Device,
        /// The config line of the window.
        line: u32,
    },
    /// A VM's `ram` overlaps an IOMMU unit's register frame (from firmware or the config):
    /// the VM's devices could be granted the SMMU's own registers.
    RamOverlapsUnit {
        /// The VM.
        vm: VmName,
        /// Start of its `ram`.
        start: PhysAddr,
        /// Its length.
        len: u64,
        /// The unit.
        unit: UnitName,
        /// The config line of the `ram` statement.
        line: u32,
    },
    /// Neither firmware nor config describes any IOMMU: nothing can be contained.
    NoUnits,
    /// A list is full.
    TooMany(CapacityExceeded),
}

impl fmt::Display for CombineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnitConflict {
                unit,
                property,
                firmware,
                config,
                line,
                source,
            } => write!(
                f,
                "merge: unit {unit} (config line {line}): {property} is {firmware} in {source} but {config} in the config"
            ),
            Self::KindConflict {
                unit,
                firmware,
                config,
                line,
                source,
            } => write!(
                f,
                "unit {unit} (config line {line}) is a {config} unit, but {source} has a {firmware} unit at that base"
            ),
            Self::SegmentConflict {
                unit,
                firmware,
                config,
                line,
                source,
            } => write!(
                f,
                "unit {unit} (config line {line}): segment {config:#x} in the config but {firmware:#x} in {source}; \
                 a unit's segment cannot be changed"
            ),
            Self::TwoIncludeAll {
                unit,
                other,
                segment,
            } => write!(
                f,
                "units {other} and {unit} both include every PCI function of segment {segment:04x} (include-pci-all); only one may"
            ),
            Self::WrongSegment {
                device,
                unit,
                segment,
                origin,
            } => write!(
                f,
                "{device} ({origin}) is bound to VT-d unit {unit}, which translates segment {segment:04x} only"
            ),
            Self::MmioOnVtd {
                device,
                unit,
                origin,
            } => write!(
                f,
                "{device} ({origin}) is bound to VT-d unit {unit}: a VT-d unit cannot tell platform devices apart: bind MMIO devices to an SMMU"
            ),
            Self::RegionConflict {
                start,
                len,
                other,
                other_origin,
                line,
            } => write!(
                f,
                "reserved {start} len {len:#x} (config line {line}) overlaps the reserved region at {other} of {other_origin} without being the same range"
            ),
            Self::RamOverlapsRegion {
                vm,
                start,
                len,
                region,
                region_origin,
                line,
            } => write!(
                f,
                "vm {vm}: ram {start} len {len:#x} (config line {line}) overlaps the reserved region at {region} ({region_origin}), which no client may map"
            ),
            Self::StreamConflict {
                device,
                firmware,
                config,
                line,
                source,
            } => write!(
                f,
                "merge: {device} has StreamID {} of {} in {source} but StreamID {} of {} on config line {line}",
                firmware.1, firmware.0, config.1, config.0
            ),
            Self::UnitsOverlap { unit, other, line } => write!(
                f,
                "unit {unit} (config line {line}) overlaps unit {other}"
            ),
            Self::DuplicateUnitName { name, line } => write!(
                f,
                "unit name {name} (config line {line}) is already the name of another unit"
            ),
            Self::UndeclaredSharing {
                device,
                other,
                other_origin,
                unit,
                sid,
                line,
            } => write!(
                f,
                "{device} (config line {line}) and {other} ({other_origin}) both use StreamID {sid} of {unit}; \
                 write \"shared yes\" if they really share it"
            ),
            Self::WindowDeviceUnbound { device, line } => write!(
                f,
                "window on config line {line}: {device} has no StreamID (neither firmware nor config binds it)"
            ),
            Self::RamOverlapsUnit {
                vm,
                start,
                len,
                unit,
                line,
            } => write!(
                f,
                "vm {vm}: ram {start} len {len:#x} (config line {line}) overlaps the register frame of unit {unit}"
            ),
            Self::NoUnits => f.write_str(
                "no IOMMU unit: neither the device tree nor the config describes one",
            ),
            Self::TooMany(c) => write!(f, "{c}"),
        }
    }
}

fn line_of(origin: Origin) -> u32 {
    origin.line()
}

/// `firmware` with `user`'s statements applied, in the user's mode. Without a config,
/// firmware's topology as it is.
///
/// # Errors
/// A [`CombineError`]; the result is then not to be used at all.
pub fn combine(firmware: &Topology, user: Option<&Topology>) -> Result<Topology, CombineError> {
    let Some(user) = user else {
        let out = firmware.clone();
        return if out.unit_count() == 0 {
            Err(CombineError::NoUnits)
        } else {
            Ok(out)
        };
    };
    let merge = user.mode() == Mode::Merge;
    let mut out = Topology::new();
    for (_, u) in firmware.units() {
        out.push_unit(u.clone()).map_err(CombineError::TooMany)?;
    }

    // Units: the config's unit i becomes the result's unit ids[i].
    let mut ids: heapless::Vec<UnitId, MAX_UNITS> = heapless::Vec::new();
    for (_, u) in user.units() {
        let line = line_of(u.origin);
        let id = match out.unit_by_base(u.base) {
            Some(id) => {
                if let Some(fw) = out.unit_mut(id) {
                    apply(fw, u, merge, line)?;
                }
                id
            }
            None => {
                if let Some((_, other)) = out.units().find(|(_, o)| o.overlaps(u)) {
                    return Err(CombineError::UnitsOverlap {
                        unit: u.name.clone(),
                        other: other.name.clone(),
                        line,
                    });
                }
                out.push_unit(u.clone()).map_err(CombineError::TooMany)?
            }
        };
        // `ids` has the capacity of `user.units`.
        let _ = ids.push(id);
    }
    for (id, u) in out.units() {
        // A size the config changed can make a firmware unit reach into another.
        if let Some((_, o)) = out.units().find(|(other, o)| *other < id && o.overlaps(u)) {
            // Name the config's unit first.
            let (unit, other) = match o.origin {
                Origin::Config { .. } => (o, u),
                Origin::DeviceTree | Origin::Dmar => (u, o),
            };
            return Err(CombineError::UnitsOverlap {
                unit: unit.name.clone(),
                other: other.name.clone(),
                line: line_of(unit.origin),
            });
        }
        if out.units().any(|(other, o)| other < id && o.name == u.name) {
            return Err(CombineError::DuplicateUnitName {
                name: u.name.clone(),
                line: line_of(u.origin),
            });
        }
    }
    check_include_all(&out)?;
    let map = |id: UnitId| ids.get(id.index()).copied().unwrap_or(id);
    let name = |t: &Topology, id: UnitId| t.unit(id).map(|u| u.name.clone()).unwrap_or_default();

    // Streams.
    let user_binds = |d: Device| {
        user.streams()
            .iter()
            .any(|b| b.source == StreamSource::Device(d))
    };
    // VT-d INCLUDE_PCI_ALL ranges are rebuilt from the result's units below.
    let mut include_all: heapless::Vec<(UnitId, Origin), MAX_UNITS> = heapless::Vec::new();
    for b in firmware.streams() {
        if is_include_all(firmware, b) {
            let _ = include_all.push((b.unit, b.origin));
            continue;
        }
        let replaced = matches!(b.source, StreamSource::Device(d) if user_binds(d));
        if merge || !replaced {
            out.push_stream(*b).map_err(CombineError::TooMany)?;
        }
    }
    for b in user.streams() {
        if is_include_all(user, b) {
            // The config's statement wins over firmware's (they are equal in merge mode).
            let unit = map(b.unit);
            include_all.retain(|(u, _)| *u != unit);
            let _ = include_all.push((unit, b.origin));
            continue;
        }
        let mut b = *b;
        b.unit = map(b.unit);
        if let (true, StreamSource::Device(device)) = (merge, b.source) {
            let mut agrees = false;
            let mut differs = None;
            for (fb, sid) in firmware.bindings_for(device) {
                if fb.unit == b.unit && sid == b.sid {
                    agrees = true;
                } else {
                    differs.get_or_insert((fb.unit, sid));
                }
            }
            match (agrees, differs) {
                (true, _) => continue, // Firmware already says so.
                (false, Some((unit, sid))) => {
                    let source = FirmwareSource::of(
                        firmware.unit(unit).map_or(Origin::DeviceTree, |u| u.origin),
                    );
                    return Err(CombineError::StreamConflict {
                        device,
                        firmware: (name(&out, unit), sid),
                        config: (name(&out, b.unit), b.sid),
                        line: line_of(b.origin),
                        source,
                    });
                }
                (false, None) => {}
            }
        }
        out.push_stream(b).map_err(CombineError::TooMany)?;
    }
    let whole: heapless::Vec<StreamBinding, MAX_UNITS> = out
        .units()
        .filter(|(_, u)| u.kind == IommuKind::Vtd && u.include_pci_all)
        .map(|(id, u)| StreamBinding {
            unit: id,
            source: StreamSource::PciRange(whole_segment(u.segment)),
            sid: StreamId(0),
            shared: false,
            raw_sid: false,
            origin: include_all
                .iter()
                .find(|(i, _)| *i == id)
                .map_or(u.origin, |(_, o)| *o),
        })
        .collect();
    for b in whole {
        out.push_stream(b).map_err(CombineError::TooMany)?;
    }
    check_vtd_bindings(&out)?;
    check_sharing(&out)?;

    for r in user.reserved() {
        let mut r = *r;
        r.unit = map(r.unit);
        out.push_reserved(r).map_err(CombineError::TooMany)?;
    }
    for w in user.windows() {
        if out.streams_of(w.device).next().is_none() {
            return Err(CombineError::WindowDeviceUnbound {
                device: w.device,
                line: line_of(w.origin),
            });
        }
        out.push_window(*w).map_err(CombineError::TooMany)?;
    }
    for r in firmware.reserved_regions() {
        out.push_region(r.clone()).map_err(CombineError::TooMany)?;
    }
    for r in user.reserved_regions() {
        let same = out.regions_mut().iter_mut().find(|g| {
            g.origin.is_firmware() && (g.segment, g.start, g.len) == (r.segment, r.start, r.len)
        });
        if let Some(g) = same {
            if !merge {
                g.devices.clear();
            }
            add_devices(g, &r.devices).map_err(CombineError::TooMany)?;
            g.origin = r.origin;
            continue;
        }
        if let Some(g) = out.region_overlapping(r.start, r.len) {
            return Err(CombineError::RegionConflict {
                start: r.start,
                len: r.len,
                other: g.start,
                other_origin: g.origin,
                line: line_of(r.origin),
            });
        }
        out.push_region(r.clone()).map_err(CombineError::TooMany)?;
    }
    // Memory authority is the host's alone: the config's [vm] sections, unchanged.
    for vm in user.vms() {
        for g in &vm.ram {
            if let Some(r) = out.region_overlapping(g.start, g.len) {
                return Err(CombineError::RamOverlapsRegion {
                    vm: vm.name.clone(),
                    start: g.start,
                    len: g.len,
                    region: r.start,
                    region_origin: r.origin,
                    line: g.line,
                });
            }
            if let Some((_, u)) = out.units().find(|(_, u)| frame_overlaps(u, g)) {
                return Err(CombineError::RamOverlapsUnit {
                    vm: vm.name.clone(),
                    start: g.start,
                    len: g.len,
                    unit: u.name.clone(),
                    line: g.line,
                });
            }
        }
        out.push_vm(vm.clone()).map_err(CombineError::TooMany)?;
    }
    out.set_fault_log(user.fault_log());
    let (total, per_vm) = user.mappings_stated();
    out.set_mappings(total, per_vm);
    out.set_mode(user.mode());
    if out.unit_count() == 0 {
        return Err(CombineError::NoUnits);
    }
    Ok(out)
}

/// Whether `g` has a byte in the register frame of `u`.
fn frame_overlaps(u: &IommuUnit, g: &RamGrant) -> bool {
    let end = |start: u64, len: u64| u128::from(start) + u128::from(len);
    u.size != 0
        && u128::from(u.base.0) < end(g.start.0, g.len)
        && u128::from(g.start.0) < end(u.base.0, u.size)
}

/// The config's statements about one unit applied to firmware's.
fn apply(fw: &mut IommuUnit, user: &IommuUnit, merge: bool, line: u32) -> Result<(), CombineError> {
    let source = FirmwareSource::of(fw.origin);
    let conflict = |property, firmware, config| CombineError::UnitConflict {
        unit: user.name.clone(),
        property,
        firmware,
        config,
        line,
        source,
    };
    if fw.kind != user.kind {
        return Err(CombineError::KindConflict {
            unit: user.name.clone(),
            firmware: fw.kind,
            config: user.kind,
            line,
            source,
        });
    }
    if user.stated.contains(Stated::SEGMENT) {
        if fw.stated.contains(Stated::SEGMENT) && fw.segment != user.segment {
            return Err(CombineError::SegmentConflict {
                unit: user.name.clone(),
                firmware: fw.segment,
                config: user.segment,
                line,
                source,
            });
        }
        fw.segment = user.segment;
    }
    if user.stated.contains(Stated::INCLUDE_PCI_ALL) {
        if both_stated(fw, user, merge, Stated::INCLUDE_PCI_ALL)
            && fw.include_pci_all != user.include_pci_all
        {
            return Err(conflict(
                "include-pci-all",
                UnitValue::IncludePciAll(fw.include_pci_all),
                UnitValue::IncludePciAll(user.include_pci_all),
            ));
        }
        fw.include_pci_all = user.include_pci_all;
    }
    let both = |flag: Stated| merge && fw.stated.contains(flag) && user.stated.contains(flag);
    if user.stated.contains(Stated::SIZE) {
        if both(Stated::SIZE) && fw.size != user.size {
            return Err(conflict(
                "size",
                UnitValue::Size(fw.size),
                UnitValue::Size(user.size),
            ));
        }
        fw.size = user.size;
    }
    if user.stated.contains(Stated::COHERENT) {
        if both(Stated::COHERENT) && fw.coherent != user.coherent {
            return Err(conflict(
                "coherent",
                UnitValue::Coherent(fw.coherent),
                UnitValue::Coherent(user.coherent),
            ));
        }
        fw.coherent = user.coherent;
    }
    // Firmware never states `unclaimed`: the config's always applies.
    if user.stated.contains(Stated::UNCLAIMED) {
        fw.unclaimed = user.unclaimed;
    }
    const IRQ_KEYS: [&str; 5] = [
        "irq eventq",
        "irq priq",
        "irq cmdq-sync",
        "irq gerror",
        "irq combined",
    ];
    for (name, property) in IrqName::ALL.into_iter().zip(IRQ_KEYS) {
        let flag = Stated::irq(name);
        if !user.stated.contains(flag) {
            continue;
        }
        let (old, new) = (fw.irqs.get(name), user.irqs.get(name));
        if both(flag) && old != new {
            return Err(conflict(property, UnitValue::Irq(old), UnitValue::Irq(new)));
        }
        fw.irqs.set(name, new);
    }
    fw.stated |= user.stated;
    fw.name = user.name.clone();
    fw.origin = user.origin;
    Ok(())
}

fn both_stated(fw: &IommuUnit, user: &IommuUnit, merge: bool, flag: Stated) -> bool {
    merge && fw.stated.contains(flag) && user.stated.contains(flag)
}

/// At most one INCLUDE_PCI_ALL VT-d unit per segment.
fn check_include_all(t: &Topology) -> Result<(), CombineError> {
    let all = |u: &IommuUnit| u.kind == IommuKind::Vtd && u.include_pci_all;
    for (id, u) in t.units().filter(|(_, u)| all(u)) {
        if let Some((_, o)) = t
            .units()
            .find(|(i, o)| *i < id && all(o) && o.segment == u.segment)
        {
            return Err(CombineError::TwoIncludeAll {
                unit: u.name.clone(),
                other: o.name.clone(),
                segment: u.segment,
            });
        }
    }
    Ok(())
}

/// Devices bound to a VT-d unit are PCI functions of its segment.
fn check_vtd_bindings(t: &Topology) -> Result<(), CombineError> {
    for b in t.streams() {
        let (Some(u), StreamSource::Device(device)) = (t.unit(b.unit), b.source) else {
            continue;
        };
        if u.kind != IommuKind::Vtd {
            continue;
        }
        match device {
            Device::Mmio(_) => {
                return Err(CombineError::MmioOnVtd {
                    device,
                    unit: u.name.clone(),
                    origin: b.origin,
                })
            }
            Device::Pci { segment, .. } if segment != u.segment => {
                return Err(CombineError::WrongSegment {
                    device,
                    unit: u.name.clone(),
                    segment: u.segment,
                    origin: b.origin,
                })
            }
            Device::Pci { .. } => {}
        }
    }
    Ok(())
}

/// Every config binding without `shared yes` must be alone on its `(unit, StreamID)` among
/// bindings that name devices.
fn check_sharing(t: &Topology) -> Result<(), CombineError> {
    for b in t.streams() {
        let (StreamSource::Device(device), Origin::Config { line }, false) =
            (b.source, b.origin, b.shared)
        else {
            continue;
        };
        let other = t.streams().iter().find(|o| {
            o.unit == b.unit
                && o.sid == b.sid
                && matches!(o.source, StreamSource::Device(d) if d != device)
        });
        if let Some(o) = other {
            let StreamSource::Device(other_device) = o.source else {
                continue;
            };
            return Err(CombineError::UndeclaredSharing {
                device,
                other: other_device,
                other_origin: o.origin,
                unit: t.unit(b.unit).map(|u| u.name.clone()).unwrap_or_default(),
                sid: b.sid,
                line,
            });
        }
    }
    Ok(())
}
