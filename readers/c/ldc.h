/* ldc.h -- header-only C11 reader for ldc shared-memory depth segments, layout 2.0.
 *
 * The contract is docs/LAYOUT.md; every struct below mirrors ldc/shm/layout.py and
 * tests/test_shm_layout.py checks each offset against it. Linux only (futex, OFD locks, /dev/shm).
 * Uses the GCC/Clang __atomic builtins for the seqlock loads and fences.
 *
 * Include this header before any system header (it needs _GNU_SOURCE), or build with -D_GNU_SOURCE.
 *
 *   ldc_segment seg; char err[256];
 *   if (ldc_open(&seg, "spot", err, sizeof err) != LDC_OK) { fprintf(stderr, "%s\n", err); ... }
 *   ldc_market m; ldc_find(&seg, "BTCUSDT", &m);          // or ldc_list() for every market
 *   ldc_slot_header h; ldc_level bids[seg.depth], asks[seg.depth];
 *   int rc = ldc_read(&seg, &m, &h, bids, asks, NULL);   // LDC_OK: h.n_bids bids, h.n_asks asks
 *   ldc_close(&seg);
 *
 * One ldc_segment per thread (it caches the liveness verdict); segments never write to the mapping.
 */
#ifndef LDC_H
#define LDC_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LDC_MAGIC 0x485450454443444CULL /* "LDCDEPTH" little-endian */
#define LDC_VERSION_MAJOR 2
#define LDC_VERSION_MINOR 0
#define LDC_ENDIAN_MARKER 0x0102030405060708ULL
#define LDC_HEADER_SIZE 384
#define LDC_DIR_ENTRY_SIZE 64
#define LDC_SLOT_HEADER_SIZE 128
#define LDC_SYMBOL_SIZE 40
#define LDC_LEVEL_SIZE 16
#define LDC_N_COUNTERS 6

/* header state */
#define LDC_STATE_INITIALISING 1u /* never in a 2.x file (a 1.x writer's takeover) */
#define LDC_STATE_RUNNING 2u
#define LDC_STATE_STOPPED 3u
#define LDC_STATE_RETIRED 4u /* a newer writer replaced this file: see ldc_replaced() */

/* slot status flags */
#define LDC_SYNCED 0x01u
#define LDC_STALE 0x02u
#define LDC_RESYNCING 0x04u
#define LDC_CROSSED 0x08u
#define LDC_ERROR 0x10u
#define LDC_INCOMPLETE 0x20u
#define LDC_REFRESHING 0x40u
#define LDC_IN_SYNC_MASK 0x3Fu

/* results */
#define LDC_OK 0
#define LDC_OUT_OF_SYNC 1        /* copy valid, status not in sync */
#define LDC_GONE 2               /* market removed or slot reused: ldc_find again */
#define LDC_CONTENDED 3          /* no consistent copy within LDC_READ_SPIN_LIMIT_NS, writer alive */
#define LDC_WRITER_DEAD 4        /* copy valid, but the writer is dead, stopped or replaced */
#define LDC_WRITER_DEAD_NO_COPY 5 /* slot left odd by a dead writer: nothing copied */
#define LDC_NOT_FOUND 6          /* no such segment or market */
#define LDC_LAYOUT 7             /* not an ldc segment, other major version, truncated, inconsistent */
#define LDC_SYSTEM 8             /* a system call failed (errno in the message) */

#define LDC_READ_SPIN_LIMIT_NS 10000000LL       /* give up a read after 10 ms of odd/changing seq */
#define LDC_LIVENESS_PROBE_INTERVAL_NS 50000000LL /* re-probe the writer lock at most every 50 ms */
#define LDC_MIN_READ_ATTEMPTS 64 /* attempts made whatever the clock says (a reader may be descheduled) */
#define LDC_FUTEX_TID_MASK 0x3FFFFFFFu /* robust-futex ABI: the owner's TID, 0 once the kernel saw it die */
#define LDC_GROUP_MAX 63         /* group names match [A-Za-z0-9_-]{1,63} (section 1) */

/* writer liveness (docs/LAYOUT.md section 10) */
#define LDC_LIVE_ALIVE 0    /* state RUNNING and the file's lock held */
#define LDC_LIVE_STOPPED 2  /* state STOPPED: the writer closed cleanly */
#define LDC_LIVE_DEAD 3     /* no lock held (the writer died), a failed probe, or an unknown state */
#define LDC_LIVE_RETIRED 4  /* state RETIRED: a newer writer replaced the file (ldc_replaced) */

