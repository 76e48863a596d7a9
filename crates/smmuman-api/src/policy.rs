//! [`VmmDmaPolicy`]: whether a VMM may start a VM with pass-through DMA devices.
//!
//! The rules (QNX hypervisor behaviour, so that every VMM applies them the same way):
//!
//! 1. A VM with pass-through **DMA** devices does not start when the manager is not running:
//!    nothing would keep those devices inside the VM's memory.
//! 2. When the manager runs but does not know one of those devices (no IOMMU controls it), the
//!    VMM reports it and does not start the VM.
//! 3. Exception: a **unity-mapped** VM (guest-physical == host-physical) reports the same
//!    problems but starts, with a loud warning that it is not isolated.
//!
//! A device the manager knows but the host did not assign to this VM
//! (`LookupDeviceReply::not_assigned`) is "known" for these rules: an IOMMU controls it, so it
//! is confined (default deny) whatever the VMM does; the VMM's `attach` of it is refused with
//! `DeviceNotAssigned`, which names the mistake (the host's assignment, not the isolation).
//! The lookup says no more about such a device (not whether anyone holds it).
//!
//! A VM without pass-through DMA devices starts whatever the manager's state. [`VmmDmaPolicy::decide`]
//! is the pure rule over answers the VMM already has; [`VmmDmaPolicy::assess`] asks the manager
//! itself and then decides.

use crate::client::Client;
use crate::error::{CallError, DomainError};
use crate::transport::Transport;
use crate::types::DeviceSel;
use core::fmt;

/// One pass-through device of a VM, as the VMM's configuration lists it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PassThrough<'a> {
    /// The name the VMM's configuration gives it (for messages).
    pub name: &'a str,
    /// The device, as the manager knows devices.
    pub device: DeviceSel,
    /// Whether it can master DMA (only DMA devices need the manager).
    pub dma: bool,
}

/// The parts of a VM's configuration the policy looks at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VmDescription<'a> {
    /// The VM's name (for messages).
    pub name: &'a str,
    /// Guest-physical == host-physical for all of its memory.
    pub unity_mapped: bool,
    /// Its pass-through devices.
    pub devices: &'a [PassThrough<'a>],
}

impl VmDescription<'_> {
    /// Whether any pass-through device can master DMA.
    pub fn has_dma_devices(&self) -> bool {
        self.devices.iter().any(|d| d.dma)
    }
}

/// Whether the VMM could reach the manager.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reachability {
    /// `connect` succeeded.
    Running,
    /// `connect` failed (no manager running, or it speaks another protocol).
    NotRunning,
}

/// What the manager said about one device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Known {
    /// An IOMMU controls it.
    Yes,
    /// The manager does not know it, or cannot handle it.
    No,
    /// The question was not asked.
    NotAsked,
    /// The question failed.
    NoAnswer(CallError),
}

/// One reason a VM is not isolated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Problem<'a> {
    /// The manager is not running, so this DMA device cannot be confined.
    NoManager {
        /// The device's name.
        name: &'a str,
        /// The device.
        device: DeviceSel,
    },
    /// The manager does not know this DMA device (no IOMMU controls it).
    UnknownDevice {
        /// The device's name.
        name: &'a str,
        /// The device.
        device: DeviceSel,
    },
    /// The manager gave no usable answer about this DMA device.
    NoAnswer {
        /// The device's name.
        name: &'a str,
        /// The device.
        device: DeviceSel,
        /// Why, when a call failed.
        error: Option<CallError>,
    },
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoManager { name, device } => write!(
                f,
                "pass-through DMA device '{name}' ({device}) needs the smmuman manager, \
                 which is not running"
            ),
            Self::UnknownDevice { name, device } => write!(
                f,
                "smmuman does not know pass-through DMA device '{name}' ({device}): \
                 no IOMMU controls it"
            ),
            Self::NoAnswer {
                name,
                device,
                error: Some(e),
            } => write!(
                f,
                "smmuman gave no answer about pass-through DMA device '{name}' ({device}): {e}"
            ),
            Self::NoAnswer {
                name,
                device,
                error: None,
            } => write!(
                f,
                "smmuman was not asked about pass-through DMA device '{name}' ({device})"
            ),
        }
    }
}

/// Most problems a [`Problems`] list keeps; further ones are only counted.
pub const MAX_PROBLEMS: usize = 8;

/// The problems found for one VM (no allocation: the first [`MAX_PROBLEMS`] are kept).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Problems<'a> {
    vm: &'a str,
    list: [Option<Problem<'a>>; MAX_PROBLEMS],
    count: usize,
}

