/* Unit tests for ar_keys and ar_store: the archive's keys and object store. */
#include "config.h"

#include <dirent.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "ar_keys.h"
#include "ar_store.h"
#include "mk_test.h"
#include "mk_util.h"

static char tmpdir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *path_of(const char *name)
{
    return mk_xasprintf("%s/%s", tmpdir, name);
}

/* Some text that compresses as mail does: words, lines, a little noise. */
static char *mail_text(size_t len, unsigned seed)
{
    static const char *const words[] = {"the", "archive", "message", "from", "to", "Subject:",
                                        "meeting", "report", "2024", "please", "find",
                                        "attached", "regards", "\xe6\x9c\x83\xe8\xad\xb0",
                                        "invoice", "\n", "\r\n", "=?UTF-8?B?5pyD6K2w?="};
    char *text = mk_xmalloc(len + 1);
    size_t n = 0;

    srand(seed);
    while (n < len) {
        const char *w = words[(size_t) rand() % MK_ARRAY_LEN(words)];
        char noise[16];
        size_t wl;

        if (rand() % 7 == 0) {
            snprintf(noise, sizeof(noise), "%x", (unsigned) rand());
            w = noise;
        }
        wl = strlen(w);
        for (size_t i = 0; i < wl && n < len; i++)
            text[n++] = w[i];
        if (n < len)
            text[n++] = ' ';
    }
    text[len] = '\0';
    return text;
}

static char *object_path(const char *dir, const unsigned char hash[32])
{
    char hex[65];

    ar_hex(hash, hex);
    return mk_xasprintf("%s/objects/%.2s/%s", dir, hex, hex);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void flip_byte(const char *path, long offset)
{
    FILE *fp;
    int c;

    chmod(path, 0600);
    fp = fopen(path, "r+b");
    if (fp == NULL)
        return;
    fseek(fp, offset, offset < 0 ? SEEK_END : SEEK_SET);
    c = fgetc(fp);
    fseek(fp, -1, SEEK_CUR);
    fputc(c ^ 0x20, fp);
    fclose(fp);
}

/* The object key, derived here by HMAC by hand (RFC 5869), not through the store. */
static void object_key(const unsigned char master[32], const unsigned char hash[32],
                       unsigned char key[32])
{
    static const char info_text[] = "mailkeep archive object v1";
    unsigned char salt[32] = {0}, prk[32], info[sizeof(info_text) - 1 + 32 + 1];
    size_t n;

    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, salt, sizeof(salt), master, 32, prk,
              sizeof(prk), &n);
    memcpy(info, info_text, sizeof(info_text) - 1);
    memcpy(info + sizeof(info_text) - 1, hash, 32);
    info[sizeof(info) - 1] = 1;
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, prk, sizeof(prk), info, sizeof(info), key, 32,
              &n);
}

static bool gcm(int enc, const unsigned char key[32], const unsigned char *nonce,
                const unsigned char hash[32], unsigned char *buf, size_t len,
                unsigned char tag[16])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char aad[37] = "MKAO\x01";
    int outl;
    bool ok;

    memcpy(aad + 5, hash, 32);
    ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1
        && EVP_CipherUpdate(ctx, NULL, &outl, aad, sizeof(aad)) == 1
        && EVP_CipherUpdate(ctx, buf, &outl, buf, (int) len) == 1
        && (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1)
        && EVP_CipherFinal_ex(ctx, buf + len, &outl) == 1
        && (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1);
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* Decrypt an object file by the documented format alone. */
static char *open_by_hand(const char *path, const unsigned char master[32],
                          const unsigned char hash[32], size_t *len)
{
    unsigned char key[32];
    size_t flen, clen;
    char *error = NULL, *file = mk_file_read(path, &flen, NULL, &error);
    unsigned char *f = (unsigned char *) file;
    unsigned long long size;
    char *out;

    if (file == NULL || flen < 33 || memcmp(f, "MKAO\x01", 5) != 0) {
        free(error);
        free(file);
        return NULL;
    }
    clen = flen - 33;
    object_key(master, hash, key);
    if (!gcm(0, key, f + 5, hash, f + 17, clen, f + 17 + clen)) {
        free(file);
        return NULL;
    }
    size = ZSTD_getFrameContentSize(f + 17, clen);
    out = mk_xmalloc((size_t) size + 1);
    *len = ZSTD_decompress(out, (size_t) size, f + 17, clen);
    free(file);
    if (ZSTD_isError(*len)) {
        free(out);
        return NULL;
    }
    return out;
}

