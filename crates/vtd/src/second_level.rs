//! Second-level paging entries (VT-d §9.8 "Second-Stage Paging Entries", legacy mode): pure
//! encoders and decoders over 64-bit words, the VT-d descriptor format of the shared walker.
//!
//! | bits  | table entry (PML4E, PDPE, PDE) | leaf (PDPE/PDE with PS = 1, PTE)            |
//! |-------|--------------------------------|---------------------------------------------|
//! | 0     | R: reads may pass              | R: read permission                          |
//! | 1     | W: writes may pass             | W: write permission                         |
//! | 6:3   | reserved (0)                   | EMT/IPAT: only with ECAP.MTS; we leave 0    |
//! | 7     | PS = 0                         | PS = 1 for 2 MiB / 1 GiB; ignored in a PTE  |
//! | 11    | ignored                        | SNP: only with ECAP.SC; we leave 0          |
//! | 51:12 | next table                     | page frame (superpages: low bits reserved)  |
//! | 62    | ignored                        | TM: transient mapping (device-TLB), left 0  |
//!
//! An entry with R = W = 0 is not present: a request that reaches it faults with reason 0x6
//! (read) or 0x5 (write), VT-d Appendix A. The walk ANDs the R and W bits of every level, so
//! table entries carry both.
//!
//! Levels are numbered as the shared walker numbers them (0 = the 512 GiB level of a 4-level
//! table, 3 = 4 KiB pages); VT-d calls the same levels 4 (PML4E) down to 1 (PTE).

use iommu_core::{Access, PhysAddr};

/// Bit 0, R: read permission (§9.8).
pub const SL_R: u64 = 1 << 0;
/// Bit 1, W: write permission (§9.8).
pub const SL_W: u64 = 1 << 1;
/// Bit 7, PS: page size; set in a PDPE or PDE that maps a 1 GiB or 2 MiB superpage (§9.8).
pub const SL_PS: u64 = 1 << 7;
/// Bit 11, SNP: snoop behaviour (only with ECAP.SC); never set here.
pub const SL_SNP: u64 = 1 << 11;
/// Bit 62, TM: transient mapping (§9.8); never set here.
pub const SL_TM: u64 = 1 << 62;
/// Bits 51:12: next-table or page-frame address (host address width up to 52 bits).
pub const SL_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Output-address bits an entry can carry.
pub const SL_OA_BITS: u8 = 52;
/// The walker level of 4 KiB leaves (VT-d level 1).
pub const PAGE_LEVEL: u8 = 3;

/// One decoded second-level entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlEntry {
    /// R = W = 0: not present.
    NotPresent,
    /// A pointer to the next-level table.
    Table {
        /// The next table.
        next: PhysAddr,
    },
    /// A page or superpage.
    Leaf {
        /// Its page frame (superpages: aligned to their size).
        pa: PhysAddr,
        /// R and W.
        access: Access,
    },
}

/// The permission bits of a leaf granting `access` (READ → R, WRITE → W; EXEC and DEVICE have
/// no second-level encoding and are dropped).
pub const fn leaf_permissions(access: Access) -> u64 {
    let mut bits = 0;
    if access.contains(Access::READ) {
        bits |= SL_R;
    }
    if access.contains(Access::WRITE) {
        bits |= SL_W;
    }
    bits
}

/// The bits of a leaf at walker `level` with `access`, without its address: a superpage
/// (levels 1 and 2) has PS set.
pub const fn leaf_bits(level: u8, access: Access) -> u64 {
    let ps = if level < PAGE_LEVEL { SL_PS } else { 0 };
    leaf_permissions(access) | ps
}

/// A leaf at walker `level` mapping `pa` with `access`.
pub const fn encode_leaf(level: u8, pa: PhysAddr, access: Access) -> u64 {
    (pa.0 & SL_ADDR_MASK) | leaf_bits(level, access)
}

/// A table entry pointing at `next`: R and W set, so the leaves below decide.
pub const fn encode_table(next: PhysAddr) -> u64 {
    (next.0 & SL_ADDR_MASK) | SL_R | SL_W
}

/// Decodes an entry found at walker `level` (0..=3).
pub const fn decode(level: u8, raw: u64) -> SlEntry {
    if raw & (SL_R | SL_W) == 0 {
        return SlEntry::NotPresent;
    }
    let is_leaf = level == PAGE_LEVEL || (level > 0 && raw & SL_PS != 0);
    if !is_leaf {
        return SlEntry::Table {
            next: PhysAddr(raw & SL_ADDR_MASK),
        };
    }
    let shift = 12 + 9 * (PAGE_LEVEL - level) as u32;
    let mut access = Access::empty();
    if raw & SL_R != 0 {
        access = access.union(Access::READ);
    }
    if raw & SL_W != 0 {
        access = access.union(Access::WRITE);
    }
    SlEntry::Leaf {
        pa: PhysAddr(raw & SL_ADDR_MASK & !((1u64 << shift) - 1)),
        access,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_positions_match_the_spec() {
        assert_eq!(
            encode_leaf(3, PhysAddr(0x1234_5000), Access::RW),
            0x1234_5003
        );
        assert_eq!(
            encode_leaf(2, PhysAddr(0x4020_0000), Access::READ),
            0x4020_0081
        );
        assert_eq!(
            encode_leaf(1, PhysAddr(0x4000_0000), Access::WRITE),
            0x4000_0082
        );
        assert_eq!(encode_table(PhysAddr(0x8_0000_1000)), 0x8_0000_1003);
        assert_eq!(SL_SNP, 0x800);
        assert_eq!(SL_TM, 0x4000_0000_0000_0000);
        // EXEC and DEVICE have no encoding here.
        assert_eq!(
            encode_leaf(
                3,
                PhysAddr(0x1000),
                Access::RW | Access::EXEC | Access::DEVICE
            ),
            0x1003
        );
    }

    #[test]
    fn decode_round_trips_and_reads_ps_only_above_pages() {
        assert_eq!(decode(3, 0), SlEntry::NotPresent);
        assert_eq!(decode(2, 0x4020_0000 | SL_PS), SlEntry::NotPresent);
        assert_eq!(
            decode(2, encode_leaf(2, PhysAddr(0x4020_0000), Access::RW)),
            SlEntry::Leaf {
                pa: PhysAddr(0x4020_0000),
                access: Access::RW
            }
        );
        assert_eq!(
            decode(2, encode_table(PhysAddr(0x5000))),
            SlEntry::Table {
                next: PhysAddr(0x5000)
            }
        );
        // PS in a PML4E is not a leaf (it is reserved there; the walk treats it as a table).
        assert!(matches!(
            decode(0, 0x5000 | SL_PS | SL_R),
            SlEntry::Table { .. }
        ));
        // PS is ignored in a PTE.
        assert_eq!(
            decode(3, 0x5000 | SL_PS | SL_W),
            SlEntry::Leaf {
                pa: PhysAddr(0x5000),
                access: Access::WRITE
            }
        );
    }
}
