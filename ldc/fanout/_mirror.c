/* ldc.fanout._mirror: the mirror's per-message and per-update path in C (issue 16).
 *
 * - Market: what the mirror knows of one market's slot (ldc/fanout/mirror.py reads and writes the same
 *   object: epoch, seq, origin generation, counters, status, message, resync state).
 * - apply_batch(data, segment, group, markets, wanted, stale, slow): one stream batch, whole. It checks
 *   the batch exactly as codec.decode_batch does (refused -> None: the caller's Python path then names
 *   the error and counts it; another group -> None likewise), then applies, in order, every entry of the
 *   common case (the market known and in sync, not resyncing, no STALE reason, same epoch and
 *   seq == last + 1, same origin generation, `updates` + 1 and every other counter and the message
 *   unchanged) through the seqlock writer's C API (ldc_seqlock_api.h: the same slot write as
 *   Segment.publish), and hands every other entry, in its place in the batch, to
 *   slow(data, entry_offset, epoch), the Python path. Readers are woken once, at the end.
 *   Returns (applied, skipped): entries applied here and entries of markets outside `wanted`.
 * - frames(data, sids, max_control): MSG frames of the subscriptions `sids` at the start of `data`,
 *   as lean.DirectDelivery takes them: ([(subject, payload), ...], bytes consumed); it stops at the
 *   first thing that is not a whole such frame (nats-py's parser takes the rest, in order).
 * - wait(epfd, sockfd, timeout_s, on_data, max_size[, fast]): the event loop's wait with the NATS
 *   socket's reads taken in it (lean.LoopReads); with a Fast, a read of the group's batch frames alone
 *   is delivered and applied here, without a Python frame.
 *
 * Wire layout (docs/FANOUT.md; mirror.py asserts these offsets against codec at import). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "../shm/ldc_seqlock_api.h"

#define ENVELOPE_SIZE 24 /* magic 4, version 1, kind 1, count u16, epoch u64, batch seq u64 */
#define ENV_COUNT 6
#define ENV_EPOCH 8
#define NAME_MAX_LEN 63   /* NAME_SIZE - 1 */
#define SYMBOL_MAX_LEN 39 /* SYMBOL_SIZE - 1 */
#define LEVEL_BYTES 16
/* an entry: the market's sequence, the 128-byte slot header, u8 symbol length, u16 message length */
#define E_SEQ 0
#define E_HDR 8
#define E_GEN (E_HDR + 8)
#define E_UPDATE_ID (E_HDR + 16)
#define E_EVENT_TIME (E_HDR + 24)
#define E_RECV_TIME (E_HDR + 32)
#define E_STATUS (E_HDR + 48)
#define E_N_BIDS (E_HDR + 52)
#define E_N_ASKS (E_HDR + 56)
#define E_COUNTERS (E_HDR + 64)
#define N_COUNTERS 6
#define E_SLEN (E_HDR + 128)
#define E_MLEN (E_SLEN + 1)
#define ENTRY_SIZE (E_MLEN + 2)

static const LdcSeqlockAPI *api;

static inline uint64_t rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian host (x86-64, aarch64): the wire's order */
}
static inline uint32_t rd32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---------------------------------------------------------------- Market */

typedef struct {
    PyObject_HEAD
    Py_ssize_t slot;
    unsigned long long epoch;
    unsigned long long seq;
    unsigned long long origin_gen;
    uint64_t counters[N_COUNTERS];
    unsigned long long status;
    PyObject *message;  /* bytes: the message last written into the slot */
    char resyncing;
    char behind_once;
    PyObject *newest;   /* newest stream update seen while resyncing, or None */
} Market;

static PyTypeObject MarketType;

static int Market_init(Market *m, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"slot", "epoch", "seq", "origin_gen", "counters", "status", "message", "resyncing",
                         "newest", "behind_once", NULL};
    Py_ssize_t slot;
    unsigned long long epoch = 0, seq = 0, gen = 0, status = 0;
    PyObject *counters = NULL, *message = NULL, *newest = Py_None;
    int resyncing = 0, behind = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|KKKOKSpOp", kw, &slot, &epoch, &seq, &gen, &counters, &status,
                                     &message, &resyncing, &newest, &behind))
        return -1;
    m->slot = slot;
    m->epoch = epoch;
    m->seq = seq;
    m->origin_gen = gen;
    m->status = status;
    memset(m->counters, 0, sizeof m->counters);
    if (counters != NULL) {
        PyObject *fast = PySequence_Fast(counters, "counters must be a sequence of 6 ints");
        if (fast == NULL) return -1;
        if (PySequence_Fast_GET_SIZE(fast) != N_COUNTERS) {
            PyErr_Format(PyExc_ValueError, "counters must hold %d ints, got %zd", N_COUNTERS, PySequence_Fast_GET_SIZE(fast));
            Py_DECREF(fast);
            return -1;
        }
        for (int i = 0; i < N_COUNTERS; i++) {
            m->counters[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(fast, i));
            if (PyErr_Occurred()) {
                Py_DECREF(fast);
                return -1;
            }
        }
        Py_DECREF(fast);
    }
    PyObject *msg = message ? Py_NewRef(message) : PyBytes_FromStringAndSize("", 0);
    if (msg == NULL) return -1;
    Py_XSETREF(m->message, msg);
    Py_XSETREF(m->newest, Py_NewRef(newest));
    m->resyncing = (char)resyncing;
    m->behind_once = (char)behind;
    return 0;
}