/* Write an object file by hand: the zstd frame given, sealed under name. */
static void seal_by_hand(const char *path, const unsigned char master[32],
                         const unsigned char hash[32], const void *frame, size_t flen)
{
    unsigned char key[32], *f = mk_xmalloc(17 + flen + 16);
    FILE *fp;

    memcpy(f, "MKAO\x01", 5);
    memset(f + 5, 7, 12);
    memcpy(f + 17, frame, flen);
    object_key(master, hash, key);
    gcm(1, key, f + 5, hash, f + 17, flen, f + 17 + flen);
    unlink(path);
    if ((fp = fopen(path, "wb")) != NULL) {
        fwrite(f, 1, 17 + flen + 16, fp);
        fclose(fp);
    }
    free(f);
}

static void test_keys(void)
{
    char *dir = path_of("keys"), *error = NULL, *p;
    struct ar_keys k, k2;
    struct stat st;
    FILE *fp;

    test_begin("keys: create makes the three files with their modes");
    test_assert_int(ar_keys_create(dir, &error), 0);
    test_assert(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    p = mk_xasprintf("%s/archive.key", dir);
    test_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32);
    free(p);
    p = mk_xasprintf("%s/signing.key", dir);
    test_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    free(p);
    p = mk_xasprintf("%s/signing.pub", dir);
    test_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644);
    free(p);
    test_end();

    test_begin("keys: create refuses to overwrite");
    test_assert_int(ar_keys_create(dir, &error), -1);
    test_assert(error && strstr(error, "archive.key: already exists"));
    free(error);
    test_end();

    test_begin("keys: load with and without the private key");
    test_assert_int(ar_keys_load(dir, &k, true, &error), 0);
    test_assert(k.sign != NULL && k.verify != NULL);
    test_assert_int(ar_keys_load(dir, &k2, false, &error), 0);
    test_assert(k2.sign == NULL && k2.verify != NULL);
    test_assert(memcmp(k.master, k2.master, 32) == 0);
    ar_keys_free(&k);
    ar_keys_free(&k2);
    test_end();

    test_begin("keys: a group- or world-readable key is refused");
    p = mk_xasprintf("%s/archive.key", dir);
    chmod(p, 0644);
    test_assert_int(ar_keys_load(dir, &k, false, &error), -1);
    test_assert(error && strstr(error, "archive.key: mode 0644") && strstr(error, "chmod 600"));
    test_assert(k.sign == NULL && k.verify == NULL);
    free(error);
    chmod(p, 0600);
    free(p);
    p = mk_xasprintf("%s/signing.key", dir);
    chmod(p, 0640);
    test_assert_int(ar_keys_load(dir, &k, true, &error), -1);
    test_assert(error && strstr(error, "signing.key: mode 0640"));
    free(error);
    test_assert_int(ar_keys_load(dir, &k, false, &error), 0);     /* not read then */
    ar_keys_free(&k);
    chmod(p, 0600);
    free(p);
    p = mk_xasprintf("%s/signing.pub", dir);
    chmod(p, 0666);
    test_assert_int(ar_keys_load(dir, &k, false, &error), -1);
    test_assert(error && strstr(error, "signing.pub: mode 0666"));
    free(error);
    chmod(p, 0644);
    free(p);
    test_end();

    test_begin("keys: a master key of the wrong size is refused");
    p = mk_xasprintf("%s/archive.key", dir);
    fp = fopen(p, "ab");
    fputc('x', fp);
    fclose(fp);
    test_assert_int(ar_keys_load(dir, &k, false, &error), -1);
    test_assert(error && strstr(error, "33 bytes"));
    free(error);
    test_assert_int(truncate(p, 32), 0);
    free(p);
    test_end();

    test_begin("keys: a private key that does not match signing.pub is refused");
    {
        char *other = path_of("keys2"), *from, *to, *pem;
        size_t len;

        test_assert_int(ar_keys_create(other, &error), 0);
        from = mk_xasprintf("%s/signing.key", other);
        to = mk_xasprintf("%s/signing.key", dir);
        pem = mk_file_read(from, &len, NULL, &error);
        chmod(to, 0600);
        fp = fopen(to, "wb");
        fwrite(pem, 1, len, fp);
        fclose(fp);
        test_assert_int(ar_keys_load(dir, &k, true, &error), -1);
        test_assert(error && strstr(error, "does not match"));
        free(error);
        free(pem);
        free(from);
        free(to);
        free(other);
    }
    test_end();
    free(dir);
}

