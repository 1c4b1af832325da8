/* Fenced seqlock write and read of whole segment slots (docs/LAYOUT.md, "Seqlock protocol").
 *
 * Protocol (Boehm 2012; Linux seqcount; CPython _PySeqLock after gh-121368), single writer per slot:
 *   writer: seq := s+1 (relaxed); release fence; data stores; seq := s+2 (release)
 *   reader: s1 := seq (acquire); odd -> retry; copy; acquire fence; s2 := seq (relaxed); s1 == s2 -> valid
 * On x86-64 the fences compile to nothing; on ARM64 they are dmb. Every offset comes from
 * ldc/shm/layout.py through the `layout` dict given to Segment(); nothing here is hard-coded.
 *
 * The data copies are plain memcpy, as in the Linux kernel's seqcount users: a torn copy is
 * possible and is always discarded by the seq re-check before anyone looks at it, except the level
 * counts, which are clamped to depth before they size a copy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ldc_seqlock_api.h"
#include "ldc_shm_inline.h"

/* read results (mirrored in reader.py) */
enum {
    READ_OK = 0,
    READ_OUT_OF_SYNC = 1, /* copy valid, status not in sync */
    READ_GONE = 2,        /* slot generation differs: market removed or replaced */
    READ_CONTENDED = 3,   /* no consistent copy within the spin bound, writer alive */
    READ_WRITER_DEAD = 4, /* copy valid, but the writer is dead or stopped */
    READ_WRITER_DEAD_NO_COPY = 5, /* slot stuck odd and the writer is dead: nothing was copied */
    READ_UNKNOWN = 6,     /* read_symbol: the symbol is not in the cached directory */
};

#define STATE_RUNNING 2u
#define STATUS_SYNCED 1u
#define STATUS_STALE 2u
#define FUTEX_TID_MASK_ 0x3FFFFFFFu /* robust-futex ABI (linux/futex.h FUTEX_TID_MASK) */
#define IN_SYNC_MASK 0x3Fu /* SYNCED|STALE|RESYNCING|CROSSED|ERROR|INCOMPLETE, see layout.IN_SYNC_MASK */
#define LEVEL_SIZE 16
#define N_COUNTERS 6
#define SPIN_CHECK_EVERY 256            /* attempts between clock reads while a slot stays odd */
#define MIN_READ_ATTEMPTS 64            /* attempts made whatever the clock says */
#define READ_SPIN_LIMIT_NS 10000000LL   /* 10 ms: longer than a writer preempted mid-write */
#define LIVENESS_PROBE_INTERVAL_NS 50000000LL /* 50 ms between lock probes on the read path */

/* ---------------------------------------------------------------- layout */

typedef struct {
    Py_ssize_t depth, capacity, directory_offset, directory_entry_size, slots_offset, slot_size;
    Py_ssize_t bids_offset, asks_offset, message_offset, message_size, slot_header_size, segment_size;
    Py_ssize_t hdr_magic, hdr_state, hdr_notify, hdr_notify_paced, hdr_notify_paced_us, hdr_dir_seq, hdr_heartbeat_ns;
    Py_ssize_t hdr_stale_after_ms, hdr_writer_lock;
    Py_ssize_t dir_symbol, dir_symbol_size, dir_gen;
    Py_ssize_t s_seq, s_gen, s_update_id, s_event_time_ms, s_recv_time_ns, s_publish_time_ns;
    Py_ssize_t s_status, s_n_bids, s_n_asks, s_status_time_ns;
    Py_ssize_t s_counter[N_COUNTERS];
} Layout;

static int layout_load(PyObject *d, Layout *L) {
    static const char *counter_keys[N_COUNTERS] = {"slot_updates", "slot_resyncs", "slot_gaps",
                                                   "slot_ignored", "slot_snapshots", "slot_audit_mismatches"};
    struct { const char *k; Py_ssize_t *p; } keys[] = {
        {"depth", &L->depth}, {"capacity", &L->capacity}, {"directory_offset", &L->directory_offset},
        {"directory_entry_size", &L->directory_entry_size}, {"slots_offset", &L->slots_offset},
        {"slot_size", &L->slot_size}, {"bids_offset", &L->bids_offset}, {"asks_offset", &L->asks_offset},
        {"message_offset", &L->message_offset}, {"message_size", &L->message_size},
        {"slot_header_size", &L->slot_header_size}, {"segment_size", &L->segment_size},
        {"hdr_magic", &L->hdr_magic}, {"hdr_state", &L->hdr_state}, {"hdr_notify", &L->hdr_notify},
        {"hdr_notify_paced", &L->hdr_notify_paced}, {"hdr_notify_paced_us", &L->hdr_notify_paced_us},
        {"hdr_dir_seq", &L->hdr_dir_seq}, {"hdr_heartbeat_ns", &L->hdr_heartbeat_ns},
        {"hdr_stale_after_ms", &L->hdr_stale_after_ms}, {"hdr_writer_lock", &L->hdr_writer_lock},
        {"dir_symbol", &L->dir_symbol}, {"dir_symbol_size", &L->dir_symbol_size}, {"dir_gen", &L->dir_gen},
        {"slot_seq", &L->s_seq}, {"slot_gen", &L->s_gen}, {"slot_update_id", &L->s_update_id},
        {"slot_event_time_ms", &L->s_event_time_ms}, {"slot_recv_time_ns", &L->s_recv_time_ns},
        {"slot_publish_time_ns", &L->s_publish_time_ns}, {"slot_status", &L->s_status},
        {"slot_n_bids", &L->s_n_bids}, {"slot_n_asks", &L->s_n_asks},
        {"slot_status_time_ns", &L->s_status_time_ns},
    };
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "layout must be a dict");
        return -1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (ldc_layout_get(d, keys[i].k, keys[i].p) < 0) return -1;
    for (int i = 0; i < N_COUNTERS; i++)
        if (ldc_layout_get(d, counter_keys[i], &L->s_counter[i]) < 0) return -1;
    return 0;
}

