/* gateway_hostile.c -- hostile input against the gateway with auth behind it, on real
 * servers (quality.md, Security): malformed, oversized and tricky bodies answer 400/413,
 * oversized request lines and headers 4xx, a slow client does not block the others, 300
 * keep-alive connections are all served, SQL metacharacters are stored verbatim; and after
 * each case the gateway still answers /healthz.
 *
 * Run twice by ctest: it_gateway_hostile against the gateway's own listener, and
 * it_gateway_hostile_edge (SP_HOSTILE_EDGE=1) through nginx in front of it, as `make run`
 * serves the public port (deploy/nginx/edge.conf.template). The edge run adds what only
 * the edge withstands: 1,000 slow, idle and never-reading connections from 250 addresses,
 * the per-address cap, and the requests CivetWeb never shows the gateway (a NUL in the
 * path, OPTIONS *, absolute-form targets). */
#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "spcrypto.h"
#include "sptest.h"

static sptest_env *E;
static sptest_proc *GW;
static bool EDGE; /* through nginx (SP_HOSTILE_EDGE=1) */
static int PORT;  /* the public listener under test: the gateway's, or nginx's */

/* ---- helpers --------------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A TCP connection to 127.0.0.1:port from the loopback address 'src' (NULL: any), with
 * receive and send timeouts; -1 when refused. The whole of 127.0.0.0/8 is loopback, so one
 * machine can play many clients. */
static int connect_from(const char *src, int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (src != NULL) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        inet_pton(AF_INET, src, &b.sin_addr);
        if (bind(fd, (struct sockaddr *)&b, sizeof(b)) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A connection to the public listener under test. */
static int gw_connect(int timeout_ms)
{
    return connect_from(NULL, PORT, timeout_ms);
}

static bool send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* One HTTP answer read from fd: the status (0 when the connection closed or timed out first)
 * and the body (up to its Content-Length, or until close). */
typedef struct {
    long status;
    char head[4096];
    char body[4096];
} raw_answer;

static raw_answer read_answer(int fd)
{
    raw_answer a;
    memset(&a, 0, sizeof(a));
    char buf[16384];
    size_t got = 0;
    char *end = NULL;
    while (end == NULL && got < sizeof(buf) - 1) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0) return a;
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL) return a;
    size_t hlen = (size_t)(end - buf) + 4;
    snprintf(a.head, sizeof(a.head), "%.*s", (int)hlen, buf);
    if (sscanf(buf, "HTTP/1.%*d %ld", &a.status) != 1) a.status = 0;
    long clen = -1;
    for (char *p = a.head; p != NULL; p = strstr(p, "\r\n")) {
        if (*p == '\r') p += 2;
        if (strncasecmp(p, "Content-Length:", 15) == 0) clen = strtol(p + 15, NULL, 10);
    }
    size_t have = got - hlen;
    size_t want = clen >= 0 ? (size_t)clen : sizeof(a.body) - 1;
    if (want > sizeof(a.body) - 1) want = sizeof(a.body) - 1;
    memcpy(a.body, buf + hlen, have < want ? have : want);
    size_t blen = have < want ? have : want;
    while (blen < want) {
        ssize_t n = recv(fd, a.body + blen, want - blen, 0);
        if (n <= 0) break;
        blen += (size_t)n;
    }
    a.body[blen] = '\0';
    return a;
}

/* Sends 'req' (raw bytes) on a new connection and reads the answer (10 s at most). */
static raw_answer raw(const char *req, size_t len)
{
    raw_answer a;
    memset(&a, 0, sizeof(a));
    int fd = gw_connect(10000);
    ck_assert_int_ge(fd, 0);
    send_all(fd, req, len); /* the server may answer and close before reading everything */
    a = read_answer(fd);
    close(fd);
    return a;
}

/* The gateway still serves: a new connection gets 200 on /healthz, quickly. */
static void assert_alive(void)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    long long t0 = now_ms();
    raw_answer a = raw(req, sizeof(req) - 1);
    ck_assert_msg(a.status == 200, "/healthz after the case: %ld", a.status);
    ck_assert_msg(now_ms() - t0 < 2000, "/healthz took %lld ms", now_ms() - t0);
    ck_assert_msg(kill(GW->pid, 0) == 0, "the gateway died");
}

/* POST /v1/auth/register with 'body' (len bytes) as application/json. */
static raw_answer post_register(const char *body, size_t len)
{
    size_t cap = len + 512;
    char *req = malloc(cap);
    ck_assert_ptr_nonnull(req);
    int n =
        snprintf(req, cap,
                 "POST /v1/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 len);
    memcpy(req + n, body, len);
    raw_answer a = raw(req, (size_t)n + len);
    free(req);
    return a;
}

static const char *error_code(const raw_answer *a, char *buf, size_t len)
{
    cJSON *j = cJSON_Parse(a->body);
    const cJSON *c =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
    snprintf(buf, len, "%s", cJSON_IsString(c) ? c->valuestring : "");
    cJSON_Delete(j);
    return buf;
}

/* Asserts the answer's status and, when 'code' is not NULL, its error.code. */
static void assert_error(const raw_answer *a, long status, const char *code, const char *what)
{
    char c[64];
    ck_assert_msg(a->status == status, "%s: want %ld, got %ld %s", what, status, a->status,
                  a->body);
    if (code != NULL)
        ck_assert_msg(strcmp(error_code(a, c, sizeof(c)), code) == 0, "%s: want %s: %s", what, code,
                      a->body);
}

/* A valid register body around a 'name' given as raw JSON text (quotes included). */
static char *body_with_name(const char *name_json)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "hostile");
    size_t cap = strlen(name_json) + 256;
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    snprintf(b, cap, "{\"name\":%s,\"email\":\"%s\",\"password\":\"password-hostile\"}", name_json,
             email);
    return b;
}

/* ---- bodies ---------------------------------------------------------------------------- */

typedef struct {
    const char *what;
    const char *name_json; /* the name's JSON text in an otherwise valid body, or NULL */
    const char *body;      /* the whole body when name_json is NULL */
    const char *code;      /* the error.code wanted, NULL: any 400 */
} bad_body;

