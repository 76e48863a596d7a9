//! Queued invalidation (VT-d §6.5.2 "Queued Invalidation Interface"): descriptor encoders and
//! the invalidation queue in DMA memory.
//!
//! The queue is one 4 KiB page of 256 descriptors of 128 bits (IQA_REG.QS = 0, DW = 0).
//! Software writes descriptors at IQT_REG and moves the tail; hardware fetches from IQH_REG.
//! Every submission ends with an invalidation wait descriptor whose status write (SW = 1)
//! tells the driver that everything before it completed (§6.5.2.8, with FN = 1 so later
//! descriptors are not fetched before it completes).
//!
//! Hardware fetches the queue and writes wait status with snooped accesses whatever ECAP.C
//! says (ECAP.C is about the paging structures), so descriptors need no cache flush.

use crate::context::DomainTag;
use iommu_core::{Iova, PhysAddr};

/// Descriptor type field, bits 3:0 (§6.5.2): context-cache invalidate.
pub const TYPE_CONTEXT: u64 = 0x1;
/// Descriptor type: IOTLB invalidate.
pub const TYPE_IOTLB: u64 = 0x2;
/// Descriptor type: device-TLB invalidate.
pub const TYPE_DEVICE_TLB: u64 = 0x3;
/// Descriptor type: interrupt entry cache invalidate.
pub const TYPE_IEC: u64 = 0x4;
/// Descriptor type: invalidation wait.
pub const TYPE_WAIT: u64 = 0x5;

/// Granularity field G, bits 5:4, of context-cache and IOTLB descriptors (§6.5.2.1, §6.5.2.3).
const G_SHIFT: u32 = 4;
/// DID field, bits 31:16 (§6.5.2.1, §6.5.2.3).
const DID_SHIFT: u32 = 16;
/// Context-cache descriptor SID, bits 47:32 (§6.5.2.1).
const SID_SHIFT: u32 = 32;
/// Context-cache descriptor FM, bits 49:48 (§6.5.2.1).
const FM_SHIFT: u32 = 48;
/// IOTLB descriptor DW (drain writes), bit 6 (§6.5.2.3).
const IOTLB_DW: u64 = 1 << 6;
/// IOTLB descriptor DR (drain reads), bit 7 (§6.5.2.3).
const IOTLB_DR: u64 = 1 << 7;
/// IOTLB descriptor upper word: IH, bit 70 of the descriptor (§6.5.2.3).
const IOTLB_IH: u64 = 1 << 6;
/// IOTLB descriptor upper word: AM, bits 69:64 (§6.5.2.3).
const IOTLB_AM_MASK: u64 = 0x3f;
/// Wait descriptor IF (interrupt flag), bit 4 (§6.5.2.8).
const WAIT_IF: u64 = 1 << 4;
/// Wait descriptor SW (status write), bit 5 (§6.5.2.8).
const WAIT_SW: u64 = 1 << 5;
/// Wait descriptor FN (fence), bit 6 (§6.5.2.8).
const WAIT_FN: u64 = 1 << 6;
/// Wait descriptor status data, bits 63:32 (§6.5.2.8).
const WAIT_DATA_SHIFT: u32 = 32;

/// One invalidation request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InvDescriptor {
    /// Every context-cache entry (§6.5.2.1, G = 01b).
    ContextGlobal,
    /// Context-cache entries of one domain (G = 10b).
    ContextDomain {
        /// The domain-id.
        did: DomainTag,
    },
    /// The context-cache entry of one source-id (G = 11b, FM = 00b). `did` is the domain the
    /// entry named **before** the change.
    ContextDevice {
        /// The domain-id the entry held.
        did: DomainTag,
        /// The source-id (requester id).
        sid: u16,
    },
    /// Every IOTLB entry (§6.5.2.3, G = 01b).
    IotlbGlobal,
    /// IOTLB entries of one domain (G = 10b).
    IotlbDomain {
        /// The domain-id.
        did: DomainTag,
    },
    /// IOTLB entries of one domain within 2^`am` pages at `addr` (G = 11b; needs CAP.PSI and
    /// `am` ≤ CAP.MAMV; `addr` aligned to 2^(12 + am)).
    IotlbPages {
        /// The domain-id.
        did: DomainTag,
        /// First address (aligned to the range).
        addr: Iova,
        /// Address mask: the range is 2^am pages.
        am: u8,
        /// Invalidation hint: only leaves changed, paging-structure caches may be kept.
        ih: bool,
    },
    /// Invalidation wait (§6.5.2.8) with FN = 1: write `data` at `status` (SW) and/or set
    /// ICS.IWC (IF).
    Wait {
        /// Where hardware writes `data` (4-byte aligned), when set.
        status: Option<PhysAddr>,
        /// The 32-bit status data.
        data: u32,
        /// Set ICS.IWC (and raise the completion event).
        interrupt: bool,
    },
}

