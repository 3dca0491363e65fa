/*
 * NAME
 *	mk-dovecot-client - line client for mailkeep-auditd, shared by the
 *	mailkeep_audit and mailkeep_usage Dovecot plugins
 *
 * SUMMARY
 *	One unix stream connection per socket path and process, opened on
 *	first use. Writes whole lines ("A {json}\n", "U {json}\n") with
 *	blocking writes, asks the daemon for durability with "S TOKEN", and
 *	builds the JSON objects those lines carry.
 *
 * SYNOPSIS
 *	#include "lib.h"
 *	#include "mk-dovecot-client.h"
 *
 *	void mkdc_init(void);
 *	void mkdc_deinit(void);
 *
 *	struct mkdc_conn *mkdc_conn_get(const char *socket_path);
 *	int mkdc_conn_check(struct mkdc_conn *conn, const char *log_prefix,
 *			    const char **error_r);
 *	int mkdc_send(struct mkdc_conn *conn, char kind,
 *		      const char *log_prefix, string_t *json);
 *	int mkdc_queue(struct mkdc_conn *conn, char kind,
 *		       const char *log_prefix, string_t *json);
 *	int mkdc_flush(struct mkdc_conn *conn, const char *log_prefix);
 *	int mkdc_sync(struct mkdc_conn *conn, const char *log_prefix);
 *
 *	void mkdc_json_begin(string_t *json);
 *	void mkdc_json_str(string_t *json, const char *key, const char *value);
 *	void mkdc_json_str_max(string_t *json, const char *key,
 *			       const char *value, size_t max_bytes);
 *	void mkdc_json_uint(string_t *json, const char *key, uint64_t value);
 *	void mkdc_json_bool(string_t *json, const char *key, bool value);
 *	void mkdc_json_str_array(string_t *json, const char *key,
 *				 const char *const *values);
 *	void mkdc_json_end(string_t *json);
 *
 * DESCRIPTION
 *	The protocol is docs/audit-protocol.md.
 *
 *	mkdc_init() and mkdc_deinit() are called from each plugin's init and
 *	deinit; they count, and the last deinit closes every connection.
 *	Dovecot loads plugins with RTLD_GLOBAL, so when both plugins are
 *	loaded the second one's calls bind to the first one's copy of this
 *	module and the two share one connection per socket path. Were the
 *	symbols hidden, each plugin would simply have its own connection;
 *	nothing here depends on the sharing.
 *
 *	mkdc_conn_get() returns the connection for socket_path, creating it
 *	unconnected. It never fails.
 *
 *	mkdc_conn_check() makes sure the connection is up: it reconnects if
 *	the daemon closed it, connects if not connected. It returns 0, or -1
 *	with a message in error_r. The plugins call it when a session starts to
 *	refuse the session while the daemon is away.
 *
 *	mkdc_send() writes kind, a space, json and a newline as one line,
 *	connecting first if needed. Writes block: the daemon stops reading
 *	when it cannot keep what it gets, and the sender must then wait
 *	rather than drop. Answers the daemon queued (E lines) are read
 *	without blocking before each write and logged, so that they never
 *	pile up to the daemon's 64 KiB limit. On EPIPE or ECONNRESET (or a
 *	connection the daemon closed) it reconnects once and writes the line
 *	again, from the first line not completely written. It returns 0, or
 *	-1 after logging "<log_prefix>: record not delivered: <json>", so
 *	that a lost record is at least in the mail log.
 *
 *	mkdc_queue() appends the line to the connection's queue instead,
 *	writing the queue first when the line would take it past
 *	MKDC_QUEUE_MAX (32 KiB); mkdc_flush() writes the queue. mkdc_send()
 *	is queue and flush. The queue keeps the order of every line sent on
 *	the connection: mkdc_send() and mkdc_sync() write it first, and the
 *	last mkdc_deinit() flushes it. It lets a caller that makes many
 *	records in one go (a FETCH of many messages, a transaction's commit)
 *	write them in one system call, which the daemon then reads in one;
 *	the price is that a process that dies before the flush loses them.
 *
 *	mkdc_sync() sends "S TOKEN" and waits up to 5 s for
 *	"S TOKEN ok SEQ": then every line this connection sent before is on
 *	disk. E lines read meanwhile are logged. Returns 0 on ok, -1 (logged)
 *	on "S TOKEN error", timeout, or a lost connection; a sync cannot vouch
 *	for lines sent on an earlier connection, so it is not retried.
 *
 *	The mkdc_json_*() functions append to an object in a string_t:
 *	begin, then fields, then end. Strings are escaped as Dovecot's
 *	json_append_escaped() does (runs of plain ASCII are copied whole,
 *	the rest goes through it): quotes, backslashes and control characters are
 *	escaped, valid UTF-8 is kept as it is, invalid bytes become U+FFFD
 *	(the daemon refuses invalid UTF-8). mkdc_json_str() with a NULL value
 *	writes nothing: absent fields are absent, not null.
 *	mkdc_json_str_max() cuts value to at most max_bytes on a character
 *	boundary and adds "<key>_truncated":true when it did.
 */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "unichar.h"
