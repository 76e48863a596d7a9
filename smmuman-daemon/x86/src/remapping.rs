//! What one VT-d remapping unit is given to look after, decided from the DMAR table (VT-d
//! chapter 8) and PCI enumeration before anything is programmed:
//!
//! * **Its devices**: every PCI function that [`Dmar::unit_for`] puts behind it (VT-d §8.3: a
//!   device scope that names it, else the segment's INCLUDE_PCI_ALL unit). QEMU 10's DRHD is
//!   not INCLUDE_PCI_ALL; its scopes list the root-bus endpoints one by one.
//! * **Its reserved regions** (RMRR, VT-d §8.4): memory that firmware says a device keeps
//!   reaching by DMA (a USB controller's legacy keyboard buffer, a GPU's stolen memory). Each
//!   is identity-mapped (IOVA = host address, VT-d §8.4 "must be identity mapped") for the
//!   devices it names, in one host-held domain ([`identity_map`]); those devices stay with the
//!   host (the manager does not offer them: a client's window would replace the identity map),
//!   and every region is handed to the manager as reserved memory, which no client may map.
//!
//! Plain data and an [`IommuBackend`]: host-tested with a built DMAR and a model IOMMU.

use crate::acpi::AcpiError;
use board_config::{Device, LookupError, Topology, UnitId};
use core::fmt;
use heapless::Vec;
use iommu_core::{Access, Bdf, DomainId, IommuBackend, Iova, PhysAddr, StreamId, PAGE_SIZE};
use smmuman_daemon::pci::{FunctionKind, PciFunction};
use smmuman_server::{DeviceEntry, DeviceId, PhysRange};
use vtd::dmar::{BridgeBuses, Dmar, PciSegment, ScopeType, UnitIndex};

/// Most PCI functions one unit's plan lists.
pub const MAX_DEVICES: usize = smmuman_server::config::MAX_DEVICES;
/// Most reserved regions one unit's plan lists.
pub const MAX_REGIONS: usize = 8;
/// Most devices one reserved region names.
pub const MAX_REGION_DEVICES: usize = 8;

/// One RMRR (VT-d §8.4) that names a device behind the unit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReservedRegion {
    /// Byte offset of the RMRR in the DMAR table (for messages).
    pub offset: usize,
    /// The region, `[base, limit]` as whole 4 KiB pages.
    pub range: PhysRange,
    /// The devices behind the unit it names (PCI endpoint scopes that resolved).
    pub devices: Vec<Bdf, MAX_REGION_DEVICES>,
}

/// What one unit looks after.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UnitPlan {
    /// Which DRHD.
    pub unit: UnitIndex,
    /// Its register base (DRHD Register Base Address, VT-d §8.3).
    pub register_base: PhysAddr,
    /// The PCI functions it translates, each with the requester id its DMA carries (the
    /// source-id of its fault records, VT-d §3.4.1).
    pub devices: Vec<(Bdf, StreamId), MAX_DEVICES>,
    /// The reserved regions of its devices.
    pub regions: Vec<ReservedRegion, MAX_REGIONS>,
}

/// What makes a plan impossible.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlanError {
    /// The DMAR table (checked when it was copied) failed to parse again.
    Dmar(AcpiError),
    /// No DRHD with that index.
    NoSuchUnit(UnitIndex),
    /// More functions behind the unit than [`MAX_DEVICES`].
    TooManyDevices,
    /// More RMRRs for the unit's devices than [`MAX_REGIONS`], or one names more than
    /// [`MAX_REGION_DEVICES`] of them.
    TooManyRegions {
        /// Byte offset of the RMRR that did not fit.
        offset: usize,
    },
    /// An RMRR whose base or limit + 1 is not 4 KiB aligned, or whose limit is below its base
    /// (VT-d §8.4: both bounds are page aligned).
    BadRegion {
        /// Byte offset of the RMRR.
        offset: usize,
    },
    /// The combined topology cannot say which unit translates a function.
    Lookup(LookupError),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dmar(e) => write!(f, "{e}"),
            Self::NoSuchUnit(u) => write!(f, "no DRHD number {u} in the DMAR table"),
            Self::TooManyDevices => write!(f, "more than {MAX_DEVICES} PCI functions behind one unit"),
            Self::TooManyRegions { offset } => write!(
                f,
                "RMRR at DMAR offset {offset:#x}: more reserved regions or devices than the image keeps"
            ),
            Self::BadRegion { offset } => write!(
                f,
                "RMRR at DMAR offset {offset:#x}: base/limit not page aligned or limit below base"
            ),
            Self::Lookup(e) => write!(f, "{e}"),
        }
    }
}

