/* SPDX-License-Identifier: MIT */
/* The NATS link's credentials, and shipd under a shortage of descriptors. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;
static char secret[300];

static void write_secret(const char *dir, const char *text)
{
	snprintf(secret, sizeof(secret), "%s/secret", dir);
	FILE *f = fopen(secret, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", text);
	fclose(f);
}

static bool link_up(void *arg)
{
	struct shipc_status st;
	return shipc_status(arg, &st) == 0 && st.link == SHIPC_LINK_CONNECTED;
}

static void nop(struct shipc *h, const struct shipc_msg *m, int err, void *a)
{
	if (m)
		(*(int *)a)++;
}

static void assert_works(struct shipc *h)
{
	ck_assert(fx_wait(link_up, h, 10000));
	int got = 0;
	ck_assert_uint_gt(shipc_subscribe(h, "auth.x", NULL, 0, nop, &got), 0);
	ck_assert_int_eq(shipc_publish(h, "auth.x", "y", 1), 0);
	for (int i = 0; i < 200 && !got; i++)
		shipc_dispatch(h, 10);
	ck_assert_int_eq(got, 1);
}

static void finish(void)
{
	int rc = shipd_cleanup(&sd);
	natsd_cleanup(&nd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

START_TEST(user_and_password_from_file)
{
	static const char *const srv[] = {"--user", "robot", "--pass", "s3cret",
	                                  NULL};
	ck_assert_int_eq(natsd_start_args(&nd, 0, srv), 0);
	write_secret(nd.dir, "s3cret");
	char opt[400];
	snprintf(opt, sizeof(opt), "nats_password_file=%s", secret);
	const char *extra[] = {"-o", "nats_user=robot", "-o", opt, NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, extra), 0);
	struct shipc *h = shipc_connect(sd.sock, "auth");
	ck_assert_ptr_nonnull(h);
	assert_works(h);
	shipc_close(h);
	finish();
}
END_TEST

START_TEST(wrong_password_is_reported)
{
	static const char *const srv[] = {"--user", "robot", "--pass", "s3cret",
	                                  NULL};
	ck_assert_int_eq(natsd_start_args(&nd, 0, srv), 0);
	write_secret(nd.dir, "wrong");
	char opt[400];
	snprintf(opt, sizeof(opt), "nats_password_file=%s", secret);
	const char *extra[] = {"-o", "nats_user=robot", "-o", opt, NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, extra), 0);
	struct shipc *h = shipc_connect(sd.sock, "auth");
	ck_assert_ptr_nonnull(h);
	/* shipd runs, keeps trying, and says it is not connected and why
	 * (nats.c 3.4.1 reports a refused login as "no server available"). */
	struct shipc_status st = {0};
	bool said = false;
	for (int i = 0; i < 100 && !said; i++) {
		ck_assert_int_eq(shipc_status(h, &st), 0);
		said = st.last_error[0] != '\0';
		if (!said)
			fx_sleep_ms(50);
	}
	ck_assert_msg(said, "no error reported");
	ck_assert_int_ne(st.link, SHIPC_LINK_CONNECTED);
	fx_sleep_ms(1500); /* a retry or two */
	ck_assert_int_eq(kill(sd.pid, 0), 0);
	struct shipc_msg *rep;
	ck_assert_int_eq(shipc_request(h, "x", "y", 1, 500, &rep), -1);
	ck_assert_int_eq(errno, EAGAIN);
	shipc_close(h);
	finish();
}
END_TEST

START_TEST(token_from_file)
{
	static const char *const srv[] = {"--auth", "t0ken-xyz", NULL};
	ck_assert_int_eq(natsd_start_args(&nd, 0, srv), 0);
	write_secret(nd.dir, "t0ken-xyz");
	char opt[400];
	snprintf(opt, sizeof(opt), "nats_token_file=%s", secret);
	const char *extra[] = {"-o", opt, NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, extra), 0);
	struct shipc *h = shipc_connect(sd.sock, "token");
	ck_assert_ptr_nonnull(h);
	assert_works(h);
	shipc_close(h);
	finish();
}
END_TEST

static int raw_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

START_TEST(accept_pauses_when_descriptors_run_out)
{
	ck_assert_int_eq(natsd_start(&nd, 0), 0);
	/* shipd inherits a small descriptor limit it cannot raise (nor can
	 * this test process, which ends with the test). */
	struct rlimit low = {64, 64};
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	ck_assert_int_eq(shipd_start(&sd, nd.url, NULL), 0);
	int fds[60];
	int n = 0;
	for (int i = 0; i < 60; i++)
		if ((fds[n] = raw_connect(sd.sock)) >= 0)
			n++;
	ck_assert_int_ge(n, 56); /* more than shipd can hold: some wait */
	fx_sleep_ms(300);
	ck_assert_int_eq(kill(sd.pid, 0), 0); /* alive, not spinning out */
	/* Make room: the waiting ones are taken, and a new app is served. */
	for (int i = 0; i < n; i++)
		close(fds[i]);
	struct shipc *h = NULL;
	for (int i = 0; i < 100 && !h; i++) {
		h = shipc_connect(sd.sock, "after");
		if (!h)
			fx_sleep_ms(50);
	}
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	shipc_close(h);
	FILE *f = fopen(sd.log, "r");
	char line[512];
	bool paused = false;
	while (f && fgets(line, sizeof(line), f))
		paused = paused || strstr(line, "pausing");
	if (f)
		fclose(f);
	ck_assert(paused);
	finish();
}
END_TEST

