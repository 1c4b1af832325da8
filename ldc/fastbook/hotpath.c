/* ldc._fastbook: HotPath (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * HotPath: a market's diff, from ParsedDiff to published slot, in one call while its book is in sync
 *
 * The feeder's per-diff work for a book in sync is always the same: check that the diff continues the
 * book (spot: U == last u + 1; futures: pu == last u), apply it, record it when a refresh is pending,
 * check the top is neither crossed nor changed in coverage, copy the top N into the slot. In Python that
 * is a dozen calls per diff; here it is one. Anything else -- a diff that does not continue the book, a
 * crossed top, a coverage change, a market not in sync -- is handed back to ldc.sync.BookSync, which owns
 * every decision: the feeder arms a HotPath as BookSync.fast_path() says, and gives BookSync the diffs
 * applied here (take_applied, update_id) before it feeds BookSync anything.
 * ---------------------------------------------------------------------------------------------- */

const LdcSeqlockAPI *ldc_fb_seqlock_api; /* ldc.shm._seqlock's C API, imported by the first HotPath */

static int hotpath_init(HotPath *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"segment", "slot", "futures", "unsequenced", NULL};
    PyObject *segment;
    Py_ssize_t slot;
    int futures = -1, unsequenced = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|$pp:HotPath", kwlist, &segment, &slot, &futures, &unsequenced)) {
        return -1;
    }
    if (futures < 0) {
        PyErr_SetString(PyExc_TypeError, "HotPath() missing required keyword-only argument: 'futures'");
        return -1;
    }
    if (ldc_fb_seqlock_api == NULL) {
        const LdcSeqlockAPI *api = PyCapsule_Import(LDC_SEQLOCK_API_CAPSULE, 0);
        if (api == NULL) {
            return -1;
        }
        if (api->version != LDC_SEQLOCK_API_VERSION) {
            PyErr_Format(PyExc_ImportError, "ldc.shm._seqlock C API version %d, expected %d: rebuild both extensions",
                         api->version, LDC_SEQLOCK_API_VERSION);
            return -1;
        }
        ldc_fb_seqlock_api = api;
    }
    Py_ssize_t depth = ldc_fb_seqlock_api->depth(segment);
    if (depth < 0) {
        return -1;
    }
    if (slot < 0) {
        PyErr_Format(PyExc_ValueError, "slot must be at least 0, found %zd", slot);
        return -1;
    }
    double *levels = PyMem_Malloc((size_t)(4 * (depth > 0 ? depth : 1)) * sizeof(double));
    if (levels == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(self->levels);
    Py_CLEAR(self->book);
    Py_CLEAR(self->record);
    Py_XSETREF(self->segment, Py_NewRef(segment));
    self->levels = levels;
    self->slot = slot;
    self->depth = depth;
    self->futures = futures;
    self->unsequenced = unsequenced;
    self->window_whole = 0;
    self->update_id = NO_ID;
    self->applied = 0;
    self->status = 0;
    self->conn = -1;
    self->last_event_ms = -1;
    self->last_recv_ns = 0;
    self->crc_levels = 0;
    self->crc_price_decimals = self->crc_size_decimals = -1;
    self->crc_retry_shortest = 0;
    self->crc_kind = HOT_CRC_OKX;
    self->checksums = 0;
    self->skips_old = 0;
    self->ignored = 0;
    memset(&self->kraken_crc, 0, sizeof self->kraken_crc);
    return 0;
}

