//! Quiescing a pass-through function's DMA when its VM stops, before anyone else may own it
//! (what VFIO does on release): bus mastering off, then a Function Level Reset where the
//! function offers one.
//!
//! * The Command register (PCI header offset 0x04, PCIe Base Specification §7.5.1.1.3) is
//!   written 0: Bus Master Enable (bit 2) off, so the function may start no new request, and
//!   Memory/I/O Space off.
//! * The capability list (Status bit 4 "Capabilities List", pointer at 0x34, §7.5.1.1.4 and
//!   §7.5.1.1.11) is walked for the PCI Express Capability (ID 0x10, §7.5.3). Its Device
//!   Capabilities register (+0x04, §7.5.3.3) says in bit 28 whether the function offers
//!   Function Level Reset. If so, Device Control (+0x08, §7.5.3.4) bit 15 "Initiate Function
//!   Level Reset" is written; software must then wait 100 ms before it touches the function
//!   again (§6.6.2), after which its Vendor ID must read back (not 0xFFFF: the function is back).
//! * A function that offers no FLR gets no reset (the record says `flr=not-offered`); the host
//!   still waits the same 100 ms with bus mastering off, so a transfer it had already queued
//!   meets bus-master-off instead of its next owner's memory (QEMU's `edu` starts a queued DMA
//!   100 ms after it was asked, and drops it when bus mastering is off by then). A device that
//!   holds a request longer than that without FLR is not covered.
//!
//! Safe logic over [`HostFunction`], host-tested; the wait is the caller's (the daemon yields
//! to other VMs meanwhile).

use crate::vpci::HostFunction;

/// What software waits after an FLR before touching the function (PCIe Base §6.6.2), and
/// what the host waits with bus mastering off when the function offers no FLR.
pub const SETTLE_MS: u64 = 100;

/// PCI Express Capability ID (PCIe Base §7.5.3.1).
const CAP_ID_PCIE: u8 = 0x10;
/// Status register bit 4: the function has a capability list (§7.5.1.1.4).
const STATUS_CAP_LIST: u32 = 1 << (16 + 4);
/// Capabilities Pointer (§7.5.1.1.11).
const CAP_POINTER: u16 = 0x34;
/// Device Capabilities, bit 28: Function Level Reset Capability (§7.5.3.3).
const DEVCAP_FLR: u32 = 1 << 28;
/// Device Control, bit 15: Initiate Function Level Reset (§7.5.3.4).
const DEVCTL_INITIATE_FLR: u16 = 1 << 15;
/// At most this many capabilities are followed (a looping list ends the walk).
const MAX_CAPS: usize = 48;

/// How one function was quiesced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Quiesced {
    /// Bus mastering off, the function reset (FLR) and back after [`SETTLE_MS`].
    Reset,
    /// Bus mastering off; the function offers no FLR: [`SETTLE_MS`] waited with bus
    /// mastering off.
    NoFlr,
    /// Bus mastering off and FLR initiated, but the function did not answer afterwards
    /// (Vendor ID 0xFFFF): it stays off.
    NotBack,
    /// Test image only: nothing done (the stale-DMA test's control).
    SkippedControl,
}

impl Quiesced {
    /// The record's `flr=` value.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Reset => "done",
            Self::NoFlr => "not-offered",
            Self::NotBack => "not-back",
            Self::SkippedControl => "skipped-control",
        }
    }
}

/// The offset of the function's PCI Express Capability, if it has one.
pub fn pcie_capability(f: &mut (impl HostFunction + ?Sized)) -> Option<u16> {
    if f.config_read32(0x04) & STATUS_CAP_LIST == 0 {
        return None;
    }
    let mut at = (f.config_read32(CAP_POINTER) & 0xfc) as u16;
    for _ in 0..MAX_CAPS {
        // Capabilities live past the 64-byte header (§7.5.1.1.11).
        if at < 0x40 {
            return None;
        }
        let header = f.config_read32(at);
        if header & 0xff == u32::from(CAP_ID_PCIE) {
            return Some(at);
        }
        at = ((header >> 8) & 0xfc) as u16;
    }
    None
}

/// Whether the function offers Function Level Reset.
pub fn offers_flr(f: &mut (impl HostFunction + ?Sized)) -> Option<u16> {
    let cap = pcie_capability(f)?;
    (f.config_read32(cap + 4) & DEVCAP_FLR != 0).then_some(cap)
}

