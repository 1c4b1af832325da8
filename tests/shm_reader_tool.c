/* The C side of tests/test_shm_contract.py and tests/test_shm_takeover.py, built on readers/c/ldc.h
 * exactly as its README tells a caller to use it (ldc_replaced() on every result that is not
 * LDC_OK, LDC_OUT_OF_SYNC or LDC_GONE).
 *
 *   shm_reader_tool watch GROUP SYMBOL     one read per line of stdin: {"result","update_id","status"}
 *   shm_reader_tool spin GROUP SYMBOL MS [--attach-each]
 *                                          reads as fast as it can for MS ms (with --attach-each,
 *                                          each read from a fresh ldc_open); per data cycle
 *                                          (update_id / 10^9) the number of reads accepted live and
 *                                          in sync, and the CLOCK_MONOTONIC start times of the last
 *                                          TAIL of them (the takeover torture test compares them
 *                                          with the times the writers were reaped); it stops
 *                                          early once the segment says STOPPED
 *   shm_reader_tool timeline GROUP SYMBOL MS
 *                                          reads as fast as it can for MS ms (or until STOPPED) and
 *                                          prints the runs of reads accepted live and in sync per
 *                                          writer pid ([pid, first start, last start, count],
 *                                          CLOCK_MONOTONIC ns) and books to check against the truth
 *                                          (the first SAMPLE_AFTER_CHANGE of each run, then one every
 *                                          SAMPLE_EVERY_MS): tests/test_standby.py's C reader
 */
#include "ldc.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define CYCLE 1000000000LL
#define MAX_CYCLES 4096
#define TAIL 256

typedef struct {
    ldc_segment seg;
    ldc_market m;
    int found;
    ldc_level *bids, *asks;
    char *message;
    const char *group, *symbol;
} tool;

static const char *result_name(int rc) {
    static const char *names[] = {"ok", "out_of_sync", "gone", "contended", "writer_dead", "writer_dead_no_copy", "not_found"};
    return rc >= 0 && rc <= LDC_NOT_FOUND ? names[rc] : "error";
}

static int buffers(tool *t) {
    free(t->bids);
    free(t->asks);
    free(t->message);
    t->bids = calloc(t->seg.depth, sizeof *t->bids);
    t->asks = calloc(t->seg.depth, sizeof *t->asks);
    t->message = calloc(t->seg.message_size, 1);
    return t->bids && t->asks && t->message;
}

/* Follow a replaced segment: open the new one, and only once that worked close the old one. */
static int follow(tool *t) {
    if (!ldc_replaced(&t->seg)) return 0;
    ldc_segment fresh;
    char err[256];
    if (ldc_open(&fresh, t->group, err, sizeof err) != LDC_OK) return 0;
    ldc_close(&t->seg);
    t->seg = fresh;
    t->found = 0;
    return buffers(t);
}

/* One read with the checks and the follow of LAYOUT.md section 10. */
static int read_once(tool *t, ldc_slot_header *h) {
    for (int attempt = 0; attempt < 3; attempt++) {
        int rc = LDC_NOT_FOUND;
        if (!t->found) t->found = ldc_find(&t->seg, t->symbol, &t->m) == LDC_OK;
        if (t->found) rc = ldc_read(&t->seg, &t->m, h, t->bids, t->asks, t->message);
        if (rc == LDC_OK || rc == LDC_OUT_OF_SYNC) return rc;
        if (rc == LDC_GONE) {
            t->found = 0;
            continue;
        }
        if (!follow(t)) return rc;
    }
    return LDC_CONTENDED;
}

static int watch(tool *t) {
    char line[64];
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        ldc_slot_header h = {0};
        int rc = read_once(t, &h);
        printf("{\"result\":\"%s\",\"update_id\":%lld,\"status\":%u}\n", result_name(rc), (long long)h.update_id, h.status);
        fflush(stdout);
    }
    return 0;
}

/* A fresh attach for every read: ldc_open, find, read, close (a reader that may attach mid-takeover). */
static int read_fresh(tool *t, ldc_slot_header *h) {
    ldc_segment fresh;
    char err[256];
    if (ldc_open(&fresh, t->group, err, sizeof err) != LDC_OK) return LDC_NOT_FOUND;
    ldc_close(&t->seg);
    t->seg = fresh;
    t->found = 0;
    if (!buffers(t)) return LDC_NOT_FOUND;
    return read_once(t, h);
}

static int spin(tool *t, long ms, int attach_each) {
    static long long counts[MAX_CYCLES];
    static int64_t tails[MAX_CYCLES][TAIL];
    static int heads[MAX_CYCLES];
    long long reads = 0, accepted = 0;
    int64_t end = ldc__now(CLOCK_MONOTONIC) + (int64_t)ms * 1000000LL;
    for (;;) {
        int64_t t0 = ldc__now(CLOCK_MONOTONIC);
        if (t0 >= end) break;
        ldc_slot_header h;
        reads++;
        int rc = attach_each ? read_fresh(t, &h) : read_once(t, &h);
        if ((rc == LDC_WRITER_DEAD || rc == LDC_WRITER_DEAD_NO_COPY) && ldc_liveness(&t->seg) == LDC_LIVE_STOPPED)
            break; /* the test's last writer stopped cleanly: the run is over */
        if (rc == LDC_OK) {
            long long cycle = h.update_id / CYCLE;
            if (cycle < 0 || cycle >= MAX_CYCLES) continue;
            accepted++;
            tails[cycle][heads[cycle]] = t0;
            heads[cycle] = (heads[cycle] + 1) % TAIL;
            counts[cycle]++;
        } else if (reads % 64 == 0) {
            sched_yield(); /* a writer restarting on a loaded host needs the CPU */
        }
    }
    printf("{\"reads\":%lld,\"accepted\":%lld,\"cycles\":{", reads, accepted);
    int first = 1;
    for (int c = 0; c < MAX_CYCLES; c++) {
        if (!counts[c]) continue;
        printf("%s\"%d\":{\"count\":%lld,\"tail\":[", first ? "" : ",", c, counts[c]);
        long long n = counts[c] < TAIL ? counts[c] : TAIL;
        for (long long i = 0; i < n; i++) printf("%s%lld", i ? "," : "", (long long)tails[c][i]);
        printf("]}");
        first = 0;
    }
    printf("}}\n");
    return 0;
}

