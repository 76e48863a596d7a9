//! [`PlanError`]: what is wrong with a host plan, and where (line and column).

use super::{MAX_PASS, MAX_VMS};
use core::fmt;
use iommu_core::Bdf;

/// A plan error: where, and what. Displays as `line N:C: what is wrong`; the caller adds the
/// file name in front.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PlanError<'a> {
    /// Line, from 1.
    pub line: u32,
    /// Column (in characters), from 1.
    pub col: u32,
    /// What is wrong.
    pub kind: PlanErrorKind<'a>,
}

impl fmt::Display for PlanError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.col, self.kind)
    }
}

/// The mistakes a plan can make.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlanErrorKind<'a> {
    /// A word is missing or wrong.
    Expected {
        /// What would be right.
        what: &'static str,
        /// What is there (`None`: the end of the line).
        found: Option<&'a str>,
    },
    /// A key no section of that kind has.
    UnknownKey {
        /// The key.
        key: &'a str,
        /// The keys allowed there.
        allowed: &'static str,
    },
    /// A key given twice in one section.
    DuplicateKey {
        /// The key.
        key: &'a str,
        /// The line of the first one.
        first: u32,
    },
    /// Two VMs with one name.
    DuplicateVm {
        /// The name.
        name: &'a str,
        /// The line of the first one.
        first: u32,
    },
    /// More than [`MAX_VMS`] VMs.
    TooManyVms,
    /// More than [`MAX_PASS`] pass-through functions in a VM.
    TooManyDevices,
    /// One function passed through twice (in one VM or in two).
    DuplicateDevice {
        /// The function.
        bdf: Bdf,
        /// The line of the first one.
        first: u32,
    },
    /// A value out of its range.
    OutOfRange {
        /// The key.
        key: &'static str,
        /// What the range is.
        range: &'static str,
    },
    /// A VM section lacks a required key.
    Missing {
        /// The VM.
        vm: &'a str,
        /// The key.
        key: &'static str,
    },
    /// A string is not closed on its line.
    UnterminatedString,
    /// The plan names no VM.
    NoVm,
}

impl fmt::Display for PlanErrorKind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expected {
                what,
                found: Some(t),
            } => write!(f, "expected {what}, found \"{t}\""),
            Self::Expected { what, found: None } => write!(f, "expected {what}, found end of line"),
            Self::UnknownKey { key, allowed } => {
                write!(f, "unknown key \"{key}\" (allowed here: {allowed})")
            }
            Self::DuplicateKey { key, first } => {
                write!(f, "\"{key}\" given twice (first on line {first})")
            }
            Self::DuplicateVm { name, first } => {
                write!(f, "VM \"{name}\" defined twice (first on line {first})")
            }
            Self::TooManyVms => write!(f, "more than {MAX_VMS} VMs"),
            Self::TooManyDevices => {
                write!(f, "more than {MAX_PASS} pass-through functions in one VM")
            }
            Self::DuplicateDevice { bdf, first } => {
                write!(f, "pci {bdf} passed through twice (first on line {first})")
            }
            Self::OutOfRange { key, range } => write!(f, "{key} must be {range}"),
            Self::Missing { vm, key } => write!(f, "VM \"{vm}\" has no \"{key}\""),
            Self::UnterminatedString => f.write_str("string not closed by '\"' on its line"),
            Self::NoVm => f.write_str("the plan names no VM ([vm NAME] section)"),
        }
    }
}
