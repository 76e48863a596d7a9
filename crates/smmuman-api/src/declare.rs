//! The `interface!` macro: one op table in, both sides of the protocol out.
//!
//! Each entry of the table names an operation's number, its variant and method name, and the
//! fields of its request and reply (in wire order). From it the macro generates:
//!
//! * [`Op`](crate::Op), the operation numbers, and [`OPS`](crate::OPS), the table itself as data
//!   ([`OpInfo`]: names, docs with each op's refusals, field lists and sizes; the
//!   "Operations" section of `docs/protocol.md` is generated from it, [`write_operations`],
//!   and a test fails when the document is stale);
//! * one request and one reply struct per op, with their [`Wire`](crate::wire::Wire) encoding
//!   (fields packed in order, each checked by its type's decoder) and
//!   [`Request`](crate::message::Request) impl; a compile-time check that each fits in
//!   [`MAX_PAYLOAD`](crate::wire::MAX_PAYLOAD);
//! * the server side: [`ManagerOps`](crate::ManagerOps), one method per op, and
//!   [`dispatch`](crate::dispatch), which decodes a request, calls the method and encodes the
//!   reply, answering every malformed message with a protocol error;
//! * the client side: one typed method per op on [`Client`](crate::Client);
//! * `check_request_payload` and `check_reply_payload`, which validate any op's request or
//!   reply (behind [`check_request`](crate::message::check_request) and
//!   [`check_reply`](crate::message::check_reply)).
//!
//! Adding an op is one new entry in `interface.rs`: both sides, the table and the docs check
//! follow from it.

/// One field of a message, as the op table declares it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FieldInfo {
    /// The field's name.
    pub name: &'static str,
    /// Its Rust type, as written in the table.
    pub ty: &'static str,
    /// Its size on the wire.
    pub size: usize,
}

/// One operation, as the op table declares it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OpInfo {
    /// The operation.
    pub op: crate::Op,
    /// Its method name (on [`crate::Client`] and [`crate::ManagerOps`]).
    pub name: &'static str,
    /// Its documentation as declared, one entry per line: what it does, then its refusals in
    /// the order they are checked and the value each carries.
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

impl OpInfo {
    /// Writes the op's section of `docs/protocol.md` as the declaration has it: the heading,
    /// the op's documentation (semantics and refusals) and the request and reply layout
    /// tables ([`write_operations`] writes every op's).
    ///
    /// # Errors
    /// Whatever `w` returns.
    pub fn write_markdown(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        writeln!(w, "{}\n", self.heading())?;
        for line in self.doc {
            // Each doc line as the macro gets it: `/// text` gives " text".
            let line = line.strip_prefix(' ').unwrap_or(line);
            writeln!(w, "{}", line.trim_end())?;
        }
        if !self.doc.is_empty() {
            writeln!(w)?;
        }
        writeln!(w, "Request:\n")?;
        write_layout(w, self.request)?;
        writeln!(w, "\nReply:\n")?;
        write_layout(w, self.reply)
    }

    /// The op's heading in `docs/protocol.md`.
    pub fn heading(&self) -> OpHeading<'_> {
        OpHeading(self)
    }
}

/// The heading of an op's section of `docs/protocol.md` ([`OpInfo::heading`]).
pub struct OpHeading<'a>(&'a OpInfo);

impl core::fmt::Display for OpHeading<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let i = self.0;
        write!(
            f,
            "### {} `{}` (request {} bytes, reply {} bytes)",
            i.op.number(),
            i.name,
            i.request_size,
            i.reply_size
        )
    }
}

/// The line before the generated part of `docs/protocol.md`.
pub const GENERATED_BEGIN: &str = "<!-- generated from crates/smmuman-api/src/interface.rs: \
     cargo run -p smmuman-api --example protocol_layouts -- --write docs/protocol.md -->";
/// The line after it.
pub const GENERATED_END: &str = "<!-- end of generated operations -->";

/// Writes every op's section of `docs/protocol.md`, in table order: what goes between
/// [`GENERATED_BEGIN`] and [`GENERATED_END`].
///
/// # Errors
/// Whatever `w` returns.
pub fn write_operations(w: &mut impl core::fmt::Write) -> core::fmt::Result {
    for (i, info) in crate::OPS.iter().enumerate() {
        if i > 0 {
            writeln!(w)?;
        }
        info.write_markdown(w)?;
    }
    Ok(())
}

/// `doc` with its generated part (between [`GENERATED_BEGIN`] and [`GENERATED_END`]) replaced
/// by `generated`; `None` when `doc` lacks the markers.
pub fn replace_generated<'a>(
    doc: &'a str,
    generated: &'a str,
) -> Option<impl Iterator<Item = &'a str>> {
    replace_between(doc, GENERATED_BEGIN, GENERATED_END, generated)
}

