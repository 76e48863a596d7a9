//! Memory authority: which host-physical memory each client may grant its devices.
//!
//! A client (a VMM) cannot be trusted to say which memory is its VM's: a hostile one would
//! name the SMMU's registers, the GIC, another VM's RAM or the manager's own pages. So the
//! *host* hands the manager each client's assignment ([`crate::Manager::assign`]) before it
//! starts the VMM, from the board configuration's `[vm]` sections (`docs/config.md`): the RAM
//! the VM was given, RAM it shares with other VMs, and device BARs it may reach peer to peer.
//! A `Map` is granted only where the host range lies entirely in the caller's assignment;
//! everything else (MMIO of every kind, memory that is not RAM, another VM's RAM, RAM nobody
//! assigned) is refused with `NotAssigned`. The references: QNX smmuman's `allow` ranges,
//! VFIO type1's "only memory the caller has pinned from its own address space", Xen's P2M
//! (a domain's IOMMU tables are built from its own memory map only).
//!
//! The same holds for devices: the host says which devices each client's VM passes through
//! (PCI functions, platform devices, whole groups), and `attach` of any other device is
//! refused with `DeviceNotAssigned` before the manager says anything about who holds it. A
//! device is assigned to one client at a time, and a group only as a whole (its members share
//! one StreamID: giving half of it to a VM would give it all). Like VFIO, where only the
//! devices the host bound to vfio-pci and handed to the process can join its container, and
//! Jailhouse, whose cell configuration lists each cell's PCI devices.

use crate::config::{DeviceId, PhysRange, MAX_RESERVED};
use crate::devices::Bits;
use core::fmt;
use iommu_core::{PhysAddr, StreamId};
use smmuman_api::{ClientId, DeviceSel};

/// Most clients holding an assignment at once.
pub const MAX_ASSIGNED_CLIENTS: usize = 16;
/// Most grants in one client's assignment.
pub const GRANTS_PER_CLIENT: usize = 16;

/// What a grant lets the client's devices reach.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GrantKind {
    /// RAM the host gave this client's VM alone.
    Ram,
    /// RAM the host gave this VM and others: each must map it with `MapFlags::SHARED`.
    SharedRam,
    /// A device BAR the host lets this VM's devices reach (peer-to-peer DMA).
    Peer,
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ram => "ram",
            Self::SharedRam => "shared-ram",
            Self::Peer => "peer-bar",
        })
    }
}

/// One host-physical range a client may map.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Grant {
    /// The range.
    pub range: PhysRange,
    /// What it is.
    pub kind: GrantKind,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.range)
    }
}

/// An assignment the manager will not take. Nothing changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AssignError {
    /// [`MAX_ASSIGNED_CLIENTS`] clients hold an assignment already.
    TooManyClients,
    /// More than [`GRANTS_PER_CLIENT`] grants.
    TooManyGrants(usize),
    /// A grant is empty or runs past 2^64.
    Empty(Grant),
    /// A grant's start or length is not a multiple of the IOMMU's granule.
    Misaligned(Grant),
    /// A grant covers the manager's own memory.
    ManagerMemory(Grant),
    /// Two grants of the assignment overlap.
    Overlapping(Grant, Grant),
    /// The client holds VM objects: its assignment cannot change under its mappings.
    ClientActive(ClientId),
    /// No device of the manager's table matches the selector (not behind the IOMMU, kept by
    /// the board, or no such device).
    UnknownDevice(DeviceSel),
    /// The selector names part of a group (devices sharing this StreamID): a group is
    /// assigned as a whole.
    PartialGroup(DeviceSel, StreamId),
    /// The device is assigned to another client already.
    DeviceTaken(DeviceId, ClientId),
    /// The device's group is still attached to an object of no client (an orphan the IOMMU
    /// would not release).
    DeviceAttached(DeviceId),
}

impl fmt::Display for AssignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyClients => {
                write!(
                    f,
                    "{MAX_ASSIGNED_CLIENTS} clients hold an assignment already"
                )
            }
            Self::TooManyGrants(n) => write!(f, "{n} grants, at most {GRANTS_PER_CLIENT}"),
            Self::Empty(g) => write!(f, "grant {g} is empty or wraps"),
            Self::Misaligned(g) => write!(f, "grant {g} is not aligned to the IOMMU granule"),
            Self::ManagerMemory(g) => write!(f, "grant {g} covers the manager's own memory"),
            Self::Overlapping(a, b) => write!(f, "grants {a} and {b} overlap"),
            Self::ClientActive(c) => write!(f, "{c} holds VM objects; assign before it starts"),
            Self::UnknownDevice(d) => {
                write!(f, "device {d}: the manager controls no such device")
            }
            Self::PartialGroup(d, sid) => write!(
                f,
                "device {d} is part of the group of StreamID {sid}; assign the whole group"
            ),
            Self::DeviceTaken(d, c) => write!(f, "device {d} is assigned to {c} already"),
            Self::DeviceAttached(d) => write!(
                f,
                "device {d} is still attached to an orphaned object; it cannot be assigned"
            ),
        }
    }
}

