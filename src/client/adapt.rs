//! Adaptation: the client keeps its frames fresh on a thin link by lowering
//! JPEG quality, then the frame size, then the frame rate, and steps back up
//! when there is headroom.
//!
//! The settings form a ladder, from the configured quality, size and rate
//! (level 0) down: quality in steps of 10 to `--min-quality`, then the size
//! in steps (3/4, 1/2, 3/8, 1/4, 3/16, 1/8 of the width, not below
//! `--min-width`), then the rate halved down to 5 fps.
//!
//! The controller reads the server's verdicts. Every frame carries the level
//! it was encoded at, and only verdicts on frames of the current level count,
//! so a change is judged by its own frames, never by those still in flight
//! from before it.
//!
//! - **Down** when 2 of the last 4 frames at this level were stale or older
//!   than 80 % of the server's threshold (or a send blocked that long): by
//!   1 to 6 levels, more the further over the threshold they were.
//! - **Up** one level when the last 10 frames at this level were all fresh
//!   and younger than 40 % of the threshold, and the level has been held
//!   long enough: 1 s at first. A step up that fails within 3 s doubles how
//!   long the lower level is held before the next try (up to 32 s), so a
//!   link that cannot carry the higher level is probed ever more rarely
//!   instead of oscillating. Holding the higher level for 10 s forgives it.

use crate::wire::Outcome;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Quality step between levels.
const QUALITY_STEP: u8 = 10;
/// Width fractions (numerator over 16) tried after quality.
const SCALES: [u32; 6] = [12, 8, 6, 4, 3, 2];
/// The frame rate is not lowered below this.
const MIN_FPS: f64 = 5.0;
/// A frame older than this share of the threshold is "late".
const LATE: f64 = 0.8;
/// Frames younger than this share of the threshold leave headroom.
const HEADROOM: f64 = 0.4;
/// Frames judged at a level before stepping up.
const UP_AFTER: usize = 10;
/// Shortest hold of a level before stepping up.
const BASE_HOLD: Duration = Duration::from_secs(1);
const MAX_HOLD: Duration = Duration::from_secs(32);
/// A step down this soon after a step up means the step up failed.
const PROBE_FAILED_WITHIN: Duration = Duration::from_secs(3);
/// A step up that held this long resets the hold of the level below.
const PROBE_HELD: Duration = Duration::from_secs(10);
/// After frames were late even at the leanest setting, adaptation rests at
/// the top this long (doubling up to 5 minutes while it keeps happening).
const LATENCY_REST: Duration = Duration::from_secs(30);
const MAX_LATENCY_REST: Duration = Duration::from_secs(300);

/// One rung of the ladder: what the capture stage produces.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting {
    pub quality: u8,
    pub width: u32,
    pub height: u32,
    /// Frames a second; 0 means as fast as the source goes.
    pub fps: f64,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "q{} {}x{}", self.quality, self.width, self.height)?;
        if self.fps > 0.0 {
            write!(f, " {}", fps_text(self.fps))?;
        }
        Ok(())
    }
}

fn fps_text(fps: f64) -> String {
    if fps.fract() == 0.0 {
        format!("{fps:.0} fps")
    } else {
        format!("{fps:.1} fps")
    }
}

/// The last frame sent: its size, and whether it was the source's own JPEG
/// sent as it came.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    pub width: u16,
    pub height: u16,
    pub as_captured: bool,
}

/// The settings from best (level 0) to leanest.
#[derive(Debug, Clone)]
pub struct Ladder {
    pub steps: Vec<Setting>,
}

impl Ladder {
    /// The ladder from `top` down to `min_quality` and `min_width`.
    pub fn new(top: Setting, min_quality: u8, min_width: u32) -> Ladder {
        let mut steps = vec![top];
        let mut s = top;
        while s.quality > min_quality {
            s.quality = s.quality.saturating_sub(QUALITY_STEP).max(min_quality);
            steps.push(s);
        }
        for n in SCALES {
            let width = even(top.width * n / 16);
            if width < min_width.max(16) {
                break;
            }
            s.width = width;
            s.height = even(top.height * n / 16).max(2);
            steps.push(s);
        }
        let floor = if top.fps > 0.0 {
            MIN_FPS.min(top.fps)
        } else {
            MIN_FPS
        };
        let mut fps = if top.fps > 0.0 { top.fps } else { 30.0 };
        while fps / 2.0 >= floor {
            fps /= 2.0;
            s.fps = fps;
            steps.push(s);
        }
        Ladder { steps }
    }
}

