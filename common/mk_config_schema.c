/*
 * mk_config_schema - every section and key of mailkeep.conf, with its
 * type and default. mailkeep.conf(5) documents the same table; keep them
 * together.
 */
#include "config.h"

#include "mk_config.h"
#include "mk_util.h"

#define S(sec, name, def)		{sec, name, MK_CFG_STRING, def, NULL, 0, 0}
#define P(sec, name, def)		{sec, name, MK_CFG_PATH, def, NULL, 0, 0}
#define L(sec, name, def)		{sec, name, MK_CFG_LIST, def, NULL, 0, 0}
#define B(sec, name, def)		{sec, name, MK_CFG_BOOL, def, NULL, 0, 0}
#define E(sec, name, def, choices)	{sec, name, MK_CFG_ENUM, def, choices, 0, 0}
#define I(sec, name, def, lo, hi)	{sec, name, MK_CFG_INT, def, NULL, lo, hi}
#define D(sec, name, def, lo, hi)	{sec, name, MK_CFG_DURATION, def, NULL, lo, hi}
#define Z(sec, name, def, lo, hi)	{sec, name, MK_CFG_SIZE, def, NULL, lo, hi}
#define SOCK(sec, def)			{sec, "socket", MK_CFG_SOCKET, def, NULL, 0, 0}
#define N(sec, name, def)		{sec, name, MK_CFG_NETS, def, NULL, 0, 0}
#define M(sec, name, def, choices)	{sec, name, MK_CFG_MAP, def, choices, 0, 0}
#define PH(sec, name, def)		{sec, name, MK_CFG_PHRASES, def, NULL, 0, 0}
#define REQUIRED			NULL

/* What every milter daemon's section has. */
#define MILTER_KEYS(sec, port) \
    SOCK(sec, "inet:" port "@127.0.0.1"), \
    S(sec, "user", ""), \
    P(sec, "pidfile", "")

