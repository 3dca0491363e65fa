/*
 * libFuzzer target: the second-factor store's record parser
 * (mk_otp_record_parse), which reads the store's files. A record that
 * parses must format to a text that parses to the same text again.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mk_otpstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mk_otp_record r, r2;
    char *error = NULL, *text, *again;

    if (mk_otp_record_parse((const char *) data, size, &r, &error) != 0) {
        free(error);
        return 0;
    }
    text = mk_otp_record_format(&r);
    if (mk_otp_record_parse(text, strlen(text), &r2, &error) != 0)
        abort();
    again = mk_otp_record_format(&r2);
    if (strcmp(text, again) != 0)
        abort();
    free(again);
    free(text);
    mk_otp_record_free(&r2);
    mk_otp_record_free(&r);
    return 0;
}
