//! [`Platform`]: the board brought up: memory pools, PCI enumerated, devices ready to be handed
//! to the SMMU manager and the scenarios.

use crate::board::discovery::{
    carve_vm_ram, carve_windows, function_binding, Ranges, VmRamProblem, WindowProblem,
};
use crate::board::BoardInfo;
use crate::bootargs::BootArgs;
use crate::edu::{self, Edu, EduError};
use crate::memory::{
    DaemonMemory, FrameError, GuestMemory, LayoutError, MemoryPlan, PhysRange, RamWindow, Reserved,
    ReservedKind,
};
use crate::mmio::MmioRegion;
use crate::pci::{self, Ecam, PciBus, PciError, PciFunction};
use crate::report::write_value;
use crate::runtime::clock::GenericTimer;
use crate::runtime::console;
use board_config::vm::{PeerBar, VmName};
use board_config::{Device, LookupError, Origin, StreamBinding, StreamSource, Topology, UnitId};
use core::cell::Cell;
use core::fmt;
use iommu_core::{Bdf, PhysAddr, StreamId};
use smmuman_server::{Grant, GrantKind, PhysRange as ServerRange};

/// Most devices whose registers can be handed out.
const MAX_TAKEN: usize = 8;

/// Bring-up failed.
#[derive(Debug)]
pub enum BringUpError {
    /// The image is not inside any RAM region the device tree lists.
    ImageOutsideRam(PhysAddr),
    /// RAM cannot be split into the pools.
    Layout(LayoutError),
    /// A pool could not be built.
    Pool(FrameError),
    /// PCI enumeration failed.
    Pci(PciError),
    /// The combined topology asks for something this board cannot do: the daemon refuses to
    /// start, as for a mistake in the config file.
    Config(ConfigProblem),
}

/// What the combined topology asks for that cannot be done here.
#[derive(Clone, Debug)]
pub enum ConfigProblem {
    /// A static window the guest pool cannot give.
    Window(WindowProblem),
    /// A `[vm]` section's RAM the guest pool cannot give.
    VmRam(VmRamProblem),
    /// A `[vm]` section's `peer` names no memory BAR of a function behind the SMMU.
    Peer(PeerProblem),
    /// The StreamID of a PCI function cannot be decided.
    Lookup(LookupError),
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Window(e) => write!(f, "{e}"),
            Self::VmRam(e) => write!(f, "{e}"),
            Self::Peer(e) => write!(f, "{e}"),
            Self::Lookup(e) => write!(f, "{e}"),
        }
    }
}

/// A `peer` statement the board cannot honour.
#[derive(Clone, Debug)]
pub struct PeerProblem {
    /// The VM.
    pub vm: VmName,
    /// The statement.
    pub peer: PeerBar,
    /// What is wrong.
    pub what: &'static str,
}

impl fmt::Display for PeerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.peer;
        write!(
            f,
            "line {}: vm {}: peer pci {:04x}:{} bar {}: {}",
            p.line, self.vm, p.segment, p.bdf, p.bar, self.what
        )
    }
}

/// Most grants the host hands one VMM.
pub const MAX_GRANTS: usize = 8;

/// What the host gives one VM: its RAM (the VMM's view of it) and the grants it hands the
/// manager for the VMM.
pub struct VmMemory {
    /// The VM's first RAM range (where its DMA window goes).
    pub first: PhysRange,
    /// The VMM's view of all of its RAM.
    pub view: GuestMemory,
    /// The host's grants: its RAM (shared where the config says so) and peer BARs.
    pub grants: heapless::Vec<Grant, MAX_GRANTS>,
}

impl fmt::Display for BringUpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageOutsideRam(pa) => write!(
                f,
                "the image at {pa} is in no RAM region of the device tree"
            ),
            Self::Layout(e) => write!(f, "memory layout: {e}"),
            Self::Pool(e) => write!(f, "memory pool: {e}"),
            Self::Pci(e) => write!(f, "PCI enumeration: {e}"),
            Self::Config(e) => write!(f, "{e}"),
        }
    }
}

