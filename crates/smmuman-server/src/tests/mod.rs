//! Host tests of the manager, against the model IOMMU of [`crate::fake`].
//!
//! * `ops`: each operation's rules, one behaviour per test, observed through the client
//!   library and the fake's effective translations.
//! * `faults`: the fault ledger, notifications and the log.
//! * `property`: random operation sequences against a simple model.
//! * `fuzz`: random and mutated messages into `dispatch`.
//! * `loopback`: clients and a server thread that only exchange bytes.
//! * `unconfirmed`: failed attaches, detaches and destructions keep devices and memory owned
//!   until the IOMMU confirms (over the real SMMUv3 backend too).
//! * `admin`: the operator's view (admin ops) and their refusal on a client's channel.
//! * `authority`, `devices`: memory and device authority (what the host assigned each client).

mod admin;
mod authority;
mod devices;
mod faults;
mod fuzz;
mod handover;
mod logs;
mod loopback;
mod ops;
mod property;
mod scale;
mod unconfirmed;

use crate::authority::{Grant, GrantKind};
use crate::config::{DeviceEntry, DeviceId, ManagerConfig, PhysRange};
use crate::fake::FakeIommu;
use crate::Manager;
use iommu_core::{Access, Bdf, Iova, PhysAddr, StreamId};
use smmuman_api::{
    CallError, Client, ClientId, DeviceSel, DmaWindow, IovaRange, MapFlags, Refusal, Transport,
    TransportError, MAX_MESSAGE,
};

pub(crate) const A: ClientId = ClientId(1);
pub(crate) const B: ClientId = ClientId(2);

pub(crate) const EDU: StreamId = StreamId(8);
pub(crate) const NIC: StreamId = StreamId(0x10);
/// Two functions behind a PCIe-to-PCI bridge: one StreamID.
pub(crate) const BRIDGED: StreamId = StreamId(0x100);
pub(crate) const GPU: StreamId = StreamId(0x200);
pub(crate) const DSP: StreamId = StreamId(0x201);

pub(crate) const GPU_BASE: PhysAddr = PhysAddr(0x0a00_0000);
pub(crate) const DSP_BASE: PhysAddr = PhysAddr(0x0a01_0000);

/// The manager's own memory in the test board.
pub(crate) const RESERVED: PhysRange = PhysRange {
    start: PhysAddr(0x4000_0000),
    len: 0x20_0000,
};
/// Top of the usable I/O space (40 bits).
pub(crate) const IOVA_LAST: u64 = (1 << 40) - 1;
pub(crate) const PAGE_SIZES: u64 = 1 << 12 | 1 << 21 | 1 << 30;

pub(crate) const RW: Access = Access::RW;
pub(crate) const NONE: MapFlags = MapFlags::empty();
pub(crate) const MIB: u64 = 1 << 20;

/// The PCI function `b`.
pub(crate) fn sel(b: Bdf) -> DeviceSel {
    DeviceSel::pci(b)
}

/// Every function on `bus`.
pub(crate) fn bus(bus: u8) -> DeviceSel {
    DeviceSel::Pci(smmuman_api::PciMatch::new(Some(bus), None, None).unwrap())
}

/// The test board's configuration over `devices`: its reserved memory, one I/O range up to
/// [`IOVA_LAST`], [`PAGE_SIZES`], the default ledger depth and mapping limits (tests change
/// what they need with `..test_config(&devices)`).
pub(crate) fn test_config(devices: &[DeviceEntry]) -> ManagerConfig<'_> {
    ManagerConfig {
        devices,
        reserved: &[RESERVED],
        iova_ranges: &[IovaRange {
            first: Iova(0),
            last: Iova(IOVA_LAST),
        }],
        page_sizes: PAGE_SIZES,
        fault_log_depth: crate::config::FAULT_LOG_DEPTH,
        max_mappings_per_object: crate::config::MAPPINGS_PER_OBJECT,
        max_mappings: crate::config::MAX_MAPPINGS,
        clock: test_clock,
    }
}

