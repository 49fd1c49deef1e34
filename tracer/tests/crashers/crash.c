/* A process that crashes on request, for crashtrace's privileged tests.
 *
 *   crash segv    write through a NULL pointer: a real fault, SEGV_MAPERR at 0x0
 *   crash abort   abort(): SIGABRT raised with tgkill (SI_TKILL)
 *   crash pause   print "ready" and wait to be killed
 *
 * The dispositions and the signal mask are reset first, so whatever the
 * parent left behind cannot turn the crash into something else. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    sigset_t none;

    if (argc != 2) {
        fprintf(stderr, "usage: %s segv|abort|pause\n", argv[0]);
        return 2;
    }
    signal(SIGSEGV, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (strcmp(argv[1], "segv") == 0) {
        volatile int *null = NULL;
        *null = 1;
    } else if (strcmp(argv[1], "abort") == 0) {
        abort();
    } else if (strcmp(argv[1], "pause") == 0) {
        printf("ready\n");
        fflush(stdout);
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
