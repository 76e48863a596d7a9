//! The client handles: a fixed table of connections, so the library needs no heap, and a
//! handle C got wrong (never connected, disconnected, made up) is refused with
//! `SMMU_ERR_BAD_CLIENT` instead of being followed as a pointer.
//!
//! A handle is `index + 1` in its low 8 bits and the slot's generation in the 24 above: a
//! handle kept after `smmu_disconnect` stays refused when the slot is reused.

use crate::status::{
    smmu_status, Failure, SMMU_ERR_BAD_CLIENT, SMMU_ERR_CLIENT_BUSY, SMMU_ERR_NO_SLOT, SMMU_OK,
};
use crate::transport::CTransport;
use smmuman_api::{CallError, Client};

/// A connection to the manager, as C holds it. `0` ([`SMMU_NO_CLIENT`]) is never a connection.
#[allow(non_camel_case_types)]
pub type smmu_client_t = u32;

/// Not a client: what `smmu_vmm_decide` takes when connecting failed.
pub const SMMU_NO_CLIENT: smmu_client_t = 0;

/// Clients connected at once, at most (per program).
pub const SMMU_MAX_CLIENTS: usize = 8;

/// One connection and the last failure of a call on it.
pub(crate) struct Entry {
    pub client: Client<CTransport>,
    pub last: Option<Failure>,
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        generation: 0,
        entry: None,
    };
}

static SLOTS: [spin::Mutex<Slot>; SMMU_MAX_CLIENTS] =
    [const { spin::Mutex::new(Slot::EMPTY) }; SMMU_MAX_CLIENTS];

const GENERATION_MASK: u32 = 0x00ff_ffff;

fn handle(index: usize, generation: u32) -> smmu_client_t {
    let low = u32::try_from(index).unwrap_or(0).wrapping_add(1) & 0xff;
    ((generation & GENERATION_MASK) << 8) | low
}

fn slot_of(h: smmu_client_t) -> Option<(usize, u32)> {
    let index = usize::try_from(h & 0xff).ok()?.checked_sub(1)?;
    Some((index, h >> 8))
}

/// Connects a new client over `transport` in a free slot.
pub(crate) fn connect(transport: CTransport) -> Result<smmu_client_t, smmu_status> {
    for (index, slot) in SLOTS.iter().enumerate() {
        let Some(mut slot) = slot.try_lock() else {
            continue;
        };
        if slot.entry.is_some() {
            continue;
        }
        let client = Client::connect(transport).map_err(|e| crate::status::call_status(&e))?;
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        slot.entry = Some(Entry { client, last: None });
        return Ok(handle(index, slot.generation));
    }
    Err(SMMU_ERR_NO_SLOT)
}

/// Disconnects `h`: its transport is dropped (the caller's `ctx` is not touched).
pub(crate) fn disconnect(h: smmu_client_t) -> smmu_status {
    let Some((index, generation)) = slot_of(h) else {
        return SMMU_ERR_BAD_CLIENT;
    };
    let Some(slot) = SLOTS.get(index) else {
        return SMMU_ERR_BAD_CLIENT;
    };
    let Some(mut slot) = slot.try_lock() else {
        return SMMU_ERR_CLIENT_BUSY;
    };
    if slot.generation != generation || slot.entry.is_none() {
        return SMMU_ERR_BAD_CLIENT;
    }
    slot.entry = None;
    SMMU_OK
}

/// Runs `f` on client `h`'s entry; a failure is recorded as its last error and turned into
/// its status.
pub(crate) fn with<T>(
    h: smmu_client_t,
    f: impl FnOnce(&mut Client<CTransport>) -> Result<T, Failure>,
) -> Result<T, smmu_status> {
    with_entry(h, |entry| {
        let r = f(&mut entry.client);
        entry.last = r.as_ref().err().copied();
        r.map_err(|e| e.status())
    })
}

/// Runs `f` on client `h`'s entry as it is.
pub(crate) fn with_entry<T>(
    h: smmu_client_t,
    f: impl FnOnce(&mut Entry) -> Result<T, smmu_status>,
) -> Result<T, smmu_status> {
    let (index, generation) = slot_of(h).ok_or(SMMU_ERR_BAD_CLIENT)?;
    let slot = SLOTS.get(index).ok_or(SMMU_ERR_BAD_CLIENT)?;
    let mut slot = slot.try_lock().ok_or(SMMU_ERR_CLIENT_BUSY)?;
    if slot.generation != generation {
        return Err(SMMU_ERR_BAD_CLIENT);
    }
    let entry = slot.entry.as_mut().ok_or(SMMU_ERR_BAD_CLIENT)?;
    f(entry)
}

/// A call error as a [`Failure`] (for `?` in the entry points).
pub(crate) fn call(e: CallError) -> Failure {
    Failure::Call(e)
}
