//! smmuman's x86-64 image for QEMU `q35` with `intel-iommu` (VT-d) and `edu`.
//!
//! Boot ([`boot`]): PVH entry, 32→64-bit trampoline, then [`rust_entry`], which
//! 1. reads `hvm_start_info` (magic checked) and prints `BOOT arch=x86_64 ...`;
//! 2. walks ACPI (RSDP checksum, RSDT/XSDT, MCFG, HPET, DMAR): `ACPI`, `ECAM`, `DRHD` records;
//! 3. enumerates PCI through ECAM with the daemon library's `pci` (BARs assigned, bus
//!    mastering off everywhere) and finds `edu` by vendor/device id: `PCI` records;
//! 4. runs the scenario the command line names (`scenario=deny|window|remap`, see
//!    [`scenarios`]) and exits through `isa-debug-exit`.
//!
//! Records are those of the aarch64 image: `BOOT`, `CHECK step=... ok=0|1`, `FAULT ...`,
//! `RESULT scenario=<name> status=pass|fail`, one `FATAL reason=... detail="..."` when the
//! platform cannot be used, `EXCEPTION` and `PANIC`. Every way out ([`exit`]) leaves every
//! VT-d unit blocking all DMA and bus mastering off ([`failsafe`]), a start refused before
//! bring-up included.
//!
//! Exit codes are [`smmuman_daemon::exit_code`]'s, written to `isa-debug-exit` (port 0xf4):
//! QEMU exits with `code << 1 | 1`, and a pass is qemu-exit's success code 33.

#![no_std]
#![no_main]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

extern crate alloc;

mod board;
mod boot;
mod clients;
mod console;
mod dma;
mod failsafe;
mod failsafe_probe;
mod heap;
mod host;
mod hpet;
mod idt;
mod irq;
mod lapic;
mod lost;
mod port;
mod ram;
mod scenarios;
mod uart;

use core::fmt;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use iommu_core::{Bdf, PhysAddr};
use qemu_exit::QEMUExit;
use smmuman_daemon::board::pcie::PciWindow;
use smmuman_daemon::bootargs::BootArgs;
use smmuman_daemon::exit_code;
use smmuman_daemon::mmio::MmioRegion;
use smmuman_daemon::pci;
use smmuman_daemon::report::write_value;
use smmuman_x86::acpi::{self, Platform};
use smmuman_x86::phys::{PhysRead, Unreachable};
use smmuman_x86::pvh::{self, StartInfo, MEMMAP_ACPI, MEMMAP_RAM};

/// The `isa-debug-exit` device: port 0xf4; 33 is the success code (QEMU exits 33).
const EXIT: qemu_exit::X86 = qemu_exit::X86::new(0xf4, 33);

/// Where PCI memory BARs are assigned: inside q35's 32-bit PCI hole, above ECAM
/// (0xb0000000–0xbfffffff) and below the I/O APIC (0xfec00000); uncached in the identity map.
const PCI_WINDOW: PciWindow = PciWindow {
    cpu_base: PhysAddr(0xc000_0000),
    pci_base: 0xc000_0000,
    size: 0x1000_0000,
};

/// Bytes at the bottom of the stack filled with [`CANARY`] at entry and checked at exit.
const CANARY_BYTES: usize = 4096;
/// The pattern a stack overflow overwrites.
const CANARY: u64 = 0x5a5a_c0de_57ac_4b1d;

unsafe extern "C" {
    /// The lowest address of the boot stack (`boards/qemu-q35/image.ld`).
    static __stack_bottom: u8;
}

/// The canary words at the bottom of the stack.
fn canary_words() -> *mut u64 {
    // Only the symbol's address is taken: the linker script places 2 MiB of stack above it,
    // of which the lowest `CANARY_BYTES` hold the canary.
    (&raw const __stack_bottom).cast_mut().cast::<u64>()
}

/// Fills the canary region (at entry, while the stack is still shallow).
fn arm_stack_canary() {
    for i in 0..CANARY_BYTES / 8 {
        // SAFETY: the lowest 4 KiB of the 2 MiB boot stack, far below the frames in use at
        // entry; nothing else lives there.
        unsafe { canary_words().add(i).write_volatile(CANARY) };
    }
}

/// Whether every canary word is intact (false: the stack overflowed into it).
fn stack_intact() -> bool {
    // SAFETY: as in `arm_stack_canary`; reads only.
    (0..CANARY_BYTES / 8).all(|i| unsafe { canary_words().add(i).read_volatile() } == CANARY)
}

/// Exits QEMU with daemon exit code `code`, after checking that the stack did not overflow
/// (an overflow fails the run whatever it printed before).
///
/// Every way out of the image ends here, and the fail-safe comes first
/// ([`failsafe::leave_safe`]: a no-op when a failure path already ran it).
pub fn exit(code: u32) -> ! {
    failsafe::leave_safe("exit");
    let code = if stack_intact() {
        code
    } else {
        console::emergency(format_args!("FATAL reason=stack-overflow stack=boot"));
        exit_code::EXCEPTION
    };
    if code == exit_code::PASS {
        EXIT.exit_success()
    }
    EXIT.exit(code)
}

