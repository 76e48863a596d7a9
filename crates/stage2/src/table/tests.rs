use super::*;
use crate::format::VtdSecondLevel;
use iommu_core::fake::FakeMemory;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;

const CFG39: Stage2Config = Stage2Config {
    ias_bits: 39,
    oas_bits: 44,
};

fn setup<F: Fx>(cfg: Stage2Config) -> (FakeMemory, Stage2Table<F>) {
    let mut mem = FakeMemory::default();
    let table = F::table(&mut mem, cfg).unwrap();
    (mem, table)
}

/// A format under test, with an independent reading of its words (written from the spec here,
/// not taken from the format's own decoder), so the suite checks what the IOMMU would walk.
trait Fx: PtFormat {
    /// The instance the suite runs against (for VT-d: QEMU's, 2 MiB and 1 GiB superpages).
    const FMT: Self;
    /// `None`: not present; `Some(Some(next))`: a table; `Some(None)`: a leaf.
    fn read(level: u8, raw: u64) -> Option<Option<u64>>;
    /// The word of a leaf at `level` mapping `pa` with `access`.
    fn leaf(level: u8, pa: u64, access: Access) -> u64;
    /// What of `access` the format can express.
    fn kept(access: Access) -> Access;
    fn table(mem: &mut impl DmaMemory, cfg: Stage2Config) -> Result<Stage2Table<Self>, MapError> {
        Stage2Table::with_format(mem, cfg, Self::FMT)
    }
}

impl Fx for Vmsav8 {
    const FMT: Self = Vmsav8;
    /// Arm ARM D8.3: bit 0 valid, bit 1 table at levels 0..=2, bits [47:12] address.
    fn read(level: u8, raw: u64) -> Option<Option<u64>> {
        match (raw & 1, raw & 2 != 0, level) {
            (0, _, _) => None,
            (_, true, 0..=2) => Some(Some(raw & 0xffff_ffff_f000)),
            _ => Some(None),
        }
    }
    fn leaf(level: u8, pa: u64, access: Access) -> u64 {
        crate::descriptor::encode_leaf(level, PhysAddr(pa), access)
    }
    fn kept(access: Access) -> Access {
        access
    }
}

impl Fx for VtdSecondLevel {
    const FMT: Self = VtdSecondLevel {
        superpage_2m: true,
        superpage_1g: true,
        snoop: false,
    };
    /// VT-d §9.8: R (bit 0) or W (bit 1) present, PS (bit 7) a leaf at levels 1 and 2, bits
    /// [51:12] address.
    fn read(level: u8, raw: u64) -> Option<Option<u64>> {
        if raw & 3 == 0 {
            None
        } else if level == 0 || (level < 3 && raw & 0x80 == 0) {
            Some(Some(raw & 0x000f_ffff_ffff_f000))
        } else {
            Some(None)
        }
    }
    fn leaf(level: u8, pa: u64, access: Access) -> u64 {
        let r = u64::from(access.contains(Access::READ));
        let w = u64::from(access.contains(Access::WRITE));
        pa | r | (w << 1) | (u64::from(level < 3) << 7)
    }
    fn kept(access: Access) -> Access {
        access & Access::RW
    }
}

/// Runs each generic test against both formats, as `vmsav8::name` and `vtd_second_level::name`.
macro_rules! every_format {
    ($($name:ident),* $(,)?) => {
        mod vmsav8 {
            $(#[test]
            fn $name() {
                super::$name::<crate::format::Vmsav8>();
            })*
        }
        mod vtd_second_level {
            $(#[test]
            fn $name() {
                super::$name::<crate::format::VtdSecondLevel>();
            })*
        }
    };
}

/// Every present leaf as `(iova, level, raw word)`, found by walking the memory the IOMMU would
/// read with the format's independent reading ([`Fx::read`]).
fn leaves<F: Fx>(mem: &FakeMemory, table: &Stage2Table<F>) -> Vec<(u64, u8, u64)> {
    fn walk<F: Fx>(mem: &FakeMemory, t: u64, level: u8, base: u64, out: &mut Vec<(u64, u8, u64)>) {
        let shift = 12 + 9 * (3 - u32::from(level));
        for i in 0..512u64 {
            let raw = mem.read_u64(PhysAddr(t + 8 * i));
            let iova = base + (i << shift);
            match F::read(level, raw) {
                None => {}
                Some(Some(next)) => walk::<F>(mem, next, level + 1, iova, out),
                Some(None) => out.push((iova, level, raw)),
            }
        }
    }
    let mut out = Vec::new();
    walk::<F>(mem, table.root().get(), table.start_level(), 0, &mut out);
    out
}

