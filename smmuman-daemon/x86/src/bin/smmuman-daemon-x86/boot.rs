//! PVH entry and the 32→64-bit trampoline, then [`crate::rust_entry`].
//!
//! # The PVH note
//! QEMU's `-kernel` loader boots an ELF through the Xen PVH boot ABI when it carries a Xen ELF
//! note of type 18, XEN_ELFNOTE_PHYS32_ENTRY (Xen `public/elfnote.h`): its descriptor is the
//! 32-bit physical entry address. An ELF note (System V gABI "Note Section") is namesz u32,
//! descsz u32, type u32, the name padded to 4 bytes, the descriptor padded to 4 bytes.
//!
//! # Entry state (Xen `docs/misc/pvh.pandoc`)
//! 32-bit protected mode, paging off, CR0.PE = 1, interrupts off, flat 4 GiB CS/DS segments,
//! EBX = the physical address of `hvm_start_info`. No stack.
//!
//! # The trampoline (Intel SDM Vol. 3A §10.8.5 "Initializing IA-32e Mode")
//! 1. Zero `.bss` (page tables, stack and Rust statics live there), then save EBX in it.
//! 2. Build an identity map of the low 4 GiB with 2 MiB pages (SDM Vol. 3A §5.5 "4-Level
//!    Paging", Table 5-15 PML4E, 5-17 PDPTE referencing a page directory, 5-18 PDE mapping a
//!    2 MiB page: P bit 0, R/W bit 1, PWT bit 3, PCD bit 4, PS bit 7). One PML4 entry → one
//!    PDPT with 4 entries → 4 page directories × 512 PDEs.
//!    Memory types (SDM Vol. 3A §13.12.3 "Selecting a Memory Type from the PAT"): the PAT is
//!    left at its power-up value (entry 0 WB, entry 3 UC), so PCD = PWT = 0 selects WB and
//!    PCD = PWT = 1 selects UC. The first GiB (RAM, the image, ACPI tables) is WB, everything
//!    from 1 GiB to 4 GiB (ECAM at 0xb0000000, the VT-d unit at 0xfed90000, the HPET, the
//!    LAPIC/IOAPIC, the PCI BAR window) is UC. [`refine_memory_types`] then makes every 2 MiB
//!    page of the first GiB that the memory map does not call RAM uncacheable too.
//! 3. CR4.PAE (bit 5), CR3 = PML4, IA32_EFER.LME (MSR 0xC0000080 bit 8), CR0.PG (bit 31) and
//!    CR0.WP (bit 16): the CPU is now in compatibility mode.
//! 4. Load a GDT (SDM Vol. 3A §3.4.5 "Segment Descriptors"; "Code-Segment Descriptor in 64-bit
//!    Mode": L = 1, D = 0) and far-return into the 64-bit code segment.
//!
//! SDM section numbers are those of the 2024+ editions (Vol. 3A chapters moved by one against
//! older editions: "4-Level Paging" was §4.5); the titles are quoted where that matters.
//! 5. 64-bit: data segments, the stack, `rust_entry(start_info)`.

use core::arch::global_asm;

/// Selector of the 64-bit code segment (GDT entry 1).
pub const CODE64: u16 = 0x08;

global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz: a 32-bit address */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start
    .balign 4

    .section .bss.pagetables, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
    .global boot_pd
boot_pd:   .skip 4 * 4096

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0                     /* null descriptor */
    .quad 0x00af9a000000ffff    /* 0x08: code, P, DPL 0, execute/read, L = 1, G = 1 */
    .quad 0x00cf92000000ffff    /* 0x10: data, P, DPL 0, read/write, D/B = 1, G = 1 */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    /* 1. zero .bss (EBX preserved), then keep the start_info address */
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd
    mov dword ptr [pvh_start_info], ebx

    /* 2. identity map of 4 GiB */
    mov eax, offset boot_pdpt
    or eax, 0x3                 /* P | R/W */
    mov dword ptr [boot_pml4], eax
    xor ecx, ecx
1:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov dword ptr [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb 1b
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                /* P | R/W | PS: a 2 MiB page, WB */
    cmp ecx, 512
    jb 3f
    or eax, 0x18                /* from 1 GiB: PWT | PCD, UC */
3:
    mov dword ptr [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jb 2b

    /* 3. PAE, CR3, EFER.LME, paging */
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1 << 8
    wrmsr
    mov eax, cr0
    or eax, 0x80010001
    mov cr0, eax

    /* 4. GDT, far return into 64-bit code */
    lgdt [boot_gdt_ptr]
    mov eax, 0x08
    push eax
    mov eax, offset long_mode
    push eax
    retf

    .code64
long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + __stack_top]
    xor ebp, ebp
    mov edi, dword ptr [rip + pvh_start_info]
    call rust_entry
4:
    hlt
    jmp 4b
"#
);

/// Where EBX pointed at entry (the trampoline writes it after zeroing `.bss`, and passes it to
/// `rust_entry`).
#[no_mangle]
static mut pvh_start_info: u32 = 0;

extern "C" {
    static mut boot_pd: [u64; 2048];
}

/// PDE bits: PWT | PCD, i.e. PAT entry 3 = UC (SDM Vol. 3A Table 5-18, §13.12.3).
const PDE_UNCACHED: u64 = (1 << 3) | (1 << 4);

/// Makes every 2 MiB page of the identity map whose whole range the memory map calls RAM or
/// ACPI (`is_ram`) write-back and every other page uncacheable, then reloads CR3 so the TLB
/// forgets the old attributes (SDM Vol. 3A §5.10.4.1: a MOV to CR3 invalidates non-global
/// entries).
///
/// Called once, before any device register is touched: pages that change from WB to UC here
/// were never accessed through the WB mapping (only RAM was), so no stale cache line exists.
pub fn refine_memory_types(is_ram: impl Fn(u64, u64) -> bool) -> (u32, u32) {
    let (mut wb, mut uc) = (0, 0);
    for i in 0..2048u64 {
        let base = i << 21;
        let cached = is_ram(base, 1 << 21);
        // SAFETY: `boot_pd` is the live page directory; this code runs on one CPU before any
        // other user, and every entry written still maps the same physical page (only PCD/PWT
        // change), so no access of the running program loses its mapping.
        unsafe {
            let e = core::ptr::addr_of_mut!(boot_pd[i as usize]);
            let v = e.read_volatile();
            let v = if cached {
                wb += 1;
                v & !PDE_UNCACHED
            } else {
                uc += 1;
                v | PDE_UNCACHED
            };
            e.write_volatile(v);
        }
    }
    // SAFETY: reloading CR3 with its own value only flushes the TLB.
    unsafe {
        core::arch::asm!(
            "mov {t}, cr3",
            "mov cr3, {t}",
            t = out(reg) _,
            options(nostack, preserves_flags)
        );
    }
    (wb, uc)
}
