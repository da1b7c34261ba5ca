//! MSB-first bit reading and writing: the one bit cursor behind H.264 SPS
//! parsing (Exp-Golomb codes included), AAC AudioSpecificConfig and ADTS headers.
//!
//! Every read names the field it was reading, so a codec's error can say
//! what was cut short. Reads are total: running out of data is an error,
//! never a panic.

/// Why a read failed; codecs map it into their own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitError {
    /// The data ended while reading this field.
    Truncated(&'static str),
    /// An Exp-Golomb code in this field has more than 31 leading zeros.
    ExpGolombOverflow(&'static str),
}

/// MSB-first bit cursor; `Copy` so optional extensions can be tried and dropped.
#[derive(Debug, Clone, Copy)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits left to read.
    pub fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    pub fn bit(&mut self, field: &'static str) -> Result<bool, BitError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(BitError::Truncated(field))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n <= 32` bits as an unsigned big-endian number.
    pub fn bits(&mut self, n: u32, field: &'static str) -> Result<u32, BitError> {
        debug_assert!(n <= 32);
        if n as usize > self.remaining() {
            return Err(BitError::Truncated(field));
        }
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit(field)?);
        }
        Ok(v)
    }

    pub fn byte(&mut self, field: &'static str) -> Result<u8, BitError> {
        // Eight bits always fit.
        Ok(self.bits(8, field)? as u8)
    }

    /// Unsigned Exp-Golomb, ue(v).
    pub fn ue(&mut self, field: &'static str) -> Result<u32, BitError> {
        let mut leading_zeros = 0u32;
        while !self.bit(field)? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(BitError::ExpGolombOverflow(field));
            }
        }
        let suffix = self.bits(leading_zeros, field)?;
        // 2^lz - 1 + suffix, at most 2^32 - 2 for lz <= 31.
        Ok(((1u64 << leading_zeros) - 1 + u64::from(suffix)) as u32)
    }

    /// Signed Exp-Golomb, se(v): 1, 2, 3, 4 map to 1, -1, 2, -2.
    pub fn se(&mut self, field: &'static str) -> Result<i64, BitError> {
        let k = i64::from(self.ue(field)?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// MSB-first bit writer; the last byte is zero-padded.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    pub fn bit(&mut self, b: bool) -> &mut Self {
        if self.bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if b {
            if let Some(last) = self.bytes.last_mut() {
                *last |= 0x80 >> (self.bits % 8);
            }
        }
        self.bits += 1;
        self
    }

    /// Writes the low `n <= 64` bits of `value`, most significant first.
    pub fn bits(&mut self, n: u32, value: u64) -> &mut Self {
        for i in (0..n.min(64)).rev() {
            self.bit((value >> i) & 1 == 1);
        }
        self
    }

    /// Unsigned Exp-Golomb, ue(v).
    pub fn ue(&mut self, v: u32) -> &mut Self {
        let v = u64::from(v) + 1;
        let len = 64 - v.leading_zeros();
        self.bits(len - 1, 0).bits(len, v)
    }

    /// Signed Exp-Golomb, se(v); saturates beyond the 32-bit ue(v) range.
    pub fn se(&mut self, v: i64) -> &mut Self {
        let k = if v > 0 {
            v.saturating_mul(2) - 1
        } else {
            v.saturating_mul(-2)
        };
        self.ue(u32::try_from(k).unwrap_or(u32::MAX))
    }

    /// Bits written so far.
    pub fn bit_len(&self) -> usize {
        self.bits
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_values() {
        let mut w = BitWriter::default();
        for v in [0, 1, 2, 3, 7, 255, 65535, u32::MAX - 1] {
            w.ue(v);
        }
        for v in [0i64, 1, -1, 2, -2, 1000, -1000] {
            w.se(v);
        }
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        for v in [0, 1, 2, 3, 7, 255, 65535, u32::MAX - 1] {
            assert_eq!(r.ue("t").unwrap(), v);
        }
        for v in [0i64, 1, -1, 2, -2, 1000, -1000] {
            assert_eq!(r.se("t").unwrap(), v);
        }
    }

    #[test]
    fn exp_golomb_overflow_and_truncation() {
        let zeros = [0u8; 8];
        assert_eq!(
            BitReader::new(&zeros).ue("x"),
            Err(BitError::ExpGolombOverflow("x"))
        );
        assert_eq!(
            BitReader::new(&[0x00, 0x01]).ue("x"),
            Err(BitError::Truncated("x"))
        );
        assert_eq!(BitReader::new(&[]).bit("y"), Err(BitError::Truncated("y")));
    }

    #[test]
    fn fixed_width_fields() {
        let mut r = BitReader::new(&[0xa5, 0x0f, 0xff]);
        assert_eq!(r.bits(3, "a"), Ok(0b101));
        assert_eq!(r.byte("b"), Ok(0x28));
        assert_eq!(r.remaining(), 13);
        // A copy reads ahead without moving the original.
        let mut ahead = r;
        assert_eq!(ahead.bits(13, "c"), Ok(0x0fff));
        assert_eq!(ahead.bit("d"), Err(BitError::Truncated("d")));
        assert_eq!(r.bits(14, "e"), Err(BitError::Truncated("e")));
        assert_eq!(r.bits(0, "f"), Ok(0));
        assert_eq!(BitReader::new(&[1, 2, 3, 4]).bits(32, "g"), Ok(0x0102_0304));
    }

    #[test]
    fn writer_packs_msb_first_and_pads() {
        let mut w = BitWriter::default();
        w.bits(5, 2).bits(4, 3).bits(4, 2).bits(3, 0);
        assert_eq!(w.bit_len(), 16);
        assert_eq!(w.into_bytes(), vec![0x11, 0x90]);
        let mut w = BitWriter::default();
        w.bit(true).bits(2, 0xff);
        assert_eq!(w.into_bytes(), vec![0xe0]);
        assert!(BitWriter::default().into_bytes().is_empty());
    }
}
