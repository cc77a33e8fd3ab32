//! Decoding the wire format: check, then parse, over a byte slice (no
//! sockets, no threads). [`check`] looks at bytes and says whether a whole,
//! acceptable message is there ([`Error::Incomplete`] is not
//! [`Error::Malformed`]); only then does [`parse`] read it. Every length is
//! compared with a [`Limits`] cap before anything is allocated for it.

use super::codes::*;
use super::foreign::describe_foreign;
use super::message::*;
use byteorder::{BigEndian, ByteOrder, ReadBytesExt};
use bytes::Bytes;
use std::io::Cursor;

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
    /// A FRAME, SOURCE, VERDICT or RESULT under [`Limits::handshake`]: sent before
    /// the handshake finished, refused from its kind byte alone.
    #[error("{0} before the handshake finished")]
    Early(&'static str),
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
    /// Largest FRAME payload accepted; 0: no FRAME is accepted (yet).
    pub max_frame_bytes: u32,
    /// Largest VERDICT or RESULT result accepted; 0: none is accepted (yet).
    pub max_result_bytes: u32,
}

impl Limits {
    /// The caps before a peer is authenticated: no FRAME, VERDICT or RESULT
    /// at all (each is [`Error::Early`] from its kind byte), so nothing
    /// larger than a GOODBYE (1 028 bytes of body) is read before WELCOME.
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
        kind::SOURCE => ((SOURCE_FIXED_LEN + MAX_SOURCE_TEXT) as u64, "SOURCE"),
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
    let not_yet = match k {
        kind::FRAME | kind::SOURCE => limits.max_frame_bytes == 0,
        kind::VERDICT | kind::RESULT => limits.max_result_bytes == 0,
        _ => false,
    };
    if not_yet {
        return Err(Error::Early(name));
    }
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
        kind::SOURCE => {
            if body.len() < SOURCE_FIXED_LEN {
                return Err(malformed(
                    "SOURCE",
                    format!("shorter than {SOURCE_FIXED_LEN} bytes"),
                ));
            }
            let up = match body[0] {
                0 => false,
                1 => true,
                s => return Err(malformed("SOURCE", format!("state {s} is not 0 or 1"))),
            };
            let n = BigEndian::read_u16(&body[5..7]) as usize;
            if n > MAX_SOURCE_TEXT {
                return Err(malformed(
                    "SOURCE",
                    format!("text length {n} is over {MAX_SOURCE_TEXT}"),
                ));
            }
            let text = exact(&body, SOURCE_FIXED_LEN, n, "SOURCE", "text")?;
            let text = String::from_utf8_lossy(text);
            Message::Source(SourceReport {
                up,
                for_us: BigEndian::read_u32(&body[1..5]),
                text: truncate_utf8(&text, MAX_SOURCE_TEXT).to_string(),
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