/// Every non-zero word of every table reachable from the root, as `(address, value)`.
fn dump<F: Fx>(mem: &FakeMemory, table: &Stage2Table<F>) -> Vec<(u64, u64)> {
    fn walk<F: Fx>(mem: &FakeMemory, t: u64, level: u8, out: &mut Vec<(u64, u64)>) {
        for i in 0..512u64 {
            let raw = mem.read_u64(PhysAddr(t + 8 * i));
            if raw != 0 {
                out.push((t + 8 * i, raw));
            }
            if let Some(Some(next)) = F::read(level, raw) {
                walk::<F>(mem, next, level + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk::<F>(mem, table.root().get(), table.start_level(), &mut out);
    out
}

type State = (usize, usize, Vec<(u64, u64)>);

/// What a failed operation must leave alone: allocations, table pages, and every table word.
fn state<F: Fx>(mem: &FakeMemory, table: &Stage2Table<F>) -> State {
    (
        mem.live_allocations(),
        table.table_pages(),
        dump(mem, table),
    )
}

/// [`state`] plus the count of words ever written: a refusal found before any allocation writes
/// nothing at all.
fn snapshot<F: Fx>(mem: &FakeMemory, table: &Stage2Table<F>) -> (u64, State) {
    (mem.writes(), state(mem, table))
}

fn tr(pa: u64, access: Access, size: u64) -> Option<Translation> {
    Some(Translation {
        pa: PhysAddr(pa),
        access,
        size,
    })
}

#[test]
fn new_table_reports_its_ste_fields() {
    let (mem, t) = setup::<Vmsav8>(Stage2Config {
        ias_bits: 32,
        oas_bits: 44,
    });
    assert_eq!((t.t0sz(), t.sl0(), t.start_level()), (32, 1, 1));
    assert_eq!(t.table_pages(), 1);
    assert_eq!(mem.live_allocations(), 1);
    assert!(t.root().is_aligned(4096));
    let (_, t48) = setup::<Vmsav8>(Stage2Config {
        ias_bits: 48,
        oas_bits: 48,
    });
    assert_eq!((t48.t0sz(), t48.sl0(), t48.start_level()), (16, 2, 0));
}

fn new_refuses_bad_sizes_and_reports_oom<F: Fx>() {
    let mut mem = FakeMemory::default();
    let bad = Stage2Config {
        ias_bits: 50,
        oas_bits: 44,
    };
    assert_eq!(F::table(&mut mem, bad).unwrap_err(), MapError::IasBits(50));
    let bad = Stage2Config {
        ias_bits: 40,
        oas_bits: 30,
    };
    assert_eq!(F::table(&mut mem, bad).unwrap_err(), MapError::OasBits(30));
    assert_eq!(mem.live_allocations(), 0);
    let mut empty = FakeMemory::new(PhysAddr(0x1000_0000), 0);
    assert!(matches!(
        F::table(&mut empty, CFG39),
        Err(MapError::OutOfMemory(_))
    ));
}

fn aligned_2mib_map_uses_exactly_one_block<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    let inv = t.map(
        &mut mem,
        Iova(G1 + M2),
        PhysAddr(0x8000_0000 + 4 * M2),
        M2,
        Access::RW,
    );
    assert_eq!(inv, Ok(Invalidation::none()));
    let raw = F::leaf(2, 0x8000_0000 + 4 * M2, Access::RW);
    assert_eq!(leaves(&mem, &t), vec![(G1 + M2, 2, raw)]);
    assert_eq!(t.table_pages(), 2, "root + one level-2 table");
    assert_eq!(
        t.translate(&mem, Iova(G1 + 2 * M2 - K4)),
        tr(0x8000_0000 + 5 * M2 - K4, Access::RW, M2)
    );
}

fn aligned_1gib_map_uses_a_level_1_block<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(3 * G1), PhysAddr(G1), G1, Access::READ)
        .unwrap();
    let raw = F::leaf(1, G1, Access::READ);
    assert_eq!(leaves(&mem, &t), vec![(3 * G1, 1, raw)]);
    assert_eq!(t.table_pages(), 1, "the block sits in the root");
    assert_eq!(
        t.translate(&mem, Iova(4 * G1 - K4)),
        tr(2 * G1 - K4, Access::READ, G1)
    );
}

fn misaligned_pa_falls_back_to_pages<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(M2), PhysAddr(0x4000_1000), M2, Access::RW)
        .unwrap();
    let l = leaves(&mem, &t);
    assert_eq!(l.len(), 512);
    assert!(l.iter().all(|&(_, level, _)| level == 3));
    assert_eq!(t.table_pages(), 3, "root + level 2 + level 3");
    assert_eq!(
        t.translate(&mem, Iova(M2 + 5 * K4)),
        tr(0x4000_6000, Access::RW, K4)
    );
}

fn a_long_range_takes_the_largest_leaf_at_each_step<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    // One page, one 2 MiB block, one 1 GiB block, one 2 MiB block, one page.
    let start = G1 - M2 - K4;
    let len = K4 + M2 + G1 + M2 + K4;
    t.map(
        &mut mem,
        Iova(start),
        PhysAddr(start + 8 * G1),
        len,
        Access::RW,
    )
    .unwrap();
    let shape: Vec<(u64, u8)> = leaves(&mem, &t).iter().map(|&(i, l, _)| (i, l)).collect();
    assert_eq!(
        shape,
        vec![
            (start, 3),
            (G1 - M2, 2),
            (G1, 1),
            (2 * G1, 2),
            (2 * G1 + M2, 3)
        ]
    );
    for off in [0, K4, M2, G1, len - K4] {
        let got = t.translate(&mem, Iova(start + off)).unwrap();
        assert_eq!(got.pa, PhysAddr(start + 8 * G1 + off));
    }
    assert_eq!(t.translate(&mem, Iova(start - K4)), None);
    assert_eq!(t.translate(&mem, Iova(start + len)), None);
}

#[test]
fn level_2_and_level_0_roots_work() {
    for ias_bits in [25, 30, 40, 48] {
        let (mut mem, mut t) = setup::<Vmsav8>(Stage2Config {
            ias_bits,
            oas_bits: 48,
        });
        let top = 1u64 << ias_bits;
        t.map(
            &mut mem,
            Iova(top - M2),
            PhysAddr(0x1_0000_0000),
            M2,
            Access::RW,
        )
        .unwrap();
        assert_eq!(
            t.translate(&mem, Iova(top - K4)),
            tr(0x1_0000_0000 + M2 - K4, Access::RW, M2)
        );
        let u = t.unmap(&mut mem, Iova(top - M2), M2).unwrap();
        assert_eq!(u.bytes, M2);
        t.reclaim(&mut mem);
        assert_eq!(mem.live_allocations(), 1, "ias {ias_bits}");
    }
}

