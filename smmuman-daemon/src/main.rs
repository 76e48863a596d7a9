//! smmuman-daemon, the product image: a thin boot shim over the library. The boot code
//! (`smmuman_daemon::arch::aarch64::boot`) calls [`rust_main`] at EL2 with the device tree's
//! address; it brings the board up (`smmuman_daemon::bringup::start`) and runs the host plan
//! (`smmuman_daemon::host::run`). Build it with `cargo xtask build` (`--features bare
//! --target aarch64-unknown-none`).
//!
//! Console records (see `smmuman_daemon::console`): `BOOT`, `CONFIG`, `TOPOLOGY` (with `UNIT`,
//! `BINDING`, `SID_RESERVED`, `STATIC_WINDOW`), `BOARD`, `MEMORY`, `RESERVED`, `PCI`, then the
//! host's records and one `RESULT`; `FATAL`, `EXCEPTION` or `PANIC` when things go wrong.
//! The exit code follows `smmuman_daemon::exit_code`.
//!
//! This image sets none of the library's test hooks (they exist only with the `scenarios`
//! feature, which the test image `scenarios/main.rs` is built with): it starts with
//! `StartOptions::PRODUCT` (no `refused-dma-probe=`), runs the host plan with
//! `HostOptions::PRODUCT`, and refuses `scenario=`.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std)]
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_main)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bare {
    use smmuman_daemon::bringup::{self, StartOptions, Started};
    use smmuman_daemon::exit_code;
    use smmuman_daemon::host::{self, HostOptions};
    use smmuman_daemon::report::write_value;
    use smmuman_daemon::runtime::{console, exit};

    /// Called by the boot code at EL2 with the device tree address from x0.
    #[unsafe(no_mangle)]
    extern "C" fn rust_main(dtb: u64) -> ! {
        exit(run(dtb), "exit")
    }

    fn run(dtb: u64) -> u32 {
        let Started {
            mut platform,
            scenario,
        } = match bringup::start(dtb, StartOptions::PRODUCT) {
            Ok(s) => s,
            Err(code) => return code,
        };
        match scenario {
            Some(name) => refuse_scenario(name),
            None => host::run(&mut platform, HostOptions::PRODUCT),
        }
    }

    /// The product image has no test scenarios: `scenario=` is refused.
    fn refuse_scenario(name: &str) -> u32 {
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
