/*
 * agent-init: the guest side of agent's OCI launchers (gVisor runsc, runc).
 *
 * Built static (guest/build.sh) because it is bind-mounted read-only at /.agent
 * into whatever language image a VM boots; it must not depend on that image's libc.
 *
 *   agent-init [init] [--channel PATH]                 PID 1 of the sandbox; with --channel it
 *                                                      also serves exec requests on a unix socket
 *   agent-init exec [--timeout N] [--tag T] [--] argv  run one command (runtime-exec fallback)
 *   agent-init kill --tag T                            kill a stuck exec (host fallback)
 *
 * Exit codes of `exec`: the command's own code, 128+signal when it was signalled,
 * 124 on timeout, 126/127 when it cannot be executed (like a shell). When the command
 * ends (or times out) everything it started is killed too: an exec leaves nothing behind.
 *
 * The exec channel (protocol in guest/README.md) keeps PID 1 tiny: PID 1 only binds the
 * socket, keeps one pre-forked "spare" blocked in accept(), and reaps. The spare that takes a
 * connection tells PID 1 (a pipe only PID 1 and its spares hold) and becomes that connection's
 * handler; PID 1 forks the next spare. Every byte from the connection is parsed in the handler,
 * so a malformed frame, a crash or a kill of a handler cannot touch PID 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_TIMEOUT 124

/* The host's tag for this exec: the timeout report names it, so the host reads the timeout
   as a fact from here rather than guessing it from exit code 124 and the time taken. */
static const char *exec_tag = "";

static void die(const char *what) {
    fprintf(stderr, "agent-init: %s: %s\n", what, strerror(errno));
    exit(125);
}

/* ppid and start time (clock ticks since boot) of a process; -1 when it is gone. */
static int read_stat(pid_t pid, pid_t *ppid, unsigned long long *start) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    /* comm may contain spaces and parens: the fields we want follow the LAST ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    char state;
    int pp;
    /* Fields 3 (state), 4 (ppid) ... 22 (starttime). */
    if (sscanf(p + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
               &state, &pp, start) != 3)
        return -1;
    *ppid = (pid_t)pp;
    return 0;
}

/* Whether pid is another exec's helper we must not touch: an `agent-init exec` (runtime exec)
   or a channel spare/handler (a fork of PID 1, so its cmdline is `agent-init init ...`). */
static int is_exec_helper(pid_t pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    size_t l0 = strlen(buf);
    return l0 >= 10 && strcmp(buf + l0 - 10, "agent-init") == 0 && (ssize_t)l0 + 1 < n && (strcmp(buf + l0 + 1, "exec") == 0 || strcmp(buf + l0 + 1, "init") == 0);
}

/* Set once: whether PR_SET_CHILD_SUBREAPER worked (gVisor 2022 returns EINVAL). */
static int have_subreaper;
static unsigned long long self_start;

/*
 * SIGKILLs every descendant of `root` (not root itself). Returns how many were signalled,
 * -1 when /proc could not be read completely.
 * With a subreaper, processes that setsid() or double-fork stay our descendants, so walking
 * ppid links from /proc finds them all. Without one (gVisor), orphans land on PID 1; we then
 * also take PID 1's children that started after this exec did and are not another exec's
 * helper. That can catch a daemon a concurrent exec started meanwhile: a documented limit.
 */
