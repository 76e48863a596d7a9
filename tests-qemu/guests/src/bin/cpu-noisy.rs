//! The `cpu-noisy` guest: programs the PMU (the cycle counter set to count EL2 with
//! PMCCFILTR_EL0.NSH), breakpoint and watchpoint registers, MDSCR_EL1, the virtual timer and
//! the GIC CPU interface, and keeps rewriting them for `cpu.ms` milliseconds (hex, default
//! 1500), so a VM that shares the CPU with it would see its values ([`qvm_guests::cpu_state`]).
//! With `cpu.trap-cntp=1` it ends by writing CNTP_CTL_EL0, which the host traps and nobody
//! emulates: its VMM stops it and names the register.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

/// Called by the entry code with x0 = the device tree's address.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb: u64) -> ! {
    use qvm_guests::bootargs::hex;
    qvm_guests::rt::start(dtb, |g| {
        let args = g.dt.bootargs;
        let ms = hex(args, "cpu.ms").ok().flatten().unwrap_or(1500);
        let status = qvm_guests::cpu_state::noisy(&qvm_guests::rt::Sysregs, g.clock, g.out, ms);
        if hex(args, "cpu.trap-cntp").ok().flatten() == Some(1) {
            let _ = core::fmt::Write::write_fmt(
                g.out,
                format_args!("CPU_LAST msr=cntp_ctl_el0 rt=3\n"),
            );
            qvm_guests::rt::touch_physical_timer();
        }
        status
    })
}

/// On the host the guest is an empty stub, so that workspace builds succeed.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
