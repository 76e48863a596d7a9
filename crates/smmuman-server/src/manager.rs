//! [`Manager`]: the server's state, and one [`ManagerOps`] method per operation.
//!
//! Every method checks everything before it changes anything, so a refused request changes
//! nothing. Where the IOMMU itself fails half-way (a multi-group attach or detach), the steps
//! already done are undone before the refusal is sent; only if the undo fails too does the
//! manager keep the state the IOMMU really has (recorded, logged, counted).
//!
//! # A device is free only once the IOMMU confirmed it
//!
//! An `attach` or `detach` the backend fails may be half done: the new configuration may be in
//! memory while the IOMMU still uses the old one, or the reverse (IHI 0070 §3.21.3: until the
//! CMD_SYNC after CMD_CFGI_STE completes the SMMU may use either STE; VT-d §6.5.2.10: after an
//! IQE/ICE/ITE the context-cache invalidation did not complete). The manager does not ask the
//! backend which failures were harmless: only an `Ok` from `attach` / `detach` confirms where
//! a stream points. So:
//!
//! * a group is recorded free (owner `None`) only after a `detach` of it returned `Ok`; a
//!   group whose attach failed is detached again (the failing one included: its stream may
//!   already point at the object's domain), and one whose rollback fails too stays recorded
//!   as attached to the object;
//! * a group whose detach rollback (re-attach) fails stays recorded as attached: it may use
//!   either the object's domain or deny;
//! * an object is removed, and its host memory released for others to map, only after every
//!   group left it **and** `destroy_domain` succeeded. A refused `destroy_domain` keeps the
//!   object with its mappings and memory claims: its client may retry `destroy_object`; an
//!   object whose client went away is kept as an orphan (counted in
//!   [`Counters::orphaned_objects`]) until [`Manager::retry_orphans`] succeeds.

pub(crate) mod view;

use crate::authority::{AssignError, Assignments, Cover, Grant};
use crate::config::{
    ConfigError, DeviceId, ManagerConfig, PhysRange, FAULT_LOG_DEPTH, MAX_IOVA_RANGES, MAX_OBJECTS,
    MAX_RESERVED, OBJECTS_PER_CLIENT, ORPHAN_RETRY_PERIOD,
};
use crate::devices::{indices, Bits, DeviceTable, Group};
use crate::ledger::Ledger;
use crate::mappings::{Mapping, Mappings, Span};
use crate::ownership::Ownership;
use core::fmt;
use core::time::Duration;
use iommu_core::{DomainId, Fault, IommuBackend, Iova, MapOp, StreamId};
use smmuman_api::interface::*;
use smmuman_api::{
    dispatch, is_window_access, ClientId, DeviceSel, DmaWindow, DomainError, FaultBatch, FaultPage,
    FaultRecord, IovaRange, IovaRanges, IovaSpan, MapEntry, MapFlags, MappingPage, ObjectFlags,
    ObjectId, ProtocolError, Refusal, FAULTS_PER_PAGE, MAPPINGS_PER_PAGE, MAP_BATCH, UNMAP_BATCH,
};

/// A VM object: one IOMMU domain, its mappings and its fault ledger. The groups attached to it
/// are recorded in the device table.
#[derive(Debug)]
pub(crate) struct Object {
    pub id: ObjectId,
    /// `None`: orphaned (its client went away and it could not be torn down).
    pub owner: Option<ClientId>,
    pub flags: ObjectFlags,
    pub domain: DomainId,
    pub mappings: Mappings,
    pub ledger: Ledger,
}

/// A fault notification for the transport to deliver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Notification {
    /// The client that armed it.
    pub client: ClientId,
    /// The object (or [`ObjectId::UNCLAIMED`]) whose ledger got a record.
    pub object: ObjectId,
}

/// What one [`Manager::on_iommu_event`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DrainReport {
    /// Records drained from the IOMMU.
    pub records: u64,
    /// Of those, records no object claimed.
    pub unclaimed: u64,
    /// Of those, records dropped because their ledger was full.
    pub dropped: u64,
    /// Records the IOMMU lost before the manager saw them (a lower bound).
    pub hw_lost_at_least: u64,
}

/// Counters since start (what `stats` reports, and a little more).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Counters {
    /// Messages handled by [`Manager::handle`].
    pub requests: u64,
    /// Messages answered with a protocol error.
    pub protocol_errors: u64,
    /// Requests refused with a domain error.
    pub refusals: u64,
    /// Fault records drained.
    pub faults: u64,
    /// Of those, records no object claimed.
    pub unclaimed: u64,
    /// Records dropped because a ledger was full.
    pub dropped: u64,
    /// Records the IOMMU lost (a lower bound).
    pub hw_lost_at_least: u64,
    /// IOMMU operations that failed.
    pub iommu_errors: u64,
    /// Objects whose client went away but that could not be torn down (a device the IOMMU
    /// would not put back to deny, or a domain it would not destroy): kept with their memory.
    pub orphaned_objects: u64,
    /// `destroy_domain` calls the IOMMU refused; each kept its object, with its memory, until a
    /// retry succeeds.
    pub refused_destroys: u64,
}

/// The manager: VM objects over an [`IommuBackend`], serving [`ManagerOps`].
///
/// Capacities are the constants of [`crate::config`]; the whole state is inline (no heap), so
/// the daemon should keep it in a `static` rather than on a small stack.
pub struct Manager<B: IommuBackend> {
    backend: B,
    table: DeviceTable,
    reserved: heapless::Vec<PhysRange, MAX_RESERVED>,
    iova_ranges: heapless::Vec<IovaRange, MAX_IOVA_RANGES>,
    page_sizes: u64,
    granule: u64,
    objects: heapless::Vec<Object, MAX_OBJECTS>,
    next_object: u32,
    unclaimed: Ledger,
    /// Records each ledger keeps ([`ManagerConfig::fault_log_depth`]).
    fault_log_depth: usize,
    /// Which host memory each client may map ([`Manager::assign`]).
    assignments: Assignments,
    /// Who holds which host memory (the index every `map` is checked against).
    ownership: Ownership,
    /// Mappings held by all objects, and the limits ([`ManagerConfig::max_mappings`]).
    mapping_count: usize,
    max_mappings: usize,
    max_mappings_per_object: usize,
    clock: fn() -> Duration,
    counters: Counters,
    /// When [`Manager::retry_orphans_paced`] may retry next (the daemon's clock).
    next_orphan_retry: Duration,
}

impl<B: IommuBackend> fmt::Debug for Manager<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("objects", &self.objects.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// A refusal about `error` and `value`.
fn refuse<T>(error: DomainError, value: impl Into<u64>) -> Result<T, Refusal> {
    Err(Refusal::new(error, value.into()))
}

/// The last byte of `[start, start + len)` (the wire checks that `len` ≥ 1 and no wrap).
const fn last(start: u64, len: u64) -> u64 {
    start.saturating_add(len.saturating_sub(1))
}

fn u16_count(n: impl TryInto<u16>) -> u16 {
    n.try_into().unwrap_or(u16::MAX)
}

fn u32_count(n: impl TryInto<u32>) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
}