/// A device could not be handed out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeviceError {
    /// Enumeration found no such function.
    NotFound(Bdf),
    /// Its registers were handed out already.
    AlreadyTaken(Bdf),
    /// It has no memory BAR 0.
    NoBar0(Bdf),
    /// The `edu` driver refused it.
    Edu(Bdf, EduError),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(b) => write!(f, "no PCI function {b}"),
            Self::AlreadyTaken(b) => write!(f, "the registers of {b} are already in use"),
            Self::NoBar0(b) => write!(f, "{b} has no memory BAR 0"),
            Self::Edu(b, e) => write!(f, "{b}: {e}"),
        }
    }
}

/// Everything the daemon runs on.
pub struct Platform {
    /// What the device tree says.
    pub board: BoardInfo<'static>,
    /// The command line.
    pub args: BootArgs<'static>,
    /// Which IOMMU sees which device: the device tree combined with the config
    /// (`board_config::load`). Empty when the daemon refused to start.
    pub topology: Topology,
    /// The unit of [`Platform::topology`] this daemon drives: the device tree's SMMUv3. `None`
    /// when the daemon refused to start (then no device has a StreamID).
    pub unit: Option<UnitId>,
    /// How RAM is split.
    pub memory_plan: MemoryPlan,
    /// The pool for SMMU tables and queues, until the IOMMU takes it
    /// ([`Platform::take_daemon_memory`]).
    daemon_memory: Option<DaemonMemory>,
    /// The pool DMA buffers come from.
    pub guest_memory: GuestMemory,
    /// The RAM the config's static windows map (cut out of the guest pool, so that nothing
    /// else is ever allocated there), for checks of what landed; `None` without windows.
    pub window_memory: Option<GuestMemory>,
    /// The RAM of the config's `[vm]` sections (cut out of the guest pool).
    vm_ranges: Ranges,
    /// The enumerated PCI hierarchy.
    pub pci: PciBus<Ecam>,
    /// Time.
    pub clock: GenericTimer,
    /// The initrd, when the boot loader passed an archive: the host plan and guest images.
    pub archive: Option<crate::initrd::Archive<'static>>,
    smmu_taken: bool,
    taken: heapless::Vec<Bdf, MAX_TAKEN>,
}

