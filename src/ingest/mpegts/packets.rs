//! Transport packets: finding and keeping 0x47 sync in a byte stream of any
//! chunking, and reading packet headers (adaptation field included) before
//! each payload goes to PSI or PES handling.
//!
//! A 0x47 byte is taken as sync only when another one follows a packet
//! later. Lost sync is searched for again (with a warning once found); too
//! many bytes without it, or too many packets without a PMT, mean the input
//! is not a usable stream.

use super::{TsDemuxer, TsError, TsEvent, TsWarning};

/// Transport packet size; SRT carries seven per 1316-byte datagram.
pub(super) const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// Non-TS bytes tolerated before sync is declared impossible: enough for a
/// few mangled datagrams, small enough that a wrong payload fails at once.
pub(super) const MAX_GARBAGE: usize = 16 * 1024;
/// Packets accepted before a usable PAT+PMT must have been seen. Encoders
/// repeat them every 100–500 ms; this is seconds even at high bitrates.
const MAX_PACKETS_WITHOUT_PMT: u64 = 8000;

/// A parsed transport packet header.
pub(super) struct Packet<'a> {
    pub(super) pid: u16,
    pub(super) pusi: bool,
    pub(super) tei: bool,
    pub(super) cc: u8,
    pub(super) has_payload: bool,
    pub(super) discontinuity: bool,
    pub(super) payload: &'a [u8],
}

fn parse_packet(p: &[u8]) -> Option<Packet<'_>> {
    let [_, b1, b2, b3] = *p.get(..4)? else {
        return None;
    };
    let afc = (b3 >> 4) & 0x03;
    let mut start = 4;
    let mut discontinuity = false;
    if afc & 0x02 != 0 {
        let af_len = usize::from(*p.get(4)?);
        if af_len > 0 {
            discontinuity = p.get(5)? & 0x80 != 0;
        }
        start = 5 + af_len;
        if start > PACKET {
            return None;
        }
    }
    let has_payload = afc & 0x01 != 0;
    Some(Packet {
        pid: u16::from(b1 & 0x1f) << 8 | u16::from(b2),
        pusi: b1 & 0x40 != 0,
        tei: b1 & 0x80 != 0,
        cc: b3 & 0x0f,
        has_payload,
        discontinuity,
        payload: if has_payload {
            p.get(start..PACKET)?
        } else {
            &[]
        },
    })
}

impl TsDemuxer {
    /// Consumes whole packets from the input buffer, (re)acquiring sync first.
    pub(super) fn process(
        &mut self,
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) -> Result<(), TsError> {
        let mut pos = 0;
        let result = loop {
            let rest = self.buf.get(pos..).unwrap_or_default();
            if self.locked {
                if rest.len() < PACKET {
                    break Ok(());
                }
                if rest[0] == SYNC {
                    let packet: [u8; PACKET] = match rest[..PACKET].try_into() {
                        Ok(p) => p,
                        Err(_) => break Ok(()),
                    };
                    pos += PACKET;
                    if let Err(e) = self.packet(&packet, arrival_ms, out) {
                        break Err(e);
                    }
                    continue;
                }
                self.locked = false;
            }
            match rest.iter().position(|&b| b == SYNC) {
                None => {
                    self.garbage += rest.len();
                    pos = self.buf.len();
                    if self.garbage > MAX_GARBAGE {
                        break Err(TsError::NotTs {
                            skipped: self.garbage,
                        });
                    }
                    break Ok(());
                }
                Some(i) => {
                    self.garbage += i;
                    pos += i;
                    if self.garbage > MAX_GARBAGE {
                        break Err(TsError::NotTs {
                            skipped: self.garbage,
                        });
                    }
                    // Lock only when the next packet starts with sync too.
                    match rest.get(i + PACKET) {
                        None => break Ok(()),
                        Some(&SYNC) => {
                            self.locked = true;
                            if self.garbage > 0 {
                                out.push(TsEvent::Warning(TsWarning::Resync {
                                    skipped: self.garbage,
                                }));
                            }
                        }
                        Some(_) => {
                            self.garbage += 1;
                            pos += 1;
                        }
                    }
                }
            }
        };
        self.buf.drain(..pos.min(self.buf.len()));
        result
    }

    fn packet(&mut self, p: &[u8], arrival_ms: u64, out: &mut Vec<TsEvent>) -> Result<(), TsError> {
        self.garbage = 0;
        self.packets += 1;
        let Some(pkt) = parse_packet(p) else {
            return Ok(());
        };
        if pkt.pid == 0 {
            if !pkt.tei {
                for section in self.pat.push(pkt.pusi, pkt.payload) {
                    self.on_pat(&section, out);
                }
            }
        } else if Some(pkt.pid) == self.pmt_pid {
            if !pkt.tei {
                for section in self.pmt.push(pkt.pusi, pkt.payload) {
                    self.on_pmt(&section, out)?;
                }
            }
        } else if let Some(track) = self.track_of(pkt.pid) {
            self.on_es(track, &pkt, arrival_ms, out)?;
        }
        if self.pmt_section.is_empty() && self.packets >= MAX_PACKETS_WITHOUT_PMT {
            return Err(TsError::NoPmt {
                missing: if self.pmt_pid.is_some() { "PMT" } else { "PAT" },
                packets: self.packets,
            });
        }
        Ok(())
    }

    /// End of input: a last packet found after resync has no successor to
    /// confirm it; it is taken as it is, and anything shorter is dropped.
    pub(super) fn finish_input(
        &mut self,
        arrival_ms: u64,
        out: &mut Vec<TsEvent>,
    ) -> Result<(), TsError> {
        if !self.locked && self.buf.len() >= PACKET && self.buf[0] == SYNC {
            let packet: Vec<u8> = self.buf.drain(..PACKET).collect();
            self.packet(&packet, arrival_ms, out)?;
        }
        self.buf.clear();
        Ok(())
    }
}
