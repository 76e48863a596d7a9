//! The boot CPU's local APIC in xAPIC mode, just enough to take the VT-d fault event: find it
//! (IA32_APIC_BASE), software-enable it through the spurious-interrupt vector register, read its
//! ID (the MSI's destination) and end each interrupt (EOI). Intel SDM Vol. 3A chapter 11.
//!
//! * IA32_APIC_BASE, MSR 0x1B (§11.4.4, Figure 11-5): bit 11 EN (APIC global enable), bit 10
//!   EXTD (x2APIC mode), bits 51:12 the register page's base (0xFEE00000 after reset).
//! * Registers (§11.4.1, Table 11-1), 32 bits at 16-byte strides: Local APIC ID 0x20 (bits
//!   31:24 hold the xAPIC ID, §11.4.6), Version 0x30, TPR 0x80, EOI 0xB0, SVR 0xF0.
//! * SVR (§11.9, Figure 11-23): bits 7:0 the spurious vector, bit 8 APIC software enable.
//! * EOI (§11.8.5): writing 0 ends the interrupt in service (edge-triggered: nothing else).
//!
//! The legacy 8259 PICs, which SeaBIOS leaves unmasked with IRQ 0 on vector 8, are masked
//! first (8259A OCW1: all ones to the mask registers at ports 0x21 and 0xA1), so that opening
//! interrupts delivers only what the image programmed.

use crate::port;
use core::sync::atomic::{AtomicU64, Ordering};

/// IA32_APIC_BASE (§11.4.4).
const IA32_APIC_BASE: u32 = 0x1b;
/// IA32_APIC_BASE.EN (bit 11).
const BASE_EN: u64 = 1 << 11;
/// IA32_APIC_BASE.EXTD (bit 10): x2APIC mode (registers are MSRs, not MMIO).
const BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bits 51:12.
const BASE_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Local APIC ID register (Table 11-1).
const ID: usize = 0x20;
/// Local APIC Version register.
const VERSION: usize = 0x30;
/// Task Priority Register (§11.8.3.1): 0 accepts every vector.
const TPR: usize = 0x80;
/// EOI register.
const EOI: usize = 0xb0;
/// Spurious-Interrupt Vector Register.
const SVR: usize = 0xf0;
/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;

/// The spurious vector (§11.9: bits 3:0 were fixed to 1 on older parts, so 0xFF is portable).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// The register page (0: not initialised).
static BASE: AtomicU64 = AtomicU64::new(0);

/// What [`init`] found.
pub struct Lapic {
    /// Register page.
    pub base: u64,
    /// xAPIC ID (the MSI destination).
    pub id: u8,
    /// Version register.
    pub version: u32,
    /// SVR after enabling.
    pub svr: u32,
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR of IA32_APIC_BASE, architectural on every CPU with an APIC (CPUID.1:EDX.APIC,
    // which QEMU's q35 CPUs have); no memory is touched.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    u64::from(hi) << 32 | u64::from(lo)
}

fn read(offset: usize) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the local APIC's register page (IA32_APIC_BASE, checked in `init` to
    // lie below 4 GiB, uncached in the identity map); `offset` is one of the registers above.
    unsafe { core::ptr::read_volatile((base as usize + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: as in `read`; the image is the APIC's only user.
    unsafe { core::ptr::write_volatile((base as usize + offset) as *mut u32, value) }
}

/// Masks the 8259s, finds the local APIC and software-enables it with [`SPURIOUS_VECTOR`].
///
/// # Errors
/// What makes the APIC unusable here (globally disabled, in x2APIC mode, above 4 GiB).
pub fn init() -> Result<Lapic, &'static str> {
    // SAFETY: OCW1 to the master and slave 8259 mask registers: masks every legacy IRQ; no
    // memory is touched.
    unsafe {
        port::outb(0x21, 0xff);
        port::outb(0xa1, 0xff);
    }
    let msr = rdmsr(IA32_APIC_BASE);
    if msr & BASE_EN == 0 {
        return Err("IA32_APIC_BASE.EN = 0: the local APIC is globally disabled");
    }
    if msr & BASE_EXTD != 0 {
        return Err("the local APIC is in x2APIC mode: xAPIC MMIO registers unavailable");
    }
    let base = msr & BASE_MASK;
    if base == 0 || base >= 1 << 32 {
        return Err("local APIC registers outside the identity map");
    }
    BASE.store(base, Ordering::SeqCst);
    write(TPR, 0);
    write(
        SVR,
        (read(SVR) & !0xff) | SVR_ENABLE | u32::from(SPURIOUS_VECTOR),
    );
    Ok(Lapic {
        base,
        id: (read(ID) >> 24) as u8,
        version: read(VERSION),
        svr: read(SVR),
    })
}

/// Ends the interrupt in service (§11.8.5). Called by the interrupt handler.
pub fn eoi() {
    write(EOI, 0);
}