/// JPEG encoders want even sizes for 4:2:0.
fn even(v: u32) -> u32 {
    (v & !1).max(2)
}

/// How the controller came to its current level, for the status line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdaptSummary {
    /// Level changes over the run.
    pub changes: u64,
    pub steps_down: u64,
    pub steps_up: u64,
    /// The setting at the end.
    pub setting: Option<Setting>,
    /// The leanest setting used.
    pub lowest: Option<Setting>,
}

/// The decision logic (see the module docs). Pure: times are passed in.
pub struct Controller {
    ladder: Ladder,
    level: usize,
    threshold: Duration,
    /// Ages of the latest frames judged at this level (None: stale or a blocked send).
    recent: VecDeque<Option<Duration>>,
    since: Instant,
    hold: Vec<Duration>,
    /// The last step up: from which level, and when.
    last_up: Option<(usize, Instant)>,
    lowest: usize,
    /// Set when even the leanest setting was late: adaptation cannot help
    /// (the link's delay, not its bandwidth, is the limit) until then.
    resting_until: Option<Instant>,
    rest: Duration,
    summary: AdaptSummary,
    /// Why the last change was made.
    pub reason: String,
}

impl Controller {
    pub fn new(ladder: Ladder, threshold: Duration, now: Instant) -> Self {
        let n = ladder.steps.len();
        Controller {
            ladder,
            level: 0,
            threshold,
            recent: VecDeque::new(),
            since: now,
            hold: vec![BASE_HOLD; n],
            last_up: None,
            lowest: 0,
            resting_until: None,
            rest: LATENCY_REST,
            summary: AdaptSummary::default(),
            reason: String::new(),
        }
    }

    pub fn level(&self) -> usize {
        self.level
    }

    pub fn setting(&self) -> Setting {
        self.ladder.steps[self.level]
    }

    /// A new server (after a reconnect) may have another threshold.
    pub fn set_threshold(&mut self, threshold: Duration) {
        self.threshold = threshold.max(Duration::from_millis(1));
    }

    /// The verdict on a frame encoded at `level`. Returns the new level when
    /// it changes.
    pub fn verdict(
        &mut self,
        level: usize,
        outcome: Outcome,
        age: Duration,
        now: Instant,
    ) -> Option<usize> {
        if level != self.level {
            return None;
        }
        match outcome {
            Outcome::Accepted => self.recent.push_back(Some(age)),
            Outcome::DroppedStale => self.recent.push_back(None),
            Outcome::Rejected => return None,
        }
        self.decide(age, now)
    }

    /// A send of a frame encoded at `level` blocked for `took`: counted as a
    /// late frame when it took longer than the threshold allows.
    pub fn send_took(&mut self, level: usize, took: Duration, now: Instant) -> Option<usize> {
        if level != self.level || took.as_secs_f64() < LATE * self.threshold.as_secs_f64() {
            return None;
        }
        self.recent.push_back(None);
        self.decide(took, now)
    }

    /// A frame encoded at `level` came out at `bytes`, over the server's
    /// `limit`: it cannot be sent, so step down at once, by as many steps
    /// as the size is over (quality and size both shrink the bytes). At the
    /// leanest setting there is nothing left to do.
    pub fn too_large(
        &mut self,
        level: usize,
        bytes: usize,
        limit: u32,
        now: Instant,
    ) -> Option<usize> {
        let last = self.ladder.steps.len() - 1;
        if level != self.level || self.level == last {
            return None;
        }
        let over = bytes as f64 / (limit.max(1)) as f64;
        let n = (2.0 * over.log2()).ceil().clamp(1.0, 6.0) as usize;
        self.reason = format!("frames of {bytes} bytes over the server's limit of {limit} bytes");
        self.last_up = None;
        self.summary.steps_down += 1;
        Some(self.change((self.level + n).min(last), now))
    }

