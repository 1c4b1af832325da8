//! Waiting on the notify word (LAYOUT.md section 11).

use std::fs::{File, OpenOptions};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{self, hdr, slot};
use crate::mapping::Mapping;
use crate::reader::{Market, Reader};
use crate::sys;

/// Without the waiter counter the writer may never wake us: sleep in slices this long.
pub const POLL_SLICE: Duration = Duration::from_millis(2);

/// The read-write mapping of `/dev/shm/ldc-<group>.waiters`.
pub struct Waiters {
    _file: File,
    map: Mapping,
}

impl Waiters {
    fn open(group: &str) -> Option<Waiters> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(layout::waiters_path(group))
            .ok()?;
        if file.metadata().ok()?.len() < layout::WAITERS_FILE_SIZE {
            return None;
        }
        let map = Mapping::map(&file, layout::WAITERS_FILE_SIZE as usize, true).ok()?;
        Some(Waiters { _file: file, map })
    }

    fn counter(&self) -> &AtomicU32 {
        self.map.atomic_u32(0)
    }
}

impl Reader {
    /// The notify word (acquire). Read it BEFORE checking your condition, then wait on it.
    pub fn notify_value(&self) -> u32 {
        self.segment()
            .map
            .atomic_u32(hdr::NOTIFY)
            .load(Ordering::Acquire)
    }

    /// The slot's current `seq` (acquire), to compare with [`crate::Snapshot::seq`].
    pub fn slot_seq(&self, market: &Market) -> u64 {
        let off = self.geometry().slot_offset(market.slot) + slot::SEQ;
        self.segment().map.atomic_u64(off).load(Ordering::Acquire)
    }

    /// Sleeps until `notify` differs from `seen` or `timeout` passes; true when it changed.
    pub fn wait_notify(&mut self, seen: u32, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        if self.waiters.is_none() {
            self.waiters = Some(Waiters::open(self.group()));
        }
        loop {
            if self.notify_value() != seen {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.sleep_on(seen, left)?;
        }
    }

    /// Sleeps until the writer publishes: any batch (`symbol` None) or a change of `symbol`'s
    /// slot since `since_seq` (the `seq` of the caller's last snapshot). False on timeout.
    pub fn wait_for_update(
        &mut self,
        symbol: Option<(&Market, u64)>,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut seen = self.notify_value();
        loop {
            if let Some((market, since_seq)) = symbol {
                if self.slot_seq(market) != since_seq {
                    return Ok(true);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.wait_notify(seen, left)? {
                return Ok(false);
            }
            if symbol.is_none() {
                return Ok(true);
            }
            seen = self.notify_value();
        }
    }

    fn sleep_on(&self, seen: u32, left: Duration) -> Result<()> {
        let word = self.segment().map.atomic_u32(hdr::NOTIFY);
        let io = |e| Error::Io {
            what: "futex wait on",
            path: self.path().to_string(),
            source: e,
        };
        match self.waiters.as_ref().and_then(Option::as_ref) {
            Some(w) => {
                // SeqCst on both sides: either the writer sees us or FUTEX_WAIT sees its bump.
                w.counter().fetch_add(1, Ordering::SeqCst);
                let r = sys::futex_wait(word, seen, left);
                w.counter().fetch_sub(1, Ordering::SeqCst);
                r.map_err(io)
            }
            None => sys::futex_wait(word, seen, left.min(POLL_SLICE)).map_err(io),
        }
    }
}
