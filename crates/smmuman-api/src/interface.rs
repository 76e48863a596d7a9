//! The interface: every operation of the manager, declared once.
//!
//! Each entry: doc (what the op does, then its refusals in the order the manager checks them,
//! each with the value it carries), wire number, method name, request fields and reply fields
//! in wire order. The "Operations" section of `docs/protocol.md` is generated from these
//! entries (`cargo run -p smmuman-api --example protocol_layouts -- --write docs/protocol.md`);
//! a test fails when it is stale.

use crate::batch::{MapBatch, MappingPage, UnmapBatch};
use crate::client::Client;
use crate::error::{CallError, ProtocolError, Refusal};
use crate::transport::Transport;
use crate::types::{
    ClientId, DeviceSel, DmaWindow, FaultBatch, FaultPage, IovaRanges, IovaSpan, MapFlags,
    NotifyState, ObjectFlags, ObjectId,
};
use iommu_core::{Access, StreamId};

interface! {
    /// Checks that a manager is running and speaks this protocol version; returns the id the
    /// manager knows the caller by.
    ///
    /// Never refused.
    op Hello = 1, fn hello(HelloRequest {}) -> HelloReply {
        /// The caller, as the transport identifies it.
        client: ClientId,
    };

    /// Creates a VM object: an empty IOMMU domain that owns no device and maps nothing.
    ///
    /// Refusals, in the order they are checked:
    /// * `QuotaExceeded`: the caller's or the manager's object limit is reached (value: that
    ///   limit);
    /// * `Iommu`: the IOMMU could not create a domain (value: 0).
    op CreateObject = 2, fn create_object(CreateObjectRequest {
        /// `UNITY`: every mapping must have `iova == pa`.
        flags: ObjectFlags,
    }) -> CreateObjectReply {
        /// The new object (never 0, never reused).
        object: ObjectId,
    };

    /// Destroys an object: its devices go back to default deny, its mappings and its host
    /// memory claims are dropped, its unread faults are discarded; every invalidation is
    /// complete before the reply.
    ///
    /// Refusals, in the order they are checked:
    /// * `NotFound`: no such object of the caller (value: the object);
    /// * `Iommu`: a device would not go back to default deny (value: its SID); the object
    ///   stays, with what it still holds.
    op DestroyObject = 3, fn destroy_object(DestroyObjectRequest {
        /// The object.
        object: ObjectId,
    }) -> DestroyObjectReply {};

    /// Attaches devices to an object: from the reply on, their DMA is translated by the
    /// object's mappings and everything else faults. All-or-nothing; devices already attached
    /// to this object are left as they are. A client attaches only devices the host assigned
    /// it (its VM's pass-through devices), and a group (devices sharing a StreamID) only when
    /// every member of it was assigned to it.
    ///
    /// Refusals, in the order they are checked:
    /// * `NotFound`: no such object of the caller (value: the object);
    /// * `Unsupported`: a raw StreamID the board does not let clients select (value: the
    ///   SID); `NotFound`: no device matches (value: 0);
    /// * `Unsupported`: a platform device on an IOMMU that cannot tell platform devices
    ///   apart (value: its register base);
    /// * `DeviceNotAssigned`: a matching device's group is not wholly in the caller's
    ///   assignment (value: that group's SID). Checked before `Busy` and `GroupSplit`, so the
    ///   answer about a device the caller was not given is the same whether or not someone
    ///   holds it: a client cannot learn who owns it;
    /// * `Busy`: a group is attached to another object (value: its SID);
    /// * `GroupSplit`: the request covers part of a group that is not yet attached (value:
    ///   its SID);
    /// * `Iommu`: the IOMMU failed the change (value: the SID it failed on).
    op Attach = 4, fn attach(AttachRequest {
        /// The object.
        object: ObjectId,
        /// The devices (PCI pattern, MMIO base or raw StreamID).
        device: DeviceSel,
    }) -> AttachReply {
        /// Devices newly attached.
        devices: u16,
        /// Groups (StreamIDs) newly attached.
        groups: u16,
    };