static int kill_descendants(pid_t root, unsigned long long since) {
    enum { MAXP = 32768 };
    static pid_t pids[MAXP], ppids[MAXP];
    static char mark[MAXP];
    int n = 0, killed = 0;
    DIR *d = opendir("/proc");
    if (!d) return -1;
    struct dirent *e;
    for (;;) {
        errno = 0;
        if (!(e = readdir(d)) || n >= MAXP) break;
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1 || pid == root) continue;
        pid_t pp;
        unsigned long long st;
        if (read_stat((pid_t)pid, &pp, &st) < 0) continue;
        pids[n] = (pid_t)pid;
        ppids[n] = pp;
        mark[n] = pp == root || (!have_subreaper && pp == 1 && st >= since && !is_exec_helper((pid_t)pid));
        n++;
    }
    /* gVisor's /proc listing can fail (EINVAL) with many tasks: report "unknown", not "none". */
    int failed = errno != 0;
    closedir(d);
    if (failed) return -1;
    /* Fixed-point marking: the tree is small, O(n^2) worst case is fine. */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (mark[i]) continue;
            for (int j = 0; j < n; j++) {
                if (mark[j] && pids[j] == ppids[i]) {
                    mark[i] = 1;
                    changed = 1;
                    break;
                }
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (mark[i] && kill(pids[i], SIGKILL) == 0) killed++;
    return killed;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Kills the command's whole tree and reaps it; loops because a fork can race the scan. */
static void kill_tree(pid_t child) {
    for (int round = 0; round < 1000; round++) {
        /* The group first, every round: it is one syscall and outpaces a fork bomb. */
        kill(-child, SIGKILL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        /* With a subreaper every descendant is our child until reaped (orphans re-parent to
           us): no child left means no descendant left, without reading /proc. */
        if (have_subreaper && waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) return;
        /* Zombies still count (kill succeeds on them) until reaped, so 0 means truly gone. */
        if (kill_descendants(getpid(), self_start) == 0) return;
        sleep_ms(10);
    }
    fprintf(stderr, "agent-init: could not kill every process of the command\n");
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int run_exec(long timeout_s, char **argv) {
    /* Orphaned grandchildren (daemons, setsid'd children) reparent to us, not PID 1,
       so a timeout can still find and kill them. */
    have_subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* the command itself is dumpable again after execve */
    pid_t ignored;
    if (!have_subreaper && read_stat(getpid(), &ignored, &self_start) < 0) self_start = 0;

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigprocmask(SIG_BLOCK, &set, &old);

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        /* Own session + process group: one kill(-pgid) reaches the usual tree. */
        setsid();
        execvp(argv[0], argv);
        int code = errno == ENOENT ? 127 : 126;
        fprintf(stderr, "agent-init: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(code);
    }

    long deadline = timeout_s > 0 ? now_ms() + timeout_s * 1000L : 0;
    for (;;) {
        struct timespec ts = {1, 0};
        if (deadline) {
            long left = deadline - now_ms();
            if (left <= 0) {
                kill_tree(child);
                fprintf(stderr, "agent-init: timed out after %lds, killed the command (exec %s)\n", timeout_s, exec_tag);
                return EXIT_TIMEOUT;
            }
            if (left < 1000) ts.tv_sec = 0, ts.tv_nsec = left * 1000000L;
        }
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &ts);
        if (sig < 0) continue; /* EAGAIN (tick) or EINTR */
        if (sig == SIGCHLD) {
            int status;
            pid_t p;
            while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
                if (p != child) continue; /* a reparented orphan */
                /* Execs are hermetic: whatever the command left behind (background jobs, a
                   fork bomb, daemons) dies with it, so one exec cannot exhaust the VM's pids
                   or memory for the next one. */
                kill_tree(child);
                if (WIFEXITED(status)) return WEXITSTATUS(status);
                return 128 + WTERMSIG(status);
            }
            continue;
        }
        /* Interrupted (Ctrl-C forwarded by the runtime, or host deadline): kill everything. */
        kill_tree(child);
        return 128 + sig;
    }
}

/* ================================================================== exec channel
 * Frames, both ways: u32 big-endian length L (1 <= L <= CH_MAX_FRAME + 1, counting the type
 * byte), u8 type, L-1 bytes of payload. Types and payloads: guest/README.md. */

#define CH_VERSION 1
#define CH_MAX_FRAME (1024 * 1024)   /* largest payload we accept (an EXEC carrying a long script) */
#define CH_MAX_DATA (32 * 1024)      /* largest STDOUT/STDERR payload we send */
#define CH_MAX_HANDLERS 64           /* connections served at once; more wait in the backlog */
#define CH_HELLO_MS 10000            /* a connection must say hello within this */
#define CH_IDLE_MS 600000            /* and ask for an exec within this (pings keep nothing alive) */
#define CH_OUTQ_HIGH (256 * 1024)    /* stop reading the command's output above this much unsent */
#define CH_STDINQ_MAX (1024 * 1024)  /* stop reading the socket above this much unwritten stdin */
#define CH_MAX_ARGS 65536
#define CH_MAX_ENV 65536

enum {
    T_HELLO = 0x01, T_PING = 0x02, T_EXEC = 0x03, T_STDIN = 0x04, T_STDIN_CLOSE = 0x05, T_SIGNAL = 0x06, T_RESIZE = 0x07,
    T_HELLO_OK = 0x81, T_PONG = 0x82, T_STARTED = 0x83, T_STDOUT = 0x84, T_STDERR = 0x85, T_EXIT = 0x86, T_ERROR = 0x8f,
};
enum { R_EXIT = 0, R_SIGNAL = 1, R_TIMEOUT = 2 };
#define CH_FEATURES 0x0f /* bit 0 pty, 1 signals, 2 user, 3 stdin streaming */

static int is_pid1;

/* ---------------------------------------------------------------- PID 1 side */

/* Binds PATH (via a temporary name and rename, so the host never sees a half-made socket). */
static int ch_listen(const char *path, ino_t *ino) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char tmp[sizeof sa.sun_path];
    if (strlen(path) + 8 >= sizeof sa.sun_path) return -1;
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    strcpy(sa.sun_path, tmp);
    unlink(tmp);
    mode_t old = umask(077); /* the socket is root's alone: 0600 */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    struct stat st;
    if (rc < 0 || listen(fd, 64) < 0 || chmod(tmp, 0600) < 0 || rename(tmp, path) < 0 || stat(path, &st) < 0) {
        fprintf(stderr, "agent-init: exec channel %s: %s\n", path, strerror(errno));
        unlink(tmp);
        close(fd);
        return -1;
    }
    *ino = st.st_ino;
    return fd;
}

