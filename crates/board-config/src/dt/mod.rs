//! Firmware's view: the [`Topology`] a flattened device tree describes.
//!
//! * `arm,smmu-v3` nodes (Linux `Documentation/devicetree/bindings/iommu/arm,smmu-v3.yaml`):
//!   `reg`, `interrupts` + `interrupt-names`, `dma-coherent`, `#iommu-cells = <1>`.
//! * PCI hosts' `iommu-map` and `iommu-map-mask`
//!   (`Documentation/devicetree/bindings/pci/pci-iommu.txt`): one [`PciRange`] binding per
//!   entry. The host's PCI segment is its `linux,pci-domain`, else its position among the
//!   hosts with an `iommu-map`, in tree order.
//! * Platform devices' `iommus = <&smmu sid>, ...`
//!   (`Documentation/devicetree/bindings/iommu/iommu.txt`): one [`Device::Mmio`] binding per
//!   pair, the device named by the CPU address of its first `reg` entry.
//!
//! Nodes whose `status` is not `okay` are skipped with everything below them. Every
//! malformed or contradictory property is a [`DtError`] naming the node's full path and the
//! property; nothing is guessed.
//!
//! `fdt` 0.1.5 itself trusts the blob (it can panic on a corrupt one): [`from_blob`] runs
//! [`validate_blob`] first, and whoever builds an [`Fdt`] for [`from_fdt`] or
//! [`crate::load()`] must do the same.

// A `DtError` carries the node's full path (up to 128 bytes) so that the message can name it;
// without an allocator that path lives in the error itself. Discovery runs once, at start-up,
// so the size of the `Result` costs nothing that matters.
#![allow(clippy::result_large_err)]

pub mod blob;
mod error;
mod initrd;
mod interrupts;
mod tree;

pub use blob::{
    validate_blob, BlobError, BlobErrorKind, Block, FDT_MAGIC, HEADER_SIZE, MAX_BLOB_DEPTH,
    MAX_LAST_COMP_VERSION, MIN_VERSION,
};
pub use error::{DtError, DtErrorKind, NodeName, NodePath, NODE_NAME_LEN, NODE_PATH_LEN};
pub use initrd::{initrd, Initrd};
pub use tree::MAX_DEPTH;

use crate::device::{Device, PciRange, StreamSource};
use crate::topology::{Origin, StreamBinding, Topology, MAX_BINDINGS, MAX_UNITS};
use crate::unit::{unit_name, IommuUnit, Stated, UnitId};
use error::bounded;
use fdt::Fdt;
use heapless::Vec;
use iommu_core::{PhysAddr, StreamId};
use tree::{
    cell, cell_count, find_phandle, first_reg, is_compatible, name_of, phandle_of, u32_prop, walk,
    Ctx,
};

/// `compatible` of an SMMUv3.
pub const SMMU_V3_COMPATIBLE: &str = "arm,smmu-v3";

/// Most PCI hosts with an `iommu-map` read.
pub const MAX_PCI_HOSTS: usize = 8;

/// [`fdt::Fdt::new`], [`validate_blob`], then [`from_fdt`].
///
/// # Errors
/// [`DtErrorKind::BadBlob`] for a blob whose header `fdt` refuses (magic, `totalsize`),
/// [`DtErrorKind::Corrupt`] for one [`validate_blob`] refuses, else as [`from_fdt`].
pub fn from_blob(blob: &[u8]) -> Result<Topology, DtError> {
    let bad = |kind| DtError::new("/", "", kind);
    // `Fdt::new` reads the header only, so it is safe before the walk; it keeps its own
    // errors for blobs that are not device trees at all.
    let fdt = Fdt::new(blob).map_err(|e| bad(DtErrorKind::BadBlob(e)))?;
    validate_blob(blob).map_err(|e| bad(DtErrorKind::Corrupt(e)))?;
    from_fdt(&fdt)
}

