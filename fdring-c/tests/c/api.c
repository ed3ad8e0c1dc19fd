/*
 * The C API in one process: create, reserve/commit, copy helpers, the
 * errors a caller can make (over-commit, bad layout, a fill callback that
 * overruns) as codes with a message, never a crash, and frames both ways.
 * Exits 0 when every check passed, printing "api: N passed, 0 failed".
 */
#include <poll.h>
#include <stdint.h>
#include <string.h>

#include "common.h"

static int passed = 0;
#define PASS() (passed++)

static size_t overrun(void *ctx, uint8_t *payload, size_t len, uint64_t *tag) {
    (void)ctx;
    (void)payload;
    (void)tag;
    return len + 1;
}

struct seen {
    uint64_t tag;
    size_t len;
    uint8_t first;
};

static void look(void *ctx, const uint8_t *payload, size_t len, uint64_t tag) {
    struct seen *seen = ctx;
    seen->tag = tag;
    seen->len = len;
    seen->first = len > 0 ? payload[0] : 0;
}

int main(void) {
    fdring_options options = fdring_options_default();
    options.capacity = 1000;
    options.type_tag = 0xc0ffee;

    /* A ring of 12-byte items aligned to 4. */
    fdring_sender *tx = NULL;
    fdring_receiver *rx = NULL;
    CHECK(fdring_channel(&options, 12, 4, &tx, &rx));
    EXPECT(fdring_sender_capacity(tx) >= 1000);
    PASS();

    /* Reserve, write in place, commit; over-commit is an error. */
    void *slots = NULL;
    size_t n = 3;
    CHECK(fdring_send_try_reserve(tx, &slots, &n));
    EXPECT(n >= 3);
    uint32_t *words = slots;
    for (uint32_t i = 0; i < 9; i++) {
        words[i] = i;
    }
    EXPECT(fdring_send_commit(tx, n + 1) == FDRING_OVER_COMMIT);
    EXPECT(strstr(fdring_last_error_message(), "lent") != NULL);
    EXPECT(fdring_sender_len(tx) == 0);
    CHECK(fdring_send_commit(tx, 3));
    EXPECT(fdring_receiver_len(rx) == 3);
    PASS();

    /* Read in place, release. */
    const void *ready = NULL;
    n = 1;
    CHECK(fdring_recv_try_reserve(rx, &ready, &n));
    EXPECT(n == 3);
    EXPECT(((const uint32_t *)ready)[8] == 8);
    EXPECT(fdring_recv_release(rx, 4) == FDRING_OVER_COMMIT);
    CHECK(fdring_recv_release(rx, 3));
    n = 1;
    EXPECT(fdring_recv_try_reserve(rx, &ready, &n) == FDRING_EMPTY);
    EXPECT(strcmp(fdring_last_error_message(), "the ring is empty") == 0);
    EXPECT(fdring_recv_reserve_timeout(rx, 1000000, &ready, &n) == FDRING_TIMEOUT);
    PASS();

    /* Copy helpers. */
    uint32_t out[6] = {1, 2, 3, 4, 5, 6}, in[6] = {0};
    size_t sent = 0, got = 0;
    CHECK(fdring_try_send(tx, out, 2, &sent));
    EXPECT(sent == 2);
    CHECK(fdring_recv_timeout(rx, in, 2, 1000000000ull, &got));
    EXPECT(got == 2 && memcmp(in, out, sizeof out) == 0);
    PASS();

    /* prepare_wait and the fd, as an event loop would use them. */
    bool may_wait = false;
    CHECK(fdring_receiver_prepare_wait(rx, &may_wait));
    EXPECT(may_wait);
    CHECK(fdring_send(tx, out, 1));
    struct pollfd pfd = {.fd = fdring_receiver_fd(rx), .events = POLLIN};
    EXPECT(poll(&pfd, 1, 10000) == 1);
    CHECK(fdring_recv(rx, in, 2, &got));
    EXPECT(got == 1);
    fdring_stats stats;
    CHECK(fdring_sender_stats(tx, &stats));
    EXPECT(stats.wakeups == 1);
    PASS();

    /* Hand the receiver over as fds and open it again: the layout and the
     * tag are checked against the header. */
    fdring_fds fds;
    CHECK(fdring_receiver_into_fds(rx, &fds));
    fdring_options check = fdring_options_default();
    check.type_tag = 0xc0ffee;
    check.check_type_tag = true;
    EXPECT(fdring_receiver_from_fds(fds, &check, 8, 4, &rx) == FDRING_REJECTED);
    EXPECT(strstr(fdring_last_error_message(), "12-byte items") != NULL);
    PASS();

    /* The fds were taken by the failed open: the receiver is gone. */
    EXPECT(fdring_sender_is_abandoned(tx));
    EXPECT(fdring_try_send(tx, out, 1, NULL) == FDRING_DISCONNECTED);
    fdring_sender_free(tx);
    PASS();

    /* Bad layouts and arguments are codes, not crashes. */
    EXPECT(fdring_channel(&options, 12, 3, &tx, &rx) == FDRING_REJECTED);
    EXPECT(fdring_channel(&options, 0, 1, &tx, &rx) == FDRING_REJECTED);
    EXPECT(fdring_channel(&options, 8, 8, NULL, &rx) == FDRING_INVALID_ARGUMENT);
    fdring_fds bad = {-1, -1};
    EXPECT(fdring_sender_from_fds(bad, NULL, 8, 8, &tx) == FDRING_INVALID_ARGUMENT);
    EXPECT(strcmp(fdring_strerror(FDRING_FULL), "the ring is full") == 0);
    EXPECT(strcmp(fdring_strerror(999), "unknown error code") == 0);
    PASS();

    /* Frames: in place both ways; an overrunning fill sends nothing. */
    fdring_frame_sender *ftx = NULL;
    fdring_frame_receiver *frx = NULL;
    options.capacity = 4096;
    EXPECT(fdring_frame_channel(&options, 3, &ftx, &frx) == FDRING_INVALID_ARGUMENT);
    CHECK(fdring_frame_channel(&options, 64, &ftx, &frx));
    EXPECT(fdring_frame_try_send_with(ftx, 10, overrun, NULL, NULL) == FDRING_INVALID_ARGUMENT);
    EXPECT(strstr(fdring_last_error_message(), "nothing was sent") != NULL);
    struct seen seen = {0, 0, 0};
    EXPECT(fdring_frame_try_recv_with(frx, look, &seen) == FDRING_EMPTY);
    CHECK(fdring_frame_try_send(ftx, 77, (const uint8_t *)"hello", 5));
    EXPECT(fdring_frame_try_send_with(ftx, fdring_frame_max_len(ftx) + 1, overrun, NULL, NULL) ==
           FDRING_FRAME_TOO_LARGE);
    CHECK(fdring_frame_recv_with_timeout(frx, 1000000000ull, look, &seen));
    EXPECT(seen.tag == 77 && seen.len == 5 && seen.first == 'h');
    /* Reserve / commit and receive / release, in place. */
    uint8_t *reserved = NULL;
    EXPECT(fdring_frame_commit(ftx, 1, 0) == FDRING_OVER_COMMIT);
    EXPECT(fdring_frame_try_reserve(ftx, fdring_frame_max_len(ftx) + 1, &reserved) ==
           FDRING_FRAME_TOO_LARGE);
    CHECK(fdring_frame_try_reserve(ftx, 8, &reserved));
    EXPECT((uintptr_t)reserved % 64 == 0);
    memcpy(reserved, "abcdefgh", 8);
    EXPECT(fdring_frame_commit(ftx, 9, 5) == FDRING_OVER_COMMIT);
    CHECK(fdring_frame_commit(ftx, 6, 5));
    EXPECT(fdring_frame_commit(ftx, 6, 5) == FDRING_OVER_COMMIT);
    const uint8_t *held = NULL;
    size_t held_len = 0;
    uint64_t held_tag = 0;
    CHECK(fdring_frame_try_recv(frx, &held, &held_len, &held_tag));
    EXPECT(held_len == 6 && held_tag == 5 && memcmp(held, "abcdef", 6) == 0);
    EXPECT((uintptr_t)held % 64 == 0);
    CHECK(fdring_frame_release(frx));
    EXPECT(fdring_frame_release(frx) == FDRING_OVER_COMMIT);
    EXPECT(fdring_frame_try_recv(frx, &held, &held_len, &held_tag) == FDRING_EMPTY);
    fdring_frame_sender_free(ftx);
    EXPECT(fdring_frame_recv_with(frx, look, &seen) == FDRING_DISCONNECTED);
    fdring_frame_receiver_free(frx);
    PASS();

    printf("api: %d passed, 0 failed\n", passed);
    return 0;
}
