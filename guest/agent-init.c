/*
 * agent-init: the guest side of agent's OCI launchers (gVisor runsc, runc).
 *
 * Built static (guest/build.sh) because it is bind-mounted read-only at /.agent
 * into whatever language image a VM boots; it must not depend on that image's libc.
 *
 *   agent-init [init]                                  PID 1 of the sandbox
 *   agent-init exec [--timeout N] [--tag T] [--] argv  run one command for `agent vm exec`
 *   agent-init kill --tag T                            kill a stuck exec (host fallback)
 *
 * Exit codes of `exec`: the command's own code, 128+signal when it was signalled,
 * 124 on timeout, 126/127 when it cannot be executed (like a shell). When the command
 * ends (or times out) everything it started is killed too: an exec leaves nothing behind.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_TIMEOUT 124

static void die(const char *what) {
    fprintf(stderr, "agent-init: %s: %s\n", what, strerror(errno));
    exit(125);
}

/* PID 1: nothing to run, just reap orphans (daemons left by execs) until told to stop. */
static int run_init(void) {
    /* Not dumpable: guest code (without CAP_SYS_PTRACE) cannot ptrace-attach to PID 1. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* Blocking + sigwaitinfo: PID 1 ignores unhandled signals, so explicit handling is required. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig == SIGTERM || sig == SIGINT) return 0;
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
    }
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

/* Whether pid is another `agent-init exec` helper (a concurrent exec we must not touch). */
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
    return l0 >= 10 && strcmp(buf + l0 - 10, "agent-init") == 0 && (ssize_t)l0 + 1 < n && strcmp(buf + l0 + 1, "exec") == 0;
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
    if (read_stat(getpid(), &ignored, &self_start) < 0) self_start = 0;

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
                fprintf(stderr, "agent-init: timed out after %lds, killed the command\n", timeout_s);
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
    fprintf(stderr, "usage: agent-init [init] | exec [--timeout N] [--tag T] [--] argv... | kill --tag T\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "init") == 0) return run_init();
    if (strcmp(argv[1], "exec") == 0) {
        long timeout = 0;
        int i = 2;
        for (; i < argc; i++) {
            if (strcmp(argv[i], "--") == 0) { i++; break; }
            if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) timeout = strtol(argv[++i], NULL, 10);
            else if (strcmp(argv[i], "--tag") == 0 && i + 1 < argc) i++;
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
