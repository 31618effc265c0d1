/* SPDX-License-Identifier: MIT */
/* shipd: the host's NATS sidecar. Startup, the loop, signals, shutdown. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/thread.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "shipd.h"

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
	        "usage: shipd [-dnvV] [-c file] [-s socket] [--nats url[,url...]]\n"
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
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGHUP) {
		log_info("SIGHUP: reload is not supported yet; restart to apply "
		         "changes");
		return;
	}
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopbreak(base);
}

static void parse_args(int argc, char **argv, bool *check)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 's'},
		{"nats", required_argument, NULL, 'N'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	/* Two passes: the file first, then flags over it. */
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
		case 'N':
		case 'o':
		case 'v':
			break;
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (!config_path)
		config_path = DEFAULT_CONFIG;
	if (config_explicit || access(config_path, F_OK) == 0) {
		if (config_load(&config, config_path) < 0)
			exit(1);
	}
	optind = 1;
	char err[512];
	while ((ch = getopt_long(argc, argv, "c:s:o:nvVh", longopts, NULL)) != -1) {
		const char *key = NULL, *val = optarg;
		char kv[4096];
		switch (ch) {
		case 's':
			key = "socket";
			break;
		case 'N':
			key = "nats";
			break;
		case 'v':
			config.log_level = 1;
			break;
		case 'o': {
			snprintf(kv, sizeof(kv), "%s", optarg);
			char *eq = strchr(kv, '=');
			if (!eq) {
				fprintf(stderr, "shipd: -o %s: expected key=value\n",
				        optarg);
				exit(2);
			}
			*eq = '\0';
			key = kv;
			val = eq + 1;
			break;
		}
		}
		if (key && config_set(&config, key, val, err, sizeof(err)) < 0) {
			fprintf(stderr, "shipd: %s\n", err);
			exit(2);
		}
	}
	if (config_check(&config, err, sizeof(err)) < 0) {
		fprintf(stderr, "shipd: %s\n", err);
		exit(1);
	}
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
	bool check = false;
	config_defaults(&config);
	conf = &config;
	parse_args(argc, argv, &check);
	if (check) {
		if (config.log_level)
			config_print(&config, stdout);
		config_finish(&config);
		return 0;
	}
	log_init(config.log_level, stderr_is_journal());
	started_ms = now_ms();
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
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
	if (control_init(base, &config) < 0)
		fatalx("cannot listen on %s", config.socket_path);
	if (link_start(&config) < 0)
		fatalx("cannot start the NATS link");

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

	log_info("shipd %s listening on %s, NATS %s", SHIP_VERSION,
	         config.socket_path, config.nats_urls[0]);
	sd_notify(0, "READY=1");
	notify_status();

	event_base_dispatch(base);

	sd_notify(0, "STOPPING=1");
	control_stop_accepting();
	control_flush();
	control_shutdown_clients();
	link_stop();
	pubsub_release_nats();
	link_finish();
	/* Let nats.c's threads finish before what they point to goes. */
	nats_CloseAndWait(2000);
	pubsub_finish();
	mailbox_finish();
	control_finish();
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_free(ev_status);
	event_base_free(base);
	libevent_global_shutdown();
	config_finish(&config);
	log_info("stopped");
	return 0;
}
