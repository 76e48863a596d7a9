//! Address sizes of a stage-2 table and the STE fields derived from them.

use crate::descriptor::OA_BITS;
use crate::error::MapError;

/// Address sizes of one stage-2 translation table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stage2Config {
    /// Input (IPA / IOVA) size in bits, [`Self::MIN_IAS_BITS`]..=[`Self::MAX_IAS_BITS`]. The table
    /// translates IOVAs below `2^ias_bits`; program STE.S2T0SZ = `64 - ias_bits`.
    ///
    /// The STE is ILLEGAL if this exceeds the SMMU's IAS (IHI 0070 §5.2 STE.S2T0SZ: the SMMU IAS
    /// is the OAS, or at least 40 bits with AArch32 support, §3.4); QEMU also requires it not to
    /// exceed the STE.S2PS size. The caller picks a size its SMMU accepts.
    pub ias_bits: u8,
    /// Output (physical) address size in bits, [`Self::MIN_OAS_BITS`]..=[`Self::MAX_OAS_BITS`],
    /// normally SMMU_IDR5.OAS (44 on QEMU `virt`). Descriptors in this format carry at most 48
    /// OA bits, so output addresses are limited to `2^min(oas_bits, 48)`.
    pub oas_bits: u8,
}

impl Stage2Config {
    /// Smallest input size: STE.S2T0SZ is at most 39 with the 4 KiB granule when SMMU_IDR3.STT
    /// is 0 (IHI 0070 §5.2 STE.S2T0SZ), and a level-2 root then holds 32 entries.
    pub const MIN_IAS_BITS: u8 = 25;
    /// Largest input size: S2T0SZ = 16, the 4 KiB-granule minimum without FEAT_LPA2 (STE.S2DS = 0).
    pub const MAX_IAS_BITS: u8 = 48;
    /// Smallest SMMU_IDR5.OAS encoding (32 bits).
    pub const MIN_OAS_BITS: u8 = 32;
    /// Largest SMMU_IDR5.OAS encoding (52 bits).
    pub const MAX_OAS_BITS: u8 = 52;

    /// Checks both sizes.
    ///
    /// # Errors
    /// [`MapError::IasBits`] or [`MapError::OasBits`] with the size that is out of range.
    pub const fn validate(self) -> Result<(), MapError> {
        if self.ias_bits < Self::MIN_IAS_BITS || self.ias_bits > Self::MAX_IAS_BITS {
            return Err(MapError::IasBits(self.ias_bits));
        }
        if self.oas_bits < Self::MIN_OAS_BITS || self.oas_bits > Self::MAX_OAS_BITS {
            return Err(MapError::OasBits(self.oas_bits));
        }
        Ok(())
    }

    /// The widest table an SMMU whose output size is `oas_bits` (SMMU_IDR5.OAS, with stage 2
    /// only its IAS too, IHI 0070 §3.4) can walk with a single-page root: `ias_bits` =
    /// `min(oas_bits, 48)`, except that below a 44-bit OAS the IOVA space stops at 39 bits.
    ///
    /// Why: IAS 40..=42 needs a level-0 root here ([`Self::start_level`]), and a 4 KiB-granule
    /// walk may start at level 0 (S2SL0 = 0b10) only when the PA size is at least 44 bits (Arm
    /// ARM AArch64.S2InvalidSL; for the SMMU the PA size is IDR5.OAS): an SMMU with a 40- or
    /// 42-bit OAS rejects such an STE as ILLEGAL. Starting at level 1 instead would need 2..=8
    /// concatenated root pages, which this crate does not build.
    pub const fn widest_for_oas(oas_bits: u8) -> Self {
        let ias_bits = if oas_bits < 44 {
            if oas_bits < 39 {
                oas_bits
            } else {
                39
            }
        } else if oas_bits < Self::MAX_IAS_BITS {
            oas_bits
        } else {
            Self::MAX_IAS_BITS
        };
        Self { ias_bits, oas_bits }
    }