static void ch_handle(int fd);

/* The pipe to PID 1, in a spare that became a handler; -1 once PID 1 has been told. */
static int notify_fd = -1;

/* Tells PID 1 this spare is taken, so it forks the next one. Not at accept() but once the
   request is under way (command spawned, ping answered, or 200 ms idle): waking PID 1 costs
   a task switch, which under gVisor's ptrace platform is milliseconds on the request's path. */
static void ch_notify(void) {
    if (notify_fd < 0) return;
    int32_t me = getpid();
    if (write(notify_fd, &me, sizeof me) != sizeof me) {
    }
    close(notify_fd);
    notify_fd = -1;
}

/* A spare: waits in accept(), tells PID 1 it took a connection, then serves it. Never returns. */
static void ch_spare(int lfd, int notify_w) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            _exit(3);
        }
        /* lfd stays open (O_CLOEXEC; it goes when we exit): under gVisor closing the
           host-backed listening socket costs milliseconds on the way to serving. */
        notify_fd = notify_w;
        ch_handle(c);
        _exit(0);
    }
}

/* PID 1: reap orphans (daemons left by execs) until told to stop; serve the channel if asked. */
static int run_init(const char *chan) {
    /* Not dumpable: guest code (without CAP_SYS_PTRACE) cannot ptrace-attach to PID 1. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    is_pid1 = getpid() == 1;
    /* Run as a plain process (host tests): orphans of our handlers come back to us, not to the host's init. */
    if (!is_pid1) prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    /* Blocked + signalfd: PID 1 ignores unhandled signals, so explicit handling is required. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        /* No signalfd: the old loop, without a channel. */
        for (;;) {
            siginfo_t si;
            int sig = sigwaitinfo(&set, &si);
            if (sig == SIGTERM || sig == SIGINT) return 0;
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
        }
    }
    ino_t ino = 0;
    int lfd = chan ? ch_listen(chan, &ino) : -1;
    int notify[2] = {-1, -1};
    if (lfd >= 0 && pipe2(notify, O_CLOEXEC | O_NONBLOCK) < 0) {
        close(lfd);
        lfd = -1;
    }
    pid_t spare = 0, handlers[CH_MAX_HANDLERS];
    int nh = 0;
    long next_spare = 0, next_check = now_ms() + 1000;
    for (;;) {
        long now = now_ms();
        if (lfd >= 0 && !spare && nh < CH_MAX_HANDLERS && now >= next_spare) {
            pid_t p = fork();
            if (p == 0) {
                close(sfd);
                close(notify[0]);
                ch_spare(lfd, notify[1]);
            }
            if (p > 0) spare = p;
            else next_spare = now + 100; /* out of pids: try again shortly */
        }
        if (lfd >= 0 && now >= next_check) {
            /* Guest code (root in the guest) can unlink or replace the socket: take the name back. */
            struct stat st;
            next_check = now + 1000;
            if (stat(chan, &st) < 0 || st.st_ino != ino || !S_ISSOCK(st.st_mode)) {
                int nfd = ch_listen(chan, &ino);
                if (nfd >= 0) {
                    close(lfd);
                    lfd = nfd;
                    if (spare) kill(spare, SIGKILL); /* it waits on the old socket; reaped below */
                }
            }
        }
        int need = lfd >= 0 && !spare && nh < CH_MAX_HANDLERS;
        struct pollfd pf[3] = {{sfd, POLLIN, 0}, {notify[0], POLLIN, 0}, {need ? lfd : -1, POLLIN, 0}};
        long wait = next_check - now;
        if (need && next_spare - now < wait) wait = next_spare - now;
        if (wait < 0) wait = 0;
        if (poll(pf, notify[0] >= 0 ? 3 : 1, lfd >= 0 ? (int)wait : -1) < 0 && errno != EINTR) sleep_ms(10);
        if (pf[2].revents & POLLIN) next_spare = 0; /* a connection waits: its spare now */
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                /* Told to stop: the channel goes first, so nothing new starts. */
                if (chan && lfd >= 0) unlink(chan);
                if (spare) kill(spare, SIGKILL);
                for (int i = 0; i < nh; i++) kill(handlers[i], SIGKILL); /* their commands follow (PDEATHSIG) */
                return 0;
            }
        }
        int32_t who;
        while (notify[0] >= 0 && read(notify[0], &who, sizeof who) == sizeof who) {
            if (who != spare || spare == 0) continue;
            if (nh < CH_MAX_HANDLERS) handlers[nh++] = spare;
            spare = 0;
            /* The next spare comes a little later, so that its fork does not compete with the
               handler just starting; at once if a connection is already waiting (below). */
            next_spare = now_ms() + 50;
        }
        pid_t p;
        int st;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
            /* A handler or spare that died of anything but SIGKILL (guest code, or our kill on a
               rebind) crashed: say so (a few times), it is a bug. PID 1 itself carries on. */
            static int crashes;
            int ours = p == spare;
            for (int i = 0; i < nh; i++) ours |= handlers[i] == p;
            if (ours && WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL && crashes++ < 10)
                fprintf(stderr, "agent-init: channel handler %d crashed (signal %d)\n", (int)p, WTERMSIG(st));
            if (p == spare) {
                spare = 0; /* died before taking a connection (killed by a rebind, or failed) */
                next_spare = now_ms() + 100;
                continue;
            }
            for (int i = 0; i < nh; i++)
                if (handlers[i] == p) {
                    handlers[i] = handlers[--nh];
                    break;
                }
        }
    }
}

