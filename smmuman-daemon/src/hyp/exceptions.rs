//! The EL2 exception vectors (Arm ARM D1.3.1) and the crash report.
//!
//! The two IRQ entries of the current EL (SP_EL0 and SP_ELx) save the caller-saved state and
//! call `irq::handle_irq`, then return: the manager loop takes the SMMU's interrupts there
//! (`irq.rs`). The four lower-EL AArch64 entries are a guest's exits: they hand the CPU back to
//! the guest's VMM (`hyp/world_switch.rs`). The daemon expects no other exception: every other vector saves the general
//! registers, and `handle_exception` prints one `EXCEPTION` record (vector, decoded ESR_EL2,
//! ELR_EL2, FAR_EL2, SPSR_EL2), leaves every SMMU aborting ([`crate::failsafe`]) and exits with
//! [`exit_code::EXCEPTION`]. The daemon runs on SP_EL0,
//! so an exception switches to SP_EL2, the separate exception stack.

use crate::esr::{Syndrome, VECTOR_NAMES};
use crate::exit_code;
use crate::runtime::console;
use aarch64_cpu::registers::{Readable, ELR_EL2, ESR_EL2, FAR_EL2, SPSR_EL2};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

global_asm!(
    r#"
    .macro VECTOR index
    .balign 0x80
    sub     sp, sp, #(32 * 8)
    stp     x0, x1, [sp, #(0 * 8)]
    mov     x0, #\index
    b       exception_common
    .endm

    .macro IRQ_VECTOR
    .balign 0x80
    b       irq_common
    .endm

    // An exception from the guest (EL1, AArch64): back to its VMM (`hyp/world_switch.rs`).
    .macro GUEST_VECTOR index
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\index
    b       qvm_guest_exit
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global exception_vectors
exception_vectors:
    VECTOR 0
    IRQ_VECTOR
    VECTOR 2
    VECTOR 3
    VECTOR 4
    IRQ_VECTOR
    VECTOR 6
    VECTOR 7
    GUEST_VECTOR 8
    GUEST_VECTOR 9
    GUEST_VECTOR 10
    GUEST_VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

exception_common:
    stp     x2, x3, [sp, #(2 * 8)]
    stp     x4, x5, [sp, #(4 * 8)]
    stp     x6, x7, [sp, #(6 * 8)]
    stp     x8, x9, [sp, #(8 * 8)]
    stp     x10, x11, [sp, #(10 * 8)]
    stp     x12, x13, [sp, #(12 * 8)]
    stp     x14, x15, [sp, #(14 * 8)]
    stp     x16, x17, [sp, #(16 * 8)]
    stp     x18, x19, [sp, #(18 * 8)]
    stp     x20, x21, [sp, #(20 * 8)]
    stp     x22, x23, [sp, #(22 * 8)]
    stp     x24, x25, [sp, #(24 * 8)]
    stp     x26, x27, [sp, #(26 * 8)]
    stp     x28, x29, [sp, #(28 * 8)]
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #(30 * 8)]
    mov     x1, sp
    bl      handle_exception
5:
    wfe
    b       5b

    // An IRQ at EL2 (from the manager loop's window, on SP_EL0, or on SP_EL2): save every
    // register the AAPCS64 lets `handle_irq` clobber (x0-x18, x29, x30, all of q0-q31, whose
    // upper halves are caller-saved, FPSR, FPCR) and ELR_EL2/SPSR_EL2, call it, restore, ERET.
    // 45 slots of 16 bytes on SP_EL2, the exception stack.
irq_common:
    sub     sp, sp, #(45 * 16)
    stp     x0, x1, [sp, #(0 * 16)]
    stp     x2, x3, [sp, #(1 * 16)]
    stp     x4, x5, [sp, #(2 * 16)]
    stp     x6, x7, [sp, #(3 * 16)]
    stp     x8, x9, [sp, #(4 * 16)]
    stp     x10, x11, [sp, #(5 * 16)]
    stp     x12, x13, [sp, #(6 * 16)]
    stp     x14, x15, [sp, #(7 * 16)]
    stp     x16, x17, [sp, #(8 * 16)]
    stp     x18, x29, [sp, #(9 * 16)]
    mrs     x0, elr_el2
    stp     x30, x0, [sp, #(10 * 16)]
    mrs     x0, spsr_el2
    mrs     x1, fpsr
    stp     x0, x1, [sp, #(11 * 16)]
    mrs     x0, fpcr
    str     x0, [sp, #(12 * 16)]
    stp     q0, q1, [sp, #(13 * 16)]
    stp     q2, q3, [sp, #(15 * 16)]
    stp     q4, q5, [sp, #(17 * 16)]
    stp     q6, q7, [sp, #(19 * 16)]
    stp     q8, q9, [sp, #(21 * 16)]
    stp     q10, q11, [sp, #(23 * 16)]
    stp     q12, q13, [sp, #(25 * 16)]
    stp     q14, q15, [sp, #(27 * 16)]
    stp     q16, q17, [sp, #(29 * 16)]
    stp     q18, q19, [sp, #(31 * 16)]
    stp     q20, q21, [sp, #(33 * 16)]
    stp     q22, q23, [sp, #(35 * 16)]
    stp     q24, q25, [sp, #(37 * 16)]
    stp     q26, q27, [sp, #(39 * 16)]
    stp     q28, q29, [sp, #(41 * 16)]
    stp     q30, q31, [sp, #(43 * 16)]
    bl      handle_irq
    ldp     q30, q31, [sp, #(43 * 16)]
    ldp     q28, q29, [sp, #(41 * 16)]
    ldp     q26, q27, [sp, #(39 * 16)]
    ldp     q24, q25, [sp, #(37 * 16)]
    ldp     q22, q23, [sp, #(35 * 16)]
    ldp     q20, q21, [sp, #(33 * 16)]
    ldp     q18, q19, [sp, #(31 * 16)]
    ldp     q16, q17, [sp, #(29 * 16)]
    ldp     q14, q15, [sp, #(27 * 16)]
    ldp     q12, q13, [sp, #(25 * 16)]
    ldp     q10, q11, [sp, #(23 * 16)]
    ldp     q8, q9, [sp, #(21 * 16)]
    ldp     q6, q7, [sp, #(19 * 16)]
    ldp     q4, q5, [sp, #(17 * 16)]
    ldp     q2, q3, [sp, #(15 * 16)]
    ldp     q0, q1, [sp, #(13 * 16)]
    ldr     x0, [sp, #(12 * 16)]
    msr     fpcr, x0
    ldp     x0, x1, [sp, #(11 * 16)]
    msr     spsr_el2, x0
    msr     fpsr, x1
    ldp     x30, x0, [sp, #(10 * 16)]
    msr     elr_el2, x0
    ldp     x18, x29, [sp, #(9 * 16)]
    ldp     x16, x17, [sp, #(8 * 16)]
    ldp     x14, x15, [sp, #(7 * 16)]
    ldp     x12, x13, [sp, #(6 * 16)]
    ldp     x10, x11, [sp, #(5 * 16)]
    ldp     x8, x9, [sp, #(4 * 16)]
    ldp     x6, x7, [sp, #(3 * 16)]
    ldp     x4, x5, [sp, #(2 * 16)]
    ldp     x2, x3, [sp, #(1 * 16)]
    ldp     x0, x1, [sp, #(0 * 16)]
    add     sp, sp, #(45 * 16)
    eret
"#
);

/// The registers the vector saved: x0..x30 and SP_EL0 (the interrupted code's stack pointer).
#[repr(C)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// SP_EL0 at the time of the exception.
    pub sp_el0: u64,
}

/// Set once an exception is being reported; a second one gives up at once.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// Reports an unexpected exception and ends the run.
///
/// # Safety
/// Only the vector code calls this, with `frame` pointing at the registers it saved on the
/// exception stack.
#[unsafe(no_mangle)]
unsafe extern "C" fn handle_exception(vector: u64, frame: *const TrapFrame) -> ! {
    // The abort before anything that could fault again (the report).
    crate::failsafe::abort();
    if REPORTING.swap(true, Ordering::SeqCst) {
        crate::runtime::exit(exit_code::EXCEPTION, "exception");
    }
    // SAFETY: the vector code passes the frame it just filled on the exception stack.
    let frame = unsafe { &*frame };
    let name = VECTOR_NAMES
        .get(vector as usize)
        .copied()
        .unwrap_or("unknown");
    let esr = Syndrome(ESR_EL2.get());
    console::emergency(format_args!(
        "EXCEPTION vector={name} {esr} elr={:#018x} far={:#018x} spsr={:#x} sp={:#018x} lr={:#018x}",
        ELR_EL2.get(),
        FAR_EL2.get(),
        SPSR_EL2.get(),
        frame.sp_el0,
        frame.x[30],
    ));
    for (i, pair) in frame.x.chunks(4).enumerate() {
        let mut line: heapless::String<160> = heapless::String::new();
        for (j, v) in pair.iter().enumerate() {
            let _ =
                core::fmt::Write::write_fmt(&mut line, format_args!(" x{}={v:#018x}", i * 4 + j));
        }
        console::emergency(format_args!("REGS{line}"));
    }
    crate::runtime::exit(exit_code::EXCEPTION, "exception")
}
