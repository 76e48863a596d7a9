//! Instruction counts (callgrind, through iai-callgrind) of `stage2` against Google's
//! `aarch64-paging` 0.12 (stage-2 regime) doing the same thing in the same run.
//!
//! Run with `cargo xtask bench` (installs `iai-callgrind-runner`, runs every workspace crate's
//! benches and prints instructions per page with the reference beside it), or
//! `cargo bench -p stage2`. Every case maps or unmaps the GiB at IOVA 1 GiB of a 39-bit domain
//! (level-1 root); the setup (the table, and for unmaps its mapping) is not measured. Our
//! tables live in [`Arena`] behind `DmaMemory`, `aarch64-paging`'s on the host heap.
//! `aarch64-paging` unmaps by writing invalid entries, then `compact_subtables` frees the empty
//! tables once at the end, so that both end holding only the root (ours frees as it goes and
//! its unmap includes `reclaim`).
//!
//! Benchmark ids end in `<unit>_<count>`: `cargo xtask bench` divides by the count.

#![allow(
    missing_docs,
    reason = "iai-callgrind's macros generate undocumented modules"
)]

#[path = "../tests/common/arena.rs"]
mod arena;
#[path = "../tests/common/theirs.rs"]
#[allow(
    dead_code,
    reason = "shared with the tests; the benchmarks use a subset"
)]
mod theirs;

use arena::Arena;
use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use iommu_core::{Access, Iova, PhysAddr};
use stage2::format::VtdSecondLevel;
use stage2::{Stage2Config, Stage2Table};
use std::hint::black_box;
use theirs::Theirs;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;
/// Where the GiB is mapped from (IOVA) and to (PA).
const IOVA: u64 = G1;
const PA: u64 = 4 * G1;

const CFG: Stage2Config = Stage2Config {
    ias_bits: 39,
    oas_bits: 44,
};

type Ours = (Arena, Stage2Table);

fn ours_empty() -> Ours {
    let mut mem = Arena::default();
    let table = Stage2Table::new(&mut mem, CFG).unwrap();
    (mem, table)
}

/// Ours with the GiB mapped by one call, with pages (`pa` not 2 MiB aligned) or blocks.
fn ours_mapped(pa: u64) -> Ours {
    let (mut mem, mut table) = ours_empty();
    table
        .map(&mut mem, Iova(IOVA), PhysAddr(pa), G1, Access::RW)
        .unwrap();
    (mem, table)
}

fn ours_pages() -> Ours {
    ours_mapped(PA + K4)
}

fn ours_blocks() -> Ours {
    ours_mapped(PA + M2)
}

fn theirs_empty() -> Theirs {
    Theirs::new(1, 39)
}

fn theirs_mapped(pa: u64) -> Theirs {
    let mut t = theirs_empty();
    t.map(IOVA, pa, G1, Access::RW);
    t
}

fn theirs_pages() -> Theirs {
    theirs_mapped(PA + K4)
}

fn theirs_blocks() -> Theirs {
    theirs_mapped(PA + M2)
}

/// Maps the GiB in calls of `step` bytes; returns the state so dropping it is not measured.
fn ours_map(mut t: Ours, pa: u64, step: u64) -> Ours {
    let (mem, table) = &mut t;
    for off in (0..G1).step_by(step as usize) {
        let r = table.map(mem, Iova(IOVA + off), PhysAddr(pa + off), step, Access::RW);
        black_box(r).unwrap();
    }
    t
}

/// Unmaps the GiB in calls of `step` bytes, then frees the emptied tables.
fn ours_unmap(mut t: Ours, step: u64) -> Ours {
    let (mem, table) = &mut t;
    for off in (0..G1).step_by(step as usize) {
        let _ = black_box(table.unmap(mem, Iova(IOVA + off), step)).unwrap();
    }
    table.reclaim(mem);
    t
}

fn theirs_map(mut t: Theirs, pa: u64, step: u64) -> Theirs {
    for off in (0..G1).step_by(step as usize) {
        t.map(IOVA + off, pa + off, step, Access::RW);
    }
    t
}

fn theirs_unmap(mut t: Theirs, step: u64) -> Theirs {
    for off in (0..G1).step_by(step as usize) {
        t.unmap(IOVA + off, step);
    }
    t.mapping.compact_subtables();
    t
}

// 1 GiB as 4 KiB pages, one call per page.

#[library_benchmark]
#[bench::pages_262144(ours_empty())]
fn map_4k_each_stage2(t: Ours) -> Ours {
    ours_map(t, PA, K4)
}

#[library_benchmark]
#[bench::pages_262144(theirs_empty())]
fn map_4k_each_aarch64_paging(t: Theirs) -> Theirs {
    theirs_map(t, PA, K4)
}

#[library_benchmark]
#[bench::pages_262144(ours_pages())]
fn unmap_4k_each_stage2(t: Ours) -> Ours {
    ours_unmap(t, K4)
}

#[library_benchmark]
#[bench::pages_262144(theirs_pages())]
fn unmap_4k_each_aarch64_paging(t: Theirs) -> Theirs {
    theirs_unmap(t, K4)
}

// 1 GiB as 4 KiB pages in one call (PA not 2 MiB aligned, so no blocks).

