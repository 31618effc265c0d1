/* SPDX-License-Identifier: MIT */
/* shipd: the host's NATS sidecar. Startup, the loop, signals, shutdown. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/thread.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "shipd.h"

#define SHUTDOWN_DRAIN_MS 2000 /* at most, for work owed to NATS */
#define SHUTDOWN_SERVICE_MS 61000 /* services' drains end sooner */
#define DEFAULT_CONFIG SHIP_SYSCONFDIR "/ship/shipd.conf"
#define STATUS_INTERVAL_MS 5000

struct config *conf;
struct shipd_stats stats;
struct event_base *base;

static struct config config;
static uint64_t started_ms;
static const char *config_path;
static bool config_explicit;
static struct event *ev_status;

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t start_ms(void)
{
	return started_ms;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: shipd [-nvV] [-c file] [-s socket] [--nats url[,url...]]\n"
	        "             [-o key=value]...\n"
	        "  -c, --config FILE   configuration file (default %s)\n"
	        "  -s, --socket PATH   local socket (default %s)\n"
	        "      --nats URLS     NATS servers (default nats://127.0.0.1:4222)\n"
	        "  -o KEY=VALUE        set any configuration key\n"
	        "  -n                  check the configuration and exit;\n"
	        "                      with -v print the effective configuration\n"
	        "  -v                  debug logging\n"
	        "  -V, --version       print the version and exit\n",
	        DEFAULT_CONFIG, SHIP_DEFAULT_SOCKET);
}

static void mail_dispatch(struct mail *m)
{
	switch (m->kind) {
	case MAIL_SUB_MSG:
	case MAIL_SUB_COMPLETE:
		pubsub_handle_mail(m);
		break;
	case MAIL_INBOX_MSG:
	case MAIL_LINK_EVENT:
	case MAIL_LINK_READY:
		link_handle_mail(m);
		break;
	}
}

static void notify_status(void)
{
	const struct link_info *li = link_info();
	sd_notifyf(0, "STATUS=%s %s, %u clients, %u subscriptions",
	           link_state_name(li->state),
	           li->state == LINK_CONNECTED ? li->url : "to NATS",
	           control_client_count(), pubsub_sub_count());
}

static void status_cb(evutil_socket_t fd, short what, void *arg)
{
	/* From the loop itself, so a stuck loop trips the watchdog. */
	sd_notify(0, "WATCHDOG=1");
	notify_status();
	/* A burst leaves freed memory in malloc's hands; give it back to
	 * the system once things are quiet. */
	if (mailbox_queued_bytes() == 0)
		malloc_trim(0);
}

/* SIGTERM and SIGINT received: a second one cuts the services' drain. */
static unsigned stop_signals;

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGHUP) {
		char **a, **r, err[512];
		size_t na, nr;
		log_info("SIGHUP: reloading %s", config_path);
		if (shipd_reload(&a, &na, &r, &nr, err, sizeof(err)) == 0) {
			free(a);
			free(r);
		}
		return;
	}
	if (stop_signals++)
		log_info("signal %d again: not waiting for services to drain",
		         (int)sig);
	else
		log_info("signal %d: shutting down", (int)sig);
	event_base_loopbreak(base);
}

#define MAX_OVERRIDES 64

/* Command-line settings, applied over the file at start and at reload. */
static struct {
	const char *key;
	char *value;
} overrides[MAX_OVERRIDES];
static int n_overrides;

static void add_override(const char *key, const char *value)
{
	if (n_overrides == MAX_OVERRIDES) {
		fprintf(stderr, "shipd: too many settings on the command line\n");
		exit(2);
	}
	overrides[n_overrides].key = key;
	overrides[n_overrides].value = strdup(value);
	n_overrides++;
}

