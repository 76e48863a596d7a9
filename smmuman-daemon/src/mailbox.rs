//! [`Mailbox`]: the channel between one client (a VMM) and the manager. Only bytes cross it.
//!
//! A mailbox is a one-message slot in memory both sides can reach. The client posts a request
//! and waits; the server, on its own execution context, takes the request, answers it and
//! leaves the reply in the slot; the client takes the reply. Neither side calls the other's
//! functions or touches the other's state: the manager's state lives on its side, the client's
//! on its own stack, and the slot holds only encoded messages (`docs/protocol.md`).
//!
//! The manager *opens* the mailbox when it starts serving; a client that finds it not open gets
//! [`TransportError::NoManager`], which is how a VMM learns that no manager is running. A client
//! that goes away *closes* it, and the manager then releases everything that client held.
//!
//! Waiting is the caller's business ([`MailboxTransport`] takes a `wait` function): on bare
//! metal it switches to the next execution context; in host tests it yields the thread.

use smmuman_api::wire::MAX_MESSAGE;
use smmuman_api::{Transport, TransportError};
use spin::Mutex;

/// Where the one message of a mailbox stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// The manager does not serve this mailbox (not started, or stopped).
    NotOpen,
    /// Open, no message in flight.
    Idle,
    /// The client posted a request the manager has not answered yet.
    Request,
    /// The manager left a reply the client has not taken yet.
    Reply,
    /// The client went away; the manager has not cleaned up after it yet.
    Closed,
    /// The manager cleaned up after the client; nothing more will cross.
    Released,
}

#[derive(Debug)]
struct Slot {
    state: State,
    len: usize,
    buf: [u8; MAX_MESSAGE],
    /// Notifications the manager sent that the client has not taken yet.
    notified: u32,
}

