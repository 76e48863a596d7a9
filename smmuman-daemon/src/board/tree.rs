//! Reading typed values out of [`fdt`] nodes, with errors that name node and property, and a
//! walk that knows each node's parent and inherited interrupt parent (which `fdt` 0.1.5 does
//! not expose).

use super::error::BoardError;
use fdt::node::FdtNode;
use fdt::Fdt;

/// Deepest node the walk descends to; deeper subtrees are ignored.
const MAX_DEPTH: usize = 16;

/// A node together with what its position in the tree implies.
#[derive(Clone, Copy)]
pub struct Placed<'b, 'a> {
    /// The node.
    pub node: FdtNode<'b, 'a>,
    /// Its parent (`None` for the root).
    pub parent: Option<FdtNode<'b, 'a>>,
    /// The `interrupt-parent` phandle in force for it: its own, or its nearest ancestor's.
    pub interrupt_parent: Option<u32>,
}

/// Calls `visit` on every node, depth first, with its parent and inherited interrupt parent.
pub fn walk<'b, 'a>(fdt: &'b Fdt<'a>, visit: &mut dyn FnMut(Placed<'b, 'a>)) {
    if let Some(root) = fdt.find_node("/") {
        walk_from(
            Placed {
                node: root,
                parent: None,
                interrupt_parent: None,
            },
            0,
            visit,
        );
    }
}

fn walk_from<'b, 'a>(placed: Placed<'b, 'a>, depth: usize, visit: &mut dyn FnMut(Placed<'b, 'a>)) {
    let own = placed
        .node
        .property("interrupt-parent")
        .and_then(|p| be_u32(p.value));
    let placed = Placed {
        interrupt_parent: own.or(placed.interrupt_parent),
        ..placed
    };
    visit(placed);
    if depth >= MAX_DEPTH {
        return;
    }
    for child in placed.node.children() {
        let next = Placed {
            node: child,
            parent: Some(placed.node),
            interrupt_parent: placed.interrupt_parent,
        };
        walk_from(next, depth + 1, visit);
    }
}

/// The one node whose `compatible` list contains `compatible`.
///
/// # Errors
/// [`BoardError::MissingNode`] when there is none, [`BoardError::Ambiguous`] when there are
/// several.
pub fn find_unique<'b, 'a>(
    fdt: &'b Fdt<'a>,
    compatible: &'static str,
) -> Result<Placed<'b, 'a>, BoardError<'a>> {
    let mut found = None;
    let mut count = 0;
    walk(fdt, &mut |p| {
        if is_compatible(p.node, compatible) {
            count += 1;
            found.get_or_insert(p);
        }
    });
    match (found, count) {
        (Some(p), 1) => Ok(p),
        (None, _) => Err(BoardError::MissingNode { what: compatible }),
        (Some(_), count) => Err(BoardError::Ambiguous { compatible, count }),
    }
}

/// Whether the node's `compatible` string list contains `compatible`.
pub fn is_compatible(node: FdtNode<'_, '_>, compatible: &str) -> bool {
    node.property("compatible").is_some_and(|p| {
        p.value
            .split(|b| *b == 0)
            .any(|s| s == compatible.as_bytes())
    })
}

/// The big-endian 32-bit cell at the start of `bytes`.
pub fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// The `cells`-cell big-endian number at the start of `bytes` (0 to 2 cells).
pub fn be_cells(bytes: &[u8], cells: usize) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be_u32(bytes).map(u64::from),
        2 => Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// A property that must be exactly one cell.
///
/// # Errors
/// [`BoardError::BadProperty`] when it is present with another length.
pub fn u32_prop<'a>(
    node: FdtNode<'_, 'a>,
    property: &'static str,
) -> Result<Option<u32>, BoardError<'a>> {
    match node.property(property) {
        None => Ok(None),
        Some(p) if p.value.len() == 4 => Ok(be_u32(p.value)),
        Some(_) => Err(BoardError::BadProperty {
            node: node.name,
            property,
            reason: "expected one 32-bit cell",
        }),
    }
}

/// A required one-cell property.
///
/// # Errors
/// [`BoardError::MissingProperty`] or [`BoardError::BadProperty`].
pub fn required_u32<'a>(
    node: FdtNode<'_, 'a>,
    property: &'static str,
) -> Result<u32, BoardError<'a>> {
    u32_prop(node, property)?.ok_or(BoardError::MissingProperty {
        node: node.name,
        property,
    })
}

/// A property's raw bytes, required.
///
/// # Errors
/// [`BoardError::MissingProperty`].
pub fn required_bytes<'a>(
    node: FdtNode<'_, 'a>,
    property: &'static str,
) -> Result<&'a [u8], BoardError<'a>> {
    node.property(property)
        .map(|p| p.value)
        .ok_or(BoardError::MissingProperty {
            node: node.name,
            property,
        })
}

