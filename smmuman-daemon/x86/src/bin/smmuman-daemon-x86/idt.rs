//! The interrupt descriptor table: every CPU exception (vectors 0–31) ends in one
//! `EXCEPTION vector=... name=... error=... rip=... cr2=...` record, the IOMMU left in its safe
//! state ([`crate::failsafe`]) and exit code [`exit_code::EXCEPTION`].
//!
//! Intel SDM Vol. 3A §7.14.1 (Figure 7-8 "64-Bit IDT Gate Descriptors"): 16 bytes each, offset
//! 15:0, segment selector, IST (bits 2:0 of byte 4), type/attributes (byte 5: P = 1, DPL = 0,
//! type 0xE = 64-bit interrupt gate), offset 31:16, offset 63:32, reserved. §7.3 Table 7-1 lists
//! which exceptions push an error code (8, 10–14, 17, 21, 29, 30); the stubs push a 0 for the
//! others so that one common path sees the same frame: vector, error code, then the CPU's RIP,
//! CS, RFLAGS, RSP, SS (§7.14.2: the CPU aligns RSP to 16 bytes before pushing).
//!
//! Two interrupt vectors are present besides (the other 222 gates are not present: a stray
//! interrupt there raises #NP, which ends like any exception): the VT-d fault event
//! ([`crate::irq::VTD_FAULT_VECTOR`]), whose stub saves every caller-saved register, clears
//! DF (the SysV ABI's entry state), calls `vtd_fault_interrupt` on a 16-byte aligned stack and
//! returns with IRETQ; and the local APIC's spurious vector, which returns at once (SDM Vol. 3A
//! §11.9: no EOI for a spurious interrupt). The image runs with RFLAGS.IF = 0 except in the
//! interrupt window of its service loop ([`crate::irq::window`]).

use crate::boot::CODE64;
use core::arch::global_asm;
use smmuman_daemon::exit_code;

global_asm!(
    r#"
    .section .text.exceptions, "ax"
    .code64
exc_stub_0:
    push 0
    push 0
    jmp exc_common
exc_stub_1:
    push 0
    push 1
    jmp exc_common
exc_stub_2:
    push 0
    push 2
    jmp exc_common
exc_stub_3:
    push 0
    push 3
    jmp exc_common
exc_stub_4:
    push 0
    push 4
    jmp exc_common
exc_stub_5:
    push 0
    push 5
    jmp exc_common
exc_stub_6:
    push 0
    push 6
    jmp exc_common
exc_stub_7:
    push 0
    push 7
    jmp exc_common
exc_stub_8:
    push 8
    jmp exc_common
exc_stub_9:
    push 0
    push 9
    jmp exc_common
exc_stub_10:
    push 10
    jmp exc_common
exc_stub_11:
    push 11
    jmp exc_common
exc_stub_12:
    push 12
    jmp exc_common
exc_stub_13:
    push 13
    jmp exc_common
exc_stub_14:
    push 14
    jmp exc_common
exc_stub_15:
    push 0
    push 15
    jmp exc_common
exc_stub_16:
    push 0
    push 16
    jmp exc_common
exc_stub_17:
    push 17
    jmp exc_common
exc_stub_18:
    push 0
    push 18
    jmp exc_common
exc_stub_19:
    push 0
    push 19
    jmp exc_common
exc_stub_20:
    push 0
    push 20
    jmp exc_common
exc_stub_21:
    push 21
    jmp exc_common
exc_stub_22:
    push 0
    push 22
    jmp exc_common
exc_stub_23:
    push 0
    push 23
    jmp exc_common
exc_stub_24:
    push 0
    push 24
    jmp exc_common
exc_stub_25:
    push 0
    push 25
    jmp exc_common
exc_stub_26:
    push 0
    push 26
    jmp exc_common
exc_stub_27:
    push 0
    push 27
    jmp exc_common
exc_stub_28:
    push 0
    push 28
    jmp exc_common
exc_stub_29:
    push 29
    jmp exc_common
exc_stub_30:
    push 30
    jmp exc_common
exc_stub_31:
    push 0
    push 31
    jmp exc_common
vtd_fault_stub:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    push rbp
    mov rbp, rsp
    and rsp, -16
    cld
    call vtd_fault_interrupt
    mov rsp, rbp
    pop rbp
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
spurious_stub:
    iretq
exc_common:
    mov rdi, [rsp]
    mov rsi, [rsp + 8]
    mov rdx, [rsp + 16]
    mov rcx, cr2
    and rsp, -16
    call exception_entry
1:
    hlt
    jmp 1b

    .section .rodata.exc_stubs, "a"
    .balign 8
    .global exc_stubs
exc_stubs:
    .quad exc_stub_0
    .quad exc_stub_1
    .quad exc_stub_2
    .quad exc_stub_3
    .quad exc_stub_4
    .quad exc_stub_5
    .quad exc_stub_6
    .quad exc_stub_7
    .quad exc_stub_8
    .quad exc_stub_9
    .quad exc_stub_10
    .quad exc_stub_11
    .quad exc_stub_12
    .quad exc_stub_13
    .quad exc_stub_14
    .quad exc_stub_15
    .quad exc_stub_16
    .quad exc_stub_17
    .quad exc_stub_18
    .quad exc_stub_19
    .quad exc_stub_20
    .quad exc_stub_21
    .quad exc_stub_22
    .quad exc_stub_23
    .quad exc_stub_24
    .quad exc_stub_25
    .quad exc_stub_26
    .quad exc_stub_27
    .quad exc_stub_28
    .quad exc_stub_29
    .quad exc_stub_30
    .quad exc_stub_31
    .global vtd_fault_stub_addr
vtd_fault_stub_addr:
    .quad vtd_fault_stub
    .global spurious_stub_addr
spurious_stub_addr:
    .quad spurious_stub
"#
);

