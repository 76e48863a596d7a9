//! `irq-eventq`: a refused DMA's fault reaches the manager through the SMMU's `eventq`
//! interrupt. The manager comes up (SMMU_IRQ_CTRL.EVENTQ_IRQEN and GERROR_IRQEN on, the SPIs
//! routed through the GIC), the second `edu`, which nobody claimed, writes RAM and is refused
//! (one F_TRANSLATION record per 4 bytes), and the manager loop runs: the interrupt is taken
//! in its window, the handler sets the flag, the loop drains on the flag (`IRQ` record). With
//! `smmu-irq=off` (the control: the lines are routed in the GIC but IRQ_CTRL stays 0) no
//! interrupt arrives and the same records are drained only by polling. `IRQ_STATS` gives the
//! counts; the scenario passes when they are what its mode expects.

use iommu_core::Iova;
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::hyp::irq;
use smmuman_daemon::manager_task;
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;

/// Bytes the refused DMA writes: 16 fault records (QEMU records one per 4 bytes).
const LEN: u32 = 64;
/// Pattern of the target buffer.
const SEED: u8 = 0x47;

/// See the module docs.
pub fn irq_eventq(p: &mut Platform) -> Outcome {
    let mut m = match manager_task::start(p, crate::options::iommu_options(p)) {
        Ok(m) => m,
        Err(o) => return o,
    };
    let irq_on = irq::smmu_irqs_on();
    let Some(&(bdf, sid)) = crate::clients::edus(p).get(1) else {
        return Outcome::fail().with("reason", "needs a second edu behind the SMMU");
    };
    let mut edu = match p.take_edu(bdf) {
        Ok(e) => e,
        Err(e) => return Outcome::fail().with("reason", e),
    };
    let target = match p.guest_memory.alloc(4096, 4096) {
        Ok(t) => t,
        Err(e) => return Outcome::fail().with("reason", e),
    };
    p.guest_memory.fill_pattern(target.start(), 4096, SEED);
    let before = irq::stats();
    if let Err(e) = edu.dma_from_device(0, Iova(target.start().0), LEN, &p.clock) {
        return Outcome::fail().with("reason", e);
    }
    let blocked = p
        .guest_memory
        .check_pattern(target.start(), 4096, SEED)
        .is_none();
    // Before the loop's window: has the SMMU's line reached the GIC?
    let pending = irq::smmu_eventq_pending();
    console::line(format_args!(
        "CHECK step=irq-refused-dma-blocked ok={} bdf={bdf} sid={sid} target={} gic_eventq_pending={}",
        u8::from(blocked),
        target.start(),
        match pending {
            Some(true) => "1",
            Some(false) => "0",
            None => "none",
        }
    ));
    // The manager loop with no clients: its passes take the interrupt and drain.
    let _ = crate::clients::run(p, Some(&mut m), heapless::Vec::new());
    let s = irq::stats();
    let eventq = s.eventq - before.eventq;
    let flag_records = s.flag_records - before.flag_records;
    let poll_records = s.poll_records - before.poll_records;
    let expected_records = u64::from(LEN / 4);
    console::line(format_args!(
        "IRQ_STATS mode={} eventq_irqs={eventq} gerror_irqs={} other_irqs={} flag_drains={} flag_records={flag_records} poll_drains={} poll_records={poll_records}",
        if irq_on { "irq" } else { "poll" },
        s.gerror - before.gerror,
        s.other - before.other,
        s.flag_drains - before.flag_drains,
        s.poll_drains - before.poll_drains,
    ));
    let ok = blocked
        && if irq_on {
            pending == Some(true)
                && eventq >= 1
                && flag_records == expected_records
                && poll_records == 0
        } else {
            pending != Some(true)
                && eventq == 0
                && flag_records == 0
                && poll_records == expected_records
        };
    let outcome = if ok { Outcome::pass() } else { Outcome::fail() };
    outcome
        .with("mode", if irq_on { "irq" } else { "poll" })
        .with("eventq_irqs", eventq)
        .with("flag_records", flag_records)
        .with("poll_records", poll_records)
}
