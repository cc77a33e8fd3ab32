//! The live view's HTTP/1.1, as little as it needs: one request head read
//! under a deadline and a size cap (parsed by `httparse`), the token check,
//! and whole responses that close their connection.

use crate::wire::auth::Token;
use crate::wire::transport::Stream;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a request head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A request's method, target and the headers the live view reads, plus any
/// bytes that came after the head (a WebSocket peer's first frames).
pub struct Request {
    pub method: String,
    pub target: String,
    /// Header names in lower case, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub after_head: Vec<u8>,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    /// Whether a header's comma-separated tokens include `token` (any case).
    pub fn header_has(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Reads the request head: at most [`MAX_HEAD`] bytes, all of it within
/// [`HEAD_TIMEOUT`] of the first read (a deadline for the whole head, so a
/// viewer trickling a byte at a time cannot hold a place for longer).
/// Returns the request, or the status to answer with.
pub fn read_request(stream: &mut Stream) -> Result<Request, u16> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(408);
        }
        stream.set_read_timeout(Some(left)).map_err(|_| 408u16)?;
        let n = stream.read(&mut buf[len..]).map_err(|_| 408u16)?;
        if n == 0 {
            return Err(400);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(head)) => {
                return Ok(Request {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("/").to_string(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    after_head: buf[head..len].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if len == MAX_HEAD => return Err(431),
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Err(400),
        }
    }
}

/// Whether the request carries the token: `Authorization: Bearer TOKEN` or
/// `?token=TOKEN` (the page passes its own query on to what it fetches).
pub fn authorized(req: &Request, token: Option<&Token>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let bearer = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| token.matches(t.trim()));
    bearer || query_value(&req.target, "token").is_some_and(|t| token.matches(&t))
}

/// The first value of `key` in the target's query, decoded.
pub fn query_value(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

/// Decodes `%XX` escapes and `+` in a query value.
pub fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a whole response and flushes it; the connection closes after it.
pub fn respond(
    stream: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, auth: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            target: target.into(),
            headers: auth
                .map(|a| vec![("authorization".to_string(), a.to_string())])
                .unwrap_or_default(),
            after_head: Vec::new(),
        }
    }

    #[test]
    fn the_token_is_taken_from_the_query_or_a_bearer_header() {
        let t = Token::new("a b&c").unwrap();
        assert!(authorized(&req("/", None), None));
        assert!(!authorized(&req("/", None), Some(&t)));
        assert!(authorized(&req("/x?t=1&token=a+b%26c", None), Some(&t)));
        assert!(!authorized(&req("/x?token=a+b", None), Some(&t)));
        assert!(authorized(&req("/", Some("Bearer a b&c")), Some(&t)));
        assert!(!authorized(&req("/", Some("Basic a b&c")), Some(&t)));
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn header_tokens_are_matched_in_any_case() {
        let mut r = req("/", None);
        r.headers
            .push(("connection".into(), "keep-alive, Upgrade".into()));
        assert!(r.header_has("connection", "upgrade"));
        assert!(!r.header_has("connection", "close"));
        assert!(!r.header_has("upgrade", "websocket"));
    }
}
