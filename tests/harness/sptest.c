/* sptest.c -- the one test harness: real nats-server, PostgreSQL and Redis on reserved
 * loopback ports, our services, cleanup at exit or crash, and an HTTP client on libcurl.
 *
 * Check runs each test in a forked child while the environment is created in the parent
 * (an unchecked fixture). So: only the process that created an environment (its owner)
 * kills its servers at exit; every started process leaves <dir>/<name>.pid so the owner
 * finds a server that a test child restarted; a failure is marked by the file <dir>/FAILED,
 * which a test child can create too. */
#include "sptest.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define START_TIMEOUT_MS 30000
#define MAX_ENVS 8
#define MAX_MINE 64
#define MAX_PORTS 1024
#define MAX_SECRETS 32
#define NATS_SERVER "/usr/sbin/nats-server"
#define REDIS_SERVER "redis-server"
#define NGINX "/usr/sbin/nginx"

/* The public sptest_env plus what only the harness needs. */
typedef struct {
    sptest_env pub;
    pid_t owner;      /* the process that created it: the only one that tears it down */
    char pgbase[512]; /* directory owned by postgres: pgdata, socket (maybe /var/tmp) */
    char pgdata[600];
    char pgsock[600];
    char pg_password[80];  /* the superuser's (SP_PG_PASSWORD) */
    char pg_fallback[512]; /* a /var/tmp directory to remove too, or "" */
    char nats_conf[600];
    char secret_kv[MAX_SECRETS][2][160];
    int nsecrets;
    char **svc_extra[8]; /* copies of each service's extra_env, for sptest_restart */
} envx;

static envx *g_envs[MAX_ENVS];
static int g_nenvs;
static int g_ports[MAX_PORTS];
static int g_nports;
/* Processes this process started that die with it (services, servers of the owner). */
static pid_t g_mine[MAX_MINE];
static pid_t g_mine_by[MAX_MINE]; /* who started it: a forked test inherits the list */
static int g_nmine;
static bool g_cleanup_installed;
static struct sigaction g_old_act[32];

static void cleanup_all(void);

/* ---- small helpers ------------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sptest: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* snprintf that aborts on truncation: a cut path would name the wrong file. */
static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "sptest: string too long for its buffer: %s\n", buf);
        abort();
    }
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool file_exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static bool write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return false;
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n;
    close(fd);
    return ok;
}

static pid_t read_pid_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld", &v) != 1) v = 0;
    fclose(f);
    return (pid_t)v;
}

static void write_pid_file(const char *path, pid_t pid)
{
    char buf[32];
    fmt(buf, sizeof buf, "%ld\n", (long)pid);
    write_file(path, buf, 0644);
}

/* True while the process exists and is not a zombie. Reaps it when it is our child. */
static bool pid_alive(pid_t pid)
{
    if (pid <= 0) return false;
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return false;
    if (kill(pid, 0) != 0 && errno == ESRCH) return false;
    char path[64], buf[256];
    fmt(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X')) return false;
    return true;
}

static pid_t proc_ppid(pid_t pid)
{
    char path[64], buf[512];
    fmt(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    char state;
    long ppid;
    if (!rp || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2) return -1;
    return (pid_t)ppid;
}

/* Children of 'parent' according to /proc (e.g. the backends of a postmaster). */
static int proc_children(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    int n = 0;
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        char *end;
        long v = strtol(de->d_name, &end, 10);
        if (*end || v <= 0) continue;
        if (proc_ppid((pid_t)v) == parent) out[n++] = (pid_t)v;
    }
    closedir(d);
    return n;
}

/* Waits up to timeout_ms for every pid to be gone; true when they all are. */
static bool wait_gone(const pid_t *pids, int n, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        bool any = false;
        for (int i = 0; i < n; i++)
            if (pid_alive(pids[i])) any = true;
        if (!any) return true;
        if (now_ms() >= end) return false;
        msleep(20);
    }
}

static void mine_add(pid_t pid)
{
    if (g_nmine < MAX_MINE) {
        g_mine_by[g_nmine] = getpid();
        g_mine[g_nmine++] = pid;
    }
}

static void mine_remove(pid_t pid)
{
    for (int i = 0; i < g_nmine; i++)
        if (g_mine[i] == pid) {
            g_mine_by[i] = g_mine_by[g_nmine - 1];
            g_mine[i] = g_mine[--g_nmine];
            return;
        }
}

/* ---- environment lists ("K=V" vectors) ------------------------------------------------- */

typedef struct {
    char **v;
    int n, cap;
} strvec;

static void sv_push(strvec *s, char *item)
{
    if (s->n + 2 > s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
        if (!s->v) abort();
    }
    s->v[s->n++] = item;
    s->v[s->n] = NULL;
}

static void sv_free(strvec *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* Sets "K=V" (kv), replacing an existing K. */
static void env_put(strvec *s, const char *kv)
{
    const char *eq = strchr(kv, '=');
    size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
    for (int i = 0; i < s->n; i++)
        if (strncmp(s->v[i], kv, klen) == 0 && s->v[i][klen] == '=') {
            free(s->v[i]);
            s->v[i] = strdup(kv);
            return;
        }
    sv_push(s, strdup(kv));
}

static void env_set(strvec *s, const char *k, const char *v)
{
    char *kv;
    if (asprintf(&kv, "%s=%s", k, v) < 0) abort();
    env_put(s, kv);
    free(kv);
}

static void env_unset(strvec *s, const char *k)
{
    size_t klen = strlen(k);
    for (int i = 0; i < s->n; i++)
        if (strncmp(s->v[i], k, klen) == 0 && s->v[i][klen] == '=') {
            free(s->v[i]);
            s->v[i] = s->v[--s->n];
            s->v[s->n] = NULL;
            return;
        }
}

static void env_from_current(strvec *s)
{
    for (char **e = environ; e && *e; e++)
        env_put(s, *e);
}

/* ---- processes -------------------------------------------------------------------------- */

/* Starts argv[0] (searched in PATH) in its own process group with stdout+stderr appended to
 * 'logpath'; records its pid in 'pidfile' (may be NULL). 'die_with_us': SIGKILL when this
 * process dies. Returns the pid, or -1. */
static pid_t spawn(char *const argv[], char *const envp[], const char *logpath, const char *pidfile,
                   bool die_with_us)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        if (die_with_us) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(127);
        }
        /* Restore default signal dispositions: the harness's handlers are not the child's. */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int in = open("/dev/null", O_RDONLY);
        int out = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0) _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        if (in > 2) close(in);
        if (out > 2) close(out);
        execvpe(argv[0], argv, envp ? envp : environ);
        dprintf(2, "sptest: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    if (pidfile) write_pid_file(pidfile, pid);
    if (die_with_us) mine_add(pid);
    return pid;
}

