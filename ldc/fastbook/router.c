/* ldc._fastbook: Router (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * Router: the frames of one socket read to their markets' HotPaths, in one call
 *
 * feed(raws, start, conn_id, recv_time_ns) takes raws[start:], in order: each message is parsed
 * (parse_depth), its symbol's HotPath found in the dict `paths`, and when that path's conn is conn_id its
 * last_event_ms / last_recv_ns are stamped and the diff fed to it; a published diff wakes the segment's
 * waiting readers. It stops at the first message Python must see and returns (index, kind, value):
 *   (len(raws), ROUTE_END, None)         every message from start was applied and published;
 *   (i, ROUTE_DIFF, diff)                a diff for BookSync: HOT_PASS, an unknown symbol, another conn;
 *   (i, ROUTE_TOP_FAULT, diff)           applied, not published (HotPath.feed's HOT_TOP_FAULT);
 *   (i, ROUTE_CONTROL, None)             not a depthUpdate;
 *   (i, ROUTE_MALFORMED, message)        parse_depth refused it (its ValueError's message).
 * Messages before i are done; the caller handles message i and calls again from i + 1. The caller holds
 * the lock that serialises its markets' events. One call per read, not one Python call per frame: a burst
 * of frames goes through warm C code back to back.
 * ---------------------------------------------------------------------------------------------- */

static int router_init(Router *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Router", kwlist)) {
        return -1;
    }
    PyObject *paths = PyDict_New();
    if (paths == NULL) {
        return -1;
    }
    Py_XSETREF(self->paths, paths);
    return 0;
}