impl Platform {
    /// Plans memory around the image and the device tree, builds the pools and enumerates PCI.
    ///
    /// # Errors
    /// A [`BringUpError`] saying which step failed.
    ///
    /// `initrd` (the config file the boot loader placed) is kept out of both pools. The
    /// config's static windows must lie in the guest pool; they are cut out of it. Every PCI
    /// function gets the StreamID `topology` gives it at `unit` (`function_binding`: a binding
    /// naming the function wins, else its DMA alias decides).
    pub fn bring_up(
        board: BoardInfo<'static>,
        args: BootArgs<'static>,
        boot: BootRanges,
        topology: Topology,
        unit: Option<UnitId>,
    ) -> Result<Self, BringUpError> {
        let BootRanges { image, dtb, initrd } = boot;
        let ram = board
            .ram_containing(image.start())
            .ok_or(BringUpError::ImageOutsideRam(image.start()))?;
        let too_many = || BringUpError::Layout(LayoutError::TooManyReserved);
        let mut reserved: heapless::Vec<Reserved, 16> = heapless::Vec::new();
        if let Some(stub) = PhysRange::from_bounds(ram.start(), image.start()) {
            reserved
                .push(Reserved {
                    range: stub,
                    kind: ReservedKind::BootStub,
                })
                .map_err(|_| too_many())?;
        }
        let own = [
            (Some(image), ReservedKind::Image),
            (Some(dtb), ReservedKind::DeviceTree),
            (initrd, ReservedKind::Initrd),
        ];
        for (range, kind) in own {
            if let Some(range) = range {
                reserved
                    .push(Reserved { range, kind })
                    .map_err(|_| too_many())?;
            }
        }
        for r in &board.reserved {
            reserved
                .push(Reserved {
                    range: *r,
                    kind: ReservedKind::Firmware,
                })
                .map_err(|_| too_many())?;
        }
        let memory_plan = MemoryPlan::new(ram, &reserved).map_err(BringUpError::Layout)?;
        let (guest_ranges, window_ranges) = carve_windows(&memory_plan, topology.windows())
            .map_err(|e| BringUpError::Config(ConfigProblem::Window(e)))?;
        // The config's VMs own their RAM from start-up: nothing else is allocated there.
        let (guest_ranges, vm_ranges) = carve_vm_ram(&guest_ranges, topology.vms())
            .map_err(|e| BringUpError::Config(ConfigProblem::VmRam(e)))?;
        // SAFETY: the pools exclude the image (code, data, stacks), the device tree, the initrd
        // and firmware reservations; the rest of RAM is used only through these windows. The
        // EL2 identity map (`mmu.rs`) maps all RAM at its physical address.
        let daemon_window = unsafe { RamWindow::identity(memory_plan.daemon_pool()) };
        // SAFETY: as above; the guest pool is disjoint from the daemon pool, and the static
        // windows' RAM is cut out of it.
        let guest_window = unsafe { RamWindow::identity(&guest_ranges) };
        let daemon_memory = DaemonMemory::new(daemon_window).map_err(BringUpError::Pool)?;
        let guest_memory = GuestMemory::new(guest_window).map_err(BringUpError::Pool)?;
        let window_memory = if window_ranges.is_empty() {
            None
        } else {
            // SAFETY: the static windows' RAM lies in the guest pool's span (checked by
            // `carve_windows`), is disjoint from the guest and daemon windows, and is
            // reached only through this window (and by the devices it is mapped for).
            let window = unsafe { RamWindow::identity(&window_ranges) };
            Some(GuestMemory::new(window).map_err(BringUpError::Pool)?)
        };

        let host = &board.pcie;
        // SAFETY: the device tree places the host bridge's ECAM here; only this `Ecam` accesses
        // configuration space.
        let ecam_regs = unsafe { MmioRegion::new(host.ecam.start(), host.ecam.size()) };
        let ecam = Ecam::new(ecam_regs, host.bus_start, host.bus_end);
        // Enumeration numbers the buses (a StreamID behind a PCIe-to-PCI bridge follows its
        // secondary bus number) and finds each function's DMA alias; the StreamIDs are then
        // decided from the whole function.
        let mut pci = pci::enumerate(ecam, host.mmio32, host.bus_start, host.bus_end, &|_| None)
            .map_err(BringUpError::Pci)?;
        let lookup_error: Cell<Option<LookupError>> = Cell::new(None);
        pci.resolve_sids(&|f| {
            let unit = unit?;
            match function_binding(&topology, unit, f) {
                Ok(found) => found.map(|(_, sid)| sid),
                Err(e) => {
                    lookup_error.set(Some(e));
                    None
                }
            }
        });
        if let Some(e) = lookup_error.get() {
            return Err(BringUpError::Config(ConfigProblem::Lookup(e)));
        }
        for vm in topology.vms() {
            for peer in &vm.peers {
                peer_grant(&pci, peer).map_err(|what| {
                    BringUpError::Config(ConfigProblem::Peer(PeerProblem {
                        vm: vm.name.clone(),
                        peer: *peer,
                        what,
                    }))
                })?;
            }
        }

        Ok(Self {
            board,
            args,
            topology,
            unit,
            memory_plan,
            daemon_memory: Some(daemon_memory),
            guest_memory,
            window_memory,
            vm_ranges,
            pci,
            clock: GenericTimer::new(),
            archive: None,
            smmu_taken: false,
            taken: heapless::Vec::new(),
        })
    }

    /// A block of the daemon pool for the daemon's own use (its heap), while the pool is
    /// still here.
    pub fn alloc_daemon_block(&mut self, size: u64, align: u64) -> Option<PhysRange> {
        self.daemon_memory
            .as_mut()
            .and_then(|m| m.alloc_block(size, align).ok())
    }

    /// The pool for SMMU tables and queues, once: the IOMMU owns it from then on.
    pub fn take_daemon_memory(&mut self) -> Option<DaemonMemory> {
        self.daemon_memory.take()
    }

