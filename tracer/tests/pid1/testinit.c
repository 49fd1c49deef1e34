/* A small PID 1 for crashtrace's pid1 tests, made to behave like systemd's
 * PID 1 in the ways that matter when PID 1 itself crashes:
 *
 *   - a crash handler for SEGV, BUS, ILL, FPE, ABRT and QUIT (SA_NODEFER) that
 *     forks a child to re-raise the signal with the default action, waits for
 *     it, logs the result, then freezes: it closes every fd and pauses forever
 *     without reaping, so the children it still has pile up as zombies;
 *   - a SOCK_SEQPACKET listener at /run/systemd/coredump, the socket Debian's
 *     systemd-coredump hands cores to; before a crash it accepts each
 *     connection, takes the core's fd (SCM_RIGHTS) and stores the core in the
 *     directory named on its command line;
 *   - a few "service" children that exit when PID 1 closes its fds, as
 *     services do when PID 1 stops serving them;
 *   - SIGUSR1 makes it crash by calling through a NULL handler pointer, the
 *     way systemd-229 did when it dispatched to a unit whose cgroup was gone.
 *
 * Run it as PID 1 of a pid namespace:
 *
 *   unshare --pid --fork --mount-proc testinit CORE_DIR [SERVICES]
 *
 * Everything it says goes to stderr, one line each, starting "testinit: ".
 * The tests wait for these lines:
 *
 *   testinit: ready: serving /run/systemd/coredump, N services
 *   testinit: stored N bytes from pid P in PATH (F fields)
 *   testinit: Caught <SEGV>, dumped core as pid N.
 *   testinit: Caught <SEGV>, core dump failed (child N, status S).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SOCKET_DIR "/run/systemd"
#define SOCKET_PATH "/run/systemd/coredump"
#define MAX_SERVICES 16
/* Larger than any pipe buffer, so a core of this process that nobody reads
 * blocks the dumping task in its pipe write, as a real PID 1's core would. */
#define STATE_BYTES (4u << 20)

static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGQUIT };
static volatile sig_atomic_t crash_requested;
static unsigned char *state;

/* ---- async-signal-safe logging: the crash handler may only use this ---- */

struct line {
    char buf[256];
    size_t len;
};

static void put_str(struct line *l, const char *s)
{
    while (*s && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = *s++;
}

static void put_long(struct line *l, long v)
{
    char digits[24];
    size_t n = 0;
    unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;

    if (v < 0)
        put_str(l, "-");
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u && n < sizeof digits);
    while (n && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = digits[--n];
}

static void put_end(struct line *l)
{
    l->buf[l->len++] = '\n';
    /* Best effort: stderr may already be gone, and there is nobody to tell. */
    ssize_t ignored = write(STDERR_FILENO, l->buf, l->len);
    (void)ignored;
}

static const char *signal_abbrev(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SEGV";
    case SIGBUS: return "BUS";
    case SIGILL: return "ILL";
    case SIGFPE: return "FPE";
    case SIGABRT: return "ABRT";
    case SIGQUIT: return "QUIT";
    default: return "?";
    }
}

/* ---- the crash handler ---- */

/* Like systemd's freeze() before it learned to keep reaping: nobody must wait
 * on one of our sockets any more, and nothing reaps the children, so every
 * child that dies from now on stays a zombie. */
static void __attribute__((noreturn)) freeze(void)
{
    if (syscall(SYS_close_range, 0u, ~0u, 0u) != 0) {
        /* Kernels before 5.9: close them one by one. */
        for (int fd = 0; fd < 65536; fd++)
            close(fd);
    }
    for (;;)
        pause();
}

