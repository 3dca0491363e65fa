/*
 * mk_mcrypt - mailkeep_crypt's message format. See mk_mcrypt.h.
 *
 * Self-contained (OpenSSL and libc only): the Dovecot plugin compiles it
 * in, and it allocates with malloc(), failing softly.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "mk_mcrypt.h"

#define MK_MC_WRAP_INFO "mailkeep-crypt v1 wrap"

struct mk_mc_enc {
    EVP_CIPHER_CTX *ctx;
    uint8_t dek[MK_MC_KEY_LEN];
    uint8_t header[MK_MC_HEADER_MAX];
    size_t header_len;
    bool header_sent;
    size_t chunk;                       /* plaintext bytes per chunk */
    uint8_t *buf;                       /* the chunk being filled */
    size_t used;
    uint8_t *out;                       /* a sealed chunk */
    uint64_t index;
    uint64_t plain;
};

struct mk_mc_dec {
    EVP_CIPHER_CTX *ctx;
    size_t chunk;
};

/* ---------------------------------------------------------------- keys */

static EVP_PKEY *mk_mc_pkey_private(const uint8_t priv[MK_MC_KEY_LEN])
{
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, MK_MC_KEY_LEN);
}

void mk_mc_pubkey_set(struct mk_mc_pubkey *p, const uint8_t pub[MK_MC_KEY_LEN])
{
    uint8_t digest[SHA256_DIGEST_LENGTH];

    memcpy(p->pub, pub, MK_MC_KEY_LEN);
    SHA256(pub, MK_MC_KEY_LEN, digest);
    memcpy(p->id, digest, MK_MC_ID_LEN);
}

int mk_mc_keypair_from_private(const uint8_t priv[MK_MC_KEY_LEN], struct mk_mc_keypair *k)
{
    EVP_PKEY *pkey = mk_mc_pkey_private(priv);
    uint8_t pub[MK_MC_KEY_LEN];
    size_t len = sizeof(pub);
    int ok;

    if (pkey == NULL)
        return -1;
    ok = EVP_PKEY_get_raw_public_key(pkey, pub, &len) == 1 && len == MK_MC_KEY_LEN;
    EVP_PKEY_free(pkey);
    if (!ok)
        return -1;
    if (k->priv != priv)
        memcpy(k->priv, priv, MK_MC_KEY_LEN);
    mk_mc_pubkey_set(&k->pub, pub);
    return 0;
}

int mk_mc_keypair_generate(struct mk_mc_keypair *k)
{
    uint8_t priv[MK_MC_KEY_LEN];
    int rc;

    if (RAND_bytes(priv, sizeof(priv)) != 1)
        return -1;
    rc = mk_mc_keypair_from_private(priv, k);
    OPENSSL_cleanse(priv, sizeof(priv));
    return rc;
}

void mk_mc_keypair_wipe(struct mk_mc_keypair *k)
{
    OPENSSL_cleanse(k, sizeof(*k));
}

/* The key that wraps a DEK for the recipient pub: HKDF of the X25519 secret
 * of priv and peer (the ephemeral key's private half and the recipient's
 * public key, or the other way round), salted with both public keys. */
/* The private key a reader opens message after message with, kept as
 * OpenSSL's object: making it again computes its public key each time
 * (a quarter of an imap process's work when it reads). */
static struct {
    uint8_t priv[MK_MC_KEY_LEN];
    EVP_PKEY *pkey;
} mk_mc_reader;

void mk_mc_forget(void)
{
    EVP_PKEY_free(mk_mc_reader.pkey);
    OPENSSL_cleanse(&mk_mc_reader, sizeof(mk_mc_reader));
}

static EVP_PKEY *mk_mc_reader_pkey(const uint8_t priv[MK_MC_KEY_LEN])
{
    if (mk_mc_reader.pkey == NULL
        || CRYPTO_memcmp(mk_mc_reader.priv, priv, MK_MC_KEY_LEN) != 0) {
        mk_mc_forget();
        if ((mk_mc_reader.pkey = mk_mc_pkey_private(priv)) != NULL)
            memcpy(mk_mc_reader.priv, priv, MK_MC_KEY_LEN);
    }
    return mk_mc_reader.pkey;
}

