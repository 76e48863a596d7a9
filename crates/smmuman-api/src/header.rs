//! The fixed 16-byte header in front of every message, and the reply status.
//!
//! | offset | size | field        | rule                                                     |
//! |-------:|-----:|--------------|----------------------------------------------------------|
//! | 0      | 2    | `magic`      | [`MAGIC`]                                                |
//! | 2      | 1    | `version`    | [`VERSION`]                                              |
//! | 3      | 1    | `flags`      | bit 0 = reply; other bits 0                              |
//! | 4      | 2    | `op`         | operation number                                         |
//! | 6      | 2    | `status`     | 0 in requests; [`Status`] in replies                     |
//! | 8      | 2    | `payload_len`| bytes after the header; header + payload ≤ [`MAX_MESSAGE`] |
//! | 10     | 2    | reserved     | 0                                                        |
//! | 12     | 4    | `request_id` | chosen by the client, echoed in the reply                |

use crate::error::{DomainError, ProtocolError};
use crate::wire::{Reader, Writer, HEADER_LEN, MAGIC, MAX_MESSAGE, VERSION};

/// `flags` bit 0: the message is a reply.
pub const FLAG_REPLY: u8 = 1 << 0;

/// A decoded header (magic and version are implied: parsing checks them, encoding writes them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// [`FLAG_REPLY`] or 0.
    pub flags: u8,
    /// Operation number.
    pub op: u16,
    /// 0 in a request; a [`Status`] in a reply.
    pub status: u16,
    /// Bytes after the header.
    pub payload_len: u16,
    /// Chosen by the client, echoed by the server.
    pub request_id: u32,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn put(&self, out: &mut [u8]) {
        let mut w = Writer::new(out);
        w.u16(MAGIC);
        w.u8(VERSION);
        w.u8(self.flags);
        w.u16(self.op);
        w.u16(self.status);
        w.u16(self.payload_len);
        w.u16(0);
        w.u32(self.request_id);
    }

    /// Splits a message into its header and payload, checking size, magic, version, the
    /// reserved field and that `payload_len` matches the bytes that follow.
    ///
    /// # Errors
    /// The first [`ProtocolError`] found, in that order.
    pub fn parse(msg: &[u8]) -> Result<(Header, &[u8]), ProtocolError> {
        if msg.len() < HEADER_LEN {
            return Err(ProtocolError::BadSize {
                got: msg.len() as u64,
                expected: HEADER_LEN as u64,
            });
        }
        if msg.len() > MAX_MESSAGE {
            return Err(ProtocolError::BadSize {
                got: msg.len() as u64,
                expected: MAX_MESSAGE as u64,
            });
        }
        let (head, payload) = msg.split_at(HEADER_LEN);
        let mut r = Reader::new(head);
        // Cannot fail: `head` is HEADER_LEN bytes long; the errors map to BadSize regardless.
        let short = |_| ProtocolError::BadSize {
            got: msg.len() as u64,
            expected: HEADER_LEN as u64,
        };
        let magic = r.u16().map_err(short)?;
        let version = r.u8().map_err(short)?;
        let flags = r.u8().map_err(short)?;
        let op = r.u16().map_err(short)?;
        let status = r.u16().map_err(short)?;
        let payload_len = r.u16().map_err(short)?;
        let reserved = r.u16().map_err(short)?;
        let request_id = r.u32().map_err(short)?;
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic { got: magic });
        }
        if version != VERSION {
            return Err(ProtocolError::BadVersion {
                got: version,
                supported: VERSION,
            });
        }
        if flags & !FLAG_REPLY != 0 {
            return Err(ProtocolError::BadHeader {
                offset: 3,
                value: flags.into(),
            });
        }
        if reserved != 0 {
            return Err(ProtocolError::BadHeader {
                offset: 10,
                value: reserved.into(),
            });
        }
        if usize::from(payload_len) != payload.len() {
            return Err(ProtocolError::BadSize {
                got: payload.len() as u64,
                expected: payload_len.into(),
            });
        }
        let header = Header {
            flags,
            op,
            status,
            payload_len,
            request_id,
        };
        Ok((header, payload))
    }

    /// [`Header::parse`] plus the request rules: no reply flag, status 0.
    ///
    /// # Errors
    /// The first [`ProtocolError`] found.
    pub fn parse_request(msg: &[u8]) -> Result<(Header, &[u8]), ProtocolError> {
        let (h, payload) = Self::parse(msg)?;
        if h.flags != 0 {
            return Err(ProtocolError::BadHeader {
                offset: 3,
                value: h.flags.into(),
            });
        }
        if h.status != 0 {
            return Err(ProtocolError::BadHeader {
                offset: 6,
                value: h.status.into(),
            });
        }
        Ok((h, payload))
    }

    /// The op number and request id of a message too broken to parse, read from where the
    /// header would hold them (0 when the message is too short), so a protocol-error reply can
    /// still name them.
    pub fn salvage(msg: &[u8]) -> (u16, u32) {
        let op = msg
            .get(4..6)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, u16::from_le_bytes);
        let id = msg
            .get(12..16)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        (op, id)
    }
}