static const bad_body bad_bodies[] = {
    {"malformed JSON", NULL, "{\"name\":\"a\",\"email\":", "malformed_json"},
    {"trailing garbage", NULL,
     "{\"name\":\"a\",\"email\":\"g@example.com\",\"password\":\"password-1\"}xyz",
     "malformed_json"},
    {"two documents", NULL,
     "{\"name\":\"a\",\"email\":\"g@example.com\",\"password\":\"password-1\"} {}",
     "malformed_json"},
    {"wrong type: number", "5", NULL, "validation_failed"},
    {"wrong type: object", "{\"first\":\"a\"}", NULL, "validation_failed"},
    {"wrong type: array", "[\"a\"]", NULL, "validation_failed"},
    {"wrong type: null", "null", NULL, "validation_failed"},
    {"wrong type: bool", "true", NULL, "validation_failed"},
    {"number out of range", "1e400", NULL, NULL},
    {"negative number out of range", "-1e400", NULL, NULL},
    {"\\u0000 in a string", "\"ab\\u0000cd\"", NULL, NULL},
    {"lone surrogate", "\"ab\\ud800cd\"", NULL, NULL},
    {"invalid UTF-8",
     "\"ab\xff\xfe"
     "cd\"",
     NULL, NULL},
    {"overlong UTF-8",
     "\"ab\xc0\xaf"
     "cd\"",
     NULL, NULL},
    {"truncated UTF-8", "\"ab\xe2\x82\"", NULL, NULL},
    {"duplicate keys", NULL,
     "{\"name\":\"a\",\"name\":\"b\",\"email\":\"g@example.com\",\"password\":\"password-1\"}",
     NULL},
    {"not an object", NULL, "\"just a string\"", NULL},
    {"empty object", NULL, "{}", "validation_failed"},
    {"unknown field", NULL,
     "{\"name\":\"a\",\"email\":\"g@example.com\",\"password\":\"password-1\",\"role\":\"admin\"}",
     "validation_failed"},
    {"leading zero", NULL, "{\"name\":012}", NULL},
    {"control character in a string",
     "\"ab\x01"
     "cd\"",
     NULL, NULL},
};

START_TEST(bad_body_is_400)
{
    const bad_body *c = &bad_bodies[_i];
    char *b = c->name_json != NULL ? body_with_name(c->name_json) : strdup(c->body);
    raw_answer a = post_register(b, strlen(b));
    free(b);
    assert_error(&a, 400, c->code, c->what);
    assert_alive();
}
END_TEST

START_TEST(name_of_100000_characters_is_400)
{
    size_t n = 100000;
    char *name = malloc(n + 3);
    ck_assert_ptr_nonnull(name);
    name[0] = '"';
    memset(name + 1, 'x', n);
    name[n + 1] = '"';
    name[n + 2] = '\0';
    char *b = body_with_name(name);
    raw_answer a = post_register(b, strlen(b));
    free(b);
    free(name);
    assert_error(&a, 400, "validation_failed", "100,000-character name");
    ck_assert_msg(strstr(a.body, "\"name\"") != NULL, "the field is not named: %s", a.body);
    assert_alive();
}
END_TEST

/* "[[[...]]]" or "{"a":{"a":...}}" nested 'depth' deep, malloc'd. */
static char *nested(int depth, bool objects)
{
    size_t cap = (size_t)depth * 6 + 8, n = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s", objects ? "{\"a\":" : "[");
    n += (size_t)snprintf(s + n, cap - n, "1");
    for (int i = 0; i < depth; i++)
        s[n++] = objects ? '}' : ']';
    s[n] = '\0';
    return s;
}

START_TEST(deep_nesting_is_400_malformed_json)
{
    static const int depths[] = {100, 100000};
    for (size_t i = 0; i < 2; i++)
        for (int objects = 0; objects < 2; objects++) {
            char *inner = nested(depths[i], objects);
            char *b = body_with_name(inner);
            char what[64];
            snprintf(what, sizeof(what), "%s nested %d deep", objects ? "objects" : "arrays",
                     depths[i]);
            raw_answer a = post_register(b, strlen(b));
            assert_error(&a, 400, "malformed_json", what);
            free(b);
            /* the whole body nested, too */
            a = post_register(inner, strlen(inner));
            assert_error(&a, 400, "malformed_json", what);
            free(inner);
            assert_alive();
        }
}
END_TEST

