/*
 * NAME
 *	mk_directory 3h
 * SUMMARY
 *	the user database: local domains, users, groups, per-user attributes
 * SYNOPSIS
 *	#include "mk_directory.h"
 *
 *	struct mk_directory *mk_directory_open(const struct mk_config *cfg, char **error);
 *	struct mk_directory *mk_directory_ref(struct mk_directory *dir);
 *	void	mk_directory_unref(struct mk_directory *dir);
 *	const char *mk_directory_backend(const struct mk_directory *dir);
 *	enum mk_dir_status mk_directory_domain(struct mk_directory *dir, const char *domain);
 *	enum mk_dir_status mk_directory_user(struct mk_directory *dir, const char *address,
 *					     struct mk_dir_user **user);
 *	enum mk_dir_status mk_directory_bind(struct mk_directory *dir,
 *					     const struct mk_dir_user *user, const char *password);
 *
 *	char	*const *mk_dir_user_values(const struct mk_dir_user *user, const char *attr);
 *	const char *mk_dir_user_value(const struct mk_dir_user *user, const char *attr);
 *	bool	mk_dir_user_in_group(const struct mk_dir_user *user, const char *group);
 *	void	mk_dir_user_unref(struct mk_dir_user *user);
 * DESCRIPTION
 *	One interface over two backends, chosen by [global] directory:
 *
 *	ldap	domains, users and groups come from LDAP ([ldap] section),
 *		through a cache with a positive and a negative lifetime and
 *		a bounded size; every LDAP operation has a timeout.
 *	files	domains from [global] directory_domains_file (one per
 *		line), users from directory_users_file, one per line:
 *		    alice@example.com  role=user group=sales,staff
 *			blocked_sender=@junk.example block_mode=tag
 *		(on one line). The files are re-read when they change.
 *		Without a users file, every address in a local domain is
 *		taken to exist (the MTA or the mailbox server decides).
 *
 *	In both, [global] local_domains adds domains from the config file.
 *
 *	Attributes have backend-neutral names: role, blocked_sender,
 *	allowed_sender, block_mode, policy_group, otp_policy, option, name
 *	(LDAP: mailkeepRole, mailkeepBlockedSender, ..., cn; see
 *	contrib/ldap/mailkeep.schema), and password_changed and
 *	password_reset (the ppolicy overlay's pwdChangedTime and pwdReset).
 *
 *	A user lookup for user+tag@domain that finds nothing tries
 *	user@domain ([global] recipient_delimiter, "+" by default).
 *
 *	Lookups return MK_DIR_FOUND, MK_DIR_NOT_FOUND, or MK_DIR_TEMPFAIL
 *	when the backend cannot answer (server down, timeout): the caller
 *	must then tempfail, never guess. A found user is returned with a
 *	reference the caller drops with mk_dir_user_unref(). Addresses are
 *	normalized (mk_addr_normalize) by the caller. All functions are
 *	thread-safe.
 *
 *	mk_dir_user_values() returns a NULL-terminated array, empty when the
 *	user has no such attribute.
 *
 *	mk_directory_bind() checks a user's password with a simple bind as
 *	their entry, on a connection of its own (LDAP only; the files
 *	backend answers MK_DIR_TEMPFAIL): MK_DIR_FOUND when it is right,
 *	MK_DIR_NOT_FOUND when it is wrong or empty, MK_DIR_TEMPFAIL when the
 *	server does not answer.
 */
#ifndef MK_DIRECTORY_H
#define MK_DIRECTORY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "mk_config.h"

enum mk_dir_status { MK_DIR_FOUND, MK_DIR_NOT_FOUND, MK_DIR_TEMPFAIL };

struct mk_dir_attr {
    char *name;
    char **values;                      /* NULL-terminated */
    size_t count;
};

struct mk_dir_user {
    atomic_int refs;
    char *address;
    char *dn;                           /* LDAP only */
    char **groups;                      /* NULL-terminated */
    size_t ngroups;
    struct mk_dir_attr *attrs;
    size_t nattrs;
};

/* Backend-neutral attribute names and their LDAP attributes. */
struct mk_dir_attr_map {
    const char *name;
    const char *ldap;
};
extern const struct mk_dir_attr_map mk_dir_attrs[];
extern const size_t mk_dir_attrs_count;

struct mk_directory;

struct mk_directory *mk_directory_open(const struct mk_config *cfg, char **error);
struct mk_directory *mk_directory_ref(struct mk_directory *dir);
void mk_directory_unref(struct mk_directory *dir);
const char *mk_directory_backend(const struct mk_directory *dir);
enum mk_dir_status mk_directory_domain(struct mk_directory *dir, const char *domain);
enum mk_dir_status mk_directory_user(struct mk_directory *dir, const char *address,
                                     struct mk_dir_user **user);
enum mk_dir_status mk_directory_bind(struct mk_directory *dir, const struct mk_dir_user *user,
                                     const char *password);

char *const *mk_dir_user_values(const struct mk_dir_user *user, const char *attr);
const char *mk_dir_user_value(const struct mk_dir_user *user, const char *attr);
bool mk_dir_user_in_group(const struct mk_dir_user *user, const char *group);
void mk_dir_user_unref(struct mk_dir_user *user);

/* For backends. */
struct mk_dir_user *mk_dir_user_new(const char *address);
struct mk_dir_user *mk_dir_user_ref(struct mk_dir_user *user);
void mk_dir_user_add_value(struct mk_dir_user *user, const char *attr, const char *value);
void mk_dir_user_add_group(struct mk_dir_user *user, const char *group);
bool mk_dir_attr_known(const char *name);

struct mk_dir_backend {
    const char *name;
    enum mk_dir_status (*domain)(void *ctx, const char *domain);
    enum mk_dir_status (*user)(void *ctx, const char *address, struct mk_dir_user **user);
    void (*close)(void *ctx);
    bool cached;                        /* wrap in the lookup cache */
    enum mk_dir_status (*bind)(void *ctx, const struct mk_dir_user *user, const char *password);
};

extern const struct mk_dir_backend mk_dir_files_backend;
void *mk_dir_files_open(const struct mk_config *cfg, char **error);
#ifdef HAVE_LDAP
extern const struct mk_dir_backend mk_dir_ldap_backend;
void *mk_dir_ldap_open(const struct mk_config *cfg, char **error);
#endif

#endif