static int mk_mc_kek(const uint8_t priv[MK_MC_KEY_LEN], bool reader,
                     const uint8_t peer_pub[MK_MC_KEY_LEN], const uint8_t eph_pub[MK_MC_KEY_LEN],
                     const uint8_t pub[MK_MC_KEY_LEN], uint8_t kek[MK_MC_KEY_LEN])
{
    EVP_PKEY *mine = reader ? mk_mc_reader_pkey(priv) : mk_mc_pkey_private(priv), *peer;
    EVP_PKEY_CTX *pctx = NULL, *kctx = NULL;
    uint8_t secret[MK_MC_KEY_LEN], salt[2 * MK_MC_KEY_LEN], zero[MK_MC_KEY_LEN] = {0};
    size_t len = sizeof(secret), klen = MK_MC_KEY_LEN;
    int rc = -1;

    peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_pub, MK_MC_KEY_LEN);
    if (mine == NULL || peer == NULL)
        goto out;
    if ((pctx = EVP_PKEY_CTX_new(mine, NULL)) == NULL || EVP_PKEY_derive_init(pctx) != 1
        || EVP_PKEY_derive_set_peer(pctx, peer) != 1
        || EVP_PKEY_derive(pctx, secret, &len) != 1 || len != sizeof(secret)
        || CRYPTO_memcmp(secret, zero, sizeof(secret)) == 0)   /* a low-order point */
        goto out;
    memcpy(salt, eph_pub, MK_MC_KEY_LEN);
    memcpy(salt + MK_MC_KEY_LEN, pub, MK_MC_KEY_LEN);
    if ((kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL)) == NULL
        || EVP_PKEY_derive_init(kctx) != 1
        || EVP_PKEY_CTX_set_hkdf_md(kctx, EVP_sha256()) != 1
        || EVP_PKEY_CTX_set1_hkdf_salt(kctx, salt, sizeof(salt)) != 1
        || EVP_PKEY_CTX_set1_hkdf_key(kctx, secret, sizeof(secret)) != 1
        || EVP_PKEY_CTX_add1_hkdf_info(kctx, (const unsigned char *) MK_MC_WRAP_INFO,
                                       sizeof(MK_MC_WRAP_INFO) - 1) != 1
        || EVP_PKEY_derive(kctx, kek, &klen) != 1 || klen != MK_MC_KEY_LEN)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    EVP_PKEY_CTX_free(kctx);
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_free(peer);
    if (!reader)
        EVP_PKEY_free(mine);
    return rc;
}

/* AES-256-GCM of one buffer; decrypt: returns -1 when the tag is wrong. */
static int mk_mc_gcm(EVP_CIPHER_CTX *ctx, bool encrypt, const uint8_t *key, const uint8_t nonce[12],
                     const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                     uint8_t *out, uint8_t tag[MK_MC_TAG_LEN])
{
    int n = 0;

    if (EVP_CipherInit_ex(ctx, key != NULL ? EVP_aes_256_gcm() : NULL, NULL, key, nonce,
                          encrypt ? 1 : 0) != 1)
        return -1;
    if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &n, aad, (int) aad_len) != 1)
        return -1;
    if (len > 0 && (EVP_CipherUpdate(ctx, out, &n, in, (int) len) != 1 || (size_t) n != len))
        return -1;
    if (!encrypt && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, MK_MC_TAG_LEN, tag) != 1)
        return -1;
    if (EVP_CipherFinal_ex(ctx, out + len, &n) != 1)
        return -1;
    if (encrypt && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, MK_MC_TAG_LEN, tag) != 1)
        return -1;
    return 0;
}

static int mk_mc_wrap(const uint8_t eph_priv[MK_MC_KEY_LEN], const uint8_t eph_pub[MK_MC_KEY_LEN],
                      const struct mk_mc_recipient *r, const uint8_t dek[MK_MC_KEY_LEN],
                      struct mk_mc_slot *slot)
{
    static const uint8_t nonce[12];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t kek[MK_MC_KEY_LEN], aad[1 + MK_MC_ID_LEN];
    int rc = -1;