#define MAX_RUNS 1024
#define MAX_SAMPLES 4096
#define SAMPLE_LEVELS 20 /* levels kept per side of a sampled book */
#define SAMPLE_AFTER_CHANGE 3
#define SAMPLE_EVERY_MS 50
#define TIMELINE_PAUSE_NS 200000L /* between reads: the feeders restarting on a loaded 2-core host need the CPU */

typedef struct {
    int64_t update_id;
    uint32_t nb, na;
    ldc_level bids[SAMPLE_LEVELS], asks[SAMPLE_LEVELS];
} sample;

static void print_levels(const ldc_level *levels, uint32_t n) {
    printf("[");
    for (uint32_t i = 0; i < n; i++) printf("%s[%.17g,%.17g]", i ? "," : "", levels[i].price, levels[i].qty);
    printf("]");
}

/* Everything is kept in memory and printed at the end: a pipe nobody reads while we spin must not block us. */
static int timeline(tool *t, long ms) {
    static int64_t runs[MAX_RUNS][4];
    static sample samples[MAX_SAMPLES];
    int nruns = 0, fresh = 0, nsamples = 0;
    long long results[8] = {0};
    int64_t end = ldc__now(CLOCK_MONOTONIC) + (int64_t)ms * 1000000LL, next_sample = 0;
    for (;;) {
        int64_t t0 = ldc__now(CLOCK_MONOTONIC);
        if (t0 >= end) break;
        ldc_slot_header h;
        int rc = read_once(t, &h);
        results[rc >= 0 && rc < 8 ? rc : 7]++;
        if ((rc == LDC_WRITER_DEAD || rc == LDC_WRITER_DEAD_NO_COPY) && ldc_liveness(&t->seg) == LDC_LIVE_STOPPED) break;
        nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = TIMELINE_PAUSE_NS}, NULL);
        if (rc != LDC_OK) continue;
        int64_t pid = t->seg.hdr->writer_pid; /* written once before magic: the writer of the file read */
        if (nruns == 0 || runs[nruns - 1][0] != pid) {
            if (nruns == MAX_RUNS) break;
            runs[nruns][0] = pid, runs[nruns][1] = t0, runs[nruns][2] = t0, runs[nruns][3] = 0;
            nruns++;
            fresh = SAMPLE_AFTER_CHANGE;
        }
        runs[nruns - 1][2] = t0;
        runs[nruns - 1][3]++;
        if ((fresh > 0 || t0 >= next_sample) && nsamples < MAX_SAMPLES) {
            sample *sm = &samples[nsamples++];
            sm->update_id = h.update_id;
            sm->nb = h.n_bids < SAMPLE_LEVELS ? h.n_bids : SAMPLE_LEVELS; /* ldc_read clamps to depth */
            sm->na = h.n_asks < SAMPLE_LEVELS ? h.n_asks : SAMPLE_LEVELS;
            memcpy(sm->bids, t->bids, sm->nb * sizeof *t->bids);
            memcpy(sm->asks, t->asks, sm->na * sizeof *t->asks);
            if (fresh > 0) fresh--;
            next_sample = t0 + SAMPLE_EVERY_MS * 1000000LL;
        }
    }
    printf("{\"samples\":[");
    for (int i = 0; i < nsamples; i++) {
        printf("%s[%lld,", i ? "," : "", (long long)samples[i].update_id);
        print_levels(samples[i].bids, samples[i].nb);
        printf(",");
        print_levels(samples[i].asks, samples[i].na);
        printf("]");
    }
    printf("],\"runs\":[");
    for (int i = 0; i < nruns; i++)
        printf("%s[%lld,%lld,%lld,%lld]", i ? "," : "", (long long)runs[i][0], (long long)runs[i][1], (long long)runs[i][2], (long long)runs[i][3]);
    printf("],\"results\":{");
    for (int i = 0; i < 8; i++) printf("%s\"%s\":%lld", i ? "," : "", i < 7 ? result_name(i) : "error", results[i]);
    printf("}}\n");
    return 0;
}

int main(int argc, char **argv) {
    int attach_each = argc == 6 && strcmp(argv[5], "--attach-each") == 0;
    int timed = strcmp(argv[1], "timeline") == 0;
    if (argc < 4 || (strcmp(argv[1], "watch") != 0 && strcmp(argv[1], "spin") != 0 && !timed) ||
        (strcmp(argv[1], "spin") == 0 && argc != 5 && !attach_each) || (timed && argc != 5)) {
        fprintf(stderr, "usage: %s watch GROUP SYMBOL | spin GROUP SYMBOL MS [--attach-each] | timeline GROUP SYMBOL MS\n", argv[0]);
        return 2;
    }
    tool t = {.group = argv[2], .symbol = argv[3]};
    char err[256];
    if (ldc_open(&t.seg, t.group, err, sizeof err) != LDC_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (!buffers(&t)) return 2;
    int rc = strcmp(argv[1], "watch") == 0 ? watch(&t) : timed ? timeline(&t, atol(argv[4])) : spin(&t, atol(argv[4]), attach_each);
    ldc_close(&t.seg);
    return rc;
}