    #[cfg(feature = "scenarios")]
    /// Whether any byte of `[pa, pa + len)` is the daemon's (image, stacks, device tree, daemon
    /// pool): never map such memory for a device.
    pub fn is_daemon_memory(&self, pa: PhysAddr, len: u64) -> bool {
        self.memory_plan.is_daemon_memory(pa, len)
    }

    #[cfg(feature = "scenarios")]
    /// Whether all of `[pa, pa + len)` is in the guest pool.
    pub fn is_guest_memory(&self, pa: PhysAddr, len: u64) -> bool {
        self.memory_plan.is_guest_memory(pa, len)
    }

    /// The StreamID `bdf`'s DMA reaches the SMMU with, or `None` when it is not behind the
    /// SMMU. For an enumerated function this follows its DMA alias (a device behind a
    /// PCIe-to-PCI bridge shares the bridge's StreamID); otherwise it is the device tree's map
    /// of `bdf`'s own requester ID.
    pub fn sid_for(&self, bdf: Bdf) -> Option<StreamId> {
        match self.pci.function(bdf) {
            Some(f) => f.sid,
            None => self.device_sid(Device::pci(bdf)),
        }
    }

    /// The StreamID the topology gives `device` at the daemon's unit, or `None` (another
    /// unit, no binding, several StreamIDs, or the daemon refused to start). For an
    /// enumerated PCI function prefer [`Platform::sid_for`], which follows its DMA alias.
    pub fn device_sid(&self, device: Device) -> Option<StreamId> {
        let unit = self.unit?;
        match self.topology.sid_for(device) {
            Ok(Some((u, sid))) if u == unit => Some(sid),
            _ => None,
        }
    }

    /// The binding that gave the enumerated function `bdf` its StreamID (for the log: which
    /// source decided).
    pub fn binding_of(&self, bdf: Bdf) -> Option<&StreamBinding> {
        let f = self.pci.function(bdf)?;
        function_binding(&self.topology, self.unit?, f)
            .ok()
            .flatten()
            .map(|(b, _)| b)
    }

    /// The platform (MMIO) devices the topology puts behind the daemon's SMMU: their register
    /// base, StreamID and binding (from the device tree's `iommus` or the config).
    pub fn mmio_devices(&self) -> impl Iterator<Item = (PhysAddr, StreamId, &StreamBinding)> {
        let unit = self.unit;
        self.topology
            .streams()
            .iter()
            .filter(move |b| Some(b.unit) == unit)
            .filter_map(|b| match b.source {
                StreamSource::Device(Device::Mmio(base)) => Some((base, b.sid, b)),
                _ => None,
            })
    }

    /// The RAM the config's static windows map (merged, sorted): it belongs to those devices
    /// from start-up, so the manager must never let a client map it.
    pub fn static_window_ranges(&self) -> &[PhysRange] {
        self.window_memory
            .as_ref()
            .map_or(&[], |m| m.frames().managed())
    }