static int Market_traverse(Market *m, visitproc visit, void *arg) {
    Py_VISIT(m->message);
    Py_VISIT(m->newest);
    return 0;
}

static int Market_clear(Market *m) {
    Py_CLEAR(m->message);
    Py_CLEAR(m->newest);
    return 0;
}

static void Market_dealloc(Market *m) {
    PyObject_GC_UnTrack(m);
    Market_clear(m);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyObject *Market_get_counters(Market *m, void *c) {
    (void)c;
    PyObject *t = PyTuple_New(N_COUNTERS);
    if (t == NULL) return NULL;
    for (int i = 0; i < N_COUNTERS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(m->counters[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static int Market_set_counters(Market *m, PyObject *v, void *c) {
    (void)c;
    if (v == NULL || !PyTuple_Check(v) || PyTuple_GET_SIZE(v) != N_COUNTERS) {
        PyErr_Format(PyExc_TypeError, "counters must be a tuple of %d ints", N_COUNTERS);
        return -1;
    }
    uint64_t tmp[N_COUNTERS];
    for (int i = 0; i < N_COUNTERS; i++) {
        tmp[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(v, i));
        if (PyErr_Occurred()) return -1;
    }
    memcpy(m->counters, tmp, sizeof tmp);
    return 0;
}

static PyObject *Market_get_message(Market *m, void *c) {
    (void)c;
    return Py_NewRef(m->message);
}

static int Market_set_message(Market *m, PyObject *v, void *c) {
    (void)c;
    if (v == NULL || !PyBytes_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "message must be bytes");
        return -1;
    }
    Py_SETREF(m->message, Py_NewRef(v));
    return 0;
}

static PyObject *Market_repr(Market *m) {
    return PyUnicode_FromFormat("Market(slot=%zd, epoch=%llu, seq=%llu, origin_gen=%llu, status=%llu, resyncing=%d)", m->slot,
                                m->epoch, m->seq, m->origin_gen, m->status, (int)m->resyncing);
}

static PyMemberDef Market_members[] = {
    {"slot", T_PYSSIZET, offsetof(Market, slot), 0, "the market's slot in the mirror's segment"},
    {"epoch", T_ULONGLONG, offsetof(Market, epoch), 0, "relay epoch of the last update applied"},
    {"seq", T_ULONGLONG, offsetof(Market, seq), 0, "the market's sequence last applied"},
    {"origin_gen", T_ULONGLONG, offsetof(Market, origin_gen), 0, "the origin slot's generation"},
    {"status", T_ULONGLONG, offsetof(Market, status), 0, "the origin's status last applied"},
    {"resyncing", T_BOOL, offsetof(Market, resyncing), 0, "re-fetching its state from the relay"},
    {"behind_once", T_BOOL, offsetof(Market, behind_once), 0, "the last heartbeat claimed a later sequence"},
    {"newest", T_OBJECT, offsetof(Market, newest), 0, "newest stream update seen while resyncing, or None"},
    {NULL},
};

static PyGetSetDef Market_getset[] = {
    {"counters", (getter)Market_get_counters, (setter)Market_set_counters, "the origin's counters last applied", NULL},
    {"message", (getter)Market_get_message, (setter)Market_set_message, "the message last written into the slot", NULL},
    {NULL},
};

static PyTypeObject MarketType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc.fanout._mirror.Market",
    .tp_basicsize = sizeof(Market),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What the mirror knows of one market's slot (owned by the event loop; read by apply_batch)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Market_init,
    .tp_dealloc = (destructor)Market_dealloc,
    .tp_traverse = (traverseproc)Market_traverse,
    .tp_clear = (inquiry)Market_clear,
    .tp_repr = (reprfunc)Market_repr,
    .tp_members = Market_members,
    .tp_getset = Market_getset,
};

/* ---------------------------------------------------------------- apply_batch */

typedef struct {
    Py_ssize_t pos;   /* the entry's first byte */
    PyObject *symbol; /* str, owned */
} EntryRef;

static void free_refs(EntryRef *refs, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(refs[i].symbol);
    PyMem_Free(refs);
}

/* Check the batch as codec.decode_batch does: 1 valid (refs filled, *n entries), 0 refused (no
 * exception), -1 error (exception set). */
static int check_batch(const unsigned char *d, Py_ssize_t len, Py_ssize_t depth, EntryRef **refs_out, Py_ssize_t *n,
                       Py_ssize_t *glen_out) {
    *refs_out = NULL;
    *n = 0;
    if (len < ENVELOPE_SIZE + 1) return 0;
    if (memcmp(d, "LDCN", 4) != 0 || d[4] != 2 || d[5] != 2) return 0;
    Py_ssize_t glen = d[ENVELOPE_SIZE];
    Py_ssize_t pos = ENVELOPE_SIZE + 1;
    if (glen > NAME_MAX_LEN || pos + glen > len) return 0;
    PyObject *g = PyUnicode_DecodeUTF8((const char *)d + pos, glen, "strict");
    if (g == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return -1;
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(g);
    pos += glen;
    Py_ssize_t count = (Py_ssize_t)(d[ENV_COUNT] | (d[ENV_COUNT + 1] << 8));
    EntryRef *refs = PyMem_Calloc(count ? (size_t)count : 1, sizeof(EntryRef));
    if (refs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t i = 0;
    for (; i < count; i++) {
        if (pos + ENTRY_SIZE > len) goto refused; /* struct.error */
        const unsigned char *e = d + pos;
        Py_ssize_t slen = e[E_SLEN], mlen = (Py_ssize_t)(e[E_MLEN] | (e[E_MLEN + 1] << 8));
        uint32_t nb = rd32(e + E_N_BIDS), na = rd32(e + E_N_ASKS);
        Py_ssize_t at = pos + ENTRY_SIZE;
        if (slen > SYMBOL_MAX_LEN) goto refused;
        Py_ssize_t have = at + slen <= len ? slen : len - at; /* a Python slice past the end is short */
        PyObject *symbol = PyUnicode_DecodeUTF8((const char *)d + at, have, "strict");
        if (symbol == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) goto error;
            PyErr_Clear();
            goto refused;
        }
        refs[i].pos = pos;
        refs[i].symbol = symbol;
        if ((Py_ssize_t)nb > depth || (Py_ssize_t)na > depth) goto refused_i;
        Py_ssize_t end = at + slen + mlen + ((Py_ssize_t)nb + (Py_ssize_t)na) * LEVEL_BYTES;
        if (end > len) goto refused_i;
        pos = end;
    }
    if (pos != len) goto refused; /* i == count: every symbol held */
    *refs_out = refs;
    *n = count;
    *glen_out = glen;
    return 1;
refused_i:
    i++; /* refs[i] holds a symbol */
refused:
    free_refs(refs, i);
    return 0;
error:
    free_refs(refs, i);
    return -1;
}

static PyObject *apply_core(PyObject *data, PyObject *segment, PyObject *group, PyObject *markets, PyObject *wanted,
                            int stale, PyObject *slow);

/* apply_batch(data, segment, group: bytes, markets: dict[str, Market], wanted: set | None, stale: bool,
 *             slow: Callable[[bytes, int, int], None]) -> (applied, skipped) | None */
static PyObject *apply_batch(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "apply_batch takes 7 arguments, got %zd", nargs);
        return NULL;
    }
    int stale = PyObject_IsTrue(args[5]);
    if (stale < 0) return NULL;
    return apply_core(args[0], args[1], args[2], args[3], args[4], stale, args[6]);
}

static PyObject *apply_core(PyObject *data, PyObject *segment, PyObject *group, PyObject *markets, PyObject *wanted,
                            int stale, PyObject *slow) {
    if (!PyBytes_Check(data) || !PyBytes_Check(group) || !PyDict_Check(markets)) {
        PyErr_SetString(PyExc_TypeError, "apply_batch(data: bytes, segment, group: bytes, markets: dict, ...)");
        return NULL;
    }
    if (wanted != Py_None && !PyAnySet_Check(wanted)) {
        PyErr_Format(PyExc_TypeError, "wanted must be a set or None, found %s", Py_TYPE(wanted)->tp_name);
        return NULL;
    }
    Py_ssize_t depth = api->depth(segment);
    if (depth < 0) return NULL;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    EntryRef *refs;
    Py_ssize_t count, glen;
    int ok = check_batch(d, len, depth, &refs, &count, &glen);
    if (ok <= 0) {
        if (ok < 0) return NULL;
        Py_RETURN_NONE; /* refused: the Python path names why */
    }
    if (glen != PyBytes_GET_SIZE(group) || memcmp(d + ENVELOPE_SIZE + 1, PyBytes_AS_STRING(group), (size_t)glen) != 0) {
        free_refs(refs, count);
        Py_RETURN_NONE; /* another group's: the Python path counts it */
    }
    uint64_t epoch = rd64(d + ENV_EPOCH);
    Py_ssize_t applied = 0, skipped = 0, i = 0;
    PyObject *epoch_obj = NULL;
    for (; i < count; i++) {
        PyObject *symbol = refs[i].symbol;
        if (wanted != Py_None) {
            int in = PySet_Contains(wanted, symbol);
            if (in < 0) goto error;
            if (!in) {
                skipped++;
                continue;
            }
        }
        const unsigned char *e = d + refs[i].pos;
        PyObject *mo = PyDict_GetItemWithError(markets, symbol);
        if (mo == NULL && PyErr_Occurred()) goto error;
        if (mo != NULL && Py_IS_TYPE(mo, &MarketType) && !stale) {
            Market *m = (Market *)mo;
            uint64_t seq = rd64(e + E_SEQ);
            Py_ssize_t slen = e[E_SLEN], mlen = (Py_ssize_t)(e[E_MLEN] | (e[E_MLEN + 1] << 8));
            const unsigned char *counters = e + E_COUNTERS;
            int common = !m->resyncing && epoch == m->epoch && m->seq != UINT64_MAX && seq == m->seq + 1 &&
                         rd64(e + E_GEN) == m->origin_gen && rd64(counters) == m->counters[0] + 1;
            for (int c = 1; common && c < N_COUNTERS; c++) common = rd64(counters + 8 * c) == m->counters[c];
            common = common && PyBytes_Check(m->message) && PyBytes_GET_SIZE(m->message) == mlen &&
                     memcmp(PyBytes_AS_STRING(m->message), e + ENTRY_SIZE + slen, (size_t)mlen) == 0;
            if (common) {
                uint32_t nb = rd32(e + E_N_BIDS), na = rd32(e + E_N_ASKS);
                const unsigned char *bids = e + ENTRY_SIZE + slen + mlen;
                const unsigned char *asks = bids + (Py_ssize_t)nb * LEVEL_BYTES;
                uint32_t status = rd32(e + E_STATUS);
                if (api->publish(segment, m->slot, (int64_t)rd64(e + E_UPDATE_ID), (int64_t)rd64(e + E_EVENT_TIME),
                                 (int64_t)rd64(e + E_RECV_TIME), status, 1, (const double *)(const void *)bids, nb,
                                 (const double *)(const void *)asks, na) < 0)
                    goto error;
                m->epoch = epoch;
                m->seq = seq;
                m->counters[0] += 1;
                m->status = status;
                applied++;
                continue;
            }
        }
        /* every other case: the Python path, in the entry's place */
        if (epoch_obj == NULL && (epoch_obj = PyLong_FromUnsignedLongLong(epoch)) == NULL) goto error;
        PyObject *pos = PyLong_FromSsize_t(refs[i].pos);
        if (pos == NULL) goto error;
        PyObject *cargs[3] = {data, pos, epoch_obj};
        PyObject *r = PyObject_Vectorcall(slow, cargs, 3, NULL);
        Py_DECREF(pos);
        if (r == NULL) goto error;
        Py_DECREF(r);
    }
    Py_XDECREF(epoch_obj);
    free_refs(refs, count);
    if (api->notify(segment) < 0) return NULL;
    return Py_BuildValue("nn", applied, skipped);
error:
    Py_XDECREF(epoch_obj);
    free_refs(refs, count);
    return NULL;
}

/* ---------------------------------------------------------------- frames */

static int digits(const char *p, Py_ssize_t n, Py_ssize_t *out) {
    if (n <= 0 || n > 18) return 0;
    Py_ssize_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* A whole `MSG <subject> <sid> <size>\r\n<payload>\r\n` frame at d + pos: its control line within
 * max_control bytes, exactly three parts, sid and size digits. 1 with its parts, 0 when it is anything
 * else (another command, a reply subject, a frame cut by the read's end). */
typedef struct {
    const char *subject;
    Py_ssize_t subject_len, sid, start, size; /* start: the payload's offset in d */
} MsgFrame;

static int msg_frame(const char *d, Py_ssize_t len, Py_ssize_t pos, Py_ssize_t max_control, MsgFrame *m) {
    if (len - pos < 4 || memcmp(d + pos, "MSG ", 4) != 0) return 0;
    /* data.find(b"\r\n", pos, pos + max_control) */
    Py_ssize_t lim = pos + max_control < len ? pos + max_control : len;
    const char *eol = NULL;
    for (const char *q = d + pos; q + 1 < d + lim; q++) {
        q = memchr(q, '\r', (size_t)(d + lim - 1 - q));
        if (q == NULL) break;
        if (q[1] == '\n') {
            eol = q;
            break;
        }
    }
    if (eol == NULL) return 0;
    const char *a = d + pos + 4, *s1 = memchr(a, ' ', (size_t)(eol - a));
    if (s1 == NULL) return 0;
    const char *s2 = memchr(s1 + 1, ' ', (size_t)(eol - s1 - 1));
    if (s2 == NULL || memchr(s2 + 1, ' ', (size_t)(eol - s2 - 1)) != NULL) return 0;
    if (!digits(s1 + 1, s2 - s1 - 1, &m->sid) || !digits(s2 + 1, eol - s2 - 1, &m->size)) return 0;
    m->start = eol + 2 - d;
    Py_ssize_t stop = m->start + m->size;
    if (stop + 2 > len || d[stop] != '\r' || d[stop + 1] != '\n') return 0;
    m->subject = a;
    m->subject_len = s1 - a;
    return 1;
}

/* 1 when sid is one of sids (a set of int), 0 not, -1 on error */
static int sid_in(PyObject *sids, Py_ssize_t sid) {
    PyObject *sid_obj = PyLong_FromSsize_t(sid);
    if (sid_obj == NULL) return -1;
    int mine = PySet_Contains(sids, sid_obj);
    Py_DECREF(sid_obj);
    return mine;
}

/* frames(data: bytes, sids: set[int], max_control: int) -> (list[(subject, payload)], consumed) */
static PyObject *frames(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyAnySet_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "frames(data: bytes, sids: set[int], max_control: int)");
        return NULL;
    }
    Py_ssize_t max_control = PyLong_AsSsize_t(args[2]);
    if (max_control == -1 && PyErr_Occurred()) return NULL;
    const char *d = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]), pos = 0;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    MsgFrame m;
    while (pos < len && msg_frame(d, len, pos, max_control, &m)) {
        int mine = sid_in(args[1], m.sid);
        if (mine < 0) goto error;
        if (!mine) break;
        PyObject *item = Py_BuildValue("(y#y#)", m.subject, m.subject_len, d + m.start, m.size);
        if (item == NULL) goto error;
        int rc = PyList_Append(out, item);
        Py_DECREF(item);
        if (rc < 0) goto error;
        pos = m.start + m.size + 2;
    }
    return Py_BuildValue("(Nn)", out, pos);
error:
    Py_DECREF(out);
    return NULL;
}

