//! smmuman-daemon, the bare-metal binary: boot code, exception vectors, panic handler, console
//! wiring, platform bring-up and the scenario dispatcher. Build it with `cargo xtask build`
//! (`--features bare --target aarch64-unknown-none`); the logic lives in the library.
//!
//! Console records (see `smmuman_daemon::console`): `BOOT`, `CONFIG`, `TOPOLOGY` (with `UNIT`,
//! `BINDING`, `SID_RESERVED`, `STATIC_WINDOW`), `BOARD`, `MEMORY`, `RESERVED`, `PCI`, then the
//! scenario's own records and one `RESULT`; `FATAL`, `EXCEPTION` or `PANIC` when things go wrong.
//! The exit code follows `smmuman_daemon::exit_code`.
//!
//! Start-up learns the board from the device tree and the config (`board_config::load`): the
//! initrd when the boot loader passed one, else the board's `smmuman.conf` embedded at build
//! time. If anything about it is wrong the daemon refuses to start: one
//! `FATAL reason=config` record, every SMMU left terminating all traffic (GBPA.ABORT, SMMUEN
//! = 0; `SMMU_ABORT` records), exit code 4 (see `refusal.rs`).

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std)]
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_main)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod boot;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod c_vmm;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod clock;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod console;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod discovery_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod dma_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod exceptions;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod failsafe;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod failsafe_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod heap;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod host;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod host_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod hostile;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod iommu;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod irq;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod irq_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod manager;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod many;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod mmu;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod panic;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod platform;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod refusal;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod semihosting;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod tasks;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod vcpu;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod vcpu_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod vm_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "scenarios"))]
mod vmm;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use bare::exit;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bare {
    use crate::{boot, console, mmu, refusal, semihosting};
    use iommu_core::PhysAddr;
    use smmuman_daemon::address_map::{AddressMap, MemKind};
    use smmuman_daemon::board::{self, BoardInfo};
    use smmuman_daemon::bootargs::BootArgs;
    use smmuman_daemon::exit_code;
    use smmuman_daemon::memory::PhysRange;
    use smmuman_daemon::report::write_value;

    /// Largest device tree accepted (QEMU's is 1 MiB).
    const MAX_DTB_SIZE: u64 = 16 << 20;
    /// Size of the device tree header fields read before the blob is trusted.
    const FDT_HEADER_SIZE: usize = 40;

    /// The one way out of the daemon: every path ends here, whatever the image (product or
    /// test) and however it ends (a normal shutdown, a `FATAL` record, a refused start, a
    /// panic, an unexpected exception). First the fail-safe (`failsafe::leave_safe`: every
    /// SMMU the device tree lists left aborting all traffic, then its records; a no-op when it
    /// already ran), then the stack check, then QEMU's exit (semihosting SYS_EXIT, Arm IHI
    /// 0123; nothing else in the daemon can end the run). `trigger` names the way out in the
    /// `FAILSAFE` record.
    pub fn exit(code: u32, trigger: &str) -> ! {
        crate::failsafe::leave_safe(trigger);
        let mut code = code;
        for stack in boot::smashed_stacks() {
            console::emergency(format_args!("FATAL reason=stack-overflow stack={stack}"));
            code = exit_code::EXCEPTION;
        }
        qemu_exit::QEMUExit::exit(&qemu_exit::AArch64::new(), code)
    }

    /// Called by the boot code at an exception level other than 2.
    #[unsafe(no_mangle)]
    extern "C" fn rust_wrong_el(el: u64) -> ! {
        semihosting::println(format_args!(
            "FATAL reason=wrong-el el={el} detail=\"smmuman-daemon must start at EL2: use -machine virt,virtualization=on\""
        ));
        // Nothing is known of the board yet: the fail-safe has no SMMU to abort.
        exit(exit_code::BAD_BOARD, "wrong-el")
    }

    /// Called by the boot code at EL2 with the device tree address from x0.
    #[unsafe(no_mangle)]
    extern "C" fn rust_main(dtb: u64) -> ! {
        exit(run(dtb), "exit")
    }

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

