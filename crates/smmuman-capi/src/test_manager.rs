//! Test-only (feature `test-manager`, host): an in-process manager over the model IOMMU, so a
//! C program can drive the library against a real `smmuman_server::Manager` on the developer's
//! machine and check what a DMA would reach. Never part of the product library.
//!
//! The board: `00:01.0` (an edu, StreamID 0x8) and `00:02.0` (a NIC, StreamID 0x10); the
//! manager's own memory at 0x4000_0000 (2 MiB); a 40-bit I/O space; 4 KiB pages. Clients 1 to
//! [`SMMU_TEST_CLIENTS`] each get a transport; the test assigns each its RAM and device as the
//! host would.

use crate::transport::{smmu_transport, SMMU_TRANSPORT_OK};
use core::ffi::c_void;
use core::time::Duration;
use iommu_core::{Bdf, Direction, Fault, FaultReason, Iova, PhysAddr, StreamId};
use smmuman_api::{ClientId, DeviceSel, IovaRange, MAX_MESSAGE};
use smmuman_server::fake::FakeIommu;
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};

/// Clients the test manager has transports for (ids 1 to this).
pub const SMMU_TEST_CLIENTS: u32 = 4;

/// The in-process manager (opaque to C).
#[allow(non_camel_case_types)]
pub struct smmu_test_manager {
    manager: Manager<FakeIommu>,
    ports: [Port; SMMU_TEST_CLIENTS as usize],
}

/// One client's end: what a transport's `ctx` points at.
struct Port {
    manager: *mut smmu_test_manager,
    client: ClientId,
}

const fn pci(dev: u8) -> DeviceId {
    DeviceId::Pci(Bdf {
        bus: 0,
        dev,
        func: 0,
    })
}

static BOARD: [DeviceEntry; 2] = [
    DeviceEntry {
        id: pci(1),
        sid: StreamId(0x8),
        raw_sid_allowed: false,
    },
    DeviceEntry {
        id: pci(2),
        sid: StreamId(0x10),
        raw_sid_allowed: false,
    },
];

static RESERVED: [PhysRange; 1] = [PhysRange {
    start: PhysAddr(0x4000_0000),
    len: 0x20_0000,
}];

static IOVA: [IovaRange; 1] = [IovaRange {
    first: Iova(0),
    last: Iova((1 << 40) - 1),
}];

fn clock() -> Duration {
    Duration::from_micros(7)
}

/// A new manager (free it with `smmu_test_manager_free`); NULL if the configuration is refused.
#[no_mangle]
pub extern "C" fn smmu_test_manager_new() -> *mut smmu_test_manager {
    let config = ManagerConfig {
        devices: &BOARD,
        reserved: &RESERVED,
        iova_ranges: &IOVA,
        page_sizes: 1 << 12,
        fault_log_depth: 32,
        max_mappings_per_object: 1024,
        max_mappings: 4096,
        clock,
    };
    let Ok(manager) = Manager::new(FakeIommu::new(), &config) else {
        return core::ptr::null_mut();
    };
    let port = |i: u32| Port {
        manager: core::ptr::null_mut(),
        client: ClientId(i),
    };
    let raw = Box::into_raw(Box::new(smmu_test_manager {
        manager,
        ports: [port(1), port(2), port(3), port(4)],
    }));
    // SAFETY: `raw` is the live allocation just made; nothing else refers to it yet.
    for p in unsafe { &mut (*raw).ports } {
        p.manager = raw;
    }
    raw
}

/// Frees a manager from `smmu_test_manager_new` (NULL: nothing). Its transports are dead
/// after this.
///
/// # Safety
/// `m` is NULL or from `smmu_test_manager_new`, not freed yet, and no call on a transport of it
/// is running.
#[no_mangle]
pub unsafe extern "C" fn smmu_test_manager_free(m: *mut smmu_test_manager) {
    if !m.is_null() {
        // SAFETY: from `Box::into_raw` in `smmu_test_manager_new`, freed once (the contract).
        drop(unsafe { Box::from_raw(m) });
    }
}

