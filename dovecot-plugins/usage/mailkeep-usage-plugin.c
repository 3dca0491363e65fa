/*
 * NAME
 *	mailkeep-usage-plugin - Dovecot 2.3 plugin that keeps
 *	mailkeep-auditd's usage database current
 *	(lib90_mailkeep_usage_plugin.so)
 *
 * SUMMARY
 *	Sends "U {json}" lines (docs/audit-protocol.md): "login" when an
 *	imap, pop3 or submission session starts; "mailbox" with a mailbox's
 *	message count and virtual size after this process changed them, and
 *	after a rename; "mailbox-delete" after a delete.
 *
 * SYNOPSIS
 *	mail_plugins = $mail_plugins notify mailkeep_usage
 *	plugin {
 *	  mailkeep_usage_socket = /run/mailkeep/audit.sock
 *	}
 *
 *	void mailkeep_usage_plugin_init(struct module *module);
 *	void mailkeep_usage_plugin_deinit(void);
 *	const char *mailkeep_usage_plugin_version;
 *	const char *mailkeep_usage_plugin_dependencies[];
 *
 * DESCRIPTION
 *	mailkeep_usage_socket defaults to mailkeep_audit_socket, and that to
 *	/run/mailkeep/audit.sock. Usage is not audit: when the daemon is
 *	away the session goes on and the lost line is logged as
 *	"mailkeep_usage: record not delivered: <json>".
 *
 *	The numbers are Dovecot's own: mailbox_get_status(STATUS_MESSAGES)
 *	and mailbox_get_metadata(MAILBOX_METADATA_GUID |
 *	MAILBOX_METADATA_VIRTUAL_SIZE), the same calls
 *	`doveadm mailbox status messages vsize guid` makes, on a synced view
 *	of the changed mailbox only; the virtual size comes from the index's
 *	vsize header.
 *
 *	When. The notify plugin tells which transactions saved, copied,
 *	moved or expunged mail; at their commit the mailbox is marked dirty.
 *	The counts cannot be read then: the mailbox view is synced only by
 *	mailbox_sync(), which Dovecot forbids while the committing
 *	transaction is still counted. So the mailbox is measured at the next
 *	safe point on the same mailbox object: when a sync of an already
 *	synced mailbox ends (imap syncs the selected mailbox after every
 *	command, pop3 at QUIT), or when the mailbox is closed (APPEND or COPY
 *	into another mailbox, lmtp, doveadm), where one mailbox_sync() is
 *	made first. No mailbox is opened for this, and none is walked.
 *
 *	A rename sends "mailbox" for the new name and for each mailbox
 *	under it, whose names changed too; those are opened one by one. A
 *	delete sends "mailbox-delete" with the GUID read just before the
 *	delete.
 *
 *	"user" is the owner of the mailbox's namespace (for a shared mailbox
 *	the other user, whose usage changed); public namespaces have no
 *	owner and are not reported.
 */

#include "lib.h"
#include "str.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "mailbox-list-iter.h"
#include "notify-plugin.h"
#include "../mk-dovecot-client.h"

#define MK_USAGE_LOG "mailkeep_usage"

#define MK_USAGE_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, mk_usage_user_module)
#define MK_USAGE_BOX_CONTEXT(obj) \
	MODULE_CONTEXT(obj, mk_usage_storage_module)

extern const char *mailkeep_usage_plugin_version;
extern const char *mailkeep_usage_plugin_dependencies[];
void mailkeep_usage_plugin_init(struct module *module);
void mailkeep_usage_plugin_deinit(void);

struct mk_usage_user {
	union mail_user_module_context module_ctx;
	struct mkdc_conn *conn;
};

struct mk_usage_mailbox {
	union mailbox_module_context module_ctx;
	/* a committed change not yet reported */
	bool dirty;
};

struct mk_usage_txn {
	struct mailbox *box;
	bool changed;
};