/// The IOMMU units and stream bindings the device tree describes.
///
/// `fdt`'s blob must have passed [`validate_blob`]: `fdt` 0.1.5 panics on some corrupt
/// blobs ([`from_blob`] does both).
///
/// # Errors
/// The first [`DtError`] in tree order: SMMU nodes are read first, then PCI hosts and
/// platform devices.
pub fn from_fdt(fdt: &Fdt<'_>) -> Result<Topology, DtError> {
    let mut d = Discovery {
        fdt,
        topology: Topology::new(),
        phandles: Vec::new(),
        hosts: Vec::new(),
        devices: Vec::new(),
    };
    walk(fdt, &mut |ctx| {
        if is_compatible(ctx.node, SMMU_V3_COMPATIBLE) {
            d.unit(ctx)?;
        }
        Ok(())
    })?;
    walk(fdt, &mut |ctx| {
        if let Some(map) = ctx.node.property("iommu-map") {
            d.pci_host(ctx, map.value)?;
        }
        if let Some(iommus) = ctx.node.property("iommus") {
            d.platform_device(ctx, iommus.value)?;
        }
        Ok(())
    })?;
    Ok(d.topology)
}

struct Discovery<'f, 'a> {
    fdt: &'f Fdt<'a>,
    topology: Topology,
    /// Phandle of each unit.
    phandles: Vec<(u32, UnitId), MAX_UNITS>,
    /// Segment and node name of each PCI host read.
    hosts: Vec<(u16, NodeName), MAX_PCI_HOSTS>,
    /// Base and node name of each platform device read.
    devices: Vec<(PhysAddr, NodeName), MAX_BINDINGS>,
}

impl Discovery<'_, '_> {
    fn unit(&mut self, ctx: &Ctx<'_, '_>) -> Result<(), DtError> {
        let (base, size) = first_reg(ctx)?;
        let cells = u32_prop(ctx.path(), ctx.node, "#iommu-cells")?
            .ok_or_else(|| ctx.err("#iommu-cells", DtErrorKind::Missing))?;
        if cells != 1 {
            return Err(ctx.err("#iommu-cells", DtErrorKind::IommuCells { cells }));
        }
        let (irqs, irq_stated) = interrupts::smmu_irqs(self.fdt, ctx)?;
        let unit = IommuUnit {
            size,
            irqs,
            coherent: ctx.node.property("dma-coherent").is_some(),
            stated: Stated::SIZE | Stated::COHERENT | irq_stated,
            ..IommuUnit::smmu_v3(unit_name(ctx.node.name), PhysAddr(base), Origin::DeviceTree)
        };
        for (_, other) in self.topology.units() {
            let kind = if other.base == unit.base {
                DtErrorKind::DuplicateUnit {
                    base: unit.base,
                    other: bounded(&other.name),
                }
            } else if other.overlaps(&unit) {
                DtErrorKind::UnitsOverlap {
                    other: bounded(&other.name),
                }
            } else {
                continue;
            };
            return Err(ctx.err("reg", kind));
        }
        let id = self
            .topology
            .push_unit(unit)
            .map_err(|c| ctx.err("", DtErrorKind::TooMany(c)))?;
        if let Some(phandle) = phandle_of(ctx.node) {
            // `phandles` has the capacity of `units`, which just took this one.
            let _ = self.phandles.push((phandle, id));
        }
        Ok(())
    }

    /// The unit a phandle in `property` names.
    fn resolve(
        &self,
        ctx: &Ctx<'_, '_>,
        property: &'static str,
        phandle: u32,
    ) -> Result<UnitId, DtError> {
        if let Some((_, id)) = self.phandles.iter().find(|(p, _)| *p == phandle) {
            return Ok(*id);
        }
        let kind = match find_phandle(self.fdt, phandle) {
            None => DtErrorKind::UnknownPhandle { phandle },
            // Not among the units read, so it is disabled itself or lies in a disabled
            // subtree.
            Some(target) if is_compatible(target, SMMU_V3_COMPATIBLE) => {
                DtErrorKind::IommuDisabled {
                    phandle,
                    target: name_of(target),
                }
            }
            Some(target) => DtErrorKind::NotAnSmmuV3 {
                phandle,
                target: name_of(target),
            },
        };
        Err(ctx.err(property, kind))
    }

