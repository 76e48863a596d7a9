//! The one way out of the daemon, and the boot code's call for a start at the wrong EL.

use crate::arch::aarch64::{boot, semihosting};
use crate::exit_code;
use crate::runtime::console;

/// The one way out of the daemon: every path ends here, whatever the image (product or
/// test) and however it ends (a normal shutdown, a `FATAL` record, a refused start, a
/// panic, an unexpected exception). First the fail-safe (`failsafe::leave_safe`: every
/// SMMU the device tree lists left aborting all traffic, then its records; a no-op when it
/// already ran), then the stack check, then QEMU's exit (semihosting SYS_EXIT, Arm IHI
/// 0123; nothing else in the daemon can end the run). `trigger` names the way out in the
/// `FAILSAFE` record.
pub fn exit(code: u32, trigger: &str) -> ! {
    crate::failsafe::leave_safe(trigger);
    let mut code = code;
    for stack in boot::smashed_stacks() {
        console::emergency(format_args!("FATAL reason=stack-overflow stack={stack}"));
        code = exit_code::EXCEPTION;
    }
    qemu_exit::QEMUExit::exit(&qemu_exit::AArch64::new(), code)
}

/// Called by the boot code at an exception level other than 2.
#[unsafe(no_mangle)]
extern "C" fn rust_wrong_el(el: u64) -> ! {
    semihosting::println(format_args!(
        "FATAL reason=wrong-el el={el} detail=\"smmuman-daemon must start at EL2: use -machine virt,virtualization=on\""
    ));
    // Nothing is known of the board yet: the fail-safe has no SMMU to abort.
    exit(exit_code::BAD_BOARD, "wrong-el")
}
