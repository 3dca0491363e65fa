/*
 * NAME
 *	mk_mcrypt 3h
 * SUMMARY
 *	mailkeep_crypt's message format: chunked AES-256-GCM under a key of
 *	its own, wrapped for X25519 public keys
 * SYNOPSIS
 *	#include "mk_mcrypt.h"
 *
 *	int	mk_mc_keypair_generate(struct mk_mc_keypair *k);
 *	int	mk_mc_keypair_from_private(const uint8_t priv[32], struct mk_mc_keypair *k);
 *	void	mk_mc_pubkey_set(struct mk_mc_pubkey *p, const uint8_t pub[32]);
 *	void	mk_mc_keypair_wipe(struct mk_mc_keypair *k);
 *
 *	struct mk_mc_enc *mk_mc_enc_new(const struct mk_mc_recipient *r, unsigned n,
 *					unsigned chunk_shift);
 *	int	mk_mc_enc_write(struct mk_mc_enc *e, const void *data, size_t len,
 *				mk_mc_emit_fn *emit, void *ctx);
 *	int	mk_mc_enc_finish(struct mk_mc_enc *e, mk_mc_emit_fn *emit, void *ctx);
 *	const uint8_t *mk_mc_enc_dek(const struct mk_mc_enc *e);
 *	const uint8_t *mk_mc_enc_header(const struct mk_mc_enc *e, size_t *len);
 *	uint64_t mk_mc_enc_plain_size(const struct mk_mc_enc *e);
 *	void	mk_mc_enc_free(struct mk_mc_enc *e);
 *
 *	bool	mk_mc_is_encrypted(const void *buf, size_t len);
 *	int	mk_mc_header_parse(const void *buf, size_t len, struct mk_mc_header *h,
 *				   size_t *need, const char **why);
 *	int	mk_mc_unwrap(const struct mk_mc_header *h, const struct mk_mc_keypair *k,
 *			     uint8_t dek[32]);
 *	void	mk_mc_forget(void);
 *	int	mk_mc_header_make(const uint8_t dek[32], unsigned chunk_shift,
 *				  const struct mk_mc_recipient *r, unsigned n,
 *				  uint8_t *out, size_t *len);
 *	int	mk_mc_plain_size(const struct mk_mc_header *h, uint64_t cipher_size,
 *				 uint64_t *plain);
 *
 *	struct mk_mc_dec *mk_mc_dec_new(const struct mk_mc_header *h, const uint8_t dek[32]);
 *	ssize_t	mk_mc_dec_chunk(struct mk_mc_dec *d, uint64_t index, const void *in,
 *				size_t len, void *out, bool *last);
 *	void	mk_mc_dec_free(struct mk_mc_dec *d);
 *
 *	int	mk_mc_decrypt_buf(const void *buf, size_t len, const struct mk_mc_keypair *k,
 *				  unsigned char **out, size_t *out_len, const char **why);
 * DESCRIPTION
 *	A message is encrypted under a data key (DEK) of 32 random bytes,
 *	its own. The DEK is wrapped for each recipient key in the header:
 *	the user's key and, where the site keeps one, the escrow key. So a
 *	message is read with any one of them, and giving a message to
 *	another key (a copy to another user, a rotated key, a new escrow
 *	key) rewrites the header only.
 *
 *	    0	"\0MKCRYPT" (no RFC 5322 message starts with a NUL)
 *	    8	version (1)
 *	    9	chunk shift S (12 to 20: chunks of 2^S plaintext bytes)
 *	    10	N, the number of key slots (1 to MK_MC_MAX_SLOTS)
 *	    11	0
 *	    12	E, an ephemeral X25519 public key (32 bytes)
 *	    44	N slots of 57 bytes: kind (1 user, 2 escrow), the key's
 *		id (the first 8 bytes of SHA-256 of its public key), the DEK
 *		wrapped (32 bytes and a 16-byte GCM tag)
 *	    44+57N  the chunks
 *
 *	A slot's wrapping key is HKDF-SHA256 of the X25519 shared secret of
 *	E and the recipient, salt E || recipient public key, info
 *	"mailkeep-crypt v1 wrap"; the DEK is sealed with it by AES-256-GCM,
 *	a zero nonce (the key is used once) and the slot's kind and id as
 *	additional data.
 *
 *	The plaintext is cut into chunks of 2^S bytes, the last one shorter
 *	or, for an empty message, empty; each chunk is sealed by
 *	AES-256-GCM under the DEK with the nonce BE64(index) || 0 0 0 ||
 *	last (1 on the final chunk, else 0) and its 16-byte tag follows it.
 *	A reader releases no byte of a chunk before its tag verifies, and a
 *	file cut at a chunk boundary lacks its final chunk: truncation,
 *	reordering and bit flips are all reported. Chunk i starts at
 *	44 + 57N + i (2^S + 16), so a reader seeks without decrypting what
 *	comes before, and the plaintext size follows from the file size.
 *
 *	Anyone with a public key can encrypt to it: the format says a
 *	message was not changed since it was written, not who wrote it.
 *
 *	mk_mc_keypair_generate() makes an X25519 key pair;
 *	mk_mc_keypair_from_private() completes one from its private half;
 *	mk_mc_pubkey_set() fills in a public key and its id;
 *	mk_mc_keypair_wipe() clears one. They return 0, or -1 when OpenSSL
 *	fails.
 *
 *	mk_mc_enc_new() starts a message for n recipients (n at most
 *	MK_MC_MAX_SLOTS; NULL when OpenSSL fails). mk_mc_enc_write() takes
 *	plaintext and passes the header, then each completed chunk, to
 *	emit (which returns 0, or -1 to stop; the function then returns
 *	-1); it keeps at most one chunk. mk_mc_enc_finish() writes what is
 *	left as the final chunk. mk_mc_enc_header() is the header it writes
 *	first. mk_mc_enc_dek() is the message's DEK, for
 *	a caller that gives the message to another key later without the
 *	recipients' private keys (see mailkeep_crypt(7)).
 *
 *	mk_mc_is_encrypted() tells whether buf starts with the magic (len at
 *	least 8). mk_mc_header_parse() reads a header: 1 and *h (h->len its
 *	length) when buf holds all of it; 0 and *need (the bytes it needs)
 *	when buf is too short; -1 and *why when it is not a valid header.
 *	mk_mc_unwrap() finds k's slot and opens it: 0, or -1 when there is
 *	none or it does not open. It keeps the last private key it used as
 *	OpenSSL's object, for the next message (per process, not
 *	thread-safe); mk_mc_forget() drops and wipes it. mk_mc_header_make() writes a new header
 *	for a DEK (at most MK_MC_HEADER_MAX bytes into out). mk_mc_plain_size()
 *	computes the plaintext size from the size of the whole file (-1:
 *	no valid file has that size).
 *
 *	mk_mc_dec_chunk() opens chunk index, in being its ciphertext and tag
 *	(at most 2^S + 16 bytes): the plaintext length, written to out (2^S
 *	bytes), and *last when it was the final chunk; -1 when it does not
 *	authenticate. A full-length chunk is tried as not final first.
 *	mk_mc_decrypt_buf() decrypts a whole message in memory (for tests
 *	and the command line), checking that it ends with its final chunk.
 */
