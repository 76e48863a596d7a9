//! The panic handler: every SMMU left aborting first ([`crate::failsafe::abort`]: nothing
//! that can fail runs before it), then one `PANIC` record, then the exit
//! ([`crate::runtime::exit`], which reports the abort) with [`exit_code::PANIC`]. A panic while
//! reporting (formatting the message, say) exits at once, the SMMUs already aborting.

use crate::exit_code;
use crate::report::write_value;
use crate::runtime::console;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::failsafe::abort();
    if PANICKING.swap(true, Ordering::SeqCst) {
        crate::runtime::exit(exit_code::PANIC, "panic");
    }
    let mut message: heapless::String<400> = heapless::String::new();
    let _ = write_value(&mut message, &info.message());
    match info.location() {
        Some(l) => console::emergency(format_args!(
            "PANIC location={}:{}:{} message={message}",
            l.file(),
            l.line(),
            l.column()
        )),
        None => console::emergency(format_args!("PANIC message={message}")),
    }
    crate::runtime::exit(exit_code::PANIC, "panic")
}
