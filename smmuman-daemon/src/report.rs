//! Machine-readable result records.
//!
//! A scenario ends with exactly one line
//! `RESULT scenario=<name> status=pass|fail [key=value ...]`; the daemon then exits with
//! [`crate::exit_code::PASS`] or [`crate::exit_code::FAIL`].

use core::fmt::{self, Write};
use heapless::String;

/// Capacity of an outcome's `key=value` text; longer details are cut and marked `truncated=1`.
pub const DETAILS_CAPACITY: usize = 480;

/// Whether a scenario passed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    /// Every check held.
    Pass,
    /// A check failed.
    Fail,
}

impl Status {
    /// `pass` or `fail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
        }
    }

    /// The exit code the daemon reports for this status.
    pub const fn exit_code(self) -> u32 {
        match self {
            Self::Pass => crate::exit_code::PASS,
            Self::Fail => crate::exit_code::FAIL,
        }
    }
}

/// The verdict of a scenario and the measurements that back it.
#[derive(Clone, Debug)]
pub struct Outcome {
    status: Status,
    details: String<DETAILS_CAPACITY>,
    truncated: bool,
}

impl Outcome {
    /// A passing outcome without details.
    pub fn pass() -> Self {
        Self::new(Status::Pass)
    }

    /// A failing outcome without details.
    pub fn fail() -> Self {
        Self::new(Status::Fail)
    }

    /// An outcome with the given status.
    pub fn new(status: Status) -> Self {
        Self {
            status,
            details: String::new(),
            truncated: false,
        }
    }

    /// Adds ` key=value`; a value containing spaces, quotes or `=` is quoted (see [`write_value`]).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Self {
        let mut field: String<DETAILS_CAPACITY> = String::new();
        let fits = write!(field, " {key}=").is_ok() && write_value(&mut field, &value).is_ok();
        if !fits || self.details.push_str(&field).is_err() {
            self.truncated = true;
        }
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Writes the `RESULT` record for `scenario` (without a newline).
    ///
    /// # Errors
    /// Whatever the writer reports.
    pub fn write_result(&self, scenario: &str, w: &mut impl Write) -> fmt::Result {
        write!(w, "RESULT scenario=")?;
        write_value(w, &scenario)?;
        write!(w, " status={}{}", self.status.as_str(), self.details)?;
        if self.truncated {
            write!(w, " truncated=1")?;
        }
        Ok(())
    }
}

/// Writes `value` as a record value: as is when it has no space, quote or `=`, otherwise in
/// double quotes with `"` and `\` escaped by a backslash.
///
/// # Errors
/// Whatever the writer reports, or [`fmt::Error`] for a value longer than
/// [`DETAILS_CAPACITY`].
pub fn write_value(w: &mut impl Write, value: &(impl fmt::Display + ?Sized)) -> fmt::Result {
    let mut text: String<DETAILS_CAPACITY> = String::new();
    write!(text, "{value}")?;
    let plain = !text.is_empty() && !text.contains([' ', '\t', '"', '=', '\\']);
    if plain {
        return w.write_str(&text);
    }
    w.write_char('"')?;
    for c in text.chars() {
        if c == '"' || c == '\\' {
            w.write_char('\\')?;
        }
        w.write_char(c)?;
    }
    w.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(o: &Outcome, name: &str) -> std::string::String {
        let mut s = std::string::String::new();
        o.write_result(name, &mut s).unwrap();
        s
    }

    #[test]
    fn result_lines_carry_status_and_fields() {
        let o = Outcome::pass()
            .with("sid", format_args!("{:#x}", 8))
            .with("copied", 4096);
        assert_eq!(
            result(&o, "boot"),
            "RESULT scenario=boot status=pass sid=0x8 copied=4096"
        );
        assert_eq!(o.status().exit_code(), 0);
        assert_eq!(Outcome::fail().status().exit_code(), 1);
    }

    #[test]
    fn values_with_spaces_are_quoted_and_escaped() {
        let o = Outcome::fail()
            .with("reason", "edu said \"no\"")
            .with("empty", "");
        assert_eq!(
            result(&o, "dma"),
            r#"RESULT scenario=dma status=fail reason="edu said \"no\"" empty="""#
        );
    }

    #[test]
    fn overlong_details_are_marked_truncated() {
        let mut o = Outcome::pass();
        for i in 0..100 {
            o = o.with("field", i);
        }
        assert!(result(&o, "x").ends_with(" truncated=1"));
    }
}