/// Where a host range stands in an assignment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Cover {
    /// Every byte is granted; `shared`: some of it as [`GrantKind::SharedRam`].
    Granted {
        /// Part of the range is shared RAM.
        shared: bool,
    },
    /// This byte (the first one not granted) is outside the assignment.
    Gap(u64),
}

type Grants = heapless::Vec<Grant, GRANTS_PER_CLIENT>;

/// One client's assignment: host memory, and devices (indices into the device table).
#[derive(Debug)]
struct Entry {
    client: ClientId,
    grants: Grants,
    devices: Bits,
}

/// Every client's assignment.
#[derive(Debug, Default)]
pub(crate) struct Assignments {
    list: heapless::Vec<Entry, MAX_ASSIGNED_CLIENTS>,
}

impl Assignments {
    /// Checks `grants` and makes them and `devices` (already checked against the device
    /// table by the manager) `client`'s assignment, replacing an earlier one. All or nothing.
    pub fn set(
        &mut self,
        client: ClientId,
        grants: &[Grant],
        devices: Bits,
        granule: u64,
        reserved: &heapless::Vec<PhysRange, MAX_RESERVED>,
    ) -> Result<(), AssignError> {
        let mut checked = Grants::new();
        for g in grants {
            let r = g.range;
            if r.len == 0 || r.start.0.checked_add(r.len - 1).is_none() {
                return Err(AssignError::Empty(*g));
            }
            if !r.start.is_aligned(granule) || r.len % granule != 0 {
                return Err(AssignError::Misaligned(*g));
            }
            if reserved.iter().any(|m| m.overlaps(r.start, r.len)) {
                return Err(AssignError::ManagerMemory(*g));
            }
            if let Some(other) = checked.iter().find(|o| o.range.overlaps(r.start, r.len)) {
                return Err(AssignError::Overlapping(*other, *g));
            }
            checked
                .push(*g)
                .map_err(|_| AssignError::TooManyGrants(grants.len()))?;
        }
        match self.list.iter_mut().find(|e| e.client == client) {
            Some(old) => {
                old.grants = checked;
                old.devices = devices;
            }
            None => self
                .list
                .push(Entry {
                    client,
                    grants: checked,
                    devices,
                })
                .map_err(|_| AssignError::TooManyClients)?,
        }
        Ok(())
    }

