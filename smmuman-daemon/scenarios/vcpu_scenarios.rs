//! Test scenario for the world switch alone, without a VMM: a guest of eight hand-encoded
//! instructions (A64, Arm ARM C6) in a VM's RAM exercises each kind of exit in turn, and the
//! CPU's own translation (`AT S12E1R`) is checked against the stage 2 that was built.

use iommu_core::{Access, DmaMemory, Iova};
use qvm::vcpu::{Exit, Vcpu};
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::clock::Clock;
use smmuman_daemon::guest_exit;
use smmuman_daemon::hyp::world_switch::El2Vcpu;
use smmuman_daemon::memory::{DaemonMemory, PhysRange, RamWindow};
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;
use stage2::Stage2Table;

/// Guest-physical address of the guest's RAM.
const GPA: u64 = 0x4000_0000;
/// An address outside every mapping: the guest's store there is a stage-2 data abort.
const HOLE: u64 = 0x0900_0010;

/// The guest: `movz x0, #42; hvc #0; movz x1, #0x0900, lsl #16; movk x1, #0x10;
/// str w0, [x1]; wfi; b .` (encodings from Arm ARM C6.2: MOVZ, HVC, MOVK, STR (immediate), WFI, B).
const PROGRAM: [u32; 7] = [
    0xd280_0540, // movz x0, #42
    0xd400_0002, // hvc #0
    0xd2a1_2001, // movz x1, #0x0900, lsl #16
    0xf280_0201, // movk x1, #0x10
    0xb900_0020, // str w0, [x1]
    0xd503_207f, // wfi
    0x1400_0000, // b .
];

/// `vcpu`: enter a guest, take an HVC, a data abort, a WFI and a time-slice exit in order, and
/// compare `AT S12E1R` with the stage-2 table page by page.
pub fn vcpu(p: &mut Platform) -> Outcome {
    let Some(block) = p.alloc_daemon_block(64 << 10, 4096) else {
        return Outcome::fail().with("reason", "no daemon memory for the stage-2 tables");
    };
    let vm = match p.vm_memory("vm1") {
        Ok(vm) => vm,
        Err(e) => return Outcome::fail().with("reason", e),
    };
    // SAFETY: the block was just allocated from the daemon pool for this scenario alone.
    let window = unsafe { RamWindow::identity(&[block]) };
    let Ok(mut mem) = DaemonMemory::new(window) else {
        return Outcome::fail().with("reason", "stage-2 pool");
    };
    let cfg = guest_exit::cpu_stage2_config(smmuman_daemon::hyp::world_switch::pa_range());
    let ram = vm.first;
    let mut view = vm.view;
    let result = (|| -> Result<(u64, u64), &'static str> {
        let mut table = Stage2Table::new(&mut mem, cfg).map_err(|_| "stage-2 root")?;
        table
            .map(
                &mut mem,
                Iova(GPA),
                ram.start(),
                ram.size(),
                Access::RW | Access::EXEC,
            )
            .map_err(|_| "stage-2 map")?;
        mem.publish();
        let mut code = [0u8; PROGRAM.len() * 4];
        for (i, w) in PROGRAM.iter().enumerate() {
            code[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        view.write_bytes(ram.start(), &code);
        clean_icache(ram);
        let freq = p.clock.hz();
        let mut cpu = El2Vcpu::new(
            GPA,
            0,
            table.root().0,
            cfg,
            1,
            freq / 100,
            smmuman_daemon::hyp::world_switch::SliceAccounting::Charged,
        );
        let hvc = cpu.run();
        let ok_hvc = hvc == Exit::Hvc { imm: 0 } && cpu.reg(0) == 42 && cpu.pc() == GPA + 8;
        console::line(format_args!(
            "VCPU exit=hvc ok={} x0={} pc={:#x}",
            u8::from(ok_hvc),
            cpu.reg(0),
            cpu.pc()
        ));
        let abort = cpu.run();
        let ok_abort = matches!(abort, Exit::DataAbort { ipa, iss, .. }
            if ipa == HOLE && iss & (1 << 6) != 0 && (iss >> 16) & 0x1f == 0)
            && cpu.pc() == GPA + 16;
        console::line(format_args!(
            "VCPU exit=data-abort ok={} detail=\"{abort:?}\" pc={:#x}",
            u8::from(ok_abort),
            cpu.pc()
        ));
        cpu.set_pc(cpu.pc() + 4);
        let wfi = cpu.run();
        let ok_wfi = wfi == Exit::Wfx { wfe: false } && cpu.pc() == GPA + 20;
        console::line(format_args!(
            "VCPU exit=wfi ok={} pc={:#x}",
            u8::from(ok_wfi),
            cpu.pc()
        ));
        cpu.set_pc(cpu.pc() + 4);
        // A new slice (as after the VMM gave the CPU away): the guest spins through all of it.
        cpu.next_slice();
        let start = p.clock.now();
        let timer = cpu.run();
        let waited = p.clock.now().saturating_sub(start).as_micros() as u64;
        let ok_timer = timer == Exit::Timer && cpu.pc() == GPA + 24;
        console::line(format_args!(
            "VCPU exit=timer ok={} waited_us={waited} pc={:#x}",
            u8::from(ok_timer),
            cpu.pc()
        ));
        // The CPU's translation, page by page, against the table.
        let mut pages = 0;
        let mut mismatches = 0;
        for off in (0..ram.size()).step_by(4096) {
            let cpu_pa = smmuman_daemon::hyp::world_switch::cpu_translate(
                cpu.vttbr(),
                cpu.vtcr(),
                GPA + off,
            );
            let table_pa = table.translate(&mem, Iova(GPA + off)).map(|t| t.pa.0);
            pages += 1;
            if cpu_pa != table_pa || cpu_pa != Some(ram.start().0 + off) {
                mismatches += 1;
            }
        }
        let hole_unmapped =
            smmuman_daemon::hyp::world_switch::cpu_translate(cpu.vttbr(), cpu.vtcr(), HOLE)
                .is_none();
        console::line(format_args!(
            "VCPU translate pages={pages} mismatches={mismatches} hole_unmapped={}",
            u8::from(hole_unmapped)
        ));
        if ok_hvc && ok_abort && ok_wfi && ok_timer && mismatches == 0 && hole_unmapped {
            Ok((pages, waited))
        } else {
            Err("an exit or a translation was wrong")
        }
    })();
    match result {
        Ok((pages, ticks)) => Outcome::pass()
            .with("exits", 4)
            .with("pages_compared", pages)
            .with("slice_us", ticks),
        Err(e) => Outcome::fail().with("reason", e),
    }
}

/// Makes code just written to `range` visible to instruction fetches (Arm ARM D7.5.2: clean
/// the data cache to the point of unification, invalidate the instruction cache).
pub fn clean_icache(range: PhysRange) {
    let end = range.start().0 + range.size();
    let mut line = range.start().0 & !63;
    while line < end {
        // SAFETY: cache maintenance by address on RAM the EL2 identity map covers.
        unsafe { core::arch::asm!("dc cvau, {a}", a = in(reg) line) };
        line += 64;
    }
    // SAFETY: barriers and instruction-cache invalidation only.
    unsafe { core::arch::asm!("dsb ish", "ic ialluis", "dsb ish", "isb") };
}
