//! The life-cycle guests: run twice in the same VM (`restart 1` in the host plan), they show
//! what the second run finds of the first.
//!
//! * `leftover`: reads a page of its RAM (what a previous guest left there), then writes a
//!   pattern over it and exits. The second run finds zeros when the host scrubbed the RAM in
//!   between, the first run's pattern otherwise (`LEFTOVER pattern=1 nonzero_bytes=...`).
//! * `stale-dma`: waits long enough for any DMA still queued for its device to land, reads a
//!   page of its RAM, then queues an `edu` DMA of a pattern into that page and exits at once,
//!   before the DMA happens (QEMU's `edu` starts it 100 ms later). The second run finds the
//!   page zero when the host quiesced the device before handing the RAM out again, the
//!   pattern when the stale DMA landed in it (`STALE pattern=1 nonzero_bytes=...`).
//!
//! Both report `CHECK` lines only where the guest itself can tell (the DMA buffer found, the
//! edu programmed); what the second run saw is the test's to judge.

use crate::driver::{dma_area, fill_pattern, mismatches, open_edu};
use crate::report::Checks;
use crate::Guest;

/// The page both guests look at: one page above the 2 MiB boundary of the DMA area.
const PAGE: u64 = 0x1000;
/// The pattern's seed.
const SEED: u8 = 0x3c;
/// How long `stale-dma` waits before it looks (a stale DMA fires 100 ms after it was queued).
const SETTLE_MS: u64 = 400;

/// Whether the page at `pa` holds the whole pattern (1 or 0), and how many of its bytes are
/// not zero.
fn census(g: &Guest<'_>, pa: u64) -> (u8, u64) {
    let (bad, _) = mismatches(g, pa, PAGE, SEED);
    let nonzero = (0..PAGE).filter(|i| g.phys.read8(pa + i) != 0).count() as u64;
    (u8::from(bad == 0), nonzero)
}

/// The `leftover` guest.
pub fn leftover(g: &mut Guest<'_>) -> u32 {
    let mut checks = Checks::default();
    let Some(x) = dma_area(g, &mut checks) else {
        return checks.status();
    };
    let page = x + PAGE;
    let (pattern, nonzero) = census(g, page);
    let _ = writeln!(
        g.out,
        "LEFTOVER page={page:#x} pattern={pattern} nonzero_bytes={nonzero}"
    );
    fill_pattern(g, page, PAGE, SEED);
    let (bad, _) = mismatches(g, page, PAGE, SEED);
    checks.check(
        g.out,
        "leftover-written",
        bad == 0,
        format_args!("page={page:#x} bytes={PAGE}"),
    );
    checks.status()
}

/// The `stale-dma` guest.
pub fn stale_dma(g: &mut Guest<'_>) -> u32 {
    let mut checks = Checks::default();
    let edu = open_edu(g, &mut checks);
    let area = dma_area(g, &mut checks);
    let (Some(edu), Some(x)) = (edu, area) else {
        return checks.status();
    };
    let source = x - 2 * PAGE;
    let target = x + PAGE;
    // Whatever a previous owner's device still had queued has landed by now.
    let deadline = crate::clock::Deadline::after_ms(g.clock, SETTLE_MS);
    while !deadline.passed(g.clock) {
        core::hint::spin_loop();
    }
    let (pattern, nonzero) = census(g, target);
    let _ = writeln!(
        g.out,
        "STALE page={target:#x} pattern={pattern} nonzero_bytes={nonzero} waited_ms={SETTLE_MS}"
    );
    // The pattern into the device's buffer (waited for), then the page cleared and a DMA of
    // the buffer into it queued, not waited for: the guest exits before it happens.
    fill_pattern(g, source, PAGE, SEED);
    let loaded = edu.read_from(source, 0, PAGE);
    checks.check(
        g.out,
        "stale-buffer-loaded",
        loaded.is_ok(),
        format_args!("src={source:#x} len={PAGE:#x}"),
    );
    for i in 0..PAGE {
        g.phys.write8(target + i, 0);
    }
    let queued = edu.queue_write_to(0, target, PAGE);
    checks.check(
        g.out,
        "stale-dma-queued",
        queued.is_ok(),
        format_args!("dst={target:#x} len={PAGE:#x}"),
    );
    checks.status()
}