    slot->kind = (uint8_t) r->kind;
    memcpy(slot->id, r->key->id, MK_MC_ID_LEN);
    aad[0] = slot->kind;
    memcpy(aad + 1, slot->id, MK_MC_ID_LEN);
    if (ctx != NULL && mk_mc_kek(eph_priv, false, r->key->pub, eph_pub, r->key->pub, kek) == 0)
        rc = mk_mc_gcm(ctx, true, kek, nonce, aad, sizeof(aad), dek, MK_MC_KEY_LEN,
                       slot->wrapped, slot->wrapped + MK_MC_KEY_LEN);
    OPENSSL_cleanse(kek, sizeof(kek));
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int mk_mc_unwrap(const struct mk_mc_header *h, const struct mk_mc_keypair *k,
                 uint8_t dek[MK_MC_KEY_LEN])
{
    static const uint8_t nonce[12];
    EVP_CIPHER_CTX *ctx;
    uint8_t kek[MK_MC_KEY_LEN], aad[1 + MK_MC_ID_LEN], tag[MK_MC_TAG_LEN];
    int rc = -1;

    for (unsigned i = 0; i < h->nslots && rc != 0; i++) {
        const struct mk_mc_slot *s = &h->slots[i];

        if (memcmp(s->id, k->pub.id, MK_MC_ID_LEN) != 0)
            continue;
        if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
            return -1;
        aad[0] = s->kind;
        memcpy(aad + 1, s->id, MK_MC_ID_LEN);
        memcpy(tag, s->wrapped + MK_MC_KEY_LEN, MK_MC_TAG_LEN);
        if (mk_mc_kek(k->priv, true, h->eph, h->eph, k->pub.pub, kek) == 0)
            rc = mk_mc_gcm(ctx, false, kek, nonce, aad, sizeof(aad), s->wrapped, MK_MC_KEY_LEN,
                           dek, tag);
        OPENSSL_cleanse(kek, sizeof(kek));
        EVP_CIPHER_CTX_free(ctx);
    }
    if (rc != 0)
        OPENSSL_cleanse(dek, MK_MC_KEY_LEN);
    return rc;
}

int mk_mc_header_make(const uint8_t dek[MK_MC_KEY_LEN], unsigned chunk_shift,
                      const struct mk_mc_recipient *r, unsigned n, uint8_t *out, size_t *len)
{
    struct mk_mc_keypair eph;
    uint8_t *p = out;
    int rc = -1;

    if (n == 0 || n > MK_MC_MAX_SLOTS || chunk_shift < MK_MC_SHIFT_MIN
        || chunk_shift > MK_MC_SHIFT_MAX || mk_mc_keypair_generate(&eph) != 0)
        return -1;
    memcpy(p, MK_MC_MAGIC, MK_MC_MAGIC_LEN);
    p[8] = MK_MC_VERSION;
    p[9] = (uint8_t) chunk_shift;
    p[10] = (uint8_t) n;
    p[11] = 0;
    memcpy(p + 12, eph.pub.pub, MK_MC_KEY_LEN);
    p += MK_MC_FIXED_LEN;
    for (unsigned i = 0; i < n; i++) {
        struct mk_mc_slot slot;

        if (mk_mc_wrap(eph.priv, eph.pub.pub, &r[i], dek, &slot) != 0)
            goto out;
        *p++ = slot.kind;
        memcpy(p, slot.id, MK_MC_ID_LEN);
        p += MK_MC_ID_LEN;
        memcpy(p, slot.wrapped, sizeof(slot.wrapped));
        p += sizeof(slot.wrapped);
    }
    *len = (size_t) (p - out);
    rc = 0;
out:
    mk_mc_keypair_wipe(&eph);
    return rc;
}

/* -------------------------------------------------------------- header */

bool mk_mc_is_encrypted(const void *buf, size_t len)
{
    return len >= MK_MC_MAGIC_LEN && memcmp(buf, MK_MC_MAGIC, MK_MC_MAGIC_LEN) == 0;
}

int mk_mc_header_parse(const void *buf, size_t len, struct mk_mc_header *h, size_t *need,
                       const char **why)
{
    const uint8_t *p = buf;
    size_t total;

    if (len < 12) {
        if (len >= MK_MC_MAGIC_LEN && !mk_mc_is_encrypted(buf, len)) {
            *why = "not a mailkeep_crypt message";
            return -1;
        }
        *need = 12;
        return 0;
    }
    if (!mk_mc_is_encrypted(buf, len)) {
        *why = "not a mailkeep_crypt message";
        return -1;
    }
    if (p[8] != MK_MC_VERSION) {
        *why = "unknown format version";
        return -1;
    }
    if (p[9] < MK_MC_SHIFT_MIN || p[9] > MK_MC_SHIFT_MAX || p[11] != 0) {
        *why = "bad chunk size";
        return -1;
    }
    if (p[10] == 0 || p[10] > MK_MC_MAX_SLOTS) {
        *why = "bad number of key slots";
        return -1;
    }
    total = MK_MC_FIXED_LEN + (size_t) p[10] * MK_MC_SLOT_LEN;
    if (len < total) {
        *need = total;
        return 0;
    }
    memset(h, 0, sizeof(*h));
    h->chunk_shift = p[9];
    h->nslots = p[10];
    h->len = total;
    memcpy(h->eph, p + 12, MK_MC_KEY_LEN);
    p += MK_MC_FIXED_LEN;
    for (unsigned i = 0; i < h->nslots; i++) {
        struct mk_mc_slot *s = &h->slots[i];

        s->kind = *p++;
        if (s->kind != MK_MC_SLOT_USER && s->kind != MK_MC_SLOT_ESCROW) {
            *why = "bad key slot";
            return -1;
        }
        memcpy(s->id, p, MK_MC_ID_LEN);
        p += MK_MC_ID_LEN;
        memcpy(s->wrapped, p, sizeof(s->wrapped));
        p += sizeof(s->wrapped);
    }
    return 1;
}

int mk_mc_plain_size(const struct mk_mc_header *h, uint64_t cipher_size, uint64_t *plain)
{
    uint64_t sealed = ((uint64_t) 1 << h->chunk_shift) + MK_MC_TAG_LEN, body, n, rest;

    if (cipher_size < h->len + MK_MC_TAG_LEN)
        return -1;
    body = cipher_size - h->len;
    n = body / sealed;
    rest = body % sealed;
    if (rest != 0 && rest < MK_MC_TAG_LEN)
        return -1;
    if (rest != 0)
        n++;
    *plain = body - n * MK_MC_TAG_LEN;
    return 0;
}

/* ---------------------------------------------------------- encryption */

struct mk_mc_enc *mk_mc_enc_new(const struct mk_mc_recipient *r, unsigned n, unsigned chunk_shift)
{
    struct mk_mc_enc *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return NULL;
    e->chunk = (size_t) 1 << (chunk_shift >= MK_MC_SHIFT_MIN && chunk_shift <= MK_MC_SHIFT_MAX
                              ? chunk_shift : MK_MC_SHIFT_DEFAULT);
    if ((e->ctx = EVP_CIPHER_CTX_new()) == NULL || (e->buf = malloc(e->chunk)) == NULL
        || (e->out = malloc(e->chunk + MK_MC_TAG_LEN)) == NULL
        || RAND_bytes(e->dek, sizeof(e->dek)) != 1
        || mk_mc_header_make(e->dek, chunk_shift >= MK_MC_SHIFT_MIN
                                         && chunk_shift <= MK_MC_SHIFT_MAX
                                     ? chunk_shift : MK_MC_SHIFT_DEFAULT,
                             r, n, e->header, &e->header_len) != 0
        || EVP_EncryptInit_ex(e->ctx, EVP_aes_256_gcm(), NULL, e->dek, NULL) != 1) {
        mk_mc_enc_free(e);
        return NULL;
    }
    return e;
}

static void mk_mc_nonce(uint64_t index, bool last, uint8_t nonce[12])
{
    for (int i = 7; i >= 0; i--) {
        nonce[i] = (uint8_t) index;
        index >>= 8;
    }
    nonce[8] = nonce[9] = nonce[10] = 0;
    nonce[11] = last ? 1 : 0;
}

/* Seal the buffered chunk and hand it on. */
static int mk_mc_enc_flush(struct mk_mc_enc *e, bool last, mk_mc_emit_fn *emit, void *ctx)
{
    uint8_t nonce[12];

    if (!e->header_sent) {
        if (emit(ctx, e->header, e->header_len) != 0)
            return -1;
        e->header_sent = true;
    }
    mk_mc_nonce(e->index, last, nonce);
    if (mk_mc_gcm(e->ctx, true, NULL, nonce, NULL, 0, e->buf, e->used, e->out,
                  e->out + e->used) != 0)
        return -1;
    if (emit(ctx, e->out, e->used + MK_MC_TAG_LEN) != 0)
        return -1;
    e->index++;
    e->used = 0;
    return 0;
}

int mk_mc_enc_write(struct mk_mc_enc *e, const void *data, size_t len, mk_mc_emit_fn *emit,
                    void *ctx)
{
    const uint8_t *p = data;

    e->plain += len;
    while (len > 0) {
        size_t n;

        /* A full chunk waits for the next byte: only then is it known not to be the last. */
        if (e->used == e->chunk && mk_mc_enc_flush(e, false, emit, ctx) != 0)
            return -1;
        n = e->chunk - e->used < len ? e->chunk - e->used : len;
        memcpy(e->buf + e->used, p, n);
        e->used += n;
        p += n;
        len -= n;
    }
    return 0;
}

int mk_mc_enc_finish(struct mk_mc_enc *e, mk_mc_emit_fn *emit, void *ctx)
{
    return mk_mc_enc_flush(e, true, emit, ctx);
}

const uint8_t *mk_mc_enc_header(const struct mk_mc_enc *e, size_t *len)
{
    *len = e->header_len;
    return e->header;
}

const uint8_t *mk_mc_enc_dek(const struct mk_mc_enc *e)
{
    return e->dek;
}

uint64_t mk_mc_enc_plain_size(const struct mk_mc_enc *e)
{
    return e->plain;
}

void mk_mc_enc_free(struct mk_mc_enc *e)
{
    if (e == NULL)
        return;
    EVP_CIPHER_CTX_free(e->ctx);
    if (e->buf != NULL) {
        OPENSSL_cleanse(e->buf, e->chunk);
        free(e->buf);
    }
    if (e->out != NULL) {
        OPENSSL_cleanse(e->out, e->chunk + MK_MC_TAG_LEN);
        free(e->out);
    }
    OPENSSL_cleanse(e->dek, sizeof(e->dek));
    free(e);
}

/* ---------------------------------------------------------- decryption */

struct mk_mc_dec *mk_mc_dec_new(const struct mk_mc_header *h, const uint8_t dek[MK_MC_KEY_LEN])
{
    struct mk_mc_dec *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->chunk = (size_t) 1 << h->chunk_shift;
    if ((d->ctx = EVP_CIPHER_CTX_new()) == NULL
        || EVP_DecryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, dek, NULL) != 1) {
        mk_mc_dec_free(d);
        return NULL;
    }
    return d;
}

