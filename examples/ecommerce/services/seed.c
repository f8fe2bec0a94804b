/* A deterministic catalogue and customer base for `ecommerce seed`.
 * SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "svc_db.h"

#define SEED_MAX 100000

static const char *const adjectives[] = {
	"Red",   "Blue",   "Green", "Compact", "Deluxe",   "Wireless", "Classic", "Organic",
	"Steel", "Wooden", "Smart", "Vintage", "Portable", "Quiet",    "Heavy",   "Tiny",
};
static const char *const nouns[] = {
	"Kettle",   "Lamp", "Backpack", "Headphones", "Chair",   "Notebook", "Blender", "Mug",
	"Keyboard", "Tent", "Umbrella", "Watch",      "Speaker", "Scarf",    "Drill",   "Camera",
};
static const char *const first_names[] = {
	"Ada",  "Alan", "Barbara", "Claude",   "Donald",  "Edsger", "Frances", "Grace",
	"John", "Ken",  "Leslie",  "Margaret", "Niklaus", "Radia",  "Tony",    "Yukihiro",
};
static const char *const last_names[] = {
	"Lovelace", "Turing",   "Liskov",  "Shannon",  "Knuth", "Dijkstra", "Allen", "Hopper",
	"Backus",   "Thompson", "Lamport", "Hamilton", "Wirth", "Perlman",  "Hoare", "Matsumoto",
};
#define PICK(a, rng) ((a)[ecom_rand_next(rng) % (sizeof(a) / sizeof((a)[0]))])

static int any_product(const ecom_product *p, void *user)
{
	(void)p;
	*(int *)user = 1;
	return 1;
}

static int any_customer(const ecom_customer *c, void *user)
{
	(void)c;
	*(int *)user = 1;
	return 1;
}

/* Stock of product i of n: the last is out of stock and the one before has
 * 1..3 left, so every catalogue of 3 or more has both; the rest are drawn. */
static int64_t stock_of(uint64_t *rng, int i, int n)
{
	double r = ecom_rand_unit(rng);
	if (n >= 3 && i == n - 1)
		return 0;
	if (n >= 3 && i == n - 2)
		return ecom_rand_range(rng, 1, 3);
	if (r < 0.10)
		return 0;
	if (r < 0.25)
		return ecom_rand_range(rng, 1, 3);
	return ecom_rand_range(rng, 10, 200);
}

/* Credit limit of customer i of n, in cents: the last one (of 2 or more) and
 * one in five are low (10..50), the others 1,000..20,000. */
static int64_t credit_of(uint64_t *rng, int i, int n)
{
	double r = ecom_rand_unit(rng);
	if ((n >= 2 && i == n - 1) || r < 0.2)
		return ecom_rand_range(rng, 10, 50) * 100;
	return ecom_rand_range(rng, 10, 200) * 10000;
}

int ecom_seed(const char *dir, uint64_t seed, int nproducts, int ncustomers, char *msg,
              size_t msg_size)
{
	svc_msg(msg, msg_size, "%s", "");
	if (!dir || nproducts < 0 || nproducts > SEED_MAX || ncustomers < 0 ||
	    ncustomers > SEED_MAX) {
		svc_msg(msg, msg_size, "seed: products and customers must be in 0..%d", SEED_MAX);
		return SAGA_EINVAL;
	}
	inventory_svc *inv = NULL;
	order_svc *ord = NULL;
	payment_svc *pay = NULL;
	shipping_svc *shp = NULL;
	notification_svc *ntf = NULL;
	ecom_product *products = calloc((size_t)nproducts + 1, sizeof *products);
	ecom_customer *customers = calloc((size_t)ncustomers + 1, sizeof *customers);
	ecom_account *accounts = calloc((size_t)ncustomers + 1, sizeof *accounts);
	int rc = products && customers && accounts ? 0 : SAGA_ENOMEM;
	if (rc == 0)
		rc = inventory_open(&inv, dir, msg, msg_size);
	if (rc == 0)
		rc = order_open(&ord, dir, msg, msg_size);
	if (rc == 0)
		rc = payment_open(&pay, dir, msg, msg_size);
	/* The other two hold nothing yet; opening creates their files, so the
	 * directory is complete for `check`. */
	if (rc == 0)
		rc = shipping_open(&shp, dir, msg, msg_size);
	if (rc == 0)
		rc = notification_open(&ntf, dir, msg, msg_size);
	if (rc != 0) {
		char why[ECOM_MSG_MAX];
		svc_msg(why, sizeof why, "%s", msg && msg[0] ? msg : saga_strerror(rc));
		svc_msg(msg, msg_size, "seed: cannot open the services in %s: %s", dir, why);
		goto out;
	}

	int found = 0;
	rc = inventory_list_products(inv, any_product, &found);
	if (rc == 0)
		rc = order_list_customers(ord, any_customer, &found);
	if (rc == 0 && found) {
		svc_msg(msg, msg_size, "seed: %s already holds products or customers", dir);
		rc = SAGA_EEXISTS;
	}
	if (rc != 0)
		goto out;

	/* Separate streams, so the catalogue does not change with the number of
	 * customers and the other way round. */
	uint64_t prng = seed ^ 0x70726f6475637473ull; /* "products" */
	uint64_t crng = seed ^ 0x637573746f6d6572ull; /* "customer" */
	for (int i = 0; i < nproducts; i++) {
		ecom_product *p = &products[i];
		snprintf(p->sku, sizeof p->sku, "SKU-%04d", i + 1);
		const char *adj = PICK(adjectives, &prng);
		const char *noun = PICK(nouns, &prng);
		snprintf(p->name, sizeof p->name, "%s %s", adj, noun);
		p->price = ecom_rand_range(&prng, 1, 500) * 100 - 1; /* 0.99 .. 499.99 */
		p->stock = stock_of(&prng, i, nproducts);
	}
	for (int i = 0; i < ncustomers; i++) {
		ecom_customer *c = &customers[i];
		snprintf(c->id, sizeof c->id, "CUST-%04d", i + 1);
		const char *first = PICK(first_names, &crng);
		const char *last = PICK(last_names, &crng);
		snprintf(c->name, sizeof c->name, "%s %s", first, last);
		c->credit_limit = credit_of(&crng, i, ncustomers);
		snprintf(accounts[i].customer, sizeof accounts[i].customer, "%s", c->id);
		accounts[i].credit_limit = c->credit_limit;
	}
	/* The products go in first, all or none in one transaction: of two
	 * seeds racing on one directory (both saw it empty), the second finds
	 * them there and stops before writing anything. */
	rc = inventory_add_products(inv, products, (size_t)nproducts, msg, msg_size);
	if (rc == ECOM_REFUSED) {
		found = 0;
		if (inventory_list_products(inv, any_product, &found) == 0 && found) {
			svc_msg(msg, msg_size, "seed: %s is already seeded (by another seed?)",
			        dir);
			rc = SAGA_EEXISTS;
		}
	}
	if (rc == 0)
		rc = order_add_customers(ord, customers, (size_t)ncustomers, msg, msg_size);
	if (rc == 0)
		rc = payment_open_accounts(pay, accounts, (size_t)ncustomers, msg, msg_size);
out:
	notification_close(ntf);
	shipping_close(shp);
	payment_close(pay);
	order_close(ord);
	inventory_close(inv);
	free(accounts);
	free(customers);
	free(products);
	return rc;
}
