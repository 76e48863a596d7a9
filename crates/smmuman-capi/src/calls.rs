//! The entry points: connect, objects, devices, mappings, faults, errors.
//!
//! Each one checks its arguments with the client library's own constructors
//! (`DmaWindow::new`, `IovaSpan::new`, `PciMatch::new`, `is_window_access`, the flag types,
//! `FaultBatch::new`) before anything is sent, so C cannot send what a Rust client could not
//! build; then it makes the `Client` call. Pointer rules, for every function: a pointer
//! argument must be NULL or valid for the access the function's documentation states, for the
//! duration of the call only (the library keeps no pointer the caller gave it, except the
//! transport's `ctx`); a required pointer that is NULL is refused with `SMMU_ERR_NULL`.

use crate::clients::{self, call, smmu_client_t};
use crate::status::{self, smmu_status, ArgError, CText, Failure, Problem, SMMU_OK};
use crate::transport::{smmu_transport, CTransport};
use crate::types::*;
use core::ffi::{c_char, CStr};
use core::fmt::Write as _;
use iommu_core::{Access, Iova, PhysAddr};
use smmuman_api::{
    DeviceSel, DmaWindow, FaultBatch, IovaSpan, MapBatch, MapEntry, MapFlags, ObjectFlags,
    ObjectId, PciMatch, UnmapBatch,
};

/// The status of a result.
fn done(r: Result<(), smmu_status>) -> smmu_status {
    r.err().unwrap_or(SMMU_OK)
}

fn null(arg: &'static str) -> Failure {
    Failure::Arg(ArgError::new(arg, Problem::Null))
}

/// `n` elements at `ptr`, after the count is checked against `1..=max`.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `n` elements (the caller's contract).
unsafe fn elements<'a, T>(
    ptr: *const T,
    n: usize,
    max: usize,
    arg: &'static str,
) -> Result<&'a [T], Failure> {
    if n == 0 {
        return Err(ArgError::new(arg, Problem::Empty).into());
    }
    if n > max {
        return Err(ArgError::new(arg, Problem::TooMany { got: n, max }).into());
    }
    if ptr.is_null() {
        return Err(null(arg));
    }
    // SAFETY: non-NULL, and valid for `n` reads by the caller's contract; `n` ≤ `max` keeps
    // the size far below isize::MAX.
    Ok(unsafe { core::slice::from_raw_parts(ptr, n) })
}

/// Connects to the manager over `transport` (copied; its `ctx` and `call` must stay valid until
/// `smmu_disconnect`) and writes the new client's handle to `*client`.
///
/// Returns `SMMU_ERR_NO_MANAGER` when nothing answers, `SMMU_ERR_PROTOCOL` when the manager
/// speaks another protocol version, `SMMU_ERR_NO_SLOT` when `SMMU_MAX_CLIENTS` are connected.
///
/// # Safety
/// `transport` is NULL or points to a readable `smmu_transport`; `client` is NULL or valid for
/// a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_connect(
    transport: *const smmu_transport,
    client: *mut smmu_client_t,
) -> smmu_status {
    // SAFETY: NULL or readable, by the contract above.
    let Some(t) = (unsafe { transport.as_ref() }) else {
        return status::SMMU_ERR_NULL;
    };
    let Some(call) = t.call else {
        return status::SMMU_ERR_NULL;
    };
    // SAFETY: NULL or writable, by the contract above.
    let Some(out) = (unsafe { client.as_mut() }) else {
        return status::SMMU_ERR_NULL;
    };
    match clients::connect(CTransport::new(t.ctx, call)) {
        Ok(h) => {
            *out = h;
            SMMU_OK
        }
        Err(s) => s,
    }
}

/// Disconnects `client`: its handle is refused from now on. Objects it still holds are the
/// manager's to release when the transport tells it the client went away; destroy them first.
#[no_mangle]
pub extern "C" fn smmu_disconnect(client: smmu_client_t) -> smmu_status {
    clients::disconnect(client)
}

