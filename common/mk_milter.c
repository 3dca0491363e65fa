/*
 * mk_milter - the daemon shell every Mailkeep milter runs in. See mk_milter.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mk_daemon.h"
#include "mk_log.h"
#include "mk_milter.h"
#include "mk_util.h"

#ifndef MK_SYSCONFDIR
#define MK_SYSCONFDIR "/etc"
#endif
#define MK_DEFAULT_CONFIG MK_SYSCONFDIR "/mailkeep/mailkeep.conf"

struct mk_milter_file {
    char *path;
    bool exists;
    struct stat st;
    const char *const *suffixes;        /* a directory watched by listing, or NULL */
    uint64_t listing;                   /* its matching names, combined */
};

struct mk_milter_watch {
    struct mk_milter_file *files;
    size_t count;
};

static const struct mk_milter_app *mk_app;
static const char *mk_config_file;
static pthread_mutex_t mk_gen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mk_milter_gen *mk_current;
static unsigned long mk_gen_number;
static atomic_bool mk_stopping;

/* ------------------------------------------------------------ file watch */

/*
 * A directory is watched by the names in it that end in one of the
 * suffixes, never by its mtime: freshclam makes and removes a temporary
 * directory at every check, which must not rebuild the engine. The
 * names are combined order-independently (a sum of their hashes, and
 * their count) so that no sorting is needed.
 */
static uint64_t mk_milter_listing(const char *dir, const char *const *suffixes)
{
    uint64_t sum = 0, count = 0;
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);

        for (const char *const *s = suffixes; *s; s++) {
            size_t sl = strlen(*s);

            if (len > sl && strcmp(e->d_name + len - sl, *s) == 0) {
                uint64_t h = 14695981039346656037ULL;

                for (const unsigned char *p = (const unsigned char *) e->d_name; *p; p++)
                    h = (h ^ *p) * 1099511628211ULL;
                sum += h;
                count++;
                break;
            }
        }
    }
    closedir(d);
    return sum ^ (count * 0x9e3779b97f4a7c15ULL);
}

static void mk_milter_stat(struct mk_milter_file *f)
{
    f->exists = stat(f->path, &f->st) == 0;
    if (f->suffixes)
        f->listing = f->exists ? mk_milter_listing(f->path, f->suffixes) : 0;
}

void mk_milter_watch(struct mk_milter_watch *watch, const char *path)
{
    struct mk_milter_file *f;

    if (watch == NULL || path == NULL || *path == '\0')
        return;
    watch->files = mk_xrealloc(watch->files, (watch->count + 1) * sizeof(*watch->files));
    f = &watch->files[watch->count++];
    f->path = mk_xstrdup(path);
    f->suffixes = NULL;
    mk_milter_stat(f);
}

void mk_milter_watch_dir(struct mk_milter_watch *watch, const char *dir,
                         const char *const *suffixes)
{
    mk_milter_watch(watch, dir);
    if (watch && dir && *dir) {
        watch->files[watch->count - 1].suffixes = suffixes;
        mk_milter_stat(&watch->files[watch->count - 1]);
    }
}

static bool mk_milter_watch_changed(const struct mk_milter_watch *watch)
{
    for (size_t i = 0; i < watch->count; i++) {
        struct mk_milter_file now = watch->files[i];

        mk_milter_stat(&now);
        if (now.exists != watch->files[i].exists)
            return true;
        if (now.suffixes) {
            if (now.listing != watch->files[i].listing)
                return true;
        } else if (now.exists && (now.st.st_mtim.tv_sec != watch->files[i].st.st_mtim.tv_sec
                           || now.st.st_mtim.tv_nsec != watch->files[i].st.st_mtim.tv_nsec
                           || now.st.st_size != watch->files[i].st.st_size
                           || now.st.st_ino != watch->files[i].st.st_ino))
            return true;
    }
    return false;
}

static void mk_milter_watch_free(struct mk_milter_watch *watch)
{
    if (watch == NULL)
        return;
    for (size_t i = 0; i < watch->count; i++)
        free(watch->files[i].path);
    free(watch->files);
    free(watch);
}

/* ----------------------------------------------------------- generations */

static void mk_milter_apply_logging(const struct mk_config *cfg)
{
    enum mk_log_level level = MK_LOG_INFO;

    (void) mk_log_parse_level(mk_config_str(cfg, "global", "log_level"), &level);
    mk_log_set_level(level);
}

/*
 * Build a generation from a configuration (a reference is taken) and,
 * when dir is not NULL, an existing directory (likewise).
 */
