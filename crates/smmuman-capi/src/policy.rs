//! `smmu_vmm_decide`: the VMM's start-up rule ([`VmmDmaPolicy`]) for C VMMs, with the same
//! decision and the same message a Rust VMM prints.

use crate::clients::{self, smmu_client_t, SMMU_NO_CLIENT};
use crate::status::{smmu_status, ArgError, CText, Failure, Problem, SMMU_OK};
use crate::transport::CTransport;
use core::ffi::{c_char, CStr};
use core::fmt::Write as _;
use iommu_core::PhysAddr;
use smmuman_api::{
    Client, Decision, DeviceSel, PassThrough, PciMatch, VmDescription, VmmDmaPolicy,
};

/// Pass-through devices one `smmu_vmm_decide` looks at, at most.
pub const SMMU_VMM_MAX_DEVICES: usize = 16;

/// Device kind: a PCI function (`bus`, `dev`, `func`).
pub const SMMU_DEVICE_PCI: u32 = 1;
/// Device kind: a platform device (`mmio_base`).
pub const SMMU_DEVICE_MMIO: u32 = 2;

/// Decision: start the VM; every pass-through DMA device is confined (or there is none).
pub const SMMU_DECISION_START: i32 = 0;
/// Decision: start the unity-mapped VM **without DMA isolation**, printing the message.
pub const SMMU_DECISION_START_UNISOLATED: i32 = 1;
/// Decision: do not start the VM; print the message and exit.
pub const SMMU_DECISION_REFUSE: i32 = 2;

/// One pass-through device of the VM.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct smmu_passthrough {
    /// The device's name in the VM configuration (NUL-terminated UTF-8, for messages).
    pub name: *const c_char,
    /// `SMMU_DEVICE_PCI` or `SMMU_DEVICE_MMIO`.
    pub kind: u32,
    /// PCI bus (kind PCI; 0 to 255).
    pub bus: u32,
    /// PCI device (kind PCI; 0 to 31).
    pub dev: u32,
    /// PCI function (kind PCI; 0 to 7).
    pub func: u32,
    /// Register base (kind MMIO).
    pub mmio_base: u64,
    /// 1: it can master DMA (only DMA devices need the manager); 0: it cannot.
    pub dma: u8,
}

/// The parts of a VM's configuration the rule looks at.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct smmu_vm {
    /// The VM's name (NUL-terminated UTF-8, for messages).
    pub name: *const c_char,
    /// 1: guest-physical == host-physical for all its memory; 0: not.
    pub unity_mapped: u8,
    /// Its pass-through devices (`num_devices` of them; NULL when there are none).
    pub devices: *const smmu_passthrough,
    /// How many (0 to `SMMU_VMM_MAX_DEVICES`).
    pub num_devices: usize,
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn text<'a>(p: *const c_char, arg: &'static str) -> Result<&'a str, ArgError> {
    if p.is_null() {
        return Err(ArgError::new(arg, Problem::Null));
    }
    // SAFETY: non-NULL and NUL-terminated by the contract above.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| ArgError::new(arg, Problem::Utf8))
}

fn flag(v: u8, arg: &'static str) -> Result<bool, ArgError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(ArgError::new(arg, Problem::Bool(v))),
    }
}

fn device(d: &smmu_passthrough) -> Result<DeviceSel, ArgError> {
    match d.kind {
        SMMU_DEVICE_PCI => {
            let b =
                u8::try_from(d.bus).map_err(|_| ArgError::new("devices", Problem::Bus(d.bus)))?;
            let n = |v: u32, arg| u8::try_from(v).map_err(|_| ArgError::new(arg, Problem::Wide(v)));
            let (dev, func) = (n(d.dev, "devices")?, n(d.func, "devices")?);
            PciMatch::new(Some(b), Some(dev), Some(func))
                .map(DeviceSel::Pci)
                .map_err(|e| ArgError::new("devices", Problem::Bdf(e)))
        }
        SMMU_DEVICE_MMIO => Ok(DeviceSel::Mmio(PhysAddr(d.mmio_base))),
        k => Err(ArgError::new("devices", Problem::Kind(k))),
    }
}

