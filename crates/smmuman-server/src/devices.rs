//! The board's device table and the groups it implies.
//!
//! Devices that share a StreamID are one **group**: the IOMMU cannot tell their DMA apart (a
//! PCIe-to-PCI bridge takes ownership of its children's requests; a board may have fewer
//! StreamIDs than devices), so they are attached, detached and faulted together. A group is
//! attached to one object or to none (default deny).
//!
//! Sets of devices and of groups are `u64` bitmaps over table indices ([`MAX_DEVICES`] = 64).

use crate::config::{ConfigError, DeviceEntry, DeviceId, MAX_DEVICES};
use iommu_core::StreamId;
use smmuman_api::{DeviceSel, DomainError, ObjectId, Refusal};

/// A set of table indices.
pub(crate) type Bits = u64;

/// The indices set in `bits`, lowest first.
pub(crate) fn indices(bits: Bits) -> impl Iterator<Item = usize> {
    (0..MAX_DEVICES).filter(move |i| bits & (1 << i) != 0)
}

/// One isolation group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Group {
    /// The StreamID its devices share.
    pub sid: StreamId,
    /// Its devices (indices into the table).
    pub members: Bits,
    /// The object it is attached to; `None` is default deny.
    pub owner: Option<ObjectId>,
}

/// The devices a selector picked, and the groups they touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Selection {
    pub devices: Bits,
    pub groups: Bits,
}

/// The board's devices and their groups.
#[derive(Debug)]
pub(crate) struct DeviceTable {
    devices: heapless::Vec<(DeviceEntry, usize), MAX_DEVICES>,
    groups: heapless::Vec<Group, MAX_DEVICES>,
}

impl DeviceTable {
    /// Builds the table and derives the groups (one per distinct StreamID, in first-seen order).
    pub fn new<E>(entries: &[DeviceEntry]) -> Result<Self, ConfigError<E>> {
        if entries.len() > MAX_DEVICES {
            return Err(ConfigError::TooManyDevices(entries.len()));
        }
        let mut table = Self {
            devices: heapless::Vec::new(),
            groups: heapless::Vec::new(),
        };
        for (i, e) in entries.iter().enumerate() {
            if table.devices.iter().any(|(d, _)| d.id == e.id) {
                return Err(ConfigError::DuplicateDevice(e.id));
            }
            let g = match table.groups.iter().position(|g| g.sid == e.sid) {
                Some(g) => g,
                None => {
                    let group = Group {
                        sid: e.sid,
                        members: 0,
                        owner: None,
                    };
                    // Cannot fail: there are at most as many groups as devices.
                    table
                        .groups
                        .push(group)
                        .map_err(|_| ConfigError::TooManyDevices(entries.len()))?;
                    table.groups.len() - 1
                }
            };
            if let Some(group) = table.groups.get_mut(g) {
                group.members |= 1 << i;
            }
            table
                .devices
                .push((*e, g))
                .map_err(|_| ConfigError::TooManyDevices(entries.len()))?;
        }
        Ok(table)
    }

    /// The device at index `i`.
    pub fn device(&self, i: usize) -> Option<&DeviceEntry> {
        self.devices.get(i).map(|(d, _)| d)
    }

    /// The group of the device at index `i`.
    pub fn device_group(&self, i: usize) -> Option<&Group> {
        self.devices.get(i).and_then(|(_, g)| self.groups.get(*g))
    }

    /// All groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group at index `g`.
    pub fn group(&self, g: usize) -> Option<&Group> {
        self.groups.get(g)
    }

    /// Sets the owner of the groups in `groups`.
    pub fn set_owner(&mut self, groups: Bits, owner: Option<ObjectId>) {
        for g in indices(groups) {
            if let Some(group) = self.groups.get_mut(g) {
                group.owner = owner;
            }
        }
    }