/* Defaults, then the file, then the command line. Errors go to errs. */
static int build_config(struct config *c, FILE *errs)
{
	char err[512];
	config_defaults(c);
	if ((config_explicit || access(config_path, F_OK) == 0) &&
	    config_load(c, config_path, errs) < 0)
		return -1;
	for (int i = 0; i < n_overrides; i++) {
		if (config_set(c, overrides[i].key, overrides[i].value, err,
		               sizeof(err)) < 0) {
			fprintf(errs, "%s\n", err);
			return -1;
		}
	}
	if (config_check(c, err, sizeof(err)) < 0) {
		fprintf(errs, "%s\n", err);
		return -1;
	}
	return 0;
}

static void parse_args(int argc, char **argv, bool *check, bool *verbose)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 's'},
		{"nats", required_argument, NULL, 'N'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:s:o:nvVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config_path = optarg;
			config_explicit = true;
			break;
		case 'n':
			*check = true;
			break;
		case 'V':
			printf("shipd %s\n", SHIP_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		case 's':
			add_override("socket", optarg);
			break;
		case 'N':
			add_override("nats", optarg);
			break;
		case 'v':
			*verbose = true;
			break;
		case 'o': {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				fprintf(stderr, "shipd: -o %s: expected key=value\n",
				        optarg);
				exit(2);
			}
			*eq = '\0';
			add_override(optarg, eq + 1);
			break;
		}
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	/* With -n, -v asks for the effective configuration to be printed;
	 * otherwise it means debug logs. */
	if (*verbose && !*check)
		add_override("log_level", "debug");
	if (!config_path)
		config_path = DEFAULT_CONFIG;
	if (build_config(&config, stderr) < 0)
		exit(1);
}

struct reload_report {
	char **applied, **restart;
	size_t n_applied, n_restart;
};

static void reload_note(const char *key, bool applied, void *arg)
{
	struct reload_report *r = arg;
	char ***list = applied ? &r->applied : &r->restart;
	size_t *n = applied ? &r->n_applied : &r->n_restart;
	char **l = realloc(*list, (*n + 1) * sizeof(*l));
	if (!l)
		return;
	l[(*n)++] = (char *)key;
	*list = l;
}

int shipd_reload(char ***applied, size_t *n_applied, char ***restart,
                 size_t *n_restart, char *err, size_t errlen)
{
	struct config next;
	char *errbuf = NULL;
	size_t errsize = 0;
	FILE *errs = open_memstream(&errbuf, &errsize);
	if (!errs) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int r = build_config(&next, errs);
	fclose(errs);
	if (r < 0) {
		errbuf[strcspn(errbuf, "\n")] = '\0';
		snprintf(err, errlen, "%s", errbuf);
		log_warnx("reload: %s; keeping the running configuration", errbuf);
		free(errbuf);
		config_finish(&next);
		return -1;
	}
	free(errbuf);
	struct reload_report rep = {0};
	config_apply(&config, &next, reload_note, &rep);
	config_finish(&next);
	log_setverbose(config.log_level);
	mailbox_set_limit(config.inbound_limit);
	for (size_t i = 0; i < rep.n_applied; i++)
		log_info("reload: %s is now in effect", rep.applied[i]);
	for (size_t i = 0; i < rep.n_restart; i++)
		log_warnx("reload: %s changed; it takes a restart", rep.restart[i]);
	if (!rep.n_applied && !rep.n_restart)
		log_info("reload: nothing changed");
	*applied = rep.applied;
	*n_applied = rep.n_applied;
	*restart = rep.restart;
	*n_restart = rep.n_restart;
	return 0;
}