/* Runs a command to completion (output appended to logpath); returns its exit status or -1. */
static int run_sync(char *const argv[], char *const envp[], const char *logpath)
{
    pid_t pid = spawn(argv, envp, logpath, NULL, true);
    if (pid < 0) return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            mine_remove(pid);
            return -1;
        }
    }
    mine_remove(pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- ports and readiness ------------------------------------------------------------- */

int sptest_free_port(void)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t alen = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
            close(fd);
            return -1;
        }
        close(fd);
        int port = ntohs(a.sin_port);
        bool used = false;
        for (int i = 0; i < g_nports; i++)
            if (g_ports[i] == port) used = true;
        if (used) continue;
        if (g_nports < MAX_PORTS) g_ports[g_nports++] = port;
        return port;
    }
    return -1;
}

static int tcp_connect(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool sptest_wait_tcp(int port, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        int fd = tcp_connect(port, 500);
        if (fd >= 0) {
            close(fd);
            return true;
        }
        if (now_ms() >= end) return false;
        msleep(25);
    }
}

/* Connects, optionally sends 'req', and reads until 'want' appears in what came back. */
static bool tcp_expect(int port, const char *req, const char *want)
{
    int fd = tcp_connect(port, 1000);
    if (fd < 0) return false;
    if (req && send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
        close(fd);
        return false;
    }
    char buf[4096];
    size_t len = 0;
    bool ok = false;
    while (len < sizeof buf - 1) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, want)) {
            ok = true;
            break;
        }
    }
    close(fd);
    return ok;
}

static bool wait_answer(pid_t pid, int port, const char *req, const char *want, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        if (tcp_expect(port, req, want)) return true;
        if (pid > 0 && !pid_alive(pid)) return false;
        if (now_ms() >= end) return false;
        msleep(25);
    }
}

static size_t discard_cb(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

static long http_status_once(const char *url, long timeout_ms)
{
    CURL *c = curl_easy_init();
    long status = 0;
    if (!c) return 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

bool sptest_wait_http(const char *url, long want_status, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        if (http_status_once(url, 1000) == want_status) return true;
        if (now_ms() >= end) return false;
        msleep(50);
    }
}

/* ---- environments: lookup, logs, teardown ------------------------------------------------ */

static envx *env_of_proc(const sptest_proc *p)
{
    for (int i = 0; i < g_nenvs; i++) {
        const char *lo = (const char *)&g_envs[i]->pub;
        const char *hi = lo + sizeof g_envs[i]->pub;
        if ((const char *)p >= lo && (const char *)p < hi) return g_envs[i];
    }
    return NULL;
}

static void pidfile_of(const envx *x, const sptest_proc *p, char *buf, size_t len)
{
    fmt(buf, len, "%s/%s.pid", x->pub.dir, p->name);
}

/* The current pid of a process: the pid file wins (a test child may have restarted it). */
static pid_t current_pid(const envx *x, sptest_proc *p)
{
    char pf[700];
    pid_t pid = 0;
    if (x && p == &x->pub.pg) {
        fmt(pf, sizeof pf, "%s/postmaster.pid", x->pgdata);
        pid = read_pid_file(pf);
    } else if (x) {
        pidfile_of(x, p, pf, sizeof pf);
        pid = read_pid_file(pf);
    }
    if (pid > 0) p->pid = pid;
    return p->pid;
}

static void print_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    /* Keep the last 'lines' lines in a ring. */
    char **ring = calloc((size_t)lines, sizeof *ring);
    char *line = NULL;
    size_t cap = 0;
    long n = 0;
    while (getline(&line, &cap, f) >= 0) {
        free(ring[n % lines]);
        ring[n % lines] = strdup(line);
        n++;
    }
    free(line);
    fclose(f);
    fprintf(stderr, "----- last lines of %s -----\n", path);
    long start = n > lines ? n - lines : 0;
    for (long i = start; i < n; i++) {
        const char *l = ring[i % lines];
        fputs(l, stderr);
        if (*l && l[strlen(l) - 1] != '\n') fputc('\n', stderr);
    }
    for (int i = 0; i < lines; i++)
        free(ring[i]);
    free(ring);
}

static void print_logs(const envx *x)
{
    DIR *d = opendir(x->pub.dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 4 && strcmp(de->d_name + l - 4, ".log") == 0) {
                char p[1024];
                fmt(p, sizeof p, "%s/%s", x->pub.dir, de->d_name);
                print_tail(p, 40);
            }
        }
        closedir(d);
    }
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    if (dir && *dir) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void kill_group(pid_t pid, int sig)
{
    if (pid <= 0) return;
    if (kill(-pid, sig) != 0) kill(pid, sig);
}

/* Stops the postmaster (immediate shutdown, then SIGKILL) and waits for its backends. */
static void stop_pg(envx *x)
{
    pid_t pm = current_pid(x, &x->pub.pg);
    if (pm <= 0 || !pid_alive(pm)) return;
    pid_t kids[256];
    int nk = proc_children(pm, kids, 256);
    kill(pm, SIGQUIT);
    if (!wait_gone(&pm, 1, 5000)) kill(pm, SIGKILL);
    for (int i = 0; i < nk; i++)
        kill(kids[i], SIGKILL);
    wait_gone(&pm, 1, 5000);
    wait_gone(kids, nk, 5000);
    x->pub.pg.pid = 0;
}

/* Kills every process recorded in <dir>/<x>.pid. */
static void kill_pidfiles(envx *x)
{
    DIR *d = opendir(x->pub.dir);
    if (!d) return;
    struct dirent *de;
    pid_t pids[64];
    int n = 0;
    while ((de = readdir(d)) && n < 64) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".pid") == 0) {
            char p[1024];
            fmt(p, sizeof p, "%s/%s", x->pub.dir, de->d_name);
            pid_t pid = read_pid_file(p);
            if (pid > 0 && pid_alive(pid)) {
                kill_group(pid, SIGKILL);
                pids[n++] = pid;
            }
        }
    }
    closedir(d);
    wait_gone(pids, n, 5000);
}

