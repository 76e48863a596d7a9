//! Stream table entries (IHI 0070 §5.2): how the SMMU treats the traffic of one StreamID.
//!
//! [`Ste`] is eight 64-bit words, built by pure encoders and written to the stream table by
//! the stream table. Only the configurations smmuman uses are encoded: abort, bypass (on
//! explicit request only) and stage-2 translation with stage 1 bypassed.

use crate::error::SmmuError;
use crate::features::Features;
use crate::regs::addr_bits;
use iommu_core::{PhysAddr, Vmid, PAGE_SIZE};
use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// IHI 0070 §5.2 STE word 0.
    STE_DW0 [
        /// STE.V: the entry is valid.
        V OFFSET(0) NUMBITS(1) [],
        /// STE.Config: stage enables; 0b0xx aborts all traffic without an event.
        Config OFFSET(1) NUMBITS(3) [
            Abort = 0b000,
            Bypass = 0b100,
            S1Translate = 0b101,
            S2Translate = 0b110,
            Nested = 0b111
        ],
    ],
    /// IHI 0070 §5.2 STE word 1.
    STE_DW1 [
        /// STE.SHCFG: shareability used for bypassed stages; 0b01 = use the incoming value.
        SHCFG OFFSET(44) NUMBITS(2) [NonShareable = 0, Incoming = 1, Outer = 2, Inner = 3],
    ],
    /// IHI 0070 §5.2 STE word 2: the stage-2 translation controls (VTCR-like).
    STE_DW2 [
        /// STE.S2VMID: tags this context's TLB entries.
        S2VMID OFFSET(0) NUMBITS(16) [],
        /// STE.S2T0SZ: the IPA space is 2^(64 - S2T0SZ) bytes.
        S2T0SZ OFFSET(32) NUMBITS(6) [],
        /// STE.S2SL0: starting level of the walk (4 KiB granule: 0 = level 2, 1 = level 1,
        /// 2 = level 0).
        S2SL0 OFFSET(38) NUMBITS(2) [],
        /// STE.S2IR0: inner cacheability of table walks.
        S2IR0 OFFSET(40) NUMBITS(2) [NonCacheable = 0, WriteBackAlloc = 1, WriteThrough = 2],
        /// STE.S2OR0: outer cacheability of table walks.
        S2OR0 OFFSET(42) NUMBITS(2) [NonCacheable = 0, WriteBackAlloc = 1, WriteThrough = 2],
        /// STE.S2SH0: shareability of table walks.
        S2SH0 OFFSET(44) NUMBITS(2) [NonShareable = 0, Outer = 2, Inner = 3],
        /// STE.S2TG: stage-2 granule (0 = 4 KiB, 1 = 64 KiB, 2 = 16 KiB).
        S2TG OFFSET(46) NUMBITS(2) [Granule4K = 0, Granule64K = 1, Granule16K = 2],
        /// STE.S2PS: output (physical) address size code, as IDR5.OAS.
        S2PS OFFSET(48) NUMBITS(3) [],
        /// STE.S2AA64: AArch64 stage-2 tables (QEMU aborts the whole emulator when it is 0).
        S2AA64 OFFSET(51) NUMBITS(1) [],
        /// STE.S2ENDI: big-endian walks.
        S2ENDI OFFSET(52) NUMBITS(1) [],
        /// STE.S2AFFD: access-flag faults disabled.
        S2AFFD OFFSET(53) NUMBITS(1) [],
        /// STE.S2PTW: protected table walk.
        S2PTW OFFSET(54) NUMBITS(1) [],
        /// STE.S2S: stall stage-2 faults.
        S2S OFFSET(57) NUMBITS(1) [],
        /// STE.S2R: record stage-2 faults in the event queue.
        S2R OFFSET(58) NUMBITS(1) [],
    ],
    /// IHI 0070 §5.2 STE word 3.
    STE_DW3 [
        /// STE.`S2TTB[51:4]`: base of the stage-2 translation table.
        S2TTB OFFSET(4) NUMBITS(48) [],
    ]
}

/// What an STE does with its stream's traffic (IHI 0070 §5.2 STE.V and STE.Config).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SteConfig {
    /// V == 0: every transaction is terminated and C_BAD_STE is recorded.
    Invalid,
    /// Config 0b0xx: every transaction is terminated silently.
    Abort,
    /// Config 0b100: transactions pass untranslated.
    Bypass,
    /// Config 0b101: stage 1 only.
    Stage1,
    /// Config 0b110: stage 2 only (stage 1 bypassed).
    Stage2,
    /// Config 0b111: both stages.
    Nested,
}

