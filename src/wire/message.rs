//! The framelink messages and how each is encoded (decoding is in
//! [`codec`](super::codec); no sockets, no threads here).
//!
//! Everything is big-endian. A connection starts, in each direction, with a
//! 6-byte **preface**, then a sequence of **messages**:
//!
//! ```text
//! preface:  magic "FLNK" (46 4C 4E 4B) | version u16
//! message:  kind u8 | body_len u32 | body[body_len]
//! ```
//!
//! The bodies are described on each message type below and in `protocol.md`.

use super::codes::{Encoding, GoodbyeCode, Outcome, Reason, ResultKind, ResultStatus};
use byteorder::{BigEndian, ByteOrder, WriteBytesExt};
use bytes::Bytes;

/// The four bytes every framelink stream starts with.
pub const MAGIC: [u8; 4] = *b"FLNK";
/// The protocol version this build speaks.
pub const VERSION: u16 = 2;
/// Length of the preface: magic + version.
pub const PREFACE_LEN: usize = 6;
/// Length of a message's envelope: kind u8 + body_len u32.
pub const ENVELOPE_LEN: usize = 5;
/// Longest client name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest GOODBYE text, in bytes of UTF-8.
pub const MAX_GOODBYE_TEXT: usize = 1024;
/// FRAME body bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 8 + 1 + 2 + 2 + 4 + 4 + 4;
/// FRAME body bytes after the payload (the echoed ticket).
pub const TICKET_LEN: usize = 4 + 8;
/// VERDICT body bytes before the result.
pub const VERDICT_FIXED_LEN: usize = 8 + 4 + 1 + 1 + 4 + 4 + 1 + 4;
/// WELCOME body length.
pub const WELCOME_LEN: usize = 4 + 4 + 4 + 2;
/// Bytes of a nonce (CHALLENGE, HELLO) and of a proof (HELLO, WELCOME): HMAC-SHA256.
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;
/// Size of a RESULT body before its result bytes.
pub const RESULT_FIXED_LEN: usize = 8 + 1 + 4 + 4 + 1 + 4;
/// Capability bit: the client wants RESULT messages (in HELLO); the server
/// will send them (in WELCOME).
pub const CAP_RESULTS: u32 = 1;
/// Capability bit: the client tells the server when its source (camera)
/// is lost and back, in SOURCE messages (in HELLO); the server reads them
/// (in WELCOME).
pub const CAP_SOURCE_STATE: u32 = 2;
/// Longest SOURCE text, in bytes.
pub const MAX_SOURCE_TEXT: usize = 256;
/// Size of a SOURCE body before its text.
pub const SOURCE_FIXED_LEN: usize = 1 + 4 + 2;

/// A duration as whole microseconds in a u32 field, saturating (about 71 minutes).
pub fn micros_u32(d: std::time::Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The 6 bytes that open a stream in either direction.
pub fn preface() -> [u8; PREFACE_LEN] {
    let mut p = [0u8; PREFACE_LEN];
    p[..4].copy_from_slice(&MAGIC);
    BigEndian::write_u16(&mut p[4..], VERSION);
    p
}

/// Message kinds: the first byte of every message.
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const WELCOME: u8 = 0x02;
    pub const TICKET: u8 = 0x03;
    pub const FRAME: u8 = 0x04;
    pub const VERDICT: u8 = 0x05;
    pub const GOODBYE: u8 = 0x06;
    pub const RESULT: u8 = 0x07;
    pub const CHALLENGE: u8 = 0x08;
    pub const SOURCE: u8 = 0x09;
}

/// A server clock reading, handed to the client and echoed back with a frame.
///
/// Wire form (12 bytes): `ticket_id u32 | issued_us u64`.
/// `issued_us` is microseconds on the server's own monotonic clock; the
/// client never interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub id: u32,
    pub issued_us: u64,
}

/// Server → client, first message after the preface: a fresh random nonce
/// the client's HELLO must answer. Wire body (32 bytes): `nonce[32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: [u8; NONCE_LEN],
}

/// Client → server, answer to CHALLENGE. Wire body:
/// `capabilities u32 | name_len u8 | name[name_len] (UTF-8, 1..=64 bytes) |
///  client_nonce[32] | proof_len u8 (0 or 32) | proof[proof_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Capability bits: [`CAP_RESULTS`]; ignore unknown bits.
    pub capabilities: u32,
    pub name: String,
    /// A fresh random nonce the server's WELCOME proof answers.
    pub client_nonce: [u8; NONCE_LEN],
    /// HMAC-SHA256 of the challenge with the shared token (see [`crate::wire::auth`]);
    /// empty without a token.
    pub proof: Vec<u8>,
}

