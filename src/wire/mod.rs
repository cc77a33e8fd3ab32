//! What both programs speak: the framelink protocol (`protocol.md`).
//!
//! [`message`] defines each message and how it is encoded; [`codec`] decodes
//! them (check, then parse, over a byte slice: no sockets, no threads);
//! [`connection`] does the buffered I/O over a [`stream::Stream`], which is a
//! TCP socket or the plaintext end of a [`tls`] bridge; [`auth`] is the token
//! handshake. Everything a peer needs from the wire is re-exported here.

pub mod auth;
pub mod codec;
pub mod connection;
pub mod message;
pub mod rx_time;
pub mod stream;
pub mod tls;

pub use codec::*;
pub use message::*;
