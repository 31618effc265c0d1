/* SPDX-License-Identifier: MIT */
/* The fleet topology for tests: a hub cluster, leaf servers in their own
 * JetStream domains, and a proxy that cuts a robot's uplink. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "fixture-internal.h"

/* ---- Fleet topology: a hub cluster, leaf servers, a cuttable uplink ---- */

enum { PX_FORWARD, PX_CUT, PX_HOLD, PX_STOP };

struct fx_proxy_link {
	int fd[2]; /* 0: the accepted side, 1: the target; -1: closed */
	bool held; /* accepted during a hold: no target yet */
	char buf[2][16384]; /* read from fd[i], not yet written to fd[!i] */
	size_t len[2], off[2];
};

static void link_close(struct fx_proxy_link *l)
{
	for (int i = 0; i < 2; i++) {
		if (l->fd[i] >= 0)
			close(l->fd[i]);
		l->fd[i] = -1;
		l->len[i] = l->off[i] = 0;
	}
	l->held = false;
}

/* A connection to the first target that accepts, starting with the one
 * that worked last; non-blocking. -1 if none does. */
static int px_connect(struct fx_proxy *p)
{
	for (int i = 0; i < p->ntargets; i++) {
		int k = (p->next + i) % p->ntargets;
		struct sockaddr_in sa = {
			.sin_family = AF_INET,
			.sin_port = htons((uint16_t)p->targets[k]),
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr *a = (struct sockaddr *)&sa;
		if (fd >= 0 && connect(fd, a, sizeof(sa)) == 0) {
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
			p->next = k;
			return fd;
		}
		if (fd >= 0)
			close(fd);
	}
	return -1;
}

/* Write what is buffered for fd[!from] (read from fd[from]). */
static int px_flush(struct fx_proxy_link *l, int from)
{
	while (l->off[from] < l->len[from]) {
		ssize_t n = send(l->fd[!from], l->buf[from] + l->off[from],
		                 l->len[from] - l->off[from], MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		l->off[from] += (size_t)n;
	}
	l->len[from] = l->off[from] = 0;
	return 0;
}

/* Bytes ready on fd[from]: read them and pass on what the other side
 * takes now. -1 when the link is over. */
static int px_read(struct fx_proxy_link *l, int from)
{
	ssize_t n = recv(l->fd[from], l->buf[from], sizeof(l->buf[from]), 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0)
		return -1;
	l->len[from] = (size_t)n;
	l->off[from] = 0;
	return px_flush(l, from);
}

static bool link_used(const struct fx_proxy_link *l)
{
	return l->fd[0] >= 0 || l->fd[1] >= 0;
}

static void px_accept(struct fx_proxy *p, int mode)
{
	int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct fx_proxy_link *l = NULL;
	for (int i = 0; i < FX_PROXY_LINKS && !l; i++)
		if (!link_used(&p->links[i]))
			l = &p->links[i];
	/* Cut: the far end sees its connection closed at once. */
	if (!l || mode == PX_CUT) {
		close(fd);
		return;
	}
	l->fd[0] = fd;
	l->held = mode == PX_HOLD;
	l->fd[1] = l->held ? -1 : px_connect(p);
	if (!l->held && l->fd[1] < 0)
		link_close(l);
}

/* Carry out the mode the last command asked for. Back from a hold, a
 * held connection is connected to a target, and one whose other side
 * closed meanwhile is closed now. */
static void px_apply(struct fx_proxy *p, int mode)
{
	for (int i = 0; i < FX_PROXY_LINKS; i++) {
		struct fx_proxy_link *l = &p->links[i];
		if (!link_used(l) || mode == PX_HOLD)
			continue;
		if (mode == PX_FORWARD && l->held && l->fd[0] >= 0) {
			l->held = false;
			l->fd[1] = px_connect(p);
		}
		if (mode != PX_FORWARD || l->fd[0] < 0 || l->fd[1] < 0)
			link_close(l);
	}
}

static void px_events(struct fx_proxy *p, struct pollfd *pfd, int mode)
{
	for (int i = 0; i < FX_PROXY_LINKS; i++) {
		struct fx_proxy_link *l = &p->links[i];
		for (int k = 0; k < 2; k++) {
			struct pollfd *e = &pfd[2 + 2 * i + k];
			e->fd = l->fd[k];
			e->events = 0;
			e->revents = 0;
			/* Held: nothing moves, only a close is seen. */
			if (mode != PX_FORWARD) {
				e->events = POLLRDHUP;
				continue;
			}
			if (l->len[k] == 0)
				e->events |= POLLIN;
			if (l->len[!k] > 0)
				e->events |= POLLOUT;
		}
	}
}

/* Held: a side that closes is closed alone; as across a real partition,
 * the other end learns it only when the link is restored. */
static void px_service_held(struct fx_proxy *p, struct pollfd *pfd)
{
	for (int i = 0; i < FX_PROXY_LINKS; i++) {
		struct fx_proxy_link *l = &p->links[i];
		for (int k = 0; k < 2; k++) {
			short r = pfd[2 + 2 * i + k].revents;
			if (l->fd[k] >= 0 &&
			    (r & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
				close(l->fd[k]);
				l->fd[k] = -1;
			}
		}
		if (!link_used(l))
			link_close(l);
	}
}

static void px_service(struct fx_proxy *p, struct pollfd *pfd, int mode)
{
	if (mode != PX_FORWARD) {
		px_service_held(p, pfd);
		return;
	}
	for (int i = 0; i < FX_PROXY_LINKS; i++) {
		struct fx_proxy_link *l = &p->links[i];
		for (int k = 0; k < 2 && link_used(l); k++) {
			short r = pfd[2 + 2 * i + k].revents;
			int rc = 0;
			if (r & POLLOUT)
				rc = px_flush(l, !k);
			/* POLLIN only while its buffer is empty; a hang-up
			 * without it ends the link, whatever is buffered. */
			if (rc == 0 && (r & POLLIN))
				rc = px_read(l, k);
			else if (r & POLLHUP)
				rc = -1;
			if (rc < 0 || (r & (POLLERR | POLLNVAL)))
				link_close(l);
		}
	}
}

static void *px_run(void *arg)
{
	struct fx_proxy *p = arg;
	struct pollfd pfd[2 + 2 * FX_PROXY_LINKS];
	for (;;) {
		pthread_mutex_lock(&p->mu);
		int mode = p->mode;
		unsigned asked = p->asked;
		pthread_mutex_unlock(&p->mu);
		px_apply(p, mode);
		int open = 0;
		for (int i = 0; i < FX_PROXY_LINKS; i++)
			open += link_used(&p->links[i]);
		pthread_mutex_lock(&p->mu);
		p->nlinks = open;
		p->done = asked;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->mu);
		if (mode == PX_STOP)
			return NULL;
		pfd[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
		px_events(p, pfd, mode);
		if (poll(pfd, 2 + 2 * FX_PROXY_LINKS, -1) < 0)
			continue;
		char drain[64];
		if (pfd[0].revents & POLLIN)
			(void)!read(p->wake[0], drain, sizeof(drain));
		if (pfd[1].revents & POLLIN)
			px_accept(p, mode);
		px_service(p, pfd, mode);
	}
}

/* Ask the thread for mode and wait until it has carried it out. */
static void px_ask(struct fx_proxy *p, int mode)
{
	pthread_mutex_lock(&p->mu);
	p->mode = mode;
	unsigned ticket = ++p->asked;
	(void)!write(p->wake[1], "", 1);
	while (p->done < ticket)
		pthread_cond_wait(&p->cond, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

int fx_proxy_start(struct fx_proxy *p, const int *targets, int ntargets)
{
	memset(p, 0, sizeof(*p));
	p->lfd = p->wake[0] = p->wake[1] = -1;
	if (ntargets < 1 || ntargets > FX_PROXY_TARGETS) {
		errno = EINVAL;
		return -1;
	}
	memcpy(p->targets, targets, sizeof(*targets) * (size_t)ntargets);
	p->ntargets = ntargets;
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	p->links = calloc(FX_PROXY_LINKS, sizeof(*p->links));
	if (p->lfd < 0 || !p->links ||
	    bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(p->lfd, 16) < 0 ||
	    getsockname(p->lfd, (struct sockaddr *)&sa, &len) < 0 ||
	    pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		goto error;
	p->port = ntohs(sa.sin_port);
	for (int i = 0; i < FX_PROXY_LINKS; i++)
		p->links[i].fd[0] = p->links[i].fd[1] = -1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cond, NULL);
	int err = pthread_create(&p->thread, NULL, px_run, p);
	if (err == 0)
		return 0;
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->mu);
	errno = err;
error:
	err = errno;
	for (int i = 0; i < 2; i++)
		if (p->wake[i] >= 0)
			close(p->wake[i]);
	if (p->lfd >= 0)
		close(p->lfd);
	free(p->links);
	p->links = NULL;
	errno = err;
	return -1;
}

void fx_proxy_cut(struct fx_proxy *p)
{
	px_ask(p, PX_CUT);
}

void fx_proxy_hold(struct fx_proxy *p)
{
	px_ask(p, PX_HOLD);
}

void fx_proxy_restore(struct fx_proxy *p)
{
	px_ask(p, PX_FORWARD);
}

int fx_proxy_links(struct fx_proxy *p)
{
	pthread_mutex_lock(&p->mu);
	int n = p->nlinks;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void fx_proxy_stop(struct fx_proxy *p)
{
	if (!p->links)
		return;
	px_ask(p, PX_STOP);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->mu);
	close(p->wake[0]);
	close(p->wake[1]);
	close(p->lfd);
	free(p->links);
	p->links = NULL;
}

int fx_http_status(int port, const char *path, char *buf, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 2};
	char req[512];
	int n = snprintf(req, sizeof(req),
	                 "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	size_t got = 0;
	ssize_t r = -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
		uint64_t end = fx_now_ms() + 2000;
		while (got < len - 1 && fx_now_ms() < end &&
		       (r = recv(fd, buf + got, len - 1 - got, 0)) > 0)
			got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	int status;
	if (strncmp(buf, "HTTP/1.", 7) != 0 || !body ||
	    sscanf(buf + 8, " %3d", &status) != 1)
		return -1;
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return status;
}

int fx_http_get(int port, const char *path, char *buf, size_t len)
{
	return fx_http_status(port, path, buf, len) == 200 ? 0 : -1;
}

/* Where the value of "key" starts, looking after the text after. */
static const char *json_value(const char *json, const char *after,
                              const char *key)
{
	char pat[96];
	snprintf(pat, sizeof(pat), "\"%s\"", key);
	const char *p = after ? strstr(json, after) : json;
	if (!p || !(p = strstr(p, pat)))
		return NULL;
	p += strlen(pat);
	p += strspn(p, " \t\r\n");
	if (*p++ != ':')
		return NULL;
	return p + strspn(p, " \t\r\n");
}

bool fx_json_str(const char *json, const char *after, const char *key,
                 char *out, size_t len)
{
	const char *p = json_value(json, after, key);
	if (!p || *p != '"')
		return false;
	size_t n = strcspn(p + 1, "\"");
	if (p[1 + n] != '"' || n >= len)
		return false;
	memcpy(out, p + 1, n);
	out[n] = '\0';
	return true;
}

long long fx_json_int(const char *json, const char *after, const char *key)
{
	const char *p = json_value(json, after, key);
	char *end;
	if (!p)
		return -1;
	long long v = strtoll(p, &end, 10);
	return end == p ? -1 : v;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int rc = fputs(text, f) < 0 ? -1 : 0;
	return fclose(f) == 0 ? rc : -1;
}

/* Start n from dir/node.conf, logging to dir/nats.log; wait until it
 * accepts clients (a failed start, e.g. a port taken, ends early). */
static int node_spawn(struct fx_node *n)
{
	char conf[300], log[300];
	snprintf(conf, sizeof(conf), "%s/node.conf", n->dir);
	snprintf(log, sizeof(log), "%s/nats.log", n->dir);
	char *argv[] = {(char *)fxi_nats_server_bin(), "-c", conf, NULL};
	n->pid = fxi_spawn(argv, log);
	if (n->pid < 0) {
		n->pid = 0;
		return -1;
	}
	uint64_t end = fx_now_ms() + 10000;
	while (fx_now_ms() < end) {
		if (fxi_tcp_up(&n->port))
			return 0;
		if (waitpid(n->pid, NULL, WNOHANG) == n->pid) {
			n->pid = 0;
			return -1;
		}
		fx_sleep_ms(20);
	}
	return -1;
}

int fx_node_restart(struct fx_node *n)
{
	/* Reap (or stop) the one that ran before. */
	fxi_stop_pid(&n->pid, SIGTERM);
	return node_spawn(n);
}

void fx_node_stop(struct fx_node *n)
{
	fxi_stop_pid(&n->pid, SIGTERM);
}

void fx_node_kill(struct fx_node *n)
{
	fxi_stop_pid(&n->pid, SIGKILL);
}

int fx_node_conf_add(struct fx_node *n, const char *text)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/node.conf", n->dir);
	FILE *f = fopen(path, "a");
	if (!f)
		return -1;
	int rc = fputs(text, f) < 0 ? -1 : 0;
	return fclose(f) == 0 ? rc : -1;
}

/* A free port none of used[0..nused) has. */
static int fresh_port(const int *used, int nused)
{
	for (int tries = 0; tries < 100; tries++) {
		int p = fx_free_port();
		bool dup = p <= 0;
		for (int i = 0; i < nused && !dup; i++)
			dup = used[i] == p;
		if (!dup)
			return p;
	}
	return -1;
}

static int hub_ports(struct fx_hub *h)
{
	int used[4 * FX_HUB_MAX + 1], n = 0;
	used[n++] = h->dead_port;
	for (int i = 0; i < h->n; i++) {
		struct fx_node *d = &h->node[i];
		int *slot[] = {&d->port, &d->http, &d->cluster, &d->leaf};
		for (int k = 0; k < 4; k++) {
			int p = fresh_port(used, n);
			if (p < 0)
				return -1;
			*slot[k] = used[n++] = p;
		}
		snprintf(d->url, sizeof(d->url), "nats://127.0.0.1:%d", d->port);
	}
	return 0;
}

/* A hub node's config. Leaves are told the dead address as this node's
 * leafnode URL: 2.9.10 always adds a node's own leafnode address to the
 * INFO it sends leaves (no_advertise only stops the route gossip), and a
 * leaf puts what it learns before its configured URLs, so it would
 * reconnect to the node directly, around a proxy. A URL equal to a
 * configured one would be dropped, but one node serves many leaves, each
 * through its own proxy. The cost: a leaf tries the dead address on every
 * other attempt, one reconnect interval (1 s) each. */
static int hub_write(struct fx_hub *h, struct fx_node *d)
{
	char text[4096], routes[1024] = "", path[300];
	size_t off = 0;
	for (int i = 0; i < h->n; i++) {
		if (&h->node[i] == d)
			continue;
		off += (size_t)snprintf(routes + off, sizeof(routes) - off,
		                        "    \"nats-route://127.0.0.1:%d\"\n",
		                        h->node[i].cluster);
	}
	snprintf(text, sizeof(text),
	         "server_name: \"%s\"\n"
	         "listen: 127.0.0.1:%d\n"
	         "http: 127.0.0.1:%d\n"
	         "jetstream {\n  store_dir: \"%s/js\"\n  domain: \"%s\"\n}\n"
	         "cluster {\n  name: \"%s\"\n  listen: 127.0.0.1:%d\n"
	         "  routes: [\n%s  ]\n}\n"
	         "leafnodes {\n  listen: 127.0.0.1:%d\n  no_advertise: true\n"
	         "  advertise: \"127.0.0.1:%d\"\n}\n",
	         d->name, d->port, d->http, d->dir, h->domain, h->domain,
	         d->cluster, routes, d->leaf, h->dead_port);
	snprintf(path, sizeof(path), "%s/node.conf", d->dir);
	return write_file(path, text);
}

/* The dead address: a loopback port bound and never listened on, so a
 * connection to it is refused and nothing else can take the port. */
static int dead_address(struct fx_hub *h)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	h->dead_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->dead_fd < 0 ||
	    bind(h->dead_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(h->dead_fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	h->dead_port = ntohs(sa.sin_port);
	return 0;
}

static int hub_spawn(struct fx_hub *h)
{
	if (hub_ports(h) < 0)
		return -1;
	for (int i = 0; i < h->n; i++)
		if (hub_write(h, &h->node[i]) < 0)
			return -1;
	for (int i = 0; i < h->n; i++)
		if (node_spawn(&h->node[i]) < 0)
			return -1;
	return 0;
}

int fx_hub_start(struct fx_hub *h, int n, const char *domain)
{
	memset(h, 0, sizeof(*h));
	h->dead_fd = -1;
	if (n < 1 || n > FX_HUB_MAX || strlen(domain) + 2 > sizeof(h->domain))
		return -1;
	h->n = n;
	snprintf(h->domain, sizeof(h->domain), "%s", domain);
	snprintf(h->dir, sizeof(h->dir), "/tmp/shiptest-hub-XXXXXX");
	if (!mkdtemp(h->dir) || dead_address(h) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		struct fx_node *d = &h->node[i];
		char name[sizeof(d->name)];
		snprintf(name, sizeof(name), "%s%d", domain, i + 1);
		memcpy(d->name, name, sizeof(name));
		snprintf(d->dir, sizeof(d->dir), "%.170s/%.80s", h->dir, name);
		if (mkdir(d->dir, 0755) < 0)
			return -1;
	}
	int rc = -1;
	/* A port taken meanwhile: all nodes again, on new ports, with
	 * empty stores (the meta group must not remember the old peers). */
	for (int tries = 0; tries < 3 && rc < 0; tries++) {
		rc = hub_spawn(h);
		for (int i = 0; rc < 0 && i < n; i++) {
			char js[300];
			fx_node_stop(&h->node[i]);
			snprintf(js, sizeof(js), "%s/js", h->node[i].dir);
			fxi_rm_rf(js);
		}
	}
	if (rc == 0 && fx_hub_wait_leader(h, NULL, 0, 30000))
		return 0;
	for (int i = 0; i < n; i++) {
		char log[300];
		snprintf(log, sizeof(log), "%s/nats.log", h->node[i].dir);
		fxi_dump_log(log);
	}
	return -1;
}

int fx_hub_leaf_ports(const struct fx_hub *h, int *ports, int max)
{
	int n = 0;
	for (int i = 0; i < h->n && n < max; i++)
		ports[n++] = h->node[i].leaf;
	return n;
}

void fx_hub_urls(const struct fx_hub *h, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	for (int i = 0; i < h->n && off < len; i++)
		if (h->node[i].pid > 0)
			off += (size_t)snprintf(buf + off, len - off, "%s%s",
			                        off ? "," : "", h->node[i].url);
}

struct fx_node *fx_hub_node(struct fx_hub *h, const char *name)
{
	for (int i = 0; i < h->n; i++)
		if (strcmp(h->node[i].name, name) == 0)
			return &h->node[i];
	return NULL;
}

/* The meta leader every running node names, into leader; false if one
 * does not answer or names another (or none). */
static bool hub_leader(struct fx_hub *h, char *leader, size_t len)
{
	char body[16384], name[96];
	leader[0] = '\0';
	for (int i = 0; i < h->n; i++) {
		if (h->node[i].pid <= 0)
			continue;
		if (fx_http_get(h->node[i].http, "/jsz", body, sizeof(body)) < 0 ||
		    !fx_json_str(body, "\"meta_cluster\"", "leader", name,
		                 sizeof(name)) ||
		    !name[0] || (leader[0] && strcmp(leader, name) != 0))
			return false;
		snprintf(leader, len, "%s", name);
	}
	return leader[0] != '\0';
}

bool fx_hub_wait_leader(struct fx_hub *h, char *leader, size_t len,
                        int timeout_ms)
{
	char name[96];
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (hub_leader(h, name, sizeof(name))) {
			if (leader)
				snprintf(leader, len, "%s", name);
			return true;
		}
		if (fx_now_ms() >= end)
			return false;
		fx_sleep_ms(100);
	}
}

static void topo_rm(const char *dir, const char *what)
{
	if (getenv("SHIPTEST_KEEP"))
		fprintf(stderr, "%s kept in %s\n", what, dir);
	else
		fxi_rm_rf(dir);
}

void fx_hub_cleanup(struct fx_hub *h)
{
	for (int i = 0; i < h->n; i++)
		fx_node_stop(&h->node[i]);
	if (h->dead_port > 0)
		close(h->dead_fd);
	h->dead_port = 0;
	if (h->dir[0])
		topo_rm(h->dir, "hub");
	h->dir[0] = '\0';
}

int fx_leaf_start(struct fx_node *l, const char *name, const int *ports,
                  int nports)
{
	char text[4096], urls[1024] = "", path[300];
	size_t off = 0;
	memset(l, 0, sizeof(*l));
	if (strlen(name) + 1 > sizeof(l->name))
		return -1;
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->dir, sizeof(l->dir), "/tmp/shiptest-leaf-XXXXXX");
	if (!mkdtemp(l->dir))
		return -1;
	for (int i = 0; i < nports && off < sizeof(urls); i++)
		off += (size_t)snprintf(urls + off, sizeof(urls) - off,
		                        "%s\"nats-leaf://127.0.0.1:%d\"",
		                        i ? ", " : "", ports[i]);
	snprintf(path, sizeof(path), "%s/node.conf", l->dir);
	for (int tries = 0; tries < 5; tries++) {
		int used[1] = {0};
		if ((l->port = used[0] = fresh_port(NULL, 0)) < 0 ||
		    (l->http = fresh_port(used, 1)) < 0)
			return -1;
		snprintf(l->url, sizeof(l->url), "nats://127.0.0.1:%d", l->port);
		/* As conf/fleet/robot/nats-server.conf: a robot's own streams'
		 * subjects neither leave it nor come in, or every robot's
		 * SHIP_EVENTS would also store the others' events (one
		 * account), and a hub sourcing them all hold each twice. */
		static const char own[] = "[\"ship.events.>\", "
		                          "\"ship.channel.>\", \"$KV.>\", \"$O.>\"]";
		/* And the other robots' sourcing deliveries do not come in. */
		static const char own_in[] = "[\"ship.events.>\", "
		                             "\"ship.channel.>\", \"$KV.>\", "
		                             "\"$O.>\", \"$JS.EVENT.>\", "
		                             "\"$JS.S.>\"]";
		/* reconnect is a leafnodes setting in 2.9.10 (whole seconds);
		 * a remote with "reconnect" is refused as an unknown field. */
		snprintf(text, sizeof(text),
		         "server_name: \"%s\"\n"
		         "listen: 127.0.0.1:%d\n"
		         "http: 127.0.0.1:%d\n"
		         "jetstream {\n  store_dir: \"%s/js\"\n  domain: \"%s\"\n}\n"
		         "leafnodes {\n  reconnect: 1\n"
		         "  remotes: [\n    { urls: [%s]\n"
		         "      deny_exports: %s\n      deny_imports: %s }\n"
		         "  ]\n}\n",
		         name, l->port, l->http, l->dir, name, urls, own, own_in);
		if (write_file(path, text) < 0)
			return -1;
		if (node_spawn(l) == 0)
			return 0;
	}
	return -1;
}

bool fx_leaf_connected(struct fx_node *l)
{
	char body[8192];
	return fx_http_get(l->http, "/leafz", body, sizeof(body)) == 0 &&
	       fx_json_int(body, NULL, "leafnodes") >= 1;
}

static bool leaf_up(void *arg)
{
	return fx_leaf_connected(arg);
}

bool fx_leaf_wait_connected(struct fx_node *l, int timeout_ms)
{
	return fx_wait(leaf_up, l, timeout_ms);
}

void fx_leaf_cleanup(struct fx_node *l)
{
	fx_node_stop(l);
	if (l->dir[0])
		topo_rm(l->dir, "leaf");
	l->dir[0] = '\0';
}