impl InvDescriptor {
    /// The descriptor's two 64-bit words (§6.5.2), with read and write draining requested
    /// for IOTLB invalidations.
    pub const fn encode(&self) -> [u64; 2] {
        match *self {
            Self::ContextGlobal => [TYPE_CONTEXT | (1 << G_SHIFT), 0],
            Self::ContextDomain { did } => [
                TYPE_CONTEXT | (2 << G_SHIFT) | ((did.0 as u64) << DID_SHIFT),
                0,
            ],
            Self::ContextDevice { did, sid } => [
                TYPE_CONTEXT
                    | (3 << G_SHIFT)
                    | ((did.0 as u64) << DID_SHIFT)
                    | ((sid as u64) << SID_SHIFT)
                    | (0 << FM_SHIFT),
                0,
            ],
            Self::IotlbGlobal => [TYPE_IOTLB | (1 << G_SHIFT) | IOTLB_DR | IOTLB_DW, 0],
            Self::IotlbDomain { did } => [
                TYPE_IOTLB | (2 << G_SHIFT) | IOTLB_DR | IOTLB_DW | ((did.0 as u64) << DID_SHIFT),
                0,
            ],
            Self::IotlbPages { did, addr, am, ih } => [
                TYPE_IOTLB | (3 << G_SHIFT) | IOTLB_DR | IOTLB_DW | ((did.0 as u64) << DID_SHIFT),
                (addr.0 & !0xfff) | if ih { IOTLB_IH } else { 0 } | (am as u64 & IOTLB_AM_MASK),
            ],
            Self::Wait {
                status,
                data,
                interrupt,
            } => {
                let mut lo = TYPE_WAIT | WAIT_FN | ((data as u64) << WAIT_DATA_SHIFT);
                let mut hi = 0;
                if let Some(pa) = status {
                    lo |= WAIT_SW;
                    hi = pa.0 & !0b11;
                }
                if interrupt {
                    lo |= WAIT_IF;
                }
                [lo, hi]
            }
        }
    }
}

/// The page-selective requests that cover `[iova, iova + len)` (§6.5.2.3: each covers 2^AM
/// pages aligned to its size), at most `max` of them and each with AM ≤ `mamv`; `None` when
/// more would be needed (the caller then invalidates the whole domain).
pub fn page_selective_plan(
    iova: Iova,
    len: u64,
    mamv: u8,
    max: usize,
    out: &mut heapless::Vec<(Iova, u8), 16>,
) -> Option<()> {
    out.clear();
    if len == 0 {
        return Some(());
    }
    let mut start = iova.0 >> 12;
    let end = iova.0.checked_add(len)?.checked_add(0xfff)? >> 12;
    while start < end {
        // The largest aligned power-of-two block at `start` that stays inside the range.
        let align = if start == 0 {
            63
        } else {
            start.trailing_zeros()
        };
        let fit = 63 - (end - start).leading_zeros();
        let am = align.min(fit).min(u32::from(mamv));
        if out.len() >= max {
            return None;
        }
        out.push((Iova(start << 12), am as u8)).ok()?;
        start += 1 << am;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_words_match_the_spec() {
        assert_eq!(InvDescriptor::ContextGlobal.encode(), [0x11, 0]);
        assert_eq!(
            InvDescriptor::ContextDevice {
                did: DomainTag(3),
                sid: 0x0008
            }
            .encode(),
            [0x0008_0003_0031, 0]
        );
        assert_eq!(
            InvDescriptor::IotlbDomain { did: DomainTag(5) }.encode(),
            [0x0005_00e2, 0]
        );
        assert_eq!(
            InvDescriptor::IotlbPages {
                did: DomainTag(1),
                addr: Iova(0x20_0000),
                am: 9,
                ih: true
            }
            .encode(),
            [0x0001_00f2, 0x20_0049]
        );
        assert_eq!(
            InvDescriptor::Wait {
                status: Some(PhysAddr(0x1000)),
                data: 7,
                interrupt: false
            }
            .encode(),
            [0x7_0000_0065, 0x1000]
        );
        // SW = IF = 0: a pure fence (QEMU 10.0 refuses it, so the driver never queues one).
        assert_eq!(
            InvDescriptor::Wait {
                status: None,
                data: 0,
                interrupt: false
            }
            .encode(),
            [0x45, 0]
        );
    }

    #[test]
    fn page_selective_plans_cover_exactly_aligned_blocks() {
        let mut out = heapless::Vec::new();
        page_selective_plan(Iova(0x20_0000), 0x20_0000, 18, 16, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[(Iova(0x20_0000), 9)]);
        page_selective_plan(Iova(0x1000), 0x3000, 18, 16, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[(Iova(0x1000), 0), (Iova(0x2000), 1)]);
        // MAMV caps each request.
        page_selective_plan(Iova(0), 0x4000, 1, 16, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[(Iova(0), 1), (Iova(0x2000), 1)]);
        assert_eq!(
            page_selective_plan(Iova(0x1000), 0x100_0000, 0, 4, &mut out),
            None
        );
    }
}
