# shellcheck shell=bash
# shellcheck disable=SC2034  # constants are used by the scripts that source this file
# Shared helpers for kprov's scripts. Source it; it defines functions and constants only.

# The engine docker-up starts lives here, apart from any system daemon.
KPROV_DOCKER_RUN=/run/kprov-docker
KPROV_DOCKER_SOCK="$KPROV_DOCKER_RUN/docker.sock"
KPROV_DOCKER_HOST="unix://$KPROV_DOCKER_SOCK"
KPROV_DOCKER_DATA=/var/lib/kprov-docker
KPROV_DOCKER_LOG=/var/log/kprov-dockerd.log
# Written only by docker-up when it launched the daemon; docker-down stops nothing without it.
KPROV_DOCKER_OWNED="$KPROV_DOCKER_RUN/started-by-docker-up.pid"

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }

# True when a Docker engine answers at the given host (unix:///path or tcp://...).
engine_answers() {
    local host=$1
    case $host in
        unix://*) [ -S "${host#unix://}" ] || return 1 ;;
    esac
    DOCKER_HOST=$host timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# Prints the first reachable engine: $DOCKER_HOST, the default socket, then ours.
find_engine() {
    local host
    for host in ${DOCKER_HOST:+"$DOCKER_HOST"} unix:///var/run/docker.sock "$KPROV_DOCKER_HOST"; do
        if engine_answers "$host"; then
            printf '%s\n' "$host"
            return 0
        fi
    done
    return 1
}

# True when the pid is alive and is a dockerd (guards against pid reuse).
is_dockerd_pid() {
    local pid=$1
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = dockerd ]
}

# The Podman service podman-up starts (its Docker-compatible API), apart from Docker's.
KPROV_PODMAN_RUN=/run/kprov-podman
KPROV_PODMAN_SOCK="$KPROV_PODMAN_RUN/podman.sock"
KPROV_PODMAN_HOST="unix://$KPROV_PODMAN_SOCK"
KPROV_PODMAN_LOG=/var/log/kprov-podman.log
# Written only by podman-up when it launched the service; podman-down stops nothing without it.
KPROV_PODMAN_OWNED="$KPROV_PODMAN_RUN/started-by-podman-up.pid"

# True when the engine at the given host is Podman (its /version names "Podman Engine").
engine_is_podman() {
    DOCKER_HOST=$1 timeout 10 docker version --format '{{range .Server.Components}}{{.Name}};{{end}}' 2>/dev/null |
        grep -q 'Podman Engine'
}

# True when the pid is alive and is a `podman system service`, or podman-up's shell about to
# exec one (guards against pid reuse).
is_podman_service_pid() {
    local pid=$1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
        tr "\0" " " <"/proc/$pid/cmdline" | grep -q -E "^(podman system service |bash -c echo )"
}
