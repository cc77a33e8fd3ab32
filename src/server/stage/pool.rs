//! Processing by a pool of workers through NATS (`--processor nats://…`):
//! the processing thread hands each client's newest frame to a worker that
//! asked for one, instead of to a local processor.
//!
//! Workers pull: a free worker sends a request on `PREFIX.work`; one server
//! of the queue group `PREFIX.servers` gets it and holds it until it has a
//! frame, then answers with that frame — the newest of some client at that
//! moment, taken from the client's latest-only slot. Until a worker asks, a
//! frame stays in its slot and a newer one replaces it (the replaced one is
//! answered `skipped` by its session, as with a local processor), so the
//! broker carries only frames that get processed.
//!
//! Every frame taken from a slot gets exactly one RESULT: the worker's
//! (published on `PREFIX.results.SERVER-ID`, matched by its token), or
//! `failed` with the reason when no worker answers within the deadline
//! (the worker died or stalled), when NATS is unreachable, when the frame
//! is over the broker's message limit, or when no worker has asked for a
//! frame for a whole deadline. A result that comes after its deadline, or
//! twice, is ignored.

use super::{HandOff, Joined, Stage};
use crate::nats::{self, header, Broker, PoolConfig};
use crate::process::{ArrivedFrame, ClientId, ProcessingCounts, ReplyTo};
use crate::wire::{ResultKind, ResultStatus};
use anyhow::Result;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Select, SelectedOperation, Sender};
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The longest a worker's request is held (its `Framelink-Wait-Ms` is capped to this).
pub const MAX_HOLD: Duration = Duration::from_secs(30);
/// A request's hold when it names none.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);
/// How long the server waits for its first NATS connection before serving
/// without one.
const FIRST_CONNECT: Duration = Duration::from_secs(2);
/// Most requests held at once: more are answered `idle` at once (a
/// flood of requests costs a reply each, never memory).
const MAX_HELD: usize = 4096;
/// Room kept for the headers when checking a frame against the broker's
/// message limit.
const HEADER_ROOM: usize = 1024;

/// A worker's request, held until a frame comes or its wait is over.
struct Held {
    reply: String,
    worker: String,
    until: Instant,
}

/// A frame a worker has: answered when its result comes or at `deadline`.
struct AtWorker {
    reply_to: ReplyTo,
    client: ClientId,
    deadline: Instant,
    worker: String,
}

/// The pool stage: its connection, made before the server serves, and the
/// requests and frames it holds.
pub(crate) struct Pool {
    config: PoolConfig,
    broker: Broker,
    /// Work requests, from the subscription to `PREFIX.work` while there is one.
    requests: Receiver<Message>,
    requests_tx: Sender<Message>,
    results: Receiver<Message>,
    hand_off: HandOff,
    counts: Arc<ProcessingCounts>,
    held: VecDeque<Held>,
    handed: HashMap<u64, AtWorker>,
    next_token: u64,
    /// When a worker last asked for a frame.
    last_request: Instant,
    /// The subscription to work requests: only while there are clients (a
    /// server with no cameras would otherwise hold workers' requests for
    /// nothing while another server has frames for them).
    work: Option<tokio::task::JoinHandle<()>>,
}

/// A message on one of the pool's own subscriptions.
pub(crate) enum FromBroker {
    Request(Message),
    Result(Message),
}