/// A stage-2 translation context: the parameters of one STE's stage-2 walk (4 KiB granule,
/// AArch64 tables, write-back inner-shareable walks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct S2Context {
    /// STE.S2VMID.
    pub vmid: Vmid,
    /// STE.S2TTB: physical address of the (first) level-`start` table, 4 KiB aligned.
    pub s2ttb: PhysAddr,
    /// STE.S2T0SZ: IPA size is 2^(64 - s2t0sz).
    pub s2t0sz: u8,
    /// STE.S2SL0: starting level code (4 KiB granule: 0 = level 2, 1 = level 1, 2 = level 0).
    pub s2sl0: u8,
    /// STE.S2PS: encoded output address size, 0..=6 (see [`crate::pa_code_from_bits`]).
    pub s2ps: u8,
    /// STE.S2R: record stage-2 faults as events (without it faults are silent).
    pub record_faults: bool,
}

impl S2Context {
    /// Checks the fields the way the SMMU does before accepting the STE (IHI 0070 §5.2 STE
    /// ILLEGAL conditions, as QEMU applies them), so that a bad context is reported here rather
    /// than as a C_BAD_STE event later.
    ///
    /// # Errors
    /// [`SmmuError::InvalidS2Context`] naming the first field out of range: `S2VMID` wider than
    /// the SMMU's VMIDs, `S2PS` reserved, `S2T0SZ` outside `max(16, 64 - OAS)..=39`, `S2SL0`
    /// reserved or inconsistent with S2T0SZ (a walk that needs no level at the start or more
    /// than 16 concatenated tables, or level 0 on an SMMU whose OAS is below 44 bits), or
    /// `S2TTB` not aligned to the (concatenated) first-level table or beyond the effective
    /// S2PS.
    pub fn validate(&self, features: &Features) -> Result<(), SmmuError> {
        let bad = |field, value: u64| Err(SmmuError::InvalidS2Context { field, value });
        if u32::from(self.vmid.0) >> features.vmid_bits() != 0 {
            return bad("S2VMID", self.vmid.0.into());
        }
        if self.s2ps > 6 {
            return bad("S2PS", self.s2ps.into());
        }
        let oas = features.oas_bits.unwrap_or(48);
        let min_t0sz = 64u8.saturating_sub(oas).max(16);
        if !(min_t0sz..=39).contains(&self.s2t0sz) {
            return bad("S2T0SZ", self.s2t0sz.into());
        }
        if self.s2sl0 > 2 {
            return bad("S2SL0", self.s2sl0.into());
        }
        // 4 KiB granule: a walk starting at level L resolves IPA bits from 12 + 9 * (3 - L)
        // upwards; the start level must resolve at least one bit and at most 9 + 4 (16
        // concatenated tables, Arm ARM D8.2.7).
        let start_level = 2 - self.s2sl0;
        let ipa_bits = 64 - self.s2t0sz;
        let below = 12 + 9 * (3 - start_level);
        if ipa_bits <= below || ipa_bits - below > 13 {
            return bad("S2SL0", self.s2sl0.into());
        }
        // A 4 KiB-granule walk may start at level 0 (S2SL0 = 0b10) only when the PA size is at
        // least 44 bits (Arm ARM AArch64.S2InvalidSL); for the SMMU that size is IDR5.OAS
        // (IHI 0070 §5.2 STE.S2SL0 follows the Arm ARM rules). Below it the STE is ILLEGAL.
        if start_level == 0 && oas < 44 {
            return bad("S2SL0", self.s2sl0.into());
        }
        // S2PS above the OAS is treated as the OAS (IHI 0070 §5.2 STE.S2PS), and with the 4 KiB
        // granule and no LPA2 (STE.S2DS = 0) a 52-bit size is treated as 48 bits (IHI 0070 §5.2
        // STE.S2PS; Arm ARM: 52-bit output needs 64 KiB pages or DS = 1).
        let eff_ps = crate::features::pa_bits_from_code(self.s2ps.min(features.oas_code))
            .unwrap_or(oas)
            .min(48);
        let ttb = self.s2ttb.get();
        // The first-level table is 2^(bits resolved there - 9) concatenated 4 KiB pages when
        // it resolves more than 9 bits, and S2TTB must be aligned to their total size (Arm ARM
        // D8.2 "concatenated translation tables"; IHI 0070 §5.2 STE.S2TTB): the SMMU may treat
        // the low address bits as zero otherwise.
        let concat_log2 = (ipa_bits - below).saturating_sub(9);
        let root_bytes = PAGE_SIZE << concat_log2;
        if !self.s2ttb.is_aligned(root_bytes) || (eff_ps < 64 && ttb >> eff_ps != 0) {
            return bad("S2TTB", ttb);
        }
        Ok(())
    }
}

