/* ldc._fastbook: the OKX and Bybit dialects, and the helpers every stream dialect shares (see fastbook.h) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * Stream venue dialects: OKX v5 and Bybit v5 book updates
 *
 * The fast path of ldc.venues.okx.parse_message and ldc.venues.bybit.parse_message for the messages
 * that carry book updates: the result is the reference's events, [(stream, ParsedDiff)], value for
 * value (decimals as parse_depth reads them: correctly rounded, as float() is). None: the message is
 * the reference's to read (a control message, another channel, a snapshot, Bybit's u == 1 reset).
 * ValueError: the reference might refuse it or read it otherwise (a missing, repeated or escaped key,
 * a level that is not decimal strings, a field out of order): the caller hands it to the reference,
 * which names the fault. The dialect accepts a subset of what the reference accepts, never more.
 * ---------------------------------------------------------------------------------------------- */

/* ldc.venues.okx.CHANNELS (a test holds the two equal) */
static const char *const OKX_BOOK_CHANNELS[] = {"books", "books-l2-tbt", "books50-l2-tbt"};
#define OKX_CHANNEL_COUNT (sizeof OKX_BOOK_CHANNELS / sizeof OKX_BOOK_CHANNELS[0])
#define BYBIT_RESET_UPDATE_ID 1 /* ldc.venues.bybit.RESET_UPDATE_ID: snapshot data after a restart */

/* keys of the two dialects, one bit each: a repeated one is a doubt (orjson keeps the last value) */
enum {
    K_ARG = 1, K_ACTION = 2, K_DATA = 4, K_CHANNEL = 8, K_INST = 16, K_BIDS = 32, K_ASKS = 64, K_SEQ = 128,
    K_PREV_SEQ = 256, K_CHECKSUM = 512, K_TS = 1024, K_TOPIC = 2048, K_TYPE = 4096, K_CTS = 8192, K_S = 16384,
    K_U = 32768,
};

int ldc_fb_dialect_key_once(Scanner *sc, int *seen, int bit, const char *field)
{
    if (*seen & bit) {
        ldc_fb_field_error(sc, field, -1, "the key once", "a second time", 13);
        return 1;
    }
    *seen |= bit;
    return 0;
}

/* a JSON integer of either sign (OKX's checksum is a signed CRC32) */
static int parse_signed(Scanner *sc, const char *field, long long *out)
{
    int negative = sc->p < sc->end && *sc->p == '-';
    if (negative && (sc->end - sc->p < 2 || sc->p[1] < '0' || sc->p[1] > '9')) {
        return ldc_fb_reject_value(sc, field, "an integer"); /* not JSON: skip_value raises the syntax error */
    }
    sc->p += negative;
    int rc = ldc_fb_parse_id(sc, field, out);
    if (negative) {
        *out = -*out;
    }
    return rc;
}

/* A string value without escapes: 0 with its span, 1 after a field error (value skipped), -1 syntax. */
int ldc_fb_plain_string(Scanner *sc, const char *field, const char **text, Py_ssize_t *len)
{
    int escaped;
    if (sc->p >= sc->end || *sc->p != '"') {
        return ldc_fb_reject_value(sc, field, "a string") < 0 ? -1 : 1;
    }
    if (ldc_fb_scan_string(sc, text, len, &escaped) < 0) {
        return -1;
    }
    if (escaped) {
        ldc_fb_field_error(sc, field, -1, "a string without escapes", *text, *len);
        return 1;
    }
    return 0;
}

typedef struct {
    int seen;         /* K_* of the message */
    int not_ours;     /* the reference's to read: "event", another channel, a snapshot */
    int book_channel; /* arg.channel is one of OKX_BOOK_CHANNELS */
    const char *inst;
    Py_ssize_t inst_len;
    PyObject *diffs; /* ParsedDiffs of data[], in order */
} OkxMessage;

