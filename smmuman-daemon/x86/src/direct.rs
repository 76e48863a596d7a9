//! [`Direct`]: a synchronous [`Transport`] for a host without task switching. A client's call runs
//! the manager's loop body in place: drain the IOMMU's fault records (what the aarch64 daemon's
//! loop does between rounds, `Manager::on_iommu_event`), retry orphans at a bounded rate
//! (`Manager::retry_orphans_paced`), then answer the request (`Manager::handle`). Only bytes
//! cross, as over a mailbox: the client holds no reference to the manager it could call past the
//! protocol, and dropping the transport is the client going away (`Manager::client_gone`), like a
//! VMM whose channel closed.
//!
//! The manager sits in a [`RefCell`] that the host and every [`Direct`] share; a call never
//! re-enters (the manager calls no client), so a borrow fails only on a host bug, and then the
//! call reports [`TransportError::Other`] instead of panicking.

use core::cell::RefCell;
use core::time::Duration;
use iommu_core::IommuBackend;
use smmuman_api::{ClientId, Transport, TransportError};
use smmuman_server::Manager;

/// [`TransportError::Other`] code: the manager was already borrowed (a re-entrant call).
pub const BUSY: i32 = -16;

/// One client's end of a direct call into `manager`.
pub struct Direct<'m, B: IommuBackend> {
    manager: &'m RefCell<Manager<B>>,
    client: ClientId,
    now: fn() -> Duration,
}

impl<'m, B: IommuBackend> Direct<'m, B> {
    /// The transport of `client` (the host chooses the id, as the daemon numbers mailboxes).
    pub fn new(manager: &'m RefCell<Manager<B>>, client: ClientId, now: fn() -> Duration) -> Self {
        Self {
            manager,
            client,
            now,
        }
    }

    /// The id the manager sees.
    pub fn client(&self) -> ClientId {
        self.client
    }
}

impl<B: IommuBackend> Transport for Direct<'_, B> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        let mut m = self
            .manager
            .try_borrow_mut()
            .map_err(|_| TransportError::Other { code: BUSY })?;
        // The loop's poll: records raised since the last call go to their owners' ledgers now,
        // before this request can change an owner.
        let now = (self.now)();
        if let Err(e) = m.on_iommu_event(now) {
            log::error!("fault drain failed: {e:?}");
        }
        // And its retry of orphans, at a bounded rate: what the IOMMU now confirms is free
        // before this request is served (the manager logs each release).
        m.retry_orphans_paced(now);
        Ok(m.handle(self.client, request, reply))
    }
}

impl<B: IommuBackend> Drop for Direct<'_, B> {
    /// The client went away: the manager puts its devices back in deny and drops its objects.
    fn drop(&mut self) {
        match self.manager.try_borrow_mut() {
            Ok(mut m) => {
                m.client_gone(self.client);
            }
            Err(_) => log::error!(
                "client {} went away while the manager was borrowed: not cleaned up",
                self.client
            ),
        }
    }
}
