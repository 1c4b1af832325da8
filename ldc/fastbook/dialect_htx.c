/* ldc._fastbook: the HTX mbp and depth.step0 dialect (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * HTX mbp (C dialect of ldc.venues.htx.parse_message, on the inflated frame)
 * ---------------------------------------------------------------------------------------------- */

enum { HX_CH = 1, HX_TS = 2, HX_TICK = 4, HX_SEQ = 8, HX_PREV = 16, HX_BIDS = 32, HX_ASKS = 64, HX_VERSION = 128,
       HX_REP = 256, HX_DATA = 512, HX_STATUS = 1024, HX_PING = 2048 };
#define HTX_STEP0_LEVELS 150 /* ldc.venues.htx.CHANNELS["depth.step0"]: a whole book of at most this many a side */
static const char *const HTX_MBP_LEVELS[] = {"5", "20", "150"}; /* ldc.venues.htx.CHANNELS' mbp.N */

typedef struct {
    int seen;
    int not_ours; /* the reference's: control (ping, acks, a refused rep), another channel */
    int step0;    /* ch is a depth.step0 topic: the whole book, a snapshot at tick.version */
    int status_ok; /* "status":"ok" */
    Py_ssize_t rep_levels; /* a refresh answer ("rep"): the levels a side its channel keeps */
    long long version;
    Event ev;
} HtxMessage;

/* bids / asks: [[price, size], ...] of non-negative numbers into s */
static int htx_levels(Scanner *sc, const char *field, Scratch *s)
{
    const char *from = sc->p;
    double price, qty;
    int rc = 0;
    s->count = 0;
    if (sc->p >= sc->end || *sc->p != '[') {
        goto doubt;
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        return SCAN_OK;
    }
    for (;;) {
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != '[') {
            goto doubt;
        }
        sc->p++;
        skip_ws(sc);
        if ((rc = ldc_fb_exact_number(sc, &price)) != 0) {
            goto doubt;
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ',') {
            goto doubt;
        }
        sc->p++;
        skip_ws(sc);
        if ((rc = ldc_fb_exact_number(sc, &qty)) != 0) {
            goto doubt;
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ']') {
            goto doubt;
        }
        sc->p++;
        if (scratch_push(s, price, qty) < 0) {
            return SCAN_SYNTAX; /* MemoryError set */
        }
        int more = list_next(sc);
        if (more < 0) {
            goto doubt;
        }
        if (more == 0) {
            return SCAN_OK;
        }
    }
doubt:
    if (rc < 0) {
        return SCAN_SYNTAX;
    }
    sc->p = from;
    return ldc_fb_reject_value(sc, field, "[[price, size], ...] of non-negative numbers");
}

static int htx_tick_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    HtxMessage *msg = ctx;
    if (escaped) {
        ldc_fb_field_error(sc, "tick key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("seqNum")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_SEQ, "seqNum");
        return ldc_fb_parse_id(sc, "seqNum", &msg->ev.final_id);
    }
    if (KEY_IS("prevSeqNum")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_PREV, "prevSeqNum");
        return ldc_fb_parse_id(sc, "prevSeqNum", &msg->ev.prev_final_id);
    }
    if (KEY_IS("version")) { /* depth.step0's id (read in mbp too: a malformed one is only a doubt) */
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_VERSION, "version");
        return ldc_fb_parse_id(sc, "version", &msg->version);
    }
    if (KEY_IS("bids")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_BIDS, "bids");
        return htx_levels(sc, "bids", &ldc_fb_scratch_bids);
    }
    if (KEY_IS("asks")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_ASKS, "asks");
        return htx_levels(sc, "asks", &ldc_fb_scratch_asks);
    }
    return ldc_fb_skip_value(sc, 1);
}

enum { HTX_NOT_BOOK, HTX_MBP, HTX_STEP0 }; /* what htx_topic reads a topic as */

/* A book topic, as ldc.venues.htx._channel_of reads it (the one reader of the grammar, for ch and rep alike):
 * "market.SYMBOL.mbp.N" (N 5, 20 or 150) HTX_MBP, "market.SYMBOL.depth.step0" HTX_STEP0 (SYMBOL [a-z0-9]+),
 * with the levels a side the channel keeps in *levels (N; 150); HTX_NOT_BOOK and 0 for any other text. */