ssize_t mk_mc_dec_chunk(struct mk_mc_dec *d, uint64_t index, const void *in, size_t len,
                        void *out, bool *last)
{
    uint8_t nonce[12], tag[MK_MC_TAG_LEN];
    size_t n;

    if (len < MK_MC_TAG_LEN || len > d->chunk + MK_MC_TAG_LEN)
        return -1;
    n = len - MK_MC_TAG_LEN;
    memcpy(tag, (const uint8_t *) in + n, MK_MC_TAG_LEN);
    /* Only a full chunk may be followed by another. */
    if (n == d->chunk) {
        mk_mc_nonce(index, false, nonce);
        if (mk_mc_gcm(d->ctx, false, NULL, nonce, NULL, 0, in, n, out, tag) == 0) {
            *last = false;
            return (ssize_t) n;
        }
    }
    mk_mc_nonce(index, true, nonce);
    if (mk_mc_gcm(d->ctx, false, NULL, nonce, NULL, 0, in, n, out, tag) == 0) {
        *last = true;
        return (ssize_t) n;
    }
    OPENSSL_cleanse(out, n);
    return -1;
}

void mk_mc_dec_free(struct mk_mc_dec *d)
{
    if (d == NULL)
        return;
    EVP_CIPHER_CTX_free(d->ctx);
    free(d);
}