/// Physical memory below 4 GiB, reached through the identity map.
struct IdentityMap;

impl PhysRead for IdentityMap {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), Unreachable> {
        let len = buf.len() as u64;
        let err = Unreachable { pa, len };
        let end = pa.checked_add(len).ok_or(err)?;
        // Only the identity-mapped low 4 GiB, and never address 0 (a null pointer). The rest
        // of page 0 is real memory: QEMU puts the PVH memory map there.
        if pa == 0 || end > 1 << 32 {
            return Err(err);
        }
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: in the identity map (checked); firmware tables are plain memory and a
            // stray read of a device register is what a corrupt table could cause at worst, on
            // the uncached part of the map.
            *b = unsafe { core::ptr::read_volatile((pa + i as u64) as *const u8) };
        }
        Ok(())
    }
}

/// A fatal error: one `FATAL` record, the safe state, exit [`exit_code::BAD_BOARD`].
pub fn fatal(reason: &str, detail: impl fmt::Display) -> ! {
    failsafe::stop();
    let mut text: heapless::String<300> = heapless::String::new();
    let _ = write_value(&mut text, &detail);
    console::line(format_args!("FATAL reason={reason} detail={text}"));
    failsafe::leave_safe(reason);
    exit(exit_code::BAD_BOARD)
}

/// What discovery found, for the scenarios.
pub struct Machine {
    /// hvm_start_info.
    pub start: StartInfo,
    /// ACPI.
    pub acpi: Platform,
    /// The PCI hierarchy.
    pub pci: pci::PciBus<pci::Ecam>,
    /// Every `edu`'s address and BAR0, in bus order (at most two are used).
    pub edus: heapless::Vec<(Bdf, PhysAddr), 2>,
    /// The clock.
    pub clock: hpet::Hpet,
}

/// Called by the trampoline with EBX's value.
#[no_mangle]
extern "C" fn rust_entry(start_info: u32) -> ! {
    arm_stack_canary();
    idt::init();
    let start = match pvh::parse(&IdentityMap, start_info.into()) {
        Ok(s) => s,
        Err(e) => {
            console::init(log::LevelFilter::Info);
            fatal("pvh", e)
        }
    };
    let cmdline = start.cmdline.clone();
    let args = match BootArgs::parse(cmdline.as_str()) {
        Ok(a) => a,
        Err(e) => {
            console::init(log::LevelFilter::Info);
            // SeaBIOS's last line has no newline (see below).
            console::line(format_args!(""));
            console::line(format_args!("FATAL reason=bootargs detail=\"{e}\""));
            // Refused before discovery: find the units all the same, so that the exit's
            // fail-safe leaves them blocking rather than as firmware left them.
            if let Ok(p) = acpi::discover(&IdentityMap, start.rsdp) {
                if let Ok(d) = p.dmar.dmar() {
                    arm_units(&d);
                }
            }
            exit(exit_code::BAD_BOOTARGS)
        }
    };
    console::init(args.log_level);
    let (wb, uc) = boot::refine_memory_types(|base, len| {
        start.memmap.iter().any(|r| {
            (r.kind == MEMMAP_RAM || r.kind == MEMMAP_ACPI) && r.addr < base + len && base < r.end()
        })
    });
    // SeaBIOS's "Booting from ROM.." has no newline: start the records on a line of their own.
    console::line(format_args!(""));
    console::line(format_args!(
        "BOOT arch=x86_64 entry=pvh start_info={:#010x} version={} rsdp={:#018x} ram={:#x} memmap={} cmdline=\"{}\" map_wb_2m={wb} map_uc_2m={uc}",
        start_info,
        start.version,
        start.rsdp,
        start.ram_bytes(),
        start.memmap.len(),
        start.cmdline.as_str(),
    ));
    let machine = discover(start);
    let code = scenarios::run(machine, &args);
    exit(code)
}

