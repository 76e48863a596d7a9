//! The test image's C VMM (scenario `vmm-c`): `c/c_vmm.c`, compiled for the bare-metal target by
//! `build.rs`, runs in a client task like the Rust VMMs and reaches the manager only through
//! libsmmu (`smmuman-capi`) over its mailbox. This side hands it its transport (the mailbox,
//! as an `smmu_transport`) and what the host does for it: drive its `edu`, read and fill its
//! VM's RAM, print its checks as `CHECK` records.

use crate::vmm::{Ctx, Plan, Verdict, Vmm, GUEST_RAM_BASE, WINDOW};
use core::ffi::{c_char, c_void, CStr};
use iommu_core::{Iova, PhysAddr};
use smmuman_api::Transport;
use smmuman_capi::{smmu_transport, SMMU_TRANSPORT_DISCONNECTED, SMMU_TRANSPORT_NO_MANAGER};
use smmuman_daemon::mailbox::{Mailbox, MailboxTransport};

/// What `c_vmm.h` declares as `struct c_vmm_env`.
#[repr(C)]
struct Env {
    ctx: *mut c_void,
    check: extern "C" fn(*mut c_void, *const c_char, i32, u64) -> i32,
    say: extern "C" fn(*mut c_void, *const c_char, *const c_char),
    fill: extern "C" fn(*mut c_void, u64, u64, u8),
    holds: extern "C" fn(*mut c_void, u64, u64, u8) -> i32,
    dma_read: extern "C" fn(*mut c_void, u64, u32) -> i32,
    dma_write: extern "C" fn(*mut c_void, u64, u32) -> i32,
    name: *const c_char,
    ram: u64,
    guest: u64,
    window: u64,
    forbidden: u64,
    bus: u32,
    dev: u32,
    func: u32,
    sid: u32,
}

extern "C" {
    /// `c/c_vmm.c`: runs the VMM; 0 when every check passed.
    fn c_vmm_main(transport: *const smmu_transport, env: *const Env) -> i32;
}

/// What the callbacks reach through `ctx`.
struct Host<'a, 'y> {
    ctx: &'a Ctx<'y>,
    vmm: &'a mut Vmm,
    failed: Option<&'static str>,
}

/// A C string from the C VMM as text (its literals are ASCII).
fn text<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        return "";
    }
    // SAFETY: the C VMM passes NUL-terminated strings that live through the call.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("?")
}

/// The host behind `ctx`.
fn host<'a, 'b, 'y>(ctx: *mut c_void) -> &'a mut Host<'b, 'y> {
    // SAFETY: `ctx` is the `Host` that `run` passes in the env; it outlives `c_vmm_main`, and
    // the C VMM calls back only from inside it, one call at a time.
    unsafe { &mut *ctx.cast::<Host<'b, 'y>>() }
}

/// The steps `c/c_vmm.c` checks, in its order (a `CHECK` record's `step` is one of these).
const STEPS: [&str; 15] = [
    "c-connect",
    "c-decide-start",
    "c-create",
    "c-attach-own-device",
    "c-map-array",
    "c-manager-memory-refused",
    "c-dma-inside-lands",
    "c-dma-outside-blocked",
    "c-reads-its-faults",
    "c-unmap",
    "c-after-unmap-blocked",
    "c-after-unmap-recorded",
    "c-destroy",
    "c-destroyed-object-gone",
    "c-disconnect",
];

extern "C" fn check(ctx: *mut c_void, step: *const c_char, ok: i32, value: u64) -> i32 {
    let h = host(ctx);
    let name = text(step);
    let known = STEPS.iter().find(|s| **s == name).copied();
    let step = known.unwrap_or("c-unknown-step");
    let r = h.ctx.check(
        step,
        ok == 1 && known.is_some(),
        format_args!("value={value:#x}"),
    );
    if let Err(step) = r {
        h.failed.get_or_insert(step);
    }
    i32::from(r.is_ok())
}

extern "C" fn say(ctx: *mut c_void, key: *const c_char, msg: *const c_char) {
    let h = host(ctx);
    smmuman_daemon::runtime::console::line(format_args!(
        "C_VMM vm={} {}=\"{}\"",
        h.vmm.name,
        text(key),
        text(msg)
    ));
}

fn ram_at(h: &Host<'_, '_>, off: u64) -> Option<PhysAddr> {
    let (ram, _) = h.vmm.ram.as_ref()?;
    (off < ram.size()).then(|| PhysAddr(ram.start().0 + off))
}

extern "C" fn fill(ctx: *mut c_void, off: u64, len: u64, seed: u8) {
    let h = host(ctx);
    if let Some(pa) = ram_at(h, off) {
        if let Some((_, mem)) = h.vmm.ram.as_mut() {
            mem.fill_pattern(pa, len, seed);
        }
    }
}

