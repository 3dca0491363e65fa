/*
 * NAME
 *	mk_milter 3h
 * SUMMARY
 *	the daemon shell every Mailkeep milter runs in
 * SYNOPSIS
 *	#include "mk_milter.h"
 *
 *	int	mk_milter_main(const struct mk_milter_app *app, int argc, char **argv);
 *	struct mk_milter_gen *mk_milter_acquire(void);
 *	void	mk_milter_release(struct mk_milter_gen *gen);
 *	void	mk_milter_watch(struct mk_milter_watch *watch, const char *path);
 *	void	mk_milter_watch_dir(struct mk_milter_watch *watch, const char *dir,
 *				    const char *const *suffixes);
 *	const char *mk_milter_macro(SMFICTX *ctx, const char *name);
 *	const char *mk_milter_queue_id(SMFICTX *ctx);
 *	int	mk_milter_reply(SMFICTX *ctx, const char *rcode, const char *xcode, const char *fmt, ...);
 *	void	mk_milter_scan_begin(SMFICTX *ctx, long limit);
 *	void	mk_milter_scan_end(void);
 *	void	mk_milter_client_init(struct mk_milter_client *client, SMFICTX *ctx,
 *				      _SOCK_ADDR *hostaddr);
 *	void	mk_milter_client_free(struct mk_milter_client *client);
 *	struct mk_origin mk_milter_origin(const struct mk_milter_gen *gen,
 *					  const struct mk_milter_client *client,
 *					  const char *sasl_login);
 *	int	mk_milter_direction(struct mk_milter_gen *gen,
 *				    const struct mk_origin *origin,
 *				    const char *recipient, enum mk_direction *direction);
 * DESCRIPTION
 *	mk_milter_main() is the whole life of a milter daemon: it reads the
 *	flags (-c FILE, -p SOCKET, -f, -u USER, -t, -V), loads mailkeep.conf
 *	and the component's policy, opens the milter socket, detaches
 *	(unless -f), writes the pidfile, drops privileges, and runs
 *	libmilter until SIGTERM, SIGINT or SIGHUP. It returns the exit
 *	status. With -t it checks the configuration and every list the
 *	component loads, prints what is wrong, and returns.
 *
 *	Configuration comes in generations. A generation holds the parsed
 *	configuration, the directory, the origin policy and the component's
 *	policy (what app->load built), and is reference-counted: a
 *	connection takes one with mk_milter_acquire() when it starts and
 *	drops it with mk_milter_release() when it ends, so a reload never
 *	changes the rules under a message in flight.
 *
 *	A reload builds a new generation while mail keeps flowing:
 *	- SIGUSR1 re-reads mailkeep.conf and everything else;
 *	- a change to any file the component registered with
 *	  mk_milter_watch() during app->load (list files) rebuilds the
 *	  component's policy from the current configuration; files are
 *	  checked every [global] reload_interval. mk_milter_watch_dir()
 *	  watches which entries of a directory end in one of the suffixes
 *	  (a NULL-terminated array that must outlive the generation):
 *	  one appearing or going is a change, other entries coming and
 *	  going (freshclam's temporary directory) are not.
 *	A reload that fails is logged with its errors and the running
 *	generation stays.
 *
 *	mk_milter_macro() returns a macro's value, or NULL when it is unset
 *	or empty. mk_milter_queue_id() returns the queue ID or "NOQUEUE".
 *	mk_milter_reply() sets the SMTP reply; the text is formatted and any
 *	character that cannot appear in a reply is replaced.
 *
 *	mk_milter_scan_begin() waits until fewer than limit content scans
 *	(0: one per CPU) run in this process, telling the MTA every ten
 *	seconds that the message is still being worked on
 *	(smfi_progress); mk_milter_scan_end() frees the place. Heavy work
 *	goes between them, so a burst of mail cannot overload the host.
 *
 *	mk_milter_client_init() records, at connect, the client's address
 *	(and its text, "local" when there is none) and the {daemon_name}
 *	macro, which a milter needs later to decide the origin.
 *	mk_milter_origin() decides it (mk_origin_classify()) from those and
 *	the SASL login (or NULL). mk_milter_direction() sets a recipient's
 *	direction for that origin and returns 0, or returns -1 when the
 *	directory cannot tell whether the recipient's domain is local.
 */
#ifndef MK_MILTER_H
#define MK_MILTER_H

#include <libmilter/mfapi.h>
#include <stdatomic.h>

#include "mk_config.h"
#include "mk_direction.h"
#include "mk_directory.h"

struct mk_milter_watch;

/* What a content milter keeps of the client (mk_milter_client_init). */
struct mk_milter_client {
    struct mk_ip ip;
    bool have_ip;
    char ip_text[MK_IP_TEXT_MAX];       /* "local" without an address */
    char *daemon_name;                  /* {daemon_name}, or NULL */
};

struct mk_milter_gen {
    atomic_int refs;
    unsigned long number;
    struct mk_config *cfg;
    struct mk_directory *dir;
    struct mk_origin_policy *origin;
    void *policy;                       /* the component's */
    struct mk_milter_watch *watch;
    void (*unload)(void *policy);
};

struct mk_milter_app {
    const char *progname;               /* "mailkeep-block" */
    const char *section;                /* its mailkeep.conf section: "block" */
    struct smfiDesc *desc;
    void *(*load)(const struct mk_config *cfg, struct mk_directory *dir,
                  struct mk_milter_watch *watch, char **error);
    void (*unload)(void *policy);
};

int mk_milter_main(const struct mk_milter_app *app, int argc, char **argv);
struct mk_milter_gen *mk_milter_acquire(void);
void mk_milter_release(struct mk_milter_gen *gen);
void mk_milter_watch(struct mk_milter_watch *watch, const char *path);
void mk_milter_watch_dir(struct mk_milter_watch *watch, const char *dir,
                         const char *const *suffixes);
const char *mk_milter_macro(SMFICTX *ctx, const char *name);
const char *mk_milter_queue_id(SMFICTX *ctx);
int mk_milter_reply(SMFICTX *ctx, const char *rcode, const char *xcode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void mk_milter_scan_begin(SMFICTX *ctx, long limit);
void mk_milter_scan_end(void);
void mk_milter_client_init(struct mk_milter_client *client, SMFICTX *ctx, _SOCK_ADDR *hostaddr);
void mk_milter_client_free(struct mk_milter_client *client);
struct mk_origin mk_milter_origin(const struct mk_milter_gen *gen,
                                  const struct mk_milter_client *client, const char *sasl_login);
int mk_milter_direction(struct mk_milter_gen *gen, const struct mk_origin *origin,
                        const char *recipient, enum mk_direction *direction);

#endif
