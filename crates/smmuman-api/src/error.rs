//! What can go wrong, split the way the protocol splits it.
//!
//! * [`ProtocolError`]: the message itself was wrong (bad magic, version, size, op, field). The
//!   request was not looked at; nothing changed.
//! * [`DomainError`] (inside a [`Refusal`]): the message was well formed but the manager's rules
//!   refuse it (the device belongs to someone else, the memory is not yours...). Nothing changed.
//! * [`CallError`]: everything a client call can return, including [`TransportError`]s and
//!   replies that do not decode.

use crate::interface::Op;
use crate::wire::{FieldError, Reader, Wire, Writer};
use core::fmt;

/// The transport could not carry a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TransportError {
    /// Nothing answers on the manager's channel: the manager is not running.
    NoManager,
    /// The manager answered before but its channel is gone now.
    Disconnected,
    /// The reply was longer than the buffer given for it.
    ReplyTooLong {
        /// The reply's length.
        len: usize,
    },
    /// A transport-specific failure (an OS error number, for example).
    Other {
        /// The transport's own code.
        code: i32,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoManager => {
                f.write_str("the smmuman manager is not running (nothing answers on its channel)")
            }
            Self::Disconnected => f.write_str("the smmuman manager went away"),
            Self::ReplyTooLong { len } => write!(f, "reply of {len} bytes does not fit"),
            Self::Other { code } => write!(f, "transport error {code}"),
        }
    }
}

/// Codes of [`ProtocolError`] (low byte of a `0x01xx` status).
pub(crate) mod protocol_code {
    pub const BAD_MAGIC: u8 = 1;
    pub const BAD_VERSION: u8 = 2;
    pub const UNKNOWN_OP: u8 = 3;
    pub const BAD_SIZE: u8 = 4;
    pub const BAD_HEADER: u8 = 5;
    pub const BAD_FIELD: u8 = 6;
    /// The highest code defined.
    pub const LAST: u8 = BAD_FIELD;
}

/// A message was malformed; it was refused before anything looked at its meaning.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProtocolError {
    /// The first two bytes are not [`crate::wire::MAGIC`].
    BadMagic {
        /// What was there.
        got: u16,
    },
    /// The header's version is not one the receiver speaks.
    BadVersion {
        /// The version in the message.
        got: u8,
        /// The version the receiver speaks.
        supported: u8,
    },
    /// No operation has this number.
    UnknownOp {
        /// The number.
        op: u16,
    },
    /// The message, or its payload, has the wrong length.
    BadSize {
        /// The length found.
        got: u64,
        /// The length the header or the op requires.
        expected: u64,
    },
    /// A header field (flags, status, reserved) holds a value not allowed there.
    BadHeader {
        /// Byte offset in the header.
        offset: u8,
        /// The value.
        value: u64,
    },
    /// A payload field is out of range.
    BadField {
        /// Byte offset in the payload.
        offset: u16,
        /// The value.
        value: u64,
    },
}

impl ProtocolError {
    /// The code carried in the status (`0x0100 | code`).
    pub const fn code(&self) -> u8 {
        use protocol_code::*;
        match self {
            Self::BadMagic { .. } => BAD_MAGIC,
            Self::BadVersion { .. } => BAD_VERSION,
            Self::UnknownOp { .. } => UNKNOWN_OP,
            Self::BadSize { .. } => BAD_SIZE,
            Self::BadHeader { .. } => BAD_HEADER,
            Self::BadField { .. } => BAD_FIELD,
        }
    }

    /// A [`FieldError`] of a payload, as a protocol error.
    pub fn field(e: FieldError) -> Self {
        Self::BadField {
            offset: u16::try_from(e.offset).unwrap_or(u16::MAX),
            value: e.value,
        }
    }

    /// The two detail words of the error body.
    pub(crate) const fn detail(&self) -> ErrorBody {
        let (a, b) = match *self {
            Self::BadMagic { got } => (got as u64, 0),
            Self::BadVersion { got, supported } => (got as u64, supported as u64),
            Self::UnknownOp { op } => (op as u64, 0),
            Self::BadSize { got, expected } => (got, expected),
            Self::BadHeader { offset, value } => (offset as u64, value),
            Self::BadField { offset, value } => (offset as u64, value),
        };
        ErrorBody { a, b }
    }

