//! [`IommuUnit`]: one IOMMU instance, with what its source stated about it ([`Stated`]).

use crate::irq::{IrqName, SmmuIrqs};
use crate::topology::Origin;
use core::fmt;
use iommu_core::PhysAddr;

/// Longest unit name kept; longer device-tree node names are cut (names are labels, units are
/// identified by their base address).
pub const UNIT_NAME_LEN: usize = 32;

/// A unit's name: the device-tree node name (`smmuv3@9050000`) or the config's label (`smmu0`).
pub type UnitName = heapless::String<UNIT_NAME_LEN>;

/// Size of an SMMUv3 register frame when nothing says otherwise: pages 0 and 1, 64 KiB each
/// (IHI 0070 §6.1).
pub const SMMUV3_FRAME_SIZE: u64 = 0x2_0000;

/// Size of a VT-d remapping unit's register set when nothing says otherwise: one 4 KiB page
/// (VT-d §8.3 DRHD "Size": 2^N pages, N = 0 in tables older than the field).
pub const VTD_FRAME_SIZE: u64 = 0x1000;

/// Index of a unit in its [`crate::Topology`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct UnitId(pub u8);

impl UnitId {
    /// The index as a `usize`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unit {}", self.0)
    }
}

/// The programming interface of a unit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IommuKind {
    /// Arm SMMUv3 (IHI 0070), device-tree `compatible = "arm,smmu-v3"`.
    SmmuV3,
    /// Intel VT-d DMA-remapping unit (VT-d §8.3, an ACPI DMAR DRHD; config `[vtd NAME]`). It
    /// tells PCI functions apart by their requester ID (source-id) and cannot tell platform
    /// (MMIO) devices apart; its bindings' StreamID is the function's requester ID.
    Vtd,
}

impl fmt::Display for IommuKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SmmuV3 => "SMMUv3",
            Self::Vtd => "VT-d",
        })
    }
}

/// What a unit does with DMA from a stream no client has claimed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Unclaimed {
    /// Block it and record a fault event (stage-2 STE over an empty table with S2R=1,
    /// IHI 0070 §5.2). The default.
    #[default]
    DenyAndRecord,
    /// Let it through untranslated (STE.Config = bypass). Only with the unit's explicit
    /// `allow-bypass yes`; the daemon logs it at start-up.
    Bypass,
}

impl fmt::Display for Unclaimed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DenyAndRecord => "deny",
            Self::Bypass => "bypass",
        })
    }
}

bitflags::bitflags! {
    /// Which of a unit's properties its source actually stated. Combining needs it: in
    /// `override` mode only stated properties replace firmware's, and in `merge` mode only
    /// stated properties can conflict.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct Stated: u16 {
        /// `size` (the device tree always states it through `reg`).
        const SIZE = 1 << 0;
        /// `coherent` (the device tree always states it: `dma-coherent` or its absence).
        const COHERENT = 1 << 1;
        /// `unclaimed` (never stated by a device tree).
        const UNCLAIMED = 1 << 2;
        /// The `eventq` line (present, or in a config explicitly `none`).
        const EVENTQ = 1 << 3;
        /// The `priq` line.
        const PRIQ = 1 << 4;
        /// The `cmdq-sync` line.
        const CMDQ_SYNC = 1 << 5;
        /// The `gerror` line.
        const GERROR = 1 << 6;
        /// The `combined` line.
        const COMBINED = 1 << 7;
        /// `segment` of a VT-d unit (a DMAR always states it).
        const SEGMENT = 1 << 8;
        /// `include-pci-all` of a VT-d unit (a DMAR always states it: DRHD flag bit 0).
        const INCLUDE_PCI_ALL = 1 << 9;
    }
}

impl Stated {
    /// The flag of one interrupt line.
    pub const fn irq(name: IrqName) -> Self {
        match name {
            IrqName::Eventq => Self::EVENTQ,
            IrqName::Priq => Self::PRIQ,
            IrqName::CmdqSync => Self::CMDQ_SYNC,
            IrqName::Gerror => Self::GERROR,
            IrqName::Combined => Self::COMBINED,
        }
    }
}

