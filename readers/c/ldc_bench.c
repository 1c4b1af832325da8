/* ldc_bench GROUP SYMBOL SECONDS
 *
 * Validated reads of one market in a loop for SECONDS; prints JSON: median ns per validated read
 * (medians of batches of BATCH reads), reads, retries per read, results other than LDC_OK, and the
 * median publish-to-observe latency (CLOCK_REALTIME now minus the slot's publish_time_ns, taken on
 * the first read that sees a new update_id).
 * Driven by scripts/bench_read.py, which runs the writer (idle or publishing) beside it.
 */
#include "ldc.h"

#include <stdlib.h>

#define BATCH 1000
#define MAX_BATCHES 200000
#define MAX_LATENCIES 1000000

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s GROUP SYMBOL SECONDS\n", argv[0]);
        return 2;
    }
    ldc_segment seg;
    char err[256];
    if (ldc_open(&seg, argv[1], err, sizeof err) != LDC_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    ldc_market m;
    if (ldc_find(&seg, argv[2], &m) != LDC_OK) {
        fprintf(stderr, "market %s not found\n", argv[2]);
        return 2;
    }
    ldc_slot_header h;
    ldc_level *bids = aligned_alloc(64, (size_t)seg.depth * sizeof(ldc_level) + 64);
    ldc_level *asks = aligned_alloc(64, (size_t)seg.depth * sizeof(ldc_level) + 64);
    double *batch_ns = malloc(sizeof(double) * MAX_BATCHES);
    double *latency_ns = malloc(sizeof(double) * MAX_LATENCIES);
    if (!bids || !asks || !batch_ns || !latency_ns) return 2;
    size_t latencies = 0;
    int64_t last_id = INT64_MIN;
    int64_t deadline = ldc__now(CLOCK_MONOTONIC) + (int64_t)(atof(argv[3]) * 1e9);
    size_t batches = 0;
    uint64_t reads = 0, failures = 0;
    double checksum = 0;
    while (batches < MAX_BATCHES && ldc__now(CLOCK_MONOTONIC) < deadline) {
        int64_t t0 = ldc__now(CLOCK_MONOTONIC);
        for (int i = 0; i < BATCH; i++) {
            if (ldc_read(&seg, &m, &h, bids, asks, NULL) != LDC_OK) failures++;
            checksum += bids[0].price; /* keep the copy observable */
            if (h.update_id != last_id) {
                if (last_id != INT64_MIN && latencies < MAX_LATENCIES)
                    latency_ns[latencies++] = (double)(ldc__now(CLOCK_REALTIME) - h.publish_time_ns);
                last_id = h.update_id;
            }
        }
        batch_ns[batches++] = (double)(ldc__now(CLOCK_MONOTONIC) - t0) / BATCH;
        reads += BATCH;
    }
    qsort(batch_ns, batches, sizeof(double), cmp_double);
    qsort(latency_ns, latencies, sizeof(double), cmp_double);
    printf("{\"median_ns_per_read\":%.1f,\"reads\":%llu,\"retries_per_read\":%.6f,\"not_ok\":%llu,"
           "\"publish_to_observe_ns\":%.1f,\"observed_publishes\":%zu,\"checksum\":%.1f}\n",
           batches ? batch_ns[batches / 2] : 0.0, (unsigned long long)reads,
           reads ? (double)seg.retries / (double)reads : 0.0, (unsigned long long)failures,
           latencies ? latency_ns[latencies / 2] : -1.0, latencies, checksum);
    free(bids);
    free(asks);
    free(batch_ns);
    free(latency_ns);
    ldc_close(&seg);
    return 0;
}
