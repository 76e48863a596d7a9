//! Read-only views of the manager's state for the operator ([`crate::admin`]): devices and
//! groups with their holders, objects with their use, windows, fault ledgers read without
//! taking anything. Nothing here changes the manager; a child module of `manager` only so
//! that it can read the fields without widening them.

use super::Manager;
use crate::config::{DeviceId, PhysRange};
use crate::devices::indices;
use iommu_core::{IommuBackend, StreamId};
use smmuman_api::{ClientId, DmaWindow, FaultRecord, MapEntry, MapFlags, ObjectFlags, ObjectId};

/// One device of the table and who holds it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceView {
    /// The device.
    pub id: DeviceId,
    /// Its StreamID.
    pub sid: StreamId,
    /// Devices in its group, itself included.
    pub group_devices: u32,
    /// The object its group is attached to (`None`: default deny).
    pub object: Option<ObjectId>,
    /// The client the host assigned it to.
    pub assigned: Option<ClientId>,
}

/// One group and who holds it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GroupView {
    /// Its StreamID.
    pub sid: StreamId,
    /// Its devices.
    pub devices: u32,
    /// The object it is attached to (`None`: default deny).
    pub object: Option<ObjectId>,
    /// The client the host assigned it to (all its members are assigned together).
    pub assigned: Option<ClientId>,
}

/// One object and its use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ObjectView {
    /// The object.
    pub id: ObjectId,
    /// Its client (`None`: an orphan).
    pub owner: Option<ClientId>,
    /// Its flags.
    pub flags: ObjectFlags,
    /// Groups attached.
    pub groups: u32,
    /// Devices attached.
    pub devices: u32,
    /// Mappings.
    pub mappings: usize,
    /// Bytes mapped.
    pub mapped_bytes: u64,
    /// Records waiting in its ledger.
    pub pending: u32,
    /// Records charged to it in total.
    pub recorded: u64,
    /// Records dropped (ledger full).
    pub dropped: u64,
    /// Times the IOMMU lost records that may have been its.
    pub possibly_lost: u64,
    /// Its ledger's next sequence number.
    pub next_seq: u64,
}

/// A fault ledger's counters (the records themselves come from [`Manager::ledger_records`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LedgerView {
    /// Records waiting.
    pub pending: u32,
    /// Records dropped (ledger full).
    pub dropped: u64,
    /// Times the IOMMU lost records that may have been this ledger's.
    pub possibly_lost: u64,
    /// The next sequence number.
    pub next_seq: u64,
}

/// Mapping limits and use, manager-wide.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LimitsView {
    /// Mappings held by all objects.
    pub mappings: usize,
    /// Mappings the manager holds at most.
    pub max_mappings: usize,
    /// Mappings one object may hold at most.
    pub max_mappings_per_object: usize,
}

impl<B: IommuBackend> Manager<B> {
    fn assignee(&self, devices: crate::devices::Bits) -> Option<ClientId> {
        self.assignments
            .clients()
            .find(|c| self.assignments.devices_of(*c) & devices != 0)
    }

    /// Every device the manager controls, in the board's order, with its holder and assignee.
    pub fn device_views(&self) -> impl Iterator<Item = DeviceView> + '_ {
        (0..crate::config::MAX_DEVICES).map_while(move |i| {
            let d = self.table.device(i)?;
            let g = self.table.device_group(i);
            Some(DeviceView {
                id: d.id,
                sid: d.sid,
                group_devices: g.map_or(1, |g| g.members.count_ones()),
                object: g.and_then(|g| g.owner),
                assigned: self.assignee(1 << i),
            })
        })
    }

    /// Every group, in the board's order, with its holder and assignee.
    pub fn group_views(&self) -> impl Iterator<Item = GroupView> + '_ {
        self.table.groups().iter().map(move |g| GroupView {
            sid: g.sid,
            devices: g.members.count_ones(),
            object: g.owner,
            assigned: self.assignee(g.members),
        })
    }

    /// Every object (orphans included), by id.
    pub fn object_views(&self) -> impl Iterator<Item = ObjectView> + '_ {
        let mut ids: heapless::Vec<ObjectId, { crate::config::MAX_OBJECTS }> =
            self.objects.iter().map(|o| o.id).collect();
        ids.sort_unstable_by_key(|id| id.0);
        ids.into_iter().filter_map(move |id| self.object_view(id))
    }

    /// One object's view.
    pub fn object_view(&self, id: ObjectId) -> Option<ObjectView> {
        let o = self.objects.iter().find(|o| o.id == id)?;
        let owned = self.table.owned_by(o.id);
        let devices = indices(owned)
            .filter_map(|g| self.table.group(g))
            .map(|g| g.members.count_ones())
            .sum();
        Some(ObjectView {
            id: o.id,
            owner: o.owner,
            flags: o.flags,
            groups: owned.count_ones(),
            devices,
            mappings: o.mappings.len(),
            mapped_bytes: o.mappings.bytes(),
            pending: o.ledger.pending(),
            recorded: o.ledger.recorded(),
            dropped: o.ledger.dropped(),
            possibly_lost: o.ledger.possibly_lost(),
            next_seq: o.ledger.next_seq(),
        })
    }

    /// An object's windows from I/O address `from` on, in order; `None`: no such object.
    pub fn object_windows(
        &self,
        id: ObjectId,
        from: u64,
    ) -> Option<impl Iterator<Item = MapEntry> + '_> {
        let o = self.objects.iter().find(|o| o.id == id)?;
        Some(o.mappings.from(from).filter_map(|m| {
            let window = DmaWindow::new(m.iova, m.pa, m.len).ok()?;
            let flags = if m.shared {
                MapFlags::SHARED
            } else {
                MapFlags::empty()
            };
            Some(MapEntry {
                window,
                access: m.access,
                flags,
            })
        }))
    }

    /// The newest runs of records an object's ledger (or the unclaimed one,
    /// [`ObjectId::UNCLAIMED`]) kept, oldest first, whether or not its reader took them (the
    /// ledger's history, [`crate::config::FAULT_HISTORY_DEPTH`] runs), and the ledger's
    /// counters; `None`: no such object.
    pub fn ledger_records(
        &self,
        id: ObjectId,
    ) -> Option<(LedgerView, impl Iterator<Item = &FaultRecord> + '_)> {
        let ledger = if id == ObjectId::UNCLAIMED {
            &self.unclaimed
        } else {
            &self.objects.iter().find(|o| o.id == id)?.ledger
        };
        let view = LedgerView {
            pending: ledger.pending(),
            dropped: ledger.dropped(),
            possibly_lost: ledger.possibly_lost(),
            next_seq: ledger.next_seq(),
        };
        Some((view, ledger.history()))
    }

    /// The clients the manager knows: those the host assigned something, then owners of
    /// objects without an assignment, each once.
    pub fn known_clients(&self) -> heapless::Vec<ClientId, 32> {
        let mut out: heapless::Vec<ClientId, 32> = heapless::Vec::new();
        let owners = self.objects.iter().filter_map(|o| o.owner);
        for c in self.assignments.clients().chain(owners) {
            if !out.contains(&c) {
                let _ = out.push(c);
            }
        }
        out
    }

    /// The manager's own memory (never mappable), as configured.
    pub fn reserved_ranges(&self) -> &[PhysRange] {
        &self.reserved
    }

    /// Mapping limits and use.
    pub fn limits(&self) -> LimitsView {
        LimitsView {
            mappings: self.mapping_count,
            max_mappings: self.max_mappings,
            max_mappings_per_object: self.max_mappings_per_object,
        }
    }
}
