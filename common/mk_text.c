/*
 * mk_text - UTF-8 width folding and code point steps. See mk_text.h.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "mk_text.h"
#include "mk_util.h"

/*
 * Every folded form starts with one of four lead bytes: C2 (U+00A0),
 * E2 (U+2000 block), E3 (U+3000) and EF (U+FE63, U+FF01-U+FF5E). Looking
 * for those four bytes is what lets text without any of them through at
 * memory speed; Chinese prose hits E3 and EF for its punctuation, and
 * the exact check below sorts those out.
 */
static const unsigned char mk_text_lead[256] = {
    [0xC2] = 1, [0xE2] = 1, [0xE3] = 1, [0xEF] = 1,
};

/* Offset of the first possible lead byte at or after i, or len. */
static size_t mk_text_next_lead(const unsigned char *s, size_t i, size_t len)
{
#ifdef __SSE2__
    const __m128i c2 = _mm_set1_epi8((char) 0xC2), e3 = _mm_set1_epi8((char) 0xE3),
        ef = _mm_set1_epi8((char) 0xEF), one = _mm_set1_epi8(1);

    /* E2 and E3 differ only in the low bit: one comparison finds both. */
#define MK_TEXT_LEADS(v) \
    _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8((v), c2), _mm_cmpeq_epi8((v), ef)), \
                 _mm_cmpeq_epi8(_mm_or_si128((v), one), e3))
    while (i + 32 <= len) {
        __m128i a = _mm_loadu_si128((const __m128i *) (const void *) (s + i));
        __m128i b = _mm_loadu_si128((const __m128i *) (const void *) (s + i + 16));
        unsigned ma = (unsigned) _mm_movemask_epi8(MK_TEXT_LEADS(a));
        unsigned mb = (unsigned) _mm_movemask_epi8(MK_TEXT_LEADS(b));
        uint32_t bits = ma | (mb << 16);

        if (bits)
            return i + (size_t) __builtin_ctz(bits);
        i += 32;
    }
#undef MK_TEXT_LEADS
#endif
    for (; i < len; i++)
        if (mk_text_lead[s[i]])
            return i;
    return len;
}

/*
 * If a folded form starts at s[i], store its ASCII replacement in *c
 * and return its length in bytes; otherwise return 0.
 */
static inline size_t mk_text_fold_at(const unsigned char *s, size_t len, size_t i,
                                     unsigned char *c)
{
    unsigned char b1, b2;

    if (s[i] == 0xC2) {
        if (i + 1 < len && s[i + 1] == 0xA0) {
            *c = ' ';
            return 2;
        }
        return 0;
    }
    if (i + 2 >= len)
        return 0;
    b1 = s[i + 1];
    b2 = s[i + 2];
    switch (s[i]) {
    case 0xE2:
        if (b1 == 0x80 && ((b2 >= 0x80 && b2 <= 0x8A) || b2 == 0xAF))
            *c = ' ';                   /* U+2000-U+200A, U+202F */
        else if (b1 == 0x80 && b2 >= 0x90 && b2 <= 0x95)
            *c = '-';                   /* U+2010-U+2015 */
        else if (b1 == 0x81 && b2 == 0x9F)
            *c = ' ';                   /* U+205F */
        else if (b1 == 0x88 && b2 == 0x92)
            *c = '-';                   /* U+2212 */
        else
            return 0;
        return 3;
    case 0xE3:
        if (b1 == 0x80 && b2 == 0x80) {
            *c = ' ';                   /* U+3000 */
            return 3;
        }
        return 0;
    case 0xEF:
        if (b1 == 0xBC && b2 >= 0x81 && b2 <= 0xBF)
            *c = (unsigned char) (0x21 + (b2 - 0x81));  /* U+FF01-U+FF3F */
        else if (b1 == 0xBD && b2 >= 0x80 && b2 <= 0x9E)
            *c = (unsigned char) (0x60 + (b2 - 0x80));  /* U+FF40-U+FF5E */
        else if (b1 == 0xB9 && b2 == 0xA3)
            *c = '-';                   /* U+FE63 */
        else
            return 0;
        return 3;
    default:
        return 0;
    }
}

/* Copy with folding from the first foldable form at i onwards; returns the output length. */
static size_t mk_text_fold_copy(const unsigned char *s, size_t len, size_t i, unsigned char *out)
{
    size_t o;

    memcpy(out, s, i);
    o = i;
#ifdef __SSE2__
    /*
     * In Chinese text a lead byte comes every few dozen bytes. Store
     * whole 32-byte blocks ahead (the buffer has room) and only step
     * back to the lead byte: cheaper than a copy call per stretch.
     */
    {
        const __m128i c2 = _mm_set1_epi8((char) 0xC2), e3 = _mm_set1_epi8((char) 0xE3),
            ef = _mm_set1_epi8((char) 0xEF), one = _mm_set1_epi8(1);

        while (i + 32 <= len) {
            __m128i a = _mm_loadu_si128((const __m128i *) (const void *) (s + i));
            __m128i b = _mm_loadu_si128((const __m128i *) (const void *) (s + i + 16));
            unsigned ma = (unsigned) _mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(a, c2), _mm_cmpeq_epi8(a, ef)),
                _mm_cmpeq_epi8(_mm_or_si128(a, one), e3)));
            unsigned mb = (unsigned) _mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(b, c2), _mm_cmpeq_epi8(b, ef)),
                _mm_cmpeq_epi8(_mm_or_si128(b, one), e3)));
            uint32_t bits = ma | (mb << 16);
            unsigned char c;
            size_t k, n;

            _mm_storeu_si128((__m128i *) (void *) (out + o), a);
            _mm_storeu_si128((__m128i *) (void *) (out + o + 16), b);
            if (bits == 0) {
                i += 32;
                o += 32;
                continue;
            }
            /*
             * A lead byte that does not fold (。 「 」 and most others) is
             * already in place: only a folded form shifts what follows.
             */
            do {
                k = (size_t) __builtin_ctz(bits);
                n = mk_text_fold_at(s, len, i + k, &c);
                bits &= bits - 1;
            } while (n == 0 && bits != 0);
            if (n == 0) {
                i += 32;
                o += 32;
                continue;
            }
            out[o + k] = c;
            i += k + n;
            o += k + 1;
        }
    }
