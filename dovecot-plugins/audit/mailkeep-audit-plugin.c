/*
 * NAME
 *	mailkeep-audit-plugin - Dovecot 2.3 plugin that sends every audited
 *	mail operation to mailkeep-auditd (lib90_mailkeep_audit_plugin.so)
 *
 * SUMMARY
 *	Hooks Dovecot's storage (through the notify plugin and a few vfunc
 *	overrides) and writes one "A {json}" line per operation, as listed in
 *	docs/audit-protocol.md: login, logout, select, search, read, append,
 *	deliver, copy, move, flags, delete, expunge, mailbox-create,
 *	mailbox-rename, mailbox-delete.
 *
 * SYNOPSIS
 *	mail_plugins = $mail_plugins notify mailkeep_audit
 *	plugin {
 *	  mailkeep_audit_socket = /run/mailkeep/audit.sock
 *	  mailkeep_audit_required = yes
 *	}
 *
 *	void mailkeep_audit_plugin_init(struct module *module);
 *	void mailkeep_audit_plugin_deinit(void);
 *	const char *mailkeep_audit_plugin_version;
 *	const char *mailkeep_audit_plugin_dependencies[];
 *
 * DESCRIPTION
 *	Sessions. The mail_user_created hook sends "login" (not for lmtp and
 *	lda, not for autocreated users such as shared-namespace owners and
 *	lmtp's raw user, not for an unhibernated IMAP session). With
 *	mailkeep_audit_required (default yes), a session whose user cannot
 *	reach the daemon fails: the hook sets user->error and Dovecot refuses
 *	the login (for lmtp: a temporary delivery failure). Once a session
 *	runs, a record that cannot be sent is logged as
 *	"mailkeep_audit: record not delivered: <json>" and the operation goes
 *	on. The user's deinit sends "logout" (not for lmtp and lda) and then
 *	an S sync, so that the session's records (deliveries too) are on disk
 *	before the process lets go of the user; a sync that fails or takes
 *	over 5 s is logged, the session still ends.
 *
 *	Records from the doveadm service carry "admin": MAILKEEP_ADMIN, else
 *	SUDO_USER, else USER, else "". doveadm keeps only USER and HOME from
 *	its environment when it re-executes itself through doveconf (config
 *	read from a file); the others need import_environment in
 *	dovecot.conf. In a doveadm server process (started by the master)
 *	only MAILKEEP_ADMIN counts: the rest of its environment is the
 *	master's.
 *
 *	select: Dovecot 2.3 has no mailbox "reason", so SELECT and EXAMINE
 *	are recognised by imap's mailbox_get_open_status() call asking for
 *	STATUS_FIRST_UNSEEN_SEQ, which no other caller in 2.3.19 asks for.
 *	"readonly" is MAILBOX_FLAG_READONLY, i.e. EXAMINE.
 *
 *	search: mailbox_search_init() in a transaction whose reason is an
 *	IMAP SEARCH, UID SEARCH, SORT, UID SORT, THREAD or UID THREAD command
 *	(imap names transactions after the command), "mail_thread_init"
 *	(THREAD REFERENCES/REFS in imap), or doveadm's "search". One record
 *	per transaction; searches started from inside another search
 *	(INTHREAD) are not recorded. "query" is the search in IMAP syntax
 *	(mail_search_arg_to_imap()), without doveadm's mailbox keys.
 *
 *	read: decided by the mail's get_stream_reason, which Dovecot sets
 *	for each body read: "full mail", "mail body", "MIME part"
 *	(lib-imap-storage/imap-msgpart.c), "binary stream"
 *	(index-mail-binary.c, also caught at get_binary_stream() because a
 *	cached binary part does not reopen the stream), "RETR" and "TOP"
 *	(pop3). "mail stream" (mail_get_stream()'s default) counts only in a
 *	doveadm "fetch" transaction: maildir and mbox use it internally to
 *	find sizes. Header reads, search, fts, prefetch, access, copying and
 *	dsync are not reads. One record per message and part per
 *	transaction. "peek" is true for BODY.PEEK/BINARY.PEEK (imap marks a
 *	fetch that sets \Seen with MAILBOX_TRANSACTION_FLAG_HIDE), for any
 *	fetch in an EXAMINEd mailbox, TOP and doveadm fetch; false for
 *	BODY[] and RETR even when the message was already \Seen.
 *
 *	append, deliver, copy, move, flags, delete, expunge: from the notify
 *	plugin, kept per transaction and sent at commit (nothing is sent for
 *	a transaction rolled back); saved and copied messages get their UIDs
 *	from the commit's saved_uids. A move's expunge of the source is part
 *	of the "move" record and not sent again as "expunge". Several flag
 *	changes of one message in one transaction make one "flags" record
 *	with the final state.
 *
 *	Cost: no mailbox is opened and no message read for the records; the
 *	plugin reads Message-ID with mail_get_first_header() (normally from
 *	the cache, before the body stream is opened so that the caller's
 *	stream position is untouched) and the mailbox GUID once per mailbox
 *	object.
 */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "seq-range-array.h"
#include "mail-user.h"
#include "mail-storage-private.h"
#include "mail-search.h"
#include "master-interface.h"
#include "notify-plugin.h"
#include "../mk-dovecot-client.h"