fn discover(start: StartInfo) -> Machine {
    let platform = acpi::discover(&IdentityMap, start.rsdp).unwrap_or_else(|e| fatal("acpi", e));
    let mut tables: heapless::String<128> = heapless::String::new();
    for s in platform.root.signatures(&IdentityMap) {
        if !tables.is_empty() {
            let _ = tables.push(' ');
        }
        let _ = fmt::Write::write_fmt(&mut tables, format_args!("{s}"));
    }
    console::line(format_args!(
        "ACPI rsdp={:#018x} rsdp_revision={} root={} tables=\"{tables}\"",
        start.rsdp, platform.root.rsdp_revision, platform.root.table.signature
    ));
    let ecam = platform.ecam;
    console::line(format_args!(
        "ECAM base={:#018x} segment={} buses={}-{}",
        ecam.base, ecam.segment, ecam.start_bus, ecam.end_bus
    ));
    let d = platform.dmar.dmar().unwrap_or_else(|e| fatal("dmar", e));
    console::line(format_args!(
        "DMAR at={:#018x} haw={} flags={:#x} units={} rmrr={} atsr={}",
        platform.dmar.paddr,
        d.host_address_width(),
        d.flags().0,
        d.units().count(),
        d.reserved_regions().count(),
        d.atsr().count()
    ));
    for (index, u) in d.units() {
        console::line(format_args!(
            "DRHD index={index} base={} size={:#x} segment={} include_pci_all={} scopes={}",
            u.register_base,
            u.register_set_size(),
            u.segment.0,
            u8::from(u.include_pci_all),
            u.scopes.iter().count()
        ));
        for s in u.scopes.iter() {
            let first = s.path.entries().next();
            console::line(format_args!(
                "DRHD_SCOPE base={} type={:?} start_bus={:#04x} path_len={} dev={} fn={} id={}",
                u.register_base,
                s.scope_type,
                s.path.start_bus(),
                s.path.len(),
                first.map_or(0, |e| e.device),
                first.map_or(0, |e| e.function),
                s.enumeration_id
            ));
        }
    }
    // From here on every way out leaves every unit blocking all DMA (`failsafe`), a start
    // refused before bring-up included.
    arm_units(&d);
    for r in d.reserved_regions() {
        console::line(format_args!(
            "RMRR segment={} base={} limit={} scopes={}",
            r.segment.0,
            r.base,
            r.limit,
            r.scopes.iter().count()
        ));
    }
    if ecam.base >= 1 << 32 || ecam.base + ecam.size() > 1 << 32 {
        fatal("acpi", "ECAM above 4 GiB is outside the identity map");
    }
    failsafe::set_ecam(ecam.base - (u64::from(ecam.start_bus) << 20));
    if platform.hpet == 0 || platform.hpet >= 1 << 32 {
        fatal("acpi", "HPET registers outside the identity map");
    }
    // SAFETY: the HPET's 1 KiB register block (ACPI HPET table), uncached in the identity map,
    // used by nothing else.
    let clock = hpet::Hpet::new(unsafe { MmioRegion::new(PhysAddr(platform.hpet), 0x400) })
        .unwrap_or_else(|| fatal("hpet", "counter period 0 or above 100 ns"));
    // SAFETY: ECAM from MCFG (checked to lie below 4 GiB, uncached), used only by this bus.
    let region = unsafe { MmioRegion::new(PhysAddr(ecam.base), ecam.size()) };
    let config = pci::Ecam::new(region, ecam.start_bus, ecam.end_bus);
    let bus = pci::enumerate(config, PCI_WINDOW, ecam.start_bus, ecam.end_bus, &|_| None)
        .unwrap_or_else(|e| fatal("pci", e));
    for f in bus.functions() {
        let mut bars: heapless::String<160> = heapless::String::new();
        for b in f.memory_bars() {
            let _ = fmt::Write::write_fmt(&mut bars, format_args!(" {b}"));
        }
        console::line(format_args!(
            "PCI bdf={} vendor={:#06x} device={:#06x} class={:#08x}{bars}",
            f.bdf, f.vendor_id, f.device_id, f.class
        ));
    }
    let edus: heapless::Vec<(Bdf, PhysAddr), 2> = bus
        .find(
            smmuman_daemon::edu::VENDOR_ID,
            smmuman_daemon::edu::DEVICE_ID,
        )
        .filter_map(|f| {
            f.memory_bars()
                .find(|b| b.index == 0)
                .and_then(|b| b.cpu_address)
                .map(|a| (f.bdf, a))
        })
        .take(2)
        .collect();
    if edus.is_empty() {
        fatal("pci", "no edu (1234:11e8) with a memory BAR0");
    }
    Machine {
        start,
        acpi: platform,
        pci: bus,
        edus,
        clock,
    }
}

/// Hands every DRHD of the DMAR whose register frame the identity map covers (below 4 GiB)
/// to the fail-safe.
fn arm_units(d: &vtd::dmar::Dmar<'_>) {
    failsafe::arm_units(
        d.units()
            .map(|(_, u)| (u.register_base, u.register_set_size()))
            .filter(|(b, s)| b.0 < 1 << 32 && b.0 + s <= 1 << 32),
    );
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // No bus master runs on before anything that can fail again (the report).
    failsafe::stop();
    if PANICKING.swap(true, Ordering::SeqCst) {
        exit(exit_code::PANIC);
    }
    let mut message: heapless::String<300> = heapless::String::new();
    let _ = write_value(&mut message, &info.message());
    match info.location() {
        Some(l) => console::emergency(format_args!(
            "PANIC location={}:{}:{} message={message}",
            l.file(),
            l.line(),
            l.column()
        )),
        None => console::emergency(format_args!("PANIC message={message}")),
    }
    failsafe::leave_safe("panic");
    exit(exit_code::PANIC)
}
