/*
 * ldc._spool -- the recording's hot path (ldc/record.py): each socket read's frames are copied, as the
 * lines "<receive ns> <frame>\n", into a bounded ring buffer by one call, and a native writer thread (no
 * Python, never the GIL) writes the ring to the current spool file descriptor in large writev()s.
 *
 * Contract:
 *   - append(frames, recv_time_ns) and append_line(line) never wait for the disk: when the ring lacks room
 *     (or recording failed, or the spool is closed) the lines are dropped and counted, the call returns False.
 *     A line feed inside a frame (JSON whitespace) is written as a space: one line per frame.
 *   - The writer wakes every poll_ms, or at once when WAKE_BYTES are pending, and writes every complete
 *     line appended so far. Every line in a file is complete unless the process dies inside a write().
 *     Whenever the ring is empty it starts again at its first byte: in the steady state the lines go
 *     through the first few hundred KB of the ring, still in cache when written (a ring walked end to end
 *     cost a cache miss and, the first time, a page fault on every line); the rest absorbs a slow disk.
 *   - switch(fd) makes fd the file of every line not yet written, after the lines already appended are
 *     written to the previous one; it returns the previous descriptor (-1 at the first), which the caller
 *     closes. The caller owns every descriptor; the writer only writes to them.
 *   - A write error stops the spool for good: its errno is in stats(), every line appended and not written is
 *     counted as dropped, and so is every later one. fail(errno) does the same for the caller's errors.
 *   - close() writes what is appended and ends the writer thread.
 * Counts are of lines: frames (append) and snapshots (append_line), appended / written / dropped. A mutex
 * guards the counts and the ring's two ends; the copies are made under it (a read's frames are a few KB).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* pthread_setname_np */
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PREFIX_MAX 24   /* "<u64 in decimal> ": 20 digits and a space */
#define WAKE_BYTES (256 * 1024) /* the writer is woken at this much pending: the lines are still in cache */
#define WAKE_FRACTION 8        /* ... or at 1/8 of a smaller ring */
#define MIN_CAPACITY 64 /* bytes: tests fill small rings */
#define RESERVE_BYTES (16 * 1024 * 1024) /* fallocate'd ahead of the writes: ext4 then costs ~0.10 us per KB
                                            written instead of ~0.17 (blocks not reserved page by page) */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the writer waits on it */
    pthread_cond_t done; /* switch() and close() wait on it */
    pthread_t thread;
    char *buf;
    uint64_t cap, wake_bytes;
    uint64_t head, tail; /* bytes ever appended / ever written (or discarded): head - tail are pending */
    long poll_ms;
    uint64_t frames_in, snapshots_in;   /* lines accepted into the ring */
    uint64_t frames_out, snapshots_out; /* lines written to a file */
    uint64_t dropped;                   /* lines refused by append (no room, failed, closed) */
    uint64_t file_bytes, total_bytes;   /* written to the current file / to every file */
    uint64_t reserved;                  /* bytes of the current file fallocate'd (beyond its size) */
    int fd, next_fd, prev_fd;
    int switch_req, stop, stopped, thread_started;
    int failed_errno; /* 0 while the spool works */
} Spool;

/* -- the ring (caller holds the lock and has checked the room) ------------------------------------------- */

static void ring_put(Spool *s, const char *src, uint64_t len)
{
    uint64_t pos = s->head % s->cap;
    uint64_t first = len < s->cap - pos ? len : s->cap - pos;
    memcpy(s->buf + pos, src, first);
    memcpy(s->buf, src + first, len - first);
    s->head += len;
}

static void ring_put_frame(Spool *s, const char *src, uint64_t len)
{
    uint64_t start = s->head;
    ring_put(s, src, len);
    const char *nl = memchr(src, '\n', len);
    while (nl != NULL) { /* rare: one line per frame all the same */
        uint64_t off = (uint64_t)(nl - src);
        s->buf[(start + off) % s->cap] = ' ';
        nl = memchr(nl + 1, '\n', len - off - 1);
    }
}

