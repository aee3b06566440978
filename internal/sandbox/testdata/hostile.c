/* Probes run inside the jail; each line is "name result". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void report(const char *name, long r) {
	printf("%s %s\n", name, r == -1 ? strerrorname_np(errno) : "OK");
}

int main(int argc, char **argv) {
	const char *mode = argc > 1 ? argv[1] : "syscalls";
	if (!strcmp(mode, "syscalls")) {
		report("unshare_user", unshare(CLONE_NEWUSER));
		report("unshare_net", unshare(CLONE_NEWNET));
		report("mount", mount("none", "/tmp", "tmpfs", 0, ""));
		report("umount", umount2("/box", MNT_DETACH));
		report("chroot", chroot("/tmp"));
		report("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
		report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
		report("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -2));
		report("bpf", syscall(SYS_bpf, 0, 0, 0));
		report("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
		report("userfaultfd", syscall(SYS_userfaultfd, 0));
		report("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
		report("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
		report("socket_netlink", socket(AF_NETLINK, SOCK_RAW, 0));
		report("socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
		report("socket_unix", socket(AF_UNIX, SOCK_STREAM, 0));
		report("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
		int sv[2];
		report("socketpair_unix", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
		report("socketpair_inet", socketpair(AF_INET, SOCK_STREAM, 0, sv));
		report("socketpair_netlink", socketpair(AF_NETLINK, SOCK_RAW, 0, sv));
		report("clone_newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
		report("clone3", syscall(SYS_clone3, 0, 0));
		report("personality_set", personality(ADDR_NO_RANDOMIZE));
		report("personality_query", personality(0xffffffff));
		report("setuid0", setuid(0));
		report("open_shadow", open("/etc/shadow", O_RDONLY));
		/* xattrs on tmpfs would store outside the scratch size */
		int xf = open("/tmp/x", O_CREAT | O_WRONLY, 0644);
		report("setxattr", setxattr("/tmp/x", "user.a", "v", 1, 0));
		report("lsetxattr", lsetxattr("/tmp/x", "user.a", "v", 1, 0));
		report("fsetxattr", fsetxattr(xf, "user.a", "v", 1, 0));
		report("getxattr", getxattr("/tmp/x", "user.a", NULL, 0) == -1 && errno == ENODATA ? 0 : -1);
		/* fork must still work */
		pid_t p = fork();
		if (p == 0) _exit(0);
		report("fork", p);
		/* only 0, 1, 2 were open at start (plus the ones opened above) */
		return 0;
	}
	if (!strcmp(mode, "fds")) {
		for (int fd = 0; fd < 1024; fd++)
			if (fcntl(fd, F_GETFD) != -1) printf("%d\n", fd);
		return 0;
	}
	if (!strcmp(mode, "i386")) {
		long r;
		__asm__ volatile("int $0x80" : "=a"(r) : "a"(20)); /* getpid, 32-bit ABI */
		printf("i386 syscall returned %ld\n", r);
		return 0;
	}
	if (!strcmp(mode, "segv")) {
		volatile int *p = 0;
		*p = 1;
	}
	if (!strcmp(mode, "abort")) abort();
	if (!strcmp(mode, "forkbomb")) {
		for (;;) fork();
	}
	if (!strcmp(mode, "membomb")) {
		size_t n = 1UL << 30;
		char *b = malloc(n);
		for (size_t i = 0; i < n; i += 4096) b[i] = 1;
		printf("survived\n");
		return 0;
	}
	return 2;
}
