/*
 * libFuzzer target: what comes from SMTP clients - MAIL FROM / RCPT TO
 * arguments (mk_addr_normalize), client addresses and networks
 * (mk_ip_parse, mk_cidr_parse) and socket specifications.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mk_addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *norm;
    struct mk_cidr net;
    struct mk_ip ip;
    const char *why;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if ((norm = mk_addr_normalize(text)) != NULL) {
        const char *domain = mk_addr_domain(norm);

        if (domain)
            (void) mk_domain_valid(domain);
        free(norm);
    }
    if (mk_ip_parse(text, &ip) == 0) {
        char buf[MK_IP_TEXT_MAX];

        mk_ip_format(&ip, buf, sizeof(buf));
    }
    if (mk_cidr_parse(text, &net, &why) == 0 && mk_ip_parse("192.0.2.1", &ip) == 0)
        (void) mk_cidr_contains(&net, &ip);
    (void) mk_socket_spec_check(text);
    free(text);
    return 0;
}