static void teardown(envx *x)
{
    if (x->owner != getpid()) return;
    kill_pidfiles(x);
    stop_pg(x);
}

static void cleanup_all(void)
{
    /* Whatever this process started that dies with it (a test child's services too). */
    for (int i = 0; i < g_nmine; i++)
        if (g_mine_by[i] == getpid()) kill_group(g_mine[i], SIGKILL);
    for (int i = 0; i < g_nenvs; i++)
        teardown(g_envs[i]);
    g_nmine = 0;
}

static void on_signal(int sig)
{
    /* Best effort on a crash: kill the process groups we know of, then die as asked. */
    for (int i = 0; i < g_nmine; i++)
        if (g_mine_by[i] == getpid()) kill_group(g_mine[i], SIGKILL);
    for (int i = 0; i < g_nenvs; i++) {
        envx *x = g_envs[i];
        if (x->owner != getpid()) continue;
        kill_group(x->pub.nats.pid, SIGKILL);
        kill_group(x->pub.redis.pid, SIGKILL);
        if (x->pub.pg.pid > 0) kill(x->pub.pg.pid, SIGQUIT);
        for (int j = 0; j < x->pub.nsvc; j++)
            kill_group(x->pub.svc[j].pid, SIGKILL);
    }
    struct sigaction *old = &g_old_act[sig];
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN && !(old->sa_flags & SA_SIGINFO)) {
        old->sa_handler(sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_cleanup(void)
{
    if (g_cleanup_installed) return;
    g_cleanup_installed = true;
    atexit(cleanup_all);
    int sigs[] = {SIGINT, SIGTERM, SIGSEGV, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        sigaction(sigs[i], &sa, &g_old_act[sigs[i]]);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sptest: FATAL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    for (int i = 0; i < g_nenvs; i++) {
        sptest_mark_failed(&g_envs[i]->pub);
        print_logs(g_envs[i]);
        fprintf(stderr, "sptest: kept %s\n", g_envs[i]->pub.dir);
    }
    exit(EXIT_FAILURE);
}

/* ---- secrets ------------------------------------------------------------------------------ */

static const char *secret_get(const envx *x, const char *k)
{
    for (int i = 0; i < x->nsecrets; i++)
        if (strcmp(x->secret_kv[i][0], k) == 0) return x->secret_kv[i][1];
    return NULL;
}

/* The secret SP_<what>_<SERVICE>_PASSWORD of service 'name' ("auth"), or NULL. */
static const char *service_secret(const envx *x, const char *what, const char *name)
{
    char key[96];
    fmt(key, sizeof key, "SP_%s_%s_PASSWORD", what, name);
    for (char *c = key; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    return secret_get(x, key);
}

const char *sptest_secret(sptest_env *e, const char *key)
{
    return secret_get((envx *)e, key);
}

static void secret_put(envx *x, const char *k, const char *v)
{
    for (int i = 0; i < x->nsecrets; i++)
        if (strcmp(x->secret_kv[i][0], k) == 0) {
            fmt(x->secret_kv[i][1], sizeof x->secret_kv[i][1], "%s", v);
            return;
        }
    if (x->nsecrets >= MAX_SECRETS) return;
    fmt(x->secret_kv[x->nsecrets][0], sizeof x->secret_kv[0][0], "%s", k);
    fmt(x->secret_kv[x->nsecrets][1], sizeof x->secret_kv[0][1], "%s", v);
    x->nsecrets++;
}

static bool load_secrets(envx *x)
{
    FILE *f = fopen(x->pub.secrets, "r");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '#' || !*s) continue;
        if (strncmp(s, "export ", 7) == 0) s += 7;
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = '\0';
        char *v = eq + 1;
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = '\0';
            v++;
        }
        secret_put(x, s, v);
    }
    free(line);
    fclose(f);
    return true;
}

/* Without spctl: random secrets of the same names, written to secrets.env. */
static void make_own_secrets(envx *x)
{
    static const char *names[] = {"SP_JWT_SECRET",
                                  "SP_MASTER_KEY",
                                  "SP_NATS_GATEWAY_PASSWORD",
                                  "SP_NATS_AUTH_PASSWORD",
                                  "SP_NATS_TENANCY_PASSWORD",
                                  "SP_NATS_CATALOG_PASSWORD",
                                  "SP_NATS_INGEST_PASSWORD",
                                  "SP_NATS_PROJECTION_PASSWORD",
                                  "SP_NATS_SPCTL_PASSWORD",
                                  "SP_PG_PASSWORD",
                                  "SP_PG_AUTH_PASSWORD",
                                  "SP_PG_TENANCY_PASSWORD",
                                  "SP_PG_CATALOG_PASSWORD",
                                  "SP_PG_INGEST_PASSWORD",
                                  "SP_PG_PROJECTION_PASSWORD",
                                  "SP_REDIS_PASSWORD"};
    FILE *r = fopen("/dev/urandom", "r");
    FILE *out = fopen(x->pub.secrets, "w");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        unsigned char b[32] = {0};
        char hex[65];
        if (r && fread(b, 1, sizeof b, r) != sizeof b) abort();
        for (int j = 0; j < 32; j++)
            fmt(hex + 2 * j, 3, "%02x", b[j]);
        secret_put(x, names[i], hex);
        if (out) fprintf(out, "%s=%s\n", names[i], hex);
    }
    if (r) fclose(r);
    if (out) {
        fchmod(fileno(out), 0600);
        fclose(out);
    }
}

/* The current environment plus the secrets. */
static void env_with_secrets(strvec *env, const envx *x)
{
    env_from_current(env);
    for (int i = 0; i < x->nsecrets; i++)
        env_set(env, x->secret_kv[i][0], x->secret_kv[i][1]);
}

static void spctl_path(char *buf, size_t len)
{
    fmt(buf, len, "%s/spctl", SP_BINARY_DIR);
}

/* ---- nats-server ---------------------------------------------------------------------- */

static bool write_noauth_nats_conf(envx *x)
{
    char text[2048];
    fmt(text, sizeof text,
        "listen: 127.0.0.1:%d\n"
        "max_payload: 8MB\n"
        "jetstream {\n  store_dir: \"%s/nats\"\n}\n",
        x->pub.nats_port, x->pub.dir);
    return write_file(x->nats_conf, text, 0600);
}

