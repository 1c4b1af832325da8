/* ldc._fastbook: the stream snapshots the dialects hand over (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * A book snapshot read by a stream dialect (Coinbase's snapshot event, Kraken v2's, HTX depth.step0) is
 * handed over as the reference parser hands it: an ldc.depth.DepthSnapshot whose sides read as lists of
 * (price, qty) float tuples (each a Levels, below), best first, prices strictly in book order
 * (ldc.venues._parse.sorted_levels: anything else is a ValueError here, the reference names the fault).
 * ---------------------------------------------------------------------------------------------- */

static PyObject *depth_snapshot_type; /* ldc.depth.DepthSnapshot, imported on first use */

static int level_before(double a, double b) { return a < b; }

/* 0 when s is strictly in book order (descending: bids), as sorted_levels checks it; else the first index out */
static Py_ssize_t out_of_order(const Scratch *s, int descending)
{
    for (Py_ssize_t i = 1; i < s->count; i++) {
        double d = s->levels[i].a - s->levels[i - 1].a; /* sorted_levels: (p[i] - p[i-1]) * sign <= 0 refused */
        if (descending ? !(d < 0.0) : !(d > 0.0)) {
            return i;
        }
    }
    return 0;
}

static int in_book_order(const Scratch *s, int descending) { return out_of_order(s, descending) == 0; }

static int by_price_ascending(const void *x, const void *y)
{
    const Level *a = x, *b = y;
    return level_before(a->a, b->a) ? -1 : level_before(b->a, a->a) ? 1 : (a->qty < b->qty ? -1 : a->qty > b->qty);
}

static int by_price_descending(const void *x, const void *y) { return by_price_ascending(y, x); }

/* Sort s into book order as the reference sorts its (price, qty) tuples (bids reverse=True); equal prices stay
 * side by side, and ldc_fb_book_snapshot refuses them as sorted_levels does. */
