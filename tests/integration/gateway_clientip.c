/* gateway_clientip.c -- the client ip the gateway believes (services/gateway/clientip.c),
 * as functions: SP_TRUSTED_PROXIES parsing for IPv4 and IPv6, and which X-Forwarded-For
 * entry counts. The HTTP path of the same rules runs in auth_ratelimit (IPv4 over loopback). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

static gw_proxies *parse_ok(const char *list)
{
    gw_proxies *p = NULL;
    char why[256] = "";
    ck_assert_msg(gw_proxies_parse(&p, list, why, sizeof(why)) == SP_OK, "%s: %s", list, why);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* the client ip for 'peer' with X-Forwarded-For 'xff' under 'list' */
static const char *client(const char *list, const char *peer, const char *xff)
{
    static char out[64];
    gw_proxies *p = parse_ok(list);
    gw_client_ip(out, sizeof(out), p, peer, xff);
    gw_proxies_destroy(p);
    return out;
}

START_TEST(bad_lists_are_refused_with_the_item)
{
    static const char *bad[] = {"10.0.0.1/33", "fd00::/129", "10.0.0.1/", "10.0.0/8",
                                "fd00::/-1", "fd00::/8x", "example.com", "10.0.0.1,,10.0.0.2",
                                "::ffff:10.0.0.1/129", "1:2:3:4:5:6:7:8:9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_proxies *p = NULL;
        char why[256] = "";
        ck_assert_msg(gw_proxies_parse(&p, bad[i], why, sizeof(why)) == SP_ERR_VALIDATION_FAILED,
                      "%s accepted", bad[i]);
        ck_assert_ptr_null(p);
        ck_assert_msg(strstr(why, "SP_TRUSTED_PROXIES") != NULL, "%s", why);
    }
}
END_TEST

START_TEST(untrusted_peer_is_the_client_whatever_the_header)
{
    ck_assert_str_eq(client("", "10.0.0.1", "1.2.3.4"), "10.0.0.1");
    ck_assert_str_eq(client("10.0.0.0/8", "192.168.1.1", "1.2.3.4"), "192.168.1.1");
    ck_assert_str_eq(client("fd00::/8", "fe80::1", "1.2.3.4"), "fe80::1");
    ck_assert_str_eq(client("10.0.0.0/8", "10.0.0.1", NULL), "10.0.0.1");
}
END_TEST

START_TEST(ipv4_networks_trust_their_peers)
{
    ck_assert_str_eq(client("10.0.0.0/8", "10.9.9.9", "1.2.3.4"), "1.2.3.4");
    ck_assert_str_eq(client("10.1.2.3/16", "10.1.200.1", "1.2.3.4"), "1.2.3.4"); /* host bits */
    ck_assert_str_eq(client("10.1.0.0/16", "10.2.0.1", "1.2.3.4"), "10.2.0.1");
    ck_assert_str_eq(client("10.0.0.1", "10.0.0.1", "1.2.3.4"), "1.2.3.4");
    ck_assert_str_eq(client("10.0.0.1", "10.0.0.2", "1.2.3.4"), "10.0.0.2");
    ck_assert_str_eq(client("0.0.0.0/0", "8.8.8.8", "1.2.3.4"), "1.2.3.4");
    /* a dual-stack socket writes an IPv4 peer as IPv4-mapped IPv6 */
    ck_assert_str_eq(client("10.0.0.0/8", "::ffff:10.0.0.7", "1.2.3.4"), "1.2.3.4");
    /* an IPv4 network never matches a plain IPv6 peer, even /0 */
    ck_assert_str_eq(client("0.0.0.0/0", "2001:db8::1", "1.2.3.4"), "2001:db8::1");
}
END_TEST

START_TEST(ipv6_networks_trust_their_peers)
{
    ck_assert_str_eq(client("fd00::/8", "fd12:3456::1", "2001:db8::5"), "2001:db8::5");
    ck_assert_str_eq(client("fd00::/8", "fe00::1", "2001:db8::5"), "fe00::1");
    ck_assert_str_eq(client("2001:db8:1::/48", "2001:db8:1:ffff::1", "1.2.3.4"), "1.2.3.4");
    ck_assert_str_eq(client("2001:db8:1::/48", "2001:db8:2::1", "1.2.3.4"), "2001:db8:2::1");
    ck_assert_str_eq(client("2001:db8::1", "2001:db8::1", "1.2.3.4"), "1.2.3.4");
    ck_assert_str_eq(client("2001:db8::1/127", "2001:db8::0", "1.2.3.4"), "1.2.3.4");
    ck_assert_str_eq(client("2001:db8::1/127", "2001:db8::2", "1.2.3.4"), "2001:db8::2");
    ck_assert_str_eq(client("::/0", "2001:db8::9", "1.2.3.4"), "1.2.3.4");
    /* IPv4 through an IPv6-mapped network written as IPv6 */
    ck_assert_str_eq(client("::ffff:10.0.0.0/104", "10.3.3.3", "1.2.3.4"), "1.2.3.4");
}
END_TEST

START_TEST(the_right_most_untrusted_entry_counts)
{
    const char *list = "10.0.0.0/8, fd00::/8";
    ck_assert_str_eq(client(list, "10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.5"), "1.2.3.4");
    ck_assert_str_eq(client(list, "fd00::1", "6.6.6.6, 2001:DB8::7, fd00::9"), "2001:db8::7");
    /* every hop a proxy: the farthest one known */
    ck_assert_str_eq(client(list, "10.0.0.1", "fd00::3, 10.0.0.2"), "fd00::3");
    /* anything not an address: the header is ignored, the peer is the client */
    ck_assert_str_eq(client(list, "10.0.0.1", "1.2.3.4, unknown"), "10.0.0.1");
    ck_assert_str_eq(client(list, "10.0.0.1", "1.2.3.4,,5.6.7.8"), "10.0.0.1");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gateway_clientip");
    TCase *tc = tcase_create("clientip");
    tcase_add_test(tc, bad_lists_are_refused_with_the_item);
    tcase_add_test(tc, untrusted_peer_is_the_client_whatever_the_header);
    tcase_add_test(tc, ipv4_networks_trust_their_peers);
    tcase_add_test(tc, ipv6_networks_trust_their_peers);
    tcase_add_test(tc, the_right_most_untrusted_entry_counts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
