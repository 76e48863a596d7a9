//! The test server: an in-process manager over the fake IOMMU, set up like the QEMU `virt`
//! host with two VMs (each with its own edu, RAM and windows) and a rogue DMA's faults, served
//! on a Unix socket with the operator's framing, as the daemon's operator channel will serve
//! it. Used by the end-to-end tests and by `examples/fixture_server.rs`.

#![allow(dead_code)]

use iommu_core::{Access, Bdf, Direction, Fault, FaultReason, Iova, PhysAddr, StreamId};
use smmuman_admin_api::frame::frame_len;
use smmuman_admin_api::{Name, RegionKind, RegionRow, UnitKind, UnitRow, VmState};
use smmuman_api::wire::HEADER_LEN;
use smmuman_api::{
    Client, ClientId, DeviceSel, DmaWindow, IovaRange, MapFlags, ObjectFlags, Transport,
    TransportError, MAX_MESSAGE,
};
use smmuman_server::admin::{self, HostVm, StaticHost};
use smmuman_server::fake::FakeIommu;
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const VM1: ClientId = ClientId(1);
pub const VM2: ClientId = ClientId(2);
pub const EDU1: StreamId = StreamId(0x8);
pub const EDU2: StreamId = StreamId(0x10);
pub const STRAY: StreamId = StreamId(0x18);
pub const VM1_RAM: u64 = 0x5000_0000;
pub const VM2_RAM: u64 = 0x5800_0000;
pub const RAM_SIZE: u64 = 0x40_0000;
pub const GUEST_RAM: u64 = 0x4000_0000;
/// The daemon's own memory (image, pools) at the bottom of RAM.
pub const DAEMON: PhysRange = PhysRange {
    start: PhysAddr(0x4000_0000),
    len: 0x200_0000,
};

fn clock() -> Duration {
    Duration::from_millis(1500)
}

pub fn bdf(d: u8) -> Bdf {
    Bdf::new(0, d, 0).unwrap()
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// The host's side: the SMMU, the memory map, the plan's three VMs (vm3 not started).
pub fn host_tables() -> (Vec<UnitRow>, Vec<RegionRow>, Vec<HostVm>) {
    let units = vec![UnitRow {
        name: name("smmuv3@9050000"),
        kind: UnitKind::Smmuv3,
        base: PhysAddr(0x0905_0000),
        size: 0x2_0000,
    }];
    let region = |start: u64, len: u64, kind, n: &str| RegionRow {
        start: PhysAddr(start),
        len,
        kind,
        name: name(n),
    };
    let regions = vec![
        region(0x0800_0000, 0x100_0000, RegionKind::Mmio, "gic"),
        region(0x0900_0000, 0x1000, RegionKind::Mmio, "uart"),
        region(0x0905_0000, 0x2_0000, RegionKind::Mmio, "smmu"),
        region(0x1000_0000, 0x2eff_0000, RegionKind::Mmio, "pcie-mmio"),
        region(0x3f00_0000, 0x100_0000, RegionKind::Mmio, "pcie-ecam"),
        region(0x4000_0000, 0x4000_0000, RegionKind::Ram, "ram"),
    ];
    let vms = vec![
        HostVm {
            name: name("vm1"),
            client: Some(VM1),
            state: VmState::Running,
        },
        HostVm {
            name: name("vm2"),
            client: Some(VM2),
            state: VmState::Running,
        },
        HostVm {
            name: name("vm3"),
            client: None,
            state: VmState::Planned,
        },
    ];
    (units, regions, vms)
}

/// A client's channel straight into `Manager::handle`.
pub struct Direct<'a>(pub &'a mut Manager<FakeIommu>, pub ClientId);

impl Transport for Direct<'_> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        Ok(self.0.handle(self.1, request, reply))
    }
}

fn ram(start: u64) -> Grant {
    Grant {
        range: PhysRange {
            start: PhysAddr(start),
            len: RAM_SIZE,
        },
        kind: GrantKind::Ram,
    }
}

/// One fault record per 4 bytes of a refused DMA of `len` bytes, as QEMU's SMMUv3 records it.
pub fn dma(m: &mut Manager<FakeIommu>, sid: StreamId, addr: u64, len: u64, dir: Direction) {
    for off in (0..len).step_by(4) {
        m.backend_mut().inject_fault(Fault {
            sid,
            addr: Iova(addr + off),
            dir: Some(dir),
            reason: FaultReason::Translation,
            code: 0x10,
        });
    }
}

