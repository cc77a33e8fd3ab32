//! The numbered values inside messages: a frame's encoding, a verdict's
//! outcome and reason, a result's status and kind, a GOODBYE's code. Each
//! says what an unknown number means, as protocol.md does.

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
    /// `frame_id` is not above the previous FRAME's on this connection: a
    /// repeated id would make two RESULTs indistinguishable.
    FrameIdNotIncreasing,
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
            Reason::FrameIdNotIncreasing => 7,
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
            7 => Reason::FrameIdNotIncreasing,
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
            Reason::FrameIdNotIncreasing => {
                "frame_id is not above the previous frame's on this connection"
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
    /// The frame grew older than the server's threshold in its slot before
    /// a processor was free for it (nothing newer replaced it): it was not
    /// processed. The result says how old it was, as text.
    Expired,
    /// A code this version does not know: treat as "no result".
    Other(u8),
}

impl ResultStatus {
    pub fn code(self) -> u8 {
        match self {
            ResultStatus::Processed => 0,
            ResultStatus::Skipped => 1,
            ResultStatus::Failed => 2,
            ResultStatus::Expired => 3,
            ResultStatus::Other(c) => c,
        }
    }
    pub fn from_code(c: u8) -> Self {
        match c {
            0 => ResultStatus::Processed,
            1 => ResultStatus::Skipped,
            2 => ResultStatus::Failed,
            3 => ResultStatus::Expired,
            c => ResultStatus::Other(c),
        }
    }
    /// The name used in logs, JSON and protocol.md.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Processed => "processed",
            ResultStatus::Skipped => "skipped",
            ResultStatus::Failed => "failed",
            ResultStatus::Expired => "expired",
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
