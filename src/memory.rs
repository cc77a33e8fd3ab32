//! The allocator settings of a program that runs for months.
//!
//! The server starts a thread per connection, and glibc's malloc gives
//! threads arenas of their own (up to eight per core). Each arena keeps the
//! memory freed in it for reuse, so with connections coming and going for
//! weeks the resident size creeps up in steps as frames land in arenas
//! that were idle, though nothing is leaked. [`settle`] caps the arenas;
//! [`Trim`] hands freed pages back to the kernel once a minute. Elsewhere
//! (musl, other systems) both do nothing.

use std::time::{Duration, Instant};

/// Arenas for the whole process: enough that two threads rarely wait on one
/// lock for a frame-sized allocation, few enough to keep freed memory in one place.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Caps the allocator's arenas. Call first in `main`, before threads start;
/// `MALLOC_ARENA_MAX` in the environment, when set, is left to rule.
pub fn settle() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; M_ARENA_MAX
        // with a positive value is documented for any time in a process's life.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Gives freed memory back to the kernel at most once per [`Trim::EVERY`].
#[derive(Debug)]
pub struct Trim {
    last: Instant,
}

impl Default for Trim {
    fn default() -> Self {
        Self {
            last: Instant::now(),
        }
    }
}

impl Trim {
    /// How often [`Trim::maybe`] trims.
    pub const EVERY: Duration = Duration::from_secs(60);

    /// Trims if [`Trim::EVERY`] has passed since the last time. Cheap to
    /// call often (a clock read); the trim itself takes well under a millisecond
    /// for a server's few megabytes.
    pub fn maybe(&mut self) {
        if self.last.elapsed() >= Self::EVERY {
            self.last = Instant::now();
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim takes the allocator's own locks; it may be
            // called from any thread at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
