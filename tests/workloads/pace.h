/* Shared by the paced benchmark workloads: sleep until `step_ns` after the previous
 * deadline (absolute schedule, so the rate does not drift with the work done). */
#include <time.h>

static void pace_next(struct timespec *due, long step_ns)
{
    due->tv_nsec += step_ns;
    while (due->tv_nsec >= 1000000000L) {
        due->tv_nsec -= 1000000000L;
        due->tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, due, NULL);
}