    /// What the host gives the VM called `name` (its `[vm]` section): the VMM's view of its
    /// RAM, and the grants to hand the manager before the VMM starts.
    ///
    /// # Errors
    /// What is missing, for the `RESULT` record: no `[vm name]` section, or one without RAM.
    pub fn vm_memory(&self, name: &str) -> Result<VmMemory, &'static str> {
        let vm = self
            .topology
            .vm(name)
            .ok_or("the config has no [vm] section for this VM")?;
        let first = vm
            .ram
            .first()
            .and_then(|g| PhysRange::new(g.start, g.len))
            .ok_or("the VM's [vm] section assigns it no RAM")?;
        let mut ranges = Ranges::new();
        let mut grants = heapless::Vec::new();
        for g in &vm.ram {
            let range = PhysRange::new(g.start, g.len).ok_or("empty ram")?;
            // Carved at bring-up: every VM range lies in `vm_ranges`.
            if !self.vm_ranges.iter().any(|r| r.contains(range)) {
                return Err("the VM's RAM was not set aside at start-up");
            }
            ranges.push(range).map_err(|_| "too many ram ranges")?;
            grants
                .push(Grant {
                    range: ServerRange {
                        start: g.start,
                        len: g.len,
                    },
                    kind: if g.shared {
                        GrantKind::SharedRam
                    } else {
                        GrantKind::Ram
                    },
                })
                .map_err(|_| "too many grants")?;
        }
        for peer in &vm.peers {
            let bar = peer_grant(&self.pci, peer)?;
            grants.push(bar).map_err(|_| "too many grants")?;
        }
        // SAFETY: the VM's RAM was cut out of the guest pool at bring-up (`carve_vm_ram`), so
        // no allocator hands it out; only this VM's VMM (and, for a range the config marks
        // shared, the VMMs of the VMs that share it) reads or writes it, through this window.
        let window = unsafe { RamWindow::identity(&ranges) };
        let view = GuestMemory::new(window).map_err(|_| "the VM's RAM cannot be viewed")?;
        Ok(VmMemory {
            first,
            view,
            grants,
        })
    }

    /// Whether `sid` carries a static window of the config (the daemon attached it to a domain
    /// of its own at bring-up): not a device a client may claim.
    pub fn is_static_window_sid(&self, sid: StreamId) -> bool {
        self.topology
            .windows()
            .iter()
            .any(|w| self.stream_of(w.device) == Some(sid))
    }

    /// The StreamID `device`'s DMA carries at the daemon's unit: an enumerated PCI function's
    /// ([`Platform::sid_for`], which follows its DMA alias), else what the topology gives it.
    pub fn stream_of(&self, device: Device) -> Option<StreamId> {
        match device {
            Device::Pci { segment: 0, bdf } if self.pci.function(bdf).is_some() => {
                self.sid_for(bdf)
            }
            device => self.device_sid(device),
        }
    }

    /// How many fault records the manager keeps (the config's `fault-log`, else the default).
    pub fn fault_log_size(&self) -> u32 {
        self.topology.fault_log_size()
    }

    /// Whether `sid` of the daemon's unit belongs to the system (`reserve-sid`): never given
    /// to a device or a client.
    pub fn is_reserved_sid(&self, sid: StreamId) -> bool {
        self.unit
            .is_some_and(|unit| self.topology.is_reserved(unit, sid))
    }

    /// The SMMU's registers, once.
    pub fn take_smmu_registers(&mut self) -> Option<MmioRegion> {
        if self.smmu_taken {
            return None;
        }
        self.smmu_taken = true;
        // SAFETY: the device tree places the SMMU's register frame here, and this is the only
        // handle created (guarded by `smmu_taken`).
        Some(unsafe { MmioRegion::new(self.board.smmu.base, self.board.smmu.size) })
    }

    /// Returns the handle [`Platform::take_smmu_registers`] gave (after a read-only probe), so
    /// that the IOMMU can take it again. The handle is consumed: only one exists at a time.
    pub fn give_back_smmu_registers(&mut self, _regs: MmioRegion) {
        self.smmu_taken = false;
    }

    /// The `edu` devices found, in bus order.
    pub fn edus(&self) -> impl Iterator<Item = &PciFunction> {
        self.pci.find(edu::VENDOR_ID, edu::DEVICE_ID)
    }

    /// A driver for the `edu` at `bdf`, once per device. Bus mastering stays off: call
    /// [`Platform::enable_bus_master`] after the SMMU has a decision for its StreamID.
    ///
    /// # Errors
    /// A [`DeviceError`] when the device is unknown, taken, has no BAR 0 or is not an `edu`.
    pub fn take_edu(&mut self, bdf: Bdf) -> Result<Edu<MmioRegion>, DeviceError> {
        let function = self.pci.function(bdf).ok_or(DeviceError::NotFound(bdf))?;
        let bar = function.bars[0]
            .filter(|b| b.cpu_address.is_some())
            .ok_or(DeviceError::NoBar0(bdf))?;
        let base = bar.cpu_address.ok_or(DeviceError::NoBar0(bdf))?;
        if self.taken.contains(&bdf) {
            return Err(DeviceError::AlreadyTaken(bdf));
        }
        self.taken
            .push(bdf)
            .map_err(|_| DeviceError::AlreadyTaken(bdf))?;
        // SAFETY: enumeration assigned this BAR (disjoint from every other BAR) and enabled its
        // decoding; `taken` guarantees one handle per device.
        let regs = unsafe { MmioRegion::new(base, bar.size) };
        Edu::new(regs).map_err(|e| DeviceError::Edu(bdf, e))
    }

    /// Lets `bdf` issue DMA (and every bridge above it forward it).
    ///
    /// # Errors
    /// [`PciError::UnknownFunction`].
    pub fn enable_bus_master(&mut self, bdf: Bdf) -> Result<(), PciError> {
        self.pci.enable_bus_master(bdf)
    }

    /// Prints the `BOARD`, `MEMORY`, `RESERVED` and `PCI` records.
    pub fn print_summary(&self) {
        let b = &self.board;
        let plan = &self.memory_plan;
        let mut bootargs: heapless::String<300> = heapless::String::new();
        let _ = write_value(&mut bootargs, &b.bootargs);
        console::line(format_args!(
            "BOARD ram={} uart={} smmu={}+{:#x} smmu_irqs={} smmu_coherent={} ecam={} buses={:02x}..{:02x} mmio32={} iommu_map_entries={} pci_functions={} st={} bootargs={bootargs}",
            plan.ram(),
            b.uart.base,
            b.smmu.base,
            b.smmu.size,
            b.smmu.irqs,
            u8::from(b.smmu.coherent),
            b.pcie.ecam,
            b.pcie.bus_start,
            b.pcie.bus_end,
            b.pcie.mmio32,
            b.pcie.iommu_map.entries.len(),
            self.pci.functions().len(),
            self.args.stream_table,
        ));
        console::line(format_args!(
            "MEMORY daemon_span={} daemon_free={:#x} guest_span={} guest_free={:#x}",
            plan.daemon_span(),
            self.daemon_memory
                .as_ref()
                .map_or(0, |m| m.frames().free_bytes()),
            plan.guest_span(),
            self.guest_memory.frames().free_bytes(),
        ));
        for r in plan.reserved() {
            console::line(format_args!("RESERVED kind={} range={}", r.kind, r.range));
        }
        for r in self.static_window_ranges() {
            console::line(format_args!("RESERVED kind=static-window range={r}"));
        }
        for f in self.pci.functions() {
            console::line(format_args!("PCI {f}"));
        }
    }
}

