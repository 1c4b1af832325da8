/* ldc._fastbook: the Kraken websocket v2 book dialect (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * Kraken v2 book (C dialect of ldc.venues.kraken.parse_message):
 *   {"channel":"book","type":"update"|"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":n,"qty":n}],
 *    "asks":[...],"checksum":N,"timestamp":"2023-10-06T17:35:55.440295Z"}]}
 * Prices and quantities are JSON numbers read exactly (ldc_fb_exact_number: the correctly rounded double of
 * the decimal as written, as float(Decimal) gives it); the timestamp in microseconds is the update id. A
 * snapshot is handed over as a DepthSnapshot (limit: the subscribed depth), an update as a ParsedDiff.
 * ---------------------------------------------------------------------------------------------- */

enum { KR_CHANNEL = 1, KR_TYPE = 2, KR_DATA = 4 };
enum { KRI_SYMBOL = 1, KRI_CHECKSUM = 2, KRI_BIDS = 4, KRI_ASKS = 8, KRI_TIMESTAMP = 16 };
enum { KRL_PRICE = 1, KRL_QTY = 2 };
#define KR_CHECKSUM_LIMIT 4294967296LL /* an unsigned 32-bit integer */
#define KR_MIN_YEAR 1970               /* ours: earlier is a doubt (the reference's to read) */

typedef struct {
    int seen, item_seen;
    int not_ours; /* another channel (or none): the reference's */
    int snapshot; /* type: 1 snapshot, 0 update */
    long long us, checksum;
    Event ev;
} KrakenMessage;

typedef struct {
    int seen;
    double price, qty;
} KrakenLevel;

static int kr_level_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    KrakenLevel *lv = ctx;
    int bit = 0, rc;
    double *out = NULL;
    if (!escaped && KEY_IS("price")) {
        bit = KRL_PRICE, out = &lv->price;
    } else if (!escaped && KEY_IS("qty")) {
        bit = KRL_QTY, out = &lv->qty;
    }
    if (bit == 0) {
        if (escaped) {
            ldc_fb_field_error(sc, "level key", -1, "no escapes", key, klen);
        }
        return ldc_fb_skip_value(sc, 1);
    }
    ldc_fb_dialect_key_once(sc, &lv->seen, bit, bit == KRL_PRICE ? "price" : "qty");
    const char *from = sc->p;
    if ((rc = ldc_fb_exact_number(sc, out)) != 0) {
        if (rc < 0) {
            return SCAN_SYNTAX;
        }
        sc->p = from;
        return ldc_fb_reject_value(sc, bit == KRL_PRICE ? "price" : "qty", "a non-negative JSON number");
    }
    return SCAN_OK;
}

/* bids / asks: [{"price": number, "qty": number}, ...] into s */
static int kr_levels(Scanner *sc, const char *field, Scratch *s)
{
    s->count = 0;
    if (sc->p >= sc->end || *sc->p != '[') {
        return ldc_fb_reject_value(sc, field, "a list of levels");
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
            if (ldc_fb_reject_value(sc, field, "{\"price\": number, \"qty\": number}") != SCAN_OK) {
                return SCAN_SYNTAX;
            }
        } else {
            KrakenLevel lv = {0, 0.0, 0.0};
            if (scan_object(sc, kr_level_field, &lv) != SCAN_OK) {
                return SCAN_SYNTAX;
            }
            if (lv.seen != (KRL_PRICE | KRL_QTY)) {
                ldc_fb_field_error(sc, field, -1, "{\"price\": number, \"qty\": number}", "fewer keys", 10);
            } else if (!sc->has_error && scratch_push(s, lv.price, lv.qty) < 0) {
                return SCAN_SYNTAX; /* MemoryError set */
            }
        }
        int more = list_next(sc);
        if (more <= 0) {
            return more == 0 ? SCAN_OK : syntax_error(sc, "',' or ']'");
        }
    }
}

