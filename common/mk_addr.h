/*
 * NAME
 *	mk_addr 3h
 * SUMMARY
 *	IP addresses, CIDR networks, mail addresses and socket specifications
 * SYNOPSIS
 *	#include "mk_addr.h"
 *
 *	int	mk_ip_parse(const char *text, struct mk_ip *ip);
 *	int	mk_ip_from_sockaddr(const struct sockaddr *sa, struct mk_ip *ip);
 *	const char *mk_ip_format(const struct mk_ip *ip, char *buf, size_t len);
 *	int	mk_cidr_parse(const char *text, struct mk_cidr *net, const char **why);
 *	bool	mk_cidr_contains(const struct mk_cidr *net, const struct mk_ip *ip);
 *
 *	struct mk_cidr_set *mk_cidr_set_create(void);
 *	void	mk_cidr_set_add(struct mk_cidr_set *set, const struct mk_cidr *net, const void *tag);
 *	const void *mk_cidr_set_match(const struct mk_cidr_set *set, const struct mk_ip *ip);
 *	size_t	mk_cidr_set_count(const struct mk_cidr_set *set);
 *	void	mk_cidr_set_free(struct mk_cidr_set *set);
 *
 *	char	*mk_addr_normalize(const char *text);
 *	const char *mk_addr_domain(const char *address);
 *	bool	mk_domain_valid(const char *domain);
 *
 *	int	mk_socket_spec_check(const char *spec);
 * DESCRIPTION
 *	mk_ip_parse() accepts dotted IPv4, IPv6 (optionally in brackets or
 *	with Postfix's "IPv6:" prefix) and folds IPv4-mapped IPv6 addresses
 *	to IPv4, so one list entry matches both spellings. It returns 0 or
 *	-1.
 *
 *	mk_cidr_parse() accepts "address" or "address/prefix"; a network
 *	with host bits set is refused (as Postfix's cidr tables do), with an
 *	explanation in *why.
 *
 *	A CIDR set answers "which entry contains this address" with one hash
 *	probe per distinct prefix length in the set, so it stays fast with
 *	hundreds of thousands of entries. When several entries contain the
 *	address, the most specific one wins. Tags are the caller's.
 *
 *	mk_addr_normalize() turns a MAIL FROM or RCPT TO argument (with or
 *	without angle brackets, with a source route, quoted local part or
 *	trailing dot) into "local@domain" in lower case, for matching. The
 *	null sender becomes "". Malformed input (control characters, over
 *	512 bytes, unbalanced brackets or quotes) gives NULL. The result is
 *	allocated.
 *
 *	mk_addr_domain() returns the part after the last '@', or NULL.
 *
 *	mk_socket_spec_check() validates a libmilter socket specification:
 *	unix:/path, local:/path, /path, inet:port[@host], inet6:port[@host].
 */
#ifndef MK_ADDR_H
#define MK_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct mk_ip {
    int family;                         /* AF_INET or AF_INET6 */
    unsigned char bytes[16];            /* IPv4 uses the first four */
};

struct mk_cidr {
    struct mk_ip net;
    int prefix;
};

#define MK_IP_TEXT_MAX 64

int mk_ip_parse(const char *text, struct mk_ip *ip);
int mk_ip_from_sockaddr(const struct sockaddr *sa, struct mk_ip *ip);
const char *mk_ip_format(const struct mk_ip *ip, char *buf, size_t len);
int mk_cidr_parse(const char *text, struct mk_cidr *net, const char **why);
bool mk_cidr_contains(const struct mk_cidr *net, const struct mk_ip *ip);

struct mk_cidr_set;
struct mk_cidr_set *mk_cidr_set_create(void);
void mk_cidr_set_add(struct mk_cidr_set *set, const struct mk_cidr *net, const void *tag);
const void *mk_cidr_set_match(const struct mk_cidr_set *set, const struct mk_ip *ip);
size_t mk_cidr_set_count(const struct mk_cidr_set *set);
void mk_cidr_set_free(struct mk_cidr_set *set);

char *mk_addr_normalize(const char *text);
const char *mk_addr_domain(const char *address);
bool mk_domain_valid(const char *domain);

int mk_socket_spec_check(const char *spec);

#endif
