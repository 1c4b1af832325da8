/* ldc._fastbook: decimal strings and JSON scanning (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * JSON scanning (RFC 8259 syntax, validated as orjson does: a lone \u surrogate or a number beyond
 * the range of a double is refused too; only the fields of a depthUpdate or a snapshot are decoded)
 * ---------------------------------------------------------------------------------------------- */

/* levels of the message being parsed; reused across calls (the GIL serialises them) */
Scratch ldc_fb_scratch_bids, ldc_fb_scratch_asks;

/* length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 */
static int utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (end - p < len || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (int i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

/* the code unit of the 4 hex digits at p, or -1 */
static int hex4(const unsigned char *p, const unsigned char *end)
{
    int unit = 0;
    if (end - p < 4) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        int c = p[i];
        int value = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
        if (value < 0) {
            return -1;
        }
        unit = unit * 16 + value;
    }
    return unit;
}

/* Length of the \u escape at p (6, or 12 for a surrogate pair); -1 bad hex, -2 a lone surrogate.
 * A lone surrogate is valid JSON syntax but no Unicode string: orjson refuses it, and so must we. */
static int unicode_escape(const unsigned char *p, const unsigned char *end)
{
    int unit = hex4(p + 2, end);
    if (unit < 0) {
        return -1;
    }
    if (unit < 0xD800 || unit > 0xDFFF) {
        return 6;
    }
    if (unit >= 0xDC00 || end - p < 12 || p[6] != '\\' || p[7] != 'u') {
        return -2;
    }
    int low = hex4(p + 8, end);
    return low >= 0xDC00 && low <= 0xDFFF ? 12 : -2;
}

/* Scan a string at sc->p ('"'); sets its raw content span and whether it holds escapes. */
int ldc_fb_scan_string(Scanner *sc, const char **text, Py_ssize_t *len, int *escaped)
{
    const unsigned char *p = (const unsigned char *)sc->p + 1, *end = (const unsigned char *)sc->end;
    *escaped = 0;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"') {
            *text = sc->p + 1;
            *len = (const char *)p - sc->p - 1;
            sc->p = (const char *)p + 1;
            return SCAN_OK;
        }
        if (c == '\\') {
            *escaped = 1;
            if (end - p < 2 || !strchr("\"\\/bfnrtu", p[1]) || p[1] == '\0') {
                sc->p = (const char *)p;
                return syntax_error(sc, "a valid escape");
            }
            if (p[1] == 'u') {
                int step = unicode_escape(p, end);
                if (step < 0) {
                    sc->p = (const char *)p;
                    return syntax_error(sc, step == -1 ? "four hex digits after \\u"
                                                       : "a \\u surrogate pair (high then low)");
                }
                p += step;
            } else {
                p += 2;
            }
        } else if (c < 0x20) {
            sc->p = (const char *)p;
            return syntax_error(sc, "no control character inside a string");
        } else if (c >= 0x80) {
            int n = utf8_sequence(p, end);
            if (n == 0) {
                sc->p = (const char *)p;
                return syntax_error(sc, "valid utf-8");
            }
            p += n;
        } else {
            p++;
        }
    }
    return syntax_error(sc, "a closing quote");
}

static int scan_digits(Scanner *sc)
{
    const char *from = sc->p;
    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') {
        sc->p++;
    }
    return sc->p > from;
}

