/*
 * block_policy - mailkeep-block's rules. See block_policy.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "block_policy.h"
#include "mk_util.h"

static const char *const block_list_keys[4] = {
    "bad_clients", "allow_clients", "bad_senders", "allow_senders",
};

struct block_policy *block_policy_load(const struct mk_config *cfg, char **error)
{
    struct block_policy *p = mk_xcalloc(1, sizeof(*p));
    struct mk_list **lists[4] = {&p->bad_clients, &p->allow_clients, &p->bad_senders,
                                 &p->allow_senders};

    *error = NULL;
    for (int i = 0; i < 4; i++) {
        const char *path = mk_config_str(cfg, "block", block_list_keys[i]);
        enum mk_list_kind kind = i < 2 ? MK_LIST_CLIENTS : MK_LIST_SENDERS;

        if (*path == '\0')
            continue;
        p->files[i] = mk_xstrdup(path);
        if ((*lists[i] = mk_list_load(path, kind, 0, error)) == NULL) {
            block_policy_free(p);
            return NULL;
        }
    }
    p->delay_client_reject = mk_config_bool(cfg, "block", "delay_client_reject");
    p->personal_lists = mk_config_bool(cfg, "block", "personal_lists");
    p->personal_list_dir = mk_xstrdup(mk_config_str(cfg, "block", "personal_list_dir"));
    p->personal_action = strcasecmp(mk_config_str(cfg, "block", "personal_action"), "tag") == 0
        ? BLOCK_ACTION_TAG : BLOCK_ACTION_REJECT;
    p->tag_header = mk_xstrdup(mk_config_str(cfg, "block", "tag_header"));
    p->reject_unknown = mk_config_bool(cfg, "block", "reject_unknown_recipients");
    p->dict_limit = mk_config_num(cfg, "block", "dictionary_limit");
    p->dict_window = mk_config_num(cfg, "block", "dictionary_window");
    p->dict_ban = mk_config_num(cfg, "block", "dictionary_ban");
    p->client_rate_limit = mk_config_num(cfg, "block", "client_rate_limit");
    p->client_rate_window = mk_config_num(cfg, "block", "client_rate_window");
    p->sender_rate_limit = mk_config_num(cfg, "block", "sender_rate_limit");
    p->sender_rate_window = mk_config_num(cfg, "block", "sender_rate_window");
    p->exempt_trusted = mk_config_bool(cfg, "block", "exempt_trusted");
    p->exempt_authenticated = mk_config_bool(cfg, "block", "exempt_authenticated");
    return p;
}

void block_policy_free(struct block_policy *p)
{
    if (p == NULL)
        return;
    mk_list_free(p->bad_clients);
    mk_list_free(p->allow_clients);
    mk_list_free(p->bad_senders);
    mk_list_free(p->allow_senders);
    for (int i = 0; i < 4; i++)
        free(p->files[i]);
    free(p->personal_list_dir);
    free(p->tag_header);
    free(p);
}

static void block_update_exempt(struct block_client *c, const struct block_policy *p)
{
    bool trusted = c->origin.trusted_network || c->origin.originating_daemon
        || c->origin.local_submission;

    c->exempt = c->allowed || (trusted && p->exempt_trusted)
        || (c->origin.authenticated && p->exempt_authenticated);
}

void block_client_init(struct block_client *c, const struct block_policy *p,
                       const struct mk_origin_policy *origin, const struct mk_ip *ip,
                       const char *daemon_name)
{
    memset(c, 0, sizeof(*c));
    if (ip && ip->family) {
        struct mk_ip key = *ip;

        c->ip = *ip;
        mk_ip_format(ip, c->ip_text, sizeof(c->ip_text));
        if (key.family == AF_INET6) {
            char prefix[MK_IP_TEXT_MAX];

            memset(key.bytes + 8, 0, 8);
            snprintf(c->rate_key, sizeof(c->rate_key), "%s/64",
                     mk_ip_format(&key, prefix, sizeof(prefix)));
        } else {
            snprintf(c->rate_key, sizeof(c->rate_key), "%s", c->ip_text);
        }
        c->allowed = mk_list_match_ip(p->allow_clients, ip) != NULL;
    } else {
        snprintf(c->ip_text, sizeof(c->ip_text), "local");
        snprintf(c->rate_key, sizeof(c->rate_key), "local");
    }
    c->origin = mk_origin_classify(origin, ip, NULL, daemon_name);
    block_update_exempt(c, p);
}

void block_client_authenticated(struct block_client *c, const struct block_policy *p,
                                const char *login)
{
    if (login == NULL || *login == '\0')
        return;
    snprintf(c->login, sizeof(c->login), "%s", login);
    c->origin.authenticated = true;
    block_update_exempt(c, p);
}

static void block_decide(struct block_decision *d, enum block_verdict verdict, const char *check,
                         const struct mk_rule *rule, const char *rcode, const char *xcode,
                         const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void block_decide(struct block_decision *d, enum block_verdict verdict, const char *check,
                         const struct mk_rule *rule, const char *rcode, const char *xcode,
                         const char *fmt, ...)
{
    va_list ap;

    d->verdict = verdict;
    d->check = check;
    d->rule = rule;
    d->rcode = rcode;
    d->xcode = xcode;
    va_start(ap, fmt);
    vsnprintf(d->text, sizeof(d->text), fmt, ap);
    va_end(ap);
}

static void block_pass(struct block_decision *d)
{
    memset(d, 0, sizeof(*d));
    d->verdict = BLOCK_PASS;
}

static bool block_banned(struct mk_rate *state, const struct block_client *c, time_t now,
                         struct block_decision *d)
{
    char key[sizeof(c->rate_key) + 4];
    time_t until;

    snprintf(key, sizeof(key), "ban:%s", c->rate_key);
    if ((until = mk_rate_banned(state, key, now)) == 0)
        return false;
    block_decide(d, BLOCK_DISCONNECT, "dictionary_ban", NULL, "421", "4.7.0",
                 "Too many unknown recipients from [%s]; try again in %lld minutes",
                 c->ip_text, (long long) (until - now + 59) / 60);
    return true;
}

void block_check_client(const struct block_policy *p, struct mk_rate *state,
                        const struct block_client *c, time_t now, struct block_decision *d)
{
    const struct mk_rule *rule;

    block_pass(d);
    if (c->exempt || c->ip.family == 0)
        return;
    if (block_banned(state, c, now, d))
        return;
    if ((rule = mk_list_match_ip(p->bad_clients, &c->ip)) != NULL)
        block_decide(d, BLOCK_REJECT, "bad_clients", rule, "554", "5.7.1",
                     "Client address [%s] is blocked by local policy", c->ip_text);
}

/* Count one event; true (and a decision) when it goes over the limit. */
static bool block_over_rate(struct mk_rate *state, const char *prefix, const char *id,
                            long long limit, long long window, time_t now)
{
    char key[512];

    if (limit <= 0)
        return false;
    snprintf(key, sizeof(key), "%s:%s", prefix, id);
    return mk_rate_hit(state, key, window, now) > (double) limit;
}