static void crash(int sig, siginfo_t *info, void *ucontext)
{
    struct line l = { .len = 0 };
    int status = 0;
    pid_t child;

    (void)info;
    (void)ucontext;
    /* A raw clone, as systemd does: no atfork handlers in signal context. */
    child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (child < 0) {
        put_str(&l, "testinit: Caught <");
        put_str(&l, signal_abbrev(sig));
        put_str(&l, ">, cannot fork for core dump: errno ");
        put_long(&l, errno);
        put_end(&l);
        freeze();
    }
    if (child == 0) {
        struct sigaction dfl;
        struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
        struct timespec ten_seconds = { 10, 0 };

        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
        setrlimit(RLIMIT_CORE, &unlimited);
        if (chdir("/") != 0) {
            /* The dump goes to a pipe; the directory does not matter for it. */
        }
        kill(getpid(), sig);
        /* Only reached if the signal did not kill us. */
        nanosleep(&ten_seconds, NULL);
        _exit(EXIT_FAILURE);
    }
    while (waitpid(child, &status, __WALL) < 0) {
        if (errno != EINTR) {
            status = -1;
            break;
        }
    }
    put_str(&l, "testinit: Caught <");
    put_str(&l, signal_abbrev(sig));
    if (status != -1 && WIFSIGNALED(status) && WCOREDUMP(status)) {
        put_str(&l, ">, dumped core as pid ");
        put_long(&l, child);
        put_str(&l, ".");
    } else {
        put_str(&l, ">, core dump failed (child ");
        put_long(&l, child);
        put_str(&l, ", status ");
        put_long(&l, status);
        put_str(&l, ").");
    }
    put_end(&l);
    freeze();
}

static void request_crash(int sig)
{
    (void)sig;
    crash_requested = 1;
}

static void child_exited(int sig)
{
    /* Only here to interrupt ppoll; the main loop reaps. */
    (void)sig;
}

/* The bug being reproduced: a handler looked up for a unit whose cgroup has
 * been removed, which is NULL, and called anyway. */
typedef void (*unit_handler)(void);
static unit_handler volatile handlers[1];

static void __attribute__((noinline)) dispatch_unit_event(void)
{
    handlers[0]();
}

/* ---- the collector socket ---- */

static int listen_coredump_socket(void)
{
    struct sockaddr_un addr;
    int fd;

    if (mkdir(SOCKET_DIR, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "testinit: cannot create %s: %s\n", SOCKET_DIR, strerror(errno));
        return -1;
    }
    /* A socket left by an earlier run refuses connections; replace it. */
    if (unlink(SOCKET_PATH) != 0 && errno != ENOENT) {
        fprintf(stderr, "testinit: cannot remove the stale %s: %s\n", SOCKET_PATH, strerror(errno));
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "testinit: socket(AF_UNIX, SOCK_SEQPACKET): %s\n", strerror(errno));
        return -1;
    }
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, SOCKET_PATH);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, SOMAXCONN) != 0) {
        fprintf(stderr, "testinit: cannot listen on %s: %s\n", SOCKET_PATH, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Copies `from` to EOF into a new file; returns the byte count or -1. */
static long long copy_to_file(int from, const char *path)
{
    static char buf[65536];
    long long total = 0;
    int to = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (to < 0) {
        fprintf(stderr, "testinit: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        ssize_t n = read(from, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "testinit: reading the core: %s\n", strerror(errno));
            close(to);
            return -1;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(to, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                fprintf(stderr, "testinit: writing %s: %s\n", path, strerror(errno));
                close(to);
                return -1;
            }
            off += w;
        }
        total += n;
    }
    if (close(to) != 0) {
        fprintf(stderr, "testinit: closing %s: %s\n", path, strerror(errno));
        return -1;
    }
    return total;
}

/* One connection from systemd-coredump: journal fields, one datagram each,
 * then an empty message carrying the core's fd with SCM_RIGHTS. */
static void serve_connection(int conn, const char *core_dir, unsigned serial)
{
    static char field[256 * 1024];
    char crashed_pid[32] = "";
    unsigned fields = 0;
    int core_fd = -1;

    for (;;) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * 8)];
        } control;
        struct iovec iov = { field, sizeof field - 1 };
        struct msghdr msg;
        struct cmsghdr *c;
        ssize_t n;

        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "testinit: recvmsg on a coredump connection: %s\n", strerror(errno));
            break;
        }
        for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int *fds = (int *)CMSG_DATA(c);
            for (size_t i = 0; i < nfds; i++) {
                if (core_fd < 0)
                    core_fd = fds[i];
                else
                    close(fds[i]);
            }
        }
        if (core_fd >= 0)
            break;
        if (n == 0)
            break; /* EOF, or an empty datagram without an fd: nothing more comes. */
        fields++;
        field[n] = '\0';
        if (strncmp(field, "COREDUMP_PID=", 13) == 0)
            snprintf(crashed_pid, sizeof crashed_pid, "%.20s", field + 13);
    }
    if (core_fd < 0) {
        fprintf(stderr, "testinit: connection closed without a core fd (%u fields)\n", fields);
        return;
    }
    char path[PATH_MAX];
    if (crashed_pid[0])
        snprintf(path, sizeof path, "%s/core.%s", core_dir, crashed_pid);
    else
        snprintf(path, sizeof path, "%s/core.conn%u", core_dir, serial);
    long long stored = copy_to_file(core_fd, path);
    close(core_fd);
    if (stored >= 0)
        fprintf(stderr, "testinit: stored %lld bytes from pid %s in %s (%u fields)\n", stored,
                crashed_pid[0] ? crashed_pid : "?", path, fields);
}

