/*
 * The e-commerce example's five services, as in-process modules.
 *
 * Each service owns one SQLite file in the data directory (order.db,
 * inventory.db, payment.db, shipping.db, notification.db): WAL mode,
 * synchronous=FULL, file mode 0600. A missing file is born whole (built by
 * SQLite under a temporary name, then linked into place); nothing but
 * SQLite opens or closes a database file or its -wal/-shm, since closing
 * any descriptor of a file drops every fcntl lock the process holds on it.
 * The *_open functions put in msg (may be NULL) the file and the cause of
 * a failure. Every operation
 *  - is idempotent, keyed by the saga step's idempotency key;
 *  - runs in ONE transaction (BEGIN IMMEDIATE ... COMMIT) that also holds the
 *    libsaga participant guard (saga_guard_action / saga_guard_compensation),
 *    so the effect and the guard's record commit together;
 *  - answers ECOM_OK, ECOM_REFUSED (a business refusal, with a message),
 *    ECOM_TRANSIENT (an injected transient failure: try again with the same
 *    key), or a negative SAGA_E* code (the service's own store failed;
 *    SAGA_EBUSY is worth retrying).
 *
 * Compensations take the key of the action they undo (saga_step_action_key):
 * with no prior action they succeed and are recorded (empty compensation);
 * an action arriving after its compensation is refused (anti-hanging).
 *
 * Message buffers (`msg`, `msg_size`) may be NULL/0; when given they receive
 * a readable reason for ECOM_REFUSED, ECOM_TRANSIENT and errors, and "" on
 * success. Strings passed in are borrowed for the call. Every service handle
 * may be shared by threads: operations on one handle are serialized.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef ECOMMERCE_SERVICES_H
#define ECOMMERCE_SERVICES_H

#include <stddef.h>
#include <stdint.h>

#include "saga.h"

struct cJSON;

/* ---------------------------------------------------------------------- */
/* Results, names, limits                                                 */
/* ---------------------------------------------------------------------- */

enum {
	ECOM_OK = 0,
	ECOM_REFUSED = 1, /* business refusal or injected permanent failure; nothing written */
	ECOM_TRANSIENT =
	        2 /* injected transient failure; nothing written; retry with the same key */
	          /* negative values: SAGA_E* codes */
};

#define ECOM_MSG_MAX  256 /* a message buffer that never truncates ours */
#define ECOM_ID_MAX   64  /* customer ids, SKUs: 1..63 bytes */
#define ECOM_KEY_MAX  256 /* idempotency and business keys */
#define ECOM_TEXT_MAX 256 /* names, addresses, bodies */

#define ECOM_MAX_ITEMS    50          /* lines per order */
#define ECOM_MAX_QUANTITY 100         /* total quantity per order */
#define ECOM_MAX_AMOUNT   100000000LL /* cents: cap on a unit price and an order total */

typedef enum ecom_service {
	ECOM_ORDER = 0,
	ECOM_INVENTORY = 1,
	ECOM_PAYMENT = 2,
	ECOM_SHIPPING = 3,
	ECOM_NOTIFICATION = 4
} ecom_service;
#define ECOM_SERVICE_COUNT 5

typedef enum ecom_payment_method {
	ECOM_PAY_CREDIT_CARD = 0,
	ECOM_PAY_DEBIT_CARD = 1,
	ECOM_PAY_PAYPAL = 2,
	ECOM_PAY_BANK_TRANSFER = 3
} ecom_payment_method;
#define ECOM_PAY_COUNT 4

typedef enum ecom_shipping_method {
	ECOM_SHIP_STANDARD = 0,     /* 5 days */
	ECOM_SHIP_EXPRESS = 1,      /* 3 days */
	ECOM_SHIP_OVERNIGHT = 2,    /* 1 day */
	ECOM_SHIP_TWO_DAY = 3,      /* 2 days */
	ECOM_SHIP_INTERNATIONAL = 4 /* 10 days */
} ecom_shipping_method;
#define ECOM_SHIP_COUNT 5

