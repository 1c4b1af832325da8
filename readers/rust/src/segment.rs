//! Attaching: open, fstat, map, and the validation of LAYOUT.md section 7, in its order.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::layout::{self, hdr};
use crate::mapping::{c_text, Mapping};
use crate::sys;

/// The header's identity and geometry (written once, before `magic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub version_major: u16,
    pub version_minor: u16,
    pub header_size: u32,
    pub segment_size: u64,
    pub directory_offset: u32,
    pub directory_entry_size: u32,
    pub slots_offset: u32,
    pub slot_size: u32,
    pub capacity: u32,
    pub depth: u32,
    pub bids_offset: u32,
    pub asks_offset: u32,
    pub message_offset: u32,
    pub message_size: u32,
    pub heartbeat_interval_ms: u32,
    pub exchange: String,
}

impl Geometry {
    pub fn slot_offset(&self, slot: u32) -> usize {
        self.slots_offset as usize + slot as usize * self.slot_size as usize
    }

    pub fn entry_offset(&self, index: u32) -> usize {
        self.directory_offset as usize + index as usize * self.directory_entry_size as usize
    }
}

/// An attached, validated segment: the open fd (kept for the lock probe) and its mapping.
pub struct Segment {
    pub path: String,
    pub file: File,
    pub map: Mapping,
    pub geo: Geometry,
    /// (st_dev, st_ino) of the file we mapped, to notice a replaced segment (section 10).
    pub identity: (u64, u64),
}

pub fn attach(group: &str) -> Result<Segment> {
    if !layout::valid_group(group) {
        return Err(Error::InvalidGroup {
            group: group.to_string(),
        });
    }
    let path = layout::segment_path(group);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(sys::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::NoSegment { path: path.clone() },
        _ => Error::Io {
            what: "open",
            path: path.clone(),
            source: e,
        },
    })?;
    let meta = file.metadata().map_err(|e| Error::Io {
        what: "fstat",
        path: path.clone(),
        source: e,
    })?;
    if !meta.file_type().is_file() || meta.mode() & 0o022 != 0 {
        return Err(Error::Mode {
            path,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
        });
    }
    if !owner_trusted(meta.uid()) {
        return Err(Error::Owner {
            path,
            uid: meta.uid(),
        });
    }
    let file_size = meta.len();
    if file_size < layout::MIN_HEADER_SIZE {
        return Err(Error::TooSmall {
            path,
            size: file_size,
            min: layout::MIN_HEADER_SIZE,
        });
    }
    let len = usize::try_from(file_size).map_err(|_| Error::TooSmall {
        path: path.clone(),
        size: file_size,
        min: layout::MIN_HEADER_SIZE,
    })?;
    let map = Mapping::map(&file, len, false).map_err(|e| Error::Io {
        what: "mmap",
        path: path.clone(),
        source: e,
    })?;
    let geo = validate(&path, &map, file_size)?;
    // Step 8: the header names the group opened (a hard link can put one group's file at another's name).
    let mut named = [0u8; hdr::GROUP_LEN];
    map.copy_bytes(hdr::GROUP, &mut named);
    let found = c_text(&named);
    if found != group {
        return Err(Error::OtherGroup { path, found });
    }
    Ok(Segment {
        path,
        file,
        map,
        geo,
        identity: (meta.dev(), meta.ino()),
    })
}

/// Steps 4 to 7 of section 7.
pub fn validate(path: &str, map: &Mapping, file_size: u64) -> Result<Geometry> {
    // Pairs with the writer's release store of magic: every header field below is complete.
    let magic = map.atomic_u64(hdr::MAGIC).load(Ordering::Acquire);
    if magic == 0 {
        return Err(Error::NotReady {
            path: path.to_string(),
        });
    }
    if magic != layout::MAGIC {
        return Err(Error::BadMagic {
            path: path.to_string(),
            found: magic,
        });
    }
    let major = map.u16(hdr::VERSION_MAJOR);
    let minor = map.u16(hdr::VERSION_MINOR);
    if major != layout::VERSION_MAJOR {
        return Err(Error::Version {
            path: path.to_string(),
            major,
            minor,
        });
    }
    let marker = map.u64(hdr::ENDIAN_MARKER);
    if marker != layout::ENDIAN_MARKER {
        return Err(Error::Endian {
            path: path.to_string(),
            found: marker,
        });
    }
    let geo = read_geometry(map, major, minor);
    check_geometry(path, &geo, file_size)?;
    Ok(geo)
}

fn read_geometry(map: &Mapping, version_major: u16, version_minor: u16) -> Geometry {
    let mut exchange = [0u8; hdr::EXCHANGE_LEN];
    map.copy_bytes(hdr::EXCHANGE, &mut exchange);
    Geometry {
        version_major,
        version_minor,
        header_size: map.u32(hdr::HEADER_SIZE),
        segment_size: map.u64(hdr::SEGMENT_SIZE),
        directory_offset: map.u32(hdr::DIRECTORY_OFFSET),
        directory_entry_size: map.u32(hdr::DIRECTORY_ENTRY_SIZE),
        slots_offset: map.u32(hdr::SLOTS_OFFSET),
        slot_size: map.u32(hdr::SLOT_SIZE),
        capacity: map.u32(hdr::CAPACITY),
        depth: map.u32(hdr::DEPTH),
        bids_offset: map.u32(hdr::BIDS_OFFSET),
        asks_offset: map.u32(hdr::ASKS_OFFSET),
        message_offset: map.u32(hdr::MESSAGE_OFFSET),
        message_size: map.u32(hdr::MESSAGE_SIZE),
        heartbeat_interval_ms: map.u32(hdr::HEARTBEAT_INTERVAL_MS),
        exchange: c_text(&exchange),
    }
}

