/*
 * NAME
 *	mailkeep-crypt-plugin - Dovecot 2.3 plugin that keeps mail encrypted
 *	at rest (lib90_mailkeep_crypt_plugin.so)
 *
 * SYNOPSIS
 *	mail_plugins = $mail_plugins mailkeep_crypt
 *	plugin {
 *	  mailkeep_crypt = yes
 *	  mailkeep_crypt_keys = /var/lib/mailkeep/crypt
 *	  mailkeep_crypt_server_key = /etc/mailkeep/crypt-server.key
 *	  mailkeep_crypt_escrow_key = /etc/mailkeep/crypt-escrow.pub
 *	}
 *
 * DESCRIPTION
 *	Every message saved into a Maildir or dbox mailbox (LMTP and LDA
 *	delivery, IMAP APPEND, COPY and MOVE between users, doveadm save) is
 *	written in mk_mcrypt(3)'s format: chunked AES-256-GCM under a key of
 *	its own, wrapped for the user's active X25519 key and, with
 *	mailkeep_crypt_escrow_key, for the organisation's escrow key. Reading
 *	(IMAP, POP3, doveadm, LMTP's copies) decrypts chunk by chunk, each
 *	chunk authenticated before a byte of it is served, seeking without
 *	temporary files; a message without the format's magic is served as
 *	it is, so that plain mail stays readable while a mailbox is
 *	converted. A message that does not authenticate fails the read
 *	with a critical error naming it.
 *
 *	The user's keys are in a file of their own under
 *	mailkeep_crypt_keys (mk_ckeys(3)), made at the first message; the
 *	private keys are sealed with the server key, and with the escrow
 *	key when there is one. Old keys stay for the mail encrypted to them.
 *
 *	Dovecot's index cache would keep headers and body snippets of what
 *	the plugin encrypts in plain text; for users with mailkeep_crypt the
 *	plugin turns it off for every mailbox they open (as
 *	mail_never_cache_fields = * does). A copy within one user's
 *	mailboxes keeps the encrypted file (hard links as usual); a copy to
 *	another user is decrypted and encrypted again for them.
 *
 *	mailkeep_crypt = no (or unset) writes plain mail but still reads
 *	what is encrypted, with the keys it finds.
 */

#include "lib.h"
#include "istream.h"
#include "istream-private.h"
#include "ostream.h"
#include "ostream-private.h"
#include "mail-user.h"
#include "mail-storage-private.h"
#include "mail-storage-hooks.h"
#include "mail-storage-settings.h"
#include "mail-copy.h"
#include "module-context.h"
#include "safe-memset.h"
#include "memarea.h"

#include <time.h>

#include "mk_ckeys.h"
#include "mk_mcrypt.h"

#define MKC_LOG "mailkeep_crypt"

#define MKC_USER_CONTEXT(obj) MODULE_CONTEXT(obj, mkc_user_module)
#define MKC_BOX_CONTEXT(obj) MODULE_CONTEXT_REQUIRE(obj, mkc_storage_module)
#define MKC_MAIL_CONTEXT(obj) MODULE_CONTEXT_REQUIRE(obj, mkc_mail_module)

extern const char *mailkeep_crypt_plugin_version;
void mailkeep_crypt_plugin_init(struct module *module);
void mailkeep_crypt_plugin_deinit(void);

struct mkc_user {
	union mail_user_module_context module_ctx;
	bool encrypt, protect_password;
	const char *keydir, *server_key_path, *escrow_path;
	const char *password;		/* the login's, from the userdb (%w) */
	bool server_key_loaded, escrow_loaded, have_escrow, keys_loaded;
	uint8_t server_key[32];
	struct mk_mc_pubkey escrow;
	struct mk_ck_file keys;
	/* private keys opened so far, by index into keys */
	bool opened[MK_CK_MAX_KEYS];
	struct mk_mc_keypair pairs[MK_CK_MAX_KEYS];
};

/* The data keys of the messages this process encrypted last, by their
   ephemeral key: LMTP gives a message to its further recipients by
   reading the first one's copy, which their password-protected key
   would not open in a process that has no password. */
#define MKC_DEK_CACHE 16
static struct {
	uint8_t eph[MK_MC_KEY_LEN];
	uint8_t dek[MK_MC_KEY_LEN];
	bool used;
} mkc_dek_cache[MKC_DEK_CACHE];
static unsigned mkc_dek_next;

