/* The scenario the failure loops of test-iofault.c and test-oom.c drive, and
 * the contract checked after recovery (see those files for what each loop
 * injects).
 *
 * For one N, on a fresh store: open, add a listener, register, start "A"
 * (runs to COMPLETED) and "B" (its pivot fails: compensated), three rounds
 * of run_until_idle + 100 ms on the fake clock (the retriable step asks for
 * one retry), get, get_context, history, counts, close; every call answers
 * 0 or a libsaga error code with a message. Then, with the fault lifted, the
 * store is reopened, the sagas finish and the contract is checked: exactly
 * one instance per business key (A COMPLETED, B COMPENSATED), exactly one
 * final outcome per started step and phase, compensations in reverse order,
 * write-ahead at every invocation, the same key on a re-invocation, every
 * delivered event durable.
 *
 * A broken expectation (EXPECT) inside a loop ends the current N only: it
 * longjmps to *expect_env with the message in expect_msg; outside the loops
 * (expect_env NULL) it fails the test at once. The loops group the failures
 * by kind (scenario_note_failure) and report them at the end
 * (scenario_report_failures).
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_TEST_SCENARIO_H
#define SAGA_TEST_SCENARIO_H

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "test-common.h"

#define NSTEPS     4
#define PIVOT      2
#define SHIP       3
#define DEF_NAME   "trip"
#define NWHO       2 /* instances: A completes, B fails at the pivot */
#define MAX_CALLS  256
#define MAX_EVENTS 512

extern const char *const step_names[NSTEPS]; /* "reserve", "hold", "charge", "ship" */
extern const char *const who_names[NWHO];    /* "A", "B" */

typedef struct call {
	int who;
	int step;
	int phase;
	uint32_t attempt;
	char key[160];
} call;

typedef struct seen_event {
	int64_t instance;
	int64_t seq;
	int type, step, phase, outcome;
	uint32_t attempt;
} seen_event;

/* What differs between the suites; set after scenario_setup. */
typedef struct scenario_config {
	/* The VFS of the checker's own connections (NULL: SQLite's default). */
	const char *checker_vfs;
	/* Called by the participant after its write-ahead check (or NULL). */
	void (*on_invoke)(void);
	/* Around the test's own code (the participant, the inputs), or NULL. */
	void (*pause)(void);
	void (*resume)(void);
	/* The faults are allocation failures: add_listener may fail like any
	 * call, SAGA_ECORRUPT is wrong (the store is sound) and a failed open
	 * is quoted with its message. */
	bool memory_faults;
} scenario_config;

/* The state of the current test (reset by scenario_setup). */
typedef struct scenario_state {
	char dir[256];
	char path[300];
	fake_clock clock;
	saga_definition *def;
	call calls[MAX_CALLS];
	int ncalls;
	seen_event events[MAX_EVENTS];
	int nevents;
	int violations;
	char violation[512];
	cJSON *in[NWHO]; /* the inputs of the current N */
	scenario_config cfg;
} scenario_state;

extern scenario_state scn;

/* Records a broken invariant seen by the participant or a checker (the
 * first message is kept); the contract requires none. */
void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The first column of the first row of sql with ?1..?4 = a..d and ?5 = text
 * (when not NULL); -1 and a violation when there is no row. */
int64_t query_int(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t c, int64_t d,
                  const char *text);

/* The fixture: a fresh state, a temporary directory with the store's path
 * in it, the definition "trip"; and its end. */
void scenario_setup(void);
void scenario_teardown(void);

void remove_store(void);
cJSON *input_of(int who); /* {"who": "A"|"B"} */

/* ---- Expectations ---------------------------------------------------- */

extern jmp_buf *expect_env; /* where a broken expectation jumps; NULL outside the loops */
extern char expect_msg[1024];
extern saga_engine *cur_engine; /* closed when an expectation breaks */

void expect_failed(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#define EXPECT(cond, ...)                                     \
	do {                                                  \
		if (!(cond))                                  \
			expect_failed(__LINE__, __VA_ARGS__); \
	} while (0)

/* The codes seen in the loops, for the report, and the first call that
 * failed in the current N (for failure messages). */
extern long code_counts[32];
extern char first_failure[320];

/* ---- One N ----------------------------------------------------------- */

/* The per-N statistics. */
typedef struct loop_stats {
	long n_values;      /* N values run */
	long injected;      /* faults injected in total */
	long ops;           /* operations of the kind in the fault-free run */
	long reinvocations; /* participant calls beyond one per outcome */
	long open_failed;   /* the first open failed */
	long calls_failed;  /* API calls that returned an error under a fault */
} loop_stats;

/* Before an N: a fresh store, no calls, events nor violations, the clock
 * back at its start. */
void scenario_reset(void);

/* The scenario under the fault: creates the inputs, calls arm(n, arg), opens
 * the store with *o and drives it; with same_engine, lift() is called before
 * closing and the same engine must finish the sagas. Then closes, calls
 * lift() and frees the inputs. ids receives the instances whose start
 * answered OK. */
void scenario_drive(const saga_options *o, long n, bool same_engine,
                    void (*arm)(long n, const void *arg), const void *arg, void (*lift)(void),
                    int64_t ids[NWHO], loop_stats *st);

/* The fault is lifted: the store reopens, the sagas finish and the contract
 * holds. name (or NULL) prefixes the messages of the reopening; label names
 * the run in the others. */
void scenario_recover(const saga_options *o, const char *name, const char *label, long n,
                      int64_t ids[NWHO], loop_stats *st);

/* After a broken expectation: lift(), close the engine, free the inputs. */
void scenario_abandon(void (*lift)(void));

/* ---- The loops ------------------------------------------------------- */

/* At the start of main: stdout line-buffered, and the stores in /dev/shm
 * when TMPDIR is not set. */
void scenario_main_init(void);

long env_long(const char *name); /* 0 when not set */
double now_s(void);              /* monotonic seconds */

/* Before a loop: no codes counted, no failures noted. */
void scenario_loop_begin(void);

/* The N values whose scenario broke an expectation, grouped by the kind of
 * failure (the message without its numbers). */
void scenario_note_failure(long n, const char *msg);
long scenario_nfailed(void);

/* " NAME=count" for every error code seen, into buf. */
void scenario_codes(char *buf, size_t size);

/* Prints the failures and fails the test when there were any. */
void scenario_report_failures(const char *label);

#endif