    /// Puts devices of an object back to default deny (invalidation complete before the reply).
    /// All-or-nothing.
    ///
    /// Refusals, in the order they are checked:
    /// * `NotFound`: no such object of the caller (value: the object);
    /// * `Unsupported`: a raw StreamID the board does not let clients select (value: the
    ///   SID); `NotFound`: no device matches (value: 0);
    /// * `NotFound`: a matching device is not attached to the object (value: its SID);
    /// * `GroupSplit`: the request covers part of an attached group (value: its SID);
    /// * `Iommu`: the IOMMU failed the change (value: the SID it failed on).
    op Detach = 5, fn detach(DetachRequest {
        /// The object.
        object: ObjectId,
        /// The devices.
        device: DeviceSel,
    }) -> DetachReply {
        /// Devices detached.
        devices: u16,
        /// Groups (StreamIDs) detached.
        groups: u16,
    };

    /// Maps `window` into the object for every attached device, with `access`. The host range
    /// must lie in the caller's assignment (the RAM and BARs the host gave its VM).
    ///
    /// Refusals, in the order they are checked:
    /// * `NotFound`: no such object of the caller (value: the object);
    /// * `Unsupported`: an access set the wire cannot carry (empty or with `DEVICE`) handed
    ///   over in-process (value: its bits);
    /// * `Misaligned`: an address or the length is not aligned to the granule (value: the
    ///   iova, the pa or the length, checked in that order);
    /// * `NotUnity`: a unity-mapped object and `iova != pa` (value: the iova);
    /// * `OutOfRange`: the I/O range is outside the usable ranges (value: the iova);
    /// * `NotOwned`: the host range overlaps the manager's memory (value: the pa);
    /// * `NotAssigned`: the host range is not wholly in the caller's assignment (value: its
    ///   first host address outside);
    /// * `NeedsShared`: the range is assigned as shared and `SHARED` is missing (value: the
    ///   pa);
    /// * `Overlap`: the I/O range overlaps a mapping of the object (value: that mapping's
    ///   iova);
    /// * `Busy`: the host range is mapped by another object and not shared by both (value:
    ///   the first address of the held host memory in the way);
    /// * `QuotaExceeded`: a mapping limit is reached, per object or in all (value: the
    ///   limit);
    /// * `Iommu`: the IOMMU failed the map (value: the iova).
    op Map = 6, fn map(MapRequest {
        /// The object.
        object: ObjectId,
        /// I/O range and the host memory behind it.
        window: DmaWindow,
        /// READ, WRITE, EXEC (at least one).
        access: Access,
        /// `SHARED`: other objects may map the same host memory if they map it shared too.
        flags: MapFlags,
    }) -> MapReply {};

    /// Removes every mapping inside `span` (whole mappings only) with one invalidation,
    /// complete before the reply; returns the bytes unmapped (0 when nothing was mapped there).
    ///
    /// Refusals, in the order they are checked:
    /// * `NotFound`: no such object of the caller (value: the object);
    /// * `Misaligned`: the iova or the length is not aligned to the granule (value: it);
    /// * `OutOfRange`: the span is outside the usable I/O ranges (value: the iova);
    /// * `WouldSplit`: a mapping crosses the span's edge (value: that mapping's iova);
    /// * `Iommu`: the IOMMU failed the unmap or its invalidation (value: the iova); the
    ///   mappings stay, and a retry completes it.
    op Unmap = 7, fn unmap(UnmapRequest {
        /// The object.
        object: ObjectId,
        /// The I/O range.
        span: IovaSpan,
    }) -> UnmapReply {
        /// Bytes that were mapped in the span.
        bytes: u64,
    };

    /// What the manager can do: usable I/O ranges, page sizes, capacities.
    ///
    /// Never refused.
    op Query = 8, fn query(QueryRequest {}) -> QueryReply {
        /// Bit `n` set: the IOMMU maps pages of `2^n` bytes (the minimum is the granule every
        /// address and length must be aligned to).
        page_sizes: u64,
        /// The I/O addresses a mapping may use.
        iova_ranges: IovaRanges,
        /// Objects the manager holds at most.
        max_objects: u16,
        /// Objects one client may hold at most.
        objects_per_client: u16,
        /// Mappings one object may hold at most.
        mappings_per_object: u32,
        /// Records one fault ledger holds before it drops new ones.
        fault_log_depth: u16,
        /// Records one `read_faults` reply carries at most.
        faults_per_page: u8,
    };