impl<B: IommuBackend> Manager<B> {
    /// A manager over `backend`, configured with `config`. Every device of the table is put in
    /// default deny (its faults go to the unclaimed ledger).
    ///
    /// # Errors
    /// [`ConfigError`] naming what is wrong with `config`, or [`ConfigError::Backend`] when the
    /// IOMMU refuses to put a device in default deny.
    pub fn new(mut backend: B, config: &ManagerConfig<'_>) -> Result<Self, ConfigError<B::Error>> {
        let page_sizes = config.page_sizes;
        if !(1..=FAULT_LOG_DEPTH).contains(&config.fault_log_depth) {
            return Err(ConfigError::FaultLogDepth(config.fault_log_depth));
        }
        let granule = 1u64.checked_shl(page_sizes.trailing_zeros()).unwrap_or(0);
        if granule < iommu_core::PAGE_SIZE {
            return Err(ConfigError::PageSizes(page_sizes));
        }
        let table = DeviceTable::new(config.devices)?;
        let mut reserved = heapless::Vec::new();
        for r in config.reserved {
            if r.len == 0 || r.start.0.checked_add(r.len - 1).is_none() {
                return Err(ConfigError::BadReserved(*r));
            }
            reserved
                .push(*r)
                .map_err(|_| ConfigError::TooManyReserved(config.reserved.len()))?;
        }
        let n = config.iova_ranges.len();
        if n == 0 || n > MAX_IOVA_RANGES {
            return Err(ConfigError::IovaRangeCount(n));
        }
        let mut iova_ranges = heapless::Vec::new();
        for r in config.iova_ranges {
            let aligned = r.first.is_aligned(granule) && r.last.0.wrapping_add(1) % granule == 0;
            if r.first > r.last || !aligned {
                return Err(ConfigError::BadIovaRange(*r));
            }
            iova_ranges
                .push(*r)
                .map_err(|_| ConfigError::IovaRangeCount(n))?;
        }
        for g in table.groups() {
            backend.detach(g.sid).map_err(ConfigError::Backend)?;
        }
        Ok(Self {
            backend,
            table,
            reserved,
            iova_ranges,
            page_sizes,
            granule,
            objects: heapless::Vec::new(),
            next_object: 1,
            unclaimed: Ledger::with_depth(config.fault_log_depth),
            fault_log_depth: config.fault_log_depth,
            assignments: Assignments::default(),
            ownership: Ownership::default(),
            mapping_count: 0,
            max_mappings: config.max_mappings,
            max_mappings_per_object: config.max_mappings_per_object,
            clock: config.clock,
            counters: Counters::default(),
            next_orphan_retry: Duration::ZERO,
        })
    }

    /// Refuses a selection holding a platform (MMIO) device when the backend cannot tell
    /// platform devices apart ([`IommuBackend::distinguishes_platform_devices`], false on
    /// VT-d): its windows would be a guess at which requester id the device's DMA carries.
    /// The refusal is [`DomainError::Unsupported`] with the device's register base as value.
    fn check_platform_devices(&self, devices: Bits) -> Result<(), Refusal> {
        if self.backend.distinguishes_platform_devices() {
            return Ok(());
        }
        for i in indices(devices) {
            if let Some(crate::config::DeviceEntry {
                id: crate::config::DeviceId::Mmio(base),
                ..
            }) = self.table.device(i)
            {
                log::warn!(
                    "platform device mmio@{base} refused: this IOMMU cannot tell platform \
                     devices apart"
                );
                return refuse(DomainError::Unsupported, base.0);
            }
        }
        Ok(())
    }

    /// Refuses an attach touching a group that is not wholly in `client`'s assignment
    /// ([`DomainError::DeviceNotAssigned`], value: the group's StreamID). It comes before
    /// `Busy` and `GroupSplit`, so that a client learns nothing about who holds (or whether
    /// anyone holds) a device the host did not give it: the answer is the same before,
    /// while and after another client uses it.
    fn check_device_authority(&self, client: ClientId, groups: Bits) -> Result<(), Refusal> {
        let assigned = self.assignments.devices_of(client);
        for g in indices(groups) {
            let group = self.group(g)?;
            if group.members & !assigned != 0 {
                return refuse(DomainError::DeviceNotAssigned, group.sid.0);
            }
        }
        Ok(())
    }

    /// The host hands `client` its assignment: the host-physical ranges its devices may be
    /// granted (its VM's RAM, RAM shared with other VMs, peer-to-peer BARs) and the devices it
    /// may attach (its VM's pass-through PCI functions and platform devices; a raw StreamID
    /// names a whole group), replacing any earlier one. Call it before the client's VMM
    /// starts: a `map` outside the memory is refused with `NotAssigned`, an `attach` of any
    /// other device with `DeviceNotAssigned`, and a client with no assignment can map and
    /// attach nothing. The assignment, memory and devices, ends with the client
    /// ([`Manager::client_gone`]); only then may the host give its devices to another client.
    ///
    /// # Errors
    /// [`AssignError`] naming the bad grant or device; nothing changed. A client that holds
    /// objects cannot be reassigned ([`AssignError::ClientActive`]); a selector that matches
    /// no device ([`AssignError::UnknownDevice`]) or part of a group
    /// ([`AssignError::PartialGroup`]), a device assigned to another client
    /// ([`AssignError::DeviceTaken`]) or still held by an orphaned object
    /// ([`AssignError::DeviceAttached`]) is refused.
    pub fn assign(
        &mut self,
        client: ClientId,
        grants: &[Grant],
        devices: &[DeviceSel],
    ) -> Result<(), AssignError> {
        if self.objects.iter().any(|o| o.owner == Some(client)) {
            return Err(AssignError::ClientActive(client));
        }
        let (mut assigned, mut groups): (Bits, Bits) = (0, 0);
        for &sel in devices {
            let picked = self
                .table
                .pick(sel)
                .ok_or(AssignError::UnknownDevice(sel))?;
            assigned |= picked.devices;
            groups |= picked.groups;
        }
        // Groups whole (the selectors together may cover one: `pass pci` of each member).
        for g in indices(groups) {
            let Some(group) = self.table.group(g) else {
                continue;
            };
            if group.members & !assigned != 0 {
                let sel = devices.iter().copied().find(|s| {
                    self.table
                        .pick(*s)
                        .is_some_and(|p| p.groups & (1 << g) != 0)
                });
                let sel = sel.unwrap_or(DeviceSel::Sid(group.sid));
                return Err(AssignError::PartialGroup(sel, group.sid));
            }
            // The client holds no object (checked above): any owner is an orphan.
            if group.owner.is_some() {
                return Err(AssignError::DeviceAttached(
                    self.first_device(group.members),
                ));
            }
        }
        if let Some((other, held)) = self.assignments.holder_other_than(client, assigned) {
            return Err(AssignError::DeviceTaken(self.first_device(held), other));
        }
        self.assignments
            .set(client, grants, assigned, self.granule, &self.reserved)?;
        for g in grants {
            log::info!("{client}: assigned {g}");
        }
        for d in indices(assigned).filter_map(|i| self.table.device(i)) {
            log::info!("{client}: assigned device {}", d.id);
        }
        Ok(())
    }

