//! The console: the daemon library's [`Console`] (the same `log` backend and record lines as
//! the aarch64 image) over the COM1 16550.

use crate::uart::{Uart16550, COM1};
use core::fmt;
use smmuman_daemon::console::Console;

static CONSOLE: Console<Uart16550> = Console::new();

/// Programs COM1 and installs the logger at `level`.
pub fn init(level: log::LevelFilter) {
    if !CONSOLE.is_attached() {
        // SAFETY: COM1's ports belong to the console alone; this runs once, on one CPU.
        CONSOLE.attach(unsafe { Uart16550::new(COM1) });
    }
    if log::set_logger(&CONSOLE).is_ok() {
        log::set_max_level(level);
    }
}

/// One record line (`KIND key=value ...`).
pub fn line(args: fmt::Arguments<'_>) {
    CONSOLE.line(args);
}

/// A line even before [`init`] or while the console lock is held (panic, exception): writes
/// straight to COM1, without the lock.
pub fn emergency(args: fmt::Arguments<'_>) {
    // SAFETY: a last message before exit: the only other writer (the console) is either not
    // attached yet or stopped where the panic or exception interrupted it.
    let mut u = unsafe { Uart16550::raw(COM1) };
    let _ = fmt::Write::write_fmt(&mut u, args);
    let _ = fmt::Write::write_str(&mut u, "\n");
}
