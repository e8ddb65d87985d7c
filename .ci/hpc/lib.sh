# lib.sh - what the start/stop scripts of the test clusters share (sourced, not run).

# alive PIDFILE NAME: the pid in PIDFILE is a live (non-zombie) process called NAME
alive() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] || return 1
    [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$2" ] || return 1
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in Z*) return 1 ;; esac
}

# stop PIDFILE NAME: SIGTERM the recorded pid, wait up to 30 s, then SIGKILL.
stop() {
    local pidfile=$1 name=$2 pid
    if alive "$pidfile" "$name"; then
        pid=$(cat "$pidfile")
        log "stopping $name (pid $pid)"
        kill "$pid"
        for _ in $(seq 150); do alive "$pidfile" "$name" || break; sleep 0.2; done
        if alive "$pidfile" "$name"; then log "$name did not exit, SIGKILL"; kill -9 "$pid"; fi
    fi
    rm -f "$pidfile"
}

# apt_install PACKAGE...: install the Debian packages, keeping their scripts from starting
# daemons by themselves (policy-rc.d's 101 = "not allowed").
apt_install() {
    local added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
    if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
