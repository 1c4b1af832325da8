/* ldc._fastbook: StreamRouter (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * StreamRouter: the messages of one socket read of a stream venue (OKX, Bybit, Kraken) to their markets' HotPaths
 *
 * The stream venues' Router. StreamRouter(dialect, depth=0) takes the venue's C dialect, the module's function
 * (parse_okx, parse_bybit, parse_kraken with its subscribed depth: venues whose sequence is per market, or
 * none; ValueError for any other), whose answer for a message is [(stream key, ParsedDiff or, Kraken's, DepthSnapshot)], None
 * (OKX's and Bybit's snapshots, a control message, anything its reference parser reads) or a ValueError (a
 * doubt). The feeder's markets share one segment: one router publishes into one. feed(raws, start, conn_id,
 * recv_time_ns) takes raws[start:], in order; for each book update of each message, its stream's HotPath is
 * found in the dict `paths`, and when that path's conn is conn_id its last_event_ms / last_recv_ns are stamped
 * and the diff fed to it (HotPath: the venue's sequence rule, apply, the venue's checksum when the diff carries
 * one, publish). It stops at the first thing Python must see and returns (index, kind, value):
 *   (len(raws), ROUTE_END, None)         every message from start was applied and published;
 *   (i, ROUTE_DIFF, events)              an update for BookSync: HOT_PASS (a gap, a reset, not armed...), an
 *                                        unknown stream, another conn, an entry that is not a ParsedDiff
 *                                        (Kraken's snapshot);
 *   (i, ROUTE_TOP_FAULT, events)         applied, not published (HotPath.feed's HOT_TOP_FAULT);
 *   (i, ROUTE_CHECKSUM_FAULT, events)    applied, not published: the checksum it carries was not confirmed
 *                                        in C (HOT_CHECKSUM_FAULT: BookSync.checksum_fault decides);
 *   (i, ROUTE_CONTROL, None)             the dialect leaves message i to the reference parser (None);
 *   (i, ROUTE_MALFORMED, message)        the dialect doubts message i (its ValueError's message).
 * `events` is the list of message i's (stream, ParsedDiff) from the one Python must see on (the ones before it
 * in the same message were done here). When a HotPath raises (its apply or publish failed), feed raises too and
 * fault_stream names that stream (fault_index its message) until the next feed: its market resyncs (fail
 * closed), nothing else was touched, and the caller goes on from the next message. The segment's readers are
 * woken once a feed(), after everything it published, before it returns (Binance's Router does the same); a
 * wake that fails is a fault of the last stream that published, whose message fault_index then names (what
 * came after it is fed again: Python saw none of it). Messages before i are done; the caller handles message i (its
 * `events`) and calls again from i + 1. The caller holds the lock that serialises its markets' events.
 * ---------------------------------------------------------------------------------------------- */

static int stream_router_init(StreamRouter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"dialect", "depth", NULL};
    PyObject *fn;
    Py_ssize_t depth = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n:StreamRouter", kwlist, &fn, &depth)) {
        return -1;
    }
    StreamDialect dialect = NULL;
    int kraken = 0;
    if (PyCFunction_Check(fn)) {
        PyCFunction meth = PyCFunction_GetFunction(fn);
        if (meth == (PyCFunction)ldc_fb_parse_okx) {
            dialect = ldc_fb_parse_okx;
        } else if (meth == (PyCFunction)ldc_fb_parse_bybit) {
            dialect = ldc_fb_parse_bybit;
        } else if (meth == (PyCFunction)(void (*)(void))ldc_fb_parse_kraken) {
            kraken = 1;
        }
    }
    if (dialect == NULL && !kraken) {
        PyErr_Format(PyExc_ValueError, "StreamRouter: expected the C dialect parse_okx, parse_bybit or parse_kraken, found %R",
                     fn);
        return -1;
    }
    if (kraken ? depth < 1 : depth != 0) {
        PyErr_Format(PyExc_ValueError, "StreamRouter: expected %s, found depth=%zd",
                     kraken ? "parse_kraken's subscribed depth (at least 1)" : "no depth for this dialect", depth);
        return -1;
    }
    PyObject *depth_arg = kraken ? PyLong_FromSsize_t(depth) : NULL;
    if (kraken && depth_arg == NULL) {
        return -1;
    }
    PyObject *paths = PyDict_New();
    if (paths == NULL) {
        Py_XDECREF(depth_arg);
        return -1;
    }
    Py_XSETREF(self->depth, depth_arg);
    self->kraken_depth = kraken ? depth : 0;
    Py_CLEAR(self->spare);
    Py_XSETREF(self->paths, paths);
    Py_XSETREF(self->name, Py_NewRef(fn));
    self->dialect = dialect;
    Py_CLEAR(self->fault_stream);
    self->fault_index = -1;
    return 0;
}

