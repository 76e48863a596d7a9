//! [`validate_blob`]: a walk over a flattened devicetree (Devicetree Specification v0.4 §5)
//! that accepts only blobs `fdt` 0.1.5 can read without panicking.
//!
//! `fdt` 0.1.5 checks the header's magic and `totalsize`, then trusts everything else. What it
//! trusts, and where it panics (or worse) when that trust is misplaced:
//!
//! * the header's `off_dt_struct + size_dt_struct` and `off_dt_strings + size_dt_strings`: it
//!   slices the blob with them (`Fdt::structs_block`, `Fdt::strings_block`);
//! * `off_mem_rsvmap`: `Fdt::memory_reservations` slices the blob from it;
//! * node names NUL-terminated inside the structure block (`expect("unit name")`) and UTF-8
//!   (`Fdt::all_nodes` and the skipping of a node `unwrap` the conversion);
//! * every `FDT_PROP`'s `len` inside the structure block (the value is sliced with it) and
//!   its `nameoff` inside the strings block, naming a NUL-terminated UTF-8 string
//!   (`expect("not utf-8 cstr")` and friends);
//! * the layout `FDT_BEGIN_NODE name FDT_PROP* child* FDT_END_NODE`: the node skipper (used
//!   by `Fdt::find_node` and `FdtNode::children`) asserts `FDT_END_NODE` where it expects it,
//!   so a property after a child, or an `FDT_NOP` before a property or a child, panics; an
//!   `FDT_NOP` just before `FDT_END_NODE` does not panic but stops `Fdt::all_nodes` early
//!   (and `Fdt::find_phandle` with it), so `FDT_NOP` is accepted only outside the root node;
//! * balanced nesting (`Fdt::all_nodes` counts levels down with `-=`) no deeper than 63
//!   levels, the root included ([`MAX_BLOB_DEPTH`]; it keeps each level's properties in a
//!   64-entry array indexed from 1);
//! * the root's name being empty (`Fdt::root` and `Fdt::find_node("/")` look for the empty
//!   name; `root` panics when it is not found);
//! * `#address-cells` and `#size-cells` at least one cell long (`FdtNode::cell_sizes`,
//!   behind `reg` and `raw_reg`, `expect`s it); the specification wants exactly one (§2.3.5);
//! * `/aliases` not making `Fdt::find_node` recurse forever: a path not found is looked up
//!   as an alias, and the alias's value is looked up with `find_node` again. An alias name
//!   that begins with `/`, or a value that does not, could close a loop (stack overflow);
//!   both are refused (§3.3: names are `[0-9a-z-]`, values full paths).
//!
//! `fdt` 0.1.5 also gets one token wrong: it takes `FDT_END` to be 5 (it is 9, §5.4.1). No
//! accepted blob holds the token 5; at a real `FDT_END` it just stops.
//!
//! What no walk of the structure can make safe, and so must not be called on a firmware tree
//! (board-config calls none of them; `tests/blob.rs` checks its sources): `Fdt::chosen`,
//! `Fdt::cpus` and `Fdt::memory` (panic when the node is absent), `Root::model` and
//! `Root::compatible` (panic when the property is), `Compatible::first`, `Cpu::ids`,
//! `Cpu::clock_frequency`, `Cpu::timebase_frequency`, `CpuIds::first` and `CpuIds::all`,
//! `Memory::regions` and `Memory::initial_mapped_area`, `Chosen::bootargs`, `Chosen::stdout`
//! and `Chosen::stdin` (panic on an empty value), and `FdtNode::raw_reg`, which never ends
//! when `#address-cells` and `#size-cells` are both 0.

use core::fmt;

/// Size of the header, v17 (Devicetree Specification v0.4 §5.2).
pub const HEADER_SIZE: usize = 40;
/// `magic` (§5.2).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Oldest `version` accepted: 16 (v17 added `size_dt_struct`, which is read regardless).
pub const MIN_VERSION: u32 = 16;
/// Newest `last_comp_version` accepted: 17, the version §5.2 describes.
pub const MAX_LAST_COMP_VERSION: u32 = 17;
/// Deepest nesting accepted, the root being level 1 (`fdt` 0.1.5's limit, see the module
/// comment).
pub const MAX_BLOB_DEPTH: usize = 63;

