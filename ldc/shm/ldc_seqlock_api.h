/* The C API of ldc.shm._seqlock for other extensions of this package (ldc._fastbook's hot path):
 * a capsule holding function pointers, so that a book can be published into a slot without a Python
 * call and without a second copy of the seqlock write protocol.
 *
 *     const LdcSeqlockAPI *api = PyCapsule_Import(LDC_SEQLOCK_API_CAPSULE, 0);
 *
 * Every function takes the GIL-holding caller's Segment object and raises (returns -1 with a Python
 * exception set) exactly as Segment.publish does. */
#ifndef LDC_SEQLOCK_API_H
#define LDC_SEQLOCK_API_H

#include <Python.h>
#include <stdint.h>

#define LDC_SEQLOCK_API_CAPSULE "ldc.shm._seqlock._C_API"
#define LDC_SEQLOCK_API_VERSION 2

typedef struct {
    int version; /* LDC_SEQLOCK_API_VERSION */
    /* 1 when obj is a ldc.shm._seqlock.Segment, else 0 */
    int (*is_segment)(PyObject *obj);
    /* the segment's levels per side (its layout depth); -1 with an exception when it is not a Segment */
    Py_ssize_t (*depth)(PyObject *segment);
    /* Segment.publish(slot, update_id=, event_time_ms=, recv_time_ns=, status=, ...): with copy != 0 the
     * nb bids and na asks, (price, qty) doubles best first, become the slot's levels; 0 or -1 */
    int (*publish)(PyObject *segment, Py_ssize_t slot, int64_t update_id, int64_t event_ms, int64_t recv_ns,
                   uint32_t status, int copy, const double *bids, Py_ssize_t nb, const double *asks,
                   Py_ssize_t na);
    /* Segment.notify(): wake the readers blocked in wait_for_update (a futex wake only when one is registered) */
    int (*notify)(PyObject *segment);
} LdcSeqlockAPI;

#endif
