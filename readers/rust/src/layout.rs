//! Offsets and constants of docs/LAYOUT.md 2.0 (the only source this crate was written from).

/// u64 whose little-endian bytes are ASCII "LDCDEPTH" (section 3).
pub const MAGIC: u64 = 0x4854_5045_4443_444C;
pub const ENDIAN_MARKER: u64 = 0x0102_0304_0506_0708;
pub const VERSION_MAJOR: u16 = 2;
pub const VERSION_MINOR: u16 = 0;
/// Header size in 2.0 and the smallest file that can be a segment (section 7, step 2).
pub const MIN_HEADER_SIZE: u64 = 384;
pub const MIN_DIRECTORY_ENTRY_SIZE: u32 = 64;
pub const SLOT_HEADER_SIZE: u32 = 128;
pub const SLOT_ALIGN: u32 = 128;
pub const LEVEL_SIZE: u32 = 16;
pub const GROUP_MAX_LEN: usize = 63;

/// Header fields (byte offsets from the start of the mapping).
pub mod hdr {
    pub const MAGIC: usize = 0;
    pub const VERSION_MAJOR: usize = 8;
    pub const VERSION_MINOR: usize = 10;
    pub const HEADER_SIZE: usize = 12;
    pub const ENDIAN_MARKER: usize = 16;
    pub const SEGMENT_SIZE: usize = 24;
    pub const DIRECTORY_OFFSET: usize = 32;
    pub const DIRECTORY_ENTRY_SIZE: usize = 36;
    pub const SLOTS_OFFSET: usize = 40;
    pub const SLOT_SIZE: usize = 44;
    pub const CAPACITY: usize = 48;
    pub const DEPTH: usize = 52;
    pub const BIDS_OFFSET: usize = 56;
    pub const ASKS_OFFSET: usize = 60;
    pub const MESSAGE_OFFSET: usize = 64;
    pub const MESSAGE_SIZE: usize = 68;
    pub const HEARTBEAT_INTERVAL_MS: usize = 72;
    pub const STALE_AFTER_MS: usize = 76;
    pub const EXCHANGE: usize = 80;
    pub const EXCHANGE_LEN: usize = 32;
    pub const WRITER_PID: usize = 128;
    pub const STATE: usize = 132;
    pub const START_TIME_NS: usize = 136;
    pub const INSTANCE_ID: usize = 144;
    pub const HEARTBEAT_NS: usize = 152;
    pub const DIR_SEQ: usize = 160;
    pub const TAKEOVERS: usize = 168;
    pub const MARKET_COUNT: usize = 172;
    pub const GROUP: usize = 176;
    pub const GROUP_LEN: usize = 64;
    pub const NOTIFY: usize = 256;
    /// The writer's robust futex word: bits 0-29 hold its thread's TID while it lives (section 10).
    pub const WRITER_LOCK: usize = 320;
    pub const FUTEX_TID_MASK: u32 = 0x3FFF_FFFF;
}

/// Directory entry fields (offsets within an entry).
pub mod dir {
    pub const SYMBOL: usize = 0;
    pub const SYMBOL_LEN: usize = 40;
    pub const GEN: usize = 40;
}

/// Slot header fields (offsets within a slot) and their u64-word indexes in a 128-byte copy.
pub mod slot {
    pub const SEQ: usize = 0;
    pub const GEN: usize = 8;
    pub const UPDATE_ID: usize = 16;
    pub const EVENT_TIME_MS: usize = 24;
    pub const RECV_TIME_NS: usize = 32;
    pub const PUBLISH_TIME_NS: usize = 40;
    pub const STATUS: usize = 48;
    pub const N_BIDS: usize = 52;
    pub const N_ASKS: usize = 56;
    pub const UPDATES: usize = 64;
    pub const RESYNCS: usize = 72;
    pub const GAPS: usize = 80;
    pub const IGNORED: usize = 88;
    pub const SNAPSHOTS: usize = 96;
    pub const AUDIT_MISMATCHES: usize = 104;
    pub const STATUS_TIME_NS: usize = 112;
}

/// Writer state (header `state`, section 3).
pub mod state {
    pub const RUNNING: u32 = 2;
    pub const STOPPED: u32 = 3;
    /// A newer writer replaced the file (section 12): follow the name.
    pub const RETIRED: u32 = 4;
}

/// Status bits (section 6).
pub mod status {
    pub const SYNCED: u32 = 0x01;
    pub const STALE: u32 = 0x02;
    pub const RESYNCING: u32 = 0x04;
    pub const CROSSED: u32 = 0x08;
    pub const ERROR: u32 = 0x10;
    pub const INCOMPLETE: u32 = 0x20;
    pub const REFRESHING: u32 = 0x40;
    /// Bits that decide "in sync": SYNCED and none of the five faults (REFRESHING excluded).
    pub const SYNC_MASK: u32 = 0x3F;
    pub const NAMES: [(u32, &str); 7] = [
        (SYNCED, "SYNCED"),
        (STALE, "STALE"),
        (RESYNCING, "RESYNCING"),
        (CROSSED, "CROSSED"),
        (ERROR, "ERROR"),
        (INCOMPLETE, "INCOMPLETE"),
        (REFRESHING, "REFRESHING"),
    ];
}

/// `(status & SYNC_MASK) == SYNCED` (section 6).
pub fn in_sync(status: u32) -> bool {
    status & status::SYNC_MASK == status::SYNCED
}

/// Flag names of `status`, e.g. "SYNCED|REFRESHING"; unknown bits as hex, 0 as "none".
pub fn status_names(status: u32) -> String {
    let mut parts: Vec<String> = status::NAMES
        .iter()
        .filter(|(bit, _)| status & bit != 0)
        .map(|(_, name)| (*name).to_string())
        .collect();
    let unknown = status & !0x7F;
    if unknown != 0 {
        parts.push(format!("{unknown:#x}"));
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join("|")
    }
}

/// Group names match `[A-Za-z0-9_-]{1,63}` (section 1).
pub fn valid_group(group: &str) -> bool {
    !group.is_empty()
        && group.len() <= GROUP_MAX_LEN
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn segment_path(group: &str) -> String {
    format!("/dev/shm/ldc-{group}")
}
