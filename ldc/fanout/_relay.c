/* The relay's per-update and per-send path (issue 16): find the origin's changed slots, copy each
 * under its seqlock, encode the entries and batches of the fan-out wire (docs/FANOUT.md, byte for
 * byte what ldc/fanout/codec.py's encode_entry / encode_batch / split_batches make), lay them out as
 * NATS `PUB <subject> <n>\r\n<payload>\r\n` frames, and (pump) send them on the connection's socket,
 * the loop thread asleep on the notify futex or the coalescing window with the GIL released.
 *
 * Reading: the origin is mapped read-only; every offset comes from Geometry.c_layout() (nothing is
 * hard-coded). The slot copy is the reader's protocol of ldc/shm/_seqlock.c (seq_copy): s1 := seq
 * (acquire), odd -> retry, copy, acquire fence, s2 := seq, equal -> valid; a slot that stays odd for
 * COPY_ATTEMPTS attempts is skipped this round and looked at again at the next (its seq word still
 * differs from the one last sent), so a writer that died mid-write costs no spin of milliseconds.
 * The copy carries the status the writer stored (the relay never adds the reader's STALE judgement:
 * Origin._stored_status's rule), and the status message.
 *
 * One thread calls everything (the relay's loop thread); `busy` guards against re-entry while the
 * GIL is released in pump(). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../shm/ldc_shm_inline.h"
#include "ldc_uring.h"

#define LEVEL_SIZE 16
#define SYMBOL_MAX 39          /* layout.SYMBOL_SIZE - 1 */
#define GROUP_MAX 63           /* layout.NAME_SIZE - 1 */
#define ENVELOPE_SIZE 24       /* codec.ENVELOPE: <4sBBHQQ */
#define WIRE_VERSION 2         /* codec.VERSION */
#define KIND_BATCH 2           /* codec.KIND_BATCH */
#define MAX_BATCH_ENTRIES 65535 /* codec.MAX_BATCH_ENTRIES */
#define COPY_ATTEMPTS 256      /* odd or changing this often: skipped this round */

enum { PUMP_SLICE = 0, PUMP_DIRECTORY = 1, PUMP_SHORT = 2, PUMP_ERROR = 3, PUMP_READABLE = 4 };

typedef struct {
    Py_ssize_t depth, capacity, slots_offset, slot_size, bids_offset, asks_offset, message_offset, message_size;
    Py_ssize_t slot_header_size, segment_size, hdr_notify, hdr_notify_paced, hdr_notify_paced_us, hdr_dir_seq;
    Py_ssize_t s_seq, s_gen, s_n_bids, s_n_asks;
} Layout;

typedef struct {
    Py_ssize_t slot;
    uint64_t gen;
    uint64_t sent;   /* seq word of the copy last sent (0: none yet) */
    uint64_t seq;    /* the relay's per-market sequence of the last entry */
    char symbol[SYMBOL_MAX + 1];
    Py_ssize_t symlen;
    char *last;      /* the last entry encoded (served to newcomers), last_len bytes; capacity entry_cap */
    Py_ssize_t last_len;
} Market;

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int have_view;
    char *base;
    Layout L;
    Market *m;
    Py_ssize_t n;
    Py_ssize_t entry_cap;        /* the largest entry this geometry can make */
    char *scratch;               /* one slot's copy */
    Py_ssize_t *changed;         /* indices of the markets encoded by the last scan */
    size_t *frame_end;           /* per frame of the last build: its end in out, and its entries */
    Py_ssize_t *frame_entries;
    Py_ssize_t n_frames;
    Py_ssize_t n_changed;
    char *out;                   /* frames or one payload being built */
    size_t out_len, out_cap;
    uint64_t epoch, batch_seq;
    char group[GROUP_MAX + 1];
    Py_ssize_t glen;
    char *subject;
    Py_ssize_t subject_len;
    uint64_t dir_seq;            /* the directory sequence set_markets() was given the markets at */
    int need_directory;          /* a slot's generation differed: the directory must be read again */
    int64_t next_ok_ns;          /* CLOCK_MONOTONIC: no scan before this after a send (the window) */
    int64_t paced_ns;            /* the origin's notify_paced_us in ns (LAYOUT.md 2.2); 0: its writer does not pace */
    uint32_t seen_paced;         /* notify_paced as loaded before the last scan */
    int64_t next_peek_ns;        /* paced waits: when to look at the socket next (a futex wait does not watch it) */
    Ring ring;                   /* paced sends and waits through io_uring (ldc_uring.h); fd -1: send() and futex() */
    int ring_state;              /* 0 not tried yet, 1 in use, -1 unavailable or turned off (ring = False) */
    int ring_errno;              /* why ring_open refused (0: it did not) */
    int busy;
    unsigned long long published, batches, sends, wakes, skipped_copies;
} Collector;

#define U64(p, off) (*(uint64_t *)((p) + (off)))
#define U32(p, off) (*(uint32_t *)((p) + (off)))

static int check_usable(Collector *c) {
    if (!c->have_view) {
        PyErr_SetString(PyExc_ValueError, "collector is released");
        return -1;
    }
    if (c->busy) {
        PyErr_SetString(PyExc_RuntimeError, "collector is pumping in another call");
        return -1;
    }
    return 0;
}

