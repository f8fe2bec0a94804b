/* The libFuzzer entry point every target in tests/fuzz defines. Built two
 * ways (see meson.build): with -fsanitize=fuzzer (libFuzzer's main) when
 * -Dfuzzing=true, and always with standalone.c, which runs the committed
 * corpus as an ordinary test. SPDX-License-Identifier: MIT */
#ifndef SAGA_FUZZ_H
#define SAGA_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Runs one input. Must not crash, leak or hang, whatever the bytes; always
 * returns 0 (libFuzzer reserves other values). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: prints `what` and aborts, so both libFuzzer and the
 * standalone driver report the input as a crash. */
#define FUZZ_ASSERT(cond, what)                                \
	do {                                                   \
		if (!(cond))                                   \
			fuzz_fail(__FILE__, __LINE__, (what)); \
	} while (0)

void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