#include <stdlib.h>

#define MK_AUDIT_LOG "mailkeep_audit"
/* Longest query kept; the rest of the line has to fit in 64 KiB. */
#define MK_AUDIT_QUERY_MAX 16384

#define MK_AUDIT_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, mk_audit_user_module)
#define MK_AUDIT_BOX_CONTEXT(obj) \
	MODULE_CONTEXT(obj, mk_audit_storage_module)
#define MK_AUDIT_TXN_CONTEXT(obj) \
	MODULE_CONTEXT(obj, mk_audit_storage_module)
#define MK_AUDIT_MAIL_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, mk_audit_mail_module)

extern const char *mailkeep_audit_plugin_version;
extern const char *mailkeep_audit_plugin_dependencies[];
void mailkeep_audit_plugin_init(struct module *module);
void mailkeep_audit_plugin_deinit(void);

enum mk_audit_part {
	MK_AUDIT_PART_NONE = 0,
	MK_AUDIT_PART_FULL,
	MK_AUDIT_PART_BODY,
	MK_AUDIT_PART_MIME,
	MK_AUDIT_PART_BINARY,
	MK_AUDIT_PART_RETR,
	MK_AUDIT_PART_TOP,
	MK_AUDIT_PART_DOVEADM_FETCH
};

struct mk_audit_user {
	union mail_user_module_context module_ctx;
	struct mkdc_conn *conn;
	const char *username, *service, *session, *ip;
	/* NULL unless service is doveadm */
	const char *admin;

	bool imap:1;
	bool doveadm:1;
	/* lmtp or lda: no login/logout, saves are "deliver" */
	bool delivery:1;
	/* inside mailbox_search_init(): nested searches are internal */
	bool in_search_init:1;
	/* anything sent since the last sync */
	bool unsynced:1;
};

struct mk_audit_mailbox {
	union mailbox_module_context module_ctx;
	/* hex, once known */
	const char *guid;
};

struct mk_audit_mail {
	union mail_module_context module_ctx;
	/* UID just moved away; its expunge belongs to the move record */
	uint32_t moved_uid;
	bool in_binary;
};

enum mk_audit_pending_kind {
	MK_AUDIT_PENDING_OTHER = 0,
	/* takes the next of the commit's saved UIDs */
	MK_AUDIT_PENDING_SAVED,
	MK_AUDIT_PENDING_FLAGS,
	MK_AUDIT_PENDING_DELETE
};

/* A record waiting for the transaction's commit. */
struct mk_audit_pending {
	/* the JSON object without its closing brace */
	const char *head;
	enum mk_audit_pending_kind kind;
	uint32_t uid;
};

struct mk_audit_txn {
	union mailbox_transaction_module_context module_ctx;
	pool_t pool;
	struct mk_audit_user *auser;
	ARRAY(struct mk_audit_pending) pending;
	/* uid -> bitmask of 1 << enum mk_audit_part already recorded */
	HASH_TABLE(void *, void *) reads;
	bool search_recorded;
};

struct mk_audit_delete {
	struct mk_audit_user *auser;
	char *guid;
};

static MODULE_CONTEXT_DEFINE_INIT(mk_audit_user_module,
				  &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(mk_audit_storage_module,
				  &mail_storage_module_register);
static MODULE_CONTEXT_DEFINE_INIT(mk_audit_mail_module,
				  &mail_module_register);

static struct notify_context *mk_audit_notify_ctx;

static const char *const mk_audit_part_names[] = {
	[MK_AUDIT_PART_NONE] = NULL,
	[MK_AUDIT_PART_FULL] = "full",
	[MK_AUDIT_PART_BODY] = "body",
	[MK_AUDIT_PART_MIME] = "mime-part",
	[MK_AUDIT_PART_BINARY] = "binary",
	[MK_AUDIT_PART_RETR] = "retr",
	[MK_AUDIT_PART_TOP] = "top",
	[MK_AUDIT_PART_DOVEADM_FETCH] = "full",
};

/* Shared-namespace owners and other autocreated users act for the
   session user that created them. */
static struct mk_audit_user *mk_audit_user_get(struct mail_user *user)
{
	while (user->creator != NULL)
		user = user->creator;
	return MK_AUDIT_USER_CONTEXT(user);
}

static const char *mk_audit_admin_name(void)
{
	static const char *const vars[] = {
		"MAILKEEP_ADMIN", "SUDO_USER", "USER"
	};
	/* A doveadm server process (doveadm -S, the HTTP API, replication)
	   was started by the master, which leaves MASTER_UID_ENV set. Its
	   environment is the master's: SUDO_USER and USER would name
	   whoever started Dovecot, not the requester. Only an explicitly
	   configured MAILKEEP_ADMIN counts there. */
	unsigned int n = getenv(MASTER_UID_ENV) != NULL ? 1 : N_ELEMENTS(vars);
	const char *value;
	unsigned int i;

	for (i = 0; i < n; i++) {
		value = getenv(vars[i]);
		if (value != NULL && *value != '\0')
			return value;
	}
	return "";
}

static void
mk_audit_json_begin(string_t *json, const char *op,
		    const struct mk_audit_user *auser)
{
	mkdc_json_begin(json);
	mkdc_json_str(json, "op", op);
	mkdc_json_str(json, "user", auser->username);
	mkdc_json_str(json, "session", auser->session);
	mkdc_json_str(json, "service", auser->service);
	mkdc_json_str(json, "ip", auser->ip);
	mkdc_json_str(json, "admin", auser->admin);
}

static void mk_audit_send(struct mk_audit_user *auser, string_t *json)
{
	auser->unsynced = TRUE;
	(void)mkdc_send(auser->conn, 'A', MK_AUDIT_LOG, json);
}

/* Queued records go out with the next send, at the end of the
   transaction that made them, or when the queue is full. */
static void mk_audit_queue(struct mk_audit_user *auser, string_t *json)
{
	auser->unsynced = TRUE;
	(void)mkdc_queue(auser->conn, 'A', MK_AUDIT_LOG, json);
}

static const char *mk_audit_box_guid(struct mailbox *box)
{
	struct mk_audit_mailbox *abox = MK_AUDIT_BOX_CONTEXT(box);
	struct mailbox_metadata metadata;

	if (abox == NULL)
		return NULL;
	/* Only a success is kept: a mailbox object may be asked before it
	   exists (CREATE) and again after. */
	if (abox->guid == NULL &&
	    mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &metadata) == 0)
		abox->guid = p_strdup(box->pool,
				      guid_128_to_string(metadata.guid));
	return abox->guid;
}