static MODULE_CONTEXT_DEFINE_INIT(mk_usage_user_module,
				  &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(mk_usage_storage_module,
				  &mail_storage_module_register);

static struct notify_context *mk_usage_notify_ctx;

static struct mk_usage_user *mk_usage_user_get(struct mail_user *user)
{
	while (user->creator != NULL)
		user = user->creator;
	return MK_USAGE_USER_CONTEXT(user);
}

/* Whose usage the mailbox counts towards, or NULL for none. */
static const char *mk_usage_owner(struct mailbox *box)
{
	struct mail_namespace *ns = mailbox_get_namespace(box);

	return ns->owner == NULL ? NULL : ns->owner->username;
}

static void mk_usage_send_mailbox(struct mk_usage_user *uuser,
				  struct mailbox *box)
{
	struct mailbox_status status;
	struct mailbox_metadata metadata;
	const char *owner = mk_usage_owner(box);

	if (owner == NULL)
		return;
	if (mailbox_get_status(box, STATUS_MESSAGES, &status) < 0 ||
	    mailbox_get_metadata(box, MAILBOX_METADATA_GUID |
				 MAILBOX_METADATA_VIRTUAL_SIZE,
				 &metadata) < 0) {
		i_error(MK_USAGE_LOG": cannot read status of %s for %s: %s",
			mailbox_get_vname(box), owner,
			mailbox_get_last_internal_error(box, NULL));
		return;
	}
	T_BEGIN {
		string_t *json = t_str_new(256);

		mkdc_json_begin(json);
		mkdc_json_str(json, "kind", "mailbox");
		mkdc_json_str(json, "user", owner);
		mkdc_json_str(json, "mailbox_guid",
			      guid_128_to_string(metadata.guid));
		mkdc_json_str(json, "mailbox", mailbox_get_vname(box));
		mkdc_json_uint(json, "messages", status.messages);
		mkdc_json_uint(json, "vsize", metadata.virtual_size);
		mkdc_json_end(json);
		(void)mkdc_send(uuser->conn, 'U', MK_USAGE_LOG, json);
	} T_END;
}

/*
 * Sessions
 */

static void mk_usage_mail_user_created(struct mail_user *user)
{
	struct mk_usage_user *uuser;
	const char *path;

	/* mailkeep_audit (loaded before us) or another plugin refused the
	   session: it never started. */
	if (user->autocreated || user->error != NULL)
		return;
	path = mail_user_plugin_getenv(user, "mailkeep_usage_socket");
	if (path == NULL || *path == '\0')
		path = mail_user_plugin_getenv(user, "mailkeep_audit_socket");
	if (path == NULL || *path == '\0')
		path = MKDC_DEFAULT_SOCKET;

	uuser = p_new(user->pool, struct mk_usage_user, 1);
	uuser->conn = mkdc_conn_get(path);
	MODULE_CONTEXT_SET(user, mk_usage_user_module, uuser);

	if (user->session_restored ||
	    (strcmp(user->service, "imap") != 0 &&
	     strcmp(user->service, "pop3") != 0 &&
	     strcmp(user->service, "submission") != 0))
		return;
	T_BEGIN {
		string_t *json = t_str_new(128);

		mkdc_json_begin(json);
		mkdc_json_str(json, "kind", "login");
		mkdc_json_str(json, "user", user->username);
		mkdc_json_str(json, "service", user->service);
		if (user->conn.remote_ip != NULL &&
		    user->conn.remote_ip->family != 0)
			mkdc_json_str(json, "ip",
				      net_ip2addr(user->conn.remote_ip));
		mkdc_json_end(json);
		(void)mkdc_send(uuser->conn, 'U', MK_USAGE_LOG, json);
	} T_END;
}

/*
 * Reporting a dirty mailbox at the next safe point (mailbox vfuncs)
 */

static int
mk_usage_sync_deinit(struct mailbox_sync_context *ctx,
		     struct mailbox_sync_status *status_r)
{
	struct mailbox *box = ctx->box;
	struct mk_usage_mailbox *ubox = MK_USAGE_BOX_CONTEXT(box);
	/* mailbox_sync_deinit() sets box->synced only after we return; on
	   a first sync, get_metadata(VIRTUAL_SIZE) would sync again from
	   in here, so a first sync leaves the work to close. */
	bool was_synced = box->synced;
	int ret;

	ret = ubox->module_ctx.super.sync_deinit(ctx, status_r);
	if (ret == 0 && ubox->dirty && was_synced && !box->deleting &&
	    box->transaction_count == 0) {
		ubox->dirty = FALSE;
		mk_usage_send_mailbox(mk_usage_user_get(box->storage->user),
				      box);
	}
	return ret;
}

static void mk_usage_mailbox_close(struct mailbox *box)
{
	struct mk_usage_mailbox *ubox = MK_USAGE_BOX_CONTEXT(box);

	if (ubox->dirty && !box->deleting && !box->mailbox_deleted) {
		ubox->dirty = FALSE;
		/* The commit wrote the index; this brings the view up to
		   it (cheap: FAST skips rescanning the mail directories). */
		if (mailbox_sync(box, MAILBOX_SYNC_FLAG_FAST) < 0) {
			i_error(MK_USAGE_LOG": cannot sync %s: %s",
				mailbox_get_vname(box),
				mailbox_get_last_internal_error(box, NULL));
		} else {
			mk_usage_send_mailbox(
				mk_usage_user_get(box->storage->user), box);
		}
	}
	ubox->module_ctx.super.close(box);
}

static void mk_usage_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	struct mk_usage_mailbox *ubox;

	if (mk_usage_user_get(box->storage->user) == NULL)
		return;
	ubox = p_new(box->pool, struct mk_usage_mailbox, 1);
	ubox->module_ctx.super = *v;
	box->vlast = &ubox->module_ctx.super;
	v->sync_deinit = mk_usage_sync_deinit;
	v->close = mk_usage_mailbox_close;
	MODULE_CONTEXT_SET(box, mk_usage_storage_module, ubox);
}

