//! Byte-level helpers for corrupting `dtc` blobs (header fields, tokens, splices) and the
//! battery of `fdt` 0.1.5 and board-config calls a blob that `validate_blob` accepts must
//! survive.

use board_config::dt;
use fdt::Fdt;

// Header field offsets (Devicetree Specification v0.4 §5.2).
pub const MAGIC: usize = 0x00;
pub const TOTALSIZE: usize = 0x04;
pub const OFF_DT_STRUCT: usize = 0x08;
pub const OFF_DT_STRINGS: usize = 0x0c;
pub const OFF_MEM_RSVMAP: usize = 0x10;
pub const VERSION: usize = 0x14;
pub const LAST_COMP_VERSION: usize = 0x18;
pub const SIZE_DT_STRINGS: usize = 0x20;
pub const SIZE_DT_STRUCT: usize = 0x24;
/// Every header field after `magic`.
pub const FIELDS: [usize; 9] = [
    TOTALSIZE,
    OFF_DT_STRUCT,
    OFF_DT_STRINGS,
    OFF_MEM_RSVMAP,
    VERSION,
    LAST_COMP_VERSION,
    0x1c,
    SIZE_DT_STRINGS,
    SIZE_DT_STRUCT,
];

// Tokens (§5.4.1).
pub const BEGIN_NODE: u32 = 1;
pub const END_NODE: u32 = 2;
pub const PROP: u32 = 3;
pub const NOP: u32 = 4;
pub const END: u32 = 9;

pub fn get32(blob: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(blob[at..at + 4].try_into().unwrap())
}