    /// Level of the root table, chosen so the root is a single 4 KiB table without concatenation
    /// (Arm ARM D8.2 walk; IHI 0070 §5.2 STE.S2SL0 must agree with STE.S2T0SZ):
    ///
    /// * `ias_bits` 40..=48: level 0 (the root resolves bits \[ias-1:39\], up to 512 entries);
    ///   legal only on an SMMU whose OAS is at least 44 bits (Arm ARM AArch64.S2InvalidSL), see
    ///   [`Self::widest_for_oas`];
    /// * `ias_bits` 31..=39: level 1 (bits \[ias-1:30\]; ias 32 gives 4 entries, as on QEMU);
    /// * `ias_bits` 25..=30: level 2 (bits \[ias-1:21\]).
    ///
    /// Starting lower with concatenated tables (up to 16 pages at the first level) would save a
    /// level of walk for some sizes but needs a multi-page, size-aligned root; one page keeps the
    /// allocator simple and every size supported.
    pub const fn start_level(self) -> u8 {
        match self.ias_bits {
            40.. => 0,
            31..=39 => 1,
            _ => 2,
        }
    }

    /// STE.S2T0SZ (IHI 0070 §5.2): `64 - ias_bits`.
    pub const fn t0sz(self) -> u8 {
        64 - self.ias_bits
    }

    /// STE.S2SL0 for the 4 KiB granule (IHI 0070 §5.2, same encoding as VTCR_EL2.SL0):
    /// 0 = start at level 2, 1 = level 1, 2 = level 0.
    pub const fn sl0(self) -> u8 {
        2 - self.start_level()
    }

    /// Output-address bits a leaf may use: `min(oas_bits, 48)` (see [`OA_BITS`]).
    pub const fn pa_bits(self) -> u8 {
        if self.oas_bits < OA_BITS {
            self.oas_bits
        } else {
            OA_BITS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ias_bits: u8) -> Stage2Config {
        Stage2Config {
            ias_bits,
            oas_bits: 44,
        }
    }

    #[test]
    fn start_level_and_ste_fields() {
        // (ias, start level, S2SL0, S2T0SZ)
        for (ias, level, sl0, t0sz) in [
            (48, 0, 2, 16),
            (40, 0, 2, 24),
            (39, 1, 1, 25),
            (32, 1, 1, 32),
            (31, 1, 1, 33),
            (30, 2, 0, 34),
            (25, 2, 0, 39),
        ] {
            assert_eq!(cfg(ias).start_level(), level, "ias {ias}");
            assert_eq!(cfg(ias).sl0(), sl0, "ias {ias}");
            assert_eq!(cfg(ias).t0sz(), t0sz, "ias {ias}");
        }
    }

    /// Arm ARM AArch64.S2InvalidSL: a level-0 start (S2SL0 = 0b10, 4 KiB granule) needs a PA
    /// size of at least 44 bits, so below that the widest single-page-root table is 39 bits.
    #[test]
    fn widest_table_never_starts_at_level_0_below_a_44_bit_oas() {
        // (OAS, IAS, S2SL0)
        for (oas, ias, sl0) in [
            (32, 32, 1),
            (36, 36, 1),
            (40, 39, 1),
            (42, 39, 1),
            (44, 44, 2),
            (48, 48, 2),
            (52, 48, 2),
        ] {
            let c = Stage2Config::widest_for_oas(oas);
            assert_eq!(
                (c.ias_bits, c.oas_bits, c.sl0()),
                (ias, oas, sl0),
                "oas {oas}"
            );
            assert_eq!(c.validate(), Ok(()), "oas {oas}");
            assert!(c.start_level() != 0 || oas >= 44, "oas {oas}");
        }
    }

    #[test]
    fn sizes_out_of_range_are_named() {
        assert_eq!(cfg(24).validate(), Err(MapError::IasBits(24)));
        assert_eq!(cfg(49).validate(), Err(MapError::IasBits(49)));
        assert_eq!(
            Stage2Config {
                ias_bits: 40,
                oas_bits: 31
            }
            .validate(),
            Err(MapError::OasBits(31))
        );
        assert_eq!(
            Stage2Config {
                ias_bits: 40,
                oas_bits: 53
            }
            .validate(),
            Err(MapError::OasBits(53))
        );
        assert_eq!(cfg(32).validate(), Ok(()));
    }

    #[test]
    fn pa_bits_stop_at_the_descriptor_limit() {
        assert_eq!(
            Stage2Config {
                ias_bits: 40,
                oas_bits: 44
            }
            .pa_bits(),
            44
        );
        assert_eq!(
            Stage2Config {
                ias_bits: 40,
                oas_bits: 52
            }
            .pa_bits(),
            48
        );
    }
}