static int layout_check(const Layout *L, Py_ssize_t mapped) {
    if (L->depth < 1 || L->capacity < 1 || L->slot_size % 128 || L->slots_offset % 128 ||
        L->bids_offset % 8 || L->asks_offset % 8 ||
        L->bids_offset + L->depth * LEVEL_SIZE > L->slot_size ||
        L->asks_offset + L->depth * LEVEL_SIZE > L->slot_size ||
        L->message_offset + L->message_size > L->slot_size || L->slot_header_size > L->slot_size ||
        L->directory_offset + L->capacity * L->directory_entry_size > L->slots_offset ||
        L->slots_offset + L->capacity * L->slot_size > L->segment_size || L->segment_size > mapped) {
        PyErr_Format(PyExc_ValueError,
                     "inconsistent layout: depth %zd capacity %zd slot_size %zd slots_offset %zd "
                     "segment_size %zd mapped %zd",
                     L->depth, L->capacity, L->slot_size, L->slots_offset, L->segment_size, mapped);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- SlotBuffer */

typedef struct {
    PyObject_HEAD
    PyObject *dict; /* subclasses keep numpy views here */
    char *mem;      /* 64-byte aligned copy of one slot */
    Layout L;
    Py_ssize_t nb, na;             /* level counts of the last validated copy (clamped) */
    Py_ssize_t dirty_nb, dirty_na; /* rows possibly written since they were last zeroed */
    Py_ssize_t exports;
} SlotBuffer;

static PyTypeObject SlotBufferType;

/* The writer's robust lock (LAYOUT.md section 10): a thread of its own locks a robust, process-shared
 * pthread mutex in the header and keeps it until close. When the process dies, however it dies,
 * the kernel walks that thread's robust list before it releases any file lock and marks the word
 * OWNER_DIED with the TID cleared: readers see the death with one load, no system call. */
typedef struct {
    pthread_t thread;
    pthread_mutex_t *mutex;
    int ready[2], stop[2]; /* pipes: the thread says it holds the lock; we tell it to let go */
    int started;
    int result; /* 0 held, else an errno-style failure from the thread */
} OwnerLock;

typedef struct {
    PyObject_HEAD
    char *base; /* NULL once closed */
    OwnerLock *owner; /* writer only, while it holds the robust lock */
    Py_buffer view;
    int writable;
    int lock_fd;            /* fd of the segment file, for the fcntl liveness probe (readers) */
    int64_t next_probe_ns;  /* CLOCK_MONOTONIC_COARSE deadline of the next probe */
    int last_probe_alive;
    unsigned long long retries; /* failed read attempts, cumulative (benchmarks) */
    PyObject *slots;            /* reader's directory cache {symbol: (slot, gen)}, or NULL */
    int64_t last_paced_ns;      /* writer: CLOCK_MONOTONIC of its last notify_paced increment */
    Layout L;
} Segment;

static PyTypeObject SegmentType;

static inline char *slot_ptr(const Segment *s, Py_ssize_t slot) {
    return s->base + s->L.slots_offset + slot * s->L.slot_size;
}
static inline uint64_t *slot_seq(const Segment *s, char *p) { return (uint64_t *)(p + s->L.s_seq); }

#define U64(p, off) (*(uint64_t *)((p) + (off)))
#define I64(p, off) (*(int64_t *)((p) + (off)))
#define U32(p, off) (*(uint32_t *)((p) + (off)))

static int check_open(Segment *s) {
    if (s->base == NULL) {
        PyErr_SetString(PyExc_ValueError, "segment is closed");
        return -1;
    }
    return 0;
}

static int check_slot(Segment *s, Py_ssize_t slot) {
    if (check_open(s) < 0) return -1;
    if (slot < 0 || slot >= s->L.capacity) {
        PyErr_Format(PyExc_IndexError, "slot %zd out of range 0..%zd", slot, s->L.capacity - 1);
        return -1;
    }
    return 0;
}

static int check_writable(Segment *s) {
    if (!s->writable) {
        PyErr_SetString(PyExc_PermissionError, "segment is mapped read-only");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- liveness */

/* 1 while the writer's thread holds its robust lock: its TID is in the word (one load, every read). */
static inline int owner_alive(const Segment *s) {
    return (__atomic_load_n((uint32_t *)(s->base + s->L.hdr_writer_lock), __ATOMIC_ACQUIRE) & FUTEX_TID_MASK_) != 0;
}

/* 1 alive, 0 dead, stopped or retired (docs/LAYOUT.md section 10). The writer holds an OFD write
 * lock over the whole file from before the file is linked under its name until it exits; the
 * kernel drops it the instant the writer dies, so pid reuse cannot fool the test. F_OFD_GETLK
 * only asks: it takes no lock, so a probing reader can never stand in a writer's way. A file is
 * never locked by a second writer (each writer builds its own), so a lock seen here is the lock
 * of the writer that published this file's data. Any error but EINTR counts as not alive. */
static int probe_alive(Segment *s) {
    uint32_t state = __atomic_load_n((uint32_t *)(s->base + s->L.hdr_state), __ATOMIC_ACQUIRE);
    if (state != STATE_RUNNING) return 0;
    if (s->lock_fd < 0) return 1;
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_pid = 0};
    int rc;
    do rc = fcntl(s->lock_fd, F_OFD_GETLK, &fl);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 || fl.l_type == F_UNLCK || !owner_alive(s)) return 0;
    /* the verdict is about the writer of the data copied before it only if state is still RUNNING:
     * a successor stores RETIRED into this file before it links its own */
    return __atomic_load_n((uint32_t *)(s->base + s->L.hdr_state), __ATOMIC_ACQUIRE) == STATE_RUNNING;
}

/* 1 when the heartbeat is older than the writer's published stale_after_ms (a stopped, frozen or
 * starved writer: the process holds its lock but publishes nothing). */
static int heartbeat_stale(const Segment *s) {
    uint32_t limit_ms = __atomic_load_n((uint32_t *)(s->base + s->L.hdr_stale_after_ms), __ATOMIC_RELAXED);
    if (limit_ms == 0) return 0;
    int64_t beat = __atomic_load_n((int64_t *)(s->base + s->L.hdr_heartbeat_ns), __ATOMIC_RELAXED);
    return ldc_clock_ns(CLOCK_REALTIME_COARSE) - beat > (int64_t)limit_ms * 1000000LL;
}

static int alive_cached(Segment *s) {
    uint32_t state = __atomic_load_n((uint32_t *)(s->base + s->L.hdr_state), __ATOMIC_ACQUIRE);
    if (state != STATE_RUNNING || !owner_alive(s)) return 0;
    int64_t now = ldc_clock_ns(CLOCK_MONOTONIC_COARSE);
    if (now >= s->next_probe_ns || !s->last_probe_alive) { /* only ALIVE is reused (LAYOUT.md 10) */
        s->last_probe_alive = probe_alive(s);
        s->next_probe_ns = now + LIVENESS_PROBE_INTERVAL_NS;
    }
    return s->last_probe_alive;
}

/* ---------------------------------------------------------------- read */

/* Copy one slot into dst under the seqlock. Returns 1 with a validated copy, 0 when the slot
 * stayed odd (or kept changing) for READ_SPIN_LIMIT_NS. */
static int seq_copy(Segment *s, Py_ssize_t slot, SlotBuffer *b, int with_message, Py_ssize_t *nb_out,
                    Py_ssize_t *na_out) {
    const Layout *L = &s->L;
    char *dst = b->mem;
    char *src = slot_ptr(s, slot);
    uint64_t *seq = slot_seq(s, src);
    int64_t deadline = 0;
    for (unsigned attempt = 1;; attempt++) {
        uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (!(s1 & 1)) {
            memcpy(dst, src, (size_t)L->slot_header_size);
            /* counts read inside the window are garbage until validated: clamp before use */
            Py_ssize_t nb = U32(dst, L->s_n_bids), na = U32(dst, L->s_n_asks);
            if (nb > L->depth) nb = L->depth;
            if (na > L->depth) na = L->depth;
            /* a discarded copy still wrote these rows: remember them so they get zeroed */
            if (nb > b->dirty_nb) b->dirty_nb = nb;
            if (na > b->dirty_na) b->dirty_na = na;
            memcpy(dst + L->bids_offset, src + L->bids_offset, (size_t)(nb * LEVEL_SIZE));
            memcpy(dst + L->asks_offset, src + L->asks_offset, (size_t)(na * LEVEL_SIZE));
            if (with_message) memcpy(dst + L->message_offset, src + L->message_offset, (size_t)L->message_size);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            uint64_t s2 = __atomic_load_n(seq, __ATOMIC_RELAXED);
            if (s1 == s2) {
                U64(dst, L->s_seq) = s1;
                *nb_out = nb;
                *na_out = na;
                return 1;
            }
        }
        s->retries++;
        ldc_cpu_relax();
        if (attempt % SPIN_CHECK_EVERY == 0) {
            int64_t now = ldc_clock_ns(CLOCK_MONOTONIC);
            if (deadline == 0)
                deadline = now + READ_SPIN_LIMIT_NS;
            else if (now >= deadline)
                return 0;
        }
    }
}

static void zero_tail(SlotBuffer *b, Py_ssize_t nb, Py_ssize_t na) {
    if (nb < b->dirty_nb)
        memset(b->mem + b->L.bids_offset + nb * LEVEL_SIZE, 0, (size_t)((b->dirty_nb - nb) * LEVEL_SIZE));
    if (na < b->dirty_na)
        memset(b->mem + b->L.asks_offset + na * LEVEL_SIZE, 0, (size_t)((b->dirty_na - na) * LEVEL_SIZE));
    b->nb = b->dirty_nb = nb;
    b->na = b->dirty_na = na;
}

static int check_buffer(Segment *s, PyObject *o) {
    if (!PyObject_TypeCheck(o, &SlotBufferType)) {
        PyErr_Format(PyExc_TypeError, "out must be a SlotBuffer, got %s", Py_TYPE(o)->tp_name);
        return -1;
    }
    SlotBuffer *b = (SlotBuffer *)o;
    if (b->L.slot_size != s->L.slot_size || b->L.depth != s->L.depth || b->L.bids_offset != s->L.bids_offset) {
        PyErr_Format(PyExc_ValueError, "buffer made for depth %zd slot size %zd, segment has depth %zd slot size %zd",
                     b->L.depth, b->L.slot_size, s->L.depth, s->L.slot_size);
        return -1;
    }
    return 0;
}

static long read_checked(Segment *s, Py_ssize_t slot, uint64_t gen, SlotBuffer *b, int with_message) {
    Py_ssize_t nb = 0, na = 0;
    if (!seq_copy(s, slot, b, with_message, &nb, &na)) {
        s->next_probe_ns = 0; /* stuck odd: a dead writer is the likely cause, probe now */
        return alive_cached(s) ? READ_CONTENDED : READ_WRITER_DEAD_NO_COPY;
    }
    zero_tail(b, nb, na);
    if (U64(b->mem, s->L.s_gen) != gen) return READ_GONE;
    if (!alive_cached(s)) return READ_WRITER_DEAD;
    if (heartbeat_stale(s)) U32(b->mem, s->L.s_status) |= STATUS_STALE; /* the reader's own judgement */
    uint32_t status = U32(b->mem, s->L.s_status);
    return (status & IN_SYNC_MASK) == STATUS_SYNCED ? READ_OK : READ_OUT_OF_SYNC;
}

/* read(slot, gen, out, with_message=False) -> result code (READ_*) */
static PyObject *Segment_read(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "read(slot, gen, out, with_message=False)");
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(args[0]);
    if (slot == -1 && PyErr_Occurred()) return NULL;
    uint64_t gen = PyLong_AsUnsignedLongLong(args[1]);
    if (gen == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    int with_message = nargs == 4 ? PyObject_IsTrue(args[3]) : 0;
    if (with_message < 0 || check_slot(s, slot) < 0 || check_buffer(s, args[2]) < 0) return NULL;
    return PyLong_FromLong(read_checked(s, slot, gen, (SlotBuffer *)args[2], with_message));
}

/* read_symbol(symbol, out) -> result code; the hot path of Reader.read_into: one dict lookup in
 * the directory cache given to set_slots(), then read(). READ_UNKNOWN when not cached. */
static PyObject *Segment_read_symbol(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_symbol(symbol, out)");
        return NULL;
    }
    if (check_open(s) < 0 || check_buffer(s, args[1]) < 0) return NULL;
    if (s->slots == NULL) return PyLong_FromLong(READ_UNKNOWN);
    PyObject *entry = PyDict_GetItemWithError(s->slots, args[0]); /* borrowed */
    if (entry == NULL) return PyErr_Occurred() ? NULL : PyLong_FromLong(READ_UNKNOWN);
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "directory cache entries must be (slot, gen) tuples");
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0));
    uint64_t gen = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(entry, 1));
    if (PyErr_Occurred() || check_slot(s, slot) < 0) return NULL;
    return PyLong_FromLong(read_checked(s, slot, gen, (SlotBuffer *)args[1], 0));
}