fn each_map_refusal_names_its_value_and_changes_nothing<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(
        &mut mem,
        Iova(0x10_0000 + 2 * K4),
        PhysAddr(0x5000_0000),
        K4,
        Access::RW,
    )
    .unwrap();
    t.map(&mut mem, Iova(G1), PhysAddr(0x4000_0000), M2, Access::RW)
        .unwrap();
    let before = snapshot(&mem, &t);
    let cases: [(u64, u64, u64, Access, MapError); 11] = [
        (0x20_0000, 0x6000_0000, 0, Access::RW, MapError::Length(0)),
        (
            0x20_0000,
            0x6000_0000,
            0x1800,
            Access::RW,
            MapError::Length(0x1800),
        ),
        (
            0x20_0800,
            0x6000_0000,
            K4,
            Access::RW,
            MapError::UnalignedIova(Iova(0x20_0800)),
        ),
        (
            0x20_0000,
            0x6000_0010,
            K4,
            Access::RW,
            MapError::UnalignedPa(PhysAddr(0x6000_0010)),
        ),
        (
            0x20_0000,
            0x6000_0000,
            K4,
            Access::empty(),
            MapError::InvalidAccess(Access::empty()),
        ),
        (
            (1 << 39) - K4,
            0x6000_0000,
            2 * K4,
            Access::RW,
            MapError::IovaOutOfRange {
                iova: Iova((1 << 39) - K4),
                len: 2 * K4,
            },
        ),
        (
            u64::MAX - 0xfff,
            0x6000_0000,
            2 * K4,
            Access::RW,
            MapError::IovaOutOfRange {
                iova: Iova(u64::MAX - 0xfff),
                len: 2 * K4,
            },
        ),
        (
            0x20_0000,
            (1 << 44) - K4,
            2 * K4,
            Access::RW,
            MapError::PaOutOfRange {
                pa: PhysAddr((1 << 44) - K4),
                len: 2 * K4,
            },
        ),
        // Pages around an existing page: the error names the mapped page, not the start.
        (
            0x10_0000,
            0x6000_0000,
            4 * K4,
            Access::RW,
            MapError::Overlap {
                iova: Iova(0x10_2000),
            },
        ),
        // A range whose tail enters an existing block.
        (
            G1 - K4,
            0x6000_0000,
            2 * K4,
            Access::RW,
            MapError::Overlap { iova: Iova(G1) },
        ),
        // A block-sized range on top of a block.
        (
            G1,
            0x6000_0000,
            M2,
            Access::WRITE,
            MapError::Overlap { iova: Iova(G1) },
        ),
    ];
    for (iova, pa_raw, len, access, want) in cases {
        let got = t.map(&mut mem, Iova(iova), PhysAddr(pa_raw), len, access);
        assert_eq!(
            got,
            Err(want),
            "map({iova:#x}, {pa_raw:#x}, {len:#x}, {access:?})"
        );
        assert_eq!(snapshot(&mem, &t), before, "{want}");
    }
}

#[test]
fn pa_limit_stops_at_48_bits_even_with_a_52_bit_oas() {
    let (mut mem, mut t) = setup::<Vmsav8>(Stage2Config {
        ias_bits: 48,
        oas_bits: 52,
    });
    let top = PhysAddr((1 << 48) - K4);
    assert!(t.map(&mut mem, Iova(0), top, K4, Access::RW).is_ok());
    assert_eq!(
        t.map(&mut mem, Iova(K4), top, 2 * K4, Access::RW),
        Err(MapError::PaOutOfRange {
            pa: top,
            len: 2 * K4
        })
    );
}

fn each_unmap_refusal_names_its_value_and_changes_nothing<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(0), PhysAddr(0x4000_0000), M2, Access::RW)
        .unwrap();
    let before = snapshot(&mem, &t);
    for (iova, len, want) in [
        (0, 0, MapError::Length(0)),
        (0, 0x10, MapError::Length(0x10)),
        (0x10, K4, MapError::UnalignedIova(Iova(0x10))),
        (
            1 << 39,
            K4,
            MapError::IovaOutOfRange {
                iova: Iova(1 << 39),
                len: K4,
            },
        ),
    ] {
        assert_eq!(t.unmap(&mut mem, Iova(iova), len), Err(want));
        assert_eq!(snapshot(&mem, &t), before, "{want}");
    }
}

fn translate_reports_access_and_refuses_beyond_ias<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    let rx = Access::READ | Access::EXEC;
    t.map(&mut mem, Iova(0x3000), PhysAddr(0x9000), K4, rx)
        .unwrap();
    t.map(&mut mem, Iova(0x4000), PhysAddr(0xa000), K4, Access::WRITE)
        .unwrap();
    assert_eq!(t.translate(&mem, Iova(0x3abc)), tr(0x9abc, F::kept(rx), K4));
    assert_eq!(
        t.translate(&mem, Iova(0x4000)),
        tr(0xa000, Access::WRITE, K4)
    );
    assert_eq!(t.translate(&mem, Iova(0x3000 | (1 << 39))), None);
    assert_eq!(t.translate(&mem, Iova(u64::MAX)), None);
}

