/* The services' message buffers (msg.h). SPDX-License-Identifier: MIT */
#include "msg.h"

#include <stdarg.h>
#include <stdio.h>

void svc_msg(char *msg, size_t size, const char *fmt, ...)
{
	if (!msg || size == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, size, fmt, ap);
	va_end(ap);
}