/* ---------------------------------------------------------------- Fast: a read of batches, whole, in C */

/* Fast(direct, mirror, subject): what lean.DirectDelivery and the mirror do with a socket read made of
 * the group's batch frames alone, done here, so that such a read costs no Python frame (docs/FANOUT.md,
 * "The mirror's path in C"). A read it does not take (anything but whole MSG frames of the direct
 * subscriptions on `subject`, more frames than the client's pending limit, nats-py's parser or the
 * backlog holding bytes, no segment yet, the C path off) goes to on_data as before, whole. Everything
 * is read from the two objects at every read (their state changes in Python between reads):
 * direct._sids, ._reader._buffer, ._backlog, ._limit, ._idle, ._nc (._ps.buf, ._ps.state, .stats),
 * ._loop (._ready, ._stopping); mirror._writer(.segment), .use_c, .stale_reason, .markets, .wanted,
 * ._group_b, ._slow_entry, ._python_batch(payload) (a batch apply_batch refuses); a batch whose apply raises
 * an Exception goes to direct._fast_failed(subject, exc) (logged, the read goes on); any other failure
 * after the first frame to direct._fast_error(exc) (the connection fails, as take_read's would), before
 * it the read goes to on_data. */
typedef struct {
    PyObject_HEAD
    PyObject *direct, *mirror, *subject;
    unsigned long long reads, frames, batches, applied, unwanted;
} Fast;