START_TEST(array_of_10000_items_is_400)
{
    size_t n = 10000, cap = n * 80 + 8, len = 0;
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    b[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len +=
            (size_t)snprintf(b + len, cap - len,
                             "%s{\"name\":\"a\",\"email\":\"a%zu@example.com\",\"password\":\"p\"}",
                             i ? "," : "", i);
    b[len++] = ']';
    raw_answer a = post_register(b, len);
    free(b);
    assert_error(&a, 400, NULL, "array of 10,000 items");
    assert_alive();
}
END_TEST

START_TEST(body_of_10_mib_is_413)
{
    /* announced: answered without reading it */
    static const char head[] =
        "POST /v1/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 10485760\r\n\r\n{\"name\":\"";
    raw_answer a = raw(head, sizeof(head) - 1);
    assert_error(&a, 413, "payload_too_large", "Content-Length of 10 MiB");
    assert_alive();

    /* chunked: the gateway stops reading past SP_HTTP_MAX_BODY */
    int fd = gw_connect(10000);
    ck_assert_int_ge(fd, 0);
    static const char chead[] =
        "POST /v1/auth/register HTTP/1.1\r\nHost: t\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    ck_assert(send_all(fd, chead, sizeof(chead) - 1));
    size_t chunk = 65536;
    char *buf = malloc(chunk + 32);
    ck_assert_ptr_nonnull(buf);
    int hl = snprintf(buf, 32, "%zx\r\n", chunk);
    memset(buf + hl, 'x', chunk);
    memcpy(buf + hl + chunk, "\r\n", 2);
    for (int i = 0; i < 160; i++) /* 10 MiB, unless the server closes first */
        if (!send_all(fd, buf, (size_t)hl + chunk + 2)) break;
    free(buf);
    a = read_answer(fd);
    close(fd);
    /* a reset may lose the answer; what matters is that it was never accepted */
    ck_assert_msg(a.status == 413 || a.status == 0, "chunked 10 MiB: %ld %s", a.status, a.body);
    assert_alive();
}
END_TEST

/* ---- request lines and headers --------------------------------------------------------- */

/* The answer is a 4xx, or the server closed the connection without one. */
static void assert_refused(const raw_answer *a, const char *what)
{
    ck_assert_msg(a->status == 0 || (a->status >= 400 && a->status < 500), "%s: %ld %s", what,
                  a->status, a->head);
}

START_TEST(header_of_64_kib_is_4xx)
{
    size_t n = 65536;
    char *req = malloc(n + 256);
    ck_assert_ptr_nonnull(req);
    int h = snprintf(req, 256, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + h, 'a', n);
    size_t len = (size_t)h + n;
    len += (size_t)snprintf(req + len, 256, "\r\nConnection: close\r\n\r\n");
    raw_answer a = raw(req, len);
    free(req);
    fprintf(stderr, "64 KiB header: %ld\n", a.status);
    ck_assert_msg(a.status >= 400 && a.status < 500, "64 KiB header: %ld %s", a.status, a.head);
    assert_alive();
}
END_TEST

START_TEST(two_hundred_headers_are_431)
{
    char *req = malloc(200 * 32 + 256);
    ck_assert_ptr_nonnull(req);
    size_t len = (size_t)sprintf(req, "GET /v1/me HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 200; i++)
        len += (size_t)sprintf(req + len, "X-H-%d: v%d\r\n", i, i);
    len += (size_t)sprintf(req + len, "Connection: close\r\n\r\n");
    raw_answer a = raw(req, len);
    free(req);
    /* CivetWeb would drop all but the first 64: the gateway refuses instead of guessing */
    assert_error(&a, 431, "headers_too_large", "200 headers");
    assert_alive();
}
END_TEST

/* A GET /v1/me with 'n' filler headers before its Authorization (a bad token: the point is
 * whether the gateway saw it). */
static raw_answer me_after_headers(int n)
{
    char *req = malloc((size_t)n * 32 + 256);
    ck_assert_ptr_nonnull(req);
    size_t len = (size_t)sprintf(req, "GET /v1/me HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(req + len, "X-H-%d: v%d\r\n", i, i);
    len += (size_t)sprintf(req + len,
                           "Authorization: Bearer not.a.token\r\nConnection: close\r\n\r\n");
    raw_answer a = raw(req, len);
    free(req);
    return a;
}

START_TEST(token_after_64_headers_is_not_lost_silently)
{
    /* without the check: 401 unauthenticated ("missing Authorization header") */
    raw_answer a = me_after_headers(70);
    assert_error(&a, 431, "headers_too_large", "Authorization after 70 headers");
    assert_alive();
}
END_TEST

START_TEST(sixty_three_headers_are_served)
{
    /* Host + 60 + Authorization + Connection = 63: the token is seen (and is invalid).
     * Behind the edge the gateway also gets X-Forwarded-For and X-Request-Id, and not
     * Connection: a client has 61. */
    raw_answer a = me_after_headers(EDGE ? 58 : 60);
    assert_error(&a, 401, "invalid_token", "63 headers");
}
END_TEST

START_TEST(request_line_of_20000_characters_is_4xx)
{
    size_t n = 20000;
    char *req = malloc(n + 256);
    ck_assert_ptr_nonnull(req);
    size_t len = (size_t)sprintf(req, "GET /v1/");
    memset(req + len, 'a', n);
    len += n;
    len += (size_t)sprintf(req + len, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    raw_answer a = raw(req, len);
    free(req);
    fprintf(stderr, "20,000-character request line: %ld\n", a.status);
    assert_refused(&a, "20,000-character request line");
    assert_alive();
}
END_TEST

/* ---- slow and many clients ------------------------------------------------------------- */

typedef struct {
    atomic_bool stop;
    atomic_bool closed;     /* the server closed the connection */
    atomic_llong closed_at; /* ms since start */
    long long t0;
    int sent;
} slowloris;

static void *slowloris_main(void *arg)
{
    slowloris *s = arg;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa"
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    int fd = gw_connect(1000);
    if (fd < 0) return NULL;
    long long connected = now_ms() - s->t0;
    for (size_t i = 0; i < sizeof(req) - 1 && !atomic_load(&s->stop); i++) {
        /* a byte per second; a closed connection shows as EOF or an error on recv */
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) break;
        s->sent++;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) > 0) {
            char c;
            ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN)) break;
            if (n > 0) { /* an answer (408 or the like) before the request was complete */
                break;
            }
        }
    }
    fprintf(stderr, "slowloris: connected after %lld ms, %d bytes sent, ended after %lld ms\n",
            connected, s->sent, now_ms() - s->t0);
    atomic_store(&s->closed_at, now_ms() - s->t0);
    atomic_store(&s->closed, true);
    close(fd);
    return NULL;
}

START_TEST(slowloris_does_not_block_others_and_is_closed)
{
    slowloris s;
    memset(&s, 0, sizeof(s));
    s.t0 = now_ms();
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slowloris_main, &s), 0);
    /* others are served promptly while it dribbles */
    for (int i = 0; i < 8; i++) {
        sleep_ms(500);
        assert_alive();
    }
    /* request_timeout_ms (10 s): the server closes it, long before it could finish */
    while (!atomic_load(&s.closed) && now_ms() - s.t0 < 20000)
        sleep_ms(100);
    atomic_store(&s.stop, true);
    pthread_join(th, NULL);
    /* 10 s measured; the margin is for a loaded machine */
    ck_assert_msg(atomic_load(&s.closed_at) < 20000, "the slow connection was held %lld ms",
                  (long long)atomic_load(&s.closed_at));
    ck_assert_msg(s.sent < 30, "the slow request got %d bytes in", s.sent);
    assert_alive();
}
END_TEST

#define NCONN 300

typedef struct {
    pthread_t th;
    int answered;       /* 200s */
    long other;         /* a status that is not 200, or 0 */
    bool refused;       /* connect failed */
    long long first_ms; /* time to the first answer */
    int index;
} ka_client;

static long long g_ka_t0;
static atomic_int g_ka_go;

