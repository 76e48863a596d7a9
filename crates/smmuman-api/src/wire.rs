//! Little-endian, fixed-layout encoding of message fields.
//!
//! Every field type implements [`Wire`]: a fixed size, an encoder that cannot fail, and a decoder
//! that checks the value before anyone sees it. Fields are packed back to back with no padding;
//! offsets are the running sum of the sizes, so a message layout is just its field list.

use core::fmt;

/// First two bytes of every message: `"SM"` on the wire (`0x4d53` read little-endian).
pub const MAGIC: u16 = 0x4d53;
/// The protocol version this crate speaks (see `docs/protocol.md`, "Versioning").
pub const VERSION: u8 = 3;
/// Size of the fixed header in front of every payload.
pub const HEADER_LEN: usize = 16;
/// Largest message (header + payload) either side ever sends or accepts.
pub const MAX_MESSAGE: usize = 1024;
/// Largest payload.
pub const MAX_PAYLOAD: usize = MAX_MESSAGE - HEADER_LEN;
/// Granule every length and address in the protocol is counted in (4 KiB).
pub const PAGE_SIZE: u64 = iommu_core::PAGE_SIZE;

/// A field held a value its type does not allow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FieldError {
    /// Byte offset of the offending field inside the payload.
    pub offset: usize,
    /// The value found there (the raw number; 0 when the payload was too short to hold it).
    pub value: u64,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value {:#x} at payload offset {}",
            self.value, self.offset
        )
    }
}

/// Reads fields from a payload, front to back, never past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Offset of the next field.
    pub const fn offset(&self) -> usize {
        self.at
    }

    /// Bytes not read yet.
    pub const fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    /// A [`FieldError`] for a field that started at `offset` and held `value`.
    pub const fn reject(offset: usize, value: u64) -> FieldError {
        FieldError { offset, value }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], FieldError> {
        let end = self.at.saturating_add(N);
        let bytes = self
            .bytes
            .get(self.at..end)
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or(FieldError {
                offset: self.at,
                value: 0,
            })?;
        self.at = end;
        Ok(bytes)
    }

    /// Reads a `u8`.
    ///
    /// # Errors
    /// A [`FieldError`] at the current offset when the payload is too short.
    pub fn u8(&mut self) -> Result<u8, FieldError> {
        Ok(self.take::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    ///
    /// # Errors
    /// A [`FieldError`] at the current offset when the payload is too short.
    pub fn u16(&mut self) -> Result<u16, FieldError> {
        self.take().map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    /// A [`FieldError`] at the current offset when the payload is too short.
    pub fn u32(&mut self) -> Result<u32, FieldError> {
        self.take().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    ///
    /// # Errors
    /// A [`FieldError`] at the current offset when the payload is too short.
    pub fn u64(&mut self) -> Result<u64, FieldError> {
        self.take().map(u64::from_le_bytes)
    }

    /// Reads `n` bytes that must all be zero (reserved space).
    ///
    /// # Errors
    /// A [`FieldError`] at the first non-zero byte, or when the payload is too short.
    pub fn zeros(&mut self, n: usize) -> Result<(), FieldError> {
        for _ in 0..n {
            let at = self.at;
            let b = self.u8()?;
            if b != 0 {
                return Err(Self::reject(at, b.into()));
            }
        }
        Ok(())
    }

    /// Reads one field of type `T`.
    ///
    /// # Errors
    /// Whatever `T`'s decoder refuses.
    pub fn field<T: Wire>(&mut self) -> Result<T, FieldError> {
        T::get(self)
    }
}

/// Writes fields into a buffer, front to back.
///
/// Callers size the buffer from the message's [`Wire::SIZE`] (checked at compile time against
/// [`MAX_PAYLOAD`]); bytes past the end of the buffer are dropped rather than panicking, and
/// [`Writer::overflowed`] says so.
#[derive(Debug)]
pub struct Writer<'a> {
    bytes: &'a mut [u8],
    at: usize,
    overflowed: bool,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `bytes`.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            overflowed: false,
        }
    }

    /// Bytes written so far.
    pub const fn len(&self) -> usize {
        self.at
    }

    /// Whether nothing was written.
    pub const fn is_empty(&self) -> bool {
        self.at == 0
    }

    /// Whether a write fell off the end of the buffer.
    pub const fn overflowed(&self) -> bool {
        self.overflowed
    }

    fn put(&mut self, src: &[u8]) {
        let end = self.at.saturating_add(src.len());
        match self.bytes.get_mut(self.at..end) {
            Some(dst) => dst.copy_from_slice(src),
            None => self.overflowed = true,
        }
        self.at = end;
    }

    /// Writes a `u8`.
    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    /// Writes a little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }

    /// Writes a little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    /// Writes a little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }

    /// Writes `n` zero bytes (reserved space).
    pub fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.u8(0);
        }
    }

    /// Writes one field.
    pub fn field<T: Wire>(&mut self, v: &T) {
        v.put(self);
    }
}

/// A type with a fixed little-endian wire layout.
pub trait Wire: Sized {
    /// Encoded size in bytes.
    const SIZE: usize;

