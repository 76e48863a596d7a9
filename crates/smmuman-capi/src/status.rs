//! Status codes (what every entry point returns) and the failure each one stands for, with the
//! message a C caller reads back (`smmu_last_error`, `smmu_strerror`).
//!
//! Three families, so a caller can tell who said no:
//! * 1..=9: the library refused the arguments; **nothing was sent** to the manager;
//! * 10..=19: the message did not get there and back, or one side found the other's message
//!   malformed;
//! * 100 + code: the manager refused the request (`DomainError`'s wire code, `docs/protocol.md`);
//!   nothing changed.

use core::fmt;
use iommu_core::ids::BdfError;
use smmuman_api::types::RangeError;
use smmuman_api::{CallError, DomainError, TransportError};

/// What an entry point returns: [`SMMU_OK`] or one of the `SMMU_ERR_*` codes.
#[allow(non_camel_case_types)]
pub type smmu_status = i32;

/// Done.
pub const SMMU_OK: smmu_status = 0;
/// A pointer the call needs is NULL (nothing was sent).
pub const SMMU_ERR_NULL: smmu_status = 1;
/// An argument breaks a rule of the client library; `smmu_last_error` names it (nothing was
/// sent).
pub const SMMU_ERR_INVALID: smmu_status = 2;
/// Not a connected client handle (never connected, disconnected, or garbage).
pub const SMMU_ERR_BAD_CLIENT: smmu_status = 3;
/// The client handle is in use by another call right now (another thread); retry.
pub const SMMU_ERR_CLIENT_BUSY: smmu_status = 4;
/// Every one of `SMMU_MAX_CLIENTS` client handles is connected.
pub const SMMU_ERR_NO_SLOT: smmu_status = 5;
/// The manager is not running (nothing answers on its channel).
pub const SMMU_ERR_NO_MANAGER: smmu_status = 10;
/// The manager answered before but is gone now.
pub const SMMU_ERR_DISCONNECTED: smmu_status = 11;
/// The transport failed otherwise (its code is in the message), or its reply did not fit.
pub const SMMU_ERR_TRANSPORT: smmu_status = 12;
/// The manager found the request malformed (a protocol version mismatch, usually).
pub const SMMU_ERR_PROTOCOL: smmu_status = 13;
/// The manager's reply was malformed or answered another request.
pub const SMMU_ERR_BAD_REPLY: smmu_status = 14;
/// The manager refused: no such object or device, or not yours.
pub const SMMU_ERR_NOT_FOUND: smmu_status = 101;
/// The manager refused: the device or host memory is held by another VM object.
pub const SMMU_ERR_BUSY: smmu_status = 102;
/// The manager refused: it would split an isolation group (devices sharing a StreamID).
pub const SMMU_ERR_GROUP_SPLIT: smmu_status = 103;
/// The manager refused: the host memory is the manager's own.
pub const SMMU_ERR_NOT_OWNED: smmu_status = 104;
/// The manager refused: the I/O range overlaps one of the object's mappings.
pub const SMMU_ERR_OVERLAP: smmu_status = 105;
/// The manager refused: an address or length is not aligned to its granule.
pub const SMMU_ERR_MISALIGNED: smmu_status = 106;
/// The manager refused: the unmap would cut a mapping in two.
pub const SMMU_ERR_WOULD_SPLIT: smmu_status = 107;
/// The manager refused: a capacity (objects, mappings) is exhausted.
pub const SMMU_ERR_QUOTA: smmu_status = 108;
/// The manager refused: not supported by this board's configuration.
pub const SMMU_ERR_UNSUPPORTED: smmu_status = 109;
/// The manager refused: the I/O range is outside the usable ranges.
pub const SMMU_ERR_OUT_OF_RANGE: smmu_status = 110;
/// The manager refused: a unity-mapped object needs iova == host address.
pub const SMMU_ERR_NOT_UNITY: smmu_status = 111;
/// The manager refused: the IOMMU failed the change; nothing changed.
pub const SMMU_ERR_IOMMU: smmu_status = 112;
/// The manager refused: the host memory is not in what the host assigned this VM.
pub const SMMU_ERR_NOT_ASSIGNED: smmu_status = 113;
/// The manager refused: memory assigned as shared must be mapped with `SMMU_MAP_SHARED`.
pub const SMMU_ERR_NEEDS_SHARED: smmu_status = 114;
/// The manager refused: a device the host did not assign this VM.
pub const SMMU_ERR_DEVICE_NOT_ASSIGNED: smmu_status = 115;