/* Two /healthz on one keep-alive connection, a second apart, then close. */
static void *ka_main(void *arg)
{
    ka_client *c = arg;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    while (!atomic_load(&g_ka_go))
        sleep_ms(1);
    /* each from an address of its own: real clients, not 300 from one address (which the
     * edge caps at SP_EDGE_CONN_PER_ADDR requests in progress) */
    char src[32];
    snprintf(src, sizeof(src), "127.0.%d.%d", 2 + c->index / 200, 1 + c->index % 200);
    int fd = connect_from(src, PORT, 30000);
    if (fd < 0) {
        c->refused = true;
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (!send_all(fd, req, sizeof(req) - 1)) break;
        raw_answer a = read_answer(fd);
        if (a.status != 200) {
            c->other = a.status;
            break;
        }
        if (c->answered++ == 0) c->first_ms = now_ms() - g_ka_t0;
        if (i == 0) sleep_ms(1000);
    }
    close(fd);
    return NULL;
}

START_TEST(three_hundred_keep_alive_connections_are_all_served)
{
    static ka_client c[NCONN];
    memset(c, 0, sizeof(c));
    atomic_store(&g_ka_go, 0);
    for (int i = 0; i < NCONN; i++) {
        c[i].index = i;
        ck_assert_int_eq(pthread_create(&c[i].th, NULL, ka_main, &c[i]), 0);
    }
    g_ka_t0 = now_ms();
    atomic_store(&g_ka_go, 1);
    int served = 0, refused = 0, other = 0;
    long long slowest = 0;
    for (int i = 0; i < NCONN; i++) {
        pthread_join(c[i].th, NULL);
        if (c[i].answered == 2) served++;
        if (c[i].refused) refused++;
        if (c[i].answered < 2 && !c[i].refused) other++;
        if (c[i].first_ms > slowest) slowest = c[i].first_ms;
    }
    fprintf(stderr,
            "keep-alive: %d served, %d refused, %d cut short, slowest first answer %lld ms\n",
            served, refused, other, slowest);
    /* beyond SP_HTTP_THREADS (128) a connection waits in the accept queue until a worker
     * is free: served late, never dropped */
    ck_assert_msg(served == NCONN, "%d of %d served (%d refused, %d cut short)", served, NCONN,
                  refused, other);
    assert_alive();
}
END_TEST

/* ---- SQL metacharacters ---------------------------------------------------------------- */

/* sptest_json, again after a 503 (a loaded machine: argon2 under the sanitizers can pass
 * the bus deadline); *retried tells whether the first answer was a 503. */
static sptest_resp *json_patient(const char *method, const char *path, const char *token,
                                 const char *body, bool *retried)
{
    sptest_resp *r = sptest_json(E, method, path, token, body);
    *retried = false;
    for (int i = 0; i < 3 && r->status == 503; i++) {
        *retried = true;
        sptest_resp_free(r);
        sleep_ms(500);
        r = sptest_json(E, method, path, token, body);
    }
    return r;
}

/* ---- framing: smuggling primitives and the contract's errors --------------------------- */

/* Each request would let a body run as a second request, or is not HTTP/1.1 as it must be:
 * the answer is the contract's JSON error (status, code, X-Request-Id, nosniff), and the
 * connection is closed right after it, so nothing that followed is ever read as a request.
 * "@E" in a request is a fresh email that the smuggled register would create. */
static const struct {
    const char *req;
    long status;
    const char *code;
    /* behind the edge, when nginx takes the request as valid HTTP and frames it itself:
     * the answer then, and what follows is simply the next request (0: the same refusal) */
    long edge_status;
    const char *edge_code;
} framing[] = {
    /* Content-Length parsed loosely by strtoll: "0x26" is 0 */
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
     "Content-Length: 0x26\r\n\r\n@R",
     400, "bad_request", 0, NULL},
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 2abc\r\n\r\n{}@R", 400,
     "bad_request", 0, NULL},
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: +2\r\n\r\n{}@R", 400,
     "bad_request", 0, NULL},
    /* optional whitespace around a value is valid HTTP: nginx reads 2, the body is {} */
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length:  2 \r\n\r\n{}@R", 400,
     "bad_request", 415, "unsupported_media_type"},
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n@R", 400, "bad_request", 0, NULL},
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 90\r\n\r\n"
     "{}@R",
     400, "bad_request", 0, NULL},
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n@R",
     400, "bad_request", 0, NULL},
    {"POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n@R", 400,
     "bad_request", 0, NULL},
    /* Host: exactly one in HTTP/1.1 */
    {"GET /healthz HTTP/1.1\r\n\r\n@R", 400, "bad_request", 0, NULL},
    {"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n@R", 400, "bad_request", 0, NULL},
    /* CivetWeb's own refusals, in the contract's shape */
    {"GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n@R", 400, "bad_request", 0, NULL},
    /* a tab inside a value is valid HTTP: nginx passes it on, CivetWeb refuses it */
    {"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\tb\r\n\r\n@R", 400, "bad_request", 400,
     "bad_request"},
    {"GET /healthz HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n@R", 400, "bad_request", 0, NULL},
};

/* A register of a fresh account: the request smuggled behind each case above. */
static size_t smuggled(char *out, size_t cap, char *email, size_t elen)
{
    sptest_unique_email(email, elen, "smuggled");
    char body[256];
    int bn = snprintf(body, sizeof(body),
                      "{\"name\":\"Smuggled\",\"email\":\"%s\",\"password\":\"password-smuggled\"}",
                      email);
    return (size_t)snprintf(out, cap,
                            "POST /v1/auth/register HTTP/1.1\r\nHost: t\r\n"
                            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                            bn, body);
}

/* True when nothing more comes on fd and the server closes it within 3 s. */
static bool closed_after(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0;
}

static void assert_contract_error(const raw_answer *a, long status, const char *code,
                                  const char *what)
{
    assert_error(a, status, code, what);
    ck_assert_msg(strcasestr(a->head, "\r\nX-Request-Id: ") != NULL, "%s: no X-Request-Id: %s",
                  what, a->head);
    ck_assert_msg(strcasestr(a->head, "\r\nX-Content-Type-Options: nosniff\r\n") != NULL,
                  "%s: no nosniff: %s", what, a->head);
    ck_assert_msg(strcasestr(a->head, "\r\nContent-Type: application/json") != NULL,
                  "%s: not JSON: %s", what, a->head);
    cJSON *j = cJSON_Parse(a->body);
    const cJSON *rid =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "requestId");
    ck_assert_msg(cJSON_IsString(rid), "%s: no error.requestId: %s", what, a->body);
    cJSON_Delete(j);
}

