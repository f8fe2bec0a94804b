/* The graph model that graph.c builds and graph_render.c draws: a
 * definition's steps and, optionally, one instance's executed path over it.
 * Every string in it is valid UTF-8 (graph.c replaces bad bytes).
 * SPDX-License-Identifier: MIT */
#ifndef SAGA_GRAPH_INT_H
#define SAGA_GRAPH_INT_H

#include "internal.h"

/* How far a step got in the drawn instance. */
typedef enum graph_status {
	GS_NOT_RUN = 0,
	GS_OK,          /* its action succeeded */
	GS_ACTIVE,      /* the instance is in it now (running, waiting, retrying) */
	GS_FAILED,      /* its action failed for good */
	GS_COMPENSATED, /* its compensation succeeded */
	GS_COMP_FAILED, /* its compensation failed (an operator may have skipped it) */
	GS_STUCK        /* the instance is STUCK on it */
} graph_status;

typedef struct graph_step {
	char *name; /* owned */
	saga_step_kind kind;
	/* policies, when the model has them (saga_graph.has_policies) */
	saga_retry_policy retry;
	saga_retry_policy comp_retry;
	uint64_t timeout_ms;
	uint64_t comp_timeout_ms;
	char *breaker; /* owned; NULL = none */
	/* the executed path */
	uint32_t attempts[2]; /* ATTEMPT_START events, by phase */
	saga_outcome last[2]; /* the last outcome, by phase */
	uint32_t refusals;    /* calls a breaker refused */
	bool rollback_began;  /* the instance turned back here */
	char *error;          /* owned: the detail of its last failed attempt */
	char *operator_notes; /* owned: operator commands on it, one a line */
} graph_step;

typedef struct saga_graph {
	saga_alloc alloc;
	char *name; /* owned */
	int version;
	graph_step *steps; /* owned array */
	size_t nsteps;
	size_t no_return; /* the first step that cannot be compensated; nsteps = none */
	bool has_policies;
	uint64_t deadline_ms;
	uint64_t comp_reserve_ms;
	/* the executed path, when has_path */
	bool has_path;
	int64_t instance;
	saga_state state;      /* after the last event */
	int current;           /* the step of the last attempt; -1 = none */
	int current_phase;     /* its phase */
	char *rollback_detail; /* owned: the state change that began the rollback */
	char *operator_notes;  /* owned: operator commands on no step */
	size_t nevents;
} saga_graph;

/* graph.c: the model */
/* The model of the definition whose snapshot is given; `a` is kept for
 * the model's memory. */
int graph_new(saga_graph **out, const char *snapshot, const saga_alloc *a, char *msg, size_t size);
/* The policies of a definition with the same steps as the snapshot. */
int graph_add_policies(saga_graph *g, const saga_definition *def, char *msg, size_t size);
/* The executed path of one instance: its events, in history order. */
int graph_add_path(saga_graph *g, const saga_event *events, size_t n, char *msg, size_t size);
void graph_free(saga_graph *g);
graph_status graph_step_status(const saga_graph *g, size_t i);
const char *graph_status_name(graph_status s);
/* Whether a compensation edge leaves step i (to step i-1, or to the
 * "compensated" end from step 0). */
bool graph_has_undo_edge(const saga_graph *g, size_t i);
/* Whether the path went along the forward edge into step i (i = nsteps:
 * into "completed"), or along the compensation edge out of step i. */
bool graph_forward_taken(const saga_graph *g, size_t i);
bool graph_undo_taken(const saga_graph *g, size_t i);

/* graph_render.c: the formats. The text is made whole, then written. */
int graph_render(const saga_graph *g, saga_graph_format fmt, saga_write_fn write, void *user,
                 char *msg, size_t size);

#endif