    /// The clients holding an assignment, in the order they got it (read-only, for the
    /// operator's view).
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.list.iter().map(|e| e.client)
    }

    /// Drops `client`'s assignment (it went away): its memory and its devices.
    pub fn remove(&mut self, client: ClientId) {
        self.list.retain(|e| e.client != client);
    }

    /// `client`'s grants (empty when the host gave it none).
    pub fn of(&self, client: ClientId) -> &[Grant] {
        self.list
            .iter()
            .find(|e| e.client == client)
            .map_or(&[], |e| e.grants.as_slice())
    }

    /// The devices assigned to `client` (none when the host gave it none).
    pub fn devices_of(&self, client: ClientId) -> Bits {
        self.list
            .iter()
            .find(|e| e.client == client)
            .map_or(0, |e| e.devices)
    }

    /// The first client other than `client` holding any of `devices`, and the devices it
    /// holds among them.
    pub fn holder_other_than(&self, client: ClientId, devices: Bits) -> Option<(ClientId, Bits)> {
        self.list
            .iter()
            .filter(|e| e.client != client)
            .find(|e| e.devices & devices != 0)
            .map(|e| (e.client, e.devices & devices))
    }

    /// Whether `[start, start + len)` lies entirely in `client`'s assignment (`len` ≥ 1, no
    /// wrap: the wire checks both). Adjacent grants cover a range together.
    pub fn cover(&self, client: ClientId, start: u64, len: u64) -> Cover {
        let grants = self.of(client);
        let last = start.saturating_add(len.saturating_sub(1));
        let mut at = start;
        let mut shared = false;
        loop {
            let Some(g) = grants.iter().find(|g| g.range.overlaps(PhysAddr(at), 1)) else {
                return Cover::Gap(at);
            };
            shared |= g.kind == GrantKind::SharedRam;
            let g_last = g.range.start.0 + (g.range.len - 1);
            if g_last >= last {
                return Cover::Granted { shared };
            }
            at = g_last + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: ClientId = ClientId(1);
    const C2: ClientId = ClientId(2);

    fn grant(start: u64, len: u64, kind: GrantKind) -> Grant {
        Grant {
            range: PhysRange {
                start: PhysAddr(start),
                len,
            },
            kind,
        }
    }

    fn manager_memory() -> heapless::Vec<PhysRange, MAX_RESERVED> {
        let mut v = heapless::Vec::new();
        v.push(PhysRange {
            start: PhysAddr(0x4000_0000),
            len: 0x10_0000,
        })
        .unwrap();
        v
    }

    #[test]
    fn a_range_is_granted_only_inside_the_clients_own_grants() {
        let mut a = Assignments::default();
        let g = [
            grant(0x5000_0000, 0x20_0000, GrantKind::Ram),
            // Adjacent: together they cover 0x5000_0000..0x5040_0000.
            grant(0x5020_0000, 0x20_0000, GrantKind::SharedRam),
        ];
        a.set(C1, &g, 0, 0x1000, &manager_memory()).unwrap();
        assert_eq!(
            a.cover(C1, 0x5000_0000, 0x1000),
            Cover::Granted { shared: false }
        );
        assert_eq!(
            a.cover(C1, 0x501f_f000, 0x2000),
            Cover::Granted { shared: true }
        );
        assert_eq!(
            a.cover(C1, 0x503f_f000, 0x2000),
            Cover::Gap(0x5040_0000),
            "one page past the end"
        );
        assert_eq!(a.cover(C1, 0x4fff_f000, 0x2000), Cover::Gap(0x4fff_f000));
        // Control: another client has nothing.
        assert_eq!(a.cover(C2, 0x5000_0000, 0x1000), Cover::Gap(0x5000_0000));
        a.remove(C1);
        assert_eq!(a.cover(C1, 0x5000_0000, 0x1000), Cover::Gap(0x5000_0000));
    }

    #[test]
    fn bad_assignments_are_refused_and_name_the_grant() {
        let mut a = Assignments::default();
        let mm = manager_memory();
        let e = |a: &mut Assignments, g: &[Grant]| a.set(C1, g, 0, 0x1000, &mm).unwrap_err();
        let over = grant(0x400f_f000, 0x2000, GrantKind::Ram);
        assert_eq!(e(&mut a, &[over]), AssignError::ManagerMemory(over));
        let odd = grant(0x5000_0800, 0x1000, GrantKind::Ram);
        assert_eq!(e(&mut a, &[odd]), AssignError::Misaligned(odd));
        let empty = grant(0x5000_0000, 0, GrantKind::Ram);
        assert_eq!(e(&mut a, &[empty]), AssignError::Empty(empty));
        let wraps = grant(u64::MAX - 0xfff, 0x2000, GrantKind::Ram);
        assert_eq!(e(&mut a, &[wraps]), AssignError::Empty(wraps));
        let x = grant(0x5000_0000, 0x2000, GrantKind::Ram);
        let y = grant(0x5000_1000, 0x2000, GrantKind::Peer);
        assert_eq!(e(&mut a, &[x, y]), AssignError::Overlapping(x, y));
        let many = [x; GRANTS_PER_CLIENT + 1];
        // Overlap is found first for identical grants; distinct ones hit the count.
        assert!(matches!(e(&mut a, &many), AssignError::Overlapping(..)));
        let distinct: heapless::Vec<Grant, 32> = (0..=GRANTS_PER_CLIENT as u64)
            .map(|i| grant(0x5000_0000 + i * 0x1000, 0x1000, GrantKind::Ram))
            .collect();
        assert_eq!(
            e(&mut a, &distinct),
            AssignError::TooManyGrants(GRANTS_PER_CLIENT + 1)
        );
        // Nothing was kept from the refused calls.
        assert!(a.of(C1).is_empty());
    }

    #[test]
    fn at_most_max_clients_hold_an_assignment() {
        let mut a = Assignments::default();
        let g = [grant(0x5000_0000, 0x1000, GrantKind::Ram)];
        for c in 0..MAX_ASSIGNED_CLIENTS as u32 {
            a.set(ClientId(c + 1), &g, 0, 0x1000, &manager_memory())
                .unwrap();
        }
        assert_eq!(
            a.set(ClientId(999), &g, 0, 0x1000, &manager_memory()),
            Err(AssignError::TooManyClients)
        );
        // Replacing an existing client's assignment still works.
        assert_eq!(a.set(ClientId(1), &g, 0, 0x1000, &manager_memory()), Ok(()));
    }
}
