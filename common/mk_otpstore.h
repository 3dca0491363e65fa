/*
 * NAME
 *	mk_otpstore 3h
 * SUMMARY
 *	the second-factor store: one root-owned file per user, secrets sealed
 * SYNOPSIS
 *	#include "mk_otpstore.h"
 *
 *	int	mk_otp_record_parse(const char *text, size_t len, struct mk_otp_record *r,
 *				    char **error);
 *	char	*mk_otp_record_format(const struct mk_otp_record *r);
 *	void	mk_otp_record_init(struct mk_otp_record *r, const char *user);
 *	void	mk_otp_record_free(struct mk_otp_record *r);
 *	bool	mk_otp_record_empty(const struct mk_otp_record *r);
 *	void	mk_otp_sealed_move(struct mk_otp_sealed *to, struct mk_otp_sealed *from);
 *
 *	struct mk_otp_store *mk_otp_store_open(const char *dir, const char *key_file,
 *					      bool create, char **error);
 *	void	mk_otp_store_close(struct mk_otp_store *store);
 *	int	mk_otp_store_key(struct mk_otp_store *store, bool create, char **error);
 *	int	mk_otp_store_read(struct mk_otp_store *store, const char *user,
 *				  struct mk_otp_record *r, char **error);
 *	struct mk_otp_lock *mk_otp_store_lock(struct mk_otp_store *store, const char *user,
 *					      struct mk_otp_record *r, char **error);
 *	int	mk_otp_store_write(struct mk_otp_lock *lock, const struct mk_otp_record *r,
 *				   char **error);
 *	void	mk_otp_store_unlock(struct mk_otp_lock *lock);
 *	char	**mk_otp_store_users(struct mk_otp_store *store, char **error);
 *
 *	int	mk_otp_seal(struct mk_otp_store *store, const char *user, const char *what,
 *			    const struct mk_otp_token *t, struct mk_otp_sealed *s);
 *	int	mk_otp_unseal(struct mk_otp_store *store, const char *user, const char *what,
 *			      const struct mk_otp_sealed *s, struct mk_otp_token *t);
 *	void	mk_otp_hash_make(const char *secret, struct mk_otp_hash *h);
 *	bool	mk_otp_hash_check(const char *secret, const struct mk_otp_hash *h);
 *	char	*mk_otp_random_code(unsigned groups);
 * DESCRIPTION
 *	Every user with a second factor, application passwords, a lockout or
 *	a password history has one text file in the store directory
 *	([otp] store), named after the address (characters outside
 *	[a-z0-9.@_+-] written %XX). The directory and files belong to root
 *	and nobody else may read them. A file is a list of lines:
 *
 *	    mailkeep-otp 1			format and version, first
 *	    user ADDRESS
 *	    token KIND ALGO DIGITS PERIOD CREATED BOX	the confirmed token
 *	    pending KIND ALGO DIGITS PERIOD CREATED BOX	enrolled, not confirmed
 *	    last STEP				TOTP: the last time step used
 *	    counter N				HOTP: the next counter
 *	    used TIME				the last login with the token
 *	    failures N TIME			failed attempts since the last success
 *	    locked UNTIL			locked out (0: until an administrator unlocks)
 *	    recovery SALT HASH			an unused recovery code
 *	    apppass ID SERVICE CREATED USED HOST SALT HASH LABEL...
 *	    changed TIME			the password's last change
 *	    mustchange REASON TIME		a change is required (reset, first) since TIME
 *	    history TIME CRYPT			an earlier password, crypt(3) hash
 *
 *	Times are seconds since the epoch. BOX is the token's secret sealed
 *	with AES-256-GCM under the store key ([otp] key_file, 32 random bytes
 *	in hex), as hex nonce||ciphertext||tag; the user and the line's
 *	keyword are its associated data, so a box moved to another user or
 *	line does not open. Application passwords and recovery codes are
 *	random (80 and 40 bits) and kept as salted SHA-256 hashes (SALT and
 *	HASH in hex); they are compared after removing '-' and blanks and
 *	folding case.
 *
 *	mk_otp_record_parse() is strict: an unknown keyword, a keyword that
 *	may appear once appearing twice, a bad number, a control character
 *	or a field too long each fail with "line N: problem" in *error. It
 *	is the parser of the store's outside input (fuzz-otpstore).
 *	mk_otp_record_format() writes a record back in the same form.
 *	mk_otp_sealed_move() replaces *to with *from (emptied), or with
 *	nothing when from is NULL.
 *
 *	mk_otp_store_read() reads a user's record without locking (files
 *	are replaced whole by rename): an absent file is an empty record.
 *	mk_otp_store_lock() takes an exclusive lock on the user's file,
 *	creating it empty if need be, and reads it: two logins with the
 *	same code take turns, and the second sees the step the first used.
 *	mk_otp_store_write() replaces the file (written, synced, locked
 *	before the rename, so the lock stays held across it; an empty
 *	record removes the file); mk_otp_store_unlock() releases and frees
 *	the lock, removing the file if it is still the empty one the lock
 *	created. A lock not
 *	granted in 10 s fails. mk_otp_store_users() lists the users whose
 *	files the store holds, sorted.
 *
 *	mk_otp_store_open() checks the directory (it creates it, mode 0700,
 *	when create is set). The key is loaded by mk_otp_store_key(), which
 *	with create makes a new one when there is none; mk_otp_seal() and
 *	mk_otp_unseal() need it. Functions with an error argument return -1
 *	or NULL with an allocated message there.
 *
 *	mk_otp_random_code() is groups groups of four characters from a
 *	32-letter alphabet without 0, 1, l and o, joined by '-'.
 */
