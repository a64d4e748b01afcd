/* fuzz_spjson.c -- libFuzzer target: spjson_parse on arbitrary bytes; what it accepts must
 * print back (cJSON_PrintUnformatted) to text it accepts again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    cJSON *doc = NULL;

    /* A malloc'd copy of exactly 'size' bytes: ASan catches any read past len. */
    char *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL) return 0;
    if (size > 0) memcpy(buf, data, size);

    sp_status s = spjson_parse(&doc, buf, size, SPJSON_DEFAULT_DEPTH, err, sizeof err);
    if (s == SP_OK) {
        if (doc == NULL) abort();
        char *text = cJSON_PrintUnformatted(doc);
        if (text != NULL) {
            cJSON *again = NULL;
            if (spjson_parse(&again, text, strlen(text), SPJSON_DEFAULT_DEPTH, err,
                             sizeof err) != SP_OK) {
                fprintf(stderr, "printed JSON refused: %s\n%s\n", err, text);
                abort();
            }
            cJSON_Delete(again);
            free(text);
        }
    } else {
        if (doc != NULL) abort(); /* *out stays NULL on failure */
        if (strnlen(err, sizeof err) == sizeof err) abort(); /* reason NUL-terminated */
    }
    cJSON_Delete(doc);
    free(buf);
    return 0;
}
