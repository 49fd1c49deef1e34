/* A process that faults three calls deep, for crashtrace's stack tests:
 * main -> crash_level1 -> crash_level2 -> crash_level3, which writes
 * through a NULL pointer (SIGSEGV, SEGV_MAPERR).
 *
 * Built several ways by tracer/tests/stacks.rs: with frame pointers at -O0,
 * without them at -O2, and stripped. The functions must stay real frames
 * under -O2, so they are noinline and noclone (no renamed clones), and each
 * does work after its call (no tail call that would drop its frame). The
 * pointer is read from a volatile global so the compiler cannot turn the
 * fault into a trap instruction. */
#include <signal.h>
#include <stdio.h>

#define FRAME __attribute__((noinline, noclone))

int *volatile crash_target;
volatile int crash_sink;

FRAME void crash_level3(void)
{
    *crash_target = 42;
    crash_sink++;
}

FRAME void crash_level2(void)
{
    crash_level3();
    crash_sink++;
}

FRAME void crash_level1(void)
{
    crash_level2();
    crash_sink++;
}

int main(void)
{
    sigset_t none;

    signal(SIGSEGV, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    crash_level1();
    /* Reaching here means the crash did not happen. */
    fprintf(stderr, "deep: did not crash\n");
    return 3;
}