static int out_reserve(Collector *c, size_t more) {
    if (c->out_len + more <= c->out_cap) return 0;
    size_t cap = c->out_cap ? c->out_cap : 65536;
    while (cap < c->out_len + more) cap *= 2;
    char *p = realloc(c->out, cap);
    if (p == NULL) return -1;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

static inline void out_put(Collector *c, const void *p, size_t n) {
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* ---------------------------------------------------------------- scan, copy, encode */

/* Copy market i's slot into scratch under the seqlock: 1 valid (counts in nb/na), 0 not this round. */
static int copy_slot(Collector *c, Market *mk, Py_ssize_t *nb_out, Py_ssize_t *na_out) {
    const Layout *L = &c->L;
    char *src = c->base + L->slots_offset + mk->slot * L->slot_size;
    char *dst = c->scratch;
    uint64_t *seq = (uint64_t *)(src + L->s_seq);
    for (int attempt = 0; attempt < COPY_ATTEMPTS; attempt++) {
        uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (!(s1 & 1)) {
            memcpy(dst, src, (size_t)L->slot_header_size);
            /* counts read inside the window are garbage until validated: clamp before use */
            Py_ssize_t nb = U32(dst, L->s_n_bids), na = U32(dst, L->s_n_asks);
            if (nb > L->depth) nb = L->depth;
            if (na > L->depth) na = L->depth;
            memcpy(dst + L->bids_offset, src + L->bids_offset, (size_t)(nb * LEVEL_SIZE));
            memcpy(dst + L->asks_offset, src + L->asks_offset, (size_t)(na * LEVEL_SIZE));
            memcpy(dst + L->message_offset, src + L->message_offset, (size_t)L->message_size);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(seq, __ATOMIC_RELAXED) == s1) {
                U64(dst, L->s_seq) = s1;
                *nb_out = nb;
                *na_out = na;
                return 1;
            }
        }
        ldc_cpu_relax();
    }
    return 0;
}

/* codec.encode_entry: u64 seq, the slot header, u8 symbol length, u16 message length, symbol,
 * message, bids, asks (little-endian host: the header's words are copied as they are) */
static Py_ssize_t encode_entry(Collector *c, Market *mk, uint64_t seq, Py_ssize_t nb, Py_ssize_t na, char *dst) {
    const Layout *L = &c->L;
    const char *src = c->scratch;
    const char *msg = src + L->message_offset;
    Py_ssize_t mlen = (Py_ssize_t)strnlen(msg, (size_t)L->message_size);
    char *p = dst;
    memcpy(p, &seq, 8);
    p += 8;
    memcpy(p, src, (size_t)L->slot_header_size);
    p += L->slot_header_size;
    *p++ = (char)(uint8_t)mk->symlen;
    uint16_t m16 = (uint16_t)mlen;
    memcpy(p, &m16, 2);
    p += 2;
    memcpy(p, mk->symbol, (size_t)mk->symlen);
    p += mk->symlen;
    memcpy(p, msg, (size_t)mlen);
    p += mlen;
    memcpy(p, src + L->bids_offset, (size_t)(nb * LEVEL_SIZE));
    p += nb * LEVEL_SIZE;
    memcpy(p, src + L->asks_offset, (size_t)(na * LEVEL_SIZE));
    p += na * LEVEL_SIZE;
    return p - dst;
}

/* Every market whose seq word moved since its last entry: copied, encoded into its `last`, its
 * sequence advanced; their indices in c->changed. No Python object is touched (runs without the GIL). */
static Py_ssize_t scan(Collector *c) {
    const Layout *L = &c->L;
    c->n_changed = 0;
    for (Py_ssize_t i = 0; i < c->n; i++) {
        Market *mk = &c->m[i];
        char *src = c->base + L->slots_offset + mk->slot * L->slot_size;
        uint64_t word = __atomic_load_n((uint64_t *)(src + L->s_seq), __ATOMIC_ACQUIRE);
        if (word == mk->sent) continue;
        Py_ssize_t nb, na;
        if (!copy_slot(c, mk, &nb, &na)) {
            c->skipped_copies++;
            continue;
        }
        if (U64(c->scratch, L->s_gen) != mk->gen) { /* removed or reused under us: read the directory again */
            c->need_directory = 1;
            continue;
        }
        uint64_t copied = U64(c->scratch, L->s_seq);
        if (copied == mk->sent) continue;
        mk->sent = copied;
        mk->seq += 1;
        mk->last_len = encode_entry(c, mk, mk->seq, nb, na, mk->last);
        c->changed[c->n_changed++] = i;
    }
    return c->n_changed;
}

static inline int directory_moved(Collector *c) {
    return __atomic_load_n((uint64_t *)(c->base + c->L.hdr_dir_seq), __ATOMIC_ACQUIRE) != c->dir_seq;
}

/* The changed markets' entries as batches (codec.split_batches at `limit`), each a payload; with
 * frames, each wrapped as a NATS PUB frame. Appended to c->out; returns the number of batches, or
 * -1 when out of memory. */
static Py_ssize_t build(Collector *c, Py_ssize_t limit, int frames, Py_ssize_t *payload_bytes) {
    Py_ssize_t k = 0, batches = 0;
    *payload_bytes = 0;
    while (k < c->n_changed) {
        /* one run: entries while the sum stays within limit (the first goes whatever its size) */
        Py_ssize_t end = k, size = 0;
        while (end < c->n_changed) {
            Py_ssize_t len = c->m[c->changed[end]].last_len;
            if (end > k && (size + len > limit || end - k == MAX_BATCH_ENTRIES)) break;
            size += len;
            end++;
        }
        Py_ssize_t payload = ENVELOPE_SIZE + 1 + c->glen + size;
        char line[32]; /* " <payload>\r\n", the digits written backwards from the end */
        int line_len = 0;
        if (frames) {
            char *q = line + sizeof line;
            *--q = '\n';
            *--q = '\r';
            Py_ssize_t v = payload;
            do *--q = (char)('0' + v % 10);
            while ((v /= 10) > 0);
            *--q = ' ';
            line_len = (int)(line + sizeof line - q);
            memmove(line, q, (size_t)line_len);
        }
        if (out_reserve(c, (size_t)(4 + c->subject_len + line_len + payload + 2)) < 0) return -1;
        if (frames) {
            out_put(c, "PUB ", 4);
            out_put(c, c->subject, (size_t)c->subject_len);
            out_put(c, line, (size_t)line_len);
        }
        c->batch_seq++;
        uint16_t count = (uint16_t)(end - k);
        char env[ENVELOPE_SIZE + 1];
        memcpy(env, "LDCN", 4);
        env[4] = WIRE_VERSION;
        env[5] = KIND_BATCH;
        memcpy(env + 6, &count, 2);
        memcpy(env + 8, &c->epoch, 8);
        memcpy(env + 16, &c->batch_seq, 8);
        env[24] = (char)(uint8_t)c->glen;
        out_put(c, env, sizeof env);
        out_put(c, c->group, (size_t)c->glen);
        for (Py_ssize_t j = k; j < end; j++) {
            Market *mk = &c->m[c->changed[j]];
            out_put(c, mk->last, (size_t)mk->last_len);
        }
        if (frames) out_put(c, "\r\n", 2);
        c->frame_end[batches] = c->out_len;
        c->frame_entries[batches] = end - k;
        c->published += (unsigned long long)(end - k);
        c->batches++;
        *payload_bytes += payload;
        batches++;
        k = end;
    }
    c->n_frames = batches;
    return batches;
}

/* ---------------------------------------------------------------- Python methods */

static void free_markets(Collector *c) {
    for (Py_ssize_t i = 0; i < c->n; i++) free(c->m[i].last);
    free(c->m);
    free(c->changed);
    free(c->frame_end);
    free(c->frame_entries);
    c->m = NULL;
    c->changed = NULL;
    c->frame_end = NULL;
    c->frame_entries = NULL;
    c->n = c->n_changed = 0;
}

/* set_markets(dir_seq, [(symbol: bytes, slot, gen, sent, seq, last: bytes | None), ...]) */
static PyObject *Collector_set_markets(Collector *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_markets(dir_seq, markets)");
        return NULL;
    }
    if (check_usable(c) < 0) return NULL;
    unsigned long long dir_seq = PyLong_AsUnsignedLongLong(args[0]);
    if (dir_seq == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    PyObject *seq = PySequence_Fast(args[1], "markets must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Market *m = calloc((size_t)(n ? n : 1), sizeof(Market));
    Py_ssize_t *changed = calloc((size_t)(n ? n : 1), sizeof(Py_ssize_t));
    size_t *frame_end = calloc((size_t)(n ? n : 1), sizeof(size_t)); /* a batch holds at least one entry */
    Py_ssize_t *frame_entries = calloc((size_t)(n ? n : 1), sizeof(Py_ssize_t));
    if (m == NULL || changed == NULL || frame_end == NULL || frame_entries == NULL) {
        free(m);
        free(changed);
        free(frame_end);
        free(frame_entries);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t i = 0;
    for (; i < n; i++) {
        const char *sym;
        Py_ssize_t symlen, slot;
        unsigned long long gen, sent, mseq;
        PyObject *last;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "y#nKKKO:market", &sym, &symlen, &slot, &gen, &sent,
                              &mseq, &last))
            break;
        if (symlen < 1 || symlen > SYMBOL_MAX) {
            PyErr_Format(PyExc_ValueError, "symbol of %zd bytes, expected 1..%d", symlen, SYMBOL_MAX);
            break;
        }
        if (slot < 0 || slot >= c->L.capacity) {
            PyErr_Format(PyExc_ValueError, "slot %zd out of range 0..%zd", slot, c->L.capacity - 1);
            break;
        }
        Market *mk = &m[i];
        memcpy(mk->symbol, sym, (size_t)symlen);
        mk->symlen = symlen;
        mk->slot = slot;
        mk->gen = gen;
        mk->sent = sent;
        mk->seq = mseq;
        mk->last = malloc((size_t)c->entry_cap);
        if (mk->last == NULL) {
            PyErr_NoMemory();
            break;
        }
        if (last != Py_None) {
            char *data;
            Py_ssize_t len;
            if (PyBytes_AsStringAndSize(last, &data, &len) < 0) break;
            if (len > c->entry_cap) {
                PyErr_Format(PyExc_ValueError, "last entry of %zd bytes, at most %zd fit this geometry", len, c->entry_cap);
                break;
            }
            memcpy(mk->last, data, (size_t)len);
            mk->last_len = len;
        }
    }
    Py_DECREF(seq);
    if (i < n) {
        for (Py_ssize_t j = 0; j <= i && j < n; j++) free(m[j].last);
        free(m);
        free(changed);
        free(frame_end);
        free(frame_entries);
        return NULL;
    }
    free_markets(c);
    c->m = m;
    c->changed = changed;
    c->frame_end = frame_end;
    c->frame_entries = frame_entries;
    c->n = n;
    c->dir_seq = dir_seq;
    c->need_directory = 0;
    Py_RETURN_NONE;
}

/* markets() -> [(symbol, sent, seq, last: bytes | None), ...] in set_markets' order */
static PyObject *Collector_markets(Collector *c, PyObject *Py_UNUSED(ignored)) {
    PyObject *list = PyList_New(c->n);
    for (Py_ssize_t i = 0; list != NULL && i < c->n; i++) {
        Market *mk = &c->m[i];
        PyObject *t = mk->last_len ? Py_BuildValue("(y#KKy#)", mk->symbol, mk->symlen, (unsigned long long)mk->sent,
                                                   (unsigned long long)mk->seq, mk->last, mk->last_len)
                                   : Py_BuildValue("(y#KKO)", mk->symbol, mk->symlen, (unsigned long long)mk->sent,
                                                   (unsigned long long)mk->seq, Py_None);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

/* last(symbol: bytes) -> the market's last entry, or None */
static PyObject *Collector_last(Collector *c, PyObject *arg) {
    char *sym;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(arg, &sym, &len) < 0) return NULL;
    for (Py_ssize_t i = 0; i < c->n; i++) {
        Market *mk = &c->m[i];
        if (mk->symlen == len && memcmp(mk->symbol, sym, (size_t)len) == 0)
            return mk->last_len ? PyBytes_FromStringAndSize(mk->last, mk->last_len) : Py_NewRef(Py_None);
    }
    Py_RETURN_NONE;
}

/* entries() -> [(index, seq, entry), ...]: the markets that changed since the last look */
static PyObject *Collector_entries(Collector *c, PyObject *Py_UNUSED(ignored)) {
    if (check_usable(c) < 0) return NULL;
    scan(c);
    PyObject *list = PyList_New(c->n_changed);
    for (Py_ssize_t j = 0; list != NULL && j < c->n_changed; j++) {
        Market *mk = &c->m[c->changed[j]];
        PyObject *t = Py_BuildValue("(nKy#)", c->changed[j], (unsigned long long)mk->seq, mk->last, mk->last_len);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, j, t);
    }
    return list;
}

/* collect(limit) -> [payload, ...]: the changed markets' batches (each one message's payload) */
static PyObject *Collector_collect(Collector *c, PyObject *arg) {
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (check_usable(c) < 0) return NULL;
    scan(c);
    PyObject *list = PyList_New(0);
    Py_ssize_t k = 0;
    while (list != NULL && k < c->n_changed) {
        /* build one batch at a time: the same split, one payload each */
        Py_ssize_t saved_n = c->n_changed, end = k, size = 0;
        while (end < saved_n) {
            Py_ssize_t len = c->m[c->changed[end]].last_len;
            if (end > k && (size + len > limit || end - k == MAX_BATCH_ENTRIES)) break;
            size += len;
            end++;
        }
        Py_ssize_t *base = c->changed;
        c->changed = base + k;
        c->n_changed = end - k;
        c->out_len = 0;
        Py_ssize_t bytes;
        Py_ssize_t built = build(c, limit, 0, &bytes);
        c->changed = base;
        c->n_changed = saved_n;
        if (built < 0) {
            Py_DECREF(list);
            return PyErr_NoMemory();
        }
        PyObject *payload = PyBytes_FromStringAndSize(c->out, (Py_ssize_t)c->out_len);
        if (payload == NULL || PyList_Append(list, payload) < 0) Py_CLEAR(list);
        Py_XDECREF(payload);
        k = end;
    }
    return list;
}

/* collect_frames(limit) -> (frames: bytes, messages, payload_bytes): the changed markets' batches as
 * NATS PUB frames on the collector's subject, back to back */
static PyObject *Collector_collect_frames(Collector *c, PyObject *arg) {
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    if (check_usable(c) < 0) return NULL;
    scan(c);
    c->out_len = 0;
    Py_ssize_t bytes;
    Py_ssize_t msgs = build(c, limit, 1, &bytes);
    if (msgs < 0) return PyErr_NoMemory();
    return Py_BuildValue("(y#nn)", c->out ? c->out : "", (Py_ssize_t)c->out_len, msgs, bytes);
}

static inline struct timespec timespec_of(int64_t ns) {
    return (struct timespec){(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
}

/* Sleep until when_ns (CLOCK_MONOTONIC); with fd >= 0, wake early when fd turns readable (the server
 * sent something nats-py must see: a ping, a request, a heartbeat). 1 when fd is readable.
 *
 * ep >= 0: an epoll instance pump() registered fd in (EPOLLIN), waited on with epoll_pwait2 (ns
 * timeout): the socket stays registered between sleeps, where ppoll registers it on the socket's wait
 * queue, polls it and unregisters it at every call (~5 % of a send's relay CPU in perf, issue 16). */
static int sleep_until(int64_t when_ns, int fd, int ep) {
    for (;;) {
        int64_t left = when_ns - ldc_clock_ns(CLOCK_MONOTONIC);
        if (left <= 0) return 0;
        if (fd < 0) {
            struct timespec ts = timespec_of(when_ns);
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
            return 0;
        }
        struct timespec ts = timespec_of(left);
        long rc;
        if (ep >= 0) {
            struct epoll_event ev;
            rc = syscall(SYS_epoll_pwait2, ep, &ev, 1, &ts, NULL, 0);
        } else {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            rc = ppoll(&p, 1, &ts, NULL);
        }
        if (rc > 0) return 1;
        if (rc == 0 || errno != EINTR) return 0;
    }
}

/* An epoll instance with fd registered for EPOLLIN, or -1 (then sleep_until uses ppoll). Made per
 * pump() call (three syscalls a slice): a descriptor number nats-py closed and reused cannot leave a
 * stale registration behind. */
static int epoll_for(int fd) {
    if (fd < 0) return -1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data = {.fd = fd}};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(ep);
        return -1;
    }
    return ep;
}

/* 1 when fd has bytes to read (or is closed / in error): nats-py's to handle */
static int readable(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

#define PEEK_INTERVAL_NS 5000000LL /* paced waits: the socket is looked at this often (pings, requests) */
#define MAX_PACE_NS 100000000LL    /* a header's notify_paced_us above 100 ms (layout.MAX_NOTIFY_PACED_US) counts as 100 ms */

enum { PACED_DUE = 0, PACED_SLICE = 1, PACED_READABLE = 2 };

/* send() as much of buf as the socket takes now (non-blocking): the bytes it took; *err the errno that
 * stopped it short (0 when none did) */
static size_t send_all(int fd, const char *buf, size_t len, int *err) {
    size_t off = 0;
    *err = 0;
    while (off < len) {
        ssize_t w = send(fd, buf + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            *err = errno;
            break;
        }
        off += (size_t)w;
    }
    return off;
}

/* What a send of out left: 0 when it took everything (out emptied); 1 when short or failed, the pump's
 * code (PUMP_ERROR for an error other than a full socket, else PUMP_SHORT), errno, tail and unsent
 * entries set for it. */
static int send_outcome(Collector *c, size_t off, int e, int *code, int *err, Py_ssize_t *rest_at, Py_ssize_t *unsent) {
    if (off >= c->out_len) {
        c->out_len = 0;
        return 0;
    }
    if (e != 0 && e != EAGAIN && e != EWOULDBLOCK) {
        *err = e;
        *code = PUMP_ERROR;
    } else {
        *code = PUMP_SHORT;
    }
    *rest_at = (Py_ssize_t)off;
    for (Py_ssize_t f = 0; f < c->n_frames; f++) /* frames not wholly sent */
        if (c->frame_end[f] > off) *unsent += c->frame_entries[f];
    return 1;
}

/* The ring failed (its submission refused: another thread pumps, and a SINGLE_ISSUER ring is its
 * creator's; or a wait refused, err the reason): close it and go on with send() and futex(). A send
 * the kernel had taken is waited for first (it is done at once: MSG_DONTWAIT), one it had not is done
 * here. */
static void ring_failed(Collector *c, int fd, int err) {
    Ring *r = &c->ring;
    for (int i = 0; i < 100 && r->send_armed && r->send_submitted; i++) ring_enter(r, 1, 1000000);
    int send_lost = r->send_armed && r->send_submitted;
    int send_todo = r->send_armed && !r->send_submitted;
    int32_t res = r->send_res;
    uint32_t len = r->send_len;
    ring_close(r); /* ring_init: nothing armed */
    c->ring_state = -1;
    c->ring_errno = err > 0 ? err : EIO;
    if (send_lost) res = -EIO;
    if (send_todo) {
        int e;
        size_t off = send_all(fd, c->out, len, &e);
        res = off ? (int32_t)off : -e;
    }
    r->send_res = res;
    r->send_len = len;
}

/* A send queued on the ring goes now (the wait it was to go with is over before it began): submitted
 * alone, its completion taken (it is done in the call). */
static void ring_flush_send(Collector *c, int fd) {
    Ring *r = &c->ring;
    for (int i = 0; i < 100 && r->fd >= 0 && r->send_armed; i++) {
        int err = ring_enter(r, 1, i ? 1000000 : 0);
        if (err != 0 && err != -ETIME && err != -EINTR) {
            ring_failed(c, fd, -err);
            return;
        }
    }
    if (r->fd >= 0 && r->send_armed) ring_failed(c, fd, ETIME);
}

/* The window after a send when the origin's writer paces (LAYOUT.md section 11, 2.2): sleep on
 * notify_paced, which the writer's own publish moves at most once per paced_ns, instead of a timer
 * (a timer's expiry costs the sleeper ~4x a futex wake-up on the virtual machines measured, issue 16).
 * PACED_DUE when it moved at or after early_ns (a move before is the window's own start, ignored), or
 * at guard_ns (a batch inside the window followed by silence moves nothing: the timeout catches it);
 * PACED_SLICE at deadline_ns; PACED_READABLE when fd has bytes (looked at every PEEK_INTERVAL_NS: the
 * futex wait ends by then too, so a ping or a request waits at most that long).
 *
 * Through the ring (ldc_uring.h) a send the pump queued goes with the first sleep, in the same
 * io_uring_enter; it is done before this returns (submitted alone when the wait is over at once), and
 * a short or failed one ends the wait as soon as its completion is seen (PACED_DUE: the pump hands the
 * tail back before anything else). */
static int paced_wait(Collector *c, int fd, int64_t early_ns, int64_t guard_ns, int64_t deadline_ns) {
    uint32_t *word = (uint32_t *)(c->base + c->L.hdr_notify_paced);
    Ring *r = c->ring.fd >= 0 ? &c->ring : NULL;
    for (;;) {
        int64_t now = ldc_clock_ns(CLOCK_MONOTONIC);
        uint32_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        int code = -1;
        if (w != c->seen_paced) {
            c->seen_paced = w;
            if (now >= early_ns) code = PACED_DUE;
        }
        if (code < 0 && now >= guard_ns) code = PACED_DUE;
        if (code < 0 && now >= deadline_ns) code = PACED_SLICE;
        if (code < 0 && now >= c->next_peek_ns) {
            c->next_peek_ns = now + PEEK_INTERVAL_NS;
            if (readable(fd)) code = PACED_READABLE;
        }
        if (code >= 0) {
            if (r != NULL && r->send_armed) ring_flush_send(c, fd);
            return code;
        }
        int64_t until = guard_ns < deadline_ns ? guard_ns : deadline_ns;
        if (fd >= 0 && c->next_peek_ns < until) until = c->next_peek_ns;
        c->wakes++;
        if (r != NULL) {
            int sending = r->send_armed;
            int err = !r->futex_armed && ring_queue_futex_wait(r, word, w) < 0 ? -EBUSY : 0;
            if (err == 0) err = ring_enter(r, sending ? 2 : 1, until > now ? until - now : 0);
            if ((err == 0 || err == -ETIME || err == -EINTR) && !ring_futex_broken(r)) {
                if (sending && !r->send_armed && r->send_res != (int32_t)r->send_len) return PACED_DUE;
                continue;
            }
            ring_failed(c, fd, err ? -err : -r->futex_res); /* the rest of this wait with futex() */
            r = NULL;
            if (sending && c->ring.send_res != (int32_t)c->ring.send_len) return PACED_DUE;
            continue;
        }
        struct timespec ts = timespec_of(until - now);
        syscall(SYS_futex, word, FUTEX_WAIT, w, &ts, NULL, 0); /* shared: a file mapping of several processes */
    }
}

/* The result of the send a paced wait took (through the ring), as send_outcome gives it */
static int ring_send_result(Collector *c, int *code, int *err, Py_ssize_t *rest_at, Py_ssize_t *unsent) {
    int32_t res = c->ring.send_res;
    return send_outcome(c, res > 0 ? (size_t)res : 0, res < 0 ? -res : 0, code, err, rest_at, unsent);
}

/* pump(fd, limit, slice_s, window_s, wait_s) -> (code, rest, messages, payload_bytes, errno, unsent_entries)
 *
 * For up to slice_s, with the GIL released: sleep out the coalescing window after a send, scan,
 * and send every change as PUB frames on the socket fd (non-blocking), or sleep on the notify word
 * (at most wait_s at a time) when nothing changed. Returns when the slice is over (PUMP_SLICE), the
 * directory must be read again (PUMP_DIRECTORY; what was found before is sent), a send was short
 * (PUMP_SHORT: `rest` is the unsent tail, for the caller's transport, in order) or failed
 * (PUMP_ERROR: `rest` unsent, errno given), or the socket has bytes to read (PUMP_READABLE: a ping,
 * a request, a heartbeat for nats-py; looked at while sleeping, so the slice can be long). fd < 0: nothing is sent, the frames of the first send
 * come back as `rest` with PUMP_SHORT (the caller writes them). `unsent_entries`: the entries of the
 * frames `rest` holds all or part of (lost if the caller cannot write it).
 *
 * When the origin's writer paces (paced_ns > 0) the window after a send is max(window_s, its pace)
 * and is slept out on notify_paced (paced_wait), not on a timer: the send comes at the writer's first
 * move of the word from half a pace before the window's end on (its moves are a pace apart, so the one
 * that ends the window may come a little before the relay's own clock says so), or half a pace after
 * the window's end when nothing moved it. */
static PyObject *Collector_pump(Collector *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "pump(fd, limit, slice_s, window_s, wait_s)");
        return NULL;
    }
    long fd_arg = PyLong_AsLong(args[0]);
    if (fd_arg == -1 && PyErr_Occurred()) return NULL;
    int fd = fd_arg < 0 || fd_arg > INT_MAX ? -1 : (int)fd_arg;
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    double slice_s = PyFloat_AsDouble(args[2]), window_s = PyFloat_AsDouble(args[3]), wait_s = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred()) return NULL;
    if (check_usable(c) < 0) return NULL;
    int64_t slice_ns = (int64_t)(slice_s * 1e9), window_ns = (int64_t)(window_s * 1e9), wait_ns = (int64_t)(wait_s * 1e9);
    int code = PUMP_SLICE, err = 0;
    Py_ssize_t msgs = 0, bytes = 0, rest_at = 0, unsent = 0;
    int oom = 0;
    c->out_len = 0;
    c->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    int ep = epoll_for(fd);
    int64_t deadline = ldc_clock_ns(CLOCK_MONOTONIC) + slice_ns;
    uint32_t *notify = (uint32_t *)(c->base + c->L.hdr_notify);
    int64_t paced = c->paced_ns;
    if (paced > 0 && window_ns < paced) window_ns = paced;
    if (paced > 0 && fd >= 0 && c->ring_state == 0) {
        c->ring_state = ring_open(&c->ring) == 0 ? 1 : -1;
        c->ring_errno = c->ring_state < 0 ? errno : 0;
    }
    int ring_send = 0; /* the frames built last are queued on the ring, to go with the paced wait's first sleep */
    for (;;) {
        int64_t now = ldc_clock_ns(CLOCK_MONOTONIC);
        if (paced > 0 && (ring_send || now < c->next_ok_ns)) { /* a queued send goes with this wait, due or not */
            int r = paced_wait(c, fd, c->next_ok_ns - paced / 2, c->next_ok_ns + paced / 2, deadline);
            if (ring_send) { /* the send's result first: a short send's tail goes before anything else */
                ring_send = 0;
                if (ring_send_result(c, &code, &err, &rest_at, &unsent)) break;
                if (c->need_directory) {
                    code = PUMP_DIRECTORY;
                    break;
                }
            }
            if (r == PACED_SLICE) break;
            if (r == PACED_READABLE) {
                code = PUMP_READABLE;
                break;
            }
            now = ldc_clock_ns(CLOCK_MONOTONIC);
        } else if (now < c->next_ok_ns) {
            if (c->next_ok_ns >= deadline) {
                sleep_until(deadline, fd, ep);
                break;
            }
            c->wakes++;
            if (sleep_until(c->next_ok_ns, fd, ep)) {
                code = PUMP_READABLE;
                break;
            }
            now = ldc_clock_ns(CLOCK_MONOTONIC);
        }
        if (directory_moved(c) || c->need_directory) {
            code = PUMP_DIRECTORY;
            break;
        }
        uint32_t word = __atomic_load_n(notify, __ATOMIC_ACQUIRE);
        if (paced > 0) c->seen_paced = __atomic_load_n((uint32_t *)(c->base + c->L.hdr_notify_paced), __ATOMIC_ACQUIRE);
        if (scan(c) == 0) {
            if (c->need_directory) {
                code = PUMP_DIRECTORY;
                break;
            }
            now = ldc_clock_ns(CLOCK_MONOTONIC);
            if (now >= deadline) break;
            if (readable(fd)) {
                code = PUMP_READABLE;
                break;
            }
            int64_t nap = deadline - now < wait_ns ? deadline - now : wait_ns;
            struct timespec ts = timespec_of(nap);
            /* shared futex (no FUTEX_PRIVATE_FLAG): the word lives in a file mapping of several processes */
            syscall(SYS_futex, notify, FUTEX_WAIT, word, &ts, NULL, 0);
            c->wakes++;
            continue;
        }
        c->out_len = 0;
        Py_ssize_t nbytes;
        Py_ssize_t built = build(c, limit, 1, &nbytes);
        if (built < 0) {
            oom = 1;
            break;
        }
        msgs += built;
        bytes += nbytes;
        c->next_ok_ns = now + window_ns;
        if (fd < 0) {
            code = PUMP_SHORT;
            for (Py_ssize_t f = 0; f < c->n_frames; f++) unsent += c->frame_entries[f];
            break;
        }
        if (paced > 0 && c->ring.fd >= 0 && ring_queue_send(&c->ring, fd, c->out, c->out_len) == 0) {
            ring_send = 1; /* sent by the paced wait's first io_uring_enter, with its sleep */
            c->sends++;
            continue;
        }
        int e;
        size_t off = send_all(fd, c->out, c->out_len, &e);
        c->sends++;
        if (send_outcome(c, off, e, &code, &err, &rest_at, &unsent)) break;
        if (c->need_directory) {
            code = PUMP_DIRECTORY;
            break;
        }
    }
    if (ep >= 0) close(ep);
    Py_END_ALLOW_THREADS
    c->busy = 0;
    if (oom) return PyErr_NoMemory();
    PyObject *rest;
    if (c->out_len > (size_t)rest_at)
        rest = PyBytes_FromStringAndSize(c->out + rest_at, (Py_ssize_t)c->out_len - rest_at);
    else
        rest = Py_NewRef(Py_None);
    c->out_len = 0;
    if (rest == NULL) return NULL;
    return Py_BuildValue("(iNnnin)", code, rest, msgs, bytes, err, unsent);
}

