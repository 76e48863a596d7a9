//! [`Owed`]: context-cache and IOTLB invalidations a requester is still owed.
//!
//! When a present context entry is made not present (or replaced), the unit may keep using
//! its cached copy until a device-selective context-cache invalidation and a domain-selective
//! IOTLB invalidation of the domain it named complete (VT-d §6.5.2.2, §6.5.2.3, §6.5.2.8). If
//! that submission fails (IQE, ICE or ITE, §6.5.2.10), the entry in memory is already not
//! present, so it can no longer say what is owed: the driver remembers it here, per
//! source-id, and sends it on the next update of that requester whatever the entry in memory
//! says. Only a completed submission pays it.

use crate::context::DomainTag;
use crate::qi::InvDescriptor;

/// Owed (source-id, domain-id) pairs remembered one by one; past this, a global
/// invalidation is owed instead.
pub const OWED_PAIRS: usize = 16;

/// Domain-ids one requester may owe before its debt is paid with global invalidations.
const PER_REQUESTER: usize = 4;

/// The descriptors that pay one requester's debt: per domain-id a context-cache and an IOTLB
/// invalidation, or the two global ones.
pub type Payment = heapless::Vec<InvDescriptor, { 2 * PER_REQUESTER }>;

/// What every requester is still owed.
#[derive(Clone, Debug, Default)]
pub struct Owed {
    pairs: heapless::Vec<(u16, DomainTag), OWED_PAIRS>,
    /// A pair did not fit: a global context-cache and IOTLB invalidation is owed.
    global: bool,
}

impl Owed {
    /// Remembers that `sid` may still be cached with domain-id `did`.
    pub fn owe(&mut self, sid: u16, did: DomainTag) {
        if self.global || self.pairs.contains(&(sid, did)) {
            return;
        }
        let mine = self.pairs.iter().filter(|p| p.0 == sid).count();
        if mine >= PER_REQUESTER || self.pairs.push((sid, did)).is_err() {
            self.global = true;
        }
    }

    /// Whether anything is owed to `sid`.
    pub fn any_for(&self, sid: u16) -> bool {
        self.global || self.pairs.iter().any(|p| p.0 == sid)
    }

    /// The descriptors that pay what `sid` is owed (empty when nothing is).
    pub fn payment(&self, sid: u16) -> Payment {
        let mut out = Payment::new();
        if self.global {
            // Cannot fail: the vector is empty and holds at least two.
            let _ = out.push(InvDescriptor::ContextGlobal);
            let _ = out.push(InvDescriptor::IotlbGlobal);
            return out;
        }
        for &(_, did) in self.pairs.iter().filter(|p| p.0 == sid) {
            // Cannot fail: at most PER_REQUESTER pairs per requester.
            let _ = out.push(InvDescriptor::ContextDevice { did, sid });
            let _ = out.push(InvDescriptor::IotlbDomain { did });
        }
        out
    }

    /// The submission of [`Owed::payment`]`(sid)` completed: forget what it paid (everything,
    /// when it was global).
    pub fn paid(&mut self, sid: u16) {
        if self.global {
            self.global = false;
            self.pairs.clear();
        } else {
            self.pairs.retain(|p| p.0 != sid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debts_are_per_requester_and_paid_only_when_told() {
        let mut o = Owed::default();
        assert!(o.payment(8).is_empty());
        o.owe(8, DomainTag(1));
        o.owe(8, DomainTag(1));
        o.owe(0x10, DomainTag(2));
        assert_eq!(
            o.payment(8).as_slice(),
            [
                InvDescriptor::ContextDevice {
                    did: DomainTag(1),
                    sid: 8
                },
                InvDescriptor::IotlbDomain { did: DomainTag(1) },
            ]
        );
        o.paid(8);
        assert!(!o.any_for(8));
        assert!(o.any_for(0x10));
    }

    #[test]
    fn too_many_debts_become_one_global_invalidation() {
        let mut o = Owed::default();
        for did in 1..=5 {
            o.owe(8, DomainTag(did));
        }
        assert_eq!(
            o.payment(0x10).as_slice(),
            [InvDescriptor::ContextGlobal, InvDescriptor::IotlbGlobal],
            "a global debt is every requester's"
        );
        o.paid(0x10);
        assert!(!o.any_for(8) && !o.any_for(0x10));
    }
}
