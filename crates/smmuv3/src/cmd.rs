//! Command queue entries (IHI 0070 §4) and the stage-2 TLB invalidation planner.
//!
//! A command is two 64-bit words; `DW0[7:0]` is the opcode. [`Command::encode`] is pure and
//! host-tested against the spec's field positions.

use crate::features::Features;
use crate::regs::addr_bits;
use core::fmt;
use iommu_core::{Iova, StreamId, Vmid, PAGE_SIZE};

/// Opcodes (IHI 0070 §4.1, table of command opcodes).
pub mod opcode {
    /// CMD_PREFETCH_CONFIG (§4.2.1).
    pub const PREFETCH_CONFIG: u8 = 0x01;
    /// CMD_PREFETCH_ADDR (§4.2.2).
    pub const PREFETCH_ADDR: u8 = 0x02;
    /// CMD_CFGI_STE (§4.3.1).
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE (§4.3.2); CMD_CFGI_ALL is this opcode with Range = 31 (§4.3.6).
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_CFGI_CD (§4.3.3).
    pub const CFGI_CD: u8 = 0x05;
    /// CMD_CFGI_CD_ALL (§4.3.4).
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// CMD_CFGI_VMS_PIDM (§4.3.7).
    pub const CFGI_VMS_PIDM: u8 = 0x07;
    /// CMD_TLBI_NH_ALL (§4.4.2); ILLEGAL when stage 1 is not implemented.
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// CMD_TLBI_NH_ASID (§4.4.3).
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// CMD_TLBI_NH_VA (§4.4.4).
    pub const TLBI_NH_VA: u8 = 0x12;
    /// CMD_TLBI_NH_VAA (§4.4.5).
    pub const TLBI_NH_VAA: u8 = 0x13;
    /// CMD_TLBI_EL3_ALL (§4.4.6).
    pub const TLBI_EL3_ALL: u8 = 0x18;
    /// CMD_TLBI_EL3_VA (§4.4.7).
    pub const TLBI_EL3_VA: u8 = 0x1A;
    /// CMD_TLBI_EL2_ALL (§4.4.8).
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// CMD_TLBI_EL2_ASID (§4.4.9).
    pub const TLBI_EL2_ASID: u8 = 0x21;
    /// CMD_TLBI_EL2_VA (§4.4.10).
    pub const TLBI_EL2_VA: u8 = 0x22;
    /// CMD_TLBI_EL2_VAA (§4.4.11).
    pub const TLBI_EL2_VAA: u8 = 0x23;
    /// CMD_TLBI_S12_VMALL (§4.4.12); ILLEGAL when stage 2 is not implemented.
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// CMD_TLBI_S2_IPA (§4.4.13); ILLEGAL when stage 2 is not implemented.
    pub const TLBI_S2_IPA: u8 = 0x2A;
    /// CMD_TLBI_NSNH_ALL (§4.4.14): all non-secure, non-hypervisor entries; always legal.
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// CMD_ATC_INV (§4.5.1).
    pub const ATC_INV: u8 = 0x40;
    /// CMD_PRI_RESP (§4.6.1).
    pub const PRI_RESP: u8 = 0x41;
    /// CMD_RESUME (§4.6.2).
    pub const RESUME: u8 = 0x44;
    /// CMD_STALL_TERM (§4.6.3).
    pub const STALL_TERM: u8 = 0x45;
    /// CMD_SYNC (§4.7.3).
    pub const SYNC: u8 = 0x46;
}

