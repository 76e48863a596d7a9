//! The resident loop: receive → dispatch → reply, plus client departures and IOMMU events.
//!
//! The transport is the daemon's business ([`Endpoint`]: a shared-memory mailbox, a kernel
//! channel, the host loopback); the loop only moves bytes between it and
//! [`Manager::handle`], so clients and server never share state.

use crate::manager::{Manager, Notification};
use core::time::Duration;
use iommu_core::IommuBackend;
use smmuman_api::message::encode_protocol_error;
use smmuman_api::{ClientId, ProtocolError, MAX_MESSAGE};

/// The monotonic clock fault records are stamped with.
pub trait Clock {
    /// Time since an arbitrary fixed origin (boot, on the board).
    fn now(&self) -> Duration;
}

/// What the transport has for the server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Received {
    /// A request of `len` bytes from `client` is in the buffer; answer it with
    /// [`Endpoint::reply`].
    Request {
        /// The sender, as the transport identifies it (never taken from the message).
        client: ClientId,
        /// Its length.
        len: usize,
    },
    /// The client went away (process exit, closed channel).
    ClientGone(ClientId),
    /// The IOMMU raised its event-queue or GERROR interrupt.
    IommuEvent,
    /// Stop serving.
    Stop,
}

/// The server's end of a transport.
pub trait Endpoint {
    /// Waits for the next thing to do; a request's bytes go into `buf`.
    fn receive(&mut self, buf: &mut [u8; MAX_MESSAGE]) -> Received;
    /// Sends `reply` to `client`, answering its last request.
    fn reply(&mut self, client: ClientId, reply: &[u8]);
    /// Delivers a fault notification.
    fn notify(&mut self, note: Notification);
}

/// What one [`step`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step<E> {
    /// Handled a request, a departure or an IOMMU event.
    Continued,
    /// The endpoint asked to stop.
    Stopped,
    /// The IOMMU reported a failure it could not recover from while draining faults
    /// (already logged; the daemon decides whether to go on).
    IommuFailed(E),
}

/// Receives one thing from `endpoint` and handles it: a request is dispatched and answered, a
/// departed client's objects are destroyed, an IOMMU event drains the faults. Before that,
/// orphans are retried at a bounded rate ([`Manager::retry_orphans_paced`]). Fired
/// notifications are delivered before returning.
pub fn step<B: IommuBackend, E: Endpoint, C: Clock>(
    manager: &mut Manager<B>,
    endpoint: &mut E,
    clock: &C,
    buf: &mut [u8; MAX_MESSAGE],
) -> Step<B::Error> {
    let received = endpoint.receive(buf);
    // Memory and devices an orphan gives back are free before the request is served.
    manager.retry_orphans_paced(clock.now());
    let step = match received {
        Received::Request { client, len } => {
            let mut reply = [0u8; MAX_MESSAGE];
            let n = match buf.get(..len) {
                Some(request) => manager.handle(client, request, &mut reply),
                // The endpoint claims more bytes than a message can have.
                None => {
                    let e = ProtocolError::BadSize {
                        got: len as u64,
                        expected: MAX_MESSAGE as u64,
                    };
                    let (op, id) = smmuman_api::header::Header::salvage(buf);
                    encode_protocol_error(op, id, &e, &mut reply)
                }
            };
            endpoint.reply(client, reply.get(..n).unwrap_or(&reply));
            Step::Continued
        }
        Received::ClientGone(client) => {
            manager.client_gone(client);
            Step::Continued
        }
        Received::IommuEvent => match manager.on_iommu_event(clock.now()) {
            Ok(_) => Step::Continued,
            Err(e) => Step::IommuFailed(e),
        },
        Received::Stop => Step::Stopped,
    };
    while let Some(note) = manager.take_notification() {
        endpoint.notify(note);
    }
    step
}

/// Serves until the endpoint says stop. IOMMU failures are logged and serving goes on; a daemon
/// that wants to react to them calls [`step`] itself.
pub fn serve<B: IommuBackend, E: Endpoint, C: Clock>(
    manager: &mut Manager<B>,
    endpoint: &mut E,
    clock: &C,
) {
    let mut buf = [0u8; MAX_MESSAGE];
    loop {
        match step(manager, endpoint, clock, &mut buf) {
            Step::Continued | Step::IommuFailed(_) => {}
            Step::Stopped => return,
        }
    }
}