    /// The device of the lowest index in `devices` (a non-empty set of table indices).
    fn first_device(&self, devices: Bits) -> DeviceId {
        indices(devices)
            .find_map(|i| self.table.device(i))
            .map_or(DeviceId::Mmio(iommu_core::PhysAddr(0)), |d| d.id)
    }

    /// Whether `sel` names at least one device the manager controls (what [`Manager::assign`]
    /// accepts). A device the board keeps (a reserved StreamID, a static window) or that no
    /// IOMMU controls is not: the host leaves it out of an assignment, and the VMM's client
    /// rules (`VmmDmaPolicy`) report it.
    pub fn controls(&self, sel: DeviceSel) -> bool {
        self.table.pick(sel).is_some()
    }

    /// `client`'s assignment (empty when the host gave it none).
    pub fn assignment(&self, client: ClientId) -> &[Grant] {
        self.assignments.of(client)
    }

    /// The devices assigned to `client`, in table order.
    pub fn assigned_devices(&self, client: ClientId) -> impl Iterator<Item = DeviceId> + '_ {
        indices(self.assignments.devices_of(client))
            .filter_map(|i| self.table.device(i))
            .map(|d| d.id)
    }

    /// Handles one request from `client` (as the transport identifies it): decodes it, runs it,
    /// writes the reply; returns the reply's length. Always a well-formed reply, whatever the
    /// bytes, when `reply` holds [`MAX_MESSAGE`](smmuman_api::MAX_MESSAGE) bytes (see [`dispatch`]). Use this rather than
    /// [`dispatch`] itself: it also counts the request.
    pub fn handle(&mut self, client: ClientId, request: &[u8], reply: &mut [u8]) -> usize {
        self.counters.requests = self.counters.requests.saturating_add(1);
        dispatch(self, client, request, reply)
    }

    /// The client went away: destroys all of its objects, as `destroy_object` would (devices
    /// back to default deny, mappings gone, invalidation complete), and cancels a notification
    /// it armed on the unclaimed ledger, and drops its assignment (memory and devices).
    /// Returns how many objects were destroyed.
    ///
    /// An object the IOMMU will not let go (a device it would not put back to deny, or a domain
    /// it would not destroy) is kept as an orphan (no client can reach it; it keeps its devices
    /// and host memory, so no other client can be given that memory), logged and counted.
    pub fn client_gone(&mut self, client: ClientId) -> usize {
        let mut destroyed = 0;
        let mut i = 0;
        while let Some(obj) = self.objects.get(i) {
            if obj.owner == Some(client) {
                let id = obj.id;
                match self.teardown(i) {
                    // `teardown` moved the last object into slot `i`: look at it next.
                    Ok(()) => {
                        destroyed += 1;
                        continue;
                    }
                    Err(_) => {
                        log::error!(
                            "object {id} of {client} is orphaned: the IOMMU would not release \
                             it; it keeps its devices and memory"
                        );
                        if let Some(obj) = self.objects.get_mut(i) {
                            obj.owner = None;
                            obj.ledger.notify = crate::ledger::Notify::Idle;
                        }
                        self.counters.orphaned_objects += 1;
                    }
                }
            }
            i += 1;
        }
        // Its assignment (memory and devices) goes with it: the next client on the same
        // channel gets its own, and its devices, back in deny, are nobody's until the host
        // assigns them again.
        self.assignments.remove(client);
        if destroyed > 0 {
            log::info!("{client} went away: {destroyed} object(s) destroyed");
        }
        destroyed
    }

    /// Tries again to tear down every orphan (an object [`Manager::client_gone`] had to keep
    /// because the IOMMU would not release it); returns how many are gone now. Once the IOMMU
    /// confirms, an orphan's devices are free and its host memory may be assigned and mapped
    /// again; until then it keeps both. Each release is logged with what it freed. A daemon's
    /// loop calls [`Manager::retry_orphans_paced`] instead, which bounds how often this runs.
    pub fn retry_orphans(&mut self) -> usize {
        let mut gone = 0;
        let mut i = 0;
        while let Some(obj) = self.objects.get(i) {
            if obj.owner.is_none() {
                let id = obj.id;
                let (mappings, bytes) = (obj.mappings.len(), Self::mapped_bytes(obj));
                let devices: u32 = indices(self.table.owned_by(id))
                    .filter_map(|g| self.table.group(g))
                    .map(|g| g.members.count_ones())
                    .sum();
                if self.teardown(i).is_ok() {
                    log::info!(
                        "orphaned object {id} released: the IOMMU confirmed it; {devices} \
                         device(s) back in default deny, {mappings} mapping(s) of {bytes:#x} \
                         bytes of host memory free again"
                    );
                    gone += 1;
                    // `teardown` moved the last object into slot `i`: look at it next.
                    continue;
                }
            }
            i += 1;
        }
        gone
    }

    /// [`Manager::retry_orphans`] from a daemon's loop, at most once per
    /// [`ORPHAN_RETRY_PERIOD`] of `now` (the daemon's monotonic clock), and only while there
    /// is an orphan: call it on every pass; a pass with nothing due costs a scan of the
    /// objects. Returns how many orphans are gone now.
    pub fn retry_orphans_paced(&mut self, now: Duration) -> usize {
        if now < self.next_orphan_retry || !self.objects.iter().any(|o| o.owner.is_none()) {
            return 0;
        }
        self.next_orphan_retry = now.saturating_add(ORPHAN_RETRY_PERIOD);
        self.retry_orphans()
    }

    /// Orphaned objects (kept because the IOMMU would not release them), waiting for
    /// [`Manager::retry_orphans`].
    pub fn orphan_count(&self) -> usize {
        self.objects.iter().filter(|o| o.owner.is_none()).count()
    }

    /// The IOMMU signalled an event (event queue or GERROR interrupt): drains every recorded
    /// fault, attributes it by StreamID to the object its group is attached to (or to the
    /// unclaimed ledger), stamps it with `now` (the daemon's monotonic clock), logs each burst
    /// (consecutive records of one stream with the same reason and direction) as one line with
    /// exact counts, and fires armed notifications (collect them with
    /// [`Manager::take_notification`]).
    ///
    /// # Errors
    /// The backend's error when the IOMMU reports a failure it could not recover from; the
    /// records drained before it are kept.
    pub fn on_iommu_event(&mut self, now: Duration) -> Result<DrainReport, B::Error> {
        let time_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let Self {
            backend,
            table,
            objects,
            unclaimed,
            counters,
            ..
        } = self;
        let mut report = DrainReport::default();
        let mut burst: Option<Burst> = None;
        let mut sink = |f: Fault| {
            let group = table.group_of_sid(f.sid);
            let owner = group.and_then(|g| g.owner);
            let (ledger, object) =
                match owner.and_then(|id| objects.iter_mut().find(|o| o.id == id)) {
                    Some(o) => (&mut o.ledger, o.id),
                    None => (&mut *unclaimed, ObjectId::UNCLAIMED),
                };
            let rec = FaultRecord {
                seq: 0,
                time_ns,
                addr: f.addr,
                addr_last: f.addr,
                count: 1,
                sid: f.sid,
                reason: f.reason,
                dir: f.dir,
                code: f.code,
            };
            let r = ledger.record(rec);
            report.records += 1;
            if object == ObjectId::UNCLAIMED {
                report.unclaimed += 1;
            }
            if !r.kept {
                report.dropped += 1;
            }
            let rec = FaultRecord { seq: r.seq, ..rec };
            match burst.as_mut() {
                Some(b) if b.takes(&rec, object) => b.add(&rec, r.kept),
                _ => {
                    if let Some(done) = burst.replace(Burst::new(rec, object, r.kept)) {
                        done.log(table);
                    }
                }
            }
        };
        let result = backend.drain_faults(&mut sink);
        if let Some(done) = burst {
            done.log(table);
        }
        counters.faults += report.records;
        counters.unclaimed += report.unclaimed;
        counters.dropped += report.dropped;
        match result {
            Ok(drain) => {
                report.hw_lost_at_least = drain.lost_at_least;
                counters.hw_lost_at_least += drain.lost_at_least;
                if drain.lost_at_least > 0 {
                    let ledgers = mark_possibly_lost(table, objects, unclaimed);
                    log::warn!(
                        target: "smmuman::fault",
                        "FAULT-LOST hw_lost_at_least={} ledgers={ledgers} (the IOMMU lost records without saying whose; every ledger that may miss some is marked possibly_lost)",
                        drain.lost_at_least
                    );
                }
                Ok(report)
            }
            Err(e) => {
                counters.iommu_errors += 1;
                log::error!("IOMMU event handling failed: {e}");
                Err(e)
            }
        }
    }

    /// Drains the IOMMU now, stamped with the configured clock: the barrier before an
    /// ownership change (so records raised under the old owner are charged to it) and before
    /// `read_faults`. A failure is logged and counted by [`Manager::on_iommu_event`]; the
    /// caller goes on (the records drained before it are kept).
    fn drain_now(&mut self) {
        let now = (self.clock)();
        let _ = self.on_iommu_event(now);
    }

    /// Records waiting in the unclaimed ledger (the host's).
    pub fn unclaimed_pending(&self) -> u32 {
        self.unclaimed.pending()
    }

    /// The host reads the unclaimed ledger (faults of streams no object owns): pops up to
    /// `max` records after a fault barrier. Clients cannot: it is the host's.
    pub fn read_unclaimed(&mut self, max: FaultBatch) -> FaultPage {
        self.drain_now();
        self.unclaimed.pop_page(max)
    }

    /// A fired notification for the transport to deliver, if any (each is returned once).
    pub fn take_notification(&mut self) -> Option<Notification> {
        for o in self.objects.iter_mut() {
            if let Some(client) = o.ledger.take_fired() {
                return Some(Notification {
                    client,
                    object: o.id,
                });
            }
        }
        self.unclaimed.take_fired().map(|client| Notification {
            client,
            object: ObjectId::UNCLAIMED,
        })
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Objects alive (orphans included).
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// The IOMMU backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The IOMMU backend, mutably (diagnostics, fault injection in tests). Changing
    /// translations behind the manager's back voids its guarantees.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Index of `client`'s object `id`.
    fn mine(&self, client: ClientId, id: ObjectId) -> Result<usize, Refusal> {
        self.objects
            .iter()
            .position(|o| o.id == id && o.owner == Some(client))
            .ok_or(Refusal::new(DomainError::NotFound, id.0.into()))
    }

    fn object(&self, i: usize) -> Result<&Object, Refusal> {
        self.objects
            .get(i)
            .ok_or(Refusal::new(DomainError::NotFound, 0))
    }

    fn object_mut(&mut self, i: usize) -> Result<&mut Object, Refusal> {
        self.objects
            .get_mut(i)
            .ok_or(Refusal::new(DomainError::NotFound, 0))
    }

    fn group(&self, g: usize) -> Result<&Group, Refusal> {
        self.table
            .group(g)
            .ok_or(Refusal::new(DomainError::NotFound, 0))
    }

    /// The ledger of `client`'s object `id` (the unclaimed ledger is the host's: `NotFound`).
    fn ledger(&mut self, client: ClientId, id: ObjectId) -> Result<&mut Ledger, Refusal> {
        let i = self.mine(client, id)?;
        Ok(&mut self.object_mut(i)?.ledger)
    }

    /// Logs and counts an IOMMU failure; the refusal for the client.
    fn iommu_failed(&mut self, what: &str, about: u64, e: B::Error) -> Refusal {
        self.counters.iommu_errors += 1;
        log::warn!("IOMMU refused {what} ({about:#x}): {e}");
        Refusal::new(DomainError::Iommu, about)
    }

    /// Devices of `object` back to deny, its domain destroyed, the object removed (the last
    /// object moves into slot `i`) and its host memory released. On a failed detach the object
    /// stays, with the groups that would not move; on a refused `destroy_domain` it stays with
    /// no device: either way with all its mappings and memory claims, since a device may still
    /// translate through its domain (see the module docs).
    fn teardown(&mut self, i: usize) -> Result<(), Refusal> {
        let (id, domain) = {
            let o = self.object(i)?;
            (o.id, o.domain)
        };
        let mut failed = None;
        let mut released: Bits = 0;
        for g in indices(self.table.owned_by(id)) {
            let sid = self.group(g)?.sid;
            match self.backend.detach(sid) {
                Ok(()) => released |= 1 << g,
                Err(e) => {
                    let r = self.iommu_failed("detach", sid.0.into(), e);
                    failed.get_or_insert(r);
                }
            }
        }
        // Records raised while the object owned them are charged to it before it lets go.
        self.drain_now();
        self.table.set_owner(released, None);
        if let Some(r) = failed {
            return Err(r);
        }
        if let Err(e) = self.backend.destroy_domain(domain) {
            // The IOMMU may still hold a device's configuration (or cached translations) that
            // reach the domain's tables: its memory must not go to anyone else.
            self.counters.refused_destroys += 1;
            let r = self.iommu_failed("destroy_domain", domain.0.into(), e);
            log::error!("object {id} kept with its memory: {domain} could not be destroyed");
            return Err(r);
        }
        let gone = self.objects.swap_remove(i);
        let all: alloc::vec::Vec<Mapping> = gone.mappings.iter().copied().collect();
        self.release(id, &all);
        Ok(())
    }

    /// Puts back to deny the groups an attach had already moved or tried to move; a group the
    /// IOMMU will not confirm in deny stays recorded as attached to `id` (it may still use the
    /// object's domain).
    fn undo_attach(&mut self, done: Bits, id: ObjectId) {
        for g in indices(done) {
            let Ok(sid) = self.group(g).map(|g| g.sid) else {
                continue;
            };
            if let Err(e) = self.backend.detach(sid) {
                let _ = self.iommu_failed("attach rollback", sid.0.into(), e);
                log::error!("SID {sid} stays attached to object {id}: rollback failed");
                self.table.set_owner(1 << g, Some(id));
            }
        }
    }

    /// Re-attaches the groups a detach had already released. A group the IOMMU will not
    /// re-attach stays recorded as attached to the object: its stream may use either deny or
    /// the object's domain, so it is not free until a later detach is confirmed.
    fn undo_detach(&mut self, done: Bits, domain: DomainId) {
        for g in indices(done) {
            let Ok(sid) = self.group(g).map(|g| g.sid) else {
                continue;
            };
            if let Err(e) = self.backend.attach(sid, domain) {
                let _ = self.iommu_failed("detach rollback", sid.0.into(), e);
                log::error!("SID {sid} stays attached to {domain}'s object: rollback failed");
            }
        }
    }

    /// One window checked as `map` checks it, against object `i` of `client` and the windows
    /// already accepted before it in the same batch.
    fn check_map(
        &self,
        client: ClientId,
        o: &Object,
        entry: &MapEntry,
        accepted: &[(Mapping, bool)],
    ) -> Result<(Mapping, bool), Refusal> {
        // What the wire would refuse as malformed, a caller in the same program may still
        // hand over; one check for both (a mapping that allows nothing could not be listed).
        if !is_window_access(entry.access) {
            return refuse(DomainError::Unsupported, entry.access.bits());
        }
        let w = entry.window;
        let (iova, pa, len) = (w.iova(), w.pa(), w.len());
        if !iova.is_aligned(self.granule) {
            return refuse(DomainError::Misaligned, iova.0);
        }
        if !pa.is_aligned(self.granule) {
            return refuse(DomainError::Misaligned, pa.0);
        }
        if len % self.granule != 0 {
            return refuse(DomainError::Misaligned, len);
        }
        if o.flags.contains(ObjectFlags::UNITY) && iova.0 != pa.0 {
            return refuse(DomainError::NotUnity, iova.0);
        }
        if !self.iova_ranges.iter().any(|r| r.contains(iova, len)) {
            return refuse(DomainError::OutOfRange, iova.0);
        }
        if self.reserved.iter().any(|r| r.overlaps(pa, len)) {
            return refuse(DomainError::NotOwned, pa.0);
        }
        let shared = entry.flags.contains(MapFlags::SHARED);
        match self.assignments.cover(client, pa.0, len) {
            Cover::Gap(at) => return refuse(DomainError::NotAssigned, at),
            Cover::Granted { shared: true } if !shared => {
                return refuse(DomainError::NeedsShared, pa.0)
            }
            Cover::Granted { .. } => {}
        }
        let end = last(iova.0, len);
        if let Some(m) = o.mappings.overlapping(iova.0, end) {
            return refuse(DomainError::Overlap, m.iova.0);
        }
        if accepted
            .iter()
            .any(|(m, _)| m.iova.0 <= end && iova.0 <= m.last())
        {
            return refuse(DomainError::Overlap, iova.0);
        }
        let pa_last = last(pa.0, len);
        // Free host memory (the common case) needs no more than this one search.
        let free = self.ownership.is_free(pa.0, pa_last);
        if !free {
            if let Some(at) = self.ownership.conflict(o.id, pa.0, pa_last, shared) {
                return refuse(DomainError::Busy, at);
            }
        }
        Ok((
            Mapping {
                iova,
                pa,
                len,
                access: entry.access,
                shared,
            },
            free,
        ))
    }

    /// Maps `entries` into `client`'s object `id`, all or nothing, with one IOMMU call.
    fn map_entries(
        &mut self,
        client: ClientId,
        id: ObjectId,
        entries: &[MapEntry],
    ) -> Result<(), Refusal> {
        let i = self.mine(client, id)?;
        let o = self.object(i)?;
        if let [entry] = entries {
            // One window (a `map`): the same steps without the batch's bookkeeping.
            let (m, free) = self.check_map(client, o, entry, &[])?;
            self.check_quota(o, 1)?;
            let domain = o.domain;
            if let Err(e) = self.backend.map(domain, m.iova, m.pa, m.len, m.access) {
                return Err(self.iommu_failed("map", m.iova.0, e));
            }
            if free {
                self.ownership.add_free(id, m.pa.0, m.pa_last(), m.shared);
            } else {
                self.ownership.add(id, m.pa.0, m.pa_last(), m.shared);
            }
            log::debug!(
                "{client}: object {id} maps {}+{:#x} -> {}",
                m.iova,
                m.len,
                m.pa
            );
            self.mapping_count += 1;
            self.object_mut(i)?.mappings.insert(m);
            return Ok(());
        }
        // Each window with whether its host memory was free when checked.
        let mut accepted: heapless::Vec<(Mapping, bool), MAP_BATCH> = heapless::Vec::new();
        for e in entries {
            let m = self.check_map(client, o, e, &accepted)?;
            if accepted.push(m).is_err() {
                return refuse(DomainError::QuotaExceeded, MAP_BATCH as u64);
            }
        }
        let n = accepted.len();
        self.check_quota(o, n)?;
        let domain = o.domain;
        let ops: heapless::Vec<MapOp, MAP_BATCH> = accepted
            .iter()
            .map(|(m, _)| MapOp {
                iova: m.iova,
                pa: m.pa,
                len: m.len,
                access: m.access,
            })
            .collect();
        let result = match ops.as_slice() {
            [] => Ok(()),
            [one] => self
                .backend
                .map(domain, one.iova, one.pa, one.len, one.access),
            many => self.backend.map_batch(domain, many),
        };
        if let Err(e) = result {
            let at = ops.first().map_or(0, |m| m.iova.0);
            return Err(self.iommu_failed("map", at, e));
        }
        for (k, (m, free)) in accepted.iter().enumerate() {
            // Free when checked, and no earlier window of the batch took part of it since.
            let still_free = *free
                && !accepted
                    .iter()
                    .take(k)
                    .any(|(e, _)| e.pa.0 <= m.pa_last() && m.pa.0 <= e.pa_last());
            if still_free {
                self.ownership.add_free(id, m.pa.0, m.pa_last(), m.shared);
            } else {
                self.ownership.add(id, m.pa.0, m.pa_last(), m.shared);
            }
            log::debug!(
                "{client}: object {id} maps {}+{:#x} -> {} {:?}",
                m.iova,
                m.len,
                m.pa,
                m.access
            );
        }
        self.mapping_count += n;
        let o = self.object_mut(i)?;
        for (m, _) in accepted {
            o.mappings.insert(m);
        }
        Ok(())
    }

    /// Whether `n` more mappings fit object `o` and the manager.
    fn check_quota(&self, o: &Object, n: usize) -> Result<(), Refusal> {
        if o.mappings.len() + n > self.max_mappings_per_object {
            return refuse(
                DomainError::QuotaExceeded,
                self.max_mappings_per_object as u64,
            );
        }
        if self.mapping_count + n > self.max_mappings {
            return refuse(DomainError::QuotaExceeded, self.max_mappings as u64);
        }
        Ok(())
    }

    /// Unmaps `spans` (whole mappings only) of `client`'s object `id`, all or nothing, with one
    /// IOMMU call (one invalidation); returns the bytes and mappings removed.
    fn unmap_spans(
        &mut self,
        client: ClientId,
        id: ObjectId,
        spans: &[IovaSpan],
    ) -> Result<(u64, usize), Refusal> {
        let i = self.mine(client, id)?;
        let o = self.object(i)?;
        let (mut bytes, mut count) = (0u64, 0usize);
        let mut todo: heapless::Vec<(Iova, u64), UNMAP_BATCH> = heapless::Vec::new();
        for (k, span) in spans.iter().enumerate() {
            let (start, len) = (span.iova().0, span.len());
            if !span.iova().is_aligned(self.granule) {
                return refuse(DomainError::Misaligned, start);
            }
            if len % self.granule != 0 {
                return refuse(DomainError::Misaligned, len);
            }
            // A span past the input address size is the client's mistake: refused before the
            // IOMMU is touched (and not counted as an IOMMU failure).
            if !self
                .iova_ranges
                .iter()
                .any(|r| r.contains(span.iova(), len))
            {
                return refuse(DomainError::OutOfRange, start);
            }
            let end = last(start, len);
            let earlier = spans.iter().take(k);
            if earlier
                .into_iter()
                .any(|e| e.iova().0 <= end && start <= last(e.iova().0, e.len()))
            {
                return refuse(DomainError::Overlap, start);
            }
            match o.mappings.span(start, end) {
                Span::Splits(at) => return refuse(DomainError::WouldSplit, at.0),
                Span::Whole { count: 0, .. } => {}
                Span::Whole { count: n, bytes: b } => {
                    count += n;
                    bytes += b;
                    // Only spans that hold mappings reach the IOMMU.
                    let _ = todo.push((span.iova(), len));
                }
            }
        }
        if todo.is_empty() {
            return Ok((0, 0));
        }
        let domain = o.domain;
        // One call for all the spans: one invalidation, one CMD_SYNC.
        let result = match todo.as_slice() {
            [(iova, len)] => self.backend.unmap(domain, *iova, *len),
            many => self.backend.unmap_batch(domain, many),
        };
        match result {
            Ok(n) if n != bytes => {
                log::warn!("object {id}: IOMMU unmapped {n:#x} bytes, manager expected {bytes:#x}");
            }
            Ok(_) => {}
            Err(e) => {
                let at = todo.first().map_or(0, |s| s.0 .0);
                return Err(self.iommu_failed("unmap", at, e));
            }
        }
        let Self {
            objects,
            ownership,
            mapping_count,
            ..
        } = self;
        let o = objects
            .get_mut(i)
            .ok_or(Refusal::new(DomainError::NotFound, 0))?;
        for (iova, len) in &todo {
            o.mappings.take(iova.0, last(iova.0, *len), |m| {
                ownership.remove(id, m.pa.0, m.pa_last(), m.shared);
                *mapping_count = mapping_count.saturating_sub(1);
            });
            log::debug!("{client}: object {id} unmaps {iova}+{len:#x}");
        }
        Ok((bytes, count))
    }

    fn mapped_bytes(o: &Object) -> u64 {
        o.mappings.bytes()
    }

    /// Forgets `mappings` of object `id` in the ownership index and the count (they are gone
    /// from the IOMMU, or the object is).
    fn release(&mut self, id: ObjectId, mappings: &[Mapping]) {
        for m in mappings {
            self.ownership.remove(id, m.pa.0, m.pa_last(), m.shared);
        }
        self.mapping_count = self.mapping_count.saturating_sub(mappings.len());
    }
}