#include "json-parser.h"
#include "mk-dovecot-client.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct mkdc_conn {
	char *path;
	int fd;
	/* Unparsed bytes the daemon sent; only ever short lines. */
	buffer_t *input;
	/* Lines queued and not yet written (mkdc_queue()). */
	buffer_t *out;
	unsigned int sync_counter;
};

static ARRAY(struct mkdc_conn *) mkdc_conns;
static unsigned int mkdc_refcount;

static void mkdc_close(struct mkdc_conn *conn)
{
	if (conn->fd != -1) {
		i_close_fd(&conn->fd);
		conn->fd = -1;
	}
	buffer_set_used_size(conn->input, 0);
}

void mkdc_init(void)
{
	if (mkdc_refcount++ == 0)
		i_array_init(&mkdc_conns, 2);
}

void mkdc_deinit(void)
{
	struct mkdc_conn *conn;

	i_assert(mkdc_refcount > 0);
	if (--mkdc_refcount > 0)
		return;
	array_foreach_elem(&mkdc_conns, conn) {
		T_BEGIN {
			(void)mkdc_flush(conn, "mailkeep");
		} T_END;
		mkdc_close(conn);
		buffer_free(&conn->input);
		buffer_free(&conn->out);
		i_free(conn->path);
		i_free(conn);
	}
	array_free(&mkdc_conns);
}

struct mkdc_conn *mkdc_conn_get(const char *socket_path)
{
	struct mkdc_conn *conn;

	i_assert(mkdc_refcount > 0);
	array_foreach_elem(&mkdc_conns, conn) {
		if (strcmp(conn->path, socket_path) == 0)
			return conn;
	}
	conn = i_new(struct mkdc_conn, 1);
	conn->path = i_strdup(socket_path);
	conn->fd = -1;
	conn->input = buffer_create_dynamic(default_pool, 256);
	conn->out = buffer_create_dynamic(default_pool, 4096);
	array_push_back(&mkdc_conns, &conn);
	return conn;
}

static int mkdc_connect(struct mkdc_conn *conn, const char **error_r)
{
	union {
		struct sockaddr sa;
		struct sockaddr_un un;
	} addr;
	struct timeval tv;
	int fd;

	i_assert(conn->fd == -1);
	i_zero(&addr);
	addr.un.sun_family = AF_UNIX;
	if (strlen(conn->path) >= sizeof(addr.un.sun_path)) {
		*error_r = t_strdup_printf("socket path too long: %s",
					   conn->path);
		return -1;
	}
	memcpy(addr.un.sun_path, conn->path, strlen(conn->path));

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		*error_r = t_strdup_printf("socket() failed: %m");
		return -1;
	}
	/* A daemon whose listen backlog is full makes connect() wait; on
	   Linux a unix socket's connect() honours SO_SNDTIMEO, so a wedged
	   daemon delays a login by at most the timeout. Writes afterwards
	   must block without limit (see the contract), so reset it. */
	tv.tv_sec = MKDC_TIMEOUT_MSECS / 1000;
	tv.tv_usec = (MKDC_TIMEOUT_MSECS % 1000) * 1000;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (connect(fd, &addr.sa, sizeof(addr.un)) < 0) {
		if (errno == EINTR)
			continue;
		*error_r = t_strdup_printf("connect(%s) failed: %m",
					   conn->path);
		i_close_fd(&fd);
		return -1;
	}
	i_zero(&tv);
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	conn->fd = fd;
	buffer_set_used_size(conn->input, 0);
	return 0;
}


