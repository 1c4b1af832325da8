/* ldc._fastbook: book sides (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * Book sides (fastbook.h, "Book layout", draws them)
 * ---------------------------------------------------------------------------------------------- */

int ldc_fb_side_init(Side *s, double sign)
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
int ldc_fb_side_set(Side *s, double price, double qty, Py_ssize_t depth)
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
Py_ssize_t ldc_fb_side_prune(Side *s, Py_ssize_t window)
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

Py_ssize_t ldc_fb_side_known(const Side *s) { return s->hi - lower_bound(s, s->boundary); }