/// Section 7 step 7, its rules in its order, in u64 arithmetic (u32 products overflow for
/// hostile headers).
pub fn check_geometry(path: &str, g: &Geometry, file_size: u64) -> Result<()> {
    let u = u64::from;
    let level_bytes = u64::from(layout::LEVEL_SIZE) * u(g.depth);
    let rules: [(&'static str, bool, String); 16] = [
        (
            "header_size >= 384",
            u(g.header_size) >= layout::MIN_HEADER_SIZE,
            format!("header_size {}", g.header_size),
        ),
        (
            "directory_entry_size >= 64",
            g.directory_entry_size >= layout::MIN_DIRECTORY_ENTRY_SIZE,
            format!("directory_entry_size {}", g.directory_entry_size),
        ),
        (
            "directory_offset >= header_size",
            g.directory_offset >= g.header_size,
            format!(
                "directory_offset {}, header_size {}",
                g.directory_offset, g.header_size
            ),
        ),
        (
            "directory_offset and directory_entry_size multiples of 8",
            g.directory_offset.is_multiple_of(8) && g.directory_entry_size.is_multiple_of(8),
            format!(
                "directory_offset {}, directory_entry_size {}",
                g.directory_offset, g.directory_entry_size
            ),
        ),
        (
            "1 <= capacity",
            g.capacity >= 1,
            format!("capacity {}", g.capacity),
        ),
        (
            "directory_offset + capacity * directory_entry_size <= slots_offset",
            u(g.directory_offset) + u(g.capacity) * u(g.directory_entry_size) <= u(g.slots_offset),
            format!(
                "{} + {} * {} > {}",
                g.directory_offset, g.capacity, g.directory_entry_size, g.slots_offset
            ),
        ),
        (
            "slots_offset multiple of 128",
            g.slots_offset.is_multiple_of(layout::SLOT_ALIGN),
            format!("slots_offset {}", g.slots_offset),
        ),
        (
            "slot_size multiple of 128",
            g.slot_size.is_multiple_of(layout::SLOT_ALIGN) && g.slot_size > 0,
            format!("slot_size {}", g.slot_size),
        ),
        ("1 <= depth", g.depth >= 1, format!("depth {}", g.depth)),
        (
            "bids_offset >= 128",
            g.bids_offset >= layout::SLOT_HEADER_SIZE,
            format!("bids_offset {}", g.bids_offset),
        ),
        (
            "bids_offset and asks_offset multiples of 8",
            g.bids_offset.is_multiple_of(8) && g.asks_offset.is_multiple_of(8),
            format!(
                "bids_offset {}, asks_offset {}",
                g.bids_offset, g.asks_offset
            ),
        ),
        (
            "asks_offset >= bids_offset + 16 * depth",
            u(g.asks_offset) >= u(g.bids_offset) + level_bytes,
            format!(
                "asks_offset {}, bids_offset {}, depth {}",
                g.asks_offset, g.bids_offset, g.depth
            ),
        ),
        (
            "message_offset >= asks_offset + 16 * depth",
            u(g.message_offset) >= u(g.asks_offset) + level_bytes,
            format!(
                "message_offset {}, asks_offset {}, depth {}",
                g.message_offset, g.asks_offset, g.depth
            ),
        ),
        (
            "1 <= message_size",
            g.message_size >= 1,
            format!("message_size {}", g.message_size),
        ),
        (
            "message_offset + message_size <= slot_size",
            u(g.message_offset) + u(g.message_size) <= u(g.slot_size),
            format!(
                "{} + {} > {}",
                g.message_offset, g.message_size, g.slot_size
            ),
        ),
        (
            "slots_offset + capacity * slot_size <= segment_size",
            u(g.slots_offset) + u(g.capacity) * u(g.slot_size) <= g.segment_size,
            format!(
                "{} + {} * {} > {}",
                g.slots_offset, g.capacity, g.slot_size, g.segment_size
            ),
        ),
    ];
    for (rule, ok, detail) in rules {
        if !ok {
            return Err(Error::Geometry {
                path: path.to_string(),
                rule,
                detail,
            });
        }
    }
    if g.segment_size > file_size {
        return Err(Error::Truncated {
            path: path.to_string(),
            segment_size: g.segment_size,
            file_size,
        });
    }
    Ok(())
}

/// Section 7 step 2, the owner: exactly `$LDC_FEEDER_USER` (a user name or uid) when set; otherwise
/// root, this process's effective user and the account `ldc` (the systemd unit's). Another account
/// could otherwise link a complete, live segment of its own while the name is free. Names are looked
/// up in `/etc/passwd` (std has no `getpwnam`; ldc's feeders' account is a local system user).
fn owner_trusted(uid: u32) -> bool {
    if let Some(want) = std::env::var_os("LDC_FEEDER_USER").filter(|v| !v.is_empty()) {
        let want = want.to_string_lossy().into_owned();
        return match want.parse::<u32>() {
            Ok(n) => n == uid,
            Err(_) => passwd_uid(&want) == Some(uid),
        };
    }
    uid == 0 || Some(uid) == effective_uid() || passwd_uid("ldc") == Some(uid)
}

fn passwd_uid(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.nth(1)?.parse().ok())?
    })
}

/// The effective uid from `/proc/self/status` ("Uid: real effective saved fs").
fn effective_uid() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
