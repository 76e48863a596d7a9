use super::*;
use iommu_core::fake::FakeMemory;

const RAM_GPA: u64 = 0x4000_0000;
const RAM_HPA: u64 = 0x4800_0000;
const RAM_LEN: u64 = 2 << 20;
const BAR_GPA: u64 = 0x1000_0000;
const BAR_HPA: u64 = 0x80_1000_0000;
const BAR_LEN: u64 = 1 << 20;

fn cfg() -> Stage2Config {
    Stage2Config::widest_for_oas(44)
}

fn list() -> GuestMap {
    let mut m = GuestMap::new();
    m.add(Gpa(RAM_GPA), PhysAddr(RAM_HPA), RAM_LEN, RegionKind::Ram)
        .unwrap();
    m.add(
        Gpa(BAR_GPA),
        PhysAddr(BAR_HPA),
        BAR_LEN,
        RegionKind::Bar { device: 1, bar: 0 },
    )
    .unwrap();
    m
}

/// An SMMU model: what the windows sent to the manager translate.
fn smmu_of(batches: &[MapBatch]) -> impl Fn(u64) -> Option<u64> + '_ {
    move |gpa| {
        batches.iter().flat_map(|b| b.iter()).find_map(|e| {
            let off = gpa.checked_sub(e.window.iova().get())?;
            (off < e.window.len()).then(|| e.window.pa().get() + off)
        })
    }
}

#[test]
fn the_cpu_table_holds_ram_and_bars_with_their_attributes() {
    let m = list();
    let mut mem = FakeMemory::default();
    let t = m.cpu_stage2(&mut mem, cfg()).unwrap();
    let ram = t.translate(&mem, Iova(RAM_GPA + 0x1234)).unwrap();
    assert_eq!(ram.pa, PhysAddr(RAM_HPA + 0x1234));
    assert_eq!(ram.access, Access::RW | Access::EXEC);
    let bar = t.translate(&mem, Iova(BAR_GPA + 0x10)).unwrap();
    assert_eq!(bar.pa, PhysAddr(BAR_HPA + 0x10));
    assert_eq!(bar.access, Access::DEVICE | Access::RW);
    assert_eq!(t.translate(&mem, Iova(RAM_GPA + RAM_LEN)), None);
    t.destroy(&mut mem);
}

#[test]
fn the_smmu_gets_the_ram_only() {
    let m = list();
    let batches: std::vec::Vec<_> = m.smmu_batches().collect();
    assert_eq!(batches.len(), 1);
    let entries: std::vec::Vec<_> = batches[0].iter().copied().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].window.iova(), Iova(RAM_GPA));
    assert_eq!(entries[0].window.pa(), PhysAddr(RAM_HPA));
    assert_eq!(entries[0].window.len(), RAM_LEN);
    assert_eq!(entries[0].access, Access::RW);
}

#[test]
fn windows_are_batched_by_32() {
    let mut m = GuestMap::new();
    for i in 0..MAX_REGIONS as u64 {
        m.add(
            Gpa(RAM_GPA + i * 0x2000),
            PhysAddr(RAM_HPA + i * 0x2000),
            0x1000,
            RegionKind::Ram,
        )
        .unwrap();
    }
    let sizes: std::vec::Vec<_> = m.smmu_batches().map(|b| b.len()).collect();
    assert_eq!(sizes, [32, MAX_REGIONS - 32]);
    assert_eq!(
        m.add(Gpa(0), PhysAddr(0), 0x1000, RegionKind::Ram),
        Err(MapListError::Full)
    );
}

#[test]
fn both_translations_agree_page_by_page() {
    let m = list();
    let mut mem = FakeMemory::default();
    let t = m.cpu_stage2(&mut mem, cfg()).unwrap();
    let batches: std::vec::Vec<_> = m.smmu_batches().collect();
    // RAM 512 pages + BAR 256 pages + a page on each side of both.
    assert_eq!(m.compare(&t, &mem, smmu_of(&batches)), Ok(512 + 256 + 4));
}

