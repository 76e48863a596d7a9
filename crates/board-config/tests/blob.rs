//! `validate_blob`: every fixture is accepted; one hand-corrupted copy of the QEMU `virt`
//! blob per structural failure, each asserting the exact error (and, where `fdt` 0.1.5
//! would panic on it, that it does).

mod common;

use board_config::dt::{self, validate_blob, BlobError, BlobErrorKind, Block, DtErrorKind};
use common::dtb;
use common::fdtblob::*;
use BlobErrorKind::*;

fn qemu() -> Vec<u8> {
    dtb("qemu-virt.dts")
}

#[test]
fn every_fixture_is_accepted() {
    let dir = common::fixture("dt", "");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".dts") {
            let blob = dtb(&name);
            assert_eq!(validate_blob(&blob), Ok(()), "{name}");
            assert_eq!(exercise_panics(&blob), None, "{name}");
            n += 1;
        }
    }
    assert!(n >= 30, "only {n} fixtures");
}

fn with(field: usize, value: u32) -> Vec<u8> {
    let mut b = qemu();
    set32(&mut b, field, value);
    b
}

fn header(offset: usize, kind: BlobErrorKind) -> Result<(), BlobError> {
    Err(BlobError {
        block: Block::Header,
        offset,
        kind,
    })
}

fn structure(offset: usize, kind: BlobErrorKind) -> Result<(), BlobError> {
    Err(BlobError {
        block: Block::Structure,
        offset,
        kind,
    })
}

/// Asserts that `fdt` 0.1.5 itself panics on `blob`: the check is needed.
fn assert_fdt_panics(blob: &[u8]) {
    assert!(
        exercise_panics(blob).is_some(),
        "fdt 0.1.5 reads this blob without panicking"
    );
}

// The QEMU fixture's layout (checked here so that the offsets below mean what they say).
const ROOT: usize = 0x38;
const PSCI: usize = 0xbc;
const FIRST_PROP: usize = 0x40;
const SIZE_CELLS: usize = 0x7c;
const TOTAL: u32 = 0x1eb7;
const STRINGS: u32 = 0x1cb4;
const STRINGS_SIZE: u32 = 0x203;

#[test]
fn the_fixture_layout_is_as_the_tests_expect() {
    let b = qemu();
    assert_eq!(
        [TOTALSIZE, OFF_DT_STRUCT, OFF_DT_STRINGS, SIZE_DT_STRINGS].map(|f| get32(&b, f)),
        [TOTAL, ROOT as u32, STRINGS, STRINGS_SIZE]
    );
    assert_eq!(node(&b, ""), ROOT);
    assert_eq!(node(&b, "psci"), PSCI);
    assert_eq!(prop(&b, "interrupt-parent"), FIRST_PROP);
    assert_eq!(prop(&b, "#size-cells"), SIZE_CELLS);
}

// ---- header -------------------------------------------------------------------------------

#[test]
fn shorter_than_the_header() {
    assert_eq!(
        validate_blob(&qemu()[..39]),
        header(0, TooShort { len: 39 })
    );
}

#[test]
fn bad_magic() {
    let b = with(MAGIC, 0xd00d_feee);
    assert_eq!(
        validate_blob(&b),
        header(0, BadMagic { magic: 0xd00d_feee })
    );
    assert_eq!(
        validate_blob(&b).unwrap_err().to_string(),
        "device tree: header at offset 0x0: magic 0xd00dfeee is not 0xd00dfeed"
    );
}

#[test]
fn totalsize_past_the_blob_or_below_the_header() {
    let b = qemu();
    assert_eq!(
        validate_blob(&b[..b.len() - 1]),
        header(
            TOTALSIZE,
            TotalSizePastBlob {
                totalsize: TOTAL,
                len: TOTAL as usize - 1
            }
        )
    );
    assert_eq!(
        validate_blob(&with(TOTALSIZE, 39)),
        header(TOTALSIZE, TotalSizeBelowHeader { totalsize: 39 })
    );
}

#[test]
fn versions() {
    assert_eq!(
        validate_blob(&with(VERSION, 15)),
        header(VERSION, Version { version: 15 })
    );
    assert_eq!(
        validate_blob(&with(LAST_COMP_VERSION, 18)),
        header(
            LAST_COMP_VERSION,
            LastCompVersion {
                last_comp_version: 18
            }
        )
    );
    assert_eq!(validate_blob(&with(VERSION, 16)), Ok(()));
}

#[test]
fn block_offset_inside_the_header() {
    assert_eq!(
        validate_blob(&with(OFF_DT_STRUCT, 0x20)),
        header(
            OFF_DT_STRUCT,
            InsideHeader {
                field: "off_dt_struct",
                value: 0x20
            }
        )
    );
}