const struct mk_config_key mk_config_schema[] = {
    /* [global] */
    E("global", "log", "syslog", "syslog|stderr"),
    E("global", "log_facility", "mail",
      "mail|daemon|auth|authpriv|user|local0|local1|local2|local3|local4|local5|local6|local7"),
    E("global", "log_level", "info", "error|warning|info|debug"),
    P("global", "state_dir", MK_LOCALSTATEDIR "/lib/mailkeep"),
    P("global", "spool_dir", MK_LOCALSTATEDIR "/spool/mailkeep"),
    N("global", "trusted_networks", "127.0.0.0/8 ::1/128"),
    L("global", "originating_daemons", "ORIGINATING"),
    L("global", "local_domains", ""),
    E("global", "directory", "files", "files|ldap"),
    P("global", "directory_domains_file", ""),
    P("global", "directory_users_file", ""),
    S("global", "recipient_delimiter", "+"),
    D("global", "reload_interval", "5s", 1, 3600),

    /* [ldap] */
    S("ldap", "uri", ""),
    S("ldap", "base", ""),
    S("ldap", "bind_dn", ""),
    S("ldap", "bind_password", ""),
    P("ldap", "bind_password_file", ""),
    B("ldap", "starttls", "no"),
    D("ldap", "timeout", "5s", 1, 300),
    D("ldap", "cache_ttl", "5m", 0, 86400),
    D("ldap", "negative_cache_ttl", "1m", 0, 86400),
    I("ldap", "cache_size", "100000", 1, 100000000),
    S("ldap", "user_filter", "(&(objectClass=inetOrgPerson)(mail=%s))"),
    S("ldap", "domain_filter", "(&(objectClass=domainRelatedObject)(associatedDomain=%s))"),
    S("ldap", "group_filter", "(&(objectClass=groupOfNames)(member=%D))"),
    S("ldap", "group_attribute", "cn"),

    /* [block] */
    MILTER_KEYS("block", "10025"),
    P("block", "bad_clients", ""),
    B("block", "delay_client_reject", "no"),
    P("block", "allow_clients", ""),
    P("block", "bad_senders", ""),
    P("block", "allow_senders", ""),
    B("block", "personal_lists", "yes"),
    P("block", "personal_list_dir", ""),
    E("block", "personal_action", "reject", "reject|tag"),
    S("block", "tag_header", "X-Mailkeep-Blocked"),
    B("block", "reject_unknown_recipients", "yes"),
    I("block", "dictionary_limit", "10", 0, 1000000),
    D("block", "dictionary_window", "1m", 1, 86400),
    D("block", "dictionary_ban", "1h", 1, 604800),
    I("block", "client_rate_limit", "0", 0, 100000000),
    D("block", "client_rate_window", "1m", 1, 86400),
    I("block", "sender_rate_limit", "0", 0, 100000000),
    D("block", "sender_rate_window", "1h", 1, 86400),
    B("block", "exempt_trusted", "yes"),
    B("block", "exempt_authenticated", "yes"),

    /* [dlp] */
    MILTER_KEYS("dlp", "10026"),
    L("dlp", "builtin_detectors", "all"),
    I("dlp", "max_depth", "8", 1, 64),
    Z("dlp", "max_total", "64M", 1024, 0),
    Z("dlp", "max_part", "32M", 1024, 0),
    I("dlp", "max_ratio", "100", 2, 100000),
    I("dlp", "max_members", "10000", 1, 10000000),
    Z("dlp", "max_message", "100M", 1024, 0),
    I("dlp", "max_concurrent_scans", "0", 0, 1024),
    E("dlp", "unscannable_action", "quarantine", "log|tag|warn|quarantine|reject"),
    S("dlp", "tag_header", "X-Mailkeep-DLP"),
    S("dlp", "notify_from", "postmaster"),
    S("dlp", "notify_command", "/usr/sbin/sendmail -oi -t"),
    P("dlp", "incident_log", MK_LOCALSTATEDIR "/lib/mailkeep/dlp-incidents.jsonl"),

    /* [detector NAME]: administrators' own detectors */
    S("detector *", "pattern", REQUIRED),
    S("detector *", "validator", "none"),
    PH("detector *", "keywords", ""),
    I("detector *", "window", "50", 1, 10000),
    I("detector *", "min_count", "1", 1, 1000000),
    B("detector *", "keyword_required", "no"),

    /* [rule NAME]: DLP policy */
    L("rule *", "direction", "inbound outbound internal"),
    L("rule *", "sender_groups", ""),
    L("rule *", "recipient_groups", ""),
    L("rule *", "detectors", REQUIRED),
    E("rule *", "min_confidence", "medium", "low|medium|high"),
    I("rule *", "min_count", "1", 1, 1000000),
    E("rule *", "action", REQUIRED, "log|tag|warn|quarantine|reject"),
    S("rule *", "subject_prefix", ""),
    S("rule *", "reply", ""),

    /* [av] */
    MILTER_KEYS("av", "10027"),
    P("av", "database_dir", "/var/lib/clamav"),
    Z("av", "max_scansize", "100M", 1024, 0),
    Z("av", "max_filesize", "25M", 1024, 0),
    I("av", "max_recursion", "16", 1, 64),
    I("av", "max_files", "10000", 1, 1000000),
    D("av", "max_scantime", "2m", 1, 3600),
    Z("av", "memory_limit", "10M", 0, 0),
    P("av", "temp_dir", "/var/tmp"),
    I("av", "max_concurrent_scans", "0", 0, 1024),
    E("av", "inbound_action", "reject", "tag|replace|quarantine|reject|discard"),
    E("av", "outbound_action", "reject", "tag|replace|quarantine|reject|discard"),
    E("av", "internal_action", "reject", "tag|replace|quarantine|reject|discard"),
    E("av", "encrypted_action", "quarantine", "accept|tag|quarantine|reject"),
    E("av", "limits_action", "quarantine", "accept|tag|quarantine|reject"),
    S("av", "tag_header", "X-Mailkeep-AV"),
    S("av", "notify_admin", ""),
    E("av", "notify_sender", "outbound", "no|outbound|all"),
    B("av", "notify_recipients", "no"),
    S("av", "notify_from", "postmaster"),
    S("av", "notify_command", "/usr/sbin/sendmail -oi -t"),

    /* [journal]: mailkeep-journal, the archive's capture */
    MILTER_KEYS("journal", "10029"),
    P("journal", "spool_dir", MK_LOCALSTATEDIR "/spool/mailkeep/journal"),
    E("journal", "on_failure", "tempfail", "tempfail|accept"),
    Z("journal", "min_free", "100M", 0, 0),

    /* [archive]: the compliance archive (mailkeep archive) */
    P("archive", "dir", MK_LOCALSTATEDIR "/lib/mailkeep/archive"),
    P("archive", "keys_dir", MK_SYSCONFDIR "/mailkeep/archive-keys"),
    P("archive", "index", ""),
    I("archive", "batch", "256", 1, 100000),
    D("archive", "ingest_interval", "1s", 1, 3600),
    S("archive", "doveadm", "/usr/bin/doveadm"),
    S("archive", "export_mailbox", "Archive export"),

    /* [audit]: mailkeep-auditd, the audit log and the usage database */
    P("audit", "socket", "/run/mailkeep/audit.sock"),
    S("audit", "socket_mode", "0660"),
    S("audit", "socket_group", ""),
    S("audit", "user", ""),
    P("audit", "pidfile", ""),
    P("audit", "log_dir", MK_LOCALSTATEDIR "/lib/mailkeep/audit"),
    P("audit", "db", MK_LOCALSTATEDIR "/lib/mailkeep/audit/usage.sqlite"),
    P("audit", "keys_dir", MK_SYSCONFDIR "/mailkeep/audit-keys"),
    D("audit", "checkpoint_interval", "60s", 1, 86400),
    Z("audit", "max_pending", "64M", 1048576, 0),
    I("audit", "commit_delay", "20", 0, 1000),      /* milliseconds */

    /* [usage]: mailkeep usage (the usage database is [audit] db) */
    S("usage", "doveadm", "/usr/bin/doveadm"),

    /* [crypt]: mailkeep crypt, the keys of the mailkeep_crypt Dovecot plugin */
    P("crypt", "keys", MK_LOCALSTATEDIR "/lib/mailkeep/crypt"),
    P("crypt", "server_key", MK_SYSCONFDIR "/mailkeep/crypt-server.key"),
    P("crypt", "escrow_key", ""),
    S("crypt", "mail_user", "mail"),
    S("crypt", "doveadm", "/usr/bin/doveadm"),
    S("crypt", "doveconf", "/usr/bin/doveconf"),

    /* [otp]: pam_mailkeep's second factor, and mailkeep otp */
    P("otp", "store", MK_LOCALSTATEDIR "/lib/mailkeep/otp"),
    P("otp", "key_file", MK_SYSCONFDIR "/mailkeep/otp.key"),
    E("otp", "policy", "optional", "required|optional|exempt-trusted"),
    M("otp", "group_policy", "", "required|optional|exempt-trusted"),
    N("otp", "trusted_networks", ""),
    S("otp", "issuer", "Mailkeep"),
    E("otp", "algorithm", "sha1", "sha1|sha256|sha512"),
    I("otp", "digits", "6", 6, 8),
    I("otp", "period", "30", 10, 300),
    I("otp", "window", "1", 0, 10),
    I("otp", "hotp_window", "10", 0, 100),
    I("otp", "max_failures", "5", 0, 1000),
    D("otp", "lockout", "15m", 0, 31536000),
    I("otp", "recovery_codes", "10", 0, 20),

    /* [password]: pam_mailkeep's password policy, and mailkeep report passwords */
    I("password", "min_length", "10", 6, 256),
    I("password", "min_classes", "3", 0, 4),
    I("password", "max_repeat", "3", 0, 256),
    B("password", "dictionary_check", "yes"),
    B("password", "user_check", "yes"),
    I("password", "history", "5", 0, 24),
    D("password", "max_age", "0", 0, 0),
    D("password", "warn_age", "14d", 0, 0),
    B("password", "must_change_first", "no"),
    L("password", "report_to", ""),
    S("password", "report_from", "postmaster"),
    S("password", "notify_command", "/usr/sbin/sendmail -oi -t"),

    /* [recall]: mailkeep-recall and mailkeep recall */
    MILTER_KEYS("recall", "10028"),
    P("recall", "db", MK_LOCALSTATEDIR "/lib/mailkeep/recall.sqlite"),
    D("recall", "keep", "90d", 3600, 0),
    S("recall", "message_id_domain", ""),
    D("recall", "undo_send", "0", 0, 86400),
    L("recall", "undo_send_groups", ""),
    D("recall", "undo_send_max", "1h", 0, 86400),
    B("recall", "notice", "no"),
    S("recall", "notice_from", "postmaster"),
    S("recall", "doveadm", "/usr/bin/doveadm"),
    P("recall", "postfix_config", "/etc/postfix"),
    P("recall", "auth_socket", "/run/dovecot/auth-client"),

    /* [quarantine]: the hold queue that DLP and antivirus share */
    P("quarantine", "postfix_config", "/etc/postfix"),
};

const unsigned mk_config_schema_size = MK_ARRAY_LEN(mk_config_schema);
