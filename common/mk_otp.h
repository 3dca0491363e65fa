/*
 * NAME
 *	mk_otp 3h
 * SUMMARY
 *	one-time codes: TOTP (RFC 6238) and HOTP (RFC 4226) through liboath
 * SYNOPSIS
 *	#include "mk_otp.h"
 *
 *	int	mk_otp_code(const struct mk_otp_token *t, uint64_t counter, char out[16]);
 *	int	mk_otp_verify(const struct mk_otp_token *t, const char *code, time_t now,
 *			      unsigned window, uint64_t last, uint64_t *matched);
 *	uint64_t mk_otp_step(const struct mk_otp_token *t, time_t now);
 *	bool	mk_otp_code_syntax(const char *code, size_t len, unsigned digits);
 *	char	*mk_otp_uri(const struct mk_otp_token *t, const char *issuer,
 *			    const char *account);
 *	char	*mk_otp_base32(const unsigned char *key, size_t len);
 *	int	mk_otp_secret_parse(const char *text, unsigned char *out, size_t *len);
 *	int	mk_otp_parse_kind(const char *s, enum mk_otp_kind *kind);
 *	int	mk_otp_parse_algo(const char *s, enum mk_otp_algo *algo);
 *	const char *mk_otp_kind_name(enum mk_otp_kind kind);
 *	const char *mk_otp_algo_name(enum mk_otp_algo algo);
 * DESCRIPTION
 *	A token is a shared secret with its parameters: TOTP with HMAC-SHA-1,
 *	-256 or -512, 6 to 8 digits and a period (30 s), or HOTP (HMAC-SHA-1,
 *	RFC 4226 has no other) with 6 to 8 digits.
 *
 *	mk_otp_code() is the code for one counter: the time step for TOTP
 *	(mk_otp_step()), the event counter for HOTP.
 *
 *	mk_otp_verify() checks a code, returning 0 and the counter it
 *	matched, or -1. For TOTP it tries the steps now-window to
 *	now+window; for HOTP the counters t->counter to t->counter+window.
 *	Replay protection is the caller's "last": a counter at or below it
 *	never matches (0: nothing used yet), so a code is good once and an
 *	older code is not good after a newer one. Every candidate is
 *	compared, in constant time, whatever matched first.
 *
 *	mk_otp_uri() is the otpauth:// URI that authenticator apps read
 *	(Key Uri Format): the label "issuer:account", the secret in
 *	unpadded base32, the algorithm, digits and period or counter.
 *	mk_otp_base32() is RFC 4648 base32 without padding.
 *
 *	mk_otp_secret_parse() reads an existing secret (a hardware token's
 *	seed, another system's): base32, or hex after "hex:", blanks and
 *	dashes ignored, 16 to MK_OTP_SECRET_MAX bytes (RFC 4226 wants at
 *	least 128 bits); 0, or -1 leaving out undefined.
 *
 *	mk_otp_code_syntax() tells whether len characters are exactly
 *	digits decimal digits.
 */
#ifndef MK_OTP_H
#define MK_OTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MK_OTP_SECRET_MAX 64            /* bytes; apps use 20 (SHA-1) to 64 */

enum mk_otp_kind { MK_OTP_TOTP, MK_OTP_HOTP };
enum mk_otp_algo { MK_OTP_SHA1, MK_OTP_SHA256, MK_OTP_SHA512 };

struct mk_otp_token {
    enum mk_otp_kind kind;
    enum mk_otp_algo algo;
    unsigned digits;                    /* 6..8 */
    unsigned period;                    /* TOTP: seconds per step */
    uint64_t counter;                   /* HOTP: the next counter expected */
    unsigned char secret[MK_OTP_SECRET_MAX];
    size_t secret_len;
};

int mk_otp_code(const struct mk_otp_token *t, uint64_t counter, char out[16]);
int mk_otp_verify(const struct mk_otp_token *t, const char *code, time_t now, unsigned window,
                  uint64_t last, uint64_t *matched);
uint64_t mk_otp_step(const struct mk_otp_token *t, time_t now);
bool mk_otp_code_syntax(const char *code, size_t len, unsigned digits);
char *mk_otp_uri(const struct mk_otp_token *t, const char *issuer, const char *account);
char *mk_otp_base32(const unsigned char *key, size_t len);
int mk_otp_secret_parse(const char *text, unsigned char *out, size_t *len);
int mk_otp_parse_kind(const char *s, enum mk_otp_kind *kind);
int mk_otp_parse_algo(const char *s, enum mk_otp_algo *algo);
const char *mk_otp_kind_name(enum mk_otp_kind kind);
const char *mk_otp_algo_name(enum mk_otp_algo algo);

#endif
