//! Legacy-mode root and context entries (VT-d §9.1 "Root Entry", §9.3 "Context Entry"): pure
//! encoders and decoders over pairs of 64-bit words, and the tables built from them.
//!
//! * The **root table** is one 4 KiB page of 256 root entries of 128 bits, indexed by the
//!   requester's bus number (VT-d §3.4.2 "Legacy Mode Address Translation"). RTADDR_REG points
//!   at it, with RTADDR.TTM = 00b (legacy).
//! * A root entry, when present, points at a **context table**: 256 context entries of 128
//!   bits, indexed by device and function (the low byte of the source-id).
//! * A context entry, when present, names the domain (DID), the table's address width (AW) and
//!   the second-level table (SLPTPTR), with TT = 00b: untranslated requests are translated
//!   through the second-level table; translation requests (ATS) are blocked.
//!
//! A requester whose context entry is not present is blocked and its request is recorded
//! (fault reason 0x2). That is how smmuman denies: every root entry points at a context table,
//! and a requester nobody attached has a context entry that is not present.

use crate::features::AddressWidth;
use iommu_core::PhysAddr;

/// Bits 63:12 of a table pointer (4 KiB aligned; host address width up to 52 bits, §9.1).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Root entry bit 0, P: present (§9.1). With it clear requests of that bus fault with reason
/// 0x1.
pub const ROOT_P: u64 = 1 << 0;

/// Context entry bit 0, P: present (§9.3).
pub const CTX_P: u64 = 1 << 0;
/// Context entry bit 1, FPD: fault processing disable (§9.3). We leave it 0: every fault of a
/// present entry is recorded.
pub const CTX_FPD: u64 = 1 << 1;
/// Context entry bits 3:2, TT: translation type (§9.3); 00b = untranslated requests go through
/// the second-level table, device-TLB (ATS) requests are blocked.
pub const CTX_TT_SHIFT: u32 = 2;
/// Mask of TT.
pub const CTX_TT_MASK: u64 = 0b11 << CTX_TT_SHIFT;
/// Context entry (upper word) bits 2:0, AW: address width of the second-level table (§9.3).
pub const CTX_AW_MASK: u64 = 0b111;
/// Context entry (upper word) bits 23:8, DID: domain identifier (§9.3).
pub const CTX_DID_SHIFT: u32 = 8;
/// Mask of DID in the upper word.
pub const CTX_DID_MASK: u64 = 0xffff << CTX_DID_SHIFT;

/// Bytes per root or context entry.
pub const ENTRY_BYTES: u64 = 16;
/// Entries per root or context table.
pub const ENTRIES: usize = 256;

/// A VT-d domain identifier (§9.3 DID): tags the cache entries of one domain so they can be
/// invalidated together. 0 is never used (with CAP.CM = 1 hardware may use it for
/// not-present entries, §6.1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DomainTag(pub u16);

impl core::fmt::Display for DomainTag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DID {}", self.0)
    }
}

/// The words of a present root entry pointing at `context_table` (§9.1). The upper word is
/// reserved (0) in legacy mode.
pub const fn root_entry(context_table: PhysAddr) -> [u64; 2] {
    [(context_table.0 & ADDR_MASK) | ROOT_P, 0]
}

/// A decoded present legacy context entry with TT = 00b.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ContextEntry {
    /// Domain identifier.
    pub did: DomainTag,
    /// Address width of the second-level table.
    pub aw: AddressWidth,
    /// The second-level table's root (SLPTPTR).
    pub slptptr: PhysAddr,
}

/// Why a context entry's words were not a present TT = 00b entry of ours.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ContextDecode {
    /// P = 0.
    NotPresent,
    /// TT other than 00b.
    TranslationType(u8),
    /// AW this driver does not build.
    AddressWidth(u8),
}

impl ContextEntry {
    /// The two words (lower, upper), FPD = 0 (§9.3).
    pub const fn encode(&self) -> [u64; 2] {
        [
            (self.slptptr.0 & ADDR_MASK) | CTX_P,
            ((self.did.0 as u64) << CTX_DID_SHIFT) | self.aw.aw() as u64,
        ]
    }

    /// Decodes the two words (lower, upper).
    ///
    /// # Errors
    /// [`ContextDecode`] names what made it not one of ours.
    pub const fn decode(words: [u64; 2]) -> Result<Self, ContextDecode> {
        let [lo, hi] = words;
        if lo & CTX_P == 0 {
            return Err(ContextDecode::NotPresent);
        }
        let tt = ((lo & CTX_TT_MASK) >> CTX_TT_SHIFT) as u8;
        if tt != 0 {
            return Err(ContextDecode::TranslationType(tt));
        }
        let aw = (hi & CTX_AW_MASK) as u8;
        let Some(width) = AddressWidth::from_aw(aw) else {
            return Err(ContextDecode::AddressWidth(aw));
        };
        Ok(Self {
            did: DomainTag(((hi & CTX_DID_MASK) >> CTX_DID_SHIFT) as u16),
            aw: width,
            slptptr: PhysAddr(lo & ADDR_MASK),
        })
    }
}

/// Address of root entry `bus` in the root table at `root`.
pub const fn root_entry_addr(root: PhysAddr, bus: u8) -> PhysAddr {
    PhysAddr(root.0 + bus as u64 * ENTRY_BYTES)
}

/// Address of context entry `devfn` in the context table at `table`.
pub const fn context_entry_addr(table: PhysAddr, devfn: u8) -> PhysAddr {
    PhysAddr(table.0 + devfn as u64 * ENTRY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_positions_match_the_spec() {
        assert_eq!(root_entry(PhysAddr(0x1234_5000)), [0x1234_5001, 0]);
        let e = ContextEntry {
            did: DomainTag(0x1234),
            aw: AddressWidth::Bits48,
            slptptr: PhysAddr(0xab_cdef_0000),
        };
        assert_eq!(e.encode(), [0xab_cdef_0001, 0x12_3402]);
        assert_eq!(ContextEntry::decode(e.encode()), Ok(e));
        let e39 = ContextEntry {
            aw: AddressWidth::Bits39,
            ..e
        };
        assert_eq!(e39.encode()[1] & CTX_AW_MASK, 0b001);
        assert_eq!(CTX_FPD, 2);
    }

    #[test]
    fn foreign_entries_are_named() {
        assert_eq!(
            ContextEntry::decode([0, 0x102]),
            Err(ContextDecode::NotPresent)
        );
        assert_eq!(
            ContextEntry::decode([0x1000 | 0b1001, 0x102]),
            Err(ContextDecode::TranslationType(2))
        );
        assert_eq!(
            ContextEntry::decode([0x1001, 0x103]),
            Err(ContextDecode::AddressWidth(3))
        );
    }

    #[test]
    fn entries_are_indexed_by_bus_and_devfn() {
        assert_eq!(root_entry_addr(PhysAddr(0x10_0000), 1), PhysAddr(0x10_0010));
        assert_eq!(
            context_entry_addr(PhysAddr(0x10_0000), 0xff),
            PhysAddr(0x10_0ff0)
        );
    }
}