    /// Whether the manager knows a device (an IOMMU controls it), whether the host assigned
    /// it to the caller, and, only for the caller's own devices, who holds it. A device the
    /// caller was not given is counted in `not_assigned` and nowhere else, so the reply about
    /// it is the same whether it is free, held by another VM or just released (as `attach`'s
    /// `DeviceNotAssigned`). `devices` = `not_assigned` + `free` + `mine` + `others`.
    ///
    /// Refusals, in the order they are checked:
    /// * `Unsupported`: a raw StreamID the board does not let clients select (value: the
    ///   SID);
    /// * `NotFound`: no device matches (value: 0).
    op LookupDevice = 9, fn lookup_device(LookupDeviceRequest {
        /// The devices.
        device: DeviceSel,
    }) -> LookupDeviceReply {
        /// Devices that match (the manager knows them: an IOMMU controls them).
        devices: u16,
        /// Groups (StreamIDs) they form.
        groups: u16,
        /// Matching devices the host did not assign to the caller, whoever holds them: the
        /// caller cannot attach them (`DeviceNotAssigned`).
        not_assigned: u16,
        /// Matching devices assigned to the caller and attached to no object.
        free: u16,
        /// Matching devices attached to the caller's objects.
        mine: u16,
        /// Matching devices assigned to the caller but held by an object that is not the
        /// caller's (an orphaned object whose release the IOMMU has not confirmed; the host
        /// does not assign such a device, so normally 0).
        others: u16,
        /// The StreamID of the first matching device.
        sid: StreamId,
    };

    /// A fault barrier, then a read: drains the IOMMU's fault records into the ledgers first,
    /// so every fault the IOMMU raised before the call is in the reply or counted in
    /// `remaining`/`dropped`, unless the page's `possibly_lost` says the IOMMU itself lost
    /// records that may have been the object's; then pops up to `max` records (each one, or a
    /// run a full ledger folded: `FaultRecord::count`) of the caller's object, oldest first.
    /// The unclaimed ledger is the host's: a client asking for `ObjectId::UNCLAIMED` gets
    /// `NotFound`.
    ///
    /// Refusals:
    /// * `NotFound`: no such object of the caller (value: the object).
    op ReadFaults = 10, fn read_faults(ReadFaultsRequest {
        /// The object.
        object: ObjectId,
        /// Records to pop at most (1 to `faults_per_page`).
        max: FaultBatch,
    }) -> ReadFaultsReply {
        /// The records, how many remain, how many were dropped, how often some may be lost.
        page: FaultPage,
    };

    /// Arms the object's fault notification: the next record to arrive fires it once (the
    /// transport delivers it). When records are already waiting it is not armed and `pending`
    /// says how many.
    ///
    /// Refusals:
    /// * `NotFound`: no such object of the caller (value: the object; `ObjectId::UNCLAIMED`
    ///   is the host's, not a client's).
    op ArmNotify = 11, fn arm_notify(ArmNotifyRequest {
        /// The object.
        object: ObjectId,
    }) -> ArmNotifyReply {
        /// Records waiting (0: armed).
        pending: u32,
    };

    /// An object's state.
    ///
    /// Refusals:
    /// * `NotFound`: no such object of the caller (value: the object; `ObjectId::UNCLAIMED`
    ///   is the host's, not a client's).
    op ObjectStatus = 12, fn object_status(ObjectStatusRequest {
        /// The object.
        object: ObjectId,
    }) -> ObjectStatusReply {
        /// The flags it was created with.
        flags: ObjectFlags,
        /// Devices attached.
        devices: u16,
        /// Groups (StreamIDs) attached.
        groups: u16,
        /// Mappings.
        mappings: u32,
        /// Bytes mapped.
        mapped_bytes: u64,
        /// Fault records waiting to be read.
        pending: u32,
        /// Fault records attributed to it in total (kept or dropped).
        recorded: u64,
        /// Fault records dropped because its ledger was full.
        dropped: u64,
        /// Sequence number the next record will get.
        next_seq: u64,
        /// Times since the object was created that the IOMMU lost records that may have been
        /// its own (as `FaultPage::possibly_lost`; 0: none can be missing).
        possibly_lost: u64,
        /// Its notification.
        notify: NotifyState,
    };

