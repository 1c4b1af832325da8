/* ldc._fastbook: the stream snapshots the dialects hand over (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * A book snapshot read by a stream dialect (Coinbase's snapshot event, Kraken v2's, HTX depth.step0) is
 * handed over as the reference parser hands it: an ldc.depth.DepthSnapshot whose sides are lists of
 * (price, qty) float tuples, best first, prices strictly in book order (ldc.venues._parse.sorted_levels:
 * anything else is a ValueError here, the reference names the fault).
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
 * side by side, and ldc_fb_stream_snapshot refuses them as sorted_levels does. */
void ldc_fb_sort_levels(Scratch *s, int descending)
{
    if (!in_book_order(s, descending)) {
        qsort(s->levels, (size_t)s->count, sizeof(Level), descending ? by_price_descending : by_price_ascending);
    }
}

static PyObject *level_list(const Scratch *s)
{
    PyObject *list = PyList_New(s->count);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < s->count; i++) {
        PyObject *pair = ldc_fb_level_pair(s->levels[i].a, s->levels[i].qty);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

PyObject *ldc_fb_stream_snapshot(const Scratch *bids, const Scratch *asks, long long update_id, Py_ssize_t limit,
                                 long long event_time_ms, long long checksum)
{
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
    if (depth_snapshot_type == NULL) {
        PyObject *module = PyImport_ImportModule("ldc.depth");
        if (module == NULL) {
            return NULL;
        }
        depth_snapshot_type = PyObject_GetAttrString(module, "DepthSnapshot");
        Py_DECREF(module);
        if (depth_snapshot_type == NULL) {
            return NULL;
        }
    }
    PyObject *args[6] = {PyLong_FromLongLong(update_id), level_list(bids), level_list(asks), PyLong_FromSsize_t(limit),
                         PyLong_FromLongLong(event_time_ms), PyLong_FromLongLong(checksum)};
    PyObject *snapshot = NULL;
    int ok = 1;
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
