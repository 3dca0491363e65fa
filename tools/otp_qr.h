/*
 * NAME
 *	otp_qr 3h
 * SUMMARY
 *	QR codes for enrolment: in the terminal, and as a PNG file
 * SYNOPSIS
 *	#include "otp_qr.h"
 *
 *	int	otp_qr_print(FILE *fp, const char *text);
 *	int	otp_qr_png(const char *path, const char *text, char **error);
 * DESCRIPTION
 *	Both encode text (an otpauth:// URI) with libqrencode at error
 *	correction level M. otp_qr_print() draws it with Unicode half
 *	blocks, two rows of modules per line, light modules as ink (for a
 *	dark terminal, as qrencode -t UTF8 does), inside a quiet zone of
 *	two modules. otp_qr_png() writes a black-on-white PNG, 8 pixels a
 *	module, quiet zone four modules, to a new file of mode 0600 (the
 *	picture is the secret). Both return 0, or -1 (with *error).
 */
#ifndef OTP_QR_H
#define OTP_QR_H

#include <stdio.h>

int otp_qr_print(FILE *fp, const char *text);
int otp_qr_png(const char *path, const char *text, char **error);

#endif