/* Sends 'req' (n bytes, ending with the register of 'email' from smuggled()) on a new
 * connection: the answer is the contract's error 'status'/'code', the connection closes
 * right after it (when 'must_close'), and the register behind it never ran (that account
 * does not log in). */
static void assert_refused_and_nothing_ran(const char *req, size_t n, const char *email,
                                           long status, const char *code, bool must_close,
                                           const char *what)
{
    int fd = gw_connect(3000);
    ck_assert_int_ge(fd, 0);
    ck_assert(send_all(fd, req, n));
    raw_answer a = read_answer(fd);
    assert_contract_error(&a, status, code, what);
    if (must_close) ck_assert_msg(closed_after(fd), "%s: the connection stayed open", what);
    close(fd);

    char login[512], lbody[256];
    int ln = snprintf(lbody, sizeof(lbody), "{\"email\":\"%s\",\"password\":\"password-smuggled\"}",
                      email);
    int m = snprintf(login, sizeof(login),
                     "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                     ln, lbody);
    raw_answer l = raw(login, (size_t)m);
    assert_error(&l, 401, "unauthenticated", what);
}

START_TEST(ambiguous_framing_is_400_and_closes)
{
    char req[2048], extra[1024], email[128];
    size_t xn = smuggled(extra, sizeof(extra), email, sizeof(email));
    const char *tpl = framing[_i].req;
    const char *at = strstr(tpl, "@R");
    ck_assert_ptr_nonnull(at);
    size_t n = (size_t)snprintf(req, sizeof(req), "%.*s", (int)(at - tpl), tpl);
    memcpy(req + n, extra, xn);
    n += xn;

    char what[64];
    snprintf(what, sizeof(what), "framing row %d", _i);
    if (EDGE && framing[_i].edge_status != 0) {
        /* nginx framed it: no desync is possible, the answer is the first request's */
        int fd = gw_connect(3000);
        ck_assert_int_ge(fd, 0);
        ck_assert(send_all(fd, req, n));
        raw_answer a = read_answer(fd);
        close(fd);
        assert_contract_error(&a, framing[_i].edge_status, framing[_i].edge_code, what);
    } else {
        assert_refused_and_nothing_ran(req, n, email, framing[_i].status, framing[_i].code, true,
                                       what);
    }
    assert_alive();
}
END_TEST

/* The 64-header limit holds on the probes too: a Content-Length after 70 headers would be
 * dropped and the body run as a request (an account created from a GET /healthz). */
START_TEST(header_limit_holds_on_healthz_readyz_and_metrics)
{
    const char *paths[] = {"/healthz", "/readyz", "/metrics"};
    for (size_t p = 0; p < 3; p++) {
        char *req = malloc(16384);
        char extra[1024], email[128];
        ck_assert_ptr_nonnull(req);
        size_t xn = smuggled(extra, sizeof(extra), email, sizeof(email));
        size_t n = (size_t)sprintf(req, "GET %s HTTP/1.1\r\nHost: t\r\n", paths[p]);
        for (int i = 0; i < 70; i++)
            n += (size_t)sprintf(req + n, "X-H-%d: v\r\n", i);
        n += (size_t)sprintf(req + n, "Content-Length: %zu\r\n\r\n", xn);
        memcpy(req + n, extra, xn);
        n += xn;
        /* behind the edge the body is the GET's (nginx frames it): nothing follows, and the
         * client connection may stay open */
        assert_refused_and_nothing_ran(req, n, email, 431, "headers_too_large", !EDGE, paths[p]);
        free(req);
    }
    assert_alive();
}
END_TEST

/* A HEAD answered with an error carries no body on a kept-alive connection: the next
 * answer on it starts where it should. */
START_TEST(head_errors_have_no_body_and_the_connection_stays_in_step)
{
    static const char req[] = "HEAD /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                              "HEAD /v1/auth/login HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    int fd = gw_connect(3000);
    ck_assert_int_ge(fd, 0);
    ck_assert(send_all(fd, req, sizeof(req) - 1));
    char buf[8192];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(fd);
    /* three answers, each starting right after the previous head */
    char *second = strstr(buf, "\r\n\r\n");
    ck_assert_msg(strncmp(buf, "HTTP/1.1 404 ", 13) == 0, "%s", buf);
    ck_assert_ptr_nonnull(second);
    ck_assert_msg(strncmp(second + 4, "HTTP/1.1 405 ", 13) == 0, "after the 404: %s", second + 4);
    char *third = strstr(second + 4, "\r\n\r\n");
    ck_assert_ptr_nonnull(third);
    ck_assert_msg(strncmp(third + 4, "HTTP/1.1 200 ", 13) == 0, "after the 405: %s", third + 4);
}
END_TEST

/* The admin port tells the truth when the public listener cannot take work: with every
 * CivetWeb worker held by an idle connection (one that never sends a byte), /readyz says
 * 503 and why; once they go, 200 again. */
START_TEST(readyz_is_503_while_every_worker_is_held)
{
    enum { WORKERS = 128 }; /* SP_HTTP_THREADS's default, which this suite keeps */
    int fds[WORKERS + 8];
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", GW->admin_port);
    ck_assert(sptest_wait_http(url, 200, 5000));
    for (int i = 0; i < WORKERS + 8; i++) {
        fds[i] = connect_from(NULL, E->http_port, 3000); /* the gateway's, even behind the edge */
        ck_assert_int_ge(fds[i], 0);
    }
    ck_assert_msg(sptest_wait_http(url, 503, 5000), "readyz stayed 200 with every worker held");
    sptest_resp *r = sptest_http("GET", url, NULL, NULL, 0);
    ck_assert_msg(strstr(r->body, "public listener saturated") != NULL, "%s", r->body);
    sptest_resp_free(r);
    for (int i = 0; i < WORKERS + 8; i++)
        close(fds[i]);
    ck_assert_msg(sptest_wait_http(url, 200, 5000), "readyz did not come back");
    assert_alive();
}
END_TEST

START_TEST(sql_metacharacters_are_stored_verbatim)
{
    static const char *names[] = {
        "Robert'); DROP TABLE auth.users;--",
        "a\\\\'b\\\" OR 1=1 --",
        "$1 $$ %s %n ; -- /* */",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char email[128], local[64];
        sptest_unique_email(email, sizeof(email), "sql");
        snprintf(local, sizeof(local), "o'brien+%zu", i);
        char *at = strchr(email, '@');
        char mail[200];
        snprintf(mail, sizeof(mail), "%s.%.*s%s", local, (int)(at - email), email, at);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", names[i]);
        cJSON_AddStringToObject(o, "email", mail);
        cJSON_AddStringToObject(o, "password", "password-sql'--");
        char *b = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        bool retried;
        sptest_resp *r = json_patient("POST", "/v1/auth/register", NULL, b, &retried);
        free(b);
        /* a register answered 503 may have been stored all the same */
        if (!(retried && r->status == 409)) {
            ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
            ck_assert_str_eq(sptest_jstr(r, "name"), names[i]);
        }
        sptest_resp_free(r);

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "email", mail);
        cJSON_AddStringToObject(o, "password", "password-sql'--");
        b = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        r = json_patient("POST", "/v1/auth/login", NULL, b, &retried);
        free(b);
        ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
        char *tok = strdup(sptest_jstr(r, "accessToken"));
        sptest_resp_free(r);
        r = json_patient("GET", "/v1/me", tok, NULL, &retried);
        ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
        ck_assert_str_eq(sptest_jstr(r, "name"), names[i]);
        ck_assert_str_eq(sptest_jstr(r, "email"), mail);
        sptest_resp_free(r);
        free(tok);
    }
    assert_alive();
}
END_TEST