static int format_prefix(char *out, unsigned long long stamp)
{
    char digits[PREFIX_MAX];
    int n = 0;
    do {
        digits[n++] = (char)('0' + stamp % 10);
        stamp /= 10;
    } while (stamp != 0);
    for (int i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    out[n] = ' ';
    return n + 1;
}

/* -- the writer thread ----------------------------------------------------------------------------------- */

static int write_all(int fd, struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t n = writev(fd, iov, count);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        while (count > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* Write the lines pending now to the current file; the lock is released during the write. */
static void drain_once(Spool *s)
{
    uint64_t from = s->tail, to = s->head, frames = s->frames_in, snapshots = s->snapshots_in;
    int fd = s->fd; /* only this thread changes it */
    if (from == to || fd < 0 || s->failed_errno) {
        return;
    }
    uint64_t pos = from % s->cap, len = to - from;
    uint64_t first = len < s->cap - pos ? len : s->cap - pos;
    struct iovec iov[2] = {{s->buf + pos, first}, {s->buf, len - first}};
    uint64_t reserve_from = s->reserved, reserve_len = 0;
    if (s->file_bytes + len > s->reserved) {
        uint64_t short_by = s->file_bytes + len - s->reserved;
        reserve_len = short_by > RESERVE_BYTES ? short_by : RESERVE_BYTES;
        s->reserved += reserve_len;
    }
    pthread_mutex_unlock(&s->lock);
    if (reserve_len != 0) { /* a file system without it (or a full disk) answers the write itself */
        (void)fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)reserve_from, (off_t)reserve_len);
    }
    int err = write_all(fd, iov, len > first ? 2 : 1);
    pthread_mutex_lock(&s->lock);
    if (err != 0) {
        if (!s->failed_errno) {
            s->failed_errno = err;
        }
        return;
    }
    s->tail = to;
    s->frames_out = frames;
    s->snapshots_out = snapshots;
    s->file_bytes += len;
    s->total_bytes += len;
    if (s->head == s->tail) { /* empty: start again at the ring's first byte, whose pages are warm in cache */
        s->head = s->tail = (s->head + s->cap - 1) / s->cap * s->cap;
    }
}

static void wait_for_work(Spool *s)
{
    if (s->stop || s->switch_req || (s->fd >= 0 && s->head - s->tail >= s->wake_bytes)) {
        return;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += s->poll_ms / 1000;
    until.tv_nsec += (s->poll_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->wake, &s->lock, &until);
}

static void *writer_main(void *arg)
{
    Spool *s = arg;
    pthread_setname_np(pthread_self(), "ldc-spool"); /* its CPU is told apart in /proc/PID/task (the bench) */
    pthread_mutex_lock(&s->lock);
    for (;;) {
        wait_for_work(s);
        drain_once(s);
        if (s->failed_errno) {
            s->tail = s->head; /* nothing more is written: the ring's lines are counted as lost (stats) */
        }
        if (s->switch_req) { /* what was appended before the request is in the previous file */
            s->prev_fd = s->fd;
            s->fd = s->next_fd;
            s->file_bytes = s->reserved = 0;
            s->switch_req = 0;
            pthread_cond_broadcast(&s->done);
            continue;
        }
        if (s->stop && (s->head == s->tail || s->fd < 0 || s->failed_errno)) {
            break; /* appends are refused once stop is set: this ends */
        }
    }
    s->stopped = 1;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* -- the Python type ------------------------------------------------------------------------------------- */

static int Spool_init(Spool *s, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"capacity", "poll_ms", NULL};
    Py_ssize_t capacity;
    long poll_ms;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "nl", names, &capacity, &poll_ms)) {
        return -1;
    }
    if (s->buf != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Spool() is initialised once");
        return -1;
    }
    if (capacity < MIN_CAPACITY || poll_ms < 1) {
        PyErr_Format(PyExc_ValueError, "Spool() expected capacity >= %d bytes and poll_ms >= 1, found %zd and %ld",
                     MIN_CAPACITY, capacity, poll_ms);
        return -1;
    }
    s->buf = PyMem_RawMalloc((size_t)capacity); /* untouched pages cost no memory until the ring reaches them */
    if (s->buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->cap = (uint64_t)capacity;
    s->wake_bytes = s->cap / WAKE_FRACTION < WAKE_BYTES ? s->cap / WAKE_FRACTION : WAKE_BYTES;
    s->poll_ms = poll_ms;
    s->fd = s->next_fd = s->prev_fd = -1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, &attr);
    pthread_cond_init(&s->done, &attr);
    pthread_condattr_destroy(&attr);
    int err = pthread_create(&s->thread, NULL, writer_main, s);
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    s->thread_started = 1;
    return 0;
}

