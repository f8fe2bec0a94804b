/*
 * libsaga: durable sagas on SQLite.
 *
 * This is the one public header. Conventions used throughout:
 *  - Functions return int: 0 (SAGA_OK) on success, a negative SAGA_E* code on
 *    failure. saga_strerror() names a code; saga_engine_errmsg() gives the
 *    engine's last message, which is never NULL.
 *  - The object acted on (engine, definition, breaker, step context) comes
 *    first, then out parameters; constructors put their out parameter first.
 *    One exception: saga_breaker_get_snapshot(out, breaker).
 *  - "borrows" means the library does not keep the pointer past the call;
 *    "takes ownership" means the library frees it, also when the call fails.
 *  - Every *_free / *_close accepts NULL.
 *  - Thread safety is described once, in docs/api.md ("Threads").
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef SAGA_H
#define SAGA_H

#include <stddef.h>
#include <stdint.h>

#include "saga/version.h"

#if defined(_WIN32)
#define SAGA_API
#elif defined(__GNUC__) || defined(__clang__)
#define SAGA_API __attribute__((visibility("default")))
#else
#define SAGA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;
struct sqlite3;

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

enum {
	SAGA_OK = 0,
	SAGA_ERROR = -1,      /* unspecified failure */
	SAGA_ENOMEM = -2,     /* an allocation failed */
	SAGA_EINVAL = -3,     /* an argument or a definition is invalid */
	SAGA_ENOTFOUND = -4,  /* no such instance, definition, step or breaker */
	SAGA_EEXISTS = -5,    /* already exists (a name registered twice) */
	SAGA_ESTATE = -6,     /* not allowed in the instance's current state */
	SAGA_ESTORE = -7,     /* the SQLite store failed (see the engine message) */
	SAGA_EBUSY = -8,      /* the store is locked by another writer */
	SAGA_ECORRUPT = -9,   /* the store file is damaged or not a libsaga store */
	SAGA_EFULL = -10,     /* the disk is full */
	SAGA_EIO = -11,       /* an I/O error from the disk */
	SAGA_EVERSION = -12,  /* the store was written by a newer libsaga */
	SAGA_ECONFLICT = -13, /* a definition differs from the stored one of the same version */
	SAGA_EOPEN = -14,     /* a circuit breaker refused the call */
	SAGA_EDUPLICATE = -15,/* a second completion of an async step; ignored */
	SAGA_ELATE = -16,     /* a completion after the step's timeout; recorded, ignored */
	SAGA_ECONFIG = -17,   /* a policy configuration was refused */
	SAGA_ECLOSED = -18,   /* the engine is shutting down */
	SAGA_EFENCED = -19    /* ownership lost: another process owns the instance now */
};

/* Static text for an error code; never NULL. Thread-safe. */
SAGA_API const char *saga_strerror(int code);

/* Run-time version: SAGA_VERSION_STRING of the library actually linked. */
SAGA_API const char *saga_version(void);

/* ------------------------------------------------------------------------ */
/* Hooks: allocator, log, clock                                             */
/* ------------------------------------------------------------------------ */

/* Allocator for the engine's own memory (instances in flight, queues,
 * registered copies of definitions). SQLite and cJSON keep their own
 * process-wide allocators (sqlite3_config, cJSON_InitHooks), and so do
 * saga_definition_new and saga_breaker_new (malloc); see docs/api.md.
 * All three functions must be set or none. */
typedef struct saga_allocator {
	void *(*malloc_fn)(size_t size, void *user);
	void *(*realloc_fn)(void *ptr, size_t size, void *user);
	void (*free_fn)(void *ptr, void *user);
	void *user;
} saga_allocator;

typedef enum saga_log_level {
	SAGA_LOG_DEBUG = 0,
	SAGA_LOG_INFO = 1,
	SAGA_LOG_WARN = 2,
	SAGA_LOG_ERROR = 3
} saga_log_level;

/* Log hook. `msg` is borrowed for the duration of the call. It may be called
 * with the engine's lock held: it must not call the engine. */
typedef void (*saga_log_fn)(saga_log_level level, const char *msg, void *user);

/* A structured log record (options version 4, saga_options.log_record):
 * the same lines the string hook gets, with stable fields. Every pointer is
 * borrowed for the duration of the call; the strings are NULL when the
 * record concerns no instance or no step. */
typedef struct saga_log_record {
	saga_log_level level;
	uint64_t at_ms;              /* the engine's wall clock */
	const char *event;           /* a stable code, never NULL: "instance.stuck",
	                                "lease.lost", ... (docs/operations.md) */
	const char *message;         /* human text, never NULL */
	int64_t instance;            /* 0 when none */
	const char *uid;             /* the instance's uid, or NULL */
	const char *definition;      /* or NULL */
	int version;                 /* the definition's version; 0 when none */
	int step;                    /* the step's index; -1 when none */
	const char *step_name;       /* or NULL */
	int phase;                   /* a saga_phase; meaningful when step >= 0 */
	uint32_t attempt;            /* 0 when none */
	const char *key;             /* the attempt's idempotency key (saga_step_key), or NULL */
	const char *business_key;    /* or NULL */
	int code;                    /* a SAGA_E* code, or 0 */
} saga_log_record;

/* Record hook. Called where the string hook is, with the same level filter,
 * and like it possibly with the engine's lock held: it must not call the
 * engine. */
typedef void (*saga_log_record_fn)(const saga_log_record *record, void *user);

/* Formats a record as one JSON object and a newline (JSON lines) into
 * buf[0 .. size), always NUL-terminated when size > 0. Keys: "ts" (RFC 3339,
 * UTC, milliseconds), "level", "event", "msg", then only those that apply:
 * "saga.instance.id", "saga.instance.uid", "saga.definition.name",
 * "saga.definition.version", "saga.step.name", "saga.step.index",
 * "saga.step.phase", "saga.attempt", "saga.key", "saga.business_key",
 * "error.code" (the SAGA_E* name). Returns the length of the whole line
 * (without the NUL), as snprintf does: a result >= size means it was cut;
 * 0 when record is NULL. Bytes that are not valid UTF-8 are written as
 * U+FFFD. Thread-safe. */
SAGA_API size_t saga_log_format_json(const saga_log_record *record, char *buf, size_t size);
/* A ready record hook: writes saga_log_format_json's line to the FILE *
 * given as `user` (one fwrite per record, then fflush). */
SAGA_API void saga_log_json_file(const saga_log_record *record, void *user);

/* Clock hook. wall_ms: milliseconds since the Unix epoch, used for every time
 * stored (retry timers, attempt timeouts, deadlines), so waiting survives a
 * restart. mono_ms: a monotonic millisecond clock, used by circuit breakers
 * (windows, open waits, slow calls). NULL members use the system clocks. */
typedef struct saga_clock {
	uint64_t (*wall_ms)(void *user);
	uint64_t (*mono_ms)(void *user);
	void *user;
} saga_clock;

/* ------------------------------------------------------------------------ */
/* Resilience policies                                                      */
/* ------------------------------------------------------------------------ */

typedef enum saga_backoff {
	SAGA_BACKOFF_CONSTANT = 0,    /* base, base, base, ... */
	SAGA_BACKOFF_LINEAR = 1,      /* base, 2 base, 3 base, ... */
	SAGA_BACKOFF_EXPONENTIAL = 2  /* base, base*m, base*m^2, ... (m = multiplier) */
} saga_backoff;

typedef enum saga_jitter {
	SAGA_JITTER_NONE = 0,         /* the delay t itself */
	SAGA_JITTER_FULL = 1,         /* uniform in [0, t] */
	SAGA_JITTER_EQUAL = 2,        /* uniform in [t/2, t] */
	SAGA_JITTER_DECORRELATED = 3  /* uniform in [base, min(cap, 3 * previous delay)] */
} saga_jitter;

/* Retry policy. Delays are capped by cap_ms after jitter. */
typedef struct saga_retry_policy {
	uint32_t max_attempts;     /* counting the first call; 0 = unlimited */
	uint64_t max_duration_ms;  /* no attempt is scheduled later than this after the first; 0 = none */
	saga_backoff backoff;
	uint64_t base_ms;
	uint64_t cap_ms;           /* 0 = no cap */
	double multiplier;         /* for EXPONENTIAL; values < 1 are treated as 2 */
	saga_jitter jitter;
} saga_retry_policy;

