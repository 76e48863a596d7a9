//! What the admin ops carry: fixed-size names, small enums, and one row type per listing.
//!
//! Every type has a fixed little-endian layout (`smmuman_api::wire`), checked byte by byte on
//! decoding like the client protocol's; a listing is a `smmuman_api::batch::List` of rows (a
//! count, 7 reserved zero bytes, the rows, zero slots after them) so a reply never passes
//! `MAX_PAYLOAD`, and the op that returns it says where the next page starts.

use core::fmt;
use iommu_core::{PhysAddr, StreamId};
use smmuman_api::batch::List;
use smmuman_api::wire::{FieldError, Reader, Wire, Writer};
use smmuman_api::{ClientId, ObjectFlags, ObjectId};

/// Bytes of a [`Name`].
pub const NAME_LEN: usize = 16;

/// A short name (a VM of the host plan, an IOMMU unit, a memory region): up to 16 printable
/// ASCII bytes without spaces (0x21 to 0x7e), NUL-padded on the wire. Anything else (a
/// control byte, a byte after the padding starts) is refused at its offset.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Name {
    bytes: [u8; NAME_LEN],
    len: u8,
}

/// Why a string cannot be a [`Name`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NameError {
    /// Longer than [`NAME_LEN`] bytes.
    TooLong(usize),
    /// A byte outside 0x21..=0x7e, at this index.
    BadByte(usize),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong(n) => write!(f, "name of {n} bytes, at most {NAME_LEN}"),
            Self::BadByte(i) => write!(
                f,
                "name byte {i} is not printable ASCII without spaces (0x21..=0x7e)"
            ),
        }
    }
}

const fn name_byte(b: u8) -> bool {
    b >= 0x21 && b <= 0x7e
}

impl Name {
    /// The name `s`.
    ///
    /// # Errors
    /// [`NameError`] naming what is wrong.
    pub fn new(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        if b.len() > NAME_LEN {
            return Err(NameError::TooLong(b.len()));
        }
        let mut name = Self::default();
        for (i, &c) in b.iter().enumerate() {
            if !name_byte(c) {
                return Err(NameError::BadByte(i));
            }
            if let Some(slot) = name.bytes.get_mut(i) {
                *slot = c;
            }
        }
        name.len = b.len() as u8;
        Ok(name)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        let b = self.bytes.get(..usize::from(self.len)).unwrap_or(&[]);
        // Only printable ASCII is ever stored.
        core::str::from_utf8(b).unwrap_or("")
    }

    /// Whether the name is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// 16 bytes: the name's bytes, then NULs.
impl Wire for Name {
    const SIZE: usize = NAME_LEN;
    fn put(&self, w: &mut Writer<'_>) {
        for b in self.bytes {
            w.u8(b);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let mut name = Self::default();
        let mut ended = false;
        for i in 0..NAME_LEN {
            let at = r.offset();
            let b = r.u8()?;
            match (ended, b) {
                (_, 0) => ended = true,
                (false, b) if name_byte(b) => {
                    if let Some(slot) = name.bytes.get_mut(i) {
                        *slot = b;
                    }
                    name.len += 1;
                }
                (_, b) => return Err(Reader::reject(at, b.into())),
            }
        }
        Ok(name)
    }
}

/// A client, or none: `present:u8` (0 or 1) then `client:u32` (0 when absent).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct OptClient(pub Option<ClientId>);

impl Wire for OptClient {
    const SIZE: usize = 5;
    fn put(&self, w: &mut Writer<'_>) {
        match self.0 {
            Some(c) => {
                w.u8(1);
                w.u32(c.0);
            }
            None => {
                w.u8(0);
                w.u32(0);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let at = r.offset();
        let present = r.u8()?;
        let at_id = r.offset();
        let id = r.u32()?;
        match present {
            1 => Ok(Self(Some(ClientId(id)))),
            0 if id == 0 => Ok(Self(None)),
            0 => Err(Reader::reject(at_id, id.into())),
            v => Err(Reader::reject(at, v.into())),
        }
    }
}

impl fmt::Display for OptClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "{c}"),
            None => f.write_str("-"),
        }
    }
}

