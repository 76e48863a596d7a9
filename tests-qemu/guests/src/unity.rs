//! The `unity` guest: runs in a unity-mapped VM, whose guest-physical RAM is its host-physical
//! RAM (it is linked there, see build.rs). It prints its RAM from the device tree, checks that
//! its own code lies in it (`CHECK name=unity-layout`), and tries one DMA round trip in its
//! RAM. Whether that DMA lands depends on the host (with no manager and no SMMU window it is
//! refused), so it is printed as `UNITY_DMA landed=0|1`, not checked. Exits 0 when the layout
//! check passed and the `edu`
//! was found (`pci-scan`, `bar0`, `edu-ident`).

use crate::driver::{dma_area, open_edu, round_trip};
use crate::report::Checks;
use crate::Guest;

/// The guest; `code` is the address of its own code.
pub fn run(g: &mut Guest<'_>, code: u64) -> u32 {
    let mut checks = Checks::default();
    let _ = writeln!(
        g.out,
        "UNITY ram={} code={code:#x} image={}",
        g.dt.ram, g.image
    );
    checks.check(
        g.out,
        "unity-layout",
        g.dt.ram.contains(code) && g.dt.ram.covers(&g.image),
        format_args!("ram={} code={code:#x}", g.dt.ram),
    );
    let edu = open_edu(g, &mut checks);
    let area = dma_area(g, &mut checks);
    match (edu, area) {
        (Some(edu), Some(x)) => {
            let (src, dst) = (x - 0x8000, x + 0x1000);
            match round_trip(g, &edu, src, dst, 0, 64, 0x44) {
                Ok((bad, _, _)) => {
                    let _ = writeln!(
                        g.out,
                        "UNITY_DMA landed={} src={src:#x} dst={dst:#x} mismatched={bad}",
                        u8::from(bad == 0)
                    );
                }
                Err(e) => {
                    let _ = writeln!(g.out, "UNITY_DMA landed=0 reason=\"{e}\"");
                }
            }
        }
        _ => {
            let _ = writeln!(g.out, "UNITY_DMA landed=0 reason=\"no edu or no DMA area\"");
        }
    }
    checks.status()
}
