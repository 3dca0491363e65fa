/*
 * libFuzzer target: mailkeep_crypt's two parsers of what is on disk, the
 * user key file (mk_ck_parse) and the message format (header, size,
 * chunks: mk_mc_decrypt_buf with a fixed key). A key file that parses
 * must format to a text that parses to the same text again.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mk_ckeys.h"
#include "mk_mcrypt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mk_mc_keypair key;
    static int ready;
    struct mk_ck_file *f = malloc(sizeof(*f)), *f2 = malloc(sizeof(*f2));
    struct mk_mc_header h;
    unsigned char *out;
    const char *why;
    char problem[200], *text, *again;
    size_t need, out_len;
    uint64_t plain;

    if (!ready) {
        uint8_t priv[MK_MC_KEY_LEN];

        memset(priv, 0x42, sizeof(priv));
        if (mk_mc_keypair_from_private(priv, &key) != 0)
            abort();
        ready = 1;
    }
    if (mk_ck_parse((const char *) data, size, f, problem, sizeof(problem)) == 0) {
        text = mk_ck_format(f);
        if (text == NULL || mk_ck_parse(text, strlen(text), f2, problem, sizeof(problem)) != 0)
            abort();
        again = mk_ck_format(f2);
        if (again == NULL || strcmp(text, again) != 0)
            abort();
        free(again);
        free(text);
    }
    if (mk_mc_header_parse(data, size, &h, &need, &why) == 1) {
        if (h.len > size || h.nslots == 0 || h.nslots > MK_MC_MAX_SLOTS)
            abort();
        (void) mk_mc_plain_size(&h, size, &plain);
    }
    if (mk_mc_decrypt_buf(data, size, &key, &out, &out_len, &why) == 0)
        free(out);
    free(f);
    free(f2);
    return 0;
}
