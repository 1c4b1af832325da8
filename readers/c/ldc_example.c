/* ldc_example GROUP SYMBOL [--wait SECONDS]
 * ldc_example GROUP --list
 *
 * Attaches to /dev/shm/ldc-GROUP, reads SYMBOL once (or after the next publish with --wait) and
 * prints one JSON object: ids, times, status, message, counters and every level with %.17g, so a
 * float prints back to the identical double. --list prints the market symbols as a JSON array.
 * Exit status: 0 in sync, 1 any other read result,
 * 2 cannot attach or find the market.
 */
#include "ldc.h"

#include <stdlib.h>

static const char *result_name(int rc) {
    static const char *names[] = {"ok", "out_of_sync", "gone", "contended", "writer_dead", "writer_dead_no_copy"};
    return rc >= 0 && rc <= LDC_WRITER_DEAD_NO_COPY ? names[rc] : "error";
}

static void print_levels(const char *name, const ldc_level *levels, uint32_t n) {
    printf("\"%s\":[", name);
    for (uint32_t i = 0; i < n; i++) printf("%s[%.17g,%.17g]", i ? "," : "", levels[i].price, levels[i].qty);
    printf("]");
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static int list_markets(ldc_segment *seg) {
    ldc_market *markets = calloc(seg->capacity, sizeof *markets);
    uint32_t n = 0;
    if (!markets || ldc_list(seg, markets, seg->capacity, &n) != LDC_OK) return 1;
    putchar('[');
    for (uint32_t i = 0; i < n; i++) {
        if (i) putchar(',');
        print_json_string(markets[i].symbol);
    }
    printf("]\n");
    free(markets);
    return 0;
}

int main(int argc, char **argv) {
    int list = argc == 3 && strcmp(argv[2], "--list") == 0;
    if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--wait") == 0)) {
        fprintf(stderr, "usage: %s GROUP SYMBOL [--wait SECONDS] | %s GROUP --list\n", argv[0], argv[0]);
        return 2;
    }
    ldc_segment seg;
    char err[256];
    if (ldc_open(&seg, argv[1], err, sizeof err) != LDC_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (list) {
        int rc = list_markets(&seg);
        ldc_close(&seg);
        return rc;
    }
    ldc_market m;
    if (ldc_find(&seg, argv[2], &m) != LDC_OK) {
        fprintf(stderr, "market %s is not in segment %s\n", argv[2], seg.name);
        ldc_close(&seg);
        return 2;
    }
    if (argc == 5) {
        uint32_t word = ldc_notify_value(&seg);
        uint64_t seq0 = __atomic_load_n((const uint64_t *)(seg.base + seg.slots_offset + (size_t)m.slot * seg.slot_size),
                                        __ATOMIC_ACQUIRE);
        int64_t deadline = ldc__now(CLOCK_MONOTONIC) + (int64_t)(atof(argv[4]) * 1e9);
        for (;;) {
            uint64_t seq = __atomic_load_n((const uint64_t *)(seg.base + seg.slots_offset + (size_t)m.slot * seg.slot_size),
                                           __ATOMIC_ACQUIRE);
            int64_t left = deadline - ldc__now(CLOCK_MONOTONIC);
            if (seq != seq0 || left <= 0) break;
            word = ldc_wait(&seg, word, left);
        }
    }
    ldc_slot_header h;
    ldc_level *bids = calloc(seg.depth, sizeof *bids), *asks = calloc(seg.depth, sizeof *asks);
    char *message = calloc(seg.message_size, 1);
    if (!bids || !asks || !message) return 2;
    int rc = ldc_read(&seg, &m, &h, bids, asks, message);
    printf("{\"result\":\"%s\",\"symbol\":", result_name(rc));
    print_json_string(m.symbol);
    if (rc == LDC_OK || rc == LDC_OUT_OF_SYNC || rc == LDC_WRITER_DEAD) {
        printf(",\"update_id\":%lld,\"event_time_ms\":%lld,\"recv_time_ns\":%lld,\"publish_time_ns\":%lld,"
               "\"status\":%u,\"message\":",
               (long long)h.update_id, (long long)h.event_time_ms, (long long)h.recv_time_ns,
               (long long)h.publish_time_ns, h.status);
        print_json_string(message);
        printf(",\"counters\":[%llu,%llu,%llu,%llu,%llu,%llu],", (unsigned long long)h.updates,
               (unsigned long long)h.resyncs, (unsigned long long)h.gaps, (unsigned long long)h.ignored,
               (unsigned long long)h.snapshots, (unsigned long long)h.audit_mismatches);
        print_levels("bids", bids, h.n_bids);
        putchar(',');
        print_levels("asks", asks, h.n_asks);
    }
    printf(",\"writer_alive\":%s}\n", ldc_writer_alive(&seg) ? "true" : "false");
    free(bids);
    free(asks);
    free(message);
    ldc_close(&seg);
    return rc == LDC_OK ? 0 : 1;
}