pub fn set32(blob: &mut [u8], at: usize, v: u32) {
    blob[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Big-endian words as bytes.
pub fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// A name, NUL-terminated and padded to 4 bytes, as after `FDT_BEGIN_NODE`.
pub fn name_bytes(name: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.push(0);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    b
}

/// One token of a well-formed blob.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Begin(String),
    End,
    Prop {
        name: String,
        nameoff: u32,
        len: u32,
    },
    Nop,
    Fin,
}

/// The tokens of a well-formed blob with their offsets from the blob's start.
pub fn tokens(blob: &[u8]) -> Vec<(usize, Tok)> {
    let mut at = get32(blob, OFF_DT_STRUCT) as usize;
    let strings = get32(blob, OFF_DT_STRINGS) as usize;
    let mut out = Vec::new();
    loop {
        let tok = match get32(blob, at) {
            BEGIN_NODE => {
                let len = blob[at + 4..].iter().position(|b| *b == 0).unwrap();
                let name = String::from_utf8(blob[at + 4..at + 4 + len].to_vec()).unwrap();
                out.push((at, Tok::Begin(name)));
                at += 4 + (len + 4) / 4 * 4;
                continue;
            }
            END_NODE => Tok::End,
            PROP => {
                let len = get32(blob, at + 4);
                let nameoff = get32(blob, at + 8);
                let s = &blob[strings + nameoff as usize..];
                let n = s.iter().position(|b| *b == 0).unwrap();
                out.push((
                    at,
                    Tok::Prop {
                        name: String::from_utf8(s[..n].to_vec()).unwrap(),
                        nameoff,
                        len,
                    },
                ));
                at += 12 + (len as usize).div_ceil(4) * 4;
                continue;
            }
            NOP => Tok::Nop,
            END => Tok::Fin,
            t => panic!("token {t:#x} at {at:#x}"),
        };
        out.push((at, tok.clone()));
        at += 4;
        if tok == Tok::Fin {
            return out;
        }
    }
}

/// Offset of the `n`th (from 0) token for which `pred` holds.
pub fn nth(blob: &[u8], n: usize, pred: impl Fn(&Tok) -> bool) -> usize {
    tokens(blob)
        .into_iter()
        .filter(|(_, t)| pred(t))
        .nth(n)
        .unwrap_or_else(|| panic!("no token number {n} of that kind"))
        .0
}

/// Offset of the first `FDT_PROP` named `name`.
pub fn prop(blob: &[u8], name: &str) -> usize {
    nth(
        blob,
        0,
        |t| matches!(t, Tok::Prop { name: n, .. } if n == name),
    )
}

/// Offset of the `FDT_BEGIN_NODE` of the node named `name`.
pub fn node(blob: &[u8], name: &str) -> usize {
    nth(blob, 0, |t| *t == Tok::Begin(name.into()))
}

/// Offset of the `FDT_END_NODE` that closes the node whose `FDT_BEGIN_NODE` is at `begin`.
pub fn end_of(blob: &[u8], begin: usize) -> usize {
    let mut depth = 0;
    for (at, t) in tokens(blob).into_iter().filter(|(at, _)| *at >= begin) {
        match t {
            Tok::Begin(_) => depth += 1,
            Tok::End => {
                depth -= 1;
                if depth == 0 {
                    return at;
                }
            }
            _ => {}
        }
    }
    panic!("node at {begin:#x} never ends")
}

/// `blob` with `remove` bytes at `at` replaced by `insert`, the header kept consistent:
/// `at` lies in the structure block, which `dtc` places before the strings block.
pub fn splice(blob: &[u8], at: usize, remove: usize, insert: &[u8]) -> Vec<u8> {
    let mut out = blob[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&blob[at + remove..]);
    let delta = insert.len() as i64 - remove as i64;
    let shift = |v: u32| (i64::from(v) + delta) as u32;
    for field in [TOTALSIZE, SIZE_DT_STRUCT] {
        set32(&mut out, field, shift(get32(blob, field)));
    }
    for field in [OFF_DT_STRINGS, OFF_MEM_RSVMAP] {
        if get32(blob, field) as usize >= at {
            set32(&mut out, field, shift(get32(blob, field)));
        }
    }
    out
}

/// `blob` with `s` appended to its strings block (the last block in `dtc`'s output), and
/// the new string's `nameoff`.
pub fn add_string(blob: &[u8], s: &str) -> (Vec<u8>, u32) {
    let strings_end = (get32(blob, OFF_DT_STRINGS) + get32(blob, SIZE_DT_STRINGS)) as usize;
    assert_eq!(strings_end, blob.len(), "the strings block is not last");
    let nameoff = get32(blob, SIZE_DT_STRINGS);
    let mut out = blob.to_vec();
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    let grow = s.len() as u32 + 1;
    set32(&mut out, SIZE_DT_STRINGS, nameoff + grow);
    set32(&mut out, TOTALSIZE, get32(blob, TOTALSIZE) + grow);
    (out, nameoff)
}

/// An `FDT_PROP` token with its value, padded.
pub fn prop_bytes(nameoff: u32, value: &[u8]) -> Vec<u8> {
    let mut b = words(&[PROP, value.len() as u32, nameoff]);
    b.extend_from_slice(value);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    b
}

/// Paths looked up in every tree (present in the fixtures, absent, odd).
const PATHS: [&str; 12] = [
    "/",
    "/chosen",
    "/aliases",
    "/memory",
    "/memory@40000000",
    "/intc@8000000/its@8080000",
    "/cpus/cpu-map/socket0/cluster0/core0",
    "/pcie@10000000",
    "/no/such/node",
    "serial0",
    "",
    "/smmuv3@9050000",
];

/// board-config's entry points and the `fdt` 0.1.5 accessors it and the daemon use, over
/// `blob`. Results are ignored: only a panic matters.
pub fn exercise(blob: &[u8]) {
    let fdt = Fdt::new(blob).expect("validate_blob accepted a blob Fdt::new refuses");
    let _ = board_config::load(&fdt, None); // dt::from_fdt, then combine
    let _ = dt::initrd(&fdt);
    let mut count = 0usize;
    for node in fdt.all_nodes() {
        for p in node.properties() {
            count += p.name.len() + p.value.len();
        }
        count += node.reg().map_or(0, |r| r.take(16).count());
    }
    for path in ["/chosen", "/no/such/node", "serial0"] {
        let _ = fdt.find_node(path).map(|n| n.name);
    }
    let _ = fdt.find_phandle(0x8002).map(|n| n.name);
    count += fdt.memory_reservations().take(64).count();
    if let Some(aliases) = fdt.aliases() {
        for (name, _) in aliases.all() {
            let _ = fdt.find_node(name);
        }
    }
    std::hint::black_box(count);
}

/// [`exercise`], then the rest of `fdt` 0.1.5's generic accessors (the ones the `blob`
/// module comment does not list as to be avoided).
pub fn exercise_all(blob: &[u8]) {
    exercise(blob);
    let fdt = Fdt::new(blob).unwrap();
    let _ = dt::from_fdt(&fdt);
    let mut count = 0usize;
    for node in fdt.all_nodes() {
        for p in node.properties() {
            let _ = (p.as_usize(), p.as_str());
        }
        let _ = node.cell_sizes();
        count += node.raw_reg().map_or(0, |r| r.take(16).count());
        count += node.compatible().map_or(0, |c| c.all().count());
        let _ = (
            node.interrupt_cells(),
            node.interrupt_parent().map(|n| n.name),
        );
        count += node.interrupts().map_or(0, |i| i.take(16).count());
        for child in node.children() {
            count += child.properties().count();
        }
    }
    let root = fdt.root();
    let _ = root.cell_sizes();
    count += root.properties().count();
    for path in PATHS {
        if let Some(n) = fdt.find_node(path) {
            count += n.properties().count() + n.children().count();
        }
    }
    count += fdt.find_all_nodes("/virtio_mmio").count();
    let _ = fdt.find_compatible(&["arm,smmu-v3", "pci-host-ecam-generic"]);
    for phandle in [0, 1, 0x8000, 0x8003, u32::MAX] {
        let _ = fdt.find_phandle(phandle).map(|n| n.name);
    }
    count += fdt.strings().count();
    if let Some(aliases) = fdt.aliases() {
        for (name, _) in aliases.all() {
            let _ = aliases.resolve_node(name);
        }
    }
    std::hint::black_box(count);
}

/// The panic message if [`exercise_all`] panics on `blob`.
pub fn exercise_panics(blob: &[u8]) -> Option<String> {
    std::panic::catch_unwind(|| exercise_all(blob))
        .err()
        .map(|e| panic_text(&*e))
}

/// A panic payload's text.
pub fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-text panic)".into())
}

