//! The operator's side of the manager: the admin ops (`smmuman-admin-api`) over a
//! [`Manager`] and what the host knows besides it ([`Host`]).
//!
//! [`handle`] is the admin dispatcher, a separate entry point from [`Manager::handle`] (the
//! clients'): the daemon calls it only with bytes from the operator's channel. The two op
//! tables have disjoint numbers, so an admin op that reaches [`Manager::handle`] is refused
//! with `UnknownOp`, and a client op that reaches [`handle`] likewise.
//!
//! Everything here reads: no admin op but `start_vm`/`stop_vm` (which the [`Host`] does, or
//! refuses as `Unsupported`) changes the manager, and `peek_faults` shows a ledger's history (its
//! newest runs, read by its client or not) without taking anything from its client. The only
//! effect on the manager is the fault barrier
//! `peek_faults`, `list_vms` and `list_objects` make first ([`Manager::on_iommu_event`], which the daemon's loop also calls
//! on every IOMMU interrupt): records move from the IOMMU into the ledgers they belong to.

use crate::config::{DeviceId, MAPPING_BYTES, MAX_OBJECTS};
use crate::manager::view::ObjectView;
use crate::Manager;
use core::time::Duration;
use iommu_core::IommuBackend;
use smmuman_admin_api::*;
use smmuman_api::{
    ClientId, DomainError, FaultPage, MappingPage, ObjectId, Refusal, FAULTS_PER_PAGE,
    MAPPINGS_PER_PAGE,
};

/// A VM as the host knows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostVm {
    /// Its name in the host plan.
    pub name: Name,
    /// Its VMM's client id at the manager, once started.
    pub client: Option<ClientId>,
    /// Where it stands.
    pub state: VmState,
}

/// What the host knows that the manager does not: its IOMMU units, its memory map, its VMs,
/// its heap; and how it starts and stops VMs.
pub trait Host {
    /// The IOMMU unit at `index` (in the host's order), `None` past the last.
    fn unit(&self, index: usize) -> Option<UnitRow>;
    /// The memory-map region at `index` (RAM and device registers; the daemon's own memory
    /// comes from the manager's reserved ranges), `None` past the last.
    fn region(&self, index: usize) -> Option<RegionRow>;
    /// The VM at `index` (plan order), `None` past the last.
    fn vm(&self, index: usize) -> Option<HostVm>;
    /// Heap bytes in use and in all, when the host counts them.
    fn heap(&self) -> Option<(u64, u64)> {
        None
    }
    /// Starts the VM `name` (already found among [`Host::vm`]).
    ///
    /// # Errors
    /// A refusal for the operator; by default `Unsupported`: this host cannot.
    fn start_vm(&mut self, name: Name) -> Result<(), Refusal> {
        let _ = name;
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    /// Stops the VM `name` (already found among [`Host::vm`]).
    ///
    /// # Errors
    /// A refusal for the operator; by default `Unsupported`: this host cannot.
    fn stop_vm(&mut self, name: Name) -> Result<(), Refusal> {
        let _ = name;
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
}

/// A host described by fixed tables (host tests, a host that cannot start or stop VMs).
#[derive(Clone, Copy, Debug, Default)]
pub struct StaticHost<'a> {
    /// Its IOMMU units.
    pub units: &'a [UnitRow],
    /// Its memory map (RAM, MMIO).
    pub regions: &'a [RegionRow],
    /// Its VMs.
    pub vms: &'a [HostVm],
    /// Heap bytes in use and in all.
    pub heap: Option<(u64, u64)>,
}

impl Host for StaticHost<'_> {
    fn unit(&self, index: usize) -> Option<UnitRow> {
        self.units.get(index).copied()
    }
    fn region(&self, index: usize) -> Option<RegionRow> {
        self.regions.get(index).copied()
    }
    fn vm(&self, index: usize) -> Option<HostVm> {
        self.vms.get(index).copied()
    }
    fn heap(&self) -> Option<(u64, u64)> {
        self.heap
    }
}

/// The admin ops over a manager and its host, at time `now` (the stamp of records the fault
/// barrier drains).
pub struct Admin<'a, B: IommuBackend, H: Host + ?Sized> {
    /// The manager.
    pub manager: &'a mut Manager<B>,
    /// The host.
    pub host: &'a mut H,
    /// The daemon's monotonic clock, now.
    pub now: Duration,
}