/// The manager as the two VMMs left it: vm1 maps its RAM for its edu (00:01.0) and a page
/// read-only; vm2 maps its RAM for its edu (00:02.0); vm2's rogue guest reads 64 bytes of
/// vm1's host RAM and writes 4 KiB past its own RAM; the unassigned 00:03.0 writes 8 bytes.
pub fn manager() -> Manager<FakeIommu> {
    let devices: Vec<DeviceEntry> = [(1, EDU1), (2, EDU2), (3, STRAY)]
        .iter()
        .map(|&(d, sid)| DeviceEntry {
            id: DeviceId::Pci(bdf(d)),
            sid,
            raw_sid_allowed: false,
        })
        .collect();
    let config = ManagerConfig {
        devices: &devices,
        reserved: &[DAEMON],
        iova_ranges: &[IovaRange {
            first: Iova(0),
            last: Iova((1 << 40) - 1),
        }],
        page_sizes: 1 << 12 | 1 << 21 | 1 << 30,
        fault_log_depth: 32,
        max_mappings_per_object: 65_536,
        max_mappings: 131_072,
        clock,
    };
    let mut m = Manager::new(FakeIommu::new(), &config).unwrap();
    m.assign(VM1, &[ram(VM1_RAM)], &[DeviceSel::pci(bdf(1))])
        .unwrap();
    m.assign(VM2, &[ram(VM2_RAM)], &[DeviceSel::pci(bdf(2))])
        .unwrap();
    for (client, dev, hpa) in [(VM1, 1, VM1_RAM), (VM2, 2, VM2_RAM)] {
        let mut c = Client::connect(Direct(&mut m, client)).unwrap();
        let o = c.create_object(ObjectFlags::empty()).unwrap().object;
        c.attach(o, DeviceSel::pci(bdf(dev))).unwrap();
        let w = DmaWindow::new(Iova(GUEST_RAM), PhysAddr(hpa), RAM_SIZE).unwrap();
        c.map(o, w, Access::RW, MapFlags::empty()).unwrap();
        if client == VM1 {
            // A page of its RAM again, read-only, at a second I/O address.
            let w = DmaWindow::new(Iova(0x8000_0000), PhysAddr(hpa), 0x1000).unwrap();
            c.map(o, w, Access::READ, MapFlags::empty()).unwrap();
        }
    }
    dma(&mut m, EDU2, VM1_RAM, 64, Direction::Read);
    dma(&mut m, EDU2, GUEST_RAM + RAM_SIZE, 4096, Direction::Write);
    dma(&mut m, STRAY, 0x1000, 8, Direction::Write);
    m
}

/// The fixture's manager, shared with the server thread (tests inject more faults into it).
pub type Shared = Arc<Mutex<Manager<FakeIommu>>>;

/// Serves one connection until it closes or sends a header that is not ours.
pub fn serve_stream<S: Read + Write>(mut s: S, manager: &Shared) {
    let (units, regions, vms) = host_tables();
    loop {
        let mut head = [0u8; HEADER_LEN];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let Ok(n) = frame_len(&head) else { return };
        let mut msg = [0u8; MAX_MESSAGE];
        msg[..HEADER_LEN].copy_from_slice(&head);
        if s.read_exact(&mut msg[HEADER_LEN..n]).is_err() {
            return;
        }
        let mut reply = [0u8; MAX_MESSAGE];
        let mut host = StaticHost {
            units: &units,
            regions: &regions,
            vms: &vms,
            heap: Some((0x2_3000, 0x400_0000)),
        };
        let len = {
            let mut m = manager.lock().unwrap();
            admin::handle(&mut m, &mut host, clock(), &msg[..n], &mut reply)
        };
        if s.write_all(&reply[..len]).is_err() {
            return;
        }
    }
}

/// Serves the admin protocol on a Unix socket at `path` (one connection at a time, as the
/// daemon's single operator console does), forever.
pub fn serve(path: &Path, manager: Shared) {
    let listener = UnixListener::bind(path).unwrap();
    for conn in listener.incoming().flatten() {
        serve_stream(conn, &manager);
    }
}

/// The same on a TCP port of the loopback interface; returns `host:port`.
pub fn serve_tcp(manager: Shared) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            serve_stream(conn, &manager);
        }
    });
    at
}

/// Starts the fixture server on a fresh socket; returns its path and the shared manager.
pub fn start(tag: &str) -> (PathBuf, Shared) {
    let dir = std::env::temp_dir().join(format!("smmuctl-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("admin.sock");
    let shared: Shared = Arc::new(Mutex::new(manager()));
    let (p, m) = (path.clone(), shared.clone());
    std::thread::spawn(move || serve(&p, m));
    for _ in 0..200 {
        if path.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (path, shared)
}
