/*
 * worker_handoff: a parent hands jobs to worker processes and collects
 * their answers (the msg-pool pattern), through two fdring rings per
 * worker: jobs (parent -> worker) and answers (worker -> parent).
 *
 * The parent makes the rings, gives each worker its two ends as inherited
 * fds (the same environment variables as Rust's fdring::handoff::inherit,
 * read back by fdring_fds_inherited), and streams jobs to them; each
 * worker answers until its job ring is closed. Every answer is checked.
 *
 * Build and run (from the repository's root):
 *     make -C examples/c run
 * or by hand:
 *     cargo build --release -p fdring-c
 *     cc -O2 -Wall -Wextra -Werror -std=c11 -I fdring-c/include \
 *         examples/c/worker_handoff.c target/release/libfdring_c.a \
 *         -lpthread -ldl -lm -o worker_handoff
 *     ./worker_handoff 4 100000
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdring.h"

#define MAX_WORKERS 16
#define TIMEOUT_NS (60ull * 1000 * 1000 * 1000)

struct job {
    uint64_t id;
    uint64_t n; /* answer: 1 + 2 + ... + n */
};

struct answer {
    uint64_t id;
    uint64_t sum;
};

static void check(fdring_error err, const char *what) {
    if (err != FDRING_OK) {
        fprintf(stderr, "worker_handoff: %s: %s (%s)\n", what, fdring_strerror((int)err),
                fdring_last_error_message());
        exit(1);
    }
}

/* A worker: answers jobs until the parent closes the job ring. */
static int worker(void) {
    fdring_fds fds;
    fdring_receiver *jobs = NULL;
    fdring_sender *answers = NULL;
    check(fdring_fds_inherited("FDRING_JOBS", &fds), "inheriting the job ring");
    check(fdring_receiver_from_fds(fds, NULL, sizeof(struct job), _Alignof(struct job), &jobs),
          "opening the job ring");
    check(fdring_fds_inherited("FDRING_ANSWERS", &fds), "inheriting the answer ring");
    check(fdring_sender_from_fds(fds, NULL, sizeof(struct answer), _Alignof(struct answer),
                                 &answers),
          "opening the answer ring");
    for (;;) {
        const void *ready;
        size_t n = 64;
        fdring_error err = fdring_recv_reserve(jobs, &ready, &n);
        if (err == FDRING_DISCONNECTED) {
            break; /* every job was taken and the parent closed the ring */
        }
        check(err, "waiting for jobs");
        const struct job *batch = ready;
        for (size_t i = 0; i < n; i++) {
            /* The parent could be hostile: n is only data here. */
            struct answer answer = {batch[i].id, batch[i].n * (batch[i].n + 1) / 2};
            check(fdring_send(answers, &answer, 1), "answering");
        }
        check(fdring_recv_release(jobs, n), "releasing jobs");
    }
    fdring_receiver_free(jobs);
    fdring_sender_free(answers); /* the parent sees the end after the last answer */
    return 0;
}

