//! The framelink wire format: encode and decode only (no sockets, no threads).
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
//! Decoding is check-then-parse: [`check`] looks at a byte slice and says
//! whether a whole, acceptable message is there ([`Error::Incomplete`] is not
//! [`Error::Malformed`]), and only then does [`parse`] read it. Every length is
//! compared with a [`Limits`] cap before anything is allocated for it.

use byteorder::{BigEndian, ByteOrder, ReadBytesExt, WriteBytesExt};
use bytes::Bytes;
use std::io::Cursor;

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

/// Reads a preface: `Ok(version)` when the magic is right (whatever the
/// version), [`Error::Incomplete`] when fewer than 6 bytes are there.
pub fn check_preface(buf: &[u8]) -> Result<u16, Error> {
    let have = buf.len().min(4);
    if buf[..have] != MAGIC[..have] {
        return Err(Error::NotFramelink(describe_foreign(buf)));
    }
    if buf.len() < PREFACE_LEN {
        return Err(Error::Incomplete);
    }
    Ok(BigEndian::read_u16(&buf[4..6]))
}

/// A guess at what a foreign peer is, from its first bytes, for error messages.
fn describe_foreign(buf: &[u8]) -> String {
    let head: Vec<u8> = buf.iter().take(8).copied().collect();
    let text = String::from_utf8_lossy(&head);
    let http = [
        "GET ", "POST", "HEAD", "PUT ", "OPTIONS", "DELETE", "CONNECT", "PATCH", "HTTP/",
    ];
    if http
        .iter()
        .any(|m| text.starts_with(m) || (text.len() >= 3 && m.starts_with(&*text)))
    {
        format!("peer sent {text:?}: this looks like HTTP, not framelink")
    } else if matches!(head.first(), Some(0x15 | 0x16)) && head.get(1).is_none_or(|&v| v == 3) {
        // A TLS record: a handshake (0x16) from a TLS client, or an alert
        // (0x15) from a TLS server that could not parse our plain preface.
        "peer speaks TLS, not plain framelink: use TLS on both sides (server --tls-cert and \
         --tls-key, client --tls-ca) or on neither"
            .to_string()
    } else {
        format!(
            "peer's first bytes {} are not the framelink magic 46 4c 4e 4b (\"FLNK\")",
            hex(&head)
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// More bytes are needed; nothing is wrong yet.
    #[error("incomplete message")]
    Incomplete,
    /// The stream does not start with the framelink magic.
    #[error("{0}")]
    NotFramelink(String),
    /// A length field is over the cap for its message kind.
    #[error("{what} of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// The bytes are complete but break the format.
    #[error("malformed {kind}: {reason}")]
    Malformed { kind: &'static str, reason: String },
    /// A message kind byte this version does not define.
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
}

fn malformed(kind: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        kind,
        reason: reason.into(),
    }
}

/// Caps applied while decoding, before any allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest FRAME payload accepted.
    pub max_frame_bytes: u32,
    /// Largest VERDICT result accepted.
    pub max_result_bytes: u32,
}

impl Limits {
    /// The caps before a peer is authenticated: no FRAME payload and no
    /// result bytes, so nothing larger than a GOODBYE (1 028 bytes of body)
    /// is read before WELCOME.
    pub const fn handshake() -> Self {
        Limits {
            max_frame_bytes: 0,
            max_result_bytes: 0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 * 1024 * 1024,
            max_result_bytes: 16 * 1024 * 1024,
        }
    }
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
}

/// How a frame's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A baseline or progressive JPEG (JFIF/EXIF), starting FF D8, ending FF D9.
    Jpeg,
    /// A code this version does not know; the server rejects the frame.
    Other(u8),
}

impl Encoding {
    pub fn code(self) -> u8 {
        match self {
            Encoding::Jpeg => 1,
            Encoding::Other(c) => c,
        }
    }
    pub fn from_code(c: u8) -> Self {
        match c {
            1 => Encoding::Jpeg,
            c => Encoding::Other(c),
        }
    }
}

/// The server's verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Fresh and well-formed: handed to display and processing.
    Accepted,
    /// Older than the server's threshold on arrival: dropped.
    DroppedStale,
    /// Not usable (see [`Reason`]): dropped.
    Rejected,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Accepted => 0,
            Outcome::DroppedStale => 1,
            Outcome::Rejected => 2,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Outcome::Accepted),
            1 => Some(Outcome::DroppedStale),
            2 => Some(Outcome::Rejected),
            _ => None,
        }
    }
}

