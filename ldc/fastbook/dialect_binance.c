/* ldc._fastbook: Binance's depthUpdate (ParsedDiff) and REST depth snapshots (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * ParsedDiff: the DepthDiff attributes, levels in one inline C array (bids first, then asks)
 * ---------------------------------------------------------------------------------------------- */

/* Symbol strs reused across messages: a feeder sees the same few hundred symbols all day, so one
 * str per message would be waste. Direct-mapped by a hash of the symbol's bytes. */
static PyObject *symbol_cache[SYMBOL_CACHE_SLOTS];

PyObject *ldc_fb_symbol_object(const char *text, Py_ssize_t len)
{
    if (len > SYMBOL_CACHE_CHARS) {
        return PyUnicode_DecodeUTF8(text, len, "strict");
    }
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++) {
        hash = (hash ^ (unsigned char)text[i]) * 16777619u;
    }
    PyObject **slot = &symbol_cache[hash % SYMBOL_CACHE_SLOTS];
    if (*slot != NULL) {
        Py_ssize_t cached_len;
        const char *cached = PyUnicode_AsUTF8AndSize(*slot, &cached_len);
        if (cached != NULL && cached_len == len && memcmp(cached, text, (size_t)len) == 0) {
            return Py_NewRef(*slot);
        }
    }
    PyObject *symbol = PyUnicode_DecodeUTF8(text, len, "strict");
    if (symbol != NULL) {
        Py_XSETREF(*slot, Py_NewRef(symbol));
    }
    return symbol;
}

/* an event's fields and the scratch levels into d (its symbol set by the caller) */
static void parsed_diff_fill(ParsedDiff *d, const Event *ev)
{
    Py_ssize_t nb = ldc_fb_scratch_bids.count, na = ldc_fb_scratch_asks.count;
    d->first_id = ev->first_id;
    d->final_id = ev->final_id;
    d->prev_final_id = ev->prev_final_id;
    d->event_time_ms = ev->event_time;
    d->transaction_time_ms = ev->transaction_time;
    d->checksum = ev->checksum;
    d->n_bids = nb;
    d->n_asks = na;
    if (nb) {
        memcpy(d->levels, ldc_fb_scratch_bids.levels, (size_t)nb * sizeof(Level));
    }
    if (na) {
        memcpy(d->levels + nb, ldc_fb_scratch_asks.levels, (size_t)na * sizeof(Level));
    }
}

/* a ParsedDiff with room for `room` levels (at least the scratch's) */
static PyObject *parsed_diff_alloc(const Event *ev, Py_ssize_t room)
{
    ParsedDiff *d = PyObject_NewVar(ParsedDiff, &ldc_fb_ParsedDiffType, room);
    if (d == NULL) {
        return NULL;
    }
    d->symbol = ldc_fb_symbol_object(ev->symbol, ev->symbol_len);
    d->bids_list = d->asks_list = NULL;
    if (d->symbol == NULL) {
        Py_DECREF(d);
        return NULL;
    }
    parsed_diff_fill(d, ev);
    return (PyObject *)d;
}

PyObject *ldc_fb_parsed_diff_new(const Event *ev)
{
    return parsed_diff_alloc(ev, ldc_fb_scratch_bids.count + ldc_fb_scratch_asks.count);
}

/* ldc_fb_parsed_diff_new into *spare when it is a ParsedDiff nobody else holds (its one reference is *spare's) with
 * room for the levels: its reference moves to the result (*spare = NULL), nothing is allocated. A new one has room
 * for PARSED_DIFF_SPARE_LEVELS at least, so that it can serve as the next spare. For a caller that keeps each diff
 * as its spare once it is the diff's last holder (the StreamRouter: a diff Python was given, or a pending refresh
 * recorded, is held elsewhere and never rewritten) */
PyObject *ldc_fb_parsed_diff_reuse(const Event *ev, PyObject **spare)
{
    Py_ssize_t needed = ldc_fb_scratch_bids.count + ldc_fb_scratch_asks.count;
    ParsedDiff *d = (ParsedDiff *)*spare;
    if (d == NULL || Py_REFCNT(d) != 1 || Py_SIZE(d) < needed) {
        return parsed_diff_alloc(ev, needed > PARSED_DIFF_SPARE_LEVELS ? needed : PARSED_DIFF_SPARE_LEVELS);
    }
    PyObject *symbol = ldc_fb_symbol_object(ev->symbol, ev->symbol_len);
    if (symbol == NULL) {
        return NULL;
    }
    *spare = NULL;
    Py_SETREF(d->symbol, symbol);
    Py_CLEAR(d->bids_list);
    Py_CLEAR(d->asks_list);
    parsed_diff_fill(d, ev);
    return (PyObject *)d;
}