static void stop_writer(Spool *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->thread_started = 0;
}

static void Spool_dealloc(Spool *s)
{
    if (s->thread_started) {
        Py_BEGIN_ALLOW_THREADS
        stop_writer(s);
        Py_END_ALLOW_THREADS
    }
    if (s->buf != NULL) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->done);
        PyMem_RawFree(s->buf);
    }
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* An int argument (PyLong_AsInt is Python 3.13's): -1 with an exception set when it is not one. */
static int as_int(PyObject *arg, const char *what)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < INT_MIN || value > INT_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s expected an int, found %ld", what, value);
        return -1;
    }
    return (int)value;
}

static int check_ready(Spool *s)
{
    if (s->buf == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Spool used before __init__");
        return -1;
    }
    return 0;
}

/* Room for len more bytes and the spool open; else the lines are counted as dropped. Lock held. */
static int accepts(Spool *s, uint64_t len, uint64_t lines)
{
    if (s->stop || s->failed_errno || s->cap - (s->head - s->tail) < len) {
        s->dropped += lines;
        return 0;
    }
    return 1;
}

static void woken_if_due(Spool *s, uint64_t before)
{
    uint64_t after = s->head - s->tail;
    if (before < s->wake_bytes && after >= s->wake_bytes) {
        pthread_cond_signal(&s->wake);
    }
}

static PyObject *Spool_append(Spool *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_ready(s) < 0) {
        return NULL;
    }
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "append() expected (frames: list[bytes], recv_time_ns: int), found %zd arguments",
                     nargs);
        return NULL;
    }
    unsigned long long stamp = PyLong_AsUnsignedLongLong(args[1]);
    if (stamp == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *frames = args[0];
    Py_ssize_t count = PyList_GET_SIZE(frames);
    char prefix[PREFIX_MAX];
    uint64_t plen = (uint64_t)format_prefix(prefix, stamp), total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *frame = PyList_GET_ITEM(frames, i);
        if (!PyBytes_Check(frame)) {
            PyErr_Format(PyExc_TypeError, "append() expected bytes frames, found %s at index %zd",
                         Py_TYPE(frame)->tp_name, i);
            return NULL;
        }
        total += plen + (uint64_t)PyBytes_GET_SIZE(frame) + 1;
    }
    pthread_mutex_lock(&s->lock);
    if (count == 0 || !accepts(s, total, (uint64_t)count)) {
        pthread_mutex_unlock(&s->lock);
        return PyBool_FromLong(count == 0);
    }
    uint64_t before = s->head - s->tail;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *frame = PyList_GET_ITEM(frames, i);
        ring_put(s, prefix, plen);
        ring_put_frame(s, PyBytes_AS_STRING(frame), (uint64_t)PyBytes_GET_SIZE(frame));
        ring_put(s, "\n", 1);
    }
    s->frames_in += (uint64_t)count;
    woken_if_due(s, before);
    pthread_mutex_unlock(&s->lock);
    Py_RETURN_TRUE;
}

static PyObject *Spool_append_line(Spool *s, PyObject *line)
{
    if (check_ready(s) < 0) {
        return NULL;
    }
    if (!PyBytes_Check(line) || PyBytes_GET_SIZE(line) == 0 || PyBytes_AS_STRING(line)[PyBytes_GET_SIZE(line) - 1] != '\n') {
        PyErr_Format(PyExc_ValueError, "append_line() expected bytes ending in a line feed, found %s",
                     Py_TYPE(line)->tp_name);
        return NULL;
    }
    uint64_t len = (uint64_t)PyBytes_GET_SIZE(line);
    pthread_mutex_lock(&s->lock);
    if (!accepts(s, len, 1)) {
        pthread_mutex_unlock(&s->lock);
        Py_RETURN_FALSE;
    }
    uint64_t before = s->head - s->tail;
    ring_put(s, PyBytes_AS_STRING(line), len);
    s->snapshots_in += 1;
    woken_if_due(s, before);
    pthread_mutex_unlock(&s->lock);
    Py_RETURN_TRUE;
}