    /// Rebuilds the error from its code and body; `None` when they do not fit together.
    pub(crate) fn from_parts(code: u8, body: ErrorBody) -> Option<Self> {
        use protocol_code::*;
        let ErrorBody { a, b } = body;
        let zero_b = |e: Self| (b == 0).then_some(e);
        match code {
            BAD_MAGIC => zero_b(Self::BadMagic {
                got: u16::try_from(a).ok()?,
            }),
            BAD_VERSION => Some(Self::BadVersion {
                got: u8::try_from(a).ok()?,
                supported: u8::try_from(b).ok()?,
            }),
            UNKNOWN_OP => zero_b(Self::UnknownOp {
                op: u16::try_from(a).ok()?,
            }),
            BAD_SIZE => Some(Self::BadSize {
                got: a,
                expected: b,
            }),
            BAD_HEADER => Some(Self::BadHeader {
                offset: u8::try_from(a).ok()?,
                value: b,
            }),
            BAD_FIELD => Some(Self::BadField {
                offset: u16::try_from(a).ok()?,
                value: b,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { got } => write!(f, "not an smmuman message (magic {got:#06x})"),
            Self::BadVersion { got, supported } => write!(
                f,
                "protocol version {got} where version {supported} is spoken"
            ),
            Self::UnknownOp { op } => write!(f, "unknown operation {op}"),
            Self::BadSize { got, expected } => {
                write!(f, "wrong size: {got} bytes where {expected} are required")
            }
            Self::BadHeader { offset, value } => {
                write!(f, "header byte {offset}: value {value:#x} is not allowed")
            }
            Self::BadField { offset, value } => {
                write!(
                    f,
                    "payload offset {offset}: value {value:#x} is out of range"
                )
            }
        }
    }
}

/// Why the manager refused a well-formed request. The numbers are the wire codes (low byte of a
/// `0x02xx` status).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum DomainError {
    /// No such object or device, or not yours (another client's object looks absent).
    NotFound = 1,
    /// The device or host memory is owned by another VM object.
    Busy = 2,
    /// The request would split an isolation group (devices sharing a StreamID) between owners.
    GroupSplit = 3,
    /// The host memory is not this VM's to map: it is the manager's own.
    NotOwned = 4,
    /// The I/O range overlaps one of the object's mappings.
    Overlap = 5,
    /// An address is not aligned to the 4 KiB page.
    Misaligned = 6,
    /// The unmap would cut a mapping in two (unmap whole mappings).
    WouldSplit = 7,
    /// A capacity is exhausted (objects, mappings).
    QuotaExceeded = 8,
    /// Not supported here (e.g. raw StreamID attach where the board does not allow it).
    Unsupported = 9,
    /// The I/O range is outside the usable ranges `query` reports.
    OutOfRange = 10,
    /// A unity-mapped object needs `iova == pa`.
    NotUnity = 11,
    /// The IOMMU failed the change; nothing changed, the manager's log says why.
    Iommu = 12,
    /// The host memory is not in the caller's assignment: the host gives each VMM the RAM (and
    /// peer-to-peer BARs) its VM may grant its devices; device registers, the manager's memory
    /// and other VMs' RAM are never in it.
    NotAssigned = 13,
    /// The host memory is assigned to the caller as shared with other VMs: it must be mapped
    /// with `MapFlags::SHARED`.
    NeedsShared = 14,
    /// The device is not in the caller's assignment: the host gives each VMM the devices
    /// (PCI functions, platform devices, whole groups) its VM passes through, and a group is
    /// attachable only when every member of it was given to the caller. Checked before `Busy`
    /// and `GroupSplit`, so a client learns nothing about who holds a device it was not given.
    DeviceNotAssigned = 15,
}

impl DomainError {
    /// Every code, in numeric order.
    pub const ALL: [DomainError; 15] = [
        Self::NotFound,
        Self::Busy,
        Self::GroupSplit,
        Self::NotOwned,
        Self::Overlap,
        Self::Misaligned,
        Self::WouldSplit,
        Self::QuotaExceeded,
        Self::Unsupported,
        Self::OutOfRange,
        Self::NotUnity,
        Self::Iommu,
        Self::NotAssigned,
        Self::NeedsShared,
        Self::DeviceNotAssigned,
    ];

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The error with wire code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "no such object or device (or it is not yours)",
            Self::Busy => "owned by another VM object",
            Self::GroupSplit => {
                "the device shares its StreamID with devices outside the request; \
                 an isolation group moves as a whole"
            }
            Self::NotOwned => "host memory that is not this VM's to map (the manager's own)",
            Self::Overlap => "overlaps an existing mapping",
            Self::Misaligned => "address not aligned to 4 KiB",
            Self::WouldSplit => "unmap would cut a mapping in two",
            Self::QuotaExceeded => "a manager capacity is exhausted",
            Self::Unsupported => "not supported by this board's configuration",
            Self::OutOfRange => "outside the usable I/O address ranges",
            Self::NotUnity => "a unity-mapped object needs iova == host address",
            Self::Iommu => "the IOMMU failed the change (see the manager's log); nothing changed",
            Self::NotAssigned => {
                "host memory outside the RAM and BARs the host assigned to this VM"
            }
            Self::NeedsShared => "host memory assigned as shared must be mapped SHARED",
            Self::DeviceNotAssigned => "a device the host did not assign to this VM",
        })
    }
}

