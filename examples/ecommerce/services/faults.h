/*
 * Failure injection, the services' side. The setters and the spec parser
 * are declared in services.h; these are what an operation calls.
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_FAULTS_H
#define ECOMMERCE_FAULTS_H

#include "services.h"

/* The injector's decision for one call of operation `op`, in two halves so
 * that an operation can consult its participant guard in between: an
 * injected failure is an answer for a key the service has not recorded
 * yet, never for a replay of one it has (that answers as recorded).
 *
 * ecom_faults_draw sleeps the added latency (and, for a call drawn to time
 * out, the timeout's sleep: the result arrives late whatever it is) and
 * returns what would be injected: ECOM_OK, ECOM_REFUSED (an injected
 * permanent failure, only for a forward action that may fail for good) or
 * ECOM_TRANSIENT. Nothing is answered yet; call it before any transaction
 * is open, since it may sleep.
 *
 * ecom_faults_give answers a drawn failure for a new key: counts it, writes
 * its message and returns it (ECOM_OK for ECOM_OK, without a message).
 *
 * ecom_faults_enter is both at once, for a call that has no key. f may be
 * NULL (no faults) in all three. */
int ecom_faults_draw(ecom_faults *f, ecom_service service, const char *op);
int ecom_faults_give(ecom_faults *f, ecom_service service, const char *op, int answer, char *msg,
                     size_t msg_size);
int ecom_faults_enter(ecom_faults *f, ecom_service service, const char *op, char *msg,
                      size_t msg_size);

/* Passes the crash point "<service>.<op>.<when>": if it is armed and this is
 * its nth passage, the process dies with SIGKILL (or the test hook runs).
 * f may be NULL. */
void ecom_faults_crash(ecom_faults *f, ecom_service service, const char *op, const char *when);

/* A number in decimal digits only (no sign, blank or other base), at most
 * max: 0, or -1 for anything else, an empty string or an overflow. */
int ecom_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* The example's own generator (splitmix64): reproducible from a seed,
 * independent of rand(). */
uint64_t ecom_rand_next(uint64_t *state);
/* Uniform in [0, 1). */
double ecom_rand_unit(uint64_t *state);
/* Uniform in [lo, hi] (lo <= hi). */
int64_t ecom_rand_range(uint64_t *state, int64_t lo, int64_t hi);

#endif
