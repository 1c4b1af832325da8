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
 *
 * One extension, several compilation units (setup.py lists them), along the banners of what was one file:
 * scan.c (JSON scanning; the decimal parser is inline here), number.c (JSON numbers read exactly, for the
 * dialects of venues that send them: HTX, Kraken), dialect_binance.c (ParsedDiff, depthUpdate,
 * REST snapshots), dialect_okx_bybit.c (and the helpers the stream dialects share), dialect_coinbase.c,
 * dialect_htx.c, side.c, book.c (FastBook), checksum.c, hotpath.c, router.c, module.c. This header holds the
 * shared types and the small hot helpers as static inline, so that no per-level or per-key call crosses a unit;
 * everything else one unit gives another is declared here with the ldc_fb_ prefix (the extension is built with
 * hidden visibility: none of them leaves the .so), and the rest stays static inside its unit.
 */
#ifndef LDC_FASTBOOK_H
#define LDC_FASTBOOK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../shm/ldc_seqlock_api.h"

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
    long long checksum; /* the venue's checksum of its top levels (OKX, Kraken), 0: none */
    const char *symbol;
    Py_ssize_t symbol_len;
} Event;

/* levels of the message being parsed; reused across calls (the GIL serialises them) */
typedef struct {
    Level *levels;
    Py_ssize_t count, capacity;
} Scratch;

typedef struct {
    PyObject_VAR_HEAD
    PyObject *symbol;
    long long first_id, final_id, prev_final_id, event_time_ms, transaction_time_ms, checksum;
    Py_ssize_t n_bids, n_asks;
    PyObject *bids_list, *asks_list; /* materialised on first access */
    Level levels[1];
} ParsedDiff;

typedef struct {
    Level *buf; /* .a is the key: sign * price */
    Py_ssize_t cap, lo, hi;
    double sign;     /* +1 bids, -1 asks */
    double boundary; /* keys >= boundary are known exactly; -inf whole side, +inf nothing known */
} Side;

static inline Py_ssize_t side_len(const Side *s) { return s->hi - s->lo; }

typedef struct {
    PyObject_HEAD
    Side bids, asks;
    Py_ssize_t depth;
    Py_ssize_t window; /* snapshot.limit; 0 before the first snapshot (nothing pruned) */
} FastBook;

/* The last Kraken checksum a HotPath computed (ldc_fb_kraken_crc32_cached): per side, the top levels it was
 * computed from, bitwise, each level's text and the CRC32 state after it; and the CRC. Exact by construction: the
 * checksum is a pure function of those doubles, n and the decimals, so equal copies give the same text */
#define KRAKEN_CACHE_LEVELS 10 /* Kraken's checksum covers the top 10 (kraken.CHECKSUM_LEVELS) */
#define KRAKEN_LEVEL_CHARS 48  /* a level's text: two numbers of at most 19 digits, the last written 8 bytes a word */
typedef struct {
    Py_ssize_t count;                            /* levels kept */
    size_t total;                                /* their texts' length */
    Level levels[KRAKEN_CACHE_LEVELS];           /* as in the book (key, qty), best first */
    uint32_t states[KRAKEN_CACHE_LEVELS + 1];    /* the CRC32 register before the side (the asks: the CRC's start;
                                                  * the bids: 0, combined after), then after each level */
    uint8_t len[KRAKEN_CACHE_LEVELS];
    char text[KRAKEN_CACHE_LEVELS][KRAKEN_LEVEL_CHARS]; /* price then quantity digits */
} KrakenSideCache;

typedef struct {
    int valid, off;  /* off: computed whole every time (HotPath.crc_cache = False) */
    Py_ssize_t n;
    int price_decimals, size_decimals;
    KrakenSideCache sides[2][2];          /* asks, bids: the kept one (current) and the one written next */
    int current[2];
    long long crc;
    long long reused;                     /* checksums answered from the cache, both sides unchanged */
    long long bids_only;                  /* checksums that wrote the bids alone (the asks unchanged) */
} KrakenCrcCache;

enum { HOT_PASS = 0, HOT_DONE = 1, HOT_TOP_FAULT = 2, HOT_CHECKSUM_FAULT = 3, HOT_IGNORED = 4 };
enum { HOT_CRC_OKX = 0, HOT_CRC_KRAKEN = 1 };

