//! The one error type of the crate: every message names the segment and what was expected/found.

use std::fmt;
use std::io;

use crate::layout::status_names;

/// What the liveness probe (LAYOUT.md section 10) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// `state` is RUNNING and the file's writer holds its write lock.
    Alive,
    /// `state` is STOPPED: the writer closed cleanly.
    Stopped,
    /// `state` is RETIRED: a newer writer replaced the file.
    Retired,
    /// Nobody holds the lock (the writer died), or `state` is something else.
    Dead { state: u32 },
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Liveness::Alive => write!(f, "alive"),
            Liveness::Retired => write!(f, "retired (replaced by a newer writer's file)"),
            Liveness::Stopped => write!(f, "stopped"),
            Liveness::Dead { state } => write!(f, "dead (state {state}, no lock held)"),
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// The file is not a regular file, or others than its owner may write it (section 7 step 2).
    Mode {
        path: String,
        mode: u32,
        uid: u32,
    },
    /// The header's `group` is not the group opened (section 7 step 8).
    OtherGroup {
        path: String,
        found: String,
    },
    /// The segment belongs to an account this reader does not trust to feed groups (section 7 step 2).
    Owner {
        path: String,
        uid: u32,
    },
    /// The group name does not match `[A-Za-z0-9_-]{1,63}`.
    InvalidGroup {
        group: String,
    },
    /// `/dev/shm/ldc-G` does not exist: the feeder is not running.
    NoSegment {
        path: String,
    },
    /// A system call failed for another reason.
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    /// The file is smaller than a header: not (yet) a segment.
    TooSmall {
        path: String,
        size: u64,
        min: u64,
    },
    /// `magic` is 0: the writer is still creating the segment (or died doing so).
    NotReady {
        path: String,
    },
    BadMagic {
        path: String,
        found: u64,
    },
    Version {
        path: String,
        major: u16,
        minor: u16,
    },
    Endian {
        path: String,
        found: u64,
    },
    /// A geometry rule of section 7 failed; `rule` is the rule as written there.
    Geometry {
        path: String,
        rule: &'static str,
        detail: String,
    },
    /// `segment_size` exceeds the file size.
    Truncated {
        path: String,
        segment_size: u64,
        file_size: u64,
    },
    MarketNotFound {
        group: String,
        symbol: String,
    },
    OutOfSync {
        symbol: String,
        status: u32,
        message: String,
    },
    WriterDead {
        path: String,
        liveness: Liveness,
    },
    /// No consistent copy within the retry budget while the writer is alive.
    Contention {
        what: String,
        waited_ms: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            InvalidGroup { group } => {
                write!(f, "invalid group name {group:?}: expected [A-Za-z0-9_-]{{1,63}}")
            }
            NoSegment { path } => write!(f, "no segment {path} (the feeder is not running)"),
            Mode { path, mode, uid } => write!(
                f,
                "segment {path} has mode {mode:04o} (owner uid {uid}): a segment must be a regular \
                 file writable by its owner alone"
            ),
            OtherGroup { path, found } => write!(
                f,
                "segment {path} holds group \"{found}\": a segment of another group at this name"
            ),
            Owner { path, uid } => write!(
                f,
                "segment {path} belongs to uid {uid}, not to a feeders' account this reader trusts \
                 (set LDC_FEEDER_USER to the feeders' user)"
            ),
            Io { what, path, source } => write!(f, "{what} {path}: {source}"),
            TooSmall { path, size, min } => {
                write!(f, "segment {path} has {size} bytes, expected at least {min}")
            }
            NotReady { path } => {
                write!(f, "segment {path} is not ready: magic is 0 (writer creating it or died doing so)")
            }
            BadMagic { path, found } => write!(
                f,
                "segment {path} is not an ldc segment: magic {found:#018x}, expected {:#018x}",
                crate::layout::MAGIC
            ),
            Version { path, major, minor } => write!(
                f,
                "segment {path} has layout version {major}.{minor}, this reader understands {}.{}",
                crate::layout::VERSION_MAJOR,
                crate::layout::VERSION_MINOR
            ),
            Endian { path, found } => write!(
                f,
                "segment {path} has endian marker {found:#018x}, expected {:#018x}",
                crate::layout::ENDIAN_MARKER
            ),
            Geometry { path, rule, detail } => {
                write!(f, "segment {path} has bad geometry: {rule} fails ({detail})")
            }
            Truncated { path, segment_size, file_size } => write!(
                f,
                "segment {path} is truncated: segment_size {segment_size} bytes, file has {file_size}"
            ),
            MarketNotFound { group, symbol } => {
                write!(f, "market {symbol:?} not found in group {group}")
            }
            OutOfSync { symbol, status, message } => {
                write!(f, "market {symbol} out of sync: status {status:#x} ({})", status_names(*status))?;
                if message.is_empty() {
                    Ok(())
                } else {
                    write!(f, ": {message}")
                }
            }
            WriterDead { path, liveness } => write!(f, "writer of segment {path} is {liveness}"),
            Contention { what, waited_ms } => {
                write!(f, "no consistent copy of {what} within {waited_ms} ms (writer alive)")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