/// The status of a refusal: 100 + the wire code.
pub(crate) const fn refused(e: DomainError) -> smmu_status {
    (e.code() as smmu_status).wrapping_add(100)
}

/// An argument the library refused, and why (what `smmu_last_error` prints).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ArgError {
    /// The parameter, as the header names it (`"entries"`, `"access"`...).
    pub arg: &'static str,
    /// The element of an array argument.
    pub index: Option<usize>,
    /// What is wrong with it.
    pub problem: Problem,
}

impl ArgError {
    pub(crate) const fn new(arg: &'static str, problem: Problem) -> Self {
        Self {
            arg,
            index: None,
            problem,
        }
    }

    pub(crate) const fn at(self, index: usize) -> Self {
        Self {
            index: Some(index),
            ..self
        }
    }
}

/// What is wrong with an argument.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Problem {
    /// NULL where a pointer is required.
    Null,
    /// A range the client library would not build ([`smmuman_api::DmaWindow::new`],
    /// [`smmuman_api::IovaSpan::new`]).
    Range(RangeError),
    /// Not a window's access: empty, or bits other than READ, WRITE, EXEC.
    Access(u32),
    /// Unknown flag bits.
    Flags(u32),
    /// A PCI bus above 255 (that is not `SMMU_PCI_ANY`).
    Bus(u32),
    /// A PCI device or function out of range.
    Bdf(BdfError),
    /// A device number or function that does not fit in a byte at all.
    Wide(u32),
    /// Zero elements where at least one is needed.
    Empty,
    /// More elements than one call takes.
    TooMany {
        /// Elements given.
        got: usize,
        /// Most one call takes.
        max: usize,
    },
    /// A byte that must be 0 or 1.
    Bool(u8),
    /// A string that is not UTF-8.
    Utf8,
    /// An unknown device kind.
    Kind(u32),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid argument ")?;
        f.write_str(self.arg)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        f.write_str(": ")?;
        match self.problem {
            Problem::Null => f.write_str("NULL pointer"),
            Problem::Range(e) => write!(f, "{e}"),
            Problem::Access(a) => write!(
                f,
                "access {a:#x} is not a window's access (READ, WRITE, EXEC, at least one)"
            ),
            Problem::Flags(v) => write!(f, "unknown flag bits {v:#x}"),
            Problem::Bus(b) => write!(f, "PCI bus {b} is above 255"),
            Problem::Bdf(BdfError::Device(d)) => write!(f, "PCI device {d} is above 31"),
            Problem::Bdf(BdfError::Function(n)) => write!(f, "PCI function {n} is above 7"),
            Problem::Wide(v) => write!(f, "{v} is out of range"),
            Problem::Empty => f.write_str("no elements"),
            Problem::TooMany { got, max } => {
                write!(f, "{got} elements where one call takes at most {max}")
            }
            Problem::Bool(v) => write!(f, "{v} where 0 or 1 is required"),
            Problem::Utf8 => f.write_str("not a UTF-8 string"),
            Problem::Kind(k) => write!(f, "unknown device kind {k}"),
        }
    }
}

/// Why a call failed: the library refused the arguments, or the call did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Failure {
    /// Refused before anything was sent.
    Arg(ArgError),
    /// The client call failed (transport, protocol, refusal).
    Call(CallError),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        Self::Call(e)
    }
}

impl From<ArgError> for Failure {
    fn from(e: ArgError) -> Self {
        Self::Arg(e)
    }
}

impl Failure {
    /// The status code C sees.
    pub(crate) const fn status(&self) -> smmu_status {
        match self {
            Self::Arg(ArgError {
                problem: Problem::Null,
                ..
            }) => SMMU_ERR_NULL,
            Self::Arg(_) => SMMU_ERR_INVALID,
            Self::Call(e) => call_status(e),
        }
    }
}