typedef struct {
    uint64_t magic;
    uint16_t version_major;
    uint16_t version_minor;
    uint32_t header_size;
    uint64_t endian_marker;
    uint64_t segment_size;
    uint32_t directory_offset;
    uint32_t directory_entry_size;
    uint32_t slots_offset;
    uint32_t slot_size;
    uint32_t capacity;
    uint32_t depth;
    uint32_t bids_offset;
    uint32_t asks_offset;
    uint32_t message_offset;
    uint32_t message_size;
    uint32_t heartbeat_interval_ms;
    uint32_t stale_after_ms; /* readers flag STALE once heartbeat_ns is older */
    char exchange[32];
    uint8_t reserved1[16];
    /* liveness block */
    uint32_t writer_pid;
    uint32_t state;
    int64_t start_time_ns;
    uint64_t instance_id;
    int64_t heartbeat_ns;
    uint64_t dir_seq;
    uint32_t takeovers;
    uint32_t market_count;
    char group[64];
    uint8_t reserved2[16];
    /* notify block: the writer's notify words, alone on their cache line (writer_lock on the next) */
    uint32_t notify;
    uint32_t notify_paced;    /* 2.2 (section 11); this reader does not use it */
    uint32_t notify_paced_us; /* 2.2 */
    uint8_t reserved3[52];
    /* the writer's robust futex: TID in bits 0-29 of writer_lock[0] while its thread lives */
    uint32_t writer_lock[16];
} ldc_header;

typedef struct {
    char symbol[LDC_SYMBOL_SIZE];
    uint64_t gen;
    uint8_t reserved[16];
} ldc_dir_entry;

typedef struct {
    uint64_t seq;
    uint64_t gen;
    int64_t update_id;       /* the venue's last update id (docs/VENUES.md); -1 before the first */
    int64_t event_time_ms;   /* exchange event time, ms since the Unix epoch (Binance E) */
    int64_t recv_time_ns;    /* feeder receive time, CLOCK_REALTIME ns */
    int64_t publish_time_ns; /* writer publish time, CLOCK_REALTIME ns */
    uint32_t status;
    uint32_t n_bids; /* after ldc_read: clamped to depth */
    uint32_t n_asks;
    uint32_t reserved0;
    uint64_t updates;
    uint64_t resyncs;
    uint64_t gaps;
    uint64_t ignored;
    uint64_t snapshots;
    uint64_t audit_mismatches;
    int64_t status_time_ns;
    uint64_t reserved1;
} ldc_slot_header;

typedef struct {
    double price;
    double qty;
} ldc_level;

_Static_assert(sizeof(ldc_header) == LDC_HEADER_SIZE, "header is 384 bytes");
_Static_assert(offsetof(ldc_header, writer_pid) == 128, "liveness block at 128");
_Static_assert(offsetof(ldc_header, dir_seq) == 160, "dir_seq at 160");
_Static_assert(offsetof(ldc_header, notify) == 256, "notify block at 256");
_Static_assert(offsetof(ldc_header, writer_lock) == 320, "writer_lock at 320");
_Static_assert(sizeof(ldc_dir_entry) == LDC_DIR_ENTRY_SIZE, "directory entry is 64 bytes");
_Static_assert(offsetof(ldc_dir_entry, gen) == 40, "entry gen at 40");
_Static_assert(sizeof(ldc_slot_header) == LDC_SLOT_HEADER_SIZE, "slot header is 128 bytes");
_Static_assert(offsetof(ldc_slot_header, status) == 48, "status at 48");
_Static_assert(offsetof(ldc_slot_header, updates) == 64, "counters at 64");
_Static_assert(sizeof(ldc_level) == LDC_LEVEL_SIZE, "level is 16 bytes");

typedef struct {
    int fd;                 /* read-only fd of the segment file, also the liveness probe's */
    const uint8_t *base;    /* PROT_READ mapping */
    size_t mapped;
    const ldc_header *hdr;
    /* geometry, copied from the validated header */
    uint32_t depth, capacity, slot_size, slots_offset, directory_offset, directory_entry_size;
    uint32_t bids_offset, asks_offset, message_offset, message_size;
    dev_t dev;              /* identity of the mapped file, to notice a replaced segment (section 10) */
    ino_t ino;
    int64_t next_probe_ns;
    int last_alive;
    uint64_t retries;       /* failed read attempts, cumulative (for benchmarks) */
    char name[96];
} ldc_segment;