/* ---- the edge only: what CivetWeb's thread per connection cannot hold ------------------ */

/* The requests CivetWeb never shows the gateway whole: a NUL in the path (CivetWeb decodes
 * it and the path ends there: /metrics%00.css would be /metrics), the asterisk form, and
 * the absolute form (CivetWeb closes both without an answer). nginx refuses the first two
 * while it reads the request line, before the headers, so their id is a fresh one; it
 * serves the absolute form as the request it names, with the client's id. */
static const struct {
    const char *req;
    long status;
    const char *code;
    bool echoed;
} edge_targets[] = {
    {"GET /metrics%00.css HTTP/1.1\r\nHost: t\r\nX-Request-Id: probe.nul-1\r\n\r\n", 400,
     "bad_request", false},
    {"GET /v1/me%00/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: probe.nul-2\r\n\r\n", 400,
     "bad_request", false},
    {"GET /v1/me?x=%00 HTTP/1.1\r\nHost: t\r\nX-Request-Id: probe.nul-3\r\n\r\n", 400,
     "bad_request", true},
    {"OPTIONS * HTTP/1.1\r\nHost: t\r\nX-Request-Id: probe.asterisk\r\n\r\n", 400, "bad_request",
     false},
    {"GET http://t/v1/me HTTP/1.1\r\nHost: t\r\nX-Request-Id: probe.absolute\r\n\r\n", 401,
     "unauthenticated", true},
};

START_TEST(edge_answers_what_civetweb_would_not)
{
    raw_answer a = raw(edge_targets[_i].req, strlen(edge_targets[_i].req));
    assert_contract_error(&a, edge_targets[_i].status, edge_targets[_i].code,
                          edge_targets[_i].req);
    /* the client's safe request id is echoed once nginx has read the headers */
    const char *rid = strstr(edge_targets[_i].req, "X-Request-Id: ") + 14;
    char want[80];
    snprintf(want, sizeof(want), "\r\nX-Request-Id: %.*s\r\n", (int)strcspn(rid, "\r"), rid);
    ck_assert_msg((strcasestr(a.head, want) != NULL) == edge_targets[_i].echoed,
                  "id echoed is not %d: %s", edge_targets[_i].echoed, a.head);
    assert_alive();
}
END_TEST

/* ---- 1,000 hostile connections --------------------------------------------------------- */

enum { HOSTILE = 1000, HOLD_MS = 13000, KINDS = 4 };
typedef enum { K_IDLE, K_SLOW_HEADERS, K_SLOW_BODY, K_NO_READ } hostile_kind;
static const char *const kind_names[KINDS] = {"idle", "slow headers", "slow body", "never reading"};

typedef struct {
    int fd;
    hostile_kind kind;
    long long opened, closed; /* ms since the start; closed 0: still open */
    int sent;                 /* dribbled bytes or header lines */
} hostile_conn;

/* Opens connection i of the attack: 250 addresses, each with one of every kind. */
static void hostile_open(hostile_conn *c, int i, long long t)
{
    char src[32];
    snprintf(src, sizeof(src), "127.1.%d.%d", 1 + (i / KINDS) / 200, 1 + (i / KINDS) % 200);
    c->kind = (hostile_kind)(i % KINDS);
    c->opened = t;
    c->closed = 0;
    c->sent = 0;
    c->fd = connect_from(src, PORT, 2000);
    ck_assert_msg(c->fd >= 0, "connect %d from %s: %s", i, src, strerror(errno));
    static const char slow_body[] = "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Content-Length: 1000000\r\n\r\n{";
    static const char one[] = "GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char slow_head[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n";
    if (c->kind == K_SLOW_HEADERS) send_all(c->fd, slow_head, sizeof(slow_head) - 1);
    if (c->kind == K_SLOW_BODY) send_all(c->fd, slow_body, sizeof(slow_body) - 1);
    if (c->kind == K_NO_READ) {
        /* a small window: the answers pile up at the server, which must not wait on them */
        int rcv = 4096;
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
        for (int k = 0; k < 16; k++)
            send_all(c->fd, one, sizeof(one) - 1);
    }
}

/* True when the server has closed c (EOF or reset). Never reads what a K_NO_READ gets. */
static bool hostile_closed(const hostile_conn *c)
{
    struct pollfd p = {.fd = c->fd, .events = c->kind == K_NO_READ ? 0 : POLLIN};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR)) return true;
    char b[256];
    ssize_t n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* A fresh client's GET (its own connection, from 127.0.0.1): the status, *ms the time. */
static long fresh_get(const char *path, const char *token, long long *ms)
{
    char req[1024];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n%s%s%sConnection: close\r\n\r\n",
                     path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");
    long long t0 = now_ms();
    raw_answer a = raw(req, (size_t)n);
    *ms = now_ms() - t0;
    return a.status;
}