int mk_mc_decrypt_buf(const void *buf, size_t len, const struct mk_mc_keypair *k,
                      unsigned char **out, size_t *out_len, const char **why)
{
    struct mk_mc_header h;
    struct mk_mc_dec *d;
    uint8_t dek[MK_MC_KEY_LEN];
    const uint8_t *p = buf;
    uint64_t plain, index = 0;
    size_t need, off, sealed, done = 0;
    bool last = false;
    int rc;

    *out = NULL;
    if ((rc = mk_mc_header_parse(buf, len, &h, &need, why)) <= 0) {
        if (rc == 0)
            *why = "truncated header";
        return -1;
    }
    if (mk_mc_plain_size(&h, len, &plain) != 0) {
        *why = "truncated or damaged: no valid message has this size";
        return -1;
    }
    if (mk_mc_unwrap(&h, k, dek) != 0) {
        *why = "no key slot opens with this key";
        return -1;
    }
    d = mk_mc_dec_new(&h, dek);
    OPENSSL_cleanse(dek, sizeof(dek));
    if (d == NULL || (*out = malloc(plain + 1)) == NULL) {
        mk_mc_dec_free(d);
        *why = "out of memory";
        return -1;
    }
    sealed = ((size_t) 1 << h.chunk_shift) + MK_MC_TAG_LEN;
    for (off = h.len; off < len && !last; index++) {
        size_t n = len - off < sealed ? len - off : sealed;
        ssize_t got = mk_mc_dec_chunk(d, index, p + off, n, *out + done, &last);

        if (got < 0) {
            *why = "a chunk does not authenticate (damaged or altered)";
            goto fail;
        }
        done += (size_t) got;
        off += n;
    }
    if (!last || off != len) {
        *why = last ? "data after the final chunk" : "the final chunk is missing (truncated)";
        goto fail;
    }
    mk_mc_dec_free(d);
    *out_len = done;
    return 0;
fail:
    mk_mc_dec_free(d);
    OPENSSL_cleanse(*out, plain);
    free(*out);
    *out = NULL;
    return -1;
}
