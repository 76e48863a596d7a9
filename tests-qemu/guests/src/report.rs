//! Result lines: `CHECK name=<step> ok=0|1 <details>` ([`qvm::abi::CHECK_PREFIX`]), one per
//! step a test asserts on, and the tally that decides the exit status.

use core::fmt;
use qvm::abi::CHECK_PREFIX;

/// Counts checks and failures.
#[derive(Debug, Default)]
pub struct Checks {
    /// Checks reported.
    pub total: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Checks {
    /// Prints one `CHECK` line and counts it.
    pub fn check(
        &mut self,
        out: &mut dyn fmt::Write,
        name: &str,
        ok: bool,
        details: fmt::Arguments<'_>,
    ) {
        self.total += 1;
        if !ok {
            self.failed += 1;
        }
        let _ = writeln!(
            out,
            "{CHECK_PREFIX}name={name} ok={} {details}",
            u8::from(ok)
        );
    }

    /// The exit status: 0 when every check passed (and there was at least one), else 1.
    pub fn status(&self) -> u32 {
        u32::from(self.failed != 0 || self.total == 0)
    }
}
