#!/bin/sh
# Entrypoint of the runbox image: prepares cgroup v2 delegation for the
# sandbox, then becomes `runbox "$@"` (tini, PID 1, reaps and forwards signals).
#
# With a private cgroup namespace (docker run --cgroupns=private, compose
# `cgroup: private`) the container's own cgroup is /sys/fs/cgroup, which the
# engine mounts read-only, and cgroup v2 forbids enabling controllers for the
# children of a cgroup that holds processes. So, when we have CAP_SYS_ADMIN:
#   1. remount /sys/fs/cgroup read-write (only our namespace's subtree is visible);
#   2. move this container's processes into a leaf cgroup, "init",
# after which runbox can enable +memory +pids and create one cgroup per run.
# Without the privileges (the api and migrate services) both steps fail
# quietly and change nothing: those roles never touch cgroups.
set -eu
cg=/sys/fs/cgroup
if [ -f "$cg/cgroup.controllers" ] && [ "$(id -u)" = 0 ]; then
	mount -o remount,rw "$cg" 2>/dev/null || true
	if [ -w "$cg/cgroup.procs" ] && mkdir -p "$cg/init" 2>/dev/null; then
		while read -r pid; do
			echo "$pid" >"$cg/init/cgroup.procs" 2>/dev/null || true
		done <"$cg/cgroup.procs"
	fi
fi
exec runbox "$@"