typedef enum ecom_order_status {
	ECOM_ORDER_PENDING = 0,
	ECOM_ORDER_CONFIRMED = 1,
	ECOM_ORDER_CANCELLED = 2,
	ECOM_ORDER_FAILED = 3
} ecom_order_status;
#define ECOM_ORDER_STATUS_COUNT 4

typedef enum ecom_shipment_status {
	ECOM_SHIPMENT_SCHEDULED = 0,
	ECOM_SHIPMENT_COMMITTED = 1, /* handed to the carrier: can no longer be cancelled */
	ECOM_SHIPMENT_CANCELLED = 2
} ecom_shipment_status;

typedef enum ecom_channel {
	ECOM_CHANNEL_EMAIL = 0,
	ECOM_CHANNEL_SMS = 1,
	ECOM_CHANNEL_PUSH = 2
} ecom_channel;

typedef enum ecom_message_kind {
	ECOM_MESSAGE_CONFIRMATION = 0,
	ECOM_MESSAGE_CANCELLATION = 1
} ecom_message_kind;

/* Static names ("payment", "CREDIT_CARD", "STANDARD", "CONFIRMED", "email",
 * ...); NULL for a value out of range. */
const char *ecom_service_name(int service);
const char *ecom_payment_method_name(int method);
const char *ecom_shipping_method_name(int method);
const char *ecom_order_status_name(int status);
const char *ecom_shipment_status_name(int status);
const char *ecom_channel_name(int channel);
const char *ecom_message_kind_name(int kind);
/* The reverse (exact, case-sensitive), or -1 for an unknown name or NULL. */
int ecom_service_parse(const char *name);
int ecom_payment_method_parse(const char *name);
int ecom_shipping_method_parse(const char *name);
int ecom_order_status_parse(const char *name);
int ecom_channel_parse(const char *name);
/* Delivery days of a shipping method, or -1. */
int ecom_shipping_days(int method);

/* ---------------------------------------------------------------------- */
/* Failure injection (faults.c)                                           */
/* ---------------------------------------------------------------------- */

/* Per service: a rate of permanent failures (forward actions only: order
 * create, inventory reserve, payment charge, shipping schedule), a rate of
 * transient failures (every operation), an added latency, timeouts (a rate
 * of calls that sleep a given time before doing their work, so the caller's
 * timeout fires and the result arrives late), and named crash points
 * "<service>.<op>.before|after" where the process dies with SIGKILL just
 * before or just after the operation's COMMIT. Injected failures happen
 * before anything is written. Draws come from a private generator seeded by
 * the caller: a single-threaded run is reproducible. Thread-safe. */
typedef struct ecom_faults ecom_faults;

int ecom_faults_new(ecom_faults **out, uint64_t seed);
void ecom_faults_free(ecom_faults *faults);

/* Typed setters. service < 0 sets every service. Rates in [0, 1]. */
int ecom_faults_set_fail(ecom_faults *f, int service, double rate);
int ecom_faults_set_transient(ecom_faults *f, int service, double rate);
int ecom_faults_set_latency(ecom_faults *f, int service, uint32_t ms);
int ecom_faults_set_timeout(ecom_faults *f, int service, uint32_t sleep_ms, double rate);
/* point: "<service>.<op>.before|after" (see ecom_crash_points); nth >= 1:
 * the process dies at the nth time the point is reached. SAGA_EINVAL for an
 * unknown point. At most 16 points. */
int ecom_faults_add_crash(ecom_faults *f, const char *point, uint32_t nth);

/* Parses one spec, as given to a flag or an environment variable:
 *   kind "fail", "transient": "payment=0.1,inventory=0.05"  (rates; "*" = all)
 *   kind "latency":           "payment=20"                  (ms)
 *   kind "timeout":           "payment=1500" or "payment=1500:0.2" (ms[:rate], rate 1 by default)
 *   kind "crash":             "payment.charge.after" or "payment.charge.after:3" (nth)
 * On error nothing is changed; SAGA_EINVAL with a message saying what is wrong. */