wire_enum! {
    /// What kind of IOMMU a unit is.
    pub enum UnitKind {
        /// An Arm SMMUv3 (IHI 0070).
        Smmuv3 = 1,
        /// An Intel VT-d remapping unit (a DMAR DRHD).
        Vtd = 2,
    }
}

wire_enum! {
    /// How the board names a DMA master.
    pub enum DeviceKind {
        /// A PCI function (`bdf` holds it).
        Pci = 1,
        /// A platform device (`base` holds its register base).
        Mmio = 2,
    }
}

wire_enum! {
    /// Where a VM stands.
    pub enum VmState {
        /// In the host plan, not started (or not yet).
        Planned = 1,
        /// Its VMM and guest run.
        Running = 2,
        /// Its guest stopped (finished, or stopped by the operator).
        Stopped = 3,
        /// Its VMM refused to start it or its guest crashed.
        Failed = 4,
        /// A client of the manager that the host names no VM for.
        Client = 5,
    }
}

wire_enum! {
    /// What a region of the host-physical memory map is.
    pub enum RegionKind {
        /// RAM (a VM's, free, or the daemon's pools' parent).
        Ram = 1,
        /// The daemon's own memory (image, stacks, tables, queues): never mappable.
        Daemon = 2,
        /// Device registers (the IOMMU, the interrupt controller, UARTs, PCI windows...).
        Mmio = 3,
    }
}

wire_enum! {
    /// What a grant of a client's assignment lets its devices reach.
    pub enum GrantKind {
        /// RAM the host gave this client's VM alone.
        Ram = 1,
        /// RAM the host gave this VM and others (mapped `SHARED` by each).
        SharedRam = 2,
        /// A device BAR (peer-to-peer DMA).
        Peer = 3,
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Planned => "planned",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Client => "client",
        })
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Smmuv3 => "smmuv3",
            Self::Vtd => "vt-d",
        })
    }
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ram => "ram",
            Self::Daemon => "daemon",
            Self::Mmio => "mmio",
        })
    }
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

row! {
    /// One IOMMU unit the host drives.
    pub struct UnitRow {
        /// Its name (the device-tree node or DMAR unit the host knows it by).
        name: Name,
        /// SMMUv3 or VT-d.
        kind: UnitKind,
        /// Its register frame's base.
        base: PhysAddr,
        /// Its register frame's size.
        size: u64,
    }
}

row! {
    /// One DMA master the manager controls, and who holds it.
    pub struct DeviceRow {
        /// PCI function or platform device.
        kind: DeviceKind,
        /// PCI: bus << 8 | device << 3 | function; 0 otherwise.
        bdf: u16,
        /// Platform device: its register base; 0 otherwise.
        base: PhysAddr,
        /// The StreamID (requester ID on VT-d) its DMA carries.
        sid: StreamId,
        /// Devices in its group (sharing the StreamID), itself included.
        group_devices: u16,
        /// The object its group is attached to; 0: none (default deny, faults to the
        /// unclaimed ledger).
        object: ObjectId,
        /// That object's client; absent when no object holds it, or the object is an orphan.
        client: OptClient,
        /// The client the host assigned it to, if any.
        assigned: OptClient,
    }
}

row! {
    /// One isolation group (devices sharing a StreamID), and who holds it.
    pub struct GroupRow {
        /// The StreamID its devices share.
        sid: StreamId,
        /// Its devices.
        devices: u16,
        /// The object it is attached to; 0: none.
        object: ObjectId,
        /// That object's client (absent: none, or an orphan).
        client: OptClient,
        /// The client the host assigned it to, if any.
        assigned: OptClient,
    }
}

