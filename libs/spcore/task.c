/* task.c -- a periodic task: one thread that runs a function every period and at once when
 * woken, until stopped. The one timed loop of every process (outbox publishers, keepers). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "spcore.h"

struct sp_task {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC: a wall clock step changes no period */
    bool stop, woken;  /* guarded by mu */
    bool joined;       /* by sp_task_halt; only the stopping thread reads it */
    int period_ms;
    sp_task_fn fn;
    void *user;
};

static void *task_main(void *arg)
{
    sp_task *t = arg;

    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        if (!t->woken) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += t->period_ms / 1000;
            until.tv_nsec += (long)(t->period_ms % 1000) * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (!t->stop && !t->woken &&
                   pthread_cond_timedwait(&t->cv, &t->mu, &until) != ETIMEDOUT) {
            }
        }
        if (t->stop) break;
        t->woken = false;
        pthread_mutex_unlock(&t->mu);
        t->fn(t->user);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

sp_status sp_task_start(sp_task **out, int period_ms, sp_task_fn fn, void *user)
{
    *out = NULL;
    if (period_ms < 1 || fn == NULL) return SP_ERR_INTERNAL;
    sp_task *t = calloc(1, sizeof(*t));
    if (t == NULL) return SP_ERR_INTERNAL;
    t->period_ms = period_ms;
    t->fn = fn;
    t->user = user;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&t->thread, NULL, task_main, t) != 0) {
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        free(t);
        return SP_ERR_INTERNAL;
    }
    *out = t;
    return SP_OK;
}

void sp_task_wake(sp_task *t)
{
    if (t == NULL) return;
    pthread_mutex_lock(&t->mu);
    t->woken = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void sp_task_halt(sp_task *t)
{
    if (t == NULL || t->joined) return;
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    t->joined = true;
}

void sp_task_stop(sp_task *t)
{
    if (t == NULL) return;
    sp_task_halt(t);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