fn split_tables_counts_the_splits_an_unmap_would_make_and_changes_nothing<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(0), PhysAddr(0x4000_0000), M2, Access::RW)
        .unwrap();
    t.map(&mut mem, Iova(G1), PhysAddr(0x8000_0000), G1, Access::RW)
        .unwrap();
    let before = snapshot(&mem, &t);
    // A page out of a 2 MiB block: one level-3 table.
    assert_eq!(t.split_tables(&mut mem, Iova(K4), K4), Ok(1));
    // A page out of a 1 GiB block: a level-2 table, then a level-3 table under it.
    assert_eq!(t.split_tables(&mut mem, Iova(G1 + K4), K4), Ok(2));
    // Whole blocks, and holes, split nothing.
    assert_eq!(t.split_tables(&mut mem, Iova(0), M2), Ok(0));
    assert_eq!(t.split_tables(&mut mem, Iova(G1), G1), Ok(0));
    assert_eq!(t.split_tables(&mut mem, Iova(4 * M2), M2), Ok(0));
    assert_eq!(
        t.split_tables(&mut mem, Iova(1), K4),
        Err(MapError::UnalignedIova(Iova(1)))
    );
    assert_eq!(snapshot(&mem, &t), before, "counting writes nothing");
}

fn split_unmap_of_a_2mib_block_keeps_the_rest_exact<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    let (iova, pa) = (G1 + 3 * M2, 0x7_4000_0000 + 5 * M2);
    t.map(&mut mem, Iova(iova), PhysAddr(pa), M2, Access::RW)
        .unwrap();
    let pages = t.table_pages();
    let u = t.unmap(&mut mem, Iova(iova + K4), K4).unwrap();
    assert_eq!(u.bytes, K4);
    let inv = u.invalidation;
    assert_eq!(inv.range(), Some((Iova(iova + K4), K4)));
    assert!(
        inv.leaf_only(),
        "a block became a table: no table descriptor was removed"
    );
    assert_eq!(inv.ttl(), Some(2), "the removed leaf was the level-2 block");
    assert_eq!(inv.min_leaf_size(), Some(M2));
    assert_eq!(t.table_pages(), pages + 1);
    for page in 0..512 {
        let got = t.translate(&mem, Iova(iova + page * K4));
        let want = if page == 1 {
            None
        } else {
            tr(pa + page * K4, Access::RW, K4)
        };
        assert_eq!(got, want, "page {page}");
    }
}

fn split_unmap_of_a_1gib_block_uses_the_largest_leaves_left<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    let pa = 5 * G1;
    t.map(&mut mem, Iova(G1), PhysAddr(pa), G1, Access::READ)
        .unwrap();
    // Remove [3 MiB + 4 KiB, 5 MiB) of the block: ends fall inside two different 2 MiB entries.
    let (hole, hole_len) = (G1 + 3 * 0x10_0000 + K4, 2 * 0x10_0000 - K4);
    let u = t.unmap(&mut mem, Iova(hole), hole_len).unwrap();
    assert_eq!(u.bytes, hole_len);
    assert_eq!(u.invalidation.range(), Some((Iova(hole), hole_len)));
    assert_eq!(u.invalidation.ttl(), Some(1));
    assert_eq!(
        t.table_pages(),
        1 + 3,
        "one level-2 table and two level-3 tables"
    );
    let l = leaves(&mem, &t);
    let count = |level| l.iter().filter(|&&(_, lv, _)| lv == level).count();
    assert_eq!(count(2), 510, "untouched 2 MiB stretches stay blocks");
    assert_eq!(count(3), 257 + 256, "pages around the hole");
    for off in (0..8 * 0x10_0000).step_by(K4 as usize) {
        let iova = G1 + off;
        let inside = (hole..hole + hole_len).contains(&iova);
        let got = t.translate(&mem, Iova(iova)).map(|x| x.pa);
        assert_eq!(got, (!inside).then_some(PhysAddr(pa + off)), "{iova:#x}");
    }
    assert_eq!(
        t.translate(&mem, Iova(2 * G1 - K4)),
        tr(pa + G1 - K4, Access::READ, M2)
    );
}

fn unmap_of_holes_needs_no_invalidation<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(
        &mut mem,
        Iova(0x10_0000),
        PhysAddr(0x4000_0000),
        K4,
        Access::RW,
    )
    .unwrap();
    let before = state(&mem, &t);
    let u = t.unmap(&mut mem, Iova(G1), G1).unwrap();
    assert_eq!(
        u,
        Unmapped {
            bytes: 0,
            invalidation: Invalidation::none()
        }
    );
    assert_eq!(state(&mem, &t), before);
}

fn invalidation_spans_exactly_what_was_removed<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    let a = 0x40_0000;
    t.map(
        &mut mem,
        Iova(a + 2 * K4),
        PhysAddr(0x4000_0000),
        K4,
        Access::RW,
    )
    .unwrap();
    t.map(
        &mut mem,
        Iova(a + 5 * K4),
        PhysAddr(0x4000_8000),
        K4,
        Access::RW,
    )
    .unwrap();
    t.map(
        &mut mem,
        Iova(a + 100 * K4),
        PhysAddr(0x4001_0000),
        K4,
        Access::RW,
    )
    .unwrap();
    let u = t.unmap(&mut mem, Iova(a), 10 * K4).unwrap();
    assert_eq!(u.bytes, 2 * K4);
    let inv = u.invalidation;
    assert_eq!(inv.range(), Some((Iova(a + 2 * K4), 4 * K4)));
    assert!(inv.leaf_only(), "the level-3 table still holds a page");
    assert_eq!((inv.ttl(), inv.min_leaf_size()), (Some(3), Some(K4)));

    let u = t.unmap(&mut mem, Iova(a), 512 * K4).unwrap();
    assert_eq!(u.bytes, K4);
    assert!(
        !u.invalidation.leaf_only(),
        "the emptied tables were unlinked"
    );
    assert_eq!(u.invalidation.ttl(), None);
    assert_eq!(u.invalidation.range(), Some((Iova(a + 100 * K4), K4)));
}

