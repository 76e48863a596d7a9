//! The `worker` guest of the fairness test: counts rounds of fixed work for a window of its
//! own clock (`worker.ms=<hex>` in its bootargs, default 1000 ms), prints
//! `WORKER rounds=<n> window_ms=<ms> max_gap_ms=<ms>` and exits 0 (`qvm_guests::fairness`).

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

/// Called by the entry code with x0 = the device tree's address.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[unsafe(no_mangle)]
extern "C" fn guest_main(dtb: u64) -> ! {
    use qvm_guests::fairness;
    qvm_guests::rt::start(dtb, |g| {
        let window_ms = match qvm_guests::bootargs::hex(g.dt.bootargs, "worker.ms") {
            Ok(v) => v.unwrap_or(1000),
            Err(_) => return 1,
        };
        let mut seed = 1u64;
        let r = fairness::count_rounds(g.clock, window_ms, || {
            seed = fairness::work_round(seed);
        });
        let _ = core::fmt::Write::write_fmt(
            g.out,
            format_args!(
                "WORKER rounds={} window_ms={window_ms} max_gap_ms={}\n",
                r.rounds,
                fairness::ms(g.clock, r.max_gap_ticks)
            ),
        );
        0
    })
}

/// On the host the guest is an empty stub, so that workspace builds succeed.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {}
