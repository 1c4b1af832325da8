/* ldc._fastbook: a venue's checksum of the top of the book (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * A venue's checksum of the top of the book (OKX: a signed CRC32 of the top levels, interleaved, as
 * "bid1px:bid1sz:ask1px:ask1sz:..."), the numbers written as ldc.venues.okx._texts writes them
 * ---------------------------------------------------------------------------------------------- */

#define CRC_TEXT_CHARS 64 /* one number's text; a longer one is handed back to Python */
#define CRC_TEXT_BUFFER 2048 /* texts joined before they go through the CRC */
#define SHORTEST_DECIMALS (-1) /* the shortest round-trip form (repr without an exponent) */
#define MAX_TEXT_DECIMALS 30   /* a tick or lot finer than 1e-30 is no market's */

/* Slicing-by-8 (Intel's, as zlib's braided CRC before it): eight bytes a step through eight tables, each table
 * k the CRC of a byte followed by k zero bytes. Measured on OKX's top 25 (100 numbers, ~1 KB of text), the
 * bytewise loop was a third of top_crc32's time. */
static uint32_t crc32_tables[8][256];

/* x^(8n) mod P for n bytes (zlib's reflected representation: x^0 is 0x80000000): the CRC32 register after n zero
 * bytes from a state s is multmodp(crc32_zeros[n], s). The register update is linear in (state, bytes), so the
 * register after bytes B from s is the one from 0 xor s shifted by len(B) zero bytes (zlib's crc32_combine) */
#define CRC32_ZEROS_MAX (KRAKEN_CACHE_LEVELS * KRAKEN_LEVEL_CHARS)
static uint32_t crc32_zeros[CRC32_ZEROS_MAX + 1];

/* a * b mod P (zlib's multmodp) */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) {
                break;
            }
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ 0xEDB88320u : b >> 1;
    }
    return p;
}

void ldc_fb_crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1; /* zlib's polynomial, reflected */
        }
        crc32_tables[0][i] = c;
    }
    crc32_zeros[0] = 0x80000000u;
    for (int n = 1; n <= CRC32_ZEROS_MAX; n++) {
        crc32_zeros[n] = multmodp(crc32_zeros[n - 1], 0x00800000u); /* times x^8: one zero byte more */
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            uint32_t c = crc32_tables[t - 1][i];
            crc32_tables[t][i] = crc32_tables[0][c & 0xFF] ^ (c >> 8);
        }
    }
}

static uint32_t crc32_add(uint32_t crc, const char *text, size_t n)
{
    const unsigned char *p = (const unsigned char *)text;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = crc32_tables[7][v & 0xFF] ^ crc32_tables[6][(v >> 8) & 0xFF] ^ crc32_tables[5][(v >> 16) & 0xFF] ^
              crc32_tables[4][(v >> 24) & 0xFF] ^ crc32_tables[3][(v >> 32) & 0xFF] ^
              crc32_tables[2][(v >> 40) & 0xFF] ^ crc32_tables[1][(v >> 48) & 0xFF] ^ crc32_tables[0][v >> 56];
        p += 8;
        n -= 8;
    }
    if (n >= 4) { /* the same, four bytes: short texts (a Kraken level's ~20 bytes) end in up to 7 */
        uint32_t v;
        memcpy(&v, p, 4);
        v ^= crc;
        crc = crc32_tables[3][v & 0xFF] ^ crc32_tables[2][(v >> 8) & 0xFF] ^ crc32_tables[1][(v >> 16) & 0xFF] ^
              crc32_tables[0][v >> 24];
        p += 4;
        n -= 4;
    }
