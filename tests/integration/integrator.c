/* integrator.c -- an integrator's view, with clients nobody here wrote: starts the stack,
 * makes a site with a camera, starts tests/integration/integrator.mjs (the official NATS
 * JavaScript client as the `subscriber` user, protobufjs on the published .proto files),
 * and once it is subscribed posts slot events: it must receive one SlotStatusChanged per
 * change, replay them from SP_SLOT_STATUS, and be refused SP_EVENTS, SP_AUDIT, the event
 * subjects and the services' requests and replies. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#include "site_fixture.h"
#include "tenancy_fixture.h"

#define CHANGES 6 /* A1..A3 OCCUPIED, then FREE */

START_TEST(a_javascript_integrator_sees_each_change_once_and_nothing_else)
{
    tenant t = new_tenant("integrator", true, false);
    char name[64], code[24], body[1024];
    fresh(name, sizeof(name), "JS Mall ", 40);
    fresh(code, sizeof(code), "JS", 20);
    char *est = new_establishment(t.id, name, "Campinas");
    char *lot = new_lot(est, code,
                        "\"slots\":[{\"slotCode\":\"A1\",\"slotType\":\"regular\"},"
                        "{\"slotCode\":\"A2\",\"slotType\":\"regular\"},"
                        "{\"slotCode\":\"A3\",\"slotType\":\"ev\"}]");
    snprintf(body, sizeof(body), "{\"name\":\"JS key\",\"clientId\":\"%s\"}", t.id);
    sptest_resp *r = MUST("POST", "/v1/api-keys", ADMIN, body, 201);
    char api_key[160], key[48];
    snprintf(api_key, sizeof(api_key), "X-API-Key: %s", sptest_jstr(r, "apiKey"));
    snprintf(key, sizeof(key), "%s", sptest_jstr(r, "id"));
    sptest_resp_free(r);
    snprintf(body, sizeof(body),
             "{\"cameraCode\":\"CAM-JS\",\"clientId\":\"%s\",\"apiKeyId\":\"%s\",\"lotId\":\"%s\"}",
             t.id, key, lot);
    free(made_(__LINE__, "/v1/cameras", body));

    /* the integrator, its output on a pipe */
    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    char expect[16], client[80], url[160], script[512];
    snprintf(expect, sizeof(expect), "SP_EXPECT=%d", CHANGES);
    snprintf(client, sizeof(client), "SP_CLIENT_ID=%s", t.id);
    snprintf(url, sizeof(url), "SP_NATS_URL=%s", E->nats_url);
    snprintf(script, sizeof(script), "%s/tests/integration/integrator.mjs", SP_SOURCE_DIR);
    char *envp[] = {expect,
                    client,
                    url,
                    "SP_NATS_USER=subscriber",
                    "SP_NATS_PASSWORD=subscriber",
                    "SP_PROTO_DIR=" SP_SOURCE_DIR "/proto",
                    "PATH=/usr/local/bin:/usr/bin:/bin",
                    NULL};
    char *argv[] = {"node", script, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    pid_t pid;
    ck_assert_int_eq(posix_spawnp(&pid, "node", &fa, NULL, argv, envp), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    char got[4096] = "";
    size_t n = 0;
    for (int waited = 0; strstr(got, "ready") == NULL && waited < 300; waited++) {
        struct pollfd p = {out[0], POLLIN, 0};
        if (poll(&p, 1, 100) > 0) {
            ssize_t k = read(out[0], got + n, sizeof(got) - 1 - n);
            if (k <= 0) break;
            n += (size_t)k;
            got[n] = '\0';
        }
    }
    ck_assert_msg(strstr(got, "ready") != NULL, "the integrator did not start: %s", got);

    /* three slots fill, then empty: six changes */
    char events[1024], at[40], at2[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S.100Z", &tm);
    strftime(at2, sizeof(at2), "%Y-%m-%dT%H:%M:%S.200Z", &tm);
    char path[256];
    snprintf(path, sizeof(path), "%s/v1/events/slot-status", E->base_url);
    const char *h[] = {"Content-Type: application/json", api_key, NULL};
    for (int round = 0; round < 2; round++) {
        snprintf(events, sizeof(events),
                 "{\"hardwareCode\":\"CAM-JS\",\"lotId\":\"%s\",\"items\":["
                 "{\"slotCode\":\"A1\",\"status\":\"%s\",\"occurredAt\":\"%s\"},"
                 "{\"slotCode\":\"A2\",\"status\":\"%s\",\"occurredAt\":\"%s\"},"
                 "{\"slotCode\":\"A3\",\"status\":\"%s\",\"occurredAt\":\"%s\"}]}",
                 lot, round ? "FREE" : "OCCUPIED", round ? at2 : at, round ? "FREE" : "OCCUPIED",
                 round ? at2 : at, round ? "FREE" : "OCCUPIED", round ? at2 : at);
        r = sptest_http("POST", path, h, events, strlen(events));
        ck_assert_msg(r->status == 202, "%ld %s", r->status, r->body);
        sptest_resp_free(r);
    }
    int st = 0;
    for (int waited = 0; waited < 600; waited++) { /* 60 s */
        if (waitpid(pid, &st, WNOHANG) == pid) break;
        usleep(100 * 1000);
        if (waited == 599) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
    }
    ssize_t k = read(out[0], got + n, sizeof(got) - 1 - n);
    if (k > 0) got[n + (size_t)k] = '\0';
    close(out[0]);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the integrator failed (see stderr): %s",
                  got);
    ck_assert_msg(strstr(got, "limits hold") != NULL, "%s", got);
    free(est);
    free(lot);
    tenant_free(&t);
}
END_TEST

static Suite *integrator_suite(void)
{
    Suite *s = suite_create("integrator");
    TCase *tc = tcase_create("js");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, a_javascript_integrator_sees_each_change_once_and_nothing_else);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    start_every_service("integrator", NULL, NULL);
    return run_suite_as_admin(integrator_suite(), NULL);
}