/* journald reads priorities from "<N>" prefixes on stderr lines. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;
	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return st.st_dev == dev && st.st_ino == ino;
}

int main(int argc, char **argv)
{
	bool check = false, verbose = false;
	conf = &config;
	parse_args(argc, argv, &check, &verbose);
	if (check) {
		if (verbose)
			config_print(&config, stdout);
		config_finish(&config);
		return 0;
	}
	log_init(config.log_level, stderr_is_journal());
	started_ms = now_ms();
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	/* nats.c's threads allocate messages the loop frees: a few arenas
	 * are plenty and keep memory from spreading over one per thread. */
	mallopt(M_ARENA_MAX, 2);
	/* One descriptor per client: take what the hard limit allows. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);

	/* nats.c and libevent both use threads; set libevent up for them
	 * before any base exists. */
	if (evthread_use_pthreads() < 0)
		fatalx("cannot enable libevent threads");
	base = event_base_new();
	if (!base || event_base_priority_init(base, 3) < 0)
		fatalx("cannot create the event loop");
	if (nats_Open(-1) != NATS_OK)
		fatalx("cannot initialise the NATS library");
	if (mailbox_init(base, mail_dispatch, config.inbound_limit) < 0)
		fatal("mailbox");
	blocks_init();
	if (metrics_init(base, &config) < 0)
		fatalx("cannot set up the metrics");
	uplink_init();
	/* Not fatal: shipd goes on and says what it cannot clean. */
	ojournal_open(config.state_dir);
	if (control_init(base, &config) < 0)
		fatalx("cannot listen on %s", config.socket_path);
	if (link_start(&config) < 0)
		fatalx("cannot start the NATS link");
	if (httpd_init(base, &config) < 0)
		fatalx("cannot serve metrics on %s",
		       config.metrics_listen ? config.metrics_listen
		                             : config.metrics_socket);

	struct event *sigs[3];
	int signums[3] = {SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(base, signums[i], signal_cb, NULL);
		if (!sigs[i] || event_add(sigs[i], NULL) < 0)
			fatalx("cannot handle signal %d", signums[i]);
	}
	uint64_t wd_usec = 0;
	uint64_t every = STATUS_INTERVAL_MS;
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec / 2000 < every)
		every = wd_usec / 2000 ? wd_usec / 2000 : 1;
	ev_status = event_new(base, -1, EV_PERSIST, status_cb, NULL);
	struct timeval tv = {(time_t)(every / 1000),
	                     (suseconds_t)(every % 1000 * 1000)};
	if (!ev_status || event_add(ev_status, &tv) < 0)
		fatalx("cannot start the status timer");

	char url[256];
	link_url_redact(config.nats_urls[0], url, sizeof(url));
	log_info("shipd %s listening on %s, NATS %s", SHIP_VERSION,
	         control_socket_path(), url);
	sd_notify(0, "READY=1");
	notify_status();

	event_base_dispatch(base);

	sd_notify(0, "STOPPING=1");
	httpd_finish();
	control_stop_accepting();
	/* Services drain: their apps, still connected, answer what was
	 * taken, bounded by the longest drain time a service asked for. */
	uint64_t drain_until = now_ms() + SHUTDOWN_SERVICE_MS;
	while (blocks_drain() && now_ms() < drain_until && stop_signals < 2) {
		struct timeval slice = {0, 20000};
		event_base_loopexit(base, &slice);
		event_base_dispatch(base);
	}
	control_flush();
	control_shutdown_clients();
	/* What the clients' going started (their held jobs given back)
	 * goes out to NATS first, for a bounded time. */
	uint64_t until = now_ms() + SHUTDOWN_DRAIN_MS;
	while (blocks_busy() && link_connected() && now_ms() < until) {
		struct timeval slice = {0, 20000};
		event_base_loopexit(base, &slice);
		event_base_dispatch(base);
	}
	blocks_finish();
	ojournal_close();
	link_stop();
	pubsub_release_nats();
	link_finish();
	/* Messages still queued go back to nats.c while it is there. */
	mailbox_discard();
	/* Let nats.c's threads finish before what they point to goes. */
	nats_CloseAndWait(2000);
	pubsub_finish();
	mailbox_finish();
	control_finish();
	metrics_finish();
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_free(ev_status);
	event_base_free(base);
	libevent_global_shutdown();
	config_finish(&config);
	for (int i = 0; i < n_overrides; i++)
		free(overrides[i].value);
	log_info("stopped");
	return 0;
}