/* ---- services ---- */

/* A child that lives until PID 1 closes its end of the pipe. */
static int start_service(unsigned n)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        char byte;
        char name[16];

        snprintf(name, sizeof name, "service%u", n);
        prctl(PR_SET_NAME, name, 0, 0, 0);
        close(p[1]);
        while (read(p[0], &byte, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(p[0]);
    return p[1];
}

int main(int argc, char **argv)
{
    const char *core_dir;
    unsigned services = 3;
    sigset_t blocked, in_poll;
    struct sigaction sa;
    unsigned serial = 0;
    int listener;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s CORE_DIR [SERVICES]\n", argv[0]);
        return 2;
    }
    core_dir = argv[1];
    if (argc == 3) {
        char *end;
        unsigned long n = strtoul(argv[2], &end, 10);
        if (*end || n > MAX_SERVICES) {
            fprintf(stderr, "testinit: SERVICES must be 0..%d, not %s\n", MAX_SERVICES, argv[2]);
            return 2;
        }
        services = (unsigned)n;
    }
    if (getpid() != 1) {
        fprintf(stderr, "testinit: must run as PID 1 of a pid namespace "
                        "(unshare --pid --fork --mount-proc %s ...), but is pid %d\n",
                argv[0], (int)getpid());
        return 2;
    }

    /* Process state worth dumping, as PID 1 has. */
    state = malloc(STATE_BYTES);
    if (!state) {
        fprintf(stderr, "testinit: cannot allocate %u bytes of state\n", STATE_BYTES);
        return 1;
    }
    for (size_t i = 0; i < STATE_BYTES; i++)
        state[i] = (unsigned char)(i * 131 + 7);

    /* Services first, so they inherit no socket. Their pipes' write ends are
     * kept open (and never written) until the freeze closes them. */
    for (unsigned i = 0; i < services; i++) {
        if (start_service(i) < 0) {
            fprintf(stderr, "testinit: cannot start service %u: %s\n", i, strerror(errno));
            return 1;
        }
    }

    listener = listen_coredump_socket();
    if (listener < 0)
        return 1;

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = crash;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++) {
        if (sigaction(crash_signals[i], &sa, NULL) != 0) {
            fprintf(stderr, "testinit: cannot install the crash handler: %s\n", strerror(errno));
            return 1;
        }
    }

    /* SIGUSR1 and SIGCHLD are only taken inside ppoll, so a request is never
     * lost between checking the flag and sleeping. */
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &blocked, &in_poll);
    sigdelset(&in_poll, SIGUSR1);
    sigdelset(&in_poll, SIGCHLD);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = request_crash;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = child_exited;
    sigaction(SIGCHLD, &sa, NULL);

    fprintf(stderr, "testinit: ready: serving %s, %u services\n", SOCKET_PATH, services);

    for (;;) {
        struct pollfd pfd = { listener, POLLIN, 0 };
        int n;

        if (crash_requested) {
            fprintf(stderr, "testinit: dispatching a unit event to a NULL handler\n");
            dispatch_unit_event();
        }
        /* Orphans reparented to us are reaped while we are healthy. */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        n = ppoll(&pfd, 1, NULL, &in_poll);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "testinit: ppoll: %s\n", strerror(errno));
            return 1;
        }
        if (pfd.revents & POLLIN) {
            int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (conn < 0) {
                if (errno != EINTR && errno != EAGAIN)
                    fprintf(stderr, "testinit: accept: %s\n", strerror(errno));
                continue;
            }
            serve_connection(conn, core_dir, ++serial);
            close(conn);
        }
    }
}