/// Server → client, answer to HELLO. Wire body:
/// `capabilities u32 | max_age_us u32 | max_frame_bytes u32 | window u16 |
///  proof_len u8 (0 or 32) | proof[proof_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub capabilities: u32,
    /// The staleness threshold: frames older than this on arrival are dropped.
    pub max_age_us: u32,
    /// The largest FRAME payload the server accepts.
    pub max_frame_bytes: u32,
    /// How many tickets the server keeps outstanding (1 = stop-and-wait).
    pub window: u16,
    /// The server's HMAC of the client's nonce with the token; empty without one.
    pub proof: Vec<u8>,
}

/// The fixed part of a FRAME. Wire body:
/// `frame_id u64 | encoding u8 | width u16 | height u16 | capture_to_send_us u32 |
///  ticket_held_us u32 | payload_len u32 | payload[payload_len] | ticket (12 bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The client's frame counter (increasing; gaps are frames never sent).
    pub frame_id: u64,
    pub encoding: Encoding,
    pub width: u16,
    pub height: u16,
    /// Client clock: from capture to the start of sending this frame.
    pub capture_to_send_us: u32,
    /// Client clock: from receiving the ticket to the start of sending this frame.
    pub ticket_held_us: u32,
    pub payload_len: u32,
}

/// Client → server: one frame, answering one ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    pub payload: Bytes,
    pub ticket: Ticket,
}

/// Server → client: the fate of one frame. Wire body:
/// `frame_id u64 | ticket_id u32 | outcome u8 | reason u8 | age_us u32 |
///  transit_us u32 | result_kind u8 | result_len u32 | result[result_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub frame_id: u64,
    pub ticket_id: u32,
    pub outcome: Outcome,
    pub reason: Reason,
    /// The frame's age on arrival as the server judged it.
    pub age_us: u32,
    /// The link's share of that age (ticket out + frame in).
    pub transit_us: u32,
    /// Reserved for a processing result; 0 = no result in version 1.
    pub result_kind: u8,
    pub result: Bytes,
}

/// Server → client, only when both sides set [`CAP_RESULTS`]: what the
/// processor made of one accepted frame. Every accepted frame gets exactly
/// one RESULT (processed, skipped or failed) unless the connection ends
/// first. Wire body:
/// `frame_id u64 | status u8 | wait_us u32 | processing_us u32 |
///  result_kind u8 | result_len u32 | result[result_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessResult {
    pub frame_id: u64,
    pub status: ResultStatus,
    /// Server clock: from the frame's arrival to the start of processing.
    pub wait_us: u32,
    /// Server clock: how long the processor ran on it.
    pub processing_us: u32,
    pub kind: ResultKind,
    pub result: Bytes,
}

/// Either direction: the sender is closing the connection, and why. Wire body:
/// `code u16 | text_len u16 | text[text_len] (UTF-8, at most 1024 bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    pub code: GoodbyeCode,
    pub text: String,
}

/// Client → server, only when both sides set [`CAP_SOURCE_STATE`]: the
/// client's source stopped giving frames, or gives them again. The
/// connection stays up through the outage. Wire body:
/// `state u8 (0 lost, 1 up) | for_us u32 | text_len u16 | text[text_len]
///  (UTF-8, at most 256 bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// True: frames come again; false: the source is lost.
    pub up: bool,
    /// Client clock. Lost: how long ago the source gave its last frame (or
    /// was last asked for one); up: how long the outage lasted.
    pub for_us: u32,
    /// Why it was lost ("no frame for 5.0 s", the device's error); empty when up.
    pub text: String,
}

/// Every framelink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Challenge(Challenge),
    Hello(Hello),
    Welcome(Welcome),
    Ticket(Ticket),
    Frame(Frame),
    Verdict(Verdict),
    Goodbye(Goodbye),
    Result(ProcessResult),
    Source(SourceReport),
}

