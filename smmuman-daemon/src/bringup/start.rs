//! The start of both images: from the device tree address in x0 to a discovered platform.

use super::platform::Platform;
use super::refusal;
use crate::address_map::{AddressMap, MemKind};
use crate::arch::aarch64::boot;
use crate::board::{self, BoardInfo};
use crate::bootargs::BootArgs;
use crate::exit_code;
use crate::hyp::mmu;
use crate::memory::PhysRange;
use crate::report::write_value;
use crate::runtime::console;
use iommu_core::PhysAddr;

/// Largest device tree accepted (QEMU's is 1 MiB).
const MAX_DTB_SIZE: u64 = 16 << 20;
/// Size of the device tree header fields read before the blob is trusted.
const FDT_HEADER_SIZE: usize = 40;

/// A fatal error before or after the console exists: one `FATAL` record.
fn fatal(reason: &str, detail: &dyn core::fmt::Display) -> u32 {
    let mut text: heapless::String<400> = heapless::String::new();
    let _ = write_value(&mut text, detail);
    console::line_or_semihosting(format_args!("FATAL reason={reason} detail={text}"));
    exit_code::BAD_BOARD
}

/// The device tree blob at `dtb`, after checking its header.
fn device_tree(dtb: u64) -> Result<&'static [u8], &'static str> {
    if dtb == 0 {
        return Err("x0 is 0: no device tree was passed; boot the raw Image (cargo xtask build), not the ELF");
    }
    if !dtb.is_multiple_of(8) {
        return Err("the device tree address in x0 is not 8-byte aligned");
    }
    let mut header = [0u8; FDT_HEADER_SIZE];
    for (i, b) in header.iter_mut().enumerate() {
        // SAFETY: the boot protocol says x0 is the physical address of a device tree in RAM;
        // the header is read byte by byte before anything else is trusted.
        *b = unsafe { core::ptr::read_volatile((dtb as *const u8).add(i)) };
    }
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != 0xd00d_feed {
        return Err("no device tree magic (0xd00dfeed) at the address in x0");
    }
    let size = u64::from(word(4));
    if size < FDT_HEADER_SIZE as u64 || size > MAX_DTB_SIZE {
        return Err("device tree totalsize is implausible");
    }
    // SAFETY: the header says the blob is `size` bytes long; it stays in RAM untouched for
    // the whole run (the memory plan reserves it) and is never written.
    Ok(unsafe { core::slice::from_raw_parts(dtb as *const u8, size as usize) })
}

/// Builds the EL2 identity map of the board and turns the MMU on, printing one `MMU`
/// record and one `MMU_REGION` per region; on failure a `FATAL reason=mmu` record and the
/// exit code (the MMU stays off).
fn mmu_on(board: &BoardInfo<'_>, smmus: &[(PhysAddr, u64)]) -> Result<(), u32> {
    let map = AddressMap::for_board(board, smmus).map_err(|e| fatal("mmu", &e))?;
    let on = mmu::enable(&map).map_err(|e| fatal("mmu", &e))?;
    let mut ram: heapless::String<160> = heapless::String::new();
    for (i, r) in map.of_kind(MemKind::Normal).enumerate() {
        let _ = core::fmt::write(
            &mut ram,
            format_args!("{}{}", if i == 0 { "" } else { "," }, r.range),
        );
    }
    console::line(format_args!(
        "MMU on regions={} ram={ram} device={} tables={} pa_bits={} ttbr0={:#x} mair={:#018x} tcr={:#x} sctlr={:#x}",
        on.regions,
        map.of_kind(MemKind::Device).count(),
        on.tables,
        on.pa_bits,
        on.ttbr0,
        on.mair,
        on.tcr,
        on.sctlr
    ));
    for r in map.regions() {
        console::line(format_args!(
            "MMU_REGION name={} range={} kind={} xn={}",
            r.name,
            r.range,
            r.kind,
            u8::from(r.kind == MemKind::Device)
        ));
    }
    Ok(())
}

