/*
 * libFuzzer target: the journal envelope text (ar_spool). What parses
 * must format back to text that parses to the same envelope.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ar_spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ar_envelope e, back;
    char *error = NULL, *text, *again;
    size_t len;

    if (ar_envelope_parse((const char *) data, size, &e, &error) < 0) {
        free(error);
        return 0;
    }
    text = ar_envelope_format(&e, &len);
    if (ar_envelope_parse(text, len, &back, &error) < 0)
        abort();
    again = ar_envelope_format(&back, NULL);
    if (strcmp(again, text) != 0)
        abort();
    (void) ar_envelope_direction(&back);
    free(again);
    free(text);
    ar_envelope_free(&back);
    ar_envelope_free(&e);
    return 0;
}