/// The spec's name of an opcode (`"UNKNOWN"` for anything not architected).
pub const fn opcode_name(op: u8) -> &'static str {
    match op {
        opcode::PREFETCH_CONFIG => "CMD_PREFETCH_CONFIG",
        opcode::PREFETCH_ADDR => "CMD_PREFETCH_ADDR",
        opcode::CFGI_STE => "CMD_CFGI_STE",
        opcode::CFGI_STE_RANGE => "CMD_CFGI_STE_RANGE",
        opcode::CFGI_CD => "CMD_CFGI_CD",
        opcode::CFGI_CD_ALL => "CMD_CFGI_CD_ALL",
        opcode::CFGI_VMS_PIDM => "CMD_CFGI_VMS_PIDM",
        opcode::TLBI_NH_ALL => "CMD_TLBI_NH_ALL",
        opcode::TLBI_NH_ASID => "CMD_TLBI_NH_ASID",
        opcode::TLBI_NH_VA => "CMD_TLBI_NH_VA",
        opcode::TLBI_NH_VAA => "CMD_TLBI_NH_VAA",
        opcode::TLBI_EL3_ALL => "CMD_TLBI_EL3_ALL",
        opcode::TLBI_EL3_VA => "CMD_TLBI_EL3_VA",
        opcode::TLBI_EL2_ALL => "CMD_TLBI_EL2_ALL",
        opcode::TLBI_EL2_ASID => "CMD_TLBI_EL2_ASID",
        opcode::TLBI_EL2_VA => "CMD_TLBI_EL2_VA",
        opcode::TLBI_EL2_VAA => "CMD_TLBI_EL2_VAA",
        opcode::TLBI_S12_VMALL => "CMD_TLBI_S12_VMALL",
        opcode::TLBI_S2_IPA => "CMD_TLBI_S2_IPA",
        opcode::TLBI_NSNH_ALL => "CMD_TLBI_NSNH_ALL",
        opcode::ATC_INV => "CMD_ATC_INV",
        opcode::PRI_RESP => "CMD_PRI_RESP",
        opcode::RESUME => "CMD_RESUME",
        opcode::STALL_TERM => "CMD_STALL_TERM",
        opcode::SYNC => "CMD_SYNC",
        _ => "UNKNOWN",
    }
}

/// The range form of a TLB invalidation (IHI 0070 §4.4.1, needs IDR3.RIL): it covers
/// `(NUM + 1) * 2^SCALE` pages of the 4 KiB granule (TG = 0b01) from the command's address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TlbiRange {
    num: u8,
    scale: u8,
    ttl: u8,
}

impl TlbiRange {
    /// A range of `count * 2^scale` 4 KiB pages, `count` in 1..=32 and `scale` in 0..=31, with
    /// the level hint `ttl` (0 = any level, 1..=3 = entries are at that level). `None` when a
    /// value does not fit its field, or for the single page without a level hint (`count` 1,
    /// `scale` 0, `ttl` 0): NUM = SCALE = TTL = 0 with TG != 0 is Reserved and the SMMU rejects
    /// it with CERROR_ILL (IHI 0070 §4.4.1.1); use the single-address form (`range: None`).
    pub const fn new(count: u8, scale: u8, ttl: u8) -> Option<Self> {
        if count == 0
            || count > 32
            || scale > 31
            || ttl > 3
            || (count == 1 && scale == 0 && ttl == 0)
        {
            None
        } else {
            Some(Self {
                num: count - 1,
                scale,
                ttl,
            })
        }
    }

    /// Number of 4 KiB pages covered.
    pub const fn pages(self) -> u64 {
        (self.num as u64 + 1) << self.scale
    }
}

/// A command the driver issues (IHI 0070 §4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Command {
    /// CMD_PREFETCH_CONFIG: hint to fetch the STE of `sid` (a no-op on QEMU).
    PrefetchConfig {
        /// The stream.
        sid: StreamId,
    },
    /// CMD_CFGI_STE: forget cached copies of the STE of `sid` (and, unless `leaf`, of the
    /// level-1 descriptor leading to it).
    CfgiSte {
        /// The stream.
        sid: StreamId,
        /// Only the STE itself, not the L1STD.
        leaf: bool,
    },
    /// CMD_CFGI_STE_RANGE: forget the STEs of the 2^(range + 1) StreamIDs aligned around `sid`.
    CfgiSteRange {
        /// Any StreamID in the range.
        sid: StreamId,
        /// Log2 of the number of StreamIDs, minus one (0..=31).
        range: u8,
    },
    /// CMD_CFGI_ALL: forget every cached STE and L1STD (CFGI_STE_RANGE with Range = 31).
    CfgiAll,
    /// CMD_TLBI_S12_VMALL: invalidate every TLB entry tagged with `vmid`.
    TlbiS12Vmall {
        /// The translation domain.
        vmid: Vmid,
    },
    /// CMD_TLBI_S2_IPA: invalidate stage-2 entries for the IPA `ipa` (or, with `range`, for a
    /// range of pages starting there).
    TlbiS2Ipa {
        /// The translation domain.
        vmid: Vmid,
        /// The (first) IPA; bits below 12 are ignored.
        ipa: Iova,
        /// Only last-level (leaf) entries changed; walk caches may be kept.
        leaf: bool,
        /// The range form (IDR3.RIL), or `None` for a single address.
        range: Option<TlbiRange>,
    },
    /// CMD_TLBI_NSNH_ALL: invalidate every non-secure, non-hypervisor TLB entry.
    TlbiNsnhAll,
    /// CMD_SYNC with CS = SIG_NONE: completes when every earlier command has; software
    /// observes that by CMDQ_CONS moving past it.
    Sync,
}