extern "C" fn holds(ctx: *mut c_void, off: u64, len: u64, seed: u8) -> i32 {
    let h = host(ctx);
    match (ram_at(h, off), h.vmm.ram.as_ref()) {
        (Some(pa), Some((_, mem))) => i32::from(mem.check_pattern(pa, len, seed).is_none()),
        _ => 0,
    }
}

extern "C" fn dma_read(ctx: *mut c_void, iova: u64, len: u32) -> i32 {
    let h = host(ctx);
    let clock = &h.ctx.clock;
    match h.vmm.device.as_mut() {
        Some(d) => d
            .edu
            .dma_to_device(Iova(iova), 0, len, clock)
            .map_or(-1, |_| 0),
        None => -1,
    }
}

extern "C" fn dma_write(ctx: *mut c_void, iova: u64, len: u32) -> i32 {
    let h = host(ctx);
    let clock = &h.ctx.clock;
    match h.vmm.device.as_mut() {
        Some(d) => d
            .edu
            .dma_from_device(0, Iova(iova), len, clock)
            .map_or(-1, |_| 0),
        None => -1,
    }
}

/// libsmmu's transport over `T` (the mailbox): `ctx` is the `T`.
unsafe extern "C" fn call<T: Transport>(
    ctx: *mut c_void,
    request: *const u8,
    request_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    // SAFETY: `ctx` is the `T` that `run` made (alive through `c_vmm_main`); libsmmu passes
    // request and reply buffers valid for their lengths and a writable `reply_len`.
    let (t, request, reply, reply_len) = unsafe {
        (
            &mut *ctx.cast::<T>(),
            core::slice::from_raw_parts(request, request_len),
            core::slice::from_raw_parts_mut(reply, reply_cap),
            &mut *reply_len,
        )
    };
    match t.call(request, reply) {
        Ok(n) => {
            *reply_len = n;
            smmuman_capi::SMMU_TRANSPORT_OK
        }
        Err(smmuman_api::TransportError::NoManager) => SMMU_TRANSPORT_NO_MANAGER,
        Err(smmuman_api::TransportError::Disconnected) => SMMU_TRANSPORT_DISCONNECTED,
        Err(_) => -1,
    }
}

/// Runs the C VMM of `vmm` (plan [`Plan::C`]) over `mailbox`.
pub fn run(ctx: &Ctx<'_>, mailbox: &'static Mailbox, mut vmm: Vmm) -> Verdict {
    let mut verdict = Verdict {
        name: vmm.name,
        decision: "start",
        ok: false,
        failed_step: Some("c-vmm-setup"),
    };
    let (Some(dev), Some((ram, _))) = (vmm.device.as_ref(), vmm.ram.as_ref()) else {
        return verdict;
    };
    let (bdf, sid, ram) = (dev.bdf, dev.sid, ram.start());
    if !matches!(vmm.plan, Plan::C) {
        return verdict;
    }
    let name: &CStr = match vmm.name {
        "vm1" => c"vm1",
        _ => c"c-vmm",
    };
    let mut mailbox = MailboxTransport::new(mailbox, || ctx.y.yield_now());
    let transport = smmu_transport {
        ctx: (&mut mailbox as *mut MailboxTransport<'_, _>).cast(),
        call: Some(call_for(&mailbox)),
    };
    let mut h = Host {
        ctx,
        vmm: &mut vmm,
        failed: None,
    };
    let env = Env {
        ctx: (&mut h as *mut Host<'_, '_>).cast(),
        check,
        say,
        fill,
        holds,
        dma_read,
        dma_write,
        name: name.as_ptr(),
        ram: ram.0,
        guest: GUEST_RAM_BASE,
        window: WINDOW,
        forbidden: crate::clients::manager_memory().0,
        bus: bdf.bus.into(),
        dev: bdf.dev.into(),
        func: bdf.func.into(),
        sid: sid.0,
    };
    // SAFETY: `transport` and `env` (and what they point at: the mailbox transport, the host,
    // the name) live until it returns; the C VMM calls back only from inside it.
    let rc = unsafe { c_vmm_main(&transport, &env) };
    verdict.ok = rc == 0 && h.failed.is_none();
    verdict.failed_step = if verdict.ok {
        None
    } else {
        Some(h.failed.unwrap_or("c-vmm"))
    };
    verdict
}

/// [`call`] for the transport type of `_t`.
fn call_for<T: Transport>(
    _t: &T,
) -> unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut u8, usize, *mut usize) -> i32 {
    call::<T>
}
