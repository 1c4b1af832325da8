//! A shared mapping read only through atomic loads: the writer changes it concurrently, so every
//! access is an aligned relaxed (or acquire) atomic load, never a plain read the compiler may
//! split, merge or repeat.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::sys;

pub struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics; the pointer is owned by this value.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn map(file: &File, len: usize, writable: bool) -> io::Result<Self> {
        let base = sys::map_shared(file.as_raw_fd(), len, writable)?;
        Ok(Mapping { base, len })
    }

    fn check(&self, off: usize, size: usize, align: usize) {
        // Offsets come from a validated geometry; failing here is a bug in this crate.
        assert!(
            off.is_multiple_of(align) && off.checked_add(size).is_some_and(|end| end <= self.len),
            "mapping access {off}+{size} (align {align}) outside {} bytes",
            self.len
        );
    }

    pub fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast()) }
    }

    pub fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: as above.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast()) }
    }

    pub fn u64(&self, off: usize) -> u64 {
        self.atomic_u64(off).load(Ordering::Relaxed)
    }

    pub fn u32(&self, off: usize) -> u32 {
        self.atomic_u32(off).load(Ordering::Relaxed)
    }

    pub fn u16(&self, off: usize) -> u16 {
        self.check(off, 2, 2);
        // SAFETY: as above.
        unsafe { AtomicU16::from_ptr(self.base.add(off).cast()) }.load(Ordering::Relaxed)
    }

    /// Copies `out.len()` u64 words starting at `off`, one relaxed load per word.
    pub fn copy_words(&self, off: usize, out: &mut [u64]) {
        self.check(off, out.len() * 8, 8);
        for (i, word) in out.iter_mut().enumerate() {
            // SAFETY: the whole range was checked above.
            let a = unsafe { AtomicU64::from_ptr(self.base.add(off + 8 * i).cast()) };
            *word = a.load(Ordering::Relaxed);
        }
    }

    /// `n` u64 words starting at `off`, one relaxed load each, after one bounds check.
    pub fn words(&self, off: usize, n: usize) -> impl Iterator<Item = u64> + '_ {
        self.check(off, n * 8, 8);
        (0..n).map(move |i| {
            // SAFETY: the whole range was checked above.
            unsafe { AtomicU64::from_ptr(self.base.add(off + 8 * i).cast()) }
                .load(Ordering::Relaxed)
        })
    }

    /// Copies `out.len()` bytes starting at `off`, one relaxed load per byte (text fields need
    /// no alignment).
    pub fn copy_bytes(&self, off: usize, out: &mut [u8]) {
        self.check(off, out.len(), 1);
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: the whole range was checked above.
            let a = unsafe { AtomicU8::from_ptr(self.base.add(off + i)) };
            *byte = a.load(Ordering::Relaxed);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` came from map_shared and every borrow of them ended with `self`.
        unsafe { sys::unmap(self.base, self.len) }
    }
}

/// Text up to the first NUL (section "Conventions": NUL-padded UTF-8).
pub fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
