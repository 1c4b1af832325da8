/*
 * ldc._fastbook — the book hot path in C: a raw Binance depthUpdate message (bytes) -> parsed levels
 * held in a C array -> applied to a sorted-array book -> top N copied into caller-owned buffers.
 * Beside it, the two costly steps of a snapshot: parsing the REST depth body (parse_snapshot_levels,
 * the fast path of ldc.venues.binance.parse_snapshot) and the refresh audit's comparison of two books
 * (FastBook.count_differences, the fast path of ldc.sync._count_differences). And the feeder's per-diff
 * path for a book in sync, parse result to published slot in one call (HotPath, at the end: it publishes
 * through ldc.shm._seqlock's C API, ldc/shm/ldc_seqlock_api.h), and the Router that takes a socket
 * read's frames through it.
 *
 * The executable specification is ldc/book.py (OrderBook); FastBook mirrors its rules line for line
 * and tests/test_fastbook.py drives both with the same streams. Read book.py's docstring first.
 *
 * Exact prices. Binance sends prices and quantities as decimal strings of at most 15 significant
 * digits. Each string is parsed to the correctly rounded float64 (what strtod gives), and since
 * DBL_DIG == 15, two decimal values of at most 15 significant digits never round to the same double:
 * float64 keys are exact for every Binance market today. A venue sending more digits breaks this;
 * check its precision before reusing this parser. The fast path relies on IEEE-754 binary64
 * arithmetic with round-to-nearest (SSE2 on x86-64, any AArch64); not on x87 extended precision.
 *
 * Book layout. Per side, one array of (key, qty) sorted ascending by key, key = price for bids and
 * -price for asks, so the best level is the LAST element on both sides. The live elements sit in
 * buf[lo..hi) with slack at both ends: an insert or delete shifts whichever part of the array is
 * shorter (near the top: a few elements; near the bottom: a few elements), pruning the worst levels
 * is lo += k, and the top N are the last N elements. Lookups gallop from the best end, where most
 * updates land. Nothing is allocated per level: arrays grow by doubling and are reused.
 * Measured against a chunked variant (64-level blocks with slack at both ends, bounded shifts) on
 * the spot capture, CPU time per applied level: windows of 100 levels 32 vs 44 ns, 1000: 63 vs 70,
 * 5000: 74 vs 67. Windows of 100-1000 levels are what ldc asks for, so the simpler array stays; the
 * cost is the search (a chain of dependent loads), not the shifting.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shm/ldc_seqlock_api.h"

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

#define NO_ID (-1LL)              /* an id the venue does not send, as ldc.depth.NO_ID */
#define MAX_NESTING 32            /* JSON nesting a depth message never approaches */
#define MAX_DECIMAL_CHARS 63      /* longest decimal string handed to the slow exact parser */
#define FAST_MANTISSA_MAX (1ULL << 53)  /* integers up to 2^53 are exact doubles */
#define FAST_POW10_MAX 22         /* 10^22 is the largest power of ten that is an exact double */
#define MIN_SIDE_CAPACITY 64      /* levels allocated at first use, per book side and per parse scratch */
#define SYMBOL_CACHE_CHARS 32     /* symbols up to this length are cached */
#define SYMBOL_CACHE_SLOTS 256    /* cached symbol strs */
#define FOUND_EXCERPT_CHARS 40    /* how much of an offending value an error message quotes */
#define ERROR_MESSAGE_CHARS 200

typedef struct {
    double a; /* price in a ParsedDiff; key (sign * price) in a book side */
    double qty;
} Level;

static const double POW10[FAST_POW10_MAX + 1] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* ------------------------------------------------------------------------------------------------
 * Decimal strings -> float64
 * ---------------------------------------------------------------------------------------------- */

/* Correctly rounded parse of [0-9]+(\.[0-9]+)? (Binance's form). Clinger's fast path: when the
 * digits form an integer m <= 2^53 and the scale k <= 22, m and 10^k are exact doubles and one IEEE
 * division rounds m / 10^k correctly. Anything else goes to CPython's dtoa (also correctly rounded).
 * Returns 0, or -1 when the text is not such a decimal (no exception set). */
static int parse_decimal(const char *s, Py_ssize_t n, double *out)
{
    const char *p = s, *end = s + n, *frac = end;
    uint64_t m = 0; /* wraps when there are more than 19 digits: then unused */
    while (p < end && (unsigned)(*p - '0') < 10) {
        m = m * 10 + (uint64_t)(*p++ - '0');
    }
    Py_ssize_t int_digits = p - s;
    if (int_digits == 0) {
        return -1;
    }
    if (p < end) {
        if (*p++ != '.') {
            return -1;
        }
        frac = p;
        while (p < end && (unsigned)(*p - '0') < 10) {
            m = m * 10 + (uint64_t)(*p++ - '0');
        }
        if (p == frac || p != end) {
            return -1;
        }
    }
    int scale = (int)(end - frac);
    if (int_digits + scale <= 19) {
        if (m > FAST_MANTISSA_MAX || scale > FAST_POW10_MAX) {
            while (scale > 0 && m % 10 == 0) { /* "1.10000000000000000" */
                m /= 10;
                scale--;
            }
        }
        if (m <= FAST_MANTISSA_MAX && scale <= FAST_POW10_MAX) {
            *out = (double)m / POW10[scale];
            return 0;
        }
    }
    if (n > MAX_DECIMAL_CHARS) {
        return -1;
    }
    char buf[MAX_DECIMAL_CHARS + 1];
    char *stop = NULL;
    memcpy(buf, s, (size_t)n);
    buf[n] = '\0';
    *out = PyOS_string_to_double(buf, &stop, NULL);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return stop == buf + n ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------------
 * JSON scanning (RFC 8259 syntax, validated as orjson does: a lone \u surrogate or a number beyond
 * the range of a double is refused too; only the fields of a depthUpdate or a snapshot are decoded)
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    const char *start, *p, *end;
    char error[ERROR_MESSAGE_CHARS]; /* first field error: raised only if the message is a depthUpdate */
    int has_error;
} Scanner;

enum { SCAN_OK = 0, SCAN_SYNTAX = -1, SCAN_NOT_DEPTH = 1 };

/* fields of a depthUpdate, one bit each, to report the first missing one */
enum { F_TIME = 1, F_S = 2, F_FIRST = 4, F_FINAL = 8, F_BIDS = 16, F_ASKS = 32 };

typedef struct {
    int seen;
    int is_depth; /* "e" was "depthUpdate" */
    long long event_time, transaction_time, first_id, final_id, prev_final_id;
    long long checksum; /* the venue's checksum of its top levels (OKX), 0: none */
    const char *symbol;
    Py_ssize_t symbol_len;
} Event;

/* levels of the message being parsed; reused across calls (the GIL serialises them) */
typedef struct {
    Level *levels;
    Py_ssize_t count, capacity;
} Scratch;

static Scratch scratch_bids, scratch_asks;

static int syntax_error(Scanner *sc, const char *expected)
{
    PyErr_Format(PyExc_ValueError, "invalid json at byte %zd: expected %s", (Py_ssize_t)(sc->p - sc->start),
                 expected);
    return SCAN_SYNTAX;
}

static void skip_ws(Scanner *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\n' || *sc->p == '\r' || *sc->p == '\t')) {
        sc->p++;
    }
}

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
static int scan_string(Scanner *sc, const char **text, Py_ssize_t *len, int *escaped)
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
static int scan_number(Scanner *sc)
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

static int skip_value(Scanner *sc, int nesting);

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
            if (scan_string(sc, &text, &len, &escaped) < 0) {
                return SCAN_SYNTAX;
            }
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ':') {
                return syntax_error(sc, "':'");
            }
            sc->p++;
        }
        if (skip_value(sc, nesting + 1) < 0) {
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

static int skip_value(Scanner *sc, int nesting)
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
        return scan_string(sc, &text, &len, &escaped);
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
        return scan_number(sc);
    }
}

/* Record the first field error; a field error aborts nothing, the value is skipped as plain JSON. */
static void field_error(Scanner *sc, const char *field, Py_ssize_t level, const char *expected, const char *found,
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
static int reject_value(Scanner *sc, const char *field, const char *expected)
{
    const char *from = sc->p;
    if (skip_value(sc, 1) < 0) {
        return SCAN_SYNTAX;
    }
    field_error(sc, field, -1, expected, from, sc->p - from);
    return SCAN_OK;
}

static int parse_id(Scanner *sc, const char *field, long long *out)
{
    const char *from = sc->p;
    long long v = 0;
    if (sc->p >= sc->end || *sc->p < '0' || *sc->p > '9') {
        return reject_value(sc, field, "a non-negative integer");
    }
    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') {
        int d = *sc->p - '0';
        if (v > (LLONG_MAX - d) / 10) {
            sc->p = from;
            return reject_value(sc, field, "an integer below 2^63");
        }
        v = v * 10 + d;
        sc->p++;
    }
    if ((sc->p < sc->end && (*sc->p == '.' || *sc->p == 'e' || *sc->p == 'E')) || (*from == '0' && sc->p - from > 1)) {
        sc->p = from;
        return reject_value(sc, field, "a non-negative integer");
    }
    *out = v;
    return SCAN_OK;
}

static int scratch_push(Scratch *s, double price, double qty)
{
    if (s->count == s->capacity) {
        Py_ssize_t capacity = s->capacity ? s->capacity * 2 : MIN_SIDE_CAPACITY;
        Level *grown = PyMem_Realloc(s->levels, (size_t)capacity * sizeof(Level));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->levels = grown;
        s->capacity = capacity;
    }
    s->levels[s->count].a = price;
    s->levels[s->count].qty = qty;
    s->count++;
    return 0;
}

/* One decimal string element of a level pair. Returns 0 ok, 1 field error, -1 syntax error. */
static int parse_level_number(Scanner *sc, double *out)
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
    if (scan_string(sc, &text, &len, &escaped) < 0) { /* not a decimal string: still valid JSON? */
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
        if ((rc = parse_level_number(sc, &price)) != 0) {
            return rc;
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ',') {
            return 1;
        }
        sc->p++;
        if ((rc = parse_level_number(sc, &qty)) != 0) {
            return rc;
        }
        for (int extra = 2; extra < width; extra++) { /* the reference parser reads only price and size */
            skip_ws(sc);
            if (sc->p >= sc->end || *sc->p != ',') {
                return 1;
            }
            sc->p++;
            if (skip_value(sc, 2) < 0) {
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
        skip_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == ']') {
            sc->p++;
            return 0;
        }
        return 1;
    }
}