/* Starts `self` as a worker with the two ends' fds inherited. */
static pid_t spawn_worker(const char *self, fdring_fds jobs, fdring_fds answers) {
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        char value[64];
        int fds[4] = {jobs.memfd, jobs.wake, answers.memfd, answers.wake};
        for (int i = 0; i < 4; i++) {
            /* fdring makes its fds close-on-exec: inherit these four. */
            if (fcntl(fds[i], F_SETFD, 0) != 0) {
                _exit(126);
            }
        }
        snprintf(value, sizeof value, "%d,%d", jobs.memfd, jobs.wake);
        setenv("FDRING_JOBS", value, 1);
        snprintf(value, sizeof value, "%d,%d", answers.memfd, answers.wake);
        setenv("FDRING_ANSWERS", value, 1);
        execl(self, self, "worker", (char *)NULL);
        _exit(127);
    }
    /* The child has its ends now: close our copies, so that its death
     * hangs up our sockets. */
    close(jobs.memfd);
    close(jobs.wake);
    close(answers.memfd);
    close(answers.wake);
    return pid;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "worker") == 0) {
        return worker();
    }
    int workers = argc > 1 ? atoi(argv[1]) : 4;
    uint64_t count = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    if (workers < 1 || workers > MAX_WORKERS) {
        fprintf(stderr, "usage: worker_handoff [WORKERS 1..%d] [JOBS]\n", MAX_WORKERS);
        return 2;
    }

    fdring_sender *jobs[MAX_WORKERS];
    fdring_receiver *answers[MAX_WORKERS];
    pid_t pids[MAX_WORKERS];
    fdring_options options = fdring_options_default();
    options.capacity = 1024;
    for (int w = 0; w < workers; w++) {
        fdring_receiver *job_end;
        fdring_sender *answer_end;
        fdring_fds job_fds, answer_fds;
        check(fdring_channel(&options, sizeof(struct job), _Alignof(struct job), &jobs[w], &job_end),
              "making a job ring");
        check(fdring_channel(&options, sizeof(struct answer), _Alignof(struct answer), &answer_end,
                             &answers[w]),
              "making an answer ring");
        check(fdring_receiver_into_fds(job_end, &job_fds), "handing over a job ring");
        check(fdring_sender_into_fds(answer_end, &answer_fds), "handing over an answer ring");
        pids[w] = spawn_worker(argv[0], job_fds, answer_fds);
    }

    /* Hand out the jobs round-robin, collecting answers as they come so
     * that no ring fills up for good. */
    uint64_t answered = 0, sent = 0;
    uint8_t *seen = calloc(count, 1);
    if (seen == NULL && count > 0) {
        perror("calloc");
        return 1;
    }
    while (answered < count) {
        int progress = 0;
        for (int w = 0; w < workers && sent < count; w++) {
            struct job job = {sent, sent % 1000};
            fdring_error err = fdring_try_send(jobs[w], &job, 1, NULL);
            if (err == FDRING_OK) {
                sent++;
                progress = 1;
            } else if (err != FDRING_FULL) {
                check(err, "sending a job");
            }
        }
        for (int w = 0; w < workers; w++) {
            struct answer got[64];
            size_t n = 0;
            fdring_error err = fdring_try_recv(answers[w], got, 64, &n);
            if (err == FDRING_EMPTY) {
                continue;
            }
            check(err, "receiving answers");
            for (size_t i = 0; i < n; i++) {
                uint64_t id = got[i].id, k = id % 1000;
                if (id >= count || seen[id] || got[i].sum != k * (k + 1) / 2) {
                    fprintf(stderr, "worker_handoff: a wrong answer for job %" PRIu64 " (sum %" PRIu64 ", seen %d)\n", id, got[i].sum, id < count ? (int)seen[id] : -1);
                    return 1;
                }
                seen[id] = 1;
                answered++;
                progress = 1;
            }
        }
        if (!progress) {
            /* Nothing moved: sleep until an answer comes (the event-loop
             * path: arm each receiver, then poll their fds). The job rings
             * are full, so answers are on their way. */
            struct pollfd fds[MAX_WORKERS];
            int armed = 1;
            for (int w = 0; w < workers; w++) {
                bool may_wait = false;
                check(fdring_receiver_prepare_wait(answers[w], &may_wait), "arming");
                armed = armed && may_wait;
                fds[w].fd = fdring_receiver_fd(answers[w]);
                fds[w].events = POLLIN;
            }
            if (armed) {
                poll(fds, (nfds_t)workers, 100);
            }
        }
    }
    for (int w = 0; w < workers; w++) {
        fdring_sender_free(jobs[w]); /* the worker drains, then ends */
        size_t n = 0;
        struct answer extra;
        fdring_error err = fdring_recv_timeout(answers[w], &extra, 1, TIMEOUT_NS, &n);
        if (err != FDRING_DISCONNECTED) {
            fprintf(stderr, "worker_handoff: worker %d did not end cleanly: %s\n", w,
                    fdring_strerror((int)err));
            return 1;
        }
        fdring_receiver_free(answers[w]);
        int status = 0;
        waitpid(pids[w], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "worker_handoff: worker %d failed\n", w);
            return 1;
        }
    }
    free(seen);
    printf("worker_handoff: %" PRIu64 " jobs answered by %d workers, every answer right\n", count,
           workers);
    return 0;
}
