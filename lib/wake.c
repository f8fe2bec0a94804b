/* The signal that work arrived for the engine (a completion, a start, a
 * cancel, a registration), and the event descriptor (saga_engine_fd) that
 * carries it to a caller's poll loop. The descriptor is an eventfd (a pipe
 * where there is none), made on first use; it is readable while signalled
 * and drained by the caller-driven rounds (driver.c). Everything here runs
 * with the engine's mutex held. SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

/* Wakes whoever waits for work: the driver thread, saga_wait, and the
 * caller's poll loop. */
void work_arrived(saga_engine *e)
{
	pthread_cond_broadcast(&e->wake);
	pthread_cond_broadcast(&e->wait_cv);
	fd_signal(e);
}

/* Tells the driver thread that starts wait in its queue for a round, unless
 * one is coming anyway: workers lead the rounds and the last answer of
 * those out runs the next (driver.c, lead_rounds; answers back with none
 * out: that worker is on its way), or a round under way looks at the queue
 * when it ends. A wake-up for each start would cost a thread switch a
 * round, and a driver that wakes takes the round from the worker. A round
 * that waits for starts (topping_up) is always told. */
void starts_queued(saga_engine *e)
{
	pthread_mutex_lock(&e->qmu);
	bool coming = e->workers_lead && !e->topping_up &&
	              (e->round_running || e->unanswered || e->answers);
	pthread_mutex_unlock(&e->qmu);
	if (!coming)
		pthread_cond_signal(&e->wake);
}

/* Makes the descriptor readable; one that already is stays so. */
void fd_signal(saga_engine *e)
{
	if (e->fd_write < 0)
		return;
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(e->fd_write, &one, e->fd_read == e->fd_write ? sizeof(one) : 1);
	while (n < 0 && errno == EINTR);
	/* EAGAIN: full, so readable already. */
}

/* Makes it not readable. */
void fd_drain(saga_engine *e)
{
	if (e->fd_read < 0)
		return;
	uint64_t buf[8];
	ssize_t n;
	do
		n = read(e->fd_read, buf, sizeof(buf));
	while (n > 0 || (n < 0 && errno == EINTR));
}

void fd_close(saga_engine *e)
{
	if (e->fd_write >= 0 && e->fd_write != e->fd_read)
		close(e->fd_write);
	if (e->fd_read >= 0)
		close(e->fd_read);
	e->fd_read = e->fd_write = -1;
}

/* A pipe whose two ends are O_CLOEXEC|O_NONBLOCK. */
static int make_pipe(int fds[2])
{
	if (pipe(fds) != 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		int fl = fcntl(fds[i], F_GETFL);
		if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
		    fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
			close(fds[0]);
			close(fds[1]);
			return -1;
		}
	}
	return 0;
}

static int fd_open(saga_engine *e)
{
#if defined(__linux__)
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd >= 0) {
		e->fd_read = e->fd_write = fd;
		return SAGA_OK;
	}
#endif
	int fds[2];
	if (make_pipe(fds) != 0)
		return set_err(e, SAGA_ERROR, "engine_fd: cannot make a descriptor (errno %d)",
		               errno);
	e->fd_read = fds[0];
	e->fd_write = fds[1];
	return SAGA_OK;
}

int saga_engine_fd(saga_engine *e, int *out_fd)
{
	if (!e || !out_fd)
		return bad_args(e, "engine_fd: out_fd is needed");
	*out_fd = -1;
	if (e->nworkers)
		return set_err(e, SAGA_ESTATE, "engine_fd: the engine runs its own workers");
	pthread_mutex_lock(&e->mu);
	int rc = SAGA_OK;
	if (e->fd_read < 0 && (rc = fd_open(e)) == SAGA_OK)
		fd_signal(e); /* the loop's first round finds what is due */
	if (rc == SAGA_OK)
		*out_fd = e->fd_read;
	pthread_mutex_unlock(&e->mu);
	return rc;
}
