/*
 * Guest-side helper for crashtrace's VM test tier. One static binary, several
 * roles, picked by argv[1]:
 *
 *   crash                     dies of SIGSEGV (a write through a null pointer)
 *   collector-unreachable     a core_pattern pipe helper that behaves like
 *                             systemd-coredump when PID 1 does not serve its
 *                             socket: connect(/run/systemd/coredump) fails,
 *                             exit status 1
 *   collector-store OUT       a pipe helper that stores the core from stdin
 *                             in OUT and exits 0
 *   socket-listen PATH OUT READY
 *                             listens on the AF_UNIX stream socket PATH (for
 *                             an "@PATH" core_pattern), creates the file
 *                             READY once it listens, takes one connection
 *                             and stores what it reads in OUT
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int copy_fd(int in, const char *out_path)
{
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0) {
        perror(out_path);
        return 1;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("read");
            return 1;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                perror("write");
                return 1;
            }
            off += w;
        }
    }
    return close(out) == 0 ? 0 : 1;
}

static int unix_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path)
        return -1;
    strcpy(sa->sun_path, path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "crash") == 0) {
        *(volatile int *)0 = 1;
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "collector-unreachable") == 0) {
        struct sockaddr_un sa;
        unix_addr(&sa, "/run/systemd/coredump");
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            return 1;
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "collector-store") == 0)
        return copy_fd(0, argv[2]);
    if (argc >= 5 && strcmp(argv[1], "socket-listen") == 0) {
        struct sockaddr_un sa;
        if (unix_addr(&sa, argv[2]) < 0)
            return 1;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        unlink(argv[2]);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4) < 0) {
            perror(argv[2]);
            return 1;
        }
        /* Only now may a crash be pointed at the socket: between bind() and
         * listen() a connect() is refused. */
        int ready = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (ready < 0) {
            perror(argv[4]);
            return 1;
        }
        close(ready);
        /* Never outlive a scenario that went wrong. */
        alarm(60);
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) {
            perror("accept");
            return 1;
        }
        return copy_fd(conn, argv[3]);
    }
    fprintf(stderr, "usage: vmtool crash | collector-unreachable | collector-store OUT | socket-listen PATH OUT READY\n");
    return 2;
}