/// What `client`'s `lookup_device` says about `device`: (devices, groups, not_assigned, free,
/// mine, others, sid).
pub(crate) type Looked = (u16, u16, u16, u16, u16, u16, u32);

pub(crate) fn pci(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

/// 00:01.0 edu, 00:02.0 nic, 01:00.0 + 01:01.0 behind a bridge (one SID), a GPU that may be
/// selected by raw SID and a DSP that may not.
pub(crate) fn board() -> Vec<DeviceEntry> {
    let p = |b, d, f, sid| DeviceEntry {
        id: DeviceId::Pci(pci(b, d, f)),
        sid,
        raw_sid_allowed: false,
    };
    vec![
        p(0, 1, 0, EDU),
        p(0, 2, 0, NIC),
        p(1, 0, 0, BRIDGED),
        p(1, 1, 0, BRIDGED),
        DeviceEntry {
            id: DeviceId::Mmio(GPU_BASE),
            sid: GPU,
            raw_sid_allowed: true,
        },
        DeviceEntry {
            id: DeviceId::Mmio(DSP_BASE),
            sid: DSP,
            raw_sid_allowed: false,
        },
    ]
}

pub(crate) fn all_sids() -> [StreamId; 5] {
    [EDU, NIC, BRIDGED, GPU, DSP]
}

pub(crate) fn manager(fake: FakeIommu) -> Manager<FakeIommu> {
    manager_with_depth(fake, crate::config::FAULT_LOG_DEPTH)
}

/// The test board's manager with fault ledgers `fault_log_depth` deep.
pub(crate) fn manager_with_depth(fake: FakeIommu, fault_log_depth: usize) -> Manager<FakeIommu> {
    manager_of(fake, &board(), fault_log_depth)
}

/// A manager of `devices` (the test board's memory and I/O space) with ledgers
/// `fault_log_depth` deep, both clients assigned everything but the manager's memory.
pub(crate) fn manager_of(
    fake: FakeIommu,
    devices: &[DeviceEntry],
    fault_log_depth: usize,
) -> Manager<FakeIommu> {
    manager_limited(
        fake,
        devices,
        fault_log_depth,
        (
            crate::config::MAPPINGS_PER_OBJECT,
            crate::config::MAX_MAPPINGS,
        ),
    )
}

/// [`manager_of`] with `(per object, in all)` mapping limits.
pub(crate) fn manager_limited(
    fake: FakeIommu,
    devices: &[DeviceEntry],
    fault_log_depth: usize,
    (per_object, total): (usize, usize),
) -> Manager<FakeIommu> {
    let config = ManagerConfig {
        fault_log_depth,
        max_mappings_per_object: per_object,
        max_mappings: total,
        ..test_config(devices)
    };
    let mut m = Manager::new(fake, &config).unwrap();
    for client in [A, B] {
        let devices: Vec<DeviceSel> = devices_of(client)
            .iter()
            .copied()
            .filter(|d| devices_selected(d, &config))
            .collect();
        m.assign(client, &everything_but_the_manager(), &devices)
            .unwrap();
    }
    m
}

/// The devices the tests of other rules give each client: A every device of the test board,
/// B none (so only the device-authority tests see `DeviceNotAssigned`; a test that has B
/// attach reassigns first).
pub(crate) fn devices_of(client: ClientId) -> &'static [DeviceSel] {
    const ALL: [DeviceSel; 3] = [
        DeviceSel::Pci(smmuman_api::PciMatch::ANY),
        DeviceSel::Mmio(GPU_BASE),
        DeviceSel::Mmio(DSP_BASE),
    ];
    match client {
        A => &ALL,
        _ => &[],
    }
}

/// Whether `sel` picks a device of `config` (tests with their own device table assign only
/// what it has).
fn devices_selected(sel: &DeviceSel, config: &ManagerConfig<'_>) -> bool {
    crate::devices::DeviceTable::new::<()>(config.devices)
        .ok()
        .and_then(|t| t.pick(*sel))
        .is_some()
}