#[test]
fn misaligned_blocks() {
    assert_eq!(
        validate_blob(&with(OFF_MEM_RSVMAP, 0x2c)),
        header(
            OFF_MEM_RSVMAP,
            Misaligned {
                field: "off_mem_rsvmap",
                value: 0x2c,
                align: 8
            }
        )
    );
    assert_eq!(
        validate_blob(&with(OFF_DT_STRUCT, 0x3a)),
        header(
            OFF_DT_STRUCT,
            Misaligned {
                field: "off_dt_struct",
                value: 0x3a,
                align: 4
            }
        )
    );
}

#[test]
fn blocks_past_totalsize() {
    let b = with(SIZE_DT_STRINGS, STRINGS_SIZE + 1);
    assert_eq!(
        validate_blob(&b),
        header(
            SIZE_DT_STRINGS,
            PastTotalSize {
                which: Block::Strings,
                offset: STRINGS,
                size: STRINGS_SIZE + 1,
                totalsize: TOTAL
            }
        )
    );
    assert_fdt_panics(&b);
    let b = with(OFF_DT_STRUCT, 0x1eb4);
    assert_eq!(
        validate_blob(&b),
        header(
            SIZE_DT_STRUCT,
            PastTotalSize {
                which: Block::Structure,
                offset: 0x1eb4,
                size: 0x1c7c,
                totalsize: TOTAL
            }
        )
    );
    assert_fdt_panics(&b);
}

#[test]
fn structure_and_strings_overlap() {
    assert_eq!(
        validate_blob(&with(OFF_DT_STRINGS, 0x1c00)),
        header(
            OFF_DT_STRINGS,
            Overlap {
                other: Block::Structure
            }
        )
    );
}

// ---- memory reservation block ---------------------------------------------------------------

#[test]
fn reservations_unterminated() {
    assert_eq!(
        validate_blob(&with(OFF_MEM_RSVMAP, 0x1eb0)),
        Err(BlobError {
            block: Block::MemoryReservations,
            offset: 0x1eb0,
            kind: ReservationsUnterminated { totalsize: TOTAL }
        })
    );
}

#[test]
fn reservations_overlap_the_strings() {
    let mut b = with(OFF_DT_STRINGS, 0x28);
    set32(&mut b, SIZE_DT_STRINGS, 8);
    assert_eq!(
        validate_blob(&b),
        Err(BlobError {
            block: Block::MemoryReservations,
            offset: 0x28,
            kind: Overlap {
                other: Block::Strings
            }
        })
    );
}

// ---- structure block: tokens and nesting ----------------------------------------------------

#[test]
fn unknown_token() {
    // 5 is what fdt 0.1.5 takes for FDT_END.
    let mut b = qemu();
    let end = end_of(&b, PSCI);
    set32(&mut b, end, 5);
    assert_eq!(validate_blob(&b), structure(end, UnknownToken { token: 5 }));
}

#[test]
fn node_name_unterminated() {
    let b = with(SIZE_DT_STRUCT, (PSCI + 6 - ROOT) as u32); // ends inside "psci"
    assert_eq!(validate_blob(&b), structure(PSCI, NameUnterminated));
    assert_fdt_panics(&b);
}

#[test]
fn node_name_not_utf8() {
    let mut b = qemu();
    b[PSCI + 4] = 0xff;
    assert_eq!(validate_blob(&b), structure(PSCI, NameNotUtf8));
    assert_fdt_panics(&b);
}

#[test]
fn root_named_and_child_unnamed() {
    let mut b = qemu();
    b[ROOT + 4] = b'a';
    assert_eq!(validate_blob(&b), structure(ROOT, RootNamed));
    assert_fdt_panics(&b);
    let mut b = qemu();
    b[PSCI + 4] = 0;
    assert_eq!(validate_blob(&b), structure(PSCI, NameEmpty));
}

#[test]
fn property_runs_past_the_block() {
    let mut b = qemu();
    set32(&mut b, FIRST_PROP + 4, 0x1_0000);
    assert_eq!(
        validate_blob(&b),
        structure(
            FIRST_PROP,
            PropertyPastEnd {
                len: 0x1_0000,
                end: STRINGS as usize
            }
        )
    );
    assert_fdt_panics(&b);
}

