//! framelink: live camera frames over raw TCP from an edge device to a
//! processing machine, fresh or not at all.
//!
//! The client ([`client::run`]) captures frames from a [`source::Source`],
//! encodes them into a latest-only slot ([`latest`]) and sends the newest one
//! each time the server hands it a ticket. The server ([`server::Server`]) judges
//! each frame's age on arrival ([`gate`]), drops stale ones, and hands fresh
//! ones, newest only, to the display ([`sink`]), the recorder ([`record`]),
//! the live view ([`live_view`]) and a processor ([`process`]) whose results
//! go back to the client that sent the frame ([`results`]).
//! The wire format is in [`protocol`] and `protocol.md`.

pub mod adapt;
pub mod auth;
pub mod capture;
pub mod cli;
pub mod client;
pub mod connection;
pub mod delay_proxy;
pub mod display;
pub mod draw;
pub mod encode;
pub mod gate;
pub mod jpeg;
pub mod latest;
pub mod live_view;
pub mod logging;
pub mod output;
pub mod process;
pub mod protocol;
pub mod record;
pub mod results;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod stats;
pub mod stream;
pub mod tls;

/// The TCP port framelink uses when none is given.
pub const DEFAULT_PORT: u16 = 1998;