/*
 * Changes (notify plugin)
 */

static void *mk_usage_txn_begin(struct mailbox_transaction_context *t)
{
	struct mk_usage_txn *utxn;

	if (MK_USAGE_BOX_CONTEXT(t->box) == NULL)
		return NULL;
	utxn = i_new(struct mk_usage_txn, 1);
	utxn->box = t->box;
	return utxn;
}

static void mk_usage_mail_changed(void *txn, struct mail *mail ATTR_UNUSED)
{
	struct mk_usage_txn *utxn = txn;

	if (utxn != NULL)
		utxn->changed = TRUE;
}

static void
mk_usage_mail_copy(void *txn, struct mail *src ATTR_UNUSED,
		   struct mail *dst ATTR_UNUSED)
{
	mk_usage_mail_changed(txn, dst);
}

static void
mk_usage_txn_commit(void *txn,
		    struct mail_transaction_commit_changes *changes ATTR_UNUSED)
{
	struct mk_usage_txn *utxn = txn;
	struct mk_usage_mailbox *ubox;

	if (utxn == NULL)
		return;
	if (utxn->changed) {
		ubox = MK_USAGE_BOX_CONTEXT(utxn->box);
		ubox->dirty = TRUE;
	}
	i_free(utxn);
}

static void mk_usage_txn_rollback(void *txn)
{
	struct mk_usage_txn *utxn = txn;

	i_free(utxn);
}

static void *mk_usage_mailbox_delete_begin(struct mailbox *box)
{
	struct mailbox_metadata metadata;

	if (MK_USAGE_BOX_CONTEXT(box) == NULL || mk_usage_owner(box) == NULL)
		return NULL;
	/* After the delete the GUID is gone with the index. A \Noselect
	   mailbox has none and was never in the usage database. */
	if (mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &metadata) < 0)
		return NULL;
	return i_strdup(guid_128_to_string(metadata.guid));
}

static void mk_usage_mailbox_delete_rollback(void *txn)
{
	char *guid = txn;

	i_free(guid);
}

