/* Build-only test: the public header is valid C99 under -pedantic.
 * SPDX-License-Identifier: MIT */
#include <saga.h>
#ifdef SAGA_HAVE_POSTGRESQL
#include <saga_pg.h>
#endif

int main(void)
{
	saga_options o = SAGA_OPTIONS_INIT;
	saga_retry_policy r = SAGA_RETRY_POLICY_INIT;
	saga_breaker_config b = SAGA_BREAKER_CONFIG_INIT;
	return (o.version == SAGA_OPTIONS_VERSION && r.max_attempts == 3 &&
	        b.version == SAGA_BREAKER_CONFIG_VERSION)
	               ? 0
	               : 1;
}