/// Where the boot loader put what the daemon is made of and reads.
#[derive(Clone, Copy, Debug)]
pub struct BootRanges {
    /// The image (code, data, bss, stacks).
    pub image: PhysRange,
    /// The device tree.
    pub dtb: PhysRange,
    /// The initrd (the config file), when there is one.
    pub initrd: Option<PhysRange>,
}

/// The grant for a `peer` BAR: the memory BAR's CPU address range.
///
/// # Errors
/// Why the board cannot honour it.
fn peer_grant(pci: &PciBus<Ecam>, peer: &PeerBar) -> Result<Grant, &'static str> {
    if peer.segment != 0 {
        return Err("the daemon drives PCI segment 0 only");
    }
    let f = pci
        .function(peer.bdf)
        .ok_or("no such PCI function on this board")?;
    let bar = f
        .bars
        .get(usize::from(peer.bar))
        .copied()
        .flatten()
        .ok_or("the function has no such BAR")?;
    let start = bar.cpu_address.ok_or("not a memory BAR")?;
    if bar.size % 0x1000 != 0 || !start.is_aligned(0x1000) {
        return Err("the BAR is smaller than a page: granting it would expose its neighbours");
    }
    Ok(Grant {
        range: ServerRange {
            start,
            len: bar.size,
        },
        kind: GrantKind::Peer,
    })
}

/// `firmware` or `config`: which source a statement came from.
pub fn source_name(origin: Origin) -> &'static str {
    match origin {
        Origin::DeviceTree | Origin::Dmar => "firmware",
        Origin::Config { .. } => "config",
    }
}

