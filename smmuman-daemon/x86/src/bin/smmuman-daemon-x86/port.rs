//! x86 port I/O (Intel SDM Vol. 1 §19.4, `IN`/`OUT`): the one door to the I/O address space.

/// Writes `value` to I/O port `port`.
///
/// # Safety
/// `port` must be a device register this program owns, and the write must not break memory
/// safety (e.g. reprogram a DMA engine behind the program's back).
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port; OUT touches no memory.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
    }
}

/// Reads I/O port `port`.
///
/// # Safety
/// As [`outb`]: reading some ports has side effects.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port; IN touches no memory.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags));
    }
    value
}
