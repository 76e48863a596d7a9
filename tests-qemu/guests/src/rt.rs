//! The bare-metal runtime (aarch64, EL1, MMU off): entry, exception vectors, the console,
//! hypercalls, exit and the panic handler. The only module with `unsafe`.
//!
//! Entry (`_start`): an arm64 Linux Image header (Documentation/arch/arm64/booting.rst §4), so
//! the flattened ELF boots under plain QEMU too; then: keep x0 (the device tree), point SP at
//! the stack above .bss, zero .bss, let FP/SIMD run (CPACR_EL1.FPEN = 0b11, Arm ARM D19.2.30:
//! Rust code uses SIMD registers), install the vectors (VBAR_EL1) and call `guest_main(x0)`,
//! which each guest binary defines.
//!
//! Vectors: an `HVC` at EL1 with no EL2 to take it is an undefined instruction (Arm ARM
//! C6.2.128 HVC: UNDEFINED when EL2 is not implemented); QEMU `virt` without
//! `virtualization=on` still answers PSCI calls itself but nothing else. The synchronous
//! handler turns such an `HVC` into a return of SMCCC NOT_SUPPORTED, so the same guest runs
//! with and without a VMM. An undefined instruction inside a system-register probe
//! ([`Sysregs`]) is noted and skipped. Any other exception prints
//! `GUEST_EXCEPTION esr=.. elr=.. far=..` and exits with status 2.

use crate::clock::Clock;
use crate::layout::Range;
use crate::phys::Phys;
use crate::{devtree, Guest};
use core::arch::{asm, global_asm};
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicU64, Ordering};
use qvm::abi;

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       guest_entry            // code0: branch over the header
    .long   0                      // code1
    .quad   __text_offset          // load offset from RAM base
    .quad   __image_size           // bytes from _start the loader keeps free, bss included
    .quad   0x2                    // flags: little endian, 4 KiB pages
    .quad   0, 0, 0                // res2..res4
    .ascii  "ARM\x64"              // magic
    .long   0                      // res5

    .section .text.boot, "ax"
guest_entry:
    mov     x19, x0
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:  mov     x1, #(3 << 20)         // CPACR_EL1.FPEN = 0b11: no FP/SIMD traps
    msr     cpacr_el1, x1
    adrp    x1, guest_vectors
    add     x1, x1, :lo12:guest_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      guest_main
3:  wfe
    b       3b

    // VBAR_EL1 table (Arm ARM D1.3.1): 16 entries of 0x80 bytes, 2 KiB aligned.
    .section .text.vectors, "ax"
    .balign 2048
guest_vectors:
    .rept   16
    .balign 0x80
    b       guest_sync
    .endr

    // x9..x13 are free here: the hvc() wrapper lists them as clobbered.
guest_sync:
    mrs     x9, esr_el1
    lsr     x10, x9, #26           // ESR_EL1.EC
    cbnz    x10, 4f                // EC 0: unknown reason (an undefined instruction)
    mrs     x11, elr_el1
    ldr     w12, [x11]
    and     w12, w12, #0xffe0001f  // HVC #imm16 = 0xd4000002 | imm16 << 5
    movz    w13, #0x0002
    movk    w13, #0xd400, lsl #16
    cmp     w12, w13
    b.ne    5f
    mov     x0, #-1                // SMCCC NOT_SUPPORTED
    add     x11, x11, #4
    msr     elr_el1, x11
    eret
    // An undefined instruction inside a probe (`probe`): note it and skip the instruction.
5:  adrp    x12, qvm_guest_probe_armed
    ldr     x13, [x12, :lo12:qvm_guest_probe_armed]
    cbz     x13, 4f
    adrp    x12, qvm_guest_probe_faulted
    str     x13, [x12, :lo12:qvm_guest_probe_faulted]
    add     x11, x11, #4
    msr     elr_el1, x11
    eret
4:  mov     x0, x9
    mrs     x1, elr_el1
    mrs     x2, far_el1
    b       guest_exception
"#
);

/// Physical memory through volatile accesses (the MMU is off: every address is physical).
pub struct Volatile;

