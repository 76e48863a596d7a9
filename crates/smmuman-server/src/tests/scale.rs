//! The manager at scale: tens of thousands of mappings through the wire, in batches, with the
//! ownership and overlap rules still exact.

use super::*;
use smmuman_api::{DomainError, MapBatch, MapEntry, MapFlags, UnmapBatch, MAP_BATCH};

const N: u64 = 30_000;
const PA: u64 = 0x1_0000_0000;

fn entry(i: u64) -> MapEntry {
    MapEntry {
        window: win(i << 12, PA + (i << 12), 0x1000),
        access: Access::RW,
        flags: MapFlags::empty(),
    }
}

#[test]
fn thirty_thousand_mappings_in_batches_keep_every_rule() {
    let mut rig = Rig::new();
    let oa = rig.object(A);
    let ob = rig.object(B);
    rig.as_(A)
        .attach(oa, smmuman_api::DeviceSel::pci(pci(0, 1, 0)))
        .unwrap();
    let mut i = 0;
    while i < N {
        let es: Vec<MapEntry> = (i..(i + MAP_BATCH as u64).min(N)).map(entry).collect();
        rig.as_(A)
            .map_batch(oa, MapBatch::new(&es).unwrap())
            .unwrap();
        i += es.len() as u64;
    }
    assert_eq!(rig.as_(A).object_status(oa).unwrap().mappings, N as u32);
    // The rules hold at this size: B may not take any of A's pages, A may not overlap itself.
    for probe in [0, N / 2, N - 1] {
        let r = refusal(rig.as_(B).map(
            ob,
            win(0, PA + (probe << 12), 0x1000),
            Access::RW,
            MapFlags::SHARED,
        ));
        assert_eq!(r, Refusal::new(DomainError::Busy, PA + (probe << 12)));
        let r = refusal(rig.as_(A).map(
            oa,
            win(probe << 12, 0xf_0000_0000, 0x1000),
            Access::RW,
            MapFlags::empty(),
        ));
        assert_eq!(r, Refusal::new(DomainError::Overlap, probe << 12));
    }
    // Every third page goes, 60 spans a batch, one invalidation each.
    let thirds: Vec<u64> = (0..N).step_by(3).collect();
    let syncs = rig.fake().counts().syncs;
    for chunk in thirds.chunks(60) {
        let spans: Vec<_> = chunk
            .iter()
            .map(|&p| smmuman_api::IovaSpan::new(Iova(p << 12), 0x1000).unwrap())
            .collect();
        let r = rig
            .as_(A)
            .unmap_batch(oa, UnmapBatch::new(&spans).unwrap())
            .unwrap();
        assert_eq!(r.mappings as usize, chunk.len());
    }
    assert_eq!(
        rig.fake().counts().syncs - syncs,
        thirds.len().div_ceil(60) as u64
    );
    for p in (0..N).step_by(997) {
        let want = (p % 3 != 0).then_some(PA + (p << 12));
        assert_eq!(rig.dma(EDU, p << 12), want, "page {p}");
    }
    // The freed pages are B's to take now; the others are still A's.
    rig.as_(B)
        .map(ob, win(0, PA, 0x1000), Access::RW, MapFlags::empty())
        .unwrap();
    assert_eq!(
        refusal(rig.as_(B).map(
            ob,
            win(0x1000, PA + 0x1000, 0x1000),
            Access::RW,
            MapFlags::empty()
        ))
        .error,
        DomainError::Busy
    );
    // Listing walks all that remain, in order.
    let (mut from, mut listed, mut last) = (0, 0u64, None);
    loop {
        let page = rig.as_(A).list_mappings(oa, from).unwrap();
        for m in page.mappings.iter() {
            let at = m.window.iova().0;
            assert!(last.is_none_or(|l| l < at));
            last = Some(at);
            listed += 1;
        }
        if !page.more {
            break;
        }
        from = page.next;
    }
    assert_eq!(listed, N - thirds.len() as u64);
}
