/*
 * The services' message buffers: every operation that can fail writes why
 * into a caller's `char *msg, size_t msg_size`. Private to
 * examples/ecommerce/services.
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_MSG_H
#define ECOMMERCE_MSG_H

#include <stddef.h>

/* Writes a formatted message (never fails; NULL buffer ignored). */
void svc_msg(char *msg, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