    fn run(dtb: u64) -> u32 {
        let blob = match device_tree(dtb) {
            Ok(b) => b,
            Err(why) => return fatal("device-tree", &why),
        };
        let fdt = match board::open(blob) {
            Ok(f) => f,
            Err(e) => return fatal("device-tree", &e),
        };
        match board::console(&fdt) {
            Ok(uart) => console::init(uart),
            Err(e) => return fatal("console", &e),
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
            Err(e) => return fatal("device-tree", &e),
        };
        // Before any SMMU register is touched: the identity map, MMU and caches on.
        let frames = refusal::smmu_frames(&fdt, &board);
        // From here a panic or an unexpected exception leaves every SMMU aborting.
        crate::failsafe::arm(&frames);
        if let Err(code) = mmu_on(&board, &frames) {
            refusal::abort_smmus();
            return code;
        }
        crate::irq::init(&board);
        let args = match BootArgs::parse(board.bootargs) {
            Ok(a) => a,
            Err(e) => {
                fatal("bootargs", &e);
                refusal::abort_smmus();
                return exit_code::BAD_BOOTARGS;
            }
        };
        log::set_max_level(args.log_level);
        let (Some(image), Some(dtb_range)) = (
            PhysRange::from_bounds(PhysAddr(image_start), PhysAddr(image_end)),
            PhysRange::new(PhysAddr(dtb), blob.len() as u64),
        ) else {
            return fatal("memory", &"empty image or device tree range");
        };
        let scenario_name = args.scenario;
        let mut platform = match refusal::discover(&fdt, &board, &args, image, dtb_range) {
            Ok(p) => p,
            Err(refused) => return refusal::refuse(board, args, refused),
        };
        platform.print_summary();

        match scenario_name {
            Some(name) => run_scenario(&mut platform, name),
            None => crate::host::run(&mut platform),
        }
    }

    /// Runs the test scenario `name` (`scenario=<name>`) and prints its `RESULT` record.
    #[cfg(feature = "scenarios")]
    fn run_scenario(platform: &mut crate::platform::Platform, name: &str) -> u32 {
        use crate::scenarios;
        use smmuman_daemon::scenario::{self, Names};
        let Some(entry) = scenario::find(scenarios::REGISTRY, name) else {
            // The exit's fail-safe leaves the SMMU aborting; `failsafe-probe=` shows it by DMA.
            crate::failsafe_scenarios::arm_bypass_probe(platform);
            let mut text: heapless::String<128> = heapless::String::new();
            let _ = write_value(&mut text, &name);
            console::line(format_args!(
                "FATAL reason=unknown-scenario scenario={text} known={}",
                Names(scenarios::REGISTRY)
            ));
            return exit_code::BAD_BOOTARGS;
        };
        log::info!("running scenario {}: {}", entry.name, entry.about);
        let outcome = (entry.run)(platform);
        let mut line: heapless::String<640> = heapless::String::new();
        let _ = outcome.write_result(entry.name, &mut line);
        console::line(format_args!("{line}"));
        outcome.status().exit_code()
    }

    /// The product image has no test scenarios: `scenario=` is refused.
    #[cfg(not(feature = "scenarios"))]
    fn run_scenario(_platform: &mut crate::platform::Platform, name: &str) -> u32 {
        let mut text: heapless::String<128> = heapless::String::new();
        let _ = write_value(&mut text, &name);
        console::line(format_args!(
            "FATAL reason=no-scenarios scenario={text} detail=\"this image runs its host plan; test scenarios are in the image built with --features scenarios (cargo xtask build --scenarios)\""
        ));
        exit_code::BAD_BOOTARGS
    }
}

/// Host builds of the binary (e.g. `cargo build --all-features`) only say where it runs.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("smmuman-daemon runs bare-metal under QEMU: use `cargo xtask run`");
    std::process::exit(2);
}