static int htx_topic(const char *text, Py_ssize_t len, Py_ssize_t *levels)
{
    static const char prefix[] = "market.", step0[] = "depth.step0", mbp[] = "mbp.";
    const char *p = text + sizeof prefix - 1, *end = text + len;
    *levels = 0;
    if (len < (Py_ssize_t)sizeof prefix || memcmp(text, prefix, sizeof prefix - 1) != 0) {
        return HTX_NOT_BOOK;
    }
    const char *symbol = p;
    while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
        p++;
    }
    if (p == symbol || p >= end || *p++ != '.') {
        return HTX_NOT_BOOK;
    }
    if (end - p == (Py_ssize_t)sizeof step0 - 1 && memcmp(p, step0, sizeof step0 - 1) == 0) {
        *levels = HTX_STEP0_LEVELS;
        return HTX_STEP0;
    }
    if (end - p > (Py_ssize_t)sizeof mbp - 1 && memcmp(p, mbp, sizeof mbp - 1) == 0) {
        const char *n = p + sizeof mbp - 1;
        for (size_t i = 0; i < sizeof HTX_MBP_LEVELS / sizeof HTX_MBP_LEVELS[0]; i++) {
            size_t digits = strlen(HTX_MBP_LEVELS[i]);
            if ((size_t)(end - n) == digits && memcmp(n, HTX_MBP_LEVELS[i], digits) == 0) {
                *levels = atoi(HTX_MBP_LEVELS[i]);
                return HTX_MBP;
            }
        }
    }
    return HTX_NOT_BOOK;
}

/* ch: a book topic ours; what parse_message leaves to _channel_of ("market." and ".mbp." within or ending
 * ".depth.step0") a doubt when htx_topic refuses it; other channels the reference's (OTHER there) */
static void htx_channel(Scanner *sc, HtxMessage *msg, const char *text, Py_ssize_t len)
{
    static const char prefix[] = "market.", step0[] = ".depth.step0", mbp[] = ".mbp.";
    const Py_ssize_t plen = (Py_ssize_t)sizeof prefix - 1, slen = (Py_ssize_t)sizeof step0 - 1;
    Py_ssize_t levels;
    int kind = htx_topic(text, len, &levels);
    if (kind != HTX_NOT_BOOK) {
        msg->step0 = kind == HTX_STEP0; /* a whole book (a snapshot) */
        msg->ev.symbol = text;
        msg->ev.symbol_len = len;
        return;
    }
    if (len < plen || memcmp(text, prefix, (size_t)plen) != 0) {
        msg->not_ours = 1; /* another channel (OTHER) */
        return;
    }
    if (len >= slen && memcmp(text + len - slen, step0, (size_t)slen) == 0) {
        ldc_fb_field_error(sc, "ch", -1, "'market.SYMBOL.depth.step0'", text, len);
        return;
    }
    int has_mbp = 0;
    for (const char *q = text, *end = text + len; !has_mbp && end - q >= (Py_ssize_t)sizeof mbp - 1; q++) {
        has_mbp = memcmp(q, mbp, sizeof mbp - 1) == 0;
    }
    if (!has_mbp) {
        msg->not_ours = 1; /* "market.x.trade.detail": OTHER there */
        return;
    }
    ldc_fb_field_error(sc, "ch", -1, "'market.SYMBOL.mbp.N' (N 5, 20 or 150)", text, len);
}

