//! The gate every frame passes: its checks ([`check_frame`]: a well-formed JPEG of
//! the size the FRAME says, within limits), then its age on arrival, measured
//! without synchronized clocks.
//!
//! The server hands out a [`Ticket`](crate::wire::Ticket) carrying its own
//! clock reading `T_s`. The client keeps it for `held` (its own clock) until a
//! frame is ready, and reports with the frame how long ago, on its own clock,
//! that frame was captured (`capture_to_send`). When the whole frame has
//! arrived at `T_a` (server clock):
//!
//! ```text
//! transit = (T_a − T_s) − held          // ticket's trip out + frame's trip in
//! age     = capture_to_send + transit
//! ```
//!
//! Each difference is taken on a single clock, so no clock sync is needed.
//! The true age is `capture_to_send + frame's trip in`; `age` adds the ticket's
//! trip out, so it never under-states a frame's age, and over-states it by at
//! most the one-way server→client delay (≤ `transit`), plus clock-rate
//! drift over `held` (ppm: microseconds per second held).

use crate::media::jpeg;
use crate::wire::{Encoding, FrameHeader, Outcome, Reason};
use std::time::Duration;

/// The figures the gate judges a frame by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Frame age on arrival (conservative; see the module docs).
    pub age: Duration,
    /// The link's share of the age: ticket out plus frame in.
    pub transit: Duration,
}

/// Notices a link whose round trip alone is over the threshold: then every
/// frame is stale whatever the camera or encoder do, and only a higher
/// threshold helps. Both programs keep one per connection and say so once.
#[derive(Debug, Default)]
pub struct LinkCheck {
    over: u32,
    worst: Duration,
    told: bool,
}

impl LinkCheck {
    /// Frames in a row whose transit alone was over the threshold before
    /// it is said.
    pub const IN_A_ROW: u32 = 10;

    /// One judged frame's `transit` and `age` against `threshold`. Returns,
    /// once, a threshold that would work (the worst age seen, plus a
    /// quarter, rounded up to 10 ms) when [`IN_A_ROW`](Self::IN_A_ROW)
    /// frames in a row had a transit over `threshold`.
    pub fn observe(
        &mut self,
        transit: Duration,
        age: Duration,
        threshold: Duration,
    ) -> Option<Duration> {
        if self.told {
            return None;
        }
        if transit <= threshold {
            self.over = 0;
            self.worst = Duration::ZERO;
            return None;
        }
        self.over += 1;
        self.worst = self.worst.max(age);
        if self.over < Self::IN_A_ROW {
            return None;
        }
        self.told = true;
        let ms = (self.worst.as_secs_f64() * 1.25 * 1e3 / 10.0).ceil() * 10.0;
        Some(Duration::from_millis(ms as u64))
    }
}

/// Computes [`Measure`] from the server's clock readings and the client's two
/// reported durations. A client that reports a `held` longer than the whole
/// round trip gets a transit of zero, never a negative one.
pub fn measure(
    issued: Duration,
    arrived: Duration,
    held: Duration,
    capture_to_send: Duration,
) -> Measure {
    let transit = arrived.saturating_sub(issued).saturating_sub(held);
    Measure {
        transit,
        age: capture_to_send.saturating_add(transit),
    }
}

/// Whether a client's claim to have held a ticket for `held` (its clock) is
/// possible when the ticket has existed for `since_issued` (server clock):
/// the ticket reached the client after it was issued and the frame left
/// before it arrived, so `held < since_issued` up to the two clocks' rate
/// difference, allowed here as 1 ms plus 0.1 % (1000 ppm, ten times a
/// cheap crystal's error). A longer claim would make the frame look younger
/// than it is, so the server rejects the frame.
pub fn plausible_hold(since_issued: Duration, held: Duration) -> bool {
    held <= since_issued + Duration::from_millis(1) + since_issued / 1000
}

/// Compares frame ages with a threshold (`--max-latency-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub max_age: Duration,
}

impl Gate {
    pub fn new(max_age: Duration) -> Self {
        Gate { max_age }
    }

    /// `Accepted` when the age is at most the threshold, else `DroppedStale`.
    pub fn judge(&self, m: &Measure) -> Outcome {
        if m.age <= self.max_age {
            Outcome::Accepted
        } else {
            Outcome::DroppedStale
        }
    }
}

/// Why a frame's header and payload cannot be accepted, checked in this
/// order (protocol.md lists it): encoding, zero size, a whole JPEG, one
/// readable frame header, that header's size equal to the FRAME's, and the
/// size within `max_pixels`. None when the frame passes: nothing decodes a
/// frame before this, so the size a decoder allocates for is bounded here.
pub fn check_frame(h: &FrameHeader, payload: &[u8], max_pixels: u64) -> Option<Reason> {
    if h.encoding != Encoding::Jpeg {
        return Some(Reason::UnsupportedEncoding);
    }
    if h.width == 0 || h.height == 0 {
        return Some(Reason::BadDimensions);
    }
    if !jpeg::is_whole(payload) {
        return Some(Reason::NotJpeg);
    }
    let Some(dims) = jpeg::dimensions(payload) else {
        return Some(Reason::BrokenJpeg);
    };
    if dims != (h.width, h.height) {
        return Some(Reason::BadDimensions);
    }
    if h.width as u64 * h.height as u64 > max_pixels {
        return Some(Reason::TooManyPixels);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_over_the_threshold_is_told_once_with_a_threshold_that_works() {
        let ms = Duration::from_millis;
        let mut c = LinkCheck::default();
        // A fast frame resets the run.
        for _ in 0..LinkCheck::IN_A_ROW - 1 {
            assert_eq!(c.observe(ms(100), ms(110), ms(80)), None);
        }
        assert_eq!(c.observe(ms(10), ms(20), ms(80)), None);
        for _ in 0..LinkCheck::IN_A_ROW - 1 {
            assert_eq!(c.observe(ms(100), ms(110), ms(80)), None);
        }
        // 110 ms x 1.25 = 137.5 → 140 ms.
        assert_eq!(c.observe(ms(100), ms(105), ms(80)), Some(ms(140)));
        assert_eq!(c.observe(ms(100), ms(110), ms(80)), None, "once");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn age_counts_capture_delay_and_link_but_not_time_holding_the_ticket() {
        // Ticket issued at 1000 ms, held 30 ms by the client waiting for a frame,
        // frame arrives at 1045 ms: 15 ms on the link in all. The frame was
        // captured 5 ms before sending began.
        let m = measure(ms(1000), ms(1045), ms(30), ms(5));
        assert_eq!(m.transit, ms(15));
        assert_eq!(m.age, ms(20));
    }

    #[test]
    fn a_reported_hold_longer_than_the_round_trip_gives_zero_transit() {
        let m = measure(ms(1000), ms(1010), ms(50), ms(3));
        assert_eq!(m.transit, Duration::ZERO);
        assert_eq!(m.age, ms(3));
    }

    #[test]
    fn threshold_is_inclusive() {
        let g = Gate::new(ms(80));
        let at = |age| Measure {
            age,
            transit: Duration::ZERO,
        };
        assert_eq!(g.judge(&at(ms(80))), Outcome::Accepted);
        assert_eq!(
            g.judge(&at(ms(80) + Duration::from_micros(1))),
            Outcome::DroppedStale
        );
    }

    #[test]
    fn micros_saturate() {
        assert_eq!(
            crate::wire::micros_u32(Duration::from_secs(10_000)),
            u32::MAX
        );
        assert_eq!(crate::wire::micros_u32(ms(2)), 2000);
    }
}