impl Phys for Volatile {
    fn read8(&self, pa: u64) -> u8 {
        // SAFETY: a guest only names RAM the device tree gave it or registers of its devices;
        // with the MMU off an access cannot alias a Rust object except the guest's own image,
        // which callers keep out of (layout::dma_area).
        unsafe { core::ptr::read_volatile(pa as *const u8) }
    }
    fn write8(&self, pa: u64, value: u8) {
        // SAFETY: as read8.
        unsafe { core::ptr::write_volatile(pa as *mut u8, value) }
    }
    fn read32(&self, pa: u64) -> u32 {
        // SAFETY: as read8; callers pass 4-byte aligned register addresses.
        unsafe { core::ptr::read_volatile(pa as *const u32) }
    }
    fn write32(&self, pa: u64, value: u32) {
        // SAFETY: as read32.
        unsafe { core::ptr::write_volatile(pa as *mut u32, value) }
    }
    fn read64(&self, pa: u64) -> u64 {
        // SAFETY: as read8; callers pass 8-byte aligned register addresses.
        unsafe { core::ptr::read_volatile(pa as *const u64) }
    }
    fn write64(&self, pa: u64, value: u64) {
        // SAFETY: as read64.
        unsafe { core::ptr::write_volatile(pa as *mut u64, value) }
    }
}

/// The generic timer's physical counter.
pub struct Counter;

impl Clock for Counter {
    fn ticks(&self) -> u64 {
        let t: u64;
        // SAFETY: reads CNTPCT_EL0 after an ISB (Arm ARM D12.2: counter reads may be
        // speculated); no memory is touched.
        unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) t, options(nomem, nostack)) };
        t
    }
    fn frequency(&self) -> u64 {
        let f: u64;
        // SAFETY: reads CNTFRQ_EL0; no memory is touched.
        unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
        f.max(1)
    }
}

/// The PL011 the console writes to (the ABI's until the device tree names one).
static UART: AtomicU64 = AtomicU64::new(abi::UART_BASE);

/// The console: bytes to the PL011 data register (PL011 TRM DDI 0183 §3.3.1 UARTDR), waiting
/// while UARTFR.TXFF (bit 5, §3.3.3) says the FIFO is full. qvm traps and emulates both.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let base = UART.load(Ordering::Relaxed);
        for b in s.bytes() {
            for _ in 0..100_000 {
                if Volatile.read32(base + abi::UART_FR) & (1 << 5) == 0 {
                    break;
                }
            }
            Volatile.write32(base + abi::UART_DR, u32::from(b));
        }
        Ok(())
    }
}