/// The bus numbers of the bridge `bdf`, from enumeration (None: not a bridge).
pub fn bridge_of(functions: &[PciFunction], bdf: Bdf) -> Option<BridgeBuses> {
    functions
        .iter()
        .find(|f| f.bdf == bdf)
        .and_then(|f| match f.kind {
            FunctionKind::Bridge {
                secondary,
                subordinate,
                ..
            } => Some(BridgeBuses {
                secondary,
                subordinate,
            }),
            _ => None,
        })
}

/// The unit that translates `bdf` (segment 0: the image enumerates segment 0 only).
pub fn unit_for(dmar: &Dmar<'_>, functions: &[PciFunction], bdf: Bdf) -> Option<UnitIndex> {
    dmar.unit_for(PciSegment(0), bdf, |b| bridge_of(functions, b))
}

/// What unit `unit` looks after among the enumerated `functions` of segment 0.
///
/// # Errors
/// [`PlanError`].
pub fn plan(
    dmar: &Dmar<'_>,
    unit: UnitIndex,
    functions: &[PciFunction],
) -> Result<UnitPlan, PlanError> {
    let drhd = dmar.unit(unit).ok_or(PlanError::NoSuchUnit(unit))?;
    let mut devices = Vec::new();
    for f in functions {
        if unit_for(dmar, functions, f.bdf) == Some(unit) {
            // The requester id its DMA carries: its own, or the bridge's that takes ownership
            // of its transactions (PCI Express to PCI/PCI-X Bridge Specification §2.3).
            let sid = StreamId(u32::from(f.dma_alias.rid()));
            devices
                .push((f.bdf, sid))
                .map_err(|_| PlanError::TooManyDevices)?;
        }
    }
    let mut regions: Vec<ReservedRegion, MAX_REGIONS> = Vec::new();
    for rmrr in dmar.reserved_regions() {
        if rmrr.segment != PciSegment(0) {
            continue;
        }
        let offset = rmrr.offset;
        let (base, limit) = (rmrr.base.0, rmrr.limit.0);
        let end = limit.checked_add(1).unwrap_or(0);
        if limit < base || base % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
            return Err(PlanError::BadRegion { offset });
        }
        let mut named: Vec<Bdf, MAX_REGION_DEVICES> = Vec::new();
        for scope in rmrr.scopes.iter() {
            if scope.scope_type != ScopeType::PciEndpoint {
                continue;
            }
            let secondary = |b: Bdf| bridge_of(functions, b).map(|x| x.secondary);
            let Ok(bdf) = scope.path.resolve(secondary) else {
                continue;
            };
            if devices.iter().any(|&(d, _)| d == bdf) && !named.contains(&bdf) {
                named
                    .push(bdf)
                    .map_err(|_| PlanError::TooManyRegions { offset })?;
            }
        }
        if named.is_empty() {
            continue;
        }
        regions
            .push(ReservedRegion {
                offset,
                range: PhysRange {
                    start: PhysAddr(base),
                    len: end.wrapping_sub(base),
                },
                devices: named,
            })
            .map_err(|_| PlanError::TooManyRegions { offset })?;
    }
    Ok(UnitPlan {
        unit,
        register_base: drhd.register_base,
        devices,
        regions,
    })
}