static void hotpath_dealloc(HotPath *self)
{
    Py_CLEAR(self->book);
    Py_CLEAR(self->record);
    Py_CLEAR(self->segment);
    PyMem_Free(self->levels);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* arm(book, update_id, status, uncovered=False, record=None, record_limit=0): diffs continuing update_id
 * are applied to book, appended to record (while it is shorter than record_limit) and published with status */
static PyObject *hotpath_arm(HotPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 6) {
        PyErr_Format(PyExc_TypeError,
                     "arm() takes 3 to 6 arguments (book, update_id, status, uncovered, record, record_limit), found %zd",
                     nargs);
        return NULL;
    }
    int uncovered = nargs > 3 ? PyObject_IsTrue(args[3]) : 0;
    if (uncovered < 0) {
        return NULL;
    }
    PyObject *record = nargs > 4 && args[4] != Py_None ? args[4] : NULL;
    if (record != NULL && !PyList_CheckExact(record)) {
        PyErr_Format(PyExc_TypeError, "arm() record must be a list or None, found %s", Py_TYPE(record)->tp_name);
        return NULL;
    }
    Py_ssize_t record_limit = nargs > 5 ? PyLong_AsSsize_t(args[5]) : 0;
    if (record_limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->segment == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "HotPath was not initialised: HotPath(segment, slot, futures=...)");
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], &ldc_fb_FastBookType)) {
        PyErr_Format(PyExc_TypeError, "arm() needs a FastBook, found %s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    long long update_id = PyLong_AsLongLong(args[1]);
    unsigned long status = PyLong_AsUnsignedLong(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (update_id < 0) {
        PyErr_Format(PyExc_ValueError, "update_id must be at least 0, found %lld", update_id);
        return NULL;
    }
    if (status > UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "status must fit 32 bits, found %lu", status);
        return NULL;
    }
    Py_XSETREF(self->book, (FastBook *)Py_NewRef(args[0]));
    Py_XSETREF(self->record, Py_XNewRef(record));
    self->record_limit = record_limit;
    self->uncovered = uncovered;
    self->update_id = update_id;
    self->status = (uint32_t)status;
    Py_RETURN_NONE;
}

static PyObject *hotpath_disarm(HotPath *self, PyObject *unused)
{
    (void)unused;
    Py_CLEAR(self->book);
    Py_CLEAR(self->record);
    Py_RETURN_NONE;
}

/* set_checksum(levels, price_decimals, size_decimals, kind=HOT_CRC_OKX): verify the venue's CRC32 of the top
 * `levels` (0: none) on every diff carrying one. OKX (ldc.venues.okx.book_checksum): numbers written with these
 * decimals (-1: shortest form), and when they are not the shortest form, again in it. Kraken
 * (ldc.venues.kraken.book_checksum): the unsigned CRC32 of the asks then the bids, each number the integer
 * rint(value * 10^decimals) (decimals >= 0) */
static PyObject *hotpath_set_checksum(HotPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "set_checksum() takes 3 or 4 arguments (levels, price_decimals, size_decimals, kind), found %zd",
                     nargs);
        return NULL;
    }
    Py_ssize_t levels = PyLong_AsSsize_t(args[0]);
    long p = PyLong_AsLong(args[1]), s = PyLong_AsLong(args[2]);
    long kind = nargs == 4 ? PyLong_AsLong(args[3]) : HOT_CRC_OKX;
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (kind != HOT_CRC_OKX && kind != HOT_CRC_KRAKEN) {
        PyErr_Format(PyExc_ValueError, "set_checksum: expected kind HOT_CRC_OKX (%d) or HOT_CRC_KRAKEN (%d), found %ld",
                     HOT_CRC_OKX, HOT_CRC_KRAKEN, kind);
        return NULL;
    }
    long least = kind == HOT_CRC_KRAKEN ? 0 : -1;
    if (levels < 0 || p < least || s < least || p > 30 || s > 30) {
        PyErr_Format(PyExc_ValueError, "set_checksum: expected levels >= 0 and decimals in %ld..30, found %zd, %ld, %ld",
                     least, levels, p, s);
        return NULL;
    }
    self->crc_levels = levels;
    self->crc_price_decimals = (int)p;
    self->crc_size_decimals = (int)s;
    self->crc_kind = (int)kind;
    self->crc_retry_shortest = kind == HOT_CRC_OKX && (p != -1 || s != -1);
    Py_RETURN_NONE;
}

static PyObject *hotpath_take_ignored(HotPath *self, PyObject *unused)
{
    (void)unused;
    long long ignored = self->ignored;
    self->ignored = 0;
    return PyLong_FromLongLong(ignored);
}

/* the HotPath's int flags as bools; closure: the field's offset (skips_old, window_whole, unsequenced) */
static PyObject *hotpath_get_flag(HotPath *self, void *closure)
{
    return PyBool_FromLong(*(int *)((char *)self + (size_t)closure));
}

