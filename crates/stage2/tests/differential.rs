//! Differential tests against Google's `aarch64-paging` (stage-2 regime): the same mappings
//! applied to both must give the same descriptors, the same block/page choice, and the same
//! translation of every relevant page.

mod common;

use common::theirs::Theirs;
use common::{leaves, runs, Leaf, G1, K4, M2};
use iommu_core::fake::FakeMemory;
use iommu_core::{Access, Iova, PhysAddr};
use proptest::prelude::*;
use proptest::sample::select;
use stage2::{Stage2Config, Stage2Table};

fn both(cfg: Stage2Config) -> (FakeMemory, Stage2Table, Theirs) {
    let mut mem = FakeMemory::default();
    let ours = Stage2Table::new(&mut mem, cfg).unwrap();
    let theirs = Theirs::new(ours.start_level(), cfg.ias_bits);
    (mem, ours, theirs)
}

fn their_leaves(theirs: &Theirs) -> Vec<Leaf> {
    let top = 1u64 << theirs.ias_bits;
    theirs
        .leaves(0, top)
        .into_iter()
        .map(|(iova, level, raw)| Leaf { iova, level, raw })
        .collect()
}

/// Our translation of `iova` as (pa, descriptor word, leaf size), like [`Theirs::translate`].
fn our_translation(mem: &FakeMemory, ours: &Stage2Table, iova: u64) -> Option<(u64, u64, u64)> {
    let t = ours.translate(mem, Iova(iova))?;
    let base = iova & !(t.size - 1);
    let leaf = leaves(mem, ours).into_iter().find(|l| l.iova == base)?;
    Some((t.pa.get(), leaf.raw, t.size))
}

#[test]
fn same_descriptors_for_a_fixed_mapping_set() {
    let rx = Access::READ | Access::EXEC;
    let set: [(u64, u64, u64, Access); 6] = [
        (0, 0x4000_0000, K4, Access::RW),
        (M2, 0x4020_0000, M2, Access::READ),
        (G1, 2 * G1, G1, Access::RW),
        (
            3 * G1 - M2 - K4,
            5 * G1 - M2 - K4,
            K4 + M2 + G1 + M2 + K4,
            rx,
        ),
        (7 * G1 + K4, 9 * G1 + 2 * K4, 3 * M2, Access::WRITE),
        (10 * G1 + 4 * M2, 11 * G1 + 6 * M2, 4 * M2, Access::RW),
    ];
    for ias_bits in [39, 40, 48] {
        let (mut mem, mut ours, mut theirs) = both(Stage2Config {
            ias_bits,
            oas_bits: 44,
        });
        for &(iova, pa, len, access) in &set {
            ours.map(&mut mem, Iova(iova), PhysAddr(pa), len, access)
                .unwrap();
            theirs.map(iova, pa, len, access);
        }
        let mine = leaves(&mem, &ours);
        assert_eq!(mine, their_leaves(&theirs), "ias {ias_bits}");
        let levels: Vec<u8> = mine.iter().map(|l| l.level).collect();
        assert!(levels.contains(&1) && levels.contains(&2) && levels.contains(&3));
        assert_eq!(
            ours.table_pages(),
            theirs.tables(),
            "same tables for the same mappings"
        );
        for &(iova, _, len, _) in &set {
            for probe in [
                iova - K4.min(iova),
                iova,
                iova + len / 2,
                iova + len - K4,
                iova + len,
            ] {
                let probe = probe & !(K4 - 1);
                assert_eq!(
                    our_translation(&mem, &ours, probe),
                    theirs.translate(probe),
                    "ias {ias_bits}, iova {probe:#x}"
                );
            }
        }
    }
}