static int parse_levels_of(Scanner *sc, const char *field, Scratch *s, int width)
{
    const char *from = sc->p, *bad = NULL;
    if (sc->p >= sc->end || *sc->p != '[') {
        return reject_value(sc, field, "a list of [price, qty] levels");
    }
    int rc = parse_level_pairs(sc, s, &bad, width);
    if (rc != 1) {
        return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
    }
    /* validate the whole list as JSON first, then quote the level that is not [decimal, decimal] */
    Py_ssize_t index = s->count;
    s->count = 0;
    sc->p = from;
    if (skip_value(sc, 1) < 0) {
        return SCAN_SYNTAX;
    }
    const char *after = sc->p;
    sc->p = bad;
    if (skip_value(sc, 1) < 0) {
        return SCAN_SYNTAX;
    }
    field_error(sc, field, index, width == 2 ? "[price, qty] decimal strings" : "[price, qty, _, _] (decimal strings)",
                bad, sc->p - bad);
    sc->p = after;
    return SCAN_OK;
}

static int parse_levels(Scanner *sc, const char *field, Scratch *s) { return parse_levels_of(sc, field, s, 2); }

#define KEY_IS(lit) (klen == (Py_ssize_t)sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)

static int parse_event_field(Scanner *sc, Event *ev, const char *key, Py_ssize_t klen)
{
    const char *text;
    Py_ssize_t len;
    int escaped;
    if (KEY_IS("e")) {
        if (sc->p >= sc->end || *sc->p != '"') {
            return reject_value(sc, "e", "a string");
        }
        if (scan_string(sc, &text, &len, &escaped) < 0) {
            return SCAN_SYNTAX;
        }
        ev->is_depth = len == 11 && memcmp(text, "depthUpdate", 11) == 0;
        return ev->is_depth ? SCAN_OK : SCAN_NOT_DEPTH;
    }
    if (KEY_IS("s")) {
        if (sc->p >= sc->end || *sc->p != '"') {
            return reject_value(sc, "s", "a string");
        }
        if (scan_string(sc, &text, &len, &escaped) < 0) {
            return SCAN_SYNTAX;
        }
        if (escaped) {
            field_error(sc, "s", -1, "a symbol without escapes", text, len);
        }
        ev->symbol = text;
        ev->symbol_len = len;
        ev->seen |= F_S;
        return SCAN_OK;
    }
    if (KEY_IS("b")) {
        ev->seen |= F_BIDS;
        return parse_levels(sc, "b", &scratch_bids);
    }
    if (KEY_IS("a")) {
        ev->seen |= F_ASKS;
        return parse_levels(sc, "a", &scratch_asks);
    }
    if (KEY_IS("U")) {
        ev->seen |= F_FIRST;
        return parse_id(sc, "U", &ev->first_id);
    }
    if (KEY_IS("u")) {
        ev->seen |= F_FINAL;
        return parse_id(sc, "u", &ev->final_id);
    }
    if (KEY_IS("pu")) {
        return parse_id(sc, "pu", &ev->prev_final_id);
    }
    if (KEY_IS("E")) {
        ev->seen |= F_TIME;
        return parse_id(sc, "E", &ev->event_time);
    }
    if (KEY_IS("T")) {
        return parse_id(sc, "T", &ev->transaction_time);
    }
    return skip_value(sc, 1);
}

static void event_reset(Event *ev)
{
    ev->seen = 0;
    ev->is_depth = 0;
    ev->event_time = NO_ID;
    ev->transaction_time = NO_ID;
    ev->first_id = ev->final_id = ev->prev_final_id = NO_ID;
    ev->checksum = 0;
    ev->symbol = NULL;
    ev->symbol_len = 0;
    scratch_bids.count = scratch_asks.count = 0;
}

/* Called with sc->p at the value of key (raw span, escaped when it holds escapes); consumes it. */
typedef int (*FieldHandler)(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped);

/* Walk the object at sc->p, handing each value to on_field. Inlined into each caller, so that the
 * handler is a direct call there (parse_depth runs it for every key of every message). */
static ALWAYS_INLINE int scan_object(Scanner *sc, FieldHandler on_field, void *ctx)
{
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == '}') {
        sc->p++;
        return SCAN_OK;
    }
    for (;;) {
        const char *key;
        Py_ssize_t klen;
        int escaped, rc;
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != '"') {
            return syntax_error(sc, "an object key");
        }
        if (scan_string(sc, &key, &klen, &escaped) < 0) {
            return SCAN_SYNTAX;
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ':') {
            return syntax_error(sc, "':'");
        }
        sc->p++;
        skip_ws(sc);
        if ((rc = on_field(sc, ctx, key, klen, escaped)) != SCAN_OK) {
            return rc;
        }
        skip_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == '}') {
            sc->p++;
            return SCAN_OK;
        }
        return syntax_error(sc, "',' or '}'");
    }
}

typedef struct {
    Event *ev;
    int top;      /* the message itself, where "data" may hold the event */
    int combined; /* "data" was the event: the wrapper's other fields are skipped */
} EventObject;

static int parse_object(Scanner *sc, Event *ev, int top);

static int event_object_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    EventObject *obj = ctx;
    if (obj->top && klen == 4 && memcmp(key, "data", 4) == 0 && sc->p < sc->end && *sc->p == '{') {
        event_reset(obj->ev);
        sc->has_error = 0;
        obj->combined = 1;
        return parse_object(sc, obj->ev, 0);
    }
    if (obj->combined || escaped) {
        return skip_value(sc, 1);
    }
    return parse_event_field(sc, obj->ev, key, klen);
}

/* Parse the object at sc->p. At the top level a "data" object is the event of a combined-stream
 * message ({"stream":..., "data": {...}}); otherwise the object itself is the event. */
static int parse_object(Scanner *sc, Event *ev, int top)
{
    EventObject obj = {ev, top, 0};
    return scan_object(sc, event_object_field, &obj);
}

/* The bytes of a message: bytes, str (its UTF-8) or any contiguous buffer (released by the caller
 * when view->obj is set). TypeError for anything else. */
static int message_bytes(PyObject *arg, const char **data, Py_ssize_t *size, Py_buffer *view)
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

/* ------------------------------------------------------------------------------------------------
 * ParsedDiff: the DepthDiff attributes, levels in one inline C array (bids first, then asks)
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_VAR_HEAD
    PyObject *symbol;
    long long first_id, final_id, prev_final_id, event_time_ms, transaction_time_ms, checksum;
    Py_ssize_t n_bids, n_asks;
    PyObject *bids_list, *asks_list; /* materialised on first access */
    Level levels[1];
} ParsedDiff;

static PyTypeObject ParsedDiffType;
/* Symbol strs reused across messages: a feeder sees the same few hundred symbols all day, so one
 * str per message would be waste. Direct-mapped by a hash of the symbol's bytes. */
static PyObject *symbol_cache[SYMBOL_CACHE_SLOTS];

static PyObject *symbol_object(const char *text, Py_ssize_t len)
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

static PyObject *parsed_diff_new(const Event *ev)
{
    Py_ssize_t nb = scratch_bids.count, na = scratch_asks.count;
    ParsedDiff *d = PyObject_NewVar(ParsedDiff, &ParsedDiffType, nb + na);
    if (d == NULL) {
        return NULL;
    }
    d->symbol = symbol_object(ev->symbol, ev->symbol_len);
    d->bids_list = d->asks_list = NULL;
    if (d->symbol == NULL) {
        Py_DECREF(d);
        return NULL;
    }
    d->first_id = ev->first_id;
    d->final_id = ev->final_id;
    d->prev_final_id = ev->prev_final_id;
    d->event_time_ms = ev->event_time;
    d->transaction_time_ms = ev->transaction_time;
    d->checksum = ev->checksum;
    d->n_bids = nb;
    d->n_asks = na;
    if (nb) {
        memcpy(d->levels, scratch_bids.levels, (size_t)nb * sizeof(Level));
    }
    if (na) {
        memcpy(d->levels + nb, scratch_asks.levels, (size_t)na * sizeof(Level));
    }
    return (PyObject *)d;
}

static const char *const REQUIRED_NAMES[] = {"E", "s", "U", "u", "b", "a"};

