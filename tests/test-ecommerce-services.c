/* The e-commerce example's five services, failure injection and checker,
 * on real SQLite files. SPDX-License-Identifier: MIT */
#include <cjson/cJSON.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faults.h"
#include "services.h"
#include "test-common.h"

static char dir[PATH_MAX];
static order_svc *ord;
static inventory_svc *inv;
static payment_svc *pay;
static shipping_svc *shp;
static notification_svc *ntf;
static char msg[ECOM_MSG_MAX];

/* ---- fixture ---- */

static void open_all(const char *d)
{
	ck_assert_int_eq(order_open(&ord, d, msg, sizeof msg), 0);
	ck_assert_int_eq(inventory_open(&inv, d, msg, sizeof msg), 0);
	ck_assert_int_eq(payment_open(&pay, d, msg, sizeof msg), 0);
	ck_assert_int_eq(shipping_open(&shp, d, msg, sizeof msg), 0);
	ck_assert_int_eq(notification_open(&ntf, d, msg, sizeof msg), 0);
}

static void close_all(void)
{
	notification_close(ntf);
	shipping_close(shp);
	payment_close(pay);
	inventory_close(inv);
	order_close(ord);
	ntf = NULL;
	shp = NULL;
	pay = NULL;
	inv = NULL;
	ord = NULL;
}

static ecom_product product(const char *sku, int64_t price, int64_t stock)
{
	ecom_product p;
	memset(&p, 0, sizeof p);
	snprintf(p.sku, sizeof p.sku, "%s", sku);
	snprintf(p.name, sizeof p.name, "Thing %s", sku);
	p.price = price;
	p.stock = stock;
	return p;
}

static void setup(void)
{
	tmpdir_make(dir, sizeof dir);
	open_all(dir);
	ecom_product products[] = {
		product("SKU-A", 1000, 10), product("SKU-B", 2500, 5),   product("SKU-LOW", 500, 2),
		product("SKU-OUT", 700, 0), product("SKU-HOT", 100, 37),
	};
	ck_assert_int_eq(inventory_add_products(inv, products, 5, msg, sizeof msg), 0);
	ecom_customer customers[] = { { "C1", "Ada Lovelace", 100000 },
		                      { "C-LOW", "Alan Turing", 1000 } };
	ck_assert_int_eq(order_add_customers(ord, customers, 2, msg, sizeof msg), 0);
	ecom_account accounts[] = { { "C1", 100000, 0 }, { "C-LOW", 1000, 0 } };
	ck_assert_int_eq(payment_open_accounts(pay, accounts, 2, msg, sizeof msg), 0);
}

static void teardown(void)
{
	close_all();
	tmpdir_remove(dir);
}

/* A valid order: 2 x SKU-A + 1 x SKU-B = 4500 cents, for C1. */
static ecom_item good_items[] = { { "SKU-A", 2, 1000 }, { "SKU-B", 1, 2500 } };

static ecom_order good_order(void)
{
	ecom_order o = { NULL,
		         "C1",
		         good_items,
		         2,
		         4500,
		         "USD",
		         "1 Main Street, Springfield",
		         ECOM_PAY_CREDIT_CARD,
		         ECOM_SHIP_EXPRESS };
	return o;
}

static void key_of(char *buf, size_t size, const char *ref, const char *step)
{
	snprintf(buf, size, "%s/%s/action", ref, step);
}

static ecom_product get_product(const char *sku)
{
	ecom_product p;
	ck_assert_int_eq(inventory_get_product(inv, sku, &p), 0);
	return p;
}

static int64_t balance(const char *customer)
{
	ecom_account a;
	ck_assert_int_eq(payment_get_account(pay, customer, &a), 0);
	return a.balance_used;
}

static int64_t order_count(void)
{
	int64_t c[ECOM_ORDER_STATUS_COUNT];
	ck_assert_int_eq(order_count_by_status(ord, c), 0);
	return c[0] + c[1] + c[2] + c[3];
}

/* The whole forward flow of the saga, as the binary will run it. */
static int64_t happy_order(const char *ref)
{
	char k[128];
	ecom_order o = good_order();
	o.ref = ref;
	int64_t id = 0, charge = 0;
	key_of(k, sizeof k, ref, "create");
	ck_assert_int_eq(order_create(ord, k, &o, &id, msg, sizeof msg), ECOM_OK);
	key_of(k, sizeof k, ref, "reserve");
	ck_assert_int_eq(inventory_reserve(inv, k, id, o.items, o.nitems, msg, sizeof msg),
	                 ECOM_OK);
	key_of(k, sizeof k, ref, "charge");
	ck_assert_int_eq(
	        payment_charge(pay, k, id, o.customer, o.total, o.total, &charge, msg, sizeof msg),
	        ECOM_OK);
	key_of(k, sizeof k, ref, "ship");
	ck_assert_int_eq(
	        shipping_schedule(shp, k, id, o.shipping, o.address, NULL, msg, sizeof msg),
	        ECOM_OK);
	ck_assert_int_eq(inventory_ship(inv, k, id, msg, sizeof msg), ECOM_OK);
	key_of(k, sizeof k, ref, "notify");
	ck_assert_int_eq(notification_send(ntf, k, id, ECOM_CHANNEL_EMAIL,
	                                   ECOM_MESSAGE_CONFIRMATION, NULL, msg, sizeof msg),
	                 ECOM_OK);
	key_of(k, sizeof k, ref, "confirm");
	ck_assert_int_eq(order_confirm(ord, k, id, msg, sizeof msg), ECOM_OK);
	return id;
}

/* The flow of an order refused by payment, rolled back. */
static int64_t refused_order(const char *ref)
{
	char k[128];
	ecom_order o = good_order();
	o.ref = ref;
	o.customer = "C-LOW";
	int64_t id = 0;
	key_of(k, sizeof k, ref, "create");
	ck_assert_int_eq(order_create(ord, k, &o, &id, msg, sizeof msg), ECOM_OK);
	key_of(k, sizeof k, ref, "reserve");
	ck_assert_int_eq(inventory_reserve(inv, k, id, o.items, o.nitems, msg, sizeof msg),
	                 ECOM_OK);
	key_of(k, sizeof k, ref, "charge");
	ck_assert_int_eq(
	        payment_charge(pay, k, id, o.customer, o.total, o.total, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "credit limit"));
	/* The engine compensates in reverse order; the charge is uncertain to
	 * it only after a crash, but an empty refund is harmless either way. */
	ck_assert_int_eq(payment_refund(pay, k, msg, sizeof msg), ECOM_OK);
	key_of(k, sizeof k, ref, "reserve");
	ck_assert_int_eq(inventory_release(inv, k, msg, sizeof msg), ECOM_OK);
	key_of(k, sizeof k, ref, "create");
	ck_assert_int_eq(order_cancel(ord, k, 1, "payment refused", msg, sizeof msg), ECOM_OK);
	return id;
}

/* ---- validation, one rule at a time ---- */

static void expect_invalid(const ecom_order *o, int known, const char *fragment)
{
	int rc = ecom_order_validate(o, known, msg, sizeof msg);
	ck_assert_msg(rc == ECOM_REFUSED, "expected a refusal containing \"%s\", got %d", fragment,
	              rc);
	ck_assert_msg(strstr(msg, fragment) != NULL, "message \"%s\" lacks \"%s\"", msg, fragment);
}

START_TEST(valid_order_passes)
{
	ecom_order o = good_order();
	ck_assert_int_eq(ecom_order_validate(&o, 1, msg, sizeof msg), 0);
	ck_assert_str_eq(msg, "");
	o.currency = NULL; /* USD by default */
	ck_assert_int_eq(ecom_order_validate(&o, 1, msg, sizeof msg), 0);
	ck_assert_int_eq(ecom_order_validate(NULL, 1, msg, sizeof msg), SAGA_EINVAL);
}
END_TEST

START_TEST(refuses_no_customer)
{
	ecom_order o = good_order();
	o.customer = NULL;
	expect_invalid(&o, 0, "no customer");
	o.customer = "";
	expect_invalid(&o, 0, "no customer");
	o.customer = "C404";
	expect_invalid(&o, 0, "unknown customer \"C404\"");
}
END_TEST

START_TEST(refuses_no_items)
{
	ecom_order o = good_order();
	o.nitems = 0;
	expect_invalid(&o, 1, "no items");
	o.items = NULL;
	o.nitems = 2;
	expect_invalid(&o, 1, "no items");

	ecom_item many[51];
	for (int i = 0; i < 51; i++)
		many[i] = (ecom_item){ "SKU-HOT", 1, 100 };
	o.items = many;
	o.nitems = 51;
	o.total = 5100;
	expect_invalid(&o, 1, "51 items (at most 50)");
}
END_TEST

START_TEST(refuses_bad_quantities)
{
	ecom_order o = good_order();
	ecom_item items[] = { { "SKU-A", -1, 1000 } };
	o.items = items;
	o.nitems = 1;
	o.total = -1000;
	expect_invalid(&o, 1, "quantity -1 is not positive");
	items[0].quantity = 0;
	o.total = 0;
	expect_invalid(&o, 1, "quantity 0 is not positive");
	/* The seed system's bulk order. */
	items[0].quantity = 1000;
	o.total = 1000000;
	expect_invalid(&o, 1, "quantity 1000 is more than 100");
	/* 100 is the cap for the whole order, not per line. */
	ecom_item split[] = { { "SKU-A", 60, 1000 }, { "SKU-B", 41, 2500 } };
	o.items = split;
	o.nitems = 2;
	o.total = 60 * 1000 + 41 * 2500;
	expect_invalid(&o, 1, "total quantity 101 is more than 100");
	split[1].quantity = 40;
	o.total = 60 * 1000 + 40 * 2500;
	ck_assert_int_eq(ecom_order_validate(&o, 1, msg, sizeof msg), 0);
}
END_TEST

