/*
 * mailkeep - the administration command. See mailkeep(8).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "mailkeep.h"
#include "mk_log.h"
#include "mk_util.h"

#ifndef MK_SYSCONFDIR
#define MK_SYSCONFDIR "/etc"
#endif

static const struct {
    const char *name;
    int (*run)(const char *, int, char **);
    const char *summary;
} mailkeep_commands[] = {
    {"config", mailkeep_config, "check | show [-a]: check or print mailkeep.conf"},
    {"directory", mailkeep_directory, "domain DOMAIN | user ADDRESS: ask the directory"},
#ifdef HAVE_DLP
    {"dlp", mailkeep_dlp, "scan [-m|-f] [-d DIRECTION] FILE|-: what the detectors find"},
    {"quarantine", mailkeep_quarantine, "list | show ID | release ID... | delete ID...: held mail"},
#endif
};

static void mailkeep_usage(FILE *fp)
{
    fprintf(fp, "usage: mailkeep [-c config] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(mailkeep_commands) / sizeof(mailkeep_commands[0]); i++)
        fprintf(fp, "  %-10s %s\n", mailkeep_commands[i].name, mailkeep_commands[i].summary);
}

extern char **environ;

int mailkeep_run(char *const *argv, char **output, size_t *len)
{
    posix_spawn_file_actions_t fa;
    size_t cap = 65536, used = 0;
    int pipefd[2], status;
    char *buf;
    pid_t pid;
    ssize_t n;

    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    buf = mk_xmalloc(cap);
    while ((n = read(pipefd[0], buf + used, cap - used - 1)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        used += (size_t) n;
        if (cap - used < 4096) {
            cap *= 2;
            buf = mk_xrealloc(buf, cap);
        }
    }
    close(pipefd[0]);
    buf[used] = '\0';
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            free(buf);
            return -1;
        }
    if (output) {
        *output = buf;
        if (len)
            *len = used;
    } else {
        free(buf);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(int argc, char **argv)
{
    const char *config_path = MK_SYSCONFDIR "/mailkeep/mailkeep.conf";
    int ch;

    mk_log_open("mailkeep", MK_LOG_STDERR, 0);
    while ((ch = getopt(argc, argv, "+c:hV")) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            mailkeep_usage(stdout);
            return 0;
        case 'V':
            printf("mailkeep %s\n", PACKAGE_VERSION);
            return 0;
        default:
            mailkeep_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind >= argc) {
        mailkeep_usage(stderr);
        return EX_USAGE;
    }
    for (size_t i = 0; i < sizeof(mailkeep_commands) / sizeof(mailkeep_commands[0]); i++)
        if (strcmp(argv[optind], mailkeep_commands[i].name) == 0)
            return mailkeep_commands[i].run(config_path, argc - optind - 1, argv + optind + 1);
    fprintf(stderr, "mailkeep: unknown command '%s'\n", argv[optind]);
    mailkeep_usage(stderr);
    return EX_USAGE;
}
