//! `Reader`: directory lookups (section 9), validated slot reads (section 8), liveness (section
//! 10) and following a replaced segment.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Liveness, Result};
use crate::layout::{self, dir, hdr, slot, state, status};
use crate::mapping::c_text;
use crate::segment::{self, Geometry, Segment};
use crate::seqlock::{read_consistent, RETRY_BUDGET};
use crate::sys;

/// ldc's readers re-probe the lock at most this often on the read path (section 10); a successor
/// stores RETIRED before its file gets the name, so a reused verdict never outlives a takeover.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(50);
const ATTACH_POLL: Duration = Duration::from_millis(5);
/// A gen mismatch re-resolves the symbol; a market replaced this often in a row is not there.
const MAX_RESOLVE_ATTEMPTS: u32 = 3;
const SLOT_HEADER_WORDS: usize = layout::SLOT_HEADER_SIZE as usize / 8;

/// An active directory entry: `symbol` lives in `slot` with generation `gen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Market {
    pub symbol: String,
    pub slot: u32,
    pub gen: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub price: f64,
    pub quantity: f64,
}

/// Slot counters (section 6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub updates: u64,
    pub resyncs: u64,
    pub gaps: u64,
    pub ignored: u64,
    pub snapshots: u64,
    pub audit_mismatches: u64,
}

/// A validated copy of one slot. Reuse one per hot loop with [`Reader::read_into`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub symbol: String,
    pub slot: u32,
    pub gen: u64,
    /// The even `seq` the copy was validated against (changes on every write of the slot).
    pub seq: u64,
    pub update_id: i64,
    pub event_time_ms: i64,
    pub recv_time_ns: i64,
    pub publish_time_ns: i64,
    pub status_time_ns: i64,
    /// Status flags; STALE is added when the writer is dead or stopped (allow_out_of_sync only)
    /// and when its heartbeat is older than its published `stale_after_ms`.
    pub status: u32,
    pub counters: Counters,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    pub message: String,
}

impl Snapshot {
    pub fn in_sync(&self) -> bool {
        layout::in_sync(self.status)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Return out-of-sync markets and a dead writer's last book (with STALE) instead of failing.
    pub allow_out_of_sync: bool,
}

/// The liveness block of the header, for display (section 3); not read atomically as a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterInfo {
    pub writer_pid: u32,
    pub state: u32,
    pub start_time_ns: i64,
    pub instance_id: u64,
    pub heartbeat_ns: i64,
    pub stale_after_ms: u32,
    pub takeovers: u32,
    pub market_count: u32,
    pub group: String,
}

pub struct Reader {
    group: String,
    seg: Segment,
    cache: HashMap<String, Market>,
    alive_until: Option<Instant>,
    hdr_buf: [u64; SLOT_HEADER_WORDS],
    dir_buf: Vec<u64>,
    msg_buf: Vec<u8>,
}

impl Reader {
    /// Attaches to `/dev/shm/ldc-<group>` read-only and validates it (section 7).
    pub fn attach(group: &str) -> Result<Reader> {
        let seg = segment::attach(group)?;
        Ok(Reader::from_segment(group, seg))
    }

