//! The Arm PL011 UART (Arm DDI 0183, PrimeCell UART PL011 TRM §3).
//!
//! The console only writes; the operator's channel (a second PL011) also reads, by polling. Baud rate and clock are left as firmware set them: QEMU ignores
//! them, and reprogramming them would need the `uartclk` frequency from the device tree.

use crate::mmio::Mmio;
use core::fmt;

/// DDI 0183 §3.3.1 UARTDR: data register; a write queues one character.
const UARTDR: usize = 0x000;
/// DDI 0183 §3.3.3 UARTFR: flag register.
const UARTFR: usize = 0x018;
/// UARTFR.RXFE (bit 4): the receive FIFO is empty.
const UARTFR_RXFE: u32 = 1 << 4;
/// UARTDR bits 11:8 on a read: overrun, break, parity and framing errors of that character.
const UARTDR_ERRORS: u32 = 0xf << 8;
/// The receive FIFO's depth (DDI 0183 §2.4.3: 32 entries in r1p5).
const RX_FIFO_DEPTH: u32 = 32;
/// UARTFR.TXFF (bit 5): the transmit FIFO is full.
const UARTFR_TXFF: u32 = 1 << 5;
/// DDI 0183 §3.3.7 UARTLCR_H: line control.
const UARTLCR_H: usize = 0x02c;
/// UARTLCR_H.WLEN (bits 6:5) = 0b11: 8-bit words.
const UARTLCR_H_WLEN_8: u32 = 0b11 << 5;
/// UARTLCR_H.FEN (bit 4): FIFOs enabled.
const UARTLCR_H_FEN: u32 = 1 << 4;
/// DDI 0183 §3.3.8 UARTCR: control register.
const UARTCR: usize = 0x030;
/// UARTCR.UARTEN (bit 0): UART enabled.
const UARTCR_UARTEN: u32 = 1 << 0;
/// UARTCR.TXE (bit 8): transmit enabled.
const UARTCR_TXE: u32 = 1 << 8;
/// UARTCR.RXE (bit 9): receive enabled.
const UARTCR_RXE: u32 = 1 << 9;
/// DDI 0183 §3.3.10 UARTIMSC: interrupt mask set/clear; 0 masks every interrupt.
const UARTIMSC: usize = 0x038;

/// How many times to poll a full transmit FIFO before dropping a character: the console must
/// not hang the daemon if the UART stops draining.
const TX_SPINS: u32 = 1_000_000;

/// A PL011 used as a write-only console.
#[derive(Debug)]
pub struct Pl011<M: Mmio> {
    regs: M,
    dropped: u32,
    rx_errors: u32,
}

impl<M: Mmio> Pl011<M> {
    /// Takes over the UART and enables transmission: 8-bit words, FIFOs on, interrupts masked.
    pub fn new(mut regs: M) -> Self {
        regs.write32(UARTIMSC, 0);
        regs.write32(UARTLCR_H, UARTLCR_H_WLEN_8 | UARTLCR_H_FEN);
        regs.write32(UARTCR, UARTCR_UARTEN | UARTCR_TXE);
        Self::attach(regs)
    }

    /// Takes over the UART for both directions (the operator's channel): as [`Pl011::new`],
    /// with receive enabled too; interrupts stay masked (the channel polls).
    pub fn new_duplex(mut regs: M) -> Self {
        regs.write32(UARTIMSC, 0);
        regs.write32(UARTLCR_H, UARTLCR_H_WLEN_8 | UARTLCR_H_FEN);
        regs.write32(UARTCR, UARTCR_UARTEN | UARTCR_TXE | UARTCR_RXE);
        Self::attach(regs)
    }

    /// Wraps a UART that is already set up, without touching it (for the crash path, which must
    /// not disturb a console in use).
    pub fn attach(regs: M) -> Self {
        Self {
            regs,
            dropped: 0,
            rx_errors: 0,
        }
    }

