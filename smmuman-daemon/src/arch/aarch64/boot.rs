//! Entry point: the arm64 Linux `Image` header and the code that runs before Rust.
//!
//! QEMU (or any loader speaking Linux's arm64 boot protocol, Documentation/arch/arm64/
//! booting.rst) loads the image at RAM base + `text_offset`, and jumps to its first byte with the
//! MMU off and x0 = the device tree's physical address. The code here:
//!
//! 1. keeps x0;
//! 2. gives SP_EL2 the exception stack and runs everything else on SP_EL0 with the boot stack
//!    (`SPSel = 0`), so that a fault caused by an overflowing boot stack is still reported;
//! 3. zeroes .bss and writes a canary at the bottom of each stack;
//! 4. at EL2: points VBAR_EL2 at the vectors, lets FP/SIMD run untrapped (CPTR_EL2.TFP = 0),
//!    and calls `rust_main(dtb)`; anywhere else: calls `rust_wrong_el(el)`.

use core::arch::global_asm;

/// Written at the bottom of each stack at boot; gone means the stack overflowed.
pub const STACK_CANARY: u64 = 0x5354_4143_4b5f_4f4b;

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       primary_entry          // code0: jump over the header
    .long   0                      // code1
    .quad   __text_offset          // text_offset: load at RAM base + this
    .quad   __image_size           // image_size: bytes the loader must keep free, bss included
    .quad   0x2                    // flags: little endian, 4 KiB pages, base near start of RAM
    .quad   0                      // res2
    .quad   0                      // res3
    .quad   0                      // res4
    .ascii  "ARM\x64"              // magic
    .long   0                      // res5: no PE/COFF header

    .section .text.boot, "ax"
primary_entry:
    mov     x19, x0                // device tree address
    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2       // CurrentEL.EL

    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    msr     spsel, #1
    mov     sp, x1
    msr     spsel, #0
    adrp    x1, __boot_stack_top
    add     x1, x1, :lo12:__boot_stack_top
    mov     sp, x1

    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:
    movz    x3, #0x4f4b
    movk    x3, #0x4b5f, lsl #16
    movk    x3, #0x4143, lsl #32
    movk    x3, #0x5354, lsl #48
    adrp    x1, __boot_stack_bottom
    add     x1, x1, :lo12:__boot_stack_bottom
    str     x3, [x1]
    adrp    x1, __exception_stack_bottom
    add     x1, x1, :lo12:__exception_stack_bottom
    str     x3, [x1]

    cmp     x20, #2
    b.ne    3f
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el2, x1
    mov     x1, #0x33ff            // CPTR_EL2 (E2H=0): RES1 bits 13:12 and 9:0, TFP=0
    msr     cptr_el2, x1
    isb
    mov     x0, x19
    bl      rust_main
    b       4f
3:
    mov     x1, #(3 << 20)         // CPACR_EL1.FPEN = 0b11: no FP/SIMD traps at EL1
    msr     cpacr_el1, x1
    isb
    mov     x0, x20
    bl      rust_wrong_el
4:
    wfe
    b       4b
"#
);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __boot_stack_bottom: u64;
    static __exception_stack_bottom: u64;
}

/// First and last-plus-one address of the image (code, data, bss, stacks).
pub fn image_bounds() -> (u64, u64) {
    // Only the addresses of the linker symbols are used, never their contents.
    let start = &raw const __image_start as u64;
    let end = &raw const __image_end as u64;
    (start, end)
}

/// Names of the stacks whose canary has been overwritten.
pub fn smashed_stacks() -> impl Iterator<Item = &'static str> {
    let bottoms = [
        ("boot", &raw const __boot_stack_bottom),
        ("exception", &raw const __exception_stack_bottom),
    ];
    bottoms.into_iter().filter_map(|(name, bottom)| {
        // SAFETY: the linker script places an 8-byte-aligned word at the bottom of each stack,
        // inside the image; the boot code wrote the canary there. A volatile read, because the
        // stack may have grown into it behind the compiler's back.
        let word = unsafe { core::ptr::read_volatile(bottom) };
        (word != STACK_CANARY).then_some(name)
    })
}