/// What the unit `driven` of the combined topology `t` (DRHD `unit` at `register_base`) looks
/// after among the enumerated `functions` of segment 0: the functions `t` binds to it, each
/// with its StreamID there (its requester ID), and **every** reserved region of `t` (the DMAR's
/// RMRRs and the config's `reserved` lines), each naming those of its functions that are
/// behind this unit (possibly none: the memory is still kept from every client).
///
/// # Errors
/// [`PlanError::Lookup`] when `t` cannot tell a function's unit, [`PlanError::TooManyDevices`],
/// [`PlanError::TooManyRegions`] (offset = the region's index).
pub fn plan_from_topology(
    t: &Topology,
    driven: UnitId,
    unit: UnitIndex,
    register_base: PhysAddr,
    functions: &[PciFunction],
) -> Result<UnitPlan, PlanError> {
    let mut devices = Vec::new();
    for f in functions {
        match t.sid_for(Device::pci(f.bdf)) {
            Ok(Some((u, sid))) if u == driven => devices
                .push((f.bdf, sid))
                .map_err(|_| PlanError::TooManyDevices)?,
            Ok(_) => {}
            Err(e) => return Err(PlanError::Lookup(e)),
        }
    }
    let mut regions: Vec<ReservedRegion, MAX_REGIONS> = Vec::new();
    for (offset, r) in t.reserved_regions().iter().enumerate() {
        let named = if r.segment == 0 {
            r.devices
                .iter()
                .copied()
                .filter(|b| devices.iter().any(|&(d, _)| d == *b))
                .collect()
        } else {
            Vec::new()
        };
        regions
            .push(ReservedRegion {
                offset,
                range: PhysRange {
                    start: r.start,
                    len: r.len,
                },
                devices: named,
            })
            .map_err(|_| PlanError::TooManyRegions { offset })?;
    }
    Ok(UnitPlan {
        unit,
        register_base,
        devices,
        regions,
    })
}

impl UnitPlan {
    /// Whether a reserved region names `bdf` (the host keeps it: [`identity_map`]).
    pub fn held(&self, bdf: Bdf) -> bool {
        self.regions.iter().any(|r| r.devices.contains(&bdf))
    }

    /// The devices the manager controls: every function behind the unit that no reserved
    /// region holds, selectable by PCI address only (VT-d has no raw-StreamID selection).
    pub fn manager_devices(&self) -> Vec<DeviceEntry, MAX_DEVICES> {
        self.devices
            .iter()
            .filter(|(bdf, _)| !self.held(*bdf))
            .map(|&(bdf, sid)| DeviceEntry {
                id: DeviceId::Pci(bdf),
                sid,
                raw_sid_allowed: false,
            })
            .collect()
    }

    /// The reserved regions' ranges, for the manager's reserved memory.
    pub fn reserved_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.regions.iter().map(|r| r.range)
    }
}

/// Identity-maps every reserved region of `plan` (IOVA = host address, read/write: VT-d §8.4)
/// in one domain the host holds, and attaches the devices the regions name to it: their DMA to
/// those regions keeps landing and everything else they do faults. Returns the domain (`None`
/// when no region names a device; a region that names none is not mapped).
///
/// Each region is mapped for every held device (one domain): a device named by one region
/// reaches the others' too, as Linux's identity domain for RMRR devices does.
///
/// # Errors
/// The backend's; what was done before stays (the host stops on this error).
pub fn identity_map<B: IommuBackend>(
    backend: &mut B,
    plan: &UnitPlan,
) -> Result<Option<DomainId>, B::Error> {
    if plan.regions.iter().all(|r| r.devices.is_empty()) {
        return Ok(None);
    }
    let domain = backend.create_domain()?;
    for r in plan.regions.iter().filter(|r| !r.devices.is_empty()) {
        backend.map(
            domain,
            Iova(r.range.start.0),
            r.range.start,
            r.range.len,
            Access::RW,
        )?;
    }
    for (bdf, sid) in &plan.devices {
        if plan.held(*bdf) {
            backend.attach(*sid, domain)?;
        }
    }
    Ok(Some(domain))
}
