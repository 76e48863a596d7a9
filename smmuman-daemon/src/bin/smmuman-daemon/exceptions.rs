//! The EL2 exception vectors (Arm ARM D1.3.1) and the crash report.
//!
//! The daemon takes no interrupts and expects no exceptions: every vector saves the general
//! registers, and [`handle_exception`] prints one `EXCEPTION` record (vector, decoded ESR_EL2,
//! ELR_EL2, FAR_EL2, SPSR_EL2), leaves every SMMU aborting ([`crate::failsafe`]) and exits with
//! [`exit_code::EXCEPTION`]. The daemon runs on SP_EL0,
//! so an exception switches to SP_EL2, the separate exception stack.

use crate::console;
use crate::semihosting;
use aarch64_cpu::registers::{Readable, ELR_EL2, ESR_EL2, FAR_EL2, SPSR_EL2};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};
use smmuman_daemon::esr::{Syndrome, VECTOR_NAMES};
use smmuman_daemon::exit_code;

global_asm!(
    r#"
    .macro VECTOR index
    .balign 0x80
    sub     sp, sp, #(32 * 8)
    stp     x0, x1, [sp, #(0 * 8)]
    mov     x0, #\index
    b       exception_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
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
    if REPORTING.swap(true, Ordering::SeqCst) {
        semihosting::exit(exit_code::EXCEPTION);
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
    crate::failsafe::leave_safe("exception");
    crate::exit(exit_code::EXCEPTION)
}
