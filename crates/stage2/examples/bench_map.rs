//! First host measurement of map/unmap cost: 1 GiB as 4 KiB pages, as 2 MiB blocks and as one
//! 1 GiB block, `stage2` against Google's `aarch64-paging` (stage-2 regime) in the same run.
//!
//! Run with `cargo run --release -p stage2 --example bench_map`. Our tables live in a simple
//! page arena behind `DmaMemory` (a `Vec` of 4 KiB pages); `aarch64-paging`'s on the host heap.
//! Both use a level-1 root (39-bit IPA). `aarch64-paging` unmaps by writing invalid entries and
//! then calls `compact_subtables` once at the end so that both end with only the root, as ours
//! does (ours frees emptied tables as it goes; its unmap time includes `reclaim`). Each figure is
//! the median of several runs.

#[path = "../tests/common/arena.rs"]
mod arena;
#[path = "../tests/common/theirs.rs"]
#[allow(
    dead_code,
    reason = "shared with the tests; the benchmark uses a subset"
)]
mod theirs;

use arena::Arena;
use iommu_core::{Access, Iova, PhysAddr};
use stage2::{MapError, Stage2Config, Stage2Table};
use std::time::{Duration, Instant};
use theirs::Theirs;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;
const RUNS: usize = 5;

/// One way of mapping the GiB at IOVA 1 GiB.
struct Case {
    name: &'static str,
    /// Physical address of the first byte.
    pa: u64,
    /// Bytes per map/unmap call.
    step: u64,
}

struct Figures {
    map: Duration,
    unmap: Duration,
    tables_mapped: usize,
    /// Side pages (our per-table counts) held after mapping; 0 for aarch64-paging.
    sides_mapped: usize,
    tables_after: usize,
}

fn median(mut samples: Vec<Figures>) -> Figures {
    samples.sort_by_key(|f| f.map + f.unmap);
    samples.swap_remove(samples.len() / 2)
}

fn ours(case: &Case) -> Result<Figures, MapError> {
    let mut mem = Arena::default();
    let mut table = Stage2Table::new(
        &mut mem,
        Stage2Config {
            ias_bits: 39,
            oas_bits: 44,
        },
    )?;
    let t = Instant::now();
    for off in (0..G1).step_by(case.step as usize) {
        let pa = PhysAddr(case.pa + off);
        table.map(&mut mem, Iova(G1 + off), pa, case.step, Access::RW)?;
    }
    let map = t.elapsed();
    let tables_mapped = table.table_pages();
    let sides_mapped = table.bookkeeping_pages();
    let t = Instant::now();
    let mut bytes = 0;
    for off in (0..G1).step_by(case.step as usize) {
        bytes += table.unmap(&mut mem, Iova(G1 + off), case.step)?.bytes;
    }
    table.reclaim(&mut mem);
    let unmap = t.elapsed();
    assert_eq!(bytes, G1);
    let tables_after = table.table_pages() + table.bookkeeping_pages();
    table.destroy(&mut mem);
    Ok(Figures {
        map,
        unmap,
        tables_mapped,
        sides_mapped,
        tables_after,
    })
}

fn theirs(case: &Case) -> Figures {
    let mut table = Theirs::new(1, 39);
    let t = Instant::now();
    for off in (0..G1).step_by(case.step as usize) {
        table.map(G1 + off, case.pa + off, case.step, Access::RW);
    }
    let map = t.elapsed();
    let tables_mapped = table.tables();
    let t = Instant::now();
    for off in (0..G1).step_by(case.step as usize) {
        table.unmap(G1 + off, case.step);
    }
    table.mapping.compact_subtables();
    let unmap = t.elapsed();
    Figures {
        map,
        unmap,
        tables_mapped,
        sides_mapped: 0,
        tables_after: table.tables(),
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() -> Result<(), MapError> {
    let cases = [
        Case {
            name: "4 KiB pages, 1 call",
            pa: 4 * G1 + K4,
            step: G1,
        },
        Case {
            name: "4 KiB pages, 262144 calls",
            pa: 4 * G1,
            step: K4,
        },
        Case {
            name: "2 MiB blocks, 1 call",
            pa: 4 * G1 + M2,
            step: G1,
        },
        Case {
            name: "2 MiB blocks, 512 calls",
            pa: 4 * G1,
            step: M2,
        },
        Case {
            name: "1 GiB block, 1 call",
            pa: 4 * G1,
            step: G1,
        },
    ];
    println!("map + unmap of 1 GiB at IOVA 0x40000000, median of {RUNS} runs (release build)");
    println!();
    println!(
        "| {:<26} | {:<14} | {:>10} | {:>10} | {:>12} | {:>10} | {:>12} |",
        "case",
        "tables by",
        "map µs",
        "unmap µs",
        "tables after map",
        "side pages",
        "pages after unmap"
    );
    println!(
        "|{:-<28}|{:-<16}|{:->12}|{:->12}|{:->18}|{:->12}|{:->19}|",
        "", "", "", "", "", "", ""
    );
    for case in &cases {
        let mine = median((0..RUNS).map(|_| ours(case)).collect::<Result<_, _>>()?);
        let other = median((0..RUNS).map(|_| theirs(case)).collect());
        for (who, f) in [("stage2", mine), ("aarch64-paging", other)] {
            println!(
                "| {:<26} | {:<14} | {:>10} | {:>10} | {:>16} | {:>10} | {:>17} |",
                case.name,
                who,
                micros(f.map),
                micros(f.unmap),
                f.tables_mapped,
                f.sides_mapped,
                f.tables_after
            );
        }
    }
    Ok(())
}