typedef struct {
    uint32_t slot;
    uint64_t gen;
    char symbol[LDC_SYMBOL_SIZE];
} ldc_market;

static inline int ldc_in_sync(uint32_t status) { return (status & LDC_IN_SYNC_MASK) == LDC_SYNCED; }

static inline int64_t ldc__now(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void ldc__relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

__attribute__((format(printf, 4, 5))) static inline int ldc__fail(char *err, size_t errlen, int code,
                                                                   const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Section 7 of docs/LAYOUT.md, in order. */
static inline int ldc__validate(ldc_segment *s, char *err, size_t errlen) {
    const ldc_header *h = s->hdr;
    uint64_t magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE); /* pairs with the writer's release */
    if (magic == 0)
        return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s is not initialised (magic is 0)", s->name);
    if (magic == __builtin_bswap64(LDC_MAGIC))
        return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s is in the other byte order (magic %#llx): ldc segments are little-endian",
                         s->name, (unsigned long long)magic);
    if (magic != LDC_MAGIC)
        return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s has magic %#llx, expected %#llx", s->name,
                         (unsigned long long)magic, LDC_MAGIC);
    if (h->version_major != LDC_VERSION_MAJOR)
        return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s has layout version %u.%u, this reader understands %d.%d",
                         s->name, (unsigned)h->version_major, (unsigned)h->version_minor, LDC_VERSION_MAJOR,
                         LDC_VERSION_MINOR);
    if (h->endian_marker != LDC_ENDIAN_MARKER)
        return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s has endian marker %#llx, expected %#llx", s->name,
                         (unsigned long long)h->endian_marker, LDC_ENDIAN_MARKER);
    /* Step 7: every rule in 64-bit arithmetic, where sums and products of u32 fields cannot overflow. */
    uint64_t d = h->depth, c = h->capacity, levels = d * LDC_LEVEL_SIZE;
    uint64_t hs = h->header_size, des = h->directory_entry_size, dof = h->directory_offset;
    uint64_t so = h->slots_offset, ss = h->slot_size, bo = h->bids_offset, ao = h->asks_offset;
    uint64_t mo = h->message_offset, ms = h->message_size;
    const struct { int ok; const char *rule; } rules[] = {
        {hs >= LDC_HEADER_SIZE, "header_size >= 384"},
        {des >= LDC_DIR_ENTRY_SIZE, "directory_entry_size >= 64"},
        {dof >= hs, "directory_offset >= header_size"},
        {dof % 8 == 0 && des % 8 == 0, "directory_offset and directory_entry_size multiples of 8"},
        {c >= 1, "1 <= capacity"},
        {dof + c * des <= so, "directory_offset + capacity * directory_entry_size <= slots_offset"},
        {so % 128 == 0, "slots_offset multiple of 128"},
        {ss % 128 == 0 && ss > 0, "slot_size multiple of 128"},
        {d >= 1, "1 <= depth"},
        {bo >= LDC_SLOT_HEADER_SIZE, "bids_offset >= 128"},
        {bo % 8 == 0 && ao % 8 == 0, "bids_offset and asks_offset multiples of 8"},
        {ao >= bo + levels, "asks_offset >= bids_offset + 16 * depth"},
        {mo >= ao + levels, "message_offset >= asks_offset + 16 * depth"},
        {ms >= 1, "1 <= message_size"},
        {mo + ms <= ss, "message_offset + message_size <= slot_size"},
        {so + c * ss <= h->segment_size, "slots_offset + capacity * slot_size <= segment_size"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (!rules[i].ok)
            return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s has bad geometry: %s fails (depth %llu, capacity %llu)",
                             s->name, rules[i].rule, (unsigned long long)d, (unsigned long long)c);
    if (h->segment_size > s->mapped) /* rule 17: a truncated file */
        return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s has segment_size %llu but the file has %zu bytes (truncated)",
                         s->name, (unsigned long long)h->segment_size, s->mapped);
    s->depth = h->depth;
    s->capacity = h->capacity;
    s->slot_size = h->slot_size;
    s->slots_offset = h->slots_offset;
    s->directory_offset = h->directory_offset;
    s->directory_entry_size = h->directory_entry_size;
    s->bids_offset = h->bids_offset;
    s->asks_offset = h->asks_offset;
    s->message_offset = h->message_offset;
    s->message_size = h->message_size;
    return LDC_OK;
}