static int okx_arg_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    OkxMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "arg key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("channel")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_CHANNEL, "arg.channel");
        if ((rc = ldc_fb_plain_string(sc, "arg.channel", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        for (size_t i = 0; i < OKX_CHANNEL_COUNT; i++) {
            if ((size_t)len == strlen(OKX_BOOK_CHANNELS[i]) && memcmp(text, OKX_BOOK_CHANNELS[i], (size_t)len) == 0) {
                msg->book_channel = 1;
            }
        }
        return SCAN_OK;
    }
    if (KEY_IS("instId")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_INST, "arg.instId");
        if ((rc = ldc_fb_plain_string(sc, "arg.instId", &msg->inst, &msg->inst_len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (msg->inst_len == 0) {
            ldc_fb_field_error(sc, "arg.instId", -1, "an instrument id", "\"\"", 2);
        }
        return SCAN_OK;
    }
    return ldc_fb_skip_value(sc, 1);
}

/* ts: a string of ASCII digits (the reference: str.isdigit(), then int()), or an integer as it accepts too */
static int parse_digit_string(Scanner *sc, const char *field, long long *out)
{
    const char *text;
    Py_ssize_t len;
    if (sc->p < sc->end && *sc->p != '"') {
        return ldc_fb_parse_id(sc, field, out);
    }
    int rc = ldc_fb_plain_string(sc, field, &text, &len);
    if (rc != 0) {
        return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
    }
    long long v = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        int d = text[i] - '0';
        if (d < 0 || d > 9 || v > (LLONG_MAX - d) / 10) {
            ldc_fb_field_error(sc, field, -1, "an integer string below 2^63", text, len);
            return SCAN_OK;
        }
        v = v * 10 + d;
    }
    if (len == 0) {
        ldc_fb_field_error(sc, field, -1, "an integer string", "\"\"", 2);
    }
    *out = v;
    return SCAN_OK;
}

typedef struct {
    int seen;
    Event *ev;
} OkxItem;

static int okx_item_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    OkxItem *item = ctx;
    Event *ev = item->ev;
    if (escaped) {
        ldc_fb_field_error(sc, "data[] key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("bids")) {
        ldc_fb_dialect_key_once(sc, &item->seen, K_BIDS, "bids");
        return ldc_fb_parse_levels_of(sc, "bids", &ldc_fb_scratch_bids, 4);
    }
    if (KEY_IS("asks")) {
        ldc_fb_dialect_key_once(sc, &item->seen, K_ASKS, "asks");
        return ldc_fb_parse_levels_of(sc, "asks", &ldc_fb_scratch_asks, 4);
    }
    if (KEY_IS("seqId")) {
        ldc_fb_dialect_key_once(sc, &item->seen, K_SEQ, "seqId");
        return ldc_fb_parse_id(sc, "seqId", &ev->final_id);
    }
    if (KEY_IS("prevSeqId")) {
        ldc_fb_dialect_key_once(sc, &item->seen, K_PREV_SEQ, "prevSeqId");
        return ldc_fb_parse_id(sc, "prevSeqId", &ev->prev_final_id);
    }
    if (KEY_IS("checksum")) {
        ldc_fb_dialect_key_once(sc, &item->seen, K_CHECKSUM, "checksum");
        return parse_signed(sc, "checksum", &ev->checksum);
    }
    if (KEY_IS("ts")) {
        ldc_fb_dialect_key_once(sc, &item->seen, K_TS, "ts");
        return parse_digit_string(sc, "ts", &ev->event_time);
    }
    return ldc_fb_skip_value(sc, 1);
}

/* one element of data[]: an update of msg->inst, appended to msg->diffs */
static int okx_item(Scanner *sc, OkxMessage *msg)
{
    Event ev;
    OkxItem item = {0, &ev};
    event_reset(&ev);
    if (sc->p >= sc->end || *sc->p != '{') {
        return ldc_fb_reject_value(sc, "data[]", "an object");
    }
    int rc = scan_object(sc, okx_item_field, &item);
    if (rc != SCAN_OK || sc->has_error) {
        return rc;
    }
    static const struct { int bit; const char *name; } required[] = {{K_BIDS, "bids"}, {K_ASKS, "asks"}, {K_TS, "ts"}};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!(item.seen & required[i].bit)) {
            ldc_fb_field_error(sc, required[i].name, -1, "a value", "nothing", 7);
            return SCAN_OK;
        }
    }
    ev.first_id = ev.prev_final_id; /* U = prevSeqId, as the reference sets it */
    ev.symbol = msg->inst;
    ev.symbol_len = msg->inst_len;
    PyObject *diff = ldc_fb_parsed_diff_new(&ev);
    if (diff == NULL) {
        return SCAN_SYNTAX;
    }
    rc = PyList_Append(msg->diffs, diff);
    Py_DECREF(diff);
    return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
}

