/* clientip.c -- the client ip the gateway believes (api.md, "Auth and profile"):
 * X-Forwarded-For counts only when the peer is one of SP_TRUSTED_PROXIES. Then the client
 * is the right-most address of the header that is not itself a trusted proxy (each proxy
 * appends the address it saw, so everything left of the last untrusted hop may be forged).
 * A header with anything that is not an IP address is ignored as a whole. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define MAX_PROXIES 64
#define MAX_ENTRY 64 /* longer than any written IP address */

/* A network: IPv4 as an IPv4-mapped IPv6 address (::ffff:a.b.c.d, prefix + 96), so one
 * comparison serves both families and a dual-stack peer written ::ffff:10.0.0.1 matches
 * 10.0.0.0/8. */
typedef struct {
    uint8_t addr[16];
    int bits; /* 0..128 */
} net;

struct gw_proxies {
    net nets[MAX_PROXIES];
    size_t n;
};

/* 'ip' as 16 bytes (IPv4 mapped into IPv6); *v4 says it was written as IPv4. */
static bool parse_addr(const char *ip, uint8_t out[16], bool *v4)
{
    struct in_addr a4;
    *v4 = false;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    return inet_pton(AF_INET6, ip, out) == 1;
}

static bool in_net(const net *n, const uint8_t a[16])
{
    int full = n->bits / 8, rest = n->bits % 8;
    if (memcmp(n->addr, a, (size_t)full) != 0) return false;
    if (rest == 0) return true;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (n->addr[full] & m) == (a[full] & m);
}
/* Copies s[0..len) without the spaces and tabs around it into buf (size MAX_ENTRY + 1);
 * false when empty or too long. */
static bool trimmed(char *buf, const char *s, size_t len)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len > MAX_ENTRY) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return true;
}

/* "a.b.c.d", "a.b.c.d/len" (len 0..32), an IPv6 address or "ipv6/len" (len 0..128); host
 * bits beyond len are ignored. */
static bool parse_net(const char *s, net *out)
{
    char ip[MAX_ENTRY + 1];
    long bits = -1;
    const char *slash = strchr(s, '/');
    bool v4 = false;

    if (slash != NULL) {
        char *end = NULL;
        size_t n = (size_t)(slash - s);
        if (n > MAX_ENTRY || slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 3)
            return false;
        bits = strtol(slash + 1, &end, 10);
        if (*end != '\0') return false;
        memcpy(ip, s, n);
        ip[n] = '\0';
    } else {
        snprintf(ip, sizeof(ip), "%s", s);
    }
    if (!parse_addr(ip, out->addr, &v4)) return false;
    if (bits < 0) bits = v4 ? 32 : 128;
    if (bits > (v4 ? 32 : 128)) return false;
    out->bits = (int)bits + (v4 ? 96 : 0);
    /* clear the host bits, so that the stored network compares as written */
    for (int i = 0; i < 16; i++) {
        int keep = out->bits - i * 8;
        if (keep <= 0)
            out->addr[i] = 0;
        else if (keep < 8)
            out->addr[i] &= (uint8_t)(0xff << (8 - keep));
    }
    return true;
}

sp_status gw_proxies_parse(gw_proxies **out, const char *list, char *why, size_t whylen)
{
    *out = NULL;
    gw_proxies *p = calloc(1, sizeof(*p));
    if (p == NULL) return SP_ERR_INTERNAL;
    const char *s = list != NULL ? list : "";
    /* an empty list trusts nobody */
    if (strspn(s, " \t") == strlen(s)) {
        *out = p;
        return SP_OK;
    }
    for (;;) {
        size_t len = strcspn(s, ",");
        char item[MAX_ENTRY + 1];
        if (p->n == MAX_PROXIES || !trimmed(item, s, len) || !parse_net(item, &p->nets[p->n])) {
            snprintf(why, whylen,
                     "SP_TRUSTED_PROXIES: '%.*s' is not an IP address or CIDR (at most %d)",
                     (int)(len > MAX_ENTRY ? MAX_ENTRY : len), s, MAX_PROXIES);
            free(p);
            return SP_ERR_VALIDATION_FAILED;
        }
        p->n++;
        if (s[len] == '\0') break;
        s += len + 1;
    }
    *out = p;
    return SP_OK;
}

void gw_proxies_destroy(gw_proxies *p)
{
    free(p);
}

/* true when 'ip' (a written address) is inside one of the trusted networks. */
static bool trusted(const gw_proxies *p, const char *ip)
{
    uint8_t a[16];
    bool v4;
    if (p == NULL || p->n == 0 || !parse_addr(ip, a, &v4)) return false;
    for (size_t i = 0; i < p->n; i++)
        if (in_net(&p->nets[i], a)) return true;
    return false;
}

/* The canonical text of an IPv4 or IPv6 address into out (INET6_ADDRSTRLEN); false when
 * 'ip' is neither. */
static bool canonical(char *out, const char *ip)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, ip, buf) == 1)
        return inet_ntop(AF_INET, buf, out, INET6_ADDRSTRLEN) != NULL;
    if (inet_pton(AF_INET6, ip, buf) == 1)
        return inet_ntop(AF_INET6, buf, out, INET6_ADDRSTRLEN) != NULL;
    return false;
}

void gw_client_ip(char *out, size_t outlen, const gw_proxies *p, const char *peer, const char *xff)
{
    char entry[MAX_ENTRY + 1], canon[INET6_ADDRSTRLEN];
    char leftmost[INET6_ADDRSTRLEN] = "", untrusted[INET6_ADDRSTRLEN] = "";

    snprintf(out, outlen, "%s", peer != NULL ? peer : "");
    if (xff == NULL || peer == NULL || !trusted(p, peer)) return;
    /* every entry must be an address, or the whole header is ignored. Walking left to
     * right, the last untrusted entry seen is the right-most one; when every entry is a
     * trusted proxy, the left-most (the farthest hop known). */
    for (const char *s = xff;;) {
        size_t len = strcspn(s, ",");
        if (!trimmed(entry, s, len) || !canonical(canon, entry)) return;
        if (leftmost[0] == '\0') snprintf(leftmost, sizeof(leftmost), "%s", canon);
        if (!trusted(p, canon)) snprintf(untrusted, sizeof(untrusted), "%s", canon);
        if (s[len] == '\0') break;
        s += len + 1;
    }
    snprintf(out, outlen, "%s", untrusted[0] != '\0' ? untrusted : leftmost);
}
