//! Walking the tree with what `fdt` 0.1.5 does not give: each node's full path, its
//! ancestors (for `#address-cells`, `ranges` and inherited `interrupt-parent`), and typed
//! property readers whose errors name node and property.

use super::error::{bounded, DtError, DtErrorKind, NodeName};
use fdt::node::FdtNode;
use fdt::Fdt;

/// Deepest nesting walked (the root is level 0).
pub const MAX_DEPTH: usize = 16;

/// A node, its ancestors and its path.
pub struct Ctx<'b, 'a> {
    /// The node.
    pub node: FdtNode<'b, 'a>,
    /// Its ancestors, root first (empty for the root).
    pub ancestors: heapless::Vec<FdtNode<'b, 'a>, MAX_DEPTH>,
    /// Its full path, `/` for the root.
    path: heapless::String<{ super::error::NODE_PATH_LEN }>,
    /// Length of each ancestor's path in `path`, root first.
    prefix: heapless::Vec<usize, MAX_DEPTH>,
}

impl<'b, 'a> Ctx<'b, 'a> {
    /// The node's full path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of ancestor `i` (0 = root).
    pub fn ancestor_path(&self, i: usize) -> &str {
        let len = self.prefix.get(i).copied().unwrap_or(1);
        self.path.get(..len).unwrap_or("/")
    }

    /// An error about `property` of this node.
    pub fn err(&self, property: &'static str, kind: DtErrorKind) -> DtError {
        DtError::new(self.path(), property, kind)
    }
}

/// Calls `visit` on every enabled node, depth first; subtrees of disabled nodes
/// (`status` other than `okay`) are skipped, as Linux does.
///
/// # Errors
/// The first error `visit` returns, or [`DtErrorKind::TooDeep`].
pub fn walk<'b, 'a>(
    fdt: &'b Fdt<'a>,
    visit: &mut dyn FnMut(&Ctx<'b, 'a>) -> Result<(), DtError>,
) -> Result<(), DtError> {
    let Some(root) = fdt.find_node("/") else {
        return Ok(());
    };
    let mut ctx = Ctx {
        node: root,
        ancestors: heapless::Vec::new(),
        path: bounded("/"),
        prefix: heapless::Vec::new(),
    };
    walk_from(&mut ctx, visit)
}

fn walk_from<'b, 'a>(
    ctx: &mut Ctx<'b, 'a>,
    visit: &mut dyn FnMut(&Ctx<'b, 'a>) -> Result<(), DtError>,
) -> Result<(), DtError> {
    if !is_enabled(ctx.node) {
        return Ok(());
    }
    visit(ctx)?;
    let node = ctx.node;
    for child in node.children() {
        let len = ctx.path.len();
        if ctx.ancestors.push(node).is_err() || ctx.prefix.push(len).is_err() {
            return Err(DtError::new(
                ctx.path(),
                "",
                DtErrorKind::TooDeep { max: MAX_DEPTH },
            ));
        }
        if len > 1 {
            push_lossy(&mut ctx.path, "/");
        }
        push_lossy(&mut ctx.path, child.name);
        ctx.node = child;
        let result = walk_from(ctx, visit);
        ctx.node = node;
        ctx.ancestors.pop();
        ctx.prefix.pop();
        ctx.path.truncate(len);
        result?;
    }
    Ok(())
}

fn push_lossy<const N: usize>(s: &mut heapless::String<N>, tail: &str) {
    for c in tail.chars() {
        if s.push(c).is_err() {
            return;
        }
    }
}

/// Whether `status` is absent, `okay` or `ok`.
pub fn is_enabled(node: FdtNode<'_, '_>) -> bool {
    node.property("status").is_none_or(|p| {
        let v = p.value.split(|b| *b == 0).next().unwrap_or(&[]);
        v == b"okay" || v == b"ok"
    })
}

/// Whether the node's `compatible` list contains `compatible`.
pub fn is_compatible(node: FdtNode<'_, '_>, compatible: &str) -> bool {
    node.property("compatible").is_some_and(|p| {
        p.value
            .split(|b| *b == 0)
            .any(|s| s == compatible.as_bytes())
    })
}

/// The node's name in a bounded string.
pub fn name_of(node: FdtNode<'_, '_>) -> NodeName {
    bounded(node.name)
}