#endif
    while (n-- > 0) {
        crc = crc32_tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
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
static const char DIGIT_PAIRS[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                  "8081828384858687888990919293949596979899";

static Py_ssize_t fixed_text_fast(double x, int decimals, char *out)
{
    if (!(x >= 0.0) || decimals > FAST_POW10_MAX) {
        return 0;
    }
    double y = x * POW10[decimals];
    if (!(y < FIXED_FAST_MAX) || fabs(fabs(y - floor(y)) - 0.5) < FIXED_FAST_HALF_MARGIN) {
        return 0;
    }
    uint64_t m = (uint64_t)(y + 0.5); /* y >= 0: truncation is floor */
    while (decimals > 0 && m % 10 == 0) { /* trailing zeros of the fraction, dropped */
        m /= 10;
        decimals--;
    }
    char digits[24]; /* m < 1e14: at most 14 digits, written from the end two at a time */
    char *end = digits + sizeof digits, *p = end;
    while (m >= 100) {
        const char *pair = DIGIT_PAIRS + 2 * (m % 100);
        m /= 100;
        *--p = pair[1];
        *--p = pair[0];
    }
    if (m >= 10) {
        *--p = DIGIT_PAIRS[2 * m + 1];
        *--p = DIGIT_PAIRS[2 * m];
    } else {
        *--p = (char)('0' + m);
    }
    while (end - p <= decimals) { /* at least one digit before the point */
        *--p = '0';
    }
    Py_ssize_t whole = (end - p) - decimals;
    memcpy(out, p, (size_t)whole);
    if (decimals == 0) {
        return whole;
    }
    out[whole] = '.';
    memcpy(out + whole + 1, p + whole, (size_t)decimals);
    return whole + 1 + decimals;
}

/* The shortest form without dtoa, where repr writes no exponent (0, or 1e-4 <= x < 1e16): the fewest decimals d
 * whose rounding r = round(x * 10^d) reads back as x (r / 10^d, both exact doubles: one correctly rounded
 * division, as strtod reads "r e-d"). With x * 10^d below FIXED_FAST_MAX (< 2^51) the product is off by at most
 * 1/4, so r is the integer nearest the exact product and the only one that can read back at that d: the digits
 * repr writes. Returns its length, 0 when not taken. */
static Py_ssize_t shortest_text_fast(double x, char *out)
{
    if (!(x == 0.0 || x >= 1e-4)) {
        return 0;
    }
    for (int d = 0; d <= FAST_POW10_MAX; d++) {
        double y = x * POW10[d];
        if (!(y < FIXED_FAST_MAX)) {
            return 0;
        }
        if (floor(y + 0.5) / POW10[d] == x) {
            return fixed_text_fast(x, d, out);
        }
    }
    return 0;
}

static Py_ssize_t venue_text(double x, int decimals, char *out)
{
    Py_ssize_t fast = decimals >= 0 ? fixed_text_fast(x, decimals, out) : shortest_text_fast(x, out);
    if (fast > 0) {
        return fast;
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

/* The signed CRC32 of the top n levels (decimals in -1..MAX_TEXT_DECIMALS) into *out: 1, or 0 when Python must
 * write a number (an exponent in its shortest form, a text too long), -1 with an exception */
int ldc_fb_top_crc32(const FastBook *self, Py_ssize_t n, int price_decimals, int size_decimals, long long *out)
{
    const Side *sides[2] = {&self->bids, &self->asks};
    int decimals[2] = {price_decimals, size_decimals};
    Py_ssize_t counts[2] = {side_len(&self->bids) < n ? side_len(&self->bids) : n,
                            side_len(&self->asks) < n ? side_len(&self->asks) : n};
    uint32_t crc = 0xFFFFFFFFu;
    char text[CRC_TEXT_BUFFER]; /* the texts, ':'-joined, a buffer at a time through the CRC */
    Py_ssize_t used = 0;
    int first = 1;
    for (Py_ssize_t i = 0; i < counts[0] || i < counts[1]; i++) {
        for (int side = 0; side < 2; side++) {
            if (i >= counts[side]) {
                continue;
            }
            const Side *s = sides[side];
            const Level *lv = &s->buf[s->hi - 1 - i];
            double values[2] = {s->sign * lv->a, lv->qty};
            for (int k = 0; k < 2; k++) {
                if (used + 1 + CRC_TEXT_CHARS > CRC_TEXT_BUFFER) {
                    crc = crc32_add(crc, text, (size_t)used);
                    used = 0;
                }
                if (!first) {
                    text[used++] = ':';
                }
                first = 0;
                Py_ssize_t len = venue_text(values[k], decimals[k], text + used);
                if (len <= 0) {
                    return len < 0 ? -1 : 0;
                }
                used += len;
            }
        }
    }
    crc = crc32_add(crc, text, (size_t)used) ^ 0xFFFFFFFFu;
    *out = crc >= 0x80000000u ? (long long)crc - 0x100000000LL : (long long)crc;
    return 1;
}

/* top_crc32(n, price_decimals, size_decimals) -> the signed CRC32, or None when Python must write a number */
PyObject *ldc_fb_fastbook_top_crc32(FastBook *self, PyObject *const *args, Py_ssize_t nargs)
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
    if (n < 0 || given[0] < SHORTEST_DECIMALS || given[1] < SHORTEST_DECIMALS || given[0] > MAX_TEXT_DECIMALS ||
        given[1] > MAX_TEXT_DECIMALS) {
        PyErr_Format(PyExc_ValueError, "top_crc32: expected n >= 0 and decimals in -1..%d, found %zd, %ld, %ld",
                     MAX_TEXT_DECIMALS, n, given[0], given[1]);
        return NULL;
    }
    long long crc;
    int rc = ldc_fb_top_crc32(self, n, (int)given[0], (int)given[1], &crc);
    if (rc <= 0) {
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    return PyLong_FromLongLong(crc);
}

/* ------------------------------------------------------------------------------------------------
 * Kraken's checksum (ldc.venues.kraken._crc): the unsigned CRC32 of the top n asks (best first) then the top n
 * bids, each price and quantity written as the integer rint(value * 10^decimals) in decimal (the text with the
 * pair's decimals, point and leading zeros removed), concatenated. The same double product and the same
 * round-half-even as numpy's rint there, so the same integers; None (Python writes it) for decimals beyond
 * the exact powers of ten or a product beyond 2^62.
 * ---------------------------------------------------------------------------------------------- */

#define KRAKEN_PRODUCT_MAX 4611686018427387904.0 /* 2^62: int64 in numpy's astype, exactly */
#define KRAKEN_TEXT_CHARS 512 /* 40 numbers are ~400 characters */

/* the 8 decimal digits of v < 10^8, leading zeros included, as the 8 bytes of a word in memory order (built in
 * a register from four independent pairs: one 8-byte store, no store-forwarding stall on small stores) */
static inline uint64_t digits8(uint32_t v)
{
    uint32_t high = v / 10000, low = v % 10000;
    uint16_t pairs[4];
    memcpy(&pairs[0], DIGIT_PAIRS + 2 * (high / 100), 2);
    memcpy(&pairs[1], DIGIT_PAIRS + 2 * (high % 100), 2);
    memcpy(&pairs[2], DIGIT_PAIRS + 2 * (low / 100), 2);
    memcpy(&pairs[3], DIGIT_PAIRS + 2 * (low % 100), 2);
    uint64_t word;
    memcpy(&word, pairs, 8);
    return word;
}

static const uint64_t POW10_U64[20] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u,
                                       1000000000u, 10000000000u, 100000000000u, 1000000000000u, 10000000000000u,
                                       100000000000000u, 1000000000000000u, 10000000000000000u,
                                       100000000000000000u, 1000000000000000000u, 10000000000000000000u};

/* how many decimal digits str(u) has (1 for 0) */
static inline int decimal_digits(uint64_t u)
{
    uint64_t v = u | 1; /* 0 has one digit, as 1; no other count changes (10^k, k >= 1, is even) */
    int bits = 64 - __builtin_clzll(v);
    int guess = (bits * 1233) >> 12; /* 1233 / 4096 ~ log10(2): guess is the count or one less */
    return guess + (v >= POW10_U64[guess]);
}

/* rint(value * scale) in decimal at out (up to 24 bytes written, the bytes past the number are scratch): its
 * length, or 0 when Python must write it (negative, NaN, a product of 2^62 or more). A number is written as 8-digit
 * words: the first without its leading zeros (shifted out) */
static inline int kraken_number(double value, double scale, char *out)
{
    double y = value * scale;
    if (!(y >= 0.0 && y < KRAKEN_PRODUCT_MAX)) {
        return 0; /* negative, NaN or too large: Python writes it */
    }
    /* numpy's rint (round half to even, the default rounding mode) without a libm call: below 2^52, adding and
     * taking back 2^52 rounds to an integer (IEEE arithmetic: nothing folds it away); at or above it a double is
     * an integer already */
    if (y < 4503599627370496.0) {
        y = (y + 4503599627370496.0) - 4503599627370496.0;
    }
    uint64_t u = (uint64_t)y; /* exact: y < 2^62 */
    int len = decimal_digits(u), words;
    uint64_t word[3];
    if (u < 100000000u) {
        word[0] = digits8((uint32_t)u);
        words = 1;
    } else if (u < 10000000000000000u) {
        word[0] = digits8((uint32_t)(u / 100000000u));
        word[1] = digits8((uint32_t)(u % 100000000u));
        words = 2;
    } else { /* u < 2^62: below 10^19 */
        uint64_t high = u / 100000000u;
        word[0] = digits8((uint32_t)(high / 100000000u));
        word[1] = digits8((uint32_t)(high % 100000000u));
        word[2] = digits8((uint32_t)(u % 100000000u));
        words = 3;
    }
    int lead = len - 8 * (words - 1); /* the first word's digits, 1..8 */
#if PY_LITTLE_ENDIAN
    word[0] >>= 8 * (8 - lead); /* its leading zeros (the first bytes in memory) dropped */
    memcpy(out, &word[0], 8);
#else
    memcpy(out, (const char *)&word[0] + 8 - lead, (size_t)lead);
#endif
    for (int w = 1; w < words; w++) {
        memcpy(out + lead + 8 * (w - 1), &word[w], 8);
    }
    return len;
}

/* a level's text, price then quantity, at out (KRAKEN_LEVEL_CHARS): its length, 0 when Python must write it */
static inline int kraken_level_text(const Side *s, const Level *lv, const double scale[2], char *out)
{
    int price = kraken_number(s->sign * lv->a, scale[0], out);
    int qty = price > 0 ? kraken_number(lv->qty, scale[1], out + price) : 0;
    return qty > 0 ? price + qty : 0;
}

/* One side's part of Kraken's CRC32: its top n (best first), each price and quantity as the integer
 * rint(value * scale) in decimal, through *crc. 1, or 0 when Python must compute it (a product beyond 2^62) */
static int kraken_side_crc(const Side *s, Py_ssize_t n, const double scale[2], uint32_t *crc_io)
{
    uint32_t crc = *crc_io;
    char text[KRAKEN_TEXT_CHARS]; /* the levels' texts, hashed a buffer at a time */
    size_t used = 0;
    Py_ssize_t count = side_len(s) < n ? side_len(s) : n;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (used + KRAKEN_LEVEL_CHARS > KRAKEN_TEXT_CHARS) {
            crc = crc32_add(crc, text, used);
            used = 0;
        }
        int len = kraken_level_text(s, &s->buf[s->hi - 1 - i], scale, text + used);
        if (len == 0) {
            return 0;
        }
        used += (size_t)len;
    }
    *crc_io = crc32_add(crc, text, used);
    return 1;
}

static int kraken_decimals_fast(int price_decimals, int size_decimals)
{
    return price_decimals >= 0 && size_decimals >= 0 && price_decimals <= FAST_POW10_MAX &&
           size_decimals <= FAST_POW10_MAX;
}

/* Kraken's unsigned CRC32 of the top n (decimals >= 0) into *out: 1, or 0 when Python must compute it (decimals
 * beyond the exact powers of ten, a product beyond 2^62); never an exception */
int ldc_fb_kraken_crc32(const FastBook *self, Py_ssize_t n, int price_decimals, int size_decimals, long long *out)
{
    if (!kraken_decimals_fast(price_decimals, size_decimals)) {
        return 0;
    }
    const double scale[2] = {POW10[price_decimals], POW10[size_decimals]};
    uint32_t crc = 0xFFFFFFFFu; /* the asks, then the bids */
    if (!kraken_side_crc(&self->asks, n, scale, &crc) || !kraken_side_crc(&self->bids, n, scale, &crc)) {
        return 0;
    }
    *out = (long long)(crc ^ 0xFFFFFFFFu);
    return 1;
}

/* The levels of a side's top that are bitwise the kept ones from the best on (the kept copy valid for these
 * settings, or none) */
static inline Py_ssize_t kraken_same_prefix(const Side *s, Py_ssize_t count, const KrakenSideCache *kept)
{
    Py_ssize_t m = 0, most = count < kept->count ? count : kept->count;
    while (m < most && memcmp(&kept->levels[m], &s->buf[s->hi - 1 - m], sizeof(Level)) == 0) {
        m++;
    }
    return m;
}

/* A side's top written into `out` through *crc (which starts as `start`): the levels bitwise equal to the kept
 * ones from the best on are not written again (the CRC state after them is kept: when `start` is the kept one's),
 * a level bitwise equal to a kept one anywhere else takes its text; every other level is written. 1, or 0 when
 * Python must compute it */
static int kraken_side_cached(const Side *s, Py_ssize_t count, Py_ssize_t prefix, const double scale[2],
                              const KrakenSideCache *kept, KrakenSideCache *out, uint32_t start, uint32_t *crc_io)
{
    if (kept->states[0] != start) {
        prefix = 0; /* another start (the asks changed before these bids): no state after a level holds */
    }
    memcpy(out->levels, kept->levels, (size_t)prefix * sizeof(Level));
    memcpy(out->states, kept->states, (size_t)(prefix + 1) * sizeof(uint32_t));
    for (Py_ssize_t i = 0; i < prefix; i++) {
        memcpy(out->text[i], kept->text[i], kept->len[i]);
        out->len[i] = kept->len[i];
    }
    out->states[0] = start;
    uint32_t crc = prefix > 0 ? kept->states[prefix] : start;
    Py_ssize_t j = prefix; /* the kept levels, best first: keys descending as the book's from its best end */
    for (Py_ssize_t i = prefix; i < count; i++) {
        const Level *lv = &s->buf[s->hi - 1 - i];
        while (j < kept->count && kept->levels[j].a > lv->a) {
            j++;
        }
        out->levels[i] = *lv;
        if (j < kept->count && memcmp(&kept->levels[j], lv, sizeof(Level)) == 0) {
            memcpy(out->text[i], kept->text[j], kept->len[j]);
            out->len[i] = kept->len[j];
        } else {
            int len = kraken_level_text(s, lv, scale, out->text[i]);
            if (len == 0) {
                return 0;
            }
            out->len[i] = (uint8_t)len;
        }
        crc = crc32_add(crc, out->text[i], out->len[i]);
        out->states[i + 1] = crc;
    }
    out->count = count;
    out->total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        out->total += out->len[i];
    }
    *crc_io = crc;
    return 1;
}

/* ldc_fb_kraken_crc32 through a cache of the last one: the CRC is a pure function of the top n levels' doubles
 * (and n and the decimals), so a side whose top n is bitwise what it was (a copy of it is kept) has the same text.
 * Both sides unchanged: the last CRC. Otherwise a changed side is hashed again from its first changed level (the
 * CRC register after each level is kept: the asks' from the CRC's start, the bids' from 0, so that they do not
 * depend on the asks), each level that was in the kept top taking its kept text, and the two are combined (the
 * asks' register shifted by the bids' length, xor the bids'). n above KRAKEN_CACHE_LEVELS, or the cache switched
 * off (cache->off): computed whole, every time */
int ldc_fb_kraken_crc32_cached(const FastBook *self, Py_ssize_t n, int price_decimals, int size_decimals,
                               KrakenCrcCache *cache, long long *out)
{
    if (cache->off || n > KRAKEN_CACHE_LEVELS || !kraken_decimals_fast(price_decimals, size_decimals)) {
        cache->valid = 0;
        return ldc_fb_kraken_crc32(self, n, price_decimals, size_decimals, out);
    }
    const Side *sides[2] = {&self->asks, &self->bids};
    Py_ssize_t counts[2], prefix[2];
    int same[2];
    if (!(cache->valid && cache->n == n && cache->price_decimals == price_decimals &&
          cache->size_decimals == size_decimals)) {
        for (int k = 0; k < 2; k++) { /* nothing kept holds for these settings */
            cache->sides[k][cache->current[k]].count = 0;
            cache->sides[k][cache->current[k]].states[0] = 0;
        }
        cache->valid = 0;
    }
    for (int k = 0; k < 2; k++) {
        const KrakenSideCache *kept = &cache->sides[k][cache->current[k]];
        counts[k] = side_len(sides[k]) < n ? side_len(sides[k]) : n;
        prefix[k] = kraken_same_prefix(sides[k], counts[k], kept);
        same[k] = cache->valid && prefix[k] == counts[k] && counts[k] == kept->count;
    }
    if (same[0] && same[1]) {
        cache->reused++;
        *out = cache->crc;
        return 1;
    }
    const double scale[2] = {POW10[price_decimals], POW10[size_decimals]};
    const uint32_t starts[2] = {0xFFFFFFFFu, 0}; /* the asks from the CRC's start; the bids from 0, combined */
    uint32_t ends[2];
    cache->valid = 0; /* until both sides are kept again */
    for (int k = 0; k < 2; k++) {
        const KrakenSideCache *kept = &cache->sides[k][cache->current[k]];
        if (same[k]) {
            ends[k] = kept->states[kept->count];
            continue;
        }
        KrakenSideCache *next = &cache->sides[k][!cache->current[k]];
        if (!kraken_side_cached(sides[k], counts[k], prefix[k], scale, kept, next, starts[k], &ends[k])) {
            for (int side = 0; side < 2; side++) { /* nothing kept: the next one starts afresh */
                cache->sides[side][cache->current[side]].count = 0;
            }
            return 0;
        }
        cache->current[k] = !cache->current[k];
    }
    /* the register after the asks then the bids: the bids' own (from 0) xor the asks' shifted by the bids' length */
    uint32_t crc = multmodp(crc32_zeros[cache->sides[1][cache->current[1]].total], ends[0]) ^ ends[1];
    cache->bids_only += same[0];
    cache->n = n;
    cache->price_decimals = price_decimals;
    cache->size_decimals = size_decimals;
    cache->crc = (long long)(crc ^ 0xFFFFFFFFu);
    cache->valid = 1;
    *out = cache->crc;
    return 1;
}

PyObject *ldc_fb_fastbook_kraken_crc32(FastBook *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "kraken_crc32(n, price_decimals, size_decimals): expected 3 arguments, found %zd", nargs);
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    long given[2] = {PyLong_AsLong(args[1]), PyLong_AsLong(args[2])};
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0 || given[0] < 0 || given[1] < 0) {
        PyErr_Format(PyExc_ValueError, "kraken_crc32: expected n >= 0 and decimals >= 0, found %zd, %ld, %ld", n,
                     given[0], given[1]);
        return NULL;
    }
    long long crc;
    if (given[0] > FAST_POW10_MAX || given[1] > FAST_POW10_MAX ||
        !ldc_fb_kraken_crc32(self, n, (int)given[0], (int)given[1], &crc)) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(crc);
}
