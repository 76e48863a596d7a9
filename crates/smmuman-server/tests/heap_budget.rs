//! The manager's heap per mapping stays within `MAPPING_BYTES`, the figure the daemon sizes its
//! heap (and so its mapping quota) by, and unmapping everything gives every byte back.
//!
//! A counting global allocator measures the live bytes; the IOMMU backend here stores nothing,
//! so every byte counted is the manager's. It runs without the test harness (`harness =
//! false`): the harness's own threads allocate while a test runs, and would be counted.

mod common;

use common::{Counting, Direct, Null, LIVE};
use iommu_core::{Access, Iova, PhysAddr};
use smmuman_api::{Client, ClientId, DmaWindow, IovaSpan, MapFlags, ObjectFlags};
use smmuman_server::config::MAPPING_BYTES;
use std::sync::atomic::Ordering;

#[global_allocator]
static A: Counting = Counting;

const N: u64 = 20_000;

fn main() {
    a_mapping_costs_at_most_mapping_bytes_of_heap_and_unmapping_gives_it_all_back();
}

fn a_mapping_costs_at_most_mapping_bytes_of_heap_and_unmapping_gives_it_all_back() {
    let mut m = common::manager(Null::default(), 1 << 20, 1 << 20);
    let win = |i: u64, pa: u64| DmaWindow::new(Iova(i << 13), PhysAddr(pa), 0x1000).unwrap();
    let (oa, ob) = {
        let mut a = Client::connect(Direct(&mut m, ClientId(1))).unwrap();
        let oa = a.create_object(ObjectFlags::empty()).unwrap().object;
        let mut b = Client::connect(Direct(&mut m, ClientId(2))).unwrap();
        let ob = b.create_object(ObjectFlags::empty()).unwrap().object;
        (oa, ob)
    };
    let before = LIVE.load(Ordering::SeqCst);
    {
        let mut a = Client::connect(Direct(&mut m, ClientId(1))).unwrap();
        // Private pages, every other page (so no two regions touch), and the same pages again
        // at other I/O addresses (its own aliases).
        for i in 0..N {
            a.map(
                oa,
                win(i, 0x1_0000_0000 + i * 0x2000),
                Access::RW,
                MapFlags::empty(),
            )
            .unwrap();
        }
        for i in 0..N {
            a.map(
                oa,
                win(N + i, 0x1_0000_0000 + i * 0x2000),
                Access::READ,
                MapFlags::empty(),
            )
            .unwrap();
        }
        // Shared pages that B maps too.
        for i in 0..N {
            a.map(
                oa,
                win(2 * N + i, 0x2_0000_0000 + i * 0x2000),
                Access::RW,
                MapFlags::SHARED,
            )
            .unwrap();
        }
    }
    {
        let mut b = Client::connect(Direct(&mut m, ClientId(2))).unwrap();
        for i in 0..N {
            b.map(
                ob,
                win(i, 0x2_0000_0000 + i * 0x2000),
                Access::RW,
                MapFlags::SHARED,
            )
            .unwrap();
        }
    }
    let mappings = 4 * N;
    let used = LIVE.load(Ordering::SeqCst) - before;
    let per_mapping = used as u64 / mappings;
    assert!(
        per_mapping <= MAPPING_BYTES as u64,
        "{per_mapping} bytes per mapping, budget {MAPPING_BYTES}"
    );
    {
        let mut a = Client::connect(Direct(&mut m, ClientId(1))).unwrap();
        let all = IovaSpan::new(Iova(0), (3 * N) << 13).unwrap();
        assert_eq!(a.unmap(oa, all).unwrap().bytes, 3 * N * 0x1000);
        let mut b = Client::connect(Direct(&mut m, ClientId(2))).unwrap();
        let all = IovaSpan::new(Iova(0), N << 13).unwrap();
        assert_eq!(b.unmap(ob, all).unwrap().bytes, N * 0x1000);
    }
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        before,
        "unmapping everything gives every byte back"
    );
    // (Printed last: stdout's buffer is itself a heap allocation.)
    println!(
        "heap_budget: {used} bytes for {mappings} mappings, {per_mapping} per mapping \
         (budget {MAPPING_BYTES}); all given back after unmapping"
    );
}