int ecom_faults_parse(ecom_faults *f, const char *kind, const char *spec, char *msg,
                      size_t msg_size);
/* Reads ECOMMERCE_FAIL, ECOMMERCE_TRANSIENT, ECOMMERCE_LATENCY,
 * ECOMMERCE_TIMEOUT, ECOMMERCE_CRASH (each a spec as above) and
 * ECOMMERCE_FAULT_SEED (reseeds). Unset variables change nothing. */
int ecom_faults_from_env(ecom_faults *f, char *msg, size_t msg_size);

/* Replaces raise(SIGKILL) at crash points (tests); NULL restores it. */
typedef void (*ecom_crash_fn)(const char *point, void *user);
void ecom_faults_set_crash_hook(ecom_faults *f, ecom_crash_fn fn, void *user);

/* How many failures were injected so far, per kind, into one service. */
typedef struct ecom_fault_counts {
	uint64_t calls, failures, transients, timeouts, crashes;
} ecom_fault_counts;
int ecom_faults_counts(const ecom_faults *f, int service, ecom_fault_counts *out);

/* The NULL-terminated list of valid crash point names (static). */
const char *const *ecom_crash_points(void);

/* ---------------------------------------------------------------------- */
/* Orders                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct ecom_item {
	const char *sku;
	int64_t quantity;
	int64_t unit_price; /* cents */
} ecom_item;

/* An order as requested. Every pointer is borrowed. */
typedef struct ecom_order {
	const char *ref; /* the business key (the saga's); may be NULL */
	const char *customer;
	const ecom_item *items;
	size_t nitems;
	int64_t total;        /* cents; must equal the sum of the items */
	const char *currency; /* three upper-case letters; NULL = "USD" */
	const char *address;
	int payment;  /* ecom_payment_method; anything else is refused */
	int shipping; /* ecom_shipping_method */
} ecom_order;

/* The order as a new JSON object (owned by the caller; NULL on ENOMEM):
 * {"ref","customer","items":[{"sku","quantity","unit_price"}],"total",
 *  "currency","address","payment":"CREDIT_CARD","shipping":"EXPRESS"}. */
struct cJSON *ecom_order_to_json(const ecom_order *order);
/* Reads that shape. Strings are borrowed from `json`, which must outlive
 * *out; the items array is allocated: release it with ecom_order_clear.
 * Unknown method names give -1 (refused later by order_validate).
 * ECOM_REFUSED with a message for a malformed document, SAGA_ENOMEM. */
int ecom_order_from_json(ecom_order *out, const struct cJSON *json, char *msg, size_t msg_size);
void ecom_order_clear(ecom_order *order);

/* Pure (no I/O): checks the order's rules. customer_known says whether the
 * customer exists (order_customer_exists). 0 when valid, else ECOM_REFUSED
 * with a message naming the first problem: unknown customer, 1..50 items,
 * total quantity <= 100, positive quantities and prices (at most
 * ECOM_MAX_AMOUNT), a total equal to the sum of the items, a non-empty
 * address, a currency, known payment and shipping methods. */
int ecom_order_validate(const ecom_order *order, int customer_known, char *msg, size_t msg_size);

typedef struct order_svc order_svc;

int order_open(order_svc **out, const char *dir, char *msg, size_t msg_size);
void order_close(order_svc *svc);
/* Borrowed: must outlive the service or be reset to NULL. */
void order_set_faults(order_svc *svc, ecom_faults *faults);

/* Seeding: adds customers in one transaction; ECOM_REFUSED if one exists. */
typedef struct ecom_customer {
	char id[ECOM_ID_MAX];
	char name[ECOM_TEXT_MAX];
	int64_t credit_limit; /* cents */
} ecom_customer;
int order_add_customers(order_svc *svc, const ecom_customer *customers, size_t n, char *msg,
                        size_t msg_size);
/* 1 known, 0 unknown, or a negative error. */
int order_customer_exists(order_svc *svc, const char *customer);
typedef int (*ecom_customer_fn)(const ecom_customer *customer, void *user); /* nonzero stops */
int order_list_customers(order_svc *svc, ecom_customer_fn fn, void *user);