static struct mk_milter_gen *mk_milter_build(struct mk_config *cfg, struct mk_directory *dir,
                                             char **error)
{
    struct mk_milter_gen *gen = mk_xcalloc(1, sizeof(*gen));

    atomic_init(&gen->refs, 1);
    gen->cfg = mk_config_ref(cfg);
    gen->unload = mk_app->unload;
    gen->watch = mk_xcalloc(1, sizeof(*gen->watch));
    if (dir)
        gen->dir = mk_directory_ref(dir);
    else if ((gen->dir = mk_directory_open(cfg, error)) == NULL)
        goto fail;
    if ((gen->origin = mk_origin_policy_create(cfg, error)) == NULL)
        goto fail;
    if ((gen->policy = mk_app->load(cfg, gen->dir, gen->watch, error)) == NULL)
        goto fail;
    return gen;
fail:
    mk_milter_release(gen);
    return NULL;
}

struct mk_milter_gen *mk_milter_acquire(void)
{
    struct mk_milter_gen *gen;

    pthread_mutex_lock(&mk_gen_lock);
    gen = mk_current;
    atomic_fetch_add(&gen->refs, 1);
    pthread_mutex_unlock(&mk_gen_lock);
    return gen;
}

void mk_milter_release(struct mk_milter_gen *gen)
{
    if (gen == NULL || atomic_fetch_sub(&gen->refs, 1) != 1)
        return;
    if (gen->policy)
        gen->unload(gen->policy);
    mk_origin_policy_free(gen->origin);
    mk_directory_unref(gen->dir);
    mk_milter_watch_free(gen->watch);
    mk_config_unref(gen->cfg);
    free(gen);
}

static void mk_milter_install(struct mk_milter_gen *gen, const char *why)
{
    struct mk_milter_gen *old;

    pthread_mutex_lock(&mk_gen_lock);
    gen->number = ++mk_gen_number;
    old = mk_current;
    mk_current = gen;
    pthread_mutex_unlock(&mk_gen_lock);
    mk_milter_apply_logging(gen->cfg);
    if (old)
        mk_log(MK_LOG_INFO, NULL, "%s: configuration generation %lu in force", why, gen->number);
    mk_milter_release(old);
}

static void mk_milter_reload(bool full)
{
    struct mk_milter_gen *cur = mk_milter_acquire(), *gen;
    struct mk_config *cfg;
    char *error = NULL;

    if (full) {
        if ((cfg = mk_config_load(mk_config_file, &error)) == NULL) {
            mk_log(MK_LOG_ERROR, NULL, "reload: %s", error);
            mk_log(MK_LOG_ERROR, NULL, "reload failed; generation %lu stays in force", cur->number);
            free(error);
            mk_milter_release(cur);
            return;
        }
        gen = mk_milter_build(cfg, NULL, &error);
        mk_config_unref(cfg);
    } else {
        gen = mk_milter_build(cur->cfg, cur->dir, &error);
    }
    if (gen == NULL) {
        mk_log(MK_LOG_ERROR, NULL, "reload: %s", error);
        mk_log(MK_LOG_ERROR, NULL, "reload failed; generation %lu stays in force", cur->number);
        free(error);
    } else {
        mk_milter_install(gen, full ? "SIGUSR1" : "watched file changed");
    }
    mk_milter_release(cur);
}

/*
 * SIGUSR1 is blocked in every thread (libmilter's included, since they
 * inherit the mask) and taken here with sigtimedwait(), so a reload runs
 * in an ordinary thread, not in a signal handler.
 */
static void *mk_milter_reloader(void *arg)
{
    struct timespec tick = {1, 0};
    time_t last_check = time(NULL);
    sigset_t set;

    (void) arg;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    while (!atomic_load(&mk_stopping)) {
        int sig = sigtimedwait(&set, NULL, &tick);
        struct mk_milter_gen *gen;
        bool changed;
        time_t now;

        if (atomic_load(&mk_stopping))
            break;
        if (sig == SIGUSR1) {
            mk_milter_reload(true);
            last_check = time(NULL);
            continue;
        }
        now = time(NULL);
        gen = mk_milter_acquire();
        changed = now - last_check >= mk_config_num(gen->cfg, "global", "reload_interval")
            && mk_milter_watch_changed(gen->watch);
        if (now - last_check >= mk_config_num(gen->cfg, "global", "reload_interval"))
            last_check = now;
        mk_milter_release(gen);
        if (changed)
            mk_milter_reload(false);
    }
    return NULL;
}

/* ---------------------------------------------------------------- helpers */

const char *mk_milter_macro(SMFICTX *ctx, const char *name)
{
    const char *value = smfi_getsymval(ctx, (char *) name);

    return value && *value ? value : NULL;
}

const char *mk_milter_queue_id(SMFICTX *ctx)
{
    const char *qid = mk_milter_macro(ctx, "i");

    return qid ? qid : "NOQUEUE";
}

