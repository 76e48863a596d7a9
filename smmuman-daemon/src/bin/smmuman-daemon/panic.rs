//! The panic handler: one `PANIC` record, every SMMU left aborting ([`crate::failsafe`]),
//! then exit [`exit_code::PANIC`].

use crate::console;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use smmuman_daemon::exit_code;
use smmuman_daemon::report::write_value;

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        crate::semihosting::exit(exit_code::PANIC);
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
    crate::failsafe::leave_safe("panic");
    crate::exit(exit_code::PANIC)
}
