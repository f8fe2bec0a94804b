/* The participant guard's cases that hold on every database, shared by
 * test-guard.c (SQLite) and test-guard-pg.c (PostgreSQL). The including
 * file defines, for its database, before including this:
 *   guard_call(key, compensation, fence, &verdict)  one call on the test's
 *       connection, in the transaction the test opened (fence 0: unfenced)
 *   action(key), compensation(key), action_at(key, fence),
 *   compensation_at(key, fence)  one call in a committed transaction of its own
 *   state_of(key), fence_of(key)  the stored state and mark (0: no row)
 *   sql(text)  runs a statement on the test's connection
 *   guard_init()  the guard's init on the test's connection
 *   BEGIN_WRITE  the statement that begins a participant's transaction
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_TEST_GUARD_CASES_H
#define SAGA_TEST_GUARD_CASES_H

enum { S_NONE = 0, S_ACTION = 1, S_COMPENSATED = 2, S_EMPTY = 3 };

START_TEST(action_then_replay)
{
	ck_assert_int_eq(action("a"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(state_of("a"), S_ACTION);
	ck_assert_int_eq(action("a"), SAGA_GUARD_DONE);
	ck_assert_int_eq(action("a"), SAGA_GUARD_DONE);
	ck_assert_int_eq(state_of("a"), S_ACTION);
}
END_TEST

START_TEST(action_then_compensation)
{
	ck_assert_int_eq(action("a"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(compensation("a"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(state_of("a"), S_COMPENSATED);
	/* A retried compensation finds it done. */
	ck_assert_int_eq(compensation("a"), SAGA_GUARD_DONE);
	ck_assert_int_eq(state_of("a"), S_COMPENSATED);
	/* A late action is refused and changes nothing. */
	ck_assert_int_eq(action("a"), SAGA_GUARD_REFUSED);
	ck_assert_int_eq(state_of("a"), S_COMPENSATED);
}
END_TEST

START_TEST(empty_compensation_then_hanging_action)
{
	ck_assert_int_eq(compensation("e"), SAGA_GUARD_EMPTY);
	ck_assert_int_eq(state_of("e"), S_EMPTY);
	ck_assert_int_eq(compensation("e"), SAGA_GUARD_DONE);
	ck_assert_int_eq(state_of("e"), S_EMPTY);
	ck_assert_int_eq(action("e"), SAGA_GUARD_REFUSED);
	ck_assert_int_eq(action("e"), SAGA_GUARD_REFUSED);
	ck_assert_int_eq(state_of("e"), S_EMPTY);
}
END_TEST

