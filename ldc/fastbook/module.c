/* ldc._fastbook: the module (fastbook.h describes the whole) */
#include "fastbook.h"

/* ------------------------------------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"parse_depth", (PyCFunction)ldc_fb_parse_depth, METH_O,
     "parse_depth(raw) -> ParsedDiff | None: a raw Binance depthUpdate (raw /ws or combined form).\n"
     "None when the message is not a depthUpdate; ValueError naming the field when it is malformed."},
    {"parse_snapshot_levels", (PyCFunction)(void (*)(void))ldc_fb_parse_snapshot_levels, METH_FASTCALL,
     "parse_snapshot_levels(raw, limit) -> (last_update_id, event_time_ms, bids, asks): a REST depth body.\n"
     "ValueError for anything ldc.venues.binance's reference parser might refuse (it names the fault)."},
    {"parse_okx", (PyCFunction)ldc_fb_parse_okx, METH_O,
     "parse_okx(raw) -> [(instId, ParsedDiff)] | None: an OKX v5 book update (C dialect of ldc.venues.okx).\n"
     "None for what the reference parser reads (control, other channels, snapshots); ValueError on any doubt."},
    {"parse_bybit", (PyCFunction)ldc_fb_parse_bybit, METH_O,
     "parse_bybit(raw) -> [(topic, ParsedDiff)] | None: a Bybit v5 book delta (C dialect of ldc.venues.bybit).\n"
     "None for what the reference parser reads (control, other topics, snapshots, u == 1); ValueError on any doubt."},
    {"parse_coinbase", (PyCFunction)ldc_fb_parse_coinbase, METH_O,
     "parse_coinbase(raw) -> [(product_id, ParsedDiff | DepthSnapshot)] | None: a Coinbase l2_data message, "
     "updates and snapshot events (C dialect of ldc.venues.coinbase).\nNone for what the reference reads (other "
     "channels, control); ValueError on any doubt."},
    {"parse_htx", (PyCFunction)ldc_fb_parse_htx, METH_O,
     "parse_htx(inflated) -> [(topic, ParsedDiff | DepthSnapshot)] | None: an HTX mbp update or depth.step0 book, "
     "gunzipped (C dialect of ldc.venues.htx).\nNone for what the reference reads (control, refused refreshes, other channels); "
     "ValueError on any doubt."},
    /* issue 15: Kraken v2 (dialect_kraken.c) */
    {"parse_kraken", (PyCFunction)(void (*)(void))ldc_fb_parse_kraken, METH_FASTCALL,
     "parse_kraken(raw, depth) -> [(symbol, ParsedDiff | DepthSnapshot)] | None: a Kraken v2 book message (C "
     "dialect of ldc.venues.kraken.parse_message).\nNone for what the reference reads (other channels, control); "
     "ValueError on any doubt."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastbook_module = {
    PyModuleDef_HEAD_INIT, "_fastbook", "The book hot path in C: parse_depth, ParsedDiff, FastBook, HotPath, Router, parse_snapshot_levels.", -1,
    module_methods, NULL, NULL, NULL, NULL};

/* PyModule_Add (3.13) for older Pythons: steals value, also on failure */
static int add_owned(PyObject *m, const char *name, PyObject *value)
{
    int rc = value == NULL ? -1 : PyModule_AddObjectRef(m, name, value);
    Py_XDECREF(value);
    return rc;
}

PyMODINIT_FUNC PyInit__fastbook(void)
{
    if (PyType_Ready(&ldc_fb_ParsedDiffType) < 0 || PyType_Ready(&ldc_fb_FastBookType) < 0 ||
        PyType_Ready(&ldc_fb_HotPathType) < 0 || PyType_Ready(&ldc_fb_RouterType) < 0 ||
        PyType_Ready(&ldc_fb_LevelsType) < 0 /* issue 15: snapshot sides read in C */ ||
        PyType_Ready(&ldc_fb_StreamRouterType) < 0) {
        return NULL;
    }
    ldc_fb_crc32_init();
    PyObject *m = PyModule_Create(&fastbook_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "ParsedDiff", (PyObject *)&ldc_fb_ParsedDiffType) < 0 ||
        PyModule_AddObjectRef(m, "FastBook", (PyObject *)&ldc_fb_FastBookType) < 0 ||
        PyModule_AddObjectRef(m, "HotPath", (PyObject *)&ldc_fb_HotPathType) < 0 ||
        PyModule_AddObjectRef(m, "Router", (PyObject *)&ldc_fb_RouterType) < 0 ||
        PyModule_AddObjectRef(m, "StreamRouter", (PyObject *)&ldc_fb_StreamRouterType) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_CHECKSUM_FAULT", ROUTE_CHECKSUM_FAULT) < 0 ||
        PyModule_AddIntConstant(m, "HOT_CHECKSUM_FAULT", HOT_CHECKSUM_FAULT) < 0 ||
        PyModule_AddIntConstant(m, "HOT_IGNORED", HOT_IGNORED) < 0 ||
        PyModule_AddIntConstant(m, "HOT_CRC_OKX", HOT_CRC_OKX) < 0 ||
        PyModule_AddIntConstant(m, "HOT_CRC_KRAKEN", HOT_CRC_KRAKEN) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_END", ROUTE_END) < 0 || PyModule_AddIntConstant(m, "ROUTE_DIFF", ROUTE_DIFF) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_TOP_FAULT", ROUTE_TOP_FAULT) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_CONTROL", ROUTE_CONTROL) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_MALFORMED", ROUTE_MALFORMED) < 0 ||
        PyModule_AddIntConstant(m, "HOT_PASS", HOT_PASS) < 0 || PyModule_AddIntConstant(m, "HOT_DONE", HOT_DONE) < 0 ||
        PyModule_AddIntConstant(m, "HOT_TOP_FAULT", HOT_TOP_FAULT) < 0 ||
        PyModule_AddIntConstant(m, "NO_ID", NO_ID) < 0 ||
        add_owned(m, "OKX_CHANNELS", ldc_fb_okx_channels_tuple()) < 0 ||
        PyModule_AddObjectRef(m, "Levels", (PyObject *)&ldc_fb_LevelsType) < 0 /* issue 15 */) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