/// Quiesces `f`: bus mastering off, FLR where offered, `wait_ms(SETTLE_MS)` either way.
pub fn quiesce(f: &mut (impl HostFunction + ?Sized), wait_ms: &mut dyn FnMut(u64)) -> Quiesced {
    f.config_write16(0x04, 0);
    let Some(cap) = offers_flr(f) else {
        wait_ms(SETTLE_MS);
        return Quiesced::NoFlr;
    };
    let control = (f.config_read32(cap + 8) & 0xffff) as u16;
    f.config_write16(cap + 8, control | DEVCTL_INITIATE_FLR);
    wait_ms(SETTLE_MS);
    if f.config_read32(0) & 0xffff == 0xffff {
        return Quiesced::NotBack;
    }
    // An FLR leaves Command at 0; write it again in case the function kept it.
    f.config_write16(0x04, 0);
    Quiesced::Reset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vpci::HostBar;

    /// A configuration space; an FLR (if `flr`) clears Command after the wait, or leaves the
    /// function absent (`comes_back = false`).
    struct Fn {
        space: [u8; 4096],
        flr_started: bool,
        comes_back: bool,
    }

    impl Fn {
        fn new(with_pcie: bool, flr: bool) -> Self {
            let mut space = [0u8; 4096];
            space[0..4].copy_from_slice(&0x11e8_1234u32.to_le_bytes());
            space[4..8].copy_from_slice(&0x0010_0006u32.to_le_bytes()); // cap list, BME|MEM
            space[0x34] = 0x40;
            // MSI at 0x40 → (PCIe at 0x50).
            space[0x40] = 0x05;
            space[0x41] = if with_pcie { 0x50 } else { 0 };
            space[0x50] = CAP_ID_PCIE;
            let devcap: u32 = if flr { DEVCAP_FLR } else { 0 };
            space[0x54..0x58].copy_from_slice(&devcap.to_le_bytes());
            Self {
                space,
                flr_started: false,
                comes_back: true,
            }
        }
        fn command(&self) -> u16 {
            u16::from_le_bytes([self.space[4], self.space[5]])
        }
    }

    impl HostFunction for Fn {
        fn config_read32(&mut self, offset: u16) -> u32 {
            if self.flr_started && !self.comes_back {
                return u32::MAX;
            }
            let o = usize::from(offset);
            u32::from_le_bytes([
                self.space[o],
                self.space[o + 1],
                self.space[o + 2],
                self.space[o + 3],
            ])
        }
        fn config_write16(&mut self, offset: u16, value: u16) {
            if offset == 0x58 && value & DEVCTL_INITIATE_FLR != 0 {
                self.flr_started = true;
            }
            let o = usize::from(offset);
            self.space[o..o + 2].copy_from_slice(&value.to_le_bytes());
        }
        fn bar(&self, _: u8) -> Option<HostBar> {
            None
        }
    }

    #[test]
    fn a_function_without_flr_gets_bus_mastering_off_and_the_settle_wait() {
        for pcie in [false, true] {
            let mut f = Fn::new(pcie, false);
            let mut waited = 0;
            assert_eq!(quiesce(&mut f, &mut |ms| waited += ms), Quiesced::NoFlr);
            assert_eq!(f.command() & 0b111, 0, "bus master, memory and I/O off");
            assert_eq!(waited, SETTLE_MS);
            assert!(!f.flr_started);
        }
    }

    #[test]
    fn a_function_with_flr_is_reset_and_waited_for() {
        let mut f = Fn::new(true, true);
        assert_eq!(offers_flr(&mut f), Some(0x50));
        let mut waited = 0;
        assert_eq!(quiesce(&mut f, &mut |ms| waited += ms), Quiesced::Reset);
        assert!(f.flr_started, "Initiate FLR written to Device Control");
        assert_eq!(waited, SETTLE_MS);
        assert_eq!(f.command(), 0);
    }

    #[test]
    fn a_function_that_does_not_come_back_is_named() {
        let mut f = Fn::new(true, true);
        f.comes_back = false;
        assert_eq!(quiesce(&mut f, &mut |_| {}), Quiesced::NotBack);
    }

    #[test]
    fn a_looping_or_short_capability_list_ends_the_walk() {
        let mut f = Fn::new(false, false);
        f.space[0x41] = 0x40; // points at itself
        assert_eq!(pcie_capability(&mut f), None);
        let mut f = Fn::new(true, true);
        f.space[0x34] = 0x10; // inside the header
        assert_eq!(pcie_capability(&mut f), None);
        let mut f = Fn::new(true, true);
        f.space[6] = 0; // no capability list
        assert_eq!(offers_flr(&mut f), None);
    }
}