/* The number [from, to) (valid JSON) is finite as a double: orjson refuses one that is not. */
static int number_is_finite(const char *from, Py_ssize_t len)
{
    char small[MAX_DECIMAL_CHARS + 1];
    char *buf = len <= MAX_DECIMAL_CHARS ? small : PyMem_Malloc((size_t)len + 1);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(buf, from, (size_t)len);
    buf[len] = '\0';
    double value = PyOS_string_to_double(buf, NULL, NULL); /* +-inf on overflow, no exception */
    if (buf != small) {
        PyMem_Free(buf);
    }
    if (value == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    return isinf(value) ? 0 : 1;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? whose value is a finite double */
int ldc_fb_scan_number(Scanner *sc)
{
    const char *from = sc->p, *digits;
    int exponent = 0;
    if (sc->p < sc->end && *sc->p == '-') {
        sc->p++;
    }
    digits = sc->p;
    if (sc->p < sc->end && *sc->p == '0') {
        sc->p++;
    } else if (!scan_digits(sc)) {
        return syntax_error(sc, "a digit");
    }
    Py_ssize_t int_digits = sc->p - digits;
    if (sc->p < sc->end && *sc->p == '.') {
        sc->p++;
        if (!scan_digits(sc)) {
            return syntax_error(sc, "a digit after the decimal point");
        }
    }
    if (sc->p < sc->end && (*sc->p == 'e' || *sc->p == 'E')) {
        exponent = 1;
        sc->p++;
        if (sc->p < sc->end && (*sc->p == '+' || *sc->p == '-')) {
            sc->p++;
        }
        if (!scan_digits(sc)) {
            return syntax_error(sc, "a digit in the exponent");
        }
    }
    if (exponent || int_digits > DBL_MAX_10_EXP) { /* only these can overflow */
        int finite = number_is_finite(from, sc->p - from);
        if (finite <= 0) {
            if (finite == 0) {
                sc->p = from;
                syntax_error(sc, "a number within the range of a double");
            }
            return SCAN_SYNTAX;
        }
    }
    return SCAN_OK;
}

static int scan_literal(Scanner *sc, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0) {
        return syntax_error(sc, "a json value");
    }
    sc->p += n;
    return SCAN_OK;
}

/* shared by objects and arrays: elements separated by ',' up to the closer */
static int skip_container(Scanner *sc, int nesting, char closer)
{
    const char *text;
    Py_ssize_t len;
    int escaped;
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == closer) {
        sc->p++;
        return SCAN_OK;
    }
    for (;;) {
        skip_ws(sc);
        if (closer == '}') {
            if (sc->p >= sc->end || *sc->p != '"') {
                return syntax_error(sc, "an object key");
            }
            if (ldc_fb_scan_string(sc, &text, &len, &escaped) < 0) {
                return SCAN_SYNTAX;
            }
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ':') {
                return syntax_error(sc, "':'");
            }
            sc->p++;
        }
        if (ldc_fb_skip_value(sc, nesting + 1) < 0) {
            return SCAN_SYNTAX;
        }
        skip_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == closer) {
            sc->p++;
            return SCAN_OK;
        }
        return syntax_error(sc, closer == '}' ? "',' or '}'" : "',' or ']'");
    }
}

int ldc_fb_skip_value(Scanner *sc, int nesting)
{
    const char *text;
    Py_ssize_t len;
    int escaped;
    if (nesting > MAX_NESTING) {
        return syntax_error(sc, "nesting at most 32 deep");
    }
    skip_ws(sc);
    if (sc->p >= sc->end) {
        return syntax_error(sc, "a json value");
    }
    switch (*sc->p) {
    case '"':
        return ldc_fb_scan_string(sc, &text, &len, &escaped);
    case '{':
        return skip_container(sc, nesting, '}');
    case '[':
        return skip_container(sc, nesting, ']');
    case 't':
        return scan_literal(sc, "true");
    case 'f':
        return scan_literal(sc, "false");
    case 'n':
        return scan_literal(sc, "null");
    default:
        return ldc_fb_scan_number(sc);
    }
}

/* Record the first field error; a field error aborts nothing, the value is skipped as plain JSON. */
void ldc_fb_field_error(Scanner *sc, const char *field, Py_ssize_t level, const char *expected, const char *found,
                        Py_ssize_t found_len)
{
    char where[48];
    if (sc->has_error) {
        return;
    }
    if (found_len > FOUND_EXCERPT_CHARS) {
        found_len = FOUND_EXCERPT_CHARS;
    }
    if (level >= 0) {
        PyOS_snprintf(where, sizeof where, "field '%s' level %zd", field, level);
    } else {
        PyOS_snprintf(where, sizeof where, "field '%s'", field);
    }
    PyOS_snprintf(sc->error, sizeof sc->error, "%s: expected %s, found %.*s", where, expected, (int)found_len, found);
    sc->has_error = 1;
}

/* Skip the value at sc->p, recording a field error that quotes its start. */
int ldc_fb_reject_value(Scanner *sc, const char *field, const char *expected)
{
    const char *from = sc->p;
    if (ldc_fb_skip_value(sc, 1) < 0) {
        return SCAN_SYNTAX;
    }
    ldc_fb_field_error(sc, field, -1, expected, from, sc->p - from);
    return SCAN_OK;
}