fn emptied_tables_are_retired_then_reclaimed<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(Stage2Config {
        ias_bits: 48,
        oas_bits: 44,
    });
    let spots = [
        0,
        3 * M2 + 5 * K4,
        7 * G1 + K4,
        (1 << 40) + 9 * M2,
        (1 << 47) - K4,
    ];
    for (i, &iova) in spots.iter().enumerate() {
        t.map(
            &mut mem,
            Iova(iova),
            PhysAddr(0x1000_0000 + i as u64 * K4),
            K4,
            Access::RW,
        )
        .unwrap();
        t.map(
            &mut mem,
            Iova(iova + 64 * M2),
            PhysAddr(0x2000_0000),
            M2,
            Access::RW,
        )
        .unwrap();
        assert_eq!(
            t.table_pages() + t.bookkeeping_pages(),
            mem.live_allocations()
        );
    }
    let mapped = t.table_pages();
    assert!(mapped > 8);
    let mut bytes = 0;
    for &iova in &spots {
        let u = t.unmap(&mut mem, Iova(iova), 65 * M2).unwrap();
        bytes += u.bytes;
        assert_eq!(
            t.table_pages() + t.bookkeeping_pages(),
            mem.live_allocations(),
            "retired pages stay allocated"
        );
    }
    assert_eq!(bytes, spots.len() as u64 * (K4 + M2));
    assert!(leaves(&mem, &t).is_empty());
    assert_eq!(
        t.retired_pages(),
        mapped - 1,
        "all but the root wait for reclaim"
    );
    assert_eq!(t.reclaim(&mut mem), mapped - 1);
    assert_eq!((t.table_pages(), mem.live_allocations()), (1, 1));
    t.destroy(&mut mem);
    assert_eq!(mem.live_allocations(), 0);
}

fn unmapping_a_whole_range_of_pages_unlinks_its_subtree<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(G1), PhysAddr(0x4000_1000), G1, Access::RW)
        .unwrap();
    assert_eq!(t.table_pages(), 1 + 1 + 512);
    let u = t.unmap(&mut mem, Iova(0), 4 * G1).unwrap();
    assert_eq!(u.bytes, G1);
    assert_eq!(u.invalidation.range(), Some((Iova(G1), G1)));
    assert!(!u.invalidation.leaf_only());
    assert_eq!(t.retired_pages(), 513);
    assert_eq!(t.translate(&mem, Iova(G1)), None);
    t.reclaim(&mut mem);
    assert_eq!(mem.live_allocations(), 1);
}

fn destroy_frees_tree_and_retired_tables<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(0), PhysAddr(0x4000_1000), 4 * M2, Access::RW)
        .unwrap();
    t.map(
        &mut mem,
        Iova(5 * G1),
        PhysAddr(0x4000_1000),
        K4,
        Access::RW,
    )
    .unwrap();
    let _ = t.unmap(&mut mem, Iova(5 * G1), K4).unwrap();
    assert!(t.retired_pages() > 0);
    t.destroy(&mut mem);
    assert_eq!(mem.live_allocations(), 0);
}

/// Memory with room for the root plus `pages` more tables.
fn tight<F: Fx>(pages: u64) -> (FakeMemory, Stage2Table<F>) {
    let mut mem = FakeMemory::new(PhysAddr(0x10_0000_0000), (1 + pages) * 4096);
    let t = F::table(&mut mem, CFG39).unwrap();
    (mem, t)
}

fn map_out_of_memory_changes_nothing<F: Fx>() {
    // The page at 0 takes a level-2 and a level-3 table, and side pages for the root and the
    // level-2 table (each now links a table). The new range [1G - 4K, 1G + 2M + 4K) then needs
    // 4 more pages: a level-3 table for its first page (under the existing level-2 table), a
    // level-2 table for GiB 1 holding one 2 MiB block, a level-3 table for its last page, and
    // the side page of that new level-2 table.
    let (mut mem, mut t) = tight::<F>(4 + 4);
    t.map(&mut mem, Iova(0), PhysAddr(0x4000_0000), K4, Access::RW)
        .unwrap();
    let r = t.map(
        &mut mem,
        Iova(G1 - K4),
        PhysAddr(0x8000_0000 - K4),
        K4 + M2 + K4,
        Access::RW,
    );
    assert_eq!(
        r,
        Ok(Invalidation::none()),
        "exactly enough memory succeeds"
    );
    assert_eq!(mem.live_allocations(), 1 + 4 + 4);
    assert_eq!((t.table_pages(), t.bookkeeping_pages()), (1 + 2 + 3, 3));

    // One page short.
    let (mut mem, mut t) = tight::<F>(4 + 3);
    t.map(&mut mem, Iova(0), PhysAddr(0x4000_0000), K4, Access::RW)
        .unwrap();
    let before = state(&mem, &t);
    let r = t.map(
        &mut mem,
        Iova(G1 - K4),
        PhysAddr(0x8000_0000 - K4),
        K4 + M2 + K4,
        Access::RW,
    );
    assert!(matches!(r, Err(MapError::OutOfMemory(_))), "{r:?}");
    assert_eq!(state(&mem, &t), before);
    assert_eq!(t.translate(&mem, Iova(G1 - K4)), None);
    assert_eq!(t.translate(&mem, Iova(0)), tr(0x4000_0000, Access::RW, K4));
}