/// A domain error and the value it is about (the StreamID that is busy, the address that is
/// misaligned, the object that was not found...; `docs/protocol.md` lists it per op).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Refusal {
    /// What rule refused the request.
    pub error: DomainError,
    /// The offending value.
    pub value: u64,
}

impl Refusal {
    /// `error` about `value`.
    pub const fn new(error: DomainError, value: u64) -> Self {
        Self { error, value }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x})", self.error, self.value)
    }
}

/// The 16-byte payload of every error reply: two detail words whose meaning depends on the code.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct ErrorBody {
    pub a: u64,
    pub b: u64,
}

impl Wire for ErrorBody {
    const SIZE: usize = 16;
    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.a);
        w.u64(self.b);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        Ok(Self {
            a: r.u64()?,
            b: r.u64()?,
        })
    }
}

/// A reply the client could not accept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplyError {
    /// The reply's header or payload is malformed.
    Malformed(ProtocolError),
    /// The reply is for another operation.
    WrongOp {
        /// The op the request had.
        expected: Op,
        /// The op number in the reply.
        got: u16,
    },
    /// The reply is for another request.
    WrongId {
        /// The id the request had.
        expected: u32,
        /// The id in the reply.
        got: u32,
    },
    /// The status is not a known code, or its payload does not fit it.
    BadStatus(u16),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed reply: {e}"),
            Self::WrongOp { expected, got } => {
                write!(f, "reply for op {got}, expected {}", expected.number())
            }
            Self::WrongId { expected, got } => {
                write!(f, "reply for request {got}, expected {expected}")
            }
            Self::BadStatus(s) => write!(f, "reply status {s:#06x} is not valid"),
        }
    }
}

/// Everything a client call can return instead of its reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallError {
    /// The message did not get there and back.
    Transport(TransportError),
    /// The manager found our message malformed (a version mismatch, usually).
    Protocol(ProtocolError),
    /// The manager refused the request.
    Refused(Refusal),
    /// The manager's reply was malformed.
    BadReply(ReplyError),
}

impl CallError {
    /// The domain error, when the manager refused the request.
    pub const fn domain(&self) -> Option<DomainError> {
        match self {
            Self::Refused(r) => Some(r.error),
            _ => None,
        }
    }
}

impl From<TransportError> for CallError {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "{e}"),
            Self::Protocol(e) => write!(f, "the manager rejected the message: {e}"),
            Self::Refused(r) => write!(f, "refused: {r}"),
            Self::BadReply(e) => write!(f, "{e}"),
        }
    }
}