static PyTypeObject FastType;

static int Fast_init(Fast *f, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"direct", "mirror", "subject", NULL};
    PyObject *direct, *mirror, *subject;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOS", kwlist, &direct, &mirror, &subject)) return -1;
    if (PyBytes_GET_SIZE(subject) < 1 || PyBytes_GET_SIZE(subject) > 256) {
        PyErr_Format(PyExc_ValueError, "subject of %zd bytes, expected 1..256", PyBytes_GET_SIZE(subject));
        return -1;
    }
    Py_XSETREF(f->direct, Py_NewRef(direct));
    Py_XSETREF(f->mirror, Py_NewRef(mirror));
    Py_XSETREF(f->subject, Py_NewRef(subject));
    return 0;
}

static int Fast_traverse(Fast *f, visitproc visit, void *arg) {
    Py_VISIT(f->direct);
    Py_VISIT(f->mirror);
    return 0;
}

static int Fast_clear(Fast *f) {
    Py_CLEAR(f->direct);
    Py_CLEAR(f->mirror);
    return 0;
}

static void Fast_dealloc(Fast *f) {
    PyObject_GC_UnTrack(f);
    Fast_clear(f);
    Py_CLEAR(f->subject);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyMemberDef Fast_members[] = {
    {"reads", T_ULONGLONG, offsetof(Fast, reads), 0, "socket reads taken here"},
    {"frames", T_ULONGLONG, offsetof(Fast, frames), 0, "MSG frames (batches) delivered here"},
    {"batches", T_ULONGLONG, offsetof(Fast, batches), 0, "batches apply_batch took"},
    {"applied", T_ULONGLONG, offsetof(Fast, applied), 0, "entries applied in C"},
    {"unwanted", T_ULONGLONG, offsetof(Fast, unwanted), 0, "entries of markets outside --symbols"},
    {NULL},
};

static PyTypeObject FastType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc.fanout._mirror.Fast",
    .tp_basicsize = sizeof(Fast),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A socket read of the group's batch frames, delivered and applied in C (wait's sixth argument)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Fast_init,
    .tp_dealloc = (destructor)Fast_dealloc,
    .tp_traverse = (traverseproc)Fast_traverse,
    .tp_clear = (inquiry)Fast_clear,
    .tp_members = Fast_members,
};

