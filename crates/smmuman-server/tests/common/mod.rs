//! What the manager's measurements share (the heap test, the benches, the examples): a backend
//! that does nothing, so only the manager is counted; a transport straight into
//! `Manager::handle`; a counting allocator; a logger at `info` that formats into a sink.
//! Included by path (`#[path = ...]`) from each of them.

#![allow(dead_code, reason = "each user takes a subset")]

use core::time::Duration;
use iommu_core::{
    Access, Bdf, DomainId, Fault, FaultDrain, IommuBackend, Iova, PhysAddr, StreamId,
};
use smmuman_api::IovaRange;
use smmuman_api::{ClientId, DeviceSel, Transport, TransportError, MAX_MESSAGE};
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// An IOMMU that accepts everything and stores nothing; its event queue always holds
/// `events`, raw SMMUv3 records (IHI 0070 §7.3) that every drain decodes as the SMMUv3 backend
/// does.
#[derive(Default)]
pub struct Null {
    pub events: Vec<[u64; 4]>,
}

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
        for raw in &self.events {
            sink(smmuv3::backend::fault_from_event(&smmuv3::Event::decode(
                *raw,
            )));
        }
        Ok(FaultDrain {
            delivered: self.events.len() as u64,
            lost_at_least: 0,
        })
    }
}

/// In-process transport: the manager writes its reply straight into the client's buffer.
pub struct Direct<'a, B: IommuBackend>(pub &'a mut Manager<B>, pub ClientId);

impl<B: IommuBackend> Transport for Direct<'_, B> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        if reply.len() < MAX_MESSAGE {
            return Err(TransportError::ReplyTooLong { len: MAX_MESSAGE });
        }
        Ok(self.0.handle(self.1, request, reply))
    }
}

/// Bytes live on the heap (when [`Counting`] is the global allocator).
pub static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live bytes in [`LIVE`].
pub struct Counting;

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A logger at `info` that formats every line it gets into a sink (the daemon's console, minus
/// the UART): what "the default log level" costs.
pub struct Sink;

impl log::Log for Sink {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        use core::fmt::Write as _;
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

/// `n` raw F_TRANSLATION records (IHI 0070 §7.3.12), bursts of 16 (a refused 64-byte DMA on
/// QEMU) from StreamIDs 0x8 and 0x10 in turn.
pub fn translation_faults(n: u64) -> Vec<[u64; 4]> {
    (0..n)
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

/// Installs [`Sink`] at `info`.
pub fn log_at_info() {
    let _ = log::set_logger(&SINK);
    log::set_max_level(log::LevelFilter::Info);
}

/// One device, 00:01.0 with StreamID 0x8.
static EDU: [DeviceEntry; 1] = [DeviceEntry {
    id: DeviceId::Pci(Bdf {
        bus: 0,
        dev: 1,
        func: 0,
    }),
    sid: StreamId(8),
    raw_sid_allowed: false,
}];

/// A 48-bit I/O space.
static IOVA_48: [IovaRange; 1] = [IovaRange {
    first: Iova(0),
    last: Iova((1 << 48) - 1),
}];

fn zero() -> Duration {
    Duration::ZERO
}

/// A manager of [`EDU`] over `backend` with these mapping limits (per object, in all), and
/// clients 1 and 2 assigned every host address below 2^48, the edu to client 1.
pub fn manager<B: IommuBackend>(backend: B, per_object: usize, total: usize) -> Manager<B> {
    let config = ManagerConfig {
        devices: &EDU,
        reserved: &[],
        iova_ranges: &IOVA_48,
        page_sizes: 1 << 12,
        fault_log_depth: 32,
        max_mappings_per_object: per_object,
        max_mappings: total,
        clock: zero,
    };
    let mut m = Manager::new(backend, &config).unwrap_or_else(|_| panic!("config"));
    let everything = Grant {
        range: PhysRange {
            start: PhysAddr(0),
            len: 1 << 48,
        },
        kind: GrantKind::Ram,
    };
    // The edu is client 1's; client 2 has memory only.
    let edu = DeviceSel::pci(Bdf {
        bus: 0,
        dev: 1,
        func: 0,
    });
    m.assign(ClientId(1), &[everything], &[edu]).unwrap();
    m.assign(ClientId(2), &[everything], &[]).unwrap();
    m
}