/// The big-endian cell `i` of `bytes`, or 0 past its end. Callers read only cells that
/// their length checks have shown to be there; the arithmetic is checked anyway, so that no
/// property length can make it overflow.
pub fn cell(bytes: &[u8], i: usize) -> u32 {
    i.checked_mul(4)
        .and_then(|at| bytes.get(at..at.checked_add(4)?))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// The `n`-cell number at cell `i` of `bytes`. `n` is at most 2 ([`cell_sizes`] refuses
/// larger cell counts; a 0-cell number is 0).
pub fn cells(bytes: &[u8], i: usize, n: usize) -> u64 {
    (0..n.min(2)).fold(0, |acc, k| {
        (acc << 32) | u64::from(i.checked_add(k).map_or(0, |at| cell(bytes, at)))
    })
}

/// A property's value as cells: its length must be a multiple of 4.
pub fn cell_count(
    ctx: &Ctx<'_, '_>,
    property: &'static str,
    value: &[u8],
) -> Result<usize, DtError> {
    if !value.len().is_multiple_of(4) {
        return Err(ctx.err(property, DtErrorKind::NotWholeCells { bytes: value.len() }));
    }
    Ok(value.len() / 4)
}

/// A one-cell property of `node` (whose path is `path`), if present.
pub fn u32_prop(
    path: &str,
    node: FdtNode<'_, '_>,
    property: &'static str,
) -> Result<Option<u32>, DtError> {
    match node.property(property) {
        None => Ok(None),
        Some(p) if p.value.len() == 4 => Ok(Some(cell(p.value, 0))),
        Some(p) => Err(DtError::new(
            path,
            property,
            DtErrorKind::NotOneCell {
                bytes: p.value.len(),
            },
        )),
    }
}

/// The node's phandle (`phandle`, or the older `linux,phandle`).
pub fn phandle_of(node: FdtNode<'_, '_>) -> Option<u32> {
    ["phandle", "linux,phandle"]
        .iter()
        .find_map(|name| node.property(name))
        .filter(|p| p.value.len() == 4)
        .map(|p| cell(p.value, 0))
}

/// The node whose phandle is `phandle`.
pub fn find_phandle<'b, 'a>(fdt: &'b Fdt<'a>, phandle: u32) -> Option<FdtNode<'b, 'a>> {
    fdt.all_nodes().find(|n| phandle_of(*n) == Some(phandle))
}

/// A string-list property (NUL-separated), trailing NUL dropped.
pub fn str_list<'a>(ctx: &Ctx<'_, 'a>, property: &'static str) -> Result<Option<&'a str>, DtError> {
    match ctx.node.property(property) {
        None => Ok(None),
        Some(p) => {
            let v = p.value.strip_suffix(&[0]).unwrap_or(p.value);
            core::str::from_utf8(v)
                .map(Some)
                .map_err(|_| ctx.err(property, DtErrorKind::NotUtf8))
        }
    }
}

/// `#address-cells` and `#size-cells` that ancestor `i` gives its children (defaults 2 and 1,
/// Devicetree Specification v0.4 §2.3.5), each at most 2.
fn cell_sizes(ctx: &Ctx<'_, '_>, i: usize) -> Result<(usize, usize), DtError> {
    let path = ctx.ancestor_path(i);
    let Some(node) = ctx.ancestors.get(i).copied() else {
        return Ok((2, 1));
    };
    let ac = u32_prop(path, node, "#address-cells")?.unwrap_or(2);
    let sc = u32_prop(path, node, "#size-cells")?.unwrap_or(1);
    for (property, v) in [("#address-cells", ac), ("#size-cells", sc)] {
        if v > 2 {
            return Err(DtError::new(
                path,
                property,
                DtErrorKind::CellsUnsupported { cells: v },
            ));
        }
    }
    Ok((ac as usize, sc as usize))
}

