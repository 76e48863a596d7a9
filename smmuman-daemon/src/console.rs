//! The console: a [`log::Log`] backend over any [`fmt::Write`] sink (the PL011 on the board),
//! plus unprefixed lines for machine-readable records.
//!
//! Line format, which the test harness parses:
//!
//! * log records: `[LEVEL] message`, LEVEL padded to five characters (`[INFO ]`, `[ERROR]`);
//! * structured records: `KIND key=value key=value ...`, where KIND is an upper-case word
//!   (`BOARD`, `PCI`, `RESULT`...) and a value with spaces is double-quoted. They are either
//!   written bare with [`Console::line`] or logged (`[INFO ] PCI bdf=00:01.0 ...`); the harness
//!   accepts both.

use core::fmt::{self, Write};
use spin::Mutex;

/// A console shared by the logger and the record writer; one line is written under one lock
/// acquisition so that lines never interleave.
pub struct Console<W> {
    sink: Mutex<Option<W>>,
}

impl<W: Write + Send> Console<W> {
    /// A console without a sink yet: everything written before [`Console::attach`] is dropped.
    pub const fn new() -> Self {
        Self {
            sink: Mutex::new(None),
        }
    }

    /// Starts writing to `sink`.
    pub fn attach(&self, sink: W) {
        *self.sink.lock() = Some(sink);
    }

    /// Whether a sink is attached.
    pub fn is_attached(&self) -> bool {
        self.sink.lock().is_some()
    }

    /// Writes `args` followed by a newline, without a level prefix.
    pub fn line(&self, args: fmt::Arguments<'_>) {
        if let Some(w) = self.sink.lock().as_mut() {
            let _ = w.write_fmt(args);
            let _ = w.write_str("\n");
        }
    }
}

impl<W: Write + Send> Default for Console<W> {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes one log record in the console's format.
pub fn format_record(
    w: &mut impl Write,
    level: log::Level,
    args: fmt::Arguments<'_>,
) -> fmt::Result {
    writeln!(w, "[{:<5}] {}", level.as_str(), args)
}

impl<W: Write + Send> log::Log for Console<W> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            if let Some(w) = self.sink.lock().as_mut() {
                let _ = format_record(w, record.level(), *record.args());
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;

    #[derive(Default)]
    struct Text(String);
    impl Write for Text {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.push_str(s);
            Ok(())
        }
    }

    #[test]
    fn records_and_lines_have_the_documented_shape() {
        let console: Console<Text> = Console::new();
        console.line(format_args!("dropped"));
        console.attach(Text::default());
        log::set_max_level(log::LevelFilter::Info);
        console.log(
            &log::Record::builder()
                .level(log::Level::Info)
                .args(format_args!("PCI x=1"))
                .build(),
        );
        console.log(
            &log::Record::builder()
                .level(log::Level::Debug)
                .args(format_args!("hidden"))
                .build(),
        );
        console.line(format_args!("RESULT scenario=boot status=pass"));
        let text = console.sink.lock().take().unwrap().0;
        assert_eq!(text, "[INFO ] PCI x=1\nRESULT scenario=boot status=pass\n");
    }
}