/* Section 1: a group name is [A-Za-z0-9_-]{1,63}; anything else (a '.', a '/') is refused before any open. */
static inline int ldc__group_ok(const char *group) {
    size_t n = strlen(group);
    if (n < 1 || n > LDC_GROUP_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = group[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Section 7 step 2, the owner: a uid the reader trusts to feed groups. Exactly $LDC_FEEDER_USER (a user
 * name or uid) when set; otherwise root, this process's user and the account "ldc" (the systemd unit's).
 * Another account could otherwise link a complete, live segment of its own while the name is free. */
static inline int ldc__owner_trusted(uid_t uid) {
    const char *want = getenv("LDC_FEEDER_USER");
    if (want != NULL && *want != '\0') {
        char *end = NULL;
        unsigned long n = strtoul(want, &end, 10);
        if (end != want && *end == '\0') return (uid_t)n == uid;
        struct passwd pw, *found = NULL;
        char buf[4096];
        return getpwnam_r(want, &pw, buf, sizeof buf, &found) == 0 && found != NULL && found->pw_uid == uid;
    }
    if (uid == 0 || uid == geteuid()) return 1;
    struct passwd pw, *found = NULL;
    char buf[4096];
    return getpwnam_r("ldc", &pw, buf, sizeof buf, &found) == 0 && found != NULL && found->pw_uid == uid;
}

/* Attach read-only to /dev/shm/ldc-<group>. On failure returns LDC_NOT_FOUND, LDC_LAYOUT or
 * LDC_SYSTEM with a message in err. */
static inline int ldc_open(ldc_segment *s, const char *group, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    if (!ldc__group_ok(group))
        return ldc__fail(err, errlen, LDC_NOT_FOUND, "group name must match [A-Za-z0-9_-]{1,63}, got \"%.80s\"", group);
    snprintf(s->name, sizeof s->name, "/ldc-%s", group);
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/ldc-%s", group);
    s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (s->fd < 0)
        return ldc__fail(err, errlen, errno == ENOENT ? LDC_NOT_FOUND : LDC_SYSTEM,
                         "cannot open segment %s: %s", s->name, strerror(errno));
    struct stat st = {0};
    if (fstat(s->fd, &st) == 0 && (!S_ISREG(st.st_mode) || (st.st_mode & (S_IWGRP | S_IWOTH)))) {
        unsigned mode = (unsigned)(st.st_mode & 07777);
        close(s->fd);
        s->fd = -1; /* step 2: only its owner may write a segment (a squatter's file is not ldc's) */
        return ldc__fail(err, errlen, LDC_LAYOUT,
                         "segment %s has mode %04o (owner uid %u): a segment must be a regular file writable by its owner alone",
                         s->name, mode, (unsigned)st.st_uid);
    }
    if (!ldc__owner_trusted(st.st_uid)) {
        close(s->fd);
        s->fd = -1;
        return ldc__fail(err, errlen, LDC_LAYOUT,
                         "segment %s belongs to uid %u, not to a feeders' account this reader trusts "
                         "(set LDC_FEEDER_USER to the feeders' user)", s->name, (unsigned)st.st_uid);
    }
    if (st.st_size < LDC_HEADER_SIZE) {
        long long size = (long long)st.st_size;
        close(s->fd);
        s->fd = -1;
        return ldc__fail(err, errlen, LDC_LAYOUT, "segment %s is %lld bytes, expected at least a %d-byte header",
                         s->name, size, LDC_HEADER_SIZE);
    }
    s->mapped = (size_t)st.st_size;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    void *p = mmap(NULL, s->mapped, PROT_READ, MAP_SHARED, s->fd, 0);
    if (p == MAP_FAILED) {
        close(s->fd);
        s->fd = -1;
        return ldc__fail(err, errlen, LDC_SYSTEM, "cannot map segment %s: %s", s->name, strerror(errno));
    }
    s->base = p;
    s->hdr = p;
    int rc = ldc__validate(s, err, errlen);
    /* step 8: the header names the group opened (a hard link can put one group's file at another's name) */
    if (rc == LDC_OK && strncmp(s->hdr->group, group, sizeof s->hdr->group) != 0)
        rc = ldc__fail(err, errlen, LDC_LAYOUT, "segment %s holds group \"%.63s\": a segment of another group at this name",
                       s->name, s->hdr->group);
    if (rc != LDC_OK) {
        munmap(p, s->mapped);
        close(s->fd);
        s->fd = -1;
        s->base = NULL;
        return rc;
    }
    s->last_alive = 1;
    return LDC_OK;
}

static inline void ldc_close(ldc_segment *s) {
    if (s->base) munmap((void *)s->base, s->mapped);
    if (s->fd >= 0) close(s->fd);
    s->base = NULL;
    s->fd = -1;
}

/* The probe of section 10: LDC_LIVE_ALIVE, _STOPPED, _RETIRED or _DEAD. One fcntl(F_OFD_GETLK),
 * which only asks whether a write lock is held: it takes no lock, so it never stands in a writer's
 * way. The writer of a file locks it before the file gets its name and no other writer ever
 * locks it, so the lock held with state still RUNNING (loaded again after the probe) means the
 * data copied before the probe is the live writer's. */
static inline int ldc__owner_alive(const ldc_segment *s) {
    return (__atomic_load_n(&s->hdr->writer_lock[0], __ATOMIC_ACQUIRE) & LDC_FUTEX_TID_MASK) != 0;
}

static inline int ldc_liveness(ldc_segment *s) {
    uint32_t state = __atomic_load_n(&s->hdr->state, __ATOMIC_ACQUIRE);
    if (state == LDC_STATE_STOPPED) return LDC_LIVE_STOPPED;
    if (state == LDC_STATE_RETIRED) return LDC_LIVE_RETIRED;
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_pid = 0};
    int rc;
    do rc = fcntl(s->fd, F_OFD_GETLK, &fl);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 || fl.l_type == F_UNLCK || !ldc__owner_alive(s))
        return LDC_LIVE_DEAD; /* no writer (or no answer: never ALIVE) */
    state = __atomic_load_n(&s->hdr->state, __ATOMIC_ACQUIRE);
    if (state == LDC_STATE_RUNNING) return LDC_LIVE_ALIVE;
    return state == LDC_STATE_STOPPED ? LDC_LIVE_STOPPED : state == LDC_STATE_RETIRED ? LDC_LIVE_RETIRED : LDC_LIVE_DEAD;
}