/* Action: creates the order (PENDING) under `key` after validating it; sets
 * *order_id (may be NULL). The same key again answers the same id. */
int order_create(order_svc *svc, const char *key, const ecom_order *order, int64_t *order_id,
                 char *msg, size_t msg_size);
/* Compensation of order_create(action_key): the order becomes CANCELLED, or
 * FAILED when `failed` is nonzero, with `reason` (may be NULL) kept. */
int order_cancel(order_svc *svc, const char *action_key, int failed, const char *reason, char *msg,
                 size_t msg_size);
/* Retriable step: PENDING -> CONFIRMED. Refused for a cancelled order. */
int order_confirm(order_svc *svc, const char *key, int64_t order_id, char *msg, size_t msg_size);

typedef struct ecom_order_info {
	int64_t id;
	char key[ECOM_KEY_MAX];
	char ref[ECOM_KEY_MAX]; /* "" when none */
	char customer[ECOM_ID_MAX];
	int64_t total;
	char currency[4];
	char address[ECOM_TEXT_MAX];
	int payment;
	int shipping;
	int status;                 /* ecom_order_status */
	char reason[ECOM_TEXT_MAX]; /* why it was cancelled or failed; "" */
	size_t nitems;
	int64_t quantity; /* sum over the items */
	uint64_t created_ms, updated_ms;
} ecom_order_info;
/* SAGA_ENOTFOUND when there is no such order. */
int order_get(order_svc *svc, int64_t order_id, ecom_order_info *out);
int order_find_by_ref(order_svc *svc, const char *ref, int64_t *order_id);
int order_find_by_key(order_svc *svc, const char *key, int64_t *order_id);
/* Orders per status, indexed by ecom_order_status. */
int order_count_by_status(order_svc *svc, int64_t counts[ECOM_ORDER_STATUS_COUNT]);

/* ---------------------------------------------------------------------- */
/* Inventory                                                              */
/* ---------------------------------------------------------------------- */

/* Quantities of a product: `stock` is what is on hand, of which `reserved`
 * is held for orders; `shipped` has left the warehouse. available = stock -
 * reserved. Conservation: initial = available + reserved + shipped
 * (= stock + shipped). Reserving moves available -> reserved; releasing
 * moves it back; shipping moves reserved out of stock into shipped. */
typedef struct ecom_product {
	char sku[ECOM_ID_MAX];
	char name[ECOM_TEXT_MAX];
	int64_t price;   /* cents */
	int64_t initial; /* stock recorded when the product was added */
	int64_t stock;
	int64_t reserved;
	int64_t shipped;
} ecom_product;

typedef struct inventory_svc inventory_svc;

int inventory_open(inventory_svc **out, const char *dir, char *msg, size_t msg_size);
void inventory_close(inventory_svc *svc);
void inventory_set_faults(inventory_svc *svc, ecom_faults *faults);

/* Seeding: adds products (sku, name, price, stock; the rest ignored) in one
 * transaction, recording `initial` = stock. ECOM_REFUSED if one exists or a
 * value is out of range. */
int inventory_add_products(inventory_svc *svc, const ecom_product *products, size_t n, char *msg,
                           size_t msg_size);
int inventory_get_product(inventory_svc *svc, const char *sku, ecom_product *out);
typedef int (*ecom_product_fn)(const ecom_product *product, void *user); /* nonzero stops */
int inventory_list_products(inventory_svc *svc, ecom_product_fn fn, void *user);
/* Read-only pre-check: every SKU is known and priced as in the catalogue.
 * 0 or ECOM_REFUSED naming the first bad item. */
int inventory_check_items(inventory_svc *svc, const ecom_item *items, size_t n, char *msg,
                          size_t msg_size);

/* Action: reserves all the items for the order or none (ECOM_REFUSED: an
 * unknown product or not enough available). The same key again changes
 * nothing. */