/// `pci:0000:00:01.0` or `mmio:0x...`: a device as one record value.
pub struct DeviceName(pub Device);

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Device::Pci { segment, bdf } => write!(f, "pci:{segment:04x}:{bdf}"),
            Device::Mmio(base) => write!(f, "mmio:{base}"),
        }
    }
}

/// `source=firmware` or `source=config line=N`.
struct SourceOf(Origin);

impl fmt::Display for SourceOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source={}", source_name(self.0))?;
        if let Origin::Config { line } = self.0 {
            write!(f, " line={line}")?;
        }
        Ok(())
    }
}

/// Prints the combined topology: one `TOPOLOGY` record, one `UNIT` per IOMMU unit, one
/// `BINDING` per stream binding, one `SID_RESERVED` per reserved range, one `STATIC_WINDOW` per
/// window, each saying which source (`firmware` = device tree, `config`) the statement came
/// from. A unit whose unclaimed streams bypass translation is announced with a `BYPASS`
/// record and a warning.
pub fn print_topology(t: &Topology, config: &str, driven: UnitId) {
    let mut name: heapless::String<128> = heapless::String::new();
    let _ = write_value(&mut name, &config);
    console::line(format_args!(
        "TOPOLOGY config={name} mode={} units={} bindings={} reserved={} windows={} fault_log={} groups_declared={} driven_unit={}",
        t.mode(),
        t.unit_count(),
        t.streams().len(),
        t.reserved().len(),
        t.windows().len(),
        t.fault_log_size(),
        t.groups().count(),
        t.unit(driven).map_or("?", |u| u.name.as_str()),
    ));
    let unit_name = |id: UnitId| t.unit(id).map_or("?", |u| u.name.as_str());
    for (id, u) in t.units() {
        let mut irqs: heapless::String<200> = heapless::String::new();
        let _ = write_value(&mut irqs, &u.irqs);
        console::line(format_args!(
            "UNIT name={} base={} size={:#x} irqs={irqs} coherent={} unclaimed={} driven={} {}",
            u.name,
            u.base,
            u.size,
            u8::from(u.coherent),
            u.unclaimed,
            u8::from(id == driven),
            SourceOf(u.origin)
        ));
        if u.bypasses_unclaimed() {
            log::warn!(
                "unit {} lets DMA from every stream no client claimed bypass translation (unclaimed bypass, allow-bypass yes): such devices reach all memory",
                u.name
            );
            console::line(format_args!(
                "BYPASS unit={} detail=\"unclaimed streams bypass translation: any device no client claimed can reach all memory\" {}",
                u.name,
                SourceOf(u.origin)
            ));
        }
    }
    for b in t.streams() {
        match b.source {
            StreamSource::Device(d) => console::line(format_args!(
                "BINDING unit={} device={} sid={} shared={} raw_sid={} {}",
                unit_name(b.unit),
                DeviceName(d),
                b.sid,
                u8::from(b.shared),
                u8::from(b.raw_sid),
                SourceOf(b.origin)
            )),
            StreamSource::PciRange(r) => console::line(format_args!(
                "BINDING unit={} range=pci:{:04x}:{:#x}..={:#x} mask={:#x} sid={} shared={} {}",
                unit_name(b.unit),
                r.segment,
                r.rid_base,
                r.rid_last(),
                r.mask,
                b.sid,
                u8::from(b.shared),
                SourceOf(b.origin)
            )),
        }
    }
    for r in t.reserved() {
        console::line(format_args!(
            "SID_RESERVED unit={} first={} last={} {}",
            unit_name(r.unit),
            r.first,
            r.last,
            SourceOf(r.origin)
        ));
    }
    for w in t.windows() {
        console::line(format_args!(
            "STATIC_WINDOW device={} iova={} pa={} len={:#x} access={} {}",
            DeviceName(w.device),
            w.iova,
            w.pa,
            w.len,
            AccessName(w.access),
            SourceOf(w.origin)
        ));
    }
}

/// `rwx`-style access letters.
pub struct AccessName(pub iommu_core::Access);

impl fmt::Display for AccessName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use iommu_core::Access;
        for (flag, letter) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::EXEC, 'x'),
        ] {
            if self.0.contains(flag) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}
