#ifndef MK_DOVECOT_CLIENT_H
#define MK_DOVECOT_CLIENT_H

/*
 * mk-dovecot-client - the Dovecot plugins' line client for mailkeep-auditd.
 * The manual page is at the top of mk-dovecot-client.c.
 *
 * Include after Dovecot's "lib.h" (needs string_t and bool).
 */

#define MKDC_DEFAULT_SOCKET "/run/mailkeep/audit.sock"
/* docs/audit-protocol.md: a line is at most 65536 bytes with its newline */
#define MKDC_MAX_LINE 65536
/* How long a sync (and a connect) may take before we give up. */
#define MKDC_TIMEOUT_MSECS 5000
/* mkdc_queue() writes the queued lines when they would pass this. */
#define MKDC_QUEUE_MAX (32 * 1024)

struct mkdc_conn;

void mkdc_init(void);
void mkdc_deinit(void);

struct mkdc_conn *mkdc_conn_get(const char *socket_path);
int mkdc_conn_check(struct mkdc_conn *conn, const char *log_prefix,
		    const char **error_r);
int mkdc_send(struct mkdc_conn *conn, char kind, const char *log_prefix,
	      string_t *json);
int mkdc_queue(struct mkdc_conn *conn, char kind, const char *log_prefix,
	       string_t *json);
int mkdc_flush(struct mkdc_conn *conn, const char *log_prefix);
int mkdc_sync(struct mkdc_conn *conn, const char *log_prefix);

void mkdc_json_begin(string_t *json);
void mkdc_json_str(string_t *json, const char *key, const char *value);
void mkdc_json_str_max(string_t *json, const char *key, const char *value,
		       size_t max_bytes);
void mkdc_json_uint(string_t *json, const char *key, uint64_t value);
void mkdc_json_bool(string_t *json, const char *key, bool value);
void mkdc_json_str_array(string_t *json, const char *key,
			 const char *const *values);
void mkdc_json_end(string_t *json);

#endif
