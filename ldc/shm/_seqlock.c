/* placeholder module, replaced by the real implementation */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_seqlock", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__seqlock(void) { return PyModule_Create(&mod); }