#[test]
fn the_comparison_catches_each_kind_of_disagreement() {
    let m = list();
    let mut mem = FakeMemory::default();
    let mut t = m.cpu_stage2(&mut mem, cfg()).unwrap();
    let batches: std::vec::Vec<_> = m.smmu_batches().collect();
    // An SMMU that also maps the BAR (peer-to-peer nobody granted).
    let leaky = |gpa: u64| smmu_of(&batches)(gpa).or(m.find(gpa).and_then(|r| r.hpa_of(gpa)));
    let e = m.compare(&t, &mem, leaky).unwrap_err();
    assert_eq!(
        (e.gpa, e.smmu, e.expected),
        (Gpa(BAR_GPA), Some(BAR_HPA), Some(BAR_HPA))
    );
    // An SMMU whose RAM window is one page off.
    let shifted = |gpa: u64| smmu_of(&batches)(gpa).map(|h| h + 0x1000);
    let e = m.compare(&t, &mem, shifted).unwrap_err();
    assert_eq!(e.gpa, Gpa(RAM_GPA));
    assert_eq!(e.smmu, Some(RAM_HPA + 0x1000));
    assert_eq!(e.cpu, Some(RAM_HPA));
    // An SMMU that reaches the page past RAM.
    let long = |gpa: u64| {
        (RAM_GPA..=RAM_GPA + RAM_LEN)
            .contains(&gpa)
            .then(|| gpa - RAM_GPA + RAM_HPA)
    };
    assert_eq!(
        m.compare(&t, &mem, long).unwrap_err().gpa,
        Gpa(RAM_GPA + RAM_LEN)
    );
    // A CPU table missing a page.
    let _ = t
        .unmap(&mut mem, Iova(RAM_GPA + 0x10_0000), 0x1000)
        .unwrap();
    let e = m.compare(&t, &mem, smmu_of(&batches)).unwrap_err();
    assert_eq!(
        (e.gpa, e.cpu, e.smmu),
        (Gpa(RAM_GPA + 0x10_0000), None, Some(RAM_HPA + 0x10_0000))
    );
    assert_eq!(
        e.to_string(),
        "GPA 0x0000000040100000: CPU -> unmapped, SMMU -> 0x0000000048100000, the list says 0x0000000048100000"
    );
}

#[test]
fn a_unity_list_maps_gpa_to_the_same_hpa() {
    let mut m = GuestMap::new();
    m.add(Gpa(RAM_HPA), PhysAddr(RAM_HPA), RAM_LEN, RegionKind::Ram)
        .unwrap();
    let mut mem = FakeMemory::default();
    let t = m.cpu_stage2(&mut mem, cfg()).unwrap();
    let batches: std::vec::Vec<_> = m.smmu_batches().collect();
    let w = batches[0].iter().next().unwrap().window;
    assert_eq!(w.iova().get(), w.pa().get());
    assert_eq!(m.compare(&t, &mem, smmu_of(&batches)), Ok(512 + 2));
}

#[test]
fn bad_regions_are_refused() {
    let mut m = list();
    assert_eq!(
        m.add(Gpa(RAM_GPA + 0x1000), PhysAddr(0), 0x1000, RegionKind::Ram),
        Err(MapListError::Overlap {
            gpa: Gpa(RAM_GPA + 0x1000),
            other: Gpa(RAM_GPA)
        })
    );
    assert!(matches!(
        m.add(Gpa(0x10), PhysAddr(0), 0x1000, RegionKind::Ram),
        Err(MapListError::Shape { .. })
    ));
    assert!(matches!(
        m.add(Gpa(0), PhysAddr(0x10), 0x1000, RegionKind::Ram),
        Err(MapListError::Shape { .. })
    ));
    assert!(matches!(
        m.add(Gpa(0), PhysAddr(0), 0x10, RegionKind::Ram),
        Err(MapListError::Shape { .. })
    ));
    assert!(matches!(
        m.add(Gpa(0), PhysAddr(0), 0, RegionKind::Ram),
        Err(MapListError::Shape { .. })
    ));
    assert!(matches!(
        m.add(Gpa(!0xfff), PhysAddr(0), 0x2000, RegionKind::Ram),
        Err(MapListError::Shape { .. })
    ));
    // A BAR can leave and come back.
    let bar = RegionKind::Bar { device: 1, bar: 0 };
    assert!(m.remove(bar).is_some());
    assert!(m.remove(bar).is_none());
    m.add(Gpa(BAR_GPA), PhysAddr(BAR_HPA), BAR_LEN, bar)
        .unwrap();
}
