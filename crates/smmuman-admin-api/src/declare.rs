//! The `admin_interface!` macro: the operator's op table in, both sides out.
//!
//! The same shape as `smmuman_api::declare` (whose `interface!` serves the clients' table):
//! each entry names an op's number, variant, method, request and reply fields. From it come
//! [`AdminOp`](crate::AdminOp), [`ADMIN_OPS`](crate::ADMIN_OPS) (the table as data, from which
//! `docs/operator-protocol.md` is generated: [`write_operations`]), one request and one reply
//! struct per op with their wire encoding and a compile-time size check, the server's
//! [`AdminOps`](crate::AdminOps) trait and [`dispatch`](crate::dispatch), and one method per
//! op on [`AdminClient`](crate::AdminClient). A compile-time check refuses an admin op number
//! that is also a client op number.

use smmuman_api::declare::{write_layout, FieldInfo};

/// One admin operation, as the op table declares it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AdminOpInfo {
    /// The operation.
    pub op: crate::AdminOp,
    /// Its method name (on [`crate::AdminClient`] and [`crate::AdminOps`]).
    pub name: &'static str,
    /// Its documentation, one entry per line: what it does, then its refusals.
    pub doc: &'static [&'static str],
    /// Request fields, in wire order.
    pub request: &'static [FieldInfo],
    /// Reply fields, in wire order.
    pub reply: &'static [FieldInfo],
    /// Request payload size.
    pub request_size: usize,
    /// Reply payload size (when the status is Ok).
    pub reply_size: usize,
}

/// One row type of the listings, as [`crate::types`] declares it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RowInfo {
    /// The type's name.
    pub name: &'static str,
    /// Its documentation, one entry per line.
    pub doc: &'static [&'static str],
    /// Its fields, in wire order.
    pub fields: &'static [FieldInfo],
    /// Its size on the wire.
    pub size: usize,
}

fn write_doc(w: &mut impl core::fmt::Write, doc: &[&str]) -> core::fmt::Result {
    for line in doc {
        let line = line.strip_prefix(' ').unwrap_or(line);
        writeln!(w, "{}", line.trim_end())?;
    }
    if !doc.is_empty() {
        writeln!(w)?;
    }
    Ok(())
}

impl AdminOpInfo {
    /// Writes the op's section of `docs/operator-protocol.md`: heading, documentation,
    /// request and reply layouts.
    ///
    /// # Errors
    /// Whatever `w` returns.
    pub fn write_markdown(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        writeln!(
            w,
            "### {:#06x} `{}` (request {} bytes, reply {} bytes)\n",
            self.op.number(),
            self.name,
            self.request_size,
            self.reply_size
        )?;
        write_doc(w, self.doc)?;
        writeln!(w, "Request:\n")?;
        write_layout(w, self.request)?;
        writeln!(w, "\nReply:\n")?;
        write_layout(w, self.reply)
    }
}

impl RowInfo {
    /// Writes the row's section of `docs/operator-protocol.md`.
    ///
    /// # Errors
    /// Whatever `w` returns.
    pub fn write_markdown(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        writeln!(w, "### `{}` ({} bytes)\n", self.name, self.size)?;
        write_doc(w, self.doc)?;
        write_layout(w, self.fields)
    }
}

/// The line before the generated part of `docs/operator-protocol.md`.
pub const GENERATED_BEGIN: &str = "<!-- generated from crates/smmuman-admin-api/src/interface.rs: \
     cargo run -p smmuman-admin-api --example operator_protocol -- --write docs/operator-protocol.md -->";
/// The line after it.
pub const GENERATED_END: &str = "<!-- end of generated operations -->";

/// Writes every op's section, then every row type's: what goes between [`GENERATED_BEGIN`]
/// and [`GENERATED_END`].
///
/// # Errors
/// Whatever `w` returns.
pub fn write_operations(w: &mut impl core::fmt::Write) -> core::fmt::Result {
    writeln!(w, "## Operations\n")?;
    for (i, info) in crate::ADMIN_OPS.iter().enumerate() {
        if i > 0 {
            writeln!(w)?;
        }
        info.write_markdown(w)?;
    }
    writeln!(w, "\n## Rows\n")?;
    for (i, row) in crate::types::ROWS.iter().enumerate() {
        if i > 0 {
            writeln!(w)?;
        }
        row.write_markdown(w)?;
    }
    Ok(())
}

/// `doc` with its generated part replaced by `generated`; `None` when the markers are missing.
pub fn replace_generated<'a>(
    doc: &'a str,
    generated: &'a str,
) -> Option<impl Iterator<Item = &'a str>> {
    smmuman_api::declare::replace_between(doc, GENERATED_BEGIN, GENERATED_END, generated)
}

