/* ldc._fastbook: the Coinbase dialect (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * Coinbase Advanced Trade l2_data (C dialect of ldc.venues.coinbase.parse_message)
 * ---------------------------------------------------------------------------------------------- */

enum { CB_CHANNEL = 1, CB_SEQ = 2, CB_EVENTS = 4, CB_TIMESTAMP = 8 };
enum { CBE_TYPE = 1, CBE_PRODUCT = 2, CBE_UPDATES = 4 };
enum { CBU_SIDE = 1, CBU_PRICE = 2, CBU_QTY = 4 };
#define CB_TIMESTAMP_MIN_CHARS 20 /* ldc.venues.coinbase._time_ms: shorter is NO_ID */

#define CB_WHOLE_BOOK_LEVELS (1 << 30) /* ldc.venues.coinbase.WHOLE_BOOK_LEVELS: a snapshot's limit */

typedef struct {
    int seen;
    int not_ours;    /* another channel: the reference's */
    long long sequence;
    long long time_ms;
    PyObject *diffs; /* (product_id, ParsedDiff | DepthSnapshot) of events[], in order (a diff's ids set once the
                        whole message is read) */
} CoinbaseMessage;

typedef struct {
    int seen, side; /* side: 1 bid, 2 offer */
    double price, qty;
} CoinbaseUpdate;

typedef struct {
    int seen;
    int snapshot; /* type "snapshot": the whole book */
    Event ev;
} CoinbaseEvent;

/* A price_level / new_quantity: a decimal string read exactly as float(); anything else a doubt. */
static int cb_decimal(Scanner *sc, const char *field, double *out)
{
    const char *from = sc->p;
    int rc = ldc_fb_parse_level_number(sc, out);
    if (rc == 1) {
        sc->p = from;
        return ldc_fb_reject_value(sc, field, "a non-negative decimal string");
    }
    return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
}

