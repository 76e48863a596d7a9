//! The `crasher` guest: prints one line, then stores to a guest-physical address where its VM
//! has nothing (between the PCI window and the ECAM, `qvm::abi`): a stage-2 data abort its VMM
//! cannot emulate, so the VMM stops it and names the address.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

/// Where nothing is: above the PCI memory window, below the ECAM.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
const HOLE: u64 = qvm::abi::PCI_MMIO_BASE + qvm::abi::PCI_MMIO_SIZE + 0x1230;

/// Called by the entry code with x0 = the device tree's address.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb: u64) -> ! {
    qvm_guests::rt::start(dtb, |g| {
        let _ = core::fmt::Write::write_fmt(g.out, format_args!("CRASHER store addr={HOLE:#x}\n"));
        // SAFETY: deliberately wrong: nothing is mapped at HOLE; the store traps to the VMM,
        // which stops this guest, so execution never continues past it.
        unsafe { core::ptr::write_volatile(HOLE as *mut u32, 0xdead) };
        let _ = core::fmt::Write::write_fmt(g.out, format_args!("CRASHER survived\n"));
        1
    })
}

/// On the host the guest is an empty stub, so that workspace builds succeed.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