// Structure block tokens (§5.4.1).
const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_END: u32 = 0x9;

// Header field offsets (§5.2).
const OFF_MAGIC: usize = 0x00;
const OFF_TOTALSIZE: usize = 0x04;
const OFF_OFF_DT_STRUCT: usize = 0x08;
const OFF_OFF_DT_STRINGS: usize = 0x0c;
const OFF_OFF_MEM_RSVMAP: usize = 0x10;
const OFF_VERSION: usize = 0x14;
const OFF_LAST_COMP_VERSION: usize = 0x18;
const OFF_SIZE_DT_STRINGS: usize = 0x20;
const OFF_SIZE_DT_STRUCT: usize = 0x24;

/// The part of the blob an error is in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Block {
    /// The header (§5.2).
    Header,
    /// The memory reservation block (§5.3).
    MemoryReservations,
    /// The structure block (§5.4).
    Structure,
    /// The strings block (§5.5).
    Strings,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::MemoryReservations => "memory reservation block",
            Self::Structure => "structure block",
            Self::Strings => "strings block",
        })
    }
}

/// A blob that is not a well-formed flattened devicetree, or one `fdt` 0.1.5 cannot read
/// safely: where (block and byte offset from the start of the blob) and what.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BlobError {
    /// The block at fault.
    pub block: Block,
    /// Byte offset from the start of the blob: of the header field, the token, or the
    /// reservation entry at fault.
    pub offset: usize,
    /// What is wrong.
    pub kind: BlobErrorKind,
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device tree: {} at offset {:#x}: {}",
            self.block, self.offset, self.kind
        )
    }
}

/// What is wrong with the blob.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlobErrorKind {
    /// The blob is shorter than the header.
    TooShort {
        /// The blob's length.
        len: usize,
    },
    /// `magic` is not 0xd00dfeed.
    BadMagic {
        /// The value found.
        magic: u32,
    },
    /// `totalsize` is larger than the blob.
    TotalSizePastBlob {
        /// `totalsize`.
        totalsize: u32,
        /// The blob's length.
        len: usize,
    },
    /// `totalsize` is smaller than the header.
    TotalSizeBelowHeader {
        /// `totalsize`.
        totalsize: u32,
    },
    /// `version` is older than [`MIN_VERSION`].
    Version {
        /// `version`.
        version: u32,
    },
    /// `last_comp_version` is newer than [`MAX_LAST_COMP_VERSION`].
    LastCompVersion {
        /// `last_comp_version`.
        last_comp_version: u32,
    },
    /// A block's offset lies inside the header.
    InsideHeader {
        /// The header field (`off_dt_struct`, ...).
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// A block's offset is not aligned as §5 requires.
    Misaligned {
        /// The header field.
        field: &'static str,
        /// Its value.
        value: u32,
        /// The alignment required.
        align: u32,
    },
    /// A block runs past `totalsize`.
    PastTotalSize {
        /// The block.
        which: Block,
        /// Its offset.
        offset: u32,
        /// Its size.
        size: u32,
        /// `totalsize`.
        totalsize: u32,
    },
    /// Two blocks overlap.
    Overlap {
        /// The other block.
        other: Block,
    },
    /// The memory reservation block has no (0, 0) entry before `totalsize`.
    ReservationsUnterminated {
        /// `totalsize`.
        totalsize: u32,
    },
    /// A token, or the operands after it, run past the end of the structure block.
    Truncated {
        /// Where the structure block ends.
        end: usize,
    },
    /// A token that §5.4.1 does not define.
    UnknownToken {
        /// The token.
        token: u32,
    },
    /// A node name without a NUL before the end of the structure block.
    NameUnterminated,
    /// A node name that is not UTF-8.
    NameNotUtf8,
    /// The root node's name is not empty.
    RootNamed,
    /// A node other than the root has an empty name.
    NameEmpty,
    /// An `FDT_PROP` whose value runs past the end of the structure block.
    PropertyPastEnd {
        /// The property's `len`.
        len: u32,
        /// Where the structure block ends.
        end: usize,
    },
    /// An `FDT_PROP` whose `nameoff` is not inside the strings block.
    NameOffsetPastStrings {
        /// `nameoff`.
        nameoff: u32,
        /// `size_dt_strings`.
        size: u32,
    },
    /// A property name without a NUL before the end of the strings block.
    PropertyNameUnterminated {
        /// `nameoff`.
        nameoff: u32,
    },
    /// A property name that is not UTF-8.
    PropertyNameNotUtf8 {
        /// `nameoff`.
        nameoff: u32,
    },
    /// An `FDT_PROP` outside any node.
    PropertyOutsideNode,
    /// An `FDT_PROP` after a child node (§5.4.2: properties come first).
    PropertyAfterChild,
    /// An `FDT_NOP` inside a node, which `fdt` 0.1.5 misreads.
    NopInsideNode,
    /// An `FDT_END_NODE` with no node open.
    UnbalancedEnd,
    /// A second root node.
    SecondRoot,
    /// `FDT_END` before any node.
    NoRoot,
    /// `FDT_END` while nodes are still open.
    EndInsideNode {
        /// How many.
        open: usize,
    },
    /// Bytes after `FDT_END` inside the structure block.
    AfterEnd {
        /// Where the structure block ends.
        end: usize,
    },
    /// Nodes nested deeper than [`MAX_BLOB_DEPTH`].
    TooDeep {
        /// [`MAX_BLOB_DEPTH`].
        max: usize,
    },
    /// `#address-cells` or `#size-cells` is not one cell.
    CellsNotOneCell {
        /// The property.
        property: &'static str,
        /// Its length in bytes.
        len: u32,
    },
    /// An alias whose name begins with `/`.
    AliasName {
        /// `nameoff` of the alias's name.
        nameoff: u32,
    },
    /// An alias whose value does not begin with `/`.
    AliasValue {
        /// `nameoff` of the alias's name.
        nameoff: u32,
    },
}