/// The status code of a failed client call.
pub(crate) const fn call_status(e: &CallError) -> smmu_status {
    match e {
        CallError::Transport(TransportError::NoManager) => SMMU_ERR_NO_MANAGER,
        CallError::Transport(TransportError::Disconnected) => SMMU_ERR_DISCONNECTED,
        CallError::Transport(_) => SMMU_ERR_TRANSPORT,
        CallError::Protocol(_) => SMMU_ERR_PROTOCOL,
        CallError::Refused(r) => refused(r.error),
        CallError::BadReply(_) => SMMU_ERR_BAD_REPLY,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arg(e) => write!(f, "{e} (nothing was sent)"),
            Self::Call(e) => write!(f, "{e}"),
        }
    }
}

/// The fixed text of a status code, NUL-terminated (what `smmu_strerror` returns).
pub(crate) fn text(status: smmu_status) -> &'static core::ffi::CStr {
    match status {
        SMMU_OK => c"ok",
        SMMU_ERR_NULL => c"a required pointer is NULL (nothing was sent)",
        SMMU_ERR_INVALID => c"invalid argument (nothing was sent)",
        SMMU_ERR_BAD_CLIENT => c"not a connected client handle",
        SMMU_ERR_CLIENT_BUSY => c"the client handle is in use by another call",
        SMMU_ERR_NO_SLOT => c"every client handle is in use",
        SMMU_ERR_NO_MANAGER => {
            c"the smmuman manager is not running (nothing answers on its channel)"
        }
        SMMU_ERR_DISCONNECTED => c"the smmuman manager went away",
        SMMU_ERR_TRANSPORT => c"the transport failed",
        SMMU_ERR_PROTOCOL => c"the manager rejected the message as malformed",
        SMMU_ERR_BAD_REPLY => c"the manager's reply was malformed",
        SMMU_ERR_NOT_FOUND => c"refused: no such object or device (or it is not yours)",
        SMMU_ERR_BUSY => c"refused: owned by another VM object",
        SMMU_ERR_GROUP_SPLIT => c"refused: an isolation group moves as a whole",
        SMMU_ERR_NOT_OWNED => c"refused: host memory that is the manager's own",
        SMMU_ERR_OVERLAP => c"refused: overlaps an existing mapping",
        SMMU_ERR_MISALIGNED => c"refused: address not aligned to the granule",
        SMMU_ERR_WOULD_SPLIT => c"refused: unmap would cut a mapping in two",
        SMMU_ERR_QUOTA => c"refused: a manager capacity is exhausted",
        SMMU_ERR_UNSUPPORTED => c"refused: not supported by this board's configuration",
        SMMU_ERR_OUT_OF_RANGE => c"refused: outside the usable I/O address ranges",
        SMMU_ERR_NOT_UNITY => c"refused: a unity-mapped object needs iova == host address",
        SMMU_ERR_IOMMU => c"refused: the IOMMU failed the change; nothing changed",
        SMMU_ERR_NOT_ASSIGNED => {
            c"refused: host memory outside the RAM and BARs the host assigned to this VM"
        }
        SMMU_ERR_NEEDS_SHARED => c"refused: host memory assigned as shared must be mapped SHARED",
        SMMU_ERR_DEVICE_NOT_ASSIGNED => c"refused: a device the host did not assign to this VM",
        _ => c"unknown status code",
    }
}

/// A `fmt::Write` into a C buffer: keeps what fits (leaving room for the NUL), counts it all.
pub(crate) struct CText<'a> {
    buf: &'a mut [u8],
    kept: usize,
    total: usize,
}

impl<'a> CText<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            kept: 0,
            total: 0,
        }
    }

    /// NUL-terminates what was kept; returns the length of the whole text (without the NUL),
    /// as `snprintf` does.
    pub(crate) fn finish(self) -> usize {
        if let Some(b) = self.buf.get_mut(self.kept) {
            *b = 0;
        }
        self.total
    }
}

impl fmt::Write for CText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().saturating_sub(1).saturating_sub(self.kept);
        let take = s.len().min(room);
        let src = s.as_bytes().get(..take).unwrap_or(&[]);
        if let Some(dst) = self.buf.get_mut(self.kept..self.kept.saturating_add(take)) {
            dst.copy_from_slice(src);
            self.kept = self.kept.saturating_add(take);
        }
        self.total = self.total.saturating_add(s.len());
        Ok(())
    }
}