/* attribute names Fast reads, interned once (PyObject_GetAttr with them hits the type's lookup cache) */
enum { N_BACKLOG, N_BUFFER, N_FAST_ERROR, N_FAST_FAILED, N_IN_BYTES, N_IN_MSGS, N_GROUP_B, N_IDLE, N_LIMIT, N_LOOP, N_NC, N_PS, N_PYTHON_BATCH, N_READER, N_READY, N_SIDS, N_SLOW_ENTRY, N_STOPPING, N_WRITER, N_BUF, N_MARKETS, N_SEGMENT, N_STALE_REASON, N_STATE, N_STATS, N_USE_C, N_WANTED, N_NAMES };
static const char *const name_text[N_NAMES] = {"_backlog", "_buffer", "_fast_error", "_fast_failed", "in_bytes", "in_msgs", "_group_b", "_idle", "_limit", "_loop", "_nc", "_ps", "_python_batch", "_reader", "_ready", "_sids", "_slow_entry", "_stopping", "_writer", "buf", "markets", "segment", "stale_reason", "state", "stats", "use_c", "wanted"};
static PyObject *name_obj[N_NAMES];

/* getattr(o, name) as a new reference (NULL with the exception set) */
static PyObject *attr(PyObject *o, int name) { return PyObject_GetAttr(o, name_obj[name]); }