impl Pool {
    /// Connects (in the background: NATS may be down at start, frames are
    /// then answered `failed` until it is up) and subscribes. Fails only for
    /// what retrying cannot fix (a malformed URL, an unreadable credentials file).
    pub(crate) fn connect(config: PoolConfig, hand_off: HandOff) -> Result<Pool> {
        nats::check_token("--server-id", &config.server_id, false)?;
        nats::check_token("--nats-prefix", &config.nats.prefix, true)?;
        let broker = Broker::connect(&config.nats, false)?;
        // Give the first connection a moment, so the first frames are not
        // answered "unreachable" only because it is still being made.
        let deadline = Instant::now() + FIRST_CONNECT;
        while !broker.is_connected() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !broker.is_connected() {
            warn!(
                "NATS at {} is not reachable yet: frames are answered failed until it is (retrying in the background)",
                config.nats.url
            );
        }
        let prefix = &config.nats.prefix;
        let client = broker.client().clone();
        let results = broker
            .block_on(client.subscribe(nats::results_subject(prefix, &config.server_id)))
            .map_err(|e| anyhow::anyhow!("cannot subscribe to NATS at {}: {e}", config.nats.url))?;
        // Bounded: a flood of requests or results is dropped here, never
        // queued without end (a dropped request is asked again; a dropped
        // result's frame is answered `failed` at its deadline).
        let (requests_tx, requests) = crossbeam_channel::bounded(1024);
        let (results_tx, results_rx) = crossbeam_channel::bounded(4096);
        forward(&broker, results, results_tx);
        info!(
            url = %config.nats.url,
            server_id = %config.server_id,
            "frames go to the worker pool on NATS"
        );
        Ok(Pool {
            config,
            broker,
            requests,
            requests_tx,
            results: results_rx,
            counts: hand_off.counts.clone(),
            hand_off,
            held: VecDeque::new(),
            handed: HashMap::new(),
            next_token: 1,
            last_request: Instant::now(),
            work: None,
        })
    }

    /// The broker's URL.
    pub(crate) fn url(&self) -> &str {
        &self.config.nats.url
    }

    /// Starts taking work requests: subscribes to `PREFIX.work` in the
    /// servers' queue group. None if NATS refused (tried again later).
    fn take_work(&self) -> Option<tokio::task::JoinHandle<()>> {
        let prefix = &self.config.nats.prefix;
        let client = self.broker.client();
        match self.broker.block_on(
            client.queue_subscribe(nats::work_subject(prefix), nats::servers_group(prefix)),
        ) {
            Ok(sub) => Some(forward(&self.broker, sub, self.requests_tx.clone())),
            Err(e) => {
                debug!("cannot subscribe to the work subject yet: {e}");
                None
            }
        }
    }
}

/// Moves a subscription's messages onto a bounded channel for the thread,
/// until the task is aborted (which drops, so ends, the subscription).
fn forward(
    broker: &Broker,
    mut sub: async_nats::Subscriber,
    tx: Sender<Message>,
) -> tokio::task::JoinHandle<()> {
    broker.spawn(async move {
        while let Some(m) = sub.next().await {
            match tx.try_send(m) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(_)) => {
                    debug!("the pool stage is behind: a NATS message was dropped")
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
            }
        }
    })
}

impl Stage for Pool {
    type Own = FromBroker;

    fn listen<'a>(&'a self, sel: &mut Select<'a>) -> usize {
        sel.recv(&self.requests);
        sel.recv(&self.results);
        2
    }

    fn receive(&self, i: usize, op: SelectedOperation<'_>) -> Option<FromBroker> {
        match i {
            0 => op.recv(&self.requests).ok().map(FromBroker::Request),
            _ => op.recv(&self.results).ok().map(FromBroker::Result),
        }
    }

    fn own(&mut self, event: FromBroker, _clients: &[Joined]) {
        match event {
            FromBroker::Request(m) => self.request(m),
            FromBroker::Result(m) => self.result(m),
        }
    }

    fn prepare(&mut self, clients: &[Joined]) {
        match (&self.work, clients.is_empty()) {
            (None, false) => {
                self.work = self.take_work();
                // Workers find us from now on: no "no worker" verdicts yet.
                self.last_request = Instant::now();
            }
            (Some(task), true) => {
                task.abort();
                self.work = None;
                for h in std::mem::take(&mut self.held) {
                    self.idle(&h.reply);
                }
            }
            _ => {}
        }
        self.expire();
    }

    fn takes_frames(&self) -> bool {
        self.wants_frames()
    }

    fn frame(&mut self, frame: ArrivedFrame, _clients: &[Joined]) {
        self.hand_frame(frame);
    }

    /// Stopping: tell held workers there is nothing, so they ask elsewhere.
    fn finish(&mut self) {
        if let Some(task) = self.work.take() {
            task.abort();
        }
        for h in std::mem::take(&mut self.held) {
            self.idle(&h.reply);
        }
    }
}

