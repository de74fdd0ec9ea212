/* Test workload: forces PID reuse. A child with pid P writes LINES_A lines to PATH_A as
 * COMM_A and exits; once it is reaped, a second child is created with the same pid P
 * (clone3 with set_tid, needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE), renames itself
 * COMM_B, writes LINES_B lines to PATH_B, prints "P" and stays alive until stdin closes.
 * usage: pidreuse COMM_A PATH_A LINES_A COMM_B PATH_B LINES_B */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void writer(const char *comm, const char *path, long lines, int hold)
{
    prctl(PR_SET_NAME, comm, 0, 0, 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        _exit(1);
    for (long i = 0; i < lines; i++)
        if (write(fd, "reuse line\n", 11) != 11)
            _exit(1);
    if (hold) {
        printf("%d\n", getpid());
        fflush(stdout);
        char c;
        while (read(0, &c, 1) > 0)
            ;
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 7)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int attempt = 0; attempt < 20; attempt++) {
        pid_t a = fork();
        if (a == 0)
            writer(argv[1], argv[2], atol(argv[3]), 0);
        int st;
        if (a < 0 || waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st))
            return 1;
        pid_t tid = a;
        struct clone_args args;
        memset(&args, 0, sizeof(args));
        args.exit_signal = SIGCHLD;
        args.set_tid = (uint64_t)(uintptr_t)&tid;
        args.set_tid_size = 1;
        long b = syscall(SYS_clone3, &args, sizeof(args));
        if (b == 0)
            writer(argv[4], argv[5], atol(argv[6]), 1);
        if (b < 0) {
            perror("clone3");     /* pid taken meanwhile: try again with a new one */
            continue;
        }
        waitpid(b, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    return 1;
}
