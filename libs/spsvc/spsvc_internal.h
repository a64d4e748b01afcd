/* spsvc_internal.h -- the kit's state, shared by the files of libs/spsvc/ only. */
#ifndef SPSVC_INTERNAL_H
#define SPSVC_INTERNAL_H

#include <pthread.h>

#include "spadmin.h"
#include "spsvc.h"

/* Redis timeout of a worker's connection (connect and command), ms. */
#define SPSVC_REDIS_TIMEOUT_MS 500

struct spsvc {
    const spsvc_def *def;
    sp_config *cfg;
    sp_cfg_item *items; /* the common settings and the service's, which cfg points into */
    spbus *bus;
    spbus_service *service;
    spadmin *admin;
    int workers;
    bool started;        /* def->start ran: def->stop runs at the end */
    spbus_route *routes; /* every table of spsvc_routes, copied in order */
    size_t nroutes;
    sp_task **tasks;
    size_t ntasks;
    const char *db_url, *redis_url;
    spdb **db;       /* one per worker, connected on first use, by that worker */
    spredis **redis; /* one per worker, created on first use, by that worker */
    bool *audited;   /* per worker: this request wrote to the outbox */
    pthread_mutex_t ready_mu;
    spdb *ready_db; /* /readyz's own connection, guarded by ready_mu */
    /* the outbox (outbox.c) */
    sp_task *outbox_task;
    spdb *outbox_db; /* the publisher's own connection */
    spbus_js_batch *outbox_js;
    char *sql_insert, *sql_pending, *sql_delete;
};

/* outbox.c: builds the statements of def->outbox and starts the publisher task. */
sp_status spsvc__outbox_start(spsvc *svc);
/* After every task stopped. */
void spsvc__outbox_free(spsvc *svc);

#endif