/* ---------------------------------------------------------------- handler side */

static unsigned char ch_in[CH_MAX_FRAME + 5];
static size_t ch_in_len;
static unsigned char *ch_out;
static size_t ch_out_len, ch_out_cap;
static int ch_fd = -1;

static void put32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Queues a frame; the event loop sends it. Gives up (the host is not reading) past a hard cap. */
static void ch_send(int type, const void *payload, size_t n) {
    if (ch_out_len + n + 5 > ch_out_cap) {
        size_t cap = ch_out_cap ? ch_out_cap : 64 * 1024;
        while (cap < ch_out_len + n + 5) cap *= 2;
        if (cap > 8 * CH_OUTQ_HIGH) _exit(4);
        unsigned char *b = realloc(ch_out, cap);
        if (!b) _exit(4);
        ch_out = b, ch_out_cap = cap;
    }
    put32(ch_out + ch_out_len, (uint32_t)n + 1);
    ch_out[ch_out_len + 4] = (unsigned char)type;
    if (n) memcpy(ch_out + ch_out_len + 5, payload, n);
    ch_out_len += n + 5;
}

/* Writes what it can of the queue; -1 when the peer is gone. */
static int ch_flush(void) {
    size_t off = 0;
    while (off < ch_out_len) {
        ssize_t w = send(ch_fd, ch_out + off, ch_out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            return -1;
        }
        off += (size_t)w;
    }
    memmove(ch_out, ch_out + off, ch_out_len - off);
    ch_out_len -= off;
    return 0;
}

/* Sends everything queued, waiting up to ms for the host to read it; then exits. */
static void ch_finish(long ms) {
    long until = now_ms() + ms;
    while (ch_out_len && now_ms() < until) {
        if (ch_flush() < 0) break;
        if (!ch_out_len) break;
        struct pollfd pf = {ch_fd, POLLOUT, 0};
        poll(&pf, 1, 100);
    }
    shutdown(ch_fd, SHUT_WR);
    /* Wait for the host to close, discarding what it still sends (a STDIN_CLOSE in flight):
       closing with unread data would reset the connection, and the host could lose the report. */
    static unsigned char sink[4096];
    until = now_ms() + 2000;
    for (long left; (left = until - now_ms()) > 0;) {
        struct pollfd pf = {ch_fd, POLLIN, 0};
        if (poll(&pf, 1, (int)left) <= 0) break;
        ssize_t got = recv(ch_fd, sink, sizeof sink, MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) break;
    }
    _exit(0);
}

static void ch_error(const char *msg) {
    ch_notify();
    ch_send(T_ERROR, msg, strlen(msg));
    ch_finish(1000);
}

/* One parsed EXEC request. Strings point into ch_in (NUL-terminated there). */
struct ch_req {
    char **argv, **env;
    int argc, envc;
    const char *cwd, *user, *line;
    long timeout_ms;
    int pty, rows, cols, stdin_on;
};

static int parse_long(const char *s, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max) return -1;
    *out = v;
    return 0;
}

