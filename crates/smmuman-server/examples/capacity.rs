//! The manager at its default capacity: 16 VM objects of 65,536 mappings each, 1,048,576 in
//! all, made through the client library in batches (a backend that does nothing, so only the
//! manager is measured), with the heap they take counted and given back on unmapping.
//!
//! ```text
//! cargo run --release -p smmuman-server --example capacity
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Counting, Direct, Null, LIVE};
use iommu_core::{Access, Iova, PhysAddr};
use smmuman_api::{
    Client, ClientId, DmaWindow, IovaSpan, MapBatch, MapEntry, MapFlags, ObjectFlags, UnmapBatch,
    MAP_BATCH, UNMAP_BATCH,
};
use smmuman_server::config::{MAPPINGS_PER_OBJECT, MAPPING_BYTES, MAX_MAPPINGS};
use std::sync::atomic::Ordering;
use std::time::Instant;

#[global_allocator]
static A: Counting = Counting;

const OBJECTS: u64 = 16;

fn main() {
    let per_object = MAPPINGS_PER_OBJECT as u64;
    let mut m = common::manager(Null::default(), MAPPINGS_PER_OBJECT, MAX_MAPPINGS);
    let clients: Vec<ClientId> = (1..=2).map(ClientId).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut objects = Vec::new();
    for o in 0..OBJECTS {
        let c = clients[(o % 2) as usize];
        let mut client = Client::connect(Direct(&mut m, c)).unwrap();
        let obj = client.create_object(ObjectFlags::empty()).unwrap().object;
        let mut i = 0;
        while i < per_object {
            let mut b = MapBatch::default();
            while i < per_object && b.len() < MAP_BATCH {
                // Every object its own host pages, every other page (no two touch).
                let pa = ((o * per_object + i) * 2) << 12;
                b.push(MapEntry {
                    window: DmaWindow::new(Iova(i << 12), PhysAddr(pa), 0x1000).unwrap(),
                    access: Access::RW,
                    flags: MapFlags::empty(),
                });
                i += 1;
            }
            client.map_batch(obj, b).unwrap();
        }
        // One more is past the object's quota.
        let over = DmaWindow::new(Iova(per_object << 12), PhysAddr(1 << 47), 0x1000).unwrap();
        assert!(client
            .map(obj, over, Access::RW, MapFlags::empty())
            .is_err());
        objects.push((c, obj));
    }
    let mapped = start.elapsed();
    let used = LIVE.load(Ordering::Relaxed) - before;
    let total = OBJECTS * per_object;
    let unmap_start = Instant::now();
    for &(c, obj) in &objects {
        let mut client = Client::connect(Direct(&mut m, c)).unwrap();
        let mut i = 0;
        while i < per_object {
            let mut b = UnmapBatch::default();
            while i < per_object && b.len() < UNMAP_BATCH {
                b.push(IovaSpan::new(Iova(i << 12), 0x1000).unwrap());
                i += 1;
            }
            client.unmap_batch(obj, b).unwrap();
        }
    }
    let unmapped = unmap_start.elapsed();
    let left = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{total} mappings in {OBJECTS} objects ({per_object} each): mapped in {:.2} s, \
         {used} bytes of heap ({} per mapping, budget {MAPPING_BYTES}); unmapped in {:.2} s, \
         {left} bytes left",
        mapped.as_secs_f64(),
        used as u64 / total,
        unmapped.as_secs_f64()
    );
    assert_eq!(total, MAX_MAPPINGS as u64);
    assert!(used as u64 / total <= MAPPING_BYTES as u64);
}