/// A flattened devicetree (v17) built token by token, for trees `dtc` would refuse to write
/// or that a generator shapes: `begin`, `prop`*, children, `end`, then `finish`.
#[derive(Default)]
pub struct FdtWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
}

impl FdtWriter {
    /// Opens a node (the root's name is empty).
    pub fn begin(&mut self, name: &str) -> &mut Self {
        self.structure.extend(words(&[BEGIN_NODE]));
        self.structure.extend(name_bytes(name));
        self
    }

    /// A property with raw bytes.
    pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let nameoff = self.string(name);
        self.structure.extend(prop_bytes(nameoff, value));
        self
    }

    /// A property of big-endian cells.
    pub fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        self.prop(name, &words(cells))
    }

    /// Closes the innermost open node.
    pub fn end(&mut self) -> &mut Self {
        self.structure.extend(words(&[END_NODE]));
        self
    }

    /// The blob: header, an empty memory reservation block, the structure block (with
    /// `FDT_END`), the strings block.
    pub fn finish(&self) -> Vec<u8> {
        let mut structure = self.structure.clone();
        structure.extend(words(&[END]));
        let rsv = HEADER_LEN;
        let off_struct = rsv + 16;
        let off_strings = off_struct + structure.len();
        let total = off_strings + self.strings.len();
        let mut blob = words(&[
            0xd00d_feed,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            rsv as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            structure.len() as u32,
        ]);
        blob.extend([0; 16]);
        blob.extend(structure);
        blob.extend(&self.strings);
        blob
    }

    fn string(&mut self, name: &str) -> u32 {
        let mut at = 0;
        for s in self.strings.split(|b| *b == 0) {
            if s == name.as_bytes() {
                return at as u32;
            }
            at += s.len() + 1;
        }
        let at = self.strings.len() as u32;
        self.strings.extend(name.as_bytes());
        self.strings.push(0);
        at
    }
}

/// Size of the v17 header.
pub const HEADER_LEN: usize = 40;
