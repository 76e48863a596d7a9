//! [`BoardError`]: what is wrong with the device tree, naming the node and property.

use core::fmt;

/// The device tree does not describe a board the daemon can use.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum BoardError<'a> {
    /// The blob is not a flattened device tree (bad magic, truncated).
    BadBlob(fdt::FdtError),
    /// The blob is corrupt, or holds what `fdt` 0.1.5 cannot read safely
    /// ([`board_config::dt::validate_blob`]).
    CorruptBlob(board_config::dt::BlobError),
    /// A required node is missing.
    MissingNode {
        /// What was looked for: a path or a `compatible` string.
        what: &'static str,
    },
    /// More than one node matches where the daemon supports exactly one.
    Ambiguous {
        /// The `compatible` string.
        compatible: &'static str,
        /// How many nodes carry it.
        count: usize,
    },
    /// A required property is missing.
    MissingProperty {
        /// The node's name.
        node: &'a str,
        /// The property.
        property: &'static str,
    },
    /// A property is present but malformed or out of range.
    BadProperty {
        /// The node's name.
        node: &'a str,
        /// The property.
        property: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A property is valid device tree but describes something the daemon does not handle.
    Unsupported {
        /// The node's name.
        node: &'a str,
        /// The property.
        property: &'static str,
        /// What is not supported.
        reason: &'static str,
    },
    /// A phandle names no node.
    UnknownPhandle {
        /// The node holding the reference.
        node: &'a str,
        /// The property holding the reference.
        property: &'static str,
        /// The phandle value.
        phandle: u32,
    },
    /// `/chosen/stdout-path` names a node that does not exist.
    StdoutNotFound {
        /// The path (or alias) given.
        path: &'a str,
    },
}

impl fmt::Display for BoardError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadBlob(e) => write!(f, "device tree blob unusable: {e}"),
            Self::CorruptBlob(e) => write!(f, "{e}"),
            Self::MissingNode { what } => write!(f, "device tree has no {what} node"),
            Self::Ambiguous { compatible, count } => write!(
                f,
                "device tree has {count} nodes compatible with \"{compatible}\"; exactly one is supported"
            ),
            Self::MissingProperty { node, property } => {
                write!(f, "device tree node {node}: property \"{property}\" missing")
            }
            Self::BadProperty { node, property, reason } => {
                write!(f, "device tree node {node}: property \"{property}\" malformed: {reason}")
            }
            Self::Unsupported { node, property, reason } => {
                write!(f, "device tree node {node}: property \"{property}\" unsupported: {reason}")
            }
            Self::UnknownPhandle { node, property, phandle } => write!(
                f,
                "device tree node {node}: property \"{property}\" refers to unknown phandle {phandle:#x}"
            ),
            Self::StdoutNotFound { path } => {
                write!(f, "device tree /chosen/stdout-path \"{path}\" names no node")
            }
        }
    }
}
