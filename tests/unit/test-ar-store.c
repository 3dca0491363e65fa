/* Unit tests for ar_keys and ar_store: the archive's keys and object store. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long) st.st_size : -1;
}

/* The packs, and the last of them (allocated), by name. */
static int count_packs(const char *dir, char **last)
{
    char *packs = mk_xasprintf("%s/objects/packs", dir);
    DIR *d = opendir(packs);
    char best[64] = "";
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "pack-", 5) == 0 && strlen(e->d_name) == 13) {
            n++;
            if (strcmp(e->d_name, best) > 0)
                snprintf(best, sizeof(best), "%s", e->d_name);
        }
    if (d != NULL)
        closedir(d);
    if (last != NULL)
        *last = mk_xasprintf("%s/%s", packs, best);
    free(packs);
    return n;
}

static void flip_byte(const char *path, uint64_t offset)
{
    unsigned char c;
    int fd = open(path, O_RDWR);

    if (fd < 0)
        return;
    if (pread(fd, &c, 1, (off_t) offset) == 1) {
        c ^= 0x20;
        if (pwrite(fd, &c, 1, (off_t) offset) != 1)
            perror("pwrite");
    }
    close(fd);
}

static unsigned char *read_at(const char *path, uint64_t offset, size_t len)
{
    unsigned char *buf = mk_xmalloc(len ? len : 1);
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? pread(fd, buf, len, (off_t) offset) : -1;

    if (fd >= 0)
        close(fd);
    if (n != (ssize_t) len) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Where an object's image is: its pack, offset and length, through ar_store_locate(). */
struct image {
    char *pack;
    uint64_t offset, length;
};

static bool locate(struct ar_store *s, const unsigned char hash[32], struct image *im)
{
    char *error = NULL;
    int rc = ar_store_locate(s, hash, &im->pack, &im->offset, &im->length, &error);

    free(error);
    return rc == 1;
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

/* Decrypt an object's image, read from its pack, by the documented format alone. */
static char *open_by_hand(const struct image *im, const unsigned char master[32],
                          const unsigned char hash[32], size_t *len)
{
    unsigned char key[32], *f = read_at(im->pack, im->offset, (size_t) im->length);
    size_t flen = (size_t) im->length, clen;
    unsigned long long size;
    char *out;

    if (f == NULL || flen < 33 || memcmp(f, "MKAO\x01", 5) != 0) {
        free(f);
        return NULL;
    }
    clen = flen - 33;
    object_key(master, hash, key);
    if (!gcm(0, key, f + 5, hash, f + 17, clen, f + 17 + clen)) {
        free(f);
        return NULL;
    }
    size = ZSTD_getFrameContentSize(f + 17, clen);
    out = mk_xmalloc((size_t) size + 1);
    *len = ZSTD_decompress(out, (size_t) size, f + 17, clen);
    free(f);
    if (ZSTD_isError(*len)) {
        free(out);
        return NULL;
    }
    return out;
}

/* An image made by hand: the zstd frame given, sealed under hash. */
static unsigned char *seal_by_hand(const unsigned char master[32], const unsigned char hash[32],
                                   const void *frame, size_t flen, size_t *len)
{
    unsigned char key[32], *f = mk_xmalloc(17 + flen + 16);

    memcpy(f, "MKAO\x01", 5);
    memset(f + 5, 7, 12);
    memcpy(f + 17, frame, flen);
    object_key(master, hash, key);
    gcm(1, key, f + 5, hash, f + 17, flen, f + 17 + flen);
    *len = 17 + flen + 16;
    return f;
}

/* Append a record to a pack by hand, as the documented format says; cut bytes short. */
static void append_record(const char *pack, const unsigned char hash[32],
                          const unsigned char *image, size_t len, size_t cut)
{
    unsigned char head[48] = "MKAR\x01";
    FILE *fp = fopen(pack, "ab");

    memcpy(head + 8, hash, 32);
    for (int i = 0; i < 8; i++)
        head[40 + i] = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
    if (fp == NULL)
        return;
    if (cut < len) {
        fwrite(head, 1, sizeof(head), fp);
        fwrite(image, 1, len - cut, fp);
    } else {
        fwrite(head, 1, sizeof(head) - (cut - len), fp);
    }
    fclose(fp);
}

/* Seal text by hand under the hash name and append its record to the last pack. */
static void append_object(const char *dir, const unsigned char master[32],
                          const unsigned char name[32], const char *text, size_t cut)
{
    size_t cap = ZSTD_compressBound(strlen(text)), flen, ilen;
    char *frame = mk_xmalloc(cap), *pack;
    unsigned char *image;

    flen = ZSTD_compress(frame, cap, text, strlen(text), 3);
    image = seal_by_hand(master, name, frame, flen, &ilen);
    count_packs(dir, &pack);
    append_record(pack, name, image, ilen, cut);
    free(pack);
    free(image);
    free(frame);
}

static struct ar_store *reopen(struct ar_store *s, const char *dir,
                               const unsigned char master[32], char **note)
{
    char *error = NULL;

    ar_store_close(s);
    s = ar_store_open(dir, master, true, &error);
    if (s == NULL) {
        printf("  reopen: %s\n", error);
        free(error);
        exit(2);
    }
    *note = ar_store_take_note(s);
    return s;
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

struct seek {
    const unsigned char *hash;
    int seen, total;
};

static int seek_cb(void *arg, const unsigned char hash[32])
{
    struct seek *k = arg;

    k->total++;
    k->seen += memcmp(hash, k->hash, 32) == 0;
    return 0;
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
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

static void test_store(void)
{
    unsigned char master[32], h1[32], h2[32], h3[32], h4[32], hx[32], hy[32];
    char *dir = path_of("store"), *error = NULL, *data, *big, *p, *note;
    struct ar_store *s, *r;
    struct image im, im2;
    struct stat st;
    size_t len;
    bool existed;
    int n;

    memset(master, 0x5a, sizeof(master));
    s = ar_store_open(dir, master, true, &error);

    test_begin("store: put and get a message");
    test_assert(s != NULL);
    test_assert(ar_store_take_note(s) == NULL);
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
    test_assert(locate(s, h3, &im) && im.length < (5 << 20) / 2);     /* compressed */
    test_assert(stat(im.pack, &st) == 0 && (st.st_mode & 0777) == 0600);
    free(im.pack);
    p = mk_xasprintf("%s/objects/packs", dir);
    test_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0700);
    free(p);
    test_end();

    test_begin("store: the record and image formats are as documented");
    {
        unsigned char *head;

        test_assert(locate(s, h3, &im));
        head = read_at(im.pack, im.offset - 48, 48);
        test_assert(head != NULL && memcmp(head, "MKAR\x01\0\0\0", 8) == 0);
        test_assert(head != NULL && memcmp(head + 8, h3, 32) == 0);
        for (int i = 0; head != NULL && i < 8; i++)
            test_assert(head[40 + i] == (unsigned char) (im.length >> (56 - 8 * i)));
        free(head);
        data = open_by_hand(&im, master, h3, &len);
        test_assert(data != NULL && len == (size_t) 5 << 20 && memcmp(data, big, len) == 0);
        free(data);
        free(im.pack);
        test_assert(locate(s, h1, &im) && im.offset == 48);  /* the first record */
        data = open_by_hand(&im, master, h1, &len);
        test_assert(data != NULL && len == 22 && memcmp(data, "Subject: hi", 11) == 0);
        free(data);
        free(im.pack);
    }
    test_end();

    test_begin("store: the same bytes are stored once");
    count_packs(dir, &p);
    {
        long long size = file_size(p);

        test_assert_int(ar_store_put(s, big, 5 << 20, h4, &existed, &error), 0);
        test_assert(existed && memcmp(h3, h4, 32) == 0);
        test_assert_int(ar_store_put(s, "twice", 5, h4, &existed, &error), 0);
        test_assert(!existed);
        test_assert_int(ar_store_put(s, "twice", 5, h4, &existed, &error), 0);
        test_assert(existed);           /* pending, not yet synced */
        test_assert_int(ar_store_sync(s, &error), 0);
        test_assert_int(ar_store_put(s, "twice", 5, h4, &existed, &error), 0);
        test_assert(existed);
        test_assert(file_size(p) > size && file_size(p) < size + 200);      /* one record */
        n = 0;
        test_assert_int(ar_store_walk(s, count_cb, &n, &error), 0);
        test_assert_int(n, 4);          /* h1, h2, h3, "twice" */
    }
    free(p);
    test_end();

    test_begin("store: no file per object: one pack, its lock, the index");
    p = mk_xasprintf("%s/objects/packs", dir);
    test_assert_int(count_files(p), 2);
    free(p);
    test_assert_int(count_packs(dir, NULL), 1);
    p = mk_xasprintf("%s/objects/objects.sqlite", dir);
    test_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    free(p);
    test_end();

    test_begin("store: a flipped byte in an image is corrupt");
    test_assert(locate(s, h3, &im));
    flip_byte(im.pack, im.offset + 1000);
    test_assert_int(ar_store_get(s, h3, &data, &len, &error), AR_CORRUPT);
    test_assert(data == NULL && error && strstr(error, "authentication failed")
                && strstr(error, "pack-00000001"));
    free(error);
    flip_byte(im.pack, im.offset + 1000);
    test_assert_int(ar_store_check(s, h3, &error), AR_OK);
    flip_byte(im.pack, im.offset + im.length - 1);      /* the tag */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    free(error);
    flip_byte(im.pack, im.offset + im.length - 1);
    flip_byte(im.pack, im.offset);                      /* the magic */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    test_assert(error && strstr(error, "bad magic"));
    free(error);
    flip_byte(im.pack, im.offset);
    flip_byte(im.pack, im.offset + 10);                 /* the nonce */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    free(error);
    flip_byte(im.pack, im.offset + 10);
    test_assert_int(ar_store_check(s, h3, &error), AR_OK);
    test_end();

    test_begin("store: a record whose header is changed is corrupt");
    flip_byte(im.pack, im.offset - 48 + 8 + 5);         /* the hash */
    test_assert_int(ar_store_get(s, h3, &data, &len, &error), AR_CORRUPT);
    test_assert(data == NULL && error && strstr(error, "moved or overwritten"));
    free(error);
    flip_byte(im.pack, im.offset - 48 + 8 + 5);
    flip_byte(im.pack, im.offset - 48 + 1);             /* the magic */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    test_assert(error && strstr(error, "no record header"));
    free(error);
    flip_byte(im.pack, im.offset - 48 + 1);
    flip_byte(im.pack, im.offset - 48 + 45);            /* the length */
    test_assert_int(ar_store_check(s, h3, &error), AR_CORRUPT);
    free(error);
    flip_byte(im.pack, im.offset - 48 + 45);
    test_assert_int(ar_store_check(s, h3, &error), AR_OK);
    free(im.pack);
    test_end();

    test_begin("store: an image under another hash's name fails");
    test_assert(locate(s, h1, &im));
    {
        unsigned char *image = read_at(im.pack, im.offset, (size_t) im.length);

        ar_sha256("another name", 12, hy);
        append_record(im.pack, hy, image, (size_t) im.length, 0);
        free(image);
    }
    free(im.pack);
    s = reopen(s, dir, master, &note);
    test_assert(note && strstr(note, "1 object(s) appended but not indexed"));
    free(note);
    test_assert_int(ar_store_get(s, hy, &data, &len, &error), AR_CORRUPT);
    test_assert(error && strstr(error, "authentication failed"));
    free(error);
    test_assert_int(ar_store_check(s, h1, &error), AR_OK);
    test_end();

    test_begin("store: a sealed object whose content differs is a mismatch");
    ar_sha256("the name", 8, hy);
    append_object(dir, master, hy, "not this", 0);
    s = reopen(s, dir, master, &note);
    free(note);
    test_assert_int(ar_store_get(s, hy, &data, &len, &error), AR_MISMATCH);
    test_assert(error && strstr(error, "does not match its name"));
    free(error);
    test_end();

    test_begin("store: a frame without its size is read in steps");
    {
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        size_t cap = ZSTD_compressBound(300000), flen, ilen;
        char *frame = mk_xmalloc(cap), *text = mail_text(300000, 2);
        ZSTD_inBuffer in = {text, 300000, 0};
        ZSTD_outBuffer out = {frame, cap, 0};
        unsigned char *image;

        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
        ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
        flen = out.pos;
        test_assert(ZSTD_getFrameContentSize(frame, flen) == ZSTD_CONTENTSIZE_UNKNOWN);
        ar_sha256(text, 300000, hx);
        image = seal_by_hand(master, hx, frame, flen, &ilen);
        count_packs(dir, &p);
        append_record(p, hx, image, ilen, 0);
        free(p);
        s = reopen(s, dir, master, &note);
        free(note);
        test_assert_int(ar_store_get(s, hx, &data, &len, &error), AR_OK);
        test_assert(len == 300000 && memcmp(data, text, len) == 0);
        free(data);
        test_assert_int(ar_store_remove(s, hx, &error), 0);
        free(image);
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
        unsigned char *image;
        size_t ilen;

        ar_sha256("claims 2 GiB", 12, hy);
        image = seal_by_hand(master, hy, frame, sizeof(frame), &ilen);
        count_packs(dir, &p);
        append_record(p, hy, image, ilen, 0);
        free(p);
        free(image);
        s = reopen(s, dir, master, &note);
        free(note);
        test_assert_int(ar_store_check(s, hy, &error), AR_CORRUPT);
        test_assert(error && strstr(error, "not a valid zstd frame"));
        free(error);
    }
    test_end();

    test_begin("store: a reader sees an object only once synced");
    test_assert_int(ar_store_put(s, "pending", 7, hx, &existed, &error), 0);
    r = ar_store_open(dir, master, false, &error);
    test_assert(r != NULL);
    test_assert_int(ar_store_check(r, hx, &error), AR_MISSING);
    test_assert(error && strstr(error, "missing"));
    free(error);
    test_assert_int(ar_store_check(r, h1, &error), AR_OK);
    test_assert_int(ar_store_get(s, hx, &data, &len, &error), AR_OK);     /* its writer does */
    test_assert(len == 7 && memcmp(data, "pending", 7) == 0);
    free(data);
    {
        struct seek k = {hx, 0, 0};

        test_assert_int(ar_store_walk(r, seek_cb, &k, &error), 0);       /* in the pack */
        test_assert_int(k.seen, 1);
    }
    test_assert_int(ar_store_sync(s, &error), 0);
    test_assert_int(ar_store_get(r, hx, &data, &len, &error), AR_OK);
    test_assert(len == 7 && memcmp(data, "pending", 7) == 0);
    free(data);
    test_assert_int(ar_store_put(r, "x", 1, hy, &existed, &error), -1);
    test_assert(error && strstr(error, "reading only"));
    free(error);
    test_end();

    test_begin("store: one writer at a time; readers take no lock");
    {
        struct ar_store *w2 = ar_store_open(dir, master, true, &error), *r2;

        test_assert(w2 == NULL && error && strstr(error, "in use by another writer"));
        free(error);
        r2 = ar_store_open(dir, master, false, &error);
        test_assert(r2 != NULL);
        test_assert_int(ar_store_check(r2, h3, &error), AR_OK);
        ar_store_close(r2);
    }
    test_end();

    test_begin("store: close drops what was never synced");
    count_packs(dir, &p);
    {
        long long size = file_size(p);

        test_assert_int(ar_store_put(s, "dropped", 7, hx, &existed, &error), 0);
        test_assert_int(ar_store_put(s, "removed", 7, h4, &existed, &error), 0);
        test_assert_int(ar_store_remove(s, h4, &error), 0);
        test_assert_int(ar_store_check(s, h4, &error), AR_MISSING);
        free(error);
        test_assert(file_size(p) > size);
        s = reopen(s, dir, master, &note);
        test_assert(note == NULL);
        test_assert_int(ar_store_check(s, hx, &error), AR_MISSING);
        free(error);
        test_assert_int(file_size(p), size);
    }
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

    test_begin("store: remove erases the bytes; a reader finds it gone");
    {
        char *text = mail_text(200000, 3);
        unsigned char *head, *image;
        struct stat before, after;
        struct seek k;

        test_assert_int(ar_store_put(s, text, 200000, hx, &existed, &error), 0);
        test_assert_int(ar_store_sync(s, &error), 0);
        test_assert_int(ar_store_check(r, hx, &error), AR_OK);
        test_assert(locate(s, hx, &im));
        stat(im.pack, &before);
        test_assert_int(ar_store_remove(s, hx, &error), 0);
        test_assert_int(ar_store_check(s, hx, &error), AR_MISSING);
        free(error);
        test_assert_int(ar_store_check(r, hx, &error), AR_MISSING);
        free(error);
        test_assert_int(ar_store_sync(s, &error), 0);
        stat(im.pack, &after);
        image = read_at(im.pack, im.offset, (size_t) im.length);
        test_assert(image != NULL && all_zero(image, (size_t) im.length));
        free(image);
        head = read_at(im.pack, im.offset - 48, 48);
        test_assert(head && memcmp(head, "MKAR\x01\x01\0\0", 8) == 0 && all_zero(head + 8, 32));
        free(head);
        test_assert(after.st_size == before.st_size && after.st_blocks < before.st_blocks);
        k = (struct seek) {hx, 0, 0};
        test_assert_int(ar_store_walk(s, seek_cb, &k, &error), 0);
        test_assert(k.seen == 0 && k.total > 3);
        free(im.pack);
        test_assert_int(ar_store_put(s, text, 200000, hx, &existed, &error), 0);
        test_assert(!existed);
        test_assert_int(ar_store_sync(s, &error), 0);
        test_assert_int(ar_store_get(r, hx, &data, &len, &error), AR_OK);
        test_assert(len == 200000 && memcmp(data, text, len) == 0);
        free(data);
        free(text);
    }
    test_end();

    test_begin("store: an object larger than the limit is refused");
    test_assert_int(ar_store_put(s, big, AR_STORE_MAX_OBJECT + 1, hx, &existed, &error), -1);
    test_assert(error && strstr(error, "larger than the limit"));
    free(error);
    test_end();

    test_begin("store: walk finds a record appended but never indexed");
    {
        struct seek k;

        ar_sha256("appended", 8, hy);
        append_object(dir, master, hy, "slipped in", 0);
        k = (struct seek) {hy, 0, 0};
        test_assert_int(ar_store_walk(r, seek_cb, &k, &error), 0);
        test_assert_int(k.seen, 1);
        test_assert_int(ar_store_check(r, hy, &error), AR_MISSING);
        free(error);
        test_assert_int(ar_store_check(s, hy, &error), AR_MISSING);
        free(error);
        test_assert_int(ar_store_walk(s, stop_cb, NULL, &error), 7);
    }
    test_end();

    test_begin("store: walk reports damage and goes on past it");
    test_assert(locate(s, h3, &im));
    {
        int total = 0;

        test_assert_int(ar_store_walk(s, count_cb, &total, &error), 0);
        flip_byte(im.pack, im.offset - 48);              /* h3's header: no record there */
        n = 0;
        test_assert_int(ar_store_walk(r, count_cb, &n, &error), -1);
        test_assert(error && strstr(error, "(damage)") && strstr(error, "pack-00000001"));
        free(error);
        test_assert_int(n, total - 1);  /* all but h3 */
        flip_byte(im.pack, im.offset - 48);
    }
    free(im.pack);
    test_end();

    test_begin("store: after a crash, complete records are indexed, a torn tail cut");
    ar_store_close(r);
    ar_store_close(s);
    {
        pid_t pid = fork();
        int status = -1;
        long long size;

        if (pid == 0) {                 /* puts and dies before its sync */
            struct ar_store *c = ar_store_open(dir, master, true, &error);
            bool ok = c != NULL;

            for (int i = 0; ok && i < 3; i++) {
                char msg[32];

                snprintf(msg, sizeof(msg), "crash %d", i);
                ok = ar_store_put(c, msg, strlen(msg), hx, &existed, &error) == 0;
            }
            _exit(ok ? 0 : 1);
        }
        waitpid(pid, &status, 0);
        test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        count_packs(dir, &p);
        size = file_size(p);
        ar_sha256("torn", 4, hy);
        append_object(dir, master, hy, "a record a crash cut short", 20);
        test_assert(file_size(p) > size);
        s = reopen(NULL, dir, master, &note);
        test_assert(note && strstr(note, "an incomplete record") && strstr(note, "truncated"));
        test_assert(note && strstr(note, "3 object(s) appended but not indexed"));
        free(note);
        test_assert_int(file_size(p), size);
        for (int i = 0; i < 3; i++) {
            char msg[32];

            snprintf(msg, sizeof(msg), "crash %d", i);
            ar_sha256(msg, strlen(msg), hx);
            test_assert_int(ar_store_check(s, hx, &error), AR_OK);
        }
        test_assert_int(ar_store_check(s, hy, &error), AR_MISSING);
        free(error);
        test_assert(ar_store_take_note(s) == NULL);
        free(p);
    }
    test_end();

    test_begin("store: a deleted index is rebuilt from the packs");
    {
        const char *const names[] = {"objects.sqlite", "objects.sqlite-wal", "objects.sqlite-shm"};
        int total = 0;

        test_assert_int(ar_store_walk(s, count_cb, &total, &error), 0);
        ar_store_close(s);
        for (size_t i = 0; i < MK_ARRAY_LEN(names); i++) {
            p = mk_xasprintf("%s/objects/%s", dir, names[i]);
            unlink(p);
            free(p);
        }
        s = reopen(NULL, dir, master, &note);
        p = mk_xasprintf("index rebuilt from 1 pack(s): %d object(s)", total);
        test_assert(note && strstr(note, p));
        free(p);
        free(note);
        test_assert_int(ar_store_check(s, h1, &error), AR_OK);
        test_assert_int(ar_store_get(s, h3, &data, &len, &error), AR_OK);
        test_assert(len == (size_t) 5 << 20 && memcmp(data, big, len) == 0);
        free(data);
        test_assert_int(ar_store_check(s, h2, &error), AR_MISSING);      /* removed stays so */
        free(error);
        s = reopen(s, dir, master, &note);
        test_assert(note == NULL);
    }
    test_end();

    test_begin("store: locate");
    r = ar_store_open(dir, master, false, &error);
    test_assert(locate(s, h1, &im) && locate(r, h1, &im2));
    test_assert(strstr(im.pack, "/objects/packs/pack-00000001") && strcmp(im.pack, im2.pack) == 0);
    test_assert(im.offset == 48 && im2.offset == 48 && im.length == im2.length);
    free(im.pack);
    free(im2.pack);
    memset(hx, 0xcd, 32);
    {
        char *pack = (char *) "x";
        uint64_t off = 1, length = 1;

        test_assert_int(ar_store_locate(r, hx, &pack, &off, &length, &error), 0);
        test_assert(pack == NULL && off == 0 && length == 0 && error == NULL);
    }
    ar_store_close(r);
    test_end();

    test_begin("store: walk ignores foreign files among the packs");
    {
        const char *const names[] = {"README", "pack-123", "pack-000000012", ".tmp-1"};
        int before = 0;

        test_assert_int(ar_store_walk(s, count_cb, &before, &error), 0);
        for (size_t i = 0; i < MK_ARRAY_LEN(names); i++) {
            p = mk_xasprintf("%s/objects/packs/%s", dir, names[i]);
            fclose(fopen(p, "w"));
            free(p);
        }
        n = 0;
        test_assert_int(ar_store_walk(s, count_cb, &n, &error), 0);
        test_assert_int(n, before);
        s = reopen(s, dir, master, &note);
        test_assert(note == NULL);
    }
    test_end();

    ar_store_close(s);
    free(big);
    free(dir);
}

static void test_packs(void)
{
    unsigned char master[32], hashes[400][32], hx[32];
    char *dir = path_of("packs"), *error = NULL, *data, *p, *note;
    struct ar_store *s;
    struct image im;
    size_t len;
    bool existed;
    int n, npacks;

    memset(master, 0x33, sizeof(master));
    setenv("MK_AR_PACK_MAX", "65536", 1);
    s = ar_store_open(dir, master, true, &error);

    test_begin("packs: many objects go to several packs, none past the limit");
    test_assert(s != NULL);
    for (int i = 0; i < 400; i++) {
        char *text = mail_text(2000 + (size_t) i * 10, 100 + (unsigned) i);

        test_assert_int(ar_store_put(s, text, strlen(text), hashes[i], &existed, &error), 0);
        if (i % 64 == 63)
            test_assert_int(ar_store_sync(s, &error), 0);
        free(text);
    }
    test_assert_int(ar_store_sync(s, &error), 0);
    npacks = count_packs(dir, NULL);
    test_assert(npacks >= 4);
    for (int i = 1; i <= npacks; i++) {
        p = mk_xasprintf("%s/objects/packs/pack-%08d", dir, i);
        test_assert(file_size(p) > 0 && file_size(p) <= 65536);
        free(p);
    }
    s = reopen(s, dir, master, &note);
    test_assert(note == NULL);
    for (int i = 0; i < 400; i++) {
        char *text = mail_text(2000 + (size_t) i * 10, 100 + (unsigned) i);

        test_assert_int(ar_store_get(s, hashes[i], &data, &len, &error), AR_OK);
        test_assert(len == strlen(text) && memcmp(data, text, len) == 0);
        free(data);
        free(text);
    }
    n = 0;
    test_assert_int(ar_store_walk(s, count_cb, &n, &error), 0);
    test_assert_int(n, 400);
    test_end();

    test_begin("packs: a record larger than the limit goes alone in a pack");
    {
        size_t size = 200000;
        unsigned char *noise = mk_xmalloc(size);

        for (size_t i = 0; i < size; i++)
            noise[i] = (unsigned char) (i * 2654435761u >> 13);
        ar_sha256("seed", 4, hx);
        for (size_t i = 0; i + 32 <= size; i += 32) {     /* incompressible */
            ar_sha256(hx, 32, hx);
            memcpy(noise + i, hx, 32);
        }
        test_assert_int(ar_store_put(s, noise, size, hx, &existed, &error), 0);
        test_assert_int(ar_store_put(s, "after", 5, hashes[0], &existed, &error), 0);
        test_assert_int(ar_store_sync(s, &error), 0);
        test_assert_int(count_packs(dir, NULL), npacks + 2);
        test_assert(locate(s, hx, &im) && im.offset == 48 && im.length > size);
        free(im.pack);
        test_assert_int(ar_store_check(s, hx, &error), AR_OK);
        test_assert_int(ar_store_check(s, hashes[0], &error), AR_OK);
        free(noise);
    }
    test_end();

    test_begin("packs: a crash after a new pack: both packs recovered");
    ar_store_close(s);
    {
        pid_t pid = fork();
        int status = -1;

        if (pid == 0) {
            struct ar_store *c = ar_store_open(dir, master, true, &error);
            bool ok = c != NULL;

            for (int i = 0; ok && i < 100; i++) {
                char *text = mail_text(3000, 1000 + (unsigned) i);

                ok = ar_store_put(c, text, strlen(text), hx, &existed, &error) == 0;
                free(text);
            }
            _exit(ok ? 0 : 1);
        }
        waitpid(pid, &status, 0);
        test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        test_assert(count_packs(dir, NULL) > npacks + 2);
        s = reopen(NULL, dir, master, &note);
        test_assert(note && strstr(note, "100 object(s) appended but not indexed"));
        free(note);
        for (int i = 0; i < 100; i++) {
            char *text = mail_text(3000, 1000 + (unsigned) i);

            ar_sha256(text, strlen(text), hx);
            test_assert_int(ar_store_check(s, hx, &error), AR_OK);
            free(text);
        }
    }
    test_end();

    test_begin("packs: a pack cut shorter than its index is not appended to");
    {
        int before = count_packs(dir, &p);

        test_assert(locate(s, hx, &im));
        ar_store_close(s);
        test_assert_int(truncate(p, (off_t) (im.offset - 48)), 0);
        s = reopen(NULL, dir, master, &note);
        test_assert(note && strstr(note, "objects past its end are lost"));
        free(note);
        test_assert_int(ar_store_check(s, hx, &error), AR_CORRUPT);
        test_assert(error && strstr(error, "truncated"));
        free(error);
        test_assert_int(ar_store_put(s, "new", 3, hx, &existed, &error), 0);
        test_assert_int(ar_store_sync(s, &error), 0);
        test_assert_int(count_packs(dir, NULL), before + 1);
        test_assert_int(ar_store_check(s, hx, &error), AR_OK);
        s = reopen(s, dir, master, &note);
        test_assert(note && strstr(note, "objects past its end are lost"));      /* until restored */
        free(note);
        free(im.pack);
        free(p);
    }
    test_end();

    test_begin("packs: a reader with no writer running; on an empty directory");
    ar_store_close(s);
    s = ar_store_open(dir, master, false, &error);
    test_assert(s != NULL);
    test_assert_int(ar_store_check(s, hx, &error), AR_OK);
    n = 0;
    test_assert_int(ar_store_walk(s, count_cb, &n, &error), 0);
    test_assert(n > 400);
    ar_store_close(s);
    p = path_of("empty");
    mkdir(p, 0700);
    s = ar_store_open(p, master, false, &error);
    test_assert(s != NULL);
    test_assert_int(ar_store_check(s, hx, &error), AR_MISSING);
    free(error);
    n = 0;
    test_assert_int(ar_store_walk(s, count_cb, &n, &error), 0);
    test_assert_int(n, 0);
    test_assert_int(count_files(p), 0);                /* a reader makes nothing */
    ar_store_close(s);
    s = NULL;
    free(p);
    test_end();

    unsetenv("MK_AR_PACK_MAX");
    ar_store_close(s);
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
    test_packs();
    remove_tree(tmpdir);
    return test_done();
}
