/* Test workload: process churn. Forks short-lived children at a target rate for a while;
 * each child opens PATH, writes LINES lines (one write(2) each) and exits.
 * usage: churn PATH RATE SECONDS LINES
 * Prints "spawned N failed F seconds S" on stdout when done (after reaping every child).
 * RATE 0 means as fast as fork allows. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    const char *path = argv[1];
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    long lines = atol(argv[4]);
    char line[] = "churn line ..................\n";
    long spawned = 0, failed = 0, live = 0;
    double start = now(), end = start + seconds;
    for (;;) {
        double t = now();
        if (t >= end)
            break;
        if (rate > 0 && spawned >= (t - start) * rate) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        } else {
            pid_t pid = fork();
            if (pid == 0) {
                int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd < 0)
                    _exit(1);
                for (long i = 0; i < lines; i++)
                    if (write(fd, line, sizeof(line) - 1) != (ssize_t)(sizeof(line) - 1))
                        _exit(1);
                _exit(0);
            }
            if (pid < 0)
                failed++;
            else {
                spawned++;
                live++;
            }
        }
        int st;
        pid_t r;
        while (live > 0 && (r = waitpid(-1, &st, WNOHANG)) > 0) {
            live--;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                failed++;
        }
    }
    int st;
    while (live > 0) {
        if (waitpid(-1, &st, 0) > 0) {
            live--;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                failed++;
        } else if (errno != EINTR)
            break;
    }
    printf("spawned %ld failed %ld seconds %.3f\n", spawned, failed, now() - start);
    return 0;
}