#ifndef MK_MCRYPT_H
#define MK_MCRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MK_MC_MAGIC		"\0MKCRYPT"
#define MK_MC_MAGIC_LEN		8
#define MK_MC_VERSION		1
#define MK_MC_KEY_LEN		32
#define MK_MC_ID_LEN		8
#define MK_MC_TAG_LEN		16
#define MK_MC_SLOT_LEN		(1 + MK_MC_ID_LEN + MK_MC_KEY_LEN + MK_MC_TAG_LEN)
#define MK_MC_FIXED_LEN		(12 + MK_MC_KEY_LEN)
#define MK_MC_MAX_SLOTS		8
#define MK_MC_HEADER_MAX	(MK_MC_FIXED_LEN + MK_MC_MAX_SLOTS * MK_MC_SLOT_LEN)
#define MK_MC_SHIFT_MIN		12
#define MK_MC_SHIFT_MAX		20
#define MK_MC_SHIFT_DEFAULT	16

enum mk_mc_slot_kind { MK_MC_SLOT_USER = 1, MK_MC_SLOT_ESCROW = 2 };

struct mk_mc_pubkey {
    uint8_t pub[MK_MC_KEY_LEN];
    uint8_t id[MK_MC_ID_LEN];
};

struct mk_mc_keypair {
    struct mk_mc_pubkey pub;
    uint8_t priv[MK_MC_KEY_LEN];
};