static int hotpath_set_flag(HotPath *self, PyObject *value, void *closure)
{
    int on = value == NULL ? -1 : PyObject_IsTrue(value);
    if (on < 0) {
        if (value == NULL) {
            PyErr_SetString(PyExc_AttributeError, "cannot delete a HotPath field");
        }
        return -1;
    }
    *(int *)((char *)self + (size_t)closure) = on;
    return 0;
}

/* crc_cache: Kraken's checksum reused while the top 10 stays as it was (on by default; off: computed whole
 * every time, for the tests that compare both) */
static PyObject *hotpath_get_crc_cache(HotPath *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(!self->kraken_crc.off);
}

static int hotpath_set_crc_cache(HotPath *self, PyObject *value, void *closure)
{
    (void)closure;
    int on = value == NULL ? -1 : PyObject_IsTrue(value);
    if (on < 0) {
        if (value == NULL) {
            PyErr_SetString(PyExc_AttributeError, "cannot delete a HotPath field");
        }
        return -1;
    }
    self->kraken_crc.off = !on;
    self->kraken_crc.valid = 0;
    return 0;
}

static PyObject *hotpath_take_checksums(HotPath *self, PyObject *unused)
{
    (void)unused;
    long long checksums = self->checksums;
    self->checksums = 0;
    return PyLong_FromLongLong(checksums);
}

static PyObject *hotpath_take_applied(HotPath *self, PyObject *unused)
{
    (void)unused;
    long long applied = self->applied;
    self->applied = 0;
    return PyLong_FromLongLong(applied);
}

/* Whether the book's checksum is the venue's `expected` (OKX: ldc.venues.okx.book_checksum's first two tries; Kraken: kraken.book_checksum; in C):
 * 1 equal, 0 not equal or a number only Python writes (BookSync verifies it again), -1 with an exception */
static int hot_checksum_holds(HotPath *self, long long expected)
{
    long long crc;
    if (self->crc_kind == HOT_CRC_KRAKEN) { /* 0: a number only Python writes (BookSync verifies it) */
        return ldc_fb_kraken_crc32_cached(self->book, self->crc_levels, self->crc_price_decimals,
                                          self->crc_size_decimals, &self->kraken_crc, &crc) &&
               crc == expected;
    }
    int rc = ldc_fb_top_crc32(self->book, self->crc_levels, self->crc_price_decimals, self->crc_size_decimals, &crc);
    if (rc <= 0) {
        return rc;
    }
    if (crc == expected) {
        return 1;
    }
    if (!self->crc_retry_shortest) {
        return 0;
    }
    rc = ldc_fb_top_crc32(self->book, self->crc_levels, -1, -1, &crc);
    return rc <= 0 ? rc : crc == expected;
}

/* feed(diff, recv_time_ns) -> HOT_PASS (nothing done: BookSync decides), HOT_DONE (applied, recorded,
 * published), HOT_TOP_FAULT (applied, not published: the top is crossed -- not recorded then --, or its
 * coverage changed: lost on a covered book, back on an uncovered one), HOT_CHECKSUM_FAULT (applied, neither
 * recorded nor published: the venue's checksum it carries was not confirmed here -- BookSync.checksum_fault),
 * HOT_IGNORED (with skips_old: an old update, counted in take_ignored(), nothing else done). Unsequenced (rule
 * NONE, Kraken): every update with an id continues the book, whose id becomes the larger of the two and is what
 * is published; window_whole: the coverage is never checked (the venue keeps the window whole) */
