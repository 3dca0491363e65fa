/*
 * otp_qr - QR codes for enrolment. See otp_qr.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <qrencode.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mk_util.h"
#include "otp_qr.h"

#define QR_TERM_QUIET	2
#define QR_PNG_QUIET	4
#define QR_PNG_SCALE	8

/* Is the module at (x, y) dark? Outside the symbol is the quiet zone. */
static bool qr_dark(const QRcode *qr, int x, int y)
{
    if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
        return false;
    return qr->data[y * qr->width + x] & 1;
}

int otp_qr_print(FILE *fp, const char *text)
{
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    static const char *const cell[4] = {"\u2588", "\u2580", "\u2584", " "};

    if (qr == NULL)
        return -1;
    for (int y = -QR_TERM_QUIET; y < qr->width + QR_TERM_QUIET; y += 2) {
        for (int x = -QR_TERM_QUIET; x < qr->width + QR_TERM_QUIET; x++) {
            /* Ink is light: the upper half lit when the top module is light. */
            int top_dark = qr_dark(qr, x, y), bottom_dark = qr_dark(qr, x, y + 1);

            fputs(cell[top_dark * 2 + bottom_dark], fp);
        }
        fputc('\n', fp);
    }
    QRcode_free(qr);
    return 0;
}

int otp_qr_png(const char *path, const char *text, char **error)
{
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    png_structp png = NULL;
    png_infop info = NULL;
    unsigned char *row = NULL;
    FILE *fp = NULL;
    int fd, size, status = -1;

    if (qr == NULL) {
        *error = mk_xasprintf("cannot encode the QR code: %s", strerror(errno));
        return -1;
    }
    size = (qr->width + 2 * QR_PNG_QUIET) * QR_PNG_SCALE;
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0
        || (fp = fdopen(fd, "wb")) == NULL) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        QRcode_free(qr);
        return -1;
    }
    if ((png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL)) == NULL
        || (info = png_create_info_struct(png)) == NULL) {
        *error = mk_xasprintf("%s: libpng cannot start", path);
        goto out;
    }
    row = mk_xmalloc((size_t) size);
    if (setjmp(png_jmpbuf(png))) {
        *error = mk_xasprintf("%s: cannot write the PNG", path);
        goto out;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32) size, (png_uint_32) size, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < size; y++) {
        int my = y / QR_PNG_SCALE - QR_PNG_QUIET;

        for (int x = 0; x < size; x++)
            row[x] = qr_dark(qr, x / QR_PNG_SCALE - QR_PNG_QUIET, my) ? 0 : 255;
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    status = 0;
out:
    png_destroy_write_struct(&png, &info);
    free(row);
    if (fclose(fp) != 0 && status == 0) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        status = -1;
    }
    if (status != 0)
        unlink(path);
    QRcode_free(qr);
    return status;
}
