//! [`Transport`]: how a request reaches the manager and its reply comes back.
//!
//! The client library only ever hands the transport bytes and reads bytes back, so a VMM built
//! elsewhere links the same library and swaps only this (a QNX channel, a shared-memory mailbox,
//! the host loopback of the tests).

use crate::error::TransportError;

/// Carries one request to the manager and its reply back.
pub trait Transport {
    /// Sends `request` and waits for the reply, written to the front of `reply`; returns its
    /// length.
    ///
    /// # Errors
    /// [`TransportError::NoManager`] when no manager is running (what connecting reports),
    /// [`TransportError::Disconnected`] when it went away, or a transport-specific failure.
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        (**self).call(request, reply)
    }
}

/// The transport of a VMM that found no manager to talk to (its channel does not exist):
/// every call fails with [`TransportError::NoManager`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NoManager;

impl Transport for NoManager {
    fn call(&mut self, _request: &[u8], _reply: &mut [u8]) -> Result<usize, TransportError> {
        Err(TransportError::NoManager)
    }
}
