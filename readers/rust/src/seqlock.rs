//! The reader side of LAYOUT.md section 8 (also used for `dir_seq`, section 9).

use std::hint::spin_loop;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long ldc's readers retry an odd or changing counter before probing the writer (section 8).
pub const RETRY_BUDGET: Duration = Duration::from_millis(10);
/// Attempts between two clock reads, so the fast path never reads the clock.
const ATTEMPTS_PER_CLOCK_CHECK: u32 = 64;

/// Runs `copy` until it ran inside a window where `seq` was even and unchanged, returning that
/// `seq` value. `copy` must size its copies only from clamped values (section 8) and must not act
/// on what it read: the copy is garbage until this returns it. None after `budget`.
pub fn read_consistent(seq: &AtomicU64, budget: Duration, mut copy: impl FnMut()) -> Option<u64> {
    let mut started: Option<Instant> = None;
    let mut attempts: u32 = 0;
    loop {
        // Acquire: the data loads in `copy` cannot move above this load.
        let s1 = seq.load(Ordering::Acquire);
        if s1 & 1 == 0 {
            copy();
            // The data loads above cannot move below the second load of seq.
            fence(Ordering::Acquire);
            let s2 = seq.load(Ordering::Relaxed);
            if s1 == s2 {
                return Some(s1);
            }
        } else {
            spin_loop();
        }
        attempts += 1;
        if attempts.is_multiple_of(ATTEMPTS_PER_CLOCK_CHECK) {
            let t0 = *started.get_or_insert_with(Instant::now);
            if t0.elapsed() >= budget {
                return None;
            }
            // Two cores are often shared by many processes: let a preempted writer finish.
            std::thread::yield_now();
        }
    }
}
