//! The SMMU's `interrupts` / `interrupt-names`, decoded as Arm GIC specifiers (Linux
//! `Documentation/devicetree/bindings/interrupt-controller/arm,gic-v3.yaml`: cell 0 the type,
//! cell 1 the number within the type, cell 2 the trigger flags).

use super::error::{bounded, DtError, DtErrorKind};
use super::tree::{
    cell, cell_count, find_phandle, interrupt_parent, is_compatible, str_list, u32_prop, Ctx,
};
use crate::irq::{Irq, IrqName, SmmuIrqs, Trigger};
use crate::unit::Stated;
use fdt::Fdt;

/// Interrupt controllers whose specifiers are decoded here.
const GIC_COMPATIBLES: [&str; 6] = [
    "arm,gic-v3",
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,pl390",
];

/// The SMMU's named interrupt lines, and the [`Stated`] flags of the lines present.
///
/// # Errors
/// A [`DtError`] naming `interrupts`, `interrupt-names` or `interrupt-parent`.
pub fn smmu_irqs(fdt: &Fdt<'_>, ctx: &Ctx<'_, '_>) -> Result<(SmmuIrqs, Stated), DtError> {
    if ctx.node.property("interrupts-extended").is_some() {
        return Err(ctx.err("interrupts-extended", DtErrorKind::InterruptsExtended));
    }
    let names = str_list(ctx, "interrupt-names")?;
    let name_count = names.map_or(0, |n| n.split('\0').count());
    let Some(spec) = ctx.node.property("interrupts") else {
        if name_count > 0 {
            return Err(ctx.err(
                "interrupt-names",
                DtErrorKind::InterruptNamesMismatch {
                    names: name_count,
                    interrupts: 0,
                },
            ));
        }
        return Ok((SmmuIrqs::default(), Stated::empty()));
    };
    let phandle = interrupt_parent(ctx)
        .ok_or_else(|| ctx.err("interrupt-parent", DtErrorKind::NoInterruptParent))?;
    let gic = find_phandle(fdt, phandle)
        .ok_or_else(|| ctx.err("interrupt-parent", DtErrorKind::UnknownPhandle { phandle }))?;
    if !GIC_COMPATIBLES.iter().any(|c| is_compatible(gic, c)) {
        return Err(ctx.err(
            "interrupt-parent",
            DtErrorKind::NotAGic {
                parent: bounded(gic.name),
            },
        ));
    }
    let per = u32_prop(gic.name, gic, "#interrupt-cells")?
        .ok_or_else(|| DtError::new(gic.name, "#interrupt-cells", DtErrorKind::Missing))?;
    if per < 3 {
        return Err(ctx.err("interrupts", DtErrorKind::InterruptCells { cells: per }));
    }
    let per = per as usize;
    let cells = cell_count(ctx, "interrupts", spec.value)?;
    if cells == 0 || cells % per != 0 {
        return Err(ctx.err("interrupts", DtErrorKind::InterruptsLength { cells, per }));
    }
    let count = cells / per;
    if count != name_count {
        let kind = DtErrorKind::InterruptNamesMismatch {
            names: name_count,
            interrupts: count,
        };
        return Err(if names.is_none() {
            ctx.err("interrupt-names", DtErrorKind::Missing)
        } else {
            ctx.err("interrupt-names", kind)
        });
    }
    let mut irqs = SmmuIrqs::default();
    let mut stated = Stated::empty();
    for (i, text) in names.unwrap_or("").split('\0').enumerate().take(count) {
        let name = IrqName::parse(text).ok_or_else(|| {
            ctx.err(
                "interrupt-names",
                DtErrorKind::UnknownInterruptName {
                    name: bounded(text),
                },
            )
        })?;
        if stated.contains(Stated::irq(name)) {
            return Err(ctx.err(
                "interrupt-names",
                DtErrorKind::DuplicateInterruptName { name },
            ));
        }
        let at = i * per;
        let irq = decode(
            ctx,
            cell(spec.value, at),
            cell(spec.value, at + 1),
            cell(spec.value, at + 2),
        )?;
        irqs.set(name, Some(irq));
        stated |= Stated::irq(name);
    }
    Ok((irqs, stated))
}

/// One GIC specifier. Type 0 is an SPI (INTID 32 + n), type 2 an extended SPI
/// (INTID 4096 + n); PPIs cannot be an SMMU's lines. Flags: 1 rising / 2 falling edge,
/// 4 high / 8 low level.
fn decode(ctx: &Ctx<'_, '_>, kind: u32, number: u32, flags: u32) -> Result<Irq, DtError> {
    let intid = match kind {
        0 => number.checked_add(32),
        2 => number.checked_add(4096),
        _ => None,
    }
    .filter(|i| Irq::is_spi(*i))
    .ok_or_else(|| ctx.err("interrupts", DtErrorKind::NotSpi { kind, number }))?;
    let trigger = match flags & 0xf {
        1 | 2 => Trigger::Edge,
        4 | 8 => Trigger::Level,
        _ => return Err(ctx.err("interrupts", DtErrorKind::BadTrigger { flags })),
    };
    Ok(Irq { intid, trigger })
}
