//! The interface: every operation of the manager, declared once.
//!
//! Each entry: doc (what the op does and, per refusal, which value the refusal carries), wire
//! number, method name, request fields and reply fields in wire order. `docs/protocol.md`
//! shows the same table with offsets; a test checks the two agree.

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
    /// manager knows the caller by. Never refused.
    op Hello = 1, fn hello(HelloRequest {}) -> HelloReply {
        /// The caller, as the transport identifies it.
        client: ClientId,
    };

    /// Creates a VM object: an empty IOMMU domain that owns no device and maps nothing.
    /// Refused with `QuotaExceeded` (value: the limit that was reached) or `Iommu`.
    op CreateObject = 2, fn create_object(CreateObjectRequest {
        /// `UNITY`: every mapping must have `iova == pa`.
        flags: ObjectFlags,
    }) -> CreateObjectReply {
        /// The new object (never 0, never reused).
        object: ObjectId,
    };

    /// Destroys an object: its devices go back to default deny, its mappings and its host
    /// memory claims are dropped, its unread faults are discarded; every invalidation is
    /// complete before the reply. Refused with `NotFound` (value: the object) or `Iommu`.
    op DestroyObject = 3, fn destroy_object(DestroyObjectRequest {
        /// The object.
        object: ObjectId,
    }) -> DestroyObjectReply {};

    /// Attaches devices to an object: from the reply on, their DMA is translated by the
    /// object's mappings and everything else faults. All-or-nothing; devices already attached
    /// to this object are left as they are. Refused with `NotFound` (value: the object, or 0
    /// when no device matches), `Unsupported` (raw StreamID not allowed; value: the SID),
    /// `Busy` (attached to another object; value: its SID), `GroupSplit` (the request covers
    /// part of a group that is not yet attached; value: the SID), `Iommu`.
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
    /// All-or-nothing. Refused with `NotFound` (value: the object, or the SID of a matching
    /// device not attached to it, or 0 when no device matches), `Unsupported`, `GroupSplit`
    /// (value: the SID), `Iommu`.
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
    /// must lie in the caller's assignment (the RAM and BARs the host gave its VM). Refused
    /// with, in this order, `NotFound` (value: object), `Unsupported` (an access set the wire
    /// cannot carry, empty or with `DEVICE`, handed over in-process; value: its bits),
    /// `Misaligned` (value: the unaligned
    /// address), `NotUnity` (value: iova), `OutOfRange` (value: iova), `NotOwned` (host range
    /// overlaps the manager's memory; value: pa), `NotAssigned` (value: the first host address
    /// of the range outside the caller's assignment), `NeedsShared` (the range is assigned as
    /// shared and `SHARED` is missing; value: pa), `Overlap` (value: iova of the mapping in the
    /// way), `Busy` (host range mapped by another object and not shared by both; value: the
    /// first address of the held host memory in the way), `QuotaExceeded` (value: the limit
    /// reached, per object or in all), `Iommu`.
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
    /// Refused with `NotFound` (value: object), `Misaligned` (value: iova), `OutOfRange` (the
    /// span is outside the usable I/O ranges; value: iova), `WouldSplit` (a mapping crosses
    /// the span's edge; value: that mapping's iova), `Iommu`.
    op Unmap = 7, fn unmap(UnmapRequest {
        /// The object.
        object: ObjectId,
        /// The I/O range.
        span: IovaSpan,
    }) -> UnmapReply {
        /// Bytes that were mapped in the span.
        bytes: u64,
    };

    /// What the manager can do: usable I/O ranges, page sizes, capacities. Never refused.
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

    /// Whether the manager knows a device (an IOMMU controls it), and who holds it. Refused
    /// with `NotFound` (value 0) when no device matches, `Unsupported` for a raw StreamID the
    /// board does not allow.
    op LookupDevice = 9, fn lookup_device(LookupDeviceRequest {
        /// The devices.
        device: DeviceSel,
    }) -> LookupDeviceReply {
        /// Devices that match.
        devices: u16,
        /// Groups (StreamIDs) they form.
        groups: u16,
        /// Matching devices attached to no object.
        free: u16,
        /// Matching devices attached to the caller's objects.
        mine: u16,
        /// Matching devices attached to other clients' objects.
        others: u16,
        /// The StreamID of the first matching device.
        sid: StreamId,
    };

    /// A fault barrier, then a read: drains the IOMMU's fault records into the ledgers first,
    /// so every fault the IOMMU raised before the call is in the reply or counted in
    /// `remaining`/`dropped`, unless the page's `possibly_lost` says the IOMMU itself lost
    /// records that may have been the object's; then pops up to `max` records (each one, or a
    /// run a full ledger folded: `FaultRecord::count`) of the caller's object, oldest first. The unclaimed ledger is the host's: a client asking for
    /// `ObjectId::UNCLAIMED` gets `NotFound`. Refused with `NotFound` (value: object).
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
    /// says how many. Refused with `NotFound` (value: object; `ObjectId::UNCLAIMED` is the
    /// host's, not a client's).
    op ArmNotify = 11, fn arm_notify(ArmNotifyRequest {
        /// The object.
        object: ObjectId,
    }) -> ArmNotifyReply {
        /// Records waiting (0: armed).
        pending: u32,
    };

    /// An object's state. Refused with `NotFound` (value: object; `ObjectId::UNCLAIMED` is
    /// the host's, not a client's).
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
        /// Its notification.
        notify: NotifyState,
    };

    /// Manager-wide counters. Never refused.
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
    /// object and against the windows before it in the batch. Refused with the first refusal
    /// in window order, carrying `map`'s values: `NotFound`, `Unsupported`, `Misaligned`,
    /// `NotUnity`,
    /// `OutOfRange`, `NotOwned`, `NotAssigned`, `NeedsShared`, `Overlap` (also for two windows
    /// of the batch that overlap; value: the later one's iova), `Busy`, `QuotaExceeded` (the
    /// batch would pass a limit; value: the limit), `Iommu`.
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
    /// invalidation for the whole batch (one CMD_SYNC), complete before the reply. Refused with
    /// `NotFound` (value: object), `Misaligned`, `OutOfRange` (value: the span's iova),
    /// `Overlap` (two spans overlap; value: the later one's iova), `WouldSplit` (value: the
    /// mapping's iova), `Iommu`.
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
    /// VMM that lost track of what it mapped resynchronises with it. Refused with `NotFound`
    /// (value: object).
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
