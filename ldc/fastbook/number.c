/* ldc._fastbook: JSON numbers read exactly, as the reference parsers read them (fastbook.h describes the whole);
 * shared by the dialects whose venues send prices as JSON numbers (HTX, Kraken v2) */
#include "fastbook.h"

/* Clinger's fast path for a number with an exponent ("9.121E-7", as scan_number validated it): digits m with
 * a fraction of k digits and exponent e are m * 10^(e - k); when m <= 2^53 and |e - k| <= 22, m and the power
 * are exact doubles and one IEEE multiplication or division rounds the exact value correctly. 1 done, 0 not
 * taken (dtoa reads it). */
static int exponent_fast(const char *s, Py_ssize_t n, double *out)
{
    const char *p = s, *end = s + n;
    uint64_t m = 0;
    int digits = 0, scale = 0;
    for (; p < end && (unsigned)(*p - '0') < 10; p++) {
        m = m * 10 + (uint64_t)(*p - '0');
        digits += m > 0;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && (unsigned)(*p - '0') < 10; p++, scale++) {
            m = m * 10 + (uint64_t)(*p - '0');
            digits += m > 0;
        }
    }
    if (digits > 19 || p >= end || (*p != 'e' && *p != 'E')) {
        return 0; /* m may have wrapped, or no exponent */
    }
    p++;
    int negative = p < end && *p == '-';
    p += p < end && (*p == '-' || *p == '+');
    int e = 0;
    for (; p < end && (unsigned)(*p - '0') < 10; p++) {
        if (e > 10000) {
            return 0;
        }
        e = e * 10 + (*p - '0');
    }
    if (p != end) {
        return 0;
    }
    int power = (negative ? -e : e) - scale;
    while (power < 0 && m % 10 == 0 && m > 0) { /* "1.10E-5": trailing zeros */
        m /= 10;
        power++;
    }
    if (m > FAST_MANTISSA_MAX || power > FAST_POW10_MAX || power < -FAST_POW10_MAX) {
        return 0;
    }
    *out = power >= 0 ? (double)m * POW10[power] : (double)m / POW10[-power];
    return 1;
}

/* A JSON number read as the reference reads it (json's int or Decimal, then float(): the correctly rounded
 * double of the exact decimal). 0 read, 1 a doubt (a sign: "-0.0" is -0.0 there; too long; not a number),
 * -1 a syntax error (exception set). */
int ldc_fb_exact_number(Scanner *sc, double *out)
{
    const char *from = sc->p;
    if (sc->p >= sc->end || (unsigned)(*sc->p - '0') >= 10) {
        return 1;
    }
    /* The common case in one pass: digits[.digits] (no leading zero before a digit, no exponent), at most 19
     * digits whose integer m <= 2^53 (trailing zeros of the fraction dropped) with a scale <= 22: m / 10^scale,
     * one correctly rounded division, what parse_decimal's fast path gives. Anything else goes the general way */
    const char *p = from, *end = sc->end;
    uint64_t m = 0;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && (unsigned)(*p - '0') < 10) {
            m = m * 10 + (uint64_t)(*p++ - '0');
        }
    }
    Py_ssize_t int_digits = p - from, scale = 0;
    int fast = p >= end || (unsigned)(*p - '0') >= 10; /* "01": the general way (its syntax error) */
    if (fast && p < end && *p == '.') {
        const char *frac = ++p;
        while (p < end && (unsigned)(*p - '0') < 10) {
            m = m * 10 + (uint64_t)(*p++ - '0');
        }
        scale = p - frac;
        fast = scale > 0;
    }
    if (fast && (p >= end || (*p != 'e' && *p != 'E')) && int_digits + scale <= 19) {
        while (scale > 0 && m % 10 == 0 && (m > FAST_MANTISSA_MAX || scale > FAST_POW10_MAX)) {
            m /= 10;
            scale--;
        }
        if (m <= FAST_MANTISSA_MAX && scale <= FAST_POW10_MAX) {
            *out = (double)m / POW10[scale];
            sc->p = p;
            return 0;
        }
    }
    if (ldc_fb_scan_number(sc) < 0) {
        return -1;
    }
    Py_ssize_t n = sc->p - from;
    if (memchr(from, 'e', (size_t)n) == NULL && memchr(from, 'E', (size_t)n) == NULL) {
        return parse_decimal(from, n, out) < 0 ? 1 : 0; /* digits[.digits]: Clinger's fast path or dtoa */
    }
    if (exponent_fast(from, n, out)) {
        return 0;
    }
    return dtoa_exact(from, n, out) == 0 && isfinite(*out) ? 0 : 1; /* dtoa: as float(Decimal) */
}