/// A device's name for the fault log: the group's first device, `+n` for n more, `?` when no
/// device uses the StreamID.
struct DevName<'a>(&'a DeviceTable, Option<&'a Group>);

impl fmt::Display for DevName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1.and_then(|g| self.0.first_member(g)) {
            Some((d, 0)) => write!(f, "{}", d.id),
            Some((d, n)) => write!(f, "{}+{n}", d.id),
            None => f.write_str("?"),
        }
    }
}

/// Consecutive fault records of one stream, charged to one ledger, with one reason, direction
/// and event code: logged as one line with exact counts (a refused 4 KiB DMA is ~1,000 records
/// on QEMU, one line; Linux rate-limits instead, and loses the counts).
struct Burst {
    first: FaultRecord,
    last_seq: u64,
    last_addr: Iova,
    object: ObjectId,
    count: u64,
    kept: u64,
}

impl Burst {
    fn new(rec: FaultRecord, object: ObjectId, kept: bool) -> Self {
        Self {
            first: rec,
            last_seq: rec.seq,
            last_addr: rec.addr,
            object,
            count: 1,
            kept: u64::from(kept),
        }
    }

    /// Whether `rec`, charged to `object`, continues this burst.
    fn takes(&self, rec: &FaultRecord, object: ObjectId) -> bool {
        let f = &self.first;
        object == self.object
            && rec.sid == f.sid
            && rec.reason == f.reason
            && rec.dir == f.dir
            && rec.code == f.code
    }

