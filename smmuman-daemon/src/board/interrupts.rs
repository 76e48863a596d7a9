//! [`Irq`]: an interrupt specifier of an Arm GIC, decoded to an INTID (Linux
//! Documentation/devicetree/bindings/interrupt-controller/arm,gic-v3.yaml and arm,gic.yaml:
//! cell 0 is the type, cell 1 the number within the type, cell 2 the trigger flags).

use super::error::BoardError;
use super::tree::{be_u32, is_compatible, required_u32, Placed};
use core::fmt;
use fdt::Fdt;

/// How an interrupt line signals.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Trigger {
    /// Edge triggered (rising or falling).
    Edge,
    /// Level sensitive (high or low).
    Level,
}

/// A GIC interrupt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Irq {
    /// The GIC interrupt ID (SPI n is INTID 32 + n).
    pub intid: u32,
    /// Its trigger.
    pub trigger: Trigger,
}

impl fmt::Display for Irq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.trigger {
            Trigger::Edge => "edge",
            Trigger::Level => "level",
        };
        write!(f, "{}/{t}", self.intid)
    }
}

/// Interrupt controllers whose specifiers this module decodes.
const GIC_COMPATIBLES: [&str; 4] = [
    "arm,gic-v3",
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
];

/// Calls `each(index, irq)` for every entry of the node's `interrupts`.
///
/// # Errors
/// [`BoardError::MissingProperty`] when no interrupt parent is in force,
/// [`BoardError::UnknownPhandle`], [`BoardError::Unsupported`] for a parent that is not a GIC
/// or an unknown interrupt type, [`BoardError::BadProperty`] for a malformed list.
pub fn interrupts<'a>(
    fdt: &Fdt<'a>,
    placed: Placed<'_, 'a>,
    each: &mut dyn FnMut(usize, Irq) -> Result<(), BoardError<'a>>,
) -> Result<usize, BoardError<'a>> {
    let node = placed.node;
    let Some(spec) = node.property("interrupts") else {
        return Ok(0);
    };
    let phandle = placed.interrupt_parent.ok_or(BoardError::MissingProperty {
        node: node.name,
        property: "interrupt-parent",
    })?;
    let gic = fdt
        .find_phandle(phandle)
        .ok_or(BoardError::UnknownPhandle {
            node: node.name,
            property: "interrupt-parent",
            phandle,
        })?;
    if !GIC_COMPATIBLES.iter().any(|c| is_compatible(gic, c)) {
        return Err(BoardError::Unsupported {
            node: node.name,
            property: "interrupts",
            reason: "interrupt parent is not an Arm GIC",
        });
    }
    let cells = required_u32(gic, "#interrupt-cells")? as usize;
    if cells < 3 {
        return Err(BoardError::Unsupported {
            node: gic.name,
            property: "#interrupt-cells",
            reason: "a GIC specifier needs at least 3 cells",
        });
    }
    let stride = cells * 4;
    if spec.value.is_empty() || spec.value.len() % stride != 0 {
        return Err(BoardError::BadProperty {
            node: node.name,
            property: "interrupts",
            reason: "length is not a whole number of specifiers",
        });
    }
    let mut count = 0;
    for (i, chunk) in spec.value.chunks_exact(stride).enumerate() {
        let cell = |n: usize| be_u32(&chunk[n * 4..]).unwrap_or(0);
        let (kind, number, flags) = (cell(0), cell(1), cell(2));
        // Type 0: SPI (INTID 32..1019), 1: PPI (16..31), 2: extended SPI (4096..),
        // 3: extended PPI (1056..).
        let base = match kind {
            0 => 32,
            1 => 16,
            2 => 4096,
            3 => 1056,
            _ => {
                return Err(BoardError::Unsupported {
                    node: node.name,
                    property: "interrupts",
                    reason: "unknown GIC interrupt type",
                })
            }
        };
        let intid = number.checked_add(base).ok_or(BoardError::BadProperty {
            node: node.name,
            property: "interrupts",
            reason: "interrupt number out of range",
        })?;
        // Flags: 1 rising edge, 2 falling edge, 4 high level, 8 low level.
        let trigger = if flags & 0x3 != 0 {
            Trigger::Edge
        } else {
            Trigger::Level
        };
        each(i, Irq { intid, trigger })?;
        count += 1;
    }
    Ok(count)
}