const fn sid_field(sid: StreamId) -> u64 {
    (sid.0 as u64) << 32
}

impl Command {
    /// The opcode.
    pub const fn opcode(&self) -> u8 {
        match self {
            Self::PrefetchConfig { .. } => opcode::PREFETCH_CONFIG,
            Self::CfgiSte { .. } => opcode::CFGI_STE,
            Self::CfgiSteRange { .. } | Self::CfgiAll => opcode::CFGI_STE_RANGE,
            Self::TlbiS12Vmall { .. } => opcode::TLBI_S12_VMALL,
            Self::TlbiS2Ipa { .. } => opcode::TLBI_S2_IPA,
            Self::TlbiNsnhAll => opcode::TLBI_NSNH_ALL,
            Self::Sync => opcode::SYNC,
        }
    }

    /// The two queue words. Field values wider than their field are masked.
    pub fn encode(&self) -> [u64; 2] {
        let op = u64::from(self.opcode());
        match *self {
            // §4.2.1: SID in DW0[63:32].
            Self::PrefetchConfig { sid } => [op | sid_field(sid), 0],
            // §4.3.1: SID in DW0[63:32], Leaf in DW1[0].
            Self::CfgiSte { sid, leaf } => [op | sid_field(sid), u64::from(leaf)],
            // §4.3.2: SID in DW0[63:32], Range in DW1[4:0].
            Self::CfgiSteRange { sid, range } => [op | sid_field(sid), u64::from(range & 0x1f)],
            // §4.3.6: Range = 31 covers every StreamID.
            Self::CfgiAll => [op, 31],
            // §4.4.12: VMID in DW0[47:32].
            Self::TlbiS12Vmall { vmid } => [op | (u64::from(vmid.0) << 32), 0],
            // §4.4.13: NUM DW0[16:12], SCALE DW0[24:20], VMID DW0[47:32]; Leaf DW1[0],
            // TTL DW1[9:8], TG DW1[11:10], Address DW1[51:12].
            Self::TlbiS2Ipa {
                vmid,
                ipa,
                leaf,
                range,
            } => {
                let mut dw0 = op | (u64::from(vmid.0) << 32);
                let mut dw1 = u64::from(leaf) | addr_bits(ipa.get(), 12);
                if let Some(r) = range {
                    dw0 |= u64::from(r.num) << 12 | u64::from(r.scale) << 20;
                    // TG = 0b01: 4 KiB granule.
                    dw1 |= u64::from(r.ttl) << 8 | 1 << 10;
                }
                [dw0, dw1]
            }
            Self::TlbiNsnhAll => [op, 0],
            // §4.7.3: CS DW0[13:12] = 0b00 (SIG_NONE).
            Self::Sync => [op, 0],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(opcode_name(self.opcode()))?;
        match self {
            Self::PrefetchConfig { sid } => write!(f, " sid={sid}"),
            Self::CfgiSte { sid, leaf } => write!(f, " sid={sid} leaf={leaf}"),
            Self::CfgiSteRange { sid, range } => write!(f, " sid={sid} range={range}"),
            Self::CfgiAll => f.write_str(" (all)"),
            Self::TlbiS12Vmall { vmid } => write!(f, " vmid={vmid}"),
            Self::TlbiS2Ipa {
                vmid,
                ipa,
                leaf,
                range,
            } => {
                write!(f, " vmid={vmid} ipa={ipa} leaf={leaf}")?;
                match range {
                    Some(r) => write!(f, " pages={} ttl={}", r.pages(), r.ttl),
                    None => Ok(()),
                }
            }
            Self::TlbiNsnhAll | Self::Sync => Ok(()),
        }
    }
}

/// Without range invalidation (IDR3.RIL = 0), most single-address CMD_TLBI_S2_IPA commands
/// one invalidation sends: one per removed block or page (the backend knows them), or one per
/// page for a bare range ([`tlbi_s2_range`]). Past it, one CMD_TLBI_S12_VMALL is cheaper.
pub const TLBI_PER_LEAF_LIMIT: usize = 16;

/// Upper bound on the commands one [`tlbi_s2_range`] plan yields.
pub const TLBI_PLAN_MAX: usize = TLBI_PER_LEAF_LIMIT;

/// Most 4 KiB pages one range-form command covers: (NUM + 1) * 2^SCALE with NUM = SCALE = 31
/// (IHI 0070 §4.4.13), 2^36 pages = 2^48 bytes, the largest stage-2 input size we use.
pub const TLBI_RANGE_MAX_PAGES: u64 = 32 << 31;

/// IPAs the command's Address field can hold (bits [51:12]).
const IPA_LIMIT: u64 = 1 << 52;

impl TlbiRange {
    /// The one range that covers `pages` 4 KiB pages from the command's address with the fewest
    /// extra pages, with the level hint `ttl`.
    ///
    /// SCALE is the smallest value for which NUM + 1 = ceil(`pages` / 2^SCALE) fits in 1..=32;
    /// the covered count C = (NUM + 1) * 2^SCALE is then the smallest the range encoding can
    /// express at or above `pages` (a multiple of a larger 2^SCALE is never smaller). Among the
    /// encodings of C the one with the largest SCALE is chosen (NUM + 1 odd, or SCALE = 31),
    /// so a power of two is NUM = 0.
    ///
    /// **Bound**: C = `pages` when `pages` <= 32 or it is already expressible; otherwise
    /// C - `pages` < 2^SCALE < `pages` / 16 (SCALE > 0 was needed, so `pages` > 32 * 2^(SCALE-1)),
    /// that is, at most 6.25 % more pages than asked, all after the range's end.
    ///
    /// `None` for 0 or more than [`TLBI_RANGE_MAX_PAGES`] pages, and for the single page
    /// without a level hint (the Reserved NUM = SCALE = TTL = 0 form, see [`TlbiRange::new`]):
    /// use the single-address form for that one.
    pub const fn covering(pages: u64, ttl: u8) -> Option<Self> {
        if pages == 0 || pages > TLBI_RANGE_MAX_PAGES {
            return None;
        }
        let mut scale = 0u32;
        while pages.div_ceil(1 << scale) > 32 {
            scale += 1;
        }
        let mut count = pages.div_ceil(1 << scale);
        while count.is_multiple_of(2) && scale < 31 {
            count /= 2;
            scale += 1;
        }
        // count <= 32 and scale <= 31 by construction.
        Self::new(count as u8, scale as u8, ttl)
    }