fn split_unmap_out_of_memory_changes_nothing<F: Fx>() {
    // A 1 GiB block needs no table at a level-1 root; splitting a page out of its middle needs a
    // level-2 and a level-3 table, and side pages for the root and the level-2 table: 4 pages.
    let (mut mem, mut t) = tight::<F>(3);
    t.map(&mut mem, Iova(G1), PhysAddr(G1), G1, Access::RW)
        .unwrap();
    let before = state(&mem, &t);
    let r = t.unmap(&mut mem, Iova(G1 + 5 * M2 + K4), K4);
    assert!(matches!(r, Err(MapError::OutOfMemory(_))), "{r:?}");
    assert_eq!(state(&mem, &t), before);
    assert_eq!(
        t.translate(&mem, Iova(G1 + 5 * M2 + K4)),
        tr(G1 + 5 * M2 + K4, Access::RW, G1)
    );

    let (mut mem, mut t) = tight::<F>(4);
    t.map(&mut mem, Iova(G1), PhysAddr(G1), G1, Access::RW)
        .unwrap();
    let u = t.unmap(&mut mem, Iova(G1 + 5 * M2 + K4), K4).unwrap();
    assert_eq!(u.bytes, K4);
    assert_eq!(mem.live_allocations(), 5);
    assert_eq!((t.table_pages(), t.bookkeeping_pages()), (3, 2));
}

/// A [`DmaMemory`] that logs writes and publishes, to check the order of table updates.
#[derive(Default)]
struct Recording {
    inner: FakeMemory,
    log: Vec<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Write(u64, u64),
    Publish,
}

impl DmaMemory for Recording {
    fn alloc_zeroed(&mut self, size: usize, align: usize) -> Result<PhysAddr, OutOfMemory> {
        self.inner.alloc_zeroed(size, align)
    }
    fn free(&mut self, pa: PhysAddr, size: usize) {
        self.inner.free(pa, size)
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.inner.read_u64(pa)
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.log.push(Event::Write(pa.get(), value));
        self.inner.write_u64(pa, value)
    }
    fn publish(&mut self) {
        self.log.push(Event::Publish);
    }
    fn sync_for_device(&mut self, pa: PhysAddr, len: u64) {
        self.inner.sync_for_device(pa, len)
    }
    fn sync_for_cpu(&mut self, pa: PhysAddr, len: u64) {
        self.inner.sync_for_cpu(pa, len)
    }
}

use iommu_core::OutOfMemory;

/// Every write of a table descriptor comes after all writes into the table it links, with a
/// publish in between, and every operation ends with a publish.
fn assert_tables_filled_before_linked(log: &[Event]) {
    assert_eq!(
        log.last(),
        Some(&Event::Publish),
        "operations end with a publish"
    );
    for (n, event) in log.iter().enumerate() {
        let Event::Write(_, value) = *event else {
            continue;
        };
        if value & 3 != 3 {
            continue;
        }
        let target = value & 0xffff_ffff_f000;
        // Only level 0..=2 words with bits 0b11 are table descriptors; pages share the encoding
        // but point at data, which is never written.
        let last_fill = log[..n].iter().rposition(
            |e| matches!(e, Event::Write(pa, _) if (target..target + 4096).contains(pa)),
        );
        let Some(fill) = last_fill else { continue };
        assert!(
            log[fill..n].contains(&Event::Publish),
            "table {target:#x} linked at event {n} without a publish after its last fill"
        );
    }
}

fn new_tables_are_published_before_they_are_linked<F: Fx>() {
    let mut mem = Recording::default();
    let mut t = F::table(&mut mem, CFG39).unwrap();
    t.map(
        &mut mem,
        Iova(G1 - K4),
        PhysAddr(0x4000_0000 - K4),
        2 * M2,
        Access::RW,
    )
    .unwrap();
    assert_tables_filled_before_linked(&mem.log);
    mem.log.clear();
    t.map(&mut mem, Iova(4 * G1), PhysAddr(4 * G1), G1, Access::RW)
        .unwrap();
    let _ = t.unmap(&mut mem, Iova(4 * G1 + 3 * M2 + K4), M2).unwrap();
    assert_tables_filled_before_linked(&mem.log);
    t.destroy(&mut mem);
}

fn a_page_mapped_where_an_emptied_table_was_lands_in_a_linked_table<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(G1), PhysAddr(0x4000_0000), K4, Access::RW)
        .unwrap();
    // Empties and unlinks the level-3 (and level-2) table the previous call ended in.
    let _ = t.unmap(&mut mem, Iova(G1), K4).unwrap();
    t.map(
        &mut mem,
        Iova(G1 + K4),
        PhysAddr(0x4000_1000),
        K4,
        Access::RW,
    )
    .unwrap();
    assert_eq!(
        t.translate(&mem, Iova(G1 + K4)),
        tr(0x4000_1000, Access::RW, K4)
    );
    assert_eq!(t.check_bookkeeping(&mem), Ok(()));
    assert_eq!(t.table_pages() - t.retired_pages(), 3);
}

// ---- The leaf list an unmap returns (per-leaf invalidation without IDR3.RIL) ----

