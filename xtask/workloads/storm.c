/*
 * Workloads for `cargo xtask bench`, compiled with `cc -O2` at bench time.
 *
 *   storm busy FORKS ROUNDS [handler|sigwait|signalfd]
 *       A busy host that is not crashing: FORKS children that exit 0 at once,
 *       forked and reaped one by one, while two processes ping-pong SIGUSR1
 *       for ROUNDS round trips. SIGUSR1 is caught by a handler (the
 *       default), or blocked with its default action (terminate) left in
 *       place and taken with sigwait(2) or read from a signalfd(2): the
 *       kernel never delivers it, so it must never look like a crash.
 *       Prints pingpong_parent and pingpong_child (the two pids), then
 *       elapsed_ns and cpu_ns (user + system CPU of all the workload's
 *       processes).
 *   storm spawn COUNT JOBS CRASH_EVERY RLIMIT_CORE PIDFILE [RATE]
 *       COUNT short-lived children spread over JOBS spawner processes; every
 *       CRASH_EVERY-th child faults (SIGSEGV on a null write), the others exit
 *       0. Children inherit RLIMIT_CORE ("inf" for unlimited). The pids of the
 *       children that crashed are appended to PIDFILE, one per line. With
 *       RATE, children are forked at that many per second in all (never
 *       faster; slower if the machine cannot keep up); without it, as fast as
 *       they can be forked and reaped. Prints elapsed_ns, children, segv
 *       (children killed by SIGSEGV) and other.
 *   storm sink [ARG...]
 *       A core_pattern pipe helper: reads the core from stdin to EOF, exits 0.
 *
 * Everything is fork(2)ed from this small program so that the cost measured
 * is the kernel's and the tracer's, not a big parent's page tables.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void on_usr1(int sig) { (void)sig; }

enum take { TAKE_HANDLER, TAKE_SIGWAIT, TAKE_SIGNALFD };

/* Waits for the next SIGUSR1, taken the way `how` says. */
static void take_usr1(enum take how, const sigset_t *wait_mask, const sigset_t *usr1, int sfd) {
    switch (how) {
    case TAKE_HANDLER:
        sigsuspend(wait_mask);
        break;
    case TAKE_SIGWAIT: {
        int sig;
        if (sigwait(usr1, &sig) != 0) die("sigwait");
        break;
    }
    case TAKE_SIGNALFD: {
        struct signalfd_siginfo si;
        for (;;) {
            ssize_t n = read(sfd, &si, sizeof si);
            if (n == (ssize_t)sizeof si) break;
            if (n < 0 && errno == EINTR) continue;
            die("read signalfd");
        }
        break;
    }
    }
}

/* Two processes send each other SIGUSR1, ROUNDS times. SIGUSR1 stays
 * blocked throughout: with a handler, sigsuspend unblocks it for the wait;
 * otherwise its action stays SIG_DFL and it is only ever dequeued by
 * sigwait or read from a signalfd. */
static void pingpong(long rounds, enum take how) {
    sigset_t usr1, wait_mask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, &wait_mask) != 0) die("sigprocmask");
    sigdelset(&wait_mask, SIGUSR1);
    if (how == TAKE_HANDLER) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        if (sigaction(SIGUSR1, &sa, NULL) != 0) die("sigaction");
    }
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        /* Each process opens its own signalfd: one reads the signals
         * queued to the thread that reads it. */
        int sfd = how == TAKE_SIGNALFD ? signalfd(-1, &usr1, SFD_CLOEXEC) : -1;
        if (how == TAKE_SIGNALFD && sfd < 0) die("signalfd");
        for (long i = 0; i < rounds; i++) {
            take_usr1(how, &wait_mask, &usr1, sfd);
            kill(parent, SIGUSR1);
        }
        _exit(0);
    }
    printf("pingpong_parent=%d pingpong_child=%d\n", (int)parent, (int)child);
    fflush(stdout);
    int sfd = how == TAKE_SIGNALFD ? signalfd(-1, &usr1, SFD_CLOEXEC) : -1;
    if (how == TAKE_SIGNALFD && sfd < 0) die("signalfd");
    for (long i = 0; i < rounds; i++) {
        kill(child, SIGUSR1);
        take_usr1(how, &wait_mask, &usr1, sfd);
    }
    int status;
    if (waitpid(child, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "storm: the ping-pong child failed (status %#x)\n", status);
        _exit(1);
    }
}

static void forkexit(long forks) {
    for (long i = 0; i < forks; i++) {
        pid_t p = fork();
        if (p < 0) die("fork");
        if (p == 0) _exit(0);
        int status;
        if (waitpid(p, &status, 0) < 0) die("waitpid");
    }
}