/* 1 when getattr(o, name) has length 0, 0 when not, -1 on error */
static int empty_attr(PyObject *o, int name) {
    PyObject *v = attr(o, name);
    if (v == NULL) return -1;
    Py_ssize_t n = PyObject_Length(v);
    Py_DECREF(v);
    return n < 0 ? -1 : n == 0;
}

/* 1 when getattr(o, name) is true, 0 false, -1 on error */
static int true_attr(PyObject *o, int name) {
    PyObject *v = attr(o, name);
    if (v == NULL) return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

#define MAX_FAST_FRAMES 64
#define MAX_CONTROL_LINE 4096 /* nats-py's MAX_CONTROL_LINE_SIZE, as lean._MAX_CONTROL_LINE */

/* The whole read as MSG frames of the direct subscriptions on f->subject: their count (payload offsets
 * and sizes filled), or 0 when it is anything else. */
static int batch_frames(Fast *f, PyObject *sids, const char *d, Py_ssize_t len, Py_ssize_t *at, Py_ssize_t *size) {
    const char *subj = PyBytes_AS_STRING(f->subject);
    Py_ssize_t slen = PyBytes_GET_SIZE(f->subject), pos = 0;
    int n = 0;
    MsgFrame m;
    while (pos < len) {
        if (n == MAX_FAST_FRAMES || !msg_frame(d, len, pos, MAX_CONTROL_LINE, &m) || m.subject_len != slen ||
            memcmp(m.subject, subj, (size_t)slen) != 0)
            return 0;
        int mine = sid_in(sids, m.sid);
        if (mine <= 0) return mine;
        at[n] = m.start;
        size[n] = m.size;
        n++;
        pos = m.start + m.size + 2;
    }
    return n;
}

/* stats[key] += n (nats-py's statistics dict, as its own parser counts); a key it lacks is left alone */
static int stat_add(PyObject *stats, int key, Py_ssize_t n) {
    PyObject *v = PyDict_GetItemWithError(stats, name_obj[key]); /* borrowed */
    if (v == NULL) return PyErr_Occurred() ? -1 : 0;
    PyObject *add = PyLong_FromSsize_t(n);
    if (add == NULL) return -1;
    PyObject *sum = PyNumber_Add(v, add);
    Py_DECREF(add);
    if (sum == NULL) return -1;
    int rc = PyDict_SetItem(stats, name_obj[key], sum);
    Py_DECREF(sum);
    return rc;
}

/* The exception raised, normalized, its traceback attached (a new reference; none left set) */
static PyObject *fetch_exception(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* The read, whole, through the Fast path: 1 done (the loop has nothing to do), 2 done (the loop has
 * work: back to it), 0 not taken (nothing consumed: on_data's), -1 error. */
static int fast_take(Fast *f, const char *d, Py_ssize_t len) {
    PyObject *direct = Py_NewRef(f->direct), *mirror = Py_NewRef(f->mirror); /* held: a callback may re-init f */
    int taking = 0;                                                          /* frames delivered from this read */
    PyObject *sids = NULL, *writer = NULL, *nc = NULL, *ps = NULL, *reader = NULL, *idle = NULL, *state = NULL;
    PyObject *segment = NULL, *markets = NULL, *wanted = NULL, *group = NULL, *slow = NULL, *stats = NULL, *loop = NULL;
    int result = 0, ok;
    Py_ssize_t at[MAX_FAST_FRAMES], size[MAX_FAST_FRAMES], limit;
    if ((writer = attr(mirror, N_WRITER)) == NULL) goto error;
    if (writer == Py_None) goto done;
    if ((ok = true_attr(mirror, N_USE_C)) <= 0) goto check;
    if ((sids = attr(direct, N_SIDS)) == NULL || !PyAnySet_Check(sids)) goto check_type;
    int n = batch_frames(f, sids, d, len, at, size);
    if (n <= 0) {
        ok = n;
        goto check;
    }
    PyObject *limit_obj = attr(direct, N_LIMIT);
    if (limit_obj == NULL) goto error;
    limit = PyLong_AsSsize_t(limit_obj);
    Py_DECREF(limit_obj);
    if (limit == -1 && PyErr_Occurred()) goto error;
    if (n > limit) goto done; /* the client's slow-consumer rule: Python's */
    /* nats-py's parser and our backlog hold nothing: the wire's order is this read's */
    if ((reader = attr(direct, N_READER)) == NULL || (nc = attr(direct, N_NC)) == NULL || (ps = attr(nc, N_PS)) == NULL)
        goto error;
    if ((ok = empty_attr(reader, N_BUFFER)) <= 0 || (ok = empty_attr(ps, N_BUF)) <= 0 || (ok = empty_attr(direct, N_BACKLOG)) <= 0)
        goto check;
    if ((idle = attr(direct, N_IDLE)) == NULL || (state = attr(ps, N_STATE)) == NULL) goto error;
    if ((ok = PyObject_RichCompareBool(state, idle, Py_EQ)) <= 0) goto check;
    if ((segment = attr(writer, N_SEGMENT)) == NULL || (markets = attr(mirror, N_MARKETS)) == NULL ||
        (wanted = attr(mirror, N_WANTED)) == NULL || (group = attr(mirror, N_GROUP_B)) == NULL ||
        (slow = attr(mirror, N_SLOW_ENTRY)) == NULL || (stats = attr(nc, N_STATS)) == NULL ||
        (loop = attr(direct, N_LOOP)) == NULL)
        goto error;
    if (!PyDict_Check(stats)) goto done;
    f->reads++;
    taking = 1;
    for (int i = 0; i < n; i++) {
        int stale = true_attr(mirror, N_STALE_REASON); /* a frame's apply can flag or clear every market */
        if (stale < 0) goto error;
        PyObject *payload = PyBytes_FromStringAndSize(d + at[i], size[i]);
        if (payload == NULL) goto error;
        if (stat_add(stats, N_IN_MSGS, 1) < 0 || stat_add(stats, N_IN_BYTES, size[i]) < 0) {
            Py_DECREF(payload);
            goto error;
        }
        f->frames++;
        PyObject *r = apply_core(payload, segment, group, markets, wanted, stale, slow);
        if (r != NULL && r != Py_None) {
            Py_ssize_t applied, skipped;
            if (!PyArg_ParseTuple(r, "nn", &applied, &skipped)) {
                Py_DECREF(r);
                r = NULL;
            } else {
                f->batches++;
                f->applied += (unsigned long long)applied;
                f->unwanted += (unsigned long long)skipped;
            }
        } else if (r == Py_None) { /* refused or another group's: the Python path names and counts it */
            Py_DECREF(r);
            r = PyObject_CallMethodOneArg(mirror, name_obj[N_PYTHON_BATCH], payload);
        }
        if (r == NULL) { /* as DirectDelivery._handle: an Exception is logged and the read goes on */
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                Py_DECREF(payload);
                goto error;
            }
            PyObject *exc = fetch_exception();
            r = PyObject_CallMethodObjArgs(direct, name_obj[N_FAST_FAILED], f->subject, exc ? exc : Py_None, NULL);
            Py_XDECREF(exc);
            if (r == NULL) {
                Py_DECREF(payload);
                goto error;
            }
        }
        Py_DECREF(r);
        Py_DECREF(payload);
    }
    /* as take_read: work scheduled (a resync's task) or a stop asked: back to the loop */
    if ((ok = empty_attr(loop, N_READY)) < 0) goto error;
    int stopping = true_attr(loop, N_STOPPING);
    if (stopping < 0) goto error;
    result = ok && !stopping ? 1 : 2;
    goto done;
check_type:
    if (sids != NULL) goto done;
    goto error;
check:
    if (ok < 0) goto error;
    goto done;
error:
    if (!taking) { /* nothing delivered yet: the read is on_data's, whose path meets the same state */
        PyErr_Clear();
        result = 0;
    } else if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        result = -1; /* as take_read: these leave the loop */
    } else { /* as take_read: the connection fails (nats-py reconnects), the loop goes on */
        PyObject *exc = fetch_exception();
        PyObject *r = PyObject_CallMethodOneArg(direct, name_obj[N_FAST_ERROR], exc ? exc : Py_None);
        Py_XDECREF(exc);
        Py_XDECREF(r);
        result = r == NULL ? -1 : 2;
    }
done:
    Py_XDECREF(sids);
    Py_XDECREF(writer);
    Py_XDECREF(nc);
    Py_XDECREF(ps);
    Py_XDECREF(reader);
    Py_XDECREF(idle);
    Py_XDECREF(state);
    Py_XDECREF(segment);
    Py_XDECREF(markets);
    Py_XDECREF(wanted);
    Py_XDECREF(group);
    Py_XDECREF(slow);
    Py_XDECREF(stats);
    Py_XDECREF(loop);
    Py_DECREF(direct);
    Py_DECREF(mirror);
    return result;
}

/* ---------------------------------------------------------------- wait */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* wait(epfd, sockfd, timeout_s, on_data, max_size) -> None
 * The event loop's wait (lean.LoopReads' selector), with the NATS connection's reads taken here: it sleeps
 * in epoll_wait on the loop's own epoll set (GIL released) until timeout_s (< 0: no limit) has passed or an
 * fd is ready. While the only fd ready is sockfd it reads it (as asyncio's transport would: one recv of
 * at most max_size bytes) and hands the bytes to on_data(data) -> bool, the transport protocol's
 * data_received; on True (everything was handled, nothing scheduled for the loop) it goes on waiting.
 * It returns on anything else: another fd ready, the time up, a signal, an EOF or error on sockfd (left
 * for the transport's own recv to see), or on_data returning False. The caller then polls the loop's
 * selector without waiting, as asyncio would have. */
static PyObject *wait_reads(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "wait(epfd, sockfd, timeout_s, on_data, max_size[, fast])");
        return NULL;
    }
    Fast *fast = nargs == 6 && Py_IS_TYPE(args[5], &FastType) ? (Fast *)args[5] : NULL;
    if (fast != NULL && (fast->direct == NULL || fast->mirror == NULL || fast->subject == NULL)) fast = NULL; /* not initialised */
    int epfd = (int)PyLong_AsLong(args[0]), sockfd = (int)PyLong_AsLong(args[1]);
    double timeout = PyFloat_AsDouble(args[2]);
    Py_ssize_t max_size = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) return NULL;
    PyObject *on_data = args[3];
    if (max_size <= 0) max_size = 1;
    double deadline = timeout < 0 ? -1.0 : now_s() + timeout;
    struct epoll_event evs[16];
    char *raw = NULL; /* the reads' buffer, one per call (each read's bytes are copied out of it) */
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            double left = deadline - now_s();
            if (left <= 0) break;
            ms = (int)(left * 1e3);
            if ((double)ms < left * 1e3) ms++; /* at least the time left, as selectors.EpollSelector rounds */
        }
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(epfd, evs, 16, ms);
        Py_END_ALLOW_THREADS
        if (n <= 0) break; /* time up, a signal (EINTR) or an error: the selector sees to it */
        int only_sock = 1;
        for (int i = 0; i < n; i++)
            if (evs[i].data.fd != sockfd || (evs[i].events & ~(uint32_t)EPOLLIN)) only_sock = 0;
        if (!only_sock) break;
        if (raw == NULL && (raw = PyMem_RawMalloc((size_t)max_size)) == NULL) return PyErr_NoMemory();
        ssize_t got;
        Py_BEGIN_ALLOW_THREADS
        got = recv(sockfd, raw, (size_t)max_size, MSG_DONTWAIT);
        Py_END_ALLOW_THREADS
        if (got <= 0) {
            int err = errno;
            if (got < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) continue;
            break; /* EOF or an error: the transport's recv sees it again */
        }
        if (fast != NULL) {
            int took = fast_take(fast, raw, (Py_ssize_t)got);
            if (took < 0) goto error;
            if (took == 2) break;
            if (took == 1) continue;
        }
        PyObject *buf = PyBytes_FromStringAndSize(raw, (Py_ssize_t)got);
        if (buf == NULL) goto error;
        PyObject *r = PyObject_CallOneArg(on_data, buf);
        Py_DECREF(buf);
        if (r == NULL) goto error;
        int more = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (more < 0) goto error;
        if (!more) break;
    }
    PyMem_RawFree(raw);
    Py_RETURN_NONE;
