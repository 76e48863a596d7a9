//! [`AdminClient`]: the operator's typed calls over any [`Transport`].

use crate::interface::AdminOp;
use core::fmt;
use smmuman_api::header::{Header, Status};
use smmuman_api::message::{decode_payload, parse_reply, Outcome};
use smmuman_api::wire::{encode, Wire, HEADER_LEN};
use smmuman_api::{ProtocolError, Refusal, ReplyError, Transport, TransportError, MAX_MESSAGE};

/// A request type of the admin op table: which op it is and what it gets back.
pub trait AdminRequest: Wire {
    /// The operation.
    const OP: AdminOp;
    /// The reply payload when the status is Ok.
    type Reply: Wire;
}

/// Everything an admin call can return besides its reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AdminCallError {
    /// The channel could not carry the message.
    Transport(TransportError),
    /// The server found the request malformed.
    Protocol(ProtocolError),
    /// The server refused it.
    Refused(Refusal),
    /// The reply is malformed or answers something else.
    BadReply(ReplyError),
    /// The reply answers another op.
    WrongOp {
        /// The op asked.
        expected: AdminOp,
        /// The op number in the reply.
        got: u16,
    },
}

impl fmt::Display for AdminCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "{e}"),
            Self::Protocol(e) => write!(f, "the manager found the request malformed: {e}"),
            Self::Refused(r) => write!(f, "refused: {r}"),
            Self::BadReply(e) => write!(f, "{e}"),
            Self::WrongOp { expected, got } => {
                write!(f, "reply for op {got:#x} to a request of {expected:?}")
            }
        }
    }
}

impl From<TransportError> for AdminCallError {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

/// The operator's side of the admin protocol: one typed method per admin op (generated from
/// the op table), each a request and its reply over the transport.
#[derive(Debug)]
pub struct AdminClient<T: Transport> {
    transport: T,
    next_request: u32,
    out: [u8; MAX_MESSAGE],
    back: [u8; MAX_MESSAGE],
}

impl<T: Transport> AdminClient<T> {
    /// An admin client over `transport` (no message sent yet).
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            next_request: 1,
            out: [0; MAX_MESSAGE],
            back: [0; MAX_MESSAGE],
        }
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub(crate) fn call<R: AdminRequest>(&mut self, req: &R) -> Result<R::Reply, AdminCallError> {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let n = encode_request(req, id, &mut self.out);
        let got = self
            .transport
            .call(self.out.get(..n).unwrap_or(&self.out), &mut self.back)?;
        let bytes = self.back.get(..got).ok_or(AdminCallError::Transport(
            TransportError::ReplyTooLong { len: got },
        ))?;
        decode_reply::<R>(bytes, id)
    }
}

/// Encodes admin request `req` with id `request_id`; returns the message length.
pub fn encode_request<R: AdminRequest>(
    req: &R,
    request_id: u32,
    out: &mut [u8; MAX_MESSAGE],
) -> usize {
    let (head, body) = out.split_at_mut(HEADER_LEN);
    let n = encode(req, body);
    Header {
        flags: 0,
        op: R::OP.number(),
        status: Status::Ok.to_u16(),
        // Every message type is checked against MAX_PAYLOAD at compile time.
        payload_len: u16::try_from(n).unwrap_or(u16::MAX),
        request_id,
    }
    .put(head);
    HEADER_LEN + n
}

/// Decodes the reply to admin request `request_id` of type `R`.
///
/// # Errors
/// [`AdminCallError`] naming what was wrong or what the server said.
pub fn decode_reply<R: AdminRequest>(
    bytes: &[u8],
    request_id: u32,
) -> Result<R::Reply, AdminCallError> {
    let (h, outcome) = parse_reply(bytes).map_err(AdminCallError::BadReply)?;
    if h.op != R::OP.number() {
        return Err(AdminCallError::WrongOp {
            expected: R::OP,
            got: h.op,
        });
    }
    if h.request_id != request_id {
        return Err(AdminCallError::BadReply(ReplyError::WrongId {
            expected: request_id,
            got: h.request_id,
        }));
    }
    match outcome {
        Outcome::Ok(payload) => decode_payload::<R::Reply>(payload)
            .map_err(|e| AdminCallError::BadReply(ReplyError::Malformed(e))),
        Outcome::Protocol(e) => Err(AdminCallError::Protocol(e)),
        Outcome::Refused(r) => Err(AdminCallError::Refused(r)),
    }
}