typedef struct {
    PyObject_HEAD
    PyObject *segment;   /* ldc.shm._seqlock.Segment */
    FastBook *book;      /* NULL while disarmed */
    Py_ssize_t slot;
    Py_ssize_t depth;    /* levels per side published: the segment's depth */
    int futures;         /* sequence rule: 1 futures (pu), 0 spot (U) */
    int unsequenced;     /* sequence rule NONE (Kraken): every update with an id applies, the book's id is the
                          * larger of its id and the update's (a clock: never goes back); futures is unused */
    int window_whole;    /* the venue keeps the book whole to its window (keeps_window_whole): coverage is never
                          * checked here (BookSync's covers is always true then) */
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
    /* the venue's checksum of the top (OKX: signed CRC32 of the top crc_levels, numbers written with these
     * decimals, again in the shortest form when crc_retry_shortest), verified on every diff carrying one */
    Py_ssize_t crc_levels;  /* 0: no checksum verified here (a diff carrying one is still applied: BookSync's
                             * fast_path arms only a HotPath that verifies the venue's checksum) */
    int crc_price_decimals, crc_size_decimals, crc_retry_shortest;
    int crc_kind;           /* HOT_CRC_OKX (signed CRC32 of the texts, ':'-joined, bid and ask interleaved) or
                             * HOT_CRC_KRAKEN (unsigned CRC32 of the asks then the bids, integers at the decimals) */
    long long checksums;    /* checksums verified (and equal) since the last take_checksums() */
    int skips_old;          /* an update ending at or before the book (verdict OLD: OKX's keep-alive, a duplicate)
                             * is counted and dropped here (HOT_IGNORED) instead of handed to BookSync */
    long long ignored;      /* updates so dropped since the last take_ignored() */
    KrakenCrcCache kraken_crc; /* HOT_CRC_KRAKEN: the last checksum, reused while the top 10 stays as it was */
} HotPath;

enum { ROUTE_END = 0, ROUTE_DIFF = 1, ROUTE_TOP_FAULT = 2, ROUTE_CONTROL = 3, ROUTE_MALFORMED = 4, ROUTE_CHECKSUM_FAULT = 5 };

typedef struct {
    PyObject_HEAD
    PyObject *paths; /* dict: symbol str -> HotPath */
} Router;

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil): the dialects whose
 * messages carry an RFC 3339 time (Coinbase, Kraken v2) */
static inline long long ldc_fb_days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* router.c: feed(raws, start, conn_id, recv_time_ns)'s arguments, read once for both routers */
int ldc_fb_feed_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *start, long long *conn, long long *recv_ns);
PyObject *ldc_fb_routed(Py_ssize_t index, int kind, PyObject *value);
PyObject *ldc_fb_routed_malformed(Py_ssize_t index);
PyObject *ldc_fb_woken_then(PyObject *segment, PyObject *result);

/* what a router hands back for a HotPath outcome other than HOT_DONE / HOT_IGNORED */
static inline int ldc_fb_route_of(int outcome)
{
    return outcome == HOT_TOP_FAULT ? ROUTE_TOP_FAULT : outcome == HOT_CHECKSUM_FAULT ? ROUTE_CHECKSUM_FAULT : ROUTE_DIFF;
}

/* scan.c: the JSON scanner the dialects share (declared before the inline helpers that call it) */
extern Scratch ldc_fb_scratch_bids, ldc_fb_scratch_asks;
int ldc_fb_scan_string(Scanner *sc, const char **text, Py_ssize_t *len, int *escaped);
int ldc_fb_scan_number(Scanner *sc);
int ldc_fb_skip_value(Scanner *sc, int nesting);
void ldc_fb_field_error(Scanner *sc, const char *field, Py_ssize_t level, const char *expected, const char *found,
                        Py_ssize_t found_len);
int ldc_fb_reject_value(Scanner *sc, const char *field, const char *expected);
int ldc_fb_parse_id(Scanner *sc, const char *field, long long *out);
int ldc_fb_parse_level_number(Scanner *sc, double *out);
int ldc_fb_parse_levels_of(Scanner *sc, const char *field, Scratch *s, int width);
int ldc_fb_parse_levels(Scanner *sc, const char *field, Scratch *s);
int ldc_fb_parse_object(Scanner *sc, Event *ev, int top);
int ldc_fb_message_bytes(PyObject *arg, const char **data, Py_ssize_t *size, Py_buffer *view);