/* Handle every complete line in conn->input. Returns 1 when the answer to
   want_token (if not NULL) was among them, with *sync_ok_r telling whether
   it was "ok"; 0 otherwise. */
static int
mkdc_parse_lines(struct mkdc_conn *conn, const char *log_prefix,
		 const char *want_token, bool *sync_ok_r)
{
	const unsigned char *data = conn->input->data;
	size_t used = conn->input->used, start = 0, tlen;
	const unsigned char *nl;
	const char *line;
	int found = 0;

	while (start < used &&
	       (nl = memchr(data + start, '\n', used - start)) != NULL) {
		line = t_strndup(data + start, nl - (data + start));
		start = (nl - data) + 1;

		if (line[0] == 'E' && line[1] == ' ') {
			i_error("%s: mailkeep-auditd refused a line: %s",
				log_prefix, line + 2);
		} else if (line[0] == 'S' && line[1] == ' ' &&
			   want_token != NULL && found == 0 &&
			   strncmp(line + 2, want_token,
				   (tlen = strlen(want_token))) == 0 &&
			   line[2 + tlen] == ' ') {
			const char *rest = line + 2 + tlen + 1;

			found = 1;
			*sync_ok_r = strncmp(rest, "ok", 2) == 0 &&
				(rest[2] == ' ' || rest[2] == '\0');
			if (!*sync_ok_r) {
				i_error("%s: mailkeep-auditd could not keep "
					"this connection's records: %s",
					log_prefix, rest);
			}
		}
		/* Other S lines answer an earlier sync that timed out. */
	}
	buffer_delete(conn->input, 0, start);
	if (conn->input->used > MKDC_MAX_LINE) {
		/* No newline in 64 KiB: not our daemon talking. */
		i_error("%s: discarding %zu bytes of unexpected input from %s",
			log_prefix, conn->input->used, conn->path);
		buffer_set_used_size(conn->input, 0);
	}
	return found;
}

/* Read what the daemon sent without waiting. Returns 0, or -1 when the
   connection is gone (closed by the daemon or broken). */