row! {
    /// One VM of the host (or a client the host names no VM for) and what it holds.
    pub struct VmRow {
        /// The VM's name in the host plan (empty for a bare client).
        name: Name,
        /// Its VMM's client id at the manager (absent: not started).
        client: OptClient,
        /// Where it stands.
        state: VmState,
        /// VM objects its client holds.
        objects: u16,
        /// Devices the host assigned it.
        devices: u16,
        /// Host memory the host assigned it, in bytes.
        assigned_bytes: u64,
        /// Mappings its objects hold.
        mappings: u32,
        /// Bytes those mappings cover.
        mapped_bytes: u64,
        /// Fault records waiting in its objects' ledgers.
        pending_faults: u32,
    }
}

row! {
    /// One VM object: its owner, devices, mappings against its quota, and its ledger.
    pub struct ObjectRow {
        /// The object.
        object: ObjectId,
        /// Its client (absent: an orphan the IOMMU would not release).
        client: OptClient,
        /// The flags it was created with.
        flags: ObjectFlags,
        /// Groups attached.
        groups: u16,
        /// Devices attached.
        devices: u16,
        /// Mappings.
        mappings: u32,
        /// Bytes mapped.
        mapped_bytes: u64,
        /// Mappings it may hold at most (its quota).
        quota: u32,
        /// Heap its mappings may cost at most: mappings × the per-mapping bound the daemon
        /// sizes its heap with (`MAPPING_BYTES`).
        heap_bound: u64,
        /// Fault records waiting to be read by its client.
        pending: u32,
        /// Fault records charged to it in total.
        recorded: u64,
        /// Records dropped because its ledger was full.
        dropped: u64,
        /// Times the IOMMU lost records that may have been its.
        possibly_lost: u64,
        /// The sequence number its next record will get.
        next_seq: u64,
    }
}

row! {
    /// One region of the host-physical memory map.
    pub struct RegionRow {
        /// First byte.
        start: PhysAddr,
        /// Length in bytes.
        len: u64,
        /// RAM, the daemon's own, or device registers.
        kind: RegionKind,
        /// What the host calls it.
        name: Name,
    }
}

row! {
    /// One grant of a client's assignment (what the host lets its devices reach).
    pub struct GrantRow {
        /// First byte.
        start: PhysAddr,
        /// Length in bytes.
        len: u64,
        /// What it is.
        kind: GrantKind,
    }
}

/// Every row type, in the order `docs/operator-protocol.md` lists them.
pub const ROWS: &[crate::declare::RowInfo] = &[
    UnitRow::INFO,
    DeviceRow::INFO,
    GroupRow::INFO,
    VmRow::INFO,
    ObjectRow::INFO,
    RegionRow::INFO,
    GrantRow::INFO,
];

/// Units one `list_units` reply carries at most.
pub const UNITS_PER_PAGE: usize = 16;
/// Devices one `list_devices` reply carries at most.
pub const DEVICES_PER_PAGE: usize = 24;
/// Groups one `list_groups` reply carries at most.
pub const GROUPS_PER_PAGE: usize = 32;
/// VMs one `list_vms` reply carries at most.
pub const VMS_PER_PAGE: usize = 16;
/// Objects one `list_objects` reply carries at most.
pub const OBJECTS_PER_PAGE: usize = 12;
/// Regions one `memory_map` reply carries at most.
pub const REGIONS_PER_PAGE: usize = 16;
/// Grants one `list_grants` reply carries at most (a client holds at most 16).
pub const GRANTS_PER_PAGE: usize = 16;

/// A page of [`UnitRow`]s.
pub type UnitPage = List<UnitRow, UNITS_PER_PAGE>;
/// A page of [`DeviceRow`]s.
pub type DevicePage = List<DeviceRow, DEVICES_PER_PAGE>;
/// A page of [`GroupRow`]s.
pub type GroupPage = List<GroupRow, GROUPS_PER_PAGE>;
/// A page of [`VmRow`]s.
pub type VmPage = List<VmRow, VMS_PER_PAGE>;
/// A page of [`ObjectRow`]s.
pub type ObjectPage = List<ObjectRow, OBJECTS_PER_PAGE>;
/// A page of [`RegionRow`]s.
pub type RegionPage = List<RegionRow, REGIONS_PER_PAGE>;
/// A page of [`GrantRow`]s.
pub type GrantPage = List<GrantRow, GRANTS_PER_PAGE>;
