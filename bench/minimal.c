/* minimal.c -- the benchmark's ceiling: a CivetWeb handler configured like the gateway
 * (keep-alive, tcp_nodelay, the same thread count) that answers every request with the
 * bytes the gateway answers GET /v1/me: the same headers and the JSON body given in a file.
 *
 * usage: bench_minimal ADDR BODY_FILE [THREADS]   (ADDR "127.0.0.1:18090"; runs until
 * SIGINT/SIGTERM) */
#include <civetweb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *g_resp;   /* the whole response: status line, headers, body */
static size_t g_resp_len;

/* Answers in one write, as the gateway does; the request id stands for the gateway's
 * UUIDv4 (same length). */
static int begin_request(struct mg_connection *conn)
{
    mg_write(conn, g_resp, g_resp_len);
    return 200;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = malloc(65536);
    size_t n = buf != NULL ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf == NULL) return NULL;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bench_minimal ADDR BODY_FILE [THREADS]\n");
        return 2;
    }
    size_t blen = 0;
    char *body = read_file(argv[2], &blen);
    if (body == NULL) {
        fprintf(stderr, "bench_minimal: cannot read %s\n", argv[2]);
        return 2;
    }
    const char *rid = "00000000-0000-4000-8000-000000000000";
    size_t cap = blen + 512;
    g_resp = malloc(cap);
    if (g_resp == NULL) return 1;
    int n = snprintf(g_resp, cap,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nX-Request-Id: %s\r\nCache-Control: no-store\r\n\r\n",
                     blen, rid);
    memcpy(g_resp + n, body, blen);
    g_resp_len = (size_t)n + blen;
    free(body);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *threads = argc == 4 ? argv[3] : "128";
    const char *options[] = {
        "listening_ports", argv[1],
        "num_threads", threads,
        "enable_keep_alive", "yes",
        "tcp_nodelay", "1",
        "request_timeout_ms", "10000",
        "keep_alive_timeout_ms", "5000",
        "access_control_allow_origin", "",
        "access_control_allow_methods", "",
        "access_control_allow_headers", "",
        "enable_directory_listing", "no",
        NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = begin_request;
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&cb, NULL, options);
    if (ctx == NULL) {
        fprintf(stderr, "bench_minimal: cannot listen on %s\n", argv[1]);
        return 1;
    }
    int sig = 0;
    sigwait(&stop, &sig);
    mg_stop(ctx);
    mg_exit_library();
    free(g_resp);
    return 0;
}