static bool gen_nats_conf_with_spctl(envx *x)
{
    char spctl[600], listen[64], store[600], log[600];
    spctl_path(spctl, sizeof spctl);
    fmt(listen, sizeof listen, "127.0.0.1:%d", x->pub.nats_port);
    fmt(store, sizeof store, "%s/nats", x->pub.dir);
    fmt(log, sizeof log, "%s/spctl.log", x->pub.dir);
    strvec env = {0};
    env_with_secrets(&env, x);
    char *conf[] = {spctl, "nats-config", "--listen",   listen, "--store",
                    store, "--out",       x->nats_conf, NULL};
    int rc = run_sync(conf, env.v, log);
    sv_free(&env);
    if (rc != 0) die("spctl nats-config failed (see %s)", log);
    return true;
}

/* The stack's secrets (JWT key, NATS, PostgreSQL and Redis passwords), before any server
 * starts: by spctl gen-secrets as make run does, or made here when spctl is not built. */
static void ensure_secrets(envx *x)
{
    char spctl[600], log[700];
    spctl_path(spctl, sizeof spctl);
    fmt(log, sizeof log, "%s/spctl.log", x->pub.dir);
    if (access(spctl, X_OK) == 0) {
        char *gen[] = {spctl, "gen-secrets", x->pub.secrets, NULL};
        if (run_sync(gen, NULL, log) != 0 || !load_secrets(x))
            die("spctl gen-secrets %s failed (see %s)", x->pub.secrets, log);
    } else {
        logf_("%s not built: secrets made here", spctl);
        make_own_secrets(x);
    }
}

static void start_nats(envx *x)
{
    sptest_proc *p = &x->pub.nats;
    char pidfile[700], spctl[600];
    char *argv[] = {NATS_SERVER, "-c", x->nats_conf, NULL};
    pidfile_of(x, p, pidfile, sizeof pidfile);
    spctl_path(spctl, sizeof spctl);
    if (p->pid == 0 && !file_exists(x->nats_conf)) {
        if ((x->pub.what & SPTEST_NATS) && access(spctl, X_OK) == 0) {
            gen_nats_conf_with_spctl(x);
        } else {
            if (x->pub.what & SPTEST_NATS) logf_("%s not built: nats-server without users", spctl);
            if (!write_noauth_nats_conf(x)) die("cannot write %s", x->nats_conf);
        }
    }
    bool owner = x->owner == getpid();
    p->pid = spawn(argv, NULL, p->log, pidfile, owner);
    if (p->pid < 0 || !wait_answer(p->pid, x->pub.nats_port, NULL, "INFO ", START_TIMEOUT_MS))
        die("nats-server did not come up on port %d", x->pub.nats_port);
}

/* ---- redis --------------------------------------------------------------------------- */

static void start_redis(envx *x)
{
    sptest_proc *p = &x->pub.redis;
    char pidfile[700], port[16], rdir[600];
    fmt(port, sizeof port, "%d", x->pub.redis_port);
    fmt(rdir, sizeof rdir, "%s/redis", x->pub.dir);
    mkdir(rdir, 0755);
    pidfile_of(x, p, pidfile, sizeof pidfile);
    char *argv[] = {REDIS_SERVER,
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    rdir,
                    "--daemonize",
                    "no",
                    "--requirepass",
                    x->pub.redis_password,
                    NULL};
    char hello[200];
    fmt(hello, sizeof hello, "AUTH %s\r\nPING\r\n", x->pub.redis_password);
    p->pid = spawn(argv, NULL, p->log, pidfile, x->owner == getpid());
    if (p->pid < 0 || !wait_answer(p->pid, x->pub.redis_port, hello, "+PONG", START_TIMEOUT_MS))
        die("redis-server did not come up on port %d", x->pub.redis_port);
}

/* ---- PostgreSQL ------------------------------------------------------------------------ */

static void pg_bin(char *buf, size_t len, const char *prog)
{
    static char bindir[512];
    if (!bindir[0]) {
        FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
        if (f) {
            if (fgets(bindir, sizeof bindir, f)) bindir[strcspn(bindir, "\r\n")] = '\0';
            pclose(f);
        }
        char test[600];
        fmt(test, sizeof test, "%s/initdb", bindir);
        if (!bindir[0] || access(test, X_OK) != 0)
            fmt(bindir, sizeof bindir, "/usr/lib/postgresql/15/bin");
    }
    fmt(buf, len, "%s/%s", bindir, prog);
}

/* True when every directory from / down to 'dir' can be traversed by others. */
static bool traversable_by_others(const char *dir)
{
    char path[600];
    fmt(path, sizeof path, "%s", dir);
    for (;;) {
        struct stat st;
        if (stat(path, &st) != 0 || !(st.st_mode & S_IXOTH)) return false;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path) break;
        *slash = '\0';
    }
    return true;
}

/* Prefix for commands that must run as the postgres user when we are root. */
static int as_pg_user(char **argv, int i)
{
    if (geteuid() == 0) {
        argv[i++] = "runuser";
        argv[i++] = "-u";
        argv[i++] = "postgres";
        argv[i++] = "--";
    }
    return i;
}

static bool pg_ctl_start(envx *x)
{
    char pgctl[600], opts[1024], log[700];
    pg_bin(pgctl, sizeof pgctl, "pg_ctl");
    fmt(opts, sizeof opts,
        /* fsync=off survives a process crash (the OS keeps the pages), which is
         * what the tests do; synchronous_commit stays on for the same reason */
        "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", x->pub.pg_port, x->pgsock);
    fmt(log, sizeof log, "%s/pg_ctl.log", x->pub.dir);
    char *argv[16];
    int i = as_pg_user(argv, 0);
    argv[i++] = pgctl;
    argv[i++] = "-D";
    argv[i++] = x->pgdata;
    argv[i++] = "-l";
    argv[i++] = x->pub.pg.log;
    argv[i++] = "-w";
    argv[i++] = "-t";
    argv[i++] = "30";
    argv[i++] = "-o";
    argv[i++] = opts;
    argv[i++] = "start";
    argv[i] = NULL;
    return run_sync(argv, NULL, log) == 0;
}

