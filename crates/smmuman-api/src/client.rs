//! [`Client`]: typed calls to the manager over any [`Transport`].
//!
//! The per-op methods (`create_object`, `attach`, `map`...) are generated from the op table in
//! [`crate::interface`]; this file holds what they share.

use crate::error::CallError;
use crate::message::{decode_reply, encode_request, Request};
use crate::transport::Transport;
use crate::types::ClientId;
use crate::wire::MAX_MESSAGE;

/// A connection to the manager.
#[derive(Debug)]
pub struct Client<T: Transport> {
    pub(crate) transport: T,
    pub(crate) id: ClientId,
    pub(crate) next_request: u32,
    /// The request and reply buffers, kept across calls: zeroing 2 KiB per call was a fifth of
    /// a round trip. Only the bytes a call writes (or receives) are ever read.
    pub(crate) buffers: Buffers,
}

/// A message each way.
#[derive(Debug)]
pub(crate) struct Buffers {
    out: [u8; MAX_MESSAGE],
    back: [u8; MAX_MESSAGE],
}

impl Buffers {
    pub(crate) const fn new() -> Self {
        Self {
            out: [0; MAX_MESSAGE],
            back: [0; MAX_MESSAGE],
        }
    }
}

impl<T: Transport> Client<T> {
    /// Connects: says hello over `transport` and learns the id the manager knows us by.
    ///
    /// # Errors
    /// [`CallError::Transport`] with [`TransportError::NoManager`](crate::TransportError) when
    /// no manager is running; [`CallError::Protocol`] when it speaks another protocol version.
    pub fn connect(transport: T) -> Result<Self, CallError> {
        let mut client = Self {
            transport,
            id: ClientId(0),
            next_request: 1,
            buffers: Buffers::new(),
        };
        client.id = client.hello()?.client;
        Ok(client)
    }

    /// The id the manager knows us by.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The transport (to wait for notifications, for instance).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends `req` and decodes its reply.
    pub(crate) fn call<R: Request>(&mut self, req: &R) -> Result<R::Reply, CallError> {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let Buffers { out, back } = &mut self.buffers;
        let n = encode_request(req, id, out);
        let got = self.transport.call(out.get(..n).unwrap_or(out), back)?;
        let bytes = back.get(..got).ok_or(CallError::Transport(
            crate::error::TransportError::ReplyTooLong { len: got },
        ))?;
        decode_reply::<R>(bytes, id)
    }
}
