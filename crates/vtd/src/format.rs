//! The VT-d second-level descriptor format of the shared page-table walker.
//!
//! The walker is `stage2::Stage2Table`, generic over [`stage2::format::PtFormat`]; the VT-d
//! second-level format (VT-d §9.8) is [`VtdSecondLevel`], which lives beside the VMSAv8-64
//! format in `stage2::format` (one walker, formats beside it, as Linux's `generic_pt`). Its bit
//! positions are restated there independently of [`second_level`](crate::second_level), which
//! the emulated unit walks with: the host tests check one reading against the other.
//! [`for_unit`] picks the format a unit walks from its CAP/ECAP.

pub use stage2::format::{Entry, PtFormat, VtdSecondLevel};

/// The format a unit with these features walks: superpages as CAP.SLLPS allows (VT-d
/// §11.4.2), SNP in leaves when ECAP.SC (§11.4.3).
pub const fn for_unit(features: &crate::Features) -> VtdSecondLevel {
    VtdSecondLevel {
        superpage_2m: features.superpage_2m,
        superpage_1g: features.superpage_1g,
        snoop: features.snoop_control,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::second_level::{decode, encode_leaf, encode_table, SlEntry};
    use iommu_core::{Access, PhysAddr};

    #[test]
    fn qemu_gets_both_superpage_sizes_and_no_snoop() {
        let qemu =
            crate::Features::decode(0x10, crate::fake::QEMU_CAP, crate::fake::QEMU_ECAP).unwrap();
        let f = for_unit(&qemu);
        assert_eq!(f.min_block_level(), 1);
        assert!(!f.snoop);
    }

    /// The walker's encoder and the emulated unit's decoder agree on every leaf level and
    /// access, and on table entries.
    #[test]
    fn the_walker_format_and_the_unit_decoder_agree() {
        let f = VtdSecondLevel {
            superpage_2m: true,
            superpage_1g: true,
            snoop: false,
        };
        for level in 1..=3u8 {
            let pa = 0x40u64 << (12 + 9 * (3 - u32::from(level)));
            for access in [Access::READ, Access::WRITE, Access::RW] {
                let raw = f.leaf_bits(level, access) | pa;
                assert_eq!(raw, encode_leaf(level, PhysAddr(pa), access));
                assert_eq!(
                    decode(level, raw),
                    SlEntry::Leaf {
                        pa: PhysAddr(pa),
                        access
                    }
                );
            }
        }
        assert_eq!(
            f.encode_table(PhysAddr(0x1234_5000)),
            encode_table(PhysAddr(0x1234_5000))
        );
    }
}
