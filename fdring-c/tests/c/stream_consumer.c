/*
 * A C consumer of u64 sequence numbers through the zero-copy
 * reserve/release path: the receiver's fds are inherited as FDRING_RING.
 * Usage: stream_consumer COUNT [stall]
 *
 * Checks that it receives exactly 0, 1, ..., COUNT-1 and then
 * FDRING_DISCONNECTED; exits 0 only then. With "stall" it takes COUNT
 * items and then waits forever without reading or closing, for a test to
 * kill it.
 */
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: stream_consumer COUNT\n");
        return 1;
    }
    uint64_t count = strtoull(argv[1], NULL, 10);
    int stall = argc > 2 && strcmp(argv[2], "stall") == 0;

    fdring_fds fds;
    CHECK(fdring_fds_inherited("FDRING_RING", &fds));
    fdring_receiver *rx = NULL;
    CHECK(fdring_receiver_from_fds(fds, NULL, sizeof(uint64_t), _Alignof(uint64_t), &rx));

    uint64_t expected = 0;
    for (;;) {
        if (stall && expected == count) {
            printf("took %" PRIu64 " items\n", expected);
            fflush(stdout);
            for (;;) {
                pause();
            }
        }
        const void *ready = NULL;
        size_t n = 4096;
        fdring_error err = fdring_recv_reserve(rx, &ready, &n);
        if (err == FDRING_DISCONNECTED) {
            break;
        }
        CHECK(err);
        const uint64_t *items = ready;
        if (stall && n > count - expected) {
            n = (size_t)(count - expected);
        }
        for (size_t i = 0; i < n; i++) {
            if (items[i] != expected) {
                fprintf(stderr, "item %" PRIu64 " is %" PRIu64 "\n", expected, items[i]);
                return 4;
            }
            expected++;
        }
        CHECK(fdring_recv_release(rx, n));
    }
    fdring_receiver_free(rx);
    if (expected != count) {
        fprintf(stderr, "received %" PRIu64 " items, expected %" PRIu64 "\n", expected, count);
        return 5;
    }
    printf("received %" PRIu64 " items in order\n", expected);
    return 0;
}