static int busy(long forks, long rounds, enum take how) {
    fflush(stdout);
    unsigned long long t0 = now_ns();
    pid_t a = fork();
    if (a < 0) die("fork");
    if (a == 0) { forkexit(forks); _exit(0); }
    pid_t b = fork();
    if (b < 0) die("fork");
    if (b == 0) { pingpong(rounds, how); _exit(0); }
    int sa, sb;
    if (waitpid(a, &sa, 0) < 0 || waitpid(b, &sb, 0) < 0) die("waitpid");
    unsigned long long t1 = now_ns();
    if (!WIFEXITED(sa) || WEXITSTATUS(sa) != 0 || !WIFEXITED(sb) || WEXITSTATUS(sb) != 0) {
        fprintf(stderr, "storm: a busy worker failed (status %#x, %#x)\n", sa, sb);
        return 1;
    }
    /* CPU of every process of the workload (each reaped its own children),
     * system time included: where in-kernel tracing costs show up. */
    struct rusage ru;
    if (getrusage(RUSAGE_CHILDREN, &ru) != 0) die("getrusage");
    unsigned long long cpu = ((unsigned long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)) * 1000000000ull +
                             ((unsigned long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) * 1000ull;
    printf("elapsed_ns=%llu cpu_ns=%llu\n", t1 - t0, cpu);
    return 0;
}

/* Sleeps until `at` (CLOCK_MONOTONIC ns); returns at once if it is past. */
static void sleep_until(unsigned long long at) {
    struct timespec ts = {.tv_sec = (time_t)(at / 1000000000ull), .tv_nsec = (long)(at % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* One spawner: forks COUNT children one at a time; writes crash pids. With
 * interval_ns > 0, child i is due at t0 + (i * jobs + offset) * interval_ns,
 * so JOBS spawners together fork one child per interval. */
static void spawner(long count, long crash_every, long offset, long jobs, unsigned long long t0,
                    unsigned long long interval_ns, int pidfd) {
    char *buf = malloc((size_t)count * 12 + 1);
    if (!buf) die("malloc");
    size_t used = 0;
    long segv = 0, other = 0;
    for (long i = 0; i < count; i++) {
        int crash = crash_every > 0 && (i + offset) % crash_every == 0;
        if (interval_ns) sleep_until(t0 + ((unsigned long long)i * (unsigned long long)jobs + (unsigned long long)offset) * interval_ns);
        pid_t p = fork();
        if (p < 0) die("fork");
        if (p == 0) {
            if (crash) *(volatile int *)0 = 1;
            _exit(0);
        }
        if (crash) used += (size_t)sprintf(buf + used, "%d\n", (int)p);
        int status;
        if (waitpid(p, &status, 0) < 0) die("waitpid");
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) segv++;
        else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) other++;
    }
    /* O_APPEND: each spawner's single write lands whole. */
    size_t off = 0;
    while (off < used) {
        ssize_t n = write(pidfd, buf + off, used - off);
        if (n < 0) { if (errno == EINTR) continue; die("write pidfile"); }
        off += (size_t)n;
    }
    /* The counts are too big for an exit status; they go up a pipe. */
    printf("worker segv=%ld other=%ld\n", segv, other);
    fflush(stdout);
}

static int spawn(long count, long jobs, long crash_every, const char *rlimit, const char *pidfile, double rate) {
    struct rlimit rl;
    if (strcmp(rlimit, "inf") == 0) rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
    else rl.rlim_cur = rl.rlim_max = strtoull(rlimit, NULL, 10);
    if (setrlimit(RLIMIT_CORE, &rl) != 0) die("setrlimit(RLIMIT_CORE)");
    int pidfd = open(pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (pidfd < 0) die(pidfile);
    int fds[2];
    if (pipe(fds) != 0) die("pipe");
    fflush(stdout);
    unsigned long long t0 = now_ns();
    unsigned long long interval_ns = rate > 0 ? (unsigned long long)(1e9 / rate) : 0;
    for (long j = 0; j < jobs; j++) {
        long share = count / jobs + (j < count % jobs ? 1 : 0);
        pid_t w = fork();
        if (w < 0) die("fork");
        if (w == 0) {
            close(fds[0]);
            if (dup2(fds[1], 1) < 0) die("dup2");
            /* Offsets keep the crash share exact across spawners. */
            spawner(share, crash_every, j, jobs, t0, interval_ns, pidfd);
            _exit(0);
        }
    }
    close(fds[1]);
    int failed = 0;
    for (long j = 0; j < jobs; j++) {
        int status;
        if (wait(&status) < 0) die("wait");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
    }
    unsigned long long t1 = now_ns();
    long segv = 0, other = 0;
    FILE *in = fdopen(fds[0], "r");
    long s, o;
    while (in && fscanf(in, "worker segv=%ld other=%ld\n", &s, &o) == 2) { segv += s; other += o; }
    if (failed) {
        fprintf(stderr, "storm: a spawner failed\n");
        return 1;
    }
    printf("elapsed_ns=%llu children=%ld segv=%ld other=%ld\n", t1 - t0, count, segv, other);
    return 0;
}

static int sink(void) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0) return 0;
        if (n < 0 && errno != EINTR) return 1;
    }
}

int main(int argc, char **argv) {
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "busy") == 0) {
        enum take how = TAKE_HANDLER;
        if (argc == 5 && strcmp(argv[4], "sigwait") == 0) how = TAKE_SIGWAIT;
        else if (argc == 5 && strcmp(argv[4], "signalfd") == 0) how = TAKE_SIGNALFD;
        else if (argc == 5 && strcmp(argv[4], "handler") != 0) {
            fprintf(stderr, "storm: busy takes SIGUSR1 by handler, sigwait or signalfd, not %s\n", argv[4]);
            return 2;
        }
        return busy(atol(argv[2]), atol(argv[3]), how);
    }
    if ((argc == 7 || argc == 8) && strcmp(argv[1], "spawn") == 0)
        return spawn(atol(argv[2]), atol(argv[3]), atol(argv[4]), argv[5], argv[6], argc == 8 ? atof(argv[7]) : 0);
    /* Extra arguments (the core_pattern's %P) only name the crash. */
    if (argc >= 2 && strcmp(argv[1], "sink") == 0) return sink();
    fprintf(stderr,
            "usage: storm busy FORKS ROUNDS [handler|sigwait|signalfd]\n"
            "       storm spawn COUNT JOBS CRASH_EVERY RLIMIT_CORE PIDFILE [RATE]\n"
            "       storm sink [ARG...]\n");
    return 2;
}