static int mkdc_drain(struct mkdc_conn *conn, const char *log_prefix)
{
	unsigned char buf[1024];
	bool dummy;
	ssize_t ret;

	for (;;) {
		ret = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (ret > 0) {
			buffer_append(conn->input, buf, ret);
			(void)mkdc_parse_lines(conn, log_prefix, NULL, &dummy);
			continue;
		}
		if (ret == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

int mkdc_conn_check(struct mkdc_conn *conn, const char *log_prefix,
		    const char **error_r)
{
	/* A long-lived process (lmtp, or imap with service_count=0) may
	   hold a connection the daemon has since closed. */
	if (conn->fd != -1 && mkdc_drain(conn, log_prefix) < 0)
		mkdc_close(conn);
	if (conn->fd != -1)
		return 0;
	return mkdc_connect(conn, error_r);
}

static int mkdc_write_all(int fd, const unsigned char *data, size_t size,
			  size_t *done_r)
{
	ssize_t ret;

	*done_r = 0;
	while (size > 0) {
		/* MSG_NOSIGNAL: a dead daemon must give EPIPE, not kill the
		   mail process with SIGPIPE. */
		ret = send(fd, data, size, MSG_NOSIGNAL);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += ret;
		size -= ret;
		*done_r += ret;
	}
	return 0;
}

/* Log each line of data[0..size) as not delivered. */
static void mkdc_log_lost(const char *log_prefix, const unsigned char *data,
			  size_t size)
{
	const unsigned char *nl;

	while (size > 0 && (nl = memchr(data, '\n', size)) != NULL) {
		/* skip "A " / "U " */
		i_error("%s: record not delivered: %s", log_prefix,
			t_strndup(data + 2, nl - data - 2));
		size -= nl - data + 1;
		data = nl + 1;
	}
}

/* Write conn->out. A write that fails on a closed connection is retried
   once on a new one, from the first line not completely written: lines
   written whole before the failure are not sent twice. */
static int mkdc_write_out(struct mkdc_conn *conn, const char *log_prefix,
			  const char **error_r)
{
	const unsigned char *data = conn->out->data, *nl;
	size_t size = conn->out->used, done;
	unsigned int attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		if (conn->fd == -1 && mkdc_connect(conn, error_r) < 0)
			return -1;
		if (mkdc_drain(conn, log_prefix) < 0) {
			*error_r = "mailkeep-auditd closed the connection";
		} else if (mkdc_write_all(conn->fd, data, size, &done) == 0) {
			buffer_set_used_size(conn->out, 0);
			return 0;
		} else if (errno != EPIPE && errno != ECONNRESET) {
			*error_r = t_strdup_printf("write(%s) failed: %m",
						   conn->path);
			mkdc_close(conn);
			return -1;
		} else {
			*error_r = t_strdup_printf("write(%s) failed: %m",
						   conn->path);
			/* back to the start of the line cut short */
			while (done > 0 && data[done - 1] != '\n')
				done--;
			nl = data + done;
			buffer_delete(conn->out, 0, nl - data);
			data = conn->out->data;
			size = conn->out->used;
		}
		mkdc_close(conn);
		if (attempt == 0) {
			/* Lines sent earlier on the lost connection that the
			   daemon had not yet read are gone; say so once. */
			i_warning("%s: %s; reconnecting (records sent just "
				  "before may be lost)", log_prefix, *error_r);
		}
	}
	return -1;
}

int mkdc_flush(struct mkdc_conn *conn, const char *log_prefix)
{
	const char *error = NULL;

	if (conn->out->used == 0)
		return 0;
	if (mkdc_write_out(conn, log_prefix, &error) == 0)
		return 0;
	i_error("%s: %s", log_prefix, error);
	mkdc_log_lost(log_prefix, conn->out->data, conn->out->used);
	buffer_set_used_size(conn->out, 0);
	return -1;
}

int mkdc_queue(struct mkdc_conn *conn, char kind, const char *log_prefix,
	       string_t *json)
{
	if (str_len(json) + 3 > MKDC_MAX_LINE) {
		i_error("%s: line of %zu bytes is over the protocol's limit",
			log_prefix, str_len(json) + 3);
		i_error("%s: record not delivered: %s", log_prefix,
			str_c(json));
		return -1;
	}
	if (conn->out->used + str_len(json) + 3 > MKDC_QUEUE_MAX &&
	    mkdc_flush(conn, log_prefix) < 0) {
		/* the queued lines are logged as lost; this one goes on */
	}
	buffer_append_c(conn->out, kind);
	buffer_append_c(conn->out, ' ');
	buffer_append(conn->out, str_data(json), str_len(json));
	buffer_append_c(conn->out, '\n');
	return 0;
}

int mkdc_send(struct mkdc_conn *conn, char kind, const char *log_prefix,
	      string_t *json)
{
	if (mkdc_queue(conn, kind, log_prefix, json) < 0) {
		(void)mkdc_flush(conn, log_prefix);
		return -1;
	}
	return mkdc_flush(conn, log_prefix);
}

static long long mkdc_now_msecs(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		i_fatal("clock_gettime() failed: %m");
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mkdc_sync(struct mkdc_conn *conn, const char *log_prefix)
{
	const char *token, *line;
	unsigned char buf[1024];
	struct pollfd pfd;
	long long deadline, left;
	bool ok = FALSE;
	ssize_t ret;

	size_t done;

	if (mkdc_flush(conn, log_prefix) < 0 || conn->fd == -1) {
		/* Never connected, or lost: every record that failed has
		   been logged as not delivered already. */
		i_error("%s: sync not possible: not connected to %s",
			log_prefix, conn->path);
		return -1;
	}
	token = t_strdup_printf("mk%ld-%u", (long)getpid(),
				++conn->sync_counter);
	line = t_strdup_printf("S %s\n", token);
	if (mkdc_drain(conn, log_prefix) < 0 ||
	    mkdc_write_all(conn->fd, (const unsigned char *)line,
			   strlen(line), &done) < 0) {
		i_error("%s: sync failed: connection to %s lost",
			log_prefix, conn->path);
		mkdc_close(conn);
		return -1;
	}

	deadline = mkdc_now_msecs() + MKDC_TIMEOUT_MSECS;
	for (;;) {
		if (mkdc_parse_lines(conn, log_prefix, token, &ok) > 0)
			return ok ? 0 : -1;
		left = deadline - mkdc_now_msecs();
		if (left <= 0) {
			i_error("%s: sync with %s timed out after %d ms",
				log_prefix, conn->path, MKDC_TIMEOUT_MSECS);
			return -1;
		}
		pfd.fd = conn->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			i_error("%s: poll() failed: %m", log_prefix);
			return -1;
		}
		if (pfd.revents == 0)
			continue;
		ret = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (ret > 0) {
			buffer_append(conn->input, buf, ret);
		} else if (ret < 0 && (errno == EINTR || errno == EAGAIN ||
				       errno == EWOULDBLOCK)) {
			continue;
		} else {
			i_error("%s: sync failed: connection to %s lost",
				log_prefix, conn->path);
			mkdc_close(conn);
			return -1;
		}
	}
}

/* json_append_escaped_data(), the same output, faster: runs of plain
   ASCII are copied in one go, and only the other characters go through
   Dovecot's escaping one at a time. */
static void mkdc_json_escape(string_t *json, const unsigned char *p,
			     size_t n)
{
	size_t i = 0, run;
	unichar_t chr;
	int bytes;

	while (i < n) {
		for (run = i; run < n && p[run] >= 0x20 && p[run] < 0x7f &&
			      p[run] != '"' && p[run] != '\\'; run++) ;
		if (run > i) {
			str_append_data(json, p + i, run - i);
			i = run;
			continue;
		}
		bytes = p[i] < 0x80 ? 1 : uni_utf8_get_char_n(p + i, n - i, &chr);
		if (bytes <= 0)
			bytes = 1;
		json_append_escaped_data(json, p + i, bytes);
		i += bytes;
	}
}

static void mkdc_json_escaped(string_t *json, const char *text)
{
	mkdc_json_escape(json, (const unsigned char *)text, strlen(text));
}

static void mkdc_json_key(string_t *json, const char *key)
{
	size_t len = str_len(json);
	char last = len == 0 ? '\0' : (char)str_data(json)[len - 1];

	if (last != '{' && last != '[')
		str_append_c(json, ',');
	str_append_c(json, '"');
	mkdc_json_escaped(json, key);
	str_append(json, "\":");
}

void mkdc_json_begin(string_t *json)
{
	str_append_c(json, '{');
}

void mkdc_json_end(string_t *json)
{
	str_append_c(json, '}');
}

void mkdc_json_str(string_t *json, const char *key, const char *value)
{
	if (value == NULL)
		return;
	mkdc_json_key(json, key);
	str_append_c(json, '"');
	mkdc_json_escaped(json, value);
	str_append_c(json, '"');
}

void mkdc_json_str_max(string_t *json, const char *key, const char *value,
		       size_t max_bytes)
{
	size_t len;

	if (value == NULL)
		return;
	len = strlen(value);
	if (len <= max_bytes) {
		mkdc_json_str(json, key, value);
		return;
	}
	len = uni_utf8_data_truncate((const unsigned char *)value, len,
				     max_bytes);
	mkdc_json_key(json, key);
	str_append_c(json, '"');
	mkdc_json_escape(json, (const unsigned char *)value, len);
	str_append_c(json, '"');
	mkdc_json_bool(json, t_strconcat(key, "_truncated", NULL), TRUE);
}

void mkdc_json_uint(string_t *json, const char *key, uint64_t value)
{
	mkdc_json_key(json, key);
	str_printfa(json, "%"PRIu64, value);
}

void mkdc_json_bool(string_t *json, const char *key, bool value)
{
	mkdc_json_key(json, key);
	str_append(json, value ? "true" : "false");
}

void mkdc_json_str_array(string_t *json, const char *key,
			 const char *const *values)
{
	unsigned int i;

	mkdc_json_key(json, key);
	str_append_c(json, '[');
	for (i = 0; values[i] != NULL; i++) {
		if (i > 0)
			str_append_c(json, ',');
		str_append_c(json, '"');
		mkdc_json_escaped(json, values[i]);
		str_append_c(json, '"');
	}
	str_append_c(json, ']');
}