/* 1 when a running writer holds the segment's lock (section 10), else 0. */
static inline int ldc_writer_alive(ldc_segment *s) { return ldc_liveness(s) == LDC_LIVE_ALIVE; }

/* 1 when heartbeat_ns is older than the header's stale_after_ms (section 10): the writer's process
 * holds its lock but publishes nothing (stopped, hung). ldc_read then adds LDC_STALE to the status. */
static inline int ldc_stale(const ldc_segment *s) {
    uint32_t limit_ms = s->hdr->stale_after_ms; /* written once, before magic */
    int64_t beat = __atomic_load_n(&s->hdr->heartbeat_ns, __ATOMIC_RELAXED);
    /* the coarse clock (a few ms of resolution, no counter read) is plenty against a limit of seconds */
    return limit_ms != 0 && ldc__now(CLOCK_REALTIME_COARSE) - beat > (int64_t)limit_ms * 1000000LL;
}

/* The read path's probe: an ALIVE verdict of the lock probe is reused for
 * LDC_LIVENESS_PROBE_INTERVAL_NS while state stays RUNNING and the writer's robust word still holds
 * a TID (both loaded on every read); any other verdict is probed afresh. */
static inline int ldc__liveness_cached(ldc_segment *s) {
    int64_t now = ldc__now(CLOCK_MONOTONIC_COARSE);
    if (s->last_alive && now < s->next_probe_ns &&
        __atomic_load_n(&s->hdr->state, __ATOMIC_ACQUIRE) == LDC_STATE_RUNNING && ldc__owner_alive(s))
        return LDC_LIVE_ALIVE; /* the robust word, loaded on every read, sees a death at once */
    int live = ldc_liveness(s);
    s->last_alive = live == LDC_LIVE_ALIVE;
    s->next_probe_ns = now + LDC_LIVENESS_PROBE_INTERVAL_NS;
    return live;
}

