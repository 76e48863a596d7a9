//! The `driver` guest: what a real driver does with a pass-through device. It finds `edu` by
//! scanning PCI, gives BAR 0 an address when firmware did not, and DMAs between its own RAM
//! and the device with guest-physical addresses, checking every byte.
//!
//! Output: `DRIVER ...` (what it found), `CHECK name=pci-scan|bar0|edu-ident|dma-area|
//! dma-<case>`; exit status 0 only when every check passed.

use crate::edu::{self, Edu};
use crate::layout::{self, Range};
use crate::pci;
use crate::report::Checks;
use crate::Guest;

/// One round trip RAM → edu → RAM.
struct Case {
    name: &'static str,
    /// Source buffer, relative to the DMA area's 2 MiB boundary.
    src: i64,
    /// Destination buffer, relative to the boundary.
    dst: i64,
    /// Offset in edu's buffer.
    offset: u64,
    len: u64,
}

/// The round trips: aligned and small, both buffers across a 4 KiB page boundary, the whole
/// device buffer, and a destination in the next 2 MiB block.
const CASES: [Case; 4] = [
    Case {
        name: "small",
        src: -0x8000,
        dst: -0x7000,
        offset: 0,
        len: 64,
    },
    Case {
        name: "page-cross",
        src: -0x9100,
        dst: -0x5180,
        offset: 0x100,
        len: 0x400,
    },
    Case {
        name: "full-buffer",
        src: -0x4000,
        dst: -0x2000,
        offset: 0,
        len: edu::BUFFER_SIZE,
    },
    Case {
        name: "other-2mib",
        src: -0xc00,
        dst: 0x8080,
        offset: 0x800,
        len: 0x800,
    },
];

/// Bytes checked on each side of a destination: the DMA must not spill.
const GUARD: u64 = 16;
/// What destination buffers and guards are filled with before a DMA.
const FILL: u8 = 0xa5;

/// Finds `edu` and enables its BAR 0, reporting `pci-scan`, `bar0` and `edu-ident`.
pub fn open_edu<'g>(g: &mut Guest<'g>, checks: &mut Checks) -> Option<Edu<'g>> {
    let Some(host) = g.dt.pci else {
        checks.check(
            g.out,
            "pci-scan",
            false,
            format_args!("reason=\"no pci-host-ecam-generic node\""),
        );
        return None;
    };
    let found = pci::find(g.phys, host.ecam, edu::VENDOR, edu::DEVICE);
    checks.check(
        g.out,
        "pci-scan",
        found.is_some(),
        format_args!(
            "ecam={} vendor={:#06x} device={:#06x} at={}",
            host.ecam,
            edu::VENDOR,
            edu::DEVICE,
            Found(found)
        ),
    );
    let f = found?;
    let bar = match pci::enable_bar0(g.phys, f, host.mem32) {
        Ok(bar) => {
            checks.check(
                g.out,
                "bar0",
                true,
                format_args!(
                    "base={:#x} size={:#x} assigned={} window={}",
                    bar.base,
                    bar.size,
                    u8::from(bar.assigned),
                    host.mem32
                ),
            );
            bar
        }
        Err(e) => {
            checks.check(g.out, "bar0", false, format_args!("reason=\"{e}\""));
            return None;
        }
    };
    let edu = Edu::new(g.phys, g.clock, bar.base);
    let ident = edu.ident();
    checks.check(
        g.out,
        "edu-ident",
        ident == edu::IDENT_VALUE,
        format_args!("value={ident:#010x}"),
    );
    Some(edu)
}

/// `at=00:01.0` or `at=none`.
struct Found(Option<pci::Function>);

impl core::fmt::Display for Found {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(func) => write!(f, "{func}"),
            None => f.write_str("none"),
        }
    }
}

/// The 2 MiB boundary around which DMA buffers go, reporting `dma-area`.
pub fn dma_area(g: &mut Guest<'_>, checks: &mut Checks) -> Option<u64> {
    let mut avoid = [Range::default(); 2 + crate::devtree::MAX_RESERVED];
    avoid[0] = g.image;
    avoid[1] = g.dt.dtb;
    for (slot, r) in avoid[2..].iter_mut().zip(g.dt.reserved()) {
        *slot = *r;
    }
    let area = layout::dma_area(g.dt.ram, &avoid);
    let _ = writeln!(
        g.out,
        "DMA_AREA ram={} image={} dtb={} boundary={:#x}",
        g.dt.ram,
        g.image,
        g.dt.dtb,
        area.unwrap_or(0)
    );
    if area.is_none() {
        checks.check(
            g.out,
            "dma-area",
            false,
            format_args!("reason=\"no free 2 MiB boundary with 64 KiB either side in RAM\""),
        );
    }
    area
}