    fn add(&mut self, rec: &FaultRecord, kept: bool) {
        self.last_seq = rec.seq;
        self.last_addr = rec.addr;
        self.count += 1;
        self.kept += u64::from(kept);
    }

    fn log(&self, table: &DeviceTable) {
        let group = table.group_of_sid(self.first.sid);
        log::warn!(
            target: "smmuman::fault",
            "{}",
            BurstLine { burst: self, dev: DevName(table, group) }
        );
    }
}

/// The IOMMU lost fault records and cannot say whose (SMMUv3 event queue overflow, IHI 0070
/// §7.4; VT-d FSTS.PFO, VT-d §7.2.1): marks the ledger of every object with a device attached,
/// any of which may have raised them, and the unclaimed ledger (devices nobody claimed fault
/// too). Returns how many ledgers it marked.
fn mark_possibly_lost(
    table: &DeviceTable,
    objects: &mut [Object],
    unclaimed: &mut Ledger,
) -> usize {
    let mut marked = 1;
    unclaimed.mark_possibly_lost();
    for o in objects.iter_mut() {
        if table.groups().iter().any(|g| g.owner == Some(o.id)) {
            o.ledger.mark_possibly_lost();
            marked += 1;
        }
    }
    marked
}

/// One structured log line per burst of faults.
struct BurstLine<'a> {
    burst: &'a Burst,
    dev: DevName<'a>,
}