/* 1 when /dev/shm/ldc-<group> is now another file than the one mapped (every new writer replaces
 * the file, section 12). Check it whenever a read or find does not succeed (LDC_WRITER_DEAD,
 * LDC_WRITER_DEAD_NO_COPY, LDC_CONTENDED, LDC_NOT_FOUND). Then ldc_open a new ldc_segment; only once
 * that succeeds ldc_close this one and resolve every market again (generations restart in the new
 * file). While ldc_open fails keep reading this one. */
static inline int ldc_replaced(const ldc_segment *s) {
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", s->name);
    struct stat st;
    if (stat(path, &st) < 0) return 0; /* removed, not replaced: nothing newer to follow */
    return st.st_dev != s->dev || st.st_ino != s->ino;
}

/* Resolve a symbol through the directory seqlock (section 9). LDC_OK, LDC_NOT_FOUND or LDC_CONTENDED. */
static inline int ldc_find(ldc_segment *s, const char *symbol, ldc_market *out) {
    const uint64_t *seq = &s->hdr->dir_seq;
    const uint8_t *dir = s->base + s->directory_offset;
    int64_t deadline = ldc__now(CLOCK_MONOTONIC) + LDC_READ_SPIN_LIMIT_NS;
    /* a minimum of attempts, so a reader descheduled past the deadline still gets to try */
    for (unsigned attempt = 0; attempt < LDC_MIN_READ_ATTEMPTS || ldc__now(CLOCK_MONOTONIC) < deadline; attempt++) {
        uint64_t d1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (d1 & 1) {
            ldc__relax();
            continue;
        }
        int found = 0;
        ldc_market m = {0};
        for (uint32_t i = 0; i < s->capacity; i++) {
            ldc_dir_entry e;
            memcpy(&e, dir + (size_t)i * s->directory_entry_size, sizeof e);
            if (e.gen != 0 && strncmp(e.symbol, symbol, LDC_SYMBOL_SIZE) == 0 && !found) {
                found = 1;
                m.slot = i;
                m.gen = e.gen;
                memcpy(m.symbol, e.symbol, LDC_SYMBOL_SIZE);
                m.symbol[LDC_SYMBOL_SIZE - 1] = '\0';
            }
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(seq, __ATOMIC_RELAXED) != d1) continue;
        if (!found) return LDC_NOT_FOUND;
        *out = m;
        return LDC_OK;
    }
    return LDC_CONTENDED;
}

/* Active markets in slot order (section 9): fills up to max entries of out and sets *count to the
 * number of active markets (which may exceed max). LDC_OK or LDC_CONTENDED. */
static inline int ldc_list(ldc_segment *s, ldc_market *out, uint32_t max, uint32_t *count) {
    const uint64_t *seq = &s->hdr->dir_seq;
    const uint8_t *dir = s->base + s->directory_offset;
    int64_t deadline = ldc__now(CLOCK_MONOTONIC) + LDC_READ_SPIN_LIMIT_NS;
    /* a minimum of attempts, so a reader descheduled past the deadline still gets to try */
    for (unsigned attempt = 0; attempt < LDC_MIN_READ_ATTEMPTS || ldc__now(CLOCK_MONOTONIC) < deadline; attempt++) {
        uint64_t d1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (d1 & 1) {
            ldc__relax();
            continue;
        }
        uint32_t n = 0;
        for (uint32_t i = 0; i < s->capacity; i++) {
            ldc_dir_entry e;
            memcpy(&e, dir + (size_t)i * s->directory_entry_size, sizeof e);
            if (e.gen == 0) continue;
            if (n < max) {
                out[n].slot = i;
                out[n].gen = e.gen;
                memcpy(out[n].symbol, e.symbol, LDC_SYMBOL_SIZE);
                out[n].symbol[LDC_SYMBOL_SIZE - 1] = '\0';
            }
            n++;
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(seq, __ATOMIC_RELAXED) != d1) continue;
        *count = n;
        return LDC_OK;
    }
    return LDC_CONTENDED;
}

/* The seqlock copy of section 8: 1 with a consistent copy, 0 after LDC_READ_SPIN_LIMIT_NS of odd or
 * changing seq (and at least 256 attempts). */