static PyObject *Collector_release(Collector *c, PyObject *Py_UNUSED(ignored)) {
    if (c->busy) {
        PyErr_SetString(PyExc_RuntimeError, "collector is pumping in another call");
        return NULL;
    }
    ring_close(&c->ring); /* a futex wait in flight was on this mapping */
    if (c->have_view) {
        PyBuffer_Release(&c->view);
        c->have_view = 0;
        c->base = NULL;
    }
    Py_RETURN_NONE;
}

/* Collector(mapping, layout: dict, group: bytes, subject: bytes, epoch) */
static int Collector_init(Collector *c, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"mapping", "layout", "group", "subject", "epoch", NULL};
    PyObject *mapping, *layout;
    const char *group, *subject;
    Py_ssize_t glen, slen;
    unsigned long long epoch;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!y#y#K", kwlist, &mapping, &PyDict_Type, &layout, &group, &glen,
                                     &subject, &slen, &epoch))
        return -1;
    if (c->have_view) {
        PyErr_SetString(PyExc_RuntimeError, "collector already initialised");
        return -1;
    }
    if (glen < 1 || glen > GROUP_MAX) {
        PyErr_Format(PyExc_ValueError, "group name of %zd bytes, expected 1..%d", glen, GROUP_MAX);
        return -1;
    }
    struct { const char *k; Py_ssize_t *p; } keys[] = {
        {"depth", &c->L.depth}, {"capacity", &c->L.capacity}, {"slots_offset", &c->L.slots_offset},
        {"slot_size", &c->L.slot_size}, {"bids_offset", &c->L.bids_offset}, {"asks_offset", &c->L.asks_offset},
        {"message_offset", &c->L.message_offset}, {"message_size", &c->L.message_size},
        {"slot_header_size", &c->L.slot_header_size}, {"segment_size", &c->L.segment_size},
        {"hdr_notify", &c->L.hdr_notify}, {"hdr_dir_seq", &c->L.hdr_dir_seq}, {"slot_seq", &c->L.s_seq},
        {"hdr_notify_paced", &c->L.hdr_notify_paced}, {"hdr_notify_paced_us", &c->L.hdr_notify_paced_us},
        {"slot_gen", &c->L.s_gen}, {"slot_n_bids", &c->L.s_n_bids}, {"slot_n_asks", &c->L.s_n_asks},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (ldc_layout_get(layout, keys[i].k, keys[i].p) < 0) return -1;
    const Layout *L = &c->L;
    if (L->depth < 1 || L->capacity < 1 || L->bids_offset + L->depth * LEVEL_SIZE > L->slot_size ||
        L->asks_offset + L->depth * LEVEL_SIZE > L->slot_size || L->message_offset + L->message_size > L->slot_size ||
        L->message_size > 65535 || L->slot_header_size > L->slot_size ||
        L->slots_offset + L->capacity * L->slot_size > L->segment_size) {
        PyErr_Format(PyExc_ValueError, "inconsistent layout: depth %zd capacity %zd slot_size %zd segment_size %zd",
                     L->depth, L->capacity, L->slot_size, L->segment_size);
        return -1;
    }
    if (PyObject_GetBuffer(mapping, &c->view, PyBUF_SIMPLE) < 0) return -1;
    if (c->view.len < L->segment_size) {
        PyErr_Format(PyExc_ValueError, "mapping of %zd bytes, the layout needs %zd", c->view.len, L->segment_size);
        PyBuffer_Release(&c->view);
        return -1;
    }
    c->have_view = 1;
    c->base = c->view.buf;
    c->entry_cap = 8 + L->slot_header_size + 3 + SYMBOL_MAX + L->message_size + 2 * L->depth * LEVEL_SIZE;
    c->scratch = aligned_alloc(64, (size_t)((L->slot_size + 63) / 64 * 64));
    c->subject = malloc((size_t)slen + 1);
    if (c->scratch == NULL || c->subject == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(c->subject, subject, (size_t)slen);
    c->subject_len = slen;
    memcpy(c->group, group, (size_t)glen);
    c->glen = glen;
    c->epoch = epoch;
    c->dir_seq = (uint64_t)-1;
    /* written once before magic, which the Reader checked before this mapping was made */
    c->paced_ns = (int64_t)U32(c->base, L->hdr_notify_paced_us) * 1000;
    if (c->paced_ns > MAX_PACE_NS) c->paced_ns = MAX_PACE_NS;
    return 0;
}

static void Collector_dealloc(Collector *c) {
    ring_close(&c->ring);
    if (c->have_view) PyBuffer_Release(&c->view);
    free_markets(c);
    free(c->scratch);
    free(c->subject);
    free(c->out);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

#define COUNTER(name)                                                                   \
    static PyObject *Collector_get_##name(Collector *c, void *Py_UNUSED(closure)) {     \
        return PyLong_FromUnsignedLongLong((unsigned long long)c->name);               \
    }
COUNTER(published)
COUNTER(batches)
COUNTER(sends)
COUNTER(wakes)
COUNTER(skipped_copies)
COUNTER(batch_seq)

static int Collector_set_batch_seq(Collector *c, PyObject *v, void *Py_UNUSED(closure)) {
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "batch_seq cannot be deleted");
        return -1;
    }
    unsigned long long n = PyLong_AsUnsignedLongLong(v);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    c->batch_seq = n;
    return 0;
}
COUNTER(dir_seq)

