/*
 * ldc.io._frames -- the common case of ldc.io.ws._FrameParser in C: whole, final, unmasked text and binary
 * frames from a server (RFC 6455 section 5.2), which is every depth message of a stream venue.
 *
 * split_frames(buffer, pos, end, out) walks buffer[pos:end] and appends (opcode, payload bytes) to the
 * list out for each such frame, in wire order, until it meets
 *   - a frame cut by the end of the bytes read: returns (pos of that frame, its whole size if its header
 *     is in, else 0, False), or
 *   - any other frame (a control frame, a fragment, a continuation, reserved bits, a mask, a 64-bit
 *     length): returns (pos of that frame, 0, True) and the Python parser handles that one frame, so every
 *     rule and every error message stays in one place (ws.py).
 * Lengths of 64 bits are left to Python too (it checks them against its message limit); 7- and 16-bit
 * lengths need no check.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define FIN_TEXT 0x81   /* FIN, no reserved bits, opcode 1 */
#define FIN_BINARY 0x82 /* FIN, no reserved bits, opcode 2 */
#define LEN_16BIT 126
#define LEN_64BIT 127

static PyObject *opcode_objects[3]; /* 1 and 2: the ints put in each (opcode, payload) */

static PyObject *split_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "split_frames() takes 4 arguments (buffer, pos, end, out), found %zd", nargs);
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *out = args[3];
    if (!PyList_CheckExact(out)) {
        PyErr_Format(PyExc_TypeError, "split_frames() out must be a list, found %s", Py_TYPE(out)->tp_name);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pos < 0 || end < pos || end > view.len) {
        PyErr_Format(PyExc_ValueError, "split_frames() needs 0 <= pos <= end <= %zd, found pos %zd end %zd", view.len,
                     pos, end);
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t want = 0;
    int uncommon = 0;
    while (end - pos >= 2) {
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        if ((b0 != FIN_TEXT && b0 != FIN_BINARY) || b1 >= LEN_64BIT) { /* b1 >= 127: masked, or 64-bit length */
            uncommon = 1;
            break;
        }
        Py_ssize_t size = b1, head = pos + 2;
        if (size == LEN_16BIT) {
            if (end - pos < 4) {
                break;
            }
            size = (Py_ssize_t)buf[pos + 2] << 8 | buf[pos + 3];
            head = pos + 4;
        }
        if (head + size > end) {
            want = head + size - pos;
            break;
        }
        PyObject *payload = PyBytes_FromStringAndSize((const char *)buf + head, size);
        PyObject *item = payload ? PyTuple_Pack(2, opcode_objects[b0 & 0x0F], payload) : NULL;
        Py_XDECREF(payload);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(item);
        pos = head + size;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnO)", pos, want, uncommon ? Py_True : Py_False);
}

static PyMethodDef module_methods[] = {
    {"split_frames", (PyCFunction)(void (*)(void))split_frames, METH_FASTCALL,
     "split_frames(buffer, pos, end, out) -> (pos, want, uncommon): whole final unmasked text / binary frames\n"
     "of buffer[pos:end] appended to out as (opcode, payload); see the module notes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef frames_module = {
    PyModuleDef_HEAD_INIT, "_frames", "RFC 6455 server frames, the common case in C (ldc.io.ws._FrameParser).", -1,
    module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__frames(void)
{
    for (int op = 1; op <= 2; op++) {
        opcode_objects[op] = PyLong_FromLong(op);
        if (opcode_objects[op] == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&frames_module);
}