static void mkc_dek_remember(const uint8_t *header, const uint8_t dek[MK_MC_KEY_LEN])
{
	memcpy(mkc_dek_cache[mkc_dek_next].eph, header + 12, MK_MC_KEY_LEN);
	memcpy(mkc_dek_cache[mkc_dek_next].dek, dek, MK_MC_KEY_LEN);
	mkc_dek_cache[mkc_dek_next].used = TRUE;
	mkc_dek_next = (mkc_dek_next + 1) % MKC_DEK_CACHE;
}

static bool mkc_dek_recall(const struct mk_mc_header *h, uint8_t dek[MK_MC_KEY_LEN])
{
	for (unsigned i = 0; i < MKC_DEK_CACHE; i++)
		if (mkc_dek_cache[i].used &&
		    memcmp(mkc_dek_cache[i].eph, h->eph, MK_MC_KEY_LEN) == 0) {
			memcpy(dek, mkc_dek_cache[i].dek, MK_MC_KEY_LEN);
			return TRUE;
		}
	return FALSE;
}

static MODULE_CONTEXT_DEFINE_INIT(mkc_user_module, &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(mkc_storage_module, &mail_storage_module_register);
static MODULE_CONTEXT_DEFINE_INIT(mkc_mail_module, &mail_module_register);

/* ------------------------------------------------------------ the keys */

static int mkc_server_key(struct mkc_user *mu, const char **error_r)
{
	char why[512];

	if (mu->server_key_loaded)
		return 0;
	if (mu->server_key_path == NULL) {
		*error_r = "mailkeep_crypt_server_key is not set";
		return -1;
	}
	if (mk_ck_server_key_load(mu->server_key_path, mu->server_key,
				  why, sizeof(why)) != 0) {
		*error_r = t_strdup(why);
		return -1;
	}
	mu->server_key_loaded = TRUE;
	return 0;
}

static int mkc_escrow(struct mkc_user *mu, const char **error_r)
{
	char why[512];

	if (mu->escrow_loaded || mu->escrow_path == NULL)
		return 0;
	if (mk_ck_pubkey_load(mu->escrow_path, &mu->escrow, why, sizeof(why)) != 0) {
		*error_r = t_strdup(why);
		return -1;
	}
	mu->escrow_loaded = mu->have_escrow = TRUE;
	return 0;
}

/* With the login's password at hand, seal each key as the policy says:
   by the password (then the server cannot open it without the user), or
   by the server key. Keys made at a delivery, which has no password, are
   sealed by the server key until the user's next login. */
static int mkc_keys_protect(struct mail_user *user, struct mkc_user *mu, const char **error_r)
{
	char why[512], *path;
	bool changed = FALSE;

	if (mu->password == NULL)
		return 0;
	for (unsigned i = 0; i < mu->keys.nkeys; i++) {
		struct mk_ck_key *k = &mu->keys.keys[i];
		struct mk_mc_keypair kp;

		if (k->password == mu->protect_password)
			continue;
		if (mkc_server_key(mu, error_r) < 0)
			return -1;
		if (mk_ck_open(&mu->keys, k, mu->server_key, mu->password, &kp) != 0) {
			/* a password-sealed key the login's password does not
			   open: the password changed behind our back */
			*error_r = "the user's key does not open with this password "
				"(changed without mailkeep crypt password?)";
			return -1;
		}
		if (mk_ck_protect(&mu->keys, k, &kp,
				  mu->protect_password ? NULL : mu->server_key,
				  mu->protect_password ? mu->password : NULL) != 0) {
			mk_mc_keypair_wipe(&kp);
			*error_r = "cannot seal the user's key";
			return -1;
		}
		mk_mc_keypair_wipe(&kp);
		changed = TRUE;
	}
	if (!changed)
		return 0;
	if ((path = mk_ck_path(mu->keydir, user->username)) == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (mk_ck_save(path, &mu->keys, FALSE, (uid_t)-1, (gid_t)-1, why, sizeof(why)) < 0) {
		free(path);
		*error_r = t_strdup(why);
		return -1;
	}
	free(path);
	i_info(MKC_LOG ": %s: keys sealed by the %s", user->username,
	       mu->protect_password ? "user's password" : "server key");
	return 0;
}

/* Load the user's key file; with create, make the first key when there is none. */
static int mkc_keys(struct mail_user *user, struct mkc_user *mu, bool create,
		    const char **error_r)
{
	struct mk_mc_keypair kp;
	char why[512], *path;
	int ret;

	if (mu->keys_loaded)
		return 0;
	if (mu->keydir == NULL) {
		*error_r = "mailkeep_crypt_keys is not set";
		return -1;
	}
	if ((path = mk_ck_path(mu->keydir, user->username)) == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		ret = mk_ck_load(path, &mu->keys, why, sizeof(why));
		if (ret != 0)
			break;
		if (!create) {
			*error_r = t_strdup_printf("%s has no keys (%s)", user->username, path);
			free(path);
			return -1;
		}
		/* the first message: a key pair of the user's own */
		if (mkc_server_key(mu, error_r) < 0 || mkc_escrow(mu, error_r) < 0) {
			free(path);
			return -1;
		}
		memset(&mu->keys, 0, sizeof(mu->keys));
		mu->keys.active = -1;
		if (strlen(user->username) >= sizeof(mu->keys.user)) {
			*error_r = "the user name is too long";
			free(path);
			return -1;
		}
		strcpy(mu->keys.user, user->username);
		if (mk_mc_keypair_generate(&kp) != 0
		    || mk_ck_add(&mu->keys, &kp, mu->server_key,
				 mu->have_escrow ? &mu->escrow : NULL, time(NULL)) != 0) {
			mk_mc_keypair_wipe(&kp);
			*error_r = "cannot make a key pair (OpenSSL)";
			free(path);
			return -1;
		}
		mk_mc_keypair_wipe(&kp);
		if (mk_ck_save(path, &mu->keys, TRUE, (uid_t)-1, (gid_t)-1, why, sizeof(why)) == 0) {
			i_info(MKC_LOG ": %s: made the user's first key", user->username);
			ret = 1;
			break;
		}
		if (why[0] != '\0') {
			*error_r = t_strdup(why);
			free(path);
			return -1;
		}
		/* another process made it first: use theirs */
	}
	free(path);
	if (ret < 0) {
		*error_r = t_strdup(why);
		return -1;
	}
	if (ret == 0 || strcmp(mu->keys.user, user->username) != 0) {
		*error_r = t_strdup_printf("the key file is not %s's", user->username);
		return -1;
	}
	mu->keys_loaded = TRUE;
	return mkc_keys_protect(user, mu, error_r);
}

/* The key pair of a slot in h that this user has: the DEK, or -1. */
static int mkc_unwrap(struct mail_user *user, struct mkc_user *mu,
		      const struct mk_mc_header *h, uint8_t dek[MK_MC_KEY_LEN],
		      const char **error_r)
{
	if (mkc_dek_recall(h, dek))
		return 0;
	if (mkc_keys(user, mu, FALSE, error_r) < 0)
		return -1;
	for (unsigned i = 0; i < h->nslots; i++) {
		const struct mk_ck_key *k = mk_ck_find(&mu->keys, h->slots[i].id);
		unsigned idx;

		if (k == NULL)
			continue;
		idx = (unsigned)(k - mu->keys.keys);
		if (!mu->opened[idx]) {
			if (k->password && mu->password == NULL) {
				*error_r = "the user's key is sealed by the password, "
					"and this session has none";
				return -1;
			}
			if (!k->password && mkc_server_key(mu, error_r) < 0)
				return -1;
			if (mk_ck_open(&mu->keys, k, mu->server_key, mu->password,
				       &mu->pairs[idx]) != 0) {
				*error_r = k->password ?
					"the user's key does not open with the password" :
					"the user's key does not open with the server key";
				return -1;
			}
			mu->opened[idx] = TRUE;
		}
		if (mk_mc_unwrap(h, &mu->pairs[idx], dek) == 0)
			return 0;
		*error_r = "the message's key slot does not open (damaged or altered)";
		return -1;
	}
	*error_r = "none of the user's keys can open the message";
	return -1;
}

/* --------------------------------------------------------- the istream */

struct mkc_istream {
	struct istream_private istream;
	struct mk_mc_header hdr;
	struct mk_mc_dec *dec;
	size_t chunk, sealed;
	uint64_t next;			/* the chunk to decrypt next */
	size_t drop;			/* plaintext to skip in it (after a seek) */
	unsigned char *cbuf;		/* a sealed chunk being gathered */
	size_t cused;
	unsigned char *pbuf;		/* a chunk's plaintext not yet served */
	size_t ppos, plen;
	bool final_seen;
};

static void mkc_istream_error(struct mkc_istream *s, const char *what)
{
	s->istream.istream.stream_errno = EINVAL;
	io_stream_set_error(&s->istream.iostream, MKC_LOG ": %s", what);
}

/* Decrypt the next chunk into pbuf: 1, 0 nothing more (EOF), -1 error. */
static int mkc_istream_chunk(struct mkc_istream *s)
{
	struct istream_private *stream = &s->istream;
	const unsigned char *data;
	size_t size;
	ssize_t got;
	bool last;
	int ret;

	while (s->cused < s->sealed) {
		ret = i_stream_read_more(stream->parent, &data, &size);
		if (ret == -2)
			i_unreached();
		if (ret == 0)
			return -2;	/* non-blocking parent: try again later */
		if (ret < 0) {
			if (stream->parent->stream_errno != 0) {
				io_stream_set_error(&stream->iostream, "%s",
						    i_stream_get_error(stream->parent));
				stream->istream.stream_errno =
					stream->parent->stream_errno;
				return -1;
			}
			break;		/* EOF */
		}
		if (size > s->sealed - s->cused)
			size = s->sealed - s->cused;
		memcpy(s->cbuf + s->cused, data, size);
		s->cused += size;
		i_stream_skip(stream->parent, size);
		stream->parent_expected_offset = stream->parent->v_offset;
	}
	if (s->final_seen) {
		if (s->cused != 0) {
			mkc_istream_error(s, "data after the final chunk (altered)");
			return -1;
		}
		return 0;
	}
	if (s->cused == 0) {
		mkc_istream_error(s, "the final chunk is missing (truncated)");
		return -1;
	}
	got = mk_mc_dec_chunk(s->dec, s->next, s->cbuf, s->cused, s->pbuf, &last);
	if (got < 0) {
		mkc_istream_error(s, t_strdup_printf(
			"chunk %"PRIu64" does not authenticate (damaged or altered)",
			s->next));
		return -1;
	}
	s->cused = 0;
	s->next++;
	s->final_seen = last;
	s->ppos = s->drop < (size_t)got ? s->drop : (size_t)got;
	s->drop = 0;
	s->plen = (size_t)got;
	return 1;
}

static ssize_t mkc_istream_read(struct istream_private *stream)
{
	struct mkc_istream *s = (struct mkc_istream *)stream;
	size_t avail, n;
	int ret;

	while (s->ppos == s->plen) {
		ret = mkc_istream_chunk(s);
		if (ret == 0) {
			stream->istream.eof = TRUE;
			return -1;
		}
		if (ret == -2)
			return 0;
		if (ret < 0)
			return -1;
	}
	if (!i_stream_try_alloc(stream, s->plen - s->ppos, &avail))
		return -2;
	n = I_MIN(avail, s->plen - s->ppos);
	memcpy(stream->w_buffer + stream->pos, s->pbuf + s->ppos, n);
	s->ppos += n;
	stream->pos += n;
	return (ssize_t)n;
}

static void mkc_istream_seek(struct istream_private *stream, uoff_t v_offset,
			     bool mark ATTR_UNUSED)
{
	struct mkc_istream *s = (struct mkc_istream *)stream;
	uint64_t idx = v_offset >> s->hdr.chunk_shift;
	size_t drop = (size_t)(v_offset & (s->chunk - 1));

	/* At a chunk boundary, take the chunk before: past the final chunk
	   nothing is left to tell the end from a truncation. */
	if (drop == 0 && idx > 0) {
		idx--;
		drop = s->chunk;
	}
	/* i_stream_seek() takes the parent's offset as where we read next */
	stream->parent_expected_offset = stream->parent_start_offset + s->hdr.len +
		idx * s->sealed;
	i_stream_seek(stream->parent, stream->parent_expected_offset);
	s->next = idx;
	s->drop = drop;
	s->cused = s->ppos = s->plen = 0;
	s->final_seen = FALSE;
	stream->istream.v_offset = v_offset;
	stream->skip = stream->pos = 0;
	stream->high_pos = 0;
}

static int mkc_istream_stat(struct istream_private *stream, bool exact)
{
	struct mkc_istream *s = (struct mkc_istream *)stream;
	const struct stat *st;
	uint64_t plain;

	if (i_stream_stat(stream->parent, exact, &st) < 0) {
		stream->istream.stream_errno = stream->parent->stream_errno;
		return -1;
	}
	stream->statbuf = *st;
	if (st->st_size < 0 ||
	    mk_mc_plain_size(&s->hdr, (uint64_t)st->st_size -
			     stream->parent_start_offset, &plain) < 0) {
		mkc_istream_error(s, "the file's size is no valid message's (truncated?)");
		return -1;
	}
	stream->statbuf.st_size = (off_t)plain;
	return 0;
}

static int mkc_istream_get_size(struct istream_private *stream, bool exact,
				uoff_t *size_r)
{
	if (mkc_istream_stat(stream, exact) < 0)
		return -1;
	*size_r = (uoff_t)stream->statbuf.st_size;
	return 1;
}

static void mkc_istream_destroy(struct iostream_private *stream)
{
	struct mkc_istream *s = (struct mkc_istream *)stream;

	mk_mc_dec_free(s->dec);
	if (s->pbuf != NULL)
		safe_memset(s->pbuf, 0, s->chunk);
	i_free(s->pbuf);
	i_free(s->cbuf);
	/* what i_stream_default_destroy() does, which this replaces: the
	   read buffer (plain text: wiped first) and the parent */
	if (s->istream.w_buffer != NULL && s->istream.buffer_size > 0 &&
	    (s->istream.memarea == NULL || memarea_get_refcount(s->istream.memarea) == 1))
		safe_memset(s->istream.w_buffer, 0, s->istream.buffer_size);
	i_stream_free_buffer(&s->istream);
	i_stream_unref(&s->istream.parent);
}

static struct istream *
mkc_istream_create(struct istream *input, const struct mk_mc_header *h,
		   const uint8_t dek[MK_MC_KEY_LEN])
{
	struct mkc_istream *s = i_new(struct mkc_istream, 1);
	struct istream *stream;

	s->hdr = *h;
	s->chunk = (size_t)1 << h->chunk_shift;
	s->sealed = s->chunk + MK_MC_TAG_LEN;
	s->dec = mk_mc_dec_new(h, dek);
	if (s->dec == NULL)
		i_fatal_status(FATAL_OUTOFMEM, MKC_LOG ": cannot set up AES-256-GCM");
	s->cbuf = i_malloc(s->sealed);
	s->pbuf = i_malloc(s->chunk);
	s->istream.max_buffer_size = input->real_stream->max_buffer_size;
	s->istream.read = mkc_istream_read;
	s->istream.seek = mkc_istream_seek;
	s->istream.stat = mkc_istream_stat;
	s->istream.get_size = mkc_istream_get_size;
	s->istream.iostream.destroy = mkc_istream_destroy;
	s->istream.istream.readable_fd = FALSE;
	s->istream.istream.blocking = input->blocking;
	s->istream.istream.seekable = input->seekable;
	stream = i_stream_create(&s->istream, input, i_stream_get_fd(input), 0);
	s->istream.parent_expected_offset = s->istream.parent_start_offset + h->len;
	i_stream_seek(input, s->istream.parent_expected_offset);
	return stream;
}

/* --------------------------------------------------------- the ostream */

struct mkc_ostream {
	struct ostream_private ostream;
	struct mk_mc_enc *enc;
	bool finalized;
};

static int mkc_ostream_emit(void *ctx, const void *data, size_t len)
{
	struct mkc_ostream *s = ctx;

	if (o_stream_send(s->ostream.parent, data, len) != (ssize_t)len) {
		o_stream_copy_error_from_parent(&s->ostream);
		return -1;
	}
	return 0;
}

static ssize_t mkc_ostream_sendv(struct ostream_private *stream,
				 const struct const_iovec *iov, unsigned int iov_count)
{
	struct mkc_ostream *s = (struct mkc_ostream *)stream;
	ssize_t total = 0;

	i_assert(!s->finalized);
	for (unsigned int i = 0; i < iov_count; i++) {
		if (mk_mc_enc_write(s->enc, iov[i].iov_base, iov[i].iov_len,
				    mkc_ostream_emit, s) < 0) {
			if (stream->ostream.stream_errno == 0) {
				stream->ostream.stream_errno = EIO;
				io_stream_set_error(&stream->iostream,
						    MKC_LOG ": encryption failed");
			}
			return -1;
		}
		total += (ssize_t)iov[i].iov_len;
	}
	stream->ostream.offset += total;
	return total;
}

static int mkc_ostream_flush(struct ostream_private *stream)
{
	struct mkc_ostream *s = (struct mkc_ostream *)stream;

	if (stream->finished && !s->finalized) {
		s->finalized = TRUE;
		if (mk_mc_enc_finish(s->enc, mkc_ostream_emit, s) < 0) {
			if (stream->ostream.stream_errno == 0) {
				stream->ostream.stream_errno = EIO;
				io_stream_set_error(&stream->iostream,
						    MKC_LOG ": encryption failed");
			}
			return -1;
		}
	}
	return o_stream_flush_parent(stream);
}

static void mkc_ostream_close(struct iostream_private *stream, bool close_parent)
{
	struct mkc_ostream *s = (struct mkc_ostream *)stream;

	if (close_parent)
		o_stream_close(s->ostream.parent);
}

static void mkc_ostream_destroy(struct iostream_private *stream)
{
	struct mkc_ostream *s = (struct mkc_ostream *)stream;

	mk_mc_enc_free(s->enc);
	o_stream_unref(&s->ostream.parent);
}

static struct ostream *mkc_ostream_create(struct ostream *output, struct mk_mc_enc *enc)
{
	struct mkc_ostream *s = i_new(struct mkc_ostream, 1);

	s->enc = enc;
	s->ostream.sendv = mkc_ostream_sendv;
	s->ostream.flush = mkc_ostream_flush;
	s->ostream.iostream.close = mkc_ostream_close;
	s->ostream.iostream.destroy = mkc_ostream_destroy;
	return o_stream_create(&s->ostream, output, o_stream_get_fd(output));
}

/* ------------------------------------------------------- the guard */

/* For mail saved unencrypted: a message that starts with the format's
   magic would be taken for an encrypted one when read, so it is refused
   (as the first bytes pass, whatever stream they come from). */
struct mkc_guard_istream {
	struct istream_private istream;
	unsigned char first[MK_MC_MAGIC_LEN];
	size_t seen;
};

static ssize_t mkc_guard_read(struct istream_private *stream)
{
	struct mkc_guard_istream *g = (struct mkc_guard_istream *)stream;
	const unsigned char *data;
	size_t size, avail;
	int ret;

	ret = i_stream_read_more(stream->parent, &data, &size);
	if (ret == -1) {
		if (stream->parent->stream_errno != 0) {
			stream->istream.stream_errno = stream->parent->stream_errno;
			io_stream_set_error(&stream->iostream, "%s",
					    i_stream_get_error(stream->parent));
		} else {
			stream->istream.eof = TRUE;
		}
		return -1;
	}
	if (ret == 0)
		return 0;
	if (!i_stream_try_alloc(stream, size, &avail))
		return -2;
	size = I_MIN(size, avail);
	if (g->seen < MK_MC_MAGIC_LEN) {
		size_t n = I_MIN(size, MK_MC_MAGIC_LEN - g->seen);

		memcpy(g->first + g->seen, data, n);
		g->seen += n;
		if (g->seen == MK_MC_MAGIC_LEN && memcmp(g->first, MK_MC_MAGIC, MK_MC_MAGIC_LEN) == 0) {
			stream->istream.stream_errno = EINVAL;
			io_stream_set_error(&stream->iostream, MKC_LOG ": the message "
				"starts like an encrypted one; it is not saved unencrypted");
			return -1;
		}
	}
	memcpy(stream->w_buffer + stream->pos, data, size);
	stream->pos += size;
	i_stream_skip(stream->parent, size);
	return (ssize_t)size;
}

static struct istream *mkc_guard_create(struct istream *input)
{
	struct mkc_guard_istream *g = i_new(struct mkc_guard_istream, 1);

	g->istream.max_buffer_size = input->real_stream->max_buffer_size;
	g->istream.read = mkc_guard_read;
	g->istream.istream.readable_fd = FALSE;
	g->istream.istream.blocking = input->blocking;
	g->istream.istream.seekable = FALSE;
	return i_stream_create(&g->istream, input, i_stream_get_fd(input), 0);
}

/* ------------------------------------------------------------- saving */

static int mkc_save_begin(struct mail_save_context *ctx, struct istream *input)
{
	struct mailbox *box = ctx->transaction->box;
	union mailbox_module_context *mbox = MKC_BOX_CONTEXT(box);
	struct mail_user *user = box->storage->user;
	struct mkc_user *mu = MKC_USER_CONTEXT(user);
	struct mk_mc_recipient r[2];
	struct mk_mc_pubkey active;
	struct mk_mc_enc *enc;
	struct ostream *output;
	const char *error;
	unsigned n = 0;

	if (mu == NULL || !mu->encrypt) {
		struct istream *guarded = mkc_guard_create(input);
		int ret = mbox->super.save_begin(ctx, guarded);

		i_stream_unref(&guarded);
		return ret;
	}
	if (mkc_keys(user, mu, TRUE, &error) < 0 || mkc_escrow(mu, &error) < 0) {
		mailbox_set_critical(box, MKC_LOG ": cannot encrypt for %s: %s",
				     user->username, error);
		return -1;
	}
	if (mbox->super.save_begin(ctx, input) < 0)
		return -1;
	mk_mc_pubkey_set(&active, mk_ck_active(&mu->keys)->pub);
	r[n].kind = MK_MC_SLOT_USER;
	r[n++].key = &active;
	if (mu->have_escrow) {
		r[n].kind = MK_MC_SLOT_ESCROW;
		r[n++].key = &mu->escrow;
	}
	enc = mk_mc_enc_new(r, n, MK_MC_SHIFT_DEFAULT);
	if (enc != NULL) {
		size_t hlen;

		mkc_dek_remember(mk_mc_enc_header(enc, &hlen), mk_mc_enc_dek(enc));
	}
	if (enc == NULL) {
		mailbox_set_critical(box, MKC_LOG ": cannot set up the encryption");
		return -1;
	}
	output = mkc_ostream_create(ctx->data.output, enc);
	o_stream_unref(&ctx->data.output);
	ctx->data.output = output;
	o_stream_cork(ctx->data.output);
	return 0;
}

static int mkc_copy(struct mail_save_context *ctx, struct mail *mail)
{
	struct mailbox *box = ctx->transaction->box;
	union mailbox_module_context *mbox = MKC_BOX_CONTEXT(box);

	/* Another user's message is theirs, encrypted to their key: read it
	   (decrypted with their keys) and save it anew (encrypted to ours). */
	if (mail->box->storage->user != box->storage->user)
		return mail_storage_copy(ctx, mail);
	return mbox->super.copy(ctx, mail);
}

static int mkc_open(struct mailbox *box)
{
	union mailbox_module_context *mbox = MKC_BOX_CONTEXT(box);
	struct mkc_user *mu = MKC_USER_CONTEXT(box->storage->user);

	if (mbox->super.open(box) < 0)
		return -1;
	/* The index cache would keep headers and snippets in plain text. */
	if (mu != NULL && mu->encrypt)
		box->mail_cache_disabled = TRUE;
	return 0;
}

static void mkc_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	union mailbox_module_context *mbox;

	if ((box->storage->class_flags & MAIL_STORAGE_CLASS_FLAG_BINARY_DATA) == 0)
		return;
	mbox = p_new(box->pool, union mailbox_module_context, 1);
	mbox->super = *v;
	box->vlast = &mbox->super;
	v->save_begin = mkc_save_begin;
	v->copy = mkc_copy;
	v->open = mkc_open;
	MODULE_CONTEXT_SET_SELF(box, mkc_storage_module, mbox);
}

/* ------------------------------------------------------------ reading */

static int mkc_istream_opened(struct mail *_mail, struct istream **stream)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	union mail_module_context *mmail = MKC_MAIL_CONTEXT(mail);
	struct mail_user *user = _mail->box->storage->user;
	struct mkc_user *mu = MKC_USER_CONTEXT(user);
	struct istream *input = *stream;
	struct mk_mc_header h;
	uint8_t dek[MK_MC_KEY_LEN];
	const unsigned char *data;
	const char *why, *error;
	size_t size, need = MK_MC_MAGIC_LEN;
	int ret;

	/* peek, without moving: a message without the magic is plain */
	for (;;) {
		ret = i_stream_read_bytes(input, &data, &size, need);
		if (ret <= 0 && size < need) {
			if (input->stream_errno != 0) {
				mail_set_critical(_mail, MKC_LOG ": read: %s",
						  i_stream_get_error(input));
				return -1;
			}
			if (need == MK_MC_MAGIC_LEN)
				return mmail->super.istream_opened(_mail, stream);
			mail_set_critical(_mail, MKC_LOG ": truncated header");
			return -1;
		}
		if (need == MK_MC_MAGIC_LEN && !mk_mc_is_encrypted(data, size))
			return mmail->super.istream_opened(_mail, stream);
		ret = mk_mc_header_parse(data, size, &h, &need, &why);
		if (ret > 0)
			break;
		if (ret < 0) {
			mail_set_critical(_mail, MKC_LOG ": %s", why);
			return -1;
		}
	}
	if (mu == NULL) {
		mail_set_critical(_mail, MKC_LOG ": the message is encrypted and "
				  "mailkeep_crypt is not set up for %s", user->username);
		return -1;
	}
	if (mkc_unwrap(user, mu, &h, dek, &error) < 0) {
		mail_set_critical(_mail, MKC_LOG ": cannot decrypt: %s", error);
		return -1;
	}
	*stream = mkc_istream_create(input, &h, dek);
	safe_memset(dek, 0, sizeof(dek));
	i_stream_unref(&input);
	return mmail->super.istream_opened(_mail, stream);
}