static PyObject *Collector_get_need_directory(Collector *c, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(c->need_directory || (c->have_view && directory_moved(c)));
}

static PyObject *Collector_get_paced_us(Collector *c, void *Py_UNUSED(closure)) {
    return PyLong_FromLongLong(c->paced_ns / 1000);
}

static PyObject *Collector_get_ring(Collector *c, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(c->ring.fd >= 0);
}

static PyObject *Collector_get_ring_errno(Collector *c, void *Py_UNUSED(closure)) {
    return PyLong_FromLong(c->ring_errno);
}

/* ring = False: paced sends and waits with send() and futex() from now on; True: try io_uring again */
static int Collector_set_ring(Collector *c, PyObject *v, void *Py_UNUSED(closure)) {
    int on = v == NULL ? 0 : PyObject_IsTrue(v);
    if (on < 0) return -1;
    if (c->busy) {
        PyErr_SetString(PyExc_RuntimeError, "collector is pumping in another call");
        return -1;
    }
    if (!on) ring_close(&c->ring);
    c->ring_state = on && c->ring.fd < 0 ? 0 : (on ? 1 : -1);
    return 0;
}

static PyObject *Collector_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Collector *c = (Collector *)PyType_GenericNew(type, args, kwds);
    if (c != NULL) ring_init(&c->ring); /* fd -1 before anything can dealloc it */
    return (PyObject *)c;
}