/* A CA, a server certificate for 127.0.0.1 and a client certificate, made
 * with the openssl tool into dir. */
static void make_certs(const char *dir)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && "
	         "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key "
	         "-out ca.pem -days 2 -subj '/CN=shiptest CA' && "
	         "openssl req -newkey rsa:2048 -nodes -keyout server.key "
	         "-out server.csr -subj '/CN=127.0.0.1' && "
	         "printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf && "
	         "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
	         "-CAcreateserial -out server.pem -days 2 -extfile ext.cnf && "
	         "openssl req -newkey rsa:2048 -nodes -keyout client.key "
	         "-out client.csr -subj '/CN=shipd' && "
	         "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
	         "-CAcreateserial -out client.pem -days 2",
	         dir);
	strncat(cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(mutual_tls)
{
	char certs[300];
	snprintf(certs, sizeof(certs), "/tmp/shiptest-certs-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(certs));
	make_certs(certs);
	char scert[400], skey[400], ca[400], ccert[400], ckey[400];
	snprintf(scert, sizeof(scert), "%s/server.pem", certs);
	snprintf(skey, sizeof(skey), "%s/server.key", certs);
	snprintf(ca, sizeof(ca), "nats_tls_ca=%s/ca.pem", certs);
	snprintf(ccert, sizeof(ccert), "nats_tls_cert=%s/client.pem", certs);
	snprintf(ckey, sizeof(ckey), "nats_tls_key=%s/client.key", certs);
	const char *srv[] = {"--tls", "--tlscert", scert, "--tlskey", skey,
	                     "--tlscacert", ca + strlen("nats_tls_ca="),
	                     "--tlsverify", NULL};
	ck_assert_int_eq(natsd_start_args(&nd, 0, srv), 0);
	/* With a client certificate the server verifies: connected. */
	const char *extra[] = {"-o", ca, "-o", ccert, "-o", ckey, NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, extra), 0);
	struct shipc *h = shipc_connect(sd.sock, "tls");
	ck_assert_ptr_nonnull(h);
	assert_works(h);
	shipc_close(h);
	ck_assert_int_eq(shipd_cleanup(&sd), 0);
	/* Without one the server refuses: shipd stays up and says why. */
	const char *nocert[] = {"-o", ca, NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, nocert), 0);
	h = shipc_connect(sd.sock, "tls");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st = {0};
	for (int i = 0; i < 100 && !st.last_error[0]; i++) {
		ck_assert_int_eq(shipc_status(h, &st), 0);
		if (!st.last_error[0])
			fx_sleep_ms(50);
	}
	ck_assert_int_ne(st.link, SHIPC_LINK_CONNECTED);
	ck_assert(st.last_error[0] != '\0');
	shipc_close(h);
	finish();
	char rm[400];
	snprintf(rm, sizeof(rm), "rm -rf '%s'", certs);
	ck_assert_int_eq(system(rm), 0);
}
END_TEST

START_TEST(journal_priorities)
{
	/* Under journald (JOURNAL_STREAM names stderr) every line carries
	 * its syslog priority, so warnings are recorded as warnings. */
	ck_assert_int_eq(natsd_start(&nd, 0), 0);
	memset(&sd, 0, sizeof(sd));
	snprintf(sd.dir, sizeof(sd.dir), "/tmp/shiptest-shipd-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(sd.dir));
	snprintf(sd.sock, sizeof(sd.sock), "%s/shipd.sock", sd.dir);
	snprintf(sd.log, sizeof(sd.log), "%s/shipd.log", sd.dir);
	FILE *f = fopen(sd.log, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	struct stat st;
	ck_assert_int_eq(stat(sd.log, &st), 0);
	char js[96];
	snprintf(js, sizeof(js), "JOURNAL_STREAM=%llu:%llu",
	         (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	const char *env[] = {js, NULL};
	char *argv[] = {(char *)fx_shipd_bin(), "-c", "/dev/null", "-s", sd.sock,
	                "--nats", nd.url, NULL};
	sd.pid = fx_spawn(argv, sd.log, env);
	ck_assert_int_gt(sd.pid, 0);
	struct shipc *h = NULL;
	for (int i = 0; i < 200 && !h; i++) {
		h = shipc_connect(sd.sock, "journal");
		if (!h)
			fx_sleep_ms(20);
	}
	ck_assert_ptr_nonnull(h);
	shipc_close(h);
	ck_assert_int_eq(shipd_stop(&sd), 0);
	f = fopen(sd.log, "r");
	char line[512];
	int info = 0, plain = 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "<6>", 3))
			info++;
		else if (line[0] != '<')
			plain++;
	}
	fclose(f);
	ck_assert_int_gt(info, 0);
	ck_assert_int_eq(plain, 0);
	finish();
}
END_TEST

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	Suite *s = suite_create("link");
	TCase *tc = tcase_create("link");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, user_and_password_from_file);
	tcase_add_test(tc, wrong_password_is_reported);
	tcase_add_test(tc, token_from_file);
	tcase_add_test(tc, accept_pauses_when_descriptors_run_out);
	tcase_add_test(tc, journal_priorities);
	tcase_add_test(tc, mutual_tls);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
