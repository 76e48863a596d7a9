//! [`SmmuNode`]: the `arm,smmu-v3` node (Linux Documentation/devicetree/bindings/iommu/
//! arm,smmu-v3.yaml).

use super::error::BoardError;
use super::interrupts::{interrupts, Irq};
use super::tree::{first_reg, required_u32, str_prop, u32_prop, Placed};
use core::fmt;
use fdt::Fdt;
use iommu_core::PhysAddr;

/// `compatible` of an SMMUv3.
pub const SMMU_V3_COMPATIBLE: &str = "arm,smmu-v3";

/// The SMMU's wired interrupts, by `interrupt-names`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SmmuIrqs {
    /// `eventq`: the event queue became non-empty.
    pub eventq: Option<Irq>,
    /// `priq`: the PRI queue became non-empty.
    pub priq: Option<Irq>,
    /// `cmdq-sync`: a CMD_SYNC completed.
    pub cmdq_sync: Option<Irq>,
    /// `gerror`: a global error was raised.
    pub gerror: Option<Irq>,
    /// `combined`: one line for all of them.
    pub combined: Option<Irq>,
}

impl fmt::Display for SmmuIrqs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, irq) in [
            ("eventq", self.eventq),
            ("priq", self.priq),
            ("cmdq-sync", self.cmdq_sync),
            ("gerror", self.gerror),
            ("combined", self.combined),
        ] {
            if let Some(irq) = irq {
                write!(f, "{}{name}:{irq}", if first { "" } else { "," })?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// What the device tree says about the SMMUv3.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SmmuNode {
    /// Base of the register frame (IHI 0070 §6: page 0 at `base`, page 1 at `base + 64 KiB`).
    pub base: PhysAddr,
    /// Size of the register frame.
    pub size: u64,
    /// Its wired interrupts.
    pub irqs: SmmuIrqs,
    /// `dma-coherent`: the SMMU's table walks and queue accesses snoop the CPU caches.
    pub coherent: bool,
    /// The phandle `iommu-map` entries refer to it by.
    pub phandle: u32,
}

impl SmmuNode {
    /// Reads the SMMU node.
    ///
    /// # Errors
    /// A [`BoardError`] naming the missing or malformed property.
    pub(super) fn parse<'a>(fdt: &Fdt<'a>, placed: Placed<'_, 'a>) -> Result<Self, BoardError<'a>> {
        let node = placed.node;
        let (base, size) = first_reg(placed)?;
        let phandle = match u32_prop(node, "phandle")? {
            Some(p) => p,
            None => {
                required_u32(node, "linux,phandle").map_err(|_| BoardError::MissingProperty {
                    node: node.name,
                    property: "phandle",
                })?
            }
        };
        let names = str_prop(node, "interrupt-names")?;
        let mut names = names.map(|n| n.split('\0'));
        let mut irqs = SmmuIrqs::default();
        let count = interrupts(fdt, placed, &mut |_, irq| {
            let name =
                names
                    .as_mut()
                    .and_then(|n| n.next())
                    .ok_or(BoardError::MissingProperty {
                        node: node.name,
                        property: "interrupt-names",
                    })?;
            let slot = match name {
                "eventq" => &mut irqs.eventq,
                "priq" => &mut irqs.priq,
                "cmdq-sync" => &mut irqs.cmdq_sync,
                "gerror" => &mut irqs.gerror,
                "combined" => &mut irqs.combined,
                _ => {
                    return Err(BoardError::BadProperty {
                        node: node.name,
                        property: "interrupt-names",
                        reason: "unknown name (expected eventq, priq, cmdq-sync, gerror, combined)",
                    })
                }
            };
            if slot.replace(irq).is_some() {
                return Err(BoardError::BadProperty {
                    node: node.name,
                    property: "interrupt-names",
                    reason: "a name appears twice",
                });
            }
            Ok(())
        })?;
        if count > 0 && names.is_some_and(|mut n| n.next().is_some()) {
            return Err(BoardError::BadProperty {
                node: node.name,
                property: "interrupt-names",
                reason: "more names than interrupts",
            });
        }
        Ok(Self {
            base: PhysAddr(base),
            size,
            irqs,
            coherent: node.property("dma-coherent").is_some(),
            phandle,
        })
    }
}