/// The admin dispatcher: handles one request from the operator's channel and writes the reply;
/// returns its length (see `smmuman_admin_api::dispatch`). Only the operator's channel may
/// call it.
pub fn handle<B: IommuBackend, H: Host + ?Sized>(
    manager: &mut Manager<B>,
    host: &mut H,
    now: Duration,
    request: &[u8],
    reply: &mut [u8],
) -> usize {
    let mut admin = Admin { manager, host, now };
    dispatch(&mut admin, request, reply)
}

fn u16_of(n: impl TryInto<u16>) -> u16 {
    n.try_into().unwrap_or(u16::MAX)
}

fn u32_of(n: impl TryInto<u32>) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
}

/// Up to `N` items of `rows` from index `from`; the page, the next index, whether there is
/// more.
fn page<T: Copy, const N: usize>(
    rows: impl Iterator<Item = T>,
    from: u16,
) -> (smmuman_api::batch::List<T, N>, u16, bool) {
    let mut list = smmuman_api::batch::List::default();
    let mut rows = rows.skip(usize::from(from));
    for row in rows.by_ref() {
        list.push(row);
        if list.len() == N {
            break;
        }
    }
    let more = rows.next().is_some();
    let next = from.saturating_add(u16_of(list.len()));
    (list, next, more)
}

impl<B: IommuBackend, H: Host + ?Sized> Admin<'_, B, H> {
    fn owner_of(&self, object: Option<ObjectId>) -> OptClient {
        OptClient(
            object
                .and_then(|id| self.manager.object_view(id))
                .and_then(|o| o.owner),
        )
    }

    /// The host's VMs, then every other client the manager knows.
    fn vm_rows(&self) -> heapless::Vec<VmRow, 64> {
        let mut rows = heapless::Vec::new();
        let objects: heapless::Vec<ObjectView, MAX_OBJECTS> = self.manager.object_views().collect();
        let row = |name: Name, client: Option<ClientId>, state: VmState| {
            let mine = || {
                objects
                    .iter()
                    .filter(move |o| client.is_some() && o.owner == client)
            };
            let (devices, assigned_bytes) = client.map_or((0, 0), |c| {
                (
                    self.manager.assigned_devices(c).count(),
                    self.manager.assignment(c).iter().map(|g| g.range.len).sum(),
                )
            });
            VmRow {
                name,
                client: OptClient(client),
                state,
                objects: u16_of(mine().count()),
                devices: u16_of(devices),
                assigned_bytes,
                mappings: u32_of(mine().map(|o| o.mappings).sum::<usize>()),
                mapped_bytes: mine().map(|o| o.mapped_bytes).sum(),
                pending_faults: mine().map(|o| o.pending).sum(),
            }
        };
        let mut named: heapless::Vec<ClientId, 64> = heapless::Vec::new();
        for vm in (0..).map_while(|i| self.host.vm(i)) {
            if let Some(c) = vm.client {
                let _ = named.push(c);
            }
            if rows.push(row(vm.name, vm.client, vm.state)).is_err() {
                return rows;
            }
        }
        for c in self.manager.known_clients() {
            if !named.contains(&c)
                && rows
                    .push(row(Name::default(), Some(c), VmState::Client))
                    .is_err()
            {
                break;
            }
        }
        rows
    }

    /// The host's regions and the manager's own memory, by address.
    fn regions(&self) -> heapless::Vec<RegionRow, 64> {
        let mut rows: heapless::Vec<RegionRow, 64> =
            (0..).map_while(|i| self.host.region(i)).take(48).collect();
        let daemon = Name::new("daemon").unwrap_or_default();
        for r in self.manager.reserved_ranges() {
            let _ = rows.push(RegionRow {
                start: r.start,
                len: r.len,
                kind: RegionKind::Daemon,
                name: daemon,
            });
        }
        rows.sort_unstable_by_key(|r| (r.start.0, r.kind as u8));
        rows
    }

    /// The fault barrier: what the IOMMU recorded before this call is in the ledgers, so the
    /// counts and records shown include it (a failure is logged and counted by the manager;
    /// what was drained is kept).
    fn barrier(&mut self) {
        let _ = self.manager.on_iommu_event(self.now);
    }

    fn vm_named(&self, name: Name) -> Result<HostVm, Refusal> {
        (0..)
            .map_while(|i| self.host.vm(i))
            .find(|vm| vm.name == name)
            .ok_or(Refusal::new(DomainError::NotFound, 0))
    }
}

