//! The operator's channel over a byte port: bytes are gathered into messages
//! (`smmuman_admin_api::frame::Deframer`), each message is dispatched, its reply written back.
//!
//! A UART has no connection to drop when a header is refused (wrong magic, version, or a
//! length past `MAX_MESSAGE`): the channel counts it and discards what is still waiting in
//! this poll, so the next request, sent when `smmuctl` has given up on this one, starts on a
//! message boundary again.

use crate::mmio::Mmio;
use crate::pl011::Pl011;
use smmuman_admin_api::frame::{Deframer, Fed};
use smmuman_api::wire::MAX_MESSAGE;

/// A byte stream: what the channel needs from a UART.
pub trait BytePort {
    /// The next received byte, if one is waiting.
    fn read_byte(&mut self) -> Option<u8>;
    /// Sends one byte.
    fn write_byte(&mut self, byte: u8);
}

impl<M: Mmio> BytePort for Pl011<M> {
    fn read_byte(&mut self) -> Option<u8> {
        Pl011::read_byte(self)
    }
    fn write_byte(&mut self, byte: u8) {
        Pl011::write_byte(self, byte);
    }
}

/// Most bytes one poll reads: one whole message and the next one's start. The host loop
/// polls once per pass, so a flood on the channel cannot hold the VMs up for long.
pub const BYTES_PER_POLL: usize = MAX_MESSAGE + 64;

/// What one poll did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Polled {
    /// Requests answered.
    pub answered: u32,
    /// Headers refused (the bytes after them in this poll were discarded).
    pub refused: u32,
}

/// The channel: a port, the message being gathered, the reply buffer.
pub struct Channel<P> {
    port: P,
    deframer: Deframer,
    reply: [u8; MAX_MESSAGE],
}

impl<P: BytePort> Channel<P> {
    /// A channel over `port`.
    pub fn new(port: P) -> Self {
        Self {
            port,
            deframer: Deframer::default(),
            reply: [0; MAX_MESSAGE],
        }
    }

    /// Reads what is waiting (at most [`BYTES_PER_POLL`] bytes); every whole message is handed
    /// to `dispatch(request, reply)`, which returns the reply's length, and the reply is sent.
    pub fn poll(&mut self, mut dispatch: impl FnMut(&[u8], &mut [u8]) -> usize) -> Polled {
        let mut polled = Polled::default();
        let mut discarding = false;
        for _ in 0..BYTES_PER_POLL {
            let Some(byte) = self.port.read_byte() else {
                break;
            };
            if discarding {
                continue;
            }
            match self.deframer.feed(byte) {
                Fed::Partial => {}
                Fed::Message(_) => {
                    let len = dispatch(self.deframer.message(), &mut self.reply);
                    for &b in self.reply.get(..len).unwrap_or(&[]) {
                        self.port.write_byte(b);
                    }
                    polled.answered += 1;
                }
                Fed::Refused(_) => {
                    polled.refused += 1;
                    discarding = true;
                }
            }
        }
        polled
    }

    /// The port (for tests and the board half).
    pub fn port(&self) -> &P {
        &self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager_task::setup::{iova_space, PAGE_SIZES};
    use core::time::Duration;
    use smmuman_admin_api::client::{decode_reply, encode_request};
    use smmuman_admin_api::frame::frame_len;
    use smmuman_admin_api::{AdminHelloRequest, ADMIN_VERSION};
    use smmuman_api::wire::HEADER_LEN;
    use smmuman_server::admin::{self, StaticHost};
    use smmuman_server::fake::FakeIommu;
    use smmuman_server::{Manager, ManagerConfig};
    use std::collections::VecDeque;

    /// A port whose input is a queue and whose output is collected.
    #[derive(Default)]
    struct Port {
        input: VecDeque<u8>,
        output: Vec<u8>,
    }

    impl BytePort for Port {
        fn read_byte(&mut self) -> Option<u8> {
            self.input.pop_front()
        }
        fn write_byte(&mut self, byte: u8) {
            self.output.push(byte);
        }
    }

    /// An admin request as `smmuctl` sends it: `admin_hello`, id 7.
    fn hello() -> Vec<u8> {
        let mut buf = [0u8; MAX_MESSAGE];
        let n = encode_request(&AdminHelloRequest {}, 7, &mut buf);
        buf[..n].to_vec()
    }

    fn manager() -> Manager<FakeIommu> {
        let config = ManagerConfig {
            devices: &[],
            reserved: &[],
            iova_ranges: &[iova_space(48)],
            page_sizes: PAGE_SIZES,
            fault_log_depth: 16,
            max_mappings_per_object: 16,
            max_mappings: 16,
            clock: || Duration::ZERO,
        };
        Manager::new(FakeIommu::new(), &config).unwrap()
    }

    #[test]
    fn a_request_split_over_polls_is_answered_once_whole() {
        let mut m = manager();
        let mut ch = Channel::new(Port::default());
        let req = hello();
        let (a, b) = req.split_at(5);
        ch.port.input.extend(a);
        let serve = |m: &mut _, r: &[u8], out: &mut [u8]| {
            admin::handle(m, &mut StaticHost::default(), Default::default(), r, out)
        };
        assert_eq!(ch.poll(|r, o| serve(&mut m, r, o)).answered, 0);
        assert!(ch.port.output.is_empty());
        ch.port.input.extend(b);
        assert_eq!(ch.poll(|r, o| serve(&mut m, r, o)).answered, 1);
        let reply = &ch.port.output;
        let head: [u8; HEADER_LEN] = reply[..HEADER_LEN].try_into().unwrap();
        assert_eq!(frame_len(&head).unwrap(), reply.len(), "one whole reply");
        let hello = decode_reply::<AdminHelloRequest>(reply, 7).unwrap();
        assert_eq!(hello.admin_version, ADMIN_VERSION);
    }

    #[test]
    fn a_bad_header_is_refused_and_the_next_request_is_served() {
        let mut m = manager();
        let mut ch = Channel::new(Port::default());
        let mut bad = hello();
        bad[0] ^= 0xff;
        ch.port.input.extend(&bad);
        let mut calls = 0;
        let p = ch.poll(|r, o| {
            calls += 1;
            admin::handle(&mut m, &mut StaticHost::default(), Default::default(), r, o)
        });
        assert_eq!((p.answered, p.refused, calls), (0, 1, 0));
        assert!(
            ch.port.output.is_empty(),
            "nothing answered to a bad header"
        );
        // The next request, in a later poll, starts on a boundary and is answered.
        ch.port.input.extend(hello());
        let p = ch.poll(|r, o| {
            admin::handle(&mut m, &mut StaticHost::default(), Default::default(), r, o)
        });
        assert_eq!((p.answered, p.refused), (1, 0));
    }

    #[test]
    fn a_flood_is_read_a_bounded_amount_per_poll() {
        let mut ch = Channel::new(Port::default());
        ch.port
            .input
            .extend(std::iter::repeat_n(0u8, 10 * MAX_MESSAGE));
        ch.poll(|_, _| 0);
        assert_eq!(ch.port.input.len(), 10 * MAX_MESSAGE - BYTES_PER_POLL);
    }
}
