//! Property test: random sequences of map/unmap (valid and invalid, pages and blocks) against a
//! reference model of the IOVA space. After every operation the table must translate exactly as
//! the model says, return the model's answer, and hold no empty or leaked table.
//!
//! A second property runs 30,000 operations per case from one seed (about 13,000 maps
//! accepted, 11,000 pages mapped at once), checking every answer and the whole table every
//! 5,000 operations: many lifetimes of the same tables, and the per-table counts through them.

mod common;

use common::{empty_tables, leaves, runs, Model, G1, K4, M2};
use iommu_core::fake::FakeMemory;
use iommu_core::{Access, Iova, PhysAddr};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestRunner};
use stage2::{Invalidation, Stage2Config, Stage2Table};
use std::sync::atomic::{AtomicU32, Ordering};

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
    Reclaim,
}

/// Offsets inside a GiB that sit on or next to page, 2 MiB and 1 GiB boundaries.
fn offset() -> impl Strategy<Value = u64> {
    select(vec![
        0,
        K4,
        2 * K4,
        511 * K4,
        M2 - K4,
        M2,
        M2 + K4,
        3 * M2,
        7 * M2 + 5 * K4,
        G1 - M2,
        G1 - K4,
    ])
}

/// IOVAs in the first 4 GiB (valid for every size tested) or just below the top.
fn iova(ias_bits: u8) -> impl Strategy<Value = u64> {
    let top = 1u64 << ias_bits;
    prop_oneof![
        6 => (0..4u64, offset()).prop_map(|(g, o)| g * G1 + o),
        1 => select(vec![K4, M2, G1]).prop_map(move |o| top - o),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    select(vec![
        Access::READ,
        Access::WRITE,
        Access::RW,
        Access::READ | Access::EXEC,
        Access::RW | Access::EXEC,
    ])
}

fn ops(ias_bits: u8, oas_bits: u8) -> impl Strategy<Value = Op> {
    let any_len = select(vec![
        K4,
        2 * K4,
        M2 - K4,
        M2,
        M2 + K4,
        2 * M2,
        G1,
        G1 + M2,
        2 * G1,
    ]);
    // PA congruent to the IOVA modulo 1 GiB (1 GiB blocks possible) or modulo 2 MiB only.
    let blocky = (
        iova(ias_bits),
        any_len.clone(),
        0..8u64,
        select(vec![0, M2]),
        access(),
    )
        .prop_map(|(iova, len, g, shift, access)| Op::Map {
            iova,
            pa: (4 + g) * G1 + iova % G1 + shift,
            len,
            access,
        });
    // Aligned 2 MiB / 1 GiB requests, so blocks are common.
    let offsets = select(vec![0, 0, M2, 5 * M2]);
    let lens = select(vec![M2, 2 * M2, G1, G1, G1 + M2, 2 * G1]);
    let blocks = (0..4u64, offsets, lens, access()).prop_map(|(g, o, len, access)| Op::Map {
        iova: g * G1 + o,
        pa: 9 * G1 + o,
        len,
        access,
    });
    // Any page-aligned PA, small lengths (pages only, bounded work).
    let small = (
        iova(ias_bits),
        0..64u64,
        select(vec![K4, 3 * K4, M2 + K4]),
        access(),
    )
        .prop_map(|(iova, p, len, access)| Op::Map {
            iova,
            pa: 0x8000_0000 + p * K4,
            len,
            access,
        });
    // Requests to refuse: unaligned, zero or odd length, no access, PA beyond the OAS.
    let junk = (
        iova(ias_bits),
        select(vec![0, 0x10, 0x800, (1 << oas_bits) - K4]),
        select(vec![0, 0x800, K4, 2 * K4]),
        select(vec![Access::empty(), Access::RW]),
        any::<bool>(),
    )
        .prop_map(|(iova, pa, len, access, skew)| Op::Map {
            iova: iova + if skew { 0x200 } else { 0 },
            pa,
            len,
            access,
        });
    let unmap = (
        iova(ias_bits),
        select(vec![K4, 3 * K4, M2, M2 + K4, G1, 4 * G1, 0, 0x800]),
    )
        .prop_map(|(iova, len)| Op::Unmap { iova, len });
    prop_oneof![
        3 => blocky,
        3 => blocks,
        3 => small,
        1 => junk,
        4 => unmap,
        1 => Just(Op::Reclaim),
    ]
}

fn case() -> impl Strategy<Value = (Stage2Config, Vec<Op>)> {
    (select(vec![32u8, 39, 40, 48]), select(vec![40u8, 44, 48])).prop_flat_map(
        |(ias_bits, oas_bits)| {
            let cfg = Stage2Config { ias_bits, oas_bits };
            (
                Just(cfg),
                prop::collection::vec(ops(ias_bits, oas_bits), 1..20),
            )
        },
    )
}

/// IOVAs whose translation an operation on `[iova, iova + len)` may have changed, and neighbours.
fn probes(iova: u64, len: u64, top: u64) -> Vec<u64> {
    let end = iova.saturating_add(len);
    let p = [
        iova,
        iova.wrapping_sub(K4),
        end.wrapping_sub(K4),
        end,
        iova + len / 2,
    ];
    p.into_iter()
        .map(|x| x & !(K4 - 1))
        .filter(|&x| x < top)
        .collect()
}

/// Checks the table against the model; returns which leaf levels it holds (bit n = level n).
fn check(mem: &FakeMemory, table: &Stage2Table, model: &Model, touched: &[u64]) -> u8 {
    let leaves = leaves(mem, table);
    let levels = leaves.iter().fold(0u8, |acc, l| acc | 1 << l.level);
    assert_eq!(
        runs(leaves),
        model.runs(),
        "translation differs from the model"
    );
    assert_eq!(
        table.table_pages() + table.bookkeeping_pages(),
        mem.live_allocations(),
        "table or side pages leaked or lost"
    );
    assert_eq!(table.check_bookkeeping(mem), Ok(()), "per-table counts");
    assert_eq!(
        empty_tables(mem, table),
        0,
        "an empty table is still linked"
    );
    for &iova in touched {
        let got = table
            .translate(mem, Iova(iova))
            .map(|t| (t.pa.get(), t.access));
        assert_eq!(got, model.translate(iova), "translate({iova:#x})");
    }
    levels
}

/// Runs one sequence; returns the leaf levels seen along the way.
fn run_case(cfg: Stage2Config, ops: &[Op]) -> Result<u8, TestCaseError> {
    let mut mem = FakeMemory::new(PhysAddr(0x100_0000_0000), 1 << 32);
    let mut table = Stage2Table::new(&mut mem, cfg).unwrap();
    let mut model = Model::new(cfg);
    let top = 1u64 << cfg.ias_bits;
    let mut touched = Vec::new();
    let mut levels = 0;
    for op in ops {
        match *op {
            Op::Map {
                iova,
                pa,
                len,
                access,
            } => {
                let want = model
                    .map(iova, pa, len, access)
                    .map(|()| Invalidation::none());
                let got = table.map(&mut mem, Iova(iova), PhysAddr(pa), len, access);
                prop_assert_eq!(got, want, "{:?}", op);
                touched.extend(probes(iova, len, top));
            }
            Op::Unmap { iova, len } => {
                let want = model.unmap(iova, len);
                let got = table.unmap(&mut mem, Iova(iova), len);
                match (got, want) {
                    (Ok(u), Ok((bytes, span))) => {
                        prop_assert_eq!(u.bytes, bytes, "{:?}", op);
                        let range = u.invalidation.range().map(|(i, l)| (i.get(), i.get() + l));
                        prop_assert_eq!(range, span, "{:?}", op);
                    }
                    (got, want) => prop_assert_eq!(got.map(|u| u.bytes), want.map(|w| w.0)),
                }
                touched.extend(probes(iova, len, top));
            }
            Op::Reclaim => {
                table.reclaim(&mut mem);
            }
        }
        levels |= check(&mem, &table, &model, &touched);
    }
    table.reclaim(&mut mem);
    prop_assert_eq!(
        mem.live_allocations(),
        table.table_pages() + table.bookkeeping_pages()
    );
    // Unmapping everything leaves the root alone: no table, no side page.
    let _ = table.unmap(&mut mem, Iova(0), top).unwrap();
    table.reclaim(&mut mem);
    prop_assert_eq!(mem.live_allocations(), 1);
    table.destroy(&mut mem);
    prop_assert_eq!(mem.live_allocations(), 0);
    Ok(levels)
}

#[test]
fn table_matches_model() {
    const CASES: u32 = 128;
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    });
    // Cases whose table held a 1 GiB block, a 2 MiB block, a page at some point.
    let seen = [(); 4].map(|()| AtomicU32::new(0));
    let result = runner.run(&case(), |(cfg, ops)| {
        let levels = run_case(cfg, &ops)?;
        for (level, counter) in seen.iter().enumerate() {
            if levels & 1 << level != 0 {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.map(|c| c.into_inner());
    // The generator must exercise blocks, not only pages.
    // (Typical counts: 1 GiB blocks in about 30% of the cases, the others in over 70%.)
    assert!(
        seen[1] >= CASES / 8,
        "1 GiB blocks in only {} of {CASES} cases",
        seen[1]
    );
    assert!(
        seen[2] >= CASES / 4,
        "2 MiB blocks in only {} of {CASES} cases",
        seen[2]
    );
    assert!(
        seen[3] >= CASES / 4,
        "pages in only {} of {CASES} cases",
        seen[3]
    );
}

/// A small deterministic generator (xorshift64*), so one proptest seed drives tens of thousands
/// of operations without proptest building (and shrinking) a vector of them.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Page and 2 MiB maps and unmaps in a 64 MiB window of a 48-bit (four-level) domain: the 32
/// last-level tables there are filled, emptied, unlinked and rebuilt many times over. After every
/// operation the answer must be the model's and the touched pages must translate as the model
/// says; every `FULL_CHECK` operations and at the end, the whole table (leaves, memory, no empty
/// table, per-table counts) is compared. Returns (maps accepted, most pages mapped at once).
fn run_many(seed: u64, ops: usize) -> Result<(usize, u64), TestCaseError> {
    const WINDOW_PAGES: u64 = 64 * 512;
    const FULL_CHECK: usize = 5_000;
    let cfg = Stage2Config {
        ias_bits: 48,
        oas_bits: 44,
    };
    let base = 0x7f_c000_0000; // below 2^39 and 2^48, away from 0
    let mut rng = Rng(seed | 1);
    let mut mem = FakeMemory::new(PhysAddr(0x100_0000_0000), 1 << 32);
    let mut table = Stage2Table::new(&mut mem, cfg).unwrap();
    let mut model = Model::new(cfg);
    let (mut accepted, mut peak) = (0, 0);
    for n in 0..ops {
        let page = rng.below(WINDOW_PAGES);
        let pa_page = rng.below(1 << 20);
        let (iova, len, pa) = match rng.below(8) {
            0..=3 => (
                base + page * K4,
                (1 + rng.below(4)) * K4,
                Some(pa_page * K4),
            ),
            4 => {
                let iova = base + (page & !511) * K4;
                (iova, M2, Some((pa_page & !511) * K4))
            }
            5 | 6 => (base + page * K4, (1 + rng.below(8)) * K4, None),
            _ => (base + (page & !511) * K4, M2, None),
        };
        let len = len.min(base + WINDOW_PAGES * K4 - iova);
        match pa {
            Some(pa) => {
                let want = model.map(iova, pa, len, Access::RW);
                let got = table.map(&mut mem, Iova(iova), PhysAddr(pa), len, Access::RW);
                prop_assert_eq!(
                    got.map(|_| ()),
                    want,
                    "op {}: map {:#x}+{:#x}",
                    n,
                    iova,
                    len
                );
                accepted += usize::from(got.is_ok());
            }
            None => {
                let want = model.unmap(iova, len).unwrap();
                let got = table.unmap(&mut mem, Iova(iova), len).unwrap();
                prop_assert_eq!(got.bytes, want.0, "op {}: unmap {:#x}+{:#x}", n, iova, len);
                let span = got
                    .invalidation
                    .range()
                    .map(|(i, l)| (i.get(), i.get() + l));
                prop_assert_eq!(span, want.1, "op {}: unmap {:#x}+{:#x}", n, iova, len);
                if rng.below(16) == 0 {
                    table.reclaim(&mut mem);
                }
            }
        }
        for probe in [iova, iova + len - K4, iova + len] {
            let got = table
                .translate(&mem, Iova(probe))
                .map(|t| (t.pa.get(), t.access));
            prop_assert_eq!(
                got,
                model.translate(probe),
                "op {}: translate {:#x}",
                n,
                probe
            );
        }
        peak = peak.max(model.bytes() / K4);
        if n % FULL_CHECK == FULL_CHECK - 1 {
            check(&mem, &table, &model, &[]);
        }
    }
    check(&mem, &table, &model, &[]);
    let _ = table.unmap(&mut mem, Iova(0), 1 << 48).unwrap();
    table.reclaim(&mut mem);
    prop_assert_eq!(mem.live_allocations(), 1, "only the root is left");
    table.destroy(&mut mem);
    Ok((accepted, peak))
}

#[test]
fn tens_of_thousands_of_mappings_match_the_model() {
    const OPS: usize = 30_000;
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2,
        ..ProptestConfig::default()
    });
    let result = runner.run(&any::<u64>(), |seed| {
        let (accepted, peak) = run_many(seed, OPS)?;
        eprintln!("seed {seed:#x}: {accepted} maps accepted, {peak} pages mapped at most");
        // The generator must really reach tens of thousands of mappings, thousands at once.
        prop_assert!(accepted >= 10_000, "only {} maps accepted", accepted);
        prop_assert!(peak >= 5_000, "at most {} pages mapped at once", peak);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
