//! Timed metadata in CMAF parts (sans-IO): ID3 tags carried in `emsg` boxes.
//!
//! The scheme `https://aomedia.org/emsg/ID3` (AOM "Carriage of ID3 Timed Metadata in CMAF")
//! puts a whole ID3v2 tag in an `emsg` (ISO/IEC 23009-1 §5.10.3.3) placed before a chunk's
//! `moof`. Players that understand it (hls.js, Safari, ExoPlayer) surface the tag as a timed
//! metadata cue at the event's presentation time; others skip the box. ferrocast carries each
//! chat event this way, so a recording or a CDN-only viewer gets the chat with the picture.

use bytes::{BufMut, Bytes, BytesMut};

use super::boxes::write_full_box;

/// `scheme_id_uri` for ID3 in `emsg`.
pub const ID3_SCHEME: &str = "https://aomedia.org/emsg/ID3";
/// Event timescale: the media timescale of [`crate::media::TIMESCALE`].
pub const EMSG_TIMESCALE: u32 = crate::media::TIMESCALE;
/// The `TXXX` description that marks a ferrocast chat event.
pub const CHAT_DESCRIPTION: &str = "ferrocast-chat";

/// One event to carry: where it sits on the program date-time clock and its ID3 tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedMetadata {
    /// Unique per stream (the `emsg` id, so players can drop duplicates).
    pub id: u32,
    /// Program date-time (UNIX ms) the event belongs to.
    pub pdt_ms: u64,
    /// A complete ID3v2 tag.
    pub id3: Bytes,
}

/// An ID3v2.4 tag holding one `TXXX` (user text) frame in UTF-8.
pub fn id3_txxx(description: &str, value: &str) -> Bytes {
    let mut frame = BytesMut::with_capacity(description.len() + value.len() + 2);
    frame.put_u8(3); // UTF-8
    frame.put_slice(description.as_bytes());
    frame.put_u8(0);
    frame.put_slice(value.as_bytes());
    let mut tag = BytesMut::with_capacity(frame.len() + 20);
    tag.put_slice(b"ID3");
    tag.put_slice(&[4, 0, 0]); // v2.4.0, no flags
    tag.put_slice(&syncsafe(frame.len() + 10));
    tag.put_slice(b"TXXX");
    tag.put_slice(&syncsafe(frame.len())); // v2.4 frame sizes are syncsafe too
    tag.put_u16(0);
    tag.put_slice(&frame);
    tag.freeze()
}

/// 28-bit sizes in four 7-bit bytes; larger values saturate (tags stay far below 256 MiB).
fn syncsafe(n: usize) -> [u8; 4] {
    let n = n.min(0x0FFF_FFFF) as u32;
    [
        (n >> 21) as u8 & 0x7F,
        (n >> 14) as u8 & 0x7F,
        (n >> 7) as u8 & 0x7F,
        n as u8 & 0x7F,
    ]
}

/// Appends a version 1 `emsg` box with an ID3 payload at `presentation_time`
/// ([`EMSG_TIMESCALE`] ticks on the track timeline).
pub fn write_emsg(buf: &mut BytesMut, id: u32, presentation_time: u64, id3: &[u8]) {
    write_full_box(buf, b"emsg", 1, 0, |b| {
        b.put_u32(EMSG_TIMESCALE);
        b.put_u64(presentation_time);
        b.put_u32(0); // event_duration: an instant
        b.put_u32(id);
        b.put_slice(ID3_SCHEME.as_bytes());
        b.put_u8(0);
        b.put_u8(0); // value: empty string
        b.put_slice(id3);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id3_tag_layout() {
        let tag = id3_txxx("ferrocast-chat", "{\"a\":\"é\"}");
        assert_eq!(&tag[..6], b"ID3\x04\x00\x00");
        let body = 1 + 14 + 1 + "{\"a\":\"é\"}".len();
        assert_eq!(&tag[6..10], &syncsafe(body + 10));
        assert_eq!(&tag[10..14], b"TXXX");
        assert_eq!(&tag[14..18], &[0, 0, 0, body as u8]);
        assert_eq!(tag[20], 3);
        assert_eq!(&tag[21..35], b"ferrocast-chat");
        assert_eq!(tag[35], 0);
        assert_eq!(tag.len(), 20 + body);
        assert_eq!(syncsafe(300), [0, 0, 2, 44], "7 bits per byte");
    }

    #[test]
    fn emsg_box_layout() {
        let mut buf = BytesMut::new();
        write_emsg(&mut buf, 7, 123_456, b"ID3tag");
        let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(size, buf.len());
        assert_eq!(&buf[4..8], b"emsg");
        assert_eq!(buf[8], 1, "version 1");
        assert_eq!(&buf[12..16], &EMSG_TIMESCALE.to_be_bytes());
        assert_eq!(&buf[16..24], &123_456u64.to_be_bytes());
        assert_eq!(&buf[24..28], &0u32.to_be_bytes());
        assert_eq!(&buf[28..32], &7u32.to_be_bytes());
        let scheme_end = 32 + ID3_SCHEME.len();
        assert_eq!(&buf[32..scheme_end], ID3_SCHEME.as_bytes());
        assert_eq!(&buf[scheme_end..scheme_end + 2], &[0, 0]);
        assert_eq!(&buf[scheme_end + 2..], b"ID3tag");
    }
}