    /// Appends the encoding of `self`.
    fn put(&self, w: &mut Writer<'_>);

    /// Decodes one value, checking every byte it reads.
    ///
    /// # Errors
    /// A [`FieldError`] naming the offset and value of the first field that is out of range.
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError>;
}

macro_rules! wire_uint {
    ($($t:ident),*) => {$(
        impl Wire for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            fn put(&self, w: &mut Writer<'_>) {
                w.$t(*self);
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
                r.$t()
            }
        }
    )*};
}
wire_uint!(u8, u16, u32, u64);

macro_rules! wire_newtype {
    ($($t:ty => $inner:ident),*) => {$(
        impl Wire for $t {
            const SIZE: usize = core::mem::size_of::<$inner>();
            fn put(&self, w: &mut Writer<'_>) {
                w.$inner(self.0);
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
                r.$inner().map(Self)
            }
        }
    )*};
}
wire_newtype!(
    iommu_core::Iova => u64,
    iommu_core::PhysAddr => u64,
    iommu_core::StreamId => u32
);

/// `bool` is one byte, 0 or 1.
impl Wire for bool {
    const SIZE: usize = 1;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(u8::from(*self));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let at = r.offset();
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Reader::reject(at, v.into())),
        }
    }
}

/// [`iommu_core::Access`] is one byte of READ (bit 0), WRITE (bit 1), EXEC (bit 2); anything
/// [`crate::types::is_window_access`] refuses (unknown bits, `DEVICE`, the empty set) is
/// refused.
impl Wire for iommu_core::Access {
    const SIZE: usize = 1;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(self.bits());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let at = r.offset();
        let v = r.u8()?;
        match iommu_core::Access::from_bits(v) {
            Some(a) if crate::types::is_window_access(a) => Ok(a),
            _ => Err(Reader::reject(at, v.into())),
        }
    }
}

/// Encodes `v` into `out`, returning the number of bytes written.
pub fn encode<T: Wire>(v: &T, out: &mut [u8]) -> usize {
    let mut w = Writer::new(out);
    v.put(&mut w);
    w.len()
}

/// Decodes a `T` that must fill `bytes` exactly.
///
/// # Errors
/// A [`FieldError`] for the first bad field; trailing bytes are reported at their offset.
pub fn decode_exact<T: Wire>(bytes: &[u8]) -> Result<T, FieldError> {
    let mut r = Reader::new(bytes);
    let v = T::get(&mut r)?;
    if r.remaining() != 0 {
        return Err(Reader::reject(r.offset(), r.remaining() as u64));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_core::{Access, Iova};

    #[test]
    fn access_on_the_wire_is_read_write_exec_only() {
        let decode_byte = |b: u8| Access::get(&mut Reader::new(&[b]));
        assert_eq!(decode_byte(0b011), Ok(Access::RW));
        assert!(decode_byte(0b111).is_ok());
        // DEVICE (bit 3) is the VMM's CPU stage-2 attribute, not a client's to ask for.
        assert!(decode_byte(0b1011).is_err());
        assert!(decode_byte(0).is_err());
    }

    #[test]
    fn integers_are_little_endian() {
        let mut buf = [0u8; 15];
        let mut w = Writer::new(&mut buf);
        w.u8(0x11);
        w.u16(0x2233);
        w.u32(0x4455_6677);
        w.u64(0x8899_aabb_ccdd_eeff);
        assert!(!w.overflowed());
        assert_eq!(
            buf,
            [
                0x11, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99,
                0x88
            ]
        );
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8(), Ok(0x11));
        assert_eq!(r.u16(), Ok(0x2233));
        assert_eq!(r.u32(), Ok(0x4455_6677));
        assert_eq!(r.u64(), Ok(0x8899_aabb_ccdd_eeff));
        assert_eq!(
            r.u8(),
            Err(FieldError {
                offset: 15,
                value: 0
            })
        );
    }

    #[test]
    fn writer_drops_what_does_not_fit() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.u16(0xffff);
        w.u16(0xffff);
        assert!(w.overflowed());
        assert_eq!(buf, [0xff, 0xff, 0]);
    }

    #[test]
    fn access_refuses_unknown_bits_and_the_empty_set() {
        assert_eq!(decode_exact::<Access>(&[3]), Ok(Access::RW));
        assert_eq!(
            decode_exact::<Access>(&[0]),
            Err(FieldError {
                offset: 0,
                value: 0
            })
        );
        assert_eq!(
            decode_exact::<Access>(&[8]),
            Err(FieldError {
                offset: 0,
                value: 8
            })
        );
    }

    #[test]
    fn bool_is_zero_or_one() {
        assert_eq!(decode_exact::<bool>(&[1]), Ok(true));
        assert_eq!(
            decode_exact::<bool>(&[2]),
            Err(FieldError {
                offset: 0,
                value: 2
            })
        );
    }

    #[test]
    fn exact_decoding_refuses_trailing_bytes() {
        assert_eq!(decode_exact::<Iova>(&[1, 0, 0, 0, 0, 0, 0, 0]), Ok(Iova(1)));
        assert_eq!(
            decode_exact::<Iova>(&[1, 0, 0, 0, 0, 0, 0, 0, 9]),
            Err(FieldError {
                offset: 8,
                value: 1
            })
        );
    }

    #[test]
    fn zeros_names_the_first_non_zero_byte() {
        let mut r = Reader::new(&[0, 0, 5, 0]);
        assert_eq!(
            r.zeros(4),
            Err(FieldError {
                offset: 2,
                value: 5
            })
        );
    }
}