impl fmt::Display for BlobErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => write!(
                f,
                "the blob is {len} bytes, shorter than the {HEADER_SIZE}-byte header"
            ),
            Self::BadMagic { magic } => {
                write!(f, "magic {magic:#010x} is not {FDT_MAGIC:#010x}")
            }
            Self::TotalSizePastBlob { totalsize, len } => write!(
                f,
                "totalsize {totalsize:#x} is larger than the blob ({len:#x} bytes)"
            ),
            Self::TotalSizeBelowHeader { totalsize } => write!(
                f,
                "totalsize {totalsize:#x} is smaller than the {HEADER_SIZE}-byte header"
            ),
            Self::Version { version } => {
                write!(f, "version {version} is older than {MIN_VERSION}")
            }
            Self::LastCompVersion { last_comp_version } => write!(
                f,
                "last_comp_version {last_comp_version} is newer than {MAX_LAST_COMP_VERSION}"
            ),
            Self::InsideHeader { field, value } => write!(
                f,
                "{field} {value:#x} lies inside the {HEADER_SIZE}-byte header"
            ),
            Self::Misaligned {
                field,
                value,
                align,
            } => write!(f, "{field} {value:#x} is not a multiple of {align}"),
            Self::PastTotalSize {
                which,
                offset,
                size,
                totalsize,
            } => write!(
                f,
                "the {which} at {offset:#x} (size {size:#x}) runs past totalsize {totalsize:#x}"
            ),
            Self::Overlap { other } => write!(f, "overlaps the {other}"),
            Self::ReservationsUnterminated { totalsize } => write!(
                f,
                "no terminating (0, 0) entry before totalsize {totalsize:#x}"
            ),
            Self::Truncated { end } => write!(
                f,
                "the token or its operands run past the end of the block at {end:#x} (no FDT_END)"
            ),
            Self::UnknownToken { token } => write!(f, "unknown token {token:#010x}"),
            Self::NameUnterminated => {
                f.write_str("node name has no NUL before the end of the block")
            }
            Self::NameNotUtf8 => f.write_str("node name is not UTF-8"),
            Self::RootNamed => f.write_str("the root node has a name (it must be empty)"),
            Self::NameEmpty => f.write_str("a node other than the root has an empty name"),
            Self::PropertyPastEnd { len, end } => write!(
                f,
                "property value of {len:#x} bytes runs past the end of the block at {end:#x}"
            ),
            Self::NameOffsetPastStrings { nameoff, size } => write!(
                f,
                "property name offset {nameoff:#x} is past the strings block (size {size:#x})"
            ),
            Self::PropertyNameUnterminated { nameoff } => write!(
                f,
                "property name at strings offset {nameoff:#x} has no NUL before the end of the strings block"
            ),
            Self::PropertyNameNotUtf8 { nameoff } => write!(
                f,
                "property name at strings offset {nameoff:#x} is not UTF-8"
            ),
            Self::PropertyOutsideNode => f.write_str("FDT_PROP outside any node"),
            Self::PropertyAfterChild => {
                f.write_str("FDT_PROP after a child node (properties come first)")
            }
            Self::NopInsideNode => f.write_str(
                "FDT_NOP inside a node (fdt 0.1.5 misreads those; only NOPs before or after the root node are accepted)",
            ),
            Self::UnbalancedEnd => f.write_str("FDT_END_NODE with no node open"),
            Self::SecondRoot => f.write_str("a second root node (a tree has exactly one)"),
            Self::NoRoot => f.write_str("FDT_END before any node"),
            Self::EndInsideNode { open } => {
                write!(f, "FDT_END with {open} node(s) still open")
            }
            Self::AfterEnd { end } => write!(
                f,
                "FDT_END is not the last token (the block runs on to {end:#x})"
            ),
            Self::TooDeep { max } => write!(f, "nodes nested deeper than {max} levels"),
            Self::CellsNotOneCell { property, len } => {
                write!(f, "{property} is {len} bytes; it must be one 32-bit cell")
            }
            Self::AliasName { nameoff } => write!(
                f,
                "alias name at strings offset {nameoff:#x} begins with '/' (an alias lookup could loop)"
            ),
            Self::AliasValue { nameoff } => write!(
                f,
                "alias at strings offset {nameoff:#x} does not name a full path (an alias lookup could loop)"
            ),
        }
    }
}

