//! The C types of the interface (`#[repr(C)]`, named as the header names them) and their
//! constants, each tied at compile time to the client library's own value.

use iommu_core::Access;
use smmuman_api::{FAULTS_PER_PAGE, MAP_BATCH, UNMAP_BATCH};

/// A VM object of the manager (`0` is never one).
#[allow(non_camel_case_types)]
pub type smmu_object_t = u32;

/// `smmu_obj_create` flag: guest-physical == host-physical, every mapping must have
/// `iova == phys`.
pub const SMMU_OBJ_UNITY: u32 = 1;

/// A PCI bus, device or function that matches any (`smmu_device_*_pci`).
pub const SMMU_PCI_ANY: u32 = 0xffff_ffff;

/// Access bit: the device may read the window.
pub const SMMU_ACCESS_READ: u32 = 1;
/// Access bit: the device may write the window.
pub const SMMU_ACCESS_WRITE: u32 = 2;
/// Access bit: the device may fetch instructions from the window.
pub const SMMU_ACCESS_EXEC: u32 = 4;

/// Mapping flag: other objects may map the same host memory if they map it shared too.
pub const SMMU_MAP_SHARED: u32 = 1;

/// Entries one `smmu_mapping_add` takes at most (one all-or-nothing message).
pub const SMMU_MAP_BATCH: usize = 32;
/// Ranges one `smmu_mapping_remove` takes at most (one all-or-nothing message, one
/// invalidation).
pub const SMMU_UNMAP_BATCH: usize = 60;
/// Records one `smmu_fault_read` returns at most.
pub const SMMU_FAULTS_PER_READ: usize = 20;

/// Fault reason: no translation for the address (outside every window).
pub const SMMU_FAULT_TRANSLATION: u8 = 1;
/// Fault reason: a translation exists but does not allow this access.
pub const SMMU_FAULT_PERMISSION: u8 = 2;
/// Fault reason: the translation is not marked accessed.
pub const SMMU_FAULT_ACCESS_FLAG: u8 = 3;
/// Fault reason: the address is wider than the translation regime allows.
pub const SMMU_FAULT_ADDRESS_SIZE: u8 = 4;
/// Fault reason: the stream has no valid configuration.
pub const SMMU_FAULT_BAD_CONFIG: u8 = 5;
/// Fault reason: any other recorded event.
pub const SMMU_FAULT_OTHER: u8 = 6;

/// Fault direction: the IOMMU did not say.
pub const SMMU_DIR_UNKNOWN: u8 = 0;
/// Fault direction: the device read memory.
pub const SMMU_DIR_READ: u8 = 1;
/// Fault direction: the device wrote memory.
pub const SMMU_DIR_WRITE: u8 = 2;

const _: () = {
    assert!(SMMU_MAP_BATCH == MAP_BATCH);
    assert!(SMMU_UNMAP_BATCH == UNMAP_BATCH);
    assert!(SMMU_FAULTS_PER_READ == FAULTS_PER_PAGE);
    assert!(SMMU_ACCESS_READ == Access::READ.bits() as u32);
    assert!(SMMU_ACCESS_WRITE == Access::WRITE.bits() as u32);
    assert!(SMMU_ACCESS_EXEC == Access::EXEC.bits() as u32);
    assert!(SMMU_OBJ_UNITY == smmuman_api::ObjectFlags::UNITY.bits());
    assert!(SMMU_MAP_SHARED == smmuman_api::MapFlags::SHARED.bits());
};

/// What an attach or detach changed.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct smmu_devices {
    /// Devices newly attached (or detached).
    pub devices: u16,
    /// Groups (StreamIDs) newly attached (or detached).
    pub groups: u16,
}

/// One window of `smmu_mapping_add`: I/O addresses `[iova, iova + len)` reach host memory
/// `[phys, phys + len)`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct smmu_map_entry {
    /// First I/O address (the guest-physical address, for a VM's device).
    pub iova: u64,
    /// First host-physical address.
    pub phys: u64,
    /// Length in bytes: a non-zero multiple of 4 KiB; neither range may pass 2^64.
    pub len: u64,
    /// `SMMU_ACCESS_*` bits: READ, WRITE, EXEC, at least one.
    pub access: u32,
    /// `SMMU_MAP_*` bits.
    pub flags: u32,
}

/// One I/O range of `smmu_mapping_remove`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct smmu_range {
    /// First I/O address.
    pub iova: u64,
    /// Length in bytes: a non-zero multiple of 4 KiB, not past 2^64.
    pub len: u64,
}

/// One refused DMA access, or a run of them, as the manager recorded it for an object.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct smmu_fault {
    /// Position in the object's ledger (from 1); a run holds `seq .. seq + count - 1`.
    pub seq: u64,
    /// When the manager drained it, in nanoseconds of its clock.
    pub time_ns: u64,
    /// The address the device used (before translation); a run's first.
    pub addr: u64,
    /// A run's last address (`addr` for a single record).
    pub addr_last: u64,
    /// The StreamID (SMMUv3) or requester id (VT-d) that issued it.
    pub sid: u32,
    /// Refused accesses this record stands for (1, or a run's size).
    pub count: u32,
    /// `SMMU_FAULT_*`.
    pub reason: u8,
    /// `SMMU_DIR_*`.
    pub dir: u8,
    /// The IOMMU's own event code (SMMUv3 event type, VT-d fault reason).
    pub code: u8,
}

/// What `smmu_fault_read` says about the ledger besides its records.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct smmu_fault_info {
    /// Records still waiting after this read.
    pub remaining: u32,
    /// Records dropped because the ledger was full, since the object was created.
    pub dropped: u64,
    /// How often the IOMMU itself lost records while the object had a device (0: none).
    pub possibly_lost: u64,
}

impl From<&smmuman_api::FaultRecord> for smmu_fault {
    fn from(r: &smmuman_api::FaultRecord) -> Self {
        use iommu_core::{Direction, FaultReason};
        Self {
            seq: r.seq,
            time_ns: r.time_ns,
            addr: r.addr.0,
            addr_last: r.addr_last.0,
            sid: r.sid.0,
            count: r.count,
            reason: match r.reason {
                FaultReason::Translation => SMMU_FAULT_TRANSLATION,
                FaultReason::Permission => SMMU_FAULT_PERMISSION,
                FaultReason::AccessFlag => SMMU_FAULT_ACCESS_FLAG,
                FaultReason::AddressSize => SMMU_FAULT_ADDRESS_SIZE,
                FaultReason::BadConfig => SMMU_FAULT_BAD_CONFIG,
                FaultReason::Other => SMMU_FAULT_OTHER,
            },
            dir: match r.dir {
                None => SMMU_DIR_UNKNOWN,
                Some(Direction::Read) => SMMU_DIR_READ,
                Some(Direction::Write) => SMMU_DIR_WRITE,
            },
            code: r.code,
        }
    }
}
