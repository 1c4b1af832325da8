//! Waiting on the notify word (LAYOUT.md section 11).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{hdr, slot};
use crate::reader::{Market, Reader};
use crate::sys;

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
        // Nothing to register: the writer wakes every sleeper after each batch (section 11).
        sys::futex_wait(word, seen, left).map_err(io)
    }
}