int ldc_fb_parse_id(Scanner *sc, const char *field, long long *out)
{
    const char *from = sc->p;
    long long v = 0;
    if (sc->p >= sc->end || *sc->p < '0' || *sc->p > '9') {
        return ldc_fb_reject_value(sc, field, "a non-negative integer");
    }
    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') {
        int d = *sc->p - '0';
        if (v > (LLONG_MAX - d) / 10) {
            sc->p = from;
            return ldc_fb_reject_value(sc, field, "an integer below 2^63");
        }
        v = v * 10 + d;
        sc->p++;
    }
    if ((sc->p < sc->end && (*sc->p == '.' || *sc->p == 'e' || *sc->p == 'E')) || (*from == '0' && sc->p - from > 1)) {
        sc->p = from;
        return ldc_fb_reject_value(sc, field, "a non-negative integer");
    }
    *out = v;
    return SCAN_OK;
}

/* One decimal string element of a level pair. Returns 0 ok, 1 field error, -1 syntax error. */
int ldc_fb_parse_level_number(Scanner *sc, double *out)
{
    const char *text;
    Py_ssize_t len;
    int escaped;
    skip_ws(sc);
    if (sc->p >= sc->end || *sc->p != '"') {
        return 1;
    }
    /* one pass for the common case, digits[.digits]" with <= 19 digits that Clinger's fast path
     * takes; anything else is handed to parse_decimal (same format, exact fallback) */
    const char *start = sc->p + 1, *p = start, *end = sc->end, *frac = NULL;
    uint64_t m = 0;
    while (p < end && (unsigned)(*p - '0') < 10) {
        m = m * 10 + (uint64_t)(*p++ - '0');
    }
    Py_ssize_t int_digits = p - start, scale = 0;
    if (p < end && *p == '.') {
        frac = ++p;
        while (p < end && (unsigned)(*p - '0') < 10) {
            m = m * 10 + (uint64_t)(*p++ - '0');
        }
        scale = p - frac;
    }
    if (p < end && *p == '"') {
        sc->p = p + 1;
        if (int_digits > 0 && (frac == NULL || scale > 0) && int_digits + scale <= 19 && m <= FAST_MANTISSA_MAX &&
            scale <= FAST_POW10_MAX) {
            *out = (double)m / POW10[scale];
            return 0;
        }
        return parse_decimal(start, p - start, out) < 0 ? 1 : 0;
    }
    if (ldc_fb_scan_string(sc, &text, &len, &escaped) < 0) { /* not a decimal string: still valid JSON? */
        return -1;
    }
    return 1;
}

/* [[ "price", "qty" ], ...] into s; with width 4 (OKX), [ "price", "qty", any, any ]. Returns 0 ok, -1
 * syntax error, 1 field error with *bad at the start of the offending level (the position of sc is
 * then unspecified). */
static int parse_level_pairs(Scanner *sc, Scratch *s, const char **bad, int width)
{
    s->count = 0;
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        return 0;
    }
    for (;;) {
        double price, qty;
        int rc;
        skip_ws(sc);
        *bad = sc->p;
        if (sc->p >= sc->end || *sc->p != '[') {
            return 1;
        }
        sc->p++;
        if ((rc = ldc_fb_parse_level_number(sc, &price)) != 0) {
            return rc;
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ',') {
            return 1;
        }
        sc->p++;
        if ((rc = ldc_fb_parse_level_number(sc, &qty)) != 0) {
            return rc;
        }
        for (int extra = 2; extra < width; extra++) { /* the reference parser reads only price and size */
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ',') {
                return 1;
            }
            sc->p++;
            if (ldc_fb_skip_value(sc, 2) < 0) {
                return -1;
            }
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ']') {
            return 1;
        }
        sc->p++;
        if (scratch_push(s, price, qty) < 0) {
            return -1;
        }
        int more = list_next(sc);
        if (more <= 0) {
            return more < 0; /* 0 at the end, 1 a doubt */
        }
    }
}

int ldc_fb_parse_levels_of(Scanner *sc, const char *field, Scratch *s, int width)
{
    const char *from = sc->p, *bad = NULL;
    if (sc->p >= sc->end || *sc->p != '[') {
        return ldc_fb_reject_value(sc, field, "a list of [price, qty] levels");
    }
    int rc = parse_level_pairs(sc, s, &bad, width);
    if (rc != 1) {
        return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
    }
    /* validate the whole list as JSON first, then quote the level that is not [decimal, decimal] */
    Py_ssize_t index = s->count;
    s->count = 0;
    sc->p = from;
    if (ldc_fb_skip_value(sc, 1) < 0) {
        return SCAN_SYNTAX;
    }
    const char *after = sc->p;
    sc->p = bad;
    if (ldc_fb_skip_value(sc, 1) < 0) {
        return SCAN_SYNTAX;
    }
    ldc_fb_field_error(sc, field, index,
                       width == 2 ? "[price, qty] decimal strings" : "[price, qty, _, _] (decimal strings)", bad,
                       sc->p - bad);
    sc->p = after;
    return SCAN_OK;
}