/// Decides whether a VM may start (the rules every VMM applies: no manager → no DMA
/// pass-through, a device the manager does not know → refuse, a unity-mapped VM → start with a
/// loud warning), asking the manager about each DMA device over `client`
/// (`SMMU_NO_CLIENT` when `smmu_connect` failed). Writes `SMMU_DECISION_*` to `*decision` and
/// the message a VMM prints into `msg` (`cap` bytes, NUL-terminated, truncated if need be; may
/// be NULL). Returns `SMMU_OK` when it decided; the decision, not the status, says whether the
/// VM may start.
///
/// # Safety
/// `vm` is NULL or points to a readable `smmu_vm` whose strings are NUL-terminated and whose
/// `devices` is readable for `num_devices` elements; `msg` is NULL or writable for `cap` bytes;
/// `decision` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn smmu_vmm_decide(
    client: smmu_client_t,
    vm: *const smmu_vm,
    msg: *mut c_char,
    cap: usize,
    decision: *mut i32,
) -> smmu_status {
    // SAFETY: NULL or readable, by the contract above.
    let vm = unsafe { vm.as_ref() };
    // SAFETY: NULL or writable, by the contract above.
    let decision = unsafe { decision.as_mut() };
    let msg: &mut [u8] = if msg.is_null() {
        &mut []
    } else {
        // SAFETY: non-NULL and writable for `cap` bytes by the contract above.
        unsafe { core::slice::from_raw_parts_mut(msg.cast::<u8>(), cap) }
    };
    let decide = |c: Option<&mut Client<CTransport>>| -> Result<(), Failure> {
        let vm = vm.ok_or(ArgError::new("vm", Problem::Null))?;
        let decision = decision.ok_or(ArgError::new("decision", Problem::Null))?;
        // SAFETY: NUL-terminated by the contract above.
        let name = unsafe { text(vm.name, "vm.name") }?;
        let unity_mapped = flag(vm.unity_mapped, "vm.unity_mapped")?;
        let devs: &[smmu_passthrough] = if vm.num_devices == 0 {
            &[]
        } else if vm.num_devices > SMMU_VMM_MAX_DEVICES {
            let (got, max) = (vm.num_devices, SMMU_VMM_MAX_DEVICES);
            return Err(ArgError::new("vm.devices", Problem::TooMany { got, max }).into());
        } else if vm.devices.is_null() {
            return Err(ArgError::new("vm.devices", Problem::Null).into());
        } else {
            // SAFETY: non-NULL and readable for `num_devices` (≤ 16) elements by the contract.
            unsafe { core::slice::from_raw_parts(vm.devices, vm.num_devices) }
        };
        let placeholder = PassThrough {
            name: "",
            device: DeviceSel::Mmio(PhysAddr(0)),
            dma: false,
        };
        let mut list = [placeholder; SMMU_VMM_MAX_DEVICES];
        for (i, (slot, d)) in list.iter_mut().zip(devs).enumerate() {
            *slot = PassThrough {
                // SAFETY: NUL-terminated by the contract above.
                name: unsafe { text(d.name, "devices") }.map_err(|e| e.at(i))?,
                device: device(d).map_err(|e| e.at(i))?,
                dma: flag(d.dma, "devices").map_err(|e| e.at(i))?,
            };
        }
        let vm = VmDescription {
            name,
            unity_mapped,
            devices: list.get(..devs.len()).unwrap_or(&[]),
        };
        let d = VmmDmaPolicy::assess(&vm, c);
        *decision = match d {
            Decision::Start => SMMU_DECISION_START,
            Decision::StartUnisolated { .. } => SMMU_DECISION_START_UNISOLATED,
            Decision::Refuse { .. } => SMMU_DECISION_REFUSE,
        };
        let mut out = CText::new(msg);
        let _ = write!(out, "{d}");
        out.finish();
        Ok(())
    };
    if client == SMMU_NO_CLIENT {
        return decide(None).err().map_or(SMMU_OK, |f| f.status());
    }
    clients::with(client, |c| decide(Some(c)))
        .err()
        .unwrap_or(SMMU_OK)
}
