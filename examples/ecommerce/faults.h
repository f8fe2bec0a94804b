/*
 * Failure injection, the services' side. The setters and the spec parser
 * are declared in services.h; these are what an operation calls.
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_FAULTS_H
#define ECOMMERCE_FAULTS_H

#include "services.h"

/* Called before an operation writes anything. Sleeps the added latency
 * (and, for a call drawn to time out, the timeout's sleep), then answers
 * ECOM_OK to go on, ECOM_REFUSED for an injected permanent failure (only
 * for a forward action that may fail for good) or ECOM_TRANSIENT, with a
 * message. f may be NULL (no faults). */
int ecom_faults_enter(ecom_faults *f, ecom_service service, const char *op,
                      char *msg, size_t msg_size);

/* Passes the crash point "<service>.<op>.<when>": if it is armed and this is
 * its nth passage, the process dies with SIGKILL (or the test hook runs).
 * f may be NULL. */
void ecom_faults_crash(ecom_faults *f, ecom_service service, const char *op,
                       const char *when);

/* The example's own generator (splitmix64): reproducible from a seed,
 * independent of rand(). */
uint64_t ecom_rand_next(uint64_t *state);
/* Uniform in [0, 1). */
double ecom_rand_unit(uint64_t *state);
/* Uniform in [lo, hi] (lo <= hi). */
int64_t ecom_rand_range(uint64_t *state, int64_t lo, int64_t hi);

#endif
