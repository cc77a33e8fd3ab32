//! Log set-up for the programs: `tracing` to stderr (no colours or timestamps
//! of its own when stderr is the journal), filtered by `RUST_LOG`
//! (default `info`, with the NATS client's own chatter at `warn`: the pool
//! logs its connection changes itself). Status lines and summaries go to stdout instead: they
//! are the programs' output, not logs.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // The journal stamps and colours lines itself.
    let _ = if crate::service::logs_to_journal() {
        builder.with_ansi(false).without_time().try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    quiet_decoder_panics();
}

/// Whether a panic happened inside the pure-Rust JPEG decoder (zune-jpeg),
/// whose panics `decode_rgb` contains.
pub fn in_jpeg_decoder(at: &std::panic::Location<'_>) -> bool {
    at.file().contains("/zune-jpeg-")
}

/// The pure-Rust JPEG decoder panics on some crafted frames; `decode_rgb`
/// catches that and reports the frame as not decoding, so the default hook's
/// "thread panicked" text on stderr, once per such frame, would only let a
/// peer flood the log. Those go to the debug log; every other panic is
/// printed as usual.
fn quiet_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match info.location() {
            Some(at) if in_jpeg_decoder(at) => {
                tracing::debug!(
                    "the JPEG decoder panicked (contained) at {at}: {}",
                    panic_text(info.payload())
                );
            }
            _ => default(info),
        }));
    });
}

/// The message a panic carried, for the log.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into())
}