START_TEST(refuses_zero_and_huge_amounts)
{
	ecom_order o = good_order();
	ecom_item items[] = { { "SKU-A", 1, 0 } };
	o.items = items;
	o.nitems = 1;
	o.total = 0;
	expect_invalid(&o, 1, "unit price 0 is not positive");
	items[0].unit_price = -5;
	expect_invalid(&o, 1, "unit price -5 is not positive");
	items[0].unit_price = 1000000000000LL; /* ten billion dollars */
	o.total = 1000000000000LL;
	expect_invalid(&o, 1, "unit price 1000000000000 is more than");
	/* Items at the cap, a total past it. */
	ecom_item big[] = { { "SKU-A", 2, ECOM_MAX_AMOUNT } };
	o.items = big;
	o.total = 2 * ECOM_MAX_AMOUNT;
	expect_invalid(&o, 1, "is more than");
	/* Zero total with real items. */
	o = good_order();
	o.total = 0;
	expect_invalid(&o, 1, "total 0 is not positive");
	o.total = 4499;
	expect_invalid(&o, 1, "total 4499 does not equal the sum of the items 4500");
}
END_TEST

START_TEST(refuses_empty_address_and_unknown_methods)
{
	ecom_order o = good_order();
	o.address = "";
	expect_invalid(&o, 1, "no shipping address");
	o.address = "  \t ";
	expect_invalid(&o, 1, "no shipping address");
	o.address = NULL;
	expect_invalid(&o, 1, "no shipping address");

	o = good_order();
	o.payment = ecom_payment_method_parse("BITCOIN");
	ck_assert_int_eq(o.payment, -1);
	expect_invalid(&o, 1, "unknown payment method");
	o.payment = ECOM_PAY_COUNT;
	expect_invalid(&o, 1, "unknown payment method");

	o = good_order();
	o.shipping = ecom_shipping_method_parse("TELEPORT");
	expect_invalid(&o, 1, "unknown shipping method");

	o = good_order();
	o.currency = "usd";
	expect_invalid(&o, 1, "currency");
}
END_TEST

START_TEST(refuses_unknown_product)
{
	ecom_item items[] = { { "SKU-A", 1, 1000 }, { "NOPE-1", 1, 100 } };
	ck_assert_int_eq(inventory_check_items(inv, items, 2, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "item 2: unknown product \"NOPE-1\""));
	items[1] = (ecom_item){ "SKU-B", 1, 99 };
	ck_assert_int_eq(inventory_check_items(inv, items, 2, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "catalogue price 2500"));
	items[1].unit_price = 2500;
	ck_assert_int_eq(inventory_check_items(inv, items, 2, msg, sizeof msg), 0);
}
END_TEST

START_TEST(names_round_trip)
{
	for (int i = 0; i < ECOM_PAY_COUNT; i++)
		ck_assert_int_eq(ecom_payment_method_parse(ecom_payment_method_name(i)), i);
	for (int i = 0; i < ECOM_SHIP_COUNT; i++)
		ck_assert_int_eq(ecom_shipping_method_parse(ecom_shipping_method_name(i)), i);
	for (int i = 0; i < ECOM_SERVICE_COUNT; i++)
		ck_assert_int_eq(ecom_service_parse(ecom_service_name(i)), i);
	ck_assert_int_eq(ecom_shipping_days(ECOM_SHIP_STANDARD), 5);
	ck_assert_int_eq(ecom_shipping_days(ECOM_SHIP_EXPRESS), 3);
	ck_assert_int_eq(ecom_shipping_days(ECOM_SHIP_OVERNIGHT), 1);
	ck_assert_int_eq(ecom_shipping_days(ECOM_SHIP_TWO_DAY), 2);
	ck_assert_int_eq(ecom_shipping_days(ECOM_SHIP_INTERNATIONAL), 10);
	ck_assert_int_eq(ecom_shipping_days(99), -1);
	ck_assert_ptr_null(ecom_payment_method_name(-1));
	ck_assert_int_eq(ecom_payment_method_parse(NULL), -1);
}
END_TEST

START_TEST(order_json_round_trip)
{
	ecom_order o = good_order();
	o.ref = "ord-7";
	cJSON *j = ecom_order_to_json(&o);
	ck_assert_ptr_nonnull(j);
	ecom_order back;
	ck_assert_int_eq(ecom_order_from_json(&back, j, msg, sizeof msg), 0);
	ck_assert_str_eq(back.ref, "ord-7");
	ck_assert_str_eq(back.customer, "C1");
	ck_assert_uint_eq(back.nitems, 2);
	ck_assert_str_eq(back.items[1].sku, "SKU-B");
	ck_assert_int_eq(back.items[0].quantity, 2);
	ck_assert_int_eq(back.items[1].unit_price, 2500);
	ck_assert_int_eq(back.total, 4500);
	ck_assert_int_eq(back.payment, ECOM_PAY_CREDIT_CARD);
	ck_assert_int_eq(back.shipping, ECOM_SHIP_EXPRESS);
	ck_assert_int_eq(ecom_order_validate(&back, 1, msg, sizeof msg), 0);
	ecom_order_clear(&back);
	cJSON_Delete(j);

	static const char *const bad[] = {
		"[]",
		"{\"items\": 3}",
		("{\"items\": [{\"sku\": \"A\", \"quantity\": 1.5, \"unit_price\": 1}]}"),
		"{\"customer\": 7}",
		"{\"total\": \"lots\"}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		j = cJSON_Parse(bad[i]);
		ck_assert_ptr_nonnull(j);
		ck_assert_int_eq(ecom_order_from_json(&back, j, msg, sizeof msg), ECOM_REFUSED);
		ck_assert_str_ne(msg, "");
		ecom_order_clear(&back);
		cJSON_Delete(j);
	}
	/* Unknown method names survive parsing and are refused by validation. */
	j = cJSON_Parse("{\"customer\": \"C1\", \"items\": [{\"sku\": \"SKU-A\", \"quantity\": 1,"
	                " \"unit_price\": 1000}], \"total\": 1000, \"address\": \"x\","
	                " \"payment\": \"BITCOIN\", \"shipping\": \"STANDARD\"}");
	ck_assert_int_eq(ecom_order_from_json(&back, j, msg, sizeof msg), 0);
	ck_assert_int_eq(back.payment, -1);
	expect_invalid(&back, 1, "unknown payment method");
	ecom_order_clear(&back);
	cJSON_Delete(j);
}
END_TEST

/* ---- the services ---- */

START_TEST(files_are_private_and_in_wal_mode)
{
	static const char *const names[] = { "order", "inventory", "payment", "shipping",
		                             "notification" };
	for (int i = 0; i < 5; i++) {
		static const char *const suffixes[] = { "", "-wal", "-shm" };
		for (int k = 0; k < 3; k++) {
			char path[PATH_MAX + 64];
			struct stat sb;
			snprintf(path, sizeof path, "%s/%s.db%s", dir, names[i], suffixes[k]);
			ck_assert_msg(stat(path, &sb) == 0, "%s missing", path);
			ck_assert_msg((sb.st_mode & 0777) == 0600, "%s has mode %o", path,
			              (unsigned)(sb.st_mode & 0777));
		}
		char path[PATH_MAX + 64];
		snprintf(path, sizeof path, "%s/%s.db", dir, names[i]);
		sqlite3 *db;
		ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
		sqlite3_stmt *st;
		ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), 0);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
		sqlite3_finalize(st);
		sqlite3_close(db);
	}
	/* Reopening keeps the data. */
	close_all();
	open_all(dir);
	ck_assert_int_eq(get_product("SKU-A").stock, 10);
	ck_assert_int_eq(order_customer_exists(ord, "C1"), 1);
	ck_assert_int_eq(order_customer_exists(ord, "C404"), 0);
}
END_TEST

/* Nothing but SQLite opens or closes a service's database file: POSIX drops
 * every fcntl lock a process holds on a file when any descriptor of it is
 * closed, so a raw open/close (of the kind that once gave new files their
 * mode) would take away the locks of a handle already open in the process.
 * Then another process's connection, at its close, finds itself alone,
 * checkpoints and deletes the -wal under the open handle. */
START_TEST(opening_a_service_keeps_other_handles_locks)
{
	ck_assert_int_eq(
	        payment_charge(pay, "l/charge/action", 1, "C1", 4500, 4500, NULL, msg, sizeof msg),
	        0);
	for (int round = 0; round < 2; round++) {
		payment_svc *again = NULL;
		ck_assert_int_eq(payment_open(&again, dir, msg, sizeof msg), 0);
		payment_close(again);
		char wal[PATH_MAX + 32], db[PATH_MAX + 32];
		snprintf(db, sizeof db, "%s/payment.db", dir);
		snprintf(wal, sizeof wal, "%s/payment.db-wal", dir);
		/* A fresh process (exec'd: a forked child would inherit this one's
		 * SQLite lock bookkeeping). */
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			execl("/proc/self/exe", "test-ecommerce-services", "--reader", db, wal,
			      (char *)NULL);
			_exit(3);
		}
		int status = 0;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) < 2, "the reader failed");
		ck_assert_msg(WEXITSTATUS(status) == 0,
		              "round %d: another process deleted the -wal "
		              "of an open service: the handle had lost its locks",
		              round);
		/* The handle still works and its data is there. */
		ck_assert_int_eq(balance("C1"), 4500);
	}
}
END_TEST

