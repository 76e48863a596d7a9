//! The 16550 UART at COM1 (I/O port 0x3f8), polled (TI/National PC16550D datasheet, "Register
//! Description": THR/RBR at +0, IER +1, FCR +2, LCR +3, MCR +4, LSR +5; DLL/DLM at +0/+1 while
//! LCR.DLAB = 1).

use crate::port::{inb, outb};
use core::fmt;

/// COM1's base port on a PC.
pub const COM1: u16 = 0x3f8;

const THR: u16 = 0;
const IER: u16 = 1;
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
/// LCR.DLAB (bit 7): +0/+1 address the divisor latch.
const LCR_DLAB: u8 = 1 << 7;
/// LCR word length 8 bits (bits 1:0 = 11), one stop bit, no parity.
const LCR_8N1: u8 = 0b11;
/// FCR: enable FIFOs (bit 0), clear receive (bit 1) and transmit (bit 2) FIFOs.
const FCR_ENABLE_CLEAR: u8 = 0b111;
/// MCR: DTR (bit 0), RTS (bit 1), OUT2 (bit 3).
const MCR_DTR_RTS_OUT2: u8 = 0b1011;
/// LSR.THRE (bit 5): the transmit holding register is empty.
const LSR_THRE: u8 = 1 << 5;
/// Polls of LSR before a byte is dropped (a UART that never drains must not hang the daemon).
const SPIN_LIMIT: u32 = 100_000;

/// The polled UART; the exclusive owner of its eight ports.
pub struct Uart16550 {
    base: u16,
}

impl Uart16550 {
    /// Programs 115200 8N1 (divisor 1 of the 1.8432 MHz / 16 clock), FIFOs on, interrupts off.
    ///
    /// # Safety
    /// `base` must be a 16550's eight ports and nothing else may use them.
    pub unsafe fn new(base: u16) -> Self {
        // SAFETY: the caller gives us the UART's ports.
        unsafe {
            outb(base + IER, 0);
            outb(base + LCR, LCR_DLAB);
            outb(base, 1); // DLL
            outb(base + 1, 0); // DLM
            outb(base + LCR, LCR_8N1);
            outb(base + FCR, FCR_ENABLE_CLEAR);
            outb(base + MCR, MCR_DTR_RTS_OUT2);
        }
        Self { base }
    }

    /// The UART at `base` as it is, without reprogramming it (for a last message while the
    /// console's lock may be held).
    ///
    /// # Safety
    /// As [`Uart16550::new`], except that another handle may exist: only for a final message
    /// before the program exits.
    pub unsafe fn raw(base: u16) -> Self {
        Self { base }
    }

    fn put(&mut self, byte: u8) {
        for _ in 0..SPIN_LIMIT {
            // SAFETY: our ports (the promise of `new`); reading LSR has no side effect on THR.
            if unsafe { inb(self.base + LSR) } & LSR_THRE != 0 {
                break;
            }
        }
        // SAFETY: our ports.
        unsafe { outb(self.base + THR, byte) }
    }
}

impl fmt::Write for Uart16550 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}