/* A user's access token, for the authenticated read. */
static char *fresh_token(void)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "edge");
    char *body = sptest_json_obj("name", "Edge", "email", email, "password", "password-edge", NULL);
    bool retried;
    sptest_resp *r = json_patient("POST", "/v1/auth/register", NULL, body, &retried);
    ck_assert_msg(r->status == 201 || (retried && r->status == 409), "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    free(body);
    body = sptest_json_obj("email", email, "password", "password-edge", NULL);
    r = json_patient("POST", "/v1/auth/login", NULL, body, &retried);
    free(body);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    char *tok = strdup(sptest_jstr(r, "accessToken"));
    sptest_resp_free(r);
    return tok;
}

/* quality.md: 1,000 slow, idle or never-reading connections from many addresses leave
 * /healthz and an authenticated read answering within 1 s. The attack is held 13 s and
 * renewed: a connection the server closes is opened again at once. Idle and slow-header
 * connections are closed by the header deadline (10 s in total, though bytes keep coming). */
START_TEST(thousand_hostile_connections_leave_the_edge_answering)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_msg(rl.rlim_cur >= 4096, "RLIMIT_NOFILE is %lu: 1,000 connections need more",
                  (unsigned long)rl.rlim_cur);
    char *tok = fresh_token();
    static hostile_conn c[HOSTILE];
    long long t0 = now_ms();
    for (int i = 0; i < HOSTILE; i++)
        hostile_open(&c[i], i, 0);
    fprintf(stderr, "edge: %d hostile connections opened in %lld ms\n", HOSTILE, now_ms() - t0);

    long long worst_health = 0, worst_me = 0, header_closed_max = 0;
    int probes = 0, renewed = 0, header_closed = 0, header_closed_early = 0;
    long long next_dribble = 0;
    while (now_ms() - t0 < HOLD_MS) {
        long long t = now_ms() - t0;
        for (int i = 0; i < HOSTILE; i++) {
            if (!hostile_closed(&c[i])) continue;
            if (c[i].opened == 0 && (c[i].kind == K_IDLE || c[i].kind == K_SLOW_HEADERS)) {
                header_closed++;
                if (t < 9000) header_closed_early++;
                if (t > header_closed_max) header_closed_max = t;
            }
            close(c[i].fd);
            hostile_open(&c[i], i, t);
            renewed++;
        }
        if (t >= next_dribble) { /* a header line or a body byte per connection and second */
            for (int i = 0; i < HOSTILE; i++) {
                if (c[i].kind == K_SLOW_HEADERS && send(c[i].fd, "X-Slow: y\r\n", 11, MSG_NOSIGNAL | MSG_DONTWAIT) == 11)
                    c[i].sent++;
                if (c[i].kind == K_SLOW_BODY && send(c[i].fd, " ", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                    c[i].sent++;
            }
            next_dribble = t + 1000;
        }
        long long ms;
        long st = fresh_get("/healthz", NULL, &ms);
        ck_assert_msg(st == 200, "/healthz at %lld ms: %ld", t, st);
        if (ms > worst_health) worst_health = ms;
        st = fresh_get("/v1/me", tok, &ms);
        ck_assert_msg(st == 200, "/v1/me at %lld ms: %ld", t, st);
        if (ms > worst_me) worst_me = ms;
        probes++;
        sleep_ms(250);
    }
    int open_now[KINDS] = {0};
    for (int i = 0; i < HOSTILE; i++) {
        if (!hostile_closed(&c[i])) open_now[c[i].kind]++;
        close(c[i].fd);
    }
    fprintf(stderr,
            "edge: %d probes in %d ms: slowest /healthz %lld ms, /v1/me %lld ms; %d connections "
            "renewed; %d idle or slow-header connections closed by the header deadline (last at "
            "%lld ms); open at the end: %d %s, %d %s, %d %s, %d %s\n",
            probes, HOLD_MS, worst_health, worst_me, renewed, header_closed, header_closed_max,
            open_now[0], kind_names[0], open_now[1], kind_names[1], open_now[2], kind_names[2],
            open_now[3], kind_names[3]);
    ck_assert_msg(worst_health < 1000, "/healthz took %lld ms under the attack", worst_health);
    ck_assert_msg(worst_me < 1000, "/v1/me took %lld ms under the attack", worst_me);
    /* the header deadline is total: the slow-header ones kept sending and were closed all
     * the same, none long before 10 s */
    ck_assert_msg(header_closed == HOSTILE / 2, "%d of %d idle or slow-header connections "
                  "closed by the deadline", header_closed, HOSTILE / 2);
    ck_assert_int_eq(header_closed_early, 0);
    free(tok);
    assert_alive();
}
END_TEST

/* When nginx runs short of connections (the suite's edge has SP_EDGE_CONNECTIONS=1536), it
 * closes idle ones, keep-alive connections between two requests first, rather than stop
 * accepting: 1,600 clients that each got one answer and keep their connection open leave
 * every new client served. */
START_TEST(idle_connections_are_shed_when_the_edge_runs_short)
{
    enum { N = 1600 };
    static int fds[N];
    static const char health[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    long from = sptest_log_size(&E->edge);
    for (int i = 0; i < N; i++) {
        char src[32];
        snprintf(src, sizeof(src), "127.2.%d.%d", 1 + i / 200, 1 + i % 200);
        fds[i] = connect_from(src, PORT, 3000);
        ck_assert_msg(fds[i] >= 0, "connect %d: %s", i, strerror(errno));
        ck_assert(send_all(fds[i], health, sizeof(health) - 1));
        raw_answer a = read_answer(fds[i]);
        ck_assert_msg(a.status == 200, "client %d of %d: %ld", i, N, a.status);
    }
    int shed = 0;
    for (int i = 0; i < N; i++) {
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        char c;
        if (poll(&pfd, 1, 0) == 1 && recv(fds[i], &c, 1, MSG_DONTWAIT) <= 0) shed++;
        close(fds[i]);
    }
    fprintf(stderr, "edge: %d of %d idle keep-alive connections closed to serve new clients\n",
            shed, N);
    ck_assert_msg(shed >= N - 1536, "only %d idle connections were closed", shed);
    ck_assert_msg(sptest_log_has(&E->edge, from, "reusing connections"),
                  "nginx did not say it reused connections (%s)", E->edge.log);
    assert_alive();
}
END_TEST

/* One address may have at most SP_EDGE_CONN_PER_ADDR (64) requests in progress: beyond
 * that 429 rate_limited at once, in the contract's shape; other addresses are served; the
 * address is served again once its requests end. */
START_TEST(one_address_is_capped_at_64_requests_in_progress)
{
    enum { N = 72, CAP = 64 };
    static const char held[] = "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_from("127.0.9.9", PORT, 3000);
        ck_assert_int_ge(fds[i], 0);
        ck_assert(send_all(fds[i], held, sizeof(held) - 1));
        sleep_ms(5); /* in order: the first CAP are the ones held */
    }
    int limited = 0;
    for (int i = 0; i < N; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        if (poll(&p, 1, i < CAP ? 50 : 3000) <= 0) continue;
        raw_answer a = read_answer(fds[i]);
        if (a.status == 429) {
            assert_contract_error(&a, 429, "rate_limited", "beyond the per-address cap");
            ck_assert_msg(strcasestr(a.head, "\r\nRetry-After: ") != NULL, "%s", a.head);
            limited++;
        }
    }
    ck_assert_msg(limited == N - CAP, "%d of %d refused beyond the cap", limited, N - CAP);
    int other = connect_from("127.0.9.10", PORT, 3000);
    ck_assert_int_ge(other, 0);
    static const char health[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ck_assert(send_all(other, health, sizeof(health) - 1));
    raw_answer a = read_answer(other);
    close(other);
    ck_assert_msg(a.status == 200, "another address: %ld", a.status);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    sleep_ms(200);
    int again = connect_from("127.0.9.9", PORT, 3000);
    ck_assert_int_ge(again, 0);
    ck_assert(send_all(again, health, sizeof(health) - 1));
    a = read_answer(again);
    close(again);
    ck_assert_msg(a.status == 200, "the address once its requests ended: %ld", a.status);
}
END_TEST

/* The gateway gone: the edge answers 503 unavailable with Retry-After at once, a POST is
 * not replayed anywhere, and the edge serves again as soon as the gateway is back. Last in
 * the suite: the gateway started again lives only as long as this test's process. */
START_TEST(edge_answers_503_while_the_gateway_is_down_and_recovers)
{
    char *tok = fresh_token();
    sptest_kill(GW, SIGKILL);
    static const char login[] = "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\n"
                                "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    static const char health[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    const char *const reqs[] = {login, health};
    for (size_t i = 0; i < 2; i++) {
        long long t0 = now_ms();
        raw_answer a = raw(reqs[i], strlen(reqs[i]));
        assert_contract_error(&a, 503, "unavailable", reqs[i]);
        ck_assert_msg(strcasestr(a.head, "\r\nRetry-After: ") != NULL, "no Retry-After: %s",
                      a.head);
        ck_assert_msg(now_ms() - t0 < 3000, "took %lld ms", now_ms() - t0);
    }
    sptest_restart(E, GW);
    char url[200];
    snprintf(url, sizeof(url), "%s/healthz", E->edge_url);
    ck_assert_msg(sptest_wait_http(url, 200, 10000), "the edge did not serve again");
    long long ms;
    ck_assert_int_eq(fresh_get("/v1/me", tok, &ms), 200);
    free(tok);
}
END_TEST

static Suite *hostile_suite(void)
{
    Suite *s = suite_create(EDGE ? "gateway_hostile_edge" : "gateway_hostile");
    TCase *tc = tcase_create("hostile");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, bad_body_is_400, 0, (int)(sizeof(bad_bodies) / sizeof(bad_bodies[0])));
    tcase_add_test(tc, name_of_100000_characters_is_400);
    tcase_add_test(tc, deep_nesting_is_400_malformed_json);
    tcase_add_test(tc, array_of_10000_items_is_400);
    tcase_add_test(tc, body_of_10_mib_is_413);
    tcase_add_test(tc, header_of_64_kib_is_4xx);
    tcase_add_test(tc, two_hundred_headers_are_431);
    tcase_add_test(tc, token_after_64_headers_is_not_lost_silently);
    tcase_add_test(tc, sixty_three_headers_are_served);
    tcase_add_test(tc, request_line_of_20000_characters_is_4xx);
    tcase_add_test(tc, slowloris_does_not_block_others_and_is_closed);
    tcase_add_test(tc, three_hundred_keep_alive_connections_are_all_served);
    tcase_add_test(tc, sql_metacharacters_are_stored_verbatim);
    tcase_add_loop_test(tc, ambiguous_framing_is_400_and_closes, 0,
                        (int)(sizeof(framing) / sizeof(framing[0])));
    tcase_add_test(tc, header_limit_holds_on_healthz_readyz_and_metrics);
    tcase_add_test(tc, head_errors_have_no_body_and_the_connection_stays_in_step);
    tcase_add_test(tc, readyz_is_503_while_every_worker_is_held);
    if (EDGE) {
        tcase_add_loop_test(tc, edge_answers_what_civetweb_would_not, 0,
                            (int)(sizeof(edge_targets) / sizeof(edge_targets[0])));
        tcase_add_test(tc, thousand_hostile_connections_leave_the_edge_answering);
        tcase_add_test(tc, one_address_is_capped_at_64_requests_in_progress);
        tcase_add_test(tc, idle_connections_are_shed_when_the_edge_runs_short);
        tcase_add_test(tc, edge_answers_503_while_the_gateway_is_down_and_recovers); /* last */
    }
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *edge = getenv("SP_HOSTILE_EDGE");
    EDGE = edge != NULL && strcmp(edge, "1") == 0;
    /* 1,000 connections and nginx's of them: more descriptors than the usual soft limit */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    E = sptest_start(EDGE ? "gateway_hostile_edge" : "gateway_hostile", SPTEST_ALL);
    sptest_start_service(E, "auth", NULL);
    static const char *const behind_edge[] = {"SP_TRUSTED_PROXIES=127.0.0.1", NULL};
    GW = sptest_start_service(E, "gateway", EDGE ? behind_edge : NULL);
    PORT = E->http_port;
    if (EDGE) {
        /* few enough connections for a test to run them short */
        static const char *const edge_env[] = {"SP_EDGE_CONNECTIONS=1536", NULL};
        sptest_start_edge(E, edge_env);
        PORT = E->edge_port;
        snprintf(E->base_url, sizeof(E->base_url), "%s", E->edge_url); /* sptest_json too */
    }

    SRunner *sr = srunner_create(hostile_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed > 0) sptest_mark_failed(E);
    sptest_stop(E);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
