//! The board as the daemon uses it: the ACPI DMAR (VT-d chapter 8) converted into
//! board-config's plain firmware view ([`firmware_vtd`]: every device scope resolved against
//! the enumerated, bus-numbered PCI hierarchy), turned into a [`Topology`]
//! (`board_config::vtd::from_dmar`) and combined with the user's `smmuman.conf`
//! (`board_config::combine`, `override` by default, `mode merge` on request): the same rules
//! the aarch64 daemon applies to the device tree ([`load`]).
//!
//! Scopes that do not resolve are left out, never guessed: a path through a bridge that
//! enumeration did not find (nothing is behind it), a sub-hierarchy scope whose bridge is
//! absent. A root-bus path always resolves (VT-d §8.3.1: one entry, the device itself).

use crate::remapping::bridge_of;
use board_config::combine::{combine, CombineError};
use board_config::config::{parse_bytes, ConfigError};
use board_config::vtd::{
    from_dmar, FirmwareBridge, FirmwareRegion, FirmwareUnit, FirmwareVtd, VtdError,
};
use board_config::{ConfigFile, Topology, MAX_REGION_DEVICES, MAX_RESERVED, MAX_UNITS};
use core::fmt;
use heapless::Vec;
use iommu_core::{Bdf, PhysAddr};
use smmuman_daemon::pci::PciFunction;
use vtd::dmar::{DeviceScopes, Dmar, ScopeType};

/// Most PCI endpoint scopes of one DRHD kept.
pub const MAX_ENDPOINTS: usize = 64;
/// Most PCI sub-hierarchy scopes of one DRHD kept.
pub const MAX_BRIDGES: usize = 16;

/// Why the board cannot be learned; the manager must not start.
#[derive(Clone, PartialEq, Debug)]
pub enum LoadError<'a> {
    /// The DMAR lists more than this image keeps (what, and the limit).
    TooMany(&'static str, usize),
    /// The DMAR contradicts itself.
    Dmar(VtdError),
    /// The config file is wrong (`file:line:col: ...`).
    Config(ConfigError<'a>),
    /// The config cannot be combined with the DMAR.
    Combine(CombineError),
}

impl fmt::Display for LoadError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany(what, limit) => {
                write!(
                    f,
                    "DMAR: more than {limit} {what} (the image keeps no more)"
                )
            }
            Self::Dmar(e) => write!(f, "{e}"),
            // Starts with `file:line:col:` as every config error does.
            Self::Config(e) => write!(f, "{e}"),
            Self::Combine(e) => write!(f, "DMAR + config: {e}"),
        }
    }
}

/// The PCI functions of `scopes` of type `kind` that resolve on the enumerated bus.
fn resolved<const N: usize>(
    scopes: DeviceScopes<'_>,
    kind: ScopeType,
    functions: &[PciFunction],
    what: &'static str,
) -> Result<Vec<Bdf, N>, LoadError<'static>> {
    let mut out = Vec::new();
    for s in scopes.iter().filter(|s| s.scope_type == kind) {
        let secondary = |b: Bdf| bridge_of(functions, b).map(|x| x.secondary);
        if let Ok(bdf) = s.path.resolve(secondary) {
            if !out.contains(&bdf) {
                out.push(bdf).map_err(|_| LoadError::TooMany(what, N))?;
            }
        }
    }
    Ok(out)
}

/// Firmware's VT-d view: the DMAR's DRHDs and RMRRs with their scopes resolved on the
/// enumerated (bus-numbered) hierarchy `functions`, handed to `with` (the slices borrow
/// storage that lives only for the call).
///
/// # Errors
/// [`LoadError::TooMany`] when a list exceeds what the image keeps; `with`'s own.
pub fn firmware_vtd<T>(
    dmar: &Dmar<'_>,
    functions: &[PciFunction],
    with: impl FnOnce(&FirmwareVtd<'_>) -> Result<T, LoadError<'static>>,
) -> Result<T, LoadError<'static>> {
    struct Unit {
        base: PhysAddr,
        size: u64,
        segment: u16,
        include_pci_all: bool,
        endpoints: Vec<Bdf, MAX_ENDPOINTS>,
        bridges: Vec<FirmwareBridge, MAX_BRIDGES>,
    }
    let mut units: Vec<Unit, MAX_UNITS> = Vec::new();
    for (_, d) in dmar.units() {
        let endpoints = resolved(
            d.scopes,
            ScopeType::PciEndpoint,
            functions,
            "endpoints per DRHD",
        )?;
        let heads: Vec<Bdf, MAX_BRIDGES> = resolved(
            d.scopes,
            ScopeType::PciSubHierarchy,
            functions,
            "bridges per DRHD",
        )?;
        // Bus numbers from the bridge's type 1 header, as enumeration assigned them.
        let bridges = heads
            .iter()
            .filter_map(|&b| {
                bridge_of(functions, b).map(|x| FirmwareBridge {
                    bridge: b,
                    secondary: x.secondary,
                    subordinate: x.subordinate,
                })
            })
            .collect();
        units
            .push(Unit {
                base: d.register_base,
                size: d.register_set_size(),
                segment: d.segment.0,
                include_pci_all: d.include_pci_all,
                endpoints,
                bridges,
            })
            .map_err(|_| LoadError::TooMany("DRHDs", MAX_UNITS))?;
    }
    struct Region {
        base: PhysAddr,
        limit: PhysAddr,
        segment: u16,
        devices: Vec<Bdf, MAX_REGION_DEVICES>,
    }
    let mut regions: Vec<Region, MAX_RESERVED> = Vec::new();
    for r in dmar.reserved_regions() {
        let devices = resolved(
            r.scopes,
            ScopeType::PciEndpoint,
            functions,
            "devices per RMRR",
        )?;
        regions
            .push(Region {
                base: r.base,
                limit: r.limit,
                segment: r.segment.0,
                devices,
            })
            .map_err(|_| LoadError::TooMany("RMRRs", MAX_RESERVED))?;
    }
    let fw_units: Vec<FirmwareUnit<'_>, MAX_UNITS> = units
        .iter()
        .map(|u| FirmwareUnit {
            base: u.base,
            size: u.size,
            segment: u.segment,
            include_pci_all: u.include_pci_all,
            endpoints: &u.endpoints,
            bridges: &u.bridges,
        })
        .collect();
    let fw_regions: Vec<FirmwareRegion<'_>, MAX_RESERVED> = regions
        .iter()
        .map(|r| FirmwareRegion {
            base: r.base,
            limit: r.limit,
            segment: r.segment,
            devices: &r.devices,
        })
        .collect();
    with(&FirmwareVtd {
        units: &fw_units,
        reserved: &fw_regions,
    })
}

/// Firmware's topology from `dmar` (scopes resolved on `functions`), combined with `config`
/// when there is one: what the daemon drives.
///
/// # Errors
/// The first [`LoadError`]: the DMAR, then the config, then combining.
pub fn load<'a>(
    dmar: &Dmar<'_>,
    functions: &[PciFunction],
    config: Option<ConfigFile<'a>>,
) -> Result<Topology, LoadError<'a>> {
    let firmware = firmware_vtd(dmar, functions, |fw| from_dmar(fw).map_err(LoadError::Dmar))?;
    let user = match config {
        Some(file) => Some(parse_bytes(file.name, file.bytes).map_err(LoadError::Config)?),
        None => None,
    };
    combine(&firmware, user.as_ref()).map_err(LoadError::Combine)
}