    /// Like [`Reader::attach`], retrying a missing, too small or not-ready segment until `timeout`.
    pub fn attach_timeout(group: &str, timeout: Duration) -> Result<Reader> {
        let deadline = Instant::now() + timeout;
        loop {
            match Reader::attach(group) {
                Err(Error::NoSegment { .. } | Error::TooSmall { .. } | Error::NotReady { .. })
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(ATTACH_POLL)
                }
                other => return other,
            }
        }
    }

    fn from_segment(group: &str, seg: Segment) -> Reader {
        let words = seg.geo.capacity as usize * seg.geo.directory_entry_size as usize / 8;
        let msg = seg.geo.message_size as usize;
        Reader {
            group: group.to_string(),
            seg,
            cache: HashMap::new(),
            alive_until: None,
            hdr_buf: [0; SLOT_HEADER_WORDS],
            dir_buf: vec![0; words],
            msg_buf: vec![0; msg],
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn path(&self) -> &str {
        &self.seg.path
    }

    pub fn geometry(&self) -> &Geometry {
        &self.seg.geo
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub fn writer_info(&self) -> WriterInfo {
        let m = &self.seg.map;
        let mut group = [0u8; hdr::GROUP_LEN];
        m.copy_bytes(hdr::GROUP, &mut group);
        WriterInfo {
            writer_pid: m.u32(hdr::WRITER_PID),
            state: m.atomic_u32(hdr::STATE).load(Ordering::Acquire),
            start_time_ns: m.u64(hdr::START_TIME_NS) as i64,
            instance_id: m.u64(hdr::INSTANCE_ID),
            heartbeat_ns: m.atomic_u64(hdr::HEARTBEAT_NS).load(Ordering::Acquire) as i64,
            stale_after_ms: m.u32(hdr::STALE_AFTER_MS),
            takeovers: m.u32(hdr::TAKEOVERS),
            market_count: m.u32(hdr::MARKET_COUNT),
            group: c_text(&group),
        }
    }

    /// Active markets in slot order, from one consistent copy of the directory (section 9).
    pub fn markets(&mut self) -> Result<Vec<Market>> {
        self.copy_directory()?;
        let g = &self.seg.geo;
        let entry_words = g.directory_entry_size as usize / 8;
        let mut out = Vec::new();
        for i in 0..g.capacity {
            let e = &self.dir_buf[i as usize * entry_words..][..entry_words];
            let gen = e[dir::GEN / 8];
            if gen != 0 {
                let bytes: Vec<u8> = e[..dir::SYMBOL_LEN / 8]
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .collect();
                out.push(Market {
                    symbol: c_text(&bytes),
                    slot: i,
                    gen,
                });
            }
        }
        Ok(out)
    }

    /// Resolves `symbol` through the directory (never the cache) and caches the result.
    pub fn find(&mut self, symbol: &str) -> Result<Market> {
        self.cache.remove(symbol);
        // A symbol field holds at most 39 bytes and no NUL: anything else never matches.
        let found = if symbol.len() < dir::SYMBOL_LEN && !symbol.contains('\0') {
            self.markets()?.into_iter().find(|m| m.symbol == symbol)
        } else {
            None
        };
        let market = found.ok_or_else(|| Error::MarketNotFound {
            group: self.group.clone(),
            symbol: symbol.to_string(),
        })?;
        self.cache.insert(symbol.to_string(), market.clone());
        Ok(market)
    }

    fn copy_directory(&mut self) -> Result<()> {
        let seq = self.seg.map.atomic_u64(hdr::DIR_SEQ);
        let (map, off, buf) = (
            &self.seg.map,
            self.seg.geo.directory_offset as usize,
            &mut self.dir_buf,
        );
        if read_consistent(seq, RETRY_BUDGET, || map.copy_words(off, buf)).is_some() {
            return Ok(());
        }
        self.contention_error("the directory".to_string())
    }

    /// A validated copy of `symbol` with the checks of section 14: gen, in sync, writer alive.
    pub fn snapshot(&mut self, symbol: &str, opts: ReadOptions) -> Result<Snapshot> {
        let mut out = Snapshot::default();
        self.read_into(symbol, &mut out, opts)?;
        Ok(out)
    }

    /// [`Reader::snapshot`] into a reused buffer (no allocation once the buffers have grown).
    ///
    /// Checks after the copy, in this order: gen (re-resolving a removed or replaced market),
    /// writer liveness (following a replaced segment), then staleness and status. A read that
    /// gives up (contention, a dead writer, a missing market) checks for a replaced file too.
    pub fn read_into(&mut self, symbol: &str, out: &mut Snapshot, opts: ReadOptions) -> Result<()> {
        for _ in 0..MAX_RESOLVE_ATTEMPTS {
            match self.read_current(symbol, out) {
                Ok(()) => {}
                Err(
                    e @ (Error::Contention { .. }
                    | Error::WriterDead { .. }
                    | Error::MarketNotFound { .. }),
                ) => {
                    if self.follow_if_replaced()? {
                        continue;
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            match self.liveness_cached()? {
                Liveness::Alive => {
                    if self.writer_stale() {
                        out.status |= status::STALE; // the reader's own judgement (section 10)
                    }
                    return self.check_in_sync(symbol, out, opts);
                }
                _ if self.follow_if_replaced()? => continue,
                _ if opts.allow_out_of_sync => {
                    out.status |= status::STALE;
                    return Ok(());
                }
                liveness => {
                    return Err(Error::WriterDead {
                        path: self.seg.path.clone(),
                        liveness,
                    })
                }
            }
        }
        Err(Error::Contention {
            what: format!("market {symbol} (segment kept being replaced)"),
            waited_ms: 0,
        })
    }

    /// True when `heartbeat_ns` is older than the header's `stale_after_ms`: the writer's process
    /// holds its lock but publishes nothing (stopped, hung).
    pub fn writer_stale(&self) -> bool {
        let m = &self.seg.map;
        let limit_ms = m.u32(hdr::STALE_AFTER_MS);
        let beat = m.atomic_u64(hdr::HEARTBEAT_NS).load(Ordering::Relaxed) as i64;
        limit_ms != 0 && sys::realtime_coarse_ns() - beat > i64::from(limit_ms) * 1_000_000
    }

    fn check_in_sync(&self, symbol: &str, out: &Snapshot, opts: ReadOptions) -> Result<()> {
        if out.in_sync() || opts.allow_out_of_sync {
            return Ok(());
        }
        Err(Error::OutOfSync {
            symbol: symbol.to_string(),
            status: out.status,
            message: out.message.clone(),
        })
    }

    /// A consistent copy of `symbol`'s slot whose gen is the directory's (re-resolving on a mismatch).
    fn read_current(&mut self, symbol: &str, out: &mut Snapshot) -> Result<()> {
        let mut market = match self.cache.get(symbol) {
            Some(m) => m.clone(),
            None => self.find(symbol)?,
        };
        for _ in 0..MAX_RESOLVE_ATTEMPTS {
            if self.read_slot(&market, out)? {
                return Ok(());
            }
            // The slot's gen differs: the market was removed or its slot reused (section 8).
            market = self.find(symbol)?;
        }
        Err(Error::MarketNotFound {
            group: self.group.clone(),
            symbol: symbol.to_string(),
        })
    }

    /// One seqlock-validated copy of `market`'s slot into `out`; false when the slot's gen is not
    /// the market's (removed or replaced).
    pub fn read_slot(&mut self, market: &Market, out: &mut Snapshot) -> Result<bool> {
        let g = &self.seg.geo;
        let base = g.slot_offset(market.slot);
        let (depth, bids_off, asks_off) = (
            g.depth,
            base + g.bids_offset as usize,
            base + g.asks_offset as usize,
        );
        let msg_off = base + g.message_offset as usize;
        let map = &self.seg.map;
        let (hdr_buf, msg_buf) = (&mut self.hdr_buf, &mut self.msg_buf);
        let (bids, asks) = (&mut out.bids, &mut out.asks);
        let copy = || {
            map.copy_words(base, hdr_buf);
            // Clamp BEFORE sizing any copy: these values are garbage until the window validates.
            let nb = word_u32(hdr_buf, slot::N_BIDS).min(depth);
            let na = word_u32(hdr_buf, slot::N_ASKS).min(depth);
            copy_levels(map, bids_off, nb, bids);
            copy_levels(map, asks_off, na, asks);
            copy_message(map, msg_off, msg_buf);
        };
        let Some(seq) = read_consistent(map.atomic_u64(base + slot::SEQ), RETRY_BUDGET, copy)
        else {
            return self
                .contention_error(format!("market {} (slot {})", market.symbol, market.slot));
        };
        let h = &self.hdr_buf;
        if h[slot::GEN / 8] != market.gen {
            return Ok(false);
        }
        out.symbol.clone_from(&market.symbol);
        out.slot = market.slot;
        out.gen = market.gen;
        out.seq = seq;
        out.update_id = h[slot::UPDATE_ID / 8] as i64;
        out.event_time_ms = h[slot::EVENT_TIME_MS / 8] as i64;
        out.recv_time_ns = h[slot::RECV_TIME_NS / 8] as i64;
        out.publish_time_ns = h[slot::PUBLISH_TIME_NS / 8] as i64;
        out.status_time_ns = h[slot::STATUS_TIME_NS / 8] as i64;
        out.status = word_u32(h, slot::STATUS);
        out.counters = Counters {
            updates: h[slot::UPDATES / 8],
            resyncs: h[slot::RESYNCS / 8],
            gaps: h[slot::GAPS / 8],
            ignored: h[slot::IGNORED / 8],
            snapshots: h[slot::SNAPSHOTS / 8],
            audit_mismatches: h[slot::AUDIT_MISMATCHES / 8],
        };
        let text = &self.msg_buf[..self
            .msg_buf
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.msg_buf.len())];
        if out.message.as_bytes() != text {
            // Rebuilt only when it changed: the message is usually empty and the same every read.
            out.message = c_text(text);
        }
        Ok(true)
    }

    /// After the retry budget: a dead writer explains a counter left odd; otherwise contention.
    fn contention_error<T>(&mut self, what: String) -> Result<T> {
        self.alive_until = None;
        match self.liveness()? {
            Liveness::Alive => Err(Error::Contention {
                what,
                waited_ms: RETRY_BUDGET.as_millis() as u64,
            }),
            liveness => Err(Error::WriterDead {
                path: self.seg.path.clone(),
                liveness,
            }),
        }
    }

    /// The probe of section 10: `state`, then `fcntl(F_OFD_GETLK)` (asks, takes no lock), then
    /// `state` again, so a verdict ALIVE says the data copied before it is the live writer's.
    pub fn probe(&self) -> Result<Liveness> {
        let state_word = self.seg.map.atomic_u32(hdr::STATE);
        let before = state_word.load(Ordering::Acquire);
        match before {
            state::STOPPED => return Ok(Liveness::Stopped),
            state::RETIRED => return Ok(Liveness::Retired),
            _ => {}
        }
        let held = sys::write_locked(self.seg.file.as_raw_fd()).map_err(|e| Error::Io {
            what: "fcntl(F_OFD_GETLK)",
            path: self.seg.path.clone(),
            source: e,
        })? && self.owner_alive();
        Ok(match (state_word.load(Ordering::Acquire), held) {
            (state::RUNNING, true) => Liveness::Alive,
            (state::STOPPED, _) => Liveness::Stopped,
            (state::RETIRED, _) => Liveness::Retired,
            (st, _) => Liveness::Dead { state: st },
        })
    }

    /// The writer's robust word still holds its thread's TID: the kernel clears it when the writer
    /// dies, before any of its file locks go. One load, on every read.
    fn owner_alive(&self) -> bool {
        let word = self.seg.map.atomic_u32(hdr::WRITER_LOCK).load(Ordering::Acquire);
        word & hdr::FUTEX_TID_MASK != 0
    }

    /// The probe, remembering an ALIVE verdict for the read path.
    pub fn liveness(&mut self) -> Result<Liveness> {
        let l = self.probe()?;
        if l == Liveness::Alive {
            self.alive_until = Some(Instant::now() + PROBE_INTERVAL);
        }
        Ok(l)
    }

    /// True when the file's writer holds its lock and runs.
    pub fn writer_alive(&mut self) -> Result<bool> {
        Ok(self.liveness()? == Liveness::Alive)
    }

    /// The read path's probe: the lock at most every PROBE_INTERVAL while RUNNING.
    fn liveness_cached(&mut self) -> Result<Liveness> {
        let running = self.seg.map.atomic_u32(hdr::STATE).load(Ordering::Acquire) == state::RUNNING;
        if running && self.owner_alive() && self.alive_until.is_some_and(|t| Instant::now() < t) {
            return Ok(Liveness::Alive);
        }
        self.liveness()
    }

    /// When the name now leads to another file (every new writer replaces it, section 12) that
    /// validates, attaches to it and drops every cached market; true when it did. A file that
    /// does not validate leaves us on the old one.
    pub fn follow_if_replaced(&mut self) -> Result<bool> {
        let Ok(meta) = std::fs::metadata(&self.seg.path) else {
            return Ok(false); // no newer file: keep reading this one
        };
        if (meta.dev(), meta.ino()) == self.seg.identity {
            return Ok(false);
        }
        let group = self.group.clone();
        match segment::attach(&group) {
            Ok(seg) => {
                *self = Reader::from_segment(&group, seg);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }
}

fn word_u32(words: &[u64], off: usize) -> u32 {
    let w = words[off / 8];
    if off.is_multiple_of(8) {
        w as u32
    } else {
        (w >> 32) as u32
    }
}

/// Word-wise when the message field is 8-aligned (always in 1.0), else byte-wise.
fn copy_message(map: &crate::mapping::Mapping, off: usize, out: &mut [u8]) {
    if !(off.is_multiple_of(8) && out.len().is_multiple_of(8)) {
        return map.copy_bytes(off, out);
    }
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&map.u64(off + 8 * i).to_le_bytes());
    }
}

fn copy_levels(map: &crate::mapping::Mapping, off: usize, n: u32, out: &mut Vec<Level>) {
    out.clear();
    let mut words = map.words(off, 2 * n as usize);
    while let (Some(price), Some(quantity)) = (words.next(), words.next()) {
        out.push(Level {
            price: f64::from_bits(price),
            quantity: f64::from_bits(quantity),
        });
    }
}
