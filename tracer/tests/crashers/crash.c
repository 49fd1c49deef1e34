/* A process that crashes on request, for crashtrace's privileged tests.
 *
 *   crash segv    write through a NULL pointer: a real fault, SEGV_MAPERR at 0x0
 *   crash abort   abort(): SIGABRT raised with tgkill (SI_TKILL)
 *   crash pause   print "ready" and wait to be killed
 *   crash sigwait   block SIGTERM and SIGUSR1, print "ready", take them with
 *                   sigwait(); SIGUSR1 is answered by nothing, SIGTERM ends
 *                   the process with status 0 (a daemon's clean shutdown)
 *   crash signalfd  the same through a signalfd (as udev workers do)
 *   crash unblock   block SIGTERM, print "ready", unblock it once it is
 *                   pending: the default action then kills the process
 *   crash threads   start three threads, then exit(0) from main: the kernel
 *                   ends the other threads with a SIGKILL no one sent
 *   crash thread-exit  the same, with exit(0) called by one of the threads
 *
 * The dispositions and the signal mask are reset first, so whatever the
 * parent left behind cannot turn the crash into something else. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static void *idle(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static void *leave(void *arg)
{
    (void)arg;
    usleep(50 * 1000);
    exit(0);
    return NULL;
}

/* Three idle threads, and `last` as a fourth when given. */
static void start_threads(void *(*last)(void *))
{
    pthread_t t;

    for (int i = 0; i < 3; i++)
        if (pthread_create(&t, NULL, idle, NULL) != 0)
            exit(5);
    if (last && pthread_create(&t, NULL, last, NULL) != 0)
        exit(5);
}

static void ready(void)
{
    printf("ready\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    sigset_t none;

    if (argc != 2) {
        fprintf(stderr, "usage: %s segv|abort|pause|sigwait|signalfd|unblock|threads|thread-exit\n", argv[0]);
        return 2;
    }
    signal(SIGSEGV, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (strcmp(argv[1], "segv") == 0) {
        volatile int *null = NULL;
        *null = 1;
    } else if (strcmp(argv[1], "abort") == 0) {
        abort();
    } else if (strcmp(argv[1], "sigwait") == 0 || strcmp(argv[1], "signalfd") == 0) {
        sigset_t set;
        int sig = 0, fd = -1;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        if (argv[1][3] == 'n') {
            fd = signalfd(-1, &set, 0);
            if (fd < 0) {
                perror("signalfd");
                return 2;
            }
        }
        ready();
        while (sig != SIGTERM) {
            if (fd >= 0) {
                struct signalfd_siginfo si;
                if (read(fd, &si, sizeof si) != sizeof si)
                    return 4;
                sig = (int)si.ssi_signo;
            } else if (sigwait(&set, &sig) != 0) {
                return 4;
            }
        }
        return 0;
    } else if (strcmp(argv[1], "unblock") == 0) {
        sigset_t set, pending;
        struct timespec tick = { 0, 10 * 1000 * 1000 };

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigprocmask(SIG_BLOCK, &set, NULL);
        ready();
        for (;;) {
            sigpending(&pending);
            if (sigismember(&pending, SIGTERM))
                sigprocmask(SIG_UNBLOCK, &set, NULL);
            nanosleep(&tick, NULL);
        }
    } else if (strcmp(argv[1], "threads") == 0) {
        start_threads(NULL);
        usleep(50 * 1000);
        exit(0);
    } else if (strcmp(argv[1], "thread-exit") == 0) {
        start_threads(leave);
        for (;;)
            pause();
    } else if (strcmp(argv[1], "pause") == 0) {
        ready();
        for (;;)
            pause();
    } else {
        fprintf(stderr, "%s: unknown mode %s\n", argv[0], argv[1]);
        return 2;
    }
    /* Reaching here means the crash did not happen. */
    fprintf(stderr, "%s: %s did not crash\n", argv[0], argv[1]);
    return 3;
}
