//! Wall-clock rate of the fault path: decoded SMMUv3 event records charged to their ledgers at
//! the default log level (a logger at `info` that formats every line it is given into a sink),
//! the same work as the `fault_path_*` benchmarks, timed. A benchmark, not a test: run it on an
//! otherwise idle machine with
//!
//! ```text
//! cargo run --release -p smmuman-server --example fault_rate
//! ```

use core::fmt::Write as _;
use std::time::{Duration, Instant};

use iommu_core::{Bdf, DomainId, Fault, FaultDrain, IommuBackend, Iova, PhysAddr, StreamId};
use smmuman_api::IovaRange;
use smmuman_server::{DeviceEntry, DeviceId, Manager, ManagerConfig};

/// Events per drain (a full event queue of the daemon's size is 2,048).
const BATCH: usize = 2048;
/// Drains timed.
const ROUNDS: usize = 5_000;

/// Raw F_TRANSLATION records (IHI 0070 §7.3.12), bursts of 16 from two streams in turn.
fn records() -> Vec<[u64; 4]> {
    (0..BATCH as u64)
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

/// An IOMMU whose event queue always holds [`BATCH`] records, decoded as the SMMUv3 backend
/// decodes them.
struct Queue(Vec<[u64; 4]>);

impl IommuBackend for Queue {
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
        _: iommu_core::Access,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    fn unmap(&mut self, _: DomainId, _: Iova, len: u64) -> Result<u64, Self::Error> {
        Ok(len)
    }
    fn drain_faults(&mut self, sink: &mut dyn FnMut(Fault)) -> Result<FaultDrain, Self::Error> {
        for r in &self.0 {
            sink(smmuv3::backend::fault_from_event(&smmuv3::Event::decode(
                *r,
            )));
        }
        Ok(FaultDrain {
            delivered: self.0.len() as u64,
            lost_at_least: 0,
        })
    }
}

struct Sink;

impl log::Log for Sink {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        let mut s = Discard(0);
        let _ = write!(s, "[{}] {}", r.level(), r.args());
        std::hint::black_box(s.0);
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

fn now() -> Duration {
    Duration::ZERO
}

fn main() {
    let _ = log::set_logger(&SINK);
    log::set_max_level(log::LevelFilter::Info);
    let devices = [DeviceEntry {
        id: DeviceId::Pci(Bdf::new(0, 1, 0).unwrap()),
        sid: StreamId(8),
        raw_sid_allowed: false,
    }];
    let config = ManagerConfig {
        devices: &devices,
        reserved: &[],
        iova_ranges: &[IovaRange {
            first: Iova(0),
            last: Iova((1 << 39) - 1),
        }],
        page_sizes: 1 << 12,
        fault_log_depth: 32,
        max_mappings_per_object: 1024,
        max_mappings: 1024,
        clock: now,
    };
    let mut m = Manager::new(Queue(records()), &config).unwrap();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(m.on_iommu_event(Duration::ZERO)).unwrap();
    }
    let took = start.elapsed();
    let events = (ROUNDS * BATCH) as f64;
    println!(
        "{} events in {:.3} s: {:.1} M events per second ({:.0} ns per event), decoded, \
         charged to their ledgers and logged at info (one line per burst of 16)",
        ROUNDS * BATCH,
        took.as_secs_f64(),
        events / took.as_secs_f64() / 1e6,
        took.as_nanos() as f64 / events
    );
}
