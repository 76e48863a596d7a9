//! A `log` backend that keeps each test thread's lines apart, so tests can assert on them.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        LINES.with(|l| l.borrow_mut().push(line));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;
static INIT: Once = Once::new();

/// Starts capturing (idempotent) and forgets this thread's earlier lines.
pub(crate) fn start() {
    INIT.call_once(|| {
        // Another logger may be installed already; then lines are simply not captured.
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Trace);
    });
    LINES.with(|l| l.borrow_mut().clear());
}

/// This thread's lines since [`start`].
pub(crate) fn take() -> Vec<String> {
    LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