/// Checks that `blob` is a well-formed flattened devicetree (Devicetree Specification v0.4
/// §5) that `fdt` 0.1.5 can read without panicking (the [module](self) comment lists what
/// that takes, and the `fdt` calls that stay unsafe on any tree). Call it before walking an
/// [`fdt::Fdt`] built from a blob that comes from outside.
///
/// # Errors
/// The first [`BlobError`]: header, then memory reservation block, then structure block
/// (with the strings it names) in order.
pub fn validate_blob(blob: &[u8]) -> Result<(), BlobError> {
    let h = Header::read(blob)?;
    let rsv_end = reservations(blob, &h)?;
    let rsv = (h.off_mem_rsvmap as usize, rsv_end);
    for (block, (start, end)) in [
        (Block::Structure, h.structure()),
        (Block::Strings, h.strings()),
    ] {
        if overlap(rsv, (start, end)) {
            return Err(BlobError {
                block: Block::MemoryReservations,
                offset: rsv.0,
                kind: BlobErrorKind::Overlap { other: block },
            });
        }
    }
    Structure::new(blob, &h).walk()
}

fn be32(blob: &[u8], at: usize) -> Option<u32> {
    let bytes = blob.get(at..at.checked_add(4)?)?;
    bytes.try_into().ok().map(u32::from_be_bytes)
}

fn be64(blob: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(be32(blob, at)?) << 32 | u64::from(be32(blob, at + 4)?))
}

/// Whether two non-empty half-open ranges overlap (an empty range overlaps nothing).
fn overlap(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < a.1 && b.0 < b.1 && a.0 < b.1 && b.0 < a.1
}