impl<'a> Problems<'a> {
    fn new(vm: &'a str) -> Self {
        Self {
            vm,
            list: [None; MAX_PROBLEMS],
            count: 0,
        }
    }

    fn push(&mut self, p: Problem<'a>) {
        if let Some(slot) = self.list.get_mut(self.count) {
            *slot = Some(p);
        }
        self.count += 1;
    }

    /// The VM's name.
    pub fn vm(&self) -> &'a str {
        self.vm
    }

    /// The problems kept, in device order.
    pub fn iter(&self) -> impl Iterator<Item = &Problem<'a>> {
        self.list.iter().flatten()
    }

    /// How many problems were found (kept or not).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many were found beyond the [`MAX_PROBLEMS`] kept.
    pub fn omitted(&self) -> usize {
        self.count.saturating_sub(MAX_PROBLEMS)
    }
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        if self.omitted() > 0 {
            write!(f, "; and {} more", self.omitted())?;
        }
        Ok(())
    }
}

/// What the VMM must do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision<'a> {
    /// Start the VM: every pass-through DMA device is confined (or there is none).
    Start,
    /// Start the unity-mapped VM, printing the warning ([`Decision`]'s `Display`): its DMA
    /// devices are not confined.
    StartUnisolated {
        /// What is wrong.
        warnings: Problems<'a>,
    },
    /// Do not start the VM; report why and exit.
    Refuse {
        /// What is wrong.
        reason: Problems<'a>,
    },
}

/// The message a VMM prints for the decision.
impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start => f.write_str("DMA isolation: ok"),
            Self::StartUnisolated { warnings } => write!(
                f,
                "WARNING: VM '{}' is unity-mapped and starts WITHOUT DMA ISOLATION: {warnings}. \
                 Its pass-through devices can reach any host memory; never run this in production.",
                warnings.vm()
            ),
            Self::Refuse { reason } => {
                write!(f, "refusing to start VM '{}': {reason}", reason.vm())
            }
        }
    }
}

/// The VMM's start-up rule for pass-through DMA devices (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VmmDmaPolicy;

impl VmmDmaPolicy {
    /// Decides from answers the VMM already has: `known[i]` is the manager's answer about
    /// `vm.devices[i]` (a missing entry counts as [`Known::NotAsked`]; answers about non-DMA
    /// devices are ignored).
    pub fn decide<'a>(
        vm: &VmDescription<'a>,
        manager: Reachability,
        known: &[Known],
    ) -> Decision<'a> {
        Self::decide_with(vm, manager, |i, _| {
            known.get(i).copied().unwrap_or(Known::NotAsked)
        })
    }

    /// Asks the manager about every pass-through DMA device (`client` is `None` when
    /// connecting failed) and decides.
    pub fn assess<'a, T: Transport>(
        vm: &VmDescription<'a>,
        client: Option<&mut Client<T>>,
    ) -> Decision<'a> {
        match client {
            None => Self::decide_with(vm, Reachability::NotRunning, |_, _| Known::NotAsked),
            Some(client) => Self::decide_with(vm, Reachability::Running, |_, d| {
                match client.lookup_device(d.device) {
                    Ok(r) if r.devices > 0 => Known::Yes,
                    Ok(_) => Known::No,
                    Err(CallError::Refused(r))
                        if matches!(r.error, DomainError::NotFound | DomainError::Unsupported) =>
                    {
                        Known::No
                    }
                    Err(e) => Known::NoAnswer(e),
                }
            }),
        }
    }

    fn decide_with<'a>(
        vm: &VmDescription<'a>,
        manager: Reachability,
        mut known: impl FnMut(usize, &PassThrough<'a>) -> Known,
    ) -> Decision<'a> {
        let mut problems = Problems::new(vm.name);
        for (i, d) in vm.devices.iter().enumerate().filter(|(_, d)| d.dma) {
            let (name, device) = (d.name, d.device);
            if manager == Reachability::NotRunning {
                problems.push(Problem::NoManager { name, device });
                continue;
            }
            match known(i, d) {
                Known::Yes => {}
                Known::No => problems.push(Problem::UnknownDevice { name, device }),
                Known::NotAsked => problems.push(Problem::NoAnswer {
                    name,
                    device,
                    error: None,
                }),
                Known::NoAnswer(e) => problems.push(Problem::NoAnswer {
                    name,
                    device,
                    error: Some(e),
                }),
            }
        }
        if problems.is_empty() {
            Decision::Start
        } else if vm.unity_mapped {
            Decision::StartUnisolated { warnings: problems }
        } else {
            Decision::Refuse { reason: problems }
        }
    }
}

#[cfg(test)]
mod tests;
