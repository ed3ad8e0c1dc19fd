// The header compiles as C++17 (-Wall -Wextra -Werror) and its calls link
// and work from C++.
#include <cstdio>
#include <cstring>

#include "fdring.h"

int main() {
    fdring_options options = fdring_options_default();
    options.capacity = 512;
    fdring_sender *tx = nullptr;
    fdring_receiver *rx = nullptr;
    if (fdring_channel(&options, sizeof(double), alignof(double), &tx, &rx) != FDRING_OK) {
        std::fprintf(stderr, "%s\n", fdring_last_error_message());
        return 1;
    }
    const double pi = 3.25;
    double back = 0;
    size_t got = 0;
    if (fdring_send(tx, &pi, 1) != FDRING_OK || fdring_recv(rx, &back, 1, &got) != FDRING_OK ||
        got != 1 || back != pi) {
        return 2;
    }
    fdring_sender_free(tx);
    fdring_receiver_free(rx);
    std::printf("c++: %s\n", fdring_strerror(FDRING_OK));
    return 0;
}
