/* Benchmark workload: one process writing RATE lines/s, round-robin over FILES open log
 * files in DIR (DIR/<tag>-<i>.log), for SECONDS; prints the lines it wrote.
 * usage: fanout DIR TAG FILES RATE SECONDS
 * Paced on an absolute schedule in 10 ms steps, so many of them add up to a steady
 * host-wide rate across many distinct (process, file) keys. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pace.h"

#define STEP_NS 10000000L

int main(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    int files = atoi(argv[3]);
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    if (files < 1 || files > 4096 || rate <= 0)
        return 2;
    int *fds = calloc(files, sizeof(int));
    char path[4096];
    for (int i = 0; i < files; i++) {
        snprintf(path, sizeof(path), "%s/%s-%d.log", argv[1], argv[2], i);
        fds[i] = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fds[i] < 0)
            return 1;
    }
    static const char line[] = "2026-11-26T00:00:00Z INFO bench fanout line\n";
    struct timespec t0, due;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    due = t0;
    long steps = (long)(seconds * 1e9 / STEP_NS), written = 0, next = 0;
    for (long s = 1; s <= steps; s++) {
        long target = (long)(rate * s * STEP_NS / 1e9);
        for (; written < target; written++) {
            if (write(fds[next], line, sizeof(line) - 1) < 0)
                return 1;
            next = (next + 1) % files;
        }
        pace_next(&due, STEP_NS);
    }
    printf("%ld\n", written);
    return 0;
}
