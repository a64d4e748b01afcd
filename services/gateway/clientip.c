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

struct gw_proxies {
    struct {
        uint32_t net, mask; /* host order */
    } nets[MAX_PROXIES];
    size_t n;
};

static uint32_t mask_of(int bits)
{
    return bits == 0 ? 0 : 0xFFFFFFFFu << (32 - bits);
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

/* "a.b.c.d" or "a.b.c.d/len" (len 0..32; host bits beyond len are ignored). */
static bool parse_net(const char *s, uint32_t *net, uint32_t *mask)
{
    char ip[MAX_ENTRY + 1];
    struct in_addr a;
    int bits = 32;
    const char *slash = strchr(s, '/');

    if (slash != NULL) {
        char *end = NULL;
        size_t n = (size_t)(slash - s);
        if (n > MAX_ENTRY || slash[1] < '0' || slash[1] > '9' || strlen(slash + 1) > 2)
            return false;
        long v = strtol(slash + 1, &end, 10);
        if (*end != '\0' || v < 0 || v > 32) return false;
        bits = (int)v;
        memcpy(ip, s, n);
        ip[n] = '\0';
    } else {
        snprintf(ip, sizeof(ip), "%s", s);
    }
    if (inet_pton(AF_INET, ip, &a) != 1) return false;
    *mask = mask_of(bits);
    *net = ntohl(a.s_addr) & *mask;
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
        if (p->n == MAX_PROXIES || !trimmed(item, s, len) ||
            !parse_net(item, &p->nets[p->n].net, &p->nets[p->n].mask)) {
            snprintf(why, whylen,
                     "SP_TRUSTED_PROXIES: '%.*s' is not an IPv4 address or CIDR (at most %d)",
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

/* true when 'ip' (a written address) is IPv4 and inside one of the trusted networks. */
static bool trusted(const gw_proxies *p, const char *ip)
{
    struct in_addr a;
    if (p == NULL || p->n == 0 || inet_pton(AF_INET, ip, &a) != 1) return false;
    uint32_t v = ntohl(a.s_addr);
    for (size_t i = 0; i < p->n; i++)
        if ((v & p->nets[i].mask) == p->nets[i].net) return true;
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