    /// The level hint (0: none).
    pub const fn ttl(self) -> u8 {
        self.ttl
    }
}

/// One IPA span of a stage-2 invalidation and what is known of the entries it removed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct S2Span {
    /// First IPA (rounded down to 4 KiB).
    pub iova: Iova,
    /// Length in bytes (the end is rounded up to 4 KiB); 0 is nothing.
    pub len: u64,
    /// Only leaf entries were removed (CMD_TLBI_S2_IPA Leaf = 1): walk caches may stay.
    pub leaf: bool,
    /// The level of every removed leaf (IHI 0070 §4.4.13 TTL with TG = 4 KiB: 1, 2 or 3),
    /// or 0 when unknown, mixed or a table went too.
    pub ttl: u8,
}

impl S2Span {
    /// The one span covering `self` and `other` when they touch or overlap (Leaf only if both
    /// are, the TTL hint only if both agree), else `None`.
    pub fn join(self, other: Self) -> Option<Self> {
        let (a_end, b_end) = (
            self.iova.get().checked_add(self.len)?,
            other.iova.get().checked_add(other.len)?,
        );
        if a_end < other.iova.get() || b_end < self.iova.get() {
            return None;
        }
        let start = self.iova.get().min(other.iova.get());
        Some(Self {
            iova: Iova(start),
            len: a_end.max(b_end) - start,
            leaf: self.leaf && other.leaf,
            ttl: if self.ttl == other.ttl { self.ttl } else { 0 },
        })
    }
}

