//! Instruction counts (callgrind, through iai-callgrind) of the manager, each beside its
//! reference measured in the same run. `cargo xtask bench` runs them and divides each figure by
//! the count its id ends in (`<unit>_<count>`).
//!
//! * **Round trip**: a client maps one page beside an existing one, through the client
//!   library's encoding, `Manager::handle` (decode, checks, ownership index) and the SMMUv3
//!   backend over the emulated SMMU; the reference is the same backend's `map` called directly.
//! * **Growth**: map, unmap and query with 10 and with 100,000 mappings already in the object
//!   (over a backend that does nothing, so only the manager's cost is counted).
//! * **Fault path**: 10,000 SMMUv3 event records decoded and charged to the ledgers at the
//!   default log level (a logger at `info` that formats every line it gets), and the decoding
//!   alone.

#![allow(
    missing_docs,
    reason = "iai-callgrind's macros generate undocumented modules"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{log_at_info, translation_faults, Direct, Null};
use core::time::Duration;
use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use iommu_core::{Access, Bdf, DomainId, IommuBackend, Iova, PhysAddr, StreamId};
use smmuman_api::{
    Client, ClientId, DeviceSel, DmaWindow, IovaRange, IovaSpan, MapFlags, ObjectFlags, ObjectId,
};
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};
use smmuv3::fake_smmu::{FakeSmmu, SharedMem};
use smmuv3::Smmuv3Backend;
use std::hint::black_box;

type Smmu = Smmuv3Backend<SharedMem, FakeSmmu>;

const EDU: StreamId = StreamId(8);
const PA: u64 = 0x8000_0000;
const CLIENT: ClientId = ClientId(1);

fn now() -> Duration {
    Duration::ZERO
}

fn manager<B: IommuBackend>(backend: B) -> (Manager<B>, ObjectId) {
    let devices = [DeviceEntry {
        id: DeviceId::Pci(Bdf::new(0, 1, 0).unwrap()),
        sid: EDU,
        raw_sid_allowed: false,
    }];
    let config = ManagerConfig {
        devices: &devices,
        reserved: &[],
        iova_ranges: &[IovaRange {
            first: Iova(0),
            last: Iova((1 << 39) - 1),
        }],
        page_sizes: 1 << 12 | 1 << 21 | 1 << 30,
        fault_log_depth: 32,
        max_mappings_per_object: 1 << 20,
        max_mappings: 1 << 20,
        clock: now,
    };
    let mut m = Manager::new(backend, &config).unwrap();
    let all = Grant {
        range: PhysRange {
            start: PhysAddr(0),
            len: 1 << 44,
        },
        kind: GrantKind::Ram,
    };
    m.assign(
        CLIENT,
        &[all],
        &[DeviceSel::pci(Bdf::new(0, 1, 0).unwrap())],
    )
    .unwrap();
    let obj = {
        let mut c = Client::connect(Direct(&mut m, CLIENT)).unwrap();
        let obj = c.create_object(ObjectFlags::empty()).unwrap().object;
        c.attach(obj, DeviceSel::pci(Bdf::new(0, 1, 0).unwrap()))
            .unwrap();
        obj
    };
    (m, obj)
}

fn page(i: u64) -> DmaWindow {
    DmaWindow::new(Iova(i << 12), PhysAddr(PA + (i << 12)), 0x1000).unwrap()
}

// Round trip: 1,000 one-page maps, each beside the one before it.

const ROUND: u64 = 1000;

fn smmu_manager() -> (Manager<Smmu>, ObjectId) {
    let (mut m, obj) = manager(smmuv3::fake_smmu::qemu_backend().unwrap());
    Client::connect(Direct(&mut m, CLIENT))
        .unwrap()
        .map(obj, page(0), Access::RW, MapFlags::empty())
        .unwrap();
    (m, obj)
}

fn smmu_direct() -> (Smmu, DomainId) {
    let mut b = smmuv3::fake_smmu::qemu_backend().unwrap();
    let d = b.create_domain().unwrap();
    b.attach(EDU, d).unwrap();
    b.map(d, Iova(0), PhysAddr(PA), 0x1000, Access::RW).unwrap();
    (b, d)
}

#[library_benchmark]
#[bench::maps_1000(smmu_manager())]
fn round_trip_map_through_the_manager((mut m, obj): (Manager<Smmu>, ObjectId)) -> Manager<Smmu> {
    {
        let mut c = Client::connect(Direct(&mut m, CLIENT)).unwrap();
        for i in 1..=ROUND {
            black_box(c.map(obj, page(i), Access::RW, MapFlags::empty())).unwrap();
        }
    }
    m
}