int inventory_reserve(inventory_svc *svc, const char *key, int64_t order_id, const ecom_item *items,
                      size_t n, char *msg, size_t msg_size);
/* Compensation of inventory_reserve(action_key): returns exactly what that
 * reservation holds. Refused once the goods are shipped. */
int inventory_release(inventory_svc *svc, const char *action_key, char *msg, size_t msg_size);
/* After the pivot: the order's active reservation leaves the warehouse
 * (reserved -> shipped). Idempotent by `key`; refused when the order has no
 * active reservation. */
int inventory_ship(inventory_svc *svc, const char *key, int64_t order_id, char *msg,
                   size_t msg_size);

/* ---------------------------------------------------------------------- */
/* Payment                                                                */
/* ---------------------------------------------------------------------- */

typedef struct ecom_account {
	char customer[ECOM_ID_MAX];
	int64_t credit_limit;
	int64_t balance_used; /* the sum of what its charges hold (charged - refunded) */
} ecom_account;

typedef struct ecom_charge {
	int64_t id;
	char key[ECOM_KEY_MAX];
	int64_t order_id;
	char customer[ECOM_ID_MAX];
	int64_t amount;
	int64_t refunded; /* 0 <= refunded <= amount */
} ecom_charge;

typedef struct payment_svc payment_svc;

int payment_open(payment_svc **out, const char *dir, char *msg, size_t msg_size);
void payment_close(payment_svc *svc);
void payment_set_faults(payment_svc *svc, ecom_faults *faults);

/* Seeding: opens accounts (customer, credit_limit; balance ignored) in one
 * transaction. ECOM_REFUSED if one exists. */
int payment_open_accounts(payment_svc *svc, const ecom_account *accounts, size_t n, char *msg,
                          size_t msg_size);
int payment_get_account(payment_svc *svc, const char *customer, ecom_account *out);

/* Action: charges `amount` to the customer for the order. Refused when the
 * amount differs from `order_total` or is not positive, when the customer
 * has no account, when it would pass the credit limit, or when the order
 * already holds a charge. Once per key; sets *charge_id (may be NULL). */
int payment_charge(payment_svc *svc, const char *key, int64_t order_id, const char *customer,
                   int64_t amount, int64_t order_total, int64_t *charge_id, char *msg,
                   size_t msg_size);
/* Compensation of payment_charge(action_key): refunds what is left of it. */
int payment_refund(payment_svc *svc, const char *action_key, char *msg, size_t msg_size);
/* A partial refund of the charge made under charge_key, once per `key`.
 * Refused when it would refund more than was charged. */
int payment_refund_amount(payment_svc *svc, const char *key, const char *charge_key, int64_t amount,
                          char *msg, size_t msg_size);
/* The charge made under `key`; SAGA_ENOTFOUND. */
int payment_get_charge(payment_svc *svc, const char *key, ecom_charge *out);

/* ---------------------------------------------------------------------- */
/* Shipping                                                               */
/* ---------------------------------------------------------------------- */

typedef struct ecom_shipment {
	int64_t id;
	char key[ECOM_KEY_MAX];
	int64_t order_id;
	int method; /* ecom_shipping_method */
	char carrier[32];
	char tracking[32];
	char delivery_date[16]; /* YYYY-MM-DD (UTC): creation day + method days */
	char address[ECOM_TEXT_MAX];
	int status; /* ecom_shipment_status */
	uint64_t created_ms;
} ecom_shipment;

typedef struct shipping_svc shipping_svc;

int shipping_open(shipping_svc **out, const char *dir, char *msg, size_t msg_size);
void shipping_close(shipping_svc *svc);
void shipping_set_faults(shipping_svc *svc, ecom_faults *faults);

/* The saga's pivot: schedules the order's shipment with a carrier, a
 * tracking number and a delivery date from the method. Refused for an
 * unknown method or an empty address. *out (may be NULL) receives it, also
 * when the key is replayed. */
int shipping_schedule(shipping_svc *svc, const char *key, int64_t order_id, int method,
                      const char *address, ecom_shipment *out, char *msg, size_t msg_size);