static void mk_audit_json_box(string_t *json, struct mailbox *box)
{
	mkdc_json_str(json, "mailbox", mailbox_get_vname(box));
	mkdc_json_str(json, "mailbox_guid", mk_audit_box_guid(box));
}

static const char *mk_audit_message_id(struct mail *mail)
{
	const char *value;

	if (mail_get_first_header(mail, "Message-ID", &value) <= 0)
		return NULL;
	return value;
}

static void mk_audit_json_flags(string_t *json, struct mail *mail)
{
	enum mail_flags flags = mail_get_flags(mail);
	const char *names[6];
	unsigned int n = 0;

	if ((flags & MAIL_ANSWERED) != 0)
		names[n++] = "\\Answered";
	if ((flags & MAIL_FLAGGED) != 0)
		names[n++] = "\\Flagged";
	if ((flags & MAIL_DELETED) != 0)
		names[n++] = "\\Deleted";
	if ((flags & MAIL_SEEN) != 0)
		names[n++] = "\\Seen";
	if ((flags & MAIL_DRAFT) != 0)
		names[n++] = "\\Draft";
	names[n] = NULL;
	mkdc_json_str_array(json, "flags", names);
	mkdc_json_str_array(json, "keywords", mail_get_keywords(mail));
}

/*
 * Sessions
 */

static void mk_audit_user_deinit(struct mail_user *user)
{
	struct mk_audit_user *auser = MK_AUDIT_USER_CONTEXT(user);

	T_BEGIN {
		if (!auser->delivery) {
			string_t *json = t_str_new(256);

			mk_audit_json_begin(json, "logout", auser);
			mkdc_json_end(json);
			mk_audit_send(auser, json);
		}
		if (auser->unsynced)
			(void)mkdc_sync(auser->conn, MK_AUDIT_LOG);
	} T_END;
	auser->module_ctx.super.deinit(user);
}

static bool mk_audit_setting_yes(struct mail_user *user, const char *name,
				 bool default_value)
{
	const char *value = mail_user_plugin_getenv(user, name);

	if (value == NULL || *value == '\0')
		return default_value;
	return strcasecmp(value, "yes") == 0 || strcasecmp(value, "y") == 0 ||
		strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0;
}

static void mk_audit_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct mk_audit_user *auser;
	const char *path, *error;
	struct mkdc_conn *conn;

	/* An earlier plugin failed the session already: no session. */
	if (user->autocreated || user->error != NULL)
		return;

	path = mail_user_plugin_getenv(user, "mailkeep_audit_socket");
	if (path == NULL || *path == '\0')
		path = MKDC_DEFAULT_SOCKET;
	conn = mkdc_conn_get(path);
	if (mk_audit_setting_yes(user, "mailkeep_audit_required", TRUE) &&
	    mkdc_conn_check(conn, MK_AUDIT_LOG, &error) < 0) {
		/* As mail-crypt does: Dovecot fails mail_user_init() and so
		   the login. No context is set, so nothing else runs. */
		i_error(MK_AUDIT_LOG": refusing session of %s: %s",
			user->username, error);
		user->error = p_strdup_printf(user->pool,
			MK_AUDIT_LOG": audit service unavailable: %s", error);
		return;
	}

	auser = p_new(user->pool, struct mk_audit_user, 1);
	auser->conn = conn;
	auser->username = user->username;
	auser->service = user->service;
	auser->session = user->session_id;
	if (user->conn.remote_ip != NULL && user->conn.remote_ip->family != 0)
		auser->ip = p_strdup(user->pool,
				     net_ip2addr(user->conn.remote_ip));
	auser->imap = strcmp(user->service, "imap") == 0;
	auser->doveadm = strcmp(user->service, "doveadm") == 0;
	auser->delivery = strcmp(user->service, "lmtp") == 0 ||
		strcmp(user->service, "lda") == 0;
	if (auser->doveadm)
		auser->admin = p_strdup(user->pool, mk_audit_admin_name());

	auser->module_ctx.super = *v;
	user->vlast = &auser->module_ctx.super;
	v->deinit = mk_audit_user_deinit;
	MODULE_CONTEXT_SET(user, mk_audit_user_module, auser);

	if (auser->delivery || user->session_restored)
		return;
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "login", auser);
		mkdc_json_str(json, "mech", user->auth_mech);
		mkdc_json_end(json);
		mk_audit_send(auser, json);
	} T_END;
}

