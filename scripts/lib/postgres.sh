# shellcheck shell=bash
# Shared helpers for scripts/run and scripts/test: install and drive a private
# PostgreSQL cluster with the Debian binaries in /usr/lib/postgresql/<ver>/bin.
# Source this file; it defines functions only (plus a few PG_* variables).

# runuser and useradd live in /usr/sbin, which a root shell opened with plain `su` does not have on its PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac

# apt waits for the dpkg lock (a fresh cloud machine's unattended upgrades hold it in its first minutes) instead of
# giving up at once.
PG_APT_OPTIONS=(-o DPkg::Lock::Timeout=600)

PG_APT_UPDATED=${PG_APT_UPDATED:-0}
PG_BIN=${PG_BIN:-}

pg_log() { printf '%s\n' "$*" >&2; }
pg_die() { pg_log "error: $*"; exit 1; }

pg_is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command with root privileges (directly when root, else via sudo).
pg_sudo() {
    if pg_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        pg_log "error: need root for: $* (not root and sudo is not installed)"
        return 1
    fi
}

# apt-get install the given packages, running 'apt-get update' once per script.
pg_apt_install() {
    if [ "$PG_APT_UPDATED" != 1 ]; then
        pg_sudo env DEBIAN_FRONTEND=noninteractive apt-get "${PG_APT_OPTIONS[@]}" update || return 1
        PG_APT_UPDATED=1
    fi
    pg_sudo env DEBIAN_FRONTEND=noninteractive apt-get "${PG_APT_OPTIONS[@]}" install -y "$@"
}

# Newest /usr/lib/postgresql/<ver>/bin that has initdb, or nothing.
pg_newest_bindir() {
    local d best="" bestver=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] || continue
        local ver=${d#/usr/lib/postgresql/}; ver=${ver%/bin}
        if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$bestver" "$ver" | sort -V | tail -n1)" = "$ver" ]; then
            best=$d; bestver=$ver
        fi
    done
    [ -n "$best" ] && printf '%s\n' "$best"
}

# Make sure the PostgreSQL server binaries exist (installing them with apt-get
# if needed) and set PG_BIN to the newest bin directory.
pg_ensure_installed() {
    PG_BIN=$(pg_newest_bindir || true)
    if [ -z "$PG_BIN" ]; then
        pg_log "PostgreSQL server binaries not found; installing the 'postgresql' package with apt-get..."
        pg_apt_install postgresql || pg_die "could not install PostgreSQL (apt-get install postgresql failed)"
        PG_BIN=$(pg_newest_bindir || true)
        [ -n "$PG_BIN" ] || pg_die "PostgreSQL installed but no /usr/lib/postgresql/*/bin/initdb found"
    fi
    if pg_is_root && ! id -u postgres >/dev/null 2>&1; then
        pg_log "creating system user 'postgres' (initdb refuses to run as root)..."
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres \
            || pg_die "could not create the postgres user"
    fi
}

# Use the bin directory that matches an existing cluster's major version, if
# that version is installed (a cluster can only be run by its own major version).
pg_use_cluster_version() {
    local dir=$1 ver
    [ -f "$dir/PG_VERSION" ] || return 0
    ver=$(cat "$dir/PG_VERSION")
    if [ -x "/usr/lib/postgresql/$ver/bin/pg_ctl" ]; then
        PG_BIN=/usr/lib/postgresql/$ver/bin
    else
        pg_die "cluster $dir was created by PostgreSQL $ver, which is not installed (have: ${PG_BIN:-none}). Install postgresql-$ver or remove the directory."
    fi
}