START_TEST(keys_are_independent)
{
	ck_assert_int_eq(action("x/1/action"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(compensation("x/2/action"), SAGA_GUARD_EMPTY);
	ck_assert_int_eq(action("x/3/action"), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(state_of("x/1/action"), S_ACTION);
	ck_assert_int_eq(state_of("x/2/action"), S_EMPTY);
	ck_assert_int_eq(state_of("x/3/action"), S_ACTION);
}
END_TEST

START_TEST(action_rolls_back_with_the_participant)
{
	saga_guard_verdict v;
	sql("CREATE TABLE effect(n INTEGER)");
	sql("BEGIN");
	ck_assert_int_eq(guard_call("r", false, 0, &v), SAGA_OK);
	ck_assert_int_eq(v, SAGA_GUARD_PROCEED);
	sql("INSERT INTO effect VALUES (1)");
	sql("ROLLBACK");
	ck_assert_int_eq(state_of("r"), S_NONE);
	/* Nothing remembered: the action proceeds again. */
	ck_assert_int_eq(action("r"), SAGA_GUARD_PROCEED);
}
END_TEST

START_TEST(compensation_rolls_back_with_the_participant)
{
	saga_guard_verdict v;
	ck_assert_int_eq(action("r"), SAGA_GUARD_PROCEED);
	sql("BEGIN");
	ck_assert_int_eq(guard_call("r", true, 0, &v), SAGA_OK);
	ck_assert_int_eq(v, SAGA_GUARD_PROCEED);
	sql("ROLLBACK");
	ck_assert_int_eq(state_of("r"), S_ACTION);

	/* An empty compensation rolled back leaves no row either. */
	sql("BEGIN");
	ck_assert_int_eq(guard_call("r2", true, 0, &v), SAGA_OK);
	ck_assert_int_eq(v, SAGA_GUARD_EMPTY);
	sql("ROLLBACK");
	ck_assert_int_eq(state_of("r2"), S_NONE);
	ck_assert_int_eq(action("r2"), SAGA_GUARD_PROCEED);
}
END_TEST

/* A newer owner's action (fence 3) came first; the paused older owner's
 * action (fence 2) and compensation are stale and change nothing. */
START_TEST(lower_fence_is_stale)
{
	ck_assert_int_eq(action_at("f", 3), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(fence_of("f"), 3);
	ck_assert_int_eq(action_at("f", 2), SAGA_GUARD_STALE);
	ck_assert_int_eq(compensation_at("f", 2), SAGA_GUARD_STALE);
	ck_assert_int_eq(state_of("f"), S_ACTION);
	ck_assert_int_eq(fence_of("f"), 3);
	/* The same fence is the same owner retrying: answered as unfenced. */
	ck_assert_int_eq(action_at("f", 3), SAGA_GUARD_DONE);
	/* A later owner compensates; the old ones stay refused. */
	ck_assert_int_eq(compensation_at("f", 5), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(fence_of("f"), 5);
	ck_assert_int_eq(state_of("f"), S_COMPENSATED);
	ck_assert_int_eq(compensation_at("f", 4), SAGA_GUARD_STALE);
	ck_assert_int_eq(action_at("f", 5), SAGA_GUARD_REFUSED);
}
END_TEST

/* Without a newer call in between, an old fence is answered as usual, and a
 * stale compensation first seen does not record an empty compensation. */
START_TEST(fence_marks_are_per_key)
{
	ck_assert_int_eq(action_at("a", 1), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(compensation_at("b", 7), SAGA_GUARD_EMPTY);
	ck_assert_int_eq(compensation_at("a", 1), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(action_at("c", 9), SAGA_GUARD_PROCEED);
	ck_assert_int_eq(compensation_at("c", 8), SAGA_GUARD_STALE);
	ck_assert_int_eq(state_of("c"), S_ACTION);
	ck_assert_int_eq(fence_of("a"), 1);
	ck_assert_int_eq(fence_of("b"), 7);
	ck_assert_int_eq(fence_of("c"), 9);
	/* Unfenced calls ignore and keep the marks. */
	ck_assert_int_eq(action("c"), SAGA_GUARD_DONE);
	ck_assert_int_eq(fence_of("c"), 9);
}
END_TEST

START_TEST(fence_mark_rolls_back_with_the_participant)
{
	saga_guard_verdict v;
	ck_assert_int_eq(action_at("r", 2), SAGA_GUARD_PROCEED);
	sql(BEGIN_WRITE);
	ck_assert_int_eq(guard_call("r", true, 6, &v), SAGA_OK);
	ck_assert_int_eq(v, SAGA_GUARD_PROCEED);
	sql("ROLLBACK");
	ck_assert_int_eq(fence_of("r"), 2);
	ck_assert_int_eq(state_of("r"), S_ACTION);
	/* Fence 3 is not stale: the rolled-back 6 was never seen. */
	ck_assert_int_eq(compensation_at("r", 3), SAGA_GUARD_PROCEED);
}
END_TEST

/* A store made by a guard without fences (no saga_guard_fence table) gains
 * it from the guard's init. */
START_TEST(init_adds_the_fence_table)
{
	sql("DROP TABLE saga_guard_fence");
	ck_assert_int_eq(action("old"), SAGA_GUARD_PROCEED);
	saga_guard_verdict v;
	sql("BEGIN");
	ck_assert_int_eq(guard_call("old", false, 1, &v), SAGA_ESTORE);
	sql("ROLLBACK");
	ck_assert_int_eq(guard_init(), SAGA_OK);
	ck_assert_int_eq(action_at("old", 1), SAGA_GUARD_DONE);
	ck_assert_int_eq(fence_of("old"), 1);
}
END_TEST

/* Adds the cases above to the test cases of the including suite. */
static void add_guard_cases(TCase *transitions, TCase *transactions, TCase *fences)
{
	tcase_add_test(transitions, action_then_replay);
	tcase_add_test(transitions, action_then_compensation);
	tcase_add_test(transitions, empty_compensation_then_hanging_action);
	tcase_add_test(transitions, keys_are_independent);
	tcase_add_test(transactions, action_rolls_back_with_the_participant);
	tcase_add_test(transactions, compensation_rolls_back_with_the_participant);
	tcase_add_test(fences, lower_fence_is_stale);
	tcase_add_test(fences, fence_marks_are_per_key);
	tcase_add_test(fences, fence_mark_rolls_back_with_the_participant);
	tcase_add_test(fences, init_adds_the_fence_table);
}

#endif