/*
 * select and search (mailbox vfuncs)
 */

static int
mk_audit_get_status(struct mailbox *box, enum mailbox_status_items items,
		    struct mailbox_status *status_r)
{
	struct mk_audit_mailbox *abox = MK_AUDIT_BOX_CONTEXT(box);
	struct mk_audit_user *auser;

	if (abox->module_ctx.super.get_status(box, items, status_r) < 0)
		return -1;
	if ((items & STATUS_FIRST_UNSEEN_SEQ) == 0)
		return 0;
	auser = mk_audit_user_get(box->storage->user);
	if (auser == NULL || !auser->imap)
		return 0;
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "select", auser);
		mk_audit_json_box(json, box);
		mkdc_json_bool(json, "readonly",
			       (box->flags & MAILBOX_FLAG_READONLY) != 0);
		mkdc_json_end(json);
		mk_audit_send(auser, json);
	} T_END;
	return 0;
}

/* The search command this transaction belongs to, or NULL when the search
   is internal. imap names a transaction "<command> <args>". */
static const char *
mk_audit_search_command(const struct mk_audit_user *auser,
			const struct mailbox_transaction_context *t)
{
	static const char *const imap_cmds[] = {
		"UID SEARCH", "UID SORT", "UID THREAD",
		"SEARCH", "SORT", "THREAD", NULL
	};
	const char *reason = t->reason;
	unsigned int i;
	size_t len;

	if (reason == NULL)
		return NULL;
	if (auser->doveadm)
		return strcmp(reason, "search") == 0 ? "search" : NULL;
	if (!auser->imap)
		return NULL;
	for (i = 0; imap_cmds[i] != NULL; i++) {
		len = strlen(imap_cmds[i]);
		if (strncmp(reason, imap_cmds[i], len) == 0 &&
		    (reason[len] == ' ' || reason[len] == '\0'))
			return imap_cmds[i];
	}
	/* THREAD REFERENCES and REFS run their search inside
	   mail_thread_init(), in a transaction of that name. */
	if (strcmp(reason, "mail_thread_init") == 0)
		return "THREAD";
	return NULL;
}

/* The query in IMAP SEARCH syntax. doveadm puts the mailbox into the
   query ("mailbox INBOX"), which IMAP cannot express; the record names the
   mailbox anyway, so such top-level keys are left out. */
static bool
mk_audit_search_query(string_t *dest, const struct mail_search_arg *args,
		      const char **error_r)
{
	const struct mail_search_arg *arg;

	for (arg = args; arg != NULL; arg = arg->next) {
		if (arg->type == SEARCH_MAILBOX ||
		    arg->type == SEARCH_MAILBOX_GUID ||
		    arg->type == SEARCH_MAILBOX_GLOB)
			continue;
		if (str_len(dest) > 0)
			str_append_c(dest, ' ');
		if (!mail_search_arg_to_imap(dest, arg, error_r))
			return FALSE;
	}
	if (str_len(dest) == 0)
		str_append(dest, "ALL");
	return TRUE;
}

static struct mail_search_context *
mk_audit_search_init(struct mailbox_transaction_context *t,
		     struct mail_search_args *args,
		     const enum mail_sort_type *sort_program,
		     enum mail_fetch_field wanted_fields,
		     struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct mk_audit_mailbox *abox = MK_AUDIT_BOX_CONTEXT(t->box);
	struct mk_audit_user *auser = mk_audit_user_get(t->box->storage->user);
	struct mk_audit_txn *atxn = MK_AUDIT_TXN_CONTEXT(t);
	struct mail_search_context *ctx;
	const char *command = NULL;
	bool outer;

	if (auser == NULL) {
		return abox->module_ctx.super.search_init(t, args,
			sort_program, wanted_fields, wanted_headers);
	}
	outer = !auser->in_search_init;
	if (outer && (atxn == NULL || !atxn->search_recorded))
		command = mk_audit_search_command(auser, t);

	auser->in_search_init = TRUE;
	ctx = abox->module_ctx.super.search_init(t, args, sort_program,
						 wanted_fields, wanted_headers);
	if (outer)
		auser->in_search_init = FALSE;
	if (command == NULL)
		return ctx;
	if (atxn != NULL)
		atxn->search_recorded = TRUE;

	T_BEGIN {
		string_t *json = t_str_new(256);
		string_t *query = t_str_new(128);
		const char *error;

		mk_audit_json_begin(json, "search", auser);
		mk_audit_json_box(json, t->box);
		mkdc_json_str(json, "command", command);
		if (mk_audit_search_query(query, args->args, &error)) {
			mkdc_json_str_max(json, "query", str_c(query),
					  MK_AUDIT_QUERY_MAX);
		} else {
			mkdc_json_str(json, "query_error", error);
		}
		mkdc_json_end(json);
		mk_audit_send(auser, json);
	} T_END;
	return ctx;
}