/// `HVC #0` with an SMCCC function id and three arguments; returns x0 (SMCCC, Arm DEN 0028
/// §2.5: x0..x3 arguments, result in x0; x4..x17 may be changed by the callee).
pub fn hvc(function: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut x0 = u64::from(function);
    // SAFETY: the hypervisor (or QEMU's PSCI emulation, or the vectors above for an HVC
    // nobody takes) returns here with only the listed registers changed.
    unsafe {
        asm!(
            "hvc #0",
            inout("x0") x0,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    x0
}

/// Ends the guest: prints `EXIT status=<n>`, asks qvm (QVM_EXIT), and when no VMM answers,
/// PSCI SYSTEM_OFF (DEN 0022 §5.10), which QEMU `virt` implements itself.
pub fn exit(status: u32) -> ! {
    let _ = writeln!(Console, "EXIT status={status}");
    hvc(abi::QVM_EXIT, u64::from(status), 0, 0);
    hvc(abi::PSCI_SYSTEM_OFF, 0, 0, 0);
    loop {
        // SAFETY: waits for an event; no memory or register state is changed.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// Any exception other than an unanswered HVC: report and stop.
#[unsafe(no_mangle)]
extern "C" fn guest_exception(esr: u64, elr: u64, far: u64) -> ! {
    let _ = writeln!(
        Console,
        "GUEST_EXCEPTION esr={esr:#x} ec={:#x} elr={elr:#x} far={far:#x}",
        esr >> 26
    );
    exit(2)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Console, "GUEST_PANIC {info}");
    exit(1)
}

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The device tree at `dtb` (x0 at entry), after checking its header.
fn device_tree(dtb: u64) -> Result<&'static [u8], &'static str> {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return Err("x0 is not a device tree address (boot the raw Image, or under qvm)");
    }
    // Devicetree spec §5.2: magic 0xd00dfeed, then totalsize, both big-endian.
    if u32::from_be(Volatile.read32(dtb)) != 0xd00d_feed {
        return Err("no device tree magic at x0");
    }
    let size = u32::from_be(Volatile.read32(dtb + 4));
    if !(40..=(2 << 20)).contains(&size) {
        return Err("device tree totalsize is implausible");
    }
    // SAFETY: the header says the blob is `size` bytes of RAM at `dtb`; nothing writes it
    // (DMA buffers avoid it, layout::dma_area).
    Ok(unsafe { core::slice::from_raw_parts(dtb as *const u8, size as usize) })
}

/// Runs `guest` with the machine described by the device tree at `dtb`, then exits with its
/// status; a device tree that cannot be read prints `GUEST_FATAL` and exits 1.
pub fn start(dtb: u64, guest: impl FnOnce(&mut Guest<'_>) -> u32) -> ! {
    let info = match device_tree(dtb)
        .map_err(Fatal::Str)
        .and_then(|b| devtree::read(b, dtb).map_err(Fatal::Dt))
    {
        Ok(info) => info,
        Err(e) => {
            let _ = writeln!(Console, "GUEST_FATAL dtb={dtb:#x} reason=\"{e}\"");
            exit(1)
        }
    };
    if let Some(uart) = info.uart {
        UART.store(uart, Ordering::Relaxed);
    }
    let start = &raw const __image_start as u64;
    let end = &raw const __image_end as u64;
    let mut console = Console;
    let mut g = Guest {
        phys: &Volatile,
        clock: &Counter,
        out: &mut console,
        dt: info,
        image: Range::new(start, end - start),
    };
    let status = guest(&mut g);
    exit(status)
}

/// The address of the guest's own code (for `unity`).
pub fn code_address() -> u64 {
    code_address as fn() -> u64 as usize as u64
}

/// Why the device tree could not be read.
enum Fatal {
    Str(&'static str),
    Dt(devtree::DtError),
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Dt(e) => write!(f, "{e}"),
        }
    }
}

/// Nonzero while a probe runs: the vectors then skip an undefined instruction.
#[unsafe(no_mangle)]
static qvm_guest_probe_armed: AtomicU64 = AtomicU64::new(0);
/// Set by the vectors when a probed instruction was undefined.
#[unsafe(no_mangle)]
static qvm_guest_probe_faulted: AtomicU64 = AtomicU64::new(0);

/// Runs `access` (one instruction in an `asm!` that lists x9..x13 as clobbered, which the
/// vectors use); `false` when it was UNDEFINED (the vectors skipped it).
fn probe(access: impl FnOnce()) -> bool {
    qvm_guest_probe_faulted.store(0, Ordering::SeqCst);
    qvm_guest_probe_armed.store(1, Ordering::SeqCst);
    access();
    qvm_guest_probe_armed.store(0, Ordering::SeqCst);
    qvm_guest_probe_faulted.load(Ordering::SeqCst) == 0
}

/// `MRS` of register `$name` under a probe: `Some(value)`, or `None` when UNDEFINED.
macro_rules! probe_read {
    ($name:literal) => {{
        let mut v: u64 = 0;
        let ok = probe(|| {
            // SAFETY: a system register read at EL1; if it is UNDEFINED the vectors skip it
            // (x9..x13 are theirs). No memory is touched.
            unsafe {
                asm!(concat!("mrs {v}, ", $name), v = inout(reg) v,
                     out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                     options(nostack))
            }
        });
        ok.then_some(v)
    }};
}

/// `MSR` of register `$name` under a probe: `false` when UNDEFINED.
macro_rules! probe_write {
    ($name:literal, $v:expr) => {
        probe_insn!(concat!("msr ", $name, ", {v}"), $v)
    };
}

/// One instruction `$insn` taking `{v}` under a probe: `false` when UNDEFINED.
macro_rules! probe_insn {
    ($insn:expr, $v:expr) => {{
        let v: u64 = $v;
        probe(|| {
            // SAFETY: a system register write or set/way cache maintenance at EL1 on test
            // state only (PMU, debug, virtual timer, GIC CPU interface; the guest runs with its
            // MMU and caches off, so no data of its own is in the caches); breakpoints and
            // watchpoints stay disabled (their E bit is never written).
            unsafe {
                asm!($insn, "isb", v = in(reg) v,
                     out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                     options(nostack))
            }
        })
    }};
}

/// The test registers of [`crate::cpu_state`], reached directly.
pub struct Sysregs;

impl crate::cpu_state::CpuRegs for Sysregs {
    fn read(&self, reg: crate::cpu_state::Reg) -> Option<u64> {
        use crate::cpu_state::Reg::*;
        match reg {
            Pmcr => probe_read!("pmcr_el0"),
            Pmccfiltr => probe_read!("pmccfiltr_el0"),
            Pmselr => probe_read!("pmselr_el0"),
            Pmcntenset => probe_read!("pmcntenset_el0"),
            Pmuserenr => probe_read!("pmuserenr_el0"),
            Dbgbvr0 => probe_read!("dbgbvr0_el1"),
            Dbgbcr0 => probe_read!("dbgbcr0_el1"),
            Dbgwvr0 => probe_read!("dbgwvr0_el1"),
            Dbgwcr0 => probe_read!("dbgwcr0_el1"),
            Mdscr => probe_read!("mdscr_el1"),
            CntvCtl => probe_read!("cntv_ctl_el0"),
            CntvCval => probe_read!("cntv_cval_el0"),
            IccPmr => probe_read!("icc_pmr_el1"),
            IccBpr1 => probe_read!("icc_bpr1_el1"),
            IccIgrpen1 => probe_read!("icc_igrpen1_el1"),
        }
    }

    fn write(&self, reg: crate::cpu_state::Reg, value: u64) -> bool {
        use crate::cpu_state::Reg::*;
        match reg {
            Pmcr => probe_write!("pmcr_el0", value),
            Pmccfiltr => probe_write!("pmccfiltr_el0", value),
            Pmselr => probe_write!("pmselr_el0", value),
            Pmcntenset => probe_write!("pmcntenset_el0", value),
            Pmuserenr => probe_write!("pmuserenr_el0", value),
            Dbgbvr0 => probe_write!("dbgbvr0_el1", value),
            Dbgbcr0 => probe_write!("dbgbcr0_el1", value),
            Dbgwvr0 => probe_write!("dbgwvr0_el1", value),
            Dbgwcr0 => probe_write!("dbgwcr0_el1", value),
            Mdscr => probe_write!("mdscr_el1", value),
            CntvCtl => probe_write!("cntv_ctl_el0", value),
            CntvCval => probe_write!("cntv_cval_el0", value),
            IccPmr => probe_write!("icc_pmr_el1", value),
            IccBpr1 => probe_write!("icc_bpr1_el1", value),
            IccIgrpen1 => probe_write!("icc_igrpen1_el1", value),
        }
    }

    fn id_aa64dfr0(&self) -> Option<u64> {
        probe_read!("id_aa64dfr0_el1")
    }

    fn set_way(&self) -> bool {
        // Level 1 (bits 3:1 = 0), set 0, way 0.
        probe_insn!("dc isw, {v}", 0) && probe_insn!("dc cisw, {v}", 0)
    }
}

/// `MSR CNTP_CTL_EL0, x3` with 0: the EL1 physical timer, which the host traps
/// (CNTHCTL_EL2.EL1PCEN = 0) and does not emulate, so the VMM stops the guest here and names the
/// register. Returns only where no host traps it.
pub fn touch_physical_timer() {
    // SAFETY: writing 0 disables the EL1 physical timer; no memory is touched. x3 is named so
    // the host's report can be checked (Rt = 3).
    unsafe { asm!("msr cntp_ctl_el0, x3", in("x3") 0u64, options(nostack, nomem)) };
}