impl Pool {
    /// Frames are taken from the slots when a worker waits for one, or when
    /// they must be answered without one (NATS down, no worker for a whole
    /// deadline): a frame never waits unanswered longer than that.
    fn wants_frames(&self) -> bool {
        !self.held.is_empty()
            || !self.broker.is_connected()
            || self.last_request.elapsed() > self.config.timeout
    }

    /// Answers held requests whose wait is over (`idle`) and handed frames
    /// whose deadline passed (`failed`).
    fn expire(&mut self) {
        let now = Instant::now();
        if self.held.iter().any(|h| h.until <= now) {
            let (over, waiting) = std::mem::take(&mut self.held)
                .into_iter()
                .partition::<Vec<_>, _>(|h| h.until <= now);
            self.held = waiting.into();
            for h in over {
                self.idle(&h.reply);
            }
        }
        if !self.broker.is_connected() {
            // Their inboxes may be gone with the connection: they ask again.
            self.held.clear();
        }
        let late: Vec<u64> = self
            .handed
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            let h = self.handed.remove(&token).expect("listed");
            let why = format!(
                "worker {} took the frame and sent no result within {:.1} s (it died, stalled or lost NATS)",
                h.worker,
                self.config.timeout.as_secs_f64()
            );
            debug!(client = h.client, frame_id = h.reply_to.frame_id, "{why}");
            self.answer_failed(h.reply_to, &why);
        }
    }

    fn idle(&self, reply: &str) {
        let mut h = HeaderMap::new();
        h.insert(header::STATUS, "idle");
        h.insert(header::SERVER, self.config.server_id.as_str());
        if let Err(e) = self.broker.publish(reply.to_string(), h, Bytes::new()) {
            debug!("{e:#}");
        }
    }

    fn request(&mut self, m: Message) {
        let Some(reply) = m.reply else {
            debug!("a work request without a reply subject: ignored");
            return;
        };
        self.last_request = Instant::now();
        let h = m.headers.as_ref();
        let wait = nats::number(h, header::WAIT_MS)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_HOLD)
            .min(MAX_HOLD);
        if self.held.len() >= MAX_HELD {
            self.idle(reply.as_str());
            return;
        }
        let worker = nats::text(h, header::WORKER).unwrap_or("(unnamed)");
        self.held.push_back(Held {
            reply: reply.to_string(),
            worker: worker.chars().take(128).collect(),
            until: Instant::now() + wait,
        });
    }

    fn hand_frame(&mut self, f: ArrivedFrame) {
        if !self.broker.is_connected() {
            let why = format!(
                "NATS at {} is unreachable: the frame was not processed",
                self.url()
            );
            self.answer_failed(ReplyTo::new(&f, Instant::now()), &why);
            return;
        }
        if let Some(max) = self.broker.max_payload() {
            if f.jpeg.len() + HEADER_ROOM > max {
                let why = format!(
                    "the frame ({} bytes) is over the NATS server's max_payload ({max} bytes): raise max_payload in nats-server's configuration, or send smaller frames",
                    f.jpeg.len()
                );
                self.answer_failed(ReplyTo::new(&f, Instant::now()), &why);
                return;
            }
        }
        let Some(held) = self.held.pop_front() else {
            let why = format!(
                "no worker asked for a frame in {:.1} s: is a framelink-worker running against {}?",
                self.last_request.elapsed().as_secs_f64(),
                self.url()
            );
            self.answer_failed(ReplyTo::new(&f, Instant::now()), &why);
            return;
        };
        let Some(handed) = self.hand_off.hand(f) else {
            // Answered `expired`: the worker waits for the next fresh frame.
            self.held.push_front(held);
            return;
        };
        let f = &handed.frame;
        let handed_age = f.age + handed.at.saturating_duration_since(f.arrived);
        let token = self.next_token;
        self.next_token += 1;
        let config = &self.config;
        let mut h = HeaderMap::new();
        h.insert(header::SERVER, config.server_id.as_str());
        h.insert(
            header::RESULTS,
            nats::results_subject(&config.nats.prefix, &config.server_id),
        );
        h.insert(header::TOKEN, token.to_string());
        h.insert(header::FRAME_ID, f.frame_id.to_string());
        h.insert(header::CLIENT_ID, f.client.to_string());
        h.insert(header::CLIENT_NAME, &*f.client_name);
        h.insert(header::WIDTH, f.width.to_string());
        h.insert(header::HEIGHT, f.height.to_string());
        h.insert(header::ENCODING, "jpeg");
        h.insert(header::AGE_US, (f.age.as_micros() as u64).to_string());
        h.insert(
            header::HANDED_AGE_US,
            (handed_age.as_micros() as u64).to_string(),
        );
        h.insert(
            header::MAX_AGE_US,
            (self.hand_off.max_age.as_micros() as u64).to_string(),
        );
        h.insert(
            header::DEADLINE_MS,
            (config.timeout.as_millis() as u64).to_string(),
        );
        let reply_to = ReplyTo::new(f, handed.at);
        match self.broker.publish(held.reply, h, f.jpeg.clone()) {
            Ok(()) => {
                self.handed.insert(
                    token,
                    AtWorker {
                        client: f.client,
                        deadline: handed.at + config.timeout,
                        worker: held.worker,
                        reply_to,
                    },
                );
            }
            Err(e) => {
                let why = format!("{e:#}");
                self.answer_failed(reply_to, &why);
            }
        }
    }

    fn result(&mut self, m: Message) {
        let h = m.headers.as_ref();
        let token = match nats::number(h, header::TOKEN) {
            Ok(t) => t,
            Err(e) => {
                warn!("a malformed result on NATS was ignored: {e:#}");
                return;
            }
        };
        let Some(handed) = self.handed.remove(&token) else {
            debug!(
                token,
                "a result after its deadline, or a second one: ignored"
            );
            return;
        };
        let frame_id = nats::number(h, header::FRAME_ID).ok();
        let status = match nats::text(h, header::STATUS) {
            Some("processed") => Some(ResultStatus::Processed),
            Some("failed") => Some(ResultStatus::Failed),
            Some("expired") => Some(ResultStatus::Expired),
            _ => None,
        };
        let kind = match nats::text(h, header::KIND).unwrap_or("none") {
            "none" => Some(ResultKind::None),
            "json" => Some(ResultKind::Json),
            "jpeg" => Some(ResultKind::Jpeg),
            "text" => Some(ResultKind::Text),
            _ => None,
        };
        let (status, kind, payload) = match (frame_id, status, kind) {
            (Some(id), Some(s), Some(k)) if id == handed.reply_to.frame_id => (s, k, m.payload),
            _ => {
                let why = format!(
                    "worker {} sent a malformed result (check its {}, {} and {} headers against protocol.md)",
                    handed.worker,
                    header::FRAME_ID,
                    header::STATUS,
                    header::KIND
                );
                warn!("{why}");
                (ResultStatus::Failed, ResultKind::Text, Bytes::from(why))
            }
        };
        let _ = handed
            .reply_to
            .send_raw(status, kind, payload, &self.counts);
    }

    /// Answers a frame `failed`, with `why` (from the pool) as its text.
    fn answer_failed(&self, reply_to: ReplyTo, why: &str) {
        let text = Bytes::from(format!("pool: {why}"));
        let _ = reply_to.send_raw(ResultStatus::Failed, ResultKind::Text, text, &self.counts);
    }
}
