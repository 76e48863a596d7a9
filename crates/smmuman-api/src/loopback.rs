//! A host loopback transport (feature `loopback`): the manager sits on the other side of std
//! channels, usually in its own thread. Only bytes cross: requests and replies are byte
//! vectors, notifications are object ids, and nothing else is shared.
//!
//! ```text
//!  Client<ChannelTransport> ──request bytes──▶ ServerPort::receive ─▶ dispatch
//!                           ◀──reply bytes──── ServerPort::reply
//!                           ◀──object id────── ServerPort::notify
//! ```

use crate::error::{ProtocolError, TransportError};
use crate::header::Header;
use crate::message::encode_protocol_error;
use crate::transport::Transport;
use crate::types::{ClientId, ObjectId};
use crate::wire::MAX_MESSAGE;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;
use std::vec::Vec;

enum Packet {
    Request {
        client: ClientId,
        bytes: Vec<u8>,
        reply: Sender<Vec<u8>>,
        notify: Sender<ObjectId>,
    },
    Gone(ClientId),
    Interrupt,
    Stop,
}

/// A new loopback: the [`Connector`] opens client transports, the [`ServerPort`] is the
/// manager's end.
pub fn channel() -> (Connector, ServerPort) {
    let (tx, rx) = mpsc::channel();
    let connector = Connector {
        tx,
        next: Arc::new(AtomicU32::new(1)),
    };
    let port = ServerPort {
        rx,
        pending: None,
        notify: BTreeMap::new(),
    };
    (connector, port)
}

/// Opens client transports to one [`ServerPort`], and signals it out of band.
#[derive(Clone, Debug)]
pub struct Connector {
    tx: Sender<Packet>,
    next: Arc<AtomicU32>,
}

impl Connector {
    /// A transport for a new client (ids count up from 1).
    pub fn open(&self) -> ChannelTransport {
        let (notes_tx, notes) = mpsc::channel();
        ChannelTransport {
            client: ClientId(self.next.fetch_add(1, Ordering::Relaxed)),
            tx: self.tx.clone(),
            notes_tx,
            notes,
            answered: false,
        }
    }

    /// Signals the server as the IOMMU's interrupt would; `false` when it is gone.
    pub fn interrupt(&self) -> bool {
        self.tx.send(Packet::Interrupt).is_ok()
    }

    /// Asks the server loop to stop; `false` when it is gone.
    pub fn stop(&self) -> bool {
        self.tx.send(Packet::Stop).is_ok()
    }
}

/// A client's end of the loopback. Dropping it tells the server the client went away.
#[derive(Debug)]
pub struct ChannelTransport {
    client: ClientId,
    tx: Sender<Packet>,
    notes_tx: Sender<ObjectId>,
    notes: Receiver<ObjectId>,
    answered: bool,
}

impl ChannelTransport {
    /// The id the server will see for this client.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// A fault notification that arrived, if any (the object it is about).
    pub fn try_notification(&self) -> Option<ObjectId> {
        self.notes.try_recv().ok()
    }

    /// Waits up to `timeout` for a fault notification.
    pub fn wait_notification(&self, timeout: Duration) -> Option<ObjectId> {
        self.notes.recv_timeout(timeout).ok()
    }

    fn lost(&self) -> TransportError {
        if self.answered {
            TransportError::Disconnected
        } else {
            TransportError::NoManager
        }
    }
}

impl Transport for ChannelTransport {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let packet = Packet::Request {
            client: self.client,
            bytes: request.to_vec(),
            reply: reply_tx,
            notify: self.notes_tx.clone(),
        };
        self.tx.send(packet).map_err(|_| self.lost())?;
        let bytes = reply_rx.recv().map_err(|_| self.lost())?;
        self.answered = true;
        let dst = reply
            .get_mut(..bytes.len())
            .ok_or(TransportError::ReplyTooLong { len: bytes.len() })?;
        dst.copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

impl Drop for ChannelTransport {
    fn drop(&mut self) {
        // The server may be gone already; then there is nobody to tell.
        let _ = self.tx.send(Packet::Gone(self.client));
    }
}

/// What the server's end received.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PortEvent {
    /// A request of `len` bytes from `client`, now in the buffer; answer with
    /// [`ServerPort::reply`].
    Request {
        /// The sender, as the channel identifies it.
        client: ClientId,
        /// Bytes in the buffer.
        len: usize,
    },
    /// The client's transport was dropped.
    Gone(ClientId),
    /// An out-of-band signal (the IOMMU's interrupt, in tests).
    Interrupt,
    /// The loop should stop (asked for, or every sender is gone).
    Stop,
}

/// The manager's end of the loopback.
#[derive(Debug)]
pub struct ServerPort {
    rx: Receiver<Packet>,
    pending: Option<Sender<Vec<u8>>>,
    notify: BTreeMap<ClientId, Sender<ObjectId>>,
}

impl ServerPort {
    /// Waits for the next event; a request's bytes are copied into `buf`.
    ///
    /// A request longer than [`MAX_MESSAGE`] never reaches the caller: the port answers it
    /// with a size error itself.
    pub fn receive(&mut self, buf: &mut [u8; MAX_MESSAGE]) -> PortEvent {
        loop {
            let Ok(packet) = self.rx.recv() else {
                return PortEvent::Stop;
            };
            match packet {
                Packet::Request {
                    client,
                    bytes,
                    reply,
                    notify,
                } => {
                    self.notify.insert(client, notify);
                    if bytes.len() > MAX_MESSAGE {
                        let (op, id) = Header::salvage(&bytes);
                        let e = ProtocolError::BadSize {
                            got: bytes.len() as u64,
                            expected: MAX_MESSAGE as u64,
                        };
                        let mut out = [0u8; MAX_MESSAGE];
                        let n = encode_protocol_error(op, id, &e, &mut out);
                        let _ = reply.send(out.get(..n).unwrap_or(&out).to_vec());
                        continue;
                    }
                    if let Some(dst) = buf.get_mut(..bytes.len()) {
                        dst.copy_from_slice(&bytes);
                    }
                    self.pending = Some(reply);
                    return PortEvent::Request {
                        client,
                        len: bytes.len(),
                    };
                }
                Packet::Gone(client) => {
                    self.notify.remove(&client);
                    return PortEvent::Gone(client);
                }
                Packet::Interrupt => return PortEvent::Interrupt,
                Packet::Stop => return PortEvent::Stop,
            }
        }
    }

    /// Answers the request last received; `false` when there is none or its client is gone.
    pub fn reply(&mut self, bytes: &[u8]) -> bool {
        self.pending
            .take()
            .is_some_and(|tx| tx.send(bytes.to_vec()).is_ok())
    }

    /// Delivers a fault notification about `object` to `client`; `false` when the client is
    /// unknown or gone.
    pub fn notify(&mut self, client: ClientId, object: ObjectId) -> bool {
        self.notify
            .get(&client)
            .is_some_and(|tx| tx.send(object).is_ok())
    }
}