void ldc_fb_sort_levels(Scratch *s, int descending)
{
    if (!in_book_order(s, descending)) {
        qsort(s->levels, (size_t)s->count, sizeof(Level), descending ? by_price_descending : by_price_ascending);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Levels: a snapshot side as read, held in C (one copy, no Python object per level). It reads as the list of
 * (price, qty) float tuples the reference parser gives (len, index, slice, iteration, == with a list, repr), each
 * tuple made on access; FastBook.load_snapshot reads the array itself. Measured on HTX's recorded depth.step0
 * books (~200 levels): the tuples and lists cost 13.5 us a book, more than the parse itself (10.3 us).
 * ---------------------------------------------------------------------------------------------- */

static PyObject *levels_new(const Scratch *s)
{
    Levels *self = PyObject_NewVar(Levels, &ldc_fb_LevelsType, s->count);
    if (self == NULL) {
        return NULL;
    }
    if (s->count > 0) {
        memcpy(self->levels, s->levels, (size_t)s->count * sizeof(Level));
    }
    return (PyObject *)self;
}

static Py_ssize_t levels_len(Levels *self) { return Py_SIZE(self); }

static PyObject *levels_item(Levels *self, Py_ssize_t i)
{
    if (i < 0 || i >= Py_SIZE(self)) {
        PyErr_SetString(PyExc_IndexError, "level index out of range");
        return NULL;
    }
    return ldc_fb_level_pair(self->levels[i].a, self->levels[i].qty);
}

static PyObject *levels_list(Levels *self, Py_ssize_t start, Py_ssize_t step, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *pair = levels_item(self, start + i * step);
        if (pair == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

static PyObject *levels_subscript(Levels *self, PyObject *key)
{
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            return NULL;
        }
        return levels_item(self, i < 0 ? i + Py_SIZE(self) : i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
            return NULL;
        }
        Py_ssize_t n = PySlice_AdjustIndices(Py_SIZE(self), &start, &stop, step);
        return levels_list(self, start, step, n);
    }
    PyErr_Format(PyExc_TypeError, "level indices must be integers or slices, not %.100s", Py_TYPE(key)->tp_name);
    return NULL;
}

/* == and != with another Levels or any list / tuple of levels (compared as the list of tuples would be) */
static PyObject *levels_richcompare(Levels *self, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !(PyList_Check(other) || PyTuple_Check(other) || Py_IS_TYPE(other, &ldc_fb_LevelsType))) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_ssize_t n = Py_SIZE(self);
    int equal = PyObject_Length(other) == n;
    if (equal && Py_IS_TYPE(other, &ldc_fb_LevelsType)) {
        const Levels *o = (const Levels *)other;
        for (Py_ssize_t i = 0; equal && i < n; i++) {
            equal = self->levels[i].a == o->levels[i].a && self->levels[i].qty == o->levels[i].qty;
        }
    } else if (equal) {
        PyObject *mine = levels_list(self, 0, 1, n), *theirs = PySequence_List(other);
        int rc = mine != NULL && theirs != NULL ? PyObject_RichCompareBool(mine, theirs, Py_EQ) : -1;
        Py_XDECREF(mine);
        Py_XDECREF(theirs);
        if (rc < 0) {
            return NULL;
        }
        equal = rc;
    }
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

static PyObject *levels_repr(Levels *self)
{
    PyObject *list = levels_list(self, 0, 1, Py_SIZE(self));
    PyObject *text = list != NULL ? PyObject_Repr(list) : NULL;
    Py_XDECREF(list);
    return text;
}

static PyObject *levels_reduce(Levels *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = levels_list(self, 0, 1, Py_SIZE(self)); /* unpickled as the list it reads as */
    if (list == NULL) {
        return NULL;
    }
    return Py_BuildValue("(O(N))", (PyObject *)&PyList_Type, list);
}

static PyMethodDef levels_methods[] = {
    {"__reduce__", (PyCFunction)levels_reduce, METH_NOARGS, "pickled as a list of (price, qty)"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods levels_as_sequence = {.sq_length = (lenfunc)levels_len, .sq_item = (ssizeargfunc)levels_item};
static PyMappingMethods levels_as_mapping = {.mp_length = (lenfunc)levels_len, .mp_subscript = (binaryfunc)levels_subscript};

PyTypeObject ldc_fb_LevelsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._fastbook.Levels",
    .tp_basicsize = offsetof(Levels, levels),
    .tp_itemsize = sizeof(Level),
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_repr = (reprfunc)levels_repr,
    .tp_as_sequence = &levels_as_sequence,
    .tp_as_mapping = &levels_as_mapping,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_richcompare = (richcmpfunc)levels_richcompare,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_SEQUENCE,
    .tp_doc = "A snapshot side read by a C dialect: a read-only sequence of (price, qty) float tuples, best first.",
    .tp_methods = levels_methods,
};

/* The DepthSnapshot a stream dialect hands over (sides read into bids and asks); ValueError when a side holds more
 * than limit levels (worded as ldc_fb_field_error words it: "field '<limit_field>': expected <limit_expected>,
 * found more", before the order is looked at, as the reference parsers check) or is not strictly in book order */
PyObject *ldc_fb_book_snapshot(const Scratch *bids, const Scratch *asks, long long update_id, Py_ssize_t limit,
                               long long event_time_ms, long long checksum, const char *limit_field,
                               const char *limit_expected)
{
    if (bids->count > limit || asks->count > limit) {
        PyErr_Format(PyExc_ValueError, "field '%s': expected %s, found more", limit_field, limit_expected);
        return NULL;
    }
    for (int side = 0; side < 2; side++) {
        const Scratch *s = side == 0 ? bids : asks;
        Py_ssize_t at = out_of_order(s, side == 0);
        if (at > 0) { /* as sorted_levels words it */
            PyObject *before = PyFloat_FromDouble(s->levels[at - 1].a), *after = PyFloat_FromDouble(s->levels[at].a);
            if (before != NULL && after != NULL) {
                PyErr_Format(PyExc_ValueError, "field '%s'[%zd]: expected prices strictly %s, found %R then %R",
                             side == 0 ? "bids" : "asks", at, side == 0 ? "descending" : "ascending", before, after);
            }
            Py_XDECREF(before);
            Py_XDECREF(after);
            return NULL;
        }
    }
    /* the scratch levels first: nothing above runs Python code, which could let another thread parse into them */
    PyObject *args[6] = {PyLong_FromLongLong(update_id), levels_new(bids), levels_new(asks), PyLong_FromSsize_t(limit),
                         PyLong_FromLongLong(event_time_ms), PyLong_FromLongLong(checksum)};
    PyObject *snapshot = NULL;
    int ok = 1;
    if (depth_snapshot_type == NULL) { /* once: the import runs Python code */
        PyObject *module = PyImport_ImportModule("ldc.depth");
        if (module != NULL) {
            depth_snapshot_type = PyObject_GetAttrString(module, "DepthSnapshot");
            Py_DECREF(module);
        }
        ok = depth_snapshot_type != NULL;
    }
    for (int i = 0; i < 6; i++) {
        ok &= args[i] != NULL;
    }
    if (ok) {
        snapshot = PyObject_Vectorcall(depth_snapshot_type, args, 6, NULL);
    }
    for (int i = 0; i < 6; i++) {
        Py_XDECREF(args[i]);
    }
    return snapshot;
}
