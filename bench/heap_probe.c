/*
 * heap_probe.so, for bench/soak.sh: preloaded (LD_PRELOAD) into the
 * soak's gateway nginx, it makes each nginx worker report what glibc's
 * malloc has in use, so that the soak can tell memory that is kept from
 * memory that glibc merely holds.
 *
 * In every process forked by a process that was itself forked (nginx's
 * workers: the started nginx forks the master, the master forks the
 * workers) a thread reads mallinfo2() every 50 ms: uordblks (bytes in
 * chunks in use on the heap) + hblkhd (bytes in chunks mmapped on their
 * own).  Once a second it writes the least of the last 20 readings to
 * $GI2_HEAP_DIR/PID, one line overwritten in place: "UORD HBLKHD SUM\n"
 * (SUM = UORD + HBLKHD, so that a reader can discard a line read while
 * it was being written).  The least reading of a second is the one with
 * the fewest requests in flight; memory that is kept is in all of them.
 * The master is left alone: it stays single-threaded, as in production.
 *
 * The thread blocks every signal (nginx's signals go to nginx's thread),
 * never allocates (the line is formatted on its stack) and holds no lock
 * but malloc's own, for the time mallinfo2() takes.
 */

#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


static void heap_probe_init(void) __attribute__((constructor));
static void heap_probe_prepare(void);
static void heap_probe_child(void);
static void *heap_probe_run(void *arg);


static char   heap_probe_dir[512];
static pid_t  heap_probe_exec_pid;
static pid_t  heap_probe_forker;


static void
heap_probe_init(void)
{
    const char  *d;

    d = getenv("GI2_HEAP_DIR");
    if (d == NULL || strlen(d) >= sizeof(heap_probe_dir)) {
        return;
    }

    strcpy(heap_probe_dir, d);
    heap_probe_exec_pid = getpid();

    (void) pthread_atfork(heap_probe_prepare, NULL, heap_probe_child);
}


static void
heap_probe_prepare(void)
{
    /* the child gets this copy: which process forked it (getppid() would
     * say 1 once the forking one has exited, as nginx's daemon step does) */
    heap_probe_forker = getpid();
}


static void
heap_probe_child(void)
{
    pthread_t       t;
    pthread_attr_t  attr;
    sigset_t        all, old;

    /* the master (forked by the nginx that was started) is left alone */
    if (heap_probe_forker == heap_probe_exec_pid) {
        return;
    }

    if (pthread_attr_init(&attr) != 0) {
        return;
    }

    (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    (void) pthread_attr_setstacksize(&attr, 256 * 1024);

    /* the new thread inherits the mask: every signal blocked */
    sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);
    (void) pthread_create(&t, &attr, heap_probe_run, NULL);
    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    (void) pthread_attr_destroy(&attr);
}


static void *
heap_probe_run(void *arg)
{
    int                fd, n, i;
    char               path[600], line[80];
    size_t             least, u, h;
    struct timespec    tick;
    struct mallinfo2   mi;

    (void) arg;

    n = snprintf(path, sizeof(path), "%s/%d", heap_probe_dir,
                 (int) getpid());
    if (n < 0 || (size_t) n >= sizeof(path)) {
        return NULL;
    }

    /* the worker may have given up root by now: the directory is 1777 */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        return NULL;
    }

    tick.tv_sec = 0;
    tick.tv_nsec = 50 * 1000 * 1000;

    for ( ;; ) {
        least = (size_t) -1;
        u = 0;
        h = 0;

        for (i = 0; i < 20; i++) {
            mi = mallinfo2();

            if (mi.uordblks + mi.hblkhd < least) {
                least = mi.uordblks + mi.hblkhd;
                u = mi.uordblks;
                h = mi.hblkhd;
            }

            (void) nanosleep(&tick, NULL);
        }

        n = snprintf(line, sizeof(line), "%20zu %20zu %20zu\n", u, h, least);

        if (n > 0 && pwrite(fd, line, n, 0) != n) {
            break;
        }
    }

    (void) close(fd);

    return NULL;
}