static void router_dealloc(Router *self)
{
    Py_CLEAR(self->paths);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* (index, kind, value) for the caller; steals value (NULL: an error already set, passed on) */
#define ROUTED_END_KEPT 64 /* (index, ROUTE_END, None) kept for reads of fewer messages: one a read is the common case */
static PyObject *routed_end[ROUTED_END_KEPT];

PyObject *ldc_fb_routed(Py_ssize_t index, int kind, PyObject *value)
{
    if (value == NULL) {
        return NULL;
    }
    int kept = kind == ROUTE_END && value == Py_None && index >= 0 && index < ROUTED_END_KEPT;
    if (kept && routed_end[index] != NULL) { /* a tuple is immutable: the same one serves every such read */
        Py_DECREF(value);
        return Py_NewRef(routed_end[index]);
    }
    PyObject *result = PyTuple_New(3), *number = result != NULL ? PyLong_FromSsize_t(index) : NULL;
    PyObject *kind_number = number != NULL ? PyLong_FromLong(kind) : NULL;
    if (kind_number == NULL) {
        Py_XDECREF(number);
        Py_XDECREF(result);
        Py_DECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, number);
    PyTuple_SET_ITEM(result, 1, kind_number);
    PyTuple_SET_ITEM(result, 2, value);
    if (kept) {
        routed_end[index] = Py_NewRef(result);
    }
    return result;
}

/* message i refused by a dialect: (i, ROUTE_MALFORMED, its ValueError's message) when a ValueError is set
 * (a doubt: the reference parser names the fault), else NULL with the error as it is */
PyObject *ldc_fb_routed_malformed(Py_ssize_t index)
{
    if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
        return NULL;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *message = value != NULL ? PyObject_Str(value) : PyUnicode_FromString("malformed");
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return ldc_fb_routed(index, ROUTE_MALFORMED, message);
}

/* Readers are woken once per feed() call, not once per diff: the wake is a FUTEX_WAKE syscall whether or not
 * anyone sleeps (layout 2.0 keeps no reader-written waiter count), and one socket read carries many diffs.
 * `segment` is the one the HotPaths published into since the last wake (NULL: none); the wake comes before
 * Python sees anything, so a reader never waits behind the slow path for a publish already made. With
 * `result` NULL a fault is being reported already: it stands, a failed wake's error is dropped. */
PyObject *ldc_fb_woken_then(PyObject *segment, PyObject *result)
{
    if (segment == NULL) {
        return result;
    }
    if (result == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (ldc_fb_seqlock_api->notify(segment) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (ldc_fb_seqlock_api->notify(segment) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

/* feed(raws, start, conn_id, recv_time_ns)'s arguments, for both routers: 0, or -1 with an exception set. */
int ldc_fb_feed_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *start, long long *conn, long long *recv_ns)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "feed() takes 4 arguments (raws, start, conn_id, recv_time_ns), found %zd",
                     nargs);
        return -1;
    }
    if (!PyList_CheckExact(args[0])) {
        PyErr_Format(PyExc_TypeError, "feed() raws must be a list, found %s", Py_TYPE(args[0])->tp_name);
        return -1;
    }
    *start = PyLong_AsSsize_t(args[1]);
    /* ...AndOverflow: read digit by digit (PyLong_AsLongLong goes through a byte array for an int past 2^30,
     * which recv_time_ns always is); too large is the same OverflowError */
    int overflow[2] = {0, 0};
    *conn = PyLong_AsLongLongAndOverflow(args[2], &overflow[0]);
    *recv_ns = PyLong_AsLongLongAndOverflow(args[3], &overflow[1]);
    if ((overflow[0] || overflow[1]) && !PyErr_Occurred()) {
        PyErr_Format(PyExc_OverflowError, "feed() %s does not fit a signed 64-bit integer",
                     overflow[0] ? "conn_id" : "recv_time_ns");
    }
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *router_feed(Router *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start;
    long long conn, recv_ns;
    if (ldc_fb_feed_args(args, nargs, &start, &conn, &recv_ns) < 0) {
        return NULL;
    }
    if (self->paths == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Router was not initialised: Router()");
        return NULL;
    }
    PyObject *raws = args[0];
    Py_ssize_t i = start < 0 ? 0 : start;
    PyObject *published = NULL; /* borrowed: the segment a HotPath published into since the last wake */
    for (; i < PyList_GET_SIZE(raws); i++) {
        PyObject *diff = ldc_fb_parse_depth(NULL, PyList_GET_ITEM(raws, i));
        if (diff == NULL) {
            return ldc_fb_woken_then(published, ldc_fb_routed_malformed(i));
        }
        if (diff == Py_None) {
            return ldc_fb_woken_then(published, ldc_fb_routed(i, ROUTE_CONTROL, diff));
        }
        PyObject *hot = PyDict_GetItemWithError(self->paths, ((ParsedDiff *)diff)->symbol); /* borrowed */
        if (hot == NULL || !Py_IS_TYPE(hot, &ldc_fb_HotPathType) || ((HotPath *)hot)->conn != conn) {
            if (hot == NULL && PyErr_Occurred()) {
                Py_DECREF(diff);
                return ldc_fb_woken_then(published, NULL);
            }
            return ldc_fb_woken_then(published, ldc_fb_routed(i, ROUTE_DIFF, diff));
        }
        HotPath *h = (HotPath *)hot;
        h->last_event_ms = ((ParsedDiff *)diff)->event_time_ms;
        h->last_recv_ns = recv_ns;
        int outcome = ldc_fb_hot_feed(h, diff, recv_ns);
        if (outcome < 0) {
            Py_DECREF(diff);
            return ldc_fb_woken_then(published, NULL);
        }
        if (outcome == HOT_IGNORED) { /* old, with skips_old: counted there, nothing published */
            Py_DECREF(diff);
            continue;
        }
        if (outcome != HOT_DONE) { /* the feeder wakes readers itself after deciding on this diff */
            return ldc_fb_woken_then(published, ldc_fb_routed(i, ldc_fb_route_of(outcome), diff));
        }
        Py_DECREF(diff);
        published = h->segment;
    }
    return ldc_fb_woken_then(published, ldc_fb_routed(i, ROUTE_END, Py_NewRef(Py_None)));
}

static PyObject *router_get_paths(Router *self, void *closure)
{
    (void)closure;
    if (self->paths == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Router was not initialised: Router()");
        return NULL;
    }
    return Py_NewRef(self->paths);
}

static PyMethodDef router_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))router_feed, METH_FASTCALL,
     "feed(raws, start, conn_id, recv_time_ns) -> (index, kind, value): see the module's Router notes."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef router_getset[] = {
    {"paths", (getter)router_get_paths, NULL, "The dict symbol -> HotPath the caller maintains.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ldc_fb_RouterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._fastbook.Router",
    .tp_basicsize = sizeof(Router),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Router(): the raw depth messages of one read to their markets' HotPaths (see the module notes).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)router_init,
    .tp_dealloc = (destructor)router_dealloc,
    .tp_methods = router_methods,
    .tp_getset = router_getset,
};
