//! What a peer that is not a framelink peer seems to be (HTTP, TLS, other
//! bytes), from its first bytes: for the error that refuses it.

/// A guess at what a foreign peer is, from its first bytes, for error messages.
pub(super) fn describe_foreign(buf: &[u8]) -> String {
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