static PyGetSetDef Collector_getset[] = {
    {"published", (getter)Collector_get_published, NULL, "entries (market updates) put into batches", NULL},
    {"batches", (getter)Collector_get_batches, NULL, "batches built", NULL},
    {"sends", (getter)Collector_get_sends, NULL, "socket sends made by pump()", NULL},
    {"wakes", (getter)Collector_get_wakes, NULL, "sleeps (window or notify word) pump() woke from", NULL},
    {"skipped_copies", (getter)Collector_get_skipped_copies, NULL, "slots left for the next round (no consistent copy)", NULL},
    {"batch_seq", (getter)Collector_get_batch_seq, (setter)Collector_set_batch_seq, "the last batch sequence of this epoch", NULL},
    {"dir_seq", (getter)Collector_get_dir_seq, NULL, "the directory sequence set_markets() was given", NULL},
    {"need_directory", (getter)Collector_get_need_directory, NULL, "the directory must be read again", NULL},
    {"paced_us", (getter)Collector_get_paced_us, NULL, "the origin's notify_paced_us (at most 100 ms); 0: its writer does not pace", NULL},
    {"ring", (getter)Collector_get_ring, (setter)Collector_set_ring,
     "True while paced sends and waits go through io_uring (opened by the first paced pump where the kernel allows it); "
     "set False for send() and futex()", NULL},
    {"ring_errno", (getter)Collector_get_ring_errno, NULL, "why io_uring was refused (0: it was not, or not tried)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Collector_methods[] = {
    {"set_markets", (PyCFunction)(void (*)(void))Collector_set_markets, METH_FASTCALL,
     "set_markets(dir_seq, [(symbol, slot, gen, sent, seq, last | None), ...])"},
    {"markets", (PyCFunction)Collector_markets, METH_NOARGS, "markets() -> [(symbol, sent, seq, last | None), ...]"},
    {"last", (PyCFunction)Collector_last, METH_O, "last(symbol) -> the market's last entry, or None"},
    {"entries", (PyCFunction)Collector_entries, METH_NOARGS, "entries() -> [(index, seq, entry), ...] changed since the last look"},
    {"collect", (PyCFunction)Collector_collect, METH_O, "collect(limit) -> [batch payload, ...]"},
    {"collect_frames", (PyCFunction)Collector_collect_frames, METH_O,
     "collect_frames(limit) -> (PUB frames, messages, payload bytes)"},
    {"pump", (PyCFunction)(void (*)(void))Collector_pump, METH_FASTCALL,
     "pump(fd, limit, slice_s, window_s, wait_s) -> (code, rest | None, messages, payload_bytes, errno, unsent entries)"},
    {"release", (PyCFunction)Collector_release, METH_NOARGS, "let go of the mapping (before it is closed)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CollectorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ldc.fanout._relay.Collector",
    .tp_basicsize = sizeof(Collector),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The relay's scan, copy, encode and send of an origin segment's changed markets.",
    .tp_new = Collector_new,
    .tp_init = (initproc)Collector_init,
    .tp_dealloc = (destructor)Collector_dealloc,
    .tp_methods = Collector_methods,
    .tp_getset = Collector_getset,
};

/* set_timer_slack_ns(ns): the calling thread's timer slack (prctl PR_SET_TIMERSLACK); the default
 * 50 us would stretch every coalescing window by up to that */
static PyObject *set_timer_slack_ns(PyObject *Py_UNUSED(m), PyObject *arg) {
    unsigned long ns = PyLong_AsUnsignedLong(arg);
    if (ns == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0) < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_timer_slack_ns", set_timer_slack_ns, METH_O, "set_timer_slack_ns(ns): this thread's timer slack"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ldc.fanout._relay", NULL, -1, module_methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__relay(void) {
    if (PyType_Ready(&CollectorType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Collector", (PyObject *)&CollectorType) < 0 ||
        PyModule_AddIntConstant(m, "PUMP_SLICE", PUMP_SLICE) < 0 ||
        PyModule_AddIntConstant(m, "PUMP_DIRECTORY", PUMP_DIRECTORY) < 0 ||
        PyModule_AddIntConstant(m, "PUMP_SHORT", PUMP_SHORT) < 0 ||
        PyModule_AddIntConstant(m, "PUMP_ERROR", PUMP_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "PUMP_READABLE", PUMP_READABLE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