/* ------------------------------------------------------------------------------------------------
 * Small hot helpers, inlined into every unit that calls them
 * ---------------------------------------------------------------------------------------------- */

/* The slow exact parser: CPython's dtoa on s[0..n) (correctly rounded, as float() and float(Decimal) read it).
 * Returns 0, or -1 when the text is longer than MAX_DECIMAL_CHARS or not wholly a number (no exception set);
 * an overflow reads as an infinity. */
static inline int dtoa_exact(const char *s, Py_ssize_t n, double *out)
{
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

/* Correctly rounded parse of [0-9]+(\.[0-9]+)? (Binance's form). Clinger's fast path: when the
 * digits form an integer m <= 2^53 and the scale k <= 22, m and 10^k are exact doubles and one IEEE
 * division rounds m / 10^k correctly. Anything else goes to CPython's dtoa (also correctly rounded).
 * Returns 0, or -1 when the text is not such a decimal (no exception set). */
static inline int parse_decimal(const char *s, Py_ssize_t n, double *out)
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
    return dtoa_exact(s, n, out);
}

static inline int syntax_error(Scanner *sc, const char *expected)
{
    PyErr_Format(PyExc_ValueError, "invalid json at byte %zd: expected %s", (Py_ssize_t)(sc->p - sc->start),
                 expected);
    return SCAN_SYNTAX;
}

static inline void skip_ws(Scanner *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\n' || *sc->p == '\r' || *sc->p == '\t')) {
        sc->p++;
    }
}

/* After a list's element: whitespace, then 1 at a ',' (another element follows), 0 at the closing ']', both
 * consumed; -1 at anything else, left where it stands */
static inline int list_next(Scanner *sc)
{
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ',') {
        sc->p++;
        return 1;
    }
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        return 0;
    }
    return -1;
}

static inline int scratch_push(Scratch *s, double price, double qty)
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

#define KEY_IS(lit) (klen == (Py_ssize_t)sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)

