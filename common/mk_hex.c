/*
 * mk_hex - mk_crypto_hex() and mk_crypto_unhex() (see mk_crypto.h), apart
 * from the rest of mk_crypto: libc only, so that the mailkeep_crypt
 * Dovecot plugin compiles them in with its key files.
 */
#include "config.h"

#include "mk_crypto.h"

void mk_crypto_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int mk_crypto_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int mk_crypto_unhex(const char *hex, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < 2 * n; i++)
        if (mk_crypto_digit((unsigned char) hex[i]) < 0)
            return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char) (mk_crypto_digit((unsigned char) hex[2 * i]) << 4
                                  | mk_crypto_digit((unsigned char) hex[2 * i + 1]));
    return 0;
}
