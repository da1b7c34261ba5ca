//! Minimal ISO-BMFF box writer over [`BytesMut`].
//!
//! Boxes are written in one pass: the header goes out with a placeholder size,
//! the body is produced by a closure, then the size is patched. Nothing here
//! panics; sizes that cannot be represented saturate (callers keep boxes far
//! below 4 GiB, and `mdat` is the only box that could grow that big).

use bytes::{BufMut, BytesMut};

/// A four-character box type or brand.
pub type FourCc = [u8; 4];

/// Size of a plain box header (32-bit size + type).
pub const HEADER_LEN: usize = 8;

/// Writes a box of type `kind` whose body is produced by `body`.
pub fn write_box(buf: &mut BytesMut, kind: &FourCc, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_slice(kind);
    body(buf);
    patch_u32(buf, start, saturating_u32(buf.len() - start));
}

/// Writes a full box: a box whose body starts with an 8-bit version and 24-bit flags.
pub fn write_full_box(
    buf: &mut BytesMut,
    kind: &FourCc,
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    write_box(buf, kind, |b| {
        b.put_u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
        body(b);
    });
}

/// Writes an MPEG-4 descriptor (ISO/IEC 14496-1 §8.3.3): tag, expandable length, body.
///
/// The body is built first because the length prefix has a variable width.
pub fn write_descriptor(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let mut inner = BytesMut::new();
    body(&mut inner);
    buf.put_u8(tag);
    put_descriptor_len(buf, inner.len());
    buf.put_slice(&inner);
}

/// Expandable length: 7 bits per byte, high bit = "more follows", at most 4 bytes (28 bits).
fn put_descriptor_len(buf: &mut BytesMut, len: usize) {
    let len = len.min(0x0FFF_FFFF);
    let groups = match len {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    };
    for i in (0..groups).rev() {
        let mut byte = ((len >> (7 * i)) & 0x7F) as u8;
        if i > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
    }
}

/// Appends `n` zero bytes (reserved fields).
pub fn put_zeros(buf: &mut BytesMut, n: usize) {
    buf.put_bytes(0, n);
}

/// The identity transformation matrix used by `mvhd` and `tkhd`.
pub fn put_unity_matrix(buf: &mut BytesMut) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        buf.put_u32(v);
    }
}

/// Overwrites a big-endian u32 at `pos`; a no-op if it would run past the end.
pub fn patch_u32(buf: &mut BytesMut, pos: usize, value: u32) {
    if let Some(slot) = pos.checked_add(4).and_then(|end| buf.get_mut(pos..end)) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

/// `usize` → `u32`, clamping instead of wrapping.
pub fn saturating_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_size_is_patched() {
        let mut b = BytesMut::new();
        write_box(&mut b, b"free", |b| b.put_slice(&[1, 2, 3]));
        assert_eq!(&b[..], &[0, 0, 0, 11, b'f', b'r', b'e', b'e', 1, 2, 3]);
    }

    #[test]
    fn nested_full_box() {
        let mut b = BytesMut::new();
        write_box(&mut b, b"moov", |b| {
            write_full_box(b, b"mvhd", 1, 0x020001, |b| b.put_u8(9));
        });
        assert_eq!(
            &b[..],
            &[
                0, 0, 0, 21, b'm', b'o', b'o', b'v', 0, 0, 0, 13, b'm', b'v', b'h', b'd', 1, 2, 0,
                1, 9
            ]
        );
    }

    #[test]
    fn descriptor_lengths() {
        let mut b = BytesMut::new();
        write_descriptor(&mut b, 5, |b| b.put_slice(&[0x12, 0x10]));
        assert_eq!(&b[..], &[5, 2, 0x12, 0x10]);

        let mut b = BytesMut::new();
        put_descriptor_len(&mut b, 200);
        assert_eq!(&b[..], &[0x81, 0x48]);
        let mut b = BytesMut::new();
        put_descriptor_len(&mut b, 0x4000);
        assert_eq!(&b[..], &[0x81, 0x80, 0x00]);
    }

    #[test]
    fn patch_out_of_range_is_noop() {
        let mut b = BytesMut::from(&[0u8; 3][..]);
        patch_u32(&mut b, 1, 7);
        patch_u32(&mut b, usize::MAX, 7);
        assert_eq!(&b[..], &[0, 0, 0]);
    }
}
