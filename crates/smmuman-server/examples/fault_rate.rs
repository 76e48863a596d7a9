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
use std::time::Instant;

/// Events per drain (a full event queue of the daemon's size is 2,048).
const BATCH: u64 = 2048;
/// Drains timed.
const ROUNDS: u64 = 5_000;

fn main() {
    log_at_info();
    let backend = Null {
        events: translation_faults(BATCH),
    };
    let mut m = common::manager(backend, 1024, 1024);
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
