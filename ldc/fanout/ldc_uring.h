/* A minimal io_uring for the relay's send-and-sleep (issue 16): one ring of a few entries, raw
 * syscalls (no liburing), two operations: SEND on the NATS socket and FUTEX_WAIT on the origin's
 * notify_paced word, submitted together so that the send and the sleep after it are one syscall.
 *
 * Why: the server's thread, woken by the send with the kernel's "sync" hint, is placed on the
 * relay's CPU and preempts the relay as its send() returns; the relay is switched back in only to
 * call futex() and be switched out again (perf sched on the 2-vCPU test guest: ~600 such preemptions
 * a second at 5,000 updates/s, a context switch ~6 us there). Submitted with the wait, the send's
 * wake-up finds the relay already on its way to sleep in the same syscall.
 *
 * ring_open() refuses (returns -1, nothing kept) where io_uring is absent or forbidden (an old
 * kernel, io_uring_disabled, a seccomp filter) or lacks IORING_OP_FUTEX_WAIT (Linux < 6.7): the
 * caller then uses send() and futex(). The header's constants are defined here when the build
 * host's <linux/io_uring.h> predates them (they are kernel ABI). */
#ifndef LDC_URING_H
#define LDC_URING_H

#include <errno.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LDC_OP_FUTEX_WAIT 51 /* IORING_OP_FUTEX_WAIT, Linux 6.7 */
#define LDC_FUTEX2_SIZE_U32 0x02
#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_FEAT_EXT_ARG
#define IORING_FEAT_EXT_ARG (1U << 8)
#endif

enum { RING_SEND = 1, RING_FUTEX = 2 }; /* user_data of the two operations */

/* The 64-byte SQE and the getevents argument as the kernel ABI lays them out, defined here: the build
 * host's <linux/io_uring.h> names their fields differently across versions (addr3 since 5.19, the
 * getevents argument's `pad` renamed `min_wait_usec` in 6.12) */
struct ldc_sqe {
    uint8_t opcode, flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t off_addr2;   /* FUTEX_WAIT: the expected value */
    uint64_t addr;        /* SEND: the buffer; FUTEX_WAIT: the word */
    uint32_t len;
    uint32_t op_flags;    /* SEND: msg_flags; FUTEX_WAIT: futex_flags, 0 */
    uint64_t user_data;
    uint16_t buf_index, personality;
    uint32_t file_index;
    uint64_t addr3;       /* FUTEX_WAIT: the mask */
    uint64_t pad2;
};
_Static_assert(sizeof(struct ldc_sqe) == 64, "io_uring SQE is 64 bytes");

struct ldc_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;
};

typedef struct {
    int fd;                     /* -1: no ring */
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct ldc_sqe *sqes;
    struct io_uring_cqe *cqes;
    unsigned sq_entries;
    void *rings;
    size_t rings_size, sqes_size;
    unsigned queued;            /* SQEs written, not yet submitted */
    int futex_armed;            /* a FUTEX_WAIT is in flight (its completion not yet seen) */
    int send_armed;             /* a SEND is queued or in flight (its completion not yet seen) */
    int send_submitted;         /* ... and the kernel took it */
    int32_t send_res;           /* the last SEND's result (bytes, or -errno) */
    uint32_t send_len;          /* ... and the bytes it was given */
    int32_t futex_res;          /* the last FUTEX_WAIT's: 0 woken, -EAGAIN the word had moved; else the ring is unusable */
} Ring;

static inline void ring_init(Ring *r) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

static inline void ring_close(Ring *r) {
    if (r->fd < 0) return;
    if (r->sqes) munmap(r->sqes, r->sqes_size);
    if (r->rings) munmap(r->rings, r->rings_size);
    close(r->fd); /* cancels what is in flight */
    ring_init(r);
}

static inline int ring_supports(int fd, unsigned op) {
    size_t size = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, size);
    if (probe == NULL) return 0;
    int ok = syscall(__NR_io_uring_register, fd, IORING_REGISTER_PROBE, probe, 256) == 0 && op <= probe->last_op &&
             (probe->ops[op].flags & IO_URING_OP_SUPPORTED);
    free(probe);
    return ok;
}