use crate::invalidation::LEAF_LIST_CAPACITY;

fn unmap_names_one_address_per_removed_leaf_of_the_smallest_size<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    // One 2 MiB block at 2 MiB, then three pages right after it.
    t.map(
        &mut mem,
        Iova(M2),
        PhysAddr(0x4020_0000),
        M2 + 3 * K4,
        Access::RW,
    )
    .unwrap();
    // The block alone: one address for the block.
    let u = t.unmap(&mut mem, Iova(M2), M2).unwrap();
    let leaves: Vec<_> = u.invalidation.leaves().expect("fits").collect();
    assert_eq!(
        leaves,
        vec![(Iova(M2), M2)],
        "one entry per block, not per page"
    );
    // The three pages: one address each.
    let u = t.unmap(&mut mem, Iova(2 * M2), 3 * K4).unwrap();
    let leaves: Vec<_> = u.invalidation.leaves().expect("fits").collect();
    assert_eq!(
        leaves,
        vec![
            (Iova(2 * M2), K4),
            (Iova(2 * M2 + K4), K4),
            (Iova(2 * M2 + 2 * K4), K4)
        ]
    );
}

fn a_split_block_is_named_by_an_address_in_the_block<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(M2), PhysAddr(0x4020_0000), M2, Access::RW)
        .unwrap();
    let u = t.unmap(&mut mem, Iova(M2 + 5 * K4), 2 * K4).unwrap();
    let leaves: Vec<_> = u.invalidation.leaves().unwrap().collect();
    assert_eq!(leaves, vec![(Iova(M2), M2)]);
}

fn more_addresses_than_the_limit_are_none_and_merges_accumulate<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    let n = LEAF_LIST_CAPACITY as u64;
    t.map(
        &mut mem,
        Iova(0),
        PhysAddr(0x4000_0000),
        (n + 1) * K4,
        Access::RW,
    )
    .unwrap();
    let a = t.unmap(&mut mem, Iova(0), n * K4).unwrap().invalidation;
    assert_eq!(a.leaves().map(Iterator::count), Some(LEAF_LIST_CAPACITY));
    let b = t.unmap(&mut mem, Iova(n * K4), K4).unwrap().invalidation;
    assert_eq!(b.leaves().map(Iterator::count), Some(1));
    assert!(a.merge(b).leaves().is_none(), "17 pages: past the limit");
    assert!(b.merge(Invalidation::none()).leaves().is_some());
    assert_eq!(b.merge(b).leaves().map(Iterator::count), Some(1));
    assert_eq!(
        Invalidation::none().leaves().map(Iterator::count),
        Some(0),
        "nothing to name"
    );
}

fn map_tables_counts_without_writing_and_checks_like_map<F: Fx>() {
    let (mut mem, mut t) = setup::<F>(CFG39);
    t.map(&mut mem, Iova(0), PhysAddr(0x4000_0000), K4, Access::RW)
        .unwrap();
    let before = snapshot(&mem, &t);
    // A page in the existing level-3 table needs nothing new; one in a new 1 GiB region
    // needs a level-2 and a level-3 table, and the new level-2 table a bookkeeping page.
    assert_eq!(
        t.map_tables(&mut mem, Iova(K4), PhysAddr(0), K4, Access::RW),
        Ok(0)
    );
    assert_eq!(
        t.map_tables(&mut mem, Iova(G1), PhysAddr(0), K4, Access::RW),
        Ok(3)
    );
    assert_eq!(
        t.map_tables(&mut mem, Iova(0), PhysAddr(0), K4, Access::RW),
        Err(MapError::Overlap { iova: Iova(0) })
    );
    assert_eq!(
        t.map_tables(&mut mem, Iova(K4), PhysAddr(1), K4, Access::RW),
        Err(MapError::UnalignedPa(PhysAddr(1)))
    );
    assert_eq!(snapshot(&mem, &t), before, "counting writes nothing");
}

every_format!(
    new_refuses_bad_sizes_and_reports_oom,
    aligned_2mib_map_uses_exactly_one_block,
    aligned_1gib_map_uses_a_level_1_block,
    misaligned_pa_falls_back_to_pages,
    a_long_range_takes_the_largest_leaf_at_each_step,
    each_map_refusal_names_its_value_and_changes_nothing,
    each_unmap_refusal_names_its_value_and_changes_nothing,
    translate_reports_access_and_refuses_beyond_ias,
    split_tables_counts_the_splits_an_unmap_would_make_and_changes_nothing,
    split_unmap_of_a_2mib_block_keeps_the_rest_exact,
    split_unmap_of_a_1gib_block_uses_the_largest_leaves_left,
    unmap_of_holes_needs_no_invalidation,
    invalidation_spans_exactly_what_was_removed,
    emptied_tables_are_retired_then_reclaimed,
    unmapping_a_whole_range_of_pages_unlinks_its_subtree,
    destroy_frees_tree_and_retired_tables,
    map_out_of_memory_changes_nothing,
    split_unmap_out_of_memory_changes_nothing,
    new_tables_are_published_before_they_are_linked,
    a_page_mapped_where_an_emptied_table_was_lands_in_a_linked_table,
    unmap_names_one_address_per_removed_leaf_of_the_smallest_size,
    a_split_block_is_named_by_an_address_in_the_block,
    more_addresses_than_the_limit_are_none_and_merges_accumulate,
    map_tables_counts_without_writing_and_checks_like_map,
);

// ---- VT-d second level only ----

fn vtd(superpage_2m: bool, superpage_1g: bool) -> VtdSecondLevel {
    VtdSecondLevel {
        superpage_2m,
        superpage_1g,
        snoop: false,
    }
}