/// The one command that invalidates the stage-2 entries of `vmid` in `span` on an SMMU with
/// range invalidation (IDR3.RIL; IHI 0070 §4.4.13): CMD_TLBI_S2_IPA at the span's first page
/// with the range [`TlbiRange::covering`] its page count (so it over-invalidates by less than
/// 1/16 of the span, after its end), TG = 4 KiB and the span's TTL hint. A single page with
/// no hint takes the single-address form (TG = 0), which is exact. A span past the 52-bit
/// Address field or longer than [`TLBI_RANGE_MAX_PAGES`] (never one of a stage-2 table of at
/// most 48 bits) gets CMD_TLBI_S12_VMALL. `None` for an empty span.
pub fn tlbi_s2_covering(vmid: Vmid, span: S2Span) -> Option<Command> {
    if span.len == 0 {
        return None;
    }
    let start = span.iova.align_down(PAGE_SIZE).get();
    let end = match span
        .iova
        .get()
        .checked_add(span.len)
        .and_then(|e| e.checked_next_multiple_of(PAGE_SIZE))
    {
        Some(end) if end <= IPA_LIMIT => end,
        _ => return Some(Command::TlbiS12Vmall { vmid }),
    };
    let pages = (end - start) / PAGE_SIZE;
    if pages > TLBI_RANGE_MAX_PAGES {
        return Some(Command::TlbiS12Vmall { vmid });
    }
    Some(Command::TlbiS2Ipa {
        vmid,
        ipa: Iova(start),
        leaf: span.leaf,
        // None only for one page without a hint: the exact single-address form.
        range: TlbiRange::covering(pages, span.ttl),
    })
}

#[derive(Clone, Debug)]
enum Plan {
    Done,
    One(Command),
    Pages {
        vmid: Vmid,
        next: u64,
        end: u64,
        leaf: bool,
    },
}

/// The stage-2 invalidation commands for one IPA range (see [`tlbi_s2_range`]).
#[derive(Clone, Debug)]
pub struct TlbiS2Plan(Plan);

/// Plans the invalidation of stage-2 entries of `vmid` for `[iova, iova + len)` (rounded out to
/// 4 KiB pages) when nothing is known of the entry sizes:
///
/// * with range invalidation (IDR3.RIL), exactly one command, [`tlbi_s2_covering`] with no TTL
///   hint;
/// * without it, one single-address CMD_TLBI_S2_IPA per page up to [`TLBI_PER_LEAF_LIMIT`]
///   pages;
/// * otherwise (or for ranges beyond the 52-bit IPA space) one CMD_TLBI_S12_VMALL.
///
/// `len == 0` plans nothing. The plan never yields a CMD_SYNC.
pub fn tlbi_s2_range(
    features: &Features,
    vmid: Vmid,
    iova: Iova,
    len: u64,
    leaf: bool,
) -> TlbiS2Plan {
    if len == 0 {
        return TlbiS2Plan(Plan::Done);
    }
    if features.ril {
        let span = S2Span {
            iova,
            len,
            leaf,
            ttl: 0,
        };
        return TlbiS2Plan(tlbi_s2_covering(vmid, span).map_or(Plan::Done, Plan::One));
    }
    let start = iova.align_down(PAGE_SIZE).get();
    match iova
        .get()
        .checked_add(len)
        .and_then(|e| e.checked_next_multiple_of(PAGE_SIZE))
    {
        Some(end)
            if end <= IPA_LIMIT && (end - start) / PAGE_SIZE <= TLBI_PER_LEAF_LIMIT as u64 =>
        {
            TlbiS2Plan(Plan::Pages {
                vmid,
                next: start,
                end,
                leaf,
            })
        }
        _ => TlbiS2Plan(Plan::One(Command::TlbiS12Vmall { vmid })),
    }
}

impl Iterator for TlbiS2Plan {
    type Item = Command;