#[test]
fn property_name_offset_past_the_strings() {
    let mut b = qemu();
    set32(&mut b, FIRST_PROP + 8, 0x9999);
    let e = validate_blob(&b).unwrap_err();
    assert_eq!(
        Err(e),
        structure(
            FIRST_PROP,
            NameOffsetPastStrings {
                nameoff: 0x9999,
                size: STRINGS_SIZE
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "device tree: structure block at offset 0x40: property name offset 0x9999 is past \
         the strings block (size 0x203)"
    );
    assert_fdt_panics(&b);
    // One past the last byte is past, too.
    set32(&mut b, FIRST_PROP + 8, STRINGS_SIZE);
    assert_eq!(
        validate_blob(&b),
        structure(
            FIRST_PROP,
            NameOffsetPastStrings {
                nameoff: STRINGS_SIZE,
                size: STRINGS_SIZE
            }
        )
    );
    assert_fdt_panics(&b);
}

#[test]
fn property_name_unterminated() {
    // The last string loses its NUL; the first property is pointed at its last character.
    let mut b = with(SIZE_DT_STRINGS, STRINGS_SIZE - 1);
    set32(&mut b, FIRST_PROP + 8, STRINGS_SIZE - 2);
    assert_eq!(
        validate_blob(&b),
        structure(
            FIRST_PROP,
            PropertyNameUnterminated {
                nameoff: STRINGS_SIZE - 2
            }
        )
    );
    assert_fdt_panics(&b);
}

#[test]
fn property_name_not_utf8() {
    let mut b = qemu();
    b[STRINGS as usize] = 0xff; // "interrupt-parent", the first property's name
    assert_eq!(
        validate_blob(&b),
        structure(FIRST_PROP, PropertyNameNotUtf8 { nameoff: 0 })
    );
    assert_fdt_panics(&b);
}

#[test]
fn property_outside_a_node() {
    let b = splice(&qemu(), ROOT, 0, &prop_bytes(0, &[0, 0, 0, 1]));
    assert_eq!(validate_blob(&b), structure(ROOT, PropertyOutsideNode));
}

#[test]
fn property_after_a_child() {
    let b = qemu();
    let intc_end = end_of(&b, node(&b, "intc@8000000"));
    let b = splice(&b, intc_end, 0, &prop_bytes(0, &[0, 0, 0, 1]));
    assert_eq!(validate_blob(&b), structure(intc_end, PropertyAfterChild));
    assert_fdt_panics(&b); // skipping intc on the way to /chosen
}

#[test]
fn nop_inside_a_node() {
    let b = qemu();
    let after_name = PSCI + 12;
    let nop = words(&[NOP]);
    let before_prop = splice(&b, after_name, 0, &nop);
    assert_eq!(
        validate_blob(&before_prop),
        structure(after_name, NopInsideNode)
    );
    assert_fdt_panics(&before_prop);
    // Before FDT_END_NODE, fdt does not panic but all_nodes stops there.
    let psci_end = end_of(&b, PSCI);
    let before_end = splice(&b, psci_end, 0, &nop);
    assert_eq!(
        validate_blob(&before_end),
        structure(psci_end, NopInsideNode)
    );
    let count = |blob: &[u8]| fdt::Fdt::new(blob).unwrap().all_nodes().count();
    assert_eq!((count(&b), count(&before_end)), (58, 2));
}

#[test]
fn nops_outside_the_root_are_accepted() {
    let b = qemu();
    let fin = nth(&b, 0, |t| *t == Tok::Fin);
    let b = splice(&b, fin, 0, &words(&[NOP, NOP]));
    let b = splice(&b, ROOT, 0, &words(&[NOP]));
    assert_eq!(validate_blob(&b), Ok(()));
    assert_eq!(exercise_panics(&b), None);
    assert_eq!(dt::from_blob(&b), dt::from_blob(&qemu()));
}

#[test]
fn unbalanced_end_node() {
    let b = qemu();
    let fin = nth(&b, 0, |t| *t == Tok::Fin);
    let b = splice(&b, fin, 0, &words(&[END_NODE]));
    assert_eq!(validate_blob(&b), structure(fin, UnbalancedEnd));
    assert_fdt_panics(&b);
}

#[test]
fn second_root() {
    let b = qemu();
    let fin = nth(&b, 0, |t| *t == Tok::Fin);
    let b = splice(&b, fin, 0, &words(&[BEGIN_NODE, 0, END_NODE]));
    assert_eq!(validate_blob(&b), structure(fin, SecondRoot));
}

#[test]
fn no_root() {
    let b = qemu();
    let fin = nth(&b, 0, |t| *t == Tok::Fin);
    let b = splice(&b, ROOT, fin - ROOT, &[]);
    assert_eq!(validate_blob(&b), structure(ROOT, NoRoot));
}

#[test]
fn end_inside_a_node() {
    let b = qemu();
    let root_end = end_of(&b, ROOT);
    let b = splice(&b, root_end, 4, &[]);
    assert_eq!(
        validate_blob(&b),
        structure(root_end, EndInsideNode { open: 1 })
    );
}

#[test]
fn bytes_after_fdt_end() {
    let b = qemu();
    let fin = nth(&b, 0, |t| *t == Tok::Fin);
    let b = splice(&b, fin + 4, 0, &words(&[NOP]));
    assert_eq!(validate_blob(&b), structure(fin, AfterEnd { end: fin + 8 }));
}

#[test]
fn truncated_structure() {
    let b = qemu();
    let fin = nth(&b, 0, |t| *t == Tok::Fin);
    let no_end = splice(&b, fin, 4, &[]);
    assert_eq!(
        validate_blob(&no_end),
        structure(fin, Truncated { end: fin })
    );
    // A property whose len and nameoff are cut off.
    let cut = with(SIZE_DT_STRUCT, (FIRST_PROP + 8 - ROOT) as u32);
    assert_eq!(
        validate_blob(&cut),
        structure(
            FIRST_PROP,
            Truncated {
                end: FIRST_PROP + 8
            }
        )
    );
    assert_fdt_panics(&cut);
}

/// `levels` nested nodes below the root of the QEMU tree (the root is level 1).
fn nested(levels: usize) -> Vec<u8> {
    let b = qemu();
    let mut insert = Vec::new();
    for _ in 0..levels {
        insert.extend(words(&[BEGIN_NODE]));
        insert.extend(name_bytes("n"));
    }
    insert.extend(words(&vec![END_NODE; levels]));
    splice(&b, end_of(&b, ROOT), 0, &insert)
}

#[test]
fn nesting_limit_is_fdts() {
    let deepest = nested(dt::MAX_BLOB_DEPTH - 1);
    assert_eq!(validate_blob(&deepest), Ok(()));
    assert_eq!(exercise_panics(&deepest), None);
    let too_deep = nested(dt::MAX_BLOB_DEPTH);
    let root_end = end_of(&qemu(), ROOT);
    assert_eq!(
        validate_blob(&too_deep),
        structure(
            root_end + 8 * (dt::MAX_BLOB_DEPTH - 1),
            TooDeep {
                max: dt::MAX_BLOB_DEPTH
            }
        )
    );
    assert_fdt_panics(&too_deep);
}

// ---- values fdt reads -------------------------------------------------------------------------

#[test]
fn cells_properties_must_be_one_cell() {
    for len in [2, 8] {
        let mut b = qemu();
        set32(&mut b, SIZE_CELLS + 4, len);
        if len == 8 {
            // Keep the structure intact: give the value 8 bytes.
            b = splice(&qemu(), SIZE_CELLS + 12, 0, &[0, 0, 0, 0]);
            set32(&mut b, SIZE_CELLS + 4, len);
        }
        assert_eq!(
            validate_blob(&b),
            structure(
                SIZE_CELLS,
                CellsNotOneCell {
                    property: "#size-cells",
                    len
                }
            )
        );
        if len == 2 {
            assert_fdt_panics(&b);
        }
    }
}

#[test]
fn aliases_cannot_loop() {
    let b = qemu();
    let serial0 = prop(&b, "serial0");
    // A name beginning with '/': find_node("/chosen") would look it up as an alias.
    let (mut named, nameoff) = add_string(&b, "/chosen");
    set32(&mut named, serial0 + 8, nameoff);
    assert_eq!(
        validate_blob(&named),
        structure(serial0, AliasName { nameoff })
    );
    // A value that is not a full path: it would be looked up as an alias again.
    let mut valued = b.clone();
    valued[serial0 + 12] = b's';
    let nameoff = get32(&b, serial0 + 8);
    assert_eq!(
        validate_blob(&valued),
        structure(serial0, AliasValue { nameoff })
    );
}

// ---- entry points ---------------------------------------------------------------------------

#[test]
fn from_blob_validates() {
    let mut b = qemu();
    set32(&mut b, FIRST_PROP + 8, 0x9999);
    let e = dt::from_blob(&b).unwrap_err();
    assert!(matches!(e.kind, DtErrorKind::Corrupt(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "/: corrupt flattened device tree: structure block at offset 0x40: property name \
         offset 0x9999 is past the strings block (size 0x203)"
    );
}

/// `fdt` 0.1.5 calls that panic on trees no walk of the structure can rule out (see
/// `board_config::dt`'s `blob` module comment): board-config's own code calls none of them.
#[test]
fn board_config_avoids_the_fdt_calls_that_panic_on_valid_blobs() {
    const AVOIDED: [&str; 15] = [
        ".chosen()",
        ".cpus()",
        ".memory()",
        ".root()",
        ".model()",
        ".bootargs()",
        ".stdout()",
        ".stdin()",
        ".regions()",
        ".initial_mapped_area()",
        ".ids()",
        ".clock_frequency()",
        ".timebase_frequency()",
        ".raw_reg()",
        ".compatible()",
    ];
    let mut files = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for call in AVOIDED {
            assert!(!text.contains(call), "{} calls {call}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} source files");
}