impl fmt::Display for BurstLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.burst;
        let r = &b.first;
        write!(
            f,
            "FAULT seq={} seq_last={} count={} obj={} sid={} dev={} addr={} addr_last={} dir=",
            r.seq, b.last_seq, b.count, b.object, r.sid, self.dev, r.addr, b.last_addr
        )?;
        match r.dir {
            Some(d) => write!(f, "{d}")?,
            None => f.write_str("?")?,
        }
        write!(
            f,
            " reason={} code={:#x} kept={} dropped={}",
            r.reason,
            r.code,
            b.kept,
            b.count - b.kept
        )
    }
}

impl<B: IommuBackend> ManagerOps for Manager<B> {
    fn hello(&mut self, client: ClientId, _: HelloRequest) -> Result<HelloReply, Refusal> {
        Ok(HelloReply { client })
    }

    fn create_object(
        &mut self,
        client: ClientId,
        request: CreateObjectRequest,
    ) -> Result<CreateObjectReply, Refusal> {
        let held = self
            .objects
            .iter()
            .filter(|o| o.owner == Some(client))
            .count();
        if held >= OBJECTS_PER_CLIENT {
            return refuse(DomainError::QuotaExceeded, OBJECTS_PER_CLIENT as u64);
        }
        if self.objects.is_full() {
            return refuse(DomainError::QuotaExceeded, MAX_OBJECTS as u64);
        }
        if self.next_object == ObjectId::UNCLAIMED.0 {
            return refuse(DomainError::QuotaExceeded, u64::from(self.next_object));
        }
        let domain = match self.backend.create_domain() {
            Ok(d) => d,
            Err(e) => return Err(self.iommu_failed("create_domain", 0, e)),
        };
        let id = ObjectId(self.next_object);
        let object = Object {
            id,
            owner: Some(client),
            flags: request.flags,
            domain,
            mappings: Mappings::default(),
            ledger: Ledger::with_depth(self.fault_log_depth),
        };
        if self.objects.push(object).is_err() {
            // Cannot happen (fullness checked above); give the domain back all the same.
            let _ = self.backend.destroy_domain(domain);
            return refuse(DomainError::QuotaExceeded, MAX_OBJECTS as u64);
        }
        self.next_object += 1;
        log::info!(
            "{client}: object {id} created ({domain}, flags {:?})",
            request.flags
        );
        Ok(CreateObjectReply { object: id })
    }