    fn decide(&mut self, age: Duration, now: Instant) -> Option<usize> {
        while self.recent.len() > UP_AFTER {
            self.recent.pop_front();
        }
        let t = self.threshold.as_secs_f64();
        let late = |a: &Option<Duration>| a.is_none_or(|a| a.as_secs_f64() > LATE * t);
        let late_of_last4 = self.recent.iter().rev().take(4).filter(|a| late(a)).count();
        if self.resting_until.is_some_and(|until| now < until) {
            return None;
        }
        if late_of_last4 >= 2 && self.level + 1 == self.ladder.steps.len() {
            // Even the leanest frames are late: the link's delay is the limit,
            // and lean frames only make the picture worse. Rest at the top.
            self.resting_until = Some(now + self.rest);
            self.reason = format!(
                "frames late even at the leanest setting: the link's delay is the limit, not its bandwidth; adapting again in {} s (or raise --max-latency-ms)",
                self.rest.as_secs()
            );
            self.rest = (self.rest * 2).min(MAX_LATENCY_REST);
            self.last_up = None;
            self.summary.steps_up += 1;
            return Some(self.change(0, now));
        }
        if late_of_last4 >= 2 {
            let worst = self
                .recent
                .iter()
                .rev()
                .take(4)
                .map(|a| a.map_or(age.as_secs_f64().max(t), |a| a.as_secs_f64()))
                .fold(0.0, f64::max);
            let over = worst / t;
            let n = (2.0 * (over / LATE).log2()).ceil().clamp(1.0, 6.0) as usize;
            let to = (self.level + n).min(self.ladder.steps.len() - 1);
            if let Some((from, at)) = self.last_up {
                if self.level + 1 == from && now.duration_since(at) < PROBE_FAILED_WITHIN {
                    self.hold[from] = (self.hold[from] * 2).min(MAX_HOLD);
                }
            }
            self.last_up = None;
            self.reason = format!(
                "frames up to {:.1} ms old, over {:.0} % of the {:.1} ms threshold",
                worst * 1e3,
                LATE * 100.0,
                t * 1e3
            );
            self.summary.steps_down += 1;
            return Some(self.change(to, now));
        }
        if self.level > 0
            && self.recent.len() >= UP_AFTER
            && !self
                .recent
                .iter()
                .any(|a| a.is_none_or(|a| a.as_secs_f64() > HEADROOM * t))
            && now.duration_since(self.since) >= self.hold[self.level]
        {
            if let Some((from, at)) = self.last_up {
                if now.duration_since(at) >= PROBE_HELD {
                    self.hold[from] = BASE_HOLD;
                }
            }
            self.last_up = Some((self.level, now));
            self.reason = "headroom".into();
            self.summary.steps_up += 1;
            return Some(self.change(self.level - 1, now));
        }
        if let Some((from, at)) = self.last_up {
            if now.duration_since(at) >= PROBE_HELD {
                self.hold[from] = BASE_HOLD;
            }
        }
        None
    }

    fn change(&mut self, to: usize, now: Instant) -> usize {
        self.level = to;
        self.lowest = self.lowest.max(to);
        self.since = now;
        self.recent.clear();
        self.summary.changes += 1;
        to
    }

    pub fn summary(&self) -> AdaptSummary {
        AdaptSummary {
            setting: Some(self.setting()),
            lowest: Some(self.ladder.steps[self.lowest]),
            ..self.summary.clone()
        }
    }
}

/// The controller shared by the client's threads: the reader feeds it
/// verdicts, the sender send times, and the capture stage reads the level.
pub struct Adapter {
    controller: Mutex<Controller>,
    level: AtomicUsize,
    enabled: bool,
}

impl Adapter {
    /// `enabled` false keeps level 0 (`--adapt off`) but still reports it.
    pub fn new(ladder: Ladder, enabled: bool) -> Self {
        Adapter {
            controller: Mutex::new(Controller::new(
                ladder,
                Duration::from_millis(80),
                Instant::now(),
            )),
            level: AtomicUsize::new(0),
            enabled,
        }
    }

    /// One setting only: no adaptation.
    pub fn fixed(width: u32, height: u32, quality: u8, fps: f64) -> Self {
        let top = Setting {
            quality,
            width,
            height,
            fps,
        };
        Adapter::new(Ladder::new(top, quality, width), false)
    }

    /// The best setting (level 0): what was asked for.
    pub fn top(&self) -> Setting {
        self.controller.lock().ladder.steps[0]
    }

    /// The level and setting frames should be made at now.
    pub fn current(&self) -> (usize, Setting) {
        let c = self.controller.lock();
        (c.level(), c.setting())
    }