/* set_slots(dict): the directory cache read_symbol() looks symbols up in (kept by reference) */
static PyObject *Segment_set_slots(Segment *s, PyObject *arg) {
    if (!PyDict_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "set_slots needs a dict");
        return NULL;
    }
    Py_INCREF(arg);
    Py_XSETREF(s->slots, arg);
    Py_RETURN_NONE;
}

/* read_directory() -> list of (slot, symbol bytes, gen) for active entries, or None on contention */
static PyObject *Segment_read_directory(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (check_open(s) < 0) return NULL;
    const Layout *L = &s->L;
    size_t n = (size_t)(L->capacity * L->directory_entry_size);
    char *copy = PyMem_Malloc(n);
    if (copy == NULL) return PyErr_NoMemory();
    uint64_t *seq = (uint64_t *)(s->base + L->hdr_dir_seq);
    int ok = 0;
    int64_t deadline = ldc_clock_ns(CLOCK_MONOTONIC) + READ_SPIN_LIMIT_NS;
    /* a minimum of attempts, so a reader descheduled past the deadline still gets to try */
    for (unsigned attempt = 0; !ok && (attempt < MIN_READ_ATTEMPTS || ldc_clock_ns(CLOCK_MONOTONIC) < deadline); attempt++) {
        uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            ldc_cpu_relax();
            continue;
        }
        memcpy(copy, s->base + L->directory_offset, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        ok = __atomic_load_n(seq, __ATOMIC_RELAXED) == s1;
    }
    if (!ok) {
        PyMem_Free(copy);
        Py_RETURN_NONE;
    }
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < L->capacity; i++) {
        char *e = copy + i * L->directory_entry_size;
        uint64_t gen = U64(e, L->dir_gen);
        if (gen == 0) continue;
        size_t len = strnlen(e + L->dir_symbol, (size_t)L->dir_symbol_size);
        PyObject *t = Py_BuildValue("(ny#K)", i, e + L->dir_symbol, (Py_ssize_t)len, (unsigned long long)gen);
        if (t == NULL || PyList_Append(out, t) < 0) Py_CLEAR(out);
        Py_XDECREF(t);
    }
    PyMem_Free(copy);
    return out;
}

static PyObject *Segment_probe(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (check_open(s) < 0) return NULL;
    s->last_probe_alive = probe_alive(s);
    s->next_probe_ns = ldc_clock_ns(CLOCK_MONOTONIC_COARSE) + LIVENESS_PROBE_INTERVAL_NS;
    return PyBool_FromLong(s->last_probe_alive);
}

static int offset_arg(Segment *s, PyObject *o, Py_ssize_t size, Py_ssize_t *off) {
    *off = PyLong_AsSsize_t(o);
    if (*off == -1 && PyErr_Occurred()) return -1;
    if (*off < 0 || *off % size || *off + size > s->L.segment_size) {
        PyErr_Format(PyExc_ValueError, "offset %zd is not an aligned %zd-byte field inside the segment", *off, size);
        return -1;
    }
    return 0;
}

/* load_u64(offset) / load_u32(offset): acquire loads of single header or slot words */
static PyObject *Segment_load_u64(Segment *s, PyObject *arg) {
    Py_ssize_t off;
    if (check_open(s) < 0 || offset_arg(s, arg, 8, &off) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n((uint64_t *)(s->base + off), __ATOMIC_ACQUIRE));
}

static PyObject *Segment_load_u32(Segment *s, PyObject *arg) {
    Py_ssize_t off;
    if (check_open(s) < 0 || offset_arg(s, arg, 4, &off) < 0) return NULL;
    return PyLong_FromUnsignedLong(__atomic_load_n((uint32_t *)(s->base + off), __ATOMIC_ACQUIRE));
}

/* wait(expected, timeout_s) -> current notify value. Sleeps on the notify futex word while it
 * still equals `expected`. Nothing is written anywhere: the writer wakes after every batch. */
static PyObject *Segment_wait(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wait(expected, timeout_s)");
        return NULL;
    }
    if (check_open(s) < 0) return NULL;
    unsigned long expected = PyLong_AsUnsignedLong(args[0]);
    if (expected == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    double timeout = PyFloat_AsDouble(args[1]);
    if (timeout == -1.0 && PyErr_Occurred()) return NULL;
    if (timeout < 0) timeout = 0;
    struct timespec ts = {(time_t)timeout, (long)((timeout - (double)(time_t)timeout) * 1e9)};
    uint32_t *word = (uint32_t *)(s->base + s->L.hdr_notify);
    Py_BEGIN_ALLOW_THREADS
    /* shared futex (no FUTEX_PRIVATE_FLAG): the word lives in a file mapping of several processes */
    syscall(SYS_futex, word, FUTEX_WAIT, (uint32_t)expected, &ts, NULL, 0);
    Py_END_ALLOW_THREADS
    return PyLong_FromUnsignedLong(__atomic_load_n(word, __ATOMIC_ACQUIRE));
}