    fn pci_host(&mut self, ctx: &Ctx<'_, '_>, map: &[u8]) -> Result<(), DtError> {
        const MAP: &str = "iommu-map";
        let segment = match u32_prop(ctx.path(), ctx.node, "linux,pci-domain")? {
            Some(d) => u16::try_from(d).map_err(|_| {
                ctx.err(
                    "linux,pci-domain",
                    DtErrorKind::PciDomainRange { domain: d },
                )
            })?,
            None => self.hosts.len() as u16,
        };
        if let Some((_, other)) = self.hosts.iter().find(|(s, _)| *s == segment) {
            return Err(ctx.err(
                "linux,pci-domain",
                DtErrorKind::DuplicatePciDomain {
                    segment,
                    other: other.clone(),
                },
            ));
        }
        self.hosts.push((segment, name_of(ctx.node))).map_err(|_| {
            ctx.err(
                MAP,
                DtErrorKind::TooMany(crate::CapacityExceeded {
                    what: "PCI hosts with an iommu-map",
                    max: MAX_PCI_HOSTS,
                }),
            )
        })?;
        let mask = u32_prop(ctx.path(), ctx.node, "iommu-map-mask")?.unwrap_or(u32::MAX);
        let cells = cell_count(ctx, MAP, map)?;
        if cells == 0 {
            return Err(ctx.err(MAP, DtErrorKind::Empty));
        }
        if cells % 4 != 0 {
            return Err(ctx.err(MAP, DtErrorKind::IommuMapLength { cells }));
        }
        for entry in 0..cells / 4 {
            let at = entry * 4;
            let (rid_base, phandle, sid_base, len) = (
                cell(map, at),
                cell(map, at + 1),
                cell(map, at + 2),
                cell(map, at + 3),
            );
            let unit = self.resolve(ctx, MAP, phandle)?;
            if len == 0 {
                return Err(ctx.err(MAP, DtErrorKind::EmptyIdRange { entry }));
            }
            for (which, base) in [("rid-base", rid_base), ("sid-base", sid_base)] {
                if u64::from(base) + u64::from(len) > 1 << 32 {
                    return Err(ctx.err(
                        MAP,
                        DtErrorKind::IdOverflow {
                            entry,
                            which,
                            base,
                            length: len,
                        },
                    ));
                }
            }
            self.push(
                ctx,
                MAP,
                StreamBinding {
                    unit,
                    source: StreamSource::PciRange(PciRange {
                        segment,
                        rid_base,
                        len,
                        mask,
                    }),
                    sid: StreamId(sid_base),
                    shared: false,
                    raw_sid: false,
                    origin: Origin::DeviceTree,
                },
            )?;
        }
        Ok(())
    }

    fn platform_device(&mut self, ctx: &Ctx<'_, '_>, iommus: &[u8]) -> Result<(), DtError> {
        const IOMMUS: &str = "iommus";
        let (base, _) = first_reg(ctx)?;
        let device = Device::Mmio(PhysAddr(base));
        let cells = cell_count(ctx, IOMMUS, iommus)?;
        if cells == 0 {
            return Err(ctx.err(IOMMUS, DtErrorKind::Empty));
        }
        if cells % 2 != 0 {
            return Err(ctx.err(IOMMUS, DtErrorKind::IommusLength { cells }));
        }
        if let Some((_, other)) = self.devices.iter().find(|(b, _)| b.0 == base) {
            return Err(ctx.err(
                "reg",
                DtErrorKind::DuplicateDevice {
                    device,
                    other: other.clone(),
                },
            ));
        }
        self.devices
            .push((PhysAddr(base), name_of(ctx.node)))
            .map_err(|_| {
                ctx.err(
                    IOMMUS,
                    DtErrorKind::TooMany(crate::CapacityExceeded {
                        what: "platform devices with iommus",
                        max: MAX_BINDINGS,
                    }),
                )
            })?;
        for pair in 0..cells / 2 {
            let unit = self.resolve(ctx, IOMMUS, cell(iommus, pair * 2))?;
            let sid = StreamId(cell(iommus, pair * 2 + 1));
            self.push(
                ctx,
                IOMMUS,
                StreamBinding {
                    unit,
                    source: StreamSource::Device(device),
                    sid,
                    shared: false,
                    raw_sid: false,
                    origin: Origin::DeviceTree,
                },
            )?;
        }
        Ok(())
    }

    fn push(
        &mut self,
        ctx: &Ctx<'_, '_>,
        property: &'static str,
        b: StreamBinding,
    ) -> Result<(), DtError> {
        self.topology
            .push_stream(b)
            .map_err(|c| ctx.err(property, DtErrorKind::TooMany(c)))
    }
}