/// Creates a VM object (an empty IOMMU domain: no device, no mapping) with `SMMU_OBJ_*` `flags`
/// and writes its id to `*object`.
///
/// # Safety
/// `object` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_obj_create(
    client: smmu_client_t,
    flags: u32,
    object: *mut smmu_object_t,
) -> smmu_status {
    // SAFETY: NULL or writable, by the contract above.
    let out = unsafe { object.as_mut() };
    done(clients::with(client, |c| {
        let out = out.ok_or(null("object"))?;
        let flags =
            ObjectFlags::from_bits(flags).ok_or(ArgError::new("flags", Problem::Flags(flags)))?;
        *out = c.create_object(flags).map_err(call)?.object.0;
        Ok(())
    }))
}

/// Destroys `object`: its devices go back to deny, its mappings and memory claims are dropped;
/// every invalidation is complete when it returns.
#[no_mangle]
pub extern "C" fn smmu_obj_destroy(client: smmu_client_t, object: smmu_object_t) -> smmu_status {
    done(clients::with(client, |c| {
        c.destroy_object(ObjectId(object)).map_err(call)?;
        Ok(())
    }))
}

fn pci(bus: u32, dev: u32, func: u32) -> Result<DeviceSel, Failure> {
    let field = |v: u32, arg: &'static str, wide: Problem| -> Result<Option<u8>, Failure> {
        if v == SMMU_PCI_ANY {
            return Ok(None);
        }
        u8::try_from(v)
            .map(Some)
            .map_err(|_| ArgError::new(arg, wide).into())
    };
    let b = field(bus, "bus", Problem::Bus(bus))?;
    let d = field(dev, "dev", Problem::Wide(dev))?;
    let f = field(func, "func", Problem::Wide(func))?;
    PciMatch::new(b, d, f).map(DeviceSel::Pci).map_err(|e| {
        let arg = match e {
            iommu_core::ids::BdfError::Device(_) => "dev",
            iommu_core::ids::BdfError::Function(_) => "func",
        };
        ArgError::new(arg, Problem::Bdf(e)).into()
    })
}

/// Attaches or detaches `sel` and writes what changed to `out` (optional).
fn devices(
    client: smmu_client_t,
    object: smmu_object_t,
    sel: impl FnOnce() -> Result<DeviceSel, Failure>,
    attach: bool,
    out: Option<&mut smmu_devices>,
) -> smmu_status {
    done(clients::with(client, |c| {
        let sel = sel()?;
        let object = ObjectId(object);
        let changed = if attach {
            let r = c.attach(object, sel).map_err(call)?;
            smmu_devices {
                devices: r.devices,
                groups: r.groups,
            }
        } else {
            let r = c.detach(object, sel).map_err(call)?;
            smmu_devices {
                devices: r.devices,
                groups: r.groups,
            }
        };
        if let Some(out) = out {
            *out = changed;
        }
        Ok(())
    }))
}

/// Attaches PCI function(s) `bus:dev.func` (each may be `SMMU_PCI_ANY`) to `object`: from then
/// on their DMA reaches only the object's mappings. All or nothing; writes what changed to
/// `*changed` when it is not NULL.
///
/// # Safety
/// `changed` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_device_add_pci(
    client: smmu_client_t,
    object: smmu_object_t,
    bus: u32,
    dev: u32,
    func: u32,
    changed: *mut smmu_devices,
) -> smmu_status {
    // SAFETY: NULL or writable, by the contract above.
    let out = unsafe { changed.as_mut() };
    devices(client, object, || pci(bus, dev, func), true, out)
}

/// Attaches the platform (MMIO) device whose registers start at host-physical `base` to
/// `object`; as `smmu_device_add_pci`.
///
/// # Safety
/// `changed` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_device_add_mmio(
    client: smmu_client_t,
    object: smmu_object_t,
    base: u64,
    changed: *mut smmu_devices,
) -> smmu_status {
    // SAFETY: NULL or writable, by the contract above.
    let out = unsafe { changed.as_mut() };
    devices(
        client,
        object,
        || Ok(DeviceSel::Mmio(PhysAddr(base))),
        true,
        out,
    )
}