static const char *const REQUIRED_NAMES[] = {"E", "s", "U", "u", "b", "a"};

PyObject *ldc_fb_parse_depth(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Event ev;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    int rc;
    PyObject *result = NULL;

    if (ldc_fb_message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    sc.start = sc.p = data;
    sc.end = data + size;
    sc.has_error = 0;
    event_reset(&ev);
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{') {
        rc = sc.p < sc.end && (*sc.p == '[' || *sc.p == '"') ? ldc_fb_skip_value(&sc, 0) : syntax_error(&sc, "'{'");
        rc = rc == SCAN_OK ? SCAN_NOT_DEPTH : rc;
    } else {
        rc = ldc_fb_parse_object(&sc, &ev, 1);
    }
    if (rc == SCAN_OK) {
        skip_ws(&sc);
        if (sc.p != sc.end) {
            rc = syntax_error(&sc, "the end of the message");
        }
    }
    if (rc == SCAN_SYNTAX) {
        goto done;
    }
    if (rc == SCAN_NOT_DEPTH || !ev.is_depth) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    {
        int have[] = {ev.seen & F_TIME, ev.seen & F_S, ev.seen & F_FIRST, ev.seen & F_FINAL, ev.seen & F_BIDS,
                      ev.seen & F_ASKS};
        for (size_t i = 0; i < sizeof have / sizeof have[0]; i++) {
            if (!have[i]) {
                PyErr_Format(PyExc_ValueError, "field '%s': expected in a depthUpdate, found nothing",
                             REQUIRED_NAMES[i]);
                goto done;
            }
        }
    }
    result = ldc_fb_parsed_diff_new(&ev);
done:
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

static void parsed_diff_dealloc(ParsedDiff *d)
{
    Py_XDECREF(d->symbol);
    Py_XDECREF(d->bids_list);
    Py_XDECREF(d->asks_list);
    PyObject_Free(d);
}

/* (price, qty) as a tuple of two floats */
PyObject *ldc_fb_level_pair(double price, double qty)
{
    PyObject *pair = PyTuple_New(2), *item;
    if (pair == NULL) {
        return NULL;
    }
    if ((item = PyFloat_FromDouble(price)) == NULL) {
        Py_DECREF(pair);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, item);
    if ((item = PyFloat_FromDouble(qty)) == NULL) {
        Py_DECREF(pair);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 1, item);
    /* two floats can hold no cycle: untracked now, the garbage collector never visits the thousands of
     * pairs a snapshot brings (a collection would untrack them itself, after walking them under the GIL) */
    PyObject_GC_UnTrack(pair);
    return pair;
}

static PyObject *levels_list(const Level *levels, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = ldc_fb_level_pair(levels[i].a, levels[i].qty);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

static PyObject *parsed_diff_bids(ParsedDiff *d, void *closure)
{
    (void)closure;
    if (d->bids_list == NULL && (d->bids_list = levels_list(d->levels, d->n_bids)) == NULL) {
        return NULL;
    }
    return Py_NewRef(d->bids_list);
}

static PyObject *parsed_diff_asks(ParsedDiff *d, void *closure)
{
    (void)closure;
    if (d->asks_list == NULL && (d->asks_list = levels_list(d->levels + d->n_bids, d->n_asks)) == NULL) {
        return NULL;
    }
    return Py_NewRef(d->asks_list);
}

static PyObject *parsed_diff_symbol(ParsedDiff *d, void *closure)
{
    (void)closure;
    return Py_NewRef(d->symbol);
}

#define ID_GETTER(name)                                                                                   \
    static PyObject *parsed_diff_##name(ParsedDiff *d, void *closure)                                     \
    {                                                                                                     \
        (void)closure;                                                                                    \
        return PyLong_FromLongLong(d->name);                                                              \
    }
ID_GETTER(first_id)
ID_GETTER(final_id)
ID_GETTER(prev_final_id)
ID_GETTER(event_time_ms)
ID_GETTER(transaction_time_ms)
ID_GETTER(checksum)

static PyObject *parsed_diff_level_count(ParsedDiff *d, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(d->n_bids + d->n_asks);
}

static PyObject *parsed_diff_repr(ParsedDiff *d)
{
    return PyUnicode_FromFormat("ParsedDiff(symbol=%R, first_id=%lld, final_id=%lld, prev_final_id=%lld, "
                                "event_time_ms=%lld, transaction_time_ms=%lld, %zd bids, %zd asks)",
                                d->symbol, d->first_id, d->final_id, d->prev_final_id, d->event_time_ms,
                                d->transaction_time_ms, d->n_bids, d->n_asks);
}

static PyGetSetDef parsed_diff_getset[] = {
    {"symbol", (getter)parsed_diff_symbol, NULL, "market symbol as sent (Binance `s`)", NULL},
    {"first_id", (getter)parsed_diff_first_id, NULL, "first update id (`U`)", NULL},
    {"final_id", (getter)parsed_diff_final_id, NULL, "final update id (`u`)", NULL},
    {"prev_final_id", (getter)parsed_diff_prev_final_id, NULL, "previous final id (`pu`), -1 on spot", NULL},
    {"event_time_ms", (getter)parsed_diff_event_time_ms, NULL, "event time (`E`), ms", NULL},
    {"transaction_time_ms", (getter)parsed_diff_transaction_time_ms, NULL, "transaction time (`T`), -1 if absent",
     NULL},
    {"bids", (getter)parsed_diff_bids, NULL, "bid levels as a list of (price, qty), message order", NULL},
    {"asks", (getter)parsed_diff_asks, NULL, "ask levels as a list of (price, qty), message order", NULL},
    {"checksum", (getter)parsed_diff_checksum, NULL, "the venue's checksum of its top levels (OKX), 0: none", NULL},
    {"level_count", (getter)parsed_diff_level_count, NULL, "bid plus ask levels, without materialising them",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ldc_fb_ParsedDiffType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._fastbook.ParsedDiff",
    .tp_basicsize = offsetof(ParsedDiff, levels),
    .tp_itemsize = sizeof(Level),
    .tp_dealloc = (destructor)parsed_diff_dealloc,
    .tp_repr = (reprfunc)parsed_diff_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A depthUpdate parsed by parse_depth(): the attributes of ldc.depth.DepthDiff, levels in C.",
    .tp_getset = parsed_diff_getset,
};

/* ------------------------------------------------------------------------------------------------
 * REST depth snapshots ({"lastUpdateId":N,["E":N,"T":N,...]"bids":[...],"asks":[...]})
 *
 * The fast path of ldc.venues.binance.parse_snapshot: it accepts only what that reference parser
 * accepts and then yields exactly its values (scan.c's decimals are correctly rounded, as float()
 * is). Anything else (an error response, a negative id, an escaped key or price, a duplicate key...)
 * raises ValueError and the caller hands the body to the reference parser, which names the fault.
 * ---------------------------------------------------------------------------------------------- */

/* fields of a snapshot, one bit each */
enum { S_ID = 1, S_TIME = 2, S_BIDS = 4, S_ASKS = 8 };

typedef struct {
    int seen;
    long long last_update_id, event_time;
    Scratch bids, asks; /* per call, not shared: building the lists may run a GC and any finaliser */
} Snapshot;

/* a known key seen twice: orjson keeps the last value, the fast path does not guess */
static void snapshot_key_once(Scanner *sc, Snapshot *snap, int bit, const char *field)
{
    if (snap->seen & bit) {
        ldc_fb_field_error(sc, field, -1, "the key once", "a second time", 13);
    }
    snap->seen |= bit;
}

static int snapshot_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    Snapshot *snap = ctx;
    if (escaped) { /* it might spell a known key */
        ldc_fb_field_error(sc, "key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("lastUpdateId")) {
        snapshot_key_once(sc, snap, S_ID, "lastUpdateId");
        return ldc_fb_parse_id(sc, "lastUpdateId", &snap->last_update_id);
    }
    if (KEY_IS("E")) {
        snapshot_key_once(sc, snap, S_TIME, "E");
        return ldc_fb_parse_id(sc, "E", &snap->event_time);
    }
    if (KEY_IS("bids")) {
        snapshot_key_once(sc, snap, S_BIDS, "bids");
        return ldc_fb_parse_levels(sc, "bids", &snap->bids);
    }
    if (KEY_IS("asks")) {
        snapshot_key_once(sc, snap, S_ASKS, "asks");
        return ldc_fb_parse_levels(sc, "asks", &snap->asks);
    }
    return ldc_fb_skip_value(sc, 1);
}

/* repr() of a double, for messages (PyErr_Format has no %g) */
static PyObject *double_repr(double x)
{
    char *text = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        return NULL;
    }
    PyObject *repr = PyUnicode_FromString(text);
    PyMem_Free(text);
    return repr;
}

/* At most limit levels, prices strictly descending (sign -1, bids) or ascending (+1, asks). */
static int check_side(const Scratch *s, const char *field, double sign, Py_ssize_t limit)
{
    if (s->count > limit) {
        PyErr_Format(PyExc_ValueError, "field '%s': expected at most %zd levels, found %zd", field, limit, s->count);
        return -1;
    }
    for (Py_ssize_t i = 1; i < s->count; i++) {
        double before = sign * s->levels[i - 1].a, after = sign * s->levels[i].a;
        if (!(after > before)) {
            PyObject *a = double_repr(s->levels[i - 1].a), *b = double_repr(s->levels[i].a);
            if (a != NULL && b != NULL) {
                PyErr_Format(PyExc_ValueError, "field '%s' level %zd: expected prices strictly %s, found %U then %U",
                             field, i, sign < 0 ? "descending" : "ascending", a, b);
            }
            Py_XDECREF(a);
            Py_XDECREF(b);
            return -1;
        }
    }
    return 0;
}

static const struct {
    int bit;
    const char *name;
} SNAPSHOT_REQUIRED[] = {{S_ID, "lastUpdateId"}, {S_BIDS, "bids"}, {S_ASKS, "asks"}};

/* Scan the body into snap and validate it; -1 with ValueError (or MemoryError) set. */
static int scan_snapshot(const char *data, Py_ssize_t size, Snapshot *snap, Py_ssize_t limit)
{
    Scanner sc = {.start = data, .p = data, .end = data + size, .has_error = 0};
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{') {
        syntax_error(&sc, "'{'");
        return -1;
    }
    if (scan_object(&sc, snapshot_field, snap) != SCAN_OK) {
        return -1;
    }
    skip_ws(&sc);
    if (sc.p != sc.end) {
        syntax_error(&sc, "the end of the body");
        return -1;
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        return -1;
    }
    for (size_t i = 0; i < sizeof SNAPSHOT_REQUIRED / sizeof SNAPSHOT_REQUIRED[0]; i++) {
        if (!(snap->seen & SNAPSHOT_REQUIRED[i].bit)) {
            PyErr_Format(PyExc_ValueError, "field '%s': expected in a snapshot, found nothing", SNAPSHOT_REQUIRED[i].name);
            return -1;
        }
    }
    if (check_side(&snap->bids, "bids", -1.0, limit) < 0 || check_side(&snap->asks, "asks", 1.0, limit) < 0) {
        return -1;
    }
    return 0;
}

PyObject *ldc_fb_parse_snapshot_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Snapshot snap = {.event_time = NO_ID};
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "parse_snapshot_levels() takes 2 arguments (raw, limit), found %zd", nargs);
        return NULL;
    }
    Py_ssize_t limit = PyNumber_AsSsize_t(args[1], NULL); /* clipped: a huge limit bounds nothing */
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (limit < 1) {
        PyErr_Format(PyExc_ValueError, "limit must be at least 1, found %zd", limit);
        return NULL;
    }
    if (ldc_fb_message_bytes(args[0], &data, &size, &view) < 0) {
        return NULL;
    }
    if (scan_snapshot(data, size, &snap, limit) == 0) {
        PyObject *bids = levels_list(snap.bids.levels, snap.bids.count);
        PyObject *asks = bids == NULL ? NULL : levels_list(snap.asks.levels, snap.asks.count);
        if (asks != NULL) {
            result = Py_BuildValue("(LLNN)", snap.last_update_id, snap.event_time, bids, asks);
        } else {
            Py_XDECREF(bids);
        }
    }
    PyMem_Free(snap.bids.levels);
    PyMem_Free(snap.asks.levels);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}