struct mk_mc_recipient {
    enum mk_mc_slot_kind kind;
    const struct mk_mc_pubkey *key;
};

struct mk_mc_slot {
    uint8_t kind;
    uint8_t id[MK_MC_ID_LEN];
    uint8_t wrapped[MK_MC_KEY_LEN + MK_MC_TAG_LEN];
};

struct mk_mc_header {
    unsigned chunk_shift;
    unsigned nslots;
    size_t len;
    uint8_t eph[MK_MC_KEY_LEN];
    struct mk_mc_slot slots[MK_MC_MAX_SLOTS];
};

typedef int mk_mc_emit_fn(void *ctx, const void *data, size_t len);

int mk_mc_keypair_generate(struct mk_mc_keypair *k);
int mk_mc_keypair_from_private(const uint8_t priv[MK_MC_KEY_LEN], struct mk_mc_keypair *k);
void mk_mc_pubkey_set(struct mk_mc_pubkey *p, const uint8_t pub[MK_MC_KEY_LEN]);
void mk_mc_keypair_wipe(struct mk_mc_keypair *k);

struct mk_mc_enc *mk_mc_enc_new(const struct mk_mc_recipient *r, unsigned n,
                                unsigned chunk_shift);
int mk_mc_enc_write(struct mk_mc_enc *e, const void *data, size_t len,
                    mk_mc_emit_fn *emit, void *ctx);
int mk_mc_enc_finish(struct mk_mc_enc *e, mk_mc_emit_fn *emit, void *ctx);
const uint8_t *mk_mc_enc_dek(const struct mk_mc_enc *e);
const uint8_t *mk_mc_enc_header(const struct mk_mc_enc *e, size_t *len);
uint64_t mk_mc_enc_plain_size(const struct mk_mc_enc *e);
void mk_mc_enc_free(struct mk_mc_enc *e);

bool mk_mc_is_encrypted(const void *buf, size_t len);
int mk_mc_header_parse(const void *buf, size_t len, struct mk_mc_header *h, size_t *need,
                       const char **why);
int mk_mc_unwrap(const struct mk_mc_header *h, const struct mk_mc_keypair *k,
                 uint8_t dek[MK_MC_KEY_LEN]);
void mk_mc_forget(void);
int mk_mc_header_make(const uint8_t dek[MK_MC_KEY_LEN], unsigned chunk_shift,
                      const struct mk_mc_recipient *r, unsigned n, uint8_t *out, size_t *len);
int mk_mc_plain_size(const struct mk_mc_header *h, uint64_t cipher_size, uint64_t *plain);

struct mk_mc_dec *mk_mc_dec_new(const struct mk_mc_header *h, const uint8_t dek[MK_MC_KEY_LEN]);
ssize_t mk_mc_dec_chunk(struct mk_mc_dec *d, uint64_t index, const void *in, size_t len,
                        void *out, bool *last);
void mk_mc_dec_free(struct mk_mc_dec *d);

int mk_mc_decrypt_buf(const void *buf, size_t len, const struct mk_mc_keypair *k,
                      unsigned char **out, size_t *out_len, const char **why);

#endif