static void mk_usage_mailbox_delete_commit(void *txn, struct mailbox *box)
{
	struct mk_usage_mailbox *ubox = MK_USAGE_BOX_CONTEXT(box);
	char *guid = txn;

	if (guid == NULL)
		return;
	/* Expunging the mails before the delete marked it dirty. */
	ubox->dirty = FALSE;
	T_BEGIN {
		string_t *json = t_str_new(128);

		mkdc_json_begin(json);
		mkdc_json_str(json, "kind", "mailbox-delete");
		mkdc_json_str(json, "user", mk_usage_owner(box));
		mkdc_json_str(json, "mailbox_guid", guid);
		mkdc_json_end(json);
		(void)mkdc_send(mk_usage_user_get(box->storage->user)->conn,
				'U', MK_USAGE_LOG, json);
	} T_END;
	i_free(guid);
}

static void mk_usage_mailbox_rename(struct mailbox *src ATTR_UNUSED,
				    struct mailbox *dest)
{
	struct mk_usage_user *uuser = mk_usage_user_get(dest->storage->user);
	struct mail_namespace *ns = mailbox_get_namespace(dest);
	const struct mailbox_info *info;
	struct mailbox_list_iterate_context *iter;
	enum mailbox_existence existence;
	struct mailbox *child;
	const char *pattern;

	if (uuser == NULL || mk_usage_owner(dest) == NULL)
		return;
	if (mailbox_exists(dest, FALSE, &existence) == 0 &&
	    existence == MAILBOX_EXISTENCE_SELECT)
		mk_usage_send_mailbox(uuser, dest);

	/* Children were renamed with it. */
	T_BEGIN {
		pattern = t_strdup_printf("%s%c*", mailbox_get_vname(dest),
					  mail_namespace_get_sep(ns));
		iter = mailbox_list_iter_init(dest->list, pattern, 0);
		while ((info = mailbox_list_iter_next(iter)) != NULL) {
			if ((info->flags & (MAILBOX_NOSELECT |
					    MAILBOX_NONEXISTENT)) != 0)
				continue;
			child = mailbox_alloc(dest->list, info->vname,
					      MAILBOX_FLAG_READONLY);
			mk_usage_send_mailbox(uuser, child);
			mailbox_free(&child);
		}
		if (mailbox_list_iter_deinit(&iter) < 0) {
			i_error(MK_USAGE_LOG": listing %s failed: %s", pattern,
				mailbox_list_get_last_internal_error(dest->list,
								     NULL));
		}
	} T_END;
}

static const struct notify_vfuncs mk_usage_notify_vfuncs = {
	.mail_transaction_begin = mk_usage_txn_begin,
	.mail_save = mk_usage_mail_changed,
	.mail_copy = mk_usage_mail_copy,
	.mail_expunge = mk_usage_mail_changed,
	.mail_transaction_commit = mk_usage_txn_commit,
	.mail_transaction_rollback = mk_usage_txn_rollback,
	.mailbox_delete_begin = mk_usage_mailbox_delete_begin,
	.mailbox_delete_commit = mk_usage_mailbox_delete_commit,
	.mailbox_delete_rollback = mk_usage_mailbox_delete_rollback,
	.mailbox_rename = mk_usage_mailbox_rename,
};

static struct mail_storage_hooks mk_usage_storage_hooks = {
	.mail_user_created = mk_usage_mail_user_created,
	.mailbox_allocated = mk_usage_mailbox_allocated,
};

const char *mailkeep_usage_plugin_version = DOVECOT_ABI_VERSION;
const char *mailkeep_usage_plugin_dependencies[] = { "notify", NULL };

void mailkeep_usage_plugin_init(struct module *module)
{
	mkdc_init();
	mk_usage_notify_ctx = notify_register(&mk_usage_notify_vfuncs);
	mail_storage_hooks_add(module, &mk_usage_storage_hooks);
}

void mailkeep_usage_plugin_deinit(void)
{
	mail_storage_hooks_remove(&mk_usage_storage_hooks);
	notify_unregister(mk_usage_notify_ctx);
	mkdc_deinit();
}