static int digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned)(p[i] - '0') >= 10) {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

/* ldc.venues.kraken.timestamp_us: "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z" in microseconds (fraction cut to 6 digits);
 * -1 for anything else (ASCII digits only: the reference's \d reads other digits, a doubt here) */
static int kr_timestamp_us(const char *t, Py_ssize_t n, long long *out)
{
    static const int MONTH_DAYS[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, mo, d, h, mi, s;
    if (n < 20 || t[n - 1] != 'Z' || digits(t, 4, &year) || t[4] != '-' || digits(t + 5, 2, &mo) || t[7] != '-' ||
        digits(t + 8, 2, &d) || t[10] != 'T' || digits(t + 11, 2, &h) || t[13] != ':' || digits(t + 14, 2, &mi) ||
        t[16] != ':' || digits(t + 17, 2, &s)) {
        return -1;
    }
    long long us = 0;
    if (n > 20) {
        Py_ssize_t frac = n - 21; /* between "." and "Z" */
        if (t[19] != '.' || frac < 1 || frac > 9) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < 6; i++) {
            int digit = 0;
            if (i < frac && digits(t + 20 + i, 1, &digit)) {
                return -1;
            }
            us = us * 10 + digit;
        }
        for (Py_ssize_t i = 6; i < frac; i++) {
            int digit;
            if (digits(t + 20 + i, 1, &digit)) {
                return -1;
            }
        }
    }
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < KR_MIN_YEAR || mo < 1 || mo > 12 || d < 1 || d > MONTH_DAYS[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || s > 59) {
        return -1;
    }
    *out = (((ldc_fb_days_from_civil(year, mo, d) * 24 + h) * 60 + mi) * 60 + s) * 1000000LL + us;
    return 0;
}

static int kr_item_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    KrakenMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "data[0] key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("symbol")) {
        ldc_fb_dialect_key_once(sc, &msg->item_seen, KRI_SYMBOL, "symbol");
        if ((rc = ldc_fb_plain_string(sc, "symbol", &msg->ev.symbol, &msg->ev.symbol_len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (msg->ev.symbol_len == 0) {
            ldc_fb_field_error(sc, "symbol", -1, "a pair", "''", 2);
        }
        return SCAN_OK;
    }
    if (KEY_IS("checksum")) {
        ldc_fb_dialect_key_once(sc, &msg->item_seen, KRI_CHECKSUM, "checksum");
        const char *from = sc->p;
        if ((rc = ldc_fb_parse_id(sc, "checksum", &msg->checksum)) != SCAN_OK) {
            return rc;
        }
        if (msg->checksum >= KR_CHECKSUM_LIMIT) {
            ldc_fb_field_error(sc, "checksum", -1, "an unsigned 32-bit integer", from, sc->p - from);
        }
        return SCAN_OK;
    }
    if (KEY_IS("bids")) {
        ldc_fb_dialect_key_once(sc, &msg->item_seen, KRI_BIDS, "bids");
        return kr_levels(sc, "bids", &ldc_fb_scratch_bids);
    }
    if (KEY_IS("asks")) {
        ldc_fb_dialect_key_once(sc, &msg->item_seen, KRI_ASKS, "asks");
        return kr_levels(sc, "asks", &ldc_fb_scratch_asks);
    }
    if (KEY_IS("timestamp")) {
        ldc_fb_dialect_key_once(sc, &msg->item_seen, KRI_TIMESTAMP, "timestamp");
        if ((rc = ldc_fb_plain_string(sc, "timestamp", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (kr_timestamp_us(text, len, &msg->us) < 0) {
            ldc_fb_field_error(sc, "timestamp", -1, "an RFC 3339 UTC time like '2023-10-06T17:35:55.440295Z'", text, len);
        }
        return SCAN_OK;
    }
    return ldc_fb_skip_value(sc, 1);
}

/* data: a list of exactly one book object */
static int kr_data(Scanner *sc, KrakenMessage *msg)
{
    const char *from = sc->p;
    if (sc->p >= sc->end || *sc->p != '[') {
        return ldc_fb_reject_value(sc, "data", "a list of one book");
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p >= sc->end || *sc->p != '{') {
        sc->p = from;
        return ldc_fb_reject_value(sc, "data", "a list of one book");
    }
    if (scan_object(sc, kr_item_field, msg) != SCAN_OK) {
        return SCAN_SYNTAX;
    }
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        return SCAN_OK;
    }
    ldc_fb_field_error(sc, "data", -1, "a list of one book", "more", 4);
    for (;;) { /* the rest of the list, checked for syntax */
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            skip_ws(sc);
            if (ldc_fb_skip_value(sc, 1) != SCAN_OK) {
                return SCAN_SYNTAX;
            }
            skip_ws(sc);
            continue;
        }
        if (sc->p < sc->end && *sc->p == ']') {
            sc->p++;
            return SCAN_OK;
        }
        return syntax_error(sc, "',' or ']'");
    }
}

static int kr_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    KrakenMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("channel")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, KR_CHANNEL, "channel");
        if (sc->p < sc->end && *sc->p != '"') { /* not a string: not "book", the reference's */
            msg->not_ours = 1;
            return ldc_fb_skip_value(sc, 1);
        }
        if ((rc = ldc_fb_plain_string(sc, "channel", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        msg->not_ours |= !SPAN_IS(text, len, "book");
        return SCAN_OK;
    }
    if (KEY_IS("type")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, KR_TYPE, "type");
        if ((rc = ldc_fb_plain_string(sc, "type", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        msg->snapshot = SPAN_IS(text, len, "snapshot");
        if (!msg->snapshot && !SPAN_IS(text, len, "update")) {
            ldc_fb_field_error(sc, "type", -1, "'snapshot' or 'update'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("data")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, KR_DATA, "data");
        if (msg->not_ours) {
            return ldc_fb_skip_value(sc, 1);
        }
        return kr_data(sc, msg);
    }
    return ldc_fb_skip_value(sc, 1);
}

static const struct {
    int bit;
    const char *name;
} KR_REQUIRED[] = {{KRI_SYMBOL, "symbol"}, {KRI_CHECKSUM, "checksum"}, {KRI_BIDS, "bids"}, {KRI_ASKS, "asks"},
                   {KRI_TIMESTAMP, "timestamp"}};

/* [(symbol, event)] (steals both; NULL with an exception, both released) */
PyObject *ldc_fb_kraken_events(PyObject *symbol, PyObject *event)
{
    PyObject *pair = PyTuple_New(2), *result = pair != NULL ? PyList_New(1) : NULL;
    if (result == NULL) {
        Py_XDECREF(pair);
        Py_DECREF(symbol);
        Py_DECREF(event);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, symbol);
    PyTuple_SET_ITEM(pair, 1, event);
    PyList_SET_ITEM(result, 0, pair);
    return result;
}

/* One message read: 1 with *symbol and *event (new references: a ParsedDiff for an update, a DepthSnapshot for a
 * snapshot), 0 when it is not a book message (the reference parser's), -1 with an exception (a ValueError: a
 * doubt). spare: a ParsedDiff the update may be written into (ldc_fb_parsed_diff_reuse), or NULL */
int ldc_fb_kraken_event(PyObject *raw, Py_ssize_t depth, PyObject **spare, PyObject **symbol, PyObject **event)
{
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    int result = -1;
    KrakenMessage msg = {0};
    *symbol = *event = NULL;
    event_reset(&msg.ev);
    msg.us = NO_ID;
    if (ldc_fb_message_bytes(raw, &data, &size, &view) < 0) {
        return -1;
    }
    int rc = ldc_fb_scan_message(data, size, &sc, kr_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || !(msg.seen & KR_CHANNEL)) {
        result = 0;
        goto done;
    }
    if (!sc.has_error && (msg.seen & (KR_TYPE | KR_DATA)) != (KR_TYPE | KR_DATA)) {
        ldc_fb_field_error(&sc, (msg.seen & KR_TYPE) ? "data" : "type", -1, "a value", "nothing", 7);
    }
    for (size_t i = 0; i < sizeof KR_REQUIRED / sizeof KR_REQUIRED[0] && !sc.has_error; i++) {
        if (!(msg.item_seen & KR_REQUIRED[i].bit)) {
            ldc_fb_field_error(&sc, KR_REQUIRED[i].name, -1, "a value", "nothing", 7);
        }
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    long long ms = msg.us / 1000; /* us >= 0 (KR_MIN_YEAR): floor division as the reference's // */
    if (msg.snapshot) {
        *symbol = ldc_fb_symbol_object(msg.ev.symbol, msg.ev.symbol_len);
        *event = *symbol == NULL ? NULL
                                 : ldc_fb_book_snapshot(&ldc_fb_scratch_bids, &ldc_fb_scratch_asks, msg.us, depth, ms,
                                                        msg.checksum, "data", "at most the subscribed depth a side");
    } else { /* a diff carries its own symbol (made once) */
        msg.ev.first_id = msg.ev.final_id = msg.us; /* the update id is the timestamp, one message */
        msg.ev.event_time = ms;
        msg.ev.checksum = msg.checksum;
        *event = spare != NULL ? ldc_fb_parsed_diff_reuse(&msg.ev, spare) : ldc_fb_parsed_diff_new(&msg.ev);
        *symbol = *event != NULL ? Py_NewRef(((ParsedDiff *)*event)->symbol) : NULL;
    }
    if (*event == NULL) {
        Py_CLEAR(*symbol);
        goto done;
    }
    result = 1;
done:
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

PyObject *ldc_fb_parse_kraken(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_ssize_t depth;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "parse_kraken(raw, depth): expected 2 arguments, found %zd", nargs);
        return NULL;
    }
    if ((depth = PyLong_AsSsize_t(args[1])) < 1) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError, "parse_kraken: expected a depth of at least 1, found %zd", depth);
        }
        return NULL;
    }
    PyObject *symbol, *event;
    int rc = ldc_fb_kraken_event(args[0], depth, NULL, &symbol, &event);
    if (rc <= 0) {
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    return ldc_fb_kraken_events(symbol, event);
}
