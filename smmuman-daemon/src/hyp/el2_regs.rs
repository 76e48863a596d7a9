//! The values the EL2 MMU is turned on with, computed without touching the CPU (host-tested):
//! TCR_EL2 and SCTLR_EL2 for the identity map `mmu.rs` builds.

/// TCR_EL2.T0SZ for a 48-bit input range: the walk starts at level 0 (Arm ARM D8.2.7).
pub const T0SZ: u64 = 16;
/// Bits of input address [`T0SZ`] leaves: the identity map's addresses must stay below
/// 2^this.
pub const T0SZ_BITS: u32 = 64 - T0SZ as u32;

/// SCTLR_EL2 (E2H = 0) RES1 bits 29, 28, 23, 22, 18, 16, 11, 5, 4 (Arm ARM D19.2.118).
pub const SCTLR_RES1: u64 = (1 << 29)
    | (1 << 28)
    | (1 << 23)
    | (1 << 22)
    | (1 << 18)
    | (1 << 16)
    | (1 << 11)
    | (1 << 5)
    | (1 << 4);
/// SCTLR_EL2.M (bit 0), C (bit 2), I (bit 12): MMU, data and instruction caches on.
pub const SCTLR_M_C_I: u64 = (1 << 0) | (1 << 2) | (1 << 12);

/// SCTLR_EL2 with the MMU and both caches on, every other field at its reset-safe value
/// (little-endian, no alignment checks, WXN off).
pub const fn sctlr_mmu_on() -> u64 {
    SCTLR_RES1 | SCTLR_M_C_I
}

/// TCR_EL2 (E2H = 0, Arm ARM D19.2.140): RES1 bits 31 and 23, PS (bits 18:16) = `ps` (the
/// physical address size, `address_map::ps_for_bits`), TG0 = 4 KiB (0), SH0 = inner
/// shareable (3, bits 13:12), ORGN0 = IRGN0 = write-back read/write-allocate (1, bits 11:10
/// and 9:8), T0SZ (bits 5:0).
pub const fn tcr(ps: u64) -> u64 {
    (1 << 31) | (1 << 23) | ((ps & 0b111) << 16) | (3 << 12) | (1 << 10) | (1 << 8) | T0SZ
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: u64, hi: u32, lo: u32) -> u64 {
        (v >> lo) & ((1 << (hi - lo + 1)) - 1)
    }

    #[test]
    fn tcr_fields_sit_where_d19_puts_them() {
        // PS = 0b101: 48 bits (QEMU's max cpu).
        let t = tcr(0b101);
        assert_eq!(field(t, 5, 0), 16, "T0SZ");
        assert_eq!(field(t, 9, 8), 1, "IRGN0");
        assert_eq!(field(t, 11, 10), 1, "ORGN0");
        assert_eq!(field(t, 13, 12), 3, "SH0");
        assert_eq!(field(t, 15, 14), 0, "TG0 = 4 KiB");
        assert_eq!(field(t, 18, 16), 0b101, "PS");
        assert_eq!(field(t, 23, 23), 1, "RES1");
        assert_eq!(field(t, 31, 31), 1, "RES1");
        // A PS value wider than its field cannot spill into the next one.
        assert_eq!(field(tcr(0xff), 22, 19), 0);
        assert_eq!(T0SZ_BITS, 48);
    }

    #[test]
    fn sctlr_turns_the_mmu_and_caches_on_and_keeps_res1() {
        let s = sctlr_mmu_on();
        for bit in [0, 2, 12] {
            assert_ne!(s & (1 << bit), 0, "M/C/I bit {bit}");
        }
        for bit in [4, 5, 11, 16, 18, 22, 23, 28, 29] {
            assert_ne!(s & (1 << bit), 0, "RES1 bit {bit}");
        }
        // A (alignment check, bit 1), SA (bit 3), WXN (bit 19), EE (bit 25) stay 0.
        for bit in [1, 3, 19, 25] {
            assert_eq!(s & (1 << bit), 0, "bit {bit}");
        }
    }
}
