//! [`GicNode`]: the `arm,gic-v3` interrupt controller node (Linux Documentation/devicetree/
//! bindings/interrupt-controller/arm,gic-v3.yaml: `reg` is the distributor, then one or more
//! redistributor regions, then optional GICv2-compatible CPU interface frames).

use super::error::BoardError;
use super::tree::{find_unique, regs};
use crate::memory::PhysRange;
use fdt::Fdt;
use iommu_core::PhysAddr;

/// `compatible` of a GICv3 (or GICv4) interrupt controller.
pub const GIC_V3_COMPATIBLE: &str = "arm,gic-v3";

/// Where the GICv3's memory-mapped parts are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GicNode {
    /// The distributor (GICD_*, IHI 0069 §12.9), 64 KiB.
    pub dist: PhysRange,
    /// The first redistributor region (GICR_*, IHI 0069 §12.10): one 128 KiB frame pair per
    /// PE (256 KiB with GICv4 virtual LPIs), the PE's own found by GICR_TYPER.Affinity.
    pub redist: PhysRange,
}

impl GicNode {
    /// The board's GICv3, `None` when the device tree has none (the daemon then polls).
    ///
    /// # Errors
    /// [`BoardError::Ambiguous`] for several, [`BoardError::BadProperty`] when its `reg` has
    /// no redistributor region or a malformed entry.
    pub fn find<'a>(fdt: &Fdt<'a>) -> Result<Option<Self>, BoardError<'a>> {
        let placed = match find_unique(fdt, GIC_V3_COMPATIBLE) {
            Ok(p) => p,
            Err(BoardError::MissingNode { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut entries: [Option<PhysRange>; 2] = [None; 2];
        let mut n = 0;
        regs(placed, &mut |base, size| {
            entries[n] = PhysRange::new(PhysAddr(base), size);
            n += 1;
            n == entries.len()
        })?;
        match entries {
            [Some(dist), Some(redist)] => Ok(Some(Self { dist, redist })),
            _ => Err(BoardError::BadProperty {
                node: placed.node.name,
                property: "reg",
                reason: "a GICv3 needs a distributor and a redistributor region",
            }),
        }
    }
}