/// A stream table entry: eight 64-bit words, word 0 first (IHI 0070 §5.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Ste(pub [u64; 8]);

impl Ste {
    /// Number of 64-bit words.
    pub const WORDS: usize = 8;
    /// Size in bytes.
    pub const SIZE: usize = 64;

    /// An invalid entry (V == 0): the SMMU terminates the stream's traffic and records
    /// C_BAD_STE. This is what unconfigured StreamIDs hold.
    pub const fn invalid() -> Self {
        Self([0; 8])
    }

    /// A valid entry with Config = abort: traffic is terminated silently (no event).
    pub fn abort() -> Self {
        let mut w = [0; 8];
        w[0] = (STE_DW0::V::SET + STE_DW0::Config::Abort).value;
        Self(w)
    }

    /// A valid entry that lets the stream's traffic through **untranslated**.
    ///
    /// This opens the whole physical address space to the device: only for an explicit request
    /// by the operator, never as a default.
    pub fn bypass() -> Self {
        let mut w = [0; 8];
        w[0] = (STE_DW0::V::SET + STE_DW0::Config::Bypass).value;
        w[1] = STE_DW1::SHCFG::Incoming.value;
        Self(w)
    }

    /// A valid entry translating the stream through stage 2 only: 4 KiB granule, AArch64
    /// little-endian tables, write-back inner-shareable table walks, shareability of the
    /// incoming transaction kept (STE.SHCFG = incoming; [`Ste::for_smmu`] clears it on an SMMU
    /// where the field is RES0).
    ///
    /// Fields are masked to their widths; use [`S2Context::validate`] to reject values the SMMU
    /// would refuse.
    pub fn s2_translate(ctx: &S2Context) -> Self {
        let mut w = [0; 8];
        w[0] = (STE_DW0::V::SET + STE_DW0::Config::S2Translate).value;
        w[1] = STE_DW1::SHCFG::Incoming.value;
        let mut dw2 = STE_DW2::S2VMID.val(ctx.vmid.0.into())
            + STE_DW2::S2T0SZ.val(ctx.s2t0sz.into())
            + STE_DW2::S2SL0.val(ctx.s2sl0.into())
            + STE_DW2::S2IR0::WriteBackAlloc
            + STE_DW2::S2OR0::WriteBackAlloc
            + STE_DW2::S2SH0::Inner
            + STE_DW2::S2TG::Granule4K
            + STE_DW2::S2PS.val(ctx.s2ps.into())
            + STE_DW2::S2AA64::SET;
        if ctx.record_faults {
            dw2 += STE_DW2::S2R::SET;
        }
        w[2] = dw2.value;
        w[3] = addr_bits(ctx.s2ttb.get(), 4);
        Self(w)
    }

    /// The entry as `features`' SMMU must be given it: fields that SMMU does not implement are
    /// RES0, which software must write as zero (IHI 0070 §5: an SMMU may treat a non-zero RES0
    /// field as an invalid structure, i.e. C_BAD_STE).
    ///
    /// Today that is STE.SHCFG, RES0 when SMMU_IDR1.ATTR_TYPES_OVR == 0 (IHI 0070 §5.2
    /// STE.SHCFG; QEMU 10.0 is such an SMMU). Such an SMMU always uses the incoming
    /// shareability, which is what SHCFG = 0b01 asks for, so the behaviour is unchanged.
    pub fn for_smmu(mut self, features: &Features) -> Self {
        if !features.attr_types_ovr {
            self.0[1] &= !STE_DW1::SHCFG.val(0b11).value;
        }
        self
    }