    fn destroy_object(
        &mut self,
        client: ClientId,
        request: DestroyObjectRequest,
    ) -> Result<DestroyObjectReply, Refusal> {
        let i = self.mine(client, request.object)?;
        self.teardown(i)?;
        log::info!("{client}: object {} destroyed", request.object);
        Ok(DestroyObjectReply {})
    }

    fn attach(&mut self, client: ClientId, request: AttachRequest) -> Result<AttachReply, Refusal> {
        let i = self.mine(client, request.object)?;
        let (id, domain) = {
            let o = self.object(i)?;
            (o.id, o.domain)
        };
        let sel = self.table.resolve(request.device)?;
        self.check_platform_devices(sel.devices)?;
        self.check_device_authority(client, sel.groups)?;
        // Refusals in the documented order: NotFound and Unsupported (resolve, then a platform
        // device on an IOMMU that cannot tell them apart), then DeviceNotAssigned for any
        // group, then Busy for any group, then GroupSplit for any group.
        for g in indices(sel.groups) {
            let group = self.group(g)?;
            if group.owner.is_some_and(|o| o != id) {
                return refuse(DomainError::Busy, group.sid.0);
            }
        }
        let mut new: Bits = 0;
        for g in indices(sel.groups) {
            let group = self.group(g)?;
            if group.owner.is_none() {
                if group.members & !sel.devices != 0 {
                    return refuse(DomainError::GroupSplit, group.sid.0);
                }
                new |= 1 << g;
            }
        }
        let mut done: Bits = 0;
        let mut devices = 0;
        for g in indices(new) {
            let (sid, members) = {
                let group = self.group(g)?;
                (group.sid, group.members)
            };
            if let Err(e) = self.backend.attach(sid, domain) {
                let refusal = self.iommu_failed("attach", sid.0.into(), e);
                // The failing group too: its stream may already use the domain.
                self.undo_attach(done | 1 << g, id);
                return Err(refusal);
            }
            done |= 1 << g;
            devices += members.count_ones();
        }
        // Records raised before the attach belong to the unclaimed ledger, not to this object.
        self.drain_now();
        self.table.set_owner(new, Some(id));
        if new != 0 {
            log::info!("{client}: {} attached to object {id}", request.device);
        }
        Ok(AttachReply {
            devices: u16_count(devices),
            groups: u16_count(new.count_ones()),
        })
    }

    fn detach(&mut self, client: ClientId, request: DetachRequest) -> Result<DetachReply, Refusal> {
        let i = self.mine(client, request.object)?;
        let (id, domain) = {
            let o = self.object(i)?;
            (o.id, o.domain)
        };
        let sel = self.table.resolve(request.device)?;
        for g in indices(sel.groups) {
            let group = self.group(g)?;
            if group.owner != Some(id) {
                return refuse(DomainError::NotFound, group.sid.0);
            }
        }
        for g in indices(sel.groups) {
            let group = self.group(g)?;
            if group.members & !sel.devices != 0 {
                return refuse(DomainError::GroupSplit, group.sid.0);
            }
        }
        let mut done: Bits = 0;
        for g in indices(sel.groups) {
            let sid = self.group(g)?.sid;
            if let Err(e) = self.backend.detach(sid) {
                let refusal = self.iommu_failed("detach", sid.0.into(), e);
                self.undo_detach(done, domain);
                return Err(refusal);
            }
            done |= 1 << g;
        }
        // Records raised while the object owned them are charged to it.
        self.drain_now();
        self.table.set_owner(sel.groups, None);
        log::info!("{client}: {} detached from object {id}", request.device);
        Ok(DetachReply {
            devices: u16_count(sel.devices.count_ones()),
            groups: u16_count(sel.groups.count_ones()),
        })
    }

    fn map(&mut self, client: ClientId, request: MapRequest) -> Result<MapReply, Refusal> {
        let entry = MapEntry {
            window: request.window,
            access: request.access,
            flags: request.flags,
        };
        self.map_entries(client, request.object, &[entry])?;
        Ok(MapReply {})
    }