/// A string property (NUL-terminated UTF-8), trailing NULs removed.
///
/// # Errors
/// [`BoardError::BadProperty`] when it is not UTF-8.
pub fn str_prop<'a>(
    node: FdtNode<'_, 'a>,
    property: &'static str,
) -> Result<Option<&'a str>, BoardError<'a>> {
    match node.property(property) {
        None => Ok(None),
        Some(p) => {
            let end = p.value.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            core::str::from_utf8(&p.value[..end])
                .map(Some)
                .map_err(|_| BoardError::BadProperty {
                    node: node.name,
                    property,
                    reason: "not UTF-8 text",
                })
        }
    }
}

/// `#address-cells` and `#size-cells` a node gives its children (defaults 2 and 1, Devicetree
/// Specification v0.4 §2.3.5).
///
/// # Errors
/// [`BoardError::BadProperty`] when a value is not one cell, [`BoardError::Unsupported`] when
/// it is above 2 (64-bit numbers are the most the daemon reads), or above 3 for a PCI bus's
/// address.
pub fn cell_sizes<'a>(node: FdtNode<'_, 'a>) -> Result<(usize, usize), BoardError<'a>> {
    let address = u32_prop(node, "#address-cells")?.unwrap_or(2) as usize;
    let size = u32_prop(node, "#size-cells")?.unwrap_or(1) as usize;
    if address > 3 {
        return Err(BoardError::Unsupported {
            node: node.name,
            property: "#address-cells",
            reason: "more than 3 cells",
        });
    }
    if size > 2 {
        return Err(BoardError::Unsupported {
            node: node.name,
            property: "#size-cells",
            reason: "more than 2 cells",
        });
    }
    Ok((address, size))
}

/// The first `(address, size)` entry of the node's `reg`, decoded with its parent's cell sizes.
///
/// # Errors
/// [`BoardError::MissingProperty`], [`BoardError::BadProperty`] when it is shorter than one
/// entry or the size is zero, [`BoardError::Unsupported`] for 3-cell addresses.
pub fn first_reg<'a>(placed: Placed<'_, 'a>) -> Result<(u64, u64), BoardError<'a>> {
    regs(placed, &mut |_, _| true).and_then(|first| {
        first.ok_or(BoardError::BadProperty {
            node: placed.node.name,
            property: "reg",
            reason: "no (address, size) entry",
        })
    })
}

/// Calls `each(address, size)` for every `reg` entry until it returns true; returns that entry.
///
/// # Errors
/// As [`first_reg`], and [`BoardError::BadProperty`] when the length is not a whole number of
/// entries.
pub fn regs<'a>(
    placed: Placed<'_, 'a>,
    each: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<Option<(u64, u64)>, BoardError<'a>> {
    let node = placed.node;
    let (ac, sc) = match placed.parent {
        Some(parent) => cell_sizes(parent)?,
        None => (2, 1),
    };
    if ac > 2 {
        return Err(BoardError::Unsupported {
            node: node.name,
            property: "reg",
            reason: "parent #address-cells above 2",
        });
    }
    let bytes = required_bytes(node, "reg")?;
    let entry = (ac + sc) * 4;
    if entry == 0 || bytes.is_empty() || bytes.len() % entry != 0 {
        return Err(BoardError::BadProperty {
            node: node.name,
            property: "reg",
            reason: "length is not a whole number of (address, size) entries",
        });
    }
    for chunk in bytes.chunks_exact(entry) {
        let address = be_cells(chunk, ac).unwrap_or(0);
        let size = be_cells(&chunk[ac * 4..], sc).unwrap_or(0);
        if size == 0 || address.checked_add(size).is_none() {
            return Err(BoardError::BadProperty {
                node: node.name,
                property: "reg",
                reason: "empty or wrapping range",
            });
        }
        if each(address, size) {
            return Ok(Some((address, size)));
        }
    }
    Ok(None)
}

/// The node at `path` (absolute, or an alias from `/aliases`), with its parent and inherited
/// interrupt parent. A path component without `@` matches a node's name before its `@`.
pub fn find_path<'b, 'a>(fdt: &'b Fdt<'a>, path: &str) -> Option<Placed<'b, 'a>> {
    let path = if path.starts_with('/') {
        path
    } else {
        let target = fdt.find_node("/aliases")?.property(path)?.value;
        let end = target.iter().position(|b| *b == 0).unwrap_or(target.len());
        core::str::from_utf8(&target[..end]).ok()?
    };
    let root = fdt.find_node("/")?;
    let mut placed = Placed {
        node: root,
        parent: None,
        interrupt_parent: root
            .property("interrupt-parent")
            .and_then(|p| be_u32(p.value)),
    };
    for component in path.split('/').filter(|c| !c.is_empty()) {
        let child = placed.node.children().find(|c| {
            c.name == component
                || (!component.contains('@') && c.name.split('@').next() == Some(component))
        })?;
        let own = child
            .property("interrupt-parent")
            .and_then(|p| be_u32(p.value));
        placed = Placed {
            node: child,
            parent: Some(placed.node),
            interrupt_parent: own.or(placed.interrupt_parent),
        };
    }
    Some(placed)
}
