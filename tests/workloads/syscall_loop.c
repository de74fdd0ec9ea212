/* Benchmark workload: N iterations of one cheap syscall; prints nanoseconds per call.
 * usage: syscall_loop write PATH N | getppid - N      (write: 1 byte per call) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    long n = atol(argv[3]);
    int fd = -1;
    if (strcmp(argv[1], "write") == 0) {
        fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return 1;
    }
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (fd >= 0) {
            if (write(fd, "x", 1) != 1)
                return 1;
        } else {
            getppid();
        }
    }
    printf("%.1f\n", (now_ns() - t0) / n);
    return 0;
}