/// Why a frame was rejected (0 when it was not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    None,
    /// The payload does not start with FF D8 and end with FF D9.
    NotJpeg,
    /// The encoding code is not one the server knows.
    UnsupportedEncoding,
    /// Width or height is zero, or differs from the JPEG's own frame header.
    BadDimensions,
    /// The JPEG's headers are broken: no single frame header (SOF) can be read.
    BrokenJpeg,
    /// Width × height is over the server's `--max-pixels`.
    TooManyPixels,
    /// `ticket_held_us` is longer than the ticket has existed on the
    /// server's clock: the frame's age cannot be trusted.
    ImplausibleTiming,
    /// A code this version does not know.
    Other(u8),
}

impl Reason {
    pub fn code(self) -> u8 {
        match self {
            Reason::None => 0,
            Reason::NotJpeg => 1,
            Reason::UnsupportedEncoding => 2,
            Reason::BadDimensions => 3,
            Reason::BrokenJpeg => 4,
            Reason::TooManyPixels => 5,
            Reason::ImplausibleTiming => 6,
            Reason::Other(c) => c,
        }
    }
    pub fn from_code(c: u8) -> Self {
        match c {
            0 => Reason::None,
            1 => Reason::NotJpeg,
            2 => Reason::UnsupportedEncoding,
            3 => Reason::BadDimensions,
            4 => Reason::BrokenJpeg,
            5 => Reason::TooManyPixels,
            6 => Reason::ImplausibleTiming,
            c => Reason::Other(c),
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::NotJpeg => "payload is not a whole JPEG (needs FF D8 ... FF D9)",
            Reason::UnsupportedEncoding => "unsupported encoding",
            Reason::BadDimensions => {
                "width or height is zero or differs from the JPEG's own frame header"
            }
            Reason::BrokenJpeg => "the JPEG's headers are broken (no single readable frame header)",
            Reason::TooManyPixels => "width x height is over the server's --max-pixels",
            Reason::ImplausibleTiming => {
                "ticket_held_us is longer than the ticket has existed: the age cannot be trusted"
            }
            Reason::Other(_) => "unknown reason",
        }
    }
}

/// What became of an accepted frame on the server's processing thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    /// The processor ran on the frame; the result (if any) is attached.
    Processed,
    /// A newer frame from the same client replaced it before the processor
    /// got to it: there will be no result for this frame.
    Skipped,
    /// The processor failed on this frame; the result is the error, as text.
    Failed,
    /// A code this version does not know: treat as "no result".
    Other(u8),
}

impl ResultStatus {
    pub fn code(self) -> u8 {
        match self {
            ResultStatus::Processed => 0,
            ResultStatus::Skipped => 1,
            ResultStatus::Failed => 2,
            ResultStatus::Other(c) => c,
        }
    }
    pub fn from_code(c: u8) -> Self {
        match c {
            0 => ResultStatus::Processed,
            1 => ResultStatus::Skipped,
            2 => ResultStatus::Failed,
            c => ResultStatus::Other(c),
        }
    }
    /// The name used in logs, JSON and protocol.md.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Processed => "processed",
            ResultStatus::Skipped => "skipped",
            ResultStatus::Failed => "failed",
            ResultStatus::Other(_) => "unknown",
        }
    }
}

/// What a RESULT's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// No bytes.
    None,
    /// One JSON value, UTF-8.
    Json,
    /// A JPEG image (for example the frame, annotated).
    Jpeg,
    /// UTF-8 text (a failure's message).
    Text,
    /// A code this version does not know: keep or ignore the bytes.
    Other(u8),
}

impl ResultKind {
    pub fn code(self) -> u8 {
        match self {
            ResultKind::None => 0,
            ResultKind::Json => 1,
            ResultKind::Jpeg => 2,
            ResultKind::Text => 3,
            ResultKind::Other(c) => c,
        }
    }
    pub fn from_code(c: u8) -> Self {
        match c {
            0 => ResultKind::None,
            1 => ResultKind::Json,
            2 => ResultKind::Jpeg,
            3 => ResultKind::Text,
            c => ResultKind::Other(c),
        }
    }
}

/// Why a side closes the connection (GOODBYE code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoodbyeCode {
    /// The sender is stopping (Ctrl-C, end of --duration). Reconnect later.
    ShuttingDown,
    /// The server has --max-clients connections already. Retry later.
    ServerFull,
    /// The preface's version is not one the receiver speaks.
    UnsupportedVersion,
    /// The peer broke the protocol (malformed or unexpected message).
    ProtocolError,
    /// The peer stalled past the I/O timeout.
    Timeout,
    /// A length was over the receiver's limit.
    TooLarge,
    /// The client's token proof is missing or wrong.
    Unauthorized,
    /// A code this version does not know.
    Other(u16),
}