static void start_pg(envx *x)
{
    sptest_proc *p = &x->pub.pg;
    struct passwd *pw = geteuid() == 0 ? getpwnam("postgres") : NULL;
    if (geteuid() == 0 && !pw) die("running as root but there is no postgres user");
    if (geteuid() == 0 && !traversable_by_others(x->pub.dir)) {
        fmt(x->pg_fallback, sizeof x->pg_fallback, "/var/tmp/sptest-pg-XXXXXX");
        if (!mkdtemp(x->pg_fallback)) die("mkdtemp %s: %s", x->pg_fallback, strerror(errno));
        chmod(x->pg_fallback, 0755);
        fmt(x->pgbase, sizeof x->pgbase, "%s", x->pg_fallback);
        logf_("postgres cannot traverse %s: cluster in %s", x->pub.dir, x->pgbase);
    } else {
        fmt(x->pgbase, sizeof x->pgbase, "%s/pgbase", x->pub.dir);
        mkdir(x->pgbase, 0700);
    }
    fmt(x->pgdata, sizeof x->pgdata, "%s/pg", x->pgbase);
    fmt(x->pgsock, sizeof x->pgsock, "%s/sock", x->pgbase);
    mkdir(x->pgdata, 0700);
    mkdir(x->pgsock, 0700);
    int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) close(fd);
    if (pw) {
        if (chown(x->pgbase, pw->pw_uid, pw->pw_gid) != 0 ||
            chown(x->pgdata, pw->pw_uid, pw->pw_gid) != 0 ||
            chown(x->pgsock, pw->pw_uid, pw->pw_gid) != 0 ||
            chown(p->log, pw->pw_uid, pw->pw_gid) != 0)
            die("chown to postgres: %s", strerror(errno));
    }

    /* no trust: every connection, local or TCP, needs its role's password */
    char initdb[600], log[700], pwfile[700], pwopt[720];
    fmt(pwfile, sizeof pwfile, "%s/pwfile", x->pgbase);
    if (!write_file(pwfile, x->pg_password, 0600) ||
        (pw && chown(pwfile, pw->pw_uid, pw->pw_gid) != 0))
        die("cannot write %s", pwfile);
    fmt(pwopt, sizeof pwopt, "--pwfile=%s", pwfile);
    pg_bin(initdb, sizeof initdb, "initdb");
    fmt(log, sizeof log, "%s/initdb.log", x->pub.dir);
    char *argv[16];
    int i = as_pg_user(argv, 0);
    argv[i++] = initdb;
    argv[i++] = "-D";
    argv[i++] = x->pgdata;
    argv[i++] = "-U";
    argv[i++] = "sp";
    argv[i++] = "--auth=scram-sha-256";
    argv[i++] = pwopt;
    argv[i++] = "--no-sync";
    argv[i++] = "-E";
    argv[i++] = "UTF8";
    argv[i] = NULL;
    int rc = run_sync(argv, NULL, log);
    unlink(pwfile);
    if (rc != 0) die("initdb failed (see %s)", log);
    if (!pg_ctl_start(x)) die("pg_ctl start failed on port %d", x->pub.pg_port);
    current_pid(x, p);

    char createdb[600], port[16];
    pg_bin(createdb, sizeof createdb, "createdb");
    fmt(port, sizeof port, "%d", x->pub.pg_port);
    char *cargv[] = {createdb, "-h", "127.0.0.1", "-p", port, "-U", "sp", "smartpark", NULL};
    strvec env = {0};
    env_from_current(&env);
    env_set(&env, "PGPASSWORD", x->pg_password);
    rc = run_sync(cargv, env.v, log);
    sv_free(&env);
    if (rc != 0) die("createdb smartpark failed (see %s)", log);
}

static void restart_pg(envx *x)
{
    /* A killed postmaster may linger as a zombie (our init does not always reap): its
     * lock file would then look owned by a live process. */
    char lock[700];
    fmt(lock, sizeof lock, "%s/postmaster.pid", x->pgdata);
    pid_t old = read_pid_file(lock);
    if (old > 0 && !pid_alive(old)) {
        unlink(lock);
        fmt(lock, sizeof lock, "%s/.s.PGSQL.%d.lock", x->pgsock, x->pub.pg_port);
        unlink(lock);
        fmt(lock, sizeof lock, "%s/.s.PGSQL.%d", x->pgsock, x->pub.pg_port);
        unlink(lock);
    }
    /* After a SIGKILL the old backends may still hold the shared memory for a moment. */
    long long end = now_ms() + START_TIMEOUT_MS;
    while (!pg_ctl_start(x)) {
        if (now_ms() >= end) die("pg_ctl restart failed on port %d", x->pub.pg_port);
        msleep(200);
    }
    current_pid(x, &x->pub.pg);
}

/* ---- migrations and services ----------------------------------------------------------- */

static void stack_env(strvec *env, const envx *x)
{
    env_with_secrets(env, x);
    env_set(env, "SP_NATS_URL", x->pub.nats_url);
    env_set(env, "SP_DATABASE_URL", x->pub.db_url);
    env_set(env, "SP_REDIS_URL", x->pub.redis_url);
}

static void run_migrate(envx *x)
{
    char spctl[600], log[700];
    spctl_path(spctl, sizeof spctl);
    if (access(spctl, X_OK) != 0) {
        logf_("%s not built: no migrations run", spctl);
        return;
    }
    fmt(log, sizeof log, "%s/spctl.log", x->pub.dir);
    strvec env = {0};
    stack_env(&env, x);
    env_set(&env, "SP_NATS_USER", "spctl");
    const char *pw = secret_get(x, "SP_NATS_SPCTL_PASSWORD");
    if (pw) env_set(&env, "SP_NATS_PASSWORD", pw);
    char *argv[] = {spctl, "migrate", NULL};
    int rc = run_sync(argv, env.v, log);
    sv_free(&env);
    if (rc != 0) die("spctl migrate failed (see %s)", log);
}