extern "C" {
    static exc_stubs: [u64; 32];
    static vtd_fault_stub_addr: u64;
    static spurious_stub_addr: u64;
}

/// One 64-bit interrupt gate.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Gate([u64; 2]);

/// The IDT: 256 gates (vectors 0–31 the exceptions, two interrupt vectors, the rest not
/// present).
static mut IDT: [Gate; 256] = [Gate([0; 2]); 256];

/// The operand of LIDT: limit u16, base u64.
#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Encodes an interrupt gate to `handler` in the 64-bit code segment.
const fn gate(handler: u64) -> Gate {
    let lo = (handler & 0xffff)
        | ((CODE64 as u64) << 16)
        | (0x8e << 40) // P = 1, DPL = 0, type = 0xE (interrupt gate)
        | (((handler >> 16) & 0xffff) << 48);
    Gate([lo, handler >> 32])
}

/// Fills the IDT and loads it.
pub fn init() {
    // SAFETY: runs once on the only CPU with interrupts off, before any exception can be
    // taken through the table; `exc_stubs` is the constant table the assembly above defines.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (g, stub) in idt.iter_mut().zip(exc_stubs.iter()) {
            *g = gate(*stub);
        }
        idt[usize::from(crate::irq::VTD_FAULT_VECTOR)] = gate(vtd_fault_stub_addr);
        idt[usize::from(crate::lapic::SPURIOUS_VECTOR)] = gate(spurious_stub_addr);
        let p = Pointer {
            limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
            base: idt.as_ptr() as u64,
        };
        core::arch::asm!("lidt [{}]", in(reg) &p, options(readonly, nostack, preserves_flags));
    }
}

/// Mnemonics of the architectural exceptions (SDM Vol. 3A Table 7-1).
const NAMES: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
    "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved",
    "reserved", "reserved", "reserved", "reserved", "#HV", "#VC", "#SX", "reserved",
];

#[no_mangle]
extern "C" fn exception_entry(vector: u64, error: u64, rip: u64, cr2: u64) -> ! {
    // The fail-safe before the report: a fault while reporting leaves no master running.
    crate::failsafe::stop();
    let name = NAMES.get(vector as usize).copied().unwrap_or("?");
    crate::console::emergency(format_args!(
        "EXCEPTION vector={vector} name={name} error={error:#x} rip={rip:#018x} cr2={cr2:#018x}"
    ));
    crate::failsafe::leave_safe("exception");
    crate::exit(exit_code::EXCEPTION)
}