/* Three attempts, exponential from 100 ms to 10 s, full jitter. */
#define SAGA_RETRY_POLICY_INIT \
	{ 3, 0, SAGA_BACKOFF_EXPONENTIAL, 100, 10000, 2.0, SAGA_JITTER_FULL }

/* Decides whether another attempt may follow and when.
 * attempts_done: attempts already made (>= 1). elapsed_ms: time since the
 * first attempt started. prev_delay_ms: the previous delay (0 before the
 * first retry; used by decorrelated jitter). rng: state of the random source,
 * updated in place (any seed; 0 is valid).
 * Returns 1 and sets *delay_ms when another attempt is allowed, 0 when the
 * policy is exhausted, SAGA_EINVAL for NULL arguments. Never overflows. */
SAGA_API int saga_retry_next(uint64_t *delay_ms, const saga_retry_policy *policy,
                             uint32_t attempts_done, uint64_t elapsed_ms,
                             uint64_t prev_delay_ms, uint64_t *rng);

/* A uniformly distributed 64-bit number from the state *rng (splitmix64). */
SAGA_API uint64_t saga_random_next(uint64_t *rng);

/* ------------------------------------------------------------------------ */
/* Circuit breakers (usable on their own, outside sagas)                    */
/* ------------------------------------------------------------------------ */

typedef struct saga_breaker saga_breaker;

typedef enum saga_breaker_state {
	SAGA_BREAKER_CLOSED = 0,
	SAGA_BREAKER_OPEN = 1,
	SAGA_BREAKER_HALF_OPEN = 2,
	SAGA_BREAKER_DISABLED = 3,    /* forced: every call passes, nothing is counted */
	SAGA_BREAKER_FORCED_OPEN = 4  /* forced: every call is refused */
} saga_breaker_state;

typedef enum saga_window_kind {
	SAGA_WINDOW_COUNT = 0,  /* the last window_size calls */
	SAGA_WINDOW_TIME = 1    /* the calls of the last window_size milliseconds */
} saga_window_kind;

typedef struct saga_breaker_config {
	unsigned int version;            /* SAGA_BREAKER_CONFIG_VERSION */
	saga_window_kind window;
	uint64_t window_size;            /* calls (COUNT) or milliseconds (TIME) */
	uint32_t buckets;                /* TIME: number of buckets the window is cut into */
	double failure_rate_threshold;   /* percent, (0, 100] */
	double slow_call_rate_threshold; /* percent, (0, 100]; 100 with slow_call_ms 0 = off */
	uint64_t slow_call_ms;           /* a call at least this long is slow; 0 = off */
	uint32_t minimum_calls;          /* no decision before this many calls in the window */
	uint64_t open_wait_ms;           /* time in OPEN before HALF_OPEN */
	uint64_t open_wait_max_ms;       /* > open_wait_ms: exponential wait, doubled up to this */
	uint32_t half_open_calls;        /* trial calls admitted in HALF_OPEN */
	uint64_t half_open_max_ms;       /* HALF_OPEN longer than this reopens; 0 = no limit */
} saga_breaker_config;

#define SAGA_BREAKER_CONFIG_VERSION 1
#define SAGA_BREAKER_CONFIG_INIT \
	{ SAGA_BREAKER_CONFIG_VERSION, SAGA_WINDOW_COUNT, 100, 10, 50.0, 100.0, 0, 10, \
	  60000, 0, 10, 0 }

/* A permit handed out by saga_breaker_acquire and given back to
 * saga_breaker_record. Opaque to callers; a plain value, no cleanup. */
typedef struct saga_breaker_permit {
	uint64_t generation;
	uint64_t started_ms;
	int trial;
} saga_breaker_permit;

typedef enum saga_call_outcome {
	SAGA_CALL_SUCCESS = 0,
	SAGA_CALL_FAILURE = 1,
	SAGA_CALL_IGNORED = 2  /* neither: gives the permit back, counts nothing */
} saga_call_outcome;

typedef struct saga_breaker_snapshot {
	saga_breaker_state state;
	uint64_t generation;        /* incremented on every transition */
	uint64_t calls;             /* in the current window */
	uint64_t failures;
	uint64_t slow_calls;
	double failure_rate;        /* percent; 0 with no calls */
	double slow_call_rate;      /* percent */
	uint32_t trial_calls_in_flight;
	uint64_t open_until_ms;     /* monotonic; meaningful in OPEN */
	uint64_t current_open_wait_ms;
} saga_breaker_snapshot;

/* Called on every state transition, exactly once per transition, after the
 * breaker's lock is released. `name` is borrowed. */
typedef void (*saga_breaker_listener_fn)(const char *name, saga_breaker_state from,
                                         saga_breaker_state to, uint64_t generation,
                                         void *user);

/* Creates a breaker. `name` and `config` are borrowed (copied). `clock` may be
 * NULL (system monotonic clock); only its mono_ms member is used.
 * Errors: SAGA_EINVAL (bad config; names nothing half-made), SAGA_ENOMEM. */
SAGA_API int saga_breaker_new(saga_breaker **out, const char *name,
                              const saga_breaker_config *config,
                              const saga_clock *clock);
SAGA_API void saga_breaker_free(saga_breaker *breaker);
/* Borrowed; valid while the breaker lives. */
SAGA_API const char *saga_breaker_name(const saga_breaker *breaker);

/* Asks to make a call. 0: go ahead and later call saga_breaker_record with
 * the permit. SAGA_EOPEN: refused; *retry_after_ms (may be NULL) says when to
 * ask again (0 when only a trial slot is missing). Thread-safe. */
SAGA_API int saga_breaker_acquire(saga_breaker *breaker, saga_breaker_permit *permit,
                                  uint64_t *retry_after_ms);
/* Records how a permitted call went; its duration is measured from the
 * permit. A permit from an earlier generation changes nothing. Thread-safe. */
SAGA_API int saga_breaker_record(saga_breaker *breaker, const saga_breaker_permit *permit,
                                 saga_call_outcome outcome);
/* Forces a state: DISABLED, FORCED_OPEN, or CLOSED (leaves a forced state and
 * resets the counts). Thread-safe. */
SAGA_API int saga_breaker_force(saga_breaker *breaker, saga_breaker_state state);
/* The breaker's state and window counts now (applies lazy transitions, like
 * acquire). Named _get_ because the type saga_breaker_snapshot takes the
 * plain name. Thread-safe. */
SAGA_API int saga_breaker_get_snapshot(saga_breaker_snapshot *out, saga_breaker *breaker);
/* One listener per breaker; NULL removes it. */
SAGA_API int saga_breaker_set_listener(saga_breaker *breaker, saga_breaker_listener_fn fn,
                                       void *user);
SAGA_API const char *saga_breaker_state_name(saga_breaker_state state);

/* ------------------------------------------------------------------------ */
/* Definitions                                                              */
/* ------------------------------------------------------------------------ */

typedef struct saga_definition saga_definition;
typedef struct saga_step_ctx saga_step_ctx;

typedef enum saga_step_kind {
	SAGA_STEP_COMPENSATABLE = 0,
	SAGA_STEP_PIVOT = 1,
	SAGA_STEP_RETRIABLE = 2
} saga_step_kind;

/* What a step callback answers. */
typedef enum saga_step_result {
	SAGA_STEP_OK = 0,       /* done; its output (saga_step_put) is kept */
	SAGA_STEP_FAIL = 1,     /* failed for good, nothing was applied */
	SAGA_STEP_RETRY = 2,    /* transient failure; the retry policy decides */
	SAGA_STEP_PENDING = 3   /* asynchronous: completed later with saga_complete() */
} saga_step_result;

/* A step's action or compensation. `ctx` is borrowed for the call. */
typedef saga_step_result (*saga_step_fn)(saga_step_ctx *ctx, void *user);

typedef struct saga_step_spec {
	const char *name;              /* unique within the definition, 1..64 bytes */
	saga_step_kind kind;
	saga_step_fn action;           /* required */
	saga_step_fn compensation;     /* required for COMPENSATABLE, must be NULL otherwise */
	void *user;                    /* passed to both callbacks */
} saga_step_spec;

