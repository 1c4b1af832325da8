//! The few libc calls std does not wrap (Linux x86-64 and aarch64, glibc or musl).
//! open/fstat/close go through `std::fs::File`: `struct stat` differs between the two
//! architectures and std already gets it right.

use std::ffi::{c_int, c_long, c_void};
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

pub const PROT_READ: c_int = 1;
pub const PROT_WRITE: c_int = 2;
pub const MAP_SHARED: c_int = 1;
const F_OFD_GETLK: c_int = 36;
const F_RDLCK: i16 = 0;
const F_UNLCK: i16 = 2;
const SEEK_SET: i16 = 0;
#[cfg(target_arch = "x86_64")]
pub const O_NOFOLLOW: i32 = 0o400000;
#[cfg(target_arch = "aarch64")]
pub const O_NOFOLLOW: i32 = 0o100000;
const FUTEX_WAIT: c_int = 0; // shared futex: no FUTEX_PRIVATE_FLAG (LAYOUT.md section 11)
const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

#[cfg(target_arch = "x86_64")]
const SYS_FUTEX: c_long = 202;
#[cfg(target_arch = "aarch64")]
const SYS_FUTEX: c_long = 98;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("ldc-reader supports Linux x86-64 and aarch64 only");

/// `struct flock` of Linux x86-64 and aarch64 (the compiler adds the padding C has).
#[repr(C)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: i64,
    ) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn syscall(num: c_long, ...) -> c_long;
    fn clock_gettime(clock: c_int, ts: *mut Timespec) -> c_int;
}

fn clock_ns(clock: c_int) -> i64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the kernel fills; the clocks used here always exist.
    unsafe { clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC in ns: the same clock other processes on the host read (std's Instant hides it).
pub fn monotonic_ns() -> i64 {
    clock_ns(1)
}

/// CLOCK_REALTIME_COARSE in ns: a few ms of resolution, no counter read; enough against a
/// staleness limit of seconds on the read path.
pub fn realtime_coarse_ns() -> i64 {
    clock_ns(5)
}

/// Maps `len` bytes of `fd` shared; `writable` adds PROT_WRITE.
pub fn map_shared(fd: c_int, len: usize, writable: bool) -> io::Result<*mut u8> {
    let prot = if writable {
        PROT_READ | PROT_WRITE
    } else {
        PROT_READ
    };
    // SAFETY: a fresh mapping chosen by the kernel; the caller owns and unmaps it.
    let p = unsafe { mmap(std::ptr::null_mut(), len, prot, MAP_SHARED, fd, 0) };
    if p == MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// # Safety
/// `base`/`len` must be exactly a mapping returned by [`map_shared`] that nothing uses any more.
pub unsafe fn unmap(base: *mut u8, len: usize) {
    munmap(base.cast(), len);
}

/// True when some open file description holds a write lock on the file: `fcntl(F_OFD_GETLK)`
/// for a read lock over the whole file. It only asks; it takes no lock (LAYOUT.md section 10).
pub fn write_locked(fd: c_int) -> io::Result<bool> {
    let mut fl = Flock {
        l_type: F_RDLCK,
        l_whence: SEEK_SET,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        // SAFETY: `fl` is a live struct flock the kernel reads and rewrites in place.
        if unsafe { fcntl(fd, F_OFD_GETLK, &mut fl as *mut Flock) } == 0 {
            return Ok(fl.l_type != F_UNLCK);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc_errno::EINTR) {
            return Err(err);
        }
    }
}

/// FUTEX_WAIT on a word of a shared mapping while it equals `expected`, at most `timeout`.
/// Returns normally on a wake, a changed word (EAGAIN), a timeout or EINTR: callers re-check.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> io::Result<()> {
    let ts = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // SAFETY: `word` is a live, 4-byte aligned u32; the kernel only reads it and `ts`.
    let rc = unsafe {
        syscall(
            SYS_FUTEX,
            word.as_ptr(),
            FUTEX_WAIT,
            expected,
            &ts as *const Timespec,
            std::ptr::null::<u32>(),
            0 as c_int,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc_errno::EAGAIN) | Some(libc_errno::ETIMEDOUT) | Some(libc_errno::EINTR) => Ok(()),
        _ => Err(err),
    }
}

pub mod libc_errno {
    pub const EINTR: i32 = 4;
    pub const EAGAIN: i32 = 11; // also EWOULDBLOCK
    pub const ETIMEDOUT: i32 = 110;
}