error:
    PyMem_RawFree(raw);
    return NULL;
}

/* ---------------------------------------------------------------- module */

static PyObject *offsets(PyObject *mod, PyObject *Py_UNUSED(ignored)) {
    (void)mod;
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "envelope", ENVELOPE_SIZE, "entry",
                         ENTRY_SIZE, "gen", E_GEN, "update_id", E_UPDATE_ID, "event_time_ms", E_EVENT_TIME, "recv_time_ns",
                         E_RECV_TIME, "status", E_STATUS, "n_bids", E_N_BIDS, "n_asks", E_N_ASKS, "updates", E_COUNTERS,
                         "counters", N_COUNTERS, "name_max", NAME_MAX_LEN, "symbol_max", SYMBOL_MAX_LEN, "level", LEVEL_BYTES);
}

static PyMethodDef methods[] = {
    {"apply_batch", (PyCFunction)(void (*)(void))apply_batch, METH_FASTCALL,
     "apply_batch(data, segment, group, markets, wanted, stale, slow) -> (applied, skipped) | None"},
    {"frames", (PyCFunction)(void (*)(void))frames, METH_FASTCALL,
     "frames(data, sids, max_control) -> ([(subject, payload), ...], consumed)"},
    {"wait", (PyCFunction)(void (*)(void))wait_reads, METH_FASTCALL,
     "wait(epfd, sockfd, timeout_s, on_data, max_size[, fast]) -> None: the loop's wait, the NATS socket's reads taken in it"},
    {"offsets", offsets, METH_NOARGS, "the wire offsets this module assumes (checked against codec at import)"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "ldc.fanout._mirror", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__mirror(void) {
    PyObject *seqlock = PyImport_ImportModule("ldc.shm._seqlock"); /* the capsule's module, imported first */
    if (seqlock == NULL) return NULL;
    Py_DECREF(seqlock);
    api = PyCapsule_Import(LDC_SEQLOCK_API_CAPSULE, 0);
    if (api == NULL) return NULL;
    if (api->version != LDC_SEQLOCK_API_VERSION) {
        PyErr_Format(PyExc_ImportError, "ldc.shm._seqlock C API version %d, expected %d", api->version,
                     LDC_SEQLOCK_API_VERSION);
        return NULL;
    }
    if (PyType_Ready(&MarketType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    for (int i = 0; i < N_NAMES; i++)
        if (name_obj[i] == NULL && (name_obj[i] = PyUnicode_InternFromString(name_text[i])) == NULL) {
            Py_DECREF(m);
            return NULL;
        }
    if (PyType_Ready(&FastType) < 0 || PyModule_AddObjectRef(m, "Fast", (PyObject *)&FastType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Market", (PyObject *)&MarketType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