/* Creates an empty definition. `name` (1..64 bytes) is copied; version >= 1. */
SAGA_API int saga_definition_new(saga_definition **out, const char *name, int version);
SAGA_API void saga_definition_free(saga_definition *def);
/* Appends a step; `spec` and its strings are copied. Checks are made when the
 * definition is registered (saga_engine_register), except NULL arguments. */
SAGA_API int saga_definition_add_step(saga_definition *def, const saga_step_spec *spec);
/* Checks the definition; 0 or SAGA_EINVAL with a message naming the step
 * written to `msg` (may be NULL) of size `msg_size`. */
SAGA_API int saga_definition_validate(const saga_definition *def, char *msg, size_t msg_size);

/* Policies. `step` names a step already added; NULL sets the definition's
 * default, used by every step with no policy of its own, except the action
 * retry of retriable steps: they retry until they succeed (unlimited,
 * exponential 100 ms .. 60 s) unless given a policy of their own.
 * Borrowed arguments. */
SAGA_API int saga_definition_set_retry(saga_definition *def, const char *step,
                                       const saga_retry_policy *policy);
SAGA_API int saga_definition_set_compensation_retry(saga_definition *def, const char *step,
                                                    const saga_retry_policy *policy);
/* Per-attempt timeouts in milliseconds; 0 = none. */
SAGA_API int saga_definition_set_timeout(saga_definition *def, const char *step,
                                         uint64_t action_ms, uint64_t compensation_ms);
/* Attaches the named engine breaker to a step (NULL detaches). */
SAGA_API int saga_definition_set_breaker(saga_definition *def, const char *step,
                                         const char *breaker);
/* Whole-instance deadline (0 = none) and the part of it reserved for
 * compensation: forward work stops at deadline - reserve, unless the
 * instance has started its pivot (or first retriable step): from there it
 * only goes forward. */
SAGA_API int saga_definition_set_deadline(saga_definition *def, uint64_t deadline_ms,
                                          uint64_t compensation_reserve_ms);
/* Number of steps and index of a step by name (SAGA_ENOTFOUND). */
SAGA_API size_t saga_definition_step_count(const saga_definition *def);
SAGA_API int saga_definition_step_index(const saga_definition *def, const char *step);

/* ------------------------------------------------------------------------ */
/* Step context (valid only during the callback)                            */
/* ------------------------------------------------------------------------ */

typedef enum saga_phase {
	SAGA_PHASE_ACTION = 0,
	SAGA_PHASE_COMPENSATION = 1
} saga_phase;

SAGA_API int64_t saga_step_instance(const saga_step_ctx *ctx);
SAGA_API const char *saga_step_name(const saga_step_ctx *ctx);        /* borrowed */
SAGA_API saga_phase saga_step_phase(const saga_step_ctx *ctx);
SAGA_API uint32_t saga_step_attempt(const saga_step_ctx *ctx);        /* 1 for the first */
/* The idempotency key "<instance uid>/<step>/<action|compensation>": stable
 * across retries and recovery. Borrowed. */
SAGA_API const char *saga_step_key(const saga_step_ctx *ctx);
/* The key of this step's action phase, also during its compensation, so a
 * participant can find what the action did. Borrowed. */
SAGA_API const char *saga_step_action_key(const saga_step_ctx *ctx);
/* The saga context (a JSON object). Borrowed, read-only, valid during the call. */
SAGA_API const struct cJSON *saga_step_context(const saga_step_ctx *ctx);
/* Writes `value` under `key` into the saga context when the step answers OK
 * (discarded otherwise). Takes ownership of `value`, also on failure. */
SAGA_API int saga_step_put(saga_step_ctx *ctx, const char *key, struct cJSON *value);
/* Wall-clock ms by which this attempt must finish: the time this callback
 * was invoked plus the step's timeout; 0 = no timeout. */
SAGA_API uint64_t saga_step_deadline(const saga_step_ctx *ctx);
/* A short reason for a FAIL or RETRY, kept in the history (copied). */
SAGA_API void saga_step_set_error(saga_step_ctx *ctx, const char *message);
/* The instance's business key, or NULL when it was started without one.
 * Borrowed, valid during the call. */
SAGA_API const char *saga_step_business_key(const saga_step_ctx *ctx);
/* The instance's fence: a number that grows each time another process (or
 * a new registration of this one) takes the instance over, and never goes
 * back. A participant that keeps the highest fence it has seen per key can
 * refuse a call with a lower one: it comes from a process that lost the
 * instance while paused (saga_guard_action_fenced and
 * saga_guard_compensation_fenced do). Always >= 1. */