static int cb_update_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    CoinbaseUpdate *u = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "updates key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("side")) {
        ldc_fb_dialect_key_once(sc, &u->seen, CBU_SIDE, "side");
        if ((rc = ldc_fb_plain_string(sc, "side", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        u->side = SPAN_IS(text, len, "bid") ? 1 : SPAN_IS(text, len, "offer") ? 2 : 0;
        if (!u->side) {
            ldc_fb_field_error(sc, "side", -1, "'bid' or 'offer'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("price_level")) {
        ldc_fb_dialect_key_once(sc, &u->seen, CBU_PRICE, "price_level");
        return cb_decimal(sc, "price_level", &u->price);
    }
    if (KEY_IS("new_quantity")) {
        ldc_fb_dialect_key_once(sc, &u->seen, CBU_QTY, "new_quantity");
        return cb_decimal(sc, "new_quantity", &u->qty);
    }
    return ldc_fb_skip_value(sc, 1);
}

/* updates[]: each {"side", "price_level", "new_quantity"} onto the scratch side it names */
static int cb_updates(Scanner *sc)
{
    if (sc->p >= sc->end || *sc->p != '[') {
        return ldc_fb_reject_value(sc, "updates", "a list");
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        return SCAN_OK;
    }
    for (;;) {
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != '{') {
            if (ldc_fb_reject_value(sc, "updates[]", "an object") != SCAN_OK) {
                return SCAN_SYNTAX;
            }
        } else {
            CoinbaseUpdate u = {0, 0, 0.0, 0.0};
            if (scan_object(sc, cb_update_field, &u) != SCAN_OK) {
                return SCAN_SYNTAX;
            }
            if ((u.seen & (CBU_SIDE | CBU_PRICE | CBU_QTY)) != (CBU_SIDE | CBU_PRICE | CBU_QTY)) {
                ldc_fb_field_error(sc, "updates[]", -1, "side, price_level and new_quantity", "fewer", 5);
            } else if (!sc->has_error &&
                       scratch_push(u.side == 1 ? &ldc_fb_scratch_bids : &ldc_fb_scratch_asks, u.price, u.qty) < 0) {
                return SCAN_SYNTAX; /* MemoryError set */
            }
        }
        int more = list_next(sc);
        if (more <= 0) {
            return more == 0 ? SCAN_OK : syntax_error(sc, "',' or ']'");
        }
    }
}

static int cb_event_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    CoinbaseEvent *e = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "events key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("type")) {
        ldc_fb_dialect_key_once(sc, &e->seen, CBE_TYPE, "type");
        if ((rc = ldc_fb_plain_string(sc, "type", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        e->snapshot = SPAN_IS(text, len, "snapshot"); /* the whole book (5 MB for BTC-USD) */
        if (!e->snapshot && !SPAN_IS(text, len, "update")) { /* a fault: the reference's, now */
            ldc_fb_field_error(sc, "type", -1, "'snapshot' or 'update'", text, len);
            PyErr_SetString(PyExc_ValueError, sc->error);
            return SCAN_SYNTAX;
        }
        return SCAN_OK;
    }
    if (KEY_IS("product_id")) {
        ldc_fb_dialect_key_once(sc, &e->seen, CBE_PRODUCT, "product_id");
        if ((rc = ldc_fb_plain_string(sc, "product_id", &e->ev.symbol, &e->ev.symbol_len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (e->ev.symbol_len == 0) {
            ldc_fb_field_error(sc, "product_id", -1, "a product id", "''", 2);
        }
        return SCAN_OK;
    }
    if (KEY_IS("updates")) {
        if (ldc_fb_dialect_key_once(sc, &e->seen, CBE_UPDATES, "updates")) {
            return ldc_fb_skip_value(sc, 1);
        }
        return cb_updates(sc);
    }
    return ldc_fb_skip_value(sc, 1);
}

/* events[]: each update event a ParsedDiff appended to msg->diffs */
static int cb_events(Scanner *sc, CoinbaseMessage *msg)
{
    if (sc->p >= sc->end || *sc->p != '[') {
        return ldc_fb_reject_value(sc, "events", "a non-empty list");
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        ldc_fb_field_error(sc, "events", -1, "a non-empty list", "[]", 2);
        sc->p++;
        return SCAN_OK;
    }
    for (;;) {
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != '{') {
            if (ldc_fb_reject_value(sc, "events[]", "an object") != SCAN_OK) {
                return SCAN_SYNTAX;
            }
        } else {
            CoinbaseEvent e = {0};
            event_reset(&e.ev);
            if (scan_object(sc, cb_event_field, &e) != SCAN_OK) {
                return SCAN_SYNTAX;
            }
            if ((e.seen & (CBE_TYPE | CBE_PRODUCT | CBE_UPDATES)) != (CBE_TYPE | CBE_PRODUCT | CBE_UPDATES)) {
                ldc_fb_field_error(sc, "events[]", -1, "type, product_id and updates", "fewer", 5);
            }
            if (!sc->has_error && e.snapshot && (msg->seen & (CB_SEQ | CB_TIMESTAMP)) != (CB_SEQ | CB_TIMESTAMP)) {
                /* the snapshot is made now (the next event reuses the scratch levels): its id and time must be known */
                ldc_fb_field_error(sc, "events[]", -1, "a snapshot after sequence_num and timestamp", "one before", 10);
            }
            if (!sc->has_error) {
                PyObject *product = NULL, *event = NULL, *pair = NULL; /* a diff carries its own product */
                if (e.snapshot) { /* sorted as the reference sorts it, then checked in order */
                    product = ldc_fb_symbol_object(e.ev.symbol, e.ev.symbol_len);
                    ldc_fb_sort_levels(&ldc_fb_scratch_bids, 1);
                    ldc_fb_sort_levels(&ldc_fb_scratch_asks, 0);
                    event = product == NULL ? NULL
                                            : ldc_fb_book_snapshot(&ldc_fb_scratch_bids, &ldc_fb_scratch_asks,
                                                                   msg->sequence, CB_WHOLE_BOOK_LEVELS, msg->time_ms, 0,
                                                                   "updates", "at most a whole book's levels a side");
                } else {
                    event = ldc_fb_parsed_diff_new(&e.ev);
                    product = event != NULL ? Py_NewRef(((ParsedDiff *)event)->symbol) : NULL;
                }
                if (event != NULL) {
                    pair = PyTuple_Pack(2, product, event);
                }
                Py_XDECREF(product);
                Py_XDECREF(event);
                if (pair == NULL || PyList_Append(msg->diffs, pair) < 0) {
                    Py_XDECREF(pair);
                    return SCAN_SYNTAX;
                }
                Py_DECREF(pair);
            }
        }
        int more = list_next(sc);
        if (more <= 0) {
            return more == 0 ? SCAN_OK : syntax_error(sc, "',' or ']'");
        }
    }
}

static int two_digits(const char *p, int *out)
{
    if ((unsigned)(p[0] - '0') >= 10 || (unsigned)(p[1] - '0') >= 10) {
        return -1;
    }
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SS[.fff...]..." -> ms since the epoch as _time_ms gives it; -1 for any other form (a
 * doubt: strptime accepts forms this does not, and refuses dates this would take) */
static int cb_time_ms(const char *t, Py_ssize_t n, long long *out)
{
    static const int MONTH_DAYS[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int yh, yl, mo, d, h, mi, s;
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)t[i] >= 0x80) { /* Python counts characters, not bytes */
            return -1;
        }
    }
    if (n < CB_TIMESTAMP_MIN_CHARS) {
        *out = NO_ID;
        return 0;
    }
    if (two_digits(t, &yh) || two_digits(t + 2, &yl) || t[4] != '-' || two_digits(t + 5, &mo) || t[7] != '-' ||
        two_digits(t + 8, &d) || t[10] != 'T' || two_digits(t + 11, &h) || t[13] != ':' || two_digits(t + 14, &mi) ||
        t[16] != ':' || two_digits(t + 17, &s)) {
        return -1;
    }
    int year = yh * 100 + yl, leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 1 || mo < 1 || mo > 12 || d < 1 || d > MONTH_DAYS[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
        mi > 59 || s > 59) {
        return -1;
    }
    long long ms = 0;
    if (t[19] == '.') {
        int digits = 0;
        for (Py_ssize_t i = 20; i < n && i < 23; i++, digits++) {
            if ((unsigned)(t[i] - '0') >= 10) {
                ms = -1;
                break;
            }
            ms = ms * 10 + (t[i] - '0');
        }
        if (ms < 0 || digits == 0) {
            ms = 0; /* "".isdigit() is False: no fraction */
        } else {
            for (; digits < 3; digits++) {
                ms *= 10;
            }
        }
    }
    *out = ((ldc_fb_days_from_civil(year, mo, d) * 24 + h) * 60 + mi) * 60000LL + s * 1000LL + ms;
    return 0;
}

static int cb_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    CoinbaseMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("channel")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, CB_CHANNEL, "channel");
        if (sc->p < sc->end && *sc->p != '"') { /* null or another type: the reference's */
            msg->not_ours = 1;
            return ldc_fb_skip_value(sc, 1);
        }
        if ((rc = ldc_fb_plain_string(sc, "channel", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        msg->not_ours |= !SPAN_IS(text, len, "l2_data");
        return SCAN_OK;
    }
    if (KEY_IS("sequence_num")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, CB_SEQ, "sequence_num");
        return ldc_fb_parse_id(sc, "sequence_num", &msg->sequence);
    }
    if (KEY_IS("timestamp")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, CB_TIMESTAMP, "timestamp");
        if (sc->p < sc->end && *sc->p != '"') {
            return ldc_fb_reject_value(sc, "timestamp", "a time string");
        }
        if ((rc = ldc_fb_plain_string(sc, "timestamp", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (cb_time_ms(text, len, &msg->time_ms) < 0) {
            ldc_fb_field_error(sc, "timestamp", -1, "'YYYY-MM-DDTHH:MM:SS.fffZ'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("events")) {
        if (ldc_fb_dialect_key_once(sc, &msg->seen, CB_EVENTS, "events") || msg->not_ours) {
            return ldc_fb_skip_value(sc, 1);
        }
        return cb_events(sc, msg);
    }
    return ldc_fb_skip_value(sc, 1);
}

PyObject *ldc_fb_parse_coinbase(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL;
    CoinbaseMessage msg = {0, 0, NO_ID, NO_ID, NULL};
    if (ldc_fb_message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    if ((msg.diffs = PyList_New(0)) == NULL) {
        goto done;
    }
    int rc = ldc_fb_scan_message(data, size, &sc, cb_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || !(msg.seen & CB_CHANNEL)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (!sc.has_error && (msg.seen & (CB_SEQ | CB_EVENTS)) != (CB_SEQ | CB_EVENTS)) {
        ldc_fb_field_error(&sc, (msg.seen & CB_SEQ) ? "events" : "sequence_num", -1, "a value", "nothing", 7);
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(msg.diffs);
    for (Py_ssize_t i = 0; i < n; i++) { /* U = u = the connection's sequence_num, as the reference sets them */
        PyObject *event = PyTuple_GET_ITEM(PyList_GET_ITEM(msg.diffs, i), 1);
        if (Py_IS_TYPE(event, &ldc_fb_ParsedDiffType)) {
            ParsedDiff *d = (ParsedDiff *)event;
            d->first_id = d->final_id = msg.sequence;
            d->event_time_ms = msg.time_ms;
        }
    }
    result = msg.diffs;
    msg.diffs = NULL;
done:
    Py_XDECREF(msg.diffs);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}