static bool start_service_proc(envx *x, sptest_proc *p, const char *const *extra_env)
{
    char bin[600], pidfile[700], addr[64];
    fmt(bin, sizeof bin, "%s/%s", SP_BINARY_DIR, p->name);
    pidfile_of(x, p, pidfile, sizeof pidfile);
    strvec env = {0};
    stack_env(&env, x);
    env_set(&env, "SP_NATS_USER", p->name);
    const char *pw = service_secret(x, "NATS", p->name);
    if (pw) env_set(&env, "SP_NATS_PASSWORD", pw);
    fmt(addr, sizeof addr, "127.0.0.1:%d", p->admin_port);
    env_set(&env, "SP_ADMIN_ADDR", addr);
    if (strcmp(p->name, "gateway") == 0) {
        fmt(addr, sizeof addr, "127.0.0.1:%d", x->pub.http_port);
        env_set(&env, "SP_HTTP_ADDR", addr);
    }
    /* a service with a schema connects as its own role, the owner of that schema only
     * (spctl migrate made it); the others get no database at all */
    const char *pg_pw = service_secret(x, "PG", p->name);
    if (pg_pw != NULL && x->pub.pg_port > 0) {
        char url[300];
        fmt(url, sizeof url, "postgresql://sp_%s:%s@127.0.0.1:%d/smartpark", p->name, pg_pw,
            x->pub.pg_port);
        env_set(&env, "SP_DATABASE_URL", url);
    } else {
        env_unset(&env, "SP_DATABASE_URL");
    }
    env_set(&env, "SP_LOG_LEVEL", "debug");
    for (const char *const *e = extra_env; e && *e; e++)
        env_put(&env, *e);
    char *argv[] = {bin, NULL};
    p->pid = spawn(argv, env.v, p->log, pidfile, true);
    sv_free(&env);
    if (p->pid < 0) return false;

    char url[128];
    fmt(url, sizeof url, "http://127.0.0.1:%d/readyz", p->admin_port);
    long long end = now_ms() + START_TIMEOUT_MS;
    while (now_ms() < end) {
        if (http_status_once(url, 1000) == 200) return true;
        if (!pid_alive(p->pid)) return false;
        msleep(50);
    }
    return false;
}

sptest_proc *sptest_start_service(sptest_env *e, const char *name, const char *const *extra_env)
{
    envx *x = (envx *)e;
    if (e->nsvc >= (int)(sizeof e->svc / sizeof e->svc[0]))
        die("too many services (max %zu)", sizeof e->svc / sizeof e->svc[0]);
    sptest_proc *p = &e->svc[e->nsvc++];
    memset(p, 0, sizeof *p);
    fmt(p->name, sizeof p->name, "%s", name);
    fmt(p->log, sizeof p->log, "%s/%s.log", e->dir, name);
    p->admin_port = sptest_free_port();
    size_t n = 0;
    while (extra_env && extra_env[n])
        n++;
    char **copy = calloc(n + 1, sizeof *copy);
    if (!copy) abort();
    for (size_t i = 0; i < n; i++)
        copy[i] = strdup(extra_env[i]);
    x->svc_extra[e->nsvc - 1] = copy;
    if (!start_service_proc(x, p, extra_env))
        die("service %s did not answer 200 on /readyz (port %d) within %d s", name, p->admin_port,
            START_TIMEOUT_MS / 1000);
    return p;
}

sptest_proc *sptest_start_edge(sptest_env *e, const char *const *extra_env)
{
    envx *x = (envx *)e;
    sptest_proc *p = &e->edge;
    if (e->http_port <= 0) die("sptest_start_edge: no gateway port");
    memset(p, 0, sizeof *p);
    fmt(p->name, sizeof p->name, "edge");
    fmt(p->log, sizeof p->log, "%s/edge.log", e->dir);
    e->edge_port = sptest_free_port();
    fmt(e->edge_url, sizeof e->edge_url, "http://127.0.0.1:%d", e->edge_port);

    char spctl[600], tmpl[600], conf[600], dir[600], kv[700];
    spctl_path(spctl, sizeof spctl);
    fmt(tmpl, sizeof tmpl, "%s/deploy/nginx/edge.conf.template", SP_SOURCE_DIR);
    fmt(conf, sizeof conf, "%s/edge.conf", e->dir);
    fmt(dir, sizeof dir, "%s/edge", e->dir);
    strvec env = {0};
    env_from_current(&env);
    fmt(kv, sizeof kv, "127.0.0.1:%d", e->edge_port);
    env_set(&env, "SP_EDGE_ADDR", kv);
    fmt(kv, sizeof kv, "127.0.0.1:%d", e->http_port);
    env_set(&env, "SP_EDGE_UPSTREAM", kv);
    env_set(&env, "SP_EDGE_DIR", dir);
    for (const char *const *v = extra_env; v && *v; v++)
        env_put(&env, *v);
    char *render[] = {spctl, "edge-config", tmpl, conf, NULL};
    if (run_sync(render, env.v, p->log) != 0) die("spctl edge-config failed (see %s)", p->log);
    sv_free(&env);

    /* as root, the workers too: they write the temporary files of the directory we made */
    char *argv[] = {NGINX, "-e", "stderr", "-p", dir, "-c", conf, "-g", "user root;", NULL};
    if (geteuid() != 0) argv[7] = NULL;
    char pidfile[700];
    pidfile_of(x, p, pidfile, sizeof pidfile);
    p->pid = spawn(argv, NULL, p->log, pidfile, true);
    if (p->pid < 0) die("cannot start nginx");
    char url[200];
    fmt(url, sizeof url, "%s/healthz", e->edge_url);
    long long end = now_ms() + START_TIMEOUT_MS;
    while (now_ms() < end) {
        if (http_status_once(url, 1000) == 200) return p;
        if (!pid_alive(p->pid)) break;
        msleep(50);
    }
    print_tail(p->log, 20);
    die("nginx did not answer 200 on %s within %d s", url, START_TIMEOUT_MS / 1000);
}

/* ---- the public lifecycle ------------------------------------------------------------ */

static void init_proc(sptest_env *e, sptest_proc *p, const char *name, const char *log)
{
    fmt(p->name, sizeof p->name, "%s", name);
    fmt(p->log, sizeof p->log, "%s/%s", e->dir, log);
}

