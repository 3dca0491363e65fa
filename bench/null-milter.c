/*
 * null-milter - the benchmark's reference: a libmilter filter that asks
 * the MTA for the same protocol steps as mailkeep-block and accepts
 * everything. What it costs is what any libmilter filter costs; the
 * difference to mailkeep-block is what mailkeep-block's rules cost.
 *
 * usage: null-milter SOCKET [body]
 *
 * With "body" it asks for headers and body with replies, as a content
 * filter (mailkeep-dlp) does; without, it asks what mailkeep-block asks.
 */
#include "config.h"

#include <libmilter/mfapi.h>
#include <stdio.h>
#include <string.h>

static int null_wants_body;

static sfsistat null_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                               unsigned long f2, unsigned long f3, unsigned long *pf0,
                               unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void) ctx;
    (void) f0;
    (void) f2;
    (void) f3;
    *pf0 = 0;
    if (null_wants_body)
        *pf1 = f1 & (SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA);
    else
        *pf1 = f1 & (SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NR_HDR
                     | SMFIP_NOHELO);
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat null_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
    (void) ctx;
    (void) host;
    (void) addr;
    return SMFIS_CONTINUE;
}

static sfsistat null_envelope(SMFICTX *ctx, char **argv)
{
    (void) ctx;
    (void) argv;
    return SMFIS_CONTINUE;
}

static sfsistat null_header(SMFICTX *ctx, char *name, char *value)
{
    (void) ctx;
    (void) name;
    (void) value;
    return null_wants_body ? SMFIS_CONTINUE : SMFIS_NOREPLY;
}

static sfsistat null_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    (void) ctx;
    (void) chunk;
    (void) len;
    return SMFIS_CONTINUE;
}

static sfsistat null_eom(SMFICTX *ctx)
{
    (void) ctx;
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
    struct smfiDesc desc;

    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "body") != 0)) {
        fprintf(stderr, "usage: null-milter SOCKET [body]\n");
        return 64;
    }
    null_wants_body = argc == 3;
    memset(&desc, 0, sizeof(desc));
    desc.xxfi_name = "null-milter";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_connect = null_connect;
    desc.xxfi_envfrom = null_envelope;
    desc.xxfi_envrcpt = null_envelope;
    desc.xxfi_header = null_header;
    desc.xxfi_body = null_body;
    desc.xxfi_eom = null_eom;
    desc.xxfi_negotiate = null_negotiate;
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(desc) == MI_FAILURE)
        return 1;
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
