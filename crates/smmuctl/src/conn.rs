//! The operator's channel from this side: a byte stream (Unix or TCP socket) carrying admin
//! messages framed by their own header (`smmuman_admin_api::frame`).

use smmuman_admin_api::frame::frame_len;
use smmuman_api::wire::HEADER_LEN;
use smmuman_api::{Transport, TransportError};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;

/// `TransportError::Other` code: the reply's header is not an smmuman header (the peer is
/// something else, or the stream is out of step).
pub const NOT_SMMUMAN: i32 = -2;
/// `TransportError::Other` code: a listing never ended (the server kept saying `more`).
pub const ENDLESS: i32 = -3;
/// `TransportError::Other` code: writing the output failed.
pub const OUTPUT: i32 = -4;
/// `TransportError::Other` code: no reply within [`REPLY_TIMEOUT`] (on the board the channel
/// is a UART: a daemon that does not poll it, or a QEMU whose UART is not this socket, says
/// nothing at all).
pub const NO_REPLY: i32 = -5;
/// How long a reply may take.
pub const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the manager's operator channel is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Endpoint {
    /// A Unix socket (QEMU `-chardev socket,path=...,server=on`).
    Unix(String),
    /// A TCP address (QEMU `-chardev socket,host=...,port=...,server=on`).
    Tcp(String),
}

impl Endpoint {
    /// `unix:PATH`, `tcp:HOST:PORT`, or a bare path (a Unix socket).
    pub fn parse(s: &str) -> Endpoint {
        if let Some(p) = s.strip_prefix("unix:") {
            Endpoint::Unix(p.to_string())
        } else if let Some(a) = s.strip_prefix("tcp:") {
            Endpoint::Tcp(a.to_string())
        } else {
            Endpoint::Unix(s.to_string())
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{p}"),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A connected stream.
pub enum Stream {
    /// Unix socket.
    #[cfg(unix)]
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to `at`.
    ///
    /// # Errors
    /// `NoManager` when nothing listens there, `Other` with the OS error otherwise.
    pub fn connect(at: &Endpoint) -> Result<Stream, TransportError> {
        let r = match at {
            #[cfg(unix)]
            Endpoint::Unix(p) => UnixStream::connect(p)
                .and_then(|s| s.set_read_timeout(Some(REPLY_TIMEOUT)).map(|()| s))
                .map(Stream::Unix),
            #[cfg(not(unix))]
            Endpoint::Unix(_) => Err(std::io::Error::from(ErrorKind::Unsupported)),
            Endpoint::Tcp(a) => TcpStream::connect(a)
                .and_then(|s| s.set_read_timeout(Some(REPLY_TIMEOUT)).map(|()| s))
                .map(Stream::Tcp),
        };
        r.map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => TransportError::NoManager,
            _ => io_error(&e),
        })
    }

    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn io_error(e: &std::io::Error) -> TransportError {
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::BrokenPipe
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted => TransportError::Disconnected,
        ErrorKind::WouldBlock | ErrorKind::TimedOut => TransportError::Other { code: NO_REPLY },
        _ => TransportError::Other {
            code: e.raw_os_error().unwrap_or(-1),
        },
    }
}

/// Sends one message and reads one back: the header, checked, then its payload.
///
/// # Errors
/// `Disconnected` when the stream ends, `ReplyTooLong` when the reply would not fit `reply`,
/// `Other` for a reply header that is not ours (the stream is out of step: drop it).
pub fn exchange<S: Read + Write + ?Sized>(
    s: &mut S,
    request: &[u8],
    reply: &mut [u8],
) -> Result<usize, TransportError> {
    s.write_all(request).map_err(|e| io_error(&e))?;
    s.flush().map_err(|e| io_error(&e))?;
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).map_err(|e| io_error(&e))?;
    let n = frame_len(&head).map_err(|_| TransportError::Other { code: NOT_SMMUMAN })?;
    let dst = reply
        .get_mut(..n)
        .ok_or(TransportError::ReplyTooLong { len: n })?;
    let (h, rest) = dst.split_at_mut(HEADER_LEN);
    h.copy_from_slice(&head);
    s.read_exact(rest).map_err(|e| io_error(&e))?;
    Ok(n)
}

impl Transport for Stream {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        exchange(self.io(), request, reply)
    }
}