/// `doc` with what lies between the markers `begin` and `end` replaced by `generated` (the
/// one rule every generated document section follows: the client protocol's and the
/// operator protocol's); `None` when `doc` lacks a marker.
pub fn replace_between<'a>(
    doc: &'a str,
    begin: &str,
    end: &str,
    generated: &'a str,
) -> Option<impl Iterator<Item = &'a str>> {
    let from = doc.find(begin)? + begin.len();
    let to = from + doc.get(from..)?.find(end)?;
    Some([doc.get(..from)?, "\n\n", generated, "\n", doc.get(to..)?].into_iter())
}

/// A message's fields as a Markdown table: offset, size, name, type.
pub fn write_layout(w: &mut impl core::fmt::Write, fields: &[FieldInfo]) -> core::fmt::Result {
    writeln!(w, "| offset | size | field | type |\n|---:|---:|---|---|")?;
    let mut at = 0;
    for f in fields {
        writeln!(w, "| {at} | {} | `{}` | `{}` |", f.size, f.name, f.ty)?;
        at += f.size;
    }
    if fields.is_empty() {
        writeln!(w, "| - | 0 | (empty) | |")?;
    }
    Ok(())
}

macro_rules! interface {
    ($(
        $(#[doc = $doc:literal])*
        op $Variant:ident = $num:literal, fn $method:ident(
            $Req:ident { $( $(#[doc = $rdoc:literal])* $rf:ident : $rt:ty ),* $(,)? }
        ) -> $Rep:ident { $( $(#[doc = $pdoc:literal])* $pf:ident : $pt:ty ),* $(,)? };
    )*) => {
        /// Every operation, by its wire number.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u16)]
        pub enum Op {
            $( $(#[doc = $doc])* $Variant = $num, )*
        }

        impl Op {
            /// Every operation, in table order.
            pub const ALL: &'static [Op] = &[$(Op::$Variant),*];

            /// The operation numbered `n`, if any.
            pub const fn from_u16(n: u16) -> Option<Op> {
                match n {
                    $( $num => Some(Op::$Variant), )*
                    _ => None,
                }
            }

            /// The wire number.
            pub const fn number(self) -> u16 {
                self as u16
            }

            /// The op's table entry.
            pub const fn info(self) -> &'static $crate::declare::OpInfo {
                match self {
                    $( Op::$Variant => &$Req::INFO, )*
                }
            }
        }

        /// The op table as data, in table order.
        pub const OPS: &[$crate::declare::OpInfo] = &[$($Req::INFO),*];

        $(
            #[doc = concat!("Request of [`Op::", stringify!($Variant), "`].")]
            #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
            pub struct $Req {
                $( $(#[doc = $rdoc])* pub $rf: $rt, )*
            }

            #[doc = concat!("Reply of [`Op::", stringify!($Variant), "`].")]
            #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
            pub struct $Rep {
                $( $(#[doc = $pdoc])* pub $pf: $pt, )*
            }

            impl $Req {
                /// This op's entry in the op table.
                pub const INFO: $crate::declare::OpInfo = $crate::declare::OpInfo {
                    op: Op::$Variant,
                    name: stringify!($method),
                    doc: &[$($doc),*],
                    request: &[$( $crate::declare::FieldInfo {
                        name: stringify!($rf),
                        ty: stringify!($rt),
                        size: <$rt as $crate::wire::Wire>::SIZE,
                    } ),*],
                    reply: &[$( $crate::declare::FieldInfo {
                        name: stringify!($pf),
                        ty: stringify!($pt),
                        size: <$pt as $crate::wire::Wire>::SIZE,
                    } ),*],
                    request_size: <$Req as $crate::wire::Wire>::SIZE,
                    reply_size: <$Rep as $crate::wire::Wire>::SIZE,
                };
            }

            impl $crate::wire::Wire for $Req {
                const SIZE: usize = 0 $( + <$rt as $crate::wire::Wire>::SIZE )*;
                #[allow(unused_variables)]
                fn put(&self, w: &mut $crate::wire::Writer<'_>) {
                    $( w.field(&self.$rf); )*
                }
                #[allow(unused_variables)]
                fn get(
                    r: &mut $crate::wire::Reader<'_>,
                ) -> Result<Self, $crate::wire::FieldError> {
                    Ok(Self { $( $rf: r.field()?, )* })
                }
            }

            impl $crate::wire::Wire for $Rep {
                const SIZE: usize = 0 $( + <$pt as $crate::wire::Wire>::SIZE )*;
                #[allow(unused_variables)]
                fn put(&self, w: &mut $crate::wire::Writer<'_>) {
                    $( w.field(&self.$pf); )*
                }
                #[allow(unused_variables)]
                fn get(
                    r: &mut $crate::wire::Reader<'_>,
                ) -> Result<Self, $crate::wire::FieldError> {
                    Ok(Self { $( $pf: r.field()?, )* })
                }
            }

            impl $crate::message::Request for $Req {
                const OP: Op = Op::$Variant;
                type Reply = $Rep;
            }

            const _: () = assert!(
                <$Req as $crate::wire::Wire>::SIZE <= $crate::wire::MAX_PAYLOAD
                    && <$Rep as $crate::wire::Wire>::SIZE <= $crate::wire::MAX_PAYLOAD,
                concat!(stringify!($Variant), ": message larger than MAX_PAYLOAD"),
            );
        )*

        /// The manager's side of the interface: one method per operation.
        ///
        /// [`dispatch`] calls these with a request that already passed every wire check, and the
        /// [`ClientId`] the transport vouches for. A method returns the reply, or a
        /// [`Refusal`] that reaches the client as a domain error.
        pub trait ManagerOps {
            $(
                $(#[doc = $doc])*
                ///
                /// # Errors
                /// A [`Refusal`] the client receives as a domain error; the request changed
                /// nothing.
                fn $method(&mut self, client: ClientId, request: $Req) -> Result<$Rep, Refusal>;
            )*

            /// Called for every malformed message (for statistics and the log); the reply is
            /// already decided.
            fn protocol_error(&mut self, client: ClientId, error: &ProtocolError) {
                let _ = (client, error);
            }

            /// Called for every refused request (for statistics and the log).
            fn refused(&mut self, client: ClientId, op: Op, refusal: &Refusal) {
                let _ = (client, op, refusal);
            }
        }

        /// Decodes one request from `client`, runs it on `ops`, and writes the reply into
        /// `reply`; returns the reply's length: always a well-formed reply of at least
        /// [`HEADER_LEN`](crate::wire::HEADER_LEN) bytes, whatever `request` holds, provided
        /// `reply` can hold [`MAX_MESSAGE`](crate::wire::MAX_MESSAGE) bytes. (A shorter
        /// buffer is a transport bug: a reply that does not fit is not written and 0 is
        /// returned, after the request ran.)
        ///
        /// `client` comes from the transport, never from the message.
        pub fn dispatch<S: ManagerOps + ?Sized>(
            ops: &mut S,
            client: ClientId,
            request: &[u8],
            reply: &mut [u8],
        ) -> usize {
            let mut out = [0u8; $crate::wire::MAX_MESSAGE];
            let n = dispatch_into(ops, client, request, &mut out);
            match (reply.get_mut(..n), out.get(..n)) {
                (Some(dst), Some(src)) => {
                    dst.copy_from_slice(src);
                    n
                }
                _ => 0,
            }
        }

        fn dispatch_into<S: ManagerOps + ?Sized>(
            ops: &mut S,
            client: ClientId,
            request: &[u8],
            reply: &mut [u8; $crate::wire::MAX_MESSAGE],
        ) -> usize {
            let (header, payload) = match $crate::header::Header::parse_request(request) {
                Ok(parsed) => parsed,
                Err(e) => {
                    let (op, id) = $crate::header::Header::salvage(request);
                    ops.protocol_error(client, &e);
                    return $crate::message::encode_protocol_error(op, id, &e, reply);
                }
            };
            let (op, id) = (header.op, header.request_id);
            match Op::from_u16(op) {
                $(
                    Some(Op::$Variant) => {
                        match $crate::message::decode_payload::<$Req>(payload) {
                            Err(e) => {
                                ops.protocol_error(client, &e);
                                $crate::message::encode_protocol_error(op, id, &e, reply)
                            }
                            Ok(request) => match ops.$method(client, request) {
                                Ok(answer) => {
                                    $crate::message::encode_ok(op, id, &answer, reply)
                                }
                                Err(refusal) => {
                                    ops.refused(client, Op::$Variant, &refusal);
                                    $crate::message::encode_refusal(op, id, &refusal, reply)
                                }
                            },
                        }
                    }
                )*
                None => {
                    let e = ProtocolError::UnknownOp { op };
                    ops.protocol_error(client, &e);
                    $crate::message::encode_protocol_error(op, id, &e, reply)
                }
            }
        }

        /// Decodes the payload of an `op` request, only to check it.
        pub(crate) fn check_request_payload(
            op: Op,
            payload: &[u8],
        ) -> Result<(), ProtocolError> {
            match op {
                $( Op::$Variant => $crate::message::decode_payload::<$Req>(payload).map(|_| ()), )*
            }
        }

        /// Decodes the Ok payload of `op`'s reply, only to check it.
        pub(crate) fn check_reply_payload(
            op: Op,
            payload: &[u8],
        ) -> Result<(), ProtocolError> {
            match op {
                $( Op::$Variant => $crate::message::decode_payload::<$Rep>(payload).map(|_| ()), )*
            }
        }

        impl<T: Transport> Client<T> {
            $(
                $(#[doc = $doc])*
                ///
                /// # Errors
                /// [`CallError::Refused`] when the manager refuses, [`CallError::Transport`]
                /// when the message does not get there and back, [`CallError::Protocol`] or
                /// [`CallError::BadReply`] when either side sent a malformed message.
                pub fn $method(&mut self, $( $rf: $rt ),*) -> Result<$Rep, CallError> {
                    self.call(&$Req { $( $rf ),* })
                }
            )*
        }
    };
}