/// The header fields checked (§5.2).
struct Header {
    totalsize: u32,
    off_dt_struct: u32,
    off_dt_strings: u32,
    off_mem_rsvmap: u32,
    size_dt_strings: u32,
    size_dt_struct: u32,
}

impl Header {
    fn read(blob: &[u8]) -> Result<Self, BlobError> {
        let err = |offset, kind| {
            Err(BlobError {
                block: Block::Header,
                offset,
                kind,
            })
        };
        if blob.len() < HEADER_SIZE {
            return err(0, BlobErrorKind::TooShort { len: blob.len() });
        }
        // In bounds: the blob holds the whole header.
        let field = |at| be32(blob, at).unwrap_or(0);
        let magic = field(OFF_MAGIC);
        if magic != FDT_MAGIC {
            return err(OFF_MAGIC, BlobErrorKind::BadMagic { magic });
        }
        let h = Self {
            totalsize: field(OFF_TOTALSIZE),
            off_dt_struct: field(OFF_OFF_DT_STRUCT),
            off_dt_strings: field(OFF_OFF_DT_STRINGS),
            off_mem_rsvmap: field(OFF_OFF_MEM_RSVMAP),
            size_dt_strings: field(OFF_SIZE_DT_STRINGS),
            size_dt_struct: field(OFF_SIZE_DT_STRUCT),
        };
        let totalsize = h.totalsize;
        if totalsize as usize > blob.len() {
            return err(
                OFF_TOTALSIZE,
                BlobErrorKind::TotalSizePastBlob {
                    totalsize,
                    len: blob.len(),
                },
            );
        }
        if (totalsize as usize) < HEADER_SIZE {
            return err(
                OFF_TOTALSIZE,
                BlobErrorKind::TotalSizeBelowHeader { totalsize },
            );
        }
        let version = field(OFF_VERSION);
        if version < MIN_VERSION {
            return err(OFF_VERSION, BlobErrorKind::Version { version });
        }
        let last_comp_version = field(OFF_LAST_COMP_VERSION);
        if last_comp_version > MAX_LAST_COMP_VERSION {
            return err(
                OFF_LAST_COMP_VERSION,
                BlobErrorKind::LastCompVersion { last_comp_version },
            );
        }
        // (field, its offset, value, alignment, the block's size field's offset, size)
        let blocks = [
            (
                "off_mem_rsvmap",
                OFF_OFF_MEM_RSVMAP,
                h.off_mem_rsvmap,
                8, // §5.3: 8-byte aligned.
                Block::MemoryReservations,
                OFF_OFF_MEM_RSVMAP,
                0,
            ),
            (
                "off_dt_struct",
                OFF_OFF_DT_STRUCT,
                h.off_dt_struct,
                4, // §5.4: 4-byte aligned.
                Block::Structure,
                OFF_SIZE_DT_STRUCT,
                h.size_dt_struct,
            ),
            (
                "off_dt_strings",
                OFF_OFF_DT_STRINGS,
                h.off_dt_strings,
                1, // §5.5: no alignment.
                Block::Strings,
                OFF_SIZE_DT_STRINGS,
                h.size_dt_strings,
            ),
        ];
        for (name, at, value, align, which, size_at, size) in blocks {
            if (value as usize) < HEADER_SIZE {
                return err(at, BlobErrorKind::InsideHeader { field: name, value });
            }
            if value % align != 0 {
                return err(
                    at,
                    BlobErrorKind::Misaligned {
                        field: name,
                        value,
                        align,
                    },
                );
            }
            if u64::from(value) + u64::from(size) > u64::from(totalsize) {
                return err(
                    size_at,
                    BlobErrorKind::PastTotalSize {
                        which,
                        offset: value,
                        size,
                        totalsize,
                    },
                );
            }
        }
        if overlap(h.structure(), h.strings()) {
            return err(
                OFF_OFF_DT_STRINGS,
                BlobErrorKind::Overlap {
                    other: Block::Structure,
                },
            );
        }
        Ok(h)
    }