/* the outcome of one diff (see feed), or -1 with an exception set */
int ldc_fb_hot_feed(HotPath *self, PyObject *diff, long long recv_ns)
{
    FastBook *book = self->book;
    if (book == NULL || !Py_IS_TYPE(diff, &ldc_fb_ParsedDiffType)) {
        return HOT_PASS;
    }
    const ParsedDiff *d = (const ParsedDiff *)diff;
    long long next_id = d->final_id;
    if (self->unsequenced) {
        /* venues.base.verdict's NONE: every update applies; one without an id (numbered by the book) is
         * BookSync's; the id is a clock that may repeat: the book's never goes back (BookSync._apply_diff) */
        if (d->final_id == NO_ID) {
            return HOT_PASS;
        }
        if (next_id < self->update_id) {
            next_id = self->update_id;
        }
        goto sequenced;
    }
    /* venues.base.verdict's OLD case, where the caller asked for it (skips_old): an update with ids ending at or
     * before the book, unless it is PREV_LINK_RESET's reset (prevSeqId == the book's, seqId below it: BookSync's) */
    if (self->skips_old && d->final_id != NO_ID && d->final_id <= self->update_id &&
        !(self->futures && d->prev_final_id == self->update_id && d->final_id < d->prev_final_id)) {
        self->ignored++;
        return HOT_IGNORED;
    }
    /* ids are >= 0 (parse_depth), so first_id - 1 cannot overflow; a diff ending at or before the book is
     * BookSync's to ignore, whatever its other ids say */
    if ((self->futures ? d->prev_final_id != self->update_id : d->first_id - 1 != self->update_id) ||
        d->final_id <= self->update_id) {
        return HOT_PASS;
    }
sequenced:
    if (self->record != NULL && PyList_GET_SIZE(self->record) >= self->record_limit) {
        return HOT_PASS; /* BookSync records it and drops the refresh */
    }
    int changed = ldc_fb_apply_parsed(book, d);
    if (changed < 0) {
        return -1;
    }
    self->update_id = next_id;
    self->applied++;
    if (changed && ldc_fb_book_crossed(book)) {
        return HOT_TOP_FAULT;
    }
    if (d->checksum != 0 && self->crc_levels > 0) { /* BookSync._apply_diff's order: crossed, checksum, record */
        int holds = hot_checksum_holds(self, d->checksum);
        if (holds < 0) {
            return -1;
        }
        if (!holds) {
            return HOT_CHECKSUM_FAULT; /* BookSync writes it again in Python, counts it and decides */
        }
        self->checksums++;
    }
    if (self->record != NULL && PyList_Append(self->record, diff) < 0) {
        return -1;
    }
    if (!self->window_whole &&
        (self->uncovered ? ldc_fb_book_covers(book, self->depth) : changed && !ldc_fb_book_covers(book, self->depth))) {
        return HOT_TOP_FAULT;
    }
    int rc;
    if (changed) {
        double *bids = self->levels, *asks = self->levels + 2 * self->depth;
        Py_ssize_t nb = ldc_fb_top_into(&book->bids, self->depth, bids);
        Py_ssize_t na = ldc_fb_top_into(&book->asks, self->depth, asks);
        rc = ldc_fb_seqlock_api->publish(self->segment, self->slot, next_id, d->event_time_ms, recv_ns,
                                         self->status, 1, bids, nb, asks, na);
    } else {
        rc = ldc_fb_seqlock_api->publish(self->segment, self->slot, next_id, d->event_time_ms, recv_ns,
                                         self->status, 0, NULL, 0, NULL, 0);
    }
    return rc < 0 ? -1 : HOT_DONE;
}

static PyObject *hotpath_feed(HotPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "feed() takes 2 arguments (diff, recv_time_ns), found %zd", nargs);
        return NULL;
    }
    long long recv_ns = PyLong_AsLongLong(args[1]);
    if (recv_ns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int outcome = ldc_fb_hot_feed(self, args[0], recv_ns);
    return outcome < 0 ? NULL : PyLong_FromLong(outcome);
}

static PyObject *hotpath_get_armed(HotPath *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->book != NULL);
}

static PyObject *hotpath_get_update_id(HotPath *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong(self->update_id);
}

static PyObject *hotpath_get_slot(HotPath *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->slot);
}

/* conn, last_event_ms, last_recv_ns: int64 fields the feeder reads and sets (their offset in the closure) */
static PyObject *hotpath_get_i64(HotPath *self, void *closure)
{
    return PyLong_FromLongLong(*(long long *)((char *)self + (size_t)closure));
}

static int hotpath_set_i64(HotPath *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a HotPath field");
        return -1;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *(long long *)((char *)self + (size_t)closure) = v;
    return 0;
}

