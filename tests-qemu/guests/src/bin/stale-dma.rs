//! The `stale-dma` guest: see `qvm_guests::lifecycle`.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

/// Called by the entry code with x0 = the device tree's address.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb: u64) -> ! {
    qvm_guests::rt::start(dtb, qvm_guests::lifecycle::stale_dma)
}

/// On the host the guest is an empty stub, so that workspace builds succeed.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