    /// The structure block's range (within `totalsize`, once read).
    fn structure(&self) -> (usize, usize) {
        let start = self.off_dt_struct as usize;
        (start, start + self.size_dt_struct as usize)
    }

    /// The strings block's range (within `totalsize`, once read).
    fn strings(&self) -> (usize, usize) {
        let start = self.off_dt_strings as usize;
        (start, start + self.size_dt_strings as usize)
    }
}

/// The end of the memory reservation block: one past its (0, 0) entry (§5.3.2).
fn reservations(blob: &[u8], h: &Header) -> Result<usize, BlobError> {
    let total = h.totalsize as usize;
    let mut at = h.off_mem_rsvmap as usize;
    while at + 16 <= total {
        let (address, size) = (be64(blob, at), be64(blob, at + 8));
        at += 16;
        if address == Some(0) && size == Some(0) {
            return Ok(at);
        }
    }
    Err(BlobError {
        block: Block::MemoryReservations,
        offset: h.off_mem_rsvmap as usize,
        kind: BlobErrorKind::ReservationsUnterminated {
            totalsize: h.totalsize,
        },
    })
}

/// The walk over the structure block (§5.4).
struct Structure<'a> {
    blob: &'a [u8],
    /// The structure block's end (exclusive).
    end: usize,
    /// The strings block.
    strings: &'a [u8],
    /// Where the walk is.
    at: usize,
    /// Nodes open; the root is level 1.
    depth: usize,
    /// Whether the root node has been opened, closed.
    root_opened: bool,
    root_closed: bool,
    /// Whether the current node has had a child.
    had_child: bool,
    /// Whether the current level-2 node is an `/aliases` node as `Fdt::find_node` finds it
    /// (name `aliases` or `aliases@...`).
    in_aliases: bool,
}

impl<'a> Structure<'a> {
    fn new(blob: &'a [u8], h: &Header) -> Self {
        let (start, end) = h.structure();
        let (s_start, s_end) = h.strings();
        Self {
            blob,
            end,
            // In bounds: both ranges were checked against totalsize <= blob.len().
            strings: blob.get(s_start..s_end).unwrap_or(&[]),
            at: start,
            depth: 0,
            root_opened: false,
            root_closed: false,
            had_child: false,
            in_aliases: false,
        }
    }

    fn err(&self, offset: usize, kind: BlobErrorKind) -> BlobError {
        BlobError {
            block: Block::Structure,
            offset,
            kind,
        }
    }

    /// The big-endian word at `at`, if it lies inside the structure block.
    fn word(&self, at: usize) -> Option<u32> {
        if at.checked_add(4)? > self.end {
            return None;
        }
        be32(self.blob, at)
    }

    fn walk(mut self) -> Result<(), BlobError> {
        loop {
            let token_at = self.at;
            let token = self
                .word(token_at)
                .ok_or_else(|| self.err(token_at, BlobErrorKind::Truncated { end: self.end }))?;
            self.at += 4;
            match token {
                FDT_BEGIN_NODE => self.begin_node(token_at)?,
                FDT_END_NODE => {
                    if self.depth == 0 {
                        return Err(self.err(token_at, BlobErrorKind::UnbalancedEnd));
                    }
                    self.depth -= 1;
                    self.root_closed = self.depth == 0;
                    self.had_child = true;
                }
                FDT_PROP => self.property(token_at)?,
                FDT_NOP if self.depth > 0 => {
                    return Err(self.err(token_at, BlobErrorKind::NopInsideNode));
                }
                FDT_NOP => {}
                FDT_END => {
                    let kind = if self.depth > 0 {
                        BlobErrorKind::EndInsideNode { open: self.depth }
                    } else if !self.root_opened {
                        BlobErrorKind::NoRoot
                    } else if self.at != self.end {
                        BlobErrorKind::AfterEnd { end: self.end }
                    } else {
                        return Ok(());
                    };
                    return Err(self.err(token_at, kind));
                }
                token => return Err(self.err(token_at, BlobErrorKind::UnknownToken { token })),
            }
        }
    }