static int htx_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    HtxMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("ping")) { /* the server's keep-alive: the reference's */
        msg->seen |= HX_PING;
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("status")) { /* "ok" with "rep": a refresh answer, ours; anything else the reference's */
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_STATUS, "status");
        if (sc->p < sc->end && *sc->p != '"') {
            return ldc_fb_skip_value(sc, 1);
        }
        if ((rc = ldc_fb_plain_string(sc, "status", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        msg->status_ok = SPAN_IS(text, len, "ok");
        return SCAN_OK;
    }
    if (KEY_IS("rep")) { /* the answer to our refresh request: the book at data.seqNum */
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_REP, "rep");
        if ((rc = ldc_fb_plain_string(sc, "rep", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (htx_topic(text, len, &msg->rep_levels) == HTX_NOT_BOOK) {
            ldc_fb_field_error(sc, "rep", -1, "'market.SYMBOL.mbp.N' or 'market.SYMBOL.depth.step0'", text, len);
        }
        msg->ev.symbol = text;
        msg->ev.symbol_len = len;
        return SCAN_OK;
    }
    if (KEY_IS("data")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_DATA, "data");
        if (sc->p >= sc->end || *sc->p != '{') {
            return ldc_fb_reject_value(sc, "data", "an object");
        }
        return scan_object(sc, htx_tick_field, msg);
    }
    if (KEY_IS("ch")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_CH, "ch");
        if (sc->p < sc->end && *sc->p != '"') { /* not a string: OTHER there */
            msg->not_ours = 1;
            return ldc_fb_skip_value(sc, 1);
        }
        if ((rc = ldc_fb_plain_string(sc, "ch", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        htx_channel(sc, msg, text, len);
        return SCAN_OK;
    }
    if (KEY_IS("ts")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_TS, "ts");
        return ldc_fb_parse_id(sc, "ts", &msg->ev.event_time);
    }
    if (KEY_IS("tick")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, HX_TICK, "tick");
        if (sc->p >= sc->end || *sc->p != '{') {
            return ldc_fb_reject_value(sc, "tick", "an object");
        }
        return scan_object(sc, htx_tick_field, msg);
    }
    return ldc_fb_skip_value(sc, 1);
}

static const struct {
    int bit;
    const char *name;
} HTX_REQUIRED[] = {{HX_TICK, "tick"}, {HX_SEQ, "seqNum"}, {HX_PREV, "prevSeqNum"}},
  HTX_STEP0_REQUIRED[] = {{HX_TICK, "tick"}, {HX_VERSION, "version"}};

PyObject *ldc_fb_parse_htx(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL, *diffs = NULL;
    HtxMessage msg = {0};
    event_reset(&msg.ev);
    if (ldc_fb_message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    int rc = ldc_fb_scan_message(data, size, &sc, htx_field, &msg);
    if (rc < 0) {
        goto done;
    }
    int rep = (msg.seen & HX_REP) != 0;
    if (rc > 0 || (msg.seen & HX_PING) || ((msg.seen & HX_STATUS) && !rep) || (rep && !msg.status_ok) ||
        (!rep && (msg.not_ours || !(msg.seen & HX_CH)))) {
        result = Py_NewRef(Py_None); /* control (a ping, an ack, a refused request), another channel */
        goto done;
    }
    if (rep) { /* [(topic, DepthSnapshot(data.seqNum, bids, asks, the channel's levels, ts))], as the reference */
        if (!sc.has_error && (msg.seen & (HX_CH | HX_TICK))) {
            ldc_fb_field_error(&sc, "rep", -1, "a refresh answer without ch or tick", "them", 4);
        }
        if (!sc.has_error && (msg.seen & (HX_DATA | HX_SEQ)) != (HX_DATA | HX_SEQ)) {
            ldc_fb_field_error(&sc, (msg.seen & HX_DATA) ? "seqNum" : "data", -1, "a value", "nothing", 7);
        }
        if (sc.has_error) {
            PyErr_SetString(PyExc_ValueError, sc.error);
            goto done;
        }
        msg.step0 = 1; /* made below as a whole book, at seqNum with the channel's levels */
        msg.version = msg.ev.final_id;
    } else if (!sc.has_error && (msg.seen & HX_DATA)) { /* the reference reads tick only: data is a doubt */
        ldc_fb_field_error(&sc, "data", -1, "no data beside ch and tick", "some", 4);
    }
    if (msg.step0 && !rep) {
        for (size_t i = 0; i < sizeof HTX_STEP0_REQUIRED / sizeof HTX_STEP0_REQUIRED[0] && !sc.has_error; i++) {
            if (!(msg.seen & HTX_STEP0_REQUIRED[i].bit)) {
                ldc_fb_field_error(&sc, HTX_STEP0_REQUIRED[i].name, -1, "a value", "nothing", 7);
            }
        }
    }
    for (size_t i = 0; !msg.step0 && i < sizeof HTX_REQUIRED / sizeof HTX_REQUIRED[0] && !sc.has_error; i++) {
        if (!(msg.seen & HTX_REQUIRED[i].bit)) {
            ldc_fb_field_error(&sc, HTX_REQUIRED[i].name, -1, "a value", "nothing", 7);
        }
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    if (msg.step0) { /* [(topic, DepthSnapshot(version, bids, asks, 150, ts))], as the reference reads it */
        PyObject *topic = ldc_fb_symbol_object(msg.ev.symbol, msg.ev.symbol_len), *snapshot = NULL;
        if (topic != NULL) {
            snapshot = ldc_fb_book_snapshot(&ldc_fb_scratch_bids, &ldc_fb_scratch_asks, msg.version,
                                            rep ? msg.rep_levels : HTX_STEP0_LEVELS, msg.ev.event_time, 0,
                                            rep ? "data" : "tick",
                                            rep ? "at most the channel's levels a side" : "at most 150 levels a side");
        }
        PyObject *pair = snapshot != NULL ? PyTuple_Pack(2, topic, snapshot) : NULL;
        Py_XDECREF(topic);
        Py_XDECREF(snapshot);
        if (pair != NULL && (result = PyList_New(1)) != NULL) {
            PyList_SET_ITEM(result, 0, pair);
            pair = NULL;
        }
        Py_XDECREF(pair);
        goto done;
    }
    msg.ev.first_id = msg.ev.prev_final_id; /* U = pu = prevSeqNum: the PREV_LINK rule, as the reference sets it */
    PyObject *diff = ldc_fb_parsed_diff_new(&msg.ev);
    if (diff == NULL || (diffs = PyList_New(1)) == NULL) {
        Py_XDECREF(diff);
        goto done;
    }
    PyList_SET_ITEM(diffs, 0, diff);
    result = ldc_fb_stream_events(diffs, NULL);
    diffs = NULL;
done:
    Py_XDECREF(diffs);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}
