/*
 * seccomp-exec: run a command as a systemd unit would, for tests on
 * machines without systemd as PID 1. It takes the syscall filter that
 * internal/unitexec computed from the unit (SystemCallFilter= with the
 * @groups expanded by systemd-analyze), drops to the unit's User= and
 * Group= (with the user's supplementary groups, as systemd does), sets
 * UMask=, loads the filter with libseccomp (no_new_privs set) and execs.
 * Like systemd, the filter is loaded last, right before execve, so the
 * privilege drop itself is not filtered.
 *
 *   seccomp-exec --mode allow|deny --action kill|errno:N --list FILE
 *                [--uid N --gid N --groups a,b,c] [--umask 0007] -- ARGV...
 *
 * FILE holds one syscall name a line. In allow mode every syscall not
 * listed gets the action; in deny mode only the listed ones do. Names
 * this architecture does not have are skipped, as systemd skips them.
 * Syscalls of other architectures are killed (SystemCallArchitectures=
 * native: libseccomp's default bad-arch action).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what, int err) {
	fprintf(stderr, "seccomp-exec: %s: %s\n", what, strerror(err));
	exit(127);
}

static int parse_groups(const char *s, gid_t *out, int max) {
	int n = 0;
	char *copy = strdup(s), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save))
		out[n++] = (gid_t)strtoul(tok, NULL, 10);
	free(copy);
	return n;
}

int main(int argc, char **argv) {
	const char *mode = NULL, *action = NULL, *list = NULL, *groups = NULL;
	long uid = -1, gid = -1, mask = -1;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			die(argv[i], EINVAL);
		if (!strcmp(argv[i], "--mode"))
			mode = argv[++i];
		else if (!strcmp(argv[i], "--action"))
			action = argv[++i];
		else if (!strcmp(argv[i], "--list"))
			list = argv[++i];
		else if (!strcmp(argv[i], "--uid"))
			uid = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--gid"))
			gid = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--groups"))
			groups = argv[++i];
		else if (!strcmp(argv[i], "--umask"))
			mask = strtol(argv[++i], NULL, 8);
		else
			die(argv[i], EINVAL);
	}
	if (!mode || !action || !list || i >= argc)
		die("usage: --mode allow|deny --action kill|errno:N --list FILE -- ARGV...", EINVAL);

	uint32_t act = SCMP_ACT_KILL_PROCESS;
	if (!strncmp(action, "errno:", 6))
		act = SCMP_ACT_ERRNO((uint16_t)atoi(action + 6));
	else if (strcmp(action, "kill"))
		die(action, EINVAL);
	int allow = !strcmp(mode, "allow");
	if (!allow && strcmp(mode, "deny"))
		die(mode, EINVAL);

	scmp_filter_ctx ctx = seccomp_init(allow ? act : SCMP_ACT_ALLOW);
	if (!ctx)
		die("seccomp_init", ENOMEM);
	FILE *f = fopen(list, "r");
	if (!f)
		die(list, errno);
	char name[128];
	int rules = 0, skipped = 0;
	while (fscanf(f, "%127s", name) == 1) {
		int nr = seccomp_syscall_resolve_name(name);
		if (nr == __NR_SCMP_ERROR) {
			skipped++;
			continue;
		}
		int rc = seccomp_rule_add(ctx, allow ? SCMP_ACT_ALLOW : act, nr, 0);
		if (rc < 0)
			die(name, -rc);
		rules++;
	}
	fclose(f);

	if (gid >= 0) {
		gid_t list_[64];
		int n = groups && *groups ? parse_groups(groups, list_, 64) : 0;
		if (setgroups(n, list_) < 0)
			die("setgroups", errno);
		if (setresgid(gid, gid, gid) < 0)
			die("setresgid", errno);
	}
	if (uid >= 0 && setresuid(uid, uid, uid) < 0)
		die("setresuid", errno);
	if (mask >= 0)
		umask((mode_t)mask);
	if (getenv("SECCOMP_EXEC_VERBOSE"))
		fprintf(stderr, "seccomp-exec: %s list, %d rules, %d names unknown here\n", mode, rules, skipped);
	int rc = seccomp_load(ctx); /* sets no_new_privs (SCMP_FLTATR_CTL_NNP) */
	if (rc < 0)
		die("seccomp_load", -rc);
	seccomp_release(ctx);
	execv(argv[i], argv + i);
	die(argv[i], errno);
	return 127;
}