unsafe extern "C" fn port_call(
    ctx: *mut c_void,
    request: *const u8,
    request_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    // SAFETY: `ctx` is a `Port` of a live manager (the transport's contract), and the library
    // passes request/reply buffers valid for their lengths and a writable `reply_len`.
    unsafe {
        let port = &*ctx.cast::<Port>();
        let manager = &mut (*port.manager).manager;
        let request = core::slice::from_raw_parts(request, request_len);
        let mut buf = [0u8; MAX_MESSAGE];
        let n = manager.handle(port.client, request, &mut buf);
        let n = n.min(reply_cap);
        core::ptr::copy_nonoverlapping(buf.as_ptr(), reply, n);
        *reply_len = n;
    }
    SMMU_TRANSPORT_OK
}

/// Writes the transport of client `client` (1 to `SMMU_TEST_CLIENTS`) to `*out`; returns 0 on
/// success, -1 for a bad argument.
///
/// # Safety
/// `m` is NULL or a live manager; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_test_manager_transport(
    m: *mut smmu_test_manager,
    client: u32,
    out: *mut smmu_transport,
) -> i32 {
    // SAFETY: NULL or live / writable (the contract).
    let (Some(mgr), Some(out)) = (unsafe { m.as_mut() }, unsafe { out.as_mut() }) else {
        return -1;
    };
    let Some(port) = client
        .checked_sub(1)
        .and_then(|i| mgr.ports.get_mut(i as usize))
    else {
        return -1;
    };
    *out = smmu_transport {
        ctx: (port as *mut Port).cast(),
        call: Some(port_call),
    };
    0
}

/// The host's assignment of client `client`: host RAM `[ram, ram + len)` and the PCI function
/// `00:dev.0` (`dev` 0: none). Returns 0, or -1 when the manager refuses it.
///
/// # Safety
/// `m` is NULL or a live manager.
#[no_mangle]
pub unsafe extern "C" fn smmu_test_manager_assign(
    m: *mut smmu_test_manager,
    client: u32,
    ram: u64,
    len: u64,
    dev: u8,
) -> i32 {
    // SAFETY: NULL or live (the contract).
    let Some(mgr) = (unsafe { m.as_mut() }) else {
        return -1;
    };
    let grant = Grant {
        range: PhysRange {
            start: PhysAddr(ram),
            len,
        },
        kind: GrantKind::Ram,
    };
    let sel = Bdf::new(0, dev, 0).map(DeviceSel::pci);
    let devices: &[DeviceSel] = match (&sel, dev) {
        (_, 0) => &[],
        (Ok(s), _) => core::slice::from_ref(s),
        (Err(_), _) => return -1,
    };
    match mgr.manager.assign(ClientId(client), &[grant], devices) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Makes the model IOMMU record a refused DMA by StreamID `sid` at `iova` (`write` 1: a write,
/// 0: a read), a translation fault, as the hardware would; the next read drains it.
///
/// # Safety
/// `m` is NULL or a live manager.
#[no_mangle]
pub unsafe extern "C" fn smmu_test_manager_inject_fault(
    m: *mut smmu_test_manager,
    sid: u32,
    iova: u64,
    write: u8,
) {
    // SAFETY: NULL or live (the contract).
    if let Some(mgr) = unsafe { m.as_mut() } {
        mgr.manager.backend_mut().inject_fault(Fault {
            sid: StreamId(sid),
            addr: Iova(iova),
            dir: Some(if write != 0 {
                Direction::Write
            } else {
                Direction::Read
            }),
            reason: FaultReason::Translation,
            code: 0x10,
        });
    }
}

/// Where a DMA by `sid` at `iova` lands: 1 and the host address in `*pa`, or 0 when the IOMMU
/// refuses it.
///
/// # Safety
/// `m` is NULL or a live manager; `pa` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_test_manager_translate(
    m: *mut smmu_test_manager,
    sid: u32,
    iova: u64,
    pa: *mut u64,
) -> i32 {
    // SAFETY: NULL or live / writable (the contract).
    let (Some(mgr), out) = (unsafe { m.as_ref() }, unsafe { pa.as_mut() }) else {
        return 0;
    };
    match mgr.manager.backend().translate(StreamId(sid), Iova(iova)) {
        Some((hpa, _)) => {
            if let Some(out) = out {
                *out = hpa.0;
            }
            1
        }
        None => 0,
    }
}