    /// The next received byte, if the receive FIFO holds one. A character received with an
    /// error (UARTDR bits 11:8) is dropped and counted ([`Pl011::rx_errors`]).
    pub fn read_byte(&mut self) -> Option<u8> {
        // At most a FIFO's worth of erroneous characters per call: a UART that keeps reporting
        // errors cannot hold the caller.
        for _ in 0..RX_FIFO_DEPTH {
            if self.regs.read32(UARTFR) & UARTFR_RXFE != 0 {
                break;
            }
            let data = self.regs.read32(UARTDR);
            if data & UARTDR_ERRORS == 0 {
                return Some((data & 0xff) as u8);
            }
            self.rx_errors = self.rx_errors.saturating_add(1);
        }
        None
    }

    /// Characters received with an error and dropped.
    pub fn rx_errors(&self) -> u32 {
        self.rx_errors
    }

    /// Queues one byte, waiting (boundedly) for room in the transmit FIFO.
    pub fn write_byte(&mut self, byte: u8) {
        for _ in 0..TX_SPINS {
            if self.regs.read32(UARTFR) & UARTFR_TXFF == 0 {
                self.regs.write32(UARTDR, byte.into());
                return;
            }
            core::hint::spin_loop();
        }
        self.dropped = self.dropped.saturating_add(1);
    }

    /// Characters dropped because the FIFO stayed full.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}

impl<M: Mmio> fmt::Write for Pl011<M> {
    /// Writes `s`, turning `\n` into `\r\n` for terminals.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_mmio::FakeRegs;
    use core::fmt::Write;

    #[test]
    fn init_enables_transmit_with_8_bit_words() {
        let uart = Pl011::new(FakeRegs::default());
        let regs = uart.regs.regs.borrow();
        assert_eq!(regs[&UARTCR], 0x101, "UARTEN | TXE");
        assert_eq!(regs[&UARTLCR_H], 0x70, "WLEN=8 | FEN");
        assert_eq!(regs[&UARTIMSC], 0);
    }

    #[test]
    fn duplex_init_enables_receive_too() {
        let uart = Pl011::new_duplex(FakeRegs::default());
        assert_eq!(
            uart.regs.regs.borrow()[&UARTCR],
            0x301,
            "UARTEN | TXE | RXE"
        );
    }

    #[test]
    fn an_empty_receive_fifo_gives_nothing() {
        let mut uart = Pl011::attach(FakeRegs::with(&[(UARTFR, UARTFR_RXFE.into())]));
        assert_eq!(uart.read_byte(), None);
        // Control: with RXFE clear the data register's byte is returned.
        let mut uart = Pl011::attach(FakeRegs::with(&[(UARTFR, 0), (UARTDR, 0x41)]));
        assert_eq!(uart.read_byte(), Some(0x41));
    }

    #[test]
    fn characters_with_errors_are_dropped_and_counted_without_hanging() {
        // A framing error (bit 8) on every character, and the FIFO never empties.
        let mut uart = Pl011::attach(FakeRegs::with(&[(UARTFR, 0), (UARTDR, 0x141)]));
        assert_eq!(uart.read_byte(), None);
        assert_eq!(uart.rx_errors(), RX_FIFO_DEPTH);
    }

    #[test]
    fn newlines_become_crlf() {
        let mut uart = Pl011::attach(FakeRegs::default());
        write!(uart, "a\nb").unwrap();
        let sent: Vec<u64> = uart
            .regs
            .writes
            .iter()
            .filter(|(o, _)| *o == UARTDR)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(sent, [b'a', b'\r', b'\n', b'b'].map(u64::from));
    }

    #[test]
    fn a_stuck_fifo_drops_characters_instead_of_hanging() {
        let mut uart = Pl011::attach(FakeRegs::with(&[(UARTFR, UARTFR_TXFF.into())]));
        uart.write_byte(b'x');
        assert_eq!(uart.dropped(), 1);
        assert!(uart.regs.writes.is_empty());
    }
}
