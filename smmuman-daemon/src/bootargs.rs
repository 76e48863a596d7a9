//! The daemon's command line, `/chosen/bootargs` (QEMU `-append`).
//!
//! Space-separated `key=value` words:
//!
//! * `scenario=<name>`: a test scenario to run instead of the host plan (only in an image built
//!   with the `scenarios` feature);
//! * `st=linear|2level`: stream table format (default linear; IHI 0070 §3.3);
//! * `log=error|warn|info|debug|trace`: console log level (default info);
//! * `stay=1`: the host stays resident once every VM of its plan stopped, serving the
//!   manager and the operator's channel (`operator::stays`; `cargo xtask run --stay`);
//! * any other `key=value`: kept for scenarios, read with [`BootArgs::get`].
//!
//! A word without `=`, an empty key or a repeated key is an error: the daemon refuses to guess
//! what was meant.

use core::fmt;
use heapless::Vec;

/// Most `key=value` words.
pub const MAX_ARGS: usize = 16;

/// How the SMMU's stream table is laid out (IHI 0070 §3.3.1 linear, §3.3.2 two-level).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum StreamTableFormat {
    /// One array of STEs indexed by StreamID.
    #[default]
    Linear,
    /// Level-1 descriptors pointing at arrays of STEs.
    TwoLevel,
}

impl fmt::Display for StreamTableFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Linear => "linear",
            Self::TwoLevel => "2level",
        })
    }
}

/// The boot arguments cannot be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootArgsError<'a> {
    /// A word is not `key=value` (or its key is empty).
    NotKeyValue(&'a str),
    /// The same key appears twice.
    Repeated(&'a str),
    /// A known key has a value it does not accept.
    BadValue {
        /// The key.
        key: &'a str,
        /// The value given.
        value: &'a str,
        /// What it accepts.
        expected: &'static str,
    },
    /// More than [`MAX_ARGS`] words.
    TooMany,
}

impl fmt::Display for BootArgsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(w) => write!(f, "bootargs word \"{w}\" is not key=value"),
            Self::Repeated(k) => write!(f, "bootargs key \"{k}\" given twice"),
            Self::BadValue {
                key,
                value,
                expected,
            } => {
                write!(f, "bootargs {key}=\"{value}\": expected {expected}")
            }
            Self::TooMany => write!(f, "more than {MAX_ARGS} bootargs words"),
        }
    }
}

/// Parsed boot arguments, borrowing the device tree's string.
#[derive(Clone, Debug)]
pub struct BootArgs<'a> {
    /// The test scenario to run (`None`: run the host plan).
    pub scenario: Option<&'a str>,
    /// The stream table format the SMMU should use.
    pub stream_table: StreamTableFormat,
    /// The console log level.
    pub log_level: log::LevelFilter,
    args: Vec<(&'a str, &'a str), MAX_ARGS>,
}

impl<'a> BootArgs<'a> {
    /// Parses `text`.
    ///
    /// # Errors
    /// A [`BootArgsError`] naming the offending word.
    pub fn parse(text: &'a str) -> Result<Self, BootArgsError<'a>> {
        let mut args: Vec<(&str, &str), MAX_ARGS> = Vec::new();
        for word in text.split_ascii_whitespace() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) if !k.is_empty() => (k, v),
                _ => return Err(BootArgsError::NotKeyValue(word)),
            };
            if args.iter().any(|(k, _)| *k == key) {
                return Err(BootArgsError::Repeated(key));
            }
            args.push((key, value))
                .map_err(|_| BootArgsError::TooMany)?;
        }
        let get = |key: &str| args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let scenario = match get("scenario") {
            None => None,
            Some("") => {
                return Err(BootArgsError::BadValue {
                    key: "scenario",
                    value: "",
                    expected: "a scenario name",
                })
            }
            Some(name) => Some(name),
        };
        let stream_table = match get("st") {
            None | Some("linear") => StreamTableFormat::Linear,
            Some("2level") => StreamTableFormat::TwoLevel,
            Some(value) => {
                return Err(BootArgsError::BadValue {
                    key: "st",
                    value,
                    expected: "linear or 2level",
                })
            }
        };
        let log_level = match get("log") {
            None => log::LevelFilter::Info,
            Some(value) => value.parse().map_err(|_| BootArgsError::BadValue {
                key: "log",
                value,
                expected: "off, error, warn, info, debug or trace",
            })?,
        };
        Ok(Self {
            scenario,
            stream_table,
            log_level,
            args,
        })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Every `key=value` pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.args.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let a = BootArgs::parse("").unwrap();
        assert_eq!(a.scenario, None);
        assert_eq!(a.stream_table, StreamTableFormat::Linear);
        assert_eq!(a.log_level, log::LevelFilter::Info);
    }

    #[test]
    fn known_and_extra_keys() {
        let a = BootArgs::parse("  scenario=boot st=2level log=debug len=4096 ").unwrap();
        assert_eq!(a.scenario, Some("boot"));
        assert_eq!(a.stream_table, StreamTableFormat::TwoLevel);
        assert_eq!(a.log_level, log::LevelFilter::Debug);
        assert_eq!(a.get("len"), Some("4096"));
        assert_eq!(a.get("nope"), None);
        assert_eq!(a.pairs().count(), 4);
        assert_eq!(format!("{}", a.stream_table), "2level");
    }

    #[test]
    fn malformed_words_are_named() {
        assert_eq!(
            BootArgs::parse("scenario=boot quiet").unwrap_err(),
            BootArgsError::NotKeyValue("quiet")
        );
        assert_eq!(
            BootArgs::parse("=x").unwrap_err(),
            BootArgsError::NotKeyValue("=x")
        );
        assert_eq!(
            BootArgs::parse("st=linear st=2level").unwrap_err(),
            BootArgsError::Repeated("st")
        );
        assert_eq!(
            BootArgs::parse("st=3level").unwrap_err(),
            BootArgsError::BadValue {
                key: "st",
                value: "3level",
                expected: "linear or 2level"
            }
        );
        assert!(matches!(
            BootArgs::parse("log=loud"),
            Err(BootArgsError::BadValue { key: "log", .. })
        ));
        assert!(matches!(
            BootArgs::parse("scenario="),
            Err(BootArgsError::BadValue {
                key: "scenario",
                ..
            })
        ));
    }

    #[test]
    fn too_many_words_is_an_error() {
        let text: std::string::String = (0..=MAX_ARGS).map(|i| format!("k{i}=v ")).collect();
        assert_eq!(BootArgs::parse(&text).unwrap_err(), BootArgsError::TooMany);
    }
}
