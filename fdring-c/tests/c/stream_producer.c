/*
 * A C producer of u64 sequence numbers through the zero-copy
 * reserve/commit path: the sender's fds are inherited as the variable FDRING_RING (see
 * fdring::handoff::inherit). Usage: stream_producer COUNT [stall]
 *
 * Writes 0, 1, ..., COUNT-1 in batches of at most BATCH items straight
 * into the ring, then frees the sender (the consumer then sees
 * FDRING_DISCONNECTED after the last item). With "stall" it sends COUNT
 * items and then waits forever without closing, for a test to kill it.
 *
 * The loop is the one to benchmark against the Rust `stream_u64_batch`
 * producer: build with -O2 and link libfdring_c.a from a release build.
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define BATCH 4096

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: stream_producer COUNT [stall]\n");
        return 1;
    }
    uint64_t count = strtoull(argv[1], NULL, 10);
    int stall = argc > 2 && strcmp(argv[2], "stall") == 0;

    fdring_fds fds;
    CHECK(fdring_fds_inherited("FDRING_RING", &fds));
    fdring_sender *tx = NULL;
    CHECK(fdring_sender_from_fds(fds, NULL, sizeof(uint64_t), _Alignof(uint64_t), &tx));

    uint64_t next = 0;
    while (next < count) {
        void *slots = NULL;
        uint64_t left = count - next;
        size_t n = left < BATCH ? (size_t)left : BATCH;
        CHECK(fdring_send_reserve(tx, &slots, &n));
        if (n > left) {
            n = (size_t)left;
        }
        if (n > BATCH) {
            n = BATCH;
        }
        uint64_t *items = slots;
        for (size_t i = 0; i < n; i++) {
            items[i] = next + i;
        }
        CHECK(fdring_send_commit(tx, n));
        next += n;
    }
    if (stall) {
        for (;;) {
            pause();
        }
    }
    fdring_sender_free(tx);
    return 0;
}