    /// The current level, without locking.
    pub fn level(&self) -> usize {
        self.level.load(Ordering::Relaxed)
    }

    pub fn set_threshold(&self, threshold: Duration) {
        self.controller.lock().set_threshold(threshold);
    }

    pub fn verdict(&self, level: usize, outcome: Outcome, age: Duration) {
        if !self.enabled {
            return;
        }
        let mut c = self.controller.lock();
        if let Some(l) = c.verdict(level, outcome, age, Instant::now()) {
            self.changed(&c, l);
        }
    }

    /// A frame too large for the server (see [`Controller::too_large`]).
    pub fn too_large(&self, level: usize, bytes: usize, limit: u32) {
        if !self.enabled {
            return;
        }
        let mut c = self.controller.lock();
        if let Some(l) = c.too_large(level, bytes, limit, Instant::now()) {
            self.changed(&c, l);
        }
    }

    pub fn send_took(&self, level: usize, took: Duration) {
        if !self.enabled {
            return;
        }
        let mut c = self.controller.lock();
        if let Some(l) = c.send_took(level, took, Instant::now()) {
            self.changed(&c, l);
        }
    }

    fn changed(&self, c: &Controller, level: usize) {
        self.level.store(level, Ordering::Relaxed);
        tracing::info!("adapting: now {} ({})", c.setting(), c.reason);
    }

    /// For the compact status line: what is being sent. The setting (marked
    /// `*` when adapted) at the size the frames really have (a camera may
    /// give another size than asked), or `WxH as captured` for a source's
    /// own JPEG sent untouched; the setting alone before the first frame.
    pub fn setting_text(&self, last: Option<Sent>) -> String {
        let c = self.controller.lock();
        let mut setting = c.setting();
        let mut text = match last {
            Some(Sent {
                width,
                height,
                as_captured: true,
            }) => {
                let mut t = format!("{width}x{height} as captured");
                if setting.fps > 0.0 {
                    t += &format!(" {}", fps_text(setting.fps));
                }
                t
            }
            Some(Sent { width, height, .. }) => {
                setting.width = width.into();
                setting.height = height.into();
                setting.to_string()
            }
            None => setting.to_string(),
        };
        if c.level() > 0 {
            text.push('*');
        }
        text
    }

    /// For the status line: the setting, changes, and why the last one.
    pub fn status(&self) -> String {
        let c = self.controller.lock();
        let s = c.summary();
        if !self.enabled {
            return format!("{} (adapt off)", c.setting());
        }
        if s.changes == 0 {
            return format!("{} (adapt: no change)", c.setting());
        }
        format!(
            "{} (adapt: {} change{}, last: {})",
            c.setting(),
            s.changes,
            if s.changes == 1 { "" } else { "s" },
            c.reason
        )
    }

