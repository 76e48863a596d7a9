//! The `unity` guest (see `qvm_guests::unity`): linked at its VM's host-physical RAM.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

/// Called by the entry code with x0 = the device tree's address.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb: u64) -> ! {
    let code = qvm_guests::rt::code_address();
    qvm_guests::rt::start(dtb, |g| qvm_guests::unity::run(g, code))
}

/// On the host the guest is an empty stub, so that workspace builds succeed.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