static inline void event_reset(Event *ev)
{
    ev->seen = 0;
    ev->is_depth = 0;
    ev->event_time = NO_ID;
    ev->transaction_time = NO_ID;
    ev->first_id = ev->final_id = ev->prev_final_id = NO_ID;
    ev->checksum = 0;
    ev->symbol = NULL;
    ev->symbol_len = 0;
    ldc_fb_scratch_bids.count = ldc_fb_scratch_asks.count = 0;
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
        if (ldc_fb_scan_string(sc, &key, &klen, &escaped) < 0) {
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

#define SPAN_IS(text, len, lit) ((len) == (Py_ssize_t)sizeof(lit) - 1 && memcmp((text), lit, sizeof(lit) - 1) == 0)

/* number.c */
int ldc_fb_exact_number(Scanner *sc, double *out);

/* dialect_binance.c */
extern PyTypeObject ldc_fb_ParsedDiffType;
PyObject *ldc_fb_symbol_object(const char *text, Py_ssize_t len);
PyObject *ldc_fb_parsed_diff_new(const Event *ev);
#define PARSED_DIFF_SPARE_LEVELS 16 /* the room of a ParsedDiff made to be reused (ldc_fb_parsed_diff_reuse) */
PyObject *ldc_fb_parsed_diff_reuse(const Event *ev, PyObject **spare);
PyObject *ldc_fb_parse_depth(PyObject *module, PyObject *arg);
PyObject *ldc_fb_level_pair(double price, double qty);
PyObject *ldc_fb_parse_snapshot_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* dialect_okx_bybit.c */
/* a key seen a second time: the field error set and 1; else its bit set and 0 */
int ldc_fb_dialect_key_once(Scanner *sc, int *seen, int bit, const char *field);
int ldc_fb_plain_string(Scanner *sc, const char *field, const char **text, Py_ssize_t *len);
int ldc_fb_scan_message(const char *data, Py_ssize_t size, Scanner *sc, FieldHandler on_field, void *ctx);
PyObject *ldc_fb_stream_events(PyObject *diffs, PyObject *stream);
PyObject *ldc_fb_parse_okx(PyObject *module, PyObject *arg);
PyObject *ldc_fb_parse_bybit(PyObject *module, PyObject *arg);
PyObject *ldc_fb_okx_channels_tuple(void);

/* dialect_coinbase.c */
PyObject *ldc_fb_parse_coinbase(PyObject *module, PyObject *arg);

/* dialect_htx.c */
PyObject *ldc_fb_parse_htx(PyObject *module, PyObject *arg);

/* dialect_snapshot.c, dialect_kraken.c (issue 15: the stream venues' snapshots, Kraken v2) */
typedef struct {
    PyObject_VAR_HEAD /* ob_size: the number of levels */
    Level levels[1];  /* (price, qty), best first */
} Levels;             /* a snapshot side read in C: a read-only sequence of (price, qty) tuples made on access */
extern PyTypeObject ldc_fb_LevelsType;
void ldc_fb_sort_levels(Scratch *s, int descending);
PyObject *ldc_fb_book_snapshot(const Scratch *bids, const Scratch *asks, long long update_id, Py_ssize_t limit,
                               long long event_time_ms, long long checksum, const char *limit_field,
                               const char *limit_expected);
PyObject *ldc_fb_parse_kraken(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int ldc_fb_kraken_event(PyObject *raw, Py_ssize_t depth, PyObject **spare, PyObject **symbol, PyObject **event);
PyObject *ldc_fb_kraken_events(PyObject *symbol, PyObject *event);
PyObject *ldc_fb_fastbook_kraken_crc32(FastBook *self, PyObject *const *args, Py_ssize_t nargs);

/* side.c */
int ldc_fb_side_init(Side *s, double sign);
int ldc_fb_side_set(Side *s, double price, double qty, Py_ssize_t depth);
Py_ssize_t ldc_fb_side_prune(Side *s, Py_ssize_t window);
Py_ssize_t ldc_fb_side_known(const Side *s);

/* book.c */
extern PyTypeObject ldc_fb_FastBookType;
int ldc_fb_apply_parsed(FastBook *self, const ParsedDiff *d);
Py_ssize_t ldc_fb_top_into(const Side *s, Py_ssize_t n, double *out);
int ldc_fb_book_crossed(const FastBook *self);
int ldc_fb_book_covers(const FastBook *self, Py_ssize_t n);

/* checksum.c */
void ldc_fb_crc32_init(void);
PyObject *ldc_fb_fastbook_top_crc32(FastBook *self, PyObject *const *args, Py_ssize_t nargs);
int ldc_fb_top_crc32(const FastBook *self, Py_ssize_t n, int price_decimals, int size_decimals, long long *out);
int ldc_fb_kraken_crc32(const FastBook *self, Py_ssize_t n, int price_decimals, int size_decimals, long long *out);
int ldc_fb_kraken_crc32_cached(const FastBook *self, Py_ssize_t n, int price_decimals, int size_decimals,
                               KrakenCrcCache *cache, long long *out);

/* hotpath.c */
extern const LdcSeqlockAPI *ldc_fb_seqlock_api;
extern PyTypeObject ldc_fb_HotPathType;
int ldc_fb_hot_feed(HotPath *self, PyObject *diff, long long recv_ns);

/* router.c */
extern PyTypeObject ldc_fb_RouterType;

/* stream_router.c */
typedef PyObject *(*StreamDialect)(PyObject *module, PyObject *raw); /* [(stream, ParsedDiff)] | None */

typedef struct {
    PyObject_HEAD
    PyObject *paths;       /* dict: stream key str -> HotPath */
    StreamDialect dialect; /* the venue's C dialect (parse_okx, parse_bybit); NULL with parse_kraken */
    PyObject *depth;       /* parse_kraken's second argument, the subscribed depth (NULL: a one-argument dialect) */
    Py_ssize_t kraken_depth; /* the same, as a number */
    PyObject *spare;       /* Kraken: the last ParsedDiff when the router was its last holder, rewritten by the next */
    PyObject *name;        /* its function object, as given */
    PyObject *fault_stream; /* the stream whose HotPath raised in the last feed() (NULL: none) */
    Py_ssize_t fault_index; /* and the index of its message in raws (-1: none) */
} StreamRouter;

extern PyTypeObject ldc_fb_StreamRouterType;

#endif /* LDC_FASTBOOK_H */