int ldc_fb_parse_levels(Scanner *sc, const char *field, Scratch *s) { return ldc_fb_parse_levels_of(sc, field, s, 2); }

static int parse_event_field(Scanner *sc, Event *ev, const char *key, Py_ssize_t klen)
{
    const char *text;
    Py_ssize_t len;
    int escaped;
    if (KEY_IS("e")) {
        if (sc->p >= sc->end || *sc->p != '"') {
            return ldc_fb_reject_value(sc, "e", "a string");
        }
        if (ldc_fb_scan_string(sc, &text, &len, &escaped) < 0) {
            return SCAN_SYNTAX;
        }
        ev->is_depth = len == 11 && memcmp(text, "depthUpdate", 11) == 0;
        return ev->is_depth ? SCAN_OK : SCAN_NOT_DEPTH;
    }
    if (KEY_IS("s")) {
        if (sc->p >= sc->end || *sc->p != '"') {
            return ldc_fb_reject_value(sc, "s", "a string");
        }
        if (ldc_fb_scan_string(sc, &text, &len, &escaped) < 0) {
            return SCAN_SYNTAX;
        }
        if (escaped) {
            ldc_fb_field_error(sc, "s", -1, "a symbol without escapes", text, len);
        }
        ev->symbol = text;
        ev->symbol_len = len;
        ev->seen |= F_S;
        return SCAN_OK;
    }
    if (KEY_IS("b")) {
        ev->seen |= F_BIDS;
        return ldc_fb_parse_levels(sc, "b", &ldc_fb_scratch_bids);
    }
    if (KEY_IS("a")) {
        ev->seen |= F_ASKS;
        return ldc_fb_parse_levels(sc, "a", &ldc_fb_scratch_asks);
    }
    if (KEY_IS("U")) {
        ev->seen |= F_FIRST;
        return ldc_fb_parse_id(sc, "U", &ev->first_id);
    }
    if (KEY_IS("u")) {
        ev->seen |= F_FINAL;
        return ldc_fb_parse_id(sc, "u", &ev->final_id);
    }
    if (KEY_IS("pu")) {
        return ldc_fb_parse_id(sc, "pu", &ev->prev_final_id);
    }
    if (KEY_IS("E")) {
        ev->seen |= F_TIME;
        return ldc_fb_parse_id(sc, "E", &ev->event_time);
    }
    if (KEY_IS("T")) {
        return ldc_fb_parse_id(sc, "T", &ev->transaction_time);
    }
    return ldc_fb_skip_value(sc, 1);
}

typedef struct {
    Event *ev;
    int top;      /* the message itself, where "data" may hold the event */
    int combined; /* "data" was the event: the wrapper's other fields are skipped */
} EventObject;

static int event_object_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    EventObject *obj = ctx;
    if (obj->top && klen == 4 && memcmp(key, "data", 4) == 0 && sc->p < sc->end && *sc->p == '{') {
        event_reset(obj->ev);
        sc->has_error = 0;
        obj->combined = 1;
        return ldc_fb_parse_object(sc, obj->ev, 0);
    }
    if (obj->combined || escaped) {
        return ldc_fb_skip_value(sc, 1);
    }
    return parse_event_field(sc, obj->ev, key, klen);
}

/* Parse the object at sc->p. At the top level a "data" object is the event of a combined-stream
 * message ({"stream":..., "data": {...}}); otherwise the object itself is the event. */
int ldc_fb_parse_object(Scanner *sc, Event *ev, int top)
{
    EventObject obj = {ev, top, 0};
    return scan_object(sc, event_object_field, &obj);
}

/* The bytes of a message: bytes, str (its UTF-8) or any contiguous buffer (released by the caller
 * when view->obj is set). TypeError for anything else. */
int ldc_fb_message_bytes(PyObject *arg, const char **data, Py_ssize_t *size, Py_buffer *view)
{
    if (PyBytes_Check(arg)) {
        *data = PyBytes_AS_STRING(arg);
        *size = PyBytes_GET_SIZE(arg);
        return 0;
    }
    if (PyUnicode_Check(arg)) {
        *data = PyUnicode_AsUTF8AndSize(arg, size);
        return *data == NULL ? -1 : 0;
    }
    if (PyObject_GetBuffer(arg, view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "expected bytes, a contiguous buffer or str, found %.80s", Py_TYPE(arg)->tp_name);
        return -1;
    }
    *data = view->buf;
    *size = view->len;
    return 0;
}