static void stream_router_dealloc(StreamRouter *self)
{
    Py_CLEAR(self->paths);
    Py_CLEAR(self->name);
    Py_CLEAR(self->depth);
    Py_CLEAR(self->fault_stream);
    Py_CLEAR(self->spare);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* message i's events from j on, for Python (steals events) */
static PyObject *routed_rest(Py_ssize_t index, int kind, PyObject *events, Py_ssize_t j)
{
    PyObject *rest = j == 0 ? Py_NewRef(events) : PyList_GetSlice(events, j, PyList_GET_SIZE(events));
    Py_DECREF(events);
    return ldc_fb_routed(index, kind, rest);
}

/* What one feed() published: the segment (the feeder's markets share one), the HotPath and message that did it
 * last, so that the readers are woken once a read, before Python sees anything. Borrowed: paths holds them, and
 * no Python code runs meanwhile to change it */
typedef struct {
    PyObject *segment; /* NULL: nothing published yet */
    HotPath *hot;
    Py_ssize_t index;
} Published;

/* A wake that failed (its exception set): the fault of the stream whose HotPath published last */
static void wake_failed(StreamRouter *self, const Published *published)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(self->paths, &pos, &key, &value)) {
        if (value == (PyObject *)published->hot) {
            Py_XSETREF(self->fault_stream, Py_NewRef(key));
            self->fault_index = published->index;
            return;
        }
    }
}

static PyObject *stream_router_run(StreamRouter *self, PyObject *raws, Py_ssize_t i, long long conn, long long recv_ns,
                                   Published *published);

static PyObject *stream_router_feed(StreamRouter *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start;
    long long conn, recv_ns;
    if (ldc_fb_feed_args(args, nargs, &start, &conn, &recv_ns) < 0) {
        return NULL;
    }
    if (self->paths == NULL || (self->dialect == NULL && self->depth == NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "StreamRouter was not initialised: StreamRouter(dialect)");
        return NULL;
    }
    Py_CLEAR(self->fault_stream);
    self->fault_index = -1;
    Published published = {NULL, NULL, -1};
    PyObject *result = stream_router_run(self, args[0], start < 0 ? 0 : start, conn, recv_ns, &published);
    /* one wake-up a read, after everything it published and before Python sees the rest (a reader never waits
     * behind the slow path for a publish already made); a failed wake is the last publishing stream's fault */
    int reported = result == NULL;
    result = ldc_fb_woken_then(published.segment, result);
    if (result == NULL && !reported) {
        wake_failed(self, &published);
    }
    return result;
}

/* Done with a Kraken diff: kept as the next message's spare when the router is its last holder (Python was not
 * given it, no pending refresh recorded it) and it has more room than the spare kept, else released */
static void kraken_done_with(StreamRouter *self, PyObject *diff)
{
    if (Py_REFCNT(diff) == 1 && (self->spare == NULL || Py_SIZE(diff) > Py_SIZE(self->spare))) {
        Py_XSETREF(self->spare, diff);
    } else {
        Py_DECREF(diff);
    }
}

/* Kraken's messages, one at a time: one book a message, read (ldc_fb_kraken_event) into its symbol and a ParsedDiff
 * that is the router's spare rewritten when nobody else holds it; the [(symbol, event)] list is made only for
 * what Python must see. Returns as stream_router_run */
static PyObject *kraken_run(StreamRouter *self, PyObject *raws, Py_ssize_t i, long long conn, long long recv_ns,
                            Published *published)
{
    for (; i < PyList_GET_SIZE(raws); i++) {
        PyObject *symbol, *event;
        int rc = ldc_fb_kraken_event(PyList_GET_ITEM(raws, i), self->kraken_depth, &self->spare, &symbol, &event);
        if (rc <= 0) {
            return rc < 0 ? ldc_fb_routed_malformed(i) : ldc_fb_routed(i, ROUTE_CONTROL, Py_NewRef(Py_None));
        }
        int kind = ROUTE_DIFF; /* a snapshot, an unknown pair, another conn, HOT_PASS: BookSync's */
        if (Py_IS_TYPE(event, &ldc_fb_ParsedDiffType)) {
            PyObject *hot = PyDict_GetItemWithError(self->paths, symbol); /* borrowed */
            if (hot != NULL && Py_IS_TYPE(hot, &ldc_fb_HotPathType) && ((HotPath *)hot)->conn == conn) {
                HotPath *h = (HotPath *)hot;
                h->last_event_ms = ((ParsedDiff *)event)->event_time_ms;
                h->last_recv_ns = recv_ns;
                int outcome = ldc_fb_hot_feed(h, event, recv_ns);
                if (outcome < 0) { /* the book may be half-applied: the caller resyncs this pair's market */
                    Py_XSETREF(self->fault_stream, symbol);
                    self->fault_index = i;
                    Py_DECREF(event);
                    return NULL;
                }
                if (outcome == HOT_DONE || outcome == HOT_IGNORED) {
                    if (outcome == HOT_DONE) {
                        published->segment = h->segment;
                        published->hot = h;
                        published->index = i;
                    }
                    Py_DECREF(symbol);
                    kraken_done_with(self, event);
                    continue;
                }
                kind = ldc_fb_route_of(outcome);
            } else if (hot == NULL && PyErr_Occurred()) {
                Py_DECREF(symbol);
                Py_DECREF(event);
                return NULL;
            }
        }
        return ldc_fb_routed(i, kind, ldc_fb_kraken_events(symbol, event));
    }
    return ldc_fb_routed(i, ROUTE_END, Py_NewRef(Py_None));
}

