//! Many windows (scenario `vmm-many`): a VMM maps 10,000 windows into its VM through the manager
//! in batches, DMAs through a sample of them, then unmaps them all in batches. The host prints
//! the SMMU's command and CMD_SYNC counts and the daemon pool's free bytes around the run, so a
//! test sees one CMD_SYNC per unmap batch and every page-table page given back.

use crate::vmm::{create_with, Ctx, Res, Step, Vmm};
use iommu_core::{Access, Iova, PhysAddr};
use smmuman_api::{
    Client, DmaWindow, IovaSpan, MapBatch, MapEntry, MapFlags, Transport, UnmapBatch, MAP_BATCH,
    UNMAP_BATCH,
};

/// Windows the VMM maps.
pub const WINDOWS: u64 = 10_000;
/// Where its windows start in I/O space (above its RAM window's guest-physical range).
const BASE: u64 = 0x1_0000_0000;
/// Pages of its RAM the windows cycle through (its 4 MiB).
const RAM_PAGES: u64 = 1024;

fn window(i: u64, ram: PhysAddr) -> Step<DmaWindow> {
    DmaWindow::new(
        Iova(BASE + (i << 12)),
        PhysAddr(ram.0 + ((i % RAM_PAGES) << 12)),
        0x1000,
    )
    .map_err(|_| "bad-window")
}

/// The VMM's run.
pub fn many<T: Transport>(ctx: &Ctx<'_>, c: &mut Client<T>, vmm: &mut Vmm) -> Step {
    let (Some(dev), Some((ram, mem))) = (vmm.device.as_mut(), vmm.ram.as_mut()) else {
        return Err("no-device-or-ram");
    };
    let ram_pa = ram.start();
    let obj = create_with(ctx, c, dev.bdf)?;

    let mut batches = 0u32;
    let mut i = 0;
    while i < WINDOWS {
        let mut b = MapBatch::default();
        while i < WINDOWS && b.len() < MAP_BATCH {
            b.push(MapEntry {
                window: window(i, ram_pa)?,
                access: Access::RW,
                flags: MapFlags::empty(),
            });
            i += 1;
        }
        if c.map_batch(obj, b).is_err() {
            return ctx.check("map-batches", false, format_args!("window={i}"));
        }
        batches += 1;
    }
    let st = c.object_status(obj);
    ctx.check(
        "map-batches",
        matches!(st, Ok(s) if u64::from(s.mappings) == WINDOWS),
        format_args!("windows={WINDOWS} batches={batches}"),
    )?;

    // A sample of windows: the device writes through each, and it lands in the page behind it.
    for (n, k) in [0u64, 1, 1234, 5000, WINDOWS - 1].into_iter().enumerate() {
        let pa = PhysAddr(ram_pa.0 + ((k % RAM_PAGES) << 12));
        let seed = 60 + n as u8;
        mem.fill_pattern(PhysAddr(ram_pa.0 + 0x30_0000), 64, seed);
        mem.fill_pattern(pa, 64, 0);
        // The pattern goes in through the RAM window's own page (the window for page 0x300).
        dev.edu
            .dma_to_device(Iova(BASE + (0x300 << 12)), 0, 64, &ctx.clock)
            .map_err(|_| "edu-dma")?;
        dev.edu
            .dma_from_device(0, Iova(BASE + (k << 12)), 64, &ctx.clock)
            .map_err(|_| "edu-dma")?;
        ctx.check(
            "sample-dma-lands",
            mem.check_pattern(pa, 64, seed).is_none(),
            format_args!("window={k} pa={pa}"),
        )?;
    }

    let mut batches = 0u32;
    let mut i = 0;
    while i < WINDOWS {
        let mut b = UnmapBatch::default();
        while i < WINDOWS && b.len() < UNMAP_BATCH {
            b.push(IovaSpan::new(Iova(BASE + (i << 12)), 0x1000).map_err(|_| "bad-span")?);
            i += 1;
        }
        if c.unmap_batch(obj, b).is_err() {
            return ctx.check("unmap-batches", false, format_args!("window={i}"));
        }
        batches += 1;
    }
    let st = c.object_status(obj);
    ctx.check(
        "unmap-batches",
        matches!(st, Ok(s) if s.mappings == 0 && s.mapped_bytes == 0),
        format_args!("batches={batches}"),
    )?;
    // After the unmaps the device reaches none of it.
    mem.fill_pattern(PhysAddr(ram_pa.0 + 0x1000), 64, 70);
    dev.edu
        .dma_from_device(0, Iova(BASE + (1 << 12)), 64, &ctx.clock)
        .map_err(|_| "edu-dma")?;
    ctx.check(
        "after-unmap-blocked",
        mem.check_pattern(PhysAddr(ram_pa.0 + 0x1000), 64, 70)
            .is_none(),
        "",
    )?;
    let r = c.destroy_object(obj);
    ctx.check("destroy", r.is_ok(), Res(&r))
}
