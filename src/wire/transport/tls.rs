//! Optional TLS (rustls): `--tls-cert`/`--tls-key` on the server,
//! `--tls-ca` on the client, so frames cannot be read or altered on the way.
//!
//! framelink reads and writes a connection from two threads at once, with
//! timeouts, which a TLS session object does not allow. So TLS runs in a
//! bridge: a thread per connection moves bytes between the TCP socket (TLS)
//! and one end of a local socket pair (plaintext); the connection code uses
//! the other end exactly as it would a TCP socket ([`crate::wire::transport::Stream`]).
//! The bridge never buffers more than one read of each side: when the peer
//! stops reading, writes to the plaintext end block and the usual write
//! timeout applies.

use crate::wire::transport::{pass_on, poll_pair, would_block, StopReason, Stream};
use anyhow::{anyhow, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use tracing::debug;

/// Bytes moved per read, each way.
const CHUNK: usize = 64 * 1024;
/// How often the bridge looks up when nothing happens (it ends with its sockets).
const POLL_MS: i32 = 1000;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS settings, from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| {
            format!(
                "cannot read certificates from {} (--tls-cert)",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(anyhow!(
            "{} holds no certificate (--tls-cert)",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| {
            format!(
                "cannot read a private key from {} (--tls-key)",
                key.display()
            )
        })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key of --tls-cert and --tls-key do not go together")?;
    Ok(Arc::new(config))
}

/// A certificate made now for `names` (DNS names or IP addresses) with a new
/// key: the server's TLS settings, and the certificate's SHA-256 fingerprint
/// (`AB:CD:…`) for a user to compare with what a browser shows.
pub fn self_signed(names: &[String]) -> Result<(Arc<rustls::ServerConfig>, String)> {
    use sha2::Digest;
    let made = (|| {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "framelink-server");
        let cert = params.self_signed(&key)?;
        Ok::<_, rcgen::Error>((cert.der().clone(), key.serialize_der()))
    })()
    .context("cannot make a self-signed certificate (--self-signed)")?;
    let (der, key) = made;
    let fingerprint = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let key = PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(key));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .context("the self-signed certificate was refused by TLS (a bug; please report it)")?;
    Ok((Arc::new(config), fingerprint))
}

/// The client's TLS settings: trust the certificates in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("cannot read certificates from {} (--tls-ca)", ca.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(anyhow!(
            "{} holds no usable certificate (--tls-ca)",
            ca.display()
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the client checks the server's certificate against: the host of
/// `HOST:PORT` (a DNS name or an IP address).
pub fn server_name(server: &str) -> Result<ServerName<'static>> {
    let host = match server.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => server,
    };
    ServerName::try_from(host.to_string())
        .map_err(|_| anyhow!("{host} is not a name a TLS certificate can carry (--tls-name)"))
}

/// Starts TLS on `tcp` and returns the plaintext stream, plus where the
/// bridge puts the reason it stopped (a failed handshake, say).
pub fn bridge(tcp: TcpStream, conn: rustls::Connection) -> io::Result<(Stream, StopReason)> {
    let (app, ours) = UnixStream::pair()?;
    let error: StopReason = Arc::default();
    let e = error.clone();
    std::thread::Builder::new()
        .name("tls".into())
        .spawn(move || {
            if let Err(why) = pump(tcp, ours, conn, &e) {
                debug!("TLS connection ended: {why}");
            }
        })?;
    Ok((Stream::Local(app), error))
}

/// Starts a server-side bridge.
pub fn accept(
    tcp: TcpStream,
    config: &Arc<rustls::ServerConfig>,
) -> io::Result<(Stream, StopReason)> {
    let conn = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
    bridge(tcp, conn.into())
}

/// Starts a client-side bridge to `name`.
pub fn connect(
    tcp: TcpStream,
    config: &Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<(Stream, StopReason)> {
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    bridge(tcp, conn.into())
}

/// Moves bytes both ways until both sides are done. Returns why it stopped
/// early, if it did.
fn pump(
    mut tcp: TcpStream,
    mut local: UnixStream,
    mut tls: rustls::Connection,
    error: &StopReason,
) -> Result<(), String> {
    let io_err = |e: io::Error| e.to_string();
    tcp.set_nonblocking(true).map_err(io_err)?;
    local.set_nonblocking(true).map_err(io_err)?;
    // What is written is bounded by the loop (one chunk at a time, only
    // once the TLS output drained), not by a limit that fails writes.
    tls.set_buffer_limit(None);
    // Plaintext taken before the handshake finished (it waits inside rustls).
    let mut early = 0usize;
    // Plaintext from the peer, waiting to be written to the local end.
    let mut to_local: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let (mut local_eof, mut tcp_eof) = (false, false);
    loop {
        // Interest: read TCP only when the plaintext from it has been passed
        // on; read the local end only when TLS output has drained.
        let mut fds = [
            libc::pollfd {
                fd: tcp.as_raw_fd(),
                events: (if !tcp_eof && to_local.is_empty() {
                    libc::POLLIN
                } else {
                    0
                }) | (if tls.wants_write() { libc::POLLOUT } else { 0 }),
                revents: 0,
            },
            libc::pollfd {
                fd: local.as_raw_fd(),
                events: (if !local_eof && !tls.wants_write() {
                    libc::POLLIN
                } else {
                    0
                }) | (if to_local.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                }),
                revents: 0,
            },
        ];
        if !poll_pair(&mut fds, POLL_MS)? {
            continue;
        }
        if fds[1].revents & (libc::POLLERR | libc::POLLNVAL) != 0
            || (local_eof && fds[1].revents & libc::POLLHUP != 0)
        {
            return Ok(()); // the connection code dropped its end
        }
        // TCP → TLS → plaintext.
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && !tcp_eof {
            match tls.read_tls(&mut tcp) {
                Ok(0) => tcp_eof = true,
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e.to_string()),
            }
            if let Err(e) = tls.process_new_packets() {
                // Say why before the connection code sees the end; tell the
                // peer too (an alert); then stop.
                let why = format!("TLS: {e}");
                *error.lock() = Some(why.clone());
                let _ = tls.write_tls(&mut tcp);
                let _ = local.shutdown(std::net::Shutdown::Both);
                return Err(why);
            }
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => {
                        tcp_eof = true;
                        break;
                    }
                    Ok(n) => to_local.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        tcp_eof = true;
                        break;
                    }
                }
            }
        }
        if !pass_on(&mut local, &mut to_local, tcp_eof) {
            return Ok(());
        }
        // Plaintext → TLS → TCP.
        let room = !tls.is_handshaking() || early < CHUNK;
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0
            && !local_eof
            && !tls.wants_write()
            && room
        {
            match local.read(&mut buf) {
                Ok(0) => {
                    local_eof = true;
                    tls.send_close_notify();
                }
                Ok(n) => {
                    if tls.is_handshaking() {
                        early += n;
                    }
                    if let Err(e) = tls.writer().write_all(&buf[..n]) {
                        return Err(e.to_string());
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    local_eof = true;
                    tls.send_close_notify();
                }
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut tcp) {
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if local_eof && !tls.wants_write() {
            let _ = tcp.shutdown(std::net::Shutdown::Write);
        }
        if local_eof && tcp_eof && to_local.is_empty() && !tls.wants_write() {
            return Ok(());
        }
    }
}