/* ---------------------------------------------------------------- write */

static inline uint64_t write_begin(char *p, const Layout *L) {
    uint64_t *seq = (uint64_t *)(p + L->s_seq);
    uint64_t s = __atomic_load_n(seq, __ATOMIC_RELAXED);
    s |= 1; /* already odd after a writer died mid-write: stay odd */
    __atomic_store_n(seq, s, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return s;
}

static inline void write_end(char *p, const Layout *L, uint64_t odd) {
    __atomic_store_n((uint64_t *)(p + L->s_seq), odd + 1, __ATOMIC_RELEASE);
}

static PyObject *kw_names[9]; /* interned publish keywords */
static const char *kw_strs[9] = {"update_id", "event_time_ms", "recv_time_ns", "status", "bids",
                                 "asks", "n_bids", "n_asks", "copy_levels"};
enum { KW_UPDATE_ID, KW_EVENT_TIME, KW_RECV_TIME, KW_STATUS, KW_BIDS, KW_ASKS, KW_NB, KW_NA, KW_COPY, KW_N };

static int kw_index(PyObject *name) {
    for (int i = 0; i < KW_N; i++)
        if (name == kw_names[i]) return i;
    for (int i = 0; i < KW_N; i++)
        if (PyUnicode_Compare(name, kw_names[i]) == 0) return i;
    return -1;
}

static int get_levels(PyObject *o, const char *side, Py_ssize_t n, Py_buffer *view) {
    if (PyObject_GetBuffer(o, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (view->itemsize != 8 || strcmp(f, "d") != 0 || view->ndim != 2 || view->shape[1] != 2 ||
        view->shape[0] < n) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous (>= %zd, 2) float64 array, got format %s ndim %d",
                     side, n, view->format ? view->format : "B", view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* publish(slot, *, update_id, event_time_ms, recv_time_ns, status, bids, asks, n_bids, n_asks,
 *         copy_levels=True) */
/* The one slot write of a book: ids, times, status, the updates counter and (copy_levels) the top
 * levels, between an odd and an even seq. bids / asks: nb and na (price, qty) pairs of doubles, best
 * first. Shared by Segment.publish and the C API that ldc._fastbook's hot path calls (ldc_seqlock_api.h). */
static int publish_slot(Segment *s, Py_ssize_t slot, int64_t update_id, int64_t event_ms, int64_t recv_ns,
                        uint32_t status, int copy, const double *bids, Py_ssize_t nb, const double *asks,
                        Py_ssize_t na) {
    if (check_slot(s, slot) < 0 || check_writable(s) < 0) return -1;
    if (copy && (nb < 0 || na < 0 || nb > s->L.depth || na > s->L.depth)) {
        PyErr_Format(PyExc_ValueError, "level counts must be 0..%zd, got n_bids %zd n_asks %zd", s->L.depth, nb, na);
        return -1;
    }
    const Layout *L = &s->L;
    char *p = slot_ptr(s, slot);
    if (U64(p, L->s_gen) == 0) {
        PyErr_Format(PyExc_ValueError, "slot %zd holds no market", slot);
        return -1;
    }
    int64_t now = ldc_clock_ns(CLOCK_REALTIME);
    uint64_t odd = write_begin(p, L);
    I64(p, L->s_update_id) = update_id;
    I64(p, L->s_event_time_ms) = event_ms;
    I64(p, L->s_recv_time_ns) = recv_ns;
    I64(p, L->s_publish_time_ns) = now;
    U32(p, L->s_status) = status;
    U64(p, L->s_counter[0]) += 1;
    if (copy) {
        U32(p, L->s_n_bids) = (uint32_t)nb;
        U32(p, L->s_n_asks) = (uint32_t)na;
        memcpy(p + L->bids_offset, bids, (size_t)(nb * LEVEL_SIZE));
        memcpy(p + L->asks_offset, asks, (size_t)(na * LEVEL_SIZE));
    }
    write_end(p, L, odd);
    return 0;
}

/* notify(): bump the futex word and FUTEX_WAKE. Layout 1.x skipped the wake when a reader-written
 * waiter count was 0; a file readers can write lets them SIGBUS the writer (issue 14), and a wake
 * nobody waits for is one syscall per batch (bench_read.py: notify_no_waiter_ns).
 *
 * 2.2: also notify_paced, when notify_paced_us (the header's, written once) have passed since its
 * last increment: a waiter that coalesces (the NATS relay) sleeps on it and is woken at most once a
 * window by the writer's own publish, where a timer's wake-up costs it ~4x a futex's on this kind of
 * guest (issue 16, docs/FANOUT.md). The batch that finds the window not yet over does not wake it:
 * paced waiters wait with a timeout (LAYOUT.md section 11). */
static inline void bump_and_wake(uint32_t *word) {
    __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0); /* shared: a file mapping */
}

static int notify_segment(Segment *s) {
    if (check_open(s) < 0 || check_writable(s) < 0) return -1;
    bump_and_wake((uint32_t *)(s->base + s->L.hdr_notify));
    uint32_t paced_us = __atomic_load_n((uint32_t *)(s->base + s->L.hdr_notify_paced_us), __ATOMIC_RELAXED);
    if (paced_us) {
        int64_t now = ldc_clock_ns(CLOCK_MONOTONIC);
        if (now - s->last_paced_ns >= (int64_t)paced_us * 1000) {
            s->last_paced_ns = now;
            bump_and_wake((uint32_t *)(s->base + s->L.hdr_notify_paced));
        }
    }
    return 0;
}

static PyObject *Segment_publish(Segment *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *kw[KW_N] = {NULL};
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "publish takes 1 positional argument (slot), got %zd", nargs);
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        int k = kw_index(PyTuple_GET_ITEM(kwnames, i));
        if (k < 0) {
            PyErr_Format(PyExc_TypeError, "publish got an unexpected keyword %R", PyTuple_GET_ITEM(kwnames, i));
            return NULL;
        }
        kw[k] = args[nargs + i];
    }
    int copy = kw[KW_COPY] ? PyObject_IsTrue(kw[KW_COPY]) : 1;
    if (copy < 0) return NULL;
    for (int k = 0; k < (copy ? KW_COPY : KW_BIDS); k++) {
        if (kw[k] == NULL) {
            PyErr_Format(PyExc_TypeError, "publish missing keyword %s", kw_strs[k]);
            return NULL;
        }
    }
    Py_ssize_t slot = PyLong_AsSsize_t(args[0]);
    if ((slot == -1 && PyErr_Occurred()) || check_slot(s, slot) < 0 || check_writable(s) < 0) return NULL;
    long long update_id = PyLong_AsLongLong(kw[KW_UPDATE_ID]);
    long long event_ms = PyLong_AsLongLong(kw[KW_EVENT_TIME]);
    long long recv_ns = PyLong_AsLongLong(kw[KW_RECV_TIME]);
    unsigned long status = PyLong_AsUnsignedLong(kw[KW_STATUS]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t nb = 0, na = 0;
    Py_buffer bv = {0}, av = {0};
    if (copy) {
        nb = PyLong_AsSsize_t(kw[KW_NB]);
        na = PyLong_AsSsize_t(kw[KW_NA]);
        if (PyErr_Occurred()) return NULL;
        if (nb < 0 || na < 0 || nb > s->L.depth || na > s->L.depth) {
            PyErr_Format(PyExc_ValueError, "level counts must be 0..%zd, got n_bids %zd n_asks %zd", s->L.depth, nb, na);
            return NULL;
        }
        if (get_levels(kw[KW_BIDS], "bids", nb, &bv) < 0) return NULL;
        if (get_levels(kw[KW_ASKS], "asks", na, &av) < 0) {
            PyBuffer_Release(&bv);
            return NULL;
        }
    }
    int rc = publish_slot(s, slot, update_id, event_ms, recv_ns, (uint32_t)status, copy, bv.buf, nb, av.buf, na);
    if (copy) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&av);
    }
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- C API (ldc_seqlock_api.h) */

static int capi_is_segment(PyObject *obj) { return PyObject_TypeCheck(obj, &SegmentType); }

/* obj as a Segment, or NULL with a TypeError naming what was found */
static Segment *segment_arg(PyObject *obj) {
    if (!capi_is_segment(obj)) {
        PyErr_Format(PyExc_TypeError, "expected a Segment, found %s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return (Segment *)obj;
}

static Py_ssize_t capi_depth(PyObject *obj) {
    Segment *s = segment_arg(obj);
    return s == NULL ? -1 : s->L.depth;
}

static int capi_publish(PyObject *obj, Py_ssize_t slot, int64_t update_id, int64_t event_ms, int64_t recv_ns,
                        uint32_t status, int copy, const double *bids, Py_ssize_t nb, const double *asks,
                        Py_ssize_t na) {
    Segment *s = segment_arg(obj);
    return s == NULL ? -1 : publish_slot(s, slot, update_id, event_ms, recv_ns, status, copy, bids, nb, asks, na);
}

static int capi_notify(PyObject *obj) {
    Segment *s = segment_arg(obj);
    return s == NULL ? -1 : notify_segment(s);
}

static const LdcSeqlockAPI seqlock_api = {
    .version = LDC_SEQLOCK_API_VERSION,
    .is_segment = capi_is_segment,
    .depth = capi_depth,
    .publish = capi_publish,
    .notify = capi_notify,
};

/* write_status(slot, status, message: bytes | None) -- None keeps the message */
static PyObject *Segment_write_status(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "write_status(slot, status, message)");
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(args[0]);
    if ((slot == -1 && PyErr_Occurred()) || check_slot(s, slot) < 0 || check_writable(s) < 0) return NULL;
    unsigned long status = PyLong_AsUnsignedLong(args[1]);
    if (status == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    const char *msg = NULL;
    Py_ssize_t len = 0;
    if (args[2] != Py_None && PyBytes_AsStringAndSize(args[2], (char **)&msg, &len) < 0) return NULL;
    if (len >= s->L.message_size) {
        PyErr_Format(PyExc_ValueError, "message is %zd bytes, at most %zd fit", len, s->L.message_size - 1);
        return NULL;
    }
    const Layout *L = &s->L;
    char *p = slot_ptr(s, slot);
    int64_t now = ldc_clock_ns(CLOCK_REALTIME);
    uint64_t odd = write_begin(p, L);
    U32(p, L->s_status) = (uint32_t)status;
    I64(p, L->s_status_time_ns) = now;
    if (msg != NULL) {
        memcpy(p + L->message_offset, msg, (size_t)len);
        memset(p + L->message_offset + len, 0, (size_t)(L->message_size - len));
    }
    write_end(p, L, odd);
    Py_RETURN_NONE;
}

/* bump(slot, counter_index, n) */
static PyObject *Segment_bump(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "bump(slot, counter, n)");
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(args[0]);
    Py_ssize_t counter = PyLong_AsSsize_t(args[1]);
    unsigned long long n = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred() || check_slot(s, slot) < 0 || check_writable(s) < 0) return NULL;
    if (counter < 0 || counter >= N_COUNTERS) {
        PyErr_Format(PyExc_IndexError, "counter %zd out of range 0..%d", counter, N_COUNTERS - 1);
        return NULL;
    }
    const Layout *L = &s->L;
    char *p = slot_ptr(s, slot);
    uint64_t odd = write_begin(p, L);
    U64(p, L->s_counter[counter]) += n;
    write_end(p, L, odd);
    Py_RETURN_NONE;
}

/* reset_slot(slot, gen, status, message: bytes, keep_levels) -- whole-slot rewrite used for add,
 * remove and takeover repair. keep_levels keeps levels, ids, times and counters (repair of an even
 * slot); otherwise the payload is zeroed, update_id is -1 and counts are 0. */
static PyObject *Segment_reset_slot(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "reset_slot(slot, gen, status, message, keep_levels)");
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(args[0]);
    unsigned long long gen = PyLong_AsUnsignedLongLong(args[1]);
    unsigned long status = PyLong_AsUnsignedLong(args[2]);
    int keep = PyObject_IsTrue(args[4]);
    if (PyErr_Occurred() || keep < 0 || check_slot(s, slot) < 0 || check_writable(s) < 0) return NULL;
    const char *msg;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(args[3], (char **)&msg, &len) < 0) return NULL;
    if (len >= s->L.message_size) {
        PyErr_Format(PyExc_ValueError, "message is %zd bytes, at most %zd fit", len, s->L.message_size - 1);
        return NULL;
    }
    const Layout *L = &s->L;
    char *p = slot_ptr(s, slot);
    uint64_t odd = write_begin(p, L);
    if (!keep) {
        memset(p + 8, 0, (size_t)(L->slot_size - 8)); /* everything after seq */
        I64(p, L->s_update_id) = -1;
    }
    U64(p, L->s_gen) = gen;
    U32(p, L->s_status) = (uint32_t)status;
    I64(p, L->s_status_time_ns) = ldc_clock_ns(CLOCK_REALTIME);
    memcpy(p + L->message_offset, msg, (size_t)len);
    memset(p + L->message_offset + len, 0, (size_t)(L->message_size - len));
    write_end(p, L, odd);
    Py_RETURN_NONE;
}

