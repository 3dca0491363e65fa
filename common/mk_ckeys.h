/*
 * NAME
 *	mk_ckeys 3h
 * SUMMARY
 *	mailkeep_crypt's user key files
 * SYNOPSIS
 *	#include "mk_ckeys.h"
 *
 *	int	mk_ck_parse(const char *text, size_t len, struct mk_ck_file *f, char *why,
 *			    size_t why_len);
 *	char	*mk_ck_format(const struct mk_ck_file *f);
 *	int	mk_ck_load(const char *path, struct mk_ck_file *f, char *why, size_t why_len);
 *	int	mk_ck_save(const char *path, const struct mk_ck_file *f, bool create,
 *			   uid_t uid, gid_t gid, char *why, size_t why_len);
 *	char	*mk_ck_path(const char *dir, const char *user);
 *
 *	int	mk_ck_add(struct mk_ck_file *f, const struct mk_mc_keypair *kp,
 *			  const uint8_t server_key[32], const struct mk_mc_pubkey *escrow,
 *			  time_t now);
 *	const struct mk_ck_key *mk_ck_active(const struct mk_ck_file *f);
 *	const struct mk_ck_key *mk_ck_find(const struct mk_ck_file *f, const uint8_t id[8]);
 *	int	mk_ck_open(const struct mk_ck_file *f, const struct mk_ck_key *k,
 *			   const uint8_t *server_key, const char *password,
 *			   struct mk_mc_keypair *kp);
 *	int	mk_ck_protect(const struct mk_ck_file *f, struct mk_ck_key *k,
 *			      const struct mk_mc_keypair *kp, const uint8_t *server_key,
 *			      const char *password);
 *	int	mk_ck_open_escrow(const struct mk_ck_key *k, const struct mk_mc_keypair *escrow,
 *				  struct mk_mc_keypair *kp);
 *	int	mk_ck_server_key_load(const char *path, uint8_t key[32], char *why, size_t why_len);
 *	int	mk_ck_pubkey_load(const char *path, struct mk_mc_pubkey *pub, char *why,
 *				  size_t why_len);
 * DESCRIPTION
 *	Each user with encrypted mail has one key file, named after the
 *	address (characters outside [a-z0-9.@_+-] as %XX) in the key
 *	directory (mailkeep_crypt_keys). It is text, one item a line:
 *
 *	    mailkeep-crypt-keys 1		format and version, first
 *	    user ADDRESS
 *	    key ID CREATED PUBLIC server BOX	a key pair; the private key sealed
 *	    key ID CREATED PUBLIC password COST SALT BOX	... sealed by a password
 *	    escrow ID HEADER			the private key of key ID, for escrow
 *	    active ID				the key new mail is encrypted to
 *
 *	ID is the key's id (16 hex digits, see mk_mcrypt(3)), CREATED
 *	seconds since the epoch, PUBLIC the X25519 public key (64 hex).
 *	"server" says how the private key is protected: BOX is a nonce, the
 *	key and a tag (AES-256-GCM under the site's server key, 120 hex),
 *	with "mailkeep-crypt key", the user and the id as associated data,
 *	so that a box moved to another user or key does not open.
 *	"password": the same, under the key scrypt derives from the user's
 *	password (N = 2^COST, r = 8, p = 1; SALT 16 random bytes in hex):
 *	then nobody without the password (or the escrow key) can open it,
 *	the server included. HEADER
 *	is the private key wrapped for the escrow public key in the message
 *	format's header (hex): only the escrow private key, kept off the
 *	mail servers, opens it. Old keys stay, for the mail encrypted to
 *	them; one is active.
 *
 *	mk_ck_parse() is strict (a keyword out of place, twice where once is
 *	allowed, a field of the wrong length, an unknown active key, any
 *	control character: "line N: problem" in why). mk_ck_load() reads a
 *	file of at most 64 KiB: 1 loaded, 0 there is none, -1 (why) it cannot
 *	be read or parsed. mk_ck_save() writes a new file beside it and
 *	renames it into place, synced; with create it fails (0 in why is
 *	"exists") when the file appeared meanwhile, so that two processes
 *	generating a user's first key agree on one. A uid other than -1
 *	becomes the file's owner (root's command writing for the mail user). mk_ck_path() is the
 *	file's path (malloc'ed).
 *
 *	mk_ck_add() adds a key pair, sealed with the server key and, when
 *	escrow is not NULL, wrapped for it, and makes it active. mk_ck_open()
 *	opens a key's private half, with the server key or the password
 *	(whichever sealed it; the other may be NULL). mk_ck_protect() seals
 *	k's private half, kp, anew: with the password when it is not NULL
 *	(a new salt), else with the server key. mk_ck_open_escrow() opens a
 *	key with the escrow key pair. mk_ck_server_key_load() reads a server key
 *	file (64 hex digits, owner-only); mk_ck_pubkey_load() a public key
 *	file (64 hex digits). The functions return 0, or -1 (with why).
 */
