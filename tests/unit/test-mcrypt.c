/*
 * Unit tests for mk_mcrypt: X25519 against RFC 7748, the round trip at
 * every chunk boundary, two recipients, a header rewritten for another
 * key, and every kind of damage reported.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mk_crypto.h"
#include "mk_mcrypt.h"
#include "mk_test.h"

struct sink {
    unsigned char *data;
    size_t len, calls;
};

static int sink_emit(void *ctx, const void *data, size_t len)
{
    struct sink *s = ctx;

    s->data = realloc(s->data, s->len + len);
    memcpy(s->data + s->len, data, len);
    s->len += len;
    s->calls++;
    return 0;
}

static int refuse_emit(void *ctx, const void *data, size_t len)
{
    (void) ctx;
    (void) data;
    (void) len;
    return -1;
}

/* Encrypt len bytes of a pattern for the recipients, in writes of step bytes. */
static struct sink seal(const struct mk_mc_recipient *r, unsigned n, unsigned shift,
                        const unsigned char *plain, size_t len, size_t step)
{
    struct sink s = {0};
    struct mk_mc_enc *e = mk_mc_enc_new(r, n, shift);

    for (size_t off = 0; off < len; off += step)
        test_assert(mk_mc_enc_write(e, plain + off, len - off < step ? len - off : step,
                                    sink_emit, &s) == 0);
    test_assert(mk_mc_enc_finish(e, sink_emit, &s) == 0);
    test_assert(mk_mc_enc_plain_size(e) == len);
    mk_mc_enc_free(e);
    return s;
}

static bool opens_to(const struct sink *s, const struct mk_mc_keypair *k,
                     const unsigned char *plain, size_t len, const char **why)
{
    unsigned char *out;
    size_t out_len;
    bool same;

    *why = NULL;
    if (mk_mc_decrypt_buf(s->data, s->len, k, &out, &out_len, why) != 0)
        return false;
    same = out_len == len && memcmp(out, plain, len) == 0;
    free(out);
    return same;
}