# Run a PostgreSQL server-side command as the cluster owner: via
# 'runuser -u postgres' when root (initdb and pg_ctl refuse root), else as is.
pg_as_owner() {
    if pg_is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Give the cluster owner the given paths (no-op unless root).
pg_chown() {
    if pg_is_root; then
        chown -R postgres:postgres "$@"
    fi
}

# pg_init DIR: create DIR and initdb it unless it already holds a cluster.
pg_init() {
    local dir=$1
    # A cluster another user made (scripts/run once under sudo, then as oneself): its folder is unreadable here, and the
    # steps below would fail with a bare "Operation not permitted".
    if [ -d "$dir" ] && ! pg_is_root && [ "$(stat -c %U "$dir")" != "$(id -un)" ]; then
        pg_die "$dir belongs to $(stat -c %U "$dir"), not to $(id -un): a cluster made by another user (scripts/run under sudo?). Run as that user, or remove the folder to start afresh."
    fi
    if [ -f "$dir/PG_VERSION" ]; then
        return 0
    fi
    mkdir -p "$dir"
    chmod 700 "$dir"
    pg_chown "$dir"
    if pg_is_root && ! runuser -u postgres -- test -w "$dir"; then
        pg_die "user postgres cannot write $dir (a parent directory is not searchable by it?). Move the repository, or set EXCHANGEGATEWAY_PGDATA (scripts/run) or TMPDIR (scripts/test) to a folder it can reach."
    fi
    pg_log "initializing PostgreSQL cluster in $dir ..."
    pg_as_owner "$PG_BIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null \
        || pg_die "initdb failed for $dir"
}

# pg_running DIR: true when a server is running on that data directory.
pg_running() {
    local dir=$1
    [ -f "$dir/PG_VERSION" ] || return 1
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1
}

# pg_running_port DIR: port of the running server (line 4 of postmaster.pid).
pg_running_port() {
    sed -n 4p "$1/postmaster.pid" 2>/dev/null
}

# Unix socket directory: DIR itself, unless its path is too long for a socket
# name (108 bytes including "/.s.PGSQL.NNNNN"), then /tmp.
pg_socket_dir() {
    local dir=$1
    if [ "${#dir}" -gt 85 ]; then printf '/tmp\n'; else printf '%s\n' "$dir"; fi
}

# pg_start DIR PORT LOGFILE [extra server options...]: start the server on
# 127.0.0.1:PORT and wait until it accepts connections.
pg_start() {
    local dir=$1 port=$2 logfile=$3; shift 3
    local sockdir opts
    sockdir=$(pg_socket_dir "$dir")
    # pg_ctl hands -o to /bin/sh, so quote the path (it may contain spaces).
    opts="-p $port -c listen_addresses=127.0.0.1 -k '$sockdir'"
    if [ $# -gt 0 ]; then opts="$opts $*"; fi
    touch "$logfile"
    pg_chown "$logfile"
    if ! pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$logfile" -w -t 60 -o "$opts" start >/dev/null; then
        pg_log "PostgreSQL failed to start; last lines of $logfile:"
        tail -n 20 "$logfile" >&2 || true
        return 1
    fi
}

# pg_stop DIR [MODE]: stop the server if it is running (MODE: fast|immediate).
pg_stop() {
    local dir=$1 mode=${2:-fast}
    if pg_running "$dir"; then
        pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -m "$mode" -w -t 60 stop >/dev/null
    fi
}

# pg_port_free PORT: true when nothing accepts TCP connections on 127.0.0.1:PORT.
pg_port_free() {
    local port=$1
    ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
}

# pg_free_port: print a free TCP port, starting at a random one in 20000-40000.
# Below Linux's ephemeral range (32768-60999 by default): a port found free there can be taken by any outgoing
# connection before the server binds it.
pg_free_port() {
    local port=$((20000 + RANDOM % 12000)) i
    for ((i = 0; i < 200; i++)); do
        if pg_port_free "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
        port=$((port + 1))
        [ "$port" -lt 32000 ] || port=20000
    done
    pg_log "error: no free TCP port found in 20000-31999"
    return 1
}

# pg_psql PORT [psql args...]: psql as postgres over TCP on 127.0.0.1.
pg_psql() {
    local port=$1; shift
    PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# pg_createdb PORT NAME: create database NAME unless it exists.
pg_createdb() {
    local port=$1 name=$2 exists
    exists=$(pg_psql "$port" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'") \
        || pg_die "cannot connect to PostgreSQL on 127.0.0.1:$port"
    if [ "$exists" != 1 ]; then
        pg_log "creating database $name ..."
        pg_psql "$port" -d postgres -c "CREATE DATABASE \"$name\"" || pg_die "could not create database $name"
    fi
}