/* EXEC payload: items "<key><value>\0". Returns an error message, or NULL. */
static const char *ch_parse_exec(unsigned char *p, size_t n, struct ch_req *r) {
    memset(r, 0, sizeof *r);
    if (n == 0 || p[n - 1] != 0) return "exec: payload must be NUL-terminated items";
    int na = 0, ne = 0;
    for (size_t i = 0; i < n; i += strlen((char *)p + i) + 1) {
        if (p[i] == 'a') na++;
        else if (p[i] == 'e') ne++;
    }
    if (na > CH_MAX_ARGS || ne > CH_MAX_ENV) return "exec: too many argv or env items";
    r->argv = calloc((size_t)na + 4, sizeof(char *));
    r->env = calloc((size_t)ne + 1, sizeof(char *));
    if (!r->argv || !r->env) return "exec: out of memory";
    for (size_t i = 0; i < n;) {
        char *item = (char *)p + i, *v = item + 1;
        size_t len = strlen(item);
        i += len + 1;
        long x;
        switch (len ? item[0] : 0) {
        case 'a': r->argv[r->argc++] = v; break;
        case 'e':
            if (!strchr(v, '=') || v[0] == '=') return "exec: env items are NAME=value";
            r->env[r->envc++] = v;
            break;
        case 'l': if (r->line) return "exec: two shell lines"; r->line = v; break;
        case 'c': if (!*v) return "exec: empty cwd"; r->cwd = v; break;
        case 'u': if (!*v) return "exec: empty user"; r->user = v; break;
        case 't': if (parse_long(v, 7L * 24 * 3600 * 1000, &x)) return "exec: bad timeout"; r->timeout_ms = x; break;
        case 'i': r->stdin_on = 1; break;
        case 'p': {
            long rows, cols;
            char *comma = strchr(v, ',');
            if (!comma) return "exec: pty is rows,cols";
            *comma = 0;
            if (parse_long(v, 65535, &rows) || parse_long(comma + 1, 65535, &cols)) return "exec: bad pty size";
            r->pty = 1, r->rows = (int)rows, r->cols = (int)cols;
            break;
        }
        default: return "exec: unknown item";
        }
    }
    if (r->line && r->argc) return "exec: argv and a shell line";
    if (r->line) {
        r->argv[0] = "/bin/sh", r->argv[1] = "-c", r->argv[2] = (char *)r->line, r->argc = 3;
    }
    if (!r->argc || !r->argv[0][0]) return "exec: empty argv";
    return NULL;
}

/* uid[:gid] or a name from /etc/passwd (no NSS in a static binary). 0 on success. */
static int ch_user(const char *u, uid_t *uid, gid_t *gid) {
    long a, b;
    char buf[64];
    const char *colon = strchr(u, ':');
    if (colon && (size_t)(colon - u) < sizeof buf) {
        memcpy(buf, u, (size_t)(colon - u));
        buf[colon - u] = 0;
        if (!parse_long(buf, 0x7fffffff, &a) && !parse_long(colon + 1, 0x7fffffff, &b)) {
            *uid = (uid_t)a, *gid = (gid_t)b;
            return 0;
        }
        return -1;
    }
    if (!parse_long(u, 0x7fffffff, &a)) {
        *uid = (uid_t)a, *gid = (gid_t)a;
        return 0;
    }
    FILE *f = fopen("/etc/passwd", "re");
    if (!f) return -1;
    struct passwd *pw;
    int found = -1;
    while ((pw = fgetpwent(f)))
        if (strcmp(pw->pw_name, u) == 0) {
            *uid = pw->pw_uid, *gid = pw->pw_gid, found = 0;
            break;
        }
    fclose(f);
    return found;
}

/* The command, in a vfork() child (it shares our memory until execve: no malloc, no stdio;
   the user is resolved before). Never returns. Reports failure on stderr (fd 2), like a shell. */
static void ch_child(struct ch_req *r, int in, int out, int err, const char *pts, int setuser, uid_t uid, gid_t gid) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid(); /* own session + process group: one kill(-pgid) reaches the usual tree */
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a handler killed by guest code takes its command along */
    if (pts) {
        int s = open(pts, O_RDWR);
        if (s < 0) _exit(126);
        ioctl(s, TIOCSCTTY, 0);
        in = out = err = s;
    }
    dup2(in, 0), dup2(out, 1), dup2(err, 2);
    /* Every descriptor of ours is O_CLOEXEC: execve closes them (no close loop here: under
       gVisor closing the channel's host-backed listening socket costs milliseconds). */
    if (setuser < 0) {
        dprintf(2, "agent-init: unknown user %s\n", r->user);
        _exit(126);
    }
    if (setuser) {
        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
            dprintf(2, "agent-init: cannot become user %s: %s\n", r->user, strerror(errno));
            _exit(126);
        }
    }
    if (r->cwd && chdir(r->cwd) < 0) {
        dprintf(2, "agent-init: cannot change to %s: %s\n", r->cwd, strerror(errno));
        _exit(126);
    }
    extern char **environ;
    if (r->envc) environ = r->env;
    execvp(r->argv[0], r->argv);
    int code = errno == ENOENT ? 127 : 126;
    dprintf(2, "agent-init: cannot run %s: %s\n", r->argv[0], strerror(errno));
    _exit(code);
}

/* vfork() in a frame of its own: the child runs ch_child and never returns here. */
static __attribute__((noinline)) pid_t ch_spawn(struct ch_req *r, int in, int out, int err, const char *pts, int setuser, uid_t uid, gid_t gid) {
    pid_t p = vfork();
    if (p == 0) ch_child(r, in, out, err, pts, setuser, uid, gid);
    return p;
}