static void mk_audit_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	struct mk_audit_mailbox *abox;

	if (mk_audit_user_get(box->storage->user) == NULL)
		return;
	abox = p_new(box->pool, struct mk_audit_mailbox, 1);
	abox->module_ctx.super = *v;
	box->vlast = &abox->module_ctx.super;
	v->get_status = mk_audit_get_status;
	v->search_init = mk_audit_search_init;
	MODULE_CONTEXT_SET(box, mk_audit_storage_module, abox);
}

/*
 * read (mail vfuncs)
 */

static enum mk_audit_part
mk_audit_read_part(const struct mk_audit_user *auser, struct mail *mail,
		   const char *reason)
{
	if (reason == NULL || *reason == '\0')
		return MK_AUDIT_PART_NONE;
	switch (reason[0]) {
	case 'f':
		if (strcmp(reason, "full mail") == 0)
			return MK_AUDIT_PART_FULL;
		break;
	case 'm':
		if (strcmp(reason, "mail body") == 0)
			return MK_AUDIT_PART_BODY;
		if (strcmp(reason, "mail stream") == 0 && auser->doveadm &&
		    mail->transaction->reason != NULL &&
		    strcmp(mail->transaction->reason, "fetch") == 0)
			return MK_AUDIT_PART_DOVEADM_FETCH;
		break;
	case 'M':
		if (strcmp(reason, "MIME part") == 0)
			return MK_AUDIT_PART_MIME;
		break;
	case 'b':
		if (strcmp(reason, "binary stream") == 0)
			return MK_AUDIT_PART_BINARY;
		break;
	case 'R':
		if (strcmp(reason, "RETR") == 0)
			return MK_AUDIT_PART_RETR;
		break;
	case 'T':
		if (strcmp(reason, "TOP") == 0)
			return MK_AUDIT_PART_TOP;
		break;
	}
	return MK_AUDIT_PART_NONE;
}

static bool mk_audit_read_is_peek(struct mail *mail, enum mk_audit_part part)
{
	switch (part) {
	case MK_AUDIT_PART_RETR:
		return FALSE;
	case MK_AUDIT_PART_TOP:
	case MK_AUDIT_PART_DOVEADM_FETCH:
		return TRUE;
	default:
		/* imap's FETCH sets HIDE exactly when the fetch adds \Seen
		   (BODY[], BINARY[], RFC822, RFC822.TEXT). */
		return (mail->transaction->flags &
			MAILBOX_TRANSACTION_FLAG_HIDE) == 0 ||
			mailbox_is_readonly(mail->box);
	}
}

/* Returns TRUE if this (message, part) was already recorded in the
   transaction; otherwise remembers it. */
static bool
mk_audit_read_seen(struct mail *mail, enum mk_audit_part part)
{
	struct mk_audit_txn *atxn = MK_AUDIT_TXN_CONTEXT(mail->transaction);
	uintptr_t mask, bit = (uintptr_t)1 << part;
	void *key = POINTER_CAST(mail->uid);

	if (atxn == NULL || mail->uid == 0)
		return FALSE;
	if (!hash_table_is_created(atxn->reads))
		hash_table_create_direct(&atxn->reads, default_pool, 0);
	mask = POINTER_CAST_TO(hash_table_lookup(atxn->reads, key), uintptr_t);
	if ((mask & bit) != 0)
		return TRUE;
	hash_table_update(atxn->reads, key, POINTER_CAST(mask | bit));
	return FALSE;
}

static void
mk_audit_send_read(struct mk_audit_user *auser, struct mail *mail,
		   enum mk_audit_part part, const char *message_id)
{
	string_t *json = t_str_new(256);

	mk_audit_json_begin(json, "read", auser);
	mk_audit_json_box(json, mail->box);
	mkdc_json_uint(json, "uid", mail->uid);
	mkdc_json_str(json, "message_id", message_id);
	mkdc_json_str(json, "part", mk_audit_part_names[part]);
	mkdc_json_bool(json, "peek", mk_audit_read_is_peek(mail, part));
	mkdc_json_end(json);
	/* An IMAP FETCH reads many messages in one transaction, which ends
	   with the command: its reads go out together then. POP3 keeps one
	   transaction for the whole session, and doveadm may never end
	   one before it exits, so their reads go out at once. */
	if (MK_AUDIT_TXN_CONTEXT(mail->transaction) != NULL &&
	    part != MK_AUDIT_PART_RETR && part != MK_AUDIT_PART_TOP &&
	    part != MK_AUDIT_PART_DOVEADM_FETCH)
		mk_audit_queue(auser, json);
	else
		mk_audit_send(auser, json);
}

/* The virtual plugin reads through to the backend mail, which records
   the read under its real mailbox; recording the virtual one too would
   count it twice. */
static bool mk_audit_mail_is_virtual(struct mail *mail)
{
	return strcmp(mail->box->storage->name, "virtual") == 0;
}

