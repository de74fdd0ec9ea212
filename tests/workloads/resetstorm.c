/* Benchmark workload: RATE TCP resets/s on loopback for SECONDS; prints how many.
 * usage: resetstorm RATE SECONDS
 * Each round connects to its own listener, accepts, and aborts the client side
 * (SO_LINGER 0): exactly one RST sent by this process and one received by it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pace.h"

#define STEP_NS 1000000L

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 128) ||
        getsockname(lfd, (struct sockaddr *)&a, &alen))
        return 1;
    struct linger abort_on_close = {.l_onoff = 1, .l_linger = 0};
    struct timespec due;
    clock_gettime(CLOCK_MONOTONIC, &due);
    long steps = (long)(seconds * 1e9 / STEP_NS), done = 0;
    for (long s = 1; s <= steps; s++) {
        long target = (long)(rate * s * STEP_NS / 1e9);
        for (; done < target; done++) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
                return 1;
            int sfd = accept(lfd, NULL, NULL);
            if (sfd < 0 ||
                setsockopt(c, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close)))
                return 1;
            close(c);      /* RST to sfd */
            close(sfd);
        }
        pace_next(&due, STEP_NS);
    }
    printf("%ld\n", done);
    return 0;
}
