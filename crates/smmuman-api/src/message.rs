//! Whole messages: a header and a payload, encoded and decoded.

use crate::error::{CallError, ErrorBody, ProtocolError, Refusal, ReplyError};
use crate::header::{Header, Status, FLAG_REPLY};
use crate::interface::{check_reply_payload, check_request_payload, Op};
use crate::wire::{decode_exact, encode, Wire, HEADER_LEN, MAX_MESSAGE};

/// A request type of the op table: which op it is and what it gets back.
pub trait Request: Wire {
    /// The operation.
    const OP: Op;
    /// The reply payload when the status is Ok.
    type Reply: Wire;
}

/// Decodes a payload that must be exactly `T`.
///
/// # Errors
/// [`ProtocolError::BadSize`] when the length is not `T::SIZE`, [`ProtocolError::BadField`] for
/// the first field out of range.
pub fn decode_payload<T: Wire>(payload: &[u8]) -> Result<T, ProtocolError> {
    if payload.len() != T::SIZE {
        return Err(ProtocolError::BadSize {
            got: payload.len() as u64,
            expected: T::SIZE as u64,
        });
    }
    decode_exact(payload).map_err(ProtocolError::field)
}

fn finish(
    flags: u8,
    op: u16,
    status: Status,
    id: u32,
    out: &mut [u8; MAX_MESSAGE],
    n: usize,
) -> usize {
    Header {
        flags,
        op,
        status: status.to_u16(),
        // `n` ≤ MAX_PAYLOAD: every message type is checked against it at compile time.
        payload_len: u16::try_from(n).unwrap_or(u16::MAX),
        request_id: id,
    }
    .put(out);
    HEADER_LEN + n
}

fn body(out: &mut [u8; MAX_MESSAGE]) -> &mut [u8] {
    let (_, body) = out.split_at_mut(HEADER_LEN);
    body
}

/// Encodes request `req` with id `request_id`; returns the message length.
pub fn encode_request<R: Request>(req: &R, request_id: u32, out: &mut [u8; MAX_MESSAGE]) -> usize {
    let n = encode(req, body(out));
    finish(0, R::OP.number(), Status::Ok, request_id, out, n)
}

/// Encodes an Ok reply to request `id` of `op`.
pub fn encode_ok<T: Wire>(op: u16, id: u32, reply: &T, out: &mut [u8; MAX_MESSAGE]) -> usize {
    let n = encode(reply, body(out));
    finish(FLAG_REPLY, op, Status::Ok, id, out, n)
}

/// Encodes a protocol-error reply to request `id` of `op`.
pub fn encode_protocol_error(
    op: u16,
    id: u32,
    e: &ProtocolError,
    out: &mut [u8; MAX_MESSAGE],
) -> usize {
    let n = encode(&e.detail(), body(out));
    finish(FLAG_REPLY, op, Status::Protocol(e.code()), id, out, n)
}

/// Encodes a domain-error reply to request `id` of `op`.
pub fn encode_refusal(op: u16, id: u32, r: &Refusal, out: &mut [u8; MAX_MESSAGE]) -> usize {
    let n = encode(&ErrorBody { a: r.value, b: 0 }, body(out));
    finish(FLAG_REPLY, op, Status::Domain(r.error), id, out, n)
}

/// What a well-formed reply says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome<T> {
    /// Done; `T` is the payload (or what was decoded from it).
    Ok(T),
    /// The request was malformed.
    Protocol(ProtocolError),
    /// The request was refused.
    Refused(Refusal),
}

/// Parses a reply's header and, for errors, its error body; an Ok payload is returned raw.
///
/// # Errors
/// [`ReplyError`] when the header is malformed, the reply flag is missing, the status is not
/// a known code or an error body does not fit its code.
pub fn parse_reply(bytes: &[u8]) -> Result<(Header, Outcome<&[u8]>), ReplyError> {
    let (h, payload) = Header::parse(bytes).map_err(ReplyError::Malformed)?;
    if h.flags != FLAG_REPLY {
        return Err(ReplyError::Malformed(ProtocolError::BadHeader {
            offset: 3,
            value: h.flags.into(),
        }));
    }
    let status = Status::from_u16(h.status).ok_or(ReplyError::BadStatus(h.status))?;
    let error_body = || decode_payload::<ErrorBody>(payload).map_err(ReplyError::Malformed);
    let outcome = match status {
        Status::Ok => Outcome::Ok(payload),
        Status::Protocol(code) => {
            let e = ProtocolError::from_parts(code, error_body()?)
                .ok_or(ReplyError::BadStatus(h.status))?;
            Outcome::Protocol(e)
        }
        Status::Domain(error) => {
            let b = error_body()?;
            if b.b != 0 {
                return Err(ReplyError::Malformed(ProtocolError::BadField {
                    offset: 8,
                    value: b.b,
                }));
            }
            Outcome::Refused(Refusal { error, value: b.a })
        }
    };
    Ok((h, outcome))
}

/// Checks that `bytes` is a well-formed request of any op: exactly the checks [`dispatch`]
/// makes before it calls an op's method, so `dispatch` answers with a protocol error if and only
/// if this fails (with the same error).
///
/// [`dispatch`]: crate::dispatch
///
/// # Errors
/// The first [`ProtocolError`] found.
pub fn check_request(bytes: &[u8]) -> Result<(Header, Op), ProtocolError> {
    let (h, payload) = Header::parse_request(bytes)?;
    let op = Op::from_u16(h.op).ok_or(ProtocolError::UnknownOp { op: h.op })?;
    check_request_payload(op, payload)?;
    Ok((h, op))
}

/// Checks that `bytes` is a well-formed reply of any op (an Ok payload must decode as that op's
/// reply); returns its header and outcome.
///
/// # Errors
/// [`ReplyError`] naming the first problem.
pub fn check_reply(bytes: &[u8]) -> Result<(Header, Outcome<()>), ReplyError> {
    let (h, outcome) = parse_reply(bytes)?;
    let outcome = match outcome {
        Outcome::Ok(payload) => {
            let op = Op::from_u16(h.op).ok_or(ReplyError::BadStatus(h.status))?;
            check_reply_payload(op, payload).map_err(ReplyError::Malformed)?;
            Outcome::Ok(())
        }
        Outcome::Protocol(e) => Outcome::Protocol(e),
        Outcome::Refused(r) => Outcome::Refused(r),
    };
    Ok((h, outcome))
}

/// Decodes the reply to request `request_id` of type `R`.
///
/// # Errors
/// [`CallError::Protocol`] or [`CallError::Refused`] when the manager said no;
/// [`CallError::BadReply`] when the reply is malformed or answers another request.
pub fn decode_reply<R: Request>(bytes: &[u8], request_id: u32) -> Result<R::Reply, CallError> {
    let (h, outcome) = parse_reply(bytes).map_err(CallError::BadReply)?;
    if h.op != R::OP.number() {
        return Err(CallError::BadReply(ReplyError::WrongOp {
            expected: R::OP,
            got: h.op,
        }));
    }
    if h.request_id != request_id {
        return Err(CallError::BadReply(ReplyError::WrongId {
            expected: request_id,
            got: h.request_id,
        }));
    }
    match outcome {
        Outcome::Ok(payload) => decode_payload::<R::Reply>(payload)
            .map_err(|e| CallError::BadReply(ReplyError::Malformed(e))),
        Outcome::Protocol(e) => Err(CallError::Protocol(e)),
        Outcome::Refused(r) => Err(CallError::Refused(r)),
    }
}