static int
mk_audit_mail_get_stream(struct mail *_mail, bool get_body,
			 struct message_size *hdr_size,
			 struct message_size *body_size,
			 struct istream **stream_r)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mk_audit_mail *amail = MK_AUDIT_MAIL_CONTEXT(mail);
	struct mk_audit_user *auser =
		mk_audit_user_get(_mail->box->storage->user);
	const char *reason = mail->get_stream_reason;
	const char *message_id = NULL;
	enum mk_audit_part part = MK_AUDIT_PART_NONE;

	if (auser != NULL && get_body && !_mail->saving &&
	    !mk_audit_mail_is_virtual(_mail))
		part = mk_audit_read_part(auser, _mail, reason);
	/* get_binary_stream() records its own read. */
	if (part == MK_AUDIT_PART_BINARY && amail->in_binary)
		part = MK_AUDIT_PART_NONE;
	if (part != MK_AUDIT_PART_NONE && mk_audit_read_seen(_mail, part))
		part = MK_AUDIT_PART_NONE;
	if (part != MK_AUDIT_PART_NONE) {
		/* Look the header up before opening the stream: a header
		   parse afterwards would move the stream the caller gets.
		   The lookup resets get_stream_reason, which the storage
		   still wants for its events. */
		message_id = mk_audit_message_id(_mail);
		mail->get_stream_reason = reason;
	}
	if (amail->module_ctx.super.get_stream(_mail, get_body, hdr_size,
					       body_size, stream_r) < 0)
		return -1;
	if (part != MK_AUDIT_PART_NONE)
		mk_audit_send_read(auser, _mail, part, message_id);
	return 0;
}

static int
mk_audit_mail_get_binary_stream(struct mail *_mail,
				const struct message_part *part,
				bool include_hdr, uoff_t *size_r,
				unsigned int *lines_r, bool *binary_r,
				struct istream **stream_r)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mk_audit_mail *amail = MK_AUDIT_MAIL_CONTEXT(mail);
	struct mk_audit_user *auser =
		mk_audit_user_get(_mail->box->storage->user);
	const char *message_id = NULL;
	bool record;
	int ret;

	/* Without stream_r this is only a size lookup (BINARY.SIZE). */
	record = stream_r != NULL && auser != NULL && !_mail->saving &&
		!mk_audit_mail_is_virtual(_mail) &&
		!mk_audit_read_seen(_mail, MK_AUDIT_PART_BINARY);
	if (record)
		message_id = mk_audit_message_id(_mail);

	amail->in_binary = TRUE;
	ret = amail->module_ctx.super.get_binary_stream(_mail, part,
		include_hdr, size_r, lines_r, binary_r, stream_r);
	amail->in_binary = FALSE;
	if (ret == 0 && record) {
		mk_audit_send_read(auser, _mail, MK_AUDIT_PART_BINARY,
				   message_id);
	}
	return ret;
}

static void mk_audit_mail_allocated(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mail_vfuncs *v = mail->vlast;
	struct mk_audit_mail *amail;

	if (mk_audit_user_get(_mail->box->storage->user) == NULL)
		return;
	amail = p_new(mail->pool, struct mk_audit_mail, 1);
	amail->module_ctx.super = *v;
	mail->vlast = &amail->module_ctx.super;
	v->get_stream = mk_audit_mail_get_stream;
	v->get_binary_stream = mk_audit_mail_get_binary_stream;
	MODULE_CONTEXT_SET(mail, mk_audit_mail_module, amail);
}

/*
 * Changes (notify plugin), sent at commit
 */

static void *
mk_audit_txn_begin(struct mailbox_transaction_context *t)
{
	struct mk_audit_user *auser = mk_audit_user_get(t->box->storage->user);
	struct mk_audit_txn *atxn;
	pool_t pool;

	if (auser == NULL)
		return NULL;
	pool = pool_alloconly_create("mailkeep audit transaction", 1024);
	atxn = p_new(pool, struct mk_audit_txn, 1);
	atxn->pool = pool;
	atxn->auser = auser;
	p_array_init(&atxn->pending, pool, 4);
	/* The read and search hooks find the context through the
	   transaction. */
	MODULE_CONTEXT_SET(t, mk_audit_storage_module, atxn);
	return atxn;
}

static void
mk_audit_txn_add(struct mk_audit_txn *atxn, string_t *json_head,
		 enum mk_audit_pending_kind kind, uint32_t uid)
{
	struct mk_audit_pending *p = array_append_space(&atxn->pending);

	p->head = p_strdup(atxn->pool, str_c(json_head));
	p->kind = kind;
	p->uid = uid;
}

static void mk_audit_mail_save(void *txn, struct mail *mail)
{
	struct mk_audit_txn *atxn = txn;

	if (atxn == NULL)
		return;
	/* Without this the commit has no saved_uids to give. */
	mail->transaction->flags |= MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS;
	T_BEGIN {
		string_t *json = t_str_new(256);
		uoff_t size;

		mk_audit_json_begin(json, atxn->auser->delivery ?
				    "deliver" : "append", atxn->auser);
		mk_audit_json_box(json, mail->box);
		mkdc_json_str(json, "message_id", mk_audit_message_id(mail));
		if (mail_get_virtual_size(mail, &size) == 0)
			mkdc_json_uint(json, "size", size);
		mk_audit_txn_add(atxn, json, MK_AUDIT_PENDING_SAVED, 0);
	} T_END;
}