static PyObject *stream_router_run(StreamRouter *self, PyObject *raws, Py_ssize_t i, long long conn, long long recv_ns,
                                   Published *published)
{
    if (self->depth != NULL) {
        return kraken_run(self, raws, i, conn, recv_ns, published);
    }
    for (; i < PyList_GET_SIZE(raws); i++) {
        PyObject *raw = PyList_GET_ITEM(raws, i);
        PyObject *events = self->dialect(NULL, raw);
        if (events == NULL) {
            return ldc_fb_routed_malformed(i);
        }
        if (events == Py_None) {
            return ldc_fb_routed(i, ROUTE_CONTROL, events);
        }
        if (!PyList_CheckExact(events)) { /* the dialects answer a list: anything else is a bug, said so */
            PyErr_Format(PyExc_TypeError, "StreamRouter: dialect %R answered %s, expected a list or None", self->name,
                         Py_TYPE(events)->tp_name);
            Py_DECREF(events);
            return NULL;
        }
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(events); j++) {
            PyObject *pair = PyList_GET_ITEM(events, j);
            if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
                !Py_IS_TYPE(PyTuple_GET_ITEM(pair, 1), &ldc_fb_ParsedDiffType)) {
                return routed_rest(i, ROUTE_DIFF, events, j);
            }
            PyObject *diff = PyTuple_GET_ITEM(pair, 1);
            PyObject *hot = PyDict_GetItemWithError(self->paths, PyTuple_GET_ITEM(pair, 0)); /* borrowed */
            if (hot == NULL || !Py_IS_TYPE(hot, &ldc_fb_HotPathType) || ((HotPath *)hot)->conn != conn) {
                if (hot == NULL && PyErr_Occurred()) {
                    Py_DECREF(events);
                    return NULL;
                }
                return routed_rest(i, ROUTE_DIFF, events, j);
            }
            HotPath *h = (HotPath *)hot;
            h->last_event_ms = ((ParsedDiff *)diff)->event_time_ms;
            h->last_recv_ns = recv_ns;
            int outcome = ldc_fb_hot_feed(h, diff, recv_ns);
            if (outcome < 0) { /* the book may be half-applied: the caller resyncs this stream's market */
                Py_XSETREF(self->fault_stream, Py_NewRef(PyTuple_GET_ITEM(pair, 0)));
                self->fault_index = i;
                Py_DECREF(events);
                return NULL;
            }
            if (outcome == HOT_IGNORED) { /* old (OKX's keep-alive, a duplicate): counted, nothing published */
                continue;
            }
            if (outcome != HOT_DONE) {
                return routed_rest(i, ldc_fb_route_of(outcome), events, j);
            }
            published->segment = h->segment; /* one segment a router: the feeder's markets share it */
            published->hot = h;
            published->index = i;
        }
        Py_DECREF(events);
    }
    return ldc_fb_routed(i, ROUTE_END, Py_NewRef(Py_None));
}

static PyObject *stream_router_get_paths(StreamRouter *self, void *closure)
{
    (void)closure;
    if (self->paths == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "StreamRouter was not initialised: StreamRouter(dialect)");
        return NULL;
    }
    return Py_NewRef(self->paths);
}

static PyObject *stream_router_get_dialect(StreamRouter *self, void *closure)
{
    (void)closure;
    if (self->name == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "StreamRouter was not initialised: StreamRouter(dialect)");
        return NULL;
    }
    return Py_NewRef(self->name);
}

static PyObject *stream_router_get_fault_stream(StreamRouter *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->fault_stream != NULL ? self->fault_stream : Py_None);
}

static PyObject *stream_router_get_fault_index(StreamRouter *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->fault_stream != NULL ? self->fault_index : -1);
}

static PyMethodDef stream_router_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))stream_router_feed, METH_FASTCALL,
     "feed(raws, start, conn_id, recv_time_ns) -> (index, kind, value): see the module's StreamRouter notes."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stream_router_getset[] = {
    {"paths", (getter)stream_router_get_paths, NULL, "The dict stream key -> HotPath the caller maintains.", NULL},
    {"dialect", (getter)stream_router_get_dialect, NULL, "The venue's C dialect, as given.", NULL},
    {"fault_stream", (getter)stream_router_get_fault_stream, NULL,
     "The stream whose HotPath raised in the last feed() (its book may be half-applied), or None.", NULL},
    {"fault_index", (getter)stream_router_get_fault_index, NULL,
     "The index in raws of that stream's message (-1: none); the messages after it were not read.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ldc_fb_StreamRouterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._fastbook.StreamRouter",
    .tp_basicsize = sizeof(StreamRouter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "StreamRouter(dialect, depth=0): a stream venue's book updates of one read to their markets' HotPaths.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)stream_router_init,
    .tp_dealloc = (destructor)stream_router_dealloc,
    .tp_methods = stream_router_methods,
    .tp_getset = stream_router_getset,
};