/// A row type: the struct, its [`Wire`](smmuman_api::wire::Wire) encoding (fields packed in
/// order, each checked by its own decoder) and its [`RowInfo`].
macro_rules! row {
    (
        $(#[doc = $doc:literal])*
        pub struct $Row:ident { $( $(#[doc = $fdoc:literal])* $f:ident : $t:ty ),* $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub struct $Row {
            $( $(#[doc = $fdoc])* pub $f: $t, )*
        }

        impl $Row {
            /// The row's layout, as declared.
            pub const INFO: $crate::declare::RowInfo = $crate::declare::RowInfo {
                name: stringify!($Row),
                doc: &[$($doc),*],
                fields: &[$( smmuman_api::declare::FieldInfo {
                    name: stringify!($f),
                    ty: stringify!($t),
                    size: <$t as smmuman_api::wire::Wire>::SIZE,
                } ),*],
                size: <$Row as smmuman_api::wire::Wire>::SIZE,
            };
        }

        impl smmuman_api::wire::Wire for $Row {
            const SIZE: usize = 0 $( + <$t as smmuman_api::wire::Wire>::SIZE )*;
            fn put(&self, w: &mut smmuman_api::wire::Writer<'_>) {
                $( w.field(&self.$f); )*
            }
            fn get(
                r: &mut smmuman_api::wire::Reader<'_>,
            ) -> Result<Self, smmuman_api::wire::FieldError> {
                Ok(Self { $( $f: r.field()?, )* })
            }
        }
    };
}

/// A one-byte enum on the wire: each variant its number, any other byte refused.
macro_rules! wire_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $E:ident { $( $(#[doc = $vdoc:literal])* $V:ident = $n:literal ),* $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u8)]
        pub enum $E {
            $( $(#[doc = $vdoc])* $V = $n, )*
        }

        impl $E {
            /// Every variant.
            pub const ALL: &'static [$E] = &[$($E::$V),*];

            /// The variant numbered `n`.
            pub const fn from_u8(n: u8) -> Option<Self> {
                match n {
                    $( $n => Some(Self::$V), )*
                    _ => None,
                }
            }
        }

        impl smmuman_api::wire::Wire for $E {
            const SIZE: usize = 1;
            fn put(&self, w: &mut smmuman_api::wire::Writer<'_>) {
                w.u8(*self as u8);
            }
            fn get(
                r: &mut smmuman_api::wire::Reader<'_>,
            ) -> Result<Self, smmuman_api::wire::FieldError> {
                let at = r.offset();
                let v = r.u8()?;
                Self::from_u8(v).ok_or(smmuman_api::wire::Reader::reject(at, v.into()))
            }
        }
    };
}

macro_rules! admin_interface {
    ($(
        $(#[doc = $doc:literal])*
        op $Variant:ident = $num:literal, fn $method:ident(
            $Req:ident { $( $(#[doc = $rdoc:literal])* $rf:ident : $rt:ty ),* $(,)? }
        ) -> $Rep:ident { $( $(#[doc = $pdoc:literal])* $pf:ident : $pt:ty ),* $(,)? };
    )*) => {
        /// Every admin operation, by its wire number.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u16)]
        pub enum AdminOp {
            $( $(#[doc = $doc])* $Variant = $num, )*
        }

        impl AdminOp {
            /// Every admin operation, in table order.
            pub const ALL: &'static [AdminOp] = &[$(AdminOp::$Variant),*];

            /// The admin operation numbered `n`, if any.
            pub const fn from_u16(n: u16) -> Option<AdminOp> {
                match n {
                    $( $num => Some(AdminOp::$Variant), )*
                    _ => None,
                }
            }

            /// The wire number.
            pub const fn number(self) -> u16 {
                self as u16
            }

            /// The op's table entry.
            pub const fn info(self) -> &'static $crate::declare::AdminOpInfo {
                match self {
                    $( AdminOp::$Variant => &$Req::INFO, )*
                }
            }
        }

        /// The admin op table as data, in table order.
        pub const ADMIN_OPS: &[$crate::declare::AdminOpInfo] = &[$($Req::INFO),*];

        // No admin op number is a client op number, and all are at or above the base: a
        // client's dispatcher answers every admin op with `UnknownOp`.
        $(
            const _: () = assert!(
                $num >= $crate::ADMIN_OP_BASE && smmuman_api::Op::from_u16($num).is_none(),
                concat!(stringify!($Variant), ": admin op number taken by a client op"),
            );
        )*

        $(
            #[doc = concat!("Request of [`AdminOp::", stringify!($Variant), "`].")]
            #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
            pub struct $Req {
                $( $(#[doc = $rdoc])* pub $rf: $rt, )*
            }

            #[doc = concat!("Reply of [`AdminOp::", stringify!($Variant), "`].")]
            #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
            pub struct $Rep {
                $( $(#[doc = $pdoc])* pub $pf: $pt, )*
            }

            impl $Req {
                /// This op's entry in the op table.
                pub const INFO: $crate::declare::AdminOpInfo = $crate::declare::AdminOpInfo {
                    op: AdminOp::$Variant,
                    name: stringify!($method),
                    doc: &[$($doc),*],
                    request: &[$( smmuman_api::declare::FieldInfo {
                        name: stringify!($rf),
                        ty: stringify!($rt),
                        size: <$rt as smmuman_api::wire::Wire>::SIZE,
                    } ),*],
                    reply: &[$( smmuman_api::declare::FieldInfo {
                        name: stringify!($pf),
                        ty: stringify!($pt),
                        size: <$pt as smmuman_api::wire::Wire>::SIZE,
                    } ),*],
                    request_size: <$Req as smmuman_api::wire::Wire>::SIZE,
                    reply_size: <$Rep as smmuman_api::wire::Wire>::SIZE,
                };
            }

            impl smmuman_api::wire::Wire for $Req {
                const SIZE: usize = 0 $( + <$rt as smmuman_api::wire::Wire>::SIZE )*;
                #[allow(unused_variables)]
                fn put(&self, w: &mut smmuman_api::wire::Writer<'_>) {
                    $( w.field(&self.$rf); )*
                }
                #[allow(unused_variables)]
                fn get(
                    r: &mut smmuman_api::wire::Reader<'_>,
                ) -> Result<Self, smmuman_api::wire::FieldError> {
                    Ok(Self { $( $rf: r.field()?, )* })
                }
            }

            impl smmuman_api::wire::Wire for $Rep {
                const SIZE: usize = 0 $( + <$pt as smmuman_api::wire::Wire>::SIZE )*;
                #[allow(unused_variables)]
                fn put(&self, w: &mut smmuman_api::wire::Writer<'_>) {
                    $( w.field(&self.$pf); )*
                }
                #[allow(unused_variables)]
                fn get(
                    r: &mut smmuman_api::wire::Reader<'_>,
                ) -> Result<Self, smmuman_api::wire::FieldError> {
                    Ok(Self { $( $pf: r.field()?, )* })
                }
            }

            impl $crate::client::AdminRequest for $Req {
                const OP: AdminOp = AdminOp::$Variant;
                type Reply = $Rep;
            }

            const _: () = assert!(
                <$Req as smmuman_api::wire::Wire>::SIZE <= smmuman_api::wire::MAX_PAYLOAD
                    && <$Rep as smmuman_api::wire::Wire>::SIZE <= smmuman_api::wire::MAX_PAYLOAD,
                concat!(stringify!($Variant), ": message larger than MAX_PAYLOAD"),
            );
        )*

        /// The manager's side of the operator's protocol: one method per admin operation.
        ///
        /// Only the operator's channel reaches it ([`dispatch`]); there is no caller id: the
        /// channel is the operator's.
        pub trait AdminOps {
            $(
                $(#[doc = $doc])*
                ///
                /// # Errors
                /// A [`Refusal`](smmuman_api::Refusal) the operator receives as a domain error.
                fn $method(&mut self, request: $Req) -> Result<$Rep, smmuman_api::Refusal>;
            )*
        }

        /// Decodes one operator request, runs it on `ops` and writes the reply into `reply`;
        /// returns the reply's length: always a well-formed reply when `reply` holds
        /// [`MAX_MESSAGE`](smmuman_api::MAX_MESSAGE) bytes (0 when it is shorter, after the
        /// request ran). A client op number is refused with `UnknownOp`: this entry point
        /// serves the operator's ops only, as the client dispatcher serves the clients' only.
        pub fn dispatch<S: AdminOps + ?Sized>(ops: &mut S, request: &[u8], reply: &mut [u8]) -> usize {
            let mut out = [0u8; smmuman_api::MAX_MESSAGE];
            let n = dispatch_into(ops, request, &mut out);
            match (reply.get_mut(..n), out.get(..n)) {
                (Some(dst), Some(src)) => {
                    dst.copy_from_slice(src);
                    n
                }
                _ => 0,
            }
        }

        fn dispatch_into<S: AdminOps + ?Sized>(
            ops: &mut S,
            request: &[u8],
            reply: &mut [u8; smmuman_api::MAX_MESSAGE],
        ) -> usize {
            use smmuman_api::message::{
                decode_payload, encode_ok, encode_protocol_error, encode_refusal,
            };
            let (header, payload) = match smmuman_api::header::Header::parse_request(request) {
                Ok(parsed) => parsed,
                Err(e) => {
                    let (op, id) = smmuman_api::header::Header::salvage(request);
                    return encode_protocol_error(op, id, &e, reply);
                }
            };
            let (op, id) = (header.op, header.request_id);
            match AdminOp::from_u16(op) {
                $(
                    Some(AdminOp::$Variant) => match decode_payload::<$Req>(payload) {
                        Err(e) => encode_protocol_error(op, id, &e, reply),
                        Ok(request) => match ops.$method(request) {
                            Ok(answer) => encode_ok(op, id, &answer, reply),
                            Err(refusal) => encode_refusal(op, id, &refusal, reply),
                        },
                    },
                )*
                None => {
                    let e = smmuman_api::ProtocolError::UnknownOp { op };
                    encode_protocol_error(op, id, &e, reply)
                }
            }
        }

        impl<T: smmuman_api::Transport> $crate::client::AdminClient<T> {
            $(
                $(#[doc = $doc])*
                ///
                /// # Errors
                /// [`AdminCallError`](crate::AdminCallError): refused, malformed, or the
                /// channel failed.
                pub fn $method(&mut self, $( $rf: $rt ),*) -> Result<$Rep, $crate::client::AdminCallError> {
                    self.call(&$Req { $( $rf ),* })
                }
            )*
        }
    };
}