    /// Manager-wide counters.
    ///
    /// Never refused.
    op Stats = 13, fn stats(StatsRequest {}) -> StatsReply {
        /// Objects alive.
        objects: u16,
        /// Requests dispatched.
        requests: u64,
        /// Requests answered with a protocol error.
        protocol_errors: u64,
        /// Requests refused with a domain error.
        refusals: u64,
        /// Fault records drained from the IOMMU.
        faults: u64,
        /// Of those, records no object claimed.
        unclaimed: u64,
        /// Records dropped because a ledger was full.
        dropped: u64,
        /// Records the IOMMU itself lost (a lower bound: hardware reports overflow, not counts).
        hw_lost_at_least: u64,
        /// IOMMU operations that failed.
        iommu_errors: u64,
    };

    /// Maps every window of `windows` into the object, all or nothing, with one IOMMU call (a
    /// map needs no invalidation). Each window is checked as `map` checks it, against the
    /// object and against the windows before it in the batch.
    ///
    /// Refusals: the first refusal in window order, in `map`'s order and with `map`'s values,
    /// then the batch's:
    /// * `NotFound`, `Unsupported`, `Misaligned`, `NotUnity`, `OutOfRange`, `NotOwned`, `NotAssigned`,
    ///   `NeedsShared`: as `map`;
    /// * `Overlap`: as `map`, or two windows of the batch overlap (value: the later one's
    ///   iova);
    /// * `Busy`: as `map`;
    /// * `QuotaExceeded`: the batch would pass a mapping limit (value: the limit);
    /// * `Iommu`: the IOMMU failed the batch (value: the first window's iova); nothing is
    ///   mapped.
    op MapBatch = 14, fn map_batch(MapBatchRequest {
        /// The object.
        object: ObjectId,
        /// Up to 32 windows.
        windows: MapBatch,
    }) -> MapBatchReply {
        /// Windows mapped (all of them).
        mapped: u32,
    };

    /// Removes every mapping inside each span (whole mappings only), all or nothing, with one
    /// invalidation for the whole batch (one CMD_SYNC), complete before the reply.
    ///
    /// Refusals: the first in span order, each span checked in this order:
    /// * `NotFound`: no such object of the caller (value: the object);
    /// * `Misaligned`: a span's iova or length is not aligned (value: it);
    /// * `OutOfRange`: a span is outside the usable I/O ranges (value: its iova);
    /// * `Overlap`: two spans overlap (value: the later one's iova);
    /// * `WouldSplit`: a mapping crosses a span's edge (value: that mapping's iova);
    /// * `Iommu`: the IOMMU failed the unmap or its invalidation (value: the first span's
    ///   iova); the mappings stay.
    op UnmapBatch = 15, fn unmap_batch(UnmapBatchRequest {
        /// The object.
        object: ObjectId,
        /// Up to 60 spans.
        spans: UnmapBatch,
    }) -> UnmapBatchReply {
        /// Bytes that were mapped in the spans.
        bytes: u64,
        /// Mappings removed.
        mappings: u32,
    };

    /// The object's mappings by I/O address, from I/O address `from` on, a page at a time: a
    /// VMM that lost track of what it mapped resynchronises with it.
    ///
    /// Refusals:
    /// * `NotFound`: no such object of the caller (value: the object).
    op ListMappings = 16, fn list_mappings(ListMappingsRequest {
        /// The object.
        object: ObjectId,
        /// The first I/O address of interest (0: from the start).
        from: u64,
    }) -> ListMappingsReply {
        /// Up to 32 mappings, by I/O address; `flags` says which were made `SHARED`.
        mappings: MappingPage,
        /// Where the next page starts (valid when `more`).
        next: u64,
        /// More mappings follow.
        more: bool,
    };
}