/// One IOMMU instance.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IommuUnit {
    /// A label for messages.
    pub name: UnitName,
    /// Its programming interface.
    pub kind: IommuKind,
    /// Base of its register frame; what identifies the unit across sources.
    pub base: PhysAddr,
    /// Size of its register frame.
    pub size: u64,
    /// Its wired interrupts.
    pub irqs: SmmuIrqs,
    /// Whether its table walks and queue accesses snoop the CPU caches (`dma-coherent`).
    pub coherent: bool,
    /// What unclaimed streams get.
    pub unclaimed: Unclaimed,
    /// VT-d: the PCI segment whose functions it translates (0 for an SMMU: its PCI hosts carry
    /// their own segments).
    pub segment: u16,
    /// VT-d: it translates every function of its segment that no other unit lists (DRHD
    /// INCLUDE_PCI_ALL, VT-d §8.3). Always `false` for an SMMU.
    pub include_pci_all: bool,
    /// Which of the above its source stated.
    pub stated: Stated,
    /// Where it was described.
    pub origin: Origin,
}

impl IommuUnit {
    /// An SMMUv3 at `base` with nothing stated: 128 KiB frame, no interrupts, not coherent,
    /// unclaimed streams denied and recorded.
    pub fn smmu_v3(name: UnitName, base: PhysAddr, origin: Origin) -> Self {
        Self {
            name,
            kind: IommuKind::SmmuV3,
            base,
            size: SMMUV3_FRAME_SIZE,
            irqs: SmmuIrqs::default(),
            coherent: false,
            unclaimed: Unclaimed::DenyAndRecord,
            segment: 0,
            include_pci_all: false,
            stated: Stated::empty(),
            origin,
        }
    }

    /// A VT-d unit at `base` with nothing stated: one 4 KiB register page, segment 0, not
    /// INCLUDE_PCI_ALL, unclaimed requesters denied and recorded. Interrupts and coherence do
    /// not apply (its fault event is an MSI the driver programs, its coherence is ECAP.C).
    pub fn vtd(name: UnitName, base: PhysAddr, origin: Origin) -> Self {
        Self {
            kind: IommuKind::Vtd,
            size: VTD_FRAME_SIZE,
            ..Self::smmu_v3(name, base, origin)
        }
    }

    /// Whether the unit's frame `base .. base + size` overlaps `other`'s.
    pub fn overlaps(&self, other: &IommuUnit) -> bool {
        let end = |u: &IommuUnit| u128::from(u.base.0) + u128::from(u.size);
        u128::from(self.base.0) < end(other) && u128::from(other.base.0) < end(self)
    }

    /// Whether unclaimed streams of this unit bypass translation (an explicit opt-in the
    /// daemon must log).
    pub fn bypasses_unclaimed(&self) -> bool {
        self.unclaimed == Unclaimed::Bypass
    }
}

impl fmt::Display for IommuUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == IommuKind::Vtd {
            return write!(
                f,
                "{} (VT-d at {} size {:#x}, segment {:04x}{}, unclaimed {})",
                self.name,
                self.base,
                self.size,
                self.segment,
                if self.include_pci_all {
                    ", include-pci-all"
                } else {
                    ""
                },
                self.unclaimed
            );
        }
        write!(
            f,
            "{} (SMMUv3 at {} size {:#x}, irqs {}, {}, unclaimed {})",
            self.name,
            self.base,
            self.size,
            self.irqs,
            if self.coherent {
                "coherent"
            } else {
                "non-coherent"
            },
            self.unclaimed
        )
    }
}

/// `name` cut to [`UNIT_NAME_LEN`] bytes (at a character boundary).
pub fn unit_name(name: &str) -> UnitName {
    let mut out = UnitName::new();
    for c in name.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(base: u64, size: u64) -> IommuUnit {
        IommuUnit {
            size,
            ..IommuUnit::smmu_v3(unit_name("u"), PhysAddr(base), Origin::DeviceTree)
        }
    }

    #[test]
    fn frames_overlap_only_when_they_share_a_byte() {
        assert!(unit(0x1000, 0x1000).overlaps(&unit(0x1fff, 1)));
        assert!(!unit(0x1000, 0x1000).overlaps(&unit(0x2000, 0x1000)));
        assert!(unit(u64::MAX - 1, 2).overlaps(&unit(u64::MAX, 1)));
    }

    #[test]
    fn long_names_are_cut() {
        let long = "a".repeat(40);
        assert_eq!(unit_name(&long).len(), UNIT_NAME_LEN);
        assert_eq!(unit_name("smmuv3@9050000").as_str(), "smmuv3@9050000");
    }

    #[test]
    fn defaults_deny_and_use_a_two_page_frame() {
        let u = unit(0x0905_0000, SMMUV3_FRAME_SIZE);
        assert_eq!(u.unclaimed, Unclaimed::DenyAndRecord);
        assert!(!u.bypasses_unclaimed());
        assert_eq!(
            u.to_string(),
            "u (SMMUv3 at 0x0000000009050000 size 0x20000, irqs none, non-coherent, unclaimed deny)"
        );
    }
}
