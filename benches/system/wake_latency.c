/* How long a thread blocked in epoll_wait takes to run after another thread
 * makes its fd readable: the wake-up a sleeping vxswitch worker pays per
 * frame (docs/benchmarks-system.md, "Adaptive busy polling and many flows").
 *
 *   cc -O2 -pthread benches/system/wake_latency.c -o /tmp/wake_latency && /tmp/wake_latency
 *
 * 2000 wake-ups, one per millisecond (the waker sleeps in between, so the
 * woken thread has gone to sleep again), from an eventfd write to the
 * woken thread's clock read. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define N 2000
static int efd, ep;
static volatile uint64_t sent;
static volatile int seen;
static uint64_t lat[N];

static uint64_t ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *rx(void *arg) {
    (void)arg;
    struct epoll_event ev;
    uint64_t v;
    for (int i = 0; i < N; i++) {
        epoll_wait(ep, &ev, 1, -1);
        uint64_t t = ns();
        if (read(efd, &v, 8) != 8)
            i--;
        else
            lat[i] = t - sent;
        seen = i + 1;
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    efd = eventfd(0, EFD_NONBLOCK);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    pthread_t t;
    pthread_create(&t, NULL, rx, NULL);
    uint64_t one = 1;
    for (int i = 0; i < N; i++) {
        usleep(1000);
        while (seen < i) /* the previous wake-up has been taken */
            usleep(100);
        sent = ns();
        if (write(efd, &one, 8) != 8)
            return 1;
    }
    pthread_join(t, NULL);
    qsort(lat, N, sizeof lat[0], cmp);
    double s = 0;
    for (int i = 0; i < N; i++)
        s += (double)lat[i];
    printf("epoll_wait wake-up, us: avg %.1f p50 %.1f p90 %.1f p99 %.1f\n", s / N / 1000,
           lat[N / 2] / 1000.0, lat[N * 9 / 10] / 1000.0, lat[N * 99 / 100] / 1000.0);
    return 0;
}