static void mkc_mail_allocated(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mail_vfuncs *v = mail->vlast;
	union mail_module_context *mmail;

	mmail = p_new(mail->pool, union mail_module_context, 1);
	mmail->super = *v;
	mail->vlast = &mmail->super;
	v->istream_opened = mkc_istream_opened;
	MODULE_CONTEXT_SET_SELF(mail, mkc_mail_module, mmail);
}

/* --------------------------------------------------------------- users */

static void mkc_user_deinit(struct mail_user *user)
{
	struct mkc_user *mu = MKC_USER_CONTEXT(user);

	safe_memset(mu->pairs, 0, sizeof(mu->pairs));
	mk_mc_forget();
	safe_memset(mu->server_key, 0, sizeof(mu->server_key));
	safe_memset(&mu->keys, 0, sizeof(mu->keys));
	mu->module_ctx.super.deinit(user);
}

static void mkc_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct mkc_user *mu;
	const char *value;

	mu = p_new(user->pool, struct mkc_user, 1);
	mu->module_ctx.super = *v;
	user->vlast = &mu->module_ctx.super;
	v->deinit = mkc_user_deinit;
	value = mail_user_plugin_getenv(user, "mailkeep_crypt");
	if (value != NULL && strcasecmp(value, "yes") != 0 && strcasecmp(value, "no") != 0 &&
	    *value != '\0')
		user->error = p_strdup_printf(user->pool, MKC_LOG
			": mailkeep_crypt = %s: not yes or no", value);
	mu->encrypt = value != NULL && strcasecmp(value, "yes") == 0;
	mu->keydir = mail_user_plugin_getenv(user, "mailkeep_crypt_keys");
	mu->server_key_path = mail_user_plugin_getenv(user, "mailkeep_crypt_server_key");
	mu->escrow_path = mail_user_plugin_getenv(user, "mailkeep_crypt_escrow_key");
	mu->password = mail_user_plugin_getenv(user, "mailkeep_crypt_password");
	if (mu->password != NULL && *mu->password == '\0')
		mu->password = NULL;
	value = mail_user_plugin_getenv(user, "mailkeep_crypt_protect");
	if (value != NULL && *value != '\0' && strcmp(value, "server") != 0 &&
	    strcmp(value, "password") != 0)
		user->error = p_strdup_printf(user->pool, MKC_LOG
			": mailkeep_crypt_protect = %s: not server or password", value);
	mu->protect_password = value != NULL && strcmp(value, "password") == 0;
	if (mu->escrow_path != NULL && *mu->escrow_path == '\0')
		mu->escrow_path = NULL;
	if (mu->encrypt && (mu->keydir == NULL || mu->server_key_path == NULL))
		user->error = p_strdup(user->pool, MKC_LOG ": mailkeep_crypt = yes needs "
				       "mailkeep_crypt_keys and mailkeep_crypt_server_key");
	/* What would store the mail in clear beside it, or make it unreadable:
	   refused rather than half done. */
	if (mu->encrypt && *mail_user_set_get_storage_set(user)->mail_attachment_dir != '\0')
		user->error = p_strdup(user->pool, MKC_LOG ": mail_attachment_dir would keep "
				       "attachments unencrypted: unset it for encrypted users");
	value = mail_user_plugin_getenv(user, "zlib_save");
	if (mu->encrypt && value != NULL && *value != '\0')
		user->error = p_strdup(user->pool, MKC_LOG ": zlib_save cannot be combined with "
				       "mailkeep_crypt yet (the mail would not read back)");
	if (strlen(user->username) >= sizeof(mu->keys.user))
		user->error = p_strdup(user->pool, MKC_LOG ": the user name is too long");
	MODULE_CONTEXT_SET(user, mkc_user_module, mu);
}

static struct mail_storage_hooks mkc_hooks = {
	.mail_user_created = mkc_mail_user_created,
	.mailbox_allocated = mkc_mailbox_allocated,
	.mail_allocated = mkc_mail_allocated,
};

const char *mailkeep_crypt_plugin_version = DOVECOT_ABI_VERSION;

void mailkeep_crypt_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &mkc_hooks);
}

void mailkeep_crypt_plugin_deinit(void)
{
	safe_memset(mkc_dek_cache, 0, sizeof(mkc_dek_cache));
	mk_mc_forget();
	mail_storage_hooks_remove(&mkc_hooks);
}
