/* Paired syscall benchmark: one long-lived pinned process that measures on request, so
 * every measurement of a run comes from the same process (this VM's speed swings between
 * processes started at different moments; KERNEL-NOTES "Measuring on this VM").
 * usage: pairloop LOGFILE
 * stdin, one request per line: "null N" (1-byte write to /dev/null), "log N" (1-byte
 * O_APPEND write to LOGFILE), "ppid N" (getppid); stdout: nanoseconds per call. */
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
    if (argc != 2)
        return 2;
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (null < 0 || log < 0)
        return 1;
    char what[16];
    long n;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (scanf("%15s %ld", what, &n) == 2) {
        int fd = strcmp(what, "null") == 0 ? null : strcmp(what, "log") == 0 ? log : -1;
        if (fd < 0 && strcmp(what, "ppid") != 0)
            return 2;
        for (int i = 0; i < 2000; i++)      /* warm the path */
            fd >= 0 ? (void)write(fd, "x", 1) : (void)getppid();
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            if (fd >= 0) {
                if (write(fd, "x", 1) != 1)
                    return 1;
            } else {
                getppid();
            }
        }
        printf("%.2f\n", (now_ns() - t0) / n);
        if (fd == log)
            ftruncate(log, 0);              /* keep the file small */
    }
    return 0;
}