    fn unmap(&mut self, client: ClientId, request: UnmapRequest) -> Result<UnmapReply, Refusal> {
        let (bytes, _) = self.unmap_spans(client, request.object, &[request.span])?;
        Ok(UnmapReply { bytes })
    }

    fn map_batch(
        &mut self,
        client: ClientId,
        request: MapBatchRequest,
    ) -> Result<MapBatchReply, Refusal> {
        let entries: heapless::Vec<MapEntry, MAP_BATCH> = request.windows.iter().copied().collect();
        self.map_entries(client, request.object, &entries)?;
        Ok(MapBatchReply {
            mapped: u32_count(entries.len()),
        })
    }

    fn unmap_batch(
        &mut self,
        client: ClientId,
        request: UnmapBatchRequest,
    ) -> Result<UnmapBatchReply, Refusal> {
        let spans: heapless::Vec<IovaSpan, UNMAP_BATCH> = request.spans.iter().copied().collect();
        let (bytes, mappings) = self.unmap_spans(client, request.object, &spans)?;
        Ok(UnmapBatchReply {
            bytes,
            mappings: u32_count(mappings),
        })
    }

    fn list_mappings(
        &mut self,
        client: ClientId,
        request: ListMappingsRequest,
    ) -> Result<ListMappingsReply, Refusal> {
        let o = self.object(self.mine(client, request.object)?)?;
        let mut page = MappingPage::default();
        let mut rest = o.mappings.from(request.from);
        for m in rest.by_ref() {
            let Ok(window) = DmaWindow::new(m.iova, m.pa, m.len) else {
                continue;
            };
            let flags = if m.shared {
                MapFlags::SHARED
            } else {
                MapFlags::empty()
            };
            page.push(MapEntry {
                window,
                access: m.access,
                flags,
            });
            if page.len() == MAPPINGS_PER_PAGE {
                break;
            }
        }
        let next = rest.next().map(|m| m.iova.0);
        Ok(ListMappingsReply {
            mappings: page,
            next: next.unwrap_or(0),
            more: next.is_some(),
        })
    }

    fn query(&mut self, _: ClientId, _: QueryRequest) -> Result<QueryReply, Refusal> {
        Ok(QueryReply {
            page_sizes: self.page_sizes,
            iova_ranges: IovaRanges::new(&self.iova_ranges),
            max_objects: u16_count(MAX_OBJECTS),
            objects_per_client: u16_count(OBJECTS_PER_CLIENT),
            mappings_per_object: u32_count(self.max_mappings_per_object),
            fault_log_depth: u16_count(self.fault_log_depth),
            faults_per_page: FAULTS_PER_PAGE as u8,
        })
    }

    fn lookup_device(
        &mut self,
        client: ClientId,
        request: LookupDeviceRequest,
    ) -> Result<LookupDeviceReply, Refusal> {
        let sel = self.table.resolve(request.device)?;
        let assigned = self.assignments.devices_of(client);
        let (mut not_assigned, mut free, mut mine, mut others) = (0u32, 0u32, 0u32, 0u32);
        let mut sid = None;
        for d in indices(sel.devices) {
            let Some(group) = self.table.device_group(d) else {
                continue;
            };
            sid.get_or_insert(group.sid);
            // Who holds a device the caller was not given is none of its business (as in
            // `check_device_authority`): counted here, whatever its owner.
            if assigned & (1 << d) == 0 {
                not_assigned += 1;
                continue;
            }
            match group.owner {
                None => free += 1,
                Some(o)
                    if self
                        .objects
                        .iter()
                        .any(|x| x.id == o && x.owner == Some(client)) =>
                {
                    mine += 1
                }
                Some(_) => others += 1,
            }
        }
        Ok(LookupDeviceReply {
            devices: u16_count(sel.devices.count_ones()),
            groups: u16_count(sel.groups.count_ones()),
            not_assigned: u16_count(not_assigned),
            free: u16_count(free),
            mine: u16_count(mine),
            others: u16_count(others),
            sid: sid.unwrap_or(StreamId(0)),
        })
    }

    fn read_faults(
        &mut self,
        client: ClientId,
        request: ReadFaultsRequest,
    ) -> Result<ReadFaultsReply, Refusal> {
        self.mine(client, request.object)?;
        // The fault barrier: everything the IOMMU recorded before this call is charged first.
        self.drain_now();
        let ledger = self.ledger(client, request.object)?;
        Ok(ReadFaultsReply {
            page: ledger.pop_page(request.max),
        })
    }

    fn arm_notify(
        &mut self,
        client: ClientId,
        request: ArmNotifyRequest,
    ) -> Result<ArmNotifyReply, Refusal> {
        let ledger = self.ledger(client, request.object)?;
        Ok(ArmNotifyReply {
            pending: ledger.arm(client),
        })
    }

    fn object_status(
        &mut self,
        client: ClientId,
        request: ObjectStatusRequest,
    ) -> Result<ObjectStatusReply, Refusal> {
        let o = self.object(self.mine(client, request.object)?)?;
        let owned = self.table.owned_by(o.id);
        let devices: u32 = indices(owned)
            .filter_map(|g| self.table.group(g))
            .map(|g| g.members.count_ones())
            .sum();
        let (flags, groups, mappings, mapped_bytes, ledger) = (
            o.flags,
            owned.count_ones(),
            o.mappings.len(),
            Self::mapped_bytes(o),
            &o.ledger,
        );
        Ok(ObjectStatusReply {
            flags,
            devices: u16_count(devices),
            groups: u16_count(groups),
            mappings: u32_count(mappings),
            mapped_bytes,
            pending: ledger.pending(),
            recorded: ledger.recorded(),
            dropped: ledger.dropped(),
            next_seq: ledger.next_seq(),
            possibly_lost: ledger.possibly_lost(),
            notify: ledger.notify.state(),
        })
    }

    fn stats(&mut self, _: ClientId, _: StatsRequest) -> Result<StatsReply, Refusal> {
        let c = self.counters;
        Ok(StatsReply {
            objects: u16_count(self.objects.len()),
            requests: c.requests,
            protocol_errors: c.protocol_errors,
            refusals: c.refusals,
            faults: c.faults,
            unclaimed: c.unclaimed,
            dropped: c.dropped,
            hw_lost_at_least: c.hw_lost_at_least,
            iommu_errors: c.iommu_errors,
        })
    }

    fn protocol_error(&mut self, client: ClientId, error: &ProtocolError) {
        self.counters.protocol_errors += 1;
        log::debug!("{client}: malformed message: {error}");
    }

    fn refused(&mut self, client: ClientId, op: Op, refusal: &Refusal) {
        self.counters.refusals += 1;
        log::debug!("{client}: {op:?} refused: {refusal}");
    }
}