    /// The entry with its stage-2 table walks Non-cacheable (IHI 0070 §5.2: STE.S2IR0 =
    /// STE.S2OR0 = 0b00; STE.S2SH0 = 0b10, Outer Shareable, the only shareability of
    /// Non-cacheable memory), for an SMMU that does not snoop the CPU caches and so reads the
    /// tables from memory, where the driver has cleaned them. Entries without a stage-2
    /// translation are returned unchanged.
    #[must_use]
    pub fn with_non_cacheable_walks(mut self) -> Self {
        if matches!(self.config(), SteConfig::Stage2 | SteConfig::Nested) {
            let fields =
                STE_DW2::S2IR0.val(0b11) + STE_DW2::S2OR0.val(0b11) + STE_DW2::S2SH0.val(0b11);
            self.0[2] &= !fields.value;
            self.0[2] |= (STE_DW2::S2IR0::NonCacheable
                + STE_DW2::S2OR0::NonCacheable
                + STE_DW2::S2SH0::Outer)
                .value;
        }
        self
    }

    /// STE.V.
    pub fn is_valid(&self) -> bool {
        STE_DW0::V.is_set(self.0[0])
    }

    /// The configuration the entry selects.
    pub fn config(&self) -> SteConfig {
        if !self.is_valid() {
            return SteConfig::Invalid;
        }
        match STE_DW0::Config.read(self.0[0]) {
            0b100 => SteConfig::Bypass,
            0b101 => SteConfig::Stage1,
            0b110 => SteConfig::Stage2,
            0b111 => SteConfig::Nested,
            _ => SteConfig::Abort,
        }
    }

    /// STE.S2VMID.
    pub fn s2vmid(&self) -> Vmid {
        Vmid(STE_DW2::S2VMID.read(self.0[2]) as u16)
    }