static int okx_data(Scanner *sc, OkxMessage *msg)
{
    if (sc->p >= sc->end || *sc->p != '[' || !(msg->seen & K_ARG) || !msg->book_channel || msg->inst == NULL) {
        if (!(msg->seen & K_ARG)) {
            ldc_fb_field_error(sc, "data", -1, "'arg' before it", "'data' first", 12);
        }
        return ldc_fb_skip_value(sc, 1); /* the reference names what is wrong, or reads another channel */
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        ldc_fb_field_error(sc, "data", -1, "a non-empty list", "[]", 2);
        return SCAN_OK;
    }
    for (;;) {
        skip_ws(sc);
        int rc = okx_item(sc, msg);
        if (rc != SCAN_OK) {
            return rc;
        }
        skip_ws(sc);
        if (sc->has_error) { /* the reference names the fault: only the syntax of the rest matters */
            while (sc->p < sc->end && *sc->p == ',') {
                sc->p++;
                if (ldc_fb_skip_value(sc, 2) < 0) {
                    return SCAN_SYNTAX;
                }
                skip_ws(sc);
            }
        }
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == ']') {
            sc->p++;
            return SCAN_OK;
        }
        return syntax_error(sc, "',' or ']'");
    }
}

static int okx_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    OkxMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("event")) {
        msg->not_ours = 1;
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("arg")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_ARG, "arg");
        if (sc->p >= sc->end || *sc->p != '{') {
            return ldc_fb_reject_value(sc, "arg", "an object");
        }
        return scan_object(sc, okx_arg_field, msg);
    }
    if (KEY_IS("action")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_ACTION, "action");
        if ((rc = ldc_fb_plain_string(sc, "action", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (SPAN_IS(text, len, "snapshot")) {
            msg->not_ours = 1;
        } else if (!SPAN_IS(text, len, "update")) {
            ldc_fb_field_error(sc, "action", -1, "'snapshot' or 'update'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("data")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_DATA, "data");
        return okx_data(sc, msg);
    }
    return ldc_fb_skip_value(sc, 1);
}

/* The message's top object with on_field; -1 with an exception (a syntax error), 0 scanned, 1 not an
 * object (the reference's to read). */
int ldc_fb_scan_message(const char *data, Py_ssize_t size, Scanner *sc, FieldHandler on_field, void *ctx)
{
    sc->start = sc->p = data;
    sc->end = data + size;
    sc->has_error = 0;
    skip_ws(sc);
    if (sc->p >= sc->end || *sc->p != '{') {
        return 1;
    }
    if (scan_object(sc, on_field, ctx) != SCAN_OK) {
        return -1;
    }
    skip_ws(sc);
    if (sc->p != sc->end) {
        syntax_error(sc, "the end of the message");
        return -1;
    }
    return 0;
}

/* [(stream, diff), ...] from diffs (consumed) */
PyObject *ldc_fb_stream_events(PyObject *diffs, PyObject *stream)
{
    Py_ssize_t n = PyList_GET_SIZE(diffs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *diff = PyList_GET_ITEM(diffs, i);
        PyObject *pair = PyTuple_Pack(2, stream != NULL ? stream : ((ParsedDiff *)diff)->symbol, diff);
        if (pair == NULL) {
            Py_DECREF(diffs);
            return NULL;
        }
        PyList_SET_ITEM(diffs, i, pair); /* drops the list's reference to diff: the pair holds one */
        Py_DECREF(diff);
    }
    return diffs;
}

PyObject *ldc_fb_parse_okx(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL;
    OkxMessage msg = {0, 0, 0, NULL, 0, NULL};
    if (ldc_fb_message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    if ((msg.diffs = PyList_New(0)) == NULL) { /* before the scan: the scratch levels are not GC-safe */
        goto done;
    }
    int rc = ldc_fb_scan_message(data, size, &sc, okx_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || ((msg.seen & K_ARG) && !msg.book_channel && !sc.has_error)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (!sc.has_error && !(msg.seen & K_ARG)) {
        ldc_fb_field_error(&sc, "arg", -1, "an object", "nothing", 7);
    }
    if (!sc.has_error && (msg.inst == NULL || !(msg.seen & K_DATA))) {
        ldc_fb_field_error(&sc, msg.inst == NULL ? "arg.instId" : "data", -1, "a value", "nothing", 7);
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    result = ldc_fb_stream_events(msg.diffs, NULL);
    msg.diffs = NULL;
done:
    Py_XDECREF(msg.diffs);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

typedef struct {
    int seen;
    int not_ours; /* the reference's to read: a control message, another topic, a snapshot */
    const char *topic, *topic_symbol;
    Py_ssize_t topic_len, topic_symbol_len;
    Event ev;
} BybitMessage;

static int bybit_data_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    BybitMessage *msg = ctx;
    Event *ev = &msg->ev;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "data key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("s")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_S, "s");
        rc = ldc_fb_plain_string(sc, "s", &ev->symbol, &ev->symbol_len);
        return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
    }
    if (KEY_IS("u")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_U, "u");
        return ldc_fb_parse_id(sc, "u", &ev->final_id);
    }
    if (KEY_IS("b")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_BIDS, "b");
        return ldc_fb_parse_levels_of(sc, "b", &ldc_fb_scratch_bids, 2);
    }
    if (KEY_IS("a")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_ASKS, "a");
        return ldc_fb_parse_levels_of(sc, "a", &ldc_fb_scratch_asks, 2);
    }
    return ldc_fb_skip_value(sc, 1);
}

/* topic "orderbook.DEPTH.SYMBOL": 0 a book topic (its symbol noted), 1 another topic */
static int bybit_topic(Scanner *sc, BybitMessage *msg, const char *text, Py_ssize_t len)
{
    static const char prefix[] = "orderbook.";
    const Py_ssize_t plen = (Py_ssize_t)sizeof prefix - 1;
    if (len < plen || memcmp(text, prefix, (size_t)plen) != 0) {
        return 1;
    }
    const char *depth = text + plen, *end = text + len, *dot = depth;
    while (dot < end && *dot != '.') {
        dot++;
    }
    int digits = dot > depth;
    for (const char *p = depth; p < dot; p++) {
        digits &= *p >= '0' && *p <= '9';
    }
    if (!digits || dot == end || memchr(dot + 1, '.', (size_t)(end - dot - 1)) != NULL) {
        ldc_fb_field_error(sc, "topic", -1, "'orderbook.DEPTH.SYMBOL'", text, len);
        return 0;
    }
    msg->topic = text;
    msg->topic_len = len;
    msg->topic_symbol = dot + 1;
    msg->topic_symbol_len = end - dot - 1;
    return 0;
}

static int bybit_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    BybitMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        ldc_fb_field_error(sc, "key", -1, "no escapes", key, klen);
        return ldc_fb_skip_value(sc, 1);
    }
    if (KEY_IS("topic")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_TOPIC, "topic");
        if (sc->p < sc->end && *sc->p != '"') { /* null or another type: the reference's control or other */
            msg->not_ours = 1;
            return ldc_fb_skip_value(sc, 1);
        }
        if ((rc = ldc_fb_plain_string(sc, "topic", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        msg->not_ours |= bybit_topic(sc, msg, text, len);
        return SCAN_OK;
    }
    if (KEY_IS("type")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_TYPE, "type");
        if ((rc = ldc_fb_plain_string(sc, "type", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (SPAN_IS(text, len, "snapshot")) {
            msg->not_ours = 1;
        } else if (!SPAN_IS(text, len, "delta")) {
            ldc_fb_field_error(sc, "type", -1, "'snapshot' or 'delta'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("ts")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_TS, "ts");
        return ldc_fb_parse_id(sc, "ts", &msg->ev.event_time);
    }
    if (KEY_IS("cts")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_CTS, "cts");
        return ldc_fb_parse_id(sc, "cts", &msg->ev.transaction_time);
    }
    if (KEY_IS("data")) {
        ldc_fb_dialect_key_once(sc, &msg->seen, K_DATA, "data");
        if (sc->p >= sc->end || *sc->p != '{') {
            return ldc_fb_reject_value(sc, "data", "an object");
        }
        return scan_object(sc, bybit_data_field, msg);
    }
    return ldc_fb_skip_value(sc, 1);
}

static const struct {
    int bit;
    const char *name;
} BYBIT_REQUIRED[] = {{K_TYPE, "type"}, {K_DATA, "data"}, {K_S, "s"}, {K_U, "u"}, {K_TS, "ts"}, {K_BIDS, "b"}, {K_ASKS, "a"}};

PyObject *ldc_fb_parse_bybit(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL, *diffs = NULL, *topic = NULL;
    BybitMessage msg = {0};
    event_reset(&msg.ev);
    if (ldc_fb_message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    int rc = ldc_fb_scan_message(data, size, &sc, bybit_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || !(msg.seen & K_TOPIC)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (size_t i = 0; i < sizeof BYBIT_REQUIRED / sizeof BYBIT_REQUIRED[0] && !sc.has_error; i++) {
        if (!(msg.seen & BYBIT_REQUIRED[i].bit)) {
            ldc_fb_field_error(&sc, BYBIT_REQUIRED[i].name, -1, "a value", "nothing", 7);
        }
    }
    if (!sc.has_error && (msg.ev.symbol_len != msg.topic_symbol_len ||
                          memcmp(msg.ev.symbol, msg.topic_symbol, (size_t)msg.topic_symbol_len) != 0)) {
        ldc_fb_field_error(&sc, "s", -1, "the topic's symbol", msg.ev.symbol, msg.ev.symbol_len);
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    if (msg.ev.final_id == BYBIT_RESET_UPDATE_ID) { /* a reset: snapshot data, the reference's */
        result = Py_NewRef(Py_None);
        goto done;
    }
    msg.ev.first_id = msg.ev.final_id; /* U = u: the PLUS_ONE rule, as the reference sets it */
    PyObject *diff = ldc_fb_parsed_diff_new(&msg.ev);
    if (diff == NULL || (diffs = PyList_New(1)) == NULL) {
        Py_XDECREF(diff);
        goto done;
    }
    PyList_SET_ITEM(diffs, 0, diff);
    if ((topic = ldc_fb_symbol_object(msg.topic, msg.topic_len)) == NULL) {
        goto done;
    }
    result = ldc_fb_stream_events(diffs, topic);
    diffs = NULL;
done:
    Py_XDECREF(diffs);
    Py_XDECREF(topic);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

/* ldc.venues.okx.CHANNELS' names, as the OKX dialect knows them */
PyObject *ldc_fb_okx_channels_tuple(void)
{
    PyObject *names = PyTuple_New((Py_ssize_t)OKX_CHANNEL_COUNT);
    for (size_t i = 0; names != NULL && i < OKX_CHANNEL_COUNT; i++) {
        PyObject *name = PyUnicode_FromString(OKX_BOOK_CHANNELS[i]);
        if (name == NULL) {
            Py_CLEAR(names);
            break;
        }
        PyTuple_SET_ITEM(names, (Py_ssize_t)i, name);
    }
    return names;
}