static PyMethodDef hotpath_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))hotpath_feed, METH_FASTCALL,
     "feed(diff, recv_time_ns) -> HOT_PASS | HOT_DONE | HOT_TOP_FAULT (see the module's HotPath notes)."},
    {"arm", (PyCFunction)(void (*)(void))hotpath_arm, METH_FASTCALL,
     "arm(book, update_id, status): apply and publish the diffs that continue update_id."},
    {"disarm", (PyCFunction)hotpath_disarm, METH_NOARGS, "Stop: every diff is HOT_PASS until the next arm()."},
    {"take_applied", (PyCFunction)hotpath_take_applied, METH_NOARGS,
     "Diffs applied since the last call (and reset to 0)."},
    {"set_checksum", (PyCFunction)(void (*)(void))hotpath_set_checksum, METH_FASTCALL,
     "set_checksum(levels, price_decimals, size_decimals, kind): verify the venue's top CRC32 on every diff carrying one."},
    {"take_checksums", (PyCFunction)hotpath_take_checksums, METH_NOARGS,
     "Checksums verified (equal) since the last call (and reset to 0)."},
    {"take_ignored", (PyCFunction)hotpath_take_ignored, METH_NOARGS,
     "Old updates dropped (skips_old) since the last call (and reset to 0)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef hotpath_getset[] = {
    {"armed", (getter)hotpath_get_armed, NULL, "True between arm() and disarm().", NULL},
    {"skips_old", (getter)hotpath_get_flag, (setter)hotpath_set_flag,
     "Drop and count an update ending at or before the book (verdict OLD) instead of handing it back.",
     (void *)offsetof(HotPath, skips_old)},
    {"window_whole", (getter)hotpath_get_flag, (setter)hotpath_set_flag,
     "The venue keeps the book whole to its window (keeps_window_whole): its coverage is never checked here.",
     (void *)offsetof(HotPath, window_whole)},
    {"unsequenced", (getter)hotpath_get_flag, NULL,
     "Sequence rule NONE: every update with an id applies; the book's id never goes back.",
     (void *)offsetof(HotPath, unsequenced)},
    {"crc_cache", (getter)hotpath_get_crc_cache, (setter)hotpath_set_crc_cache,
     "Kraken: reuse the last checksum while the top 10 is bitwise as it was, else write a side again from its first\n"
     "changed level, kept levels taking their kept text; False computes it whole every time.", NULL},
    {"crc_reused", (getter)hotpath_get_i64, NULL, "Kraken checksums answered from the cache (both sides unchanged).",
     (void *)offsetof(HotPath, kraken_crc.reused)},
    {"crc_bids_only", (getter)hotpath_get_i64, NULL, "Kraken checksums that rewrote the bids alone (the asks unchanged).",
     (void *)offsetof(HotPath, kraken_crc.bids_only)},
    {"update_id", (getter)hotpath_get_update_id, NULL, "The book's update id as of the last diff applied here.", NULL},
    {"slot", (getter)hotpath_get_slot, NULL, "The slot published into.", NULL},
    {"conn", (getter)hotpath_get_i64, (setter)hotpath_set_i64,
     "The connection whose diffs feed the book (-1: none): a Router leaves the others' diffs to Python.",
     (void *)offsetof(HotPath, conn)},
    {"last_event_ms", (getter)hotpath_get_i64, (setter)hotpath_set_i64,
     "Exchange event time of the last diff routed to the market (-1: none).", (void *)offsetof(HotPath, last_event_ms)},
    {"last_recv_ns", (getter)hotpath_get_i64, (setter)hotpath_set_i64, "When that diff was received.",
     (void *)offsetof(HotPath, last_recv_ns)},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ldc_fb_HotPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._fastbook.HotPath",
    .tp_basicsize = sizeof(HotPath),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HotPath(segment, slot, *, futures): one market's in-sync diffs applied and published in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)hotpath_init,
    .tp_dealloc = (destructor)hotpath_dealloc,
    .tp_methods = hotpath_methods,
    .tp_getset = hotpath_getset,
};
