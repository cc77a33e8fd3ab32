//! framelink: live camera frames over raw TCP from an edge device to a
//! processing machine, fresh or not at all.
//!
//! # The map
//!
//! A frame's way through the code runs one direction, and each room holds
//! one side of it:
//!
//! ```text
//! client::source → client::capture → latest slot → client::session
//!     → wire → server::session → gate → server::stage → sinks / process
//!     → RESULT → wire → client::results
//! ```
//!
//! - [`wire`]: what both programs speak. The messages and their codec
//!   (check-then-parse over a byte slice, no I/O), the buffered
//!   [`Reader`](wire::connection::Reader)/[`Writer`](wire::connection::Writer),
//!   the [`Stream`](wire::transport::Stream) (TCP, the plaintext end of a TLS
//!   bridge, or the bytes a WebSocket carries), the token handshake ([`wire::auth`]), TLS
//!   ([`wire::transport::tls`]) and the WebSocket transport ([`wire::transport::websocket`]).
//!   The wire format is specified in `protocol.md`.
//! - [`client`]: runs on the edge device. Sources (camera, test pattern,
//!   folder), the capture stage that encodes into the latest-only slot,
//!   adaptation to thin links, the session that connects, sends and reads
//!   verdicts and results, and where results go.
//! - [`server`]: runs on the processing machine. The [`Server`](server::Server)
//!   builder and accept loop, one session per client (handshake, frame loop),
//!   the live figures, the stages (one loop, several kinds) that hand each
//!   client's newest frame to the sinks (display) and to processing, recording
//!   and the live view (with the browser camera, a client over a WebSocket).
//!   The server never uses the client, nor the client the server
//!   (`tests/layout.rs`): what both need lives below both.
//! - [`gate`]: the frame checks and the age formula (no clock sync), and the
//!   link check both sides run.
//! - [`process`]: what runs on frames, on the server or in a pool worker: the
//!   [`Processor`](process::Processor) trait, the frame it is handed, the
//!   built-in processors, and the takers' side ([`process::takers`]).
//! - [`media`]: pictures, with no knowledge of the link: JPEG structure
//!   checks, encoders and the decoder, drawing text on frames.
//! - Small shared pieces: [`latest`] (the slot that keeps only the newest
//!   value), [`shutdown`] (the stop flag every loop watches), [`stats`]
//!   (figures and percentiles), [`logging`], [`memory`] (allocator settings for long runs), [`output`] (the programs' own
//!   lines), [`cli`] (the command lines, turned into validated configs) and
//!   [`service`] (systemd: socket activation, readiness, the watchdog).
//! - `testkit` (cargo feature `testkit`): tools for tests and the benchmark,
//!   such as a TCP proxy that delays and throttles a link. Not part of
//!   either program.
//! - [`nats`]: the broker link of a worker pool: the server's pool stage
//!   (`server::stage::pool`) and the `worker` both speak it (cargo feature `nats`).
//! - `src/bin`: the thin programs, which parse their command line and
//!   call the library.
//! - `python/` (a crate of its own, `framelink-python`): the Python package,
//!   built on [`process::takers`] (frames taken by Python threads),
//!   `client::source::pushed` (frames given by Python) and
//!   [`client::results::Tap`] (results read by Python).

pub mod cli;
pub mod client;
pub mod gate;
pub mod latest;
pub mod logging;
pub mod media;
pub mod memory;
pub mod nats;
pub mod output;
pub mod process;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wire;
#[cfg(feature = "nats")]
pub mod worker;

/// The TCP port framelink uses when none is given.
pub const DEFAULT_PORT: u16 = 1998;

/// The crate's version (both programs' `--version`, the Python package's
/// `__version__`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