/// The byte at `i` of pattern `seed`: never the fill byte (0xa5) of the destination, so a missed DMA shows.
pub fn pattern(seed: u8, i: u64) -> u8 {
    let b = (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8;
    if b == FILL {
        !FILL
    } else {
        b
    }
}

/// Writes pattern `seed` over `len` bytes at `pa`.
pub fn fill_pattern(g: &Guest<'_>, pa: u64, len: u64, seed: u8) {
    for i in 0..len {
        g.phys.write8(pa + i, pattern(seed, i));
    }
}

/// Bytes of `len` at `pa` that differ from pattern `seed`, and the first such offset.
pub fn mismatches(g: &Guest<'_>, pa: u64, len: u64, seed: u8) -> (u64, Option<u64>) {
    let mut count = 0;
    let mut first = None;
    for i in 0..len {
        if g.phys.read8(pa + i) != pattern(seed, i) {
            count += 1;
            first.get_or_insert(i);
        }
    }
    (count, first)
}

/// RAM (`src`) → edu → RAM (`dst`), then compares; `Ok(mismatched bytes)` or the DMA error.
pub fn round_trip(
    g: &Guest<'_>,
    edu: &Edu<'_>,
    src: u64,
    dst: u64,
    offset: u64,
    len: u64,
    seed: u8,
) -> Result<(u64, Option<u64>, bool), edu::DmaError> {
    fill_pattern(g, src, len, seed);
    for i in 0..len + 2 * GUARD {
        g.phys.write8(dst - GUARD + i, FILL);
    }
    edu.read_from(src, offset, len)?;
    edu.write_to(offset, dst, len)?;
    let (count, first) = mismatches(g, dst, len, seed);
    let guards_intact = (0..GUARD)
        .all(|i| g.phys.read8(dst - GUARD + i) == FILL && g.phys.read8(dst + len + i) == FILL);
    Ok((count, first, guards_intact))
}

/// The guest.
pub fn run(g: &mut Guest<'_>) -> u32 {
    let mut checks = Checks::default();
    let _ = writeln!(
        g.out,
        "DRIVER ram={} bootargs=\"{}\"",
        g.dt.ram, g.dt.bootargs
    );
    let edu = open_edu(g, &mut checks);
    let area = dma_area(g, &mut checks);
    if let (Some(edu), Some(x)) = (edu, area) {
        for (i, case) in CASES.iter().enumerate() {
            let src = x.wrapping_add_signed(case.src);
            let dst = x.wrapping_add_signed(case.dst);
            let seed = 0x11 * (i as u8 + 1);
            let name = DmaName(case.name);
            match round_trip(g, &edu, src, dst, case.offset, case.len, seed) {
                Ok((bad, first, guards)) => checks.check(
                    g.out,
                    name.as_str(),
                    bad == 0 && guards,
                    format_args!(
                        "src={src:#x} dst={dst:#x} len={:#x} edu_offset={:#x} mismatched={bad} first_bad={} guards_intact={}",
                        case.len,
                        case.offset,
                        first.map_or(-1, |f| f as i64),
                        u8::from(guards)
                    ),
                ),
                Err(e) => checks.check(g.out, name.as_str(), false, format_args!("src={src:#x} dst={dst:#x} reason=\"{e}\"")),
            }
        }
    }
    checks.status()
}

/// `dma-<case>`, without an allocator.
struct DmaName(&'static str);

impl DmaName {
    fn as_str(&self) -> &'static str {
        match self.0 {
            "small" => "dma-small",
            "page-cross" => "dma-page-cross",
            "full-buffer" => "dma-full-buffer",
            "other-2mib" => "dma-other-2mib",
            _ => "dma",
        }
    }
}

/// Whether the four cases cover what they say (checked on the host).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{BLOCK, HALF_AREA, PAGE};

    #[test]
    fn cases_cross_what_their_names_say_and_stay_in_the_area() {
        let x = 0x4020_0000u64;
        for c in &CASES {
            for (start, len) in [(c.src, c.len), (c.dst, c.len)] {
                let a = x.wrapping_add_signed(start);
                assert!(
                    a - GUARD >= x - HALF_AREA && a + len + GUARD <= x + HALF_AREA,
                    "{}",
                    c.name
                );
            }
            assert!(c.offset + c.len <= edu::BUFFER_SIZE);
            let (s, d) = (x.wrapping_add_signed(c.src), x.wrapping_add_signed(c.dst));
            assert!(
                s + c.len <= d || d + c.len + GUARD <= s,
                "{}: buffers overlap",
                c.name
            );
        }
        let pc = &CASES[1];
        let s = x.wrapping_add_signed(pc.src);
        let d = x.wrapping_add_signed(pc.dst);
        assert_ne!(s / PAGE, (s + pc.len - 1) / PAGE);
        assert_ne!(d / PAGE, (d + pc.len - 1) / PAGE);
        let far = &CASES[3];
        assert_ne!(
            x.wrapping_add_signed(far.src) / BLOCK,
            x.wrapping_add_signed(far.dst) / BLOCK
        );
        assert!((0..0x1000).all(|i| pattern(0x22, i) != FILL));
    }
}