#[library_benchmark]
#[bench::maps_1000(smmu_direct())]
fn round_trip_map_direct_backend_call((mut b, d): (Smmu, DomainId)) -> Smmu {
    for i in 1..=ROUND {
        let w = page(i);
        black_box(b.map(d, w.iova(), w.pa(), 0x1000, Access::RW)).unwrap();
    }
    b
}

// Growth: the same 100 operations with 10 and with 100,000 mappings in the object.

const OPS: u64 = 100;
/// Existing mappings sit at even pages from this page on; the measured ones go below it.
const EXISTING_AT: u64 = 1 << 20;

fn with_existing(n: u64) -> (Manager<Null>, ObjectId) {
    let (mut m, obj) = manager(Null::default());
    {
        let mut c = Client::connect(Direct(&mut m, CLIENT)).unwrap();
        let mut batch = smmuman_api::MapBatch::default();
        for i in 0..n {
            let at = EXISTING_AT + 2 * i;
            batch.push(smmuman_api::MapEntry {
                window: page(at),
                access: Access::RW,
                flags: MapFlags::empty(),
            });
            if batch.len() == smmuman_api::MAP_BATCH {
                c.map_batch(obj, batch).unwrap();
                batch = smmuman_api::MapBatch::default();
            }
        }
        if !batch.is_empty() {
            c.map_batch(obj, batch).unwrap();
        }
    }
    (m, obj)
}

fn map_ops((mut m, obj): (Manager<Null>, ObjectId)) -> Manager<Null> {
    {
        let mut c = Client::connect(Direct(&mut m, CLIENT)).unwrap();
        for i in 0..OPS {
            // Spread through the existing ones' range: the B-trees are searched, not appended.
            let at = EXISTING_AT + 2 * (i * 997) + 1;
            black_box(c.map(obj, page(at), Access::RW, MapFlags::empty())).unwrap();
        }
    }
    m
}

fn with_existing_and_ops(n: u64) -> (Manager<Null>, ObjectId) {
    let (m, obj) = with_existing(n);
    (map_ops((m, obj)), obj)
}

#[library_benchmark]
#[bench::ops_100_with_10(with_existing(10))]
#[bench::ops_100_with_100000(with_existing(100_000))]
fn growth_map(state: (Manager<Null>, ObjectId)) -> Manager<Null> {
    map_ops(state)
}

#[library_benchmark]
#[bench::ops_100_with_10(with_existing_and_ops(10))]
#[bench::ops_100_with_100000(with_existing_and_ops(100_000))]
fn growth_unmap((mut m, obj): (Manager<Null>, ObjectId)) -> Manager<Null> {
    {
        let mut c = Client::connect(Direct(&mut m, CLIENT)).unwrap();
        for i in 0..OPS {
            let at = EXISTING_AT + 2 * (i * 997) + 1;
            let span = IovaSpan::new(Iova(at << 12), 0x1000).unwrap();
            black_box(c.unmap(obj, span)).unwrap();
        }
    }
    m
}

#[library_benchmark]
#[bench::ops_100_with_10(with_existing(10))]
#[bench::ops_100_with_100000(with_existing(100_000))]
fn growth_object_status((mut m, obj): (Manager<Null>, ObjectId)) -> Manager<Null> {
    {
        let mut c = Client::connect(Direct(&mut m, CLIENT)).unwrap();
        for _ in 0..OPS {
            black_box(c.object_status(obj)).unwrap();
        }
    }
    m
}

// Fault path: 10,000 events, decoded from SMMUv3 records, into the ledgers, logged at `info`.

const EVENTS: u64 = 10_000;

fn fault_setup() -> Manager<Null> {
    log_at_info();
    manager(Null {
        events: translation_faults(EVENTS),
    })
    .0
}

fn raw_records() -> Vec<[u64; 4]> {
    translation_faults(EVENTS)
}

#[library_benchmark]
#[bench::events_10000(fault_setup())]
fn fault_path_into_the_ledgers(mut m: Manager<Null>) -> Manager<Null> {
    black_box(m.on_iommu_event(Duration::ZERO)).unwrap();
    m
}

#[library_benchmark]
#[bench::events_10000(raw_records())]
fn fault_path_decode(raw: Vec<[u64; 4]>) -> u64 {
    let mut n = 0u64;
    for r in &raw {
        let f = smmuv3::backend::fault_from_event(&smmuv3::Event::decode(*r));
        n = n.wrapping_add(f.addr.0);
    }
    black_box(n)
}

library_benchmark_group!(
    name = round_trip;
    benchmarks = round_trip_map_through_the_manager, round_trip_map_direct_backend_call
);
library_benchmark_group!(
    name = growth;
    benchmarks = growth_map, growth_unmap, growth_object_status
);
library_benchmark_group!(
    name = fault_path;
    benchmarks = fault_path_into_the_ledgers, fault_path_decode
);
main!(library_benchmark_groups = round_trip, growth, fault_path);
