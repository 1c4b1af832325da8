/* Small helpers the C extensions that map a segment share (ldc.shm._seqlock, ldc.fanout._relay): one copy of
 * each, inlined where used. Not an API: nothing outside this package includes it. */
#ifndef LDC_SHM_INLINE_H
#define LDC_SHM_INLINE_H

#include <Python.h>
#include <stdint.h>
#include <time.h>

/* a spinning reader's pause between attempts */
static inline void ldc_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* clock_gettime(clk) in nanoseconds */
static inline int64_t ldc_clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* an offset or size of the layout dict (ldc.shm.layout.Geometry.c_layout()): 0, or -1 with KeyError / an error */
static inline int ldc_layout_get(PyObject *d, const char *key, Py_ssize_t *out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "layout has no %s", key);
        return -1;
    }
    *out = PyLong_AsSsize_t(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

#endif
