/* Helpers shared by the C test programs: die with fdring's message. */
#ifndef FDRING_TEST_COMMON_H
#define FDRING_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "fdring.h"

#define CHECK(call)                                                          \
    do {                                                                     \
        fdring_error check_err_ = (call);                                    \
        if (check_err_ != FDRING_OK) {                                       \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__,      \
                    #call, fdring_strerror((int)check_err_),                 \
                    fdring_last_error_message());                            \
            exit(2);                                                         \
        }                                                                    \
    } while (0)

#define EXPECT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__,      \
                    #cond);                                                  \
            exit(3);                                                         \
        }                                                                    \
    } while (0)

#endif