    fn next(&mut self) -> Option<Command> {
        match self.0 {
            Plan::Done => None,
            Plan::One(c) => {
                self.0 = Plan::Done;
                Some(c)
            }
            Plan::Pages {
                vmid,
                next,
                end,
                leaf,
            } => {
                if next >= end {
                    self.0 = Plan::Done;
                    return None;
                }
                self.0 = Plan::Pages {
                    vmid,
                    next: next + PAGE_SIZE,
                    end,
                    leaf,
                };
                Some(Command::TlbiS2Ipa {
                    vmid,
                    ipa: Iova(next),
                    leaf,
                    range: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(ril: bool) -> Features {
        let idr3 = if ril { 1 << 10 } else { 0 };
        Features::decode([0x0d44_101b, 0x0273_0010, 0, idr3, 0, 0x74], 1)
    }

    #[test]
    fn opcodes_and_fields() {
        assert_eq!(Command::Sync.encode(), [0x46, 0]);
        assert_eq!(
            Command::CfgiSte {
                sid: StreamId(8),
                leaf: true
            }
            .encode(),
            [0x8_0000_0003, 1]
        );
        assert_eq!(
            Command::CfgiSte {
                sid: StreamId(0x1234),
                leaf: false
            }
            .encode()[0]
                >> 32,
            0x1234
        );
        assert_eq!(Command::CfgiAll.encode(), [0x04, 31]);
        assert_eq!(
            Command::CfgiSteRange {
                sid: StreamId(0x100),
                range: 7
            }
            .encode(),
            [0x100_0000_0004, 7]
        );
        assert_eq!(
            Command::TlbiS12Vmall { vmid: Vmid(0xabcd) }.encode(),
            [0xabcd_0000_0028, 0]
        );
        assert_eq!(Command::TlbiNsnhAll.encode(), [0x30, 0]);
        assert_eq!(
            Command::PrefetchConfig { sid: StreamId(8) }.encode(),
            [0x8_0000_0001, 0]
        );
    }

    #[test]
    fn tlbi_s2_ipa_single_and_range() {
        let single = Command::TlbiS2Ipa {
            vmid: Vmid(1),
            ipa: Iova(0x20_0fff),
            leaf: true,
            range: None,
        };
        assert_eq!(single.encode(), [0x1_0000_002A, 0x20_0001]);
        let r = TlbiRange::new(32, 5, 3).unwrap();
        assert_eq!(r.pages(), 1024);
        let ranged = Command::TlbiS2Ipa {
            vmid: Vmid(2),
            ipa: Iova(0xf_ffff_f000_0000),
            leaf: false,
            range: Some(r),
        };
        let [dw0, dw1] = ranged.encode();
        assert_eq!(dw0 & 0xff, 0x2A);
        assert_eq!((dw0 >> 12) & 0x1f, 31, "NUM = count - 1");
        assert_eq!((dw0 >> 20) & 0x1f, 5, "SCALE");
        assert_eq!((dw0 >> 32) & 0xffff, 2, "VMID");
        assert_eq!(dw1 & 1, 0, "Leaf");
        assert_eq!((dw1 >> 8) & 3, 3, "TTL");
        assert_eq!((dw1 >> 10) & 3, 1, "TG = 4K");
        assert_eq!(dw1 & !0xfff, 0xf_ffff_f000_0000, "Address[51:12]");
        assert_eq!(TlbiRange::new(0, 0, 0), None);
        // IHI 0070 §4.4.1.1: NUM = 0, SCALE = 0, TTL = 0 (with TG != 0) is Reserved, CERROR_ILL.
        assert_eq!(TlbiRange::new(1, 0, 0), None);
        assert_eq!(TlbiRange::new(1, 0, 3).map(TlbiRange::pages), Some(1));
        assert_eq!(TlbiRange::new(1, 1, 0).map(TlbiRange::pages), Some(2));
        assert_eq!(TlbiRange::new(33, 0, 0), None);
        assert_eq!(TlbiRange::new(1, 32, 0), None);
        assert_eq!(TlbiRange::new(1, 0, 4), None);
    }

    #[test]
    fn display_names_the_command() {
        let c = Command::TlbiS2Ipa {
            vmid: Vmid(1),
            ipa: Iova(0x1000),
            leaf: true,
            range: TlbiRange::new(2, 1, 0),
        };
        assert_eq!(
            c.to_string(),
            "CMD_TLBI_S2_IPA vmid=1 ipa=0x0000000000001000 leaf=true pages=4 ttl=0"
        );
        assert_eq!(Command::CfgiAll.to_string(), "CMD_CFGI_STE_RANGE (all)");
        assert_eq!(opcode_name(0xff), "UNKNOWN");
    }

    fn plan(ril: bool, iova: u64, len: u64) -> Vec<Command> {
        tlbi_s2_range(&features(ril), Vmid(1), Iova(iova), len, true).collect()
    }

    /// Pages covered by a plan, as `(first page, page count)` pairs.
    fn coverage(cmds: &[Command]) -> Vec<(u64, u64)> {
        cmds.iter()
            .map(|c| match c {
                Command::TlbiS2Ipa { ipa, range, .. } => {
                    (ipa.get() / PAGE_SIZE, range.map_or(1, |r| r.pages()))
                }
                other => panic!("unexpected {other}"),
            })
            .collect()
    }

    #[test]
    fn planner_without_ril() {
        assert!(plan(false, 0x10_0000, 0).is_empty());
        // 0x1800..0x2800 touches two pages.
        assert_eq!(coverage(&plan(false, 0x1800, 0x1000)), vec![(1, 1), (2, 1)]);
        assert_eq!(plan(false, 0, 16 * PAGE_SIZE).len(), 16);
        assert_eq!(
            plan(false, 0, 17 * PAGE_SIZE),
            vec![Command::TlbiS12Vmall { vmid: Vmid(1) }]
        );
    }

    #[test]
    fn planner_with_ril() {
        assert_eq!(
            coverage(&plan(true, 0x10_0000, 0x10_0000)),
            vec![(0x100, 256)]
        );
        assert_eq!(coverage(&plan(true, 0x3000, 0x1000)), vec![(3, 1)]);
        assert!(plan(true, 0x3000, 0x1000)
            .iter()
            .all(|c| matches!(c, Command::TlbiS2Ipa { range: None, .. })));
        // 33 pages: one command of 17 * 2^1 pages (the old planner sent 1 + 32).
        assert_eq!(coverage(&plan(true, 0, 33 * PAGE_SIZE)), vec![(0, 34)]);
        // Beyond the 52-bit IPA space: everything.
        assert_eq!(
            plan(true, u64::MAX - 0xfff, 0x1000),
            vec![Command::TlbiS12Vmall { vmid: Vmid(1) }]
        );
        assert_eq!(
            plan(true, 1 << 52, 0x1000),
            vec![Command::TlbiS12Vmall { vmid: Vmid(1) }]
        );
        // 2^36 pages (2^48 bytes) is one command; one page more is past the encoding.
        let all = TLBI_RANGE_MAX_PAGES * PAGE_SIZE;
        assert_eq!(
            coverage(&plan(true, 0, all)),
            vec![(0, TLBI_RANGE_MAX_PAGES)]
        );
        assert_eq!(
            plan(true, 0, all + PAGE_SIZE),
            vec![Command::TlbiS12Vmall { vmid: Vmid(1) }]
        );
    }

    /// The fields of an encoded CMD_TLBI_S2_IPA (IHI 0070 §4.4.13): (address, NUM, SCALE, TG,
    /// TTL, Leaf).
    fn fields(c: &Command) -> (u64, u64, u64, u64, u64, u64) {
        let [dw0, dw1] = c.encode();
        assert_eq!(dw0 & 0xff, u64::from(opcode::TLBI_S2_IPA), "{c}");
        (
            dw1 & 0x000f_ffff_ffff_f000,
            (dw0 >> 12) & 0x1f,
            (dw0 >> 20) & 0x1f,
            (dw1 >> 10) & 3,
            (dw1 >> 8) & 3,
            dw1 & 1,
        )
    }

    /// Checks the one command for `pages` pages at `base` with hint `ttl` and returns the pages
    /// it covers: the Reserved form never appears, the command starts at `base`, covers the
    /// span, and over-invalidates by less than 1/16 of it (0 up to 32 pages).
    fn check_one(base: u64, pages: u64, ttl: u8, leaf: bool) -> u64 {
        let span = S2Span {
            iova: Iova(base),
            len: pages * PAGE_SIZE,
            leaf,
            ttl,
        };
        let cmd = tlbi_s2_covering(Vmid(3), span).expect("a non-empty span");
        let (addr, num, scale, tg, cttl, cleaf) = fields(&cmd);
        assert_eq!(addr, base, "starts at the span's base");
        assert_eq!(cleaf, u64::from(leaf));
        assert_eq!(cmd.encode()[0] >> 32 & 0xffff, 3, "VMID");
        if tg == 0 {
            // Single-address form: only for one page without a hint; exact.
            assert_eq!((pages, ttl, num, scale, cttl), (1, 0, 0, 0, 0));
            return 1;
        }
        assert_eq!(tg, 1, "TG = 4 KiB");
        assert_eq!(cttl, u64::from(ttl), "the TTL hint is passed on");
        assert!(
            num != 0 || scale != 0 || cttl != 0,
            "Reserved NUM = SCALE = TTL = 0 form (IHI 0070 §4.4.13)"
        );
        let covered = (num + 1) << scale;
        assert!(covered >= pages, "{pages} pages, {covered} covered");
        let over = covered - pages;
        if pages <= 32 {
            assert_eq!(over, 0, "{pages} pages");
        } else {
            assert!(16 * over < pages, "{pages} pages, {covered} covered");
        }
        covered
    }

    /// Every span of 1..=65,536 pages (256 MiB) is exactly one command, for every hint and at
    /// an unaligned base, within the documented bound.
    #[test]
    fn every_span_up_to_65536_pages_is_one_command_within_the_bound() {
        let mut exact = 0;
        for pages in 1..=65_536u64 {
            for ttl in [0, 3] {
                let covered = check_one(0x7_0000_3000, pages, ttl, ttl != 0);
                if ttl == 0 && covered == pages {
                    exact += 1;
                }
            }
        }
        // Exact for the 32 smallest and every count * 2^scale with count <= 32.
        assert!(exact >= 208, "{exact}");
    }

    #[test]
    fn single_page_without_a_hint_is_the_single_address_form() {
        let span = S2Span {
            iova: Iova(0x5000),
            len: PAGE_SIZE,
            leaf: false,
            ttl: 0,
        };
        assert_eq!(
            tlbi_s2_covering(Vmid(1), span),
            Some(Command::TlbiS2Ipa {
                vmid: Vmid(1),
                ipa: Iova(0x5000),
                leaf: false,
                range: None
            })
        );
        assert_eq!(TlbiRange::covering(1, 0), None);
        assert_eq!(TlbiRange::covering(1, 2).map(TlbiRange::pages), Some(1));
        assert_eq!(TlbiRange::covering(0, 2), None);
        assert_eq!(
            tlbi_s2_covering(Vmid(1), S2Span { len: 0, ..span }),
            None,
            "nothing for nothing"
        );
    }

    #[test]
    fn spans_join_when_they_touch() {
        let a = S2Span {
            iova: Iova(0x1000),
            len: 0x1000,
            leaf: true,
            ttl: 3,
        };
        let b = S2Span {
            iova: Iova(0x2000),
            ..a
        };
        assert_eq!(a.join(b), Some(S2Span { len: 0x2000, ..a }));
        assert_eq!(b.join(a), a.join(b));
        let far = S2Span {
            iova: Iova(0x4000),
            ..a
        };
        assert_eq!(a.join(far), None);
        let block = S2Span {
            iova: Iova(0x20_0000),
            len: 0x20_0000,
            leaf: false,
            ttl: 2,
        };
        let j = S2Span {
            iova: Iova(0x1f_f000),
            ..a
        }
        .join(block)
        .unwrap();
        assert_eq!((j.leaf, j.ttl), (false, 0), "mixed: no hint, non-leaf");
    }

    proptest::proptest! {
        /// Every plan covers the pages touched by the range from its first page on: with RIL
        /// as one command within the bound, without as one command per page; or falls back
        /// to a whole-VMID invalidation.
        #[test]
        fn plans_cover_the_range(ril: bool, iova in 0u64..(1 << 48), len in 1u64..(1 << 40)) {
            let cmds = plan(ril, iova, len);
            let first = iova / PAGE_SIZE;
            let last = (iova + len - 1) / PAGE_SIZE;
            let pages = last - first + 1;
            if cmds == [Command::TlbiS12Vmall { vmid: Vmid(1) }] {
                proptest::prop_assert!(
                    (!ril && pages > TLBI_PER_LEAF_LIMIT as u64)
                        || (ril && pages > TLBI_RANGE_MAX_PAGES)
                );
            } else {
                let cov = coverage(&cmds);
                if ril {
                    proptest::prop_assert_eq!(cov.len(), 1);
                    let (page, count) = cov[0];
                    proptest::prop_assert_eq!(page, first);
                    proptest::prop_assert!(count >= pages);
                    proptest::prop_assert!(count == pages || 16 * (count - pages) < pages);
                } else {
                    let mut next = first;
                    for (page, count) in cov {
                        proptest::prop_assert_eq!((page, count), (next, 1));
                        next += 1;
                    }
                    proptest::prop_assert_eq!(next, last + 1);
                }
                proptest::prop_assert!(cmds.len() <= TLBI_PLAN_MAX);
            }
        }

        /// Large spans at unaligned page bases, with and without a TTL hint: one command,
        /// within the bound.
        #[test]
        fn large_spans_at_any_base_are_one_command(
            base_page in 0u64..(1 << 36),
            pages in 1u64..=TLBI_RANGE_MAX_PAGES,
            ttl in 0u8..=3,
            leaf: bool,
        ) {
            check_one(base_page * PAGE_SIZE, pages, ttl, leaf);
        }
    }
}
