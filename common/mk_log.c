/*
 * mk_log - one-line logging to syslog or standard error. See mk_log.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "mk_log.h"
#include "mk_util.h"

static char mk_log_ident[64] = "mailkeep";
static enum mk_log_dest mk_log_dest = MK_LOG_STDERR;
static atomic_int mk_log_level = MK_LOG_INFO;
static int mk_log_facility;             /* MK_LOG_HOST: ours; else openlog()'s */

void mk_log_open(const char *ident, enum mk_log_dest dest, int facility)
{
    snprintf(mk_log_ident, sizeof(mk_log_ident), "%s", ident);
    mk_log_dest = dest;
    mk_log_facility = dest == MK_LOG_HOST ? facility : 0;
    if (dest == MK_LOG_SYSLOG)
        openlog(mk_log_ident, LOG_PID | LOG_NDELAY, facility);
}

void mk_log_set_level(enum mk_log_level level)
{
    atomic_store(&mk_log_level, level);
}

int mk_log_parse_level(const char *name, enum mk_log_level *level)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};

    for (size_t i = 0; i < MK_ARRAY_LEN(names); i++)
        if (strcasecmp(name, names[i]) == 0) {
            *level = (enum mk_log_level) i;
            return 0;
        }
    return -1;
}

int mk_log_parse_facility(const char *name, int *facility)
{
    static const struct {
        const char *name;
        int value;
    } table[] = {
        {"mail", LOG_MAIL}, {"daemon", LOG_DAEMON}, {"auth", LOG_AUTH},
        {"authpriv", LOG_AUTHPRIV}, {"user", LOG_USER},
        {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
        {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
        {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
    };

    for (size_t i = 0; i < MK_ARRAY_LEN(table); i++)
        if (strcasecmp(name, table[i].name) == 0) {
            *facility = table[i].value;
            return 0;
        }
    return -1;
}

static void mk_log_emit(enum mk_log_level level, const char *queue_id,
                        const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

static void mk_log_emit(enum mk_log_level level, const char *queue_id,
                        const char *fmt, va_list ap)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
    char msg[2048];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* A log line is one line, whatever a caller passed in. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (mk_log_dest == MK_LOG_SYSLOG) {
        if (queue_id && *queue_id)
            syslog(prio[level], "%s: %s%s", queue_id, prefix[level], msg);
        else
            syslog(prio[level], "%s%s", prefix[level], msg);
    } else if (mk_log_dest == MK_LOG_HOST) {
        /* The program's own syslog identity stays; ours goes in the line. */
        syslog(mk_log_facility | prio[level], "%s: %s%s%s%s", mk_log_ident,
               queue_id && *queue_id ? queue_id : "", queue_id && *queue_id ? ": " : "",
               prefix[level], msg);
    } else {
        /* One fprintf call, so concurrent lines do not interleave. */
        if (queue_id && *queue_id)
            fprintf(stderr, "%s[%ld]: %s: %s%s\n", mk_log_ident, (long) getpid(),
                    queue_id, prefix[level], msg);
        else
            fprintf(stderr, "%s[%ld]: %s%s\n", mk_log_ident, (long) getpid(),
                    prefix[level], msg);
    }
}

void mk_log(enum mk_log_level level, const char *queue_id, const char *fmt, ...)
{
    va_list ap;

    if ((int) level > atomic_load(&mk_log_level))
        return;
    va_start(ap, fmt);
    mk_log_emit(level, queue_id, fmt, ap);
    va_end(ap);
}

void mk_log_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    mk_log_emit(MK_LOG_ERROR, NULL, fmt, ap);
    va_end(ap);
    exit(1);
}
