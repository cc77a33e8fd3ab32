//! What both programs speak: the framelink protocol (`protocol.md`).
//!
//! [`message`] defines each message and how it is encoded, [`codes`] the
//! numbered values inside them; [`codec`] decodes them (check, then parse,
//! over a byte slice: no sockets, no threads); [`connection`] does the
//! buffered I/O over a [`stream::Stream`], which is a TCP socket, the plain
//! end of a [`tls`] bridge, or a [`websocket`]; [`auth`] is the token
//! handshake. Everything a peer needs from the wire is re-exported here.

pub mod auth;
pub mod codec;
pub mod codes;
pub mod connection;
mod foreign;
pub mod message;
pub mod rx_time;
pub mod transport;

pub use codec::*;
pub use codes::*;
pub use message::*;

/// This machine's host name, cut to a name HELLO carries, or
/// `framelink-client`: the default client name, and a worker's.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|s| {
            s.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_NAME_BYTES)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "framelink-client".into())
}
