//! The operator's interface: every admin operation, declared once.
//!
//! Each entry: doc (what the op does, then its refusals), wire number (from
//! [`ADMIN_OP_BASE`](crate::ADMIN_OP_BASE) = 0x100), method name, request and reply fields in
//! wire order. Listings are paged: a request names where to start (`from`), a reply carries
//! up to a page of rows, where the next page starts (`next`) and whether there is one
//! (`more`). The "Operations" and "Rows" sections of `docs/operator-protocol.md` are generated
//! from these entries; a test fails when they are stale.
//!
//! Every op but `start_vm` and `stop_vm` only reads: none changes what the manager holds, and
//! none consumes a client's fault records.

use crate::types::{
    DevicePage, GrantPage, GroupPage, Name, ObjectPage, RegionPage, UnitPage, VmPage,
};
use smmuman_api::{ClientId, FaultPage, MappingPage, ObjectId};

admin_interface! {
    /// Checks that the operator's channel answers and which admin op table it serves.
    ///
    /// Never refused.
    op AdminHello = 0x100, fn admin_hello(AdminHelloRequest {}) -> AdminHelloReply {
        /// [`ADMIN_VERSION`](crate::ADMIN_VERSION) of the server.
        admin_version: u16,
        /// The first admin op number ([`ADMIN_OP_BASE`](crate::ADMIN_OP_BASE)).
        op_base: u16,
    };

    /// The IOMMU units the host drives, from index `from` on.
    ///
    /// Never refused (an index past the end gives an empty page).
    op ListUnits = 0x101, fn list_units(ListUnitsRequest {
        /// Index of the first unit.
        from: u16,
    }) -> ListUnitsReply {
        /// Up to 16 units.
        units: UnitPage,
        /// Index of the next page's first unit (valid when `more`).
        next: u16,
        /// More units follow.
        more: bool,
    };

    /// The DMA masters the manager controls, in the board's order, with their StreamID,
    /// group, the object (and client) holding them and the client they are assigned to.
    ///
    /// Never refused.
    op ListDevices = 0x102, fn list_devices(ListDevicesRequest {
        /// Index of the first device.
        from: u16,
    }) -> ListDevicesReply {
        /// Up to 24 devices.
        devices: DevicePage,
        /// Index of the next page's first device (valid when `more`).
        next: u16,
        /// More devices follow.
        more: bool,
    };

    /// The isolation groups (devices sharing a StreamID) with their holder and assignee.
    ///
    /// Never refused.
    op ListGroups = 0x103, fn list_groups(ListGroupsRequest {
        /// Index of the first group.
        from: u16,
    }) -> ListGroupsReply {
        /// Up to 32 groups.
        groups: GroupPage,
        /// Index of the next page's first group (valid when `more`).
        next: u16,
        /// More groups follow.
        more: bool,
    };

    /// The VMs the host knows (its plan's, in plan order), then every other client of the
    /// manager (state `client`), each with what it holds. Drains the IOMMU first (as
    /// `peek_faults` does), so `pending_faults` counts every record raised before the call.
    ///
    /// Never refused.
    op ListVms = 0x104, fn list_vms(ListVmsRequest {
        /// Index of the first row.
        from: u16,
    }) -> ListVmsReply {
        /// Up to 16 VMs.
        vms: VmPage,
        /// Index of the next page's first row (valid when `more`).
        next: u16,
        /// More rows follow.
        more: bool,
    };

    /// Every VM object (orphans included) by id, from id `from` on: owner, devices, mappings
    /// against its quota, heap bound, ledger counters (after draining the IOMMU, as
    /// `peek_faults` does).
    ///
    /// Never refused.
    op ListObjects = 0x105, fn list_objects(ListObjectsRequest {
        /// The first object id of interest (0: from the start).
        from: ObjectId,
    }) -> ListObjectsReply {
        /// Up to 12 objects, by id.
        objects: ObjectPage,
        /// The next page's first id (valid when `more`).
        next: ObjectId,
        /// More objects follow.
        more: bool,
    };

    /// An object's windows by I/O address, from I/O address `from` on: IOVA, host address,
    /// size, access, shared.
    ///
    /// Refusals:
    /// * `NotFound`: no such object (value: the object).
    op ListWindows = 0x106, fn list_windows(ListWindowsRequest {
        /// The object (any client's).
        object: ObjectId,
        /// The first I/O address of interest (0: from the start).
        from: u64,
    }) -> ListWindowsReply {
        /// Up to 32 windows.
        windows: MappingPage,
        /// Where the next page starts (valid when `more`).
        next: u64,
        /// More windows follow.
        more: bool,
    };

    /// Reads an object's fault history without taking anything from its ledger (its client
    /// still reads every record): drains the IOMMU first (the same barrier as a client's
    /// `read_faults`), then returns the records that hold sequence numbers above `after`,
    /// oldest first. The history is the newest 8 runs the ledger kept, whether or not its
    /// client already read them. Pass the reply's `next` as `after` to follow the ledger. A
    /// record stands for a run (`seq..=seq + count - 1`): the history folds every record that
    /// continues its newest run into it, so the first record returned may be a run that was
    /// shown before and grew since: its numbers up to `after` are the ones already shown.
    /// Records the history no longer holds (older than its 8 runs, or dropped when the ledger
    /// was full) are counted in `missed`. `ObjectId::UNCLAIMED` reads the unclaimed ledger
    /// (faults of devices no object holds).
    ///
    /// Refusals:
    /// * `NotFound`: no such object (value: the object).
    op PeekFaults = 0x107, fn peek_faults(PeekFaultsRequest {
        /// The object, or `ObjectId::UNCLAIMED`.
        object: ObjectId,
        /// The last sequence number already seen (0: from the start).
        after: u64,
    }) -> PeekFaultsReply {
        /// Up to 20 records (`remaining`: records after them still in the ledger; `dropped`,
        /// `possibly_lost`: the ledger's counters).
        page: FaultPage,
        /// The cursor for the next call: the last sequence number shown (or `after`, or the
        /// one before the ledger's next, whichever is higher).
        next: u64,
        /// Sequence numbers between `after` and the first record shown that the history no
        /// longer holds (or, with nothing shown, between `after` and the ledger's newest).
        missed: u64,
    };

    /// The host-physical memory map: RAM, the daemon's own memory, device registers, from
    /// index `from` on, by address.
    ///
    /// Never refused.
    op MemoryMap = 0x108, fn memory_map(MemoryMapRequest {
        /// Index of the first region.
        from: u16,
    }) -> MemoryMapReply {
        /// Up to 16 regions.
        regions: RegionPage,
        /// Index of the next page's first region (valid when `more`).
        next: u16,
        /// More regions follow.
        more: bool,
    };

    /// A client's assignment: the host memory its devices may be granted.
    ///
    /// Never refused (a client with no assignment has an empty one).
    op ListGrants = 0x109, fn list_grants(ListGrantsRequest {
        /// The client.
        client: ClientId,
    }) -> ListGrantsReply {
        /// Its grants (at most 16: all of them).
        grants: GrantPage,
    };

    /// Manager-wide use: objects, mappings against their limits, heap, fault counters.
    ///
    /// Never refused.
    op Usage = 0x10a, fn usage(UsageRequest {}) -> UsageReply {
        /// Objects alive (orphans included).
        objects: u16,
        /// Objects the manager holds at most.
        max_objects: u16,
        /// Orphaned objects (their client went away, the IOMMU would not release them).
        orphans: u16,
        /// Mappings held by all objects.
        mappings: u64,
        /// Mappings the manager holds at most.
        max_mappings: u64,
        /// Mappings one object may hold at most.
        mappings_per_object: u32,
        /// Heap bytes one mapping may cost at most (the heap is sized with it).
        mapping_bytes: u32,
        /// Heap bytes in use, as the daemon's allocator counts them (0: not known).
        heap_used: u64,
        /// Heap bytes in all (0: not known).
        heap_size: u64,
        /// Fault records drained from the IOMMU.
        faults: u64,
        /// Of those, records no object claimed.
        unclaimed: u64,
        /// Records dropped because a ledger was full.
        dropped: u64,
        /// Records the IOMMU itself lost (a lower bound).
        hw_lost_at_least: u64,
        /// Client requests handled.
        requests: u64,
        /// Client requests refused.
        refusals: u64,
    };

    /// Starts a VM of the host plan (again, once it stopped).
    ///
    /// Refusals, in the order they are checked:
    /// * `NotFound`: no VM of that name in the plan (value: 0);
    /// * `Busy`: it is running (value: 0);
    /// * `Unsupported`: this host cannot start VMs at run time (value: 0).
    op StartVm = 0x10b, fn start_vm(StartVmRequest {
        /// The VM's name in the host plan.
        name: Name,
    }) -> StartVmReply {};

    /// Stops a running VM: its device quiesced, its object destroyed, its RAM scrubbed.
    ///
    /// Refusals, in the order they are checked:
    /// * `NotFound`: no VM of that name in the plan (value: 0);
    /// * `Busy`: it is not running (value: 0);
    /// * `Unsupported`: this host cannot stop VMs at run time (value: 0).
    op StopVm = 0x10c, fn stop_vm(StopVmRequest {
        /// The VM's name in the host plan.
        name: Name,
    }) -> StopVmReply {};
}
