//! Wall-clock rate of the fault path: decoded SMMUv3 event records charged to their ledgers at
//! the default log level (a logger at `info` that formats every line it is given into a sink),
//! the same work as the `fault_path` benchmark, timed. A benchmark, not a test: run it on an
//! otherwise idle machine with
//!
//! ```text
//! cargo run --release -p smmuman-server --example fault_rate
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::{log_at_info, translation_faults, Null};
use core::time::Duration;
use iommu_core::{Bdf, Iova, StreamId};
use smmuman_api::IovaRange;
use smmuman_server::{DeviceEntry, DeviceId, Manager, ManagerConfig};
use std::time::Instant;

/// Events per drain (a full event queue of the daemon's size is 2,048).
const BATCH: u64 = 2048;
/// Drains timed.
const ROUNDS: u64 = 5_000;

fn now() -> Duration {
    Duration::ZERO
}

fn main() {
    log_at_info();
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
    let backend = Null {
        events: translation_faults(BATCH),
    };
    let mut m = Manager::new(backend, &config).unwrap();
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
