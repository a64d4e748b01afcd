/* main.c -- the catalog service on the service kit (libs/spsvc): the routes of
 * lookups.c. */
#include "catalog.h"

static sp_status start(spsvc *kit)
{
    lookups_register(kit);
    return SP_OK;
}

int main(int argc, char **argv)
{
    const spsvc_def def = {
        .name = "catalog", .admin_addr = "127.0.0.1:9103", .needs = SPSVC_DB, .start = start};
    return spsvc_main(&def, argc, argv);
}