sptest_env *sptest_start(const char *suite, unsigned what)
{
    install_cleanup();
    if (g_nenvs >= MAX_ENVS) die("too many environments (max %d)", MAX_ENVS);
    envx *x = calloc(1, sizeof *x);
    if (!x) abort();
    sptest_env *e = &x->pub;
    x->owner = getpid();
    e->what = what;
    mkdir(SP_BINARY_DIR "/tmp", 0755);
    fmt(e->dir, sizeof e->dir, "%s/tmp/%s-XXXXXX", SP_BINARY_DIR, suite);
    if (!mkdtemp(e->dir)) {
        fprintf(stderr, "sptest: mkdtemp %s: %s\n", e->dir, strerror(errno));
        exit(EXIT_FAILURE);
    }
    chmod(e->dir, 0755);
    g_envs[g_nenvs++] = x;
    fmt(e->secrets, sizeof e->secrets, "%s/secrets.env", e->dir);
    fmt(x->nats_conf, sizeof x->nats_conf, "%s/nats.conf", e->dir);
    init_proc(e, &e->nats, "nats", "nats.log");
    init_proc(e, &e->pg, "postgres", "postgres.log");
    init_proc(e, &e->redis, "redis", "redis.log");
    ensure_secrets(x);

    if (what & (SPTEST_NATS | SPTEST_NATS_NOAUTH | SPTEST_MIGRATE)) {
        e->nats_port = sptest_free_port();
        fmt(e->nats_url, sizeof e->nats_url, "nats://127.0.0.1:%d", e->nats_port);
        char store[600];
        fmt(store, sizeof store, "%s/nats", e->dir);
        mkdir(store, 0755);
        start_nats(x);
    }
    if (what & (SPTEST_PG | SPTEST_MIGRATE)) {
        e->pg_port = sptest_free_port();
        fmt(x->pg_password, sizeof x->pg_password, "%s", secret_get(x, "SP_PG_PASSWORD"));
        fmt(e->db_url, sizeof e->db_url, "postgresql://sp:%s@127.0.0.1:%d/smartpark",
            x->pg_password, e->pg_port);
        start_pg(x);
    }
    if (what & SPTEST_REDIS) {
        e->redis_port = sptest_free_port();
        fmt(e->redis_password, sizeof e->redis_password, "%s", secret_get(x, "SP_REDIS_PASSWORD"));
        fmt(e->redis_url, sizeof e->redis_url, "redis://:%s@127.0.0.1:%d", e->redis_password,
            e->redis_port);
        start_redis(x);
    }
    e->http_port = sptest_free_port();
    fmt(e->base_url, sizeof e->base_url, "http://127.0.0.1:%d", e->http_port);
    if (what & SPTEST_MIGRATE) run_migrate(x);
    return e;
}

void sptest_mark_failed(sptest_env *e)
{
    char p[600];
    if (!e) return;
    fmt(p, sizeof p, "%s/FAILED", e->dir);
    write_file(p, "1\n", 0644);
}

void sptest_stop(sptest_env *e)
{
    if (!e) return;
    envx *x = (envx *)e;
    for (int i = 0; i < e->nsvc; i++)
        if (e->svc[i].pid > 0) {
            kill_group(e->svc[i].pid, SIGKILL);
            mine_remove(e->svc[i].pid);
        }
    teardown(x);
    mine_remove(e->nats.pid);
    mine_remove(e->redis.pid);
    char failed[600];
    fmt(failed, sizeof failed, "%s/FAILED", e->dir);
    const char *keep = getenv("SP_KEEP_TMP");
    if (file_exists(failed) || (keep && strcmp(keep, "1") == 0)) {
        print_logs(x);
        if (x->pg_fallback[0])
            logf_("kept %s and %s", e->dir, x->pg_fallback);
        else
            logf_("kept %s", e->dir);
    } else if (x->owner == getpid()) {
        rm_rf(e->dir);
        rm_rf(x->pg_fallback);
    }
    for (int i = 0; i < g_nenvs; i++)
        if (g_envs[i] == x) {
            g_envs[i] = g_envs[--g_nenvs];
            break;
        }
    for (int i = 0; i < 8; i++) {
        for (char **v = x->svc_extra[i]; v && *v; v++)
            free(*v);
        free(x->svc_extra[i]);
    }
    free(x);
}

static int port_of(const envx *x, const sptest_proc *p)
{
    if (!x) return 0;
    if (p == &x->pub.nats) return x->pub.nats_port;
    if (p == &x->pub.redis) return x->pub.redis_port;
    if (p == &x->pub.pg) return x->pub.pg_port;
    return p->admin_port;
}

/* A killed server's port can accept a connection for a moment after the process is gone. */
static void wait_port_closed(int port, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (port > 0 && now_ms() < end) {
        int fd = tcp_connect(port, 200);
        if (fd < 0) return;
        close(fd);
        msleep(20);
    }
}

void sptest_kill(sptest_proc *p, int sig)
{
    envx *x = env_of_proc(p);
    pid_t pid = current_pid(x, p);
    if (pid <= 0 || !pid_alive(pid)) {
        p->pid = 0;
        return;
    }
    if (x && p == &x->pub.pg) {
        /* The postmaster: signal it alone (a crash), then wait for its backends to go. */
        pid_t kids[256];
        int nk = proc_children(pid, kids, 256);
        kill(pid, sig);
        if (!wait_gone(&pid, 1, 10000)) {
            kill(pid, SIGKILL);
            wait_gone(&pid, 1, 5000);
        }
        if (!wait_gone(kids, nk, 10000))
            for (int i = 0; i < nk; i++)
                kill(kids[i], SIGKILL);
        wait_gone(kids, nk, 5000);
    } else {
        kill(pid, sig);
        if (!wait_gone(&pid, 1, 10000)) {
            kill_group(pid, SIGKILL);
            wait_gone(&pid, 1, 5000);
        }
        mine_remove(pid);
    }
    wait_port_closed(port_of(x, p), 5000);
    p->pid = 0;
}

long sptest_log_size(const sptest_proc *p)
{
    struct stat st;
    return stat(p->log, &st) == 0 ? (long)st.st_size : 0;
}