void block_check_sender(const struct block_policy *p, struct mk_rate *state,
                        const struct block_client *c, const char *sender, time_t now,
                        struct block_decision *d)
{
    const struct mk_rule *rule;

    block_pass(d);
    if (c->login[0] && block_over_rate(state, "sender", c->login, p->sender_rate_limit,
                                       p->sender_rate_window, now)) {
        block_decide(d, BLOCK_TEMPFAIL, "sender_rate_limit", NULL, "450", "4.7.1",
                     "Sending rate limit of this account exceeded; try again later");
        return;
    }
    if (c->exempt)
        return;
    if (block_banned(state, c, now, d))
        return;
    if (block_over_rate(state, "client", c->rate_key, p->client_rate_limit,
                        p->client_rate_window, now)) {
        block_decide(d, BLOCK_TEMPFAIL, "client_rate_limit", NULL, "450", "4.7.1",
                     "Too many messages from [%s]; try again later", c->ip_text);
        return;
    }
    if ((rule = mk_list_match_sender(p->allow_senders, sender)) != NULL) {
        if (rule == &mk_list_match_failed)
            block_decide(d, BLOCK_TEMPFAIL, "allow_senders", rule, "451", "4.3.0",
                         "Temporary failure evaluating local policy; try again later");
        return;
    }
    if ((rule = mk_list_match_sender(p->bad_senders, sender)) != NULL) {
        if (rule == &mk_list_match_failed)
            block_decide(d, BLOCK_TEMPFAIL, "bad_senders", rule, "451", "4.3.0",
                         "Temporary failure evaluating local policy; try again later");
        else
            block_decide(d, BLOCK_REJECT, "bad_senders", rule, "550", "5.7.1",
                         "Sender address is blocked by local policy");
    }
}

/*
 * The personal list file: one entry per line, as in a sender list; an
 * entry written with a leading '+' allows instead of blocks.
 */
static void block_read_personal_file(const struct block_policy *p, const char *recipient,
                                     char ***block, char ***allow)
{
    size_t nblock = 0, nallow = 0;
    char *path, line[MK_LIST_MAX_LINE + 2];
    FILE *fp;

    *block = mk_xcalloc(1, sizeof(char *));
    *allow = mk_xcalloc(1, sizeof(char *));
    /* The address names a file: never let it name another directory. */
    if (*p->personal_list_dir == '\0' || strchr(recipient, '/') || recipient[0] == '.')
        return;
    path = mk_xasprintf("%s/%s", p->personal_list_dir, recipient);
    fp = fopen(path, "r");
    free(path);
    if (fp == NULL)
        return;
    while (fgets(line, sizeof(line), fp)) {
        char *entry, ***list = block;
        size_t *n = &nblock;

        if (strchr(line, '\n') == NULL && !feof(fp)) {
            int ch;

            /* Longer than any entry can be: skip the whole line. */
            while ((ch = getc(fp)) != EOF && ch != '\n')
                continue;
            continue;
        }
        entry = mk_str_trim(line);
        if (*entry == '\0' || *entry == '#')
            continue;
        if (*entry == '+') {
            entry = mk_str_trim(entry + 1);
            list = allow;
            n = &nallow;
        }
        *list = mk_xrealloc(*list, (*n + 2) * sizeof(char *));
        (*list)[(*n)++] = mk_xstrdup(entry);
        (*list)[*n] = NULL;
    }
    fclose(fp);
}

