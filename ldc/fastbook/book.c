/* ldc._fastbook: FastBook (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * FastBook
 * ---------------------------------------------------------------------------------------------- */

static int fastbook_init(FastBook *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"depth", NULL};
    Py_ssize_t depth = 20;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$n:FastBook", kwlist, &depth)) {
        return -1;
    }
    if (depth < 1) {
        PyErr_Format(PyExc_ValueError, "depth must be at least 1, found %zd", depth);
        return -1;
    }
    PyMem_Free(self->bids.buf);
    PyMem_Free(self->asks.buf);
    self->bids.buf = self->asks.buf = NULL;
    if (ldc_fb_side_init(&self->bids, 1.0) < 0 || ldc_fb_side_init(&self->asks, -1.0) < 0) {
        return -1;
    }
    self->depth = depth;
    self->window = 0;
    return 0;
}

static void fastbook_dealloc(FastBook *self)
{
    PyMem_Free(self->bids.buf);
    PyMem_Free(self->asks.buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* a (price, qty) pair from any sequence of two numbers */
static int level_from_object(PyObject *item, double *price, double *qty)
{
    PyObject *pair = PySequence_Fast(item, "a level must be a (price, qty) sequence");
    if (pair == NULL) {
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(pair) != 2) {
        PyErr_Format(PyExc_ValueError, "a level must hold 2 numbers, found %zd", PySequence_Fast_GET_SIZE(pair));
        Py_DECREF(pair);
        return -1;
    }
    *price = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(pair, 0));
    *qty = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (isnan(*price)) {
        PyErr_SetString(PyExc_ValueError, "a level price must be a number, found nan");
        return -1;
    }
    return 0;
}

/* Apply the levels of a Python sequence of pairs; returns 1 changed, 0 not, -1 error. */
static int apply_sequence(Side *s, PyObject *levels, Py_ssize_t depth)
{
    PyObject *seq = PySequence_Fast(levels, "levels must be a sequence of (price, qty)");
    int changed = 0;
    if (seq == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        double price, qty;
        int rc;
        if (level_from_object(PySequence_Fast_GET_ITEM(seq, i), &price, &qty) < 0 ||
            (rc = ldc_fb_side_set(s, price, qty, depth)) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        changed |= rc;
    }
    Py_DECREF(seq);
    return changed;
}

static int apply_array(Side *s, const Level *levels, Py_ssize_t n, Py_ssize_t depth)
{
    int changed = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = ldc_fb_side_set(s, levels[i].a, levels[i].qty, depth);
        if (rc < 0) {
            return -1;
        }
        changed |= rc;
    }
    return changed;
}

/* after a side's levels: prune to the window (book.py apply_diff) */
static int prune_changed(FastBook *self, Side *s)
{
    return self->window > 0 && ldc_fb_side_prune(s, self->window) > 0 && self->window < self->depth;
}

/* a ParsedDiff's levels: 1 when the top `depth` may have changed, 0 when not, -1 on memory error */
int ldc_fb_apply_parsed(FastBook *self, const ParsedDiff *d)
{
    int changed, rc;
    if ((rc = apply_array(&self->bids, d->levels, d->n_bids, self->depth)) < 0) {
        return -1;
    }
    changed = rc | prune_changed(self, &self->bids);
    if ((rc = apply_array(&self->asks, d->levels + d->n_bids, d->n_asks, self->depth)) < 0) {
        return -1;
    }
    return changed | rc | prune_changed(self, &self->asks);
}

static PyObject *fastbook_apply_diff(FastBook *self, PyObject *diff)
{
    int changed = 0, rc;
    if (Py_IS_TYPE(diff, &ldc_fb_ParsedDiffType)) {
        changed = ldc_fb_apply_parsed(self, (const ParsedDiff *)diff);
        return changed < 0 ? NULL : PyBool_FromLong(changed);
    }
    static const char *const names[] = {"bids", "asks"};
    Side *sides[] = {&self->bids, &self->asks};
    for (int i = 0; i < 2; i++) {
        PyObject *levels = PyObject_GetAttrString(diff, names[i]);
        if (levels == NULL) {
            return NULL;
        }
        rc = apply_sequence(sides[i], levels, self->depth);
        Py_DECREF(levels);
        if (rc < 0) {
            return NULL;
        }
        changed |= rc | prune_changed(self, sides[i]);
    }
    return PyBool_FromLong(changed);
}

/* book.py _load_side; given a Levels (a side a C dialect read: its array, no tuple made) or any sequence of
 * (price, qty) */
static int load_side(FastBook *self, Side *s, PyObject *given, Py_ssize_t limit)
{
    const Level *array = Py_IS_TYPE(given, &ldc_fb_LevelsType) ? ((const Levels *)given)->levels : NULL;
    PyObject *seq = NULL;
    if (array == NULL && (seq = PySequence_Fast(given, "snapshot levels must be a sequence of (price, qty)")) == NULL) {
        return -1;
    }
    Py_ssize_t n = array != NULL ? Py_SIZE(given) : PySequence_Fast_GET_SIZE(seq);
    double deepest = INFINITY;
    int rc = 0;
    s->lo = s->hi = s->cap / 2;
    for (Py_ssize_t i = 0; i < n; i++) {
        double price, qty;
        if (array != NULL) {
            price = array[i].a;
            qty = array[i].qty;
        } else if (level_from_object(PySequence_Fast_GET_ITEM(seq, i), &price, &qty) < 0) {
            rc = -1;
            break;
        }
        if (ldc_fb_side_set(s, price, qty, self->depth) < 0) {
            rc = -1;
            break;
        }
        if (s->sign * price < deepest) {
            deepest = s->sign * price;
        }
    }
    Py_XDECREF(seq);
    if (rc < 0) {
        return -1;
    }
    s->boundary = n < limit ? -INFINITY : deepest;
    ldc_fb_side_prune(s, limit);
    return 0;
}

static PyObject *fastbook_load_snapshot(FastBook *self, PyObject *snapshot)
{
    PyObject *limit_obj = PyObject_GetAttrString(snapshot, "limit");
    if (limit_obj == NULL) {
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(limit_obj);
    Py_DECREF(limit_obj);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (limit < 1) {
        PyErr_Format(PyExc_ValueError, "snapshot limit must be at least 1, found %zd", limit);
        return NULL;
    }
    self->window = limit;
    static const char *const names[] = {"bids", "asks"};
    Side *sides[] = {&self->bids, &self->asks};
    for (int i = 0; i < 2; i++) {
        PyObject *given = PyObject_GetAttrString(snapshot, names[i]);
        if (given == NULL) {
            return NULL;
        }
        int rc = load_side(self, sides[i], given, limit);
        Py_DECREF(given);
        if (rc < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* native-endian float64 items ("d", "@d", "=d"; "<d" on this little-endian target) */
static int is_float64_format(const Py_buffer *view)
{
    const char *f = view->format;
    if (view->itemsize != 8 || f == NULL) {
        return 0;
    }
    if (f[0] == '@' || f[0] == '=' || (f[0] == '<' && PY_LITTLE_ENDIAN)) {
        f++;
    }
    return f[0] == 'd' && f[1] == '\0';
}

/* validate a caller's (>= n, 2) float64 buffer */
static int get_out_buffer(PyObject *obj, const char *name, Py_ssize_t n, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_RECORDS) < 0) {
        return -1;
    }
    if (view->ndim != 2 || view->shape[1] != 2 || view->shape[0] < n) {
        PyObject *shape = view->ndim == 2 ? PyUnicode_FromFormat("(%zd, %zd)", view->shape[0], view->shape[1])
                                          : PyUnicode_FromFormat("%d dimensions", view->ndim);
        PyErr_Format(PyExc_ValueError, "%s must have shape (>= %zd, 2), found %S", name, n, shape);
        Py_XDECREF(shape);
        PyBuffer_Release(view);
        return -1;
    }
    if (!is_float64_format(view)) {
        PyErr_Format(PyExc_ValueError, "%s must hold float64, found format '%s'", name,
                     view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static Py_ssize_t write_top(const Side *s, Py_ssize_t n, Py_buffer *view)
{
    Py_ssize_t count = side_len(s) < n ? side_len(s) : n;
    char *row = view->buf;
    Py_ssize_t row_stride = view->strides[0], col_stride = view->strides[1];
    for (Py_ssize_t i = 0; i < count; i++, row += row_stride) {
        const Level *lv = &s->buf[s->hi - 1 - i];
        *(double *)row = s->sign * lv->a;
        *(double *)(row + col_stride) = lv->qty;
    }
    return count;
}

/* the best n levels of a side into out[2 * n] as (price, qty) pairs, best first; how many */
Py_ssize_t ldc_fb_top_into(const Side *s, Py_ssize_t n, double *out)
{
    Py_ssize_t count = side_len(s) < n ? side_len(s) : n;
    for (Py_ssize_t i = 0; i < count; i++) {
        const Level *lv = &s->buf[s->hi - 1 - i];
        out[2 * i] = s->sign * lv->a;
        out[2 * i + 1] = lv->qty;
    }
    return count;
}

static PyObject *fastbook_top(FastBook *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer bids_view, asks_view;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "top() takes 3 arguments (n, bids_out, asks_out), found %zd", nargs);
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "n must be at least 0, found %zd", n);
        return NULL;
    }
    if (get_out_buffer(args[1], "bids_out", n, &bids_view) < 0) {
        return NULL;
    }
    if (get_out_buffer(args[2], "asks_out", n, &asks_view) < 0) {
        PyBuffer_Release(&bids_view);
        return NULL;
    }
    Py_ssize_t nb = write_top(&self->bids, n, &bids_view);
    Py_ssize_t na = write_top(&self->asks, n, &asks_view);
    PyBuffer_Release(&bids_view);
    PyBuffer_Release(&asks_view);
    return Py_BuildValue("(nn)", nb, na);
}

static PyObject *best_of(const Side *s)
{
    if (side_len(s) == 0) {
        Py_RETURN_NONE;
    }
    const Level *lv = &s->buf[s->hi - 1];
    return Py_BuildValue("(dd)", s->sign * lv->a, lv->qty);
}

static PyObject *fastbook_best_bid(FastBook *self, PyObject *unused)
{
    (void)unused;
    return best_of(&self->bids);
}

static PyObject *fastbook_best_ask(FastBook *self, PyObject *unused)
{
    (void)unused;
    return best_of(&self->asks);
}

int ldc_fb_book_crossed(const FastBook *self)
{
    const Side *b = &self->bids, *a = &self->asks;
    return side_len(b) > 0 && side_len(a) > 0 && b->buf[b->hi - 1].a >= -a->buf[a->hi - 1].a;
}

static PyObject *fastbook_crossed(FastBook *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(ldc_fb_book_crossed(self));
}

/* the top n levels of both sides are known exactly (inside snapshot coverage) */
int ldc_fb_book_covers(const FastBook *self, Py_ssize_t n)
{
    const Side *sides[] = {&self->bids, &self->asks};
    for (int i = 0; i < 2; i++) {
        if (sides[i]->boundary != -INFINITY && ldc_fb_side_known(sides[i]) < n) {
            return 0;
        }
    }
    return 1;
}

static PyObject *fastbook_covers(FastBook *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyBool_FromLong(ldc_fb_book_covers(self, n));
}

static PyObject *fastbook_coverage(FastBook *self, PyObject *unused)
{
    (void)unused;
    return Py_BuildValue("(dd)", self->bids.boundary, -self->asks.boundary);
}

/* Levels with key >= floor that differ between a and b (sync.py _count_differences): present in
 * one side only, or at the same price with another quantity. Merge-walks both from the best end. */
static Py_ssize_t side_differences(const Side *a, const Side *b, double floor)
{
    Py_ssize_t i = a->hi - 1, j = b->hi - 1, count = 0;
    while (i >= a->lo && a->buf[i].a >= floor && j >= b->lo && b->buf[j].a >= floor) {
        double ka = a->buf[i].a, kb = b->buf[j].a;
        if (ka == kb) {
            count += a->buf[i].qty != b->buf[j].qty;
            i--;
            j--;
        } else if (ka > kb) {
            count++;
            i--;
        } else {
            count++;
            j--;
        }
    }
    for (; i >= a->lo && a->buf[i].a >= floor; i--) {
        count++;
    }
    for (; j >= b->lo && b->buf[j].a >= floor; j--) {
        count++;
    }
    return count;
}

static PyObject *fastbook_count_differences(FastBook *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "count_differences() takes 3 arguments (other, bid_floor, ask_ceiling), found %zd",
                     nargs);
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], &ldc_fb_FastBookType)) {
        PyErr_Format(PyExc_TypeError, "other must be a FastBook, found %.80s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    const FastBook *other = (const FastBook *)args[0];
    double bid_floor = PyFloat_AsDouble(args[1]);
    if (bid_floor == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    double ask_ceiling = PyFloat_AsDouble(args[2]);
    if (ask_ceiling == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    /* ask keys are -price: price <= ceiling is key >= -ceiling (negation is exact) */
    return PyLong_FromSsize_t(side_differences(&self->bids, &other->bids, bid_floor) +
                              side_differences(&self->asks, &other->asks, -ask_ceiling));
}

static PyObject *side_levels(const Side *s)
{
    PyObject *list = PyList_New(side_len(s));
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < side_len(s); i++) {
        const Level *lv = &s->buf[s->hi - 1 - i];
        PyObject *pair = ldc_fb_level_pair(s->sign * lv->a, lv->qty);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

static PyObject *fastbook_levels(FastBook *self, PyObject *unused)
{
    (void)unused;
    PyObject *bids = side_levels(&self->bids);
    if (bids == NULL) {
        return NULL;
    }
    PyObject *asks = side_levels(&self->asks);
    if (asks == NULL) {
        Py_DECREF(bids);
        return NULL;
    }
    return Py_BuildValue("(NN)", bids, asks);
}

static Py_ssize_t fastbook_len(FastBook *self) { return side_len(&self->bids) + side_len(&self->asks); }

static PyObject *fastbook_repr(FastBook *self)
{
    if (self->window == 0) {
        return PyUnicode_FromFormat("FastBook(depth=%zd, window=None, %zd bids, %zd asks)", self->depth,
                                    side_len(&self->bids), side_len(&self->asks));
    }
    return PyUnicode_FromFormat("FastBook(depth=%zd, window=%zd, %zd bids, %zd asks)", self->depth, self->window,
                                side_len(&self->bids), side_len(&self->asks));
}

static PyObject *fastbook_get_window(FastBook *self, void *closure)
{
    (void)closure;
    if (self->window == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromSsize_t(self->window);
}

static PyObject *fastbook_get_depth(FastBook *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->depth);
}

static PyMethodDef fastbook_methods[] = {
    {"load_snapshot", (PyCFunction)fastbook_load_snapshot, METH_O,
     "Replace the book with a DepthSnapshot; its limit sets coverage and the retention window."},
    {"apply_diff", (PyCFunction)fastbook_apply_diff, METH_O,
     "Apply a ParsedDiff (fast) or any DepthDiff; True when the top `depth` may have changed."},
    {"top", (PyCFunction)(void (*)(void))fastbook_top, METH_FASTCALL,
     "top(n, bids_out, asks_out) -> (n_bids, n_asks): best first into (>= n, 2) float64 buffers."},
    {"best_bid", (PyCFunction)fastbook_best_bid, METH_NOARGS, "(price, qty) of the best bid, or None."},
    {"best_ask", (PyCFunction)fastbook_best_ask, METH_NOARGS, "(price, qty) of the best ask, or None."},
    {"crossed", (PyCFunction)fastbook_crossed, METH_NOARGS, "True when best bid >= best ask."},
    {"covers", (PyCFunction)fastbook_covers, METH_O,
     "True when the top n levels of both sides are known exactly; else refresh the book."},
    {"coverage", (PyCFunction)fastbook_coverage, METH_NOARGS,
     "Deepest known (bid, ask) price: -inf / +inf for a whole side, +inf / -inf when unknown."},
    {"levels", (PyCFunction)fastbook_levels, METH_NOARGS, "Every level held, best first per side."},
    {"count_differences", (PyCFunction)(void (*)(void))fastbook_count_differences, METH_FASTCALL,
     "count_differences(other, bid_floor, ask_ceiling) -> int: levels at bid prices >= bid_floor and ask\n"
     "prices <= ask_ceiling held by one book only or with another quantity (the refresh audit)."},
    {"top_crc32", (PyCFunction)(void (*)(void))ldc_fb_fastbook_top_crc32, METH_FASTCALL,
     "top_crc32(n, price_decimals, size_decimals) -> int | None: OKX's signed CRC32 of the top n levels a side,\n"
     "interleaved, each number fixed to its decimals and trimmed (-1: its shortest form); None: write it in Python."},
    {"kraken_crc32", (PyCFunction)(void (*)(void))ldc_fb_fastbook_kraken_crc32, METH_FASTCALL,
     "kraken_crc32(n, price_decimals, size_decimals) -> int | None: Kraken's unsigned CRC32 of the top n asks then\n"
     "bids, each number as rint(value * 10^decimals) (ldc.venues.kraken._crc); None: compute it in Python."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef fastbook_getset[] = {
    {"depth", (getter)fastbook_get_depth, NULL, "levels per side whose changes apply_diff reports", NULL},
    {"window", (getter)fastbook_get_window, NULL, "snapshot limit (retention window), None before one", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods fastbook_as_sequence = {.sq_length = (lenfunc)fastbook_len};

PyTypeObject ldc_fb_FastBookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._fastbook.FastBook",
    .tp_basicsize = sizeof(FastBook),
    .tp_dealloc = (destructor)fastbook_dealloc,
    .tp_repr = (reprfunc)fastbook_repr,
    .tp_as_sequence = &fastbook_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "FastBook(*, depth=20): the C implementation of ldc.depth.Book; same rules as ldc.book.OrderBook.",
    .tp_methods = fastbook_methods,
    .tp_getset = fastbook_getset,
    .tp_init = (initproc)fastbook_init,
    .tp_new = PyType_GenericNew,
};