static void set_nonblock(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Runs one request; sends STARTED, output, EXIT. Never returns. */
static void ch_run(struct ch_req *r) {
    have_subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
    int inp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1}, master = -1;
    const char *pts = NULL;
    char ptsbuf[64];
    if (r->pty) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, ptsbuf, sizeof ptsbuf)) ch_error("exec: no pty");
        struct winsize ws = {.ws_row = (unsigned short)r->rows, .ws_col = (unsigned short)r->cols};
        ioctl(master, TIOCSWINSZ, &ws);
        pts = ptsbuf;
    } else {
        if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) ch_error("exec: no pipes");
        if (r->stdin_on ? pipe2(inp, O_CLOEXEC) < 0 : (inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) ch_error("exec: no stdin");
    }
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    uid_t uid = 0;
    gid_t gid = 0;
    int setuser = r->user ? (ch_user(r->user, &uid, &gid) < 0 ? -1 : 1) : 0;
    long t0 = now_ms();
    /* vfork: no copy of our address space (under gVisor that is most of a fork's cost). */
    pid_t child = ch_spawn(r, inp[0], outp[1], errp[1], pts, setuser, uid, gid);
    if (child < 0) ch_error("exec: fork failed");
    ch_notify();
    pid_t ignored;
    /* Only the /proc fallback of kill_tree (no subreaper) needs the command's start time. */
    if (!have_subreaper && read_stat(child, &ignored, &self_start) < 0) self_start = 0;
    int in_w = -1, out_r, err_r = -1;
    if (r->pty) {
        out_r = in_w = master;
    } else {
        close(inp[0]), close(outp[1]), close(errp[1]);
        in_w = inp[1], out_r = outp[0], err_r = errp[0];
    }
    int in_owned = in_w >= 0 && in_w != master; /* a pipe we close on STDIN_CLOSE */
    if (in_w >= 0) set_nonblock(in_w);
    set_nonblock(out_r);
    if (err_r >= 0) set_nonblock(err_r);
    unsigned char started[4];
    put32(started, (uint32_t)child);
    ch_send(T_STARTED, started, 4);

    unsigned char *sin = NULL; /* stdin not yet written to the command */
    size_t sin_len = 0;
    int sin_close = 0, exited = 0, status = 0, reason = -1;
    long deadline = r->timeout_ms ? t0 + r->timeout_ms : 0, drain_until = 0, dur = 0;
    static unsigned char buf[CH_MAX_DATA];
    for (;;) {
        if (reason < 0 && exited) {
            /* The command ended: kill what it left behind (execs are hermetic), drain, report. */
            reason = WIFSIGNALED(status) ? R_SIGNAL : R_EXIT;
            kill_tree(child);
            drain_until = now_ms() + 500;
        }
        if (reason >= 0 && ((out_r < 0 && err_r < 0) || now_ms() >= drain_until)) {
            unsigned char ex[9];
            ex[0] = (unsigned char)reason;
            put32(ex + 1, reason == R_TIMEOUT ? EXIT_TIMEOUT : reason == R_SIGNAL ? (uint32_t)WTERMSIG(status) : (uint32_t)WEXITSTATUS(status));
            put32(ex + 5, (uint32_t)dur);
            ch_send(T_EXIT, ex, sizeof ex);
            ch_finish(5000);
        }
        if (reason < 0 && deadline && now_ms() >= deadline) {
            kill_tree(child);
            dur = now_ms() - t0;
            reason = R_TIMEOUT;
            drain_until = now_ms() + 500;
            continue;
        }
        struct pollfd pf[5];
        int n = 0, isock, iout = -1, ierr = -1, iin = -1, isig;
        int want_in = reason < 0 && sin_len < CH_STDINQ_MAX;
        pf[isock = n++] = (struct pollfd){ch_fd, (short)((want_in ? POLLIN : 0) | (ch_out_len ? POLLOUT : 0)), 0};
        if (ch_out_len < CH_OUTQ_HIGH) {
            if (out_r >= 0) pf[iout = n++] = (struct pollfd){out_r, POLLIN, 0};
            if (err_r >= 0) pf[ierr = n++] = (struct pollfd){err_r, POLLIN, 0};
        }
        if (in_w >= 0 && sin_len && reason < 0) pf[iin = n++] = (struct pollfd){in_w, POLLOUT, 0};
        pf[isig = n++] = (struct pollfd){sfd, POLLIN, 0};
        long wait = 1000;
        if (deadline && reason < 0) wait = deadline - now_ms();
        if (reason >= 0) wait = drain_until - now_ms();
        if (wait < 0) wait = 0;
        if (wait > 1000) wait = 1000;
        if (poll(pf, (nfds_t)n, (int)wait) < 0) {
            if (errno == EINTR) continue;
            sleep_ms(10);
        }
        /* The command's end. */
        if (pf[isig].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {
            }
        }
        if (!exited) {
            int st;
            if (waitpid(child, &st, WNOHANG) == child) {
                exited = 1, status = st;
                if (reason < 0) dur = now_ms() - t0;
            }
        }
        /* Output. */
        for (int k = 0; k < 2; k++) {
            int idx = k ? ierr : iout, *fd = k ? &err_r : &out_r;
            if (idx < 0 || !pf[idx].revents) continue;
            ssize_t got = read(*fd, buf, sizeof buf);
            if (got > 0) ch_send(k ? T_STDERR : T_STDOUT, buf, (size_t)got);
            else if (got == 0 || (errno != EAGAIN && errno != EINTR)) { /* EOF; a pty gives EIO */
                if (*fd != master) close(*fd);
                *fd = -1;
            }
        }
        /* Stdin to the command. */
        if (iin >= 0 && pf[iin].revents) {
            ssize_t w = write(in_w, sin, sin_len);
            if (w > 0) {
                memmove(sin, sin + w, sin_len - (size_t)w);
                sin_len -= (size_t)w;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                sin_len = 0; /* the command closed its stdin: drop the rest */
            }
        }
        /* The host. */
        if (pf[isock].revents & POLLOUT && ch_flush() < 0) goto gone;
        if (pf[isock].revents & (POLLIN | POLLHUP | POLLERR)) {
            /* Never full here: a complete frame is consumed at once, and one frame fits. */
            ssize_t got = recv(ch_fd, ch_in + ch_in_len, sizeof ch_in - ch_in_len, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) goto gone;
            if (got > 0) ch_in_len += (size_t)got;
        }
        /* Every whole frame buffered, including any that came in one read with the EXEC. */
        while (ch_in_len >= 5) {
            uint32_t len = get32(ch_in);
            if (len < 1 || len > CH_MAX_FRAME + 1) { kill_tree(child); ch_error("bad frame length"); }
            if (ch_in_len < len + 4) break;
            int type = ch_in[4];
            unsigned char *p = ch_in + 5;
            size_t pn = len - 1;
            if (type == T_STDIN && !sin_close) {
                if (in_w >= 0 && pn) {
                    unsigned char *b = realloc(sin, sin_len + pn);
                    if (!b) { kill_tree(child); ch_error("out of memory"); }
                    sin = b;
                    memcpy(sin + sin_len, p, pn);
                    sin_len += pn;
                }
            } else if (type == T_STDIN_CLOSE) {
                if (!sin_close) sin_close = 1;
            } else if (type == T_SIGNAL && pn == 1) {
                int sig = p[0];
                if (sig >= 1 && sig <= 64 && reason < 0) kill(-child, sig);
            } else if (type == T_RESIZE && pn == 4 && master >= 0) {
                struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]), .ws_col = (unsigned short)(p[2] << 8 | p[3])};
                ioctl(master, TIOCSWINSZ, &ws);
            } else if (type == T_PING && pn <= 64) {
                ch_send(T_PONG, p, pn);
            } else if (type != T_STDIN) {
                kill_tree(child);
                ch_error("unexpected frame during exec");
            }
            memmove(ch_in, ch_in + len + 4, ch_in_len - (len + 4));
            ch_in_len -= len + 4;
        }
        if (sin_close == 1 && !sin_len && in_w >= 0) {
            if (in_owned) close(in_w), in_w = -1;
            else {
                char eof = 4; /* pty: ^D, the terminal's end of input */
                if (write(in_w, &eof, 1) < 0) {
                }
            }
            sin_close = 2;
        }
    }
