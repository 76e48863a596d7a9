//! Global errors (IHI 0070 §6.3.18 SMMU_GERROR, §6.3.19 SMMU_GERRORN).
//!
//! An error is *active* while its GERROR bit differs from the same GERRORN bit; software
//! acknowledges it by toggling the GERRORN bit so that the two match again.

use core::fmt;

bitflags::bitflags! {
    /// SMMU_GERROR / SMMU_GERRORN bits.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct GerrorFlags: u32 {
        /// CMDQ_ERR: a command failed; the queue is stopped until acknowledged.
        const CMDQ_ERR = 1 << 0;
        /// EVENTQ_ABT_ERR: an event could not be written to the event queue (QEMU also raises
        /// it when the queue is full).
        const EVENTQ_ABT_ERR = 1 << 2;
        /// PRIQ_ABT_ERR: a PRI request could not be written.
        const PRIQ_ABT_ERR = 1 << 3;
        /// MSI_CMDQ_ABT_ERR: a CMD_SYNC MSI write aborted.
        const MSI_CMDQ_ABT_ERR = 1 << 4;
        /// MSI_EVENTQ_ABT_ERR: an event queue MSI write aborted.
        const MSI_EVENTQ_ABT_ERR = 1 << 5;
        /// MSI_PRIQ_ABT_ERR: a PRI queue MSI write aborted.
        const MSI_PRIQ_ABT_ERR = 1 << 6;
        /// MSI_GERROR_ABT_ERR: a GERROR MSI write aborted.
        const MSI_GERROR_ABT_ERR = 1 << 7;
        /// SFM_ERR: the SMMU entered service failure mode.
        const SFM_ERR = 1 << 8;
        /// CMDQP_ERR: an error on an enhanced command queue page.
        const CMDQP_ERR = 1 << 9;
        /// DPT_ERR: a device permission table error.
        const DPT_ERR = 1 << 10;
    }
}

impl GerrorFlags {
    /// The errors acknowledged by [`crate::Smmu::poll_gerror`]: nothing else needs to happen
    /// before they are cleared. CMDQ_ERR needs the failing command replaced first (done by
    /// command submission) and EVENTQ_ABT_ERR is counted as an overflow by the event drain.
    pub const ACKED_BY_POLL: Self = Self::PRIQ_ABT_ERR
        .union(Self::MSI_CMDQ_ABT_ERR)
        .union(Self::MSI_EVENTQ_ABT_ERR)
        .union(Self::MSI_PRIQ_ABT_ERR)
        .union(Self::MSI_GERROR_ABT_ERR)
        .union(Self::SFM_ERR)
        .union(Self::CMDQP_ERR)
        .union(Self::DPT_ERR);

    /// The active errors given GERROR and GERRORN (unknown bits included, retained as-is).
    pub const fn active(gerror: u32, gerrorn: u32) -> Self {
        Self::from_bits_retain(gerror ^ gerrorn)
    }
}

impl fmt::Display for GerrorFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut sep = "";
        for (name, _) in self.iter_names() {
            write!(f, "{sep}{name}")?;
            sep = "|";
        }
        let unknown = self.bits() & !Self::all().bits();
        if unknown != 0 {
            write!(f, "{sep}{unknown:#x}")?;
        }
        Ok(())
    }
}

/// What [`crate::Smmu::poll_gerror`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct GerrorReport {
    /// Errors that were active.
    pub active: GerrorFlags,
    /// The subset acknowledged by the poll.
    pub acked: GerrorFlags,
}

impl GerrorReport {
    /// No error was active.
    pub fn is_clean(&self) -> bool {
        self.active.is_empty()
    }
}

impl fmt::Display for GerrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gerror active={} acked={}", self.active, self.acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::GERROR;

    #[test]
    fn bits_match_the_register_layout() {
        assert_eq!(GerrorFlags::CMDQ_ERR.bits(), GERROR::CMDQ_ERR::SET.value);
        assert_eq!(
            GerrorFlags::EVENTQ_ABT_ERR.bits(),
            GERROR::EVENTQ_ABT_ERR::SET.value
        );
        assert_eq!(
            GerrorFlags::PRIQ_ABT_ERR.bits(),
            GERROR::PRIQ_ABT_ERR::SET.value
        );
        assert_eq!(
            GerrorFlags::MSI_GERROR_ABT_ERR.bits(),
            GERROR::MSI_GERROR_ABT_ERR::SET.value
        );
        assert_eq!(GerrorFlags::SFM_ERR.bits(), GERROR::SFM_ERR::SET.value);
        assert_eq!(GerrorFlags::DPT_ERR.bits(), GERROR::DPT_ERR::SET.value);
    }

    #[test]
    fn active_is_the_difference() {
        assert_eq!(
            GerrorFlags::active(0b101, 0b001),
            GerrorFlags::EVENTQ_ABT_ERR
        );
        assert_eq!(GerrorFlags::active(0b101, 0b101), GerrorFlags::empty());
        assert_eq!(GerrorFlags::active(0, 1), GerrorFlags::CMDQ_ERR);
        let r = GerrorReport {
            active: GerrorFlags::active(0x1_0101, 0),
            acked: GerrorFlags::SFM_ERR,
        };
        assert_eq!(
            r.to_string(),
            "gerror active=CMDQ_ERR|SFM_ERR|0x10000 acked=SFM_ERR"
        );
        assert!(!GerrorFlags::ACKED_BY_POLL.contains(GerrorFlags::CMDQ_ERR));
        assert!(!GerrorFlags::ACKED_BY_POLL.contains(GerrorFlags::EVENTQ_ABT_ERR));
        assert!(GerrorReport::default().is_clean());
    }
}