    /// `FDT_BEGIN_NODE` at `token_at`, `self.at` at its name (§5.4.1).
    fn begin_node(&mut self, token_at: usize) -> Result<(), BlobError> {
        if self.root_closed {
            return Err(self.err(token_at, BlobErrorKind::SecondRoot));
        }
        let rest = self.blob.get(self.at..self.end).unwrap_or(&[]);
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.err(token_at, BlobErrorKind::NameUnterminated))?;
        let name = core::str::from_utf8(&rest[..len])
            .map_err(|_| self.err(token_at, BlobErrorKind::NameNotUtf8))?;
        match (self.depth, name.is_empty()) {
            (0, false) => return Err(self.err(token_at, BlobErrorKind::RootNamed)),
            (1.., true) => return Err(self.err(token_at, BlobErrorKind::NameEmpty)),
            _ => {}
        }
        if self.depth >= MAX_BLOB_DEPTH {
            return Err(self.err(
                token_at,
                BlobErrorKind::TooDeep {
                    max: MAX_BLOB_DEPTH,
                },
            ));
        }
        self.depth += 1;
        self.root_opened = true;
        self.had_child = false;
        if self.depth == 2 {
            self.in_aliases = name.split('@').next() == Some("aliases");
        }
        // The name and its NUL, padded to 4 bytes; the next token read checks the bound.
        self.at = align4(self.at + len + 1);
        Ok(())
    }

    /// `FDT_PROP` at `token_at`, `self.at` at its `len` (§5.4.1).
    fn property(&mut self, token_at: usize) -> Result<(), BlobError> {
        if self.depth == 0 {
            return Err(self.err(token_at, BlobErrorKind::PropertyOutsideNode));
        }
        if self.had_child {
            return Err(self.err(token_at, BlobErrorKind::PropertyAfterChild));
        }
        let truncated = self.err(token_at, BlobErrorKind::Truncated { end: self.end });
        let len = self.word(self.at).ok_or(truncated)?;
        let nameoff = self.word(self.at + 4).ok_or(truncated)?;
        let value_at = self.at + 8;
        let value_end = value_at
            .checked_add(len as usize)
            .filter(|e| *e <= self.end);
        let Some(value_end) = value_end else {
            return Err(self.err(
                token_at,
                BlobErrorKind::PropertyPastEnd { len, end: self.end },
            ));
        };
        let name = self.property_name(token_at, nameoff)?;
        let value = self.blob.get(value_at..value_end).unwrap_or(&[]);
        if matches!(name, "#address-cells" | "#size-cells") && len != 4 {
            let property = if name == "#address-cells" {
                "#address-cells"
            } else {
                "#size-cells"
            };
            return Err(self.err(token_at, BlobErrorKind::CellsNotOneCell { property, len }));
        }
        if self.depth == 2 && self.in_aliases {
            if name.starts_with('/') {
                return Err(self.err(token_at, BlobErrorKind::AliasName { nameoff }));
            }
            if value.first() != Some(&b'/') {
                return Err(self.err(token_at, BlobErrorKind::AliasValue { nameoff }));
            }
        }
        self.at = align4(value_end);
        Ok(())
    }

    /// The NUL-terminated UTF-8 string at `nameoff` in the strings block (§5.5).
    fn property_name(&self, token_at: usize, nameoff: u32) -> Result<&'a str, BlobError> {
        let rest = self
            .strings
            .get(nameoff as usize..)
            .filter(|r| !r.is_empty());
        let rest = rest.ok_or_else(|| {
            self.err(
                token_at,
                BlobErrorKind::NameOffsetPastStrings {
                    nameoff,
                    size: self.strings.len() as u32,
                },
            )
        })?;
        let len = rest.iter().position(|b| *b == 0).ok_or_else(|| {
            self.err(
                token_at,
                BlobErrorKind::PropertyNameUnterminated { nameoff },
            )
        })?;
        core::str::from_utf8(&rest[..len])
            .map_err(|_| self.err(token_at, BlobErrorKind::PropertyNameNotUtf8 { nameoff }))
    }
}

fn align4(at: usize) -> usize {
    (at + 3) & !3
}
