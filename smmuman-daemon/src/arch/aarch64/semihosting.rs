//! Arm semihosting (Arm IHI 0123, `HLT #0xF000` in A64): a console of last resort for errors
//! found before the UART is known. (The exit, SYS_EXIT, is made only by `crate::runtime::exit`, after
//! the fail-safe.)

use core::arch::asm;
use core::fmt::{self, Write};
use heapless::String;

/// SYS_WRITE0: writes a NUL-terminated string to the debugger's (QEMU's) console.
const SYS_WRITE0: u64 = 0x04;

/// Writes `args` and a newline through semihosting, cut to 255 bytes.
pub fn println(args: fmt::Arguments<'_>) {
    let mut line: String<256> = String::new();
    let _ = line.write_fmt(args);
    while line.len() > 254 {
        line.pop();
    }
    let _ = line.push_str("\n");
    let mut bytes = [0u8; 256];
    bytes[..line.len()].copy_from_slice(line.as_bytes());
    // SAFETY: SYS_WRITE0 reads the NUL-terminated string at x1 (`bytes` is zero-filled past the
    // text, so it is terminated) and returns with x0 clobbered; no other state changes.
    unsafe {
        asm!("hlt #0xf000", inout("x0") SYS_WRITE0 => _, in("x1") bytes.as_ptr(), options(nostack));
    }
}
