/*
 * by_name: producer and consumer processes that find each other by a
 * name, not by inheriting fds (the libshmemq pattern), through fdring's
 * service rendezvous: the kernel tells each side who the other is (same
 * user or root only), and both must agree on the ring (item size,
 * alignment, type tag) before any fd is opened.
 *
 *     by_name serve NAME COUNT    listens on NAME, hands the first client
 *                                 a ring and streams COUNT items into it
 *     by_name recv NAME COUNT     connects to NAME, takes the ring, checks
 *                                 the COUNT items arrive in order
 *     by_name collect NAME COUNT  listens on NAME and takes the ring the
 *                                 first client offers, checking its items
 *     by_name send NAME COUNT     connects to NAME, offers a ring and
 *                                 streams COUNT items into it
 *
 * Build and run (from the repository's root):
 *     make -C examples/c run
 * or by hand:
 *     cargo build --release -p fdring-c
 *     cc -O2 -Wall -Wextra -Werror -std=c11 -I fdring-c/include \
 *         examples/c/by_name.c target/release/libfdring_c.a \
 *         -lpthread -ldl -lm -o by_name
 *     ./by_name serve demo 1000000 & ./by_name recv demo 1000000
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fdring.h"

#define TIMEOUT_NS (30ull * 1000 * 1000 * 1000)
/* Both sides name the item type; a ring of anything else is refused. */
#define TAG_U64_SEQUENCE 0x5e9u

static void check(fdring_error err, const char *what) {
    if (err != FDRING_OK) {
        fprintf(stderr, "by_name: %s: %s (%s)\n", what, fdring_strerror((int)err),
                fdring_last_error_message());
        exit(1);
    }
}

/* Connects to NAME, waiting up to 30 s for a server to bind it: fdring
 * refuses at once (FDRING_IO) while nobody listens, so a client started
 * next to its server tries again. */
static void connect_waiting(const char *name, fdring_connection **connection) {
    struct timespec pause = {0, 10 * 1000 * 1000};
    for (int tries = 0;; tries++) {
        fdring_error err = fdring_connect(name, TIMEOUT_NS, connection);
        if (err != FDRING_IO || tries == 3000) {
            check(err, "connecting");
            return;
        }
        nanosleep(&pause, NULL);
    }
}

static fdring_options ring_options(void) {
    fdring_options options = fdring_options_default();
    options.capacity = 1 << 16;
    options.type_tag = TAG_U64_SEQUENCE;
    options.check_type_tag = true;
    return options;
}

/* Streams 0, 1, ..., count-1 in place, then closes and waits until the
 * consumer took everything. */
static void produce(fdring_sender *tx, uint64_t count) {
    uint64_t next = 0;
    while (next < count) {
        void *slots;
        size_t n = 4096;
        check(fdring_send_reserve_timeout(tx, TIMEOUT_NS, &slots, &n), "reserving");
        /* A local bound, not n (whose address escaped): see docs/c.md. */
        size_t k = n < count - next ? n : (size_t)(count - next);
        uint64_t *items = slots;
        for (size_t i = 0; i < k; i++) {
            items[i] = next + i;
        }
        check(fdring_send_commit(tx, k), "committing");
        next += k;
    }
    check(fdring_sender_close(tx), "closing");
    check(fdring_sender_wait_drained(tx, TIMEOUT_NS), "waiting for the consumer");
    fdring_sender_free(tx);
    printf("by_name: sent %" PRIu64 " items\n", count);
}

/* Checks that 0, 1, ..., count-1 arrive, then the end of the stream. */
static void consume(fdring_receiver *rx, uint64_t count) {
    uint64_t expected = 0;
    for (;;) {
        const void *ready;
        size_t n = 4096;
        fdring_error err = fdring_recv_reserve_timeout(rx, TIMEOUT_NS, &ready, &n);
        if (err == FDRING_DISCONNECTED) {
            break;
        }
        check(err, "receiving");
        const uint64_t *items = ready;
        for (size_t i = 0; i < n; i++, expected++) {
            if (items[i] != expected) {
                fprintf(stderr, "by_name: item %" PRIu64 " is %" PRIu64 "\n", expected, items[i]);
                exit(1);
            }
        }
        check(fdring_recv_release(rx, n), "releasing");
    }
    fdring_receiver_free(rx);
    if (expected != count) {
        fprintf(stderr, "by_name: %" PRIu64 " items, expected %" PRIu64 "\n", expected, count);
        exit(1);
    }
    printf("by_name: received %" PRIu64 " items in order\n", count);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: by_name serve|recv|collect|send NAME COUNT\n");
        return 2;
    }
    const char *mode = argv[1], *name = argv[2];
    uint64_t count = strtoull(argv[3], NULL, 10);
    fdring_options options = ring_options();
    fdring_connection *connection = NULL;

    if (strcmp(mode, "serve") == 0 || strcmp(mode, "collect") == 0) {
        fdring_listener *listener = NULL;
        check(fdring_listener_bind(name, &listener), "binding the name");
        printf("by_name: listening on %s\n", name);
        fflush(stdout);
        check(fdring_listener_accept(listener, &connection), "accepting");
        fdring_listener_free(listener);
        fdring_credentials peer;
        check(fdring_connection_peer(connection, &peer), "asking who connected");
        printf("by_name: pid %" PRIu32 " (uid %" PRIu32 ") connected\n", peer.pid, peer.uid);
        if (strcmp(mode, "serve") == 0) {
            fdring_sender *tx = NULL;
            check(fdring_connection_offer_receiver(connection, &options, sizeof(uint64_t),
                                                   _Alignof(uint64_t), &tx),
                  "offering the ring");
            fdring_connection_free(connection);
            produce(tx, count);
        } else {
            fdring_receiver *rx = NULL;
            check(fdring_connection_take_receiver(connection, &options, sizeof(uint64_t),
                                                  _Alignof(uint64_t), &rx),
                  "taking the ring");
            fdring_connection_free(connection);
            consume(rx, count);
        }
    } else if (strcmp(mode, "recv") == 0 || strcmp(mode, "send") == 0) {
        connect_waiting(name, &connection);
        if (strcmp(mode, "recv") == 0) {
            fdring_receiver *rx = NULL;
            check(fdring_connection_take_receiver(connection, &options, sizeof(uint64_t),
                                                  _Alignof(uint64_t), &rx),
                  "taking the ring");
            fdring_connection_free(connection);
            consume(rx, count);
        } else {
            fdring_sender *tx = NULL;
            check(fdring_connection_offer_receiver(connection, &options, sizeof(uint64_t),
                                                   _Alignof(uint64_t), &tx),
                  "offering the ring");
            fdring_connection_free(connection);
            produce(tx, count);
        }
    } else {
        fprintf(stderr, "by_name: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