/// What a successful bring-up hands the image: the platform, and the `scenario=` the command
/// line named (the product image refuses one, the test image runs it).
pub struct Started {
    /// Board, config, memory plan and PCI, the SMMU's registers not yet taken.
    pub platform: Platform,
    /// `scenario=<name>`, when given.
    pub scenario: Option<&'static str>,
}

/// What the image lets the command line ask of bring-up. The product shim passes
/// [`StartOptions::PRODUCT`]; only the test image (`scenarios/main.rs`) turns a test control
/// on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartOptions {
    /// Honour `refused-dma-probe=1|bypass-control` on a refused start: DMA by an `edu` that
    /// shows the SMMU left aborting, or, as the control, landing before the abort
    /// (`refusal.rs`).
    pub refused_dma_probe: bool,
}

impl StartOptions {
    /// The product image: no test control.
    pub const PRODUCT: Self = Self {
        refused_dma_probe: false,
    };
    /// The test image: every test control the command line names.
    pub const TEST_IMAGE: Self = Self {
        refused_dma_probe: true,
    };
}

/// Brings the board up from the device tree at `dtb` (x0 at boot): checks and parses it,
/// starts the console, arms the fail-safe, turns the EL2 MMU on, brings the GIC up, parses the
/// boot arguments and runs discovery (`TOPOLOGY`, `BOARD`, `MEMORY`, `PCI` records).
///
/// # Errors
/// The exit code, after the `FATAL` record (and, from the fail-safe's arming on, every SMMU
/// aborting) of a start that cannot go on.
pub fn start(dtb: u64, options: StartOptions) -> Result<Started, u32> {
    let blob = match device_tree(dtb) {
        Ok(b) => b,
        Err(why) => return Err(fatal("device-tree", &why)),
    };
    let fdt = match board::open(blob) {
        Ok(f) => f,
        Err(e) => return Err(fatal("device-tree", &e)),
    };
    match board::console(&fdt) {
        Ok(uart) => console::init(uart),
        Err(e) => return Err(fatal("console", &e)),
    }
    let (image_start, image_end) = boot::image_bounds();
    log::info!(
        "smmuman-daemon {} starting at EL2, MMU still off",
        env!("CARGO_PKG_VERSION")
    );
    console::line(format_args!(
        "BOOT el=2 dtb={}+{:#x} image={}+{:#x} board={}",
        PhysAddr(dtb),
        blob.len(),
        PhysAddr(image_start),
        image_end - image_start,
        env!("SMMUMAN_BOARD_NAME")
    ));
    let board = match BoardInfo::parse(&fdt) {
        Ok(b) => b,
        Err(e) => return Err(fatal("device-tree", &e)),
    };
    // Before any SMMU register is touched: the identity map, MMU and caches on.
    let frames = refusal::smmu_frames(&fdt, &board);
    // From here a panic or an unexpected exception leaves every SMMU aborting.
    crate::failsafe::arm(&frames);
    if let Err(code) = mmu_on(&board, &frames) {
        refusal::abort_smmus();
        return Err(code);
    }
    crate::hyp::irq::init(&board);
    let args = match BootArgs::parse(board.bootargs) {
        Ok(a) => a,
        Err(e) => {
            fatal("bootargs", &e);
            refusal::abort_smmus();
            return Err(exit_code::BAD_BOOTARGS);
        }
    };
    log::set_max_level(args.log_level);
    let (Some(image), Some(dtb_range)) = (
        PhysRange::from_bounds(PhysAddr(image_start), PhysAddr(image_end)),
        PhysRange::new(PhysAddr(dtb), blob.len() as u64),
    ) else {
        return Err(fatal("memory", &"empty image or device tree range"));
    };
    let scenario_name = args.scenario;
    let platform = match refusal::discover(&fdt, &board, &args, image, dtb_range) {
        Ok(p) => p,
        Err(refused) => return Err(refusal::refuse(board, args, refused, options)),
    };
    platform.print_summary();

    Ok(Started {
        platform,
        scenario: scenario_name,
    })
}
