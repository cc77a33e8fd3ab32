//! Processing by code that takes frames at its own pace, on threads of its
//! own (the Python binding's `for frame in server`), instead of by a
//! [`Processor`](super::Processor) on the processing thread.
//!
//! A taker says it wants a frame ([`Handoff::want`]); whoever holds the
//! [`Wants`] (the server's handoff stage, or a pool worker's
//! [`HandoffProcessor`](super::handoff_processor::HandoffProcessor)) then
//! gives it a frame as a [`Taken`]: on the server, the newest frame of
//! whichever client has one. Until someone wants one, frames stay in their
//! latest-only slots and replace each other (the replaced one is answered
//! `skipped` by its session), so a slow taker sees only newest frames.
//!
//! Every taken frame gets exactly one RESULT: [`Taken::reply`] or
//! [`Taken::fail`], or `failed` when the taker let it go without a reply,
//! or at the deadline (`process_timeout`) when it kept it unanswered. A reply
//! after that is refused ([`Late`]).

use super::{ArrivedFrame, Output, ProcessingCounts, ReplyTo};
use anyhow::Result;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most wants waiting at once (a taker per thread: far more than any program has).
const MAX_WANTS: usize = 1024;

/// The takers' side: clone it for each thread that takes frames.
#[derive(Clone)]
pub struct Handoff {
    wants: Sender<Want>,
}

/// The giving side: the wants of every [`Handoff`] clone, given to
/// [`Server::handoff`](crate::server::Server::handoff) or to a
/// [`HandoffProcessor`](super::handoff_processor::HandoffProcessor).
pub struct Wants {
    /// The processor's name in figures, logs and failures' texts.
    pub name: String,
    pub(crate) rx: Receiver<Want>,
    /// How long a taker may keep a frame unanswered.
    pub timeout: Duration,
}

/// Makes the two sides: `name` is the processor's name in figures and logs,
/// `timeout` how long a taker may keep a frame unanswered.
pub fn channel(name: impl Into<String>, timeout: Duration) -> (Handoff, Wants) {
    let (tx, rx) = crossbeam_channel::bounded(MAX_WANTS);
    (
        Handoff { wants: tx },
        Wants {
            name: name.into(),
            rx,
            timeout,
        },
    )
}

/// The stage has ended (the server stopped): no frame will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server has stopped")]
pub struct Closed;

/// A reply that was not sent: the frame was already answered (at its
/// deadline, or by an earlier reply), or no one waits for it any more (its
/// camera's connection closed, the server stopped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame {frame_id}: this reply was not sent ({why})")]
pub struct Late {
    pub frame_id: u64,
    pub why: String,
}

impl Handoff {
    /// Says that this thread wants a frame; [`Wait::wait`] then gets it.
    /// Keep the [`Wait`] while waiting in slices (to look at signals
    /// between them): dropping it withdraws the want.
    pub fn want(&self) -> Result<Wait, Closed> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let alive = Arc::new(());
        let want = Want {
            tx,
            alive: Arc::downgrade(&alive),
        };
        self.wants.send(want).map_err(|_| Closed)?;
        Ok(Wait { rx, _alive: alive })
    }

    /// Blocks for the next frame, at most `timeout` (None: not in time).
    pub fn take(&self, timeout: Duration) -> Result<Option<Taken>, Closed> {
        self.want()?.wait(timeout)
    }
}

/// One want, waiting for its frame.
pub struct Wait {
    rx: Receiver<Taken>,
    /// The want's [`Want::waits`] is true while this lives.
    _alive: Arc<()>,
}

/// A want as the stage holds it: where its frame goes.
pub(crate) struct Want {
    tx: Sender<Taken>,
    alive: std::sync::Weak<()>,
}

impl Want {
    /// True while its taker still waits (its [`Wait`] is not dropped).
    pub(crate) fn waits(&self) -> bool {
        self.alive.strong_count() > 0
    }