START_TEST(bad_arguments)
{
	order_svc *o = NULL;
	ck_assert_int_eq(order_open(&o, NULL, msg, sizeof msg), SAGA_EINVAL);
	ck_assert_ptr_null(o);
	ck_assert_int_eq(order_open(NULL, dir, msg, sizeof msg), SAGA_EINVAL);
	char missing[PATH_MAX + 32];
	snprintf(missing, sizeof missing, "%s/no/such/dir", dir);
	inventory_svc *other = (inventory_svc *)1;
	ck_assert_int_lt(inventory_open(&other, missing, msg, sizeof msg), 0);
	ck_assert_ptr_null(other);
	ck_assert_msg(strstr(msg, missing) && strstr(msg, "No such file"), "%s", msg);
	/* A file that cannot be opened is named, with the cause. */
	char bad[PATH_MAX + 32], bad_db[PATH_MAX + 64];
	snprintf(bad, sizeof bad, "%s/bad", dir);
	ck_assert_int_eq(mkdir(bad, 0700), 0);
	snprintf(bad_db, sizeof bad_db, "%s/shipping.db", bad);
	FILE *fp = fopen(bad_db, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("this is not a database, but it is long enough to have a header..........\n", fp);
	fclose(fp);
	shipping_svc *sh = (shipping_svc *)1;
	ck_assert_int_eq(shipping_open(&sh, bad, msg, sizeof msg), SAGA_ECORRUPT);
	ck_assert_ptr_null(sh);
	ck_assert_msg(strstr(msg, bad_db) && strstr(msg, "not a database"), "%s", msg);
	snprintf(bad_db, sizeof bad_db, "%s/payment.db", bad);
	ck_assert_int_eq(mkdir(bad_db, 0700), 0); /* a directory in the file's place */
	payment_svc *pa = (payment_svc *)1;
	ck_assert_int_lt(payment_open(&pa, bad, msg, sizeof msg), 0);
	ck_assert_ptr_null(pa);
	ck_assert_msg(strstr(msg, bad_db) && strstr(msg, "unable to open"), "%s", msg);
	ecom_order g = good_order();
	ck_assert_int_eq(order_create(ord, NULL, &g, NULL, msg, sizeof msg), SAGA_EINVAL);
	ck_assert_int_eq(order_create(ord, "", &g, NULL, msg, sizeof msg), SAGA_EINVAL);
	ck_assert_int_eq(order_create(NULL, "k", &g, NULL, msg, sizeof msg), SAGA_EINVAL);
	ck_assert_int_eq(payment_charge(pay, "k", 1, NULL, 1, 1, NULL, msg, sizeof msg),
	                 SAGA_EINVAL);
	ck_assert_int_eq(inventory_release(inv, NULL, msg, sizeof msg), SAGA_EINVAL);
	/* Closing NULL is fine. */
	order_close(NULL);
	inventory_close(NULL);
	payment_close(NULL);
	shipping_close(NULL);
	notification_close(NULL);
	ecom_faults_free(NULL);
}
END_TEST

START_TEST(seeding_refuses_duplicates)
{
	ecom_product p = product("SKU-A", 1, 1);
	ck_assert_int_eq(inventory_add_products(inv, &p, 1, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "exists"));
	ecom_customer c = { "C1", "Again", 1 };
	ck_assert_int_eq(order_add_customers(ord, &c, 1, msg, sizeof msg), ECOM_REFUSED);
	ecom_account a = { "C1", 1, 0 };
	ck_assert_int_eq(payment_open_accounts(pay, &a, 1, msg, sizeof msg), ECOM_REFUSED);
	/* All or nothing: a good product before a bad one is not added. */
	ecom_product two[] = { product("SKU-NEW", 100, 1), product("SKU-BAD", 0, 1) };
	ck_assert_int_eq(inventory_add_products(inv, two, 2, msg, sizeof msg), ECOM_REFUSED);
	ecom_product out;
	ck_assert_int_eq(inventory_get_product(inv, "SKU-NEW", &out), SAGA_ENOTFOUND);
}
END_TEST

START_TEST(create_is_idempotent)
{
	ecom_order o = good_order();
	o.ref = "ord-1";
	int64_t id1 = 0, id2 = 0;
	ck_assert_int_eq(order_create(ord, "ord-1/create/action", &o, &id1, msg, sizeof msg), 0);
	ck_assert_int_eq(order_create(ord, "ord-1/create/action", &o, &id2, msg, sizeof msg), 0);
	ck_assert_int_gt(id1, 0);
	ck_assert_int_eq(id1, id2);
	ck_assert_int_eq(order_count(), 1);
	ecom_order_info info;
	ck_assert_int_eq(order_get(ord, id1, &info), 0);
	ck_assert_int_eq(info.status, ECOM_ORDER_PENDING);
	ck_assert_str_eq(info.ref, "ord-1");
	ck_assert_str_eq(info.customer, "C1");
	ck_assert_int_eq(info.total, 4500);
	ck_assert_uint_eq(info.nitems, 2);
	ck_assert_int_eq(info.quantity, 3);
	ck_assert_int_eq(info.payment, ECOM_PAY_CREDIT_CARD);
	ck_assert_int_eq(info.shipping, ECOM_SHIP_EXPRESS);
	int64_t found;
	ck_assert_int_eq(order_find_by_ref(ord, "ord-1", &found), 0);
	ck_assert_int_eq(found, id1);
	ck_assert_int_eq(order_find_by_key(ord, "ord-1/create/action", &found), 0);
	ck_assert_int_eq(order_find_by_ref(ord, "ord-2", &found), SAGA_ENOTFOUND);
	ck_assert_int_eq(order_get(ord, 999, &info), SAGA_ENOTFOUND);
}
END_TEST

START_TEST(create_refuses_invalid_and_writes_nothing)
{
	ecom_order o = good_order();
	o.customer = "C404";
	ck_assert_int_eq(order_create(ord, "bad/create/action", &o, NULL, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "unknown customer"));
	o = good_order();
	o.total = 1;
	ck_assert_int_eq(order_create(ord, "bad2/create/action", &o, NULL, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(order_count(), 0);
	/* The refusal left no guard record: a compensation finds nothing to do. */
	ck_assert_int_eq(order_cancel(ord, "bad/create/action", 1, NULL, msg, sizeof msg), 0);
	ck_assert_int_eq(order_count(), 0);
}
END_TEST

START_TEST(cancel_and_fail_orders)
{
	ecom_order o = good_order();
	int64_t a, b;
	ck_assert_int_eq(order_create(ord, "a/create/action", &o, &a, msg, sizeof msg), 0);
	ck_assert_int_eq(order_create(ord, "b/create/action", &o, &b, msg, sizeof msg), 0);
	ck_assert_int_eq(order_cancel(ord, "a/create/action", 0, "customer asked", msg, sizeof msg),
	                 0);
	ck_assert_int_eq(order_cancel(ord, "b/create/action", 1, "out of stock", msg, sizeof msg),
	                 0);
	ecom_order_info info;
	ck_assert_int_eq(order_get(ord, a, &info), 0);
	ck_assert_int_eq(info.status, ECOM_ORDER_CANCELLED);
	ck_assert_str_eq(info.reason, "customer asked");
	ck_assert_int_eq(order_get(ord, b, &info), 0);
	ck_assert_int_eq(info.status, ECOM_ORDER_FAILED);
	ck_assert_str_eq(info.reason, "out of stock");
	/* A retried compensation changes nothing, even with another reason. */
	ck_assert_int_eq(order_cancel(ord, "b/create/action", 0, "again", msg, sizeof msg), 0);
	ck_assert_int_eq(order_get(ord, b, &info), 0);
	ck_assert_int_eq(info.status, ECOM_ORDER_FAILED);
	/* A cancelled order cannot be confirmed. */
	ck_assert_int_eq(order_confirm(ord, "a/confirm/action", a, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "CANCELLED"));
	ck_assert_int_eq(order_confirm(ord, "x/confirm/action", 999, msg, sizeof msg),
	                 ECOM_REFUSED);
}
END_TEST

START_TEST(confirm_is_idempotent)
{
	ecom_order o = good_order();
	int64_t id;
	ck_assert_int_eq(order_create(ord, "c/create/action", &o, &id, msg, sizeof msg), 0);
	ck_assert_int_eq(order_confirm(ord, "c/confirm/action", id, msg, sizeof msg), 0);
	ck_assert_int_eq(order_confirm(ord, "c/confirm/action", id, msg, sizeof msg), 0);
	/* Another key for the same order answers OK too: the outcome holds. */
	ck_assert_int_eq(order_confirm(ord, "c2/confirm/action", id, msg, sizeof msg), 0);
	ecom_order_info info;
	ck_assert_int_eq(order_get(ord, id, &info), 0);
	ck_assert_int_eq(info.status, ECOM_ORDER_CONFIRMED);
	/* A confirmed order is not cancelled by a late compensation. */
	ck_assert_int_eq(order_cancel(ord, "c/create/action", 0, NULL, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(order_get(ord, id, &info), 0);
	ck_assert_int_eq(info.status, ECOM_ORDER_CONFIRMED);
}
END_TEST

START_TEST(empty_compensations_and_anti_hanging)
{
	ecom_order o = good_order();
	/* Each compensation arrives first: it succeeds with nothing to undo... */
	ck_assert_int_eq(order_cancel(ord, "h/create/action", 1, NULL, msg, sizeof msg), 0);
	ck_assert_int_eq(inventory_release(inv, "h/reserve/action", msg, sizeof msg), 0);
	ck_assert_int_eq(payment_refund(pay, "h/charge/action", msg, sizeof msg), 0);
	ck_assert_int_eq(shipping_cancel(shp, "h/ship/action", msg, sizeof msg), 0);
	/* ... and is idempotent ... */
	ck_assert_int_eq(inventory_release(inv, "h/reserve/action", msg, sizeof msg), 0);
	ck_assert_int_eq(payment_refund(pay, "h/charge/action", msg, sizeof msg), 0);
	/* ... then the delayed actions are refused and leave no trace. */
	ck_assert_int_eq(order_create(ord, "h/create/action", &o, NULL, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "refused"));
	ck_assert_int_eq(
	        inventory_reserve(inv, "h/reserve/action", 1, good_items, 2, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_int_eq(
	        payment_charge(pay, "h/charge/action", 1, "C1", 4500, 4500, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_int_eq(shipping_schedule(shp, "h/ship/action", 1, ECOM_SHIP_STANDARD, "x", NULL,
	                                   msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(order_count(), 0);
	ck_assert_int_eq(get_product("SKU-A").reserved, 0);
	ck_assert_int_eq(balance("C1"), 0);
	ecom_shipment sh;
	ck_assert_int_eq(shipping_get(shp, 1, &sh), SAGA_ENOTFOUND);
	ecom_charge c;
	ck_assert_int_eq(payment_get_charge(pay, "h/charge/action", &c), SAGA_ENOTFOUND);
}
END_TEST

START_TEST(reserve_release_exactly)
{
	ck_assert_int_eq(
	        inventory_reserve(inv, "r/reserve/action", 1, good_items, 2, msg, sizeof msg), 0);
	ck_assert_int_eq(
	        inventory_reserve(inv, "r/reserve/action", 1, good_items, 2, msg, sizeof msg), 0);
	ecom_product a = get_product("SKU-A"), b = get_product("SKU-B");
	ck_assert_int_eq(a.reserved, 2);
	ck_assert_int_eq(b.reserved, 1);
	ck_assert_int_eq(a.stock, 10);
	ck_assert_int_eq(inventory_release(inv, "r/reserve/action", msg, sizeof msg), 0);
	ck_assert_int_eq(inventory_release(inv, "r/reserve/action", msg, sizeof msg), 0);
	ck_assert_int_eq(get_product("SKU-A").reserved, 0);
	ck_assert_int_eq(get_product("SKU-B").reserved, 0);
	/* Released: the same action again is refused. */
	ck_assert_int_eq(
	        inventory_reserve(inv, "r/reserve/action", 1, good_items, 2, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_int_eq(get_product("SKU-A").reserved, 0);
}
END_TEST

START_TEST(reservation_is_all_or_none)
{
	ecom_item some_out[] = { { "SKU-A", 2, 1000 }, { "SKU-OUT", 1, 700 } };
	ck_assert_int_eq(inventory_reserve(inv, "n1", 1, some_out, 2, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "out of stock: SKU-OUT: 1 wanted, 0 available"));
	ck_assert_int_eq(get_product("SKU-A").reserved, 0);

	ecom_item unknown[] = { { "SKU-A", 2, 1000 }, { "SKU-GHOST", 1, 1 } };
	ck_assert_int_eq(inventory_reserve(inv, "n2", 1, unknown, 2, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "unknown product \"SKU-GHOST\""));
	ck_assert_int_eq(get_product("SKU-A").reserved, 0);

	/* Two lines of one product count together: 1 + 2 > 2 left. */
	ecom_item twice[] = { { "SKU-LOW", 1, 500 }, { "SKU-LOW", 2, 500 } };
	ck_assert_int_eq(inventory_reserve(inv, "n3", 1, twice, 2, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_int_eq(get_product("SKU-LOW").reserved, 0);

	ecom_item exact[] = { { "SKU-LOW", 1, 500 }, { "SKU-LOW", 1, 500 } };
	ck_assert_int_eq(inventory_reserve(inv, "n4", 2, exact, 2, msg, sizeof msg), 0);
	ck_assert_int_eq(get_product("SKU-LOW").reserved, 2);
	ecom_item one[] = { { "SKU-LOW", 1, 500 } };
	ck_assert_int_eq(inventory_reserve(inv, "n5", 3, one, 1, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_int_eq(inventory_release(inv, "n4", msg, sizeof msg), 0);
	ck_assert_int_eq(get_product("SKU-LOW").reserved, 0);

	ecom_item neg[] = { { "SKU-A", -3, 1000 } };
	ck_assert_int_eq(inventory_reserve(inv, "n6", 4, neg, 1, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_int_eq(inventory_reserve(inv, "n7", 4, neg, 0, msg, sizeof msg), ECOM_REFUSED);
	ck_assert_int_eq(get_product("SKU-A").reserved, 0);
}
END_TEST

START_TEST(ship_moves_reserved_out)
{
	ck_assert_int_eq(
	        inventory_reserve(inv, "s/reserve/action", 7, good_items, 2, msg, sizeof msg), 0);
	ck_assert_int_eq(inventory_ship(inv, "s/ship/action", 7, msg, sizeof msg), 0);
	ck_assert_int_eq(inventory_ship(inv, "s/ship/action", 7, msg, sizeof msg), 0);
	ecom_product a = get_product("SKU-A");
	ck_assert_int_eq(a.stock, 8);
	ck_assert_int_eq(a.reserved, 0);
	ck_assert_int_eq(a.shipped, 2);
	ck_assert_int_eq(a.initial, a.stock + a.shipped);
	/* Another key for the same order: already shipped, nothing moves. */
	ck_assert_int_eq(inventory_ship(inv, "s2/ship/action", 7, msg, sizeof msg), 0);
	ck_assert_int_eq(get_product("SKU-A").shipped, 2);
	/* Shipped goods are not released. */
	ck_assert_int_eq(inventory_release(inv, "s/reserve/action", msg, sizeof msg), ECOM_REFUSED);
	ck_assert_int_eq(get_product("SKU-A").shipped, 2);
	/* Nothing reserved for that order. */
	ck_assert_int_eq(inventory_ship(inv, "t/ship/action", 8, msg, sizeof msg), ECOM_REFUSED);
}
END_TEST

START_TEST(charge_once_within_credit)
{
	int64_t id1, id2;
	ck_assert_int_eq(
	        payment_charge(pay, "p/charge/action", 1, "C1", 4500, 4500, &id1, msg, sizeof msg),
	        0);
	ck_assert_int_eq(
	        payment_charge(pay, "p/charge/action", 1, "C1", 4500, 4500, &id2, msg, sizeof msg),
	        0);
	ck_assert_int_eq(id1, id2);
	ck_assert_int_eq(balance("C1"), 4500);
	/* Another key for an order already charged. */
	ck_assert_int_eq(
	        payment_charge(pay, "q/charge/action", 1, "C1", 4500, 4500, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "already charged"));
	/* The amount is checked against the order. */
	ck_assert_int_eq(
	        payment_charge(pay, "r/charge/action", 2, "C1", 4000, 4500, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "does not match the order total"));
	ck_assert_int_eq(
	        payment_charge(pay, "r/charge/action", 2, "C1", 0, 0, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	/* Credit limit. */
	ck_assert_int_eq(payment_charge(pay, "s/charge/action", 3, "C-LOW", 1001, 1001, NULL, msg,
	                                sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "credit limit exceeded"));
	ck_assert_int_eq(payment_charge(pay, "s/charge/action", 3, "C-LOW", 1000, 1000, NULL, msg,
	                                sizeof msg),
	                 0);
	ck_assert_int_eq(
	        payment_charge(pay, "t/charge/action", 4, "C-LOW", 1, 1, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_int_eq(
	        payment_charge(pay, "u/charge/action", 5, "C404", 1, 1, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "no payment account"));
	ck_assert_int_eq(balance("C-LOW"), 1000);
	/* A refund frees the credit again. */
	ck_assert_int_eq(payment_refund(pay, "s/charge/action", msg, sizeof msg), 0);
	ck_assert_int_eq(balance("C-LOW"), 0);
}
END_TEST

START_TEST(refunds_are_capped)
{
	ck_assert_int_eq(
	        payment_charge(pay, "k/charge/action", 1, "C1", 4500, 4500, NULL, msg, sizeof msg),
	        0);
	ck_assert_int_eq(
	        payment_refund_amount(pay, "rf1", "k/charge/action", 3000, msg, sizeof msg), 0);
	ck_assert_int_eq(
	        payment_refund_amount(pay, "rf1", "k/charge/action", 3000, msg, sizeof msg),
	        0); /* replay: once */
	ck_assert_int_eq(
	        payment_refund_amount(pay, "rf2", "k/charge/action", 2000, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "1500 of the charge of 4500 is left"));
	ck_assert_int_eq(
	        payment_refund_amount(pay, "rf3", "k/charge/action", 1500, msg, sizeof msg), 0);
	ck_assert_int_eq(payment_refund_amount(pay, "rf4", "k/charge/action", 1, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(payment_refund_amount(pay, "rf5", "k/charge/action", -1, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(payment_refund_amount(pay, "rf6", "nope", 1, msg, sizeof msg),
	                 ECOM_REFUSED);
	ecom_charge c;
	ck_assert_int_eq(payment_get_charge(pay, "k/charge/action", &c), 0);
	ck_assert_int_eq(c.amount, 4500);
	ck_assert_int_eq(c.refunded, 4500);
	ck_assert_int_eq(balance("C1"), 0);
	/* The compensation finds nothing left and refunds nothing more. */
	ck_assert_int_eq(payment_refund(pay, "k/charge/action", msg, sizeof msg), 0);
	ck_assert_int_eq(payment_get_charge(pay, "k/charge/action", &c), 0);
	ck_assert_int_eq(c.refunded, 4500);
	ck_assert_int_eq(balance("C1"), 0);
}
END_TEST

START_TEST(shipment_schedule_commit_cancel)
{
	ecom_shipment a, b;
	ck_assert_int_eq(shipping_schedule(shp, "x/ship/action", 1, ECOM_SHIP_EXPRESS, "1 Main St",
	                                   &a, msg, sizeof msg),
	                 0);
	ck_assert_int_eq(shipping_schedule(shp, "x/ship/action", 1, ECOM_SHIP_EXPRESS, "1 Main St",
	                                   &b, msg, sizeof msg),
	                 0);
	ck_assert_int_eq(a.id, b.id);
	ck_assert_str_eq(a.tracking, b.tracking);
	ck_assert_str_eq(a.carrier, "UPS");
	ck_assert_int_eq(strncmp(a.tracking, "1Z", 2), 0);
	ck_assert_int_eq(a.status, ECOM_SHIPMENT_SCHEDULED);
	ck_assert_int_eq(a.method, ECOM_SHIP_EXPRESS);
	/* Delivery: the creation day (UTC) plus 3 days. */
	time_t when = (time_t)(a.created_ms / 1000) + 3 * 86400;
	struct tm tm;
	char expect[16];
	gmtime_r(&when, &tm);
	strftime(expect, sizeof expect, "%Y-%m-%d", &tm);
	ck_assert_str_eq(a.delivery_date, expect);

	/* One shipment per order. */
	ck_assert_int_eq(shipping_schedule(shp, "y/ship/action", 1, ECOM_SHIP_STANDARD, "z", NULL,
	                                   msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(shipping_schedule(shp, "y/ship/action", 2, 77, "z", NULL, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(shipping_schedule(shp, "y/ship/action", 2, ECOM_SHIP_STANDARD, "", NULL,
	                                   msg, sizeof msg),
	                 ECOM_REFUSED);

	/* Committed: cancel refused. */
	ck_assert_int_eq(shipping_commit(shp, "x/commit/action", 1, msg, sizeof msg), 0);
	ck_assert_int_eq(shipping_commit(shp, "x/commit/action", 1, msg, sizeof msg), 0);
	ck_assert_int_eq(shipping_cancel(shp, "x/ship/action", msg, sizeof msg), ECOM_REFUSED);
	ck_assert_ptr_nonnull(strstr(msg, "committed"));
	ck_assert_int_eq(shipping_get(shp, 1, &a), 0);
	ck_assert_int_eq(a.status, ECOM_SHIPMENT_COMMITTED);
	ck_assert_int_eq(shipping_commit(shp, "w/commit/action", 9, msg, sizeof msg), ECOM_REFUSED);

	/* Scheduled: cancel works, once. */
	ck_assert_int_eq(shipping_schedule(shp, "o2/ship/action", 2, ECOM_SHIP_INTERNATIONAL,
	                                   "Paris", &b, msg, sizeof msg),
	                 0);
	ck_assert_str_eq(b.carrier, "DHL");
	ck_assert_int_eq(shipping_cancel(shp, "o2/ship/action", msg, sizeof msg), 0);
	ck_assert_int_eq(shipping_cancel(shp, "o2/ship/action", msg, sizeof msg), 0);
	ck_assert_int_eq(shipping_get(shp, 2, &b), 0);
	ck_assert_int_eq(b.status, ECOM_SHIPMENT_CANCELLED);
}
END_TEST

START_TEST(notification_once_per_key)
{
	int64_t n = -1;
	ck_assert_int_eq(notification_send(ntf, "m1", 5, ECOM_CHANNEL_SMS,
	                                   ECOM_MESSAGE_CONFIRMATION, NULL, msg, sizeof msg),
	                 0);
	ck_assert_int_eq(notification_send(ntf, "m1", 5, ECOM_CHANNEL_SMS,
	                                   ECOM_MESSAGE_CONFIRMATION, NULL, msg, sizeof msg),
	                 0);
	ck_assert_int_eq(notification_count(ntf, 5, ECOM_MESSAGE_CONFIRMATION, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(notification_send(ntf, "m2", 5, ECOM_CHANNEL_PUSH,
	                                   ECOM_MESSAGE_CANCELLATION, "Sorry.", msg, sizeof msg),
	                 0);
	ck_assert_int_eq(notification_count(ntf, 5, ECOM_MESSAGE_CANCELLATION, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(notification_send(ntf, "m3", 5, 9, ECOM_MESSAGE_CANCELLATION, NULL, msg,
	                                   sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_int_eq(
	        notification_send(ntf, "m3", 5, ECOM_CHANNEL_EMAIL, 9, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
}
END_TEST

/* Many threads on one service handle: each reservation is all or none and
 * the counts add up. */
static void *reserve_many(void *arg)
{
	int t = (int)(intptr_t)arg;
	int ok = 0;
	for (int i = 0; i < 20; i++) {
		char key[64], m[ECOM_MSG_MAX];
		ecom_item one[] = { { "SKU-HOT", 1, 100 } };
		snprintf(key, sizeof key, "t%d-%d", t, i);
		int rc = inventory_reserve(inv, key, t * 100 + i, one, 1, m, sizeof m);
		if (rc == ECOM_OK)
			ok++;
		else if (rc != ECOM_REFUSED)
			ok += 1000; /* fails the count below */
	}
	return (void *)(intptr_t)ok;
}

START_TEST(threads_share_a_service)
{
	pthread_t th[4];
	for (int t = 0; t < 4; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, reserve_many, (void *)(intptr_t)t),
		                 0);
	int ok = 0;
	for (int t = 0; t < 4; t++) {
		void *r;
		pthread_join(th[t], &r);
		ok += (int)(intptr_t)r;
	}
	ck_assert_int_eq(ok, 37);
	ecom_product p = get_product("SKU-HOT");
	ck_assert_int_eq(p.reserved, 37);
	ck_assert_int_eq(p.stock, 37);
}
END_TEST

/* ---- failure injection ---- */

START_TEST(fault_specs_parse)
{
	ecom_faults *f;
	ck_assert_int_eq(ecom_faults_new(&f, 1), 0);
	ck_assert_int_eq(
	        ecom_faults_parse(f, "fail", "payment=0.1, inventory=0.05", msg, sizeof msg), 0);
	ck_assert_int_eq(ecom_faults_parse(f, "transient", "*=0.2", msg, sizeof msg), 0);
	ck_assert_int_eq(ecom_faults_parse(f, "latency", "payment=20", msg, sizeof msg), 0);
	ck_assert_int_eq(
	        ecom_faults_parse(f, "timeout", "shipping=1500:0.25,order=10", msg, sizeof msg), 0);
	ck_assert_int_eq(ecom_faults_parse(f, "crash", "payment.charge.after,order.create.before:3",
	                                   msg, sizeof msg),
	                 0);
	ck_assert_int_eq(ecom_faults_parse(f, "fail", "", msg, sizeof msg), 0);

	struct {
		const char *kind, *spec, *fragment;
	} bad[] = {
		{ "fail", "payment=2", "not a rate" },
		{ "fail", "payment=-0.1", "not a rate" },
		{ "fail", "payment=abc", "not a rate" },
		{ "fail", "wallet=0.1", "unknown service \"wallet\"" },
		{ "fail", "payment", "expected SERVICE=VALUE" },
		{ "latency", "payment=-5", "milliseconds" },
		{ "latency", "payment=9999999", "milliseconds" },
		{ "timeout", "payment=10:7", "not a rate" },
		{ "crash", "payment.charge.later", "unknown crash point" },
		{ "crash", "payment.charge.after:0", "count" },
		{ "explode", "payment=1", "unknown fault kind" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_int_eq(ecom_faults_parse(f, bad[i].kind, bad[i].spec, msg, sizeof msg),
		                 SAGA_EINVAL);
		ck_assert_msg(strstr(msg, bad[i].fragment), "%s %s: \"%s\"", bad[i].kind,
		              bad[i].spec, msg);
	}
	ck_assert_int_eq(ecom_faults_set_fail(f, 7, 0.5), SAGA_EINVAL);
	ck_assert_int_eq(ecom_faults_set_fail(f, ECOM_PAYMENT, 1.5), SAGA_EINVAL);
	ck_assert_int_eq(ecom_faults_add_crash(f, "nope", 1), SAGA_EINVAL);
	const char *const *points = ecom_crash_points();
	size_t n = 0;
	while (points[n])
		n++;
	ck_assert_uint_eq(n, 26);
	ecom_faults_free(f);
}
END_TEST

START_TEST(bad_spec_changes_nothing)
{
	ecom_faults *f;
	ck_assert_int_eq(ecom_faults_new(&f, 1), 0);
	payment_set_faults(pay, f);
	/* The first entry is good, the second bad: neither applies. */
	ck_assert_int_eq(ecom_faults_parse(f, "fail", "payment=1,bogus=1", msg, sizeof msg),
	                 SAGA_EINVAL);
	ck_assert_int_eq(
	        payment_charge(pay, "b/charge/action", 1, "C1", 10, 10, NULL, msg, sizeof msg), 0);
	payment_set_faults(pay, NULL);
	ecom_faults_free(f);
}
END_TEST

START_TEST(injected_failures_leave_no_trace)
{
	ecom_faults *f;
	ck_assert_int_eq(ecom_faults_new(&f, 42), 0);
	payment_set_faults(pay, f);
	inventory_set_faults(inv, f);
	ck_assert_int_eq(ecom_faults_set_fail(f, ECOM_PAYMENT, 1.0), 0);
	ck_assert_int_eq(
	        payment_charge(pay, "f/charge/action", 1, "C1", 4500, 4500, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	ck_assert_str_eq(msg, "injected failure: payment.charge");
	ecom_charge c;
	ck_assert_int_eq(payment_get_charge(pay, "f/charge/action", &c), SAGA_ENOTFOUND);
	ck_assert_int_eq(balance("C1"), 0);
	/* Permanent failures are for forward actions: a refund still works. */
	ck_assert_int_eq(payment_refund(pay, "f/charge/action", msg, sizeof msg), 0);

	ck_assert_int_eq(ecom_faults_set_fail(f, -1, 0.0), 0);
	ck_assert_int_eq(ecom_faults_set_transient(f, ECOM_INVENTORY, 1.0), 0);
	ck_assert_int_eq(
	        inventory_reserve(inv, "f/reserve/action", 1, good_items, 2, msg, sizeof msg),
	        ECOM_TRANSIENT);
	ck_assert_str_eq(msg, "injected transient failure: inventory.reserve");
	ck_assert_int_eq(get_product("SKU-A").reserved, 0);
	ck_assert_int_eq(inventory_release(inv, "f/reserve/action", msg, sizeof msg),
	                 ECOM_TRANSIENT);
	/* The transient failure wrote no guard record: the retry proceeds. */
	ck_assert_int_eq(ecom_faults_set_transient(f, ECOM_INVENTORY, 0.0), 0);
	ck_assert_int_eq(
	        inventory_reserve(inv, "f/reserve/action", 1, good_items, 2, msg, sizeof msg), 0);
	ck_assert_int_eq(get_product("SKU-A").reserved, 2);

	ecom_fault_counts counts;
	ck_assert_int_eq(ecom_faults_counts(f, ECOM_PAYMENT, &counts), 0);
	ck_assert_uint_eq(counts.calls, 2);
	ck_assert_uint_eq(counts.failures, 1);
	ck_assert_int_eq(ecom_faults_counts(f, ECOM_INVENTORY, &counts), 0);
	ck_assert_uint_eq(counts.transients, 2);
	payment_set_faults(pay, NULL);
	inventory_set_faults(inv, NULL);
	ecom_faults_free(f);
}
END_TEST

/* A key already recorded answers as recorded, before any injection: after a
 * crash just after a service's COMMIT, the replay with the same key must
 * see the effect (and the engine then compensates it), never an injected
 * failure that would leave a durable effect nobody undoes. */
START_TEST(replays_answer_as_recorded_under_injection)
{
	ecom_order o = good_order();
	o.ref = "r";
	int64_t oid = 0, oid2 = 0, cid = 0, cid2 = 0;
	ck_assert_int_eq(order_create(ord, "r/create/action", &o, &oid, msg, sizeof msg), 0);
	ck_assert_int_eq(
	        inventory_reserve(inv, "r/reserve/action", oid, good_items, 2, msg, sizeof msg), 0);
	ck_assert_int_eq(payment_charge(pay, "r/charge/action", oid, "C1", 4500, 4500, &cid, msg,
	                                sizeof msg),
	                 0);
	ecom_shipment a, b;
	ck_assert_int_eq(shipping_schedule(shp, "r/ship/action", oid, ECOM_SHIP_EXPRESS,
	                                   "1 Main St", &a, msg, sizeof msg),
	                 0);
	ck_assert_int_eq(order_cancel(ord, "c/create/action", 1, "x", msg, sizeof msg), 0);

	ecom_faults *f;
	ck_assert_int_eq(ecom_faults_new(&f, 9), 0);
	order_set_faults(ord, f);
	inventory_set_faults(inv, f);
	payment_set_faults(pay, f);
	shipping_set_faults(shp, f);
	ck_assert_int_eq(ecom_faults_set_fail(f, -1, 1.0), 0);

	/* Replays of recorded actions: the recorded answer. */
	ck_assert_int_eq(order_create(ord, "r/create/action", &o, &oid2, msg, sizeof msg), 0);
	ck_assert_int_eq(oid2, oid);
	ck_assert_int_eq(
	        inventory_reserve(inv, "r/reserve/action", oid, good_items, 2, msg, sizeof msg), 0);
	ck_assert_int_eq(payment_charge(pay, "r/charge/action", oid, "C1", 4500, 4500, &cid2, msg,
	                                sizeof msg),
	                 0);
	ck_assert_int_eq(cid2, cid);
	ck_assert_int_eq(shipping_schedule(shp, "r/ship/action", oid, ECOM_SHIP_EXPRESS,
	                                   "1 Main St", &b, msg, sizeof msg),
	                 0);
	ck_assert_str_eq(a.tracking, b.tracking);
	/* An action after its compensation is still refused as recorded, not
	 * as an injected failure. */
	ck_assert_int_eq(order_create(ord, "c/create/action", &o, NULL, msg, sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_ptr_null(strstr(msg, "injected"));
	/* A new key gets the injected failure. */
	ck_assert_int_eq(payment_charge(pay, "n/charge/action", oid, "C1", 4500, 4500, NULL, msg,
	                                sizeof msg),
	                 ECOM_REFUSED);
	ck_assert_str_eq(msg, "injected failure: payment.charge");

	/* Compensations: a replay of a recorded one is not failed transiently. */
	ck_assert_int_eq(ecom_faults_set_fail(f, -1, 0.0), 0);
	ck_assert_int_eq(payment_refund(pay, "r/charge/action", msg, sizeof msg), 0);
	ck_assert_int_eq(ecom_faults_set_transient(f, -1, 1.0), 0);
	ck_assert_int_eq(payment_refund(pay, "r/charge/action", msg, sizeof msg), 0);
	ck_assert_int_eq(order_cancel(ord, "c/create/action", 1, "x", msg, sizeof msg), 0);
	ck_assert_int_eq(inventory_release(inv, "n/reserve/action", msg, sizeof msg),
	                 ECOM_TRANSIENT);

	/* Counted: only the answers given. */
	ecom_fault_counts counts;
	ck_assert_int_eq(ecom_faults_counts(f, ECOM_PAYMENT, &counts), 0);
	ck_assert_uint_eq(counts.failures, 1);
	ck_assert_uint_eq(counts.transients, 0);
	ck_assert_int_eq(ecom_faults_counts(f, ECOM_ORDER, &counts), 0);
	ck_assert_uint_eq(counts.failures, 0);
	ck_assert_uint_eq(counts.transients, 0);
	order_set_faults(ord, NULL);
	inventory_set_faults(inv, NULL);
	payment_set_faults(pay, NULL);
	shipping_set_faults(shp, NULL);
	ecom_faults_free(f);
}
END_TEST

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

START_TEST(latency_and_timeouts_delay_the_call)
{
	ecom_faults *f;
	ck_assert_int_eq(ecom_faults_new(&f, 3), 0);
	notification_set_faults(ntf, f);
	ck_assert_int_eq(ecom_faults_parse(f, "latency", "notification=30", msg, sizeof msg), 0);
	uint64_t t0 = mono_ms();
	ck_assert_int_eq(notification_send(ntf, "l1", 1, ECOM_CHANNEL_EMAIL,
	                                   ECOM_MESSAGE_CONFIRMATION, NULL, msg, sizeof msg),
	                 0);
	ck_assert_uint_ge(mono_ms() - t0, 30);
	/* A timeout sleeps, then does the work: the result arrives late. */
	ck_assert_int_eq(ecom_faults_parse(f, "latency", "notification=0", msg, sizeof msg), 0);
	ck_assert_int_eq(ecom_faults_parse(f, "timeout", "notification=60", msg, sizeof msg), 0);
	t0 = mono_ms();
	ck_assert_int_eq(notification_send(ntf, "l2", 1, ECOM_CHANNEL_EMAIL,
	                                   ECOM_MESSAGE_CONFIRMATION, NULL, msg, sizeof msg),
	                 0);
	ck_assert_uint_ge(mono_ms() - t0, 60);
	int64_t n;
	ck_assert_int_eq(notification_count(ntf, 1, ECOM_MESSAGE_CONFIRMATION, &n), 0);
	ck_assert_int_eq(n, 2);
	ecom_fault_counts counts;
	ck_assert_int_eq(ecom_faults_counts(f, ECOM_NOTIFICATION, &counts), 0);
	ck_assert_uint_eq(counts.timeouts, 1);
	notification_set_faults(ntf, NULL);
	ecom_faults_free(f);
}
END_TEST

/* The decisions drawn for 200 calls, as a bit string. */
static void draw(uint64_t seed, char out[201])
{
	ecom_faults *f;
	ck_assert_int_eq(ecom_faults_new(&f, seed), 0);
	ck_assert_int_eq(ecom_faults_set_transient(f, -1, 0.5), 0);
	for (int i = 0; i < 200; i++)
		out[i] = ecom_faults_enter(f, ECOM_PAYMENT, "charge", NULL, 0) == ECOM_TRANSIENT
		                 ? '1'
		                 : '0';
	out[200] = '\0';
	ecom_faults_free(f);
}

START_TEST(faults_are_reproducible)
{
	char a[201], b[201], c[201];
	draw(7, a);
	draw(7, b);
	draw(8, c);
	ck_assert_str_eq(a, b);
	ck_assert_str_ne(a, c);
	/* About half. */
	int ones = 0;
	for (int i = 0; i < 200; i++)
		ones += a[i] == '1';
	ck_assert_int_gt(ones, 60);
	ck_assert_int_lt(ones, 140);
	ck_assert_int_eq(ecom_faults_enter(NULL, ECOM_PAYMENT, "charge", NULL, 0), ECOM_OK);
}
END_TEST

START_TEST(faults_from_environment)
{
	ecom_faults *f;
	ck_assert_int_eq(ecom_faults_new(&f, 1), 0);
	payment_set_faults(pay, f);
	setenv("ECOMMERCE_FAIL", "payment=1", 1);
	ck_assert_int_eq(ecom_faults_from_env(f, msg, sizeof msg), 0);
	unsetenv("ECOMMERCE_FAIL");
	ck_assert_int_eq(
	        payment_charge(pay, "e/charge/action", 1, "C1", 10, 10, NULL, msg, sizeof msg),
	        ECOM_REFUSED);
	setenv("ECOMMERCE_CRASH", "payment.charge.sideways", 1);
	ck_assert_int_eq(ecom_faults_from_env(f, msg, sizeof msg), SAGA_EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "ECOMMERCE_CRASH"));
	unsetenv("ECOMMERCE_CRASH");
	payment_set_faults(pay, NULL);
	ecom_faults_free(f);
}
END_TEST

typedef struct crash_log {
	char points[8][64];
	int n;
	int reserved_at_crash;
} crash_log;

static void record_crash(const char *point, void *user)
{
	crash_log *log = user;
	if (log->n < 8)
		snprintf(log->points[log->n++], 64, "%s", point);
}

START_TEST(crash_points_fire_at_their_passage)
{
	ecom_faults *f;
	crash_log log = { .n = 0 };
	ck_assert_int_eq(ecom_faults_new(&f, 1), 0);
	ecom_faults_set_crash_hook(f, record_crash, &log);
	inventory_set_faults(inv, f);
	ck_assert_int_eq(ecom_faults_add_crash(f, "inventory.reserve.before", 1), 0);
	ck_assert_int_eq(ecom_faults_add_crash(f, "inventory.reserve.after", 2), 0);
	ecom_item one[] = { { "SKU-A", 1, 1000 } };
	ck_assert_int_eq(inventory_reserve(inv, "c1", 1, one, 1, msg, sizeof msg), 0);
	ck_assert_int_eq(log.n, 1);
	ck_assert_str_eq(log.points[0], "inventory.reserve.before");
	/* A replay writes nothing and passes no crash point. */
	ck_assert_int_eq(inventory_reserve(inv, "c1", 1, one, 1, msg, sizeof msg), 0);
	ck_assert_int_eq(log.n, 1);
	ck_assert_int_eq(inventory_reserve(inv, "c2", 2, one, 1, msg, sizeof msg), 0);
	ck_assert_int_eq(log.n, 2);
	ck_assert_str_eq(log.points[1], "inventory.reserve.after");
	inventory_set_faults(inv, NULL);
	ecom_faults_free(f);
}
END_TEST

/* Runs one charge in a child process that dies at `point`; returns how the
 * child ended. The child opens its own connection in `d`. */
static void charge_and_die(const char *d, const char *point)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		payment_svc *p = NULL;
		ecom_faults *f = NULL;
		if (payment_open(&p, d, msg, sizeof msg) != 0 || ecom_faults_new(&f, 1) != 0 ||
		    ecom_faults_add_crash(f, point, 1) != 0)
			_exit(3);
		payment_set_faults(p, f);
		char m[ECOM_MSG_MAX];
		payment_charge(p, "die/charge/action", 1, "C1", 4500, 4500, NULL, m, sizeof m);
		_exit(4); /* not reached: the crash point kills the process */
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	              "child ended with status %d", status);
}

START_TEST(crash_before_commit_loses_everything)
{
	char d[PATH_MAX + 16];
	snprintf(d, sizeof d, "%s/crash", dir);
	payment_svc *p;
	ck_assert_int_eq(payment_open(&p, d, msg, sizeof msg), 0);
	ecom_account a = { "C1", 100000, 0 };
	ck_assert_int_eq(payment_open_accounts(p, &a, 1, msg, sizeof msg), 0);
	payment_close(p);

	charge_and_die(d, "payment.charge.before");
	ck_assert_int_eq(payment_open(&p, d, msg, sizeof msg), 0);
	ecom_charge c;
	ck_assert_int_eq(payment_get_charge(p, "die/charge/action", &c), SAGA_ENOTFOUND);
	ck_assert_int_eq(payment_get_account(p, "C1", &a), 0);
	ck_assert_int_eq(a.balance_used, 0);
	payment_close(p);

	charge_and_die(d, "payment.charge.after");
	ck_assert_int_eq(payment_open(&p, d, msg, sizeof msg), 0);
	ck_assert_int_eq(payment_get_charge(p, "die/charge/action", &c), 0);
	ck_assert_int_eq(c.amount, 4500);
	/* Recovery replays the attempt with the same key: charged once. */
	ck_assert_int_eq(
	        payment_charge(p, "die/charge/action", 1, "C1", 4500, 4500, NULL, msg, sizeof msg),
	        0);
	ck_assert_int_eq(payment_get_account(p, "C1", &a), 0);
	ck_assert_int_eq(a.balance_used, 4500);
	payment_close(p);
}
END_TEST

/* ---- seeding ---- */

typedef struct seen {
	int n, out_of_stock, low_stock, low_credit;
	char list[4096];
} seen;

static int see_product(const ecom_product *p, void *user)
{
	seen *s = user;
	s->n++;
	s->out_of_stock += p->stock == 0;
	s->low_stock += p->stock >= 1 && p->stock <= 3;
	ck_assert_int_eq(p->initial, p->stock);
	size_t len = strlen(s->list);
	snprintf(s->list + len, sizeof s->list - len, "%s:%s:%lld:%lld;", p->sku, p->name,
	         (long long)p->price, (long long)p->stock);
	return 0;
}

static int see_customer(const ecom_customer *c, void *user)
{
	seen *s = user;
	s->n++;
	s->low_credit += c->credit_limit <= 5000;
	return 0;
}

static seen seed_and_list(const char *d, uint64_t seed)
{
	seen s;
	memset(&s, 0, sizeof s);
	ck_assert_int_eq(ecom_seed(d, seed, 20, 10, msg, sizeof msg), 0);
	inventory_svc *i;
	order_svc *o;
	ck_assert_int_eq(inventory_open(&i, d, msg, sizeof msg), 0);
	ck_assert_int_eq(order_open(&o, d, msg, sizeof msg), 0);
	ck_assert_int_eq(inventory_list_products(i, see_product, &s), 0);
	seen c;
	memset(&c, 0, sizeof c);
	ck_assert_int_eq(order_list_customers(o, see_customer, &c), 0);
	ck_assert_int_eq(c.n, 10);
	ck_assert_int_ge(c.low_credit, 1);
	inventory_close(i);
	order_close(o);
	return s;
}

START_TEST(seed_is_deterministic)
{
	char d1[PATH_MAX + 8], d2[PATH_MAX + 8], d3[PATH_MAX + 8];
	snprintf(d1, sizeof d1, "%s/s1", dir);
	snprintf(d2, sizeof d2, "%s/s2", dir);
	snprintf(d3, sizeof d3, "%s/s3", dir);
	seen a = seed_and_list(d1, 42), b = seed_and_list(d2, 42), c = seed_and_list(d3, 43);
	ck_assert_int_eq(a.n, 20);
	ck_assert_int_ge(a.out_of_stock, 1);
	ck_assert_int_ge(a.low_stock, 1);
	ck_assert_str_eq(a.list, b.list);
	ck_assert_str_ne(a.list, c.list);
	ck_assert_int_eq(ecom_seed(d1, 42, 20, 10, msg, sizeof msg), SAGA_EEXISTS);
	ck_assert_int_eq(ecom_seed(d1, 42, -1, 10, msg, sizeof msg), SAGA_EINVAL);
	/* A seeded directory checks clean. */
	ck_assert_int_eq(ecommerce_check(d1, NULL, 0, NULL, NULL, msg, sizeof msg), 0);
}
END_TEST

/* ---- the checker ---- */

typedef struct found {
	int n;
	char names[64][48];
	char details[64][256];
} found;

static void on_violation(const char *name, const char *detail, void *user)
{
	found *f = user;
	if (f->n < 64) {
		snprintf(f->names[f->n], sizeof f->names[0], "%s", name);
		snprintf(f->details[f->n], sizeof f->details[0], "%s", detail);
		f->n++;
	}
}

static int has(const found *f, const char *name)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->names[i], name) == 0)
			return 1;
	return 0;
}

static int check(found *f, const ecom_saga_fact *sagas, size_t n)
{
	memset(f, 0, sizeof *f);
	int rc = ecommerce_check(dir, sagas, n, on_violation, f, msg, sizeof msg);
	ck_assert_msg(rc >= 0, "check failed: %d %s", rc, msg);
	ck_assert_int_eq(rc, f->n);
	return rc;
}

static void corrupt(const char *file, const char *sql)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	char *err = NULL;
	int rc = sqlite3_exec(db, "PRAGMA ignore_check_constraints=ON", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
	sqlite3_close(db);
}

static void dump(const found *f)
{
	for (int i = 0; i < f->n; i++)
		fprintf(stderr, "  %s: %s\n", f->names[i], f->details[i]);
}

static const ecom_saga_fact clean_sagas[] = {
	{ "ord-1", SAGA_COMPLETED },
	{ "ord-2", SAGA_COMPENSATED },
	{ "ord-3", SAGA_COMPENSATED }, /* failed before its order was created */
};

START_TEST(check_passes_on_a_clean_state)
{
	happy_order("ord-1");
	refused_order("ord-2");
	found f;
	int n = check(&f, clean_sagas, 3);
	if (n)
		dump(&f);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(check(&f, NULL, 0), 0);
}
END_TEST

START_TEST(check_names_stock_violations)
{
	happy_order("ord-1");
	found f;
	corrupt("inventory.db", "UPDATE products SET stock = stock - 1 WHERE sku = 'SKU-B'");
	ck_assert_int_eq(check(&f, NULL, 0), 1);
	ck_assert_str_eq(f.names[0], "stock-not-conserved");
	ck_assert_ptr_nonnull(strstr(f.details[0], "product SKU-B: initial 5"));

	corrupt("inventory.db", "UPDATE products SET stock = stock + 1 WHERE sku = 'SKU-B';"
	                        "UPDATE products SET reserved = 99 WHERE sku = 'SKU-LOW'");
	check(&f, NULL, 0);
	ck_assert(has(&f, "over-reserved"));
	ck_assert(has(&f, "reserved-mismatch"));
	ck_assert(!has(&f, "stock-not-conserved"));

	corrupt("inventory.db",
	        "UPDATE products SET reserved = 0 WHERE sku = 'SKU-LOW';"
	        "UPDATE products SET stock = -1, initial = -1 WHERE sku = 'SKU-OUT'");
	check(&f, NULL, 0);
	ck_assert(has(&f, "negative-stock"));
}
END_TEST

START_TEST(check_names_payment_violations)
{
	int64_t id = happy_order("ord-1");
	refused_order("ord-2");
	found f;
	corrupt("payment.db", "UPDATE charges SET refunded = amount + 10");
	check(&f, NULL, 0);
	ck_assert(has(&f, "refund-exceeds-charge"));
	ck_assert(has(&f, "confirmed-order-charge"));
	ck_assert(has(&f, "account-balance-mismatch"));
	ck_assert(has(&f, "refund-records-mismatch"));

	corrupt("payment.db", "UPDATE charges SET refunded = 0");
	char sql[256];
	snprintf(sql, sizeof sql,
	         "INSERT INTO charges(key, order_id, customer, amount, refunded,"
	         " created_at, updated_at) VALUES ('dup', %lld, 'C1', 4500, 0, 0, 0)",
	         (long long)id);
	corrupt("payment.db", sql);
	check(&f, NULL, 0);
	ck_assert(has(&f, "order-charged-twice"));
	ck_assert(!has(&f, "refund-exceeds-charge"));
}
END_TEST

START_TEST(check_names_order_violations)
{
	int64_t id = happy_order("ord-1");
	int64_t id2 = refused_order("ord-2");
	found f;
	char sql[256];
	/* A confirmed order whose status is flipped to CANCELLED keeps its
	 * charge, shipment and shipped goods. */
	snprintf(sql, sizeof sql, "UPDATE orders SET status = 'CANCELLED' WHERE id = %lld",
	         (long long)id);
	corrupt("order.db", sql);
	check(&f, NULL, 0);
	ck_assert(has(&f, "ended-order-net-charge"));
	ck_assert(has(&f, "ended-order-active-shipment"));
	ck_assert(has(&f, "ended-order-shipped"));

	snprintf(sql, sizeof sql, "UPDATE orders SET status = 'CONFIRMED' WHERE id = %lld",
	         (long long)id);
	corrupt("order.db", sql);
	corrupt("notification.db", "DELETE FROM messages");
	check(&f, NULL, 0);
	ck_assert_int_eq(f.n, 1);
	ck_assert_str_eq(f.names[0], "confirmed-order-no-confirmation");

	/* The refused order back to PENDING with a live reservation. */
	snprintf(sql, sizeof sql, "UPDATE orders SET status = 'PENDING' WHERE id = %lld",
	         (long long)id2);
	corrupt("order.db", sql);
	check(&f, NULL, 0);
	ck_assert(has(&f, "order-pending"));
}
END_TEST

START_TEST(check_names_saga_violations)
{
	happy_order("ord-1");
	refused_order("ord-2");
	found f;
	/* ord-1 missing, ord-2 still running, ord-9 completed with no order. */
	ecom_saga_fact sagas[] = {
		{ "ord-2", SAGA_RUNNING },
		{ "ord-9", SAGA_COMPLETED },
	};
	check(&f, sagas, 2);
	ck_assert(has(&f, "order-without-saga"));
	ck_assert(has(&f, "saga-unfinished"));
	ck_assert(has(&f, "saga-without-order"));

	ecom_saga_fact wrong[] = {
		{ "ord-1", SAGA_COMPENSATED },
		{ "ord-2", SAGA_COMPLETED },
		{ "ord-2", SAGA_COMPLETED },
	};
	check(&f, wrong, 3);
	ck_assert(has(&f, "saga-order-status-mismatch"));
	ck_assert(has(&f, "order-with-two-sagas"));
	ck_assert(!has(&f, "saga-unfinished"));
}
END_TEST

START_TEST(check_reports_a_missing_directory)
{
	char d[PATH_MAX + 16];
	snprintf(d, sizeof d, "%s/nothing-here", dir);
	ck_assert_int_eq(ecommerce_check(d, NULL, 0, NULL, NULL, msg, sizeof msg), SAGA_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(msg, "order.db"));
	ck_assert_int_eq(ecommerce_check(NULL, NULL, 0, NULL, NULL, msg, sizeof msg), SAGA_EINVAL);
}
END_TEST

static Suite *ecommerce_suite(void)
{
	Suite *s = suite_create("ecommerce-services");
	TCase *tc = tcase_create("validation");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_order_passes);
	tcase_add_test(tc, refuses_no_customer);
	tcase_add_test(tc, refuses_no_items);
	tcase_add_test(tc, refuses_bad_quantities);
	tcase_add_test(tc, refuses_zero_and_huge_amounts);
	tcase_add_test(tc, refuses_empty_address_and_unknown_methods);
	tcase_add_test(tc, refuses_unknown_product);
	tcase_add_test(tc, names_round_trip);
	tcase_add_test(tc, order_json_round_trip);
	suite_add_tcase(s, tc);

	tc = tcase_create("services");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, files_are_private_and_in_wal_mode);
	tcase_add_test(tc, opening_a_service_keeps_other_handles_locks);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, seeding_refuses_duplicates);
	tcase_add_test(tc, create_is_idempotent);
	tcase_add_test(tc, create_refuses_invalid_and_writes_nothing);
	tcase_add_test(tc, cancel_and_fail_orders);
	tcase_add_test(tc, confirm_is_idempotent);
	tcase_add_test(tc, empty_compensations_and_anti_hanging);
	tcase_add_test(tc, reserve_release_exactly);
	tcase_add_test(tc, reservation_is_all_or_none);
	tcase_add_test(tc, ship_moves_reserved_out);
	tcase_add_test(tc, charge_once_within_credit);
	tcase_add_test(tc, refunds_are_capped);
	tcase_add_test(tc, shipment_schedule_commit_cancel);
	tcase_add_test(tc, notification_once_per_key);
	tcase_add_test(tc, threads_share_a_service);
	tcase_add_test(tc, seed_is_deterministic);
	suite_add_tcase(s, tc);

	tc = tcase_create("faults");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fault_specs_parse);
	tcase_add_test(tc, bad_spec_changes_nothing);
	tcase_add_test(tc, injected_failures_leave_no_trace);
	tcase_add_test(tc, replays_answer_as_recorded_under_injection);
	tcase_add_test(tc, latency_and_timeouts_delay_the_call);
	tcase_add_test(tc, faults_are_reproducible);
	tcase_add_test(tc, faults_from_environment);
	tcase_add_test(tc, crash_points_fire_at_their_passage);
	tcase_add_test(tc, crash_before_commit_loses_everything);
	suite_add_tcase(s, tc);

	tc = tcase_create("checker");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, check_passes_on_a_clean_state);
	tcase_add_test(tc, check_names_stock_violations);
	tcase_add_test(tc, check_names_payment_violations);
	tcase_add_test(tc, check_names_order_violations);
	tcase_add_test(tc, check_names_saga_violations);
	tcase_add_test(tc, check_reports_a_missing_directory);
	suite_add_tcase(s, tc);
	return s;
}

/* test-ecommerce-services --reader DB WAL: what `sqlite3 DB 'select ...'`
 * does (open, read, close: the last connection to close checkpoints and
 * deletes the -wal), then exits 0 when WAL is still there, 1 when it was
 * deleted, 2 on an error. */
static int reader(const char *path, const char *wal)
{
	sqlite3 *db = NULL;
	int ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
	         sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) ==
	                 SQLITE_OK;
	ok = sqlite3_close(db) == SQLITE_OK && ok;
	struct stat sb;
	return !ok ? 2 : stat(wal, &sb) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--reader") == 0)
		return reader(argv[2], argv[3]);
	return run_suite(ecommerce_suite());
}
