//! The SMMU's wired interrupts through the GICv3 at EL2: a refused DMA's fault records reach
//! the manager because the `eventq` interrupt fired, was taken in the manager loop's window,
//! set the flag, and the loop drained on it. The control leaves SMMU_IRQ_CTRL at 0 (the GIC
//! routing unchanged): no interrupt reaches the GIC, and the same records are found only by
//! polling, so the test can tell the two paths apart.

use tests_qemu::{run, Record, Run};

fn boot(extra: &[&str]) -> Run {
    run("irq-eventq", extra).unwrap_or_else(|e| panic!("{e}"))
}

fn one<'r>(run: &'r Run, kind: &str) -> &'r Record {
    let all: Vec<&Record> = run.records(kind).collect();
    assert_eq!(
        all.len(),
        1,
        "one {kind} record expected; {}",
        run.describe()
    );
    all[0]
}

fn field<'r>(r: &'r Record, key: &str) -> &'r str {
    r.get(key)
        .unwrap_or_else(|| panic!("no {key} in {}", r.line))
}

/// The GIC comes up from the device tree's arm,gic-v3 node, and the SMMU's eventq and gerror
/// lines (SPI 74 and 77: INTID 106 and 109, edge-rising on virt) are the ones routed.
fn assert_gic(run: &Run) {
    let gic = one(run, "GIC");
    assert_eq!(field(gic, "dist"), "0x0000000008000000+0x10000");
    assert_eq!(field(gic, "redist"), "0x00000000080a0000+0xf60000");
    // GICD_CTLR: ARE (bit 4) and EnableGrp1 (bit 1) on, DS (bit 6) as QEMU reports it.
    assert_eq!(field(gic, "gicd_ctlr"), "0x52", "{}", gic.line);
    let irq = one(run, "SMMU_IRQ");
    assert_eq!(field(irq, "eventq"), "106/edge", "{}", irq.line);
    assert_eq!(field(irq, "gerror"), "109/edge", "{}", irq.line);
}

#[test]
fn a_refused_dma_is_delivered_by_the_eventq_interrupt() {
    let run = boot(&[]);
    run.assert_pass();
    assert_gic(&run);
    let irq = one(&run, "SMMU_IRQ");
    assert_eq!(field(irq, "mode"), "irq");
    // SMMU_IRQ_CTRLACK = EVENTQ_IRQEN (bit 2) | GERROR_IRQEN (bit 0).
    assert_eq!(field(irq, "irq_ctrl"), "0x5", "{}", irq.line);
    let dma = one(&run, "CHECK");
    assert_eq!(field(dma, "ok"), "1", "the DMA was refused: {}", dma.line);
    assert_eq!(field(dma, "gic_eventq_pending"), "1", "{}", dma.line);
    // The flag path drained all 16 records (one per 4 bytes of the 64-byte DMA).
    let flagged = one(&run, "IRQ");
    assert!(field(flagged, "count").parse::<u64>().unwrap() >= 1);
    assert_eq!(field(flagged, "drained"), "16", "{}", flagged.line);
    assert_eq!(field(flagged, "path"), "flag");
    let stats = one(&run, "IRQ_STATS");
    assert_eq!(field(stats, "flag_records"), "16", "{}", stats.line);
    assert_eq!(field(stats, "poll_records"), "0", "{}", stats.line);
    assert_eq!(field(stats, "other_irqs"), "0", "{}", stats.line);
    assert_eq!(
        logged_records(&run),
        (1, 16),
        "the manager logged every record, as one burst: {}",
        run.describe()
    );
}

/// The manager's FAULT lines (one per burst) and the records they count.
fn logged_records(run: &Run) -> (usize, u64) {
    let lines: Vec<_> = run.records("FAULT").collect();
    let records = lines
        .iter()
        .map(|f| {
            f.get("count")
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    (lines.len(), records)
}

#[test]
fn without_irq_ctrl_no_interrupt_arrives_and_the_records_are_polled() {
    let run = boot(&["smmu-irq=off"]);
    run.assert_pass();
    assert_gic(&run);
    let irq = one(&run, "SMMU_IRQ");
    assert_eq!(field(irq, "mode"), "poll");
    assert_eq!(field(irq, "irq_ctrl"), "0x0", "{}", irq.line);
    let dma = one(&run, "CHECK");
    assert_eq!(field(dma, "ok"), "1", "{}", dma.line);
    assert_eq!(field(dma, "gic_eventq_pending"), "0", "{}", dma.line);
    assert_eq!(run.records("IRQ").count(), 0, "{}", run.describe());
    let stats = one(&run, "IRQ_STATS");
    assert_eq!(field(stats, "eventq_irqs"), "0", "{}", stats.line);
    assert_eq!(field(stats, "flag_records"), "0", "{}", stats.line);
    assert_eq!(field(stats, "poll_records"), "16", "{}", stats.line);
    assert_eq!(logged_records(&run), (1, 16), "{}", run.describe());
}