    /// Gives `taken` to the taker, or back when it no longer waits.
    pub(crate) fn give(&self, taken: Taken) -> Option<Taken> {
        if !self.waits() {
            return Some(taken);
        }
        self.tx.try_send(taken).err().map(|e| e.into_inner())
    }
}

impl Wait {
    /// Blocks until the frame comes (Some), `timeout` passes (None: still
    /// wanted, call again) or the server stops ([`Closed`]). Unblocked by
    /// any of these.
    pub fn wait(&self, timeout: Duration) -> Result<Option<Taken>, Closed> {
        match self.rx.recv_timeout(timeout) {
            Ok(t) => Ok(Some(t)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Closed),
        }
    }
}

/// Where a taken frame's answer goes.
pub(crate) enum To {
    /// Straight to the client's session, as its RESULT.
    Session(ReplyTo, Arc<ProcessingCounts>),
    /// To a [`HandoffProcessor`](super::handoff_processor::HandoffProcessor) waiting for it.
    Caller(Sender<Result<Output>>),
}

/// A taken frame's answer: where it goes until it is given, then why it
/// cannot be given again.
pub(crate) struct Answer {
    to: Mutex<Result<To, String>>,
}

impl Answer {
    pub(crate) fn new(to: To) -> Arc<Answer> {
        Arc::new(Answer {
            to: Mutex::new(Ok(to)),
        })
    }

    /// Sends `out` unless the frame was answered already (then: why it was);
    /// `now` is what a later answer is told.
    pub(crate) fn give(&self, out: Result<Output, String>, now: &str) -> Result<(), String> {
        let to = {
            let mut guard = self.to.lock();
            match &*guard {
                Err(why) => return Err(why.clone()),
                Ok(_) => std::mem::replace(&mut *guard, Err(now.to_string())),
            }
        };
        match to {
            Ok(To::Session(reply_to, counts)) => {
                if !reply_to.send(out, &counts) {
                    return Err("the camera's connection has closed".into());
                }
            }
            Ok(To::Caller(tx)) => {
                if tx.send(out.map_err(anyhow::Error::msg)).is_err() {
                    return Err("the pool's server no longer waits for it".into());
                }
            }
            Err(_) => unreachable!("checked above"),
        }
        Ok(())
    }

    pub(crate) fn is_answered(&self) -> bool {
        self.to.lock().is_err()
    }
}

/// A frame given to a taker: answer it once with [`reply`](Taken::reply)
/// or [`fail`](Taken::fail). Dropped unanswered, it is answered `failed`.
pub struct Taken {
    pub frame: ArrivedFrame,
    /// When the stage gave it to the taker.
    pub handed: Instant,
    answer: Arc<Answer>,
    /// The processor's name, which a failure's text starts with.
    name: Arc<str>,
}

impl Taken {
    /// The frame handed at `handed`, answered through `answer`; `name` is
    /// the processor's, which a failure's text starts with.
    pub(crate) fn new(
        frame: ArrivedFrame,
        handed: Instant,
        answer: Arc<Answer>,
        name: Arc<str>,
    ) -> Self {
        Taken {
            frame,
            handed,
            answer,
            name,
        }
    }

    /// The frame's age now: its age on arrival plus the time since.
    pub fn age(&self) -> Duration {
        self.frame.age_now()
    }

    /// Answers the frame with `out` (status `processed`).
    pub fn reply(&self, out: Output) -> Result<(), Late> {
        self.give(Ok(out), "a reply was sent before")
    }

    /// Answers the frame `failed`, with `why` as the text the client sees.
    pub fn fail(&self, why: &str) -> Result<(), Late> {
        self.give(
            Err(format!("{}: {why}", self.name)),
            "it was answered failed before",
        )
    }

    /// True once the frame has been answered (by a reply, or at its deadline).
    pub fn is_answered(&self) -> bool {
        self.answer.is_answered()
    }

    fn give(&self, out: Result<Output, String>, now: &str) -> Result<(), Late> {
        self.answer.give(out, now).map_err(|why| Late {
            frame_id: self.frame.frame_id,
            why,
        })
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        let _ = self.fail("the frame was let go without a reply");
    }
}
