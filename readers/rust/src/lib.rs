//! Read-only reader of ldc shared-memory order books, written from `docs/LAYOUT.md` (layout 2.0).
//!
//! ```no_run
//! use ldc_reader::{Reader, ReadOptions};
//! let mut r = Reader::attach("spot")?;
//! let snap = r.snapshot("BTCUSDT", ReadOptions::default())?;
//! println!("{} bids, best {:?}", snap.bids.len(), snap.bids.first());
//! # Ok::<(), ldc_reader::Error>(())
//! ```

#[cfg(not(all(target_os = "linux", target_endian = "little")))]
compile_error!("ldc-reader supports little-endian Linux only (the segment is little-endian)");

mod error;
pub mod layout;
mod mapping;
mod reader;
mod segment;
mod seqlock;
mod sys;
mod wait;

pub use error::{Error, Liveness, Result};
pub use reader::{Counters, Level, Market, ReadOptions, Reader, Snapshot, WriterInfo};
pub use segment::Geometry;
pub use seqlock::RETRY_BUDGET;
pub use sys::monotonic_ns;
