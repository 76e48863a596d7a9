//! smmuman-daemon-scenarios, the test image: the same library as the product image
//! (`smmuman_daemon`: boot, bring-up, the EL2 hypervisor, the manager, the host), plus the
//! test scenarios that drive the SMMU and the manager directly (`scenario=<name>`, see
//! [`scenarios::REGISTRY`]). tests-qemu boots it; `cargo xtask build --scenarios` builds it
//! (`--features scenarios --bin smmuman-daemon-scenarios`).
//!
//! Only this image sets the library's test hooks (`scenarios` feature): the world switch's
//! `SKIP_SWITCH_CONTROL`, `SliceAccounting::FreshPerEntry`, the event queue size
//! (`evtq-log2=`), an injected event-queue error, the fail-safe's DMA probe.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std)]
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_main)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod c_vmm;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod clients;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod discovery_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod dma_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod failsafe_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod host_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hostile;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod irq_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod many;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod options;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod vcpu_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod vm_scenarios;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod vmm;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bare {
    use crate::scenarios;
    use smmuman_daemon::bringup::platform::Platform;
    use smmuman_daemon::bringup::{self, StartOptions, Started};
    use smmuman_daemon::exit_code;
    use smmuman_daemon::host;
    use smmuman_daemon::hyp::world_switch::SliceAccounting;
    use smmuman_daemon::report::write_value;
    use smmuman_daemon::runtime::{console, exit};
    use smmuman_daemon::scenario::{self, Names};

    /// Called by the boot code at EL2 with the device tree address from x0.
    #[unsafe(no_mangle)]
    extern "C" fn rust_main(dtb: u64) -> ! {
        exit(run(dtb), "exit")
    }

    fn run(dtb: u64) -> u32 {
        let Started {
            mut platform,
            scenario,
        } = match bringup::start(dtb, StartOptions::TEST_IMAGE) {
            Ok(s) => s,
            Err(code) => return code,
        };
        match scenario {
            Some(name) => run_scenario(&mut platform, name),
            // Without `scenario=`, the host plan as the product runs it (with the SMMU's options
            // from the command line, `evtq-log2=`).
            None => {
                let options = crate::options::host_options(
                    &platform,
                    SliceAccounting::Charged,
                    host::LifeControls::PRODUCT,
                );
                host::run(&mut platform, options)
            }
        }
    }

    /// Runs the test scenario `name` (`scenario=<name>`) and prints its `RESULT` record.
    fn run_scenario(platform: &mut Platform, name: &str) -> u32 {
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
}

/// Host builds of the binary only say where it runs.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!(
        "smmuman-daemon-scenarios runs bare-metal under QEMU: use `cargo xtask run <scenario>`"
    );
    std::process::exit(2);
}
