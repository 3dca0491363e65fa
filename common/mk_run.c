/*
 * mk_run - run a helper program without a shell. See mk_run.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mk_run.h"
#include "mk_util.h"

extern char **environ;

static void mk_run_write_all(int fd, const char *data, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;                     /* the program stopped reading: its status will say */
        off += (size_t) w;
    }
}

static char *mk_run_read_all(int fd, size_t *len)
{
    size_t cap = 65536, used = 0;
    char *buf = mk_xmalloc(cap);
    ssize_t n;

    while ((n = read(fd, buf + used, cap - used - 1)) != 0) {
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
    buf[used] = '\0';
    if (len)
        *len = used;
    return buf;
}

int mk_run(char *const *argv, const char *input, size_t input_len, char **output,
           size_t *output_len)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, status, rc = -1;
    posix_spawn_file_actions_t fa;
    pid_t pid;

    if (output)
        *output = NULL;
    if ((input && pipe2(in, O_CLOEXEC) < 0) || (output && pipe2(out, O_CLOEXEC) < 0))
        goto out;
    posix_spawn_file_actions_init(&fa);
    if (input)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    if (output)
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) == 0 ? 0 : -1;
    posix_spawn_file_actions_destroy(&fa);
    if (rc < 0)
        goto out;
    if (input) {
        close(in[0]);
        in[0] = -1;
        mk_run_write_all(in[1], input, input_len);
        close(in[1]);
        in[1] = -1;
    }
    if (output) {
        close(out[1]);
        out[1] = -1;
        *output = mk_run_read_all(out[0], output_len);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            rc = -1;
            goto out;
        }
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
out:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    if (rc < 0 && output) {
        free(*output);
        *output = NULL;
    }
    return rc;
}

int mk_run_cmd(const char *command, const char *const *args, const char *input,
               size_t input_len, char **output)
{
    size_t n, extra = 0;
    char **base = mk_str_split(command, " \t", &n);
    char **argv;
    int rc;

    while (args[extra] != NULL)
        extra++;
    argv = mk_xcalloc(n + extra + 1, sizeof(char *));
    memcpy(argv, base, n * sizeof(char *));
    memcpy(argv + n, args, extra * sizeof(char *));
    rc = n == 0 ? -1 : mk_run(argv, input, input_len, output, NULL);
    if (rc != 0 && output != NULL) {
        free(*output);
        *output = NULL;
    }
    free(argv);
    mk_str_array_free(base);
    return rc;
}