/// The outcome a reply's `status` field carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    /// `0x0000`: done; the payload is the op's reply.
    Ok,
    /// `0x01cc`: the request was malformed; `cc` is [`ProtocolError::code`].
    Protocol(u8),
    /// `0x02cc`: the request was refused; `cc` is [`DomainError::code`].
    Domain(DomainError),
}

const CLASS_PROTOCOL: u16 = 0x0100;
const CLASS_DOMAIN: u16 = 0x0200;

impl Status {
    /// The 16-bit wire value.
    pub const fn to_u16(self) -> u16 {
        match self {
            Self::Ok => 0,
            Self::Protocol(c) => CLASS_PROTOCOL | c as u16,
            Self::Domain(e) => CLASS_DOMAIN | e.code() as u16,
        }
    }

    /// Decodes a wire value; `None` for a class or code nobody defined.
    pub fn from_u16(v: u16) -> Option<Self> {
        let code = (v & 0xff) as u8;
        match v & 0xff00 {
            0 if v == 0 => Some(Self::Ok),
            CLASS_PROTOCOL if (1..=crate::error::protocol_code::LAST).contains(&code) => {
                Some(Self::Protocol(code))
            }
            CLASS_DOMAIN => DomainError::from_code(code).map(Self::Domain),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload_len: u16) -> [u8; 64] {
        let mut buf = [0u8; 64];
        Header {
            flags: 0,
            op: 7,
            status: 0,
            payload_len,
            request_id: 0xdead_beef,
        }
        .put(&mut buf);
        buf
    }

    #[test]
    fn layout_matches_the_table() {
        let buf = msg(4);
        assert_eq!(
            &buf[..16],
            &[0x53, 0x4d, 3, 0, 7, 0, 0, 0, 4, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]
        );
        let (h, payload) = Header::parse_request(&buf[..20]).unwrap();
        assert_eq!(h.op, 7);
        assert_eq!(h.request_id, 0xdead_beef);
        assert_eq!(payload.len(), 4);
    }

    #[test]
    fn every_header_rule_is_checked() {
        let ok = msg(0);
        assert_eq!(
            Header::parse(&ok[..15]),
            Err(ProtocolError::BadSize {
                got: 15,
                expected: 16
            })
        );
        assert_eq!(
            Header::parse(&[0u8; MAX_MESSAGE + 1]),
            Err(ProtocolError::BadSize {
                got: MAX_MESSAGE as u64 + 1,
                expected: MAX_MESSAGE as u64
            })
        );
        let mut m = ok;
        m[0] = 0;
        assert_eq!(
            Header::parse(&m[..16]),
            Err(ProtocolError::BadMagic { got: 0x4d00 })
        );
        let mut m = ok;
        m[2] = 1;
        assert_eq!(
            Header::parse(&m[..16]),
            Err(ProtocolError::BadVersion {
                got: 1,
                supported: 3
            })
        );
        let mut m = ok;
        m[3] = 2;
        assert_eq!(
            Header::parse(&m[..16]),
            Err(ProtocolError::BadHeader {
                offset: 3,
                value: 2
            })
        );
        let mut m = ok;
        m[3] = FLAG_REPLY;
        assert!(Header::parse(&m[..16]).is_ok());
        assert_eq!(
            Header::parse_request(&m[..16]),
            Err(ProtocolError::BadHeader {
                offset: 3,
                value: 1
            })
        );
        let mut m = ok;
        m[6] = 1;
        assert_eq!(
            Header::parse_request(&m[..16]),
            Err(ProtocolError::BadHeader {
                offset: 6,
                value: 1
            })
        );
        let mut m = ok;
        m[11] = 1;
        assert_eq!(
            Header::parse(&m[..16]),
            Err(ProtocolError::BadHeader {
                offset: 10,
                value: 0x100
            })
        );
        // payload_len lies
        assert_eq!(
            Header::parse(&ok[..20]),
            Err(ProtocolError::BadSize {
                got: 4,
                expected: 0
            })
        );
    }

    #[test]
    fn salvage_reads_what_is_there() {
        let m = msg(0);
        assert_eq!(Header::salvage(&m[..16]), (7, 0xdead_beef));
        assert_eq!(Header::salvage(&m[..5]), (0, 0));
    }

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_refused() {
        for s in [
            Status::Ok,
            Status::Protocol(6),
            Status::Domain(DomainError::Iommu),
        ] {
            assert_eq!(Status::from_u16(s.to_u16()), Some(s));
        }
        assert_eq!(Status::Domain(DomainError::Busy).to_u16(), 0x0202);
        assert_eq!(Status::from_u16(0x0107), None);
        assert_eq!(Status::from_u16(0x0100), None);
        assert_eq!(Status::from_u16(0x0200), None);
        assert_eq!(Status::from_u16(0x0300), None);
        assert_eq!(Status::from_u16(0x0001), None);
    }
}
