/* Faults whose callers a frame-pointer walk alone gets wrong, for
 * crashtrace's stack tests (tracer/tests/stacks.rs). argv[1] picks one:
 *
 *   leaf    main -> outer -> caller -> leaf, which writes through NULL and
 *           (at -O1 and up) has no frame of its own: its caller is only
 *           found from .eh_frame.
 *   strlen  main -> outer -> caller -> strlen(NULL): libc's asm, no frame.
 *   memcpy  main -> outer -> caller -> memcpy onto a bad pointer.
 *   thread  a second thread: thread_main -> t_outer -> caller -> leaf.
 *
 * With argv[2] "wait", it prints "ready" and waits for a byte on stdin
 * before faulting (so a test can change the file system under it first).
 * Every function is noinline and noclone and does work after its call, so
 * each is a real frame under -O2; pointers come from volatile globals so
 * the compiler cannot turn a fault into a trap. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define FRAME __attribute__((noinline, noclone))

int *volatile bad_int;
char *volatile bad_str;
char *volatile bad_dst = (char *)16;
volatile int sink;
static const char *mode = "leaf";

FRAME void leaf(int *p)
{
    *p = 42;
}

FRAME void caller(void)
{
    if (strcmp(mode, "strlen") == 0) {
        sink += (int)strlen(bad_str);
    } else if (strcmp(mode, "memcpy") == 0) {
        static char src[4096];
        memcpy(bad_dst, src, sizeof src - (size_t)sink);
        sink += bad_dst[0];
    } else {
        leaf(bad_int);
    }
    sink++;
}

FRAME void outer(void)
{
    caller();
    sink++;
}

FRAME void t_outer(void)
{
    caller();
    sink++;
}

FRAME void *thread_main(void *arg)
{
    (void)arg;
    t_outer();
    sink++;
    return NULL;
}

int main(int argc, char **argv)
{
    sigset_t none;

    signal(SIGSEGV, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (argc > 1)
        mode = argv[1];
    if (argc > 2 && strcmp(argv[2], "wait") == 0) {
        char c;
        printf("ready\n");
        fflush(stdout);
        if (read(0, &c, 1) != 1)
            return 4;
    }
    if (strcmp(mode, "thread") == 0) {
        pthread_t t;
        mode = "leaf";
        pthread_create(&t, NULL, thread_main, NULL);
        pthread_join(t, NULL);
    } else {
        outer();
    }
    fprintf(stderr, "callers: did not crash\n");
    return 3;
}
