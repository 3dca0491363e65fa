/*
 * mk_daemon - detach, pidfile, dropping privileges. See mk_daemon.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "mk_daemon.h"
#include "mk_log.h"

int mk_daemon_pidfile(const char *path, const char *progname)
{
    char buf[32];
    int fd;

    if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "pidfile %s is locked: another %s is running", path,
               progname);
        close(fd);
        return -1;
    }
    snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, strlen(buf)) != (ssize_t) strlen(buf)) {
        mk_log(MK_LOG_ERROR, NULL, "pidfile %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* The descriptor stays open, holding the lock, until exit. */
    return 0;
}

int mk_daemon_drop_privileges(const char *user, const char *socket_path)
{
    struct passwd *pw;

    if (*user == '\0')
        return 0;
    if ((pw = getpwnam(user)) == NULL) {
        mk_log(MK_LOG_ERROR, NULL, "user %s does not exist", user);
        return -1;
    }
    if (getuid() != 0 && geteuid() != 0) {
        if (getuid() == pw->pw_uid)
            return 0;
        mk_log(MK_LOG_ERROR, NULL, "cannot become user %s: not running as root", user);
        return -1;
    }
    if (socket_path && chown(socket_path, pw->pw_uid, pw->pw_gid) < 0)
        mk_log(MK_LOG_WARNING, NULL, "chown %s: %s", socket_path, strerror(errno));
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0
        || setuid(pw->pw_uid) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "cannot become user %s: %s", user, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        mk_log(MK_LOG_ERROR, NULL, "privileges could be regained after dropping them");
        return -1;
    }
    return 0;
}

/*
 * Detach. The parent waits until the child says it is ready (or has
 * failed, with what exit status), so that a start script that sees
 * success can rely on the socket being open.
 */
int mk_daemon_detach(int *ready_fd)
{
    int pipefd[2];
    pid_t pid;
    char status;

    if (pipe(pipefd) < 0)
        return -1;
    if ((pid = fork()) < 0)
        return -1;
    if (pid > 0) {
        close(pipefd[1]);
        if (read(pipefd[0], &status, 1) != 1)
            status = EX_SOFTWARE;
        _exit(status);
    }
    close(pipefd[0]);
    if (setsid() < 0)
        return -1;
    if (chdir("/") < 0)
        return -1;
    {
        int null = open("/dev/null", O_RDWR);

        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            if (null > 2)
                close(null);
        }
    }
    *ready_fd = pipefd[1];
    return 0;
}

void mk_daemon_ready(int *ready_fd, char status)
{
    if (*ready_fd >= 0) {
        if (write(*ready_fd, &status, 1) != 1) {
            /* The parent is gone; nothing to tell. */
        }
        close(*ready_fd);
        *ready_fd = -1;
    }
}