/// The node's first `reg` entry, its address translated to a CPU physical address through
/// the parents' `ranges` (Devicetree Specification v0.4 §2.3.8).
///
/// # Errors
/// [`DtErrorKind::Missing`], [`DtErrorKind::NotWholeCells`], [`DtErrorKind::RegLength`],
/// [`DtErrorKind::ZeroCellEntries`], [`DtErrorKind::BadRange`],
/// [`DtErrorKind::CellsUnsupported`], [`DtErrorKind::RangesLength`] or
/// [`DtErrorKind::Untranslatable`].
pub fn first_reg(ctx: &Ctx<'_, '_>) -> Result<(u64, u64), DtError> {
    let parent = ctx.ancestors.len().checked_sub(1);
    let (ac, sc) = match parent {
        Some(p) => cell_sizes(ctx, p)?,
        None => (2, 1),
    };
    let reg = ctx
        .node
        .property("reg")
        .ok_or_else(|| ctx.err("reg", DtErrorKind::Missing))?;
    let n = cell_count(ctx, "reg", reg.value)?;
    let entry = ac + sc;
    if entry == 0 && n > 0 {
        let bytes = reg.value.len();
        return Err(ctx.err("reg", DtErrorKind::ZeroCellEntries { bytes }));
    }
    if n == 0 || n.checked_rem(entry).is_none_or(|r| r != 0) {
        return Err(ctx.err("reg", DtErrorKind::RegLength { cells: n, entry }));
    }
    let address = cells(reg.value, 0, ac);
    let size = cells(reg.value, ac, sc);
    if size == 0 || address.checked_add(size - 1).is_none() {
        return Err(ctx.err("reg", DtErrorKind::BadRange { address, size }));
    }
    let cpu = translate(ctx, address, size)?;
    Ok((cpu, size))
}

/// Whether `start..start+len` runs past the end of the 64-bit address space.
fn past_end(start: u64, len: u64) -> bool {
    u128::from(start) + u128::from(len) > 1 << 64
}

/// `address..address+size`, in the address space of the node's parent, as a CPU address.
fn translate(ctx: &Ctx<'_, '_>, mut address: u64, size: u64) -> Result<u64, DtError> {
    // Ancestor 0 is the root, whose children's addresses are CPU addresses. Every bus below
    // it maps its children's addresses into its own parent's space with `ranges`.
    for i in (1..ctx.ancestors.len()).rev() {
        let path = ctx.ancestor_path(i);
        let Some(bus) = ctx.ancestors.get(i).copied() else {
            // `i` counts the ancestors down: never reached.
            let bus = bounded(path);
            return Err(ctx.err("reg", DtErrorKind::Untranslatable { address, bus }));
        };
        let bus_err = |property, kind| DtError::new(path, property, kind);
        let Some(ranges) = bus.property("ranges") else {
            return Err(ctx.err(
                "reg",
                DtErrorKind::Untranslatable {
                    address,
                    bus: bounded(path),
                },
            ));
        };
        let bytes = ranges.value.len();
        if bytes == 0 {
            continue; // `ranges;`: identity.
        }
        if !bytes.is_multiple_of(4) {
            return Err(bus_err("ranges", DtErrorKind::NotWholeCells { bytes }));
        }
        let (child_ac, child_sc) = cell_sizes(ctx, i)?;
        let (parent_ac, _) = cell_sizes(ctx, i - 1)?;
        let entry = child_ac + parent_ac + child_sc;
        let n = bytes / 4;
        // An entry of 0 cells: every cell count involved is 0, yet `ranges` has cells.
        let Some(0) = n.checked_rem(entry) else {
            let kind = if entry == 0 {
                DtErrorKind::ZeroCellEntries { bytes }
            } else {
                DtErrorKind::RangesLength { cells: n, entry }
            };
            return Err(bus_err("ranges", kind));
        };
        let mut hit = None;
        for e in 0..n / entry {
            let at = e * entry;
            let child = cells(ranges.value, at, child_ac);
            let parent = cells(ranges.value, at + child_ac, parent_ac);
            let len = cells(ranges.value, at + child_ac + parent_ac, child_sc);
            let inside = address >= child
                && u128::from(address) + u128::from(size) <= u128::from(child) + u128::from(len);
            if !inside {
                continue;
            }
            // The covering entry must itself fit in the address space on both sides, so that
            // the translated range does too.
            for side in [child, parent] {
                if past_end(side, len) {
                    let kind = DtErrorKind::BadRange {
                        address: side,
                        size: len,
                    };
                    return Err(bus_err("ranges", kind));
                }
            }
            hit = parent.checked_add(address - child);
            break;
        }
        address = hit.ok_or_else(|| {
            ctx.err(
                "reg",
                DtErrorKind::Untranslatable {
                    address,
                    bus: bounded(path),
                },
            )
        })?;
    }
    Ok(address)
}

/// The `interrupt-parent` in force for the node: its own or its nearest ancestor's.
pub fn interrupt_parent(ctx: &Ctx<'_, '_>) -> Option<u32> {
    core::iter::once(ctx.node)
        .chain(ctx.ancestors.iter().rev().copied())
        .find_map(|n| n.property("interrupt-parent"))
        .filter(|p| p.value.len() == 4)
        .map(|p| cell(p.value, 0))
}