gone:
    /* The host went away (agent killed, HTTP client closed): the command goes with it. */
    kill_tree(child);
    _exit(0);
}

/* Reads one whole frame (blocking, with a deadline). Returns its type; the payload is ch_in+5. */
static int ch_read_frame(long until, size_t *pn) {
    for (;;) {
        if (ch_in_len >= 5) {
            uint32_t len = get32(ch_in);
            if (len < 1 || len > CH_MAX_FRAME + 1) ch_error("bad frame length");
            if (ch_in_len >= len + 4) {
                *pn = len - 1;
                return ch_in[4];
            }
        }
        long left = until - now_ms();
        if (left <= 0) ch_error("too slow");
        struct pollfd pf = {ch_fd, POLLIN, 0};
        int wait = left > 1000 ? 1000 : (int)left;
        if (notify_fd >= 0 && wait > 200) wait = 200;
        if (poll(&pf, 1, wait) <= 0) {
            ch_notify(); /* a slow or idle client: do not hold up the next connection */
            continue;
        }
        ssize_t got = recv(ch_fd, ch_in + ch_in_len, sizeof ch_in - ch_in_len, 0);
        if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) _exit(0);
        if (got > 0) ch_in_len += (size_t)got;
    }
}

static void ch_consume(size_t pn) {
    memmove(ch_in, ch_in + pn + 5, ch_in_len - (pn + 5));
    ch_in_len -= pn + 5;
}