impl GoodbyeCode {
    pub fn code(self) -> u16 {
        match self {
            GoodbyeCode::ShuttingDown => 1,
            GoodbyeCode::ServerFull => 2,
            GoodbyeCode::UnsupportedVersion => 3,
            GoodbyeCode::ProtocolError => 4,
            GoodbyeCode::Timeout => 5,
            GoodbyeCode::TooLarge => 6,
            GoodbyeCode::Unauthorized => 7,
            GoodbyeCode::Other(c) => c,
        }
    }
    pub fn from_code(c: u16) -> Self {
        match c {
            1 => GoodbyeCode::ShuttingDown,
            2 => GoodbyeCode::ServerFull,
            3 => GoodbyeCode::UnsupportedVersion,
            4 => GoodbyeCode::ProtocolError,
            5 => GoodbyeCode::Timeout,
            6 => GoodbyeCode::TooLarge,
            7 => GoodbyeCode::Unauthorized,
            c => GoodbyeCode::Other(c),
        }
    }
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

/// Reads `proof_len u8 | proof[proof_len]` ending exactly at the end of `body`.
fn read_proof(body: &[u8], at: usize, kind: &'static str) -> Result<Vec<u8>, Error> {
    let Some(&n) = body.get(at) else {
        return Err(malformed(kind, "no proof length"));
    };
    if n as usize != 0 && n as usize != PROOF_LEN {
        return Err(malformed(
            kind,
            format!("proof length {n} is not 0 or {PROOF_LEN}"),
        ));
    }
    Ok(exact(body, at + 1, n as usize, kind, "proof")?.to_vec())
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

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The largest body each kind may have under `limits`.
fn max_body(kind: u8, limits: &Limits) -> Result<(u64, &'static str), Error> {
    Ok(match kind {
        kind::CHALLENGE => (NONCE_LEN as u64, "CHALLENGE"),
        kind::HELLO => (
            (4 + 1 + MAX_NAME_BYTES + NONCE_LEN + 1 + PROOF_LEN) as u64,
            "HELLO",
        ),
        kind::WELCOME => ((WELCOME_LEN + 1 + PROOF_LEN) as u64, "WELCOME"),
        kind::TICKET => (TICKET_LEN as u64, "TICKET"),
        kind::FRAME => (
            (FRAME_HEADER_LEN + TICKET_LEN) as u64 + limits.max_frame_bytes as u64,
            "FRAME",
        ),
        kind::VERDICT => (
            VERDICT_FIXED_LEN as u64 + limits.max_result_bytes as u64,
            "VERDICT",
        ),
        kind::GOODBYE => ((2 + 2 + MAX_GOODBYE_TEXT) as u64, "GOODBYE"),
        kind::RESULT => (
            RESULT_FIXED_LEN as u64 + limits.max_result_bytes as u64,
            "RESULT",
        ),
        k => return Err(Error::UnknownKind(k)),
    })
}

/// Checks whether `buf` starts with one whole message, without allocating.
///
/// Returns the message's total length (envelope + body). The kind and the
/// body length are checked against `limits` as soon as the 5-byte envelope is
/// there, so a hostile length is refused before anything is read for it.
pub fn check(buf: &[u8], limits: &Limits) -> Result<usize, Error> {
    if buf.is_empty() {
        return Err(Error::Incomplete);
    }
    let k = buf[0];
    let (max, name) = max_body(k, limits)?;
    if buf.len() < ENVELOPE_LEN {
        return Err(Error::Incomplete);
    }
    let len = BigEndian::read_u32(&buf[1..5]) as u64;
    if len > max {
        let what = if k == kind::FRAME {
            "FRAME payload"
        } else {
            name
        };
        let len = if k == kind::FRAME {
            len.saturating_sub((FRAME_HEADER_LEN + TICKET_LEN) as u64)
        } else {
            len
        };
        let max = if k == kind::FRAME {
            limits.max_frame_bytes as u64
        } else {
            max
        };
        return Err(Error::TooLarge { what, len, max });
    }
    let total = ENVELOPE_LEN + len as usize;
    if buf.len() < total {
        return Err(Error::Incomplete);
    }
    Ok(total)
}

/// The total length of the message `buf` starts with, once its envelope is
/// there and acceptable: lets a reader reserve exactly what it needs.
pub fn needed(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    match check(buf, limits) {
        Ok(n) => Ok(Some(n)),
        Err(Error::Incomplete) if buf.len() >= ENVELOPE_LEN => Ok(Some(
            ENVELOPE_LEN + BigEndian::read_u32(&buf[1..5]) as usize,
        )),
        Err(Error::Incomplete) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses one whole message: `msg` is exactly the bytes [`check`] measured.
/// A FRAME's payload and a VERDICT's result share `msg`'s storage.
pub fn parse(msg: Bytes) -> Result<Message, Error> {
    if msg.len() < ENVELOPE_LEN {
        return Err(Error::Incomplete);
    }
    let k = msg[0];
    let body = msg.slice(ENVELOPE_LEN..);
    let declared = BigEndian::read_u32(&msg[1..5]) as usize;
    if declared != body.len() {
        return Err(malformed(
            "message",
            format!("body is {} bytes, envelope says {declared}", body.len()),
        ));
    }
    let mut c = Cursor::new(&body[..]);
    let m = match k {
        kind::CHALLENGE => {
            fixed(&body, NONCE_LEN, "CHALLENGE")?;
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&body);
            Message::Challenge(Challenge { nonce })
        }
        kind::HELLO => {
            let capabilities = c
                .read_u32::<BigEndian>()
                .map_err(|_| malformed("HELLO", "shorter than 5 bytes"))?;
            let n = c
                .read_u8()
                .map_err(|_| malformed("HELLO", "shorter than 5 bytes"))?
                as usize;
            if n == 0 || n > MAX_NAME_BYTES {
                return Err(malformed(
                    "HELLO",
                    format!("name length {n} is not 1..={MAX_NAME_BYTES}"),
                ));
            }
            let nonce_at = 5 + n;
            let Some(name) = body.get(5..nonce_at) else {
                return Err(malformed("HELLO", "shorter than its name"));
            };
            let name =
                std::str::from_utf8(name).map_err(|_| malformed("HELLO", "name is not UTF-8"))?;
            if name.chars().any(char::is_control) {
                return Err(malformed("HELLO", "name has control characters"));
            }
            let Some(nonce) = body.get(nonce_at..nonce_at + NONCE_LEN) else {
                return Err(malformed("HELLO", "shorter than its client nonce"));
            };
            let mut client_nonce = [0u8; NONCE_LEN];
            client_nonce.copy_from_slice(nonce);
            let proof = read_proof(&body, nonce_at + NONCE_LEN, "HELLO")?;
            Message::Hello(Hello {
                capabilities,
                name: name.to_string(),
                client_nonce,
                proof,
            })
        }
        kind::WELCOME => {
            if body.len() < WELCOME_LEN {
                return Err(malformed(
                    "WELCOME",
                    format!("body of {} bytes is shorter than {WELCOME_LEN}", body.len()),
                ));
            }
            let w = Welcome {
                capabilities: BigEndian::read_u32(&body[0..4]),
                max_age_us: BigEndian::read_u32(&body[4..8]),
                max_frame_bytes: BigEndian::read_u32(&body[8..12]),
                window: BigEndian::read_u16(&body[12..14]),
                proof: read_proof(&body, WELCOME_LEN, "WELCOME")?,
            };
            if w.window == 0 {
                return Err(malformed("WELCOME", "window is 0"));
            }
            Message::Welcome(w)
        }
        kind::TICKET => {
            fixed(&body, TICKET_LEN, "TICKET")?;
            Message::Ticket(read_ticket(&body[..]))
        }
        kind::FRAME => {
            if body.len() < FRAME_HEADER_LEN + TICKET_LEN {
                return Err(malformed(
                    "FRAME",
                    format!(
                        "body of {} bytes is shorter than {}",
                        body.len(),
                        FRAME_HEADER_LEN + TICKET_LEN
                    ),
                ));
            }
            let b = &body[..];
            let header = FrameHeader {
                frame_id: BigEndian::read_u64(&b[0..8]),
                encoding: Encoding::from_code(b[8]),
                width: BigEndian::read_u16(&b[9..11]),
                height: BigEndian::read_u16(&b[11..13]),
                capture_to_send_us: BigEndian::read_u32(&b[13..17]),
                ticket_held_us: BigEndian::read_u32(&b[17..21]),
                payload_len: BigEndian::read_u32(&b[21..25]),
            };
            let expect = FRAME_HEADER_LEN as u64 + header.payload_len as u64 + TICKET_LEN as u64;
            if expect != body.len() as u64 {
                return Err(malformed(
                    "FRAME",
                    format!(
                        "payload_len {} does not match a body of {} bytes",
                        header.payload_len,
                        body.len()
                    ),
                ));
            }
            let end = FRAME_HEADER_LEN + header.payload_len as usize;
            let payload = body.slice(FRAME_HEADER_LEN..end);
            let ticket = read_ticket(&b[end..]);
            Message::Frame(Frame {
                header,
                payload,
                ticket,
            })
        }
        kind::VERDICT => {
            if body.len() < VERDICT_FIXED_LEN {
                return Err(malformed(
                    "VERDICT",
                    format!(
                        "body of {} bytes is shorter than {VERDICT_FIXED_LEN}",
                        body.len()
                    ),
                ));
            }
            let b = &body[..];
            let outcome = Outcome::from_code(b[12]).ok_or_else(|| {
                malformed("VERDICT", format!("outcome {} is not 0, 1 or 2", b[12]))
            })?;
            let result_len = BigEndian::read_u32(&b[23..27]) as u64;
            if VERDICT_FIXED_LEN as u64 + result_len != body.len() as u64 {
                return Err(malformed(
                    "VERDICT",
                    format!(
                        "result_len {result_len} does not match a body of {} bytes",
                        body.len()
                    ),
                ));
            }
            Message::Verdict(Verdict {
                frame_id: BigEndian::read_u64(&b[0..8]),
                ticket_id: BigEndian::read_u32(&b[8..12]),
                outcome,
                reason: Reason::from_code(b[13]),
                age_us: BigEndian::read_u32(&b[14..18]),
                transit_us: BigEndian::read_u32(&b[18..22]),
                result_kind: b[22],
                result: body.slice(VERDICT_FIXED_LEN..),
            })
        }
        kind::GOODBYE => {
            if body.len() < 4 {
                return Err(malformed("GOODBYE", "shorter than 4 bytes"));
            }
            let code = GoodbyeCode::from_code(BigEndian::read_u16(&body[0..2]));
            let n = BigEndian::read_u16(&body[2..4]) as usize;
            if n > MAX_GOODBYE_TEXT {
                return Err(malformed(
                    "GOODBYE",
                    format!("text length {n} is over {MAX_GOODBYE_TEXT}"),
                ));
            }
            let text = exact(&body, 4, n, "GOODBYE", "text")?;
            // Invalid UTF-8 becomes U+FFFD (3 bytes each), which can grow
            // the text past the cap: cut it back on a character boundary,
            // so what was decoded encodes to the same message.
            let text = String::from_utf8_lossy(text);
            let text = truncate_utf8(&text, MAX_GOODBYE_TEXT).to_string();
            Message::Goodbye(Goodbye { code, text })
        }
        kind::RESULT => {
            if body.len() < RESULT_FIXED_LEN {
                return Err(malformed(
                    "RESULT",
                    format!(
                        "body of {} bytes is shorter than {RESULT_FIXED_LEN}",
                        body.len()
                    ),
                ));
            }
            let b = &body[..];
            let result_len = BigEndian::read_u32(&b[18..22]) as u64;
            if RESULT_FIXED_LEN as u64 + result_len != body.len() as u64 {
                return Err(malformed(
                    "RESULT",
                    format!(
                        "result_len {result_len} does not match a body of {} bytes",
                        body.len()
                    ),
                ));
            }
            Message::Result(ProcessResult {
                frame_id: BigEndian::read_u64(&b[0..8]),
                status: ResultStatus::from_code(b[8]),
                wait_us: BigEndian::read_u32(&b[9..13]),
                processing_us: BigEndian::read_u32(&b[13..17]),
                kind: ResultKind::from_code(b[17]),
                result: body.slice(RESULT_FIXED_LEN..),
            })
        }
        k => return Err(Error::UnknownKind(k)),
    };
    Ok(m)
}

/// `body[at..at+n]`, which must end exactly at the end of `body`.
fn exact<'a>(
    body: &'a [u8],
    at: usize,
    n: usize,
    kind: &'static str,
    what: &str,
) -> Result<&'a [u8], Error> {
    if body.len() != at + n {
        return Err(malformed(
            kind,
            format!(
                "{what} length {n} does not match a body of {} bytes",
                body.len()
            ),
        ));
    }
    Ok(&body[at..])
}

fn fixed(body: &[u8], len: usize, kind: &'static str) -> Result<(), Error> {
    if body.len() != len {
        return Err(malformed(
            kind,
            format!("body is {} bytes, must be {len}", body.len()),
        ));
    }
    Ok(())
}

fn read_ticket(b: &[u8]) -> Ticket {
    Ticket {
        id: BigEndian::read_u32(&b[0..4]),
        issued_us: BigEndian::read_u64(&b[4..12]),
    }
}

/// Decodes one message from the front of `buf` if a whole one is there:
/// check, then parse. Returns the message and the bytes it took.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<(Message, usize), Error> {
    let n = check(buf, limits)?;
    let m = parse(Bytes::copy_from_slice(&buf[..n]))?;
    Ok((m, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let payload = Bytes::from_static(&[0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9]);
        vec![
            Message::Challenge(Challenge { nonce: [3; 32] }),
            Message::Hello(Hello {
                capabilities: 0,
                name: "cam-01".into(),
                client_nonce: [1; 32],
                proof: Vec::new(),
            }),
            Message::Hello(Hello {
                capabilities: 7,
                name: "é".repeat(32),
                client_nonce: [2; 32],
                proof: vec![9; 32],
            }),
            Message::Welcome(Welcome {
                capabilities: 0,
                max_age_us: 80_000,
                max_frame_bytes: 1 << 24,
                window: 2,
                proof: Vec::new(),
            }),
            Message::Welcome(Welcome {
                capabilities: 1,
                max_age_us: 1,
                max_frame_bytes: 1,
                window: 64,
                proof: vec![5; 32],
            }),
            Message::Ticket(Ticket {
                id: 9,
                issued_us: 123_456_789,
            }),
            Message::Frame(Frame {
                header: FrameHeader {
                    frame_id: 42,
                    encoding: Encoding::Jpeg,
                    width: 640,
                    height: 480,
                    capture_to_send_us: 1500,
                    ticket_held_us: 20,
                    payload_len: payload.len() as u32,
                },
                payload,
                ticket: Ticket {
                    id: 9,
                    issued_us: 123_456_789,
                },
            }),
            Message::Frame(Frame {
                header: FrameHeader {
                    frame_id: 0,
                    encoding: Encoding::Other(9),
                    width: 1,
                    height: 1,
                    capture_to_send_us: 0,
                    ticket_held_us: 0,
                    payload_len: 0,
                },
                payload: Bytes::new(),
                ticket: Ticket {
                    id: 0,
                    issued_us: 0,
                },
            }),
            Message::Verdict(Verdict {
                frame_id: 42,
                ticket_id: 9,
                outcome: Outcome::DroppedStale,
                reason: Reason::None,
                age_us: 91_000,
                transit_us: 300,
                result_kind: 0,
                result: Bytes::new(),
            }),
            Message::Verdict(Verdict {
                frame_id: 43,
                ticket_id: 10,
                outcome: Outcome::Rejected,
                reason: Reason::NotJpeg,
                age_us: 1,
                transit_us: 1,
                result_kind: 1,
                result: Bytes::from_static(b"{\"n\":1}"),
            }),
            Message::Goodbye(Goodbye {
                code: GoodbyeCode::ServerFull,
                text: "64 clients already".into(),
            }),
            Message::Result(ProcessResult {
                frame_id: 42,
                status: ResultStatus::Processed,
                wait_us: 150,
                processing_us: 2_300,
                kind: ResultKind::Json,
                result: Bytes::from_static(b"{\"motion\":0.25}"),
            }),
            Message::Result(ProcessResult {
                frame_id: 44,
                status: ResultStatus::Skipped,
                wait_us: 0,
                processing_us: 0,
                kind: ResultKind::None,
                result: Bytes::new(),
            }),
        ]
    }

    fn encoded(m: &Message) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode(&mut v);
        v
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let bytes = encoded(&m);
            let (back, used) = decode(&bytes, &Limits::default()).unwrap();
            assert_eq!(used, bytes.len(), "{}", m.name());
            assert_eq!(back, m);
        }
    }

    #[test]
    fn every_truncation_is_incomplete_not_malformed() {
        for m in samples() {
            let bytes = encoded(&m);
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode(&bytes[..cut], &Limits::default()).unwrap_err(),
                    Error::Incomplete,
                    "{} cut at {cut}",
                    m.name()
                );
            }
        }
    }

    #[test]
    fn two_messages_back_to_back_decode_one_at_a_time() {
        let a = encoded(&Message::Ticket(Ticket {
            id: 1,
            issued_us: 2,
        }));
        let b = encoded(&Message::Goodbye(Goodbye {
            code: GoodbyeCode::ShuttingDown,
            text: String::new(),
        }));
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let (_, n) = decode(&both, &Limits::default()).unwrap();
        assert_eq!(n, a.len());
        let (m, _) = decode(&both[n..], &Limits::default()).unwrap();
        assert!(matches!(m, Message::Goodbye(_)));
    }

    #[test]
    fn oversized_frame_is_refused_from_its_envelope_alone() {
        let limits = Limits {
            max_frame_bytes: 1000,
            max_result_bytes: 0,
        };
        // Only the 5-byte envelope: a FRAME claiming 4 GiB.
        let env = [kind::FRAME, 0xFF, 0xFF, 0xFF, 0xFF];
        match check(&env, &limits) {
            Err(Error::TooLarge {
                what: "FRAME payload",
                max: 1000,
                ..
            }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let mut v = Vec::new();
        let payload = Bytes::from(vec![0u8; 1001]);
        let h = FrameHeader {
            frame_id: 1,
            encoding: Encoding::Jpeg,
            width: 1,
            height: 1,
            capture_to_send_us: 0,
            ticket_held_us: 0,
            payload_len: 1001,
        };
        Message::Frame(Frame {
            header: h,
            payload,
            ticket: Ticket {
                id: 0,
                issued_us: 0,
            },
        })
        .encode(&mut v);
        assert!(matches!(
            check(&v, &limits),
            Err(Error::TooLarge { len: 1001, .. })
        ));
    }

    #[test]
    fn frame_with_inconsistent_payload_len_is_malformed() {
        let m = &samples()[6];
        let mut bytes = encoded(m);
        // payload_len lives at envelope(5) + 21..25; claim one byte more.
        let at = ENVELOPE_LEN + 21;
        let n = BigEndian::read_u32(&bytes[at..at + 4]) + 1;
        BigEndian::write_u32(&mut bytes[at..at + 4], n);
        assert!(matches!(
            decode(&bytes, &Limits::default()),
            Err(Error::Malformed { kind: "FRAME", .. })
        ));
    }

    #[test]
    fn unknown_kind_and_bad_fields_are_malformed() {
        assert_eq!(
            check(&[0x7F], &Limits::default()),
            Err(Error::UnknownKind(0x7F))
        );
        // HELLO with an empty name.
        let body = [0, 0, 0, 0, 0];
        let mut msg = vec![kind::HELLO, 0, 0, 0, 5];
        msg.extend_from_slice(&body);
        assert!(matches!(
            decode(&msg, &Limits::default()),
            Err(Error::Malformed { kind: "HELLO", .. })
        ));
        // VERDICT with outcome 9.
        let mut v = encoded(&samples()[8]);
        v[ENVELOPE_LEN + 12] = 9;
        assert!(matches!(
            decode(&v, &Limits::default()),
            Err(Error::Malformed {
                kind: "VERDICT",
                ..
            })
        ));
        // WELCOME with window 0.
        let mut w = encoded(&samples()[3]);
        let at = ENVELOPE_LEN + 12;
        w[at] = 0;
        w[at + 1] = 0;
        assert!(matches!(
            decode(&w, &Limits::default()),
            Err(Error::Malformed {
                kind: "WELCOME",
                ..
            })
        ));
    }

    #[test]
    fn preface_checks_magic_before_version() {
        assert_eq!(check_preface(&preface()), Ok(VERSION));
        assert_eq!(check_preface(b"FL"), Err(Error::Incomplete));
        assert_eq!(check_preface(b"FLNK\x00\x02"), Ok(2));
        let http = check_preface(b"GET / HTTP/1.1\r\n")
            .unwrap_err()
            .to_string();
        assert!(http.contains("HTTP"), "{http}");
        let junk = check_preface(&[0xde, 0xad, 0xbe, 0xef, 0, 0])
            .unwrap_err()
            .to_string();
        assert!(junk.contains("de ad be ef"), "{junk}");
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let m = Message::Hello(Hello {
            capabilities: 0,
            name: "ü".repeat(40),
            client_nonce: [0; 32],
            proof: Vec::new(),
        });
        let (back, _) = decode(&encoded(&m), &Limits::default()).unwrap();
        match back {
            Message::Hello(h) => assert_eq!(h.name, "ü".repeat(32)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: many pseudo-random messages.
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let (mut parsed, mut incomplete) = (0, 0);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                buf.push(next() as u8);
            }
            if let Some(b) = buf.first_mut() {
                *b = 1 + (*b % 8); // a valid kind, so the body parsers run
            }
            // A body length that matches the bytes (most of the time), so
            // the parsers run on random bodies instead of waiting for more.
            if len >= ENVELOPE_LEN && next() % 8 != 0 {
                BigEndian::write_u32(&mut buf[1..5], (len - ENVELOPE_LEN) as u32);
            }
            match decode(&buf, &Limits::default()) {
                Ok((m, used)) => {
                    parsed += 1;
                    let mut again = Vec::new();
                    m.encode(&mut again);
                    assert_eq!(
                        decode(&again, &Limits::default()).unwrap(),
                        (m, again.len())
                    );
                    assert!(used <= buf.len());
                }
                Err(Error::Incomplete) => incomplete += 1,
                Err(_) => {}
            }
            let _ = check_preface(&buf);
        }
        // All three branches ran (tests/properties.rs mutates valid messages
        // for many more whole ones).
        assert!(
            parsed > 0 && incomplete > 0 && parsed + incomplete < 2000,
            "{parsed} parsed, {incomplete} incomplete"
        );
    }

    #[test]
    fn a_goodbye_of_invalid_utf8_decodes_to_what_encodes_back_the_same() {
        // 400 bytes that are not UTF-8: each becomes U+FFFD (3 bytes), over the cap.
        let mut body = vec![0, 4, 0x01, 0x90];
        body.extend(std::iter::repeat_n(0xFFu8, 400));
        let mut msg = vec![kind::GOODBYE];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
        msg.extend_from_slice(&body);
        let (m, _) = decode(&msg, &Limits::default()).unwrap();
        let mut again = Vec::new();
        m.encode(&mut again);
        assert_eq!(decode(&again, &Limits::default()).unwrap().0, m);
    }
}

/// The worked example in protocol.md, byte for byte: a test keeps the two equal.
#[cfg(test)]
mod worked_example {
    use super::*;

    /// (direction, description, bytes) of each step of the example exchange.
    pub(crate) fn steps() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let enc = |msgs: &[Message], pre: bool| {
            let mut v = Vec::new();
            if pre {
                v.extend_from_slice(&preface());
            }
            for m in msgs {
                m.encode(&mut v);
            }
            v
        };
        let payload = Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]);
        let token = crate::wire::auth::Token::new("s3cret").unwrap();
        let server_nonce: [u8; 32] = std::array::from_fn(|i| i as u8);
        let client_nonce: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
        vec![
            ("C->S", "preface", enc(&[], true)),
            (
                "S->C",
                "preface, CHALLENGE",
                enc(
                    &[Message::Challenge(Challenge {
                        nonce: server_nonce,
                    })],
                    true,
                ),
            ),
            (
                "C->S",
                "HELLO",
                enc(
                    &[Message::Hello(Hello {
                        capabilities: CAP_RESULTS,
                        name: "cam-01".into(),
                        client_nonce,
                        proof: token.hello_proof(&server_nonce, &client_nonce),
                    })],
                    false,
                ),
            ),
            (
                "S->C",
                "WELCOME, TICKET",
                enc(
                    &[
                        Message::Welcome(Welcome {
                            capabilities: CAP_RESULTS,
                            max_age_us: 80_000,
                            max_frame_bytes: 16 * 1024 * 1024,
                            window: 1,
                            proof: token.welcome_proof(&client_nonce, &server_nonce),
                        }),
                        Message::Ticket(Ticket {
                            id: 0,
                            issued_us: 1_500_000,
                        }),
                    ],
                    false,
                ),
            ),
            (
                "C->S",
                "FRAME",
                enc(
                    &[Message::Frame(Frame {
                        header: FrameHeader {
                            frame_id: 7,
                            encoding: Encoding::Jpeg,
                            width: 640,
                            height: 480,
                            capture_to_send_us: 4_200,
                            ticket_held_us: 31_000,
                            payload_len: 4,
                        },
                        payload,
                        ticket: Ticket {
                            id: 0,
                            issued_us: 1_500_000,
                        },
                    })],
                    false,
                ),
            ),
            (
                "S->C",
                "VERDICT, TICKET",
                enc(
                    &[
                        Message::Verdict(Verdict {
                            frame_id: 7,
                            ticket_id: 0,
                            outcome: Outcome::Accepted,
                            reason: Reason::None,
                            age_us: 4_650,
                            transit_us: 450,
                            result_kind: 0,
                            result: Bytes::new(),
                        }),
                        Message::Ticket(Ticket {
                            id: 1,
                            issued_us: 1_531_460,
                        }),
                    ],
                    false,
                ),
            ),
            (
                "S->C",
                "RESULT",
                enc(
                    &[Message::Result(ProcessResult {
                        frame_id: 7,
                        status: ResultStatus::Processed,
                        wait_us: 120,
                        processing_us: 850,
                        kind: ResultKind::Json,
                        result: Bytes::from_static(b"{\"count\":1}"),
                    })],
                    false,
                ),
            ),
            (
                "C->S",
                "GOODBYE",
                enc(
                    &[Message::Goodbye(Goodbye {
                        code: GoodbyeCode::ShuttingDown,
                        text: "bye".into(),
                    })],
                    false,
                ),
            ),
        ]
    }

    fn hex_lines(bytes: &[u8]) -> String {
        bytes
            .chunks(16)
            .map(|c| {
                c.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The dump as protocol.md shows it.
    pub(crate) fn dump() -> String {
        steps()
            .iter()
            .map(|(dir, what, bytes)| {
                format!(
                    "# {dir}: {what} ({} bytes)\n{}\n",
                    bytes.len(),
                    hex_lines(bytes)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn protocol_md_shows_exactly_these_bytes() {
        let doc = include_str!("../../protocol.md");
        let start = doc
            .find("<!-- hexdump:start -->")
            .expect("protocol.md has the hexdump markers");
        let end = doc.find("<!-- hexdump:end -->").unwrap();
        let block = &doc[start..end];
        let block = block
            .split("```text\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        assert_eq!(
            block.trim(),
            dump().trim(),
            "protocol.md's hex dump is out of date; it should read:\n{}",
            dump()
        );
    }

    #[test]
    fn the_example_decodes() {
        for (_, _, bytes) in steps() {
            let mut rest = &bytes[..];
            if rest.starts_with(&MAGIC) {
                assert_eq!(check_preface(rest), Ok(VERSION));
                rest = &rest[PREFACE_LEN..];
            }
            while !rest.is_empty() {
                let (_, n) = decode(rest, &Limits::default()).unwrap();
                rest = &rest[n..];
            }
        }
    }
}
