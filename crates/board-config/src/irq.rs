//! The wired interrupts of an SMMUv3 ([`SmmuIrqs`]), by the names the `arm,smmu-v3`
//! device-tree binding gives them.

use core::fmt;

/// How an interrupt line signals (GIC `GICD_ICFGR`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Trigger {
    /// Edge triggered.
    Edge,
    /// Level sensitive.
    Level,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Edge => "edge",
            Self::Level => "level",
        })
    }
}

/// A GIC interrupt: its INTID (SPI n is INTID 32 + n) and trigger.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Irq {
    /// GIC interrupt ID.
    pub intid: u32,
    /// Edge or level.
    pub trigger: Trigger,
}

impl Irq {
    /// Whether `intid` is a shared peripheral interrupt, the only kind a wired SMMU interrupt
    /// can be: SPI 32..=1019 or extended SPI 4096..=5119 (GICv3 architecture, IHI 0069 §2.2).
    pub const fn is_spi(intid: u32) -> bool {
        matches!(intid, 32..=1019 | 4096..=5119)
    }
}

impl fmt::Display for Irq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.intid, self.trigger)
    }
}

/// One of the SMMUv3's interrupt outputs (IHI 0070 §3.18 and §7: event queue, PRI queue,
/// CMD_SYNC completion, global errors; some implementations combine them into one line).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IrqName {
    /// `eventq`: the event queue became non-empty.
    Eventq,
    /// `priq`: the PRI queue became non-empty.
    Priq,
    /// `cmdq-sync`: a CMD_SYNC with CS=IRQ completed.
    CmdqSync,
    /// `gerror`: GERROR changed.
    Gerror,
    /// `combined`: one line for all of the above.
    Combined,
}

impl IrqName {
    /// Every name, in the order the binding lists them.
    pub const ALL: [IrqName; 5] = [
        Self::Eventq,
        Self::Priq,
        Self::CmdqSync,
        Self::Gerror,
        Self::Combined,
    ];

    /// The name as the device tree's `interrupt-names` and the config spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eventq => "eventq",
            Self::Priq => "priq",
            Self::CmdqSync => "cmdq-sync",
            Self::Gerror => "gerror",
            Self::Combined => "combined",
        }
    }

    /// The name spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl fmt::Display for IrqName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SMMU's wired interrupts; `None` where the unit has no such line (the daemon then polls).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SmmuIrqs {
    /// `eventq`.
    pub eventq: Option<Irq>,
    /// `priq`.
    pub priq: Option<Irq>,
    /// `cmdq-sync`.
    pub cmdq_sync: Option<Irq>,
    /// `gerror`.
    pub gerror: Option<Irq>,
    /// `combined`.
    pub combined: Option<Irq>,
}

impl SmmuIrqs {
    /// The line called `name`.
    pub fn get(&self, name: IrqName) -> Option<Irq> {
        match name {
            IrqName::Eventq => self.eventq,
            IrqName::Priq => self.priq,
            IrqName::CmdqSync => self.cmdq_sync,
            IrqName::Gerror => self.gerror,
            IrqName::Combined => self.combined,
        }
    }

    /// Sets the line called `name`; returns the previous value.
    pub fn set(&mut self, name: IrqName, irq: Option<Irq>) -> Option<Irq> {
        let slot = match name {
            IrqName::Eventq => &mut self.eventq,
            IrqName::Priq => &mut self.priq,
            IrqName::CmdqSync => &mut self.cmdq_sync,
            IrqName::Gerror => &mut self.gerror,
            IrqName::Combined => &mut self.combined,
        };
        core::mem::replace(slot, irq)
    }
}

impl fmt::Display for SmmuIrqs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for name in IrqName::ALL {
            if let Some(irq) = self.get(name) {
                write!(f, "{}{name}={irq}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for n in IrqName::ALL {
            assert_eq!(IrqName::parse(n.as_str()), Some(n));
        }
        assert_eq!(IrqName::parse("cmdq_sync"), None);
    }

    #[test]
    fn set_returns_the_previous_line() {
        let mut irqs = SmmuIrqs::default();
        let irq = Irq {
            intid: 106,
            trigger: Trigger::Edge,
        };
        assert_eq!(irqs.set(IrqName::Eventq, Some(irq)), None);
        assert_eq!(irqs.set(IrqName::Eventq, None), Some(irq));
        irqs.set(IrqName::Gerror, Some(irq));
        assert_eq!(irqs.to_string(), "gerror=106 edge");
        assert_eq!(SmmuIrqs::default().to_string(), "none");
    }

    #[test]
    fn only_spis_are_accepted() {
        assert!(!Irq::is_spi(31));
        assert!(Irq::is_spi(32));
        assert!(Irq::is_spi(1019));
        assert!(!Irq::is_spi(1020));
        assert!(Irq::is_spi(4096));
        assert!(!Irq::is_spi(5120));
    }
}
