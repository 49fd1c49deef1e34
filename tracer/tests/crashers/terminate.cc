// An uncaught C++ throw: __cxa_throw finds no handler, calls
// std::terminate, which aborts (SIGABRT). For tracer/tests/stacks.rs:
// main -> level1 -> level2 -> throw.
#include <stdexcept>

#define FRAME __attribute__((noinline, noclone))

volatile int sink;

FRAME void level2()
{
    if (sink == 0)
        throw std::runtime_error("uncaught");
    sink++;
}

FRAME void level1()
{
    level2();
    sink++;
}

int main()
{
    level1();
    return 3;
}
