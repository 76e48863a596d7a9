//! `smmu_transport`: how C hands the library its channel to the manager, so the library
//! assumes no OS (a QNX channel, a shared-memory mailbox, the in-process manager of the tests).

use core::ffi::c_void;
use smmuman_api::{Transport, TransportError};

/// The transport delivered the reply.
pub const SMMU_TRANSPORT_OK: i32 = 0;
/// Nothing answers on the manager's channel: the manager is not running.
pub const SMMU_TRANSPORT_NO_MANAGER: i32 = 1;
/// The manager answered before but its channel is gone now.
pub const SMMU_TRANSPORT_DISCONNECTED: i32 = 2;

/// The function of a [`smmu_transport`].
pub(crate) type CallFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    request: *const u8,
    request_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32;

/// A channel to the manager, provided by the caller of `smmu_connect` (copied by it).
///
/// Lifetime: `ctx` and `call` must stay valid until `smmu_disconnect` of the client connected
/// with them returns; the library never frees `ctx`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct smmu_transport {
    /// Passed to `call` unchanged (the caller's channel state).
    pub ctx: *mut c_void,
    /// Sends one request to the manager and waits for its reply (any other return value than the
    /// `SMMU_TRANSPORT_*` codes is a transport-specific failure, reported with its value).
    ///
    /// Called with `ctx` as given here, the request (`request_len` bytes, valid
    /// only during the call) and the reply buffer (`reply_cap` bytes). On `SMMU_TRANSPORT_OK` it
    /// has written the reply to the front of `reply` and its length to `*reply_len` (a length above
    /// `reply_cap` is refused as a reply that does not fit). It is called only from inside an
    /// `smmu_*` call on the client connected with it, never from two threads at once for one
    /// client.
    /// Must not be NULL.
    pub call: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            request: *const u8,
            request_len: usize,
            reply: *mut u8,
            reply_cap: usize,
            reply_len: *mut usize,
        ) -> i32,
    >,
}

/// The library's side of a C transport.
#[derive(Debug)]
pub(crate) struct CTransport {
    ctx: *mut c_void,
    call: CallFn,
}

// SAFETY: the transport is only used from inside an `smmu_*` call that holds its client's lock,
// so never from two threads at once; `smmu_connect`'s contract makes `ctx` usable from whichever
// thread calls the client (the library itself never dereferences it).
unsafe impl Send for CTransport {}

impl CTransport {
    pub(crate) const fn new(ctx: *mut c_void, call: CallFn) -> Self {
        Self { ctx, call }
    }
}

/// What a C transport's return value and length mean.
pub(crate) const fn outcome(rc: i32, len: usize, cap: usize) -> Result<usize, TransportError> {
    match rc {
        SMMU_TRANSPORT_OK if len <= cap => Ok(len),
        SMMU_TRANSPORT_OK => Err(TransportError::ReplyTooLong { len }),
        SMMU_TRANSPORT_NO_MANAGER => Err(TransportError::NoManager),
        SMMU_TRANSPORT_DISCONNECTED => Err(TransportError::Disconnected),
        code => Err(TransportError::Other { code }),
    }
}

impl Transport for CTransport {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        let mut len = 0usize;
        let cap = reply.len();
        // SAFETY: `smmu_connect`'s contract: `call` is a valid function and `ctx` valid for it
        // until disconnect. The request and reply pointers are valid for their lengths during
        // the call, and `len` is a live local.
        let rc = unsafe {
            (self.call)(
                self.ctx,
                request.as_ptr(),
                request.len(),
                reply.as_mut_ptr(),
                cap,
                &mut len,
            )
        };
        outcome(rc, len, cap)
    }
}