static void mk_audit_mail_copy(void *txn, struct mail *src, struct mail *dst)
{
	struct mk_audit_txn *atxn = txn;
	struct mail_private *src_pmail = (struct mail_private *)src;
	struct mail_save_context *save_ctx = dst->transaction->save_ctx;
	struct mailbox *src_box = src->box;
	bool moving = save_ctx != NULL && save_ctx->moving;

	if (atxn == NULL)
		return;
	if (src_pmail->vmail != NULL) {
		/* copying from a virtual mailbox: name the one the user
		   sees */
		src_box = src_pmail->vmail->box;
	}
	if (moving) {
		struct mk_audit_mail *amail =
			MODULE_CONTEXT(src_pmail, mk_audit_mail_module);

		if (amail != NULL)
			amail->moved_uid = src->uid;
	}
	dst->transaction->flags |= MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS;
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, moving ? "move" : "copy",
				    atxn->auser);
		mkdc_json_str(json, "from_mailbox", mailbox_get_vname(src_box));
		mkdc_json_str(json, "from_mailbox_guid",
			      mk_audit_box_guid(src->box));
		mkdc_json_uint(json, "from_uid", src->uid);
		mk_audit_json_box(json, dst->box);
		mkdc_json_str(json, "message_id", mk_audit_message_id(src));
		mk_audit_txn_add(atxn, json, MK_AUDIT_PENDING_SAVED, 0);
	} T_END;
}

static void mk_audit_mail_expunge(void *txn, struct mail *mail)
{
	struct mk_audit_txn *atxn = txn;
	struct mail_private *pmail = (struct mail_private *)mail;
	struct mk_audit_mail *amail =
		MODULE_CONTEXT(pmail, mk_audit_mail_module);

	if (atxn == NULL)
		return;
	if (amail != NULL && amail->moved_uid != 0 &&
	    amail->moved_uid == mail->uid) {
		amail->moved_uid = 0;
		return;
	}
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "expunge", atxn->auser);
		mk_audit_json_box(json, mail->box);
		mkdc_json_uint(json, "uid", mail->uid);
		mkdc_json_str(json, "message_id", mk_audit_message_id(mail));
		if (pmail->autoexpunged)
			mkdc_json_bool(json, "autoexpunge", TRUE);
		mk_audit_txn_add(atxn, json, MK_AUDIT_PENDING_OTHER, mail->uid);
	} T_END;
}

/* The flags record of a message, replacing an earlier one of the same
   message in this transaction (STORE with flags and keywords changes
   both, one after the other). */
static void mk_audit_flags_changed(struct mk_audit_txn *atxn,
				   struct mail *mail)
{
	struct mk_audit_pending *p;
	unsigned int count;

	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "flags", atxn->auser);
		mk_audit_json_box(json, mail->box);
		mkdc_json_uint(json, "uid", mail->uid);
		mkdc_json_str(json, "message_id", mk_audit_message_id(mail));
		mk_audit_json_flags(json, mail);

		p = array_get_modifiable(&atxn->pending, &count);
		if (count > 0 && p[count - 1].kind == MK_AUDIT_PENDING_DELETE &&
		    p[count - 1].uid == mail->uid) {
			/* flags with \Deleted, its delete, then keywords */
			count--;
		}
		if (count > 0 && p[count - 1].kind == MK_AUDIT_PENDING_FLAGS &&
		    p[count - 1].uid == mail->uid) {
			p[count - 1].head = p_strdup(atxn->pool, str_c(json));
		} else {
			mk_audit_txn_add(atxn, json, MK_AUDIT_PENDING_FLAGS,
					 mail->uid);
		}
	} T_END;
}

static void
mk_audit_mail_update_flags(void *txn, struct mail *mail,
			   enum mail_flags old_flags)
{
	struct mk_audit_txn *atxn = txn;
	enum mail_flags new_flags;

	if (atxn == NULL)
		return;
	mk_audit_flags_changed(atxn, mail);
	new_flags = mail_get_flags(mail);
	if ((old_flags & MAIL_DELETED) != 0 || (new_flags & MAIL_DELETED) == 0)
		return;
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "delete", atxn->auser);
		mk_audit_json_box(json, mail->box);
		mkdc_json_uint(json, "uid", mail->uid);
		mkdc_json_str(json, "message_id", mk_audit_message_id(mail));
		mk_audit_txn_add(atxn, json, MK_AUDIT_PENDING_DELETE,
				 mail->uid);
	} T_END;
}

static void
mk_audit_mail_update_keywords(void *txn, struct mail *mail,
			      const char *const *old_keywords ATTR_UNUSED)
{
	struct mk_audit_txn *atxn = txn;

	if (atxn != NULL)
		mk_audit_flags_changed(atxn, mail);
}

static void mk_audit_txn_free(struct mk_audit_txn *atxn)
{
	if (hash_table_is_created(atxn->reads))
		hash_table_destroy(&atxn->reads);
	pool_unref(&atxn->pool);
}