impl Message {
    /// The message's name as protocol.md spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Challenge(_) => "CHALLENGE",
            Message::Hello(_) => "HELLO",
            Message::Welcome(_) => "WELCOME",
            Message::Ticket(_) => "TICKET",
            Message::Frame(_) => "FRAME",
            Message::Verdict(_) => "VERDICT",
            Message::Goodbye(_) => "GOODBYE",
            Message::Result(_) => "RESULT",
            Message::Source(_) => "SOURCE",
        }
    }

    /// Appends the whole message (envelope and body) to `out`.
    ///
    /// A FRAME's payload is copied too; to send a frame without that copy use
    /// [`frame_parts`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Frame(f) => {
                let (head, tail) = frame_parts(&f.header, f.ticket);
                out.extend_from_slice(&head);
                out.extend_from_slice(&f.payload);
                out.extend_from_slice(&tail);
            }
            _ => {
                let start = out.len();
                out.extend_from_slice(&[0u8; ENVELOPE_LEN]);
                let k = self.encode_body(out);
                let len = (out.len() - start - ENVELOPE_LEN) as u32;
                out[start] = k;
                BigEndian::write_u32(&mut out[start + 1..start + 5], len);
            }
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> u8 {
        // Writes to a Vec cannot fail.
        match self {
            Message::Challenge(c) => {
                out.extend_from_slice(&c.nonce);
                kind::CHALLENGE
            }
            Message::Hello(h) => {
                let name = truncate_utf8(&h.name, MAX_NAME_BYTES);
                out.write_u32::<BigEndian>(h.capabilities).unwrap();
                out.write_u8(name.len() as u8).unwrap();
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&h.client_nonce);
                put_proof(out, &h.proof);
                kind::HELLO
            }
            Message::Welcome(w) => {
                out.write_u32::<BigEndian>(w.capabilities).unwrap();
                out.write_u32::<BigEndian>(w.max_age_us).unwrap();
                out.write_u32::<BigEndian>(w.max_frame_bytes).unwrap();
                out.write_u16::<BigEndian>(w.window).unwrap();
                put_proof(out, &w.proof);
                kind::WELCOME
            }
            Message::Ticket(t) => {
                put_ticket(out, *t);
                kind::TICKET
            }
            Message::Verdict(v) => {
                out.write_u64::<BigEndian>(v.frame_id).unwrap();
                out.write_u32::<BigEndian>(v.ticket_id).unwrap();
                out.write_u8(v.outcome.code()).unwrap();
                out.write_u8(v.reason.code()).unwrap();
                out.write_u32::<BigEndian>(v.age_us).unwrap();
                out.write_u32::<BigEndian>(v.transit_us).unwrap();
                out.write_u8(v.result_kind).unwrap();
                out.write_u32::<BigEndian>(v.result.len() as u32).unwrap();
                out.extend_from_slice(&v.result);
                kind::VERDICT
            }
            Message::Goodbye(g) => {
                let text = truncate_utf8(&g.text, MAX_GOODBYE_TEXT);
                out.write_u16::<BigEndian>(g.code.code()).unwrap();
                out.write_u16::<BigEndian>(text.len() as u16).unwrap();
                out.extend_from_slice(text.as_bytes());
                kind::GOODBYE
            }
            Message::Result(r) => {
                out.write_u64::<BigEndian>(r.frame_id).unwrap();
                out.write_u8(r.status.code()).unwrap();
                out.write_u32::<BigEndian>(r.wait_us).unwrap();
                out.write_u32::<BigEndian>(r.processing_us).unwrap();
                out.write_u8(r.kind.code()).unwrap();
                out.write_u32::<BigEndian>(r.result.len() as u32).unwrap();
                out.extend_from_slice(&r.result);
                kind::RESULT
            }
            Message::Source(r) => {
                let text = truncate_utf8(&r.text, MAX_SOURCE_TEXT);
                out.write_u8(u8::from(r.up)).unwrap();
                out.write_u32::<BigEndian>(r.for_us).unwrap();
                out.write_u16::<BigEndian>(text.len() as u16).unwrap();
                out.extend_from_slice(text.as_bytes());
                kind::SOURCE
            }
            Message::Frame(_) => unreachable!("FRAME is encoded by frame_parts"),
        }
    }
}

/// A proof of at most [`PROOF_LEN`] bytes, with its length byte.
fn put_proof(out: &mut Vec<u8>, proof: &[u8]) {
    let proof = &proof[..proof.len().min(PROOF_LEN)];
    out.write_u8(proof.len() as u8).unwrap();
    out.extend_from_slice(proof);
}

fn put_ticket(out: &mut Vec<u8>, t: Ticket) {
    out.write_u32::<BigEndian>(t.id).unwrap();
    out.write_u64::<BigEndian>(t.issued_us).unwrap();
}

/// The bytes of a FRAME message around its payload: `(envelope + header, echoed
/// ticket)`. Sent as one vectored write with the payload between them, so a
/// frame leaves in one system call and never waits on Nagle's algorithm.
pub fn frame_parts(
    h: &FrameHeader,
    ticket: Ticket,
) -> ([u8; ENVELOPE_LEN + FRAME_HEADER_LEN], [u8; TICKET_LEN]) {
    let mut head = [0u8; ENVELOPE_LEN + FRAME_HEADER_LEN];
    let body_len = FRAME_HEADER_LEN as u64 + h.payload_len as u64 + TICKET_LEN as u64;
    head[0] = kind::FRAME;
    BigEndian::write_u32(&mut head[1..5], body_len as u32);
    let b = &mut head[5..];
    BigEndian::write_u64(&mut b[0..8], h.frame_id);
    b[8] = h.encoding.code();
    BigEndian::write_u16(&mut b[9..11], h.width);
    BigEndian::write_u16(&mut b[11..13], h.height);
    BigEndian::write_u32(&mut b[13..17], h.capture_to_send_us);
    BigEndian::write_u32(&mut b[17..21], h.ticket_held_us);
    BigEndian::write_u32(&mut b[21..25], h.payload_len);
    let mut tail = [0u8; TICKET_LEN];
    BigEndian::write_u32(&mut tail[0..4], ticket.id);
    BigEndian::write_u64(&mut tail[4..12], ticket.issued_us);
    (head, tail)
}

pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