    pub fn summary(&self) -> AdaptSummary {
        self.controller.lock().summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top() -> Setting {
        Setting {
            quality: 80,
            width: 1920,
            height: 1080,
            fps: 30.0,
        }
    }

    /// The status line says what goes out: a camera's or file's own JPEG is
    /// not "q80 640x480" (the setting asked for) but its own size, as captured.
    #[test]
    fn the_status_names_what_was_sent_not_only_what_was_asked() {
        let a = Adapter::new(Ladder::new(top(), 30, 320), false);
        assert_eq!(a.setting_text(None), "q80 1920x1080 30 fps");
        let sent = |width, height, as_captured| Sent {
            width,
            height,
            as_captured,
        };
        assert_eq!(
            a.setting_text(Some(sent(1280, 720, true))),
            "1280x720 as captured 30 fps"
        );
        // A camera that gave another size than asked, encoded here.
        assert_eq!(
            a.setting_text(Some(sent(640, 480, false))),
            "q80 640x480 30 fps"
        );
    }

    #[test]
    fn the_ladder_lowers_quality_then_size_then_rate() {
        let l = Ladder::new(top(), 30, 320);
        let q: Vec<u8> = l.steps.iter().map(|s| s.quality).collect();
        assert_eq!(&q[..6], &[80, 70, 60, 50, 40, 30]);
        let w: Vec<u32> = l.steps[5..].iter().map(|s| s.width).collect();
        assert_eq!(&w[..7], &[1920, 1440, 960, 720, 480, 360, 360]);
        let last = *l.steps.last().unwrap();
        assert_eq!((last.width, last.fps), (360, 7.5));
        assert!(l.steps.windows(2).all(|p| p[0] != p[1]));
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn stale_frames_step_down_further_the_staler_they_are() {
        let t0 = Instant::now();
        let mut c = Controller::new(Ladder::new(top(), 30, 320), ms(80), t0);
        assert_eq!(
            c.verdict(0, Outcome::DroppedStale, ms(90), t0),
            None,
            "one is noise"
        );
        assert_eq!(c.verdict(0, Outcome::DroppedStale, ms(90), t0), Some(1));
        // Frames still in flight from level 0 do not count any more.
        assert_eq!(c.verdict(0, Outcome::DroppedStale, ms(900), t0), None);
        c.verdict(1, Outcome::DroppedStale, ms(400), t0);
        let l = c.verdict(1, Outcome::DroppedStale, ms(400), t0).unwrap();
        assert!(l >= 5, "400 ms against 80 ms: a big step, got {l}");
    }

    #[test]
    fn headroom_steps_up_after_the_hold_and_a_failed_probe_waits_longer() {
        let t0 = Instant::now();
        let mut c = Controller::new(Ladder::new(top(), 30, 320), ms(80), t0);
        c.verdict(0, Outcome::DroppedStale, ms(90), t0);
        c.verdict(0, Outcome::DroppedStale, ms(90), t0);
        assert_eq!(c.level(), 1);
        let fresh = |c: &mut Controller, level, at| {
            (0..UP_AFTER)
                .filter_map(|_| c.verdict(level, Outcome::Accepted, ms(10), at))
                .last()
        };
        // Fresh, but not held long enough yet.
        assert_eq!(fresh(&mut c, 1, t0 + ms(500)), None);
        assert_eq!(fresh(&mut c, 1, t0 + ms(1100)), Some(0));
        // The probe fails at once: back down, and level 1 is held twice as long.
        c.verdict(0, Outcome::DroppedStale, ms(90), t0 + ms(1200));
        c.verdict(0, Outcome::DroppedStale, ms(90), t0 + ms(1300));
        assert_eq!(c.level(), 1);
        assert_eq!(fresh(&mut c, 1, t0 + ms(2400)), None, "held 2 s now");
        assert_eq!(fresh(&mut c, 1, t0 + ms(3400)), Some(0));
        assert_eq!(c.summary().steps_down, 2);
        assert_eq!(c.summary().steps_up, 2);
    }

    #[test]
    fn late_even_at_the_leanest_setting_rests_at_the_top() {
        let t0 = Instant::now();
        let ladder = Ladder::new(top(), 30, 320);
        let floor = ladder.steps.len() - 1;
        let mut c = Controller::new(ladder, ms(80), t0);
        let mut level = 0;
        while level < floor {
            c.verdict(level, Outcome::DroppedStale, ms(100), t0);
            level = c
                .verdict(level, Outcome::DroppedStale, ms(100), t0)
                .unwrap();
        }
        c.verdict(floor, Outcome::DroppedStale, ms(100), t0);
        assert_eq!(
            c.verdict(floor, Outcome::DroppedStale, ms(100), t0),
            Some(0)
        );
        assert!(c.reason.contains("delay"), "{}", c.reason);
        // Resting: late frames at the top change nothing for a while.
        for i in 0..10 {
            assert_eq!(
                c.verdict(0, Outcome::DroppedStale, ms(100), t0 + ms(i * 100)),
                None
            );
        }
        // Then it tries again.
        let again = c.verdict(0, Outcome::DroppedStale, ms(100), t0 + ms(31_000));
        assert!(again.is_some_and(|l| l >= 1), "{again:?}");
    }

    #[test]
    fn a_middling_age_is_neither_up_nor_down() {
        let t0 = Instant::now();
        let mut c = Controller::new(Ladder::new(top(), 30, 320), ms(80), t0);
        c.verdict(0, Outcome::DroppedStale, ms(90), t0);
        c.verdict(0, Outcome::DroppedStale, ms(90), t0);
        for i in 0..100 {
            assert_eq!(
                c.verdict(1, Outcome::Accepted, ms(50), t0 + ms(100 * i)),
                None
            );
        }
    }
}