int main(void)
{
    struct mk_mc_keypair user, escrow, other;
    struct mk_mc_recipient two[2];
    unsigned char *plain;
    const char *why;
    size_t chunk = (size_t) 1 << 12, big = 5 * chunk + 123;

    plain = malloc(big);
    for (size_t i = 0; i < big; i++)
        plain[i] = (unsigned char) (i * 7 + (i >> 9));

    test_begin("mcrypt: X25519 public key of RFC 7748's Alice");
    {
        unsigned char priv[32], want[32];
        struct mk_mc_keypair a;

        test_assert(mk_crypto_unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
                                    32, priv) == 0);
        test_assert(mk_crypto_unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
                                    32, want) == 0);
        test_assert(mk_mc_keypair_from_private(priv, &a) == 0);
        test_assert(memcmp(a.pub.pub, want, 32) == 0);
        mk_mc_keypair_wipe(&a);
    }
    test_end();

    test_assert(mk_mc_keypair_generate(&user) == 0);
    test_assert(mk_mc_keypair_generate(&escrow) == 0);
    test_assert(mk_mc_keypair_generate(&other) == 0);
    two[0] = (struct mk_mc_recipient) {MK_MC_SLOT_USER, &user.pub};
    two[1] = (struct mk_mc_recipient) {MK_MC_SLOT_ESCROW, &escrow.pub};

    test_begin("mcrypt: round trip at every chunk boundary, for each recipient");
    {
        size_t sizes[] = {0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, big};

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            struct sink s = seal(two, 2, 12, plain, sizes[i], 1000);
            struct mk_mc_header h;
            uint64_t size;
            size_t need;

            test_assert(mk_mc_is_encrypted(s.data, s.len));
            test_assert(mk_mc_header_parse(s.data, s.len, &h, &need, &why) == 1);
            test_assert(h.len == MK_MC_FIXED_LEN + 2 * MK_MC_SLOT_LEN && h.nslots == 2);
            test_assert(mk_mc_plain_size(&h, s.len, &size) == 0 && size == sizes[i]);
            test_assert(opens_to(&s, &user, plain, sizes[i], &why));
            test_assert(opens_to(&s, &escrow, plain, sizes[i], &why));
            test_assert(!opens_to(&s, &other, plain, sizes[i], &why));
            test_assert(why != NULL && strstr(why, "no key slot"));
            /* nothing of the plaintext shows through */
            if (sizes[i] >= 64)
                test_assert(memmem(s.data, s.len, plain + 17, 32) == NULL);
            free(s.data);
        }
    }
    test_end();

    test_begin("mcrypt: one write of everything gives the same plaintext as small writes");
    {
        struct sink a = seal(two, 2, 12, plain, big, big), b = seal(two, 2, 12, plain, big, 7);

        test_assert(a.len == b.len);
        test_assert(opens_to(&a, &user, plain, big, &why) && opens_to(&b, &user, plain, big, &why));
        test_assert(memcmp(a.data, b.data, 12) == 0);     /* same magic and parameters */
        test_assert(memcmp(a.data + 12, b.data + 12, 32) != 0);   /* ephemeral keys differ */
        free(a.data);
        free(b.data);
    }
    test_end();

    test_begin("mcrypt: the header parses in pieces and refuses what is not one");
    {
        struct sink s = seal(two, 2, 16, plain, 100, 100);
        struct mk_mc_header h;
        size_t need = 0;

        test_assert(mk_mc_header_parse(s.data, 5, &h, &need, &why) == 0 && need == 12);
        test_assert(mk_mc_header_parse(s.data, 12, &h, &need, &why) == 0
                    && need == MK_MC_FIXED_LEN + 2 * MK_MC_SLOT_LEN);
        test_assert(mk_mc_header_parse("From: a@b\r\n\r\nhi", 15, &h, &need, &why) == -1);
        test_assert(!mk_mc_is_encrypted("From: a@b\r\n", 11));
        s.data[8] = 2;
        test_assert(mk_mc_header_parse(s.data, s.len, &h, &need, &why) == -1
                    && strstr(why, "version"));
        s.data[8] = 1;
        s.data[9] = 30;
        test_assert(mk_mc_header_parse(s.data, s.len, &h, &need, &why) == -1);
        s.data[9] = 16;
        s.data[10] = 0;
        test_assert(mk_mc_header_parse(s.data, s.len, &h, &need, &why) == -1);
        s.data[10] = 2;
        s.data[MK_MC_FIXED_LEN] = 7;
        test_assert(mk_mc_header_parse(s.data, s.len, &h, &need, &why) == -1
                    && strstr(why, "slot"));
        free(s.data);
    }
    test_end();

    test_begin("mcrypt: damage anywhere is reported, never decrypted");
    {
        struct sink s = seal(two, 2, 12, plain, big, big);
        size_t hdr = MK_MC_FIXED_LEN + 2 * MK_MC_SLOT_LEN, sealed = chunk + MK_MC_TAG_LEN;
        size_t spots[] = {12, hdr - MK_MC_SLOT_LEN - 1, hdr, hdr + chunk, hdr + sealed + 5,
                          s.len - 1};

        for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
            s.data[spots[i]] ^= 0x20;
            test_assert(!opens_to(&s, &user, plain, big, &why));
            test_assert(why != NULL);
            s.data[spots[i]] ^= 0x20;
        }
        test_assert(opens_to(&s, &user, plain, big, &why));
        /* the escrow slot altered: the user's still opens, the escrow's not */
        s.data[hdr - 1] ^= 1;
        test_assert(opens_to(&s, &user, plain, big, &why));
        test_assert(!opens_to(&s, &escrow, plain, big, &why));
        s.data[hdr - 1] ^= 1;
        /* cut at a chunk boundary: the final chunk is missing */
        {
            struct sink cut = {s.data, hdr + 2 * sealed, 0};

            test_assert(!opens_to(&cut, &user, plain, big, &why));
            test_assert(why != NULL && strstr(why, "final chunk is missing"));
        }
        /* two chunks swapped */
        {
            unsigned char *tmp = malloc(sealed);

            memcpy(tmp, s.data + hdr, sealed);
            memcpy(s.data + hdr, s.data + hdr + sealed, sealed);
            memcpy(s.data + hdr + sealed, tmp, sealed);
            test_assert(!opens_to(&s, &user, plain, big, &why));
            free(tmp);
        }
        free(s.data);
    }
    test_end();

    test_begin("mcrypt: a new header gives the message to another key, body unchanged");
    {
        struct sink s;
        struct mk_mc_enc *e = mk_mc_enc_new(two, 1, 12);
        struct mk_mc_recipient to_other = {MK_MC_SLOT_USER, &other.pub};
        unsigned char dek[MK_MC_KEY_LEN], hdr[MK_MC_HEADER_MAX];
        size_t hdr_len, old_hdr = MK_MC_FIXED_LEN + MK_MC_SLOT_LEN;
        struct sink moved = {0};

        memset(&s, 0, sizeof(s));
        test_assert(mk_mc_enc_write(e, plain, big, sink_emit, &s) == 0);
        test_assert(mk_mc_enc_finish(e, sink_emit, &s) == 0);
        memcpy(dek, mk_mc_enc_dek(e), sizeof(dek));
        mk_mc_enc_free(e);
        test_assert(mk_mc_header_make(dek, 12, &to_other, 1, hdr, &hdr_len) == 0);
        sink_emit(&moved, hdr, hdr_len);
        sink_emit(&moved, s.data + old_hdr, s.len - old_hdr);
        test_assert(opens_to(&moved, &other, plain, big, &why));
        test_assert(!opens_to(&moved, &user, plain, big, &why));
        /* and the DEK from the user's own slot gives the same */
        {
            struct mk_mc_header h;
            unsigned char again[MK_MC_KEY_LEN];
            size_t need;

            test_assert(mk_mc_header_parse(s.data, s.len, &h, &need, &why) == 1);
            test_assert(mk_mc_unwrap(&h, &user, again) == 0 && memcmp(again, dek, 32) == 0);
            test_assert(mk_mc_unwrap(&h, &escrow, again) == -1);
        }
        free(s.data);
        free(moved.data);
    }
    test_end();

    test_begin("mcrypt: impossible sizes and a writer that fails");
    {
        struct mk_mc_header h;
        struct sink s = seal(two, 1, 12, plain, 10, 10);
        struct mk_mc_enc *e;
        size_t need;
        uint64_t size;

        test_assert(mk_mc_header_parse(s.data, s.len, &h, &need, &why) == 1);
        test_assert(mk_mc_plain_size(&h, h.len + 3, &size) == -1);
        test_assert(mk_mc_plain_size(&h, h.len + 16, &size) == 0 && size == 0);
        test_assert(mk_mc_plain_size(&h, h.len + chunk + 16 + 5, &size) == -1);
        free(s.data);
        e = mk_mc_enc_new(two, 2, 12);
        test_assert(mk_mc_enc_write(e, plain, 10, refuse_emit, NULL) == 0);   /* buffered */
        test_assert(mk_mc_enc_finish(e, refuse_emit, NULL) == -1);
        mk_mc_enc_free(e);
        test_assert(mk_mc_enc_new(two, 0, 12) == NULL);
        test_assert(mk_mc_enc_new(two, MK_MC_MAX_SLOTS + 1, 12) == NULL);
    }
    test_end();

    mk_mc_keypair_wipe(&user);
    mk_mc_keypair_wipe(&escrow);
    mk_mc_keypair_wipe(&other);
    free(plain);
    mk_mc_forget();
    return test_done();
}