/// One client's channel to the manager.
#[derive(Debug)]
pub struct Mailbox {
    slot: Mutex<Slot>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Mailbox::serve`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Served {
    /// Nothing to do.
    Nothing,
    /// A request was answered.
    Answered,
    /// The client went away: the caller must release what it held (once).
    ClientGone,
}

impl Mailbox {
    /// A mailbox the manager has not opened yet.
    pub const fn new() -> Self {
        Self {
            slot: Mutex::new(Slot {
                state: State::NotOpen,
                len: 0,
                buf: [0; MAX_MESSAGE],
                notified: 0,
            }),
        }
    }

    /// Where the message stands.
    pub fn state(&self) -> State {
        self.slot.lock().state
    }

    /// The manager starts serving this mailbox.
    pub fn open(&self) {
        let mut s = self.slot.lock();
        if s.state == State::NotOpen {
            s.state = State::Idle;
        }
    }

    /// The client posts `request`.
    ///
    /// # Errors
    /// [`TransportError::NoManager`] when the manager never opened the mailbox;
    /// [`TransportError::Disconnected`] when it is closed; [`TransportError::Other`] (code 1)
    /// when a message is already in flight or the request is larger than a message.
    pub fn post(&self, request: &[u8]) -> Result<(), TransportError> {
        let mut s = self.slot.lock();
        match s.state {
            State::NotOpen => return Err(TransportError::NoManager),
            State::Closed | State::Released => return Err(TransportError::Disconnected),
            State::Request | State::Reply => return Err(TransportError::Other { code: 1 }),
            State::Idle => {}
        }
        let Some(dst) = s.buf.get_mut(..request.len()) else {
            return Err(TransportError::Other { code: 1 });
        };
        dst.copy_from_slice(request);
        s.len = request.len();
        s.state = State::Request;
        Ok(())
    }

    /// The client takes the reply into `out`, if it has arrived: `None` while it has not.
    pub fn take_reply(&self, out: &mut [u8]) -> Option<Result<usize, TransportError>> {
        let mut s = self.slot.lock();
        match s.state {
            State::Reply => {}
            State::Request => return None,
            State::NotOpen | State::Idle | State::Closed | State::Released => {
                return Some(Err(TransportError::Disconnected))
            }
        }
        s.state = State::Idle;
        let len = s.len;
        Some(match out.get_mut(..len) {
            Some(dst) => {
                dst.copy_from_slice(&s.buf[..len]);
                Ok(len)
            }
            None => Err(TransportError::ReplyTooLong { len }),
        })
    }

    /// The client goes away (a VMM exiting, or crashing).
    pub fn close(&self) {
        let mut s = self.slot.lock();
        if s.state != State::Released {
            s.state = State::Closed;
        }
    }

    /// The manager tells the client that something it armed fired (a fault record arrived).
    pub fn notify(&self) {
        let mut s = self.slot.lock();
        s.notified = s.notified.saturating_add(1);
    }

    /// The client takes the notifications sent since it last looked (0: none).
    pub fn take_notifications(&self) -> u32 {
        core::mem::take(&mut self.slot.lock().notified)
    }

    /// The manager answers a pending request with `answer(request, reply) -> reply length`,
    /// or notices that the client went away.
    pub fn serve(&self, answer: impl FnOnce(&[u8], &mut [u8]) -> usize) -> Served {
        let mut s = self.slot.lock();
        match s.state {
            State::Request => {
                let mut reply = [0u8; MAX_MESSAGE];
                let len = answer(&s.buf[..s.len], &mut reply).min(MAX_MESSAGE);
                s.buf[..len].copy_from_slice(&reply[..len]);
                s.len = len;
                s.state = State::Reply;
                Served::Answered
            }
            State::Closed => {
                s.state = State::Released;
                Served::ClientGone
            }
            _ => Served::Nothing,
        }
    }
}

/// A client's [`Transport`] over a [`Mailbox`]: post, then `wait()` until the reply is there.
pub struct MailboxTransport<'a, W: FnMut()> {
    mailbox: &'a Mailbox,
    wait: W,
}

impl<'a, W: FnMut()> MailboxTransport<'a, W> {
    /// A transport that waits with `wait` (switch to another execution context).
    pub fn new(mailbox: &'a Mailbox, wait: W) -> Self {
        Self { mailbox, wait }
    }
}

impl<W: FnMut()> Transport for MailboxTransport<'_, W> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        self.mailbox.post(request)?;
        loop {
            (self.wait)();
            if let Some(result) = self.mailbox.take_reply(reply) {
                return result;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn no_manager_until_opened() {
        let mb = Mailbox::new();
        let mut t = MailboxTransport::new(&mb, || panic!("must not wait"));
        let mut reply = [0; 8];
        assert_eq!(t.call(b"hi", &mut reply), Err(TransportError::NoManager));
    }

    #[test]
    fn a_request_crosses_and_its_reply_comes_back() {
        let mb = Arc::new(Mailbox::new());
        mb.open();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (mb, stop) = (mb.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(Ordering::SeqCst) {
                    let r = mb.serve(|req, out| {
                        out[..req.len()].copy_from_slice(req);
                        out[..req.len()].reverse();
                        req.len()
                    });
                    if r == Served::Answered {
                        answered += 1;
                    }
                    std::thread::yield_now();
                }
                answered
            })
        };
        let mut t = MailboxTransport::new(&mb, std::thread::yield_now);
        let mut reply = [0; 8];
        for _ in 0..3 {
            assert_eq!(t.call(b"abc", &mut reply), Ok(3));
            assert_eq!(&reply[..3], b"cba");
        }
        stop.store(true, Ordering::SeqCst);
        assert_eq!(server.join().unwrap(), 3);
    }

    #[test]
    fn too_long_a_reply_is_an_error_not_a_truncation() {
        let mb = Mailbox::new();
        mb.open();
        mb.post(b"x").unwrap();
        mb.serve(|_, out| {
            out[..4].copy_from_slice(b"long");
            4
        });
        let mut small = [0; 2];
        assert_eq!(
            mb.take_reply(&mut small),
            Some(Err(TransportError::ReplyTooLong { len: 4 }))
        );
    }

    #[test]
    fn an_oversized_request_is_refused() {
        let mb = Mailbox::new();
        mb.open();
        let big = [0u8; MAX_MESSAGE + 1];
        assert_eq!(mb.post(&big), Err(TransportError::Other { code: 1 }));
        assert_eq!(mb.state(), State::Idle);
    }

    #[test]
    fn notifications_are_counted_and_taken_once() {
        let mb = Mailbox::new();
        mb.open();
        assert_eq!(mb.take_notifications(), 0);
        mb.notify();
        mb.notify();
        assert_eq!(mb.take_notifications(), 2);
        assert_eq!(mb.take_notifications(), 0);
    }

    #[test]
    fn a_closed_client_is_released_once() {
        let mb = Mailbox::new();
        mb.open();
        mb.close();
        assert_eq!(mb.serve(|_, _| unreachable!()), Served::ClientGone);
        assert_eq!(mb.serve(|_, _| unreachable!()), Served::Nothing);
        assert_eq!(mb.post(b"x"), Err(TransportError::Disconnected));
    }
}