static inline int ldc__copy(ldc_segment *s, const uint8_t *p, ldc_slot_header *h, ldc_level *bids, ldc_level *asks,
                            char *message) {
    const uint64_t *seq = (const uint64_t *)p;
    int64_t deadline = 0;
    for (unsigned attempt = 1;; attempt++) {
        uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (!(s1 & 1)) {
            memcpy(h, p, sizeof *h);
            uint32_t nb = h->n_bids < s->depth ? h->n_bids : s->depth; /* garbage until validated: clamp */
            uint32_t na = h->n_asks < s->depth ? h->n_asks : s->depth;
            memcpy(bids, p + s->bids_offset, (size_t)nb * LDC_LEVEL_SIZE);
            memcpy(asks, p + s->asks_offset, (size_t)na * LDC_LEVEL_SIZE);
            if (message) memcpy(message, p + s->message_offset, s->message_size);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(seq, __ATOMIC_RELAXED) == s1) {
                h->seq = s1;
                h->n_bids = nb;
                h->n_asks = na;
                if (message) message[s->message_size - 1] = '\0'; /* message_size >= 1 (section 7) */
                return 1;
            }
        }
        s->retries++;
        ldc__relax();
        if (attempt % 256 == 0) {
            int64_t now = ldc__now(CLOCK_MONOTONIC);
            if (deadline == 0)
                deadline = now + LDC_READ_SPIN_LIMIT_NS;
            else if (now >= deadline)
                return 0;
        }
    }
}

/* Validated copy of one market, with the checks of section 10 ("after a copy") in their order:
 * gen, then writer liveness, then staleness and status. bids and asks must hold seg->depth levels
 * each; message (may be NULL) seg->message_size bytes. On LDC_OK / LDC_OUT_OF_SYNC / LDC_WRITER_DEAD
 * the copy is consistent and h->n_bids / h->n_asks are clamped to depth; a writer whose heartbeat is
 * older than its stale_after_ms gets LDC_STALE added to h->status (so LDC_OUT_OF_SYNC). On anything
 * but LDC_OK / LDC_OUT_OF_SYNC / LDC_GONE, check ldc_replaced(). */
static inline int ldc_read(ldc_segment *s, const ldc_market *m, ldc_slot_header *h, ldc_level *bids,
                           ldc_level *asks, char *message) {
    if (m->slot >= s->capacity) return LDC_GONE;
    const uint8_t *p = s->base + s->slots_offset + (size_t)m->slot * s->slot_size;
    if (!ldc__copy(s, p, h, bids, asks, message)) {
        s->next_probe_ns = 0; /* stuck odd: most likely a dead writer, probe now */
        return ldc__liveness_cached(s) == LDC_LIVE_ALIVE ? LDC_CONTENDED : LDC_WRITER_DEAD_NO_COPY;
    }
    if (h->gen != m->gen) return LDC_GONE;
    if (ldc__liveness_cached(s) != LDC_LIVE_ALIVE) return LDC_WRITER_DEAD;
    if (ldc_stale(s)) h->status |= LDC_STALE; /* the reader's own judgement (section 10) */
    return ldc_in_sync(h->status) ? LDC_OK : LDC_OUT_OF_SYNC;
}

/* Current value of the notify word; read it before checking what you wait for (section 11). */
static inline uint32_t ldc_notify_value(const ldc_segment *s) {
    return __atomic_load_n(&s->hdr->notify, __ATOMIC_ACQUIRE);
}

/* Sleep while the notify word equals `expected`, at most timeout_ns. Returns the word's value
 * afterwards (differs from expected when the writer published). Spurious returns happen. Nothing is
 * written anywhere: the writer wakes every sleeper after each batch (section 11). */
static inline uint32_t ldc_wait(ldc_segment *s, uint32_t expected, int64_t timeout_ns) {
    if (timeout_ns < 0) timeout_ns = 0;
    struct timespec ts = {(time_t)(timeout_ns / 1000000000LL), (long)(timeout_ns % 1000000000LL)};
    syscall(SYS_futex, (uint32_t *)&s->hdr->notify, FUTEX_WAIT, expected, &ts, NULL, 0);
    return ldc_notify_value(s);
}

#endif /* LDC_H */
