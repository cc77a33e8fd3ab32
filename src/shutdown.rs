//! The quit signal every long-running loop watches: set by Ctrl-C, by the end
//! of `--duration`, by closing the window, or by a test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a blocked call (a socket read, a channel receive) wakes to look
/// at the shutdown flag and its deadlines: a stop is seen within this.
pub const TICK: Duration = Duration::from_millis(100);

/// A cloneable quit flag that can also be waited on.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    flag: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every loop to stop. Idempotent.
    pub fn trigger(&self) {
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.flag.store(true, Ordering::SeqCst);
        self.inner.cond.notify_all();
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Sleeps for `timeout` or until [`trigger`](Self::trigger), whichever comes
    /// first. Returns true if the shutdown was triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_triggered() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.inner.cond.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// Triggers the shutdown after `after` (for `--duration`), on a small
    /// thread that ends early if the shutdown comes first.
    pub fn trigger_after(&self, after: Duration) {
        let me = self.clone();
        std::thread::Builder::new()
            .name("duration".into())
            .spawn(move || {
                if !me.wait_timeout(after) {
                    tracing::debug!("--duration reached");
                    me.trigger();
                }
            })
            .expect("spawn the duration timer");
    }

    /// Triggers the shutdown on Ctrl-C (SIGINT) and SIGTERM. A second Ctrl-C
    /// while shutting down exits at once.
    pub fn on_ctrl_c(&self) -> anyhow::Result<()> {
        let me = self.clone();
        ctrlc::set_handler(move || {
            if me.is_triggered() {
                kill_child_groups();
                std::process::exit(130);
            }
            tracing::info!("stopping (Ctrl-C again to force)");
            me.trigger();
        })
        .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))
    }
}

/// Process groups of children (an `exec:` processor and what it started)
/// that must not outlive this program: killed on a forced exit.
static CHILD_GROUPS: parking_lot::Mutex<Vec<i32>> = parking_lot::Mutex::new(Vec::new());

/// Remembers a child's process group, to be killed on a forced exit.
pub fn own_child_group(pgid: i32) {
    CHILD_GROUPS.lock().push(pgid);
}

/// Kills a child's process group with SIGKILL and forgets it.
pub fn kill_child_group(pgid: i32) {
    CHILD_GROUPS.lock().retain(|&g| g != pgid);
    // SAFETY: plain kill(2) on a process group this program created.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Has the kernel send `signal` to the child `command` starts when this
/// program dies, however it dies (`PR_SET_PDEATHSIG`; strictly, when the
/// thread that started it ends: start children from threads that live as
/// long as the program).
pub fn signal_when_parent_dies(command: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) only, between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Kills every child group still remembered (on a forced exit).
fn kill_child_groups() {
    for pgid in CHILD_GROUPS.lock().drain(..) {
        // SAFETY: plain kill(2) on a process group this program created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_when_triggered_from_another_thread() {
        let s = Shutdown::new();
        let t = s.clone();
        let h = std::thread::spawn(move || t.wait_timeout(Duration::from_secs(30)));
        s.trigger();
        assert!(h.join().unwrap());
    }

    #[test]
    fn wait_times_out_when_not_triggered() {
        let s = Shutdown::new();
        assert!(!s.wait_timeout(Duration::from_millis(1)));
        assert!(!s.is_triggered());
    }

    #[test]
    fn trigger_after_fires() {
        let s = Shutdown::new();
        s.trigger_after(Duration::from_millis(5));
        assert!(s.wait_timeout(Duration::from_secs(30)));
    }
}