int mk_milter_reply(SMFICTX *ctx, const char *rcode, const char *xcode, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* libmilter treats % as a format character and CR/LF would end the reply. */
    for (char *p = text; *p; p++)
        if (*p == '%' || *p == '\r' || *p == '\n' || (unsigned char) *p < 0x20)
            *p = ' ';
    return smfi_setreply(ctx, (char *) rcode, (char *) xcode, text);
}

/* ------------------------------------------------------- the scan gate */

static pthread_mutex_t mk_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mk_gate_free = PTHREAD_COND_INITIALIZER;
static long mk_gate_running;

void mk_milter_scan_begin(SMFICTX *ctx, long limit)
{
    struct timespec until;

    if (limit <= 0) {
        limit = sysconf(_SC_NPROCESSORS_ONLN);
        if (limit <= 0)
            limit = 1;
    }
    pthread_mutex_lock(&mk_gate_lock);
    while (mk_gate_running >= limit) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        if (pthread_cond_timedwait(&mk_gate_free, &mk_gate_lock, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&mk_gate_lock);
            smfi_progress(ctx);
            pthread_mutex_lock(&mk_gate_lock);
        }
    }
    mk_gate_running++;
    pthread_mutex_unlock(&mk_gate_lock);
}

void mk_milter_scan_end(void)
{
    pthread_mutex_lock(&mk_gate_lock);
    mk_gate_running--;
    pthread_cond_signal(&mk_gate_free);
    pthread_mutex_unlock(&mk_gate_lock);
}

void mk_milter_client_init(struct mk_milter_client *client, SMFICTX *ctx, _SOCK_ADDR *hostaddr)
{
    const char *daemon = mk_milter_macro(ctx, "{daemon_name}");

    memset(client, 0, sizeof(*client));
    client->have_ip = mk_ip_from_sockaddr(hostaddr, &client->ip) == 0;
    if (client->have_ip)
        mk_ip_format(&client->ip, client->ip_text, sizeof(client->ip_text));
    else
        snprintf(client->ip_text, sizeof(client->ip_text), "local");
    client->daemon_name = daemon ? mk_xstrdup(daemon) : NULL;
}

void mk_milter_client_free(struct mk_milter_client *client)
{
    free(client->daemon_name);
    client->daemon_name = NULL;
}

/* ----------------------------------------------------------- daemon life */

static void mk_milter_usage(FILE *fp)
{
    fprintf(fp, "usage: %s [-f] [-t] [-V] [-c config] [-p socket] [-u user]\n"
            "  -c FILE    configuration file (default %s)\n"
            "  -p SOCKET  milter socket: unix:/path, inet:port@host, inet6:port@host\n"
            "  -f         stay in the foreground and log to standard error\n"
            "  -u USER    run as USER after opening the socket\n"
            "  -t         check the configuration and the lists it names, then exit\n"
            "  -V         print the version and exit\n",
            mk_app->progname, MK_DEFAULT_CONFIG);
}

static const char *mk_milter_unix_path(const char *spec)
{
    if (*spec == '/')
        return spec;
    if (strncmp(spec, "unix:", 5) == 0)
        return spec + 5;
    if (strncmp(spec, "local:", 6) == 0)
        return spec + 6;
    return NULL;
}

