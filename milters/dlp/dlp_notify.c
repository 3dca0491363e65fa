/*
 * dlp_notify - the warn action's notice to the sender. See dlp_notify.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dlp_notify.h"
#include "mk_run.h"
#include "mk_util.h"

char *dlp_notify_text(const struct dlp_notice *n)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    return mk_xasprintf(
        "From: %s\n"
        "To: %s\n"
        "Subject: Personal data in your message to %s\n"
        "Date: %s\n"
        "Auto-Submitted: auto-generated\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Your message to %s was delivered,\n"
        "but it contains personal data:\n"
        "\n"
        "    %s\n"
        "\n"
        "If it should not, please tell the recipients and your privacy officer.\n"
        "Only the kind and number of items are reported here, never the data.\n"
        "(reference: %s)\n"
        "\n"
        "您寄出的郵件已送達，但其中含有個人資料（種類與數量如上）。\n"
        "若非必要，請通知收件人及個資保護聯絡人。\n",
        n->from, n->to, n->recipients, date, n->recipients, n->findings,
        n->queue_id ? n->queue_id : "NOQUEUE");
}

int dlp_notify_send(char *const *command, const char *text)
{
    size_t argc = 0;
    char **argv;
    int rc;

    while (command[argc])
        argc++;
    if (argc == 0)
        return -1;
    argv = mk_xcalloc(argc + 3, sizeof(char *));
    for (size_t i = 0; i < argc; i++)
        argv[i] = command[i];
    argv[argc] = "-f";
    argv[argc + 1] = "<>";
    rc = mk_run(argv, text, strlen(text), NULL, NULL);
    free(argv);
    return rc;
}