    /// The groups attached to `object`.
    pub fn owned_by(&self, object: ObjectId) -> Bits {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.owner == Some(object))
            .fold(0, |acc, (i, _)| acc | 1 << i)
    }

    /// The group that uses `sid`, if any.
    pub fn group_of_sid(&self, sid: StreamId) -> Option<&Group> {
        self.groups.iter().find(|g| g.sid == sid)
    }

    /// The first device of a group (for log lines) and how many others it has.
    pub fn first_member(&self, group: &Group) -> Option<(&DeviceEntry, u32)> {
        let first = indices(group.members).next()?;
        let others = group.members.count_ones().saturating_sub(1);
        self.device(first).map(|d| (d, others))
    }

    /// The devices `sel` picks.
    ///
    /// # Errors
    /// `NotFound` (value 0) when nothing matches; `Unsupported` (value: the SID) for a raw
    /// StreamID that one of its devices does not allow to be selected raw.
    pub fn resolve(&self, sel: DeviceSel) -> Result<Selection, Refusal> {
        if let DeviceSel::Sid(_) = sel {
            if let Some((d, _)) = self.matching(sel).find(|(d, _)| !d.raw_sid_allowed) {
                return Err(Refusal::new(DomainError::Unsupported, d.sid.0.into()));
            }
        }
        self.pick(sel).ok_or(Refusal::new(DomainError::NotFound, 0))
    }

    /// The devices `sel` picks for the host (which may name a group by its StreamID whatever
    /// the board lets clients do); `None` when nothing matches.
    pub fn pick(&self, sel: DeviceSel) -> Option<Selection> {
        let (devices, groups) = self
            .matching(sel)
            .fold((0, 0), |(d, g), (_, (i, gi))| (d | 1 << i, g | 1 << gi));
        (devices != 0).then_some(Selection { devices, groups })
    }

    /// The entries `sel` matches, with their index and their group's index.
    fn matching(
        &self,
        sel: DeviceSel,
    ) -> impl Iterator<Item = (&DeviceEntry, (usize, usize))> + '_ {
        self.devices
            .iter()
            .enumerate()
            .filter(move |(_, (d, _))| match (sel, d.id) {
                (DeviceSel::Pci(m), DeviceId::Pci(bdf)) => m.matches(bdf),
                (DeviceSel::Mmio(base), DeviceId::Mmio(b)) => base == b,
                (DeviceSel::Sid(sid), _) => d.sid == sid,
                _ => false,
            })
            .map(|(i, (d, g))| (d, (i, *g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_core::{Bdf, PhysAddr};
    use smmuman_api::PciMatch;

    fn pci(bus: u8, dev: u8, func: u8, sid: u32) -> DeviceEntry {
        DeviceEntry {
            id: DeviceId::Pci(Bdf::new(bus, dev, func).unwrap()),
            sid: StreamId(sid),
            raw_sid_allowed: false,
        }
    }

    fn table(entries: &[DeviceEntry]) -> DeviceTable {
        DeviceTable::new::<()>(entries).unwrap()
    }

    #[test]
    fn devices_sharing_a_sid_form_one_group() {
        // A bridge at 01:00.0 aliases its children 02:00.0 and 02:01.0 to SID 0x100.
        let t = table(&[pci(0, 1, 0, 8), pci(2, 0, 0, 0x100), pci(2, 1, 0, 0x100)]);
        assert_eq!(t.groups().len(), 2);
        assert_eq!(t.groups()[1].members, 0b110);
        let (first, others) = t.first_member(&t.groups()[1]).unwrap();
        assert_eq!((first.id, others), (pci(2, 0, 0, 0).id, 1));
    }

    #[test]
    fn selectors_pick_by_pattern_base_or_sid() {
        let mut raw = pci(0, 2, 0, 0x10);
        raw.raw_sid_allowed = true;
        let mmio = DeviceEntry {
            id: DeviceId::Mmio(PhysAddr(0x0a00_0000)),
            sid: StreamId(0x20),
            raw_sid_allowed: false,
        };
        let t = table(&[pci(0, 1, 0, 8), pci(0, 1, 1, 9), raw, mmio]);
        let dev1 = DeviceSel::Pci(PciMatch::new(Some(0), Some(1), None).unwrap());
        assert_eq!(t.resolve(dev1).unwrap().devices, 0b0011);
        assert_eq!(
            t.resolve(DeviceSel::Pci(PciMatch::ANY)).unwrap().devices,
            0b0111
        );
        assert_eq!(
            t.resolve(DeviceSel::Mmio(PhysAddr(0x0a00_0000)))
                .unwrap()
                .devices,
            0b1000
        );
        assert_eq!(
            t.resolve(DeviceSel::Sid(StreamId(0x10))).unwrap().devices,
            0b0100
        );
        assert_eq!(
            t.resolve(DeviceSel::Sid(StreamId(0x20))),
            Err(Refusal::new(DomainError::Unsupported, 0x20))
        );
        assert_eq!(
            t.resolve(DeviceSel::Mmio(PhysAddr(0x0b00_0000))),
            Err(Refusal::new(DomainError::NotFound, 0))
        );
    }

    #[test]
    fn the_table_refuses_duplicates_and_overflow() {
        assert_eq!(
            DeviceTable::new::<()>(&[pci(0, 1, 0, 8), pci(0, 1, 0, 9)]).unwrap_err(),
            ConfigError::DuplicateDevice(pci(0, 1, 0, 8).id)
        );
        let many: Vec<DeviceEntry> = (0..=MAX_DEVICES as u16)
            .map(|i| {
                pci(
                    (i >> 8) as u8,
                    ((i >> 3) & 31) as u8,
                    (i & 7) as u8,
                    i.into(),
                )
            })
            .collect();
        assert_eq!(
            DeviceTable::new::<()>(&many).unwrap_err(),
            ConfigError::TooManyDevices(MAX_DEVICES + 1)
        );
    }
}
