//! Instruction counts (callgrind, through iai-callgrind) of the manager, each beside its
//! reference measured in the same run. `cargo xtask bench` runs them and divides each figure by
//! the count its id ends in (`<unit>_<count>`).
//!
//! * **Round trip**: a client maps one page beside an existing one, through the client
//!   library's encoding, `Manager::handle` (decode, checks, ownership index) and the SMMUv3
//!   backend over the emulated SMMU; the reference is the same backend's `map` called directly.
//! * **Growth**: map, unmap and query with 10 and with 100,000 mappings already in the object
//!   (over a backend that does nothing, so only the manager's cost is counted).
//! * **Fault path**: 10,000 events from the IOMMU into the ledgers at the default log level (a
//!   logger at `info` that formats every line it gets), SMMUv3 event decoding included.

#![allow(
    missing_docs,
    reason = "iai-callgrind's macros generate undocumented modules"
)]

use core::fmt::Write as _;
use core::time::Duration;
use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use iommu_core::{
    Access, Bdf, DomainId, Fault, FaultDrain, IommuBackend, Iova, PhysAddr, StreamId,
};
use smmuman_api::{
    Client, ClientId, DeviceSel, DmaWindow, IovaRange, IovaSpan, MapFlags, ObjectFlags, ObjectId,
    Transport, TransportError, MAX_MESSAGE,
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

/// A transport straight into `Manager::handle`.
struct Direct<'a, B: IommuBackend>(&'a mut Manager<B>);

impl<B: IommuBackend> Transport for Direct<'_, B> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        // In-process: the manager writes straight into the client's reply buffer (a kernel
        // channel would copy the reply once, as the daemon's mailbox does).
        if reply.len() < MAX_MESSAGE {
            return Err(TransportError::ReplyTooLong { len: MAX_MESSAGE });
        }
        Ok(self.0.handle(CLIENT, request, reply))
    }
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
    m.assign(CLIENT, &[all]).unwrap();
    let obj = {
        let mut c = Client::connect(Direct(&mut m)).unwrap();
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
    Client::connect(Direct(&mut m))
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
        let mut c = Client::connect(Direct(&mut m)).unwrap();
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

/// A backend that accepts everything and does nothing: only the manager is counted.
struct Null;

impl IommuBackend for Null {
    type Error = &'static str;
    fn create_domain(&mut self) -> Result<DomainId, Self::Error> {
        Ok(DomainId(1))
    }
    fn destroy_domain(&mut self, _: DomainId) -> Result<(), Self::Error> {
        Ok(())
    }
    fn attach(&mut self, _: StreamId, _: DomainId) -> Result<(), Self::Error> {
        Ok(())
    }
    fn detach(&mut self, _: StreamId) -> Result<(), Self::Error> {
        Ok(())
    }
    fn map(
        &mut self,
        _: DomainId,
        _: Iova,
        _: PhysAddr,
        _: u64,
        _: Access,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    fn unmap(&mut self, _: DomainId, _: Iova, len: u64) -> Result<u64, Self::Error> {
        Ok(len)
    }
    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, Self::Error> {
        let mut n = 0;
        for i in 0..EVENTS {
            // A refused 64-byte DMA is 16 records on QEMU: bursts of 16, two streams in turn.
            sink(FAULTS[((i / 16) % 2) as usize]);
            n += 1;
        }
        Ok(FaultDrain {
            delivered: n,
            lost_at_least: 0,
        })
    }
}

const OPS: u64 = 100;
/// Existing mappings sit at even pages from this page on; the measured ones go below it.
const EXISTING_AT: u64 = 1 << 20;

fn with_existing(n: u64) -> (Manager<Null>, ObjectId) {
    let (mut m, obj) = manager(Null);
    {
        let mut c = Client::connect(Direct(&mut m)).unwrap();
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
        let mut c = Client::connect(Direct(&mut m)).unwrap();
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
        let mut c = Client::connect(Direct(&mut m)).unwrap();
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
        let mut c = Client::connect(Direct(&mut m)).unwrap();
        for _ in 0..OPS {
            black_box(c.object_status(obj)).unwrap();
        }
    }
    m
}

// Fault path: 10,000 events, decoded from SMMUv3 records, into the ledgers, logged at `info`.

const EVENTS: u64 = 10_000;

/// The records of two streams (one attached to the object, one unclaimed).
const FAULTS: [Fault; 2] = [fault(EDU, 0x20_0000), fault(StreamId(0x10), 0x30_0000)];

const fn fault(sid: StreamId, addr: u64) -> Fault {
    Fault {
        sid,
        addr: Iova(addr),
        dir: Some(iommu_core::Direction::Write),
        reason: iommu_core::FaultReason::Translation,
        code: 0x10,
    }
}

/// A logger at `info` that formats every line into a sink (the daemon's console, minus the
/// UART).
struct Sink;

impl log::Log for Sink {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        let mut s = Discard(0);
        let _ = write!(s, "[{}] {}", r.level(), r.args());
        black_box(s.0);
    }
    fn flush(&self) {}
}

struct Discard(usize);

impl core::fmt::Write for Discard {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

static SINK: Sink = Sink;

fn fault_setup() -> Manager<Null> {
    let _ = log::set_logger(&SINK);
    log::set_max_level(log::LevelFilter::Info);
    manager(Null).0
}

/// 10,000 raw SMMUv3 F_TRANSLATION records (IHI 0070 §7.3.12), as the event queue holds them.
fn raw_records() -> Vec<[u64; 4]> {
    (0..EVENTS)
        .map(|i| {
            let sid = if (i / 16) % 2 == 0 { 8u64 } else { 0x10 };
            [
                sid << 32 | 0x10,
                0x0000_0280_0000_0000,
                0x20_0000 + 4 * i,
                0x20_0000,
            ]
        })
        .collect()
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