static PyObject *Spool_switch(Spool *s, PyObject *arg)
{
    if (check_ready(s) < 0) {
        return NULL;
    }
    int fd = as_int(arg, "switch()");
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int prev = -1, refused = 0;
    Py_BEGIN_ALLOW_THREADS /* the writer may be inside a slow write: only this caller waits */
    pthread_mutex_lock(&s->lock);
    if (s->stop) {
        refused = 1;
    } else {
        s->next_fd = fd;
        s->switch_req = 1;
        pthread_cond_signal(&s->wake);
        while (s->switch_req && !s->stopped) {
            pthread_cond_wait(&s->done, &s->lock);
        }
        prev = s->prev_fd;
    }
    pthread_mutex_unlock(&s->lock);
    Py_END_ALLOW_THREADS
    if (refused) {
        PyErr_SetString(PyExc_RuntimeError, "switch() on a closed spool");
        return NULL;
    }
    return PyLong_FromLong(prev);
}

static PyObject *Spool_fail(Spool *s, PyObject *arg)
{
    if (check_ready(s) < 0) {
        return NULL;
    }
    int err = as_int(arg, "fail()");
    if (err == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (err <= 0) {
        PyErr_Format(PyExc_ValueError, "fail() expected an errno > 0, found %d", err);
        return NULL;
    }
    pthread_mutex_lock(&s->lock);
    if (!s->failed_errno) {
        s->failed_errno = err;
    }
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    Py_RETURN_NONE;
}

static PyObject *Spool_close(Spool *s, PyObject *unused)
{
    (void)unused;
    if (check_ready(s) < 0) {
        return NULL;
    }
    if (s->thread_started) {
        Py_BEGIN_ALLOW_THREADS
        stop_writer(s);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* (frames written, snapshots written, dropped, errno, bytes in the current file, bytes written in all, pending
 * bytes). Lines appended and not written count as dropped once the spool failed or closed: nothing writes them. */
static PyObject *Spool_stats(Spool *s, PyObject *unused)
{
    (void)unused;
    if (check_ready(s) < 0) {
        return NULL;
    }
    pthread_mutex_lock(&s->lock);
    uint64_t lost = 0;
    if (s->failed_errno || s->stopped) {
        lost = (s->frames_in - s->frames_out) + (s->snapshots_in - s->snapshots_out);
    }
    PyObject *out = Py_BuildValue("KKKiKKK", (unsigned long long)s->frames_out, (unsigned long long)s->snapshots_out,
                                  (unsigned long long)(s->dropped + lost), s->failed_errno,
                                  (unsigned long long)s->file_bytes, (unsigned long long)s->total_bytes,
                                  (unsigned long long)(s->head - s->tail));
    pthread_mutex_unlock(&s->lock);
    return out;
}

static PyMethodDef Spool_methods[] = {
    {"append", (PyCFunction)(void (*)(void))Spool_append, METH_FASTCALL,
     "append(frames, recv_time_ns) -> bool: one read's frames as lines; False: dropped (counted)"},
    {"append_line", (PyCFunction)Spool_append_line, METH_O,
     "append_line(line) -> bool: one whole snapshot line ending in a line feed; False: dropped (counted)"},
    {"switch", (PyCFunction)Spool_switch, METH_O,
     "switch(fd) -> int: later lines go to fd once the earlier ones are written; the previous fd (-1: none)"},
    {"fail", (PyCFunction)Spool_fail, METH_O, "fail(errno): stop for good, as after a write error"},
    {"close", (PyCFunction)Spool_close, METH_NOARGS, "close(): write what is appended, end the writer thread"},
    {"stats", (PyCFunction)Spool_stats, METH_NOARGS,
     "stats() -> (frames, snapshots, dropped, errno, file_bytes, total_bytes, pending_bytes)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SpoolType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ldc._spool.Spool",
    .tp_basicsize = sizeof(Spool),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A bounded ring of recording lines written to a file descriptor by a native thread.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Spool_init,
    .tp_dealloc = (destructor)Spool_dealloc,
    .tp_methods = Spool_methods,
};

static struct PyModuleDef spool_module = {
    PyModuleDef_HEAD_INIT, "ldc._spool", "The recording's spool: lines into a ring, written by a native thread.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__spool(void)
{
    if (PyType_Ready(&SpoolType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&spool_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&SpoolType);
    if (PyModule_AddObject(module, "Spool", (PyObject *)&SpoolType) < 0) {
        Py_DECREF(&SpoolType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