#[test]
fn vtd_tables_have_3_or_4_levels_only() {
    let mut mem = FakeMemory::default();
    for (ias_bits, level) in [(39, 1), (48, 0), (32, 1)] {
        let cfg = Stage2Config {
            ias_bits,
            oas_bits: 48,
        };
        let t = Stage2Table::with_format(&mut mem, cfg, vtd(true, true)).unwrap();
        assert_eq!(t.start_level(), level);
        t.destroy(&mut mem);
    }
    // A level-2 root would be a 2-level table, which no VT-d unit walks (SAGAW has no 30 bits).
    let cfg = Stage2Config {
        ias_bits: 30,
        oas_bits: 48,
    };
    assert_eq!(
        Stage2Table::with_format(&mut mem, cfg, vtd(true, true)).unwrap_err(),
        MapError::IasBits(30)
    );
    // Control: the VMSAv8 format takes the same size.
    assert!(Stage2Table::new(&mut mem, cfg).is_ok());
}

#[test]
fn vtd_output_addresses_reach_52_bits_where_vmsav8_stops_at_48() {
    let cfg = Stage2Config {
        ias_bits: 48,
        oas_bits: 52,
    };
    let mut mem = FakeMemory::default();
    let mut t = Stage2Table::with_format(&mut mem, cfg, vtd(true, true)).unwrap();
    let high = PhysAddr(1 << 50);
    t.map(&mut mem, Iova(0), high, K4, Access::RW).unwrap();
    assert_eq!(t.translate(&mem, Iova(0)), tr(1 << 50, Access::RW, K4));
    let top = PhysAddr((1 << 52) - K4);
    assert!(matches!(
        t.map(&mut mem, Iova(K4), top, 2 * K4, Access::RW),
        Err(MapError::PaOutOfRange { .. })
    ));
    let mut v8 = Stage2Table::new(&mut mem, cfg).unwrap();
    assert!(matches!(
        v8.map(&mut mem, Iova(0), high, K4, Access::RW),
        Err(MapError::PaOutOfRange { .. })
    ));
}

#[test]
fn vtd_superpages_follow_sllps() {
    // (2 MiB, 1 GiB) superpages allowed -> the levels an aligned 1 GiB + 2 MiB map uses.
    for (m2, g1, want) in [
        (true, true, vec![(1u8, 1usize), (2, 1)]),
        (true, false, vec![(2, 512 + 1)]),
        (false, false, vec![(3, 512 * 512 + 512)]),
    ] {
        let mut mem = FakeMemory::default();
        let mut t = Stage2Table::with_format(&mut mem, CFG39, vtd(m2, g1)).unwrap();
        t.map(&mut mem, Iova(G1), PhysAddr(2 * G1), G1 + M2, Access::RW)
            .unwrap();
        let l = leaves(&mem, &t);
        let mut levels: Vec<(u8, usize)> = Vec::new();
        for &(_, level, raw) in &l {
            // PS exactly on superpages (VT-d §9.8).
            assert_eq!(raw & 0x80 != 0, level < 3, "{raw:#x}");
            match levels.iter_mut().find(|(lv, _)| *lv == level) {
                Some((_, n)) => *n += 1,
                None => levels.push((level, 1)),
            }
        }
        assert_eq!(levels, want, "2M {m2} 1G {g1}");
        for off in [0, K4, M2, G1 - K4, G1 + M2 - K4] {
            assert_eq!(
                t.translate(&mem, Iova(G1 + off)).map(|x| x.pa),
                Some(PhysAddr(2 * G1 + off))
            );
        }
        // Splitting a page out of whatever leaf holds it, and unmapping it all, work alike.
        let u = t.unmap(&mut mem, Iova(G1 + 3 * K4), K4).unwrap();
        assert_eq!(u.bytes, K4);
        assert_eq!(t.translate(&mem, Iova(G1 + 3 * K4)), None);
        assert_eq!(t.check_bookkeeping(&mem), Ok(()));
        let all = t.unmap(&mut mem, Iova(0), 1 << 39).unwrap();
        assert_eq!(all.bytes, G1 + M2 - K4);
        t.reclaim(&mut mem);
        assert_eq!(mem.live_allocations(), 1);
    }
}

#[test]
fn a_vtd_write_only_page_is_present_though_bit_0_is_clear() {
    let (mut mem, mut t) = setup::<VtdSecondLevel>(CFG39);
    t.map(&mut mem, Iova(M2), PhysAddr(0x5000), K4, Access::WRITE)
        .unwrap();
    let l = leaves(&mem, &t);
    assert_eq!(l, vec![(M2, 3, 0x5002)], "W only: bit 0 (R) clear");
    // Present to the walker: an overlapping map is refused, the unmap removes it and the
    // bookkeeping counted it.
    assert_eq!(
        t.map(&mut mem, Iova(M2), PhysAddr(0x6000), K4, Access::READ),
        Err(MapError::Overlap { iova: Iova(M2) })
    );
    assert_eq!(t.check_bookkeeping(&mem), Ok(()));
    let u = t.unmap(&mut mem, Iova(M2), K4).unwrap();
    assert_eq!(u.bytes, K4);
    assert!(leaves(&mem, &t).is_empty());
    // Control: read as a VMSAv8 word (bit 0 = valid), the same page would look invalid, so a
    // walker testing bit 0 would have overwritten it and never unmapped it.
    assert!(!Vmsav8.is_present(0x5002));
}