/* One connection, in its own process: hello, pings, then at most one exec. */
static void ch_handle(int fd) {
    ch_fd = fd;
    signal(SIGPIPE, SIG_IGN);
    if (is_pid1) {
        /* Who connected. runc: the host is outside our PID namespace, so its pid reads as 0.
           gVisor (--host-uds=create): a host connection carries the accepting process's own
           credentials, i.e. ours. A guest process (even root) shows its own pid: refused, so
           guest code cannot drive execs (defence in depth: the socket is also 0600 in a 0700 dir). */
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.pid != 0 && cr.pid != getpid()) ch_error("connections from inside the guest are refused");
    }
    size_t pn;
    int type = ch_read_frame(now_ms() + CH_HELLO_MS, &pn);
    if (type != T_HELLO || pn != 8 || memcmp(ch_in + 5, "AGCH", 4) != 0) ch_error("expected hello");
    int lo = ch_in[9] << 8 | ch_in[10], hi = ch_in[11] << 8 | ch_in[12];
    if (lo > CH_VERSION || hi < CH_VERSION || lo > hi) ch_error("unsupported protocol version");
    ch_consume(pn);
    unsigned char ok[10] = {'A', 'G', 'C', 'H', 0, CH_VERSION};
    put32(ok + 6, CH_FEATURES);
    ch_send(T_HELLO_OK, ok, sizeof ok);
    /* All of HELLO_OK is out before an EXEC (possibly already buffered: hosts may pipeline it)
       is looked at, so a host that got no HELLO_OK knows nothing ran and may fall back. */
    for (long until = now_ms() + CH_HELLO_MS; ch_out_len;) {
        if (ch_flush() < 0 || now_ms() >= until) _exit(0);
        struct pollfd pf = {ch_fd, POLLOUT, 0};
        if (ch_out_len) poll(&pf, 1, 100);
    }
    long idle_until = now_ms() + CH_IDLE_MS;
    for (;;) {
        type = ch_read_frame(idle_until, &pn);
        if (type == T_PING && pn <= 64) {
            ch_send(T_PONG, ch_in + 5, pn);
            ch_consume(pn);
            if (ch_flush() < 0) _exit(0);
            ch_notify();
            continue;
        }
        if (type != T_EXEC) ch_error("expected exec or ping");
        /* Parse from a copy: the request's strings must outlive ch_in, which keeps receiving. */
        static unsigned char req[CH_MAX_FRAME + 1];
        memcpy(req, ch_in + 5, pn);
        ch_consume(pn);
        struct ch_req r;
        const char *why = ch_parse_exec(req, pn, &r);
        if (why) ch_error(why);
        ch_run(&r);
    }
}
/* Host fallback when the runtime exec process itself is stuck: find `exec --tag T`. */
static int run_kill(const char *tag) {
    DIR *d = opendir("/proc");
    if (!d) die("opendir /proc");
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1 || pid == getpid()) continue;
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        /* cmdline is NUL-separated: look for "exec" ... "--tag" "<tag>" before "--". */
        int is_exec = 0, tag_match = 0;
        char *p = buf, *bufend = buf + n;
        p += strlen(p) + 1; /* skip argv[0] */
        if (p < bufend && strcmp(p, "exec") == 0) is_exec = 1;
        for (; p < bufend; p += strlen(p) + 1) {
            if (strcmp(p, "--") == 0) break;
            if (strcmp(p, "--tag") == 0 && p + strlen(p) + 1 < bufend && strcmp(p + strlen(p) + 1, tag) == 0) tag_match = 1;
        }
        if (!is_exec || !tag_match) continue;
        found++;
        /* Descendants first: once the helper dies they would reparent to PID 1 and hide. */
        kill(-(pid_t)pid, SIGKILL);
        pid_t pp;
        unsigned long long st = 0;
        read_stat((pid_t)pid, &pp, &st);
        for (int i = 0; i < 500 && kill_descendants((pid_t)pid, st) != 0; i++) sleep_ms(10);
        kill((pid_t)pid, SIGKILL);
    }
    closedir(d);
    return found ? 0 : 1;
}

static void usage(void) {
    fprintf(stderr, "usage: agent-init [init [--channel PATH]] | exec [--timeout N] [--tag T] [--] argv... | kill --tag T\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) return run_init(NULL);
    if (strcmp(argv[1], "init") == 0) {
        if (argc == 2) return run_init(NULL);
        if (argc == 4 && strcmp(argv[2], "--channel") == 0 && argv[3][0] == '/') return run_init(argv[3]);
        /* PID 1 must come up whatever it is given: a bad flag costs the channel, not the VM. */
        fprintf(stderr, "agent-init: ignoring unknown init arguments; no exec channel\n");
        return run_init(NULL);
    }
    if (strcmp(argv[1], "exec") == 0) {
        long timeout = 0;
        int i = 2;
        for (; i < argc; i++) {
            if (strcmp(argv[i], "--") == 0) { i++; break; }
            if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout = strtol(argv[++i], NULL, 10);
            else if (strcmp(argv[i], "--tag") == 0 && i + 1 < argc) exec_tag = argv[++i];
            else if (argv[i][0] == '-') usage();
            else break;
        }
        if (i >= argc) usage();
        return run_exec(timeout, argv + i);
    }
    if (strcmp(argv[1], "kill") == 0 && argc == 4 && strcmp(argv[2], "--tag") == 0) return run_kill(argv[3]);
    usage();
    return 2;
}
