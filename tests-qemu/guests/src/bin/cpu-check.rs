//! The `cpu-check` guest: reads the PMU, debug, virtual-timer and GIC CPU-interface registers
//! at its entry (reset values expected, never a neighbour's), writes its own, and checks them
//! across time slices for `cpu.ms` milliseconds (hex, default 1500)
//! ([`qvm_guests::cpu_state`]).

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

/// Called by the entry code with x0 = the device tree's address.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb: u64) -> ! {
    qvm_guests::rt::start(dtb, |g| {
        let ms = qvm_guests::bootargs::hex(g.dt.bootargs, "cpu.ms")
            .ok()
            .flatten()
            .unwrap_or(1500);
        qvm_guests::cpu_state::check(&qvm_guests::rt::Sysregs, g.clock, g.out, ms)
    })
}

/// On the host the guest is an empty stub, so that workspace builds succeed.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