int mk_milter_main(const struct mk_milter_app *app, int argc, char **argv)
{
    const char *socket_spec = NULL, *user = NULL, *pidfile, *unix_path;
    bool foreground = false, check_only = false;
    enum mk_log_dest dest;
    int facility = 0, ch, rc, ready_fd = -1;
    struct mk_config *cfg;
    struct mk_milter_gen *gen;
    pthread_t reloader;
    sigset_t set;
    char *error = NULL;

    mk_app = app;
    mk_config_file = MK_DEFAULT_CONFIG;
    mk_log_open(app->progname, MK_LOG_STDERR, 0);
    opterr = 0;
    while ((ch = getopt(argc, argv, "c:p:fu:tVh")) != -1) {
        switch (ch) {
        case 'c':
            mk_config_file = optarg;
            break;
        case 'p':
            socket_spec = optarg;
            break;
        case 'f':
            foreground = true;
            break;
        case 'u':
            user = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'V':
            printf("%s %s\n", app->progname, PACKAGE_VERSION);
            return 0;
        case 'h':
            mk_milter_usage(stdout);
            return 0;
        default:
            if (optopt == 'c' || optopt == 'p' || optopt == 'u')
                fprintf(stderr, "%s: option -%c needs an argument\n", app->progname, optopt);
            else
                fprintf(stderr, "%s: unknown option -%c\n", app->progname, optopt);
            mk_milter_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", app->progname, argv[optind]);
        mk_milter_usage(stderr);
        return EX_USAGE;
    }
    if (socket_spec && mk_socket_spec_check(socket_spec) < 0) {
        fprintf(stderr, "%s: -p %s: not a socket (unix:/path, inet:port@host or inet6:port@host)\n",
                app->progname, socket_spec);
        return EX_USAGE;
    }

    if ((cfg = mk_config_load(mk_config_file, &error)) == NULL) {
        fprintf(stderr, "%s\n", error);
        free(error);
        return EX_CONFIG;
    }
    mk_milter_apply_logging(cfg);
    gen = mk_milter_build(cfg, NULL, &error);
    if (gen == NULL) {
        fprintf(stderr, "%s\n", error);
        free(error);
        mk_config_unref(cfg);
        return EX_CONFIG;
    }
    if (check_only) {
        printf("%s: configuration %s is valid\n", app->progname, mk_config_file);
        mk_milter_release(gen);
        mk_config_unref(cfg);
        return 0;
    }
    if (socket_spec == NULL)
        socket_spec = mk_config_str(cfg, app->section, "socket");
    if (user == NULL)
        user = mk_config_str(cfg, app->section, "user");
    pidfile = mk_config_str(cfg, app->section, "pidfile");

    /* -f logs to standard error unless the file asks for syslog. */
    dest = strcasecmp(mk_config_str(cfg, "global", "log"), "stderr") == 0
        || (foreground && mk_config_line(cfg, "global", "log") == 0) ? MK_LOG_STDERR : MK_LOG_SYSLOG;
    (void) mk_log_parse_facility(mk_config_str(cfg, "global", "log_facility"), &facility);
    mk_log_open(app->progname, dest, facility);
    mk_milter_install(gen, "start");

    signal(SIGPIPE, SIG_IGN);
    if (smfi_setconn((char *) socket_spec) == MI_FAILURE
        || smfi_register(*app->desc) == MI_FAILURE) {
        mk_log(MK_LOG_ERROR, NULL, "cannot set up milter socket %s", socket_spec);
        return EX_SOFTWARE;
    }
    unix_path = mk_milter_unix_path(socket_spec);
    umask(007);
    if (smfi_opensocket(true) == MI_FAILURE) {
        mk_log(MK_LOG_ERROR, NULL, "cannot open milter socket %s", socket_spec);
        return EX_UNAVAILABLE;
    }
    if (!foreground && mk_daemon_detach(&ready_fd) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "cannot detach: %s", strerror(errno));
        return EX_OSERR;
    }
    if (*pidfile && mk_daemon_pidfile(pidfile, app->progname) < 0) {
        mk_daemon_ready(&ready_fd, EX_CANTCREAT);
        return EX_CANTCREAT;
    }
    if (mk_daemon_drop_privileges(user, unix_path) < 0) {
        mk_daemon_ready(&ready_fd, EX_NOPERM);
        return EX_NOPERM;
    }

    /*
     * Block the stop signals too before any thread starts: libmilter's
     * signal thread takes them with sigwait(), and a thread of ours that
     * left them unblocked would die of them instead of stopping cleanly.
     */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (pthread_create(&reloader, NULL, mk_milter_reloader, NULL) != 0) {
        mk_log(MK_LOG_ERROR, NULL, "cannot start the reload thread");
        mk_daemon_ready(&ready_fd, EX_OSERR);
        return EX_OSERR;
    }
    mk_log(MK_LOG_INFO, NULL, "%s %s listening on %s (directory: %s)", app->progname,
           PACKAGE_VERSION, socket_spec, mk_directory_backend(gen->dir));
    mk_daemon_ready(&ready_fd, 0);

    rc = smfi_main();

    atomic_store(&mk_stopping, true);
    pthread_join(reloader, NULL);
    mk_log(MK_LOG_INFO, NULL, "stopping");
    if (*pidfile && unlink(pidfile) < 0 && errno != ENOENT)
        mk_log(MK_LOG_WARNING, NULL, "cannot remove pidfile %s: %s", pidfile, strerror(errno));
    pthread_mutex_lock(&mk_gen_lock);
    gen = mk_current;
    mk_current = NULL;
    pthread_mutex_unlock(&mk_gen_lock);
    mk_milter_release(gen);
    mk_config_unref(cfg);
    return rc == MI_SUCCESS ? 0 : EX_SOFTWARE;
}

struct mk_origin mk_milter_origin(const struct mk_milter_gen *gen,
                                  const struct mk_milter_client *client, const char *sasl_login)
{
    return mk_origin_classify(gen->origin, client->have_ip ? &client->ip : NULL, sasl_login,
                              client->daemon_name);
}

int mk_milter_direction(struct mk_milter_gen *gen, const struct mk_origin *origin,
                        const char *recipient, enum mk_direction *direction)
{
    const char *domain = mk_addr_domain(recipient);
    enum mk_dir_status st = domain ? mk_directory_domain(gen->dir, domain) : MK_DIR_FOUND;

    if (st == MK_DIR_TEMPFAIL)
        return -1;
    *direction = mk_direction_of(origin, st == MK_DIR_FOUND);
    return 0;
}