/// Puts PCI function(s) of `object` back to deny (invalidation complete on return).
///
/// # Safety
/// `changed` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_device_remove_pci(
    client: smmu_client_t,
    object: smmu_object_t,
    bus: u32,
    dev: u32,
    func: u32,
    changed: *mut smmu_devices,
) -> smmu_status {
    // SAFETY: NULL or writable, by the contract above.
    let out = unsafe { changed.as_mut() };
    devices(client, object, || pci(bus, dev, func), false, out)
}

/// Puts the platform device at `base` of `object` back to deny.
///
/// # Safety
/// `changed` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_device_remove_mmio(
    client: smmu_client_t,
    object: smmu_object_t,
    base: u64,
    changed: *mut smmu_devices,
) -> smmu_status {
    // SAFETY: NULL or writable, by the contract above.
    let out = unsafe { changed.as_mut() };
    devices(
        client,
        object,
        || Ok(DeviceSel::Mmio(PhysAddr(base))),
        false,
        out,
    )
}

/// One C window as the client library's [`MapEntry`].
fn map_entry(e: &smmu_map_entry, i: usize) -> Result<MapEntry, Failure> {
    let window = DmaWindow::new(Iova(e.iova), PhysAddr(e.phys), e.len)
        .map_err(|r| ArgError::new("entries", Problem::Range(r)).at(i))?;
    let access = u8::try_from(e.access)
        .ok()
        .and_then(Access::from_bits)
        .filter(|a| smmuman_api::is_window_access(*a))
        .ok_or(ArgError::new("entries", Problem::Access(e.access)).at(i))?;
    let flags = MapFlags::from_bits(e.flags)
        .ok_or(ArgError::new("entries", Problem::Flags(e.flags)).at(i))?;
    Ok(MapEntry {
        window,
        access,
        flags,
    })
}

/// Maps `num` windows (1 to `SMMU_MAP_BATCH`) into `object` for every device attached to it,
/// all or nothing, in one message. Each window's host memory must be in what the host assigned
/// the caller's VM.
///
/// # Safety
/// `entries` is NULL or valid for reads of `num` elements.
#[no_mangle]
pub unsafe extern "C" fn smmu_mapping_add(
    client: smmu_client_t,
    object: smmu_object_t,
    entries: *const smmu_map_entry,
    num: usize,
) -> smmu_status {
    done(clients::with(client, |c| {
        // SAFETY: NULL or readable for `num` elements, by the contract above.
        let entries = unsafe { elements(entries, num, SMMU_MAP_BATCH, "entries") }?;
        let mut batch = MapBatch::default();
        for (i, e) in entries.iter().enumerate() {
            if !batch.push(map_entry(e, i)?) {
                let max = SMMU_MAP_BATCH;
                return Err(ArgError::new("entries", Problem::TooMany { got: num, max }).into());
            }
        }
        c.map_batch(ObjectId(object), batch).map_err(call)?;
        Ok(())
    }))
}

/// Removes every mapping inside each of `num` ranges (1 to `SMMU_UNMAP_BATCH`; whole mappings
/// only) from `object`, all or nothing, with one invalidation complete on return; writes the
/// bytes that were mapped there to `*bytes` when it is not NULL.
///
/// # Safety
/// `ranges` is NULL or valid for reads of `num` elements; `bytes` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_mapping_remove(
    client: smmu_client_t,
    object: smmu_object_t,
    ranges: *const smmu_range,
    num: usize,
    bytes: *mut u64,
) -> smmu_status {
    // SAFETY: NULL or writable, by the contract above.
    let out = unsafe { bytes.as_mut() };
    done(clients::with(client, |c| {
        // SAFETY: NULL or readable for `num` elements, by the contract above.
        let ranges = unsafe { elements(ranges, num, SMMU_UNMAP_BATCH, "ranges") }?;
        let mut spans = UnmapBatch::default();
        for (i, r) in ranges.iter().enumerate() {
            let span = IovaSpan::new(Iova(r.iova), r.len)
                .map_err(|e| ArgError::new("ranges", Problem::Range(e)).at(i))?;
            if !spans.push(span) {
                let max = SMMU_UNMAP_BATCH;
                return Err(ArgError::new("ranges", Problem::TooMany { got: num, max }).into());
            }
        }
        let reply = c.unmap_batch(ObjectId(object), spans).map_err(call)?;
        if let Some(out) = out {
            *out = reply.bytes;
        }
        Ok(())
    }))
}