/* Hands the order's scheduled shipment to the carrier (SCHEDULED ->
 * COMMITTED). Idempotent by key. */
int shipping_commit(shipping_svc *svc, const char *key, int64_t order_id, char *msg,
                    size_t msg_size);
/* Compensation of shipping_schedule(action_key), for completeness (the saga
 * never compensates its pivot): refused once the shipment is committed. */
int shipping_cancel(shipping_svc *svc, const char *action_key, char *msg, size_t msg_size);
/* The order's latest shipment; SAGA_ENOTFOUND. */
int shipping_get(shipping_svc *svc, int64_t order_id, ecom_shipment *out);

/* ---------------------------------------------------------------------- */
/* Notification                                                           */
/* ---------------------------------------------------------------------- */

typedef struct notification_svc notification_svc;

int notification_open(notification_svc **out, const char *dir, char *msg, size_t msg_size);
void notification_close(notification_svc *svc);
void notification_set_faults(notification_svc *svc, ecom_faults *faults);

/* Sends (and keeps) a message about the order, once per key. body may be
 * NULL for the standard text of the kind. */
int notification_send(notification_svc *svc, const char *key, int64_t order_id, int channel,
                      int kind, const char *body, char *msg, size_t msg_size);
/* Messages of that kind kept for the order. */
int notification_count(notification_svc *svc, int64_t order_id, int kind, int64_t *count);

/* ---------------------------------------------------------------------- */
/* Seeding and checking                                                   */
/* ---------------------------------------------------------------------- */

/* Fills a fresh data directory, deterministically from `seed`: nproducts
 * products (some out of stock, some with 1..3 left), ncustomers customers
 * with accounts (some with low credit limits). SAGA_EEXISTS when the
 * directory already holds products or customers. */
int ecom_seed(const char *dir, uint64_t seed, int nproducts, int ncustomers, char *msg,
              size_t msg_size);

/* A saga as the caller's store sees it, for the order <-> saga cross-check. */
typedef struct ecom_saga_fact {
	const char *business_key; /* the order's ref */
	saga_state state;
} ecom_saga_fact;

/* Called once per violation: `name` is a stable identifier (listed in
 * README.md), `detail` a readable sentence naming the rows. Both borrowed. */
typedef void (*ecom_violation_fn)(const char *name, const char *detail, void *user);

/* Checks the five databases in `dir` (opened read-only) against each other.
 * With sagas != NULL (nsagas may be 0) it also checks every order against
 * the sagas: one saga per order and one order per saga (a COMPENSATED saga
 * may have none: it failed before the order existed), statuses that agree,
 * no saga unfinished. Returns the number of violations (0 = clean) or a
 * negative error with `errmsg` (may be NULL) saying why. Run it when no
 * saga is in flight; ecommerce_check_live below while others work. */
int ecommerce_check(const char *dir, const ecom_saga_fact *sagas, size_t nsagas,
                    ecom_violation_fn fn, void *user, char *errmsg, size_t errmsg_size);

/* Reads the sagas again: *facts (the caller's, valid until the check
 * returns) and *n. 0, or a negative error. */
typedef int (*ecom_facts_fn)(const ecom_saga_fact **facts, size_t *n, void *user);

/* The same check while sagas may be running (other processes at work on
 * the directory). `before` is read before the call; `after` is called once
 * the five files' snapshots are pinned (the order file last) and reads the
 * sagas again. An order is checked against the other services only when
 * its saga had ended in `before` (then its rows were final in every
 * snapshot); the others are in flight, and saga-unfinished names those
 * still unfinished in `after`. An order whose key is in neither has no
 * saga (a saga exists before its order). Rules within one file, and rows
 * pointing at no order, are checked as always. */
int ecommerce_check_live(const char *dir, const ecom_saga_fact *before, size_t nbefore,
                         ecom_facts_fn after, void *after_user, ecom_violation_fn fn, void *user,
                         char *errmsg, size_t errmsg_size);

#endif