    /// STE.S2TTB.
    pub fn s2ttb(&self) -> PhysAddr {
        PhysAddr(addr_bits(self.0[3], 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Features;

    fn qemu() -> Features {
        Features::decode([0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x74], 1)
    }

    fn ctx() -> S2Context {
        S2Context {
            vmid: Vmid(1),
            s2ttb: PhysAddr(0x4010_0000),
            s2t0sz: 32,
            s2sl0: 1,
            s2ps: 4,
            record_faults: true,
        }
    }

    #[test]
    fn s2_ste_matches_the_spec_bit_positions() {
        let ste = Ste::s2_translate(&ctx());
        // DW0: V (bit 0) | Config = 0b110 (bits 3:1).
        assert_eq!(ste.0[0], 0b1101);
        // DW1: SHCFG = incoming (bits 45:44).
        assert_eq!(ste.0[1], 1 << 44);
        // DW2: S2VMID=1 [15:0], S2T0SZ=32 [37:32], S2SL0=1 [39:38], S2IR0=WB [41:40],
        // S2OR0=WB [43:42], S2SH0=ISH [45:44], S2TG=4K [47:46], S2PS=4 [50:48], S2AA64 [51],
        // S2R [58].
        assert_eq!(ste.0[2], 0x040C_3560_0000_0001);
        assert_eq!((ste.0[2] >> 32) & 0x3f, 32);
        assert_eq!((ste.0[2] >> 38) & 3, 1);
        assert_eq!((ste.0[2] >> 48) & 7, 4);
        assert_eq!((ste.0[2] >> 51) & 1, 1);
        assert_eq!((ste.0[2] >> 58) & 1, 1);
        // DW3: S2TTB[51:4] in place.
        assert_eq!(ste.0[3], 0x4010_0000);
        assert_eq!(&ste.0[4..], &[0; 4]);
        assert_eq!(ste.config(), SteConfig::Stage2);
        assert_eq!(ste.s2vmid(), Vmid(1));
        assert_eq!(ste.s2ttb(), PhysAddr(0x4010_0000));
    }

    #[test]
    fn s2r_is_only_set_on_request() {
        let quiet = Ste::s2_translate(&S2Context {
            record_faults: false,
            ..ctx()
        });
        assert_eq!(quiet.0[2] & (1 << 58), 0);
        assert_eq!(quiet.0[2] | (1 << 58), Ste::s2_translate(&ctx()).0[2]);
    }

    #[test]
    fn fields_are_masked_to_their_widths() {
        let ste = Ste::s2_translate(&S2Context {
            vmid: Vmid(0xffff),
            s2ttb: PhysAddr(0xfff0_0000_0000_100f),
            s2t0sz: 0xff,
            s2sl0: 0xff,
            s2ps: 0xff,
            record_faults: false,
        });
        assert_eq!(ste.0[2] & 0xffff_ffff, 0xffff);
        assert_eq!((ste.0[2] >> 32) & 0x3f, 0x3f);
        assert_eq!((ste.0[2] >> 46) & 3, 0, "S2TG stays 4K");
        assert_eq!((ste.0[2] >> 51) & 1, 1, "S2AA64 stays set");
        assert_eq!((ste.0[2] >> 52) & 1, 0, "S2ENDI stays little-endian");
        assert_eq!(ste.0[3], 0x1000);
    }

    #[test]
    fn abort_bypass_invalid() {
        assert_eq!(Ste::abort().0, [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ste::abort().config(), SteConfig::Abort);
        assert_eq!(Ste::bypass().0[0], 0b1001);
        assert_eq!(Ste::bypass().0[1], 1 << 44);
        assert_eq!(Ste::bypass().config(), SteConfig::Bypass);
        assert_eq!(Ste::invalid().config(), SteConfig::Invalid);
        assert!(!Ste::invalid().is_valid());
    }

    #[test]
    fn validate_accepts_the_qemu_example() {
        assert_eq!(ctx().validate(&qemu()), Ok(()));
        // 44-bit IPA starting at level 0 (SL0 = 2).
        let wide = S2Context {
            s2t0sz: 20,
            s2sl0: 2,
            ..ctx()
        };
        assert_eq!(wide.validate(&qemu()), Ok(()));
        // 40-bit IPA at level 1 with 2 concatenated tables.
        let concat = S2Context {
            s2t0sz: 24,
            s2sl0: 1,
            ..ctx()
        };
        assert_eq!(concat.validate(&qemu()), Ok(()));
    }

    #[test]
    fn validate_rejects_what_qemu_rejects() {
        let f = qemu();
        let err = |field, value| Err(SmmuError::InvalidS2Context { field, value });
        assert_eq!(
            S2Context {
                s2t0sz: 40,
                ..ctx()
            }
            .validate(&f),
            err("S2T0SZ", 40)
        );
        assert_eq!(
            S2Context {
                s2t0sz: 19,
                s2sl0: 2,
                ..ctx()
            }
            .validate(&f),
            err("S2T0SZ", 19)
        );
        assert_eq!(
            S2Context { s2sl0: 3, ..ctx() }.validate(&f),
            err("S2SL0", 3)
        );
        // 32-bit IPA cannot start at level 0; 39-bit IPA at level 2 needs 512 tables.
        assert_eq!(
            S2Context { s2sl0: 2, ..ctx() }.validate(&f),
            err("S2SL0", 2)
        );
        assert_eq!(
            S2Context {
                s2t0sz: 25,
                s2sl0: 0,
                ..ctx()
            }
            .validate(&f),
            err("S2SL0", 0)
        );
        assert_eq!(S2Context { s2ps: 7, ..ctx() }.validate(&f), err("S2PS", 7));
        let far = PhysAddr(1 << 44);
        assert_eq!(
            S2Context {
                s2ttb: far,
                ..ctx()
            }
            .validate(&f),
            err("S2TTB", 1 << 44)
        );
        let odd = PhysAddr(0x4010_0010);
        assert_eq!(
            S2Context {
                s2ttb: odd,
                ..ctx()
            }
            .validate(&f),
            err("S2TTB", 0x4010_0010)
        );
        let mut f8 = f.clone();
        f8.vmid16 = false;
        assert_eq!(
            S2Context {
                vmid: Vmid(256),
                ..ctx()
            }
            .validate(&f8),
            err("S2VMID", 256)
        );
    }

    /// IHI 0070 §5.2 STE.S2PS: with the 4 KiB granule and S2DS = 0, a 52-bit S2PS on a 52-bit-OAS
    /// SMMU is effective as 48 bits, so an S2TTB at or above 2^48 cannot be reached.
    #[test]
    fn s2ttb_beyond_48_bits_is_refused_with_the_4k_granule() {
        // IDR5.OAS = 0b110: 52 bits.
        let f52 = Features::decode([0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x76], 1);
        assert_eq!(f52.oas_bits, Some(52));
        let high = S2Context {
            s2ps: 6,
            s2ttb: PhysAddr(1 << 48),
            ..ctx()
        };
        assert_eq!(
            high.validate(&f52),
            Err(SmmuError::InvalidS2Context {
                field: "S2TTB",
                value: 1 << 48
            })
        );
        let low = S2Context {
            s2ttb: PhysAddr((1 << 48) - 0x1000),
            ..high
        };
        assert_eq!(low.validate(&f52), Ok(()));
    }

    /// IHI 0070 §5.2 STE.SHCFG is RES0 when SMMU_IDR1.ATTR_TYPES_OVR == 0 (QEMU's IDR1 bit 27
    /// is clear), and §5 requires RES0 fields written as zero; with the override implemented,
    /// SHCFG = 0b01 (incoming) must stay or the SMMU would force Non-shareable.
    #[test]
    fn shcfg_is_only_written_when_the_smmu_implements_it() {
        let no_ovr = qemu();
        assert!(!no_ovr.attr_types_ovr);
        assert_eq!(Ste::s2_translate(&ctx()).for_smmu(&no_ovr).0[1], 0);
        assert_eq!(Ste::bypass().for_smmu(&no_ovr).0[1], 0);
        let full = Ste::s2_translate(&ctx());
        let stripped = full.for_smmu(&no_ovr);
        assert_eq!(stripped.0[0], full.0[0]);
        assert_eq!(&stripped.0[2..], &full.0[2..]);

        // IDR1.ATTR_TYPES_OVR (bit 27) set: SHCFG = 0b01 in DW1[45:44] is kept.
        let ovr = Features::decode([0x0d44_101b, 0x0273_0010 | 1 << 27, 0, 0x1414, 0, 0x74], 1);
        assert!(ovr.attr_types_ovr);
        assert_eq!(Ste::s2_translate(&ctx()).for_smmu(&ovr).0[1], 1 << 44);
        assert_eq!(Ste::bypass().for_smmu(&ovr), Ste::bypass());
    }

    /// Arm ARM D8.2: a concatenated first-level table (here 40-bit IPA from level 1: two pages)
    /// must be aligned to its total size, not just to 4 KiB.
    #[test]
    fn concatenated_root_must_be_aligned_to_its_size() {
        let err = |field, value| Err(SmmuError::InvalidS2Context { field, value });
        let two_pages = S2Context {
            s2t0sz: 24,
            s2sl0: 1,
            s2ttb: PhysAddr(0x4010_1000),
            ..ctx()
        };
        assert_eq!(two_pages.validate(&qemu()), err("S2TTB", 0x4010_1000));
        let aligned = S2Context {
            s2ttb: PhysAddr(0x4010_2000),
            ..two_pages
        };
        assert_eq!(aligned.validate(&qemu()), Ok(()));
        // 34-bit IPA from level 2: 16 pages, 64 KiB alignment.
        let sixteen = S2Context {
            s2t0sz: 30,
            s2sl0: 0,
            s2ttb: PhysAddr(0x4010_8000),
            ..ctx()
        };
        assert_eq!(sixteen.validate(&qemu()), err("S2TTB", 0x4010_8000));
        let sixteen = S2Context {
            s2ttb: PhysAddr(0x4011_0000),
            ..sixteen
        };
        assert_eq!(sixteen.validate(&qemu()), Ok(()));
        // A single-page root (32-bit IPA from level 1) needs only 4 KiB.
        let one = S2Context {
            s2ttb: PhysAddr(0x4010_1000),
            ..ctx()
        };
        assert_eq!(one.validate(&qemu()), Ok(()));
    }

    /// Arm ARM AArch64.S2InvalidSL: with the 4 KiB granule, S2SL0 = 0b10 (start at level 0)
    /// needs a PA size (for the SMMU, IDR5.OAS) of at least 44 bits. QEMU's OAS is 44, so its
    /// model never exercises this; a 40-bit-OAS SMMU reports C_BAD_STE for such an STE.
    #[test]
    fn level0_start_needs_a_44_bit_oas() {
        // IDR5.OAS = 0b010: 40 bits.
        let f40 = Features::decode([0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x72], 1);
        assert_eq!(f40.oas_bits, Some(40));
        let err = |field, value| Err(SmmuError::InvalidS2Context { field, value });
        // 40-bit IPA starting at level 0: ILLEGAL below a 44-bit OAS ...
        let level0 = S2Context {
            s2t0sz: 24,
            s2sl0: 2,
            s2ps: 2,
            s2ttb: PhysAddr(0x4010_0000),
            ..ctx()
        };
        assert_eq!(level0.validate(&f40), err("S2SL0", 2));
        // ... legal from 44 bits (QEMU) ...
        assert_eq!(level0.validate(&qemu()), Ok(()));
        // ... and the same IPA size starting at level 1 (2 concatenated tables) is legal.
        let level1 = S2Context { s2sl0: 1, ..level0 };
        assert_eq!(level1.validate(&f40), Ok(()));
        // 39-bit IPA at level 1: one table, fine at any OAS.
        let ias39 = S2Context {
            s2t0sz: 25,
            s2sl0: 1,
            ..level0
        };
        assert_eq!(ias39.validate(&f40), Ok(()));
    }
}
