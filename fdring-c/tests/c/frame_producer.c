/*
 * A C producer of frames: the frame sender's fds are inherited as
 * FDRING_FRAMES. Usage: frame_producer COUNT
 *
 * Frame i has tag i and i % 1000 payload bytes, byte j being (i + j) % 251:
 * a third are written in place through a fill callback, a third through
 * fdring_frame_reserve / fdring_frame_commit, a third copied with
 * fdring_frame_send. Then it frees the sender.
 */
#include <stdint.h>

#include "common.h"

struct job {
    uint64_t index;
};

static size_t fill(void *ctx, uint8_t *payload, size_t len, uint64_t *tag) {
    const struct job *job = ctx;
    for (size_t j = 0; j < len; j++) {
        payload[j] = (uint8_t)((job->index + j) % 251);
    }
    *tag = job->index;
    return len;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: frame_producer COUNT\n");
        return 1;
    }
    uint64_t count = strtoull(argv[1], NULL, 10);

    fdring_fds fds;
    CHECK(fdring_fds_inherited("FDRING_FRAMES", &fds));
    fdring_frame_sender *tx = NULL;
    CHECK(fdring_frame_sender_from_fds(fds, NULL, 0, &tx));

    static uint8_t copy[1000];
    for (uint64_t i = 0; i < count; i++) {
        size_t len = (size_t)(i % 1000);
        if (i % 3 == 0) {
            struct job job = {i};
            size_t committed = 0;
            CHECK(fdring_frame_send_with(tx, len, fill, &job, &committed));
            EXPECT(committed == len);
        } else if (i % 3 == 1) {
            /* Reserve more than needed, commit what was written. */
            uint8_t *payload = NULL;
            CHECK(fdring_frame_reserve(tx, len + 16, &payload));
            for (size_t j = 0; j < len; j++) {
                payload[j] = (uint8_t)((i + j) % 251);
            }
            CHECK(fdring_frame_commit(tx, len, i));
        } else {
            for (size_t j = 0; j < len; j++) {
                copy[j] = (uint8_t)((i + j) % 251);
            }
            CHECK(fdring_frame_send(tx, i, copy, len));
        }
    }
    fdring_frame_sender_free(tx);
    return 0;
}
