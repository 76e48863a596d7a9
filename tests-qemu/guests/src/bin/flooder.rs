//! The `flooder` guest of the fairness test: makes its host work for it as hard as it can for
//! a window of its own clock (`flooder.ms=<hex>`, default 1500 ms): ECAM sweeps, BAR moves,
//! console bytes, hypercalls (`qvm_guests::fairness::flood`); then prints
//! `FLOODER iterations=<n> ...` and exits 0.

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

/// What each round also writes through `QVM_CONSOLE_WRITE` (guest RAM: the MMU is off, so
/// its address is guest-physical).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
static TEXT: [u8; 64] = *b"FLOOD by hypercall: the host copies and prints these 64 bytes.\n\n";

/// Called by the entry code with x0 = the device tree's address.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb: u64) -> ! {
    use qvm_guests::fairness;
    qvm_guests::rt::start(dtb, |g| {
        let window_ms = match qvm_guests::bootargs::hex(g.dt.bootargs, "flooder.ms") {
            Ok(v) => v.unwrap_or(1500),
            Err(_) => return 1,
        };
        let text = (TEXT.as_ptr() as u64, TEXT.len() as u64);
        let mut hvc = |f: u32, a1: u64, a2: u64| qvm_guests::rt::hvc(f, a1, a2, 0);
        match fairness::flood(g, window_ms, &mut hvc, text) {
            Ok(n) => {
                let _ = core::fmt::Write::write_fmt(
                    g.out,
                    format_args!(
                        "FLOODER iterations={} ecam_reads={} bar_moves={} console_bytes={} hypercalls={}\n",
                        n.iterations, n.ecam_reads, n.bar_moves, n.console_bytes, n.hypercalls
                    ),
                );
                0
            }
            Err(e) => {
                let _ = core::fmt::Write::write_fmt(
                    g.out,
                    format_args!("FLOODER failed reason=\"{e}\"\n"),
                );
                1
            }
        }
    })
}

/// On the host the guest is an empty stub, so that workspace builds succeed.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