bool sptest_log_has(const sptest_proc *p, long from, const char *needle)
{
    FILE *f = fopen(p->log, "r");
    if (f == NULL) return false;
    char line[8192];
    bool found = false;
    if (from > 0) fseek(f, from, SEEK_SET);
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

bool sptest_log_has_sanitizer(const sptest_proc *p, long from)
{
    return sptest_log_has(p, from, "Sanitizer") || sptest_log_has(p, from, "runtime error");
}

void sptest_restart(sptest_env *e, sptest_proc *p)
{
    envx *x = (envx *)e;
    if (p->pid > 0 && pid_alive(p->pid)) sptest_kill(p, SIGTERM);
    if (p == &e->nats)
        start_nats(x);
    else if (p == &e->redis)
        start_redis(x);
    else if (p == &e->pg)
        restart_pg(x);
    else if (p < e->svc || p >= e->svc + e->nsvc)
        die("sptest_restart: %s is not a process of this environment", p->name);
    else if (!start_service_proc(x, p, (const char *const *)x->svc_extra[p - e->svc]))
        die("service %s did not come back", p->name);
}

/* ---- HTTP client ------------------------------------------------------------------------ */

typedef struct {
    sptest_resp pub;
    size_t cap, hlen, hcap;
    char *hdr_copies[32];
    int nhdr;
} respx;

static bool buf_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return false;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

static size_t body_cb(char *p, size_t sz, size_t n, void *ud)
{
    respx *r = ud;
    return buf_append(&r->pub.body, &r->pub.len, &r->cap, p, sz * n) ? sz * n : 0;
}

static size_t header_cb(char *p, size_t sz, size_t n, void *ud)
{
    respx *r = ud;
    /* A new status line (after a 100 Continue or a redirect) starts a new header block. */
    if (sz * n >= 5 && strncmp(p, "HTTP/", 5) == 0) r->hlen = 0;
    return buf_append(&r->pub.headers, &r->hlen, &r->hcap, p, sz * n) ? sz * n : 0;
}

/* SP_TEST_RESPONSES (a directory, set by tests/CMakeLists.txt): every answer received is
 * appended to <dir>/<pid>.jsonl as {"method","path","status","contentType","body"} (body:
 * the parsed JSON or null), for tools/dev/openapi-responses.mjs, which checks them
 * against the OpenAPI document once every suite ran. One write() per line (O_APPEND). */
static pthread_mutex_t g_record_mu = PTHREAD_MUTEX_INITIALIZER;

static void record_response(const char *method, const char *url, const sptest_resp *r)
{
    const char *dir = getenv("SP_TEST_RESPONSES");
    if (dir == NULL || dir[0] == '\0' || r->status == 0) return;
    const char *path = strstr(url, "://");
    path = path != NULL ? strchr(path + 3, '/') : NULL;
    if (path == NULL) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", method);
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddNumberToObject(o, "status", (double)r->status);
    const char *ct = sptest_resp_header((sptest_resp *)r, "Content-Type");
    cJSON_AddStringToObject(o, "contentType", ct != NULL ? ct : "");
    cJSON_AddItemToObject(o, "body",
                          r->json != NULL ? cJSON_Duplicate(r->json, true) : cJSON_CreateNull());
    cJSON_AddBoolToObject(o, "bodyIsJson", r->json != NULL || r->len == 0);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (line == NULL) return;
    char file[4096];
    fmt(file, sizeof file, "%s/%ld.jsonl", dir, (long)getpid());
    pthread_mutex_lock(&g_record_mu);
    mkdir(dir, 0755);
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        size_t n = strlen(line);
        line[n] = '\n'; /* replaces the NUL: written with its length */
        if (write(fd, line, n + 1) != (ssize_t)(n + 1)) logf_("cannot record to %s", file);
        close(fd);
    }
    pthread_mutex_unlock(&g_record_mu);
    free(line);
}

sptest_resp *sptest_http(const char *method, const char *url, const char *const *headers,
                         const char *body, size_t len)
{
    respx *r = calloc(1, sizeof *r);
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    if (!r || !c) abort();
    r->pub.body = calloc(1, 1);
    r->pub.headers = calloc(1, 1);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    for (const char *const *h = headers; h && *h; h++)
        hl = curl_slist_append(hl, *h);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->pub.status);
        curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->pub.seconds);
    } else {
        r->pub.status = 0;
        logf_("%s %s: %s", method, url, curl_easy_strerror(rc));
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (r->pub.len) r->pub.json = cJSON_ParseWithLength(r->pub.body, r->pub.len);
    record_response(method, url, &r->pub);
    return &r->pub;
}

sptest_resp *sptest_json(sptest_env *e, const char *method, const char *path, const char *token,
                         const char *body)
{
    char url[1024];
    char *auth = NULL;
    const char *hdrs[4];
    int n = 0;
    fmt(url, sizeof url, "%s%s", e->base_url, path);
    hdrs[n++] = "Content-Type: application/json";
    hdrs[n++] = "Accept: application/json";
    if (token) {
        if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) abort();
        hdrs[n++] = auth;
    }
    hdrs[n] = NULL;
    sptest_resp *r = sptest_http(method, url, hdrs, body, body ? strlen(body) : 0);
    free(auth);
    return r;
}

void sptest_resp_free(sptest_resp *r)
{
    if (!r) return;
    respx *x = (respx *)r;
    for (int i = 0; i < x->nhdr; i++)
        free(x->hdr_copies[i]);
    cJSON_Delete(r->json);
    free(r->body);
    free(r->headers);
    free(x);
}

const char *sptest_resp_header(sptest_resp *r, const char *name)
{
    if (!r || !r->headers) return NULL;
    respx *x = (respx *)r;
    size_t nl = strlen(name);
    const char *line = r->headers;
    while (*line) {
        const char *eol = strstr(line, "\r\n");
        size_t ll = eol ? (size_t)(eol - line) : strlen(line);
        if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            const char *end = line + ll;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            if (x->nhdr >= (int)(sizeof x->hdr_copies / sizeof x->hdr_copies[0])) return NULL;
            char *copy = strndup(v, (size_t)(end - v));
            x->hdr_copies[x->nhdr++] = copy;
            return copy;
        }
        if (!eol) break;
        line = eol + 2;
    }
    return NULL;
}

const char *sptest_jstr(const sptest_resp *r, const char *path)
{
    if (!r || !r->json || !path) return NULL;
    const cJSON *node = r->json;
    const char *s = path;
    while (node && *s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        char key[256];
        if (n >= sizeof key) return NULL;
        memcpy(key, s, n);
        key[n] = '\0';
        node = cJSON_IsObject(node) ? cJSON_GetObjectItemCaseSensitive(node, key) : NULL;
        s = dot ? dot + 1 : s + n;
    }
    return cJSON_IsString(node) ? node->valuestring : NULL;
}

void sptest_unique_email(char *buf, size_t len, const char *tag)
{
    static atomic_uint n;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) r = (uint32_t)time(NULL);
    snprintf(buf, len, "%s-%d-%u-%08x@example.com", tag, (int)getpid(), atomic_fetch_add(&n, 1) + 1,
             r);
}

char *sptest_json_obj(const char *key, ...)
{
    va_list ap;
    cJSON *o = cJSON_CreateObject();
    va_start(ap, key);
    for (const char *k = key; k != NULL; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (v != NULL) cJSON_AddStringToObject(o, k, v);
    }
    va_end(ap);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}