/* write_dir_entry(slot, symbol: bytes, gen, market_count_offset, market_count) under dir_seq */
static PyObject *Segment_write_dir_entry(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "write_dir_entry(slot, symbol, gen, count_offset, count)");
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(args[0]);
    unsigned long long gen = PyLong_AsUnsignedLongLong(args[2]);
    unsigned long count = PyLong_AsUnsignedLong(args[4]);
    Py_ssize_t count_off;
    if (PyErr_Occurred() || check_slot(s, slot) < 0 || check_writable(s) < 0 ||
        offset_arg(s, args[3], 4, &count_off) < 0)
        return NULL;
    const char *sym;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(args[1], (char **)&sym, &len) < 0) return NULL;
    const Layout *L = &s->L;
    if (len >= L->dir_symbol_size) {
        PyErr_Format(PyExc_ValueError, "symbol is %zd bytes, at most %zd fit", len, L->dir_symbol_size - 1);
        return NULL;
    }
    char *e = s->base + L->directory_offset + slot * L->directory_entry_size;
    uint64_t *seq = (uint64_t *)(s->base + L->hdr_dir_seq);
    uint64_t odd = __atomic_load_n(seq, __ATOMIC_RELAXED) | 1;
    __atomic_store_n(seq, odd, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memset(e, 0, (size_t)L->directory_entry_size);
    memcpy(e + L->dir_symbol, sym, (size_t)len);
    U64(e, L->dir_gen) = gen;
    U32(s->base, count_off) = (uint32_t)count;
    __atomic_store_n(seq, odd + 1, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

/* repair_dir_seq(): make an odd directory counter even (takeover after a writer died mid-change) */
static PyObject *Segment_repair_dir_seq(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (check_open(s) < 0 || check_writable(s) < 0) return NULL;
    uint64_t *seq = (uint64_t *)(s->base + s->L.hdr_dir_seq);
    uint64_t v = __atomic_load_n(seq, __ATOMIC_RELAXED);
    if (v & 1) __atomic_store_n(seq, v + 1, __ATOMIC_RELEASE);
    return PyBool_FromLong(v & 1);
}

/* store_u64(offset, value) / store_u32(offset, value): release stores of single words */
static PyObject *Segment_store_u64(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t off;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "store_u64(offset, value)");
        return NULL;
    }
    if (check_open(s) < 0 || check_writable(s) < 0 || offset_arg(s, args[0], 8, &off) < 0) return NULL;
    unsigned long long v = PyLong_AsUnsignedLongLong(args[1]);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    __atomic_store_n((uint64_t *)(s->base + off), (uint64_t)v, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

/* add_u64(offset, delta[, offset, delta ...]): atomic adds to single u64 words (release), modulo 2^64; the
 * feeder-stats counters from any thread with no lock (LAYOUT.md section 16). Every pair is checked before
 * any word changes. */
static PyObject *Segment_add_u64(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    enum { MAX_PAIRS = 8 };
    Py_ssize_t offs[MAX_PAIRS];
    unsigned long long deltas[MAX_PAIRS];
    if (nargs < 2 || nargs % 2 != 0 || nargs > 2 * MAX_PAIRS) {
        PyErr_SetString(PyExc_TypeError, "add_u64(offset, delta[, offset, delta ...]): 1 to 8 pairs");
        return NULL;
    }
    if (check_open(s) < 0 || check_writable(s) < 0) return NULL;
    for (Py_ssize_t i = 0; i < nargs / 2; i++) {
        if (offset_arg(s, args[2 * i], 8, &offs[i]) < 0) return NULL;
        deltas[i] = PyLong_AsUnsignedLongLong(args[2 * i + 1]);
        if (deltas[i] == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs / 2; i++) {
        __atomic_fetch_add((uint64_t *)(s->base + offs[i]), (uint64_t)deltas[i], __ATOMIC_RELEASE);
    }
    Py_RETURN_NONE;
}

static PyObject *Segment_store_u32(Segment *s, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t off;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "store_u32(offset, value)");
        return NULL;
    }
    if (check_open(s) < 0 || check_writable(s) < 0 || offset_arg(s, args[0], 4, &off) < 0) return NULL;
    unsigned long v = PyLong_AsUnsignedLong(args[1]);
    if (v == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    __atomic_store_n((uint32_t *)(s->base + off), (uint32_t)v, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

/* heartbeat(): heartbeat_ns := CLOCK_REALTIME now */
static PyObject *Segment_heartbeat(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (check_open(s) < 0 || check_writable(s) < 0) return NULL;
    __atomic_store_n((int64_t *)(s->base + s->L.hdr_heartbeat_ns), ldc_clock_ns(CLOCK_REALTIME), __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *Segment_notify(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (notify_segment(s) < 0) return NULL;
    Py_RETURN_NONE;
}

static void *owner_main(void *arg) {
    OwnerLock *o = arg;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init(o->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc == 0) rc = pthread_mutex_lock(o->mutex);
    /* readers find the TID at offset 0 (glibc's __lock); refuse a C library that puts it elsewhere */
    if (rc == 0 && (*(volatile uint32_t *)o->mutex & FUTEX_TID_MASK_) != (uint32_t)syscall(SYS_gettid)) rc = ENOTSUP;
    o->result = rc;
    char c = 0;
    if (write(o->ready[1], &c, 1) != 1) return NULL;
    if (rc != 0) return NULL;
    ssize_t n;
    do n = read(o->stop[0], &c, 1);
    while (n < 0 && errno == EINTR);
    pthread_mutex_unlock(o->mutex); /* a clean stop: the word goes back to 0 */
    return NULL;
}

static void owner_free(OwnerLock *o) {
    if (o->started) {
        char c = 0;
        if (write(o->stop[1], &c, 1) == 1) pthread_join(o->thread, NULL);
    }
    for (int i = 0; i < 2; i++) {
        if (o->ready[i] >= 0) close(o->ready[i]);
        if (o->stop[i] >= 0) close(o->stop[i]);
    }
    free(o);
}

/* hold_owner_lock(): lock the header's writer_lock from a thread of its own, until close() */
static PyObject *Segment_hold_owner_lock(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (check_open(s) < 0 || check_writable(s) < 0) return NULL;
    if (s->owner != NULL) Py_RETURN_NONE;
    if (s->L.hdr_writer_lock % 8 || (Py_ssize_t)sizeof(pthread_mutex_t) > 64) {
        PyErr_SetString(PyExc_ValueError, "writer_lock must be 8-aligned and hold a pthread_mutex_t");
        return NULL;
    }
    OwnerLock *o = calloc(1, sizeof *o);
    if (o == NULL) return PyErr_NoMemory();
    o->ready[0] = o->ready[1] = o->stop[0] = o->stop[1] = -1;
    o->mutex = (pthread_mutex_t *)(s->base + s->L.hdr_writer_lock);
    int rc = 0;
    char c;
    Py_BEGIN_ALLOW_THREADS
    if (pipe2(o->ready, O_CLOEXEC) < 0 || pipe2(o->stop, O_CLOEXEC) < 0) rc = errno;
    else if ((rc = pthread_create(&o->thread, NULL, owner_main, o)) == 0) {
        o->started = 1;
        if (read(o->ready[0], &c, 1) != 1) rc = EIO;
        else rc = o->result;
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        owner_free(o);
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    s->owner = o;
    Py_RETURN_NONE;
}

static void owner_release(Segment *s) {
    if (s->owner != NULL) {
        OwnerLock *o = s->owner;
        s->owner = NULL;
        Py_BEGIN_ALLOW_THREADS
        owner_free(o);
        Py_END_ALLOW_THREADS
    }
}

/* owner_alive() -> True while a live writer thread holds the robust lock */
static PyObject *Segment_owner_alive(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (check_open(s) < 0) return NULL;
    return PyBool_FromLong(owner_alive(s));
}

static PyObject *Segment_close(Segment *s, PyObject *Py_UNUSED(ignored)) {
    owner_release(s); /* before the mapping goes: the kernel walks the robust list through it */
    Py_CLEAR(s->slots);
    if (s->base != NULL) {
        s->base = NULL;
        PyBuffer_Release(&s->view);
    }
    Py_RETURN_NONE;
}

/* Segment(mapping, layout, *, writable, lock_fd=-1) */
static int Segment_init(Segment *s, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"mapping", "layout", "writable", "lock_fd", NULL};
    PyObject *mapping, *layout;
    int writable = 0, lock_fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$pi", kwlist, &mapping, &layout, &writable, &lock_fd))
        return -1;
    if (s->base != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Segment already initialised");
        return -1;
    }
    if (layout_load(layout, &s->L) < 0) return -1;
    if (PyObject_GetBuffer(mapping, &s->view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) return -1;
    if (layout_check(&s->L, s->view.len) < 0 || ((uintptr_t)s->view.buf % 128) != 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "mapping is not 128-byte aligned");
        PyBuffer_Release(&s->view);
        return -1;
    }
    s->base = s->view.buf;
    s->writable = writable;
    s->lock_fd = lock_fd;
    s->next_probe_ns = 0;
    s->last_probe_alive = 1;
    return 0;
}

static void Segment_dealloc(Segment *s) {
    Py_XDECREF(Segment_close(s, NULL));
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* stale() -> True when the heartbeat is older than the header's stale_after_ms */
static PyObject *Segment_stale(Segment *s, PyObject *Py_UNUSED(ignored)) {
    if (check_open(s) < 0) return NULL;
    return PyBool_FromLong(heartbeat_stale(s));
}

static PyObject *Segment_retries(Segment *s, void *Py_UNUSED(c)) { return PyLong_FromUnsignedLongLong(s->retries); }

static PyMethodDef Segment_methods[] = {
    {"read", (PyCFunction)(void (*)(void))Segment_read, METH_FASTCALL,
     "read(slot, gen, out, with_message=False) -> result code; copies one slot under the seqlock"},
    {"read_symbol", (PyCFunction)(void (*)(void))Segment_read_symbol, METH_FASTCALL,
     "read_symbol(symbol, out) -> result code, READ_UNKNOWN when the symbol is not in set_slots()"},
    {"set_slots", (PyCFunction)Segment_set_slots, METH_O, "set_slots({symbol: (slot, gen)}) for read_symbol"},
    {"read_directory", (PyCFunction)Segment_read_directory, METH_NOARGS,
     "read_directory() -> [(slot, symbol bytes, gen)] of active entries, or None on contention"},
    {"probe", (PyCFunction)Segment_probe, METH_NOARGS, "probe() -> True when a running writer holds the lock"},
    {"load_u64", (PyCFunction)Segment_load_u64, METH_O, "load_u64(offset) -> acquire load"},
    {"load_u32", (PyCFunction)Segment_load_u32, METH_O, "load_u32(offset) -> acquire load"},
    {"wait", (PyCFunction)(void (*)(void))Segment_wait, METH_FASTCALL,
     "wait(expected, timeout_s) -> notify word; sleeps while the word equals expected"},
    {"publish", (PyCFunction)(void (*)(void))Segment_publish, METH_FASTCALL | METH_KEYWORDS,
     "publish(slot, *, update_id, event_time_ms, recv_time_ns, status, bids, asks, n_bids, n_asks, "
     "copy_levels=True)"},
    {"write_status", (PyCFunction)(void (*)(void))Segment_write_status, METH_FASTCALL,
     "write_status(slot, status, message bytes or None)"},
    {"bump", (PyCFunction)(void (*)(void))Segment_bump, METH_FASTCALL, "bump(slot, counter, n)"},
    {"reset_slot", (PyCFunction)(void (*)(void))Segment_reset_slot, METH_FASTCALL,
     "reset_slot(slot, gen, status, message, keep_levels)"},
    {"write_dir_entry", (PyCFunction)(void (*)(void))Segment_write_dir_entry, METH_FASTCALL,
     "write_dir_entry(slot, symbol, gen, count_offset, count)"},
    {"repair_dir_seq", (PyCFunction)Segment_repair_dir_seq, METH_NOARGS, "make an odd dir_seq even"},
    {"store_u64", (PyCFunction)(void (*)(void))Segment_store_u64, METH_FASTCALL, "store_u64(offset, value)"},
    {"add_u64", (PyCFunction)(void (*)(void))Segment_add_u64, METH_FASTCALL, "add_u64(offset, delta[, offset, delta ...]): atomic adds"},
    {"store_u32", (PyCFunction)(void (*)(void))Segment_store_u32, METH_FASTCALL, "store_u32(offset, value)"},
    {"heartbeat", (PyCFunction)Segment_heartbeat, METH_NOARGS, "heartbeat_ns := now"},
    {"notify", (PyCFunction)Segment_notify, METH_NOARGS, "bump the futex word, wake waiters"},
    {"hold_owner_lock", (PyCFunction)Segment_hold_owner_lock, METH_NOARGS, "lock writer_lock from a thread of its own until close()"},
    {"owner_alive", (PyCFunction)Segment_owner_alive, METH_NOARGS, "owner_alive() -> True while the writer thread holds writer_lock"},
    {"stale", (PyCFunction)Segment_stale, METH_NOARGS, "stale() -> True when the heartbeat is older than stale_after_ms"},
    {"close", (PyCFunction)Segment_close, METH_NOARGS, "release the mapping; later calls raise"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Segment_getset[] = {
    {"retries", (getter)Segment_retries, NULL, "failed read attempts so far (seq odd or changed)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SegmentType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc.shm._seqlock.Segment",
    .tp_basicsize = sizeof(Segment),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Segment(mapping, layout, *, writable, lock_fd=-1): seqlock access to a mapped segment",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Segment_init,
    .tp_dealloc = (destructor)Segment_dealloc,
    .tp_methods = Segment_methods,
    .tp_getset = Segment_getset,
};

/* ---------------------------------------------------------------- SlotBuffer methods */

static PyObject *SlotBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *seg;
    if (PyTuple_GET_SIZE(args) < 1 || !PyObject_TypeCheck((seg = PyTuple_GET_ITEM(args, 0)), &SegmentType)) {
        PyErr_SetString(PyExc_TypeError, "SlotBuffer(segment) needs a Segment");
        return NULL;
    }
    (void)kwds;
    SlotBuffer *b = (SlotBuffer *)type->tp_alloc(type, 0);
    if (b == NULL) return NULL;
    b->L = ((Segment *)seg)->L;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (size_t)b->L.slot_size) != 0) {
        Py_DECREF(b);
        return PyErr_NoMemory();
    }
    memset(mem, 0, (size_t)b->L.slot_size);
    b->mem = mem;
    I64(b->mem, b->L.s_update_id) = -1;
    return (PyObject *)b;
}

static int SlotBuffer_init(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self; (void)args; (void)kwds;
    return 0;
}

static int SlotBuffer_traverse(SlotBuffer *b, visitproc visit, void *arg) {
    Py_VISIT(b->dict);
    return 0;
}

static int SlotBuffer_clear(SlotBuffer *b) {
    Py_CLEAR(b->dict);
    return 0;
}

static void SlotBuffer_dealloc(SlotBuffer *b) {
    PyObject_GC_UnTrack(b);
    SlotBuffer_clear(b);
    free(b->mem);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static int SlotBuffer_getbuffer(SlotBuffer *b, Py_buffer *view, int flags) {
    if (PyBuffer_FillInfo(view, (PyObject *)b, b->mem, b->L.slot_size, 1, flags) < 0) return -1;
    b->exports++;
    return 0;
}

static void SlotBuffer_releasebuffer(SlotBuffer *b, Py_buffer *Py_UNUSED(view)) { b->exports--; }

static PyBufferProcs SlotBuffer_as_buffer = {(getbufferproc)SlotBuffer_getbuffer,
                                             (releasebufferproc)SlotBuffer_releasebuffer};

#define GET_I64(name, field) \
    static PyObject *SlotBuffer_##name(SlotBuffer *b, void *c) { (void)c; return PyLong_FromLongLong(I64(b->mem, b->L.field)); }
#define GET_U64(name, field) \
    static PyObject *SlotBuffer_##name(SlotBuffer *b, void *c) { (void)c; return PyLong_FromUnsignedLongLong(U64(b->mem, b->L.field)); }
#define GET_U32(name, field) \
    static PyObject *SlotBuffer_##name(SlotBuffer *b, void *c) { (void)c; return PyLong_FromUnsignedLong(U32(b->mem, b->L.field)); }

GET_U64(seq, s_seq)
GET_U64(gen, s_gen)
GET_I64(update_id, s_update_id)
GET_I64(event_time_ms, s_event_time_ms)
GET_I64(recv_time_ns, s_recv_time_ns)
GET_I64(publish_time_ns, s_publish_time_ns)
GET_I64(status_time_ns, s_status_time_ns)
GET_U32(status, s_status)

/* counts clamped the same way as the copy, so they always index the copied rows */
static PyObject *SlotBuffer_n_bids(SlotBuffer *b, void *c) { (void)c; return PyLong_FromSsize_t(b->nb); }
static PyObject *SlotBuffer_n_asks(SlotBuffer *b, void *c) { (void)c; return PyLong_FromSsize_t(b->na); }

/* (update_id, event_time_ms, recv_time_ns, publish_time_ns, status, n_bids, n_asks) in one call */
static PyObject *SlotBuffer_fields(SlotBuffer *b, void *c) {
    (void)c;
    const Layout *L = &b->L;
    return Py_BuildValue("(LLLLknn)", (long long)I64(b->mem, L->s_update_id), (long long)I64(b->mem, L->s_event_time_ms),
                         (long long)I64(b->mem, L->s_recv_time_ns), (long long)I64(b->mem, L->s_publish_time_ns),
                         (unsigned long)U32(b->mem, L->s_status), b->nb, b->na);
}

static PyObject *SlotBuffer_counters(SlotBuffer *b, void *c) {
    (void)c;
    PyObject *t = PyTuple_New(N_COUNTERS);
    for (int i = 0; t != NULL && i < N_COUNTERS; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromUnsignedLongLong(U64(b->mem, b->L.s_counter[i])));
    return t;
}

static PyObject *SlotBuffer_message(SlotBuffer *b, void *c) {
    (void)c;
    const char *m = b->mem + b->L.message_offset;
    return PyBytes_FromStringAndSize(m, (Py_ssize_t)strnlen(m, (size_t)b->L.message_size));
}

static PyObject *SlotBuffer_best(SlotBuffer *b, void *c) {
    (void)c;
    const double *bid = (const double *)(b->mem + b->L.bids_offset);
    const double *ask = (const double *)(b->mem + b->L.asks_offset);
    PyObject *pb = b->nb ? Py_BuildValue("(dd)", bid[0], bid[1]) : Py_NewRef(Py_None);
    PyObject *pa = b->na ? Py_BuildValue("(dd)", ask[0], ask[1]) : Py_NewRef(Py_None);
    if (pb == NULL || pa == NULL) {
        Py_XDECREF(pb);
        Py_XDECREF(pa);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(2, pb, pa);
    Py_DECREF(pb);
    Py_DECREF(pa);
    return t;
}

static PyGetSetDef SlotBuffer_getset[] = {
    {"seq", (getter)SlotBuffer_seq, NULL, "slot seq of the validated copy (even)", NULL},
    {"gen", (getter)SlotBuffer_gen, NULL, "market generation", NULL},
    {"update_id", (getter)SlotBuffer_update_id, NULL, "exchange last update id (-1 before the first)", NULL},
    {"event_time_ms", (getter)SlotBuffer_event_time_ms, NULL, "exchange event time, ms since epoch", NULL},
    {"recv_time_ns", (getter)SlotBuffer_recv_time_ns, NULL, "feeder receive time, CLOCK_REALTIME ns", NULL},
    {"publish_time_ns", (getter)SlotBuffer_publish_time_ns, NULL, "publish time, CLOCK_REALTIME ns", NULL},
    {"status_time_ns", (getter)SlotBuffer_status_time_ns, NULL, "last set_status time, CLOCK_REALTIME ns", NULL},
    {"status", (getter)SlotBuffer_status, NULL, "status flags", NULL},
    {"n_bids", (getter)SlotBuffer_n_bids, NULL, "valid bid rows", NULL},
    {"n_asks", (getter)SlotBuffer_n_asks, NULL, "valid ask rows", NULL},
    {"fields", (getter)SlotBuffer_fields, NULL,
     "(update_id, event_time_ms, recv_time_ns, publish_time_ns, status, n_bids, n_asks)", NULL},
    {"counters", (getter)SlotBuffer_counters, NULL, "per-slot counters in layout.Counter order", NULL},
    {"message", (getter)SlotBuffer_message, NULL, "status message bytes (only after a read with_message)", NULL},
    {"best", (getter)SlotBuffer_best, NULL, "((bid price, qty) | None, (ask price, qty) | None)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SlotBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc.shm._seqlock.SlotBuffer",
    .tp_basicsize = sizeof(SlotBuffer),
    .tp_dictoffset = offsetof(SlotBuffer, dict),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "SlotBuffer(segment): a reader-owned, 64-byte aligned copy of one slot",
    .tp_new = SlotBuffer_new,
    .tp_init = SlotBuffer_init,
    .tp_traverse = (traverseproc)SlotBuffer_traverse,
    .tp_clear = (inquiry)SlotBuffer_clear,
    .tp_dealloc = (destructor)SlotBuffer_dealloc,
    .tp_getset = SlotBuffer_getset,
    .tp_as_buffer = &SlotBuffer_as_buffer,
};

/* ---------------------------------------------------------------- module */

/* load_acquire_u64(buffer, offset): the reader's first access to a segment (the magic), pairing
 * with the writer's release store of it, so the header fields read afterwards are complete. */
static PyObject *load_acquire_u64(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "load_acquire_u64(buffer, offset)");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (off < 0 || off % 8 || off + 8 > view.len || (uintptr_t)view.buf % 8) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "offset %zd is not an aligned u64 inside %zd bytes", off, view.len);
        return NULL;
    }
    uint64_t v = __atomic_load_n((uint64_t *)((char *)view.buf + off), __ATOMIC_ACQUIRE);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(v);
}

/* retire(buffer, state_offset, state, notify_offset): a successor's last word in its predecessor's
 * file, before it links its own: state := RETIRED (seq_cst, so it is visible before anything the
 * successor does next), then bump notify and wake its sleepers so they look at the name again. */
static PyObject *retire(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "retire(buffer, state_offset, state, notify_offset)");
        return NULL;
    }
    Py_ssize_t state_off = PyLong_AsSsize_t(args[1]), notify_off = PyLong_AsSsize_t(args[3]);
    unsigned long state = PyLong_AsUnsignedLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) return NULL;
    if (state_off < 0 || state_off % 4 || state_off + 4 > view.len || notify_off < 0 || notify_off % 4 ||
        notify_off + 4 > view.len || (uintptr_t)view.buf % 8) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "offsets %zd / %zd are not aligned u32s inside %zd bytes", state_off,
                     notify_off, view.len);
        return NULL;
    }
    uint32_t *word = (uint32_t *)((char *)view.buf + notify_off);
    __atomic_store_n((uint32_t *)((char *)view.buf + state_off), (uint32_t)state, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"retire", (PyCFunction)(void (*)(void))retire, METH_FASTCALL,
     "retire(buffer, state_offset, state, notify_offset): mark a predecessor's file and wake its readers"},
    {"load_acquire_u64", (PyCFunction)(void (*)(void))load_acquire_u64, METH_FASTCALL,
     "load_acquire_u64(buffer, offset) -> value (acquire load)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_seqlock",
    "Fenced seqlock slot write and read for ldc shared-memory segments (docs/LAYOUT.md).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__seqlock(void) {
    if (PyType_Ready(&SegmentType) < 0 || PyType_Ready(&SlotBufferType) < 0) return NULL;
    for (int i = 0; i < KW_N; i++) {
        kw_names[i] = PyUnicode_InternFromString(kw_strs[i]);
        if (kw_names[i] == NULL) return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Segment", (PyObject *)&SegmentType) < 0 ||
        PyModule_AddObjectRef(m, "SlotBuffer", (PyObject *)&SlotBufferType) < 0 ||
        PyModule_AddIntConstant(m, "READ_OK", READ_OK) < 0 ||
        PyModule_AddIntConstant(m, "READ_OUT_OF_SYNC", READ_OUT_OF_SYNC) < 0 ||
        PyModule_AddIntConstant(m, "READ_GONE", READ_GONE) < 0 ||
        PyModule_AddIntConstant(m, "READ_CONTENDED", READ_CONTENDED) < 0 ||
        PyModule_AddIntConstant(m, "READ_WRITER_DEAD", READ_WRITER_DEAD) < 0 ||
        PyModule_AddIntConstant(m, "READ_WRITER_DEAD_NO_COPY", READ_WRITER_DEAD_NO_COPY) < 0 ||
        PyModule_AddIntConstant(m, "READ_UNKNOWN", READ_UNKNOWN) < 0 ||
        PyModule_AddIntConstant(m, "IN_SYNC_MASK", IN_SYNC_MASK) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *api = PyCapsule_New((void *)&seqlock_api, LDC_SEQLOCK_API_CAPSULE, NULL);
    if (api == NULL || PyModule_AddObjectRef(m, "_C_API", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(api);
    return m;
}
