//! The manager's heap per mapping stays within `MAPPING_BYTES`, the figure the daemon sizes its
//! heap (and so its mapping quota) by, and unmapping everything gives every byte back.
//!
//! A counting global allocator measures the live bytes; the IOMMU backend here stores nothing,
//! so every byte counted is the manager's. It runs without the test harness (`harness =
//! false`): the harness's own threads allocate while a test runs, and would be counted.

use core::time::Duration;
use iommu_core::{
    Access, Bdf, DomainId, Fault, FaultDrain, IommuBackend, Iova, PhysAddr, StreamId,
};
use smmuman_api::{
    Client, ClientId, DmaWindow, IovaRange, IovaSpan, MapFlags, ObjectFlags, Transport,
    TransportError, MAX_MESSAGE,
};
use smmuman_server::config::MAPPING_BYTES;
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// An IOMMU that accepts everything and stores nothing.
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
    fn drain_faults(&mut self, _: &mut dyn FnMut(Fault)) -> Result<FaultDrain, Self::Error> {
        Ok(FaultDrain::default())
    }
}

struct Direct<'a>(&'a mut Manager<Null>, ClientId);

impl Transport for Direct<'_> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        let mut out = [0u8; MAX_MESSAGE];
        let n = self.0.handle(self.1, request, &mut out);
        reply[..n].copy_from_slice(&out[..n]);
        Ok(n)
    }
}

fn now() -> Duration {
    Duration::ZERO
}

const N: u64 = 20_000;

fn main() {
    a_mapping_costs_at_most_mapping_bytes_of_heap_and_unmapping_gives_it_all_back();
}

fn a_mapping_costs_at_most_mapping_bytes_of_heap_and_unmapping_gives_it_all_back() {
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
            last: Iova((1 << 48) - 1),
        }],
        page_sizes: 1 << 12,
        fault_log_depth: 32,
        max_mappings_per_object: 1 << 20,
        max_mappings: 1 << 20,
        clock: now,
    };
    let mut m = Manager::new(Null, &config).unwrap();
    let everything = Grant {
        range: PhysRange {
            start: PhysAddr(0),
            len: 1 << 48,
        },
        kind: GrantKind::Ram,
    };
    for c in [ClientId(1), ClientId(2)] {
        m.assign(c, &[everything]).unwrap();
    }
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
