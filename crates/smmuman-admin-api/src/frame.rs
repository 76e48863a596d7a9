//! Messages on a byte stream (the operator's channel: a socket on the developer's machine,
//! a UART or virtio console on the board).
//!
//! A message travels as it is: its 16-byte header, then `payload_len` bytes. Nothing is added:
//! the header delimits it. A receiver reads the 16 header bytes, checks them with
//! [`frame_len`] (magic, version, and a `payload_len` that keeps the message within
//! `MAX_MESSAGE`), then reads the rest. A header that fails the check means the two ends are
//! out of step (or the peer speaks something else): the receiver drops the connection rather
//! than guess where the next message starts. One request is outstanding at a time; the reply
//! carries the request's id.

use smmuman_api::wire::{HEADER_LEN, MAGIC, MAX_MESSAGE, VERSION};
use smmuman_api::ProtocolError;

/// The length of the whole message whose first [`HEADER_LEN`] bytes are `header`.
///
/// # Errors
/// [`ProtocolError::BadMagic`], [`ProtocolError::BadVersion`] or [`ProtocolError::BadSize`]
/// (a message longer than `MAX_MESSAGE`): the stream cannot be trusted past this header.
pub fn frame_len(header: &[u8; HEADER_LEN]) -> Result<usize, ProtocolError> {
    let magic = u16::from_le_bytes([header[0], header[1]]);
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic { got: magic });
    }
    if header[2] != VERSION {
        return Err(ProtocolError::BadVersion {
            got: header[2],
            supported: VERSION,
        });
    }
    let len = HEADER_LEN + usize::from(u16::from_le_bytes([header[8], header[9]]));
    if len > MAX_MESSAGE {
        return Err(ProtocolError::BadSize {
            got: len as u64,
            expected: MAX_MESSAGE as u64,
        });
    }
    Ok(len)
}

/// Gathers one message from a byte stream fed in pieces (the daemon side: a UART's or a
/// console's bytes as they come).
#[derive(Debug)]
pub struct Deframer {
    buf: [u8; MAX_MESSAGE],
    have: usize,
    want: usize,
}

impl Default for Deframer {
    fn default() -> Self {
        Self {
            buf: [0; MAX_MESSAGE],
            have: 0,
            want: HEADER_LEN,
        }
    }
}

/// What one byte did to a [`Deframer`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fed {
    /// More bytes are needed.
    Partial,
    /// A whole message of this length is in [`Deframer::message`].
    Message(usize),
    /// The header was refused; the deframer is empty again and the connection should be
    /// dropped (or resynchronised by the transport).
    Refused(ProtocolError),
}

impl Deframer {
    /// Takes one byte.
    pub fn feed(&mut self, byte: u8) -> Fed {
        if self.have >= self.want {
            // A message was returned: start the next one.
            self.have = 0;
            self.want = HEADER_LEN;
        }
        if let Some(slot) = self.buf.get_mut(self.have) {
            *slot = byte;
        }
        self.have += 1;
        if self.have == HEADER_LEN && self.want == HEADER_LEN {
            let mut head = [0u8; HEADER_LEN];
            head.copy_from_slice(self.buf.get(..HEADER_LEN).unwrap_or(&[0; HEADER_LEN]));
            match frame_len(&head) {
                Ok(n) => self.want = n,
                Err(e) => {
                    self.have = 0;
                    return Fed::Refused(e);
                }
            }
        }
        if self.have == self.want {
            Fed::Message(self.want)
        } else {
            Fed::Partial
        }
    }

    /// The last whole message (valid after [`Fed::Message`]).
    pub fn message(&self) -> &[u8] {
        self.buf.get(..self.have.min(self.want)).unwrap_or(&[])
    }
}
