//! A client's source (its camera) as the client's SOURCE messages tell it:
//! up, or lost since when and why. Viewers show it (the window's and the
//! live view's NO SIGNAL tile, the status line, `/stats.json`, the
//! `framelink_source_up` gauge); no frame is ever made up for a processor.

use crate::wire::SourceReport;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// One connection's source state. A client that never says (an older one,
/// or one without the `SOURCE_STATE` capability) stays up.
#[derive(Debug, Default)]
pub struct SourceState {
    inner: Mutex<Inner>,
    /// Bumped at every report that changes the state.
    changes: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    lost: Option<LostSource>,
    outages: u64,
}

/// A source lost, as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostSource {
    /// When, on this server's wall clock: the report's arrival less how long
    /// the client said the source had been quiet.
    pub since: SystemTime,
    /// The client's reason ("no frame for 5.0 s", the device's error).
    pub why: String,
}

impl LostSource {
    /// "camera lost since 14:03:27" (local time).
    pub fn headline(&self) -> String {
        format!("camera lost since {}", time_of_day(self.since))
    }
}

impl SourceState {
    /// Takes a SOURCE message from the client.
    pub fn report(&self, r: &SourceReport) {
        let mut s = self.inner.lock();
        match (r.up, s.lost.is_some()) {
            (true, true) => s.lost = None,
            (false, false) => {
                let ago = Duration::from_micros(r.for_us as u64);
                s.lost = Some(LostSource {
                    since: SystemTime::now()
                        .checked_sub(ago)
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                    why: r.text.clone(),
                });
                s.outages += 1;
            }
            _ => return,
        }
        drop(s);
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The outage going on, if one is.
    pub fn lost(&self) -> Option<LostSource> {
        self.inner.lock().lost.clone()
    }

    /// Outages this connection reported (the one going on included).
    pub fn outages(&self) -> u64 {
        self.inner.lock().outages
    }

    /// How many times the state changed: a viewer compares it with what it showed.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }
}

/// `HH:MM:SS` of `t` in the machine's local time zone (UTC where it cannot
/// be read).
pub fn time_of_day(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    #[cfg(unix)]
    {
        let raw = secs as libc::time_t;
        // SAFETY: localtime_r writes into the tm we own; both pointers live
        // through the call.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if !unsafe { libc::localtime_r(&raw, &mut tm) }.is_null() {
            return format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
        }
    }
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day / 60 % 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_and_back_count_one_outage_and_repeat_reports_change_nothing() {
        let s = SourceState::default();
        let lost = SourceReport {
            up: false,
            for_us: 5_000_000,
            text: "no frame for 5.0 s".into(),
        };
        s.report(&lost);
        s.report(&lost);
        let l = s.lost().expect("lost");
        let ago = SystemTime::now().duration_since(l.since).unwrap();
        assert!(
            ago >= Duration::from_secs(5) && ago < Duration::from_secs(6),
            "{ago:?}"
        );
        assert_eq!(l.why, "no frame for 5.0 s");
        assert!(l.headline().starts_with("camera lost since "));
        assert_eq!(s.changes(), 1);
        s.report(&SourceReport {
            up: true,
            for_us: 7_000_000,
            text: String::new(),
        });
        assert!(s.lost().is_none());
        assert_eq!((s.changes(), s.outages()), (2, 1));
    }

    #[test]
    fn time_of_day_is_two_digits_each() {
        let t = time_of_day(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 365 + 3_723));
        assert_eq!(t.len(), 8);
        assert_eq!(&t[2..3], ":");
        assert_eq!(&t[5..], ":03", "seconds do not depend on the zone: {t}");
    }
}
