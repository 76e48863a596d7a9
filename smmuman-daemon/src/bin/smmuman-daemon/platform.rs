//! [`Platform`]: the board brought up: memory pools, PCI enumerated, devices ready to be handed
//! to the SMMU manager and the scenarios.

use crate::clock::GenericTimer;
use crate::console;
use core::fmt;
use iommu_core::{Bdf, PhysAddr, StreamId};
use smmuman_daemon::board::BoardInfo;
use smmuman_daemon::bootargs::BootArgs;
use smmuman_daemon::edu::{self, Edu, EduError};
use smmuman_daemon::memory::{
    DaemonMemory, FrameError, GuestMemory, LayoutError, MemoryPlan, PhysRange, RamWindow, Reserved,
    ReservedKind,
};
use smmuman_daemon::mmio::MmioRegion;
use smmuman_daemon::pci::{self, Ecam, PciBus, PciError, PciFunction};
use smmuman_daemon::report::write_value;

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
    /// How RAM is split.
    pub memory_plan: MemoryPlan,
    /// The pool for SMMU tables and queues, until the IOMMU takes it
    /// ([`Platform::take_daemon_memory`]).
    daemon_memory: Option<DaemonMemory>,
    /// The pool DMA buffers come from.
    pub guest_memory: GuestMemory,
    /// The enumerated PCI hierarchy.
    pub pci: PciBus<Ecam>,
    /// Time.
    pub clock: GenericTimer,
    smmu_taken: bool,
    taken: heapless::Vec<Bdf, MAX_TAKEN>,
}

impl Platform {
    /// Plans memory around the image and the device tree, builds the pools and enumerates PCI.
    ///
    /// # Errors
    /// A [`BringUpError`] saying which step failed.
    pub fn bring_up(
        board: BoardInfo<'static>,
        args: BootArgs<'static>,
        image: PhysRange,
        dtb: PhysRange,
    ) -> Result<Self, BringUpError> {
        let ram = board
            .ram_containing(image.start())
            .ok_or(BringUpError::ImageOutsideRam(image.start()))?;
        let mut reserved: heapless::Vec<Reserved, 16> = heapless::Vec::new();
        if let Some(stub) = PhysRange::from_bounds(ram.start(), image.start()) {
            let _ = reserved.push(Reserved {
                range: stub,
                kind: ReservedKind::BootStub,
            });
        }
        let _ = reserved.push(Reserved {
            range: image,
            kind: ReservedKind::Image,
        });
        let _ = reserved.push(Reserved {
            range: dtb,
            kind: ReservedKind::DeviceTree,
        });
        for r in &board.reserved {
            let _ = reserved.push(Reserved {
                range: *r,
                kind: ReservedKind::Firmware,
            });
        }
        let memory_plan = MemoryPlan::new(ram, &reserved).map_err(BringUpError::Layout)?;
        // SAFETY: the pools exclude the image (code, data, stacks), the device tree and firmware
        // reservations; the rest of RAM is used only through these windows. The MMU is off, so
        // physical addresses are CPU addresses.
        let daemon_window = unsafe { RamWindow::identity(memory_plan.daemon_pool()) };
        // SAFETY: as above; the guest pool is disjoint from the daemon pool.
        let guest_window = unsafe { RamWindow::identity(memory_plan.guest_pool()) };
        let daemon_memory = DaemonMemory::new(daemon_window).map_err(BringUpError::Pool)?;
        let guest_memory = GuestMemory::new(guest_window).map_err(BringUpError::Pool)?;

        let host = &board.pcie;
        // SAFETY: the device tree places the host bridge's ECAM here; only this `Ecam` accesses
        // configuration space.
        let ecam_regs = unsafe { MmioRegion::new(host.ecam.start(), host.ecam.size()) };
        let ecam = Ecam::new(ecam_regs, host.bus_start, host.bus_end);
        let sid_for = |bdf: Bdf| board.sid_for(bdf);
        let pci = pci::enumerate(ecam, host.mmio32, host.bus_start, host.bus_end, &sid_for)
            .map_err(BringUpError::Pci)?;

        Ok(Self {
            board,
            args,
            memory_plan,
            daemon_memory: Some(daemon_memory),
            guest_memory,
            pci,
            clock: GenericTimer::new(),
            smmu_taken: false,
            taken: heapless::Vec::new(),
        })
    }

    /// The pool for SMMU tables and queues, once: the IOMMU owns it from then on.
    pub fn take_daemon_memory(&mut self) -> Option<DaemonMemory> {
        self.daemon_memory.take()
    }

    /// Whether any byte of `[pa, pa + len)` is the daemon's (image, stacks, device tree, daemon
    /// pool): never map such memory for a device.
    pub fn is_daemon_memory(&self, pa: PhysAddr, len: u64) -> bool {
        self.memory_plan.is_daemon_memory(pa, len)
    }

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
            None => self.board.sid_for(bdf),
        }
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
        for f in self.pci.functions() {
            console::line(format_args!("PCI {f}"));
        }
    }
}
