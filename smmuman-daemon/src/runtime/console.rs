//! The board's console: the PL011 behind the `log` facade and the record writer, and a lock-free
//! path for crash reports.

use crate::arch::aarch64::semihosting;
use crate::board::UartNode;
use crate::console::Console;
use crate::mmio::MmioRegion;
use crate::pl011::Pl011;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use iommu_core::PhysAddr;

/// The console everything prints through once the UART is known.
pub static CONSOLE: Console<Pl011<MmioRegion>> = Console::new();

/// The UART's base, for the crash path (0 before [`init`]).
static UART_BASE: AtomicU64 = AtomicU64::new(0);
static UART_SIZE: AtomicU64 = AtomicU64::new(0);
/// Whether the crash path has written yet: its first line starts on a fresh line.
static EMERGENCY_STARTED: AtomicBool = AtomicBool::new(false);

/// Takes over the UART and installs the console as the logger.
pub fn init(uart: UartNode) {
    // SAFETY: the device tree says the PL011's registers are at `uart.base`; nothing else in the
    // daemon drives them (the crash path only writes after normal output has stopped).
    let regs = unsafe { MmioRegion::new(uart.base, uart.size) };
    CONSOLE.attach(Pl011::new(regs));
    UART_SIZE.store(uart.size, Ordering::SeqCst);
    UART_BASE.store(uart.base.0, Ordering::SeqCst);
    // Only fails if a logger is already set, which would be this one.
    let _ = log::set_logger(&CONSOLE);
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes one unprefixed line (a structured record).
pub fn line(args: fmt::Arguments<'_>) {
    CONSOLE.line(args);
}

/// Writes one line on the console, or through semihosting before the UART is known.
pub fn line_or_semihosting(args: fmt::Arguments<'_>) {
    if CONSOLE.is_attached() {
        CONSOLE.line(args);
    } else {
        semihosting::println(args);
    }
}

/// Writes one line without taking the console lock (whoever held it will never run again), or
/// through semihosting before the UART is known.
pub fn emergency(args: fmt::Arguments<'_>) {
    let base = UART_BASE.load(Ordering::SeqCst);
    if base == 0 {
        semihosting::println(args);
        return;
    }
    // SAFETY: the UART was set up by `init`; the crash path is the only code still running, so
    // this second handle on its registers cannot interleave with the first.
    let regs = unsafe { MmioRegion::new(PhysAddr(base), UART_SIZE.load(Ordering::SeqCst)) };
    let mut uart = Pl011::attach(regs);
    // The interrupted code may have stopped mid-line: start the first record on a line of its
    // own so that it stays parseable.
    let fresh = if EMERGENCY_STARTED.swap(true, Ordering::SeqCst) {
        ""
    } else {
        "\n"
    };
    let _ = fmt::Write::write_fmt(&mut uart, format_args!("{fresh}{args}\n"));
}
