/*
 * dlp_notify - the warn action's notice to the sender. See dlp_notify.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "dlp_notify.h"
#include "mk_notify.h"
#include "mk_util.h"

char *dlp_notify_text(const struct dlp_notice *n)
{
    char *subject = mk_xasprintf("Personal data in your message to %s", n->recipients);
    char *body = mk_xasprintf(
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
        n->recipients, n->findings, n->queue_id ? n->queue_id : "NOQUEUE");
    char *text = mk_notify_compose(n->from, n->to, subject, body);

    free(subject);
    free(body);
    return text;
}