#ifndef MK_CKEYS_H
#define MK_CKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "mk_mcrypt.h"

#define MK_CK_MAX_KEYS		32
#define MK_CK_BOX_LEN		(12 + MK_MC_KEY_LEN + MK_MC_TAG_LEN)
#define MK_CK_ESCROW_LEN	(MK_MC_FIXED_LEN + MK_MC_SLOT_LEN)
#define MK_CK_SALT_LEN		16
#define MK_CK_COST_MIN		10
#define MK_CK_COST_MAX		22
#define MK_CK_COST_DEFAULT	15	/* scrypt N = 32768: 32 MiB, some 0.1 s */

struct mk_ck_key {
    uint8_t id[MK_MC_ID_LEN];
    long long created;
    uint8_t pub[MK_MC_KEY_LEN];
    uint8_t box[MK_CK_BOX_LEN];
    bool password;                      /* sealed by the user's password, not the server key */
    unsigned cost;                      /* password: scrypt's log2 N */
    uint8_t salt[MK_CK_SALT_LEN];
    bool has_escrow;
    uint8_t escrow[MK_CK_ESCROW_LEN];
};

struct mk_ck_file {
    char user[256];
    unsigned nkeys;
    struct mk_ck_key keys[MK_CK_MAX_KEYS];
    int active;                         /* index into keys, -1 none */
};

int mk_ck_parse(const char *text, size_t len, struct mk_ck_file *f, char *why, size_t why_len);
char *mk_ck_format(const struct mk_ck_file *f);
int mk_ck_load(const char *path, struct mk_ck_file *f, char *why, size_t why_len);
int mk_ck_save(const char *path, const struct mk_ck_file *f, bool create, uid_t uid, gid_t gid,
               char *why, size_t why_len);
char *mk_ck_path(const char *dir, const char *user);

int mk_ck_add(struct mk_ck_file *f, const struct mk_mc_keypair *kp, const uint8_t server_key[32],
              const struct mk_mc_pubkey *escrow, time_t now);
const struct mk_ck_key *mk_ck_active(const struct mk_ck_file *f);
const struct mk_ck_key *mk_ck_find(const struct mk_ck_file *f, const uint8_t id[MK_MC_ID_LEN]);
int mk_ck_open(const struct mk_ck_file *f, const struct mk_ck_key *k, const uint8_t *server_key,
               const char *password, struct mk_mc_keypair *kp);
int mk_ck_protect(const struct mk_ck_file *f, struct mk_ck_key *k, const struct mk_mc_keypair *kp,
                  const uint8_t *server_key, const char *password);
int mk_ck_open_escrow(const struct mk_ck_key *k, const struct mk_mc_keypair *escrow,
                      struct mk_mc_keypair *kp);
int mk_ck_server_key_load(const char *path, uint8_t key[32], char *why, size_t why_len);
int mk_ck_pubkey_load(const char *path, struct mk_mc_pubkey *pub, char *why, size_t why_len);

#endif