static void test_hex(void)
{
    unsigned char h[32], back[32];
    char hex[65];

    test_begin("hex: SHA-256, hex and back");
    ar_sha256("abc", 3, h);
    ar_hex(h, hex);
    test_assert_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    test_assert_int(ar_unhex(hex, back), 0);
    test_assert(memcmp(h, back, 32) == 0);
    test_assert_int(ar_unhex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                             back), 0);
    test_assert(memcmp(h, back, 32) == 0);
    hex[63] = '\0';
    test_assert_int(ar_unhex(hex, back), -1);
    test_assert_int(ar_unhex("xa7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                             back), -1);
    test_assert_int(ar_unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
                             back), -1);
    test_end();
}

static int count_cb(void *arg, const unsigned char hash[32])
{
    (void) hash;
    (*(int *) arg)++;
    return 0;
}

static int stop_cb(void *arg, const unsigned char hash[32])
{
    (void) arg, (void) hash;
    return 7;
}

static void test_store(void)
{
    unsigned char master[32], h1[32], h2[32], h3[32], h4[32], hx[32];
    char *dir = path_of("store"), *error = NULL, *data, *big, *p, *q;
    struct ar_store *s;
    size_t len;
    bool existed;
    int n;

    memset(master, 0x5a, sizeof(master));
    s = ar_store_open(dir, master, &error);

    test_begin("store: put and get a message");
    test_assert(s != NULL);
    test_assert_int(ar_store_put(s, "Subject: hi\r\n\r\nhello\r\n", 22, h1, &existed, &error), 0);
    test_assert(!existed);
    ar_sha256("Subject: hi\r\n\r\nhello\r\n", 22, hx);
    test_assert(memcmp(h1, hx, 32) == 0);
    test_assert_int(ar_store_sync(s, &error), 0);
    test_assert_int(ar_store_get(s, h1, &data, &len, &error), AR_OK);
    test_assert_int(len, 22);
    test_assert_str(data, "Subject: hi\r\n\r\nhello\r\n");
    free(data);
    test_assert_int(ar_store_check(s, h1, &error), AR_OK);
    test_end();

    test_begin("store: an empty message");
    test_assert_int(ar_store_put(s, "", 0, h2, &existed, &error), 0);
    test_assert_int(ar_store_get(s, h2, &data, &len, &error), AR_OK);
    test_assert(len == 0 && data != NULL && data[0] == '\0');
    free(data);
    test_end();

    test_begin("store: a 5 MB message");
    big = mail_text(5 << 20, 1);
    test_assert_int(ar_store_put(s, big, 5 << 20, h3, &existed, &error), 0);
    test_assert_int(ar_store_get(s, h3, &data, &len, &error), AR_OK);
    test_assert(len == (size_t) 5 << 20 && memcmp(data, big, len) == 0);
    free(data);
    test_assert_int(ar_store_sync(s, &error), 0);
    test_assert_int(ar_store_get(s, h3, &data, &len, &error), AR_OK);
    test_assert(len == (size_t) 5 << 20 && memcmp(data, big, len) == 0);
    free(data);
    {
        struct stat st;

        p = object_path(dir, h3);
        test_assert(stat(p, &st) == 0 && st.st_size < (5 << 20) / 2);  /* compressed */
        test_assert((st.st_mode & 0777) == 0400);
        free(p);
    }
    test_end();

    test_begin("store: the file format is as documented");
    p = object_path(dir, h3);
    data = open_by_hand(p, master, h3, &len);
    test_assert(data != NULL && len == (size_t) 5 << 20 && memcmp(data, big, len) == 0);
    free(data);
    free(p);
    p = object_path(dir, h1);
    data = open_by_hand(p, master, h1, &len);
    test_assert(data != NULL && len == 22 && memcmp(data, "Subject: hi", 11) == 0);
    free(data);
    free(p);
    test_end();

    test_begin("store: the same bytes are stored once");
    test_assert_int(ar_store_put(s, big, 5 << 20, h4, &existed, &error), 0);
    test_assert(existed && memcmp(h3, h4, 32) == 0);
    test_assert_int(ar_store_put(s, "twice", 5, h4, &existed, &error), 0);
    test_assert(!existed);
    test_assert_int(ar_store_put(s, "twice", 5, h4, &existed, &error), 0);
    test_assert(existed);               /* pending, not yet synced */
    test_assert_int(ar_store_sync(s, &error), 0);
    test_assert_int(ar_store_put(s, "twice", 5, h4, &existed, &error), 0);
    test_assert(existed);
    p = object_path(dir, h3);
    *strrchr(p, '/') = '\0';
    test_assert_int(count_files(p), 1);
    free(p);
    test_end();

    test_begin("store: a flipped byte is corrupt");
    p = object_path(dir, h3);
    flip_byte(p, 1000);
    test_assert_int(ar_store_get(s, h3, &data, &len, &error), AR_CORRUPT);
    test_assert(data == NULL && error && strstr(error, "authentication failed"));
    free(error);
    flip_byte(p, 1000);
    test_assert_int(ar_store_check(s, h3, &error), AR_OK);
    flip_byte(p, -1);                   /* the tag */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    free(error);
    flip_byte(p, -1);
    flip_byte(p, 0);                    /* the magic */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    test_assert(error && strstr(error, "bad magic"));
    free(error);
    flip_byte(p, 0);
    flip_byte(p, 10);                   /* the nonce */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    free(error);
    flip_byte(p, 10);
    test_assert_int(ar_store_check(s, h3, &error), AR_OK);
    test_assert_int(truncate(p, 20), 0);
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    test_assert(error && strstr(error, "not an object file"));
    free(error);
    free(p);
    test_end();

    test_begin("store: an object under another hash's name fails");
    p = object_path(dir, h1);
    q = object_path(dir, h3);
    unlink(q);
    test_assert_int(rename(p, q), 0);
    test_assert_int(ar_store_get(s, h3, &data, &len, &error), AR_CORRUPT);
    free(error);
    test_assert_int(ar_store_check(s, h1, &error), AR_MISSING);
    test_assert(error && strstr(error, "missing"));
    free(error);
    free(p);
    free(q);
    test_end();

    test_begin("store: a sealed object whose content differs is a mismatch");
    {
        char frame[256];
        size_t flen = ZSTD_compress(frame, sizeof(frame), "not this", 8, 3);

        p = object_path(dir, h1);
        seal_by_hand(p, master, h1, frame, flen);
        test_assert_int(ar_store_get(s, h1, &data, &len, &error), AR_MISMATCH);
        test_assert(error && strstr(error, "does not match its name"));
        free(error);
        free(p);
    }
    test_end();

    test_begin("store: a frame without its size is read in steps");
    {
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        size_t cap = ZSTD_compressBound(300000), flen;
        char *frame = mk_xmalloc(cap), *text = mail_text(300000, 2);
        ZSTD_inBuffer in = {text, 300000, 0};
        ZSTD_outBuffer out = {frame, cap, 0};

        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
        ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
        flen = out.pos;
        test_assert(ZSTD_getFrameContentSize(frame, flen) == ZSTD_CONTENTSIZE_UNKNOWN);
        ar_sha256(text, 300000, hx);
        p = object_path(dir, hx);
        *strrchr(p, '/') = '\0';
        mkdir(p, 0700);
        p[strlen(p)] = '/';
        seal_by_hand(p, master, hx, frame, flen);
        test_assert_int(ar_store_get(s, hx, &data, &len, &error), AR_OK);
        test_assert(len == 300000 && memcmp(data, text, len) == 0);
        free(data);
        ar_store_remove(s, hx, &error);
        free(p);
        free(frame);
        free(text);
        ZSTD_freeCCtx(cctx);
    }
    test_end();

    test_begin("store: a frame claiming more than 1 GiB is refused");
    {
        /* magic, single segment with an 8-byte size of 2 GiB, one empty raw block */
        static const unsigned char frame[] = {0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0x80, 0,
                                              0, 0, 0, 0x01, 0, 0};

        p = object_path(dir, h1);
        seal_by_hand(p, master, h1, frame, sizeof(frame));
        test_assert_int(ar_store_check(s, h1, &error), AR_CORRUPT);
        test_assert(error && strstr(error, "not a valid zstd frame"));
        free(error);
        free(p);
    }
    test_end();

    test_begin("store: a pending object is readable, in place only after sync");
    test_assert_int(ar_store_put(s, "pending", 7, hx, &existed, &error), 0);
    p = object_path(dir, hx);
    test_assert(access(p, F_OK) != 0);
    test_assert_int(ar_store_get(s, hx, &data, &len, &error), AR_OK);
    test_assert(len == 7 && memcmp(data, "pending", 7) == 0);
    free(data);
    test_assert_int(ar_store_sync(s, &error), 0);
    test_assert(access(p, F_OK) == 0);
    *strrchr(p, '/') = '\0';
    test_assert_int(count_files(p), 1);   /* no temporary file left */
    free(p);
    test_assert_int(ar_store_put(s, "dropped", 7, hx, &existed, &error), 0);
    test_assert_int(ar_store_put(s, "removed", 7, h4, &existed, &error), 0);
    test_assert_int(ar_store_remove(s, h4, &error), 0);
    test_assert_int(ar_store_check(s, h4, &error), AR_MISSING);
    free(error);
    ar_store_close(s);                  /* "dropped" was never synced */
    s = ar_store_open(dir, master, &error);
    test_assert_int(ar_store_check(s, hx, &error), AR_MISSING);
    free(error);
    p = object_path(dir, hx);
    *strrchr(p, '/') = '\0';
    test_assert(count_files(p) <= 0);
    free(p);
    test_end();

    test_begin("store: a missing object; remove");
    memset(hx, 0xab, 32);
    test_assert_int(ar_store_get(s, hx, &data, &len, &error), AR_MISSING);
    free(error);
    test_assert_int(ar_store_remove(s, hx, &error), -1);
    test_assert(error && strstr(error, "no such object"));
    free(error);
    test_assert_int(ar_store_remove(s, h2, &error), 0);
    test_assert_int(ar_store_check(s, h2, &error), AR_MISSING);
    free(error);
    test_assert_int(ar_store_sync(s, &error), 0);
    test_end();

    test_begin("store: an object larger than the limit is refused");
    test_assert_int(ar_store_put(s, big, AR_STORE_MAX_OBJECT + 1, hx, &existed, &error), -1);
    test_assert(error && strstr(error, "larger than the limit"));
    free(error);
    test_end();

    test_begin("store: walk finds each object, not temporary or foreign files");
    ar_store_close(s);
    remove_tree(dir);
    s = ar_store_open(dir, master, &error);
    for (int i = 0; i < 40; i++) {
        char msg[32];

        snprintf(msg, sizeof(msg), "message %d", i);
        ar_store_put(s, msg, strlen(msg), hx, &existed, &error);
    }
    ar_store_put(s, "message 7", 9, hx, &existed, &error);
    test_assert(existed);
    n = 0;
    test_assert_int(ar_store_walk(s, count_cb, &n, &error), 0);
    test_assert_int(n, 0);              /* pending */
    test_assert_int(ar_store_sync(s, &error), 0);
    p = object_path(dir, hx);
    q = mk_xstrdup(p);
    strcpy(strrchr(q, '/') + 1, ".tmp-1-1-abcd");
    fclose(fopen(q, "w"));
    strcpy(strrchr(q, '/') + 1, "README");
    fclose(fopen(q, "w"));
    n = 0;
    test_assert_int(ar_store_walk(s, count_cb, &n, &error), 0);
    test_assert_int(n, 40);
    test_assert_int(ar_store_walk(s, stop_cb, NULL, &error), 7);
    free(p);
    free(q);
    test_end();

    ar_store_close(s);
    free(big);
    free(dir);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mk-ar-store-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_keys();
    test_hex();
    test_store();
    remove_tree(tmpdir);
    return test_done();
}