#[test]
fn same_result_after_split_unmaps() {
    let (mut mem, mut ours, mut theirs) = both(Stage2Config {
        ias_bits: 39,
        oas_bits: 44,
    });
    for (iova, pa, len) in [(G1, 4 * G1, G1), (3 * G1, 6 * G1 + 8 * M2, 16 * M2)] {
        ours.map(&mut mem, Iova(iova), PhysAddr(pa), len, Access::RW)
            .unwrap();
        theirs.map(iova, pa, len, Access::RW);
    }
    for (iova, len) in [
        (G1 + 3 * M2 + K4, 5 * M2),
        (3 * G1 + 2 * M2 - K4, 2 * K4),
        (2 * G1 - K4, K4),
    ] {
        let _ = ours.unmap(&mut mem, Iova(iova), len).unwrap();
        theirs.unmap(iova, len);
    }
    // Both split the blocks the same way: largest leaves that fit around each hole.
    assert_eq!(leaves(&mem, &ours), their_leaves(&theirs));
    assert_eq!(ours.table_pages(), theirs.tables());
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        iova: u64,
        pa: u64,
        len: u64,
        access: Access,
    },
    Unmap {
        iova: u64,
        len: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let iova = (
        0..4u64,
        select(vec![0, K4, M2 - K4, M2, 3 * M2 + K4, G1 - M2, G1 - K4]),
    )
        .prop_map(|(g, o)| g * G1 + o);
    let len = select(vec![K4, 2 * K4, M2, M2 + K4, 2 * M2, G1, G1 + M2]);
    let access = select(vec![Access::READ, Access::RW, Access::RW | Access::EXEC]);
    let map = (
        iova.clone(),
        len.clone(),
        0..4u64,
        select(vec![0, 0, M2, K4]),
        access,
    )
        .prop_map(|(iova, len, g, skew, access)| {
            // Large lengths keep the PA congruent enough for blocks (bounded work).
            let skew = if len >= G1 && skew == K4 { 0 } else { skew };
            Op::Map {
                iova,
                pa: (8 + g) * G1 + iova % G1 + skew,
                len,
                access,
            }
        });
    let unmap = (iova, len).prop_map(|(iova, len)| Op::Unmap { iova, len });
    prop_oneof![3 => map, 2 => unmap]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random maps and unmaps: whatever we accept, applied to both, translates the same.
    #[test]
    fn same_translation_as_aarch64_paging(
        ias_bits in select(vec![32u8, 39, 44]),
        ops in prop::collection::vec(op(), 1..16),
    ) {
        let (mut mem, mut ours, mut theirs) = both(Stage2Config { ias_bits, oas_bits: 44 });
        let mut probes = Vec::new();
        for op in &ops {
            match *op {
                Op::Map { iova, pa, len, access } => {
                    if ours.map(&mut mem, Iova(iova), PhysAddr(pa), len, access).is_ok() {
                        theirs.map(iova, pa, len, access);
                    }
                    probes.extend([iova, iova + len - K4, iova + len, iova.saturating_sub(K4)]);
                }
                Op::Unmap { iova, len } => {
                    if ours.unmap(&mut mem, Iova(iova), len).is_ok() {
                        theirs.unmap_and_compact(iova, len);
                    }
                    probes.extend([iova, iova + len - K4, iova + len, iova.saturating_sub(K4)]);
                }
            }
        }
        let (mine, other) = (leaves(&mem, &ours), their_leaves(&theirs));
        prop_assert_eq!(runs(mine.iter().copied()), runs(other.iter().copied()));
        // Same block/page choice, descriptor for descriptor (both free emptied tables, so
        // later maps see the same free entries), and the same number of tables.
        prop_assert_eq!(&mine, &other);
        ours.reclaim(&mut mem);
        prop_assert_eq!(ours.table_pages(), theirs.tables());
        let top = 1u64 << ias_bits;
        for p in probes.into_iter().filter(|&p| p < top) {
            let got = ours.translate(&mem, Iova(p)).map(|t| t.pa.get());
            prop_assert_eq!(got, theirs.translate(p).map(|t| t.0), "iova {:#x}", p);
        }
    }
}