/* 0 and a usable ring, or -1 (errno kept) and none */
static inline int ring_open(Ring *r) {
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL, /* 6.1 */
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL}; /* 5.19; a kernel with FUTEX_WAIT (6.7) has both */
    ring_init(r);
    int fd = -1;
    struct io_uring_params p;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0] && fd < 0; i++) {
        memset(&p, 0, sizeof p);
        p.flags = tries[i];
        fd = (int)syscall(__NR_io_uring_setup, 4, &p);
        if (fd < 0 && errno != EINVAL) return -1; /* absent or forbidden: no point in other flags */
    }
    if (fd < 0) return -1;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP) || !(p.features & IORING_FEAT_EXT_ARG) ||
        !ring_supports(fd, LDC_OP_FUTEX_WAIT)) {
        close(fd);
        errno = EOPNOTSUPP;
        return -1;
    }
    size_t sq = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    r->fd = fd;
    r->rings_size = sq > cq ? sq : cq;
    r->rings = mmap(NULL, r->rings_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    r->sqes_size = p.sq_entries * sizeof(struct ldc_sqe);
    r->sq_entries = p.sq_entries;
    r->sqes = mmap(NULL, r->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (r->rings == MAP_FAILED || r->sqes == MAP_FAILED) {
        int err = errno;
        if (r->rings == MAP_FAILED) r->rings = NULL;
        if (r->sqes == MAP_FAILED) r->sqes = NULL;
        ring_close(r);
        errno = err;
        return -1;
    }
    char *base = r->rings;
    r->sq_head = (unsigned *)(base + p.sq_off.head);
    r->sq_tail = (unsigned *)(base + p.sq_off.tail);
    r->sq_mask = (unsigned *)(base + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(base + p.sq_off.array);
    r->cq_head = (unsigned *)(base + p.cq_off.head);
    r->cq_tail = (unsigned *)(base + p.cq_off.tail);
    r->cq_mask = (unsigned *)(base + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(base + p.cq_off.cqes);
    return 0;
}

/* the next free SQE, or NULL when the submission ring is full (never with the two operations in flight
 * at most that the relay queues: its four entries leave room) */
static inline struct ldc_sqe *ring_sqe(Ring *r) {
    unsigned tail = *r->sq_tail + r->queued;
    if (tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE) >= r->sq_entries) return NULL;
    unsigned i = tail & *r->sq_mask;
    struct ldc_sqe *sqe = &r->sqes[i];
    memset(sqe, 0, sizeof *sqe);
    r->sq_array[i] = i;
    r->queued++;
    return sqe;
}

/* queue a non-blocking send of len bytes (no retry in the kernel: MSG_DONTWAIT makes EAGAIN final, and
 * without MSG_WAITALL a short send is final too); -1 when the ring is full */
static inline int ring_queue_send(Ring *r, int fd, const void *buf, size_t len) {
    struct ldc_sqe *sqe = len <= UINT32_MAX ? ring_sqe(r) : NULL;
    if (sqe == NULL) return -1;
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = (uint32_t)len;
    sqe->op_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
    sqe->user_data = RING_SEND;
    r->send_armed = 1;
    r->send_submitted = 0;
    r->send_len = (uint32_t)len;
    r->send_res = 0;
    return 0;
}

/* queue a wait on a shared (not private) u32 futex word while it holds val; -1 when the ring is full */
static inline int ring_queue_futex_wait(Ring *r, uint32_t *word, uint32_t val) {
    struct ldc_sqe *sqe = ring_sqe(r);
    if (sqe == NULL) return -1;
    sqe->opcode = LDC_OP_FUTEX_WAIT;
    sqe->fd = LDC_FUTEX2_SIZE_U32;
    sqe->addr = (uint64_t)(uintptr_t)word;
    sqe->off_addr2 = val;
    sqe->addr3 = 0xffffffffu; /* FUTEX_BITSET_MATCH_ANY: what FUTEX_WAKE wakes */
    sqe->user_data = RING_FUTEX;
    r->futex_armed = 1;
    return 0;
}

/* Harvest every completion: the send's result into send_res, the futex's clears futex_armed.
 * Returns how many were seen. */
static inline int ring_reap(Ring *r) {
    unsigned head = *r->cq_head, n = 0;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    while (head != tail) {
        struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
        if (cqe->user_data == RING_SEND) {
            r->send_res = cqe->res;
            r->send_armed = 0;
        } else if (cqe->user_data == RING_FUTEX) {
            r->futex_res = cqe->res;
            r->futex_armed = 0;
        }
        head++;
        n++;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    return (int)n;
}

/* 1 when a futex completion says the ring cannot wait (its op refused: not woken, not "moved", not
 * cancelled) */
static inline int ring_futex_broken(const Ring *r) {
    return r->futex_res != 0 && r->futex_res != -EAGAIN && r->futex_res != -EINTR && r->futex_res != -ECANCELED;
}

/* Submit what is queued and wait until `want` completions are in (the ones reaped since count) or
 * timeout_ns passes (relative; < 0: no wait at all). Returns 0, or -errno of io_uring_enter
 * (ETIME and EINTR are normal ends of a wait; with SQEs queued, any error means it took none, and -EIO
 * that it took only some, which SUBMIT_ALL leaves to a failed allocation: the caller gives the ring up); the
 * completions are reaped either way. IORING_SETUP_SUBMIT_ALL: the kernel takes every queued SQE or,
 * failing, none (an SQE it refuses completes with its error). */
static inline int ring_enter(Ring *r, unsigned want, int64_t timeout_ns) {
    unsigned submit = r->queued;
    if (submit) __atomic_store_n(r->sq_tail, *r->sq_tail + submit, __ATOMIC_RELEASE);
    r->queued = 0;
    struct __kernel_timespec ts = {.tv_sec = timeout_ns > 0 ? timeout_ns / 1000000000LL : 0,
                                   .tv_nsec = timeout_ns > 0 ? timeout_ns % 1000000000LL : 0};
    struct ldc_getevents_arg arg = {.sigmask = 0, .sigmask_sz = _NSIG / 8, .min_wait_usec = 0, .ts = (uint64_t)(uintptr_t)&ts};
    unsigned flags = timeout_ns >= 0 && want ? IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG : IORING_ENTER_EXT_ARG;
    long rc = syscall(__NR_io_uring_enter, r->fd, submit, timeout_ns >= 0 ? want : 0, flags, &arg, sizeof arg);
    int err = rc < 0 ? errno : 0;
    if (submit && rc > 0) r->send_submitted = r->send_armed; /* the SEND is queued first: taken when any was */
    ring_reap(r);
    if (submit && rc >= 0 && (unsigned long)rc < submit) return -EIO; /* the rest left in the ring: it is not used again */
    return -err;
}

#endif