static PyObject *fb_parse_depth(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Event ev;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    int rc;
    PyObject *result = NULL;

    if (message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    sc.start = sc.p = data;
    sc.end = data + size;
    sc.has_error = 0;
    event_reset(&ev);
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{') {
        rc = sc.p < sc.end && (*sc.p == '[' || *sc.p == '"') ? skip_value(&sc, 0) : syntax_error(&sc, "'{'");
        rc = rc == SCAN_OK ? SCAN_NOT_DEPTH : rc;
    } else {
        rc = parse_object(&sc, &ev, 1);
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
    result = parsed_diff_new(&ev);
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
static PyObject *level_pair(double price, double qty)
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
        PyObject *pair = level_pair(levels[i].a, levels[i].qty);
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

static PyTypeObject ParsedDiffType = {
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

static void dialect_key_once(Scanner *sc, int *seen, int bit, const char *field)
{
    if (*seen & bit) {
        field_error(sc, field, -1, "the key once", "a second time", 13);
    }
    *seen |= bit;
}

/* a JSON integer of either sign (OKX's checksum is a signed CRC32) */
static int parse_signed(Scanner *sc, const char *field, long long *out)
{
    int negative = sc->p < sc->end && *sc->p == '-';
    if (negative && (sc->end - sc->p < 2 || sc->p[1] < '0' || sc->p[1] > '9')) {
        return reject_value(sc, field, "an integer"); /* not JSON: skip_value raises the syntax error */
    }
    sc->p += negative;
    int rc = parse_id(sc, field, out);
    if (negative) {
        *out = -*out;
    }
    return rc;
}

/* A string value without escapes: 0 with its span, 1 after a field error (value skipped), -1 syntax. */
static int plain_string(Scanner *sc, const char *field, const char **text, Py_ssize_t *len)
{
    int escaped;
    if (sc->p >= sc->end || *sc->p != '"') {
        return reject_value(sc, field, "a string") < 0 ? -1 : 1;
    }
    if (scan_string(sc, text, len, &escaped) < 0) {
        return -1;
    }
    if (escaped) {
        field_error(sc, field, -1, "a string without escapes", *text, *len);
        return 1;
    }
    return 0;
}

#define SPAN_IS(text, len, lit) ((len) == (Py_ssize_t)sizeof(lit) - 1 && memcmp((text), lit, sizeof(lit) - 1) == 0)

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
        field_error(sc, "arg key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("channel")) {
        dialect_key_once(sc, &msg->seen, K_CHANNEL, "arg.channel");
        if ((rc = plain_string(sc, "arg.channel", &text, &len)) != 0) {
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
        dialect_key_once(sc, &msg->seen, K_INST, "arg.instId");
        if ((rc = plain_string(sc, "arg.instId", &msg->inst, &msg->inst_len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (msg->inst_len == 0) {
            field_error(sc, "arg.instId", -1, "an instrument id", "\"\"", 2);
        }
        return SCAN_OK;
    }
    return skip_value(sc, 1);
}

/* ts: a string of ASCII digits (the reference: str.isdigit(), then int()), or an integer as it accepts too */
static int parse_digit_string(Scanner *sc, const char *field, long long *out)
{
    const char *text;
    Py_ssize_t len;
    if (sc->p < sc->end && *sc->p != '"') {
        return parse_id(sc, field, out);
    }
    int rc = plain_string(sc, field, &text, &len);
    if (rc != 0) {
        return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
    }
    long long v = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        int d = text[i] - '0';
        if (d < 0 || d > 9 || v > (LLONG_MAX - d) / 10) {
            field_error(sc, field, -1, "an integer string below 2^63", text, len);
            return SCAN_OK;
        }
        v = v * 10 + d;
    }
    if (len == 0) {
        field_error(sc, field, -1, "an integer string", "\"\"", 2);
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
        field_error(sc, "data[] key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("bids")) {
        dialect_key_once(sc, &item->seen, K_BIDS, "bids");
        return parse_levels_of(sc, "bids", &scratch_bids, 4);
    }
    if (KEY_IS("asks")) {
        dialect_key_once(sc, &item->seen, K_ASKS, "asks");
        return parse_levels_of(sc, "asks", &scratch_asks, 4);
    }
    if (KEY_IS("seqId")) {
        dialect_key_once(sc, &item->seen, K_SEQ, "seqId");
        return parse_id(sc, "seqId", &ev->final_id);
    }
    if (KEY_IS("prevSeqId")) {
        dialect_key_once(sc, &item->seen, K_PREV_SEQ, "prevSeqId");
        return parse_id(sc, "prevSeqId", &ev->prev_final_id);
    }
    if (KEY_IS("checksum")) {
        dialect_key_once(sc, &item->seen, K_CHECKSUM, "checksum");
        return parse_signed(sc, "checksum", &ev->checksum);
    }
    if (KEY_IS("ts")) {
        dialect_key_once(sc, &item->seen, K_TS, "ts");
        return parse_digit_string(sc, "ts", &ev->event_time);
    }
    return skip_value(sc, 1);
}

/* one element of data[]: an update of msg->inst, appended to msg->diffs */
static int okx_item(Scanner *sc, OkxMessage *msg)
{
    Event ev;
    OkxItem item = {0, &ev};
    event_reset(&ev);
    if (sc->p >= sc->end || *sc->p != '{') {
        return reject_value(sc, "data[]", "an object");
    }
    int rc = scan_object(sc, okx_item_field, &item);
    if (rc != SCAN_OK || sc->has_error) {
        return rc;
    }
    static const struct { int bit; const char *name; } required[] = {{K_BIDS, "bids"}, {K_ASKS, "asks"}, {K_TS, "ts"}};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!(item.seen & required[i].bit)) {
            field_error(sc, required[i].name, -1, "a value", "nothing", 7);
            return SCAN_OK;
        }
    }
    ev.first_id = ev.prev_final_id; /* U = prevSeqId, as the reference sets it */
    ev.symbol = msg->inst;
    ev.symbol_len = msg->inst_len;
    PyObject *diff = parsed_diff_new(&ev);
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
            field_error(sc, "data", -1, "'arg' before it", "'data' first", 12);
        }
        return skip_value(sc, 1); /* the reference names what is wrong, or reads another channel */
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        field_error(sc, "data", -1, "a non-empty list", "[]", 2);
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
                if (skip_value(sc, 2) < 0) {
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
        field_error(sc, "key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("event")) {
        msg->not_ours = 1;
        return skip_value(sc, 1);
    }
    if (KEY_IS("arg")) {
        dialect_key_once(sc, &msg->seen, K_ARG, "arg");
        if (sc->p >= sc->end || *sc->p != '{') {
            return reject_value(sc, "arg", "an object");
        }
        return scan_object(sc, okx_arg_field, msg);
    }
    if (KEY_IS("action")) {
        dialect_key_once(sc, &msg->seen, K_ACTION, "action");
        if ((rc = plain_string(sc, "action", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (SPAN_IS(text, len, "snapshot")) {
            msg->not_ours = 1;
        } else if (!SPAN_IS(text, len, "update")) {
            field_error(sc, "action", -1, "'snapshot' or 'update'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("data")) {
        dialect_key_once(sc, &msg->seen, K_DATA, "data");
        return okx_data(sc, msg);
    }
    return skip_value(sc, 1);
}

/* The message's top object with on_field; -1 with an exception (a syntax error), 0 scanned, 1 not an
 * object (the reference's to read). */
static int scan_message(const char *data, Py_ssize_t size, Scanner *sc, FieldHandler on_field, void *ctx)
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
static PyObject *stream_events(PyObject *diffs, PyObject *stream)
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

static PyObject *fb_parse_okx(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL;
    OkxMessage msg = {0, 0, 0, NULL, 0, NULL};
    if (message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    if ((msg.diffs = PyList_New(0)) == NULL) { /* before the scan: the scratch levels are not GC-safe */
        goto done;
    }
    int rc = scan_message(data, size, &sc, okx_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || ((msg.seen & K_ARG) && !msg.book_channel && !sc.has_error)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (!sc.has_error && !(msg.seen & K_ARG)) {
        field_error(&sc, "arg", -1, "an object", "nothing", 7);
    }
    if (!sc.has_error && (msg.inst == NULL || !(msg.seen & K_DATA))) {
        field_error(&sc, msg.inst == NULL ? "arg.instId" : "data", -1, "a value", "nothing", 7);
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    result = stream_events(msg.diffs, NULL);
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
        field_error(sc, "data key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("s")) {
        dialect_key_once(sc, &msg->seen, K_S, "s");
        rc = plain_string(sc, "s", &ev->symbol, &ev->symbol_len);
        return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
    }
    if (KEY_IS("u")) {
        dialect_key_once(sc, &msg->seen, K_U, "u");
        return parse_id(sc, "u", &ev->final_id);
    }
    if (KEY_IS("b")) {
        dialect_key_once(sc, &msg->seen, K_BIDS, "b");
        return parse_levels_of(sc, "b", &scratch_bids, 2);
    }
    if (KEY_IS("a")) {
        dialect_key_once(sc, &msg->seen, K_ASKS, "a");
        return parse_levels_of(sc, "a", &scratch_asks, 2);
    }
    return skip_value(sc, 1);
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
        field_error(sc, "topic", -1, "'orderbook.DEPTH.SYMBOL'", text, len);
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
        field_error(sc, "key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("topic")) {
        dialect_key_once(sc, &msg->seen, K_TOPIC, "topic");
        if (sc->p < sc->end && *sc->p != '"') { /* null or another type: the reference's control or other */
            msg->not_ours = 1;
            return skip_value(sc, 1);
        }
        if ((rc = plain_string(sc, "topic", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        msg->not_ours |= bybit_topic(sc, msg, text, len);
        return SCAN_OK;
    }
    if (KEY_IS("type")) {
        dialect_key_once(sc, &msg->seen, K_TYPE, "type");
        if ((rc = plain_string(sc, "type", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (SPAN_IS(text, len, "snapshot")) {
            msg->not_ours = 1;
        } else if (!SPAN_IS(text, len, "delta")) {
            field_error(sc, "type", -1, "'snapshot' or 'delta'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("ts")) {
        dialect_key_once(sc, &msg->seen, K_TS, "ts");
        return parse_id(sc, "ts", &msg->ev.event_time);
    }
    if (KEY_IS("cts")) {
        dialect_key_once(sc, &msg->seen, K_CTS, "cts");
        return parse_id(sc, "cts", &msg->ev.transaction_time);
    }
    if (KEY_IS("data")) {
        dialect_key_once(sc, &msg->seen, K_DATA, "data");
        if (sc->p >= sc->end || *sc->p != '{') {
            return reject_value(sc, "data", "an object");
        }
        return scan_object(sc, bybit_data_field, msg);
    }
    return skip_value(sc, 1);
}

static const struct {
    int bit;
    const char *name;
} BYBIT_REQUIRED[] = {{K_TYPE, "type"}, {K_DATA, "data"}, {K_S, "s"}, {K_U, "u"}, {K_TS, "ts"}, {K_BIDS, "b"}, {K_ASKS, "a"}};

static PyObject *fb_parse_bybit(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL, *diffs = NULL, *topic = NULL;
    BybitMessage msg = {0};
    event_reset(&msg.ev);
    if (message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    int rc = scan_message(data, size, &sc, bybit_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || !(msg.seen & K_TOPIC)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (size_t i = 0; i < sizeof BYBIT_REQUIRED / sizeof BYBIT_REQUIRED[0] && !sc.has_error; i++) {
        if (!(msg.seen & BYBIT_REQUIRED[i].bit)) {
            field_error(&sc, BYBIT_REQUIRED[i].name, -1, "a value", "nothing", 7);
        }
    }
    if (!sc.has_error && (msg.ev.symbol_len != msg.topic_symbol_len ||
                          memcmp(msg.ev.symbol, msg.topic_symbol, (size_t)msg.topic_symbol_len) != 0)) {
        field_error(&sc, "s", -1, "the topic's symbol", msg.ev.symbol, msg.ev.symbol_len);
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
    PyObject *diff = parsed_diff_new(&msg.ev);
    if (diff == NULL || (diffs = PyList_New(1)) == NULL) {
        Py_XDECREF(diff);
        goto done;
    }
    PyList_SET_ITEM(diffs, 0, diff);
    if ((topic = symbol_object(msg.topic, msg.topic_len)) == NULL) {
        goto done;
    }
    result = stream_events(diffs, topic);
    diffs = NULL;
done:
    Py_XDECREF(diffs);
    Py_XDECREF(topic);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

/* ------------------------------------------------------------------------------------------------
 * Coinbase Advanced Trade l2_data (C dialect of ldc.venues.coinbase.parse_message)
 * ---------------------------------------------------------------------------------------------- */

enum { CB_CHANNEL = 1, CB_SEQ = 2, CB_EVENTS = 4, CB_TIMESTAMP = 8 };
enum { CBE_TYPE = 1, CBE_PRODUCT = 2, CBE_UPDATES = 4 };
enum { CBU_SIDE = 1, CBU_PRICE = 2, CBU_QTY = 4 };
#define CB_TIMESTAMP_MIN_CHARS 20 /* ldc.venues.coinbase._time_ms: shorter is NO_ID */

typedef struct {
    int seen;
    int not_ours;    /* another channel or a snapshot event: the reference's */
    long long sequence;
    long long time_ms;
    PyObject *diffs; /* ParsedDiffs of events[], in order (ids set once the whole message is read) */
} CoinbaseMessage;

typedef struct {
    int seen, side; /* side: 1 bid, 2 offer */
    double price, qty;
} CoinbaseUpdate;

typedef struct {
    int seen;
    Event ev;
} CoinbaseEvent;

static int cb_key_once(Scanner *sc, int *seen, int bit, const char *field)
{
    if (*seen & bit) {
        field_error(sc, field, -1, "the key once", "a second time", 13);
        return 1;
    }
    *seen |= bit;
    return 0;
}

/* A price_level / new_quantity: a decimal string read exactly as float(); anything else a doubt. */
static int cb_decimal(Scanner *sc, const char *field, double *out)
{
    const char *from = sc->p;
    int rc = parse_level_number(sc, out);
    if (rc == 1) {
        sc->p = from;
        return reject_value(sc, field, "a non-negative decimal string");
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
        field_error(sc, "updates key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("side")) {
        cb_key_once(sc, &u->seen, CBU_SIDE, "side");
        if ((rc = plain_string(sc, "side", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        u->side = SPAN_IS(text, len, "bid") ? 1 : SPAN_IS(text, len, "offer") ? 2 : 0;
        if (!u->side) {
            field_error(sc, "side", -1, "'bid' or 'offer'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("price_level")) {
        cb_key_once(sc, &u->seen, CBU_PRICE, "price_level");
        return cb_decimal(sc, "price_level", &u->price);
    }
    if (KEY_IS("new_quantity")) {
        cb_key_once(sc, &u->seen, CBU_QTY, "new_quantity");
        return cb_decimal(sc, "new_quantity", &u->qty);
    }
    return skip_value(sc, 1);
}

/* updates[]: each {"side", "price_level", "new_quantity"} onto the scratch side it names */
static int cb_updates(Scanner *sc)
{
    if (sc->p >= sc->end || *sc->p != '[') {
        return reject_value(sc, "updates", "a list");
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
            if (reject_value(sc, "updates[]", "an object") != SCAN_OK) {
                return SCAN_SYNTAX;
            }
        } else {
            CoinbaseUpdate u = {0, 0, 0.0, 0.0};
            if (scan_object(sc, cb_update_field, &u) != SCAN_OK) {
                return SCAN_SYNTAX;
            }
            if ((u.seen & (CBU_SIDE | CBU_PRICE | CBU_QTY)) != (CBU_SIDE | CBU_PRICE | CBU_QTY)) {
                field_error(sc, "updates[]", -1, "side, price_level and new_quantity", "fewer", 5);
            } else if (!sc->has_error && scratch_push(u.side == 1 ? &scratch_bids : &scratch_asks, u.price, u.qty) < 0) {
                return SCAN_SYNTAX; /* MemoryError set */
            }
        }
        skip_ws(sc);
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

static int cb_event_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    CoinbaseEvent *e = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        field_error(sc, "events key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("type")) {
        cb_key_once(sc, &e->seen, CBE_TYPE, "type");
        if ((rc = plain_string(sc, "type", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (!SPAN_IS(text, len, "update")) { /* a snapshot (5 MB for BTC-USD) or a fault: the reference's, now */
            field_error(sc, "type", -1, "'update'", text, len);
            PyErr_SetString(PyExc_ValueError, sc->error);
            return SCAN_SYNTAX;
        }
        return SCAN_OK;
    }
    if (KEY_IS("product_id")) {
        cb_key_once(sc, &e->seen, CBE_PRODUCT, "product_id");
        if ((rc = plain_string(sc, "product_id", &e->ev.symbol, &e->ev.symbol_len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (e->ev.symbol_len == 0) {
            field_error(sc, "product_id", -1, "a product id", "''", 2);
        }
        return SCAN_OK;
    }
    if (KEY_IS("updates")) {
        if (cb_key_once(sc, &e->seen, CBE_UPDATES, "updates")) {
            return skip_value(sc, 1);
        }
        return cb_updates(sc);
    }
    return skip_value(sc, 1);
}

/* events[]: each update event a ParsedDiff appended to msg->diffs */
static int cb_events(Scanner *sc, CoinbaseMessage *msg)
{
    if (sc->p >= sc->end || *sc->p != '[') {
        return reject_value(sc, "events", "a non-empty list");
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        field_error(sc, "events", -1, "a non-empty list", "[]", 2);
        sc->p++;
        return SCAN_OK;
    }
    for (;;) {
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != '{') {
            if (reject_value(sc, "events[]", "an object") != SCAN_OK) {
                return SCAN_SYNTAX;
            }
        } else {
            CoinbaseEvent e = {0};
            event_reset(&e.ev);
            if (scan_object(sc, cb_event_field, &e) != SCAN_OK) {
                return SCAN_SYNTAX;
            }
            if ((e.seen & (CBE_TYPE | CBE_PRODUCT | CBE_UPDATES)) != (CBE_TYPE | CBE_PRODUCT | CBE_UPDATES)) {
                field_error(sc, "events[]", -1, "type, product_id and updates", "fewer", 5);
            }
            if (!sc->has_error) {
                PyObject *diff = parsed_diff_new(&e.ev);
                if (diff == NULL || PyList_Append(msg->diffs, diff) < 0) {
                    Py_XDECREF(diff);
                    return SCAN_SYNTAX;
                }
                Py_DECREF(diff);
            }
        }
        skip_ws(sc);
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

static int two_digits(const char *p, int *out)
{
    if ((unsigned)(p[0] - '0') >= 10 || (unsigned)(p[1] - '0') >= 10) {
        return -1;
    }
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil) */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
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
    *out = ((days_from_civil(year, mo, d) * 24 + h) * 60 + mi) * 60000LL + s * 1000LL + ms;
    return 0;
}

static int cb_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    CoinbaseMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        field_error(sc, "key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("channel")) {
        cb_key_once(sc, &msg->seen, CB_CHANNEL, "channel");
        if (sc->p < sc->end && *sc->p != '"') { /* null or another type: the reference's */
            msg->not_ours = 1;
            return skip_value(sc, 1);
        }
        if ((rc = plain_string(sc, "channel", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        msg->not_ours |= !SPAN_IS(text, len, "l2_data");
        return SCAN_OK;
    }
    if (KEY_IS("sequence_num")) {
        cb_key_once(sc, &msg->seen, CB_SEQ, "sequence_num");
        return parse_id(sc, "sequence_num", &msg->sequence);
    }
    if (KEY_IS("timestamp")) {
        cb_key_once(sc, &msg->seen, CB_TIMESTAMP, "timestamp");
        if (sc->p < sc->end && *sc->p != '"') {
            return reject_value(sc, "timestamp", "a time string");
        }
        if ((rc = plain_string(sc, "timestamp", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        if (cb_time_ms(text, len, &msg->time_ms) < 0) {
            field_error(sc, "timestamp", -1, "'YYYY-MM-DDTHH:MM:SS.fffZ'", text, len);
        }
        return SCAN_OK;
    }
    if (KEY_IS("events")) {
        if (cb_key_once(sc, &msg->seen, CB_EVENTS, "events") || msg->not_ours) {
            return skip_value(sc, 1);
        }
        return cb_events(sc, msg);
    }
    return skip_value(sc, 1);
}

static PyObject *fb_parse_coinbase(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL;
    CoinbaseMessage msg = {0, 0, NO_ID, NO_ID, NULL};
    if (message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    if ((msg.diffs = PyList_New(0)) == NULL) {
        goto done;
    }
    int rc = scan_message(data, size, &sc, cb_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || !(msg.seen & CB_CHANNEL)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (!sc.has_error && (msg.seen & (CB_SEQ | CB_EVENTS)) != (CB_SEQ | CB_EVENTS)) {
        field_error(&sc, (msg.seen & CB_SEQ) ? "events" : "sequence_num", -1, "a value", "nothing", 7);
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(msg.diffs);
    for (Py_ssize_t i = 0; i < n; i++) { /* U = u = the connection's sequence_num, as the reference sets them */
        ParsedDiff *d = (ParsedDiff *)PyList_GET_ITEM(msg.diffs, i);
        d->first_id = d->final_id = msg.sequence;
        d->event_time_ms = msg.time_ms;
    }
    result = stream_events(msg.diffs, NULL);
    msg.diffs = NULL;
done:
    Py_XDECREF(msg.diffs);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

/* ------------------------------------------------------------------------------------------------
 * HTX mbp (C dialect of ldc.venues.htx.parse_message, on the inflated frame)
 * ---------------------------------------------------------------------------------------------- */

enum { HX_CH = 1, HX_TS = 2, HX_TICK = 4, HX_SEQ = 8, HX_PREV = 16, HX_BIDS = 32, HX_ASKS = 64 };
static const char *const HTX_MBP_LEVELS[] = {"5", "20", "150"}; /* ldc.venues.htx.CHANNELS' mbp.N */

typedef struct {
    int seen;
    int not_ours; /* the reference's: control (ping, status, rep), another channel, a depth.step0 book */
    Event ev;
} HtxMessage;

/* A JSON number read as the reference reads it (json's int or Decimal, then float(): the correctly rounded
 * double of the exact decimal). 0 read, 1 a doubt (a sign: "-0.0" is -0.0 there; too long; not a number),
 * -1 a syntax error (exception set). */
static int htx_number(Scanner *sc, double *out)
{
    const char *from = sc->p;
    if (sc->p >= sc->end || (unsigned)(*sc->p - '0') >= 10) {
        return 1;
    }
    if (scan_number(sc) < 0) {
        return -1;
    }
    Py_ssize_t n = sc->p - from;
    if (memchr(from, 'e', (size_t)n) == NULL && memchr(from, 'E', (size_t)n) == NULL) {
        return parse_decimal(from, n, out) < 0 ? 1 : 0; /* digits[.digits]: Clinger's fast path or dtoa */
    }
    if (n > MAX_DECIMAL_CHARS) {
        return 1;
    }
    char buf[MAX_DECIMAL_CHARS + 1];
    char *stop = NULL;
    memcpy(buf, from, (size_t)n);
    buf[n] = '\0';
    *out = PyOS_string_to_double(buf, &stop, NULL); /* dtoa: correctly rounded, as float(Decimal) */
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    return stop == buf + n && isfinite(*out) ? 0 : 1;
}

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
        if ((rc = htx_number(sc, &price)) != 0) {
            goto doubt;
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ',') {
            goto doubt;
        }
        sc->p++;
        skip_ws(sc);
        if ((rc = htx_number(sc, &qty)) != 0) {
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
        skip_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == ']') {
            sc->p++;
            return SCAN_OK;
        }
        goto doubt;
    }
doubt:
    if (rc < 0) {
        return SCAN_SYNTAX;
    }
    sc->p = from;
    return reject_value(sc, field, "[[price, size], ...] of non-negative numbers");
}

static int htx_tick_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    HtxMessage *msg = ctx;
    if (escaped) {
        field_error(sc, "tick key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("seqNum")) {
        dialect_key_once(sc, &msg->seen, HX_SEQ, "seqNum");
        return parse_id(sc, "seqNum", &msg->ev.final_id);
    }
    if (KEY_IS("prevSeqNum")) {
        dialect_key_once(sc, &msg->seen, HX_PREV, "prevSeqNum");
        return parse_id(sc, "prevSeqNum", &msg->ev.prev_final_id);
    }
    if (KEY_IS("bids")) {
        dialect_key_once(sc, &msg->seen, HX_BIDS, "bids");
        return htx_levels(sc, "bids", &scratch_bids);
    }
    if (KEY_IS("asks")) {
        dialect_key_once(sc, &msg->seen, HX_ASKS, "asks");
        return htx_levels(sc, "asks", &scratch_asks);
    }
    return skip_value(sc, 1);
}

/* ch: "market.SYMBOL.mbp.N" ours; depth.step0 and other channels the reference's; a malformed book topic a doubt */
static void htx_channel(Scanner *sc, HtxMessage *msg, const char *text, Py_ssize_t len)
{
    static const char prefix[] = "market.", step0[] = ".depth.step0", mbp[] = ".mbp.";
    const Py_ssize_t plen = (Py_ssize_t)sizeof prefix - 1, slen = (Py_ssize_t)sizeof step0 - 1;
    if (len < plen || memcmp(text, prefix, (size_t)plen) != 0 ||
        (len >= slen && memcmp(text + len - slen, step0, (size_t)slen) == 0)) {
        msg->not_ours = 1; /* another channel (OTHER) or a whole book (a snapshot) */
        return;
    }
    const char *p = text + plen, *end = text + len;
    while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
        p++;
    }
    int symbol = p > text + plen;
    if (symbol && end - p > (Py_ssize_t)sizeof mbp - 1 && memcmp(p, mbp, sizeof mbp - 1) == 0) {
        const char *levels = p + sizeof mbp - 1;
        for (size_t i = 0; i < sizeof HTX_MBP_LEVELS / sizeof HTX_MBP_LEVELS[0]; i++) {
            size_t n = strlen(HTX_MBP_LEVELS[i]);
            if ((size_t)(end - levels) == n && memcmp(levels, HTX_MBP_LEVELS[i], n) == 0) {
                msg->ev.symbol = text;
                msg->ev.symbol_len = len;
                return;
            }
        }
    }
    int has_mbp = 0;
    for (const char *q = text; !has_mbp && end - q >= (Py_ssize_t)sizeof mbp - 1; q++) {
        has_mbp = memcmp(q, mbp, sizeof mbp - 1) == 0;
    }
    if (!has_mbp) {
        msg->not_ours = 1; /* "market.x.trade.detail": OTHER there */
        return;
    }
    field_error(sc, "ch", -1, "'market.SYMBOL.mbp.N' (N 5, 20 or 150)", text, len);
}

static int htx_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    HtxMessage *msg = ctx;
    const char *text;
    Py_ssize_t len;
    int rc;
    if (escaped) {
        field_error(sc, "key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("ping") || KEY_IS("status") || KEY_IS("rep")) { /* control or a refresh: the reference's */
        msg->not_ours = 1;
        return skip_value(sc, 1);
    }
    if (KEY_IS("ch")) {
        dialect_key_once(sc, &msg->seen, HX_CH, "ch");
        if (sc->p < sc->end && *sc->p != '"') { /* not a string: OTHER there */
            msg->not_ours = 1;
            return skip_value(sc, 1);
        }
        if ((rc = plain_string(sc, "ch", &text, &len)) != 0) {
            return rc < 0 ? SCAN_SYNTAX : SCAN_OK;
        }
        htx_channel(sc, msg, text, len);
        return SCAN_OK;
    }
    if (KEY_IS("ts")) {
        dialect_key_once(sc, &msg->seen, HX_TS, "ts");
        return parse_id(sc, "ts", &msg->ev.event_time);
    }
    if (KEY_IS("tick")) {
        dialect_key_once(sc, &msg->seen, HX_TICK, "tick");
        if (sc->p >= sc->end || *sc->p != '{') {
            return reject_value(sc, "tick", "an object");
        }
        return scan_object(sc, htx_tick_field, msg);
    }
    return skip_value(sc, 1);
}

static const struct {
    int bit;
    const char *name;
} HTX_REQUIRED[] = {{HX_TICK, "tick"}, {HX_SEQ, "seqNum"}, {HX_PREV, "prevSeqNum"}};

static PyObject *fb_parse_htx(PyObject *module, PyObject *arg)
{
    (void)module;
    Scanner sc;
    Py_buffer view = {0};
    const char *data;
    Py_ssize_t size;
    PyObject *result = NULL, *diffs = NULL;
    HtxMessage msg = {0};
    event_reset(&msg.ev);
    if (message_bytes(arg, &data, &size, &view) < 0) {
        return NULL;
    }
    int rc = scan_message(data, size, &sc, htx_field, &msg);
    if (rc < 0) {
        goto done;
    }
    if (rc > 0 || msg.not_ours || !(msg.seen & HX_CH)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (size_t i = 0; i < sizeof HTX_REQUIRED / sizeof HTX_REQUIRED[0] && !sc.has_error; i++) {
        if (!(msg.seen & HTX_REQUIRED[i].bit)) {
            field_error(&sc, HTX_REQUIRED[i].name, -1, "a value", "nothing", 7);
        }
    }
    if (sc.has_error) {
        PyErr_SetString(PyExc_ValueError, sc.error);
        goto done;
    }
    msg.ev.first_id = msg.ev.prev_final_id; /* U = pu = prevSeqNum: the PREV_LINK rule, as the reference sets it */
    PyObject *diff = parsed_diff_new(&msg.ev);
    if (diff == NULL || (diffs = PyList_New(1)) == NULL) {
        Py_XDECREF(diff);
        goto done;
    }
    PyList_SET_ITEM(diffs, 0, diff);
    result = stream_events(diffs, NULL);
    diffs = NULL;
done:
    Py_XDECREF(diffs);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return result;
}

/* ldc.venues.okx.CHANNELS' names, as the OKX dialect knows them */
static PyObject *okx_channels_tuple(void)
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

/* ------------------------------------------------------------------------------------------------
 * REST depth snapshots ({"lastUpdateId":N,["E":N,"T":N,...]"bids":[...],"asks":[...]})
 *
 * The fast path of ldc.venues.binance.parse_snapshot: it accepts only what that reference parser
 * accepts and then yields exactly its values (the decimals above are correctly rounded, as float()
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
        field_error(sc, field, -1, "the key once", "a second time", 13);
    }
    snap->seen |= bit;
}

static int snapshot_field(Scanner *sc, void *ctx, const char *key, Py_ssize_t klen, int escaped)
{
    Snapshot *snap = ctx;
    if (escaped) { /* it might spell a known key */
        field_error(sc, "key", -1, "no escapes", key, klen);
        return skip_value(sc, 1);
    }
    if (KEY_IS("lastUpdateId")) {
        snapshot_key_once(sc, snap, S_ID, "lastUpdateId");
        return parse_id(sc, "lastUpdateId", &snap->last_update_id);
    }
    if (KEY_IS("E")) {
        snapshot_key_once(sc, snap, S_TIME, "E");
        return parse_id(sc, "E", &snap->event_time);
    }
    if (KEY_IS("bids")) {
        snapshot_key_once(sc, snap, S_BIDS, "bids");
        return parse_levels(sc, "bids", &snap->bids);
    }
    if (KEY_IS("asks")) {
        snapshot_key_once(sc, snap, S_ASKS, "asks");
        return parse_levels(sc, "asks", &snap->asks);
    }
    return skip_value(sc, 1);
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

static PyObject *fb_parse_snapshot_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
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
    if (message_bytes(args[0], &data, &size, &view) < 0) {
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

/* ------------------------------------------------------------------------------------------------
 * Book sides (see the file comment for the layout)
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    Level *buf; /* .a is the key: sign * price */
    Py_ssize_t cap, lo, hi;
    double sign;     /* +1 bids, -1 asks */
    double boundary; /* keys >= boundary are known exactly; -inf whole side, +inf nothing known */
} Side;

static int side_init(Side *s, double sign)
{
    s->buf = PyMem_Malloc(MIN_SIDE_CAPACITY * sizeof(Level));
    if (s->buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->cap = MIN_SIDE_CAPACITY;
    s->lo = s->hi = MIN_SIDE_CAPACITY / 2;
    s->sign = sign;
    s->boundary = INFINITY;
    return 0;
}

static inline Py_ssize_t side_len(const Side *s) { return s->hi - s->lo; }

/* first index in [lo, hi) whose key is >= k. Gallops down from the best end, where most updates
 * land, then a branchless binary search (no mispredicted branches on deep levels). */
static Py_ssize_t lower_bound(const Side *s, double k)
{
    Py_ssize_t right = s->hi, left, step = 1;
    if (s->lo == s->hi || k <= s->buf[s->lo].a) { /* a new worst level: deep updates, soon pruned */
        return s->lo;
    }
    for (;;) {
        Py_ssize_t probe = right - step;
        if (probe <= s->lo) {
            left = s->lo;
            break;
        }
        if (s->buf[probe].a < k) {
            left = probe + 1;
            break;
        }
        right = probe;
        step <<= 1;
    }
    /* the answer is in [left, right] */
    const Level *base = s->buf + left;
    Py_ssize_t n = right - left;
    if (n == 0) {
        return left;
    }
    while (n > 1) {
        Py_ssize_t half = n / 2;
        base += (Py_ssize_t)(base[half - 1].a < k) * half; /* arithmetic: no branch to mispredict */
        n -= half;
    }
    return (base - s->buf) + (base[0].a < k);
}

/* Re-centre the live levels, growing the array when it is more than half full. */
static int side_recentre(Side *s)
{
    Py_ssize_t n = side_len(s), cap = s->cap < MIN_SIDE_CAPACITY ? MIN_SIDE_CAPACITY : s->cap;
    while (2 * (n + 1) > cap) {
        cap *= 2;
    }
    Py_ssize_t lo = (cap - n) / 2;
    if (cap != s->cap) {
        Level *grown = PyMem_Malloc((size_t)cap * sizeof(Level));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(grown + lo, s->buf + s->lo, (size_t)n * sizeof(Level));
        PyMem_Free(s->buf);
        s->buf = grown;
        s->cap = cap;
    } else {
        memmove(s->buf + lo, s->buf + s->lo, (size_t)n * sizeof(Level));
    }
    s->lo = lo;
    s->hi = lo + n;
    return 0;
}

/* insert (k, qty) before absolute index at, shifting the shorter part */
static int side_insert(Side *s, Py_ssize_t at, double k, double qty)
{
    Py_ssize_t below = at - s->lo, above = s->hi - at;
    if ((below <= above && s->lo == 0) || (below > above && s->hi == s->cap)) {
        if (side_recentre(s) < 0) {
            return -1;
        }
        at = s->lo + below;
    }
    if (below <= above) {
        memmove(s->buf + s->lo - 1, s->buf + s->lo, (size_t)below * sizeof(Level));
        s->lo--;
        at--;
    } else {
        memmove(s->buf + at + 1, s->buf + at, (size_t)above * sizeof(Level));
        s->hi++;
    }
    s->buf[at].a = k;
    s->buf[at].qty = qty;
    return 0;
}

static void side_delete(Side *s, Py_ssize_t at)
{
    Py_ssize_t below = at - s->lo, above = s->hi - at - 1;
    if (below <= above) {
        memmove(s->buf + s->lo + 1, s->buf + s->lo, (size_t)below * sizeof(Level));
        s->lo++;
    } else {
        memmove(s->buf + at, s->buf + at + 1, (size_t)above * sizeof(Level));
        s->hi--;
    }
}

/* book.py _Side.set: returns 1 when the top `depth` changed, 0 when not, -1 on memory error */
static int side_set(Side *s, double price, double qty, Py_ssize_t depth)
{
    double k = s->sign * price;
    Py_ssize_t at = lower_bound(s, k);
    int found = at < s->hi && s->buf[at].a == k;
    int in_top = side_len(s) < depth || k >= s->buf[s->hi - depth].a;
    if (qty == 0.0) {
        if (!found) {
            return 0;
        }
        side_delete(s, at);
        return in_top;
    }
    if (found) {
        if (s->buf[at].qty == qty) {
            return 0;
        }
        s->buf[at].qty = qty;
        return in_top;
    }
    return side_insert(s, at, k, qty) < 0 ? -1 : in_top;
}

/* book.py _Side.prune: drop levels ranked beyond window, move the boundary; returns how many */
static Py_ssize_t side_prune(Side *s, Py_ssize_t window)
{
    Py_ssize_t excess = side_len(s) - window;
    if (excess <= 0) {
        return 0;
    }
    s->lo += excess;
    if (s->buf[s->lo].a > s->boundary) {
        s->boundary = s->buf[s->lo].a;
    }
    return excess;
}

static Py_ssize_t side_known(const Side *s) { return s->hi - lower_bound(s, s->boundary); }

/* ------------------------------------------------------------------------------------------------
 * FastBook
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Side bids, asks;
    Py_ssize_t depth;
    Py_ssize_t window; /* snapshot.limit; 0 before the first snapshot (nothing pruned) */
} FastBook;

static PyTypeObject FastBookType;

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
    if (side_init(&self->bids, 1.0) < 0 || side_init(&self->asks, -1.0) < 0) {
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
            (rc = side_set(s, price, qty, depth)) < 0) {
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
        int rc = side_set(s, levels[i].a, levels[i].qty, depth);
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
    return self->window > 0 && side_prune(s, self->window) > 0 && self->window < self->depth;
}

/* a ParsedDiff's levels: 1 when the top `depth` may have changed, 0 when not, -1 on memory error */
static int apply_parsed(FastBook *self, const ParsedDiff *d)
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
    if (Py_IS_TYPE(diff, &ParsedDiffType)) {
        changed = apply_parsed(self, (const ParsedDiff *)diff);
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

/* book.py _load_side */
static int load_side(FastBook *self, Side *s, PyObject *given, Py_ssize_t limit)
{
    PyObject *seq = PySequence_Fast(given, "snapshot levels must be a sequence of (price, qty)");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    double deepest = INFINITY;
    s->lo = s->hi = s->cap / 2;
    for (Py_ssize_t i = 0; i < n; i++) {
        double price, qty;
        if (level_from_object(PySequence_Fast_GET_ITEM(seq, i), &price, &qty) < 0 ||
            side_set(s, price, qty, self->depth) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        if (s->sign * price < deepest) {
            deepest = s->sign * price;
        }
    }
    Py_DECREF(seq);
    s->boundary = n < limit ? -INFINITY : deepest;
    side_prune(s, limit);
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
static Py_ssize_t top_into(const Side *s, Py_ssize_t n, double *out)
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

static int book_crossed(const FastBook *self)
{
    const Side *b = &self->bids, *a = &self->asks;
    return side_len(b) > 0 && side_len(a) > 0 && b->buf[b->hi - 1].a >= -a->buf[a->hi - 1].a;
}

static PyObject *fastbook_crossed(FastBook *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(book_crossed(self));
}

/* the top n levels of both sides are known exactly (inside snapshot coverage) */
static int book_covers(const FastBook *self, Py_ssize_t n)
{
    const Side *sides[] = {&self->bids, &self->asks};
    for (int i = 0; i < 2; i++) {
        if (sides[i]->boundary != -INFINITY && side_known(sides[i]) < n) {
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
    return PyBool_FromLong(book_covers(self, n));
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
    if (!Py_IS_TYPE(args[0], &FastBookType)) {
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
        PyObject *pair = level_pair(s->sign * lv->a, lv->qty);
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

/* ------------------------------------------------------------------------------------------------
 * A venue's checksum of the top of the book (OKX: a signed CRC32 of the top levels, interleaved, as
 * "bid1px:bid1sz:ask1px:ask1sz:..."), the numbers written as ldc.venues.okx._texts writes them
 * ---------------------------------------------------------------------------------------------- */

#define CRC_TEXT_CHARS 64 /* one number's text; a longer one is handed back to Python */
#define SHORTEST_DECIMALS (-1) /* the shortest round-trip form (repr without an exponent) */
#define MAX_TEXT_DECIMALS 30   /* a tick or lot finer than 1e-30 is no market's */

static uint32_t crc32_table[256];

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1; /* zlib's polynomial, reflected */
        }
        crc32_table[i] = c;
    }
}

static uint32_t crc32_add(uint32_t crc, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc = crc32_table[(crc ^ (unsigned char)p[i]) & 0xFF] ^ (crc >> 8);
    }
    return crc;
}

/* x as the venue writes it: fixed to `decimals` (trailing zeros and point dropped when decimals > 0), or with
 * SHORTEST_DECIMALS the shortest text that reads back as x, trailing zeros dropped. Returns its length, 0
 * when Python is to write it (an exponent, a text too long), -1 with an exception. */
#define FIXED_FAST_MAX 1e14          /* x * 10^d below it: ulp <= 1/64, the product is off by at most 1/128 */
#define FIXED_FAST_HALF_MARGIN 0.0625 /* so a product this far from a tie rounds as the exact one does */

/* "%.*f" % x, trailing zeros and point dropped, for the common case: x * 10^d well inside the doubles' integers
 * and not near a rounding tie, where rounding the product is rounding the exact value (what dtoa does). Returns
 * its length, 0 when not taken. */
static Py_ssize_t fixed_text_fast(double x, int decimals, char *out)
{
    if (!(x >= 0.0) || decimals > FAST_POW10_MAX) {
        return 0;
    }
    double y = x * POW10[decimals];
    if (!(y < FIXED_FAST_MAX) || fabs(fabs(y - floor(y)) - 0.5) < FIXED_FAST_HALF_MARGIN) {
        return 0;
    }
    uint64_t m = (uint64_t)floor(y + 0.5);
    char digits[32];
    int n = 0;
    do {
        digits[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m > 0);
    while (n <= decimals) { /* at least one digit before the point */
        digits[n++] = '0';
    }
    int skip = 0; /* trailing zeros of the fraction, dropped */
    while (skip < decimals && digits[skip] == '0') {
        skip++;
    }
    Py_ssize_t len = 0;
    for (int i = n - 1; i >= decimals; i--) {
        out[len++] = digits[i];
    }
    if (skip < decimals) {
        out[len++] = '.';
        for (int i = decimals - 1; i >= skip; i--) {
            out[len++] = digits[i];
        }
    }
    return len;
}

static Py_ssize_t venue_text(double x, int decimals, char *out)
{
    if (decimals >= 0) {
        Py_ssize_t len = fixed_text_fast(x, decimals, out);
        if (len > 0) {
            return len;
        }
    }
    char *text = decimals >= 0 ? PyOS_double_to_string(x, 'f', decimals, 0, NULL)
                               : PyOS_double_to_string(x, 'r', 0, 0, NULL);
    if (text == NULL) {
        return -1;
    }
    size_t len = strlen(text);
    Py_ssize_t result = 0;
    if (len < CRC_TEXT_CHARS && strpbrk(text, "eEni") == NULL) { /* no exponent, nan or inf */
        if (decimals != 0 && strchr(text, '.') != NULL) {
            while (text[len - 1] == '0') {
                len--;
            }
            if (text[len - 1] == '.') {
                len--;
            }
        }
        memcpy(out, text, len);
        result = (Py_ssize_t)len;
    }
    PyMem_Free(text);
    return result;
}

/* top_crc32(n, price_decimals, size_decimals) -> the signed CRC32, or None when Python must write a number */
static PyObject *fastbook_top_crc32(FastBook *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "top_crc32() takes 3 arguments (n, price_decimals, size_decimals), found %zd", nargs);
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    long given[2] = {PyLong_AsLong(args[1]), PyLong_AsLong(args[2])};
    if (PyErr_Occurred()) {
        return NULL;
    }
    int decimals[2] = {given[0] > MAX_TEXT_DECIMALS ? INT_MAX : (int)given[0],
                       given[1] > MAX_TEXT_DECIMALS ? INT_MAX : (int)given[1]};
    if (n < 0 || decimals[0] < SHORTEST_DECIMALS || decimals[1] < SHORTEST_DECIMALS || decimals[0] > MAX_TEXT_DECIMALS ||
        decimals[1] > MAX_TEXT_DECIMALS) {
        PyErr_Format(PyExc_ValueError, "top_crc32: expected n >= 0 and decimals in -1..%d, found %zd, %ld, %ld",
                     MAX_TEXT_DECIMALS, n, given[0], given[1]);
        return NULL;
    }
    const Side *sides[2] = {&self->bids, &self->asks};
    Py_ssize_t counts[2] = {side_len(&self->bids) < n ? side_len(&self->bids) : n,
                            side_len(&self->asks) < n ? side_len(&self->asks) : n};
    uint32_t crc = 0xFFFFFFFFu;
    int first = 1;
    char text[CRC_TEXT_CHARS];
    for (Py_ssize_t i = 0; i < counts[0] || i < counts[1]; i++) {
        for (int side = 0; side < 2; side++) {
            if (i >= counts[side]) {
                continue;
            }
            const Side *s = sides[side];
            const Level *lv = &s->buf[s->hi - 1 - i];
            double values[2] = {s->sign * lv->a, lv->qty};
            for (int k = 0; k < 2; k++) {
                Py_ssize_t len = venue_text(values[k], decimals[k], text);
                if (len <= 0) {
                    return len < 0 ? NULL : Py_NewRef(Py_None);
                }
                if (!first) {
                    crc = crc32_add(crc, ":", 1);
                }
                first = 0;
                crc = crc32_add(crc, text, (size_t)len);
            }
        }
    }
    crc ^= 0xFFFFFFFFu;
    return PyLong_FromLongLong(crc >= 0x80000000u ? (long long)crc - 0x100000000LL : (long long)crc);
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
    {"top_crc32", (PyCFunction)(void (*)(void))fastbook_top_crc32, METH_FASTCALL,
     "top_crc32(n, price_decimals, size_decimals) -> int | None: OKX's signed CRC32 of the top n levels a side,\n"
     "interleaved, each number fixed to its decimals and trimmed (-1: its shortest form); None: write it in Python."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef fastbook_getset[] = {
    {"depth", (getter)fastbook_get_depth, NULL, "levels per side whose changes apply_diff reports", NULL},
    {"window", (getter)fastbook_get_window, NULL, "snapshot limit (retention window), None before one", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods fastbook_as_sequence = {.sq_length = (lenfunc)fastbook_len};

static PyTypeObject FastBookType = {
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

/* ------------------------------------------------------------------------------------------------
 * HotPath: a market's diff, from ParsedDiff to published slot, in one call while its book is in sync
 *
 * The feeder's per-diff work for a book in sync is always the same: check that the diff continues the
 * book (spot: U == last u + 1; futures: pu == last u), apply it, record it when a refresh is pending,
 * check the top is neither crossed nor changed in coverage, copy the top N into the slot. In Python that
 * is a dozen calls per diff; here it is one. Anything else -- a diff that does not continue the book, a
 * crossed top, a coverage change, a market not in sync -- is handed back to ldc.sync.BookSync, which owns
 * every decision: the feeder arms a HotPath as BookSync.fast_path() says, and gives BookSync the diffs
 * applied here (take_applied, update_id) before it feeds BookSync anything.
 * ---------------------------------------------------------------------------------------------- */

enum { HOT_PASS = 0, HOT_DONE = 1, HOT_TOP_FAULT = 2 };

static const LdcSeqlockAPI *seqlock_api; /* ldc.shm._seqlock's C API, imported by the first HotPath */

typedef struct {
    PyObject_HEAD
    PyObject *segment;   /* ldc.shm._seqlock.Segment */
    FastBook *book;      /* NULL while disarmed */
    Py_ssize_t slot;
    Py_ssize_t depth;    /* levels per side published: the segment's depth */
    int futures;         /* sequence rule: 1 futures (pu), 0 spot (U) */
    long long update_id; /* the book's update id while armed */
    long long applied;   /* diffs applied since the last take_applied() */
    uint32_t status;     /* slot status flags published with every diff */
    int uncovered;       /* armed on an UNCOVERED book: its coverage coming back is BookSync's to handle */
    long long conn;      /* the connection whose diffs feed the book (-1: none); Router checks it */
    long long last_event_ms; /* exchange event time of the last diff routed to this market (-1: none) */
    long long last_recv_ns;  /* and when it was received */
    PyObject *record;    /* a pending refresh's list of diffs (each applied diff appended), or NULL */
    Py_ssize_t record_limit; /* the list's length at which BookSync takes over (it drops the refresh) */
    double *levels;      /* 4 * depth doubles: the top bids (depth x 2), then the top asks */
} HotPath;

static PyTypeObject HotPathType;

static int hotpath_init(HotPath *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"segment", "slot", "futures", NULL};
    PyObject *segment;
    Py_ssize_t slot;
    int futures;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On$p:HotPath", kwlist, &segment, &slot, &futures)) {
        return -1;
    }
    if (seqlock_api == NULL) {
        const LdcSeqlockAPI *api = PyCapsule_Import(LDC_SEQLOCK_API_CAPSULE, 0);
        if (api == NULL) {
            return -1;
        }
        if (api->version != LDC_SEQLOCK_API_VERSION) {
            PyErr_Format(PyExc_ImportError, "ldc.shm._seqlock C API version %d, expected %d: rebuild both extensions",
                         api->version, LDC_SEQLOCK_API_VERSION);
            return -1;
        }
        seqlock_api = api;
    }
    Py_ssize_t depth = seqlock_api->depth(segment);
    if (depth < 0) {
        return -1;
    }
    if (slot < 0) {
        PyErr_Format(PyExc_ValueError, "slot must be at least 0, found %zd", slot);
        return -1;
    }
    double *levels = PyMem_Malloc((size_t)(4 * (depth > 0 ? depth : 1)) * sizeof(double));
    if (levels == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(self->levels);
    Py_CLEAR(self->book);
    Py_CLEAR(self->record);
    Py_XSETREF(self->segment, Py_NewRef(segment));
    self->levels = levels;
    self->slot = slot;
    self->depth = depth;
    self->futures = futures;
    self->update_id = NO_ID;
    self->applied = 0;
    self->status = 0;
    self->conn = -1;
    self->last_event_ms = -1;
    self->last_recv_ns = 0;
    return 0;
}

static void hotpath_dealloc(HotPath *self)
{
    Py_CLEAR(self->book);
    Py_CLEAR(self->record);
    Py_CLEAR(self->segment);
    PyMem_Free(self->levels);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* arm(book, update_id, status, uncovered=False, record=None, record_limit=0): diffs continuing update_id
 * are applied to book, appended to record (while it is shorter than record_limit) and published with status */
static PyObject *hotpath_arm(HotPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 6) {
        PyErr_Format(PyExc_TypeError,
                     "arm() takes 3 to 6 arguments (book, update_id, status, uncovered, record, record_limit), found %zd",
                     nargs);
        return NULL;
    }
    int uncovered = nargs > 3 ? PyObject_IsTrue(args[3]) : 0;
    if (uncovered < 0) {
        return NULL;
    }
    PyObject *record = nargs > 4 && args[4] != Py_None ? args[4] : NULL;
    if (record != NULL && !PyList_CheckExact(record)) {
        PyErr_Format(PyExc_TypeError, "arm() record must be a list or None, found %s", Py_TYPE(record)->tp_name);
        return NULL;
    }
    Py_ssize_t record_limit = nargs > 5 ? PyLong_AsSsize_t(args[5]) : 0;
    if (record_limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->segment == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "HotPath was not initialised: HotPath(segment, slot, futures=...)");
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], &FastBookType)) {
        PyErr_Format(PyExc_TypeError, "arm() needs a FastBook, found %s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    long long update_id = PyLong_AsLongLong(args[1]);
    unsigned long status = PyLong_AsUnsignedLong(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (update_id < 0) {
        PyErr_Format(PyExc_ValueError, "update_id must be at least 0, found %lld", update_id);
        return NULL;
    }
    if (status > UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "status must fit 32 bits, found %lu", status);
        return NULL;
    }
    Py_XSETREF(self->book, (FastBook *)Py_NewRef(args[0]));
    Py_XSETREF(self->record, Py_XNewRef(record));
    self->record_limit = record_limit;
    self->uncovered = uncovered;
    self->update_id = update_id;
    self->status = (uint32_t)status;
    Py_RETURN_NONE;
}

static PyObject *hotpath_disarm(HotPath *self, PyObject *unused)
{
    (void)unused;
    Py_CLEAR(self->book);
    Py_CLEAR(self->record);
    Py_RETURN_NONE;
}

static PyObject *hotpath_take_applied(HotPath *self, PyObject *unused)
{
    (void)unused;
    long long applied = self->applied;
    self->applied = 0;
    return PyLong_FromLongLong(applied);
}

/* feed(diff, recv_time_ns) -> HOT_PASS (nothing done: BookSync decides), HOT_DONE (applied, recorded,
 * published), HOT_TOP_FAULT (applied, not published: the top is crossed -- not recorded then --, or its
 * coverage changed: lost on a covered book, back on an uncovered one) */
/* the outcome of one diff (see feed), or -1 with an exception set */
static int hot_feed(HotPath *self, PyObject *diff, long long recv_ns)
{
    FastBook *book = self->book;
    if (book == NULL || !Py_IS_TYPE(diff, &ParsedDiffType)) {
        return HOT_PASS;
    }
    const ParsedDiff *d = (const ParsedDiff *)diff;
    /* ids are >= 0 (parse_depth), so first_id - 1 cannot overflow; a diff ending at or before the book is
     * BookSync's to ignore, whatever its other ids say */
    if ((self->futures ? d->prev_final_id != self->update_id : d->first_id - 1 != self->update_id) ||
        d->final_id <= self->update_id) {
        return HOT_PASS;
    }
    if (self->record != NULL && PyList_GET_SIZE(self->record) >= self->record_limit) {
        return HOT_PASS; /* BookSync records it and drops the refresh */
    }
    int changed = apply_parsed(book, d);
    if (changed < 0) {
        return -1;
    }
    self->update_id = d->final_id;
    self->applied++;
    if (changed && book_crossed(book)) {
        return HOT_TOP_FAULT;
    }
    if (self->record != NULL && PyList_Append(self->record, diff) < 0) {
        return -1;
    }
    if (self->uncovered ? book_covers(book, self->depth) : changed && !book_covers(book, self->depth)) {
        return HOT_TOP_FAULT;
    }
    int rc;
    if (changed) {
        double *bids = self->levels, *asks = self->levels + 2 * self->depth;
        Py_ssize_t nb = top_into(&book->bids, self->depth, bids);
        Py_ssize_t na = top_into(&book->asks, self->depth, asks);
        rc = seqlock_api->publish(self->segment, self->slot, d->final_id, d->event_time_ms, recv_ns, self->status,
                                  1, bids, nb, asks, na);
    } else {
        rc = seqlock_api->publish(self->segment, self->slot, d->final_id, d->event_time_ms, recv_ns, self->status,
                                  0, NULL, 0, NULL, 0);
    }
    return rc < 0 ? -1 : HOT_DONE;
}

static PyObject *hotpath_feed(HotPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "feed() takes 2 arguments (diff, recv_time_ns), found %zd", nargs);
        return NULL;
    }
    long long recv_ns = PyLong_AsLongLong(args[1]);
    if (recv_ns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int outcome = hot_feed(self, args[0], recv_ns);
    return outcome < 0 ? NULL : PyLong_FromLong(outcome);
}

static PyObject *hotpath_get_armed(HotPath *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->book != NULL);
}

static PyObject *hotpath_get_update_id(HotPath *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong(self->update_id);
}

static PyObject *hotpath_get_slot(HotPath *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->slot);
}

/* conn, last_event_ms, last_recv_ns: int64 fields the feeder reads and sets (their offset in the closure) */
static PyObject *hotpath_get_i64(HotPath *self, void *closure)
{
    return PyLong_FromLongLong(*(long long *)((char *)self + (size_t)closure));
}

static int hotpath_set_i64(HotPath *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a HotPath field");
        return -1;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *(long long *)((char *)self + (size_t)closure) = v;
    return 0;
}

static PyMethodDef hotpath_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))hotpath_feed, METH_FASTCALL,
     "feed(diff, recv_time_ns) -> HOT_PASS | HOT_DONE | HOT_TOP_FAULT (see the module's HotPath notes)."},
    {"arm", (PyCFunction)(void (*)(void))hotpath_arm, METH_FASTCALL,
     "arm(book, update_id, status): apply and publish the diffs that continue update_id."},
    {"disarm", (PyCFunction)hotpath_disarm, METH_NOARGS, "Stop: every diff is HOT_PASS until the next arm()."},
    {"take_applied", (PyCFunction)hotpath_take_applied, METH_NOARGS,
     "Diffs applied since the last call (and reset to 0)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef hotpath_getset[] = {
    {"armed", (getter)hotpath_get_armed, NULL, "True between arm() and disarm().", NULL},
    {"update_id", (getter)hotpath_get_update_id, NULL, "The book's update id as of the last diff applied here.", NULL},
    {"slot", (getter)hotpath_get_slot, NULL, "The slot published into.", NULL},
    {"conn", (getter)hotpath_get_i64, (setter)hotpath_set_i64,
     "The connection whose diffs feed the book (-1: none): a Router leaves the others' diffs to Python.",
     (void *)offsetof(HotPath, conn)},
    {"last_event_ms", (getter)hotpath_get_i64, (setter)hotpath_set_i64,
     "Exchange event time of the last diff routed to the market (-1: none).", (void *)offsetof(HotPath, last_event_ms)},
    {"last_recv_ns", (getter)hotpath_get_i64, (setter)hotpath_set_i64, "When that diff was received.",
     (void *)offsetof(HotPath, last_recv_ns)},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HotPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._fastbook.HotPath",
    .tp_basicsize = sizeof(HotPath),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HotPath(segment, slot, *, futures): one market's in-sync diffs applied and published in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)hotpath_init,
    .tp_dealloc = (destructor)hotpath_dealloc,
    .tp_methods = hotpath_methods,
    .tp_getset = hotpath_getset,
};

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

enum { ROUTE_END = 0, ROUTE_DIFF = 1, ROUTE_TOP_FAULT = 2, ROUTE_CONTROL = 3, ROUTE_MALFORMED = 4 };

typedef struct {
    PyObject_HEAD
    PyObject *paths; /* dict: symbol str -> HotPath */
} Router;

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

static PyObject *routed(Py_ssize_t index, int kind, PyObject *value) /* steals value */
{
    PyObject *result = Py_BuildValue("(niO)", index, kind, value);
    Py_DECREF(value);
    return result;
}

static PyObject *router_feed(Router *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "feed() takes 4 arguments (raws, start, conn_id, recv_time_ns), found %zd",
                     nargs);
        return NULL;
    }
    if (!PyList_CheckExact(args[0])) {
        PyErr_Format(PyExc_TypeError, "feed() raws must be a list, found %s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    long long conn = PyLong_AsLongLong(args[2]);
    long long recv_ns = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (self->paths == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Router was not initialised: Router()");
        return NULL;
    }
    PyObject *raws = args[0];
    Py_ssize_t i = start < 0 ? 0 : start;
    for (; i < PyList_GET_SIZE(raws); i++) {
        PyObject *diff = fb_parse_depth(NULL, PyList_GET_ITEM(raws, i));
        if (diff == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
                return NULL;
            }
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyObject *message = value != NULL ? PyObject_Str(value) : PyUnicode_FromString("malformed");
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return message == NULL ? NULL : routed(i, ROUTE_MALFORMED, message);
        }
        if (diff == Py_None) {
            return routed(i, ROUTE_CONTROL, diff);
        }
        PyObject *hot = PyDict_GetItemWithError(self->paths, ((ParsedDiff *)diff)->symbol); /* borrowed */
        if (hot == NULL || !Py_IS_TYPE(hot, &HotPathType) || ((HotPath *)hot)->conn != conn) {
            if (hot == NULL && PyErr_Occurred()) {
                Py_DECREF(diff);
                return NULL;
            }
            return routed(i, ROUTE_DIFF, diff);
        }
        HotPath *h = (HotPath *)hot;
        h->last_event_ms = ((ParsedDiff *)diff)->event_time_ms;
        h->last_recv_ns = recv_ns;
        int outcome = hot_feed(h, diff, recv_ns);
        if (outcome < 0) {
            Py_DECREF(diff);
            return NULL;
        }
        if (outcome != HOT_DONE) {
            return routed(i, outcome == HOT_TOP_FAULT ? ROUTE_TOP_FAULT : ROUTE_DIFF, diff);
        }
        Py_DECREF(diff);
        if (seqlock_api->notify(h->segment) < 0) {
            return NULL;
        }
    }
    return routed(i, ROUTE_END, Py_NewRef(Py_None));
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

static PyTypeObject RouterType = {
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


/* ------------------------------------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"parse_depth", (PyCFunction)fb_parse_depth, METH_O,
     "parse_depth(raw) -> ParsedDiff | None: a raw Binance depthUpdate (raw /ws or combined form).\n"
     "None when the message is not a depthUpdate; ValueError naming the field when it is malformed."},
    {"parse_snapshot_levels", (PyCFunction)(void (*)(void))fb_parse_snapshot_levels, METH_FASTCALL,
     "parse_snapshot_levels(raw, limit) -> (last_update_id, event_time_ms, bids, asks): a REST depth body.\n"
     "ValueError for anything ldc.venues.binance's reference parser might refuse (it names the fault)."},
    {"parse_okx", (PyCFunction)fb_parse_okx, METH_O,
     "parse_okx(raw) -> [(instId, ParsedDiff)] | None: an OKX v5 book update (C dialect of ldc.venues.okx).\n"
     "None for what the reference parser reads (control, other channels, snapshots); ValueError on any doubt."},
    {"parse_bybit", (PyCFunction)fb_parse_bybit, METH_O,
     "parse_bybit(raw) -> [(topic, ParsedDiff)] | None: a Bybit v5 book delta (C dialect of ldc.venues.bybit).\n"
     "None for what the reference parser reads (control, other topics, snapshots, u == 1); ValueError on any doubt."},
    {"parse_coinbase", (PyCFunction)fb_parse_coinbase, METH_O,
     "parse_coinbase(raw) -> [(product_id, ParsedDiff)] | None: a Coinbase l2_data update (C dialect of "
     "ldc.venues.coinbase).\nNone for what the reference reads (other channels, control); ValueError on any "
     "doubt (a snapshot event too)."},
    {"parse_htx", (PyCFunction)fb_parse_htx, METH_O,
     "parse_htx(inflated) -> [(topic, ParsedDiff)] | None: an HTX mbp update, gunzipped (C dialect of "
     "ldc.venues.htx).\nNone for what the reference reads (control, refreshes, depth.step0, other channels); "
     "ValueError on any doubt."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastbook_module = {
    PyModuleDef_HEAD_INIT, "_fastbook", "The book hot path in C: parse_depth, ParsedDiff, FastBook, HotPath, Router, parse_snapshot_levels.", -1,
    module_methods, NULL, NULL, NULL, NULL};

/* PyModule_Add (3.13) for older Pythons: steals value, also on failure */
static int add_owned(PyObject *m, const char *name, PyObject *value)
{
    int rc = value == NULL ? -1 : PyModule_AddObjectRef(m, name, value);
    Py_XDECREF(value);
    return rc;
}

PyMODINIT_FUNC PyInit__fastbook(void)
{
    if (PyType_Ready(&ParsedDiffType) < 0 || PyType_Ready(&FastBookType) < 0 || PyType_Ready(&HotPathType) < 0 ||
        PyType_Ready(&RouterType) < 0) {
        return NULL;
    }
    crc32_init();
    PyObject *m = PyModule_Create(&fastbook_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "ParsedDiff", (PyObject *)&ParsedDiffType) < 0 ||
        PyModule_AddObjectRef(m, "FastBook", (PyObject *)&FastBookType) < 0 ||
        PyModule_AddObjectRef(m, "HotPath", (PyObject *)&HotPathType) < 0 ||
        PyModule_AddObjectRef(m, "Router", (PyObject *)&RouterType) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_END", ROUTE_END) < 0 || PyModule_AddIntConstant(m, "ROUTE_DIFF", ROUTE_DIFF) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_TOP_FAULT", ROUTE_TOP_FAULT) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_CONTROL", ROUTE_CONTROL) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_MALFORMED", ROUTE_MALFORMED) < 0 ||
        PyModule_AddIntConstant(m, "HOT_PASS", HOT_PASS) < 0 || PyModule_AddIntConstant(m, "HOT_DONE", HOT_DONE) < 0 ||
        PyModule_AddIntConstant(m, "HOT_TOP_FAULT", HOT_TOP_FAULT) < 0 ||
        PyModule_AddIntConstant(m, "NO_ID", NO_ID) < 0 ||
        add_owned(m, "OKX_CHANNELS", okx_channels_tuple()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
