/* fuzz_ingest.c -- libFuzzer target: ingest's decoders of what cameras send (quality.md),
 * each input read as JSON and as protobuf, as a batch of slot events and as a heartbeat;
 * whatever they accept is walked as events.c would. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_arena *a = sp_arena_create(4096);
    if (a == NULL) return 0;
    for (int form = ING_FORM_JSON; form <= ING_FORM_PROTOBUF; form++) {
        ing_events_in in;
        spsvc_fields f;
        char why[160];
        spsvc_fields_init(&f);
        size_t total = 0;
        if (ing_events_decode(&in, &f, (ing_form)form, data, size, a, why, sizeof(why)) == SP_OK &&
            in.batch->n_items <= ING_MAX_ITEMS) {
            for (size_t i = 0; i < in.batch->n_items; i++) {
                const Sp__Ingest__V1__SlotEventItem *it = in.batch->items[i];
                total += in.bad[i];
                if (it->slot_code != NULL) total += strlen(it->slot_code);
                if (it->status != NULL) total += strlen(it->status);
                if (it->occurred_at != NULL) total += strlen(it->occurred_at);
                if (it->event_id != NULL) total += strlen(it->event_id);
            }
            if (in.batch->hardware_code != NULL) total += strlen(in.batch->hardware_code);
        }
        Sp__Ingest__V1__HeartbeatRequest *h = NULL;
        long unknown = 0;
        spsvc_fields_init(&f);
        if (ing_heartbeat_decode(&h, &unknown, &f, (ing_form)form, data, size, a, why,
                                 sizeof(why)) == SP_OK &&
            h->firmware != NULL)
            total += strlen(h->firmware);
        (void)total;
    }
    sp_arena_destroy(a);
    return 0;
}
