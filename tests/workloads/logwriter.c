/* Test workload: writes exactly N lines to a file with one write(2) per line, then exits.
 * usage: logwriter PATH LINES [LINE_BYTES]   (LINE_BYTES includes the newline, default 32)
 * Small and fast on purpose: it lives a few milliseconds, so a collector cannot read
 * anything about it from /proc after the fact. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long lines = atol(argv[2]);
    long len = argc > 3 ? atol(argv[3]) : 32;
    char buf[4096];
    if (len < 1 || len > (long)sizeof(buf))
        return 2;
    memset(buf, 'x', len - 1);
    buf[len - 1] = '\n';
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return 1;
    for (long i = 0; i < lines; i++)
        if (write(fd, buf, len) != len)
            return 1;
    return 0;
}