static void
mk_audit_txn_commit(void *txn, struct mail_transaction_commit_changes *changes)
{
	struct mk_audit_txn *atxn = txn;
	const struct mk_audit_pending *p;
	struct seq_range_iter iter;
	unsigned int n = 0;
	uint32_t uid;

	if (atxn == NULL)
		return;
	seq_range_array_iter_init(&iter, &changes->saved_uids);
	array_foreach(&atxn->pending, p) T_BEGIN {
		string_t *json = t_str_new(strlen(p->head) + 32);

		str_append(json, p->head);
		if (p->kind == MK_AUDIT_PENDING_SAVED &&
		    seq_range_array_iter_nth(&iter, n++, &uid))
			mkdc_json_uint(json, "uid", uid);
		mkdc_json_end(json);
		mk_audit_queue(atxn->auser, json);
	} T_END;
	(void)mkdc_flush(atxn->auser->conn, MK_AUDIT_LOG);
	mk_audit_txn_free(atxn);
}

static void mk_audit_txn_rollback(void *txn)
{
	struct mk_audit_txn *atxn = txn;

	if (atxn != NULL) {
		/* the reads happened even though nothing changed */
		(void)mkdc_flush(atxn->auser->conn, MK_AUDIT_LOG);
		mk_audit_txn_free(atxn);
	}
}

/*
 * Mailbox changes (notify plugin)
 */

static void mk_audit_mailbox_create(struct mailbox *box)
{
	struct mk_audit_user *auser = mk_audit_user_get(box->storage->user);

	if (auser == NULL)
		return;
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "mailbox-create", auser);
		mk_audit_json_box(json, box);
		mkdc_json_end(json);
		mk_audit_send(auser, json);
	} T_END;
}

static void *mk_audit_mailbox_delete_begin(struct mailbox *box)
{
	struct mk_audit_user *auser = mk_audit_user_get(box->storage->user);
	struct mk_audit_delete *del;

	if (auser == NULL)
		return NULL;
	/* Ask now: after the delete the GUID is gone with the index. */
	del = i_new(struct mk_audit_delete, 1);
	del->auser = auser;
	del->guid = i_strdup(mk_audit_box_guid(box));
	return del;
}

static void mk_audit_mailbox_delete_rollback(void *txn)
{
	struct mk_audit_delete *del = txn;

	if (del == NULL)
		return;
	i_free(del->guid);
	i_free(del);
}

static void mk_audit_mailbox_delete_commit(void *txn, struct mailbox *box)
{
	struct mk_audit_delete *del = txn;

	if (del == NULL)
		return;
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "mailbox-delete", del->auser);
		mkdc_json_str(json, "mailbox", mailbox_get_vname(box));
		mkdc_json_str(json, "mailbox_guid", del->guid);
		mkdc_json_end(json);
		mk_audit_send(del->auser, json);
	} T_END;
	mk_audit_mailbox_delete_rollback(del);
}

static void mk_audit_mailbox_rename(struct mailbox *src, struct mailbox *dest)
{
	struct mk_audit_user *auser = mk_audit_user_get(src->storage->user);

	if (auser == NULL)
		return;
	T_BEGIN {
		string_t *json = t_str_new(256);

		mk_audit_json_begin(json, "mailbox-rename", auser);
		mkdc_json_str(json, "from_mailbox", mailbox_get_vname(src));
		mk_audit_json_box(json, dest);
		mkdc_json_end(json);
		mk_audit_send(auser, json);
	} T_END;
}

static const struct notify_vfuncs mk_audit_notify_vfuncs = {
	.mail_transaction_begin = mk_audit_txn_begin,
	.mail_save = mk_audit_mail_save,
	.mail_copy = mk_audit_mail_copy,
	.mail_expunge = mk_audit_mail_expunge,
	.mail_update_flags = mk_audit_mail_update_flags,
	.mail_update_keywords = mk_audit_mail_update_keywords,
	.mail_transaction_commit = mk_audit_txn_commit,
	.mail_transaction_rollback = mk_audit_txn_rollback,
	.mailbox_create = mk_audit_mailbox_create,
	.mailbox_delete_begin = mk_audit_mailbox_delete_begin,
	.mailbox_delete_commit = mk_audit_mailbox_delete_commit,
	.mailbox_delete_rollback = mk_audit_mailbox_delete_rollback,
	.mailbox_rename = mk_audit_mailbox_rename,
};

static struct mail_storage_hooks mk_audit_storage_hooks = {
	.mail_user_created = mk_audit_mail_user_created,
	.mailbox_allocated = mk_audit_mailbox_allocated,
	.mail_allocated = mk_audit_mail_allocated,
};

const char *mailkeep_audit_plugin_version = DOVECOT_ABI_VERSION;
const char *mailkeep_audit_plugin_dependencies[] = { "notify", NULL };

void mailkeep_audit_plugin_init(struct module *module)
{
	mkdc_init();
	mk_audit_notify_ctx = notify_register(&mk_audit_notify_vfuncs);
	mail_storage_hooks_add(module, &mk_audit_storage_hooks);
}

void mailkeep_audit_plugin_deinit(void)
{
	mail_storage_hooks_remove(&mk_audit_storage_hooks);
	notify_unregister(mk_audit_notify_ctx);
	mkdc_deinit();
}