#[library_benchmark]
#[bench::pages_262144(ours_empty())]
fn map_1g_pages_one_call_stage2(t: Ours) -> Ours {
    ours_map(t, PA + K4, G1)
}

#[library_benchmark]
#[bench::pages_262144(theirs_empty())]
fn map_1g_pages_one_call_aarch64_paging(t: Theirs) -> Theirs {
    theirs_map(t, PA + K4, G1)
}

#[library_benchmark]
#[bench::pages_262144(ours_pages())]
fn unmap_1g_pages_one_call_stage2(t: Ours) -> Ours {
    ours_unmap(t, G1)
}

#[library_benchmark]
#[bench::pages_262144(theirs_pages())]
fn unmap_1g_pages_one_call_aarch64_paging(t: Theirs) -> Theirs {
    theirs_unmap(t, G1)
}

// 1 GiB as 2 MiB blocks, one call per block.

#[library_benchmark]
#[bench::blocks_512(ours_empty())]
fn map_2m_each_stage2(t: Ours) -> Ours {
    ours_map(t, PA + M2, M2)
}

#[library_benchmark]
#[bench::blocks_512(theirs_empty())]
fn map_2m_each_aarch64_paging(t: Theirs) -> Theirs {
    theirs_map(t, PA + M2, M2)
}

#[library_benchmark]
#[bench::blocks_512(ours_blocks())]
fn unmap_2m_each_stage2(t: Ours) -> Ours {
    ours_unmap(t, M2)
}

#[library_benchmark]
#[bench::blocks_512(theirs_blocks())]
fn unmap_2m_each_aarch64_paging(t: Theirs) -> Theirs {
    theirs_unmap(t, M2)
}

// The same walker over the VT-d second-level format (VT-d §9.8; 2 MiB and 1 GiB superpages, as
// on QEMU's unit): the generic walker's cost is the format's too. A 48-bit domain (4-level
// table), as a unit with SAGAW 48 uses. Totals only: `cargo xtask bench` lists them under
// "other benchmark"; divide by the id's count.

type OursVtd = (Arena, Stage2Table<VtdSecondLevel>);

const VTD: VtdSecondLevel = VtdSecondLevel {
    superpage_2m: true,
    superpage_1g: true,
    snoop: false,
};

const VTD_CFG: Stage2Config = Stage2Config {
    ias_bits: 48,
    oas_bits: 48,
};

fn vtd_empty() -> OursVtd {
    let mut mem = Arena::default();
    let table = Stage2Table::with_format(&mut mem, VTD_CFG, VTD).unwrap();
    (mem, table)
}

fn vtd_mapped(pa: u64) -> OursVtd {
    let (mut mem, mut table) = vtd_empty();
    table
        .map(&mut mem, Iova(IOVA), PhysAddr(pa), G1, Access::RW)
        .unwrap();
    (mem, table)
}

fn vtd_map(mut t: OursVtd, pa: u64, step: u64) -> OursVtd {
    let (mem, table) = &mut t;
    for off in (0..G1).step_by(step as usize) {
        let r = table.map(mem, Iova(IOVA + off), PhysAddr(pa + off), step, Access::RW);
        black_box(r).unwrap();
    }
    t
}

fn vtd_unmap(mut t: OursVtd, step: u64) -> OursVtd {
    let (mem, table) = &mut t;
    for off in (0..G1).step_by(step as usize) {
        let _ = black_box(table.unmap(mem, Iova(IOVA + off), step)).unwrap();
    }
    table.reclaim(mem);
    t
}

#[library_benchmark]
#[bench::pages_262144(vtd_empty())]
fn map_4k_each_vtd(t: OursVtd) -> OursVtd {
    vtd_map(t, PA, K4)
}

#[library_benchmark]
#[bench::pages_262144(vtd_mapped(PA + K4))]
fn unmap_4k_each_vtd(t: OursVtd) -> OursVtd {
    vtd_unmap(t, K4)
}

#[library_benchmark]
#[bench::blocks_512(vtd_empty())]
fn map_2m_each_vtd(t: OursVtd) -> OursVtd {
    vtd_map(t, PA + M2, M2)
}

#[library_benchmark]
#[bench::blocks_512(vtd_mapped(PA + M2))]
fn unmap_2m_each_vtd(t: OursVtd) -> OursVtd {
    vtd_unmap(t, M2)
}

library_benchmark_group!(
    name = vtd_second_level;
    benchmarks = map_4k_each_vtd, unmap_4k_each_vtd, map_2m_each_vtd, unmap_2m_each_vtd
);

library_benchmark_group!(
    name = stage2_vs_aarch64_paging;
    benchmarks =
        map_4k_each_stage2,
        map_4k_each_aarch64_paging,
        unmap_4k_each_stage2,
        unmap_4k_each_aarch64_paging,
        map_1g_pages_one_call_stage2,
        map_1g_pages_one_call_aarch64_paging,
        unmap_1g_pages_one_call_stage2,
        unmap_1g_pages_one_call_aarch64_paging,
        map_2m_each_stage2,
        map_2m_each_aarch64_paging,
        unmap_2m_each_stage2,
        unmap_2m_each_aarch64_paging
);

main!(
    library_benchmark_groups = stage2_vs_aarch64_paging,
    vtd_second_level
);
