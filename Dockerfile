# runbox: API and sandboxed workers in one image.
#
#   docker build -t runbox .
#   docker run --rm -p 8080:8080 -e RUNBOX_API_KEYS=demo:change-me \
#     --cap-add SYS_ADMIN --cap-add NET_ADMIN --cgroupns private \
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     -v runbox-data:/var/lib/runbox runbox            # `runbox serve`
#
# Privileges. `runbox api` and `runbox migrate` need none. `runbox worker`
# and `runbox serve` execute programs in a jail built from namespaces,
# cgroups and seccomp, and need exactly these (not --privileged):
#   --cap-add SYS_ADMIN   unshare/clone of mount, PID, IPC, UTS, cgroup and
#                         network namespaces; mount (tmpfs, bind, proc) and
#                         pivot_root inside the jail; sethostname; remounting
#                         /sys/fs/cgroup read-write (scripts/docker-entrypoint.sh).
#   --cap-add NET_ADMIN   bring up the loopback interface of the jail's own,
#                         empty network namespace (SIOCSIFFLAGS). The jail
#                         has no other interface: no network.
#   --cgroupns private    a cgroup namespace whose root is the container's own
#                         cgroup (cgroup v2; the default on v2 hosts), so the
#                         per-run memory/pids/CPU cgroups are created below it
#                         and nothing of the host's hierarchy is visible.
#                         (On a cgroup v1 host, mount the memory, pids and
#                         cpuacct hierarchies read-write instead.)
#   --security-opt seccomp=unconfined
#                         Docker's default profile refuses clone3 (used to
#                         start each step directly in its cgroup) and parts
#                         of mount/unshare/pivot_root; runbox installs its own,
#                         stricter seccomp filter on every jailed program.
#   --security-opt apparmor=unconfined
#                         on AppArmor hosts (Ubuntu, Debian) the docker-default
#                         profile denies mount(2) even with CAP_SYS_ADMIN.
# The other capabilities runbox uses (SETUID/SETGID to run programs as an
# unprivileged uid, SETPCAP to empty their bounding set, KILL, DAC_OVERRIDE)
# are in Docker's default set. The process runs as root in the container
# because it builds the jails; jailed programs never run as root.

# ---- build ----
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/runbox ./cmd/runbox

# ---- runtime ----
FROM debian:bookworm-slim
# The language toolchains of SPEC §3, from Debian packages: the very script
# that CI and development machines use, so the lists cannot diverge.
COPY scripts/install-toolchains.sh /usr/local/lib/runbox/install-toolchains.sh
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates tini \
 && bash /usr/local/lib/runbox/install-toolchains.sh \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/docker-entrypoint.sh /usr/local/bin/runbox-entrypoint
COPY --from=build /out/runbox /usr/local/bin/runbox

# Data (the SQLite file of the embedded default, and the jails' scratch
# mounts) lives on a volume, never in the image's layers.
ENV RUNBOX_DATA_DIR=/var/lib/runbox
# Listen on every interface of the container. runbox refuses a non-loopback
# address without authentication: set RUNBOX_API_KEYS (or
# RUNBOX_API_KEYS_FILE, e.g. a secret) or, on a trusted network only,
# RUNBOX_ALLOW_UNAUTHENTICATED=true.
ENV RUNBOX_HTTP_ADDR=0.0.0.0:8080
ENV RUNBOX_LOG_FORMAT=json
VOLUME ["/var/lib/runbox"]
EXPOSE 8080

# Liveness of the API (the image has no curl: bash's /dev/tcp is enough).
# A worker-only container serves no HTTP: disable this check for it (see
# docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/${RUNBOX_HTTP_ADDR##*:} && printf "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && head -n1 <&3 | grep -q " 200 "'

# tini is PID 1: it forwards SIGTERM (runbox then drains for
# RUNBOX_SHUTDOWN_GRACE) and reaps orphans. The entrypoint script prepares
# cgroup delegation and execs runbox with the arguments.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/runbox-entrypoint"]
CMD ["serve"]