impl<B: IommuBackend, H: Host + ?Sized> AdminOps for Admin<'_, B, H> {
    fn admin_hello(&mut self, _: AdminHelloRequest) -> Result<AdminHelloReply, Refusal> {
        Ok(AdminHelloReply {
            admin_version: ADMIN_VERSION,
            op_base: ADMIN_OP_BASE,
        })
    }

    fn list_units(&mut self, r: ListUnitsRequest) -> Result<ListUnitsReply, Refusal> {
        let (units, next, more) = page((0..).map_while(|i| self.host.unit(i)), r.from);
        Ok(ListUnitsReply { units, next, more })
    }

    fn list_devices(&mut self, r: ListDevicesRequest) -> Result<ListDevicesReply, Refusal> {
        let rows = self.manager.device_views().map(|d| {
            let (kind, bdf, base) = match d.id {
                DeviceId::Pci(bdf) => (DeviceKind::Pci, bdf.rid(), iommu_core::PhysAddr(0)),
                DeviceId::Mmio(base) => (DeviceKind::Mmio, 0, base),
            };
            DeviceRow {
                kind,
                bdf,
                base,
                sid: d.sid,
                group_devices: u16_of(d.group_devices),
                object: d.object.unwrap_or(ObjectId(0)),
                client: self.owner_of(d.object),
                assigned: OptClient(d.assigned),
            }
        });
        let (devices, next, more) = page(rows, r.from);
        Ok(ListDevicesReply {
            devices,
            next,
            more,
        })
    }

    fn list_groups(&mut self, r: ListGroupsRequest) -> Result<ListGroupsReply, Refusal> {
        let rows = self.manager.group_views().map(|g| GroupRow {
            sid: g.sid,
            devices: u16_of(g.devices),
            object: g.object.unwrap_or(ObjectId(0)),
            client: self.owner_of(g.object),
            assigned: OptClient(g.assigned),
        });
        let (groups, next, more) = page(rows, r.from);
        Ok(ListGroupsReply { groups, next, more })
    }

    fn list_vms(&mut self, r: ListVmsRequest) -> Result<ListVmsReply, Refusal> {
        self.barrier();
        let (vms, next, more) = page(self.vm_rows().into_iter(), r.from);
        Ok(ListVmsReply { vms, next, more })
    }

    fn list_objects(&mut self, r: ListObjectsRequest) -> Result<ListObjectsReply, Refusal> {
        self.barrier();
        let quota = self.manager.limits().max_mappings_per_object;
        let mut objects = ObjectPage::default();
        let mut rest = self.manager.object_views().filter(|o| o.id.0 >= r.from.0);
        for o in rest.by_ref() {
            objects.push(ObjectRow {
                object: o.id,
                client: OptClient(o.owner),
                flags: o.flags,
                groups: u16_of(o.groups),
                devices: u16_of(o.devices),
                mappings: u32_of(o.mappings),
                mapped_bytes: o.mapped_bytes,
                quota: u32_of(quota),
                heap_bound: (o.mappings as u64).saturating_mul(MAPPING_BYTES as u64),
                pending: o.pending,
                recorded: o.recorded,
                dropped: o.dropped,
                possibly_lost: o.possibly_lost,
                next_seq: o.next_seq,
            });
            if objects.len() == OBJECTS_PER_PAGE {
                break;
            }
        }
        let next = rest.next().map(|o| o.id);
        Ok(ListObjectsReply {
            objects,
            next: next.unwrap_or(ObjectId(0)),
            more: next.is_some(),
        })
    }

    fn list_windows(&mut self, r: ListWindowsRequest) -> Result<ListWindowsReply, Refusal> {
        let mut rest = self
            .manager
            .object_windows(r.object, r.from)
            .ok_or(Refusal::new(DomainError::NotFound, r.object.0.into()))?;
        let mut windows = MappingPage::default();
        for w in rest.by_ref() {
            windows.push(w);
            if windows.len() == MAPPINGS_PER_PAGE {
                break;
            }
        }
        let next = rest.next().map(|w| w.window.iova().0);
        Ok(ListWindowsReply {
            windows,
            next: next.unwrap_or(0),
            more: next.is_some(),
        })
    }

    fn peek_faults(&mut self, r: PeekFaultsRequest) -> Result<PeekFaultsReply, Refusal> {
        let not_found = Refusal::new(DomainError::NotFound, r.object.0.into());
        if r.object != ObjectId::UNCLAIMED && self.manager.object_view(r.object).is_none() {
            return Err(not_found);
        }
        self.barrier();
        let (ledger, records) = self.manager.ledger_records(r.object).ok_or(not_found)?;
        let after = r.after;
        let mut shown = records.filter(|rec| rec.seq_last() > after).peekable();
        let first = shown.peek().map(|rec| rec.seq);
        let mut page = FaultPage::new(0, ledger.dropped);
        page.set_possibly_lost(ledger.possibly_lost);
        let mut next = after;
        for rec in shown.by_ref() {
            page.push(*rec);
            next = next.max(rec.seq_last());
            if page.len() == FAULTS_PER_PAGE {
                break;
            }
        }
        page.set_remaining(u32_of(shown.count()));
        // Everything up to the ledger's newest number has been accounted for once nothing
        // after the cursor is left in the history.
        let newest = ledger.next_seq.saturating_sub(1);
        let missed = match first {
            Some(seq) => seq.saturating_sub(after.saturating_add(1)),
            None => newest.saturating_sub(after),
        };
        if first.is_none() {
            next = next.max(newest);
        }
        Ok(PeekFaultsReply { page, next, missed })
    }

    fn memory_map(&mut self, r: MemoryMapRequest) -> Result<MemoryMapReply, Refusal> {
        let (regions, next, more) = page(self.regions().into_iter(), r.from);
        Ok(MemoryMapReply {
            regions,
            next,
            more,
        })
    }

    fn list_grants(&mut self, r: ListGrantsRequest) -> Result<ListGrantsReply, Refusal> {
        let mut grants = GrantPage::default();
        for g in self.manager.assignment(r.client) {
            let kind = match g.kind {
                crate::GrantKind::Ram => GrantKind::Ram,
                crate::GrantKind::SharedRam => GrantKind::SharedRam,
                crate::GrantKind::Peer => GrantKind::Peer,
            };
            grants.push(GrantRow {
                start: g.range.start,
                len: g.range.len,
                kind,
            });
        }
        Ok(ListGrantsReply { grants })
    }

    fn usage(&mut self, _: UsageRequest) -> Result<UsageReply, Refusal> {
        let c = self.manager.counters();
        let limits = self.manager.limits();
        let (heap_used, heap_size) = self.host.heap().unwrap_or((0, 0));
        Ok(UsageReply {
            objects: u16_of(self.manager.object_count()),
            max_objects: u16_of(MAX_OBJECTS),
            orphans: u16_of(
                self.manager
                    .object_views()
                    .filter(|o| o.owner.is_none())
                    .count(),
            ),
            mappings: limits.mappings as u64,
            max_mappings: limits.max_mappings as u64,
            mappings_per_object: u32_of(limits.max_mappings_per_object),
            mapping_bytes: u32_of(MAPPING_BYTES),
            heap_used,
            heap_size,
            faults: c.faults,
            unclaimed: c.unclaimed,
            dropped: c.dropped,
            hw_lost_at_least: c.hw_lost_at_least,
            requests: c.requests,
            refusals: c.refusals,
        })
    }

    fn start_vm(&mut self, r: StartVmRequest) -> Result<StartVmReply, Refusal> {
        let vm = self.vm_named(r.name)?;
        if vm.state == VmState::Running {
            return Err(Refusal::new(DomainError::Busy, 0));
        }
        self.host.start_vm(r.name).map(|()| StartVmReply {})
    }

    fn stop_vm(&mut self, r: StopVmRequest) -> Result<StopVmReply, Refusal> {
        let vm = self.vm_named(r.name)?;
        if vm.state != VmState::Running {
            return Err(Refusal::new(DomainError::Busy, 0));
        }
        self.host.stop_vm(r.name).map(|()| StopVmReply {})
    }
}