#ifndef MK_OTPSTORE_H
#define MK_OTPSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mk_otp.h"

#define MK_OTP_MAX_FILE		65536
#define MK_OTP_MAX_APPPASS	50
#define MK_OTP_MAX_RECOVERY	20
#define MK_OTP_MAX_HISTORY	24

struct mk_otp_sealed {
    bool present;
    enum mk_otp_kind kind;
    enum mk_otp_algo algo;
    unsigned digits;
    unsigned period;
    time_t created;
    char *box;
};

struct mk_otp_hash {
    unsigned char salt[16];
    unsigned char hash[32];
};

struct mk_otp_apppass {
    unsigned id;
    char *service;                      /* a PAM service name, or "*" */
    time_t created;
    time_t used;                        /* 0: never */
    char *host;                         /* where it was last used from, or "-" */
    struct mk_otp_hash hash;
    char *label;
};

struct mk_otp_old_password {
    time_t changed;
    char *crypt;
};

struct mk_otp_record {
    char *user;
    struct mk_otp_sealed token;
    struct mk_otp_sealed pending;
    uint64_t last;
    uint64_t counter;
    time_t used;
    unsigned failures;
    time_t failed;
    bool locked;
    time_t locked_until;                /* 0: until an administrator unlocks */
    struct mk_otp_hash *recovery;
    size_t nrecovery;
    struct mk_otp_apppass *apppass;
    size_t napppass;
    time_t changed;
    char *must_change;                  /* "reset" or "first", or NULL */
    time_t must_changed;                /* when it was required */
    struct mk_otp_old_password *history;
    size_t nhistory;
};

struct mk_otp_store;
struct mk_otp_lock;

int mk_otp_record_parse(const char *text, size_t len, struct mk_otp_record *r, char **error);
char *mk_otp_record_format(const struct mk_otp_record *r);
void mk_otp_record_init(struct mk_otp_record *r, const char *user);
void mk_otp_record_free(struct mk_otp_record *r);
bool mk_otp_record_empty(const struct mk_otp_record *r);
void mk_otp_sealed_move(struct mk_otp_sealed *to, struct mk_otp_sealed *from);

struct mk_otp_store *mk_otp_store_open(const char *dir, const char *key_file, bool create,
                                       char **error);
void mk_otp_store_close(struct mk_otp_store *store);
int mk_otp_store_key(struct mk_otp_store *store, bool create, char **error);
int mk_otp_store_read(struct mk_otp_store *store, const char *user, struct mk_otp_record *r,
                      char **error);
struct mk_otp_lock *mk_otp_store_lock(struct mk_otp_store *store, const char *user,
                                      struct mk_otp_record *r, char **error);
int mk_otp_store_write(struct mk_otp_lock *lock, const struct mk_otp_record *r, char **error);
void mk_otp_store_unlock(struct mk_otp_lock *lock);
char **mk_otp_store_users(struct mk_otp_store *store, char **error);

int mk_otp_seal(struct mk_otp_store *store, const char *user, const char *what,
                const struct mk_otp_token *t, struct mk_otp_sealed *s);
int mk_otp_unseal(struct mk_otp_store *store, const char *user, const char *what,
                  const struct mk_otp_sealed *s, struct mk_otp_token *t);
void mk_otp_hash_make(const char *secret, struct mk_otp_hash *h);
bool mk_otp_hash_check(const char *secret, const struct mk_otp_hash *h);
char *mk_otp_random_code(unsigned groups);

#endif