/*
 * Match the sender against one user's list. Entries that do not parse are
 * skipped: one user's typo must not stop their mail.
 */
static bool block_personal_match(const char *source, char *const *values, const char *sender)
{
    struct mk_list *list;
    char *errors = NULL;
    bool hit;

    if (values == NULL || values[0] == NULL)
        return false;
    list = mk_list_from_values(source, values, MK_LIST_SENDERS,
                               MK_LIST_NO_PATTERNS | MK_LIST_SKIP_BAD, &errors);
    free(errors);
    hit = mk_list_match_sender(list, sender) != NULL;
    mk_list_free(list);
    return hit;
}

static void block_check_personal(const struct block_policy *p, const struct mk_dir_user *user,
                                 const char *sender, const char *recipient,
                                 struct block_decision *d)
{
    char **file_block, **file_allow;
    const char *mode;
    bool blocked = false, allowed;
    enum block_action action = p->personal_action;

    block_read_personal_file(p, user->address, &file_block, &file_allow);
    allowed = block_personal_match("allowed_sender", mk_dir_user_values(user, "allowed_sender"), sender)
        || block_personal_match("personal file", file_allow, sender);
    if (!allowed)
        blocked = block_personal_match("blocked_sender", mk_dir_user_values(user, "blocked_sender"), sender)
            || block_personal_match("personal file", file_block, sender);
    mk_str_array_free(file_block);
    mk_str_array_free(file_allow);
    if (!blocked)
        return;
    if ((mode = mk_dir_user_value(user, "block_mode")) != NULL) {
        if (strcasecmp(mode, "tag") == 0)
            action = BLOCK_ACTION_TAG;
        else if (strcasecmp(mode, "reject") == 0)
            action = BLOCK_ACTION_REJECT;
    }
    if (action == BLOCK_ACTION_TAG)
        block_decide(d, BLOCK_TAG, "personal_list", NULL, NULL, NULL, "tagged for %s", p->tag_header);
    else
        block_decide(d, BLOCK_REJECT, "personal_list", NULL, "550", "5.7.1",
                     "<%s>: Recipient does not accept mail from this sender", recipient);
}

void block_check_recipient(const struct block_policy *p, struct mk_rate *state,
                           struct mk_directory *dir, const struct block_client *c,
                           const char *sender, const char *recipient, time_t now,
                           struct block_decision *d)
{
    const char *domain = mk_addr_domain(recipient);
    struct mk_dir_user *user = NULL;
    enum mk_dir_status status;
    char key[sizeof(c->rate_key) + 16];

    block_pass(d);
    if (!c->exempt && block_banned(state, c, now, d))
        return;
    if (domain == NULL)
        return;
    status = mk_directory_domain(dir, domain);
    if (status == MK_DIR_NOT_FOUND)
        return;
    if (status == MK_DIR_FOUND)
        status = mk_directory_user(dir, recipient, &user);
    if (status == MK_DIR_TEMPFAIL) {
        block_decide(d, BLOCK_TEMPFAIL, "directory", NULL, "451", "4.3.0",
                     "Directory temporarily unavailable; try again later");
        return;
    }
    if (status == MK_DIR_NOT_FOUND) {
        /* RFC 5321 4.5.1: postmaster is always there, listed or not. */
        if (!p->reject_unknown || strncmp(recipient, "postmaster@", 11) == 0)
            return;
        if (!c->exempt && p->dict_limit > 0) {
            snprintf(key, sizeof(key), "unknown:%s", c->rate_key);
            if (mk_rate_hit(state, key, p->dict_window, now) >= (double) p->dict_limit) {
                snprintf(key, sizeof(key), "ban:%s", c->rate_key);
                mk_rate_ban(state, key, now, now + p->dict_ban);
                block_decide(d, BLOCK_DISCONNECT, "dictionary_limit", NULL, "421", "4.7.0",
                             "Too many unknown recipients from [%s]; try again in %lld minutes",
                             c->ip_text, (p->dict_ban + 59) / 60);
                return;
            }
        }
        block_decide(d, BLOCK_REJECT, "unknown_recipient", NULL, "550", "5.1.1",
                     "<%s>: Recipient address rejected: User unknown", recipient);
        return;
    }
    if (p->personal_lists)
        block_check_personal(p, user, sender, recipient, d);
    mk_dir_user_unref(user);
}