/// A translation fault of a write by `sid` at `addr`, as an IOMMU records it.
pub(crate) fn fault(sid: StreamId, addr: u64) -> iommu_core::Fault {
    iommu_core::Fault {
        sid,
        addr: Iova(addr),
        dir: Some(iommu_core::Direction::Write),
        reason: iommu_core::FaultReason::Translation,
        code: 0x10,
    }
}

/// The test clock: a fixed 1 s (fault records drained by the manager itself carry it).
pub(crate) fn test_clock() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

/// Every host address below 2^48 except the manager's memory, as RAM: the assignment the
/// tests of other rules give both clients (so only the authority tests see `NotAssigned`).
pub(crate) fn everything_but_the_manager() -> [Grant; 2] {
    let below = RESERVED.start.0;
    let above = RESERVED.start.0 + RESERVED.len;
    [
        Grant {
            range: PhysRange {
                start: PhysAddr(0),
                len: below,
            },
            kind: GrantKind::Ram,
        },
        Grant {
            range: PhysRange {
                start: PhysAddr(above),
                len: (1 << 48) - above,
            },
            kind: GrantKind::Ram,
        },
    ]
}

/// A transport straight into `Manager::handle` (bytes in, bytes out).
pub(crate) struct Direct<'a>(&'a mut Manager<FakeIommu>, ClientId);

impl Transport for Direct<'_> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        let mut out = [0u8; MAX_MESSAGE];
        let n = self.0.handle(self.1, request, &mut out);
        reply
            .get_mut(..n)
            .ok_or(TransportError::ReplyTooLong { len: n })?
            .copy_from_slice(&out[..n]);
        Ok(n)
    }
}

/// The manager over the fake, and clients that talk to it through the wire format.
pub(crate) struct Rig {
    pub m: Manager<FakeIommu>,
}

impl Rig {
    pub fn new() -> Self {
        Self {
            m: manager(FakeIommu::new()),
        }
    }

    /// `client`'s `lookup_device` of `device`, as [`Looked`].
    pub fn looked(&mut self, client: ClientId, device: DeviceSel) -> Looked {
        let l = self.as_(client).lookup_device(device).unwrap();
        (
            l.devices,
            l.groups,
            l.not_assigned,
            l.free,
            l.mine,
            l.others,
            l.sid.0,
        )
    }

    /// A client library connection for `client`.
    pub fn as_(&mut self, client: ClientId) -> Client<Direct<'_>> {
        Client::connect(Direct(&mut self.m, client)).unwrap()
    }

    /// A new VM object of `client` (no flags).
    pub fn object(&mut self, client: ClientId) -> smmuman_api::ObjectId {
        self.as_(client)
            .create_object(smmuman_api::ObjectFlags::empty())
            .unwrap()
            .object
    }

    pub fn fake(&self) -> &FakeIommu {
        self.m.backend()
    }

    pub fn fake_mut(&mut self) -> &mut FakeIommu {
        self.m.backend_mut()
    }

    /// Where a DMA of `sid` at `iova` lands (host address), `None` when it faults.
    pub fn dma(&self, sid: StreamId, iova: u64) -> Option<u64> {
        self.fake().translate(sid, Iova(iova)).map(|(pa, _)| pa.0)
    }

    /// Same, with the permissions.
    pub fn dma_access(&self, sid: StreamId, iova: u64) -> Option<(u64, Access)> {
        self.fake()
            .translate(sid, Iova(iova))
            .map(|(pa, a)| (pa.0, a))
    }
}

pub(crate) fn win(iova: u64, pa: u64, len: u64) -> DmaWindow {
    DmaWindow::new(Iova(iova), PhysAddr(pa), len).unwrap()
}

/// The refusal a call ended with (panics on success or on any other error).
#[track_caller]
pub(crate) fn refusal<T: std::fmt::Debug>(r: Result<T, CallError>) -> Refusal {
    match r {
        Err(CallError::Refused(x)) => x,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
