//! Memory authority: which host-physical memory the devices of each VM may be granted, as the
//! host states it in `[vm NAME]` sections of `smmuman.conf` (`docs/config.md`, "Memory
//! authority").
//!
//! Firmware never assigns memory: [`VmAssignment`]s come from the config only, and
//! [`crate::combine()`] passes them through unchanged in both modes. The manager refuses any
//! mapping whose host-physical range is not inside the requesting VM's `ram` (or a `peer` BAR
//! it names); the line numbers are kept so that it can say where the statement is.

use crate::device::Device;
use core::fmt;
use iommu_core::{Bdf, PhysAddr};

/// Most `[vm]` sections a config holds.
pub const MAX_VMS: usize = 8;
/// Most `ram` lines in one `[vm]` section.
pub const MAX_RAM_PER_VM: usize = 8;
/// Most `peer` lines in one `[vm]` section.
pub const MAX_PEERS_PER_VM: usize = 4;
/// Longest VM name (characters, `[A-Za-z0-9_-]`).
pub const VM_NAME_LEN: usize = 31;
/// Highest BAR index of a PCI function (a type 0 header has BARs 0 to 5).
pub const MAX_BAR: u8 = 5;

/// A VM's name, as the host names it.
pub type VmName = heapless::String<VM_NAME_LEN>;

/// Whether `s` is a valid VM name: 1 to [`VM_NAME_LEN`] characters, each an ASCII letter, a
/// digit, `-` or `_`.
pub fn is_vm_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= VM_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `ram ADDR LEN [shared]`: host-physical RAM assigned to a VM; its devices may be granted
/// any part of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RamGrant {
    /// First byte (4 KiB aligned).
    pub start: PhysAddr,
    /// Length in bytes (a non-zero multiple of 4 KiB; `start + len` does not pass 2^64).
    pub len: u64,
    /// Other VMs may list (parts of) it too, each saying `shared`.
    pub shared: bool,
    /// Config line of the statement.
    pub line: u32,
}

impl RamGrant {
    /// The last byte (inclusive: the range may end exactly at 2^64).
    pub fn last(&self) -> u64 {
        self.start.0.saturating_add(self.len.saturating_sub(1))
    }

    /// Whether `start..start+len` lies wholly inside this grant (a `len` of 0 is in no grant).
    pub fn contains(&self, start: PhysAddr, len: u64) -> bool {
        len != 0
            && start.0 >= self.start.0
            && start
                .0
                .checked_add(len - 1)
                .is_some_and(|l| l <= self.last())
    }

    /// Whether the two grants have a byte in common.
    pub fn overlaps(&self, other: &RamGrant) -> bool {
        self.start.0 <= other.last() && other.start.0 <= self.last()
    }
}

impl fmt::Display for RamGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ram {} len {:#x}", self.start, self.len)?;
        if self.shared {
            f.write_str(" shared")?;
        }
        Ok(())
    }
}

/// `peer pci [SEG:]BB:DD.F bar N`: the VM's devices may DMA to BAR `bar` of that function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PeerBar {
    /// PCI segment of the function.
    pub segment: u16,
    /// The function.
    pub bdf: Bdf,
    /// The BAR index, 0 to [`MAX_BAR`].
    pub bar: u8,
    /// Config line of the statement.
    pub line: u32,
}

impl PeerBar {
    /// The function as a [`Device`].
    pub const fn device(&self) -> Device {
        Device::Pci {
            segment: self.segment,
            bdf: self.bdf,
        }
    }
}

impl fmt::Display for PeerBar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {} bar {}", self.device(), self.bar)
    }
}

/// A `[vm NAME]` section: the memory a VM's devices may be granted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VmAssignment {
    /// The VM's name.
    pub name: VmName,
    /// Its RAM, in file order; no two overlap.
    pub ram: heapless::Vec<RamGrant, MAX_RAM_PER_VM>,
    /// The peer BARs its devices may reach, in file order; no function and BAR twice.
    pub peers: heapless::Vec<PeerBar, MAX_PEERS_PER_VM>,
    /// Config line of the section header.
    pub line: u32,
}

impl VmAssignment {
    /// An assignment of nothing, stated on `line`.
    pub fn new(name: VmName, line: u32) -> Self {
        Self {
            name,
            ram: heapless::Vec::new(),
            peers: heapless::Vec::new(),
            line,
        }
    }

    /// The `ram` grant that holds all of `start..start+len`, if one does. A range that
    /// straddles two adjacent grants is in none: the caller checks each part (or the config
    /// states contiguous RAM as one line).
    pub fn ram_covering(&self, start: PhysAddr, len: u64) -> Option<&RamGrant> {
        self.ram.iter().find(|g| g.contains(start, len))
    }

    /// The `peer` statement for BAR `bar` of function `bdf` in segment `segment`, if any.
    pub fn peer(&self, segment: u16, bdf: Bdf, bar: u8) -> Option<&PeerBar> {
        self.peers
            .iter()
            .find(|p| p.segment == segment && p.bdf == bdf && p.bar == bar)
    }
}

impl fmt::Display for VmAssignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vm {}:", self.name)?;
        if self.ram.is_empty() && self.peers.is_empty() {
            f.write_str(" nothing")?;
        }
        for g in &self.ram {
            write!(f, " {g} [line {}];", g.line)?;
        }
        for p in &self.peers {
            write!(f, " {p} [line {}];", p.line)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(start: u64, len: u64) -> RamGrant {
        RamGrant {
            start: PhysAddr(start),
            len,
            shared: false,
            line: 1,
        }
    }

    #[test]
    fn names() {
        assert!(is_vm_name("vm1"));
        assert!(is_vm_name("0"));
        assert!(is_vm_name("guest_a-2"));
        assert!(is_vm_name(&"a".repeat(VM_NAME_LEN)));
        assert!(!is_vm_name(&"a".repeat(VM_NAME_LEN + 1)));
        assert!(!is_vm_name(""));
        assert!(!is_vm_name("vm.1"));
        assert!(!is_vm_name("vé"));
    }

    #[test]
    fn grants_at_the_top_of_the_address_space() {
        let top = grant(0xffff_ffff_ffff_f000, 0x1000);
        assert_eq!(top.last(), u64::MAX);
        assert!(top.contains(PhysAddr(0xffff_ffff_ffff_f000), 0x1000));
        assert!(!top.contains(PhysAddr(0xffff_ffff_ffff_f000), 0x2000));
        assert!(!top.contains(PhysAddr(0xffff_ffff_ffff_f000), 0));
        assert!(top.overlaps(&grant(0xffff_ffff_ffff_e000, 0x2000)));
        assert!(!top.overlaps(&grant(0xffff_ffff_ffff_e000, 0x1000)));
    }

    #[test]
    fn covering_needs_one_grant_for_the_whole_range() {
        let mut vm = VmAssignment::new(VmName::try_from("vm1").unwrap(), 1);
        vm.ram.push(grant(0x8000_0000, 0x1000)).unwrap();
        vm.ram.push(grant(0x8000_1000, 0x1000)).unwrap();
        assert_eq!(
            vm.ram_covering(PhysAddr(0x8000_1000), 0x1000),
            Some(&vm.ram[1])
        );
        assert_eq!(vm.ram_covering(PhysAddr(0x8000_0000), 0x2000), None);
        assert_eq!(vm.ram_covering(PhysAddr(0x7fff_f000), 0x1000), None);
    }
}