#endif
    while (i < len) {
        unsigned char c;
        size_t n;

        if (mk_text_lead[s[i]] && (n = mk_text_fold_at(s, len, i, &c)) != 0) {
            out[o++] = c;
            i += n;
        } else {
            out[o++] = s[i++];
        }
    }
    return o;
}

const char *mk_text_fold_buf(const char *in, size_t len, char **buf, size_t *size,
                             size_t *outlen)
{
    const unsigned char *s = (const unsigned char *) in;
    size_t i = mk_text_next_lead(s, 0, len);
    unsigned char c = 0;

    while (i < len && mk_text_fold_at(s, len, i, &c) == 0)
        i = mk_text_next_lead(s, i + 1, len);
    if (i >= len) {
        *outlen = len;
        return in;
    }
    /* 32 bytes of room for the block stores of mk_text_fold_copy. */
    if (*buf == NULL || *size < len + 33) {
        *size = len + 33;
        free(*buf);
        *buf = mk_xmalloc(*size);
    }
    *outlen = mk_text_fold_copy(s, len, i, (unsigned char *) *buf);
    (*buf)[*outlen] = '\0';
    return *buf;
}

size_t mk_text_fold(const char *in, size_t len, char **out)
{
    char *buf = NULL;
    size_t size = 0, outlen;
    const char *folded = mk_text_fold_buf(in, len, &buf, &size, &outlen);

    *out = folded == in ? NULL : buf;
    return outlen;
}

/* The length of the well-formed sequence at s, or 1 when there is none. */
static inline size_t mk_text_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xBF;

    if (b < 0xC2)
        return 1;                       /* ASCII, a stray continuation, C0/C1 */
    if (b < 0xE0)
        return avail >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 1;
    if (b < 0xF0) {
        if (b == 0xE0)
            lo = 0xA0;                  /* overlong */
        else if (b == 0xED)
            hi = 0x9F;                  /* surrogates */
        return avail >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 1;
    }
    if (b < 0xF5) {
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;                  /* past U+10FFFF */
        return avail >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
            (s[3] & 0xC0) == 0x80 ? 4 : 1;
    }
    return 1;
}

size_t mk_text_char_len(const char *s, size_t len, size_t off)
{
    if (off >= len)
        return 0;
    return mk_text_seq_len((const unsigned char *) s + off, len - off);
}

/* True when the 8 bytes at p are all ASCII. */
static inline bool mk_text_ascii8(const unsigned char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return (w & UINT64_C(0x8080808080808080)) == 0;
}

size_t mk_text_count_chars(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *) s;
    size_t i = 0, n = 0;

    while (i < len) {
        if (i + 8 <= len && mk_text_ascii8(u + i)) {
            i += 8;
            n += 8;
        } else {
            i += mk_text_seq_len(u + i, len - i);
            n++;
        }
    }
    return n;
}

size_t mk_text_forward(const char *s, size_t len, size_t off, size_t n)
{
    const unsigned char *u = (const unsigned char *) s;

    while (n > 0 && off < len) {
        off += u[off] < 0x80 ? 1 : mk_text_seq_len(u + off, len - off);
        n--;
    }
    return off < len ? off : len;
}

size_t mk_text_back(const char *s, size_t len, size_t off, size_t n)
{
    const unsigned char *u = (const unsigned char *) s;

    if (off > len)
        off = len;
    while (n > 0 && off > 0) {
        size_t j = off - 1, stop = off > 4 ? off - 4 : 0;

        if (u[j] < 0x80) {
            off = j;
            n--;
            continue;
        }
        /* Most text that is not ASCII here is CJK: three bytes a character. */
        if (off >= 3 && (u[off - 3] & 0xF0) == 0xE0 && mk_text_seq_len(u + off - 3, 3) == 3) {
            off -= 3;
            n--;
            continue;
        }

        while (j > stop && (u[j] & 0xC0) == 0x80)
            j--;
        /* Step over the whole sequence only if it ends exactly here. */
        off = mk_text_seq_len(u + j, len - j) == off - j ? j : off - 1;
        n--;
    }
    return off;
}

bool mk_text_valid_utf8(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *) s;
    size_t i = 0;

    while (i < len) {
        if (i + 8 <= len && mk_text_ascii8(u + i)) {
            i += 8;
        } else if (u[i] < 0x80) {
            i++;
        } else {
            size_t n = mk_text_seq_len(u + i, len - i);

            if (n == 1)
                return false;
            i += n;
        }
    }
    return true;
}