SAGA_API int64_t saga_step_fence(const saga_step_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Instances, states, events                                                */
/* ------------------------------------------------------------------------ */

typedef enum saga_state {
	SAGA_RUNNING = 0,
	SAGA_WAITING = 1,
	SAGA_COMPENSATING = 2,
	SAGA_COMPLETED = 3,
	SAGA_COMPENSATED = 4,
	SAGA_STUCK = 5
} saga_state;
#define SAGA_STATE_COUNT 6

typedef enum saga_reason {
	SAGA_REASON_NONE = 0,
	SAGA_REASON_FAILURE = 1,
	SAGA_REASON_TIMEOUT = 2,
	SAGA_REASON_CANCEL = 3,
	SAGA_REASON_CRASH_LOOP = 4 /* STUCK: recovered SAGA_RECOVERY_LIMIT times in a row
	                              with an attempt interrupted each time */
} saga_reason;

typedef enum saga_event_type {
	SAGA_EVENT_CREATED = 0,        /* instance created */
	SAGA_EVENT_STATE = 1,          /* state changed (state holds the new one) */
	SAGA_EVENT_ATTEMPT_START = 2,  /* an attempt is about to be invoked (durable) */
	SAGA_EVENT_ATTEMPT_END = 3,    /* an attempt's outcome (outcome) */
	SAGA_EVENT_LATE = 4,           /* a result arrived after its timeout; ignored */
	SAGA_EVENT_DUPLICATE = 5,      /* a second async completion; ignored */
	SAGA_EVENT_BREAKER_REFUSED = 6,/* a breaker refused the call; not an attempt */
	SAGA_EVENT_OPERATOR = 7,       /* an operator command (detail names it) */
	SAGA_EVENT_EARLY_COMPLETION = 8/* saga_complete before the callback answered PENDING */
} saga_event_type;

typedef enum saga_outcome {
	SAGA_OUTCOME_NONE = 0,
	SAGA_OUTCOME_OK = 1,
	SAGA_OUTCOME_FAIL = 2,
	SAGA_OUTCOME_RETRY = 3,
	SAGA_OUTCOME_PENDING = 4,
	SAGA_OUTCOME_TIMEOUT = 5
} saga_outcome;

/* One transition. Strings are borrowed for the duration of a listener call
 * or history callback. step is -1 when the event concerns no step. */
typedef struct saga_event {
	int64_t instance;
	int64_t seq;                /* position in the instance's history (1, 2, ...) */
	uint64_t at_ms;             /* wall clock */
	saga_event_type type;
	saga_state state;           /* the instance's state after the event */
	int step;
	const char *step_name;      /* NULL when step is -1 */
	saga_phase phase;
	uint32_t attempt;
	saga_outcome outcome;
	const char *detail;         /* never NULL; may be "" */
	int64_t fence;              /* the instance's fence when the event was written
	                               (saga_step_fence); never goes back */
} saga_event;

/* Listeners are called after the event is durable, from the thread that
 * committed it, with no engine lock held; they may call the engine. */
typedef void (*saga_listener_fn)(const saga_event *event, void *user);

#define SAGA_NAME_MAX 64
#define SAGA_KEY_MAX 256
#define SAGA_UID_LEN 32

typedef struct saga_instance_info {
	int64_t id;
	char uid[SAGA_UID_LEN + 1];  /* creation ms (48 bits) + 80 random bits, in hex */
	char definition[SAGA_NAME_MAX + 1];
	int version;
	char business_key[SAGA_KEY_MAX + 1]; /* "" when started without one */
	saga_state state;
	saga_reason reason;
	saga_phase phase;
	int step;                 /* current step index (forward or compensating) */
	uint32_t attempt;         /* attempts made on the current step and phase */
	int pivot_done;           /* 1 once the pivot succeeded */
	uint64_t created_ms;
	uint64_t updated_ms;
	uint64_t due_ms;          /* when it runs next; 0 = not scheduled */
	uint64_t deadline_ms;     /* 0 = none */
	char error[256];          /* the last step error, "" if none; the error that
	                             started a rollback stays through compensation */
} saga_instance_info;

/* ------------------------------------------------------------------------ */
/* The engine                                                               */
/* ------------------------------------------------------------------------ */

typedef struct saga_engine saga_engine;

typedef enum saga_durability {
	SAGA_DURABILITY_FULL = 0,   /* synchronous=FULL: survives power loss */
	SAGA_DURABILITY_NORMAL = 1  /* synchronous=NORMAL: survives a process crash */
} saga_durability;

/* The ranges of the numeric options. A value outside its range is refused
 * by saga_engine_open (SAGA_EINVAL, the message names the option), never
 * clamped. */
#define SAGA_WORKERS_MAX 256u
#define SAGA_MAX_IN_FLIGHT_MAX 1024u
#define SAGA_BUSY_TIMEOUT_MAX 2147483647u /* INT32_MAX ms, about 24.8 days */
#define SAGA_LEASE_MIN 100u                /* ms */
#define SAGA_LEASE_MAX 3600000u            /* ms: one hour */
/* An instance whose attempt was interrupted (its owner died in it) and that
 * was recovered this many times in a row without an answer goes STUCK
 * (reason SAGA_REASON_CRASH_LOOP) instead of being invoked again. */
#define SAGA_RECOVERY_LIMIT 8
/* How often an idle engine looks for other processes' commits (commands,
 * instances left by a dead process): a bound on how late it notices them. */
#define SAGA_POLL_MS 50u

typedef struct saga_options {
	unsigned int version;        /* SAGA_OPTIONS_VERSION */
	const char *path;            /* the store: a SQLite file name (not a URI; created 0600),
	                                "sqlite:FILE", or a PostgreSQL database: a libpq URI
	                                "postgresql://..." / "postgres://...", or
	                                "postgresql:" followed by a key=value conninfo */
	saga_durability durability;  /* FULL or NORMAL */
	unsigned int workers;        /* 0: the caller drives (saga_run_*); N: N worker threads;
	                                0 .. SAGA_WORKERS_MAX */
	unsigned int max_in_flight;  /* instances advanced at once; 0 = 256;
	                                1 .. SAGA_MAX_IN_FLIGHT_MAX */
	uint64_t seed;               /* random source for retry jitter; 0 = from the system;
	                                any value. (instance ids come from the system's entropy,
	                                getrandom; the seeded source only if that fails) */
	saga_allocator allocator;    /* all NULL = malloc/realloc/free */
	saga_log_fn log;             /* NULL = no logging */
	void *log_user;
	saga_log_level log_level;    /* SAGA_LOG_DEBUG .. SAGA_LOG_ERROR */
	saga_clock clock;            /* all NULL = system clocks */
	uint32_t busy_timeout_ms;    /* SQLite busy timeout, PostgreSQL lock_timeout; 0 = 5000;
	                                1 .. SAGA_BUSY_TIMEOUT_MAX */
	/* Version 2 and later: */
	int deferred_start;          /* 0: the engine runs once opened; 1: it runs (workers,
	                                recovery, saga_run_*) from saga_engine_start */
	/* Version 3 and later: */
	uint32_t lease_ms;           /* this process's ownership lease; 0 = 10000;
	                                SAGA_LEASE_MIN .. SAGA_LEASE_MAX */
	uint32_t lease_margin_ms;    /* a callback starts only with this much lease left;
	                                0 = lease_ms / 2; below lease_ms */
	/* Version 4 and later: */
	saga_log_record_fn log_record; /* NULL = none; called besides `log`, at log_level */
	void *log_record_user;
} saga_options;

/* Versions 1 (without deferred_start), 2 (without the lease) and 3 (without
 * log_record) are still accepted: their fields are read, the later ones
 * take their defaults. */
#define SAGA_OPTIONS_VERSION 4
#define SAGA_OPTIONS_INIT \
	{ SAGA_OPTIONS_VERSION, NULL, SAGA_DURABILITY_FULL, 0, 0, 0, \
	  { NULL, NULL, NULL, NULL }, NULL, NULL, SAGA_LOG_INFO, { NULL, NULL, NULL }, 0, 0, \
	  0, 0, NULL, NULL }

/* Opens (creating if needed) the store at options->path and migrates its
 * schema. Options are checked first, before any file is created or opened:
 * an option out of its range gives SAGA_EINVAL with a message naming it.
 * A path beginning "postgresql://" or "postgres://" (a libpq URI, given to
 * libpq as it is) or "postgresql:" (followed by a key=value conninfo) names
 * a PostgreSQL database: the store's tables are made in the connection's
 * current schema, creation and migration wait for busy_timeout_ms, and
 * owners on any host share it through their leases alone (no lock file);
 * SAGA_EINVAL "built without PostgreSQL support" when libsaga was built
 * without libpq. "sqlite:FILE" names the SQLite file FILE; any other path is
 * a SQLite file name, as follows.
 * The path is a file name, relative or absolute; symbolic links,
 * "." and ".." are resolved, so every name of one file is the same store. A
 * name beginning with "file:" is refused (SAGA_EINVAL): store paths are not
 * URIs (a file whose name begins with "file:" is reached as "./file:...").
 * Several engines may have one store open at once, under any of its names,
 * in this process or in other processes on this host (never across hosts or
 * over a network file system): each runs the instances it owns, and no
 * instance is ever advanced by two engines (docs/semantics.md, "Many
 * processes"). An engine holds a shared flock on the file "<store>-lock"
 * beside the store (created 0600, never deleted); at its first write it
 * registers in the store as an owner with a lease of lease_ms. SAGA_EBUSY
 * only when an engine of a libsaga from before schema 4 has the store open
 * (it takes that flock exclusively), or when another process has been
 * opening the store for busy_timeout_ms. A new store is built under a
 * temporary name and renamed into place whole, so an existing file that is
 * empty, too short or not a libsaga store is refused with SAGA_ECORRUPT and
 * left as it is. Unfinished instances are resumed (this engine's, and those
 * other engines left, of the definitions it registered) once their
 * definitions are registered and the engine runs. On failure *out is NULL;
 * `errmsg` (may be NULL) receives a message of at most errmsg_size bytes.
 * Errors: SAGA_EINVAL, SAGA_ENOMEM, SAGA_ESTORE, SAGA_ECORRUPT,
 * SAGA_EVERSION, SAGA_EIO, SAGA_EFULL, SAGA_EBUSY. */
SAGA_API int saga_engine_open(saga_engine **out, const saga_options *options,
                              char *errmsg, size_t errmsg_size);
/* Stops the workers (waiting for callbacks in progress), records their
 * answers, hands every unfinished instance this engine owns back to the
 * store's pool (another engine on the store takes them over at once, without
 * waiting for the lease), and closes the store. Nothing durable is lost:
 * unfinished instances resume in another engine, or at next open. */
SAGA_API void saga_engine_close(saga_engine *engine);
/* Starts an engine opened with deferred_start: with workers, the driver and
 * worker threads begin (and with them the recovery of unfinished
 * instances); without, saga_run_* and saga_wait are allowed from now on.
 * Register definitions, breakers and listeners before it, so that recovery
 * finds them. Until it, starts, completions, cancels, operator commands and
 * queries work (they are durable and run once the engine does), while
 * saga_run_*, saga_wait_idle and saga_wait return SAGA_ESTATE. SAGA_ESTATE
 * when the engine already runs (a second call, or opened without
 * deferred_start); SAGA_ERROR if a thread cannot be created (nothing then
 * runs, and the call may be repeated). Thread-safe. */
SAGA_API int saga_engine_start(saga_engine *engine);
/* The message of the calling thread's last failed call, if that call was on
 * this engine; "no error" otherwise. Each thread sees its own. Never NULL;
 * borrowed until the thread's next failing call. */
SAGA_API const char *saga_engine_errmsg(const saga_engine *engine);

/* Registers a definition (borrowed: it is copied, the caller frees it).
 * Validates it (SAGA_EINVAL naming the problem) and stores its snapshot; a
 * stored snapshot of the same name and version with different steps gives
 * SAGA_ECONFLICT. A name+version registered twice gives SAGA_EEXISTS. */
SAGA_API int saga_engine_register(saga_engine *engine, const saga_definition *def);

/* Adds a named breaker shared by every instance and thread of the engine,
 * using the engine's clock. `config` borrowed. SAGA_EEXISTS if the name is
 * taken. The breaker is owned by the engine. */
SAGA_API int saga_engine_add_breaker(saga_engine *engine, const char *name,
                                     const saga_breaker_config *config);
/* The engine's breaker of that name (borrowed) or NULL. */
SAGA_API saga_breaker *saga_engine_breaker(saga_engine *engine, const char *name);

/* Adds a listener for every event this engine commits (events of instances
 * another process runs are delivered there). */
SAGA_API int saga_engine_add_listener(saga_engine *engine, saga_listener_fn fn, void *user);
/* Removes the listener added with this fn and user (the latest added, if it
 * was added more than once). SAGA_ENOTFOUND when none is. Thread-safe, also
 * while events are delivered on other threads and from inside a listener
 * (then the rest of that delivery skips it). Once it returns, the listener
 * gets no event committed after that; a delivery already under way on
 * another thread may still call it once, and a call in progress is not
 * waited for: keep `user` valid until such calls are over. */
SAGA_API int saga_engine_remove_listener(saga_engine *engine, saga_listener_fn fn, void *user);

/* Starts an instance of the latest registered version of `definition`.
 * `input` (a JSON object, or NULL for {}) is borrowed and copied.
 * `business_key` (may be NULL): if an instance already has it, that
 * instance's id is returned with 0 and nothing new is created (*created, may
 * be NULL, says which). The instance is durable when this returns. */
SAGA_API int saga_start(saga_engine *engine, int64_t *out_id, int *created,
                        const char *definition, const char *business_key,
                        const struct cJSON *input);

/* Starts several instances in one transaction (one commit): all or none.
 * ids[i] (and created[i], when created is not NULL) answer reqs[i] as
 * saga_start would; on error every id is 0 and nothing was created. The
 * strings and inputs of reqs are borrowed. With workers, a call from any
 * thread but the one running a round (a listener there) joins the next
 * round's commit (group commit with the round and with other threads'
 * starts) and returns once that commit is done and its events delivered. */
typedef struct saga_start_request {
	const char *definition;
	const char *business_key;    /* may be NULL */
	const struct cJSON *input;   /* may be NULL */
} saga_start_request;
SAGA_API int saga_start_batch(saga_engine *engine, int64_t *ids, int *created,
                              const saga_start_request *reqs, size_t n);

/* Scheduled starts: saga_start and saga_start_batch for instances that begin
 * at the wall-clock time start_at_ms (the engine's clock). Until then each is
 * stored WAITING with that due time, like a retry timer: nothing runs before
 * it, and it survives a restart. A time not in the future starts at once
 * (saga_start, saga_start_batch). A business key already taken returns that
 * instance (created 0) whatever its time. The instance deadline counts from
 * the start time. saga_cancel before the start ends the instance COMPENSATED
 * (reason cancel) without running any step. The batch is one commit made by
 * the calling thread; every request in it gets the same time. Errors as
 * saga_start. */
SAGA_API int saga_start_at(saga_engine *engine, int64_t *out_id, int *created,
                           const char *definition, const char *business_key,
                           const struct cJSON *input, uint64_t start_at_ms);
SAGA_API int saga_start_batch_at(saga_engine *engine, int64_t *ids, int *created,
                                 const saga_start_request *reqs, size_t n,
                                 uint64_t start_at_ms);

/* Caller-driven execution (workers = 0). saga_run_due runs one round of what
 * is due now and sets *ran (may be NULL) to the number of attempts invoked.
 * saga_run_until_idle repeats until nothing is due now; instances waiting on
 * timers, breakers or async completions stay waiting. Due means this
 * engine's instances and the unowned ones it may claim (definitions it
 * registered), not those other engines on the store own. With workers > 0
 * both return SAGA_ESTATE. Callbacks run in the calling thread. */
SAGA_API int saga_run_due(saga_engine *engine, unsigned int *ran);
/* saga_run_due that also starts n instances (as saga_start_batch fills
 * ids and created): they are written in the round's commit, with the
 * answers of the attempts it invoked, so a caller that starts instances
 * between rounds pays one commit per round instead of two. A nonzero ids[i]
 * is durable when the call returns, even with an error of the round that
 * came after the commit (SAGA_ECORRUPT for a damaged instance found); when
 * their commit failed, ids and created are zeroed. */
SAGA_API int saga_run_due_start(saga_engine *engine, unsigned int *ran, int64_t *ids,
                                int *created, const saga_start_request *reqs, size_t n);
SAGA_API int saga_run_until_idle(saga_engine *engine);
/* Wall-clock ms of the next timer (retry, breaker, timeout, deadline) of
 * this engine's instances and of the unowned ones it may claim; the current
 * time when instances are queued or the store has not been scanned since
 * open; 0 when nothing is pending. While other engines run on the store, at
 * most SAGA_POLL_MS from now (their leftovers and commands are looked for). */
SAGA_API int saga_next_due(saga_engine *engine, uint64_t *out_ms);
/* With workers: blocks until nothing is due now (as saga_run_until_idle
 * counts it) and no callback runs in this engine, or timeout_ms passes
 * (SAGA_EBUSY). Without workers: saga_run_until_idle. */
SAGA_API int saga_wait_idle(saga_engine *engine, uint64_t timeout_ms);
/* Blocks until instance `id` is final (COMPLETED or COMPENSATED) or needs an
 * operator (STUCK), or timeout_ms (of the system's monotonic clock) passes;
 * *out receives its info as committed (also on SAGA_EBUSY: the last seen).
 * It keeps waiting while the instance sleeps on a timer, a breaker or an
 * async completion. With workers it sleeps until a commit changes some
 * instance's state. Without workers it drives: it runs rounds on the
 * calling thread as saga_run_due does (callbacks run there), and between
 * them sleeps until the next timer, a completion, start or cancel from
 * another thread, a commit by another thread's round, or the timeout; so it
 * may be called by the thread that drives the engine, and from other threads
 * while one drives (rounds never overlap). Not from a step callback or a
 * listener (SAGA_ESTATE on the thread running a round). Errors: SAGA_EBUSY (timeout),
 * SAGA_ENOTFOUND (no such instance), SAGA_EINVAL (out is NULL), SAGA_ESTATE
 * (not started), the errors of saga_run_due and of the store. Thread-safe. */
SAGA_API int saga_wait(saga_engine *engine, saga_instance_info *out, int64_t id,
                       uint64_t timeout_ms);
/* Event-loop integration without workers: *out_fd receives a descriptor
 * (owned by the engine, closed by saga_engine_close; O_CLOEXEC|O_NONBLOCK)
 * that is readable when the engine has work now: an async completion, a
 * start, cancel or operator command (from any thread), a scheduled start
 * (its timer may be earlier than the loop's timeout), a round that left
 * work due, or saga_next_due finding a timer due. Timers in the future do
 * not make it readable: poll it with the timeout saga_next_due gives (0 =
 * none: wait for the descriptor alone). saga_run_due, saga_run_due_start
 * and saga_run_until_idle drain it when they return, and leave it readable
 * if work is still due; never read it yourself. It is made on the first
 * call (readable, so the loop runs a first round), the same one after.
 * SAGA_ESTATE with workers; SAGA_ERROR if the descriptor cannot be made.
 * Thread-safe. */
SAGA_API int saga_engine_fd(saga_engine *engine, int *out_fd);

/* Completes an async (PENDING) step by its key, from any thread. `output`
 * (may be NULL) is merged into the context on OK; ownership is taken.
 * result is OK, FAIL or RETRY. Returns 0 once the completion is durable,
 * SAGA_EDUPLICATE for a second completion, SAGA_ELATE after the step's
 * timeout (both recorded and otherwise ignored), SAGA_ENOTFOUND.
 * A completion that arrives while the callback (action or compensation) is
 * still running, or for an instance another process owns, is written to the
 * store for the owner and returns 0 (or, when the verdict is known at once,
 * SAGA_EDUPLICATE or SAGA_ELATE); the owner carries it out once the instance
 * is at rest and records the verdict in the history: applied if the callback
 * answered PENDING (an EARLY_COMPLETION event first), DUPLICATE if it
 * answered anything else, LATE after the timeout. The write is durable: if
 * the owner dies first, the step is invoked again with the same key and the
 * completion applied after that answer. */
SAGA_API int saga_complete(saga_engine *engine, const char *key, saga_step_result result,
                           struct cJSON *output);

/* Cancels: the instance compensates what it started (reason CANCEL).
 * SAGA_ESTATE once its pivot (or, without one, its first retriable step) has
 * started, when it is already compensating, or when it has ended (STUCK
 * included). A cancel made while an attempt runs, or for an instance another
 * process owns, is written to the store and returns 0; the owner applies it
 * once the instance is at rest (the attempt answered), or records it as
 * refused if the instance no longer accepts it. The write is durable: if the
 * owner dies first, the engine that takes the instance over applies it. */
SAGA_API int saga_cancel(saga_engine *engine, int64_t id);

/* Operator commands on a STUCK instance; each is recorded in the history.
 * retry: the failed step or compensation runs again with fresh attempts.
 * skip: the failed compensation is marked done (or, past the pivot, the
 *   failed step is marked done) and the instance goes on.
 * resume: run forward again from the failed step (only while no
 *   compensation has completed). SAGA_ESTATE when not applicable.
 * A STUCK instance belongs to no engine: the one given the command takes
 * it, applies the command at once and runs the instance (or hands it back to
 * the store's pool when it closes). */
SAGA_API int saga_operator_retry(saga_engine *engine, int64_t id);
SAGA_API int saga_operator_skip(saga_engine *engine, int64_t id);
SAGA_API int saga_operator_resume(saga_engine *engine, int64_t id);

/* Queries. */
SAGA_API int saga_get(saga_engine *engine, saga_instance_info *out, int64_t id);
/* *out receives a new cJSON object owned by the caller (cJSON_Delete). */
SAGA_API int saga_get_context(saga_engine *engine, struct cJSON **out, int64_t id);
SAGA_API int saga_find(saga_engine *engine, int64_t *out_id, const char *business_key);
typedef int (*saga_event_fn)(const saga_event *event, void *user); /* nonzero stops */
SAGA_API int saga_history(saga_engine *engine, int64_t id, saga_event_fn fn, void *user);
typedef int (*saga_instance_fn)(const saga_instance_info *info, void *user); /* nonzero stops */
/* Lists instances in `state` (or every state with state < 0), oldest first,
 * page by page (saga_list_page): fn runs with no engine lock held and may
 * call the engine. Each instance is seen at most once; one that changes
 * state during the listing is seen in its state when its page was read. */
SAGA_API int saga_list(saga_engine *engine, int state, saga_instance_fn fn, void *user);

/* What saga_list_page selects; each member narrows the listing. */
typedef struct saga_list_filter {
	unsigned int version;        /* SAGA_LIST_FILTER_VERSION */
	int state;                   /* a saga_state, or -1 for any */
	const char *definition;      /* NULL = any; borrowed */
	int definition_version;      /* 0 = any */
	uint64_t created_from_ms;    /* created in [from, to); to 0 = no bound */
	uint64_t created_to_ms;
	uint64_t updated_from_ms;    /* last changed in [from, to); to 0 = no bound */
	uint64_t updated_to_ms;
} saga_list_filter;
#define SAGA_LIST_FILTER_VERSION 1
#define SAGA_LIST_FILTER_INIT { SAGA_LIST_FILTER_VERSION, -1, NULL, 0, 0, 0, 0, 0 }

/* One page of instances matching `filter` (NULL = every instance) with an id
 * above `after_id` (0 for the first page), in id order: out[0 .. *n) (out
 * is the caller's array of `cap` entries). The next page is the one after
 * out[*n - 1].id; a page shorter than cap is the last. Keyset paging: each
 * page costs what it returns, whatever the store holds, and an instance is
 * never seen twice. The engine lock is held while the page is read, never
 * after the call returns. SAGA_EINVAL for a bad filter (unknown version or
 * state, an empty range) or cap 0. */
SAGA_API int saga_list_page(saga_engine *engine, saga_instance_info *out, size_t *n,
                            size_t cap, const saga_list_filter *filter, int64_t after_id);

/* An async step that answered PENDING and waits for saga_complete. */
#define SAGA_STEP_KEY_MAX (SAGA_UID_LEN + SAGA_NAME_MAX + 14)
typedef struct saga_pending_step {
	int64_t instance;
	char key[SAGA_STEP_KEY_MAX + 1];     /* "<uid>/<step>/<phase>", for saga_complete */
	char definition[SAGA_NAME_MAX + 1];
	int version;
	char business_key[SAGA_KEY_MAX + 1]; /* "" when started without one */
	int step;                            /* its index */
	char step_name[SAGA_NAME_MAX + 1];   /* "" if the definition is unknown */
	saga_phase phase;
	uint32_t attempt;
	uint64_t deadline_ms;                /* when it times out; 0 = never */
} saga_pending_step;

/* One page of the WAITING instances whose step awaits an async completion,
 * paged as saga_list_page: out[0 .. *n) with an instance id above after_id,
 * in id order. What a program re-sends after a restart. SAGA_EINVAL for cap
 * 0. */
SAGA_API int saga_list_pending(saga_engine *engine, saga_pending_step *out, size_t *n,
                               size_t cap, int64_t after_id);
SAGA_API int saga_counts(saga_engine *engine, int64_t counts[SAGA_STATE_COUNT]);

/* What this engine has done since it was opened (counted in memory, never
 * stored): for monitoring, and for the benchmark's figures. */
typedef struct saga_stats {
	uint64_t commits;        /* transactions committed to the store */
	uint64_t attempts;       /* action and compensation callbacks invoked */
	uint64_t history_rows;   /* history rows committed */
	uint64_t started;        /* instances created */
} saga_stats;
SAGA_API int saga_engine_stats(saga_engine *engine, saga_stats *out);

/* ------------------------------------------------------------------------ */
/* Metrics (Prometheus)                                                     */
/* ------------------------------------------------------------------------ */

/* Receives output (metrics, diagrams) piece by piece: `len` bytes at `data`
 * (not NUL-terminated), borrowed for the call. Returns 0 to go on, nonzero
 * to stop (the call then fails with SAGA_EIO). */
typedef int (*saga_write_fn)(const char *data, size_t len, void *user);

typedef enum saga_metrics_format {
	SAGA_METRICS_PROMETHEUS = 0,  /* text format 0.0.4 */
	SAGA_METRICS_OPENMETRICS = 1  /* OpenMetrics 1.0.0: # UNIT lines, ends with # EOF */
} saga_metrics_format;

#define SAGA_METRICS_PROCESS 1u  /* this engine's counters and histograms */
#define SAGA_METRICS_STORE   2u  /* gauges read from the store: export them from
                                    one process only (docs/operations.md) */
/* A WAITING instance due more than this long ago is overdue. */
#define SAGA_METRICS_OVERDUE_MS 60000u

/* Renders the metrics chosen by `flags` (PROCESS, STORE, or both) in
 * `format` into write(data, len, user), in pieces, as one exposition. No
 * socket: the caller serves the text (with saga_metrics_content_type) or
 * writes it to a file. The process metrics count what this engine
 * committed since it was opened (never stored); the store gauges are
 * queried from the store at the call, under the engine lock. Errors:
 * SAGA_EINVAL (bad flags or format, NULL arguments), SAGA_EIO (write
 * stopped), the store's errors. Thread-safe. */
SAGA_API int saga_metrics_write(saga_engine *engine, unsigned int flags,
                                saga_metrics_format format, saga_write_fn write,
                                void *user);
/* The Content-Type header value of a format; NULL for an unknown one. */
SAGA_API const char *saga_metrics_content_type(saga_metrics_format format);

/* Deletes finished instances (state COMPLETED or COMPENSATED, or -1 for
 * both) that finished more than older_than_ms ago, with their history,
 * in small transactions. *purged (may be NULL) counts them. STUCK and
 * unfinished instances are never purged (SAGA_EINVAL if asked). */
SAGA_API int saga_purge(saga_engine *engine, int64_t *purged, int state, uint64_t older_than_ms);

SAGA_API const char *saga_state_name(saga_state state);
SAGA_API const char *saga_event_type_name(saga_event_type type);
SAGA_API const char *saga_outcome_name(saga_outcome outcome);
SAGA_API const char *saga_reason_name(saga_reason reason);

/* ------------------------------------------------------------------------ */
/* Diagrams of definitions and executed paths                               */
/* ------------------------------------------------------------------------ */

typedef enum saga_graph_format {
	SAGA_GRAPH_DOT = 0,      /* Graphviz: dot -Tsvg */
	SAGA_GRAPH_MERMAID = 1,  /* a Mermaid "flowchart LR", for Markdown */
	SAGA_GRAPH_JSON = 2      /* nodes and edges, for a program */
} saga_graph_format;

/* The "format_version" member of the JSON form; raised when a member
 * changes meaning or goes away (new members may appear without it). */
#define SAGA_GRAPH_JSON_VERSION 1

/* Output goes to a saga_write_fn (see Metrics). */

/* *out receives the format named "dot", "mermaid" or "json".
 * SAGA_EINVAL for any other name or NULL. Thread-safe. */
SAGA_API int saga_graph_format_parse(saga_graph_format *out, const char *name);

/* Draws a definition from its snapshot, the JSON text the store keeps for
 * each registered (name, version) (sagactl reads it from the store): its
 * steps shaped by kind (compensatable box, pivot diamond, retriable double
 * box), the forward edges, the compensation edges running back, the point of
 * no return. The snapshot holds names and kinds, not policies; the drawing
 * of a registered definition (saga_engine_graph) shows them too.
 * With events (nevents > 0), the history of one instance of it, in order
 * (as saga_history gives them), is drawn over it: each step coloured by
 * outcome, attempts counted, where the rollback began, the step an instance
 * is STUCK on, operator commands. events may be NULL when nevents is 0.
 * Everything is borrowed. The whole text is made before `write` is first
 * called: on an error nothing has been written, except for SAGA_EIO.
 * Names are escaped for each format (any bytes; invalid UTF-8 is drawn as
 * U+FFFD). Errors: SAGA_EINVAL (NULL snapshot or write, a snapshot that is
 * not a definition's, an unknown format, events of several instances or
 * naming steps the definition lacks), SAGA_ENOMEM, SAGA_EIO (write
 * stopped); `errmsg` (may be NULL) receives a message of at most
 * errmsg_size bytes. Thread-safe. */
SAGA_API int saga_graph_write(const char *snapshot, const saga_event *events, size_t nevents,
                              saga_graph_format format, char *errmsg, size_t errmsg_size,
                              saga_write_fn write, void *user);

/* saga_graph_write on an engine's store. With id > 0, the instance's
 * definition and its history are drawn (definition and version are then
 * ignored and may be NULL, 0); with id 0, the definition of that name and
 * version alone. The snapshot comes from the store, so instances of
 * definitions this engine has not registered are drawn too; when it has
 * registered the definition, each step's policies (retry, timeout,
 * breaker) and the deadline are drawn as well. Errors: those of
 * saga_graph_write, SAGA_ENOTFOUND (no such instance or definition), the
 * store's; the message is saga_engine_errmsg's. Thread-safe; `write` is
 * called with no engine lock held. */
SAGA_API int saga_engine_graph(saga_engine *engine, const char *definition, int version,
                               int64_t id, saga_graph_format format, saga_write_fn write,
                               void *user);

/* ------------------------------------------------------------------------ */
/* The admin API: a store seen by an operator                               */
/* ------------------------------------------------------------------------ */

/* A handle on a store that runs none of its sagas: no callbacks, no
 * definitions registered, no instance taken to run. Reads are single
 * statements, each its own short read transaction, so they never hold up
 * the engines on the store. Writes are the operator's requests
 * (saga_admin_request, saga_admin_purge). One handle is for one thread at a
 * time (several handles on one store are fine). */
typedef struct saga_admin saga_admin;

/* Refuse every write request (SAGA_ESTATE): a handle for looking only. */
#define SAGA_ADMIN_READ_ONLY 1u

/* Opens the store named `store` (as saga_options.path: a file path or a
 * PostgreSQL name) for administration. Unlike saga_engine_open it never
 * creates a store: a path that does not exist, or a PostgreSQL database
 * (its current schema) without a store's tables, gives SAGA_ENOTFOUND and
 * writes nothing. An existing store of an older schema is migrated, as any
 * open does. On failure *out is NULL and `errmsg` (may be NULL) receives a
 * message of at most errmsg_size bytes.
 * Errors: SAGA_EINVAL (flags, a NULL argument), SAGA_ENOTFOUND, SAGA_ENOMEM,
 * SAGA_ECORRUPT (not a libsaga store), SAGA_EVERSION (written by a newer
 * libsaga), SAGA_EBUSY, SAGA_ESTORE, SAGA_EIO. */
SAGA_API int saga_admin_open(saga_admin **out, const char *store, unsigned int flags,
                             char *errmsg, size_t errmsg_size);
/* Closes the handle (NULL is fine). */
SAGA_API void saga_admin_close(saga_admin *admin);
/* The message of the last failed call on this handle; never NULL (borrowed,
 * valid until the next call). */
SAGA_API const char *saga_admin_errmsg(const saga_admin *admin);

/* What saga_admin_list selects; every member narrows the listing. */
typedef struct saga_admin_filter {
	unsigned int version;        /* SAGA_ADMIN_FILTER_VERSION */
	int state;                   /* a saga_state, or -1 for any */
	const char *definition;      /* NULL = any; borrowed */
	int definition_version;      /* 0 = any */
	const char *key_prefix;      /* business keys beginning with it; NULL = any */
	uint64_t created_from_ms;    /* created in [from, to); to 0 = no bound */
	uint64_t created_to_ms;
	uint64_t updated_from_ms;    /* last changed in [from, to); to 0 = no bound */
	uint64_t updated_to_ms;
	const char *error_text;      /* the error contains it; NULL = any */
	int64_t owner;               /* an owner's epoch, 0 = owned by nobody, -1 = any */
} saga_admin_filter;
#define SAGA_ADMIN_FILTER_VERSION 1
#define SAGA_ADMIN_FILTER_INIT \
	{ SAGA_ADMIN_FILTER_VERSION, -1, NULL, 0, NULL, 0, 0, 0, 0, NULL, -1 }

/* One instance as an operator sees it. */
typedef struct saga_admin_instance {
	saga_instance_info info;
	char step_name[SAGA_NAME_MAX + 1]; /* of info.step; "" if none or unknown */
	int64_t owner;          /* the owning process's epoch; 0 = nobody */
	int64_t fence;          /* grows with every change of owner */
	int inflight;           /* 1: an attempt started without a recorded outcome */
	int pending;            /* 1: an async step awaits its completion */
	uint32_t recoveries;    /* claims in a row with an attempt interrupted */
	int compensated_any;    /* 1: a compensation has completed (no resume forward) */
} saga_admin_instance;

/* One page of the instances matching `filter` (NULL = all) with an id above
 * after_id (0 for the first), in id order: out[0 .. *n), out being the
 * caller's array of `cap`. The next page starts after out[*n - 1].info.id;
 * a page shorter than cap is the last. The state, definition and time
 * filters are the store's; the key prefix, error text and owner are checked
 * on the rows read, so a page with them may read more rows than it returns.
 * Errors: SAGA_EINVAL (bad filter, cap 0), the store's. */
SAGA_API int saga_admin_list(saga_admin *admin, saga_admin_instance *out, size_t *n, size_t cap,
                             const saga_admin_filter *filter, int64_t after_id);
/* The instance with this id, or (id 0) this uid or, failing that, this
 * business key (`ref`, borrowed). SAGA_ENOTFOUND when there is none. */
SAGA_API int saga_admin_get(saga_admin *admin, saga_admin_instance *out, int64_t id,
                            const char *ref);
/* *out receives the instance's context, a cJSON object owned by the caller
 * (cJSON_Delete). SAGA_ENOTFOUND, SAGA_ECORRUPT, SAGA_ENOMEM. */
SAGA_API int saga_admin_context(saga_admin *admin, struct cJSON **out, int64_t id);
/* The instance's history in order, as saga_history (step names from the
 * stored snapshot). fn must not call the handle. */
SAGA_API int saga_admin_history(saga_admin *admin, int64_t id, saga_event_fn fn, void *user);
/* Instances per state. */
SAGA_API int saga_admin_counts(saga_admin *admin, int64_t counts[SAGA_STATE_COUNT]);
/* Instances per definition, version and state: fn is called for each that
 * has any (name order, then version and state); nonzero from fn stops.
 * Strings are borrowed for the call. */
typedef int (*saga_admin_count_fn)(const char *definition, int version, saga_state state,
                                   int64_t n, void *user);
SAGA_API int saga_admin_counts_by_definition(saga_admin *admin, saga_admin_count_fn fn,
                                             void *user);
/* The definitions the store holds, each with its snapshot (JSON: name,
 * version, steps with their names and kinds), in name and version order;
 * strings borrowed for the call; nonzero from fn stops. */
typedef int (*saga_admin_definition_fn)(const char *definition, int version,
                                        const char *snapshot, void *user);
SAGA_API int saga_admin_definitions(saga_admin *admin, saga_admin_definition_fn fn, void *user);

/* One process that has registered in the store as an owner. */
typedef struct saga_admin_owner {
	int64_t epoch;
	const char *host;        /* borrowed for the call */
	int64_t pid;
	int state;               /* 0 live, 1 dead (reaped), 2 retired (closed) */
	uint64_t age_ms;         /* since it registered; 0 if in another boot */
	uint64_t lease_left_ms;  /* 0 = lapsed or ended */
	const char *served;      /* "name@version" words, space-separated; borrowed */
	int64_t instances;       /* unfinished instances it holds (live owners) */
} saga_admin_owner;
typedef int (*saga_admin_owner_fn)(const saga_admin_owner *owner, void *user);
/* The live owners (all = 1: the ended ones too), in epoch order; nonzero
 * from fn stops. */
SAGA_API int saga_admin_owners(saga_admin *admin, int all, saga_admin_owner_fn fn, void *user);

/* The store gauges (saga_metrics_write with SAGA_METRICS_STORE) in
 * `format`, into write(data, len, user): what an exporter that runs no
 * saga (sagactl metrics) serves or writes to a node_exporter textfile.
 * Errors as saga_metrics_write; saga_admin_errmsg says more. */
SAGA_API int saga_admin_metrics_write(saga_admin *admin, saga_metrics_format format,
                                      saga_write_fn write, void *user);

/* The operator's verbs (the engine's saga_cancel and saga_operator_*). */
typedef enum saga_admin_verb {
	SAGA_ADMIN_RETRY = 0,
	SAGA_ADMIN_SKIP = 1,
	SAGA_ADMIN_RESUME = 2,
	SAGA_ADMIN_CANCEL = 3
} saga_admin_verb;
#define SAGA_ADMIN_REQUEST_LEN 32

/* Asks for `verb` on instance `id` on behalf of `actor` (who, 1..128 bytes)
 * for `reason` (why, 1..512 bytes), both required and borrowed. The
 * history's OPERATOR event records them, with the request's id (written to
 * `request`, SAGA_ADMIN_REQUEST_LEN hex digits, which may be NULL) as JSON
 * after the verb: `operator: retry {"actor":..,"reason":..,"request":..}`.
 * An instance no live process owns (STUCK, or left by a process that died)
 * is changed at once, in one fenced transaction, by the same code as the
 * engine's verbs, and handed back to the store's pool, where an engine
 * serving its definition takes it (*queued = 0). An instance another
 * process owns gets a command row, applied by its owner in a later round
 * (or recorded as refused if the instance no longer accepts it) (*queued =
 * 1; saga_admin_wait waits for it). `queued` may be NULL. Errors:
 * SAGA_EINVAL (actor or reason missing or too long, a bad verb),
 * SAGA_ENOTFOUND, SAGA_ESTATE (refused in the instance's state, or a read-only
 * handle), SAGA_EBUSY, the store's. */
SAGA_API int saga_admin_request(saga_admin *admin, char *request, int *queued, int64_t id,
                                saga_admin_verb verb, const char *actor, const char *reason);
/* Waits until the request made by saga_admin_request on instance `id` is
 * in its history, for at most timeout_ms, reading the store every few
 * milliseconds. 0: applied; SAGA_ESTATE: the owner refused it (the message
 * says why); SAGA_EBUSY: not yet after timeout_ms. */
SAGA_API int saga_admin_wait(saga_admin *admin, int64_t id, const char *request,
                             uint64_t timeout_ms);
/* saga_purge on the store: deletes COMPLETED or COMPENSATED instances
 * (state, or -1 for both) that ended more than older_than_ms ago, with their
 * history; *purged (may be NULL) counts them. SAGA_ESTATE on a read-only
 * handle. */
SAGA_API int saga_admin_purge(saga_admin *admin, int64_t *purged, int state,
                              uint64_t older_than_ms);

/* ------------------------------------------------------------------------ */
/* Policy configuration from JSON                                           */
/* ------------------------------------------------------------------------ */

typedef struct saga_config_error {
	int line;            /* 1-based position in the text, 0 if unknown */
	int column;
	char key[128];       /* the offending key path, e.g. "steps.pay.retry.jitter" */
	char message[256];
} saga_config_error;

/* Applies a policy document (format in docs/policies.md) to a definition and
 * to the engine's breakers (engine may be NULL when the document has no
 * "breakers"). Everything is checked before anything changes: on error
 * nothing is applied and `err` (may be NULL) names the key and position.
 * Errors: SAGA_ECONFIG, SAGA_ENOMEM, SAGA_EINVAL. */
SAGA_API int saga_policies_apply(saga_engine *engine, saga_definition *def,
                                 const char *json, size_t len, saga_config_error *err);
/* The same, reading a file. SAGA_EIO if it cannot be read. */
SAGA_API int saga_policies_apply_file(saga_engine *engine, saga_definition *def,
                                      const char *path, saga_config_error *err);

/* ------------------------------------------------------------------------ */
/* Participant guard: empty compensation and anti-hanging                   */
/* ------------------------------------------------------------------------ */

typedef enum saga_guard_verdict {
	SAGA_GUARD_PROCEED = 0,   /* do the work now (in the same transaction) */
	SAGA_GUARD_DONE = 1,      /* already done for this key: answer as before */
	SAGA_GUARD_REFUSED = 2,   /* action after its compensation: refuse it (FAIL) */
	SAGA_GUARD_EMPTY = 3,     /* compensation with no prior action: nothing to undo */
	SAGA_GUARD_STALE = 4      /* (fenced calls) a higher fence was seen for this key:
	                             the caller lost the instance; do nothing (its
	                             answer is discarded by the engine) */
} saga_guard_verdict;

/* Creates the guard's table (saga_guard) in a participant's database if
 * missing. */
SAGA_API int saga_guard_init(struct sqlite3 *db);
/* To be called inside the participant's own open transaction, with the
 * step's action key (saga_step_action_key), before applying an action or a
 * compensation; records the decision in the same transaction, so it commits
 * or rolls back with the participant's own changes. */
SAGA_API int saga_guard_action(struct sqlite3 *db, const char *action_key,
                               saga_guard_verdict *verdict);
SAGA_API int saga_guard_compensation(struct sqlite3 *db, const char *action_key,
                                     saga_guard_verdict *verdict);
/* The same, given the step's fence (saga_step_fence, >= 1, else SAGA_EINVAL):
 * the guard keeps the highest fence seen per action key (table
 * saga_guard_fence, made by saga_guard_init), for both phases. A call with a
 * lower fence comes from a process that lost the instance while paused past
 * its lease: it is answered SAGA_GUARD_STALE and changes nothing else. An
 * equal or higher fence raises the mark and is answered as the unfenced call
 * would be. Processes past their lease margin can overlap in a callback; with
 * these calls, the participant never applies the older one's work after the
 * newer one's. */
SAGA_API int saga_guard_action_fenced(struct sqlite3 *db, const char *action_key,
                                      int64_t fence, saga_guard_verdict *verdict);
SAGA_API int saga_guard_compensation_fenced(struct sqlite3 *db, const char *action_key,
                                            int64_t fence, saga_guard_verdict *verdict);

#ifdef __cplusplus
}
#endif

#endif /* SAGA_H */