/// Reads up to `cap` of `object`'s fault records (at most `SMMU_FAULTS_PER_READ` per call),
/// oldest first, into `faults`, and their number into `*got`; every fault the IOMMU raised
/// before the call is returned, still waiting (`info->remaining`) or counted as dropped. Writes
/// `*info` when it is not NULL.
///
/// # Safety
/// `faults` is NULL or valid for writes of `cap` elements; `got` is NULL or valid for a write;
/// `info` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_fault_read(
    client: smmu_client_t,
    object: smmu_object_t,
    faults: *mut smmu_fault,
    cap: usize,
    got: *mut usize,
    info: *mut smmu_fault_info,
) -> smmu_status {
    // SAFETY: NULL or writable, by the contract above.
    let got = unsafe { got.as_mut() };
    // SAFETY: NULL or writable, by the contract above.
    let info = unsafe { info.as_mut() };
    done(clients::with(client, |c| {
        let got = got.ok_or(null("got"))?;
        let n = cap.min(SMMU_FAULTS_PER_READ);
        if n == 0 {
            return Err(ArgError::new("cap", Problem::Empty).into());
        }
        if faults.is_null() {
            return Err(null("faults"));
        }
        // SAFETY: non-NULL and writable for `cap` ≥ `n` elements by the contract above.
        let out = unsafe { core::slice::from_raw_parts_mut(faults, n) };
        let max = u8::try_from(n)
            .ok()
            .and_then(FaultBatch::new)
            .ok_or(ArgError::new("cap", Problem::Empty))?;
        let page = c.read_faults(ObjectId(object), max).map_err(call)?.page;
        let mut count = 0usize;
        for (slot, record) in out.iter_mut().zip(page.records()) {
            *slot = smmu_fault::from(record);
            count = count.saturating_add(1);
        }
        *got = count;
        if let Some(info) = info {
            *info = smmu_fault_info {
                remaining: page.remaining(),
                dropped: page.dropped(),
                possibly_lost: page.possibly_lost(),
            };
        }
        Ok(())
    }))
}

/// Writes the message of `client`'s last call, when it failed (the argument it refused and
/// why, or the manager's refusal with the value it names; `"no error"` when it succeeded),
/// into `buf` (`cap` bytes, always NUL-terminated when `cap` > 0, truncated if need be) and
/// returns its full length, as `snprintf` does. A bad handle gets
/// `smmu_strerror(SMMU_ERR_BAD_CLIENT)`. Read it before the next call on the same client.
///
/// # Safety
/// `buf` is NULL (then `cap` is ignored) or valid for writes of `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn smmu_last_error(
    client: smmu_client_t,
    buf: *mut c_char,
    cap: usize,
) -> usize {
    let buf: &mut [u8] = if buf.is_null() {
        &mut []
    } else {
        // SAFETY: non-NULL and writable for `cap` bytes by the contract above.
        unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) }
    };
    let mut text = CText::new(buf);
    let r = clients::with_entry(client, |e| Ok(e.last));
    let _ = match r {
        Ok(Some(failure)) => write!(text, "{failure}"),
        Ok(None) => text.write_str("no error"),
        Err(s) => text.write_str(status::text(s).to_str().unwrap_or("")),
    };
    text.finish()
}

/// The fixed text of a status code: a NUL-terminated string with static lifetime (never free
/// it). Unknown codes get `"unknown status code"`.
#[no_mangle]
pub extern "C" fn smmu_strerror(status: smmu_status) -> *const c_char {
    let text: &'static CStr = status::text(status);
    text.as_ptr()
}
