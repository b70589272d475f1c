#!/usr/bin/env bash
# A real single-node SLURM cluster (with accounting) on loopback, for tests: up | down | status.
#
#   scripts/local_slurm.sh up       # install what is missing (Debian packages), write configs, start daemons, wait
#   scripts/local_slurm.sh status   # daemons' pids and liveness, sinfo, squeue
#   scripts/local_slurm.sh down     # stop exactly the processes `up` started (pid files), leave nothing running
#
# Everything lives in $SLURM_SCRATCH (default /tmp/simplex-slurm): etc/ (slurm.conf, slurmdbd.conf, gres.conf, my.cnf),
# pids/<daemon>.pid, log/, state/, spool/, mysql/ (private MariaDB datadir), munge/ (private key + socket), env.sh.
# Nothing is written to /etc: client tools find the cluster through SLURM_CONF, which `source $SCRATCH/env.sh` sets
# (tests/slurm_utils.py does this for pytest). See docs/SLURM.md.
#
# Knobs (environment, read at `up`): SLURM_SCRATCH, SLURM_MAX_ARRAY_SIZE (default 1001), SLURM_CLUSTER_NAME (simplex),
# SLURM_NODE_CPUS (default nproc), SLURM_FAKE_GPUS (2), SLURM_CTLD_PORT (6817), SLURM_SLURMD_PORT (6818),
# SLURM_DBD_PORT (6819), SLURM_MYSQL_PORT (3307), SLURM_UP_TIMEOUT (seconds per wait, 90), SLURM_SKIP_APT=1.
set -euo pipefail

SCRATCH="$(realpath -m "${SLURM_SCRATCH:-/tmp/simplex-slurm}")"
CLUSTER="${SLURM_CLUSTER_NAME:-simplex}"
MAX_ARRAY="${SLURM_MAX_ARRAY_SIZE:-1001}"
CTLD_PORT="${SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${SLURM_DBD_PORT:-6819}"
DB_PORT="${SLURM_MYSQL_PORT:-3307}"
NODE_CPUS="${SLURM_NODE_CPUS:-$(nproc)}"
FAKE_GPUS="${SLURM_FAKE_GPUS:-2}"
WAIT_S="${SLURM_UP_TIMEOUT:-90}"
HOST="$(hostname -s)"

CONF="$SCRATCH/etc/slurm.conf"
PIDS="$SCRATCH/pids"
LOGS="$SCRATCH/log"
MUNGE_SOCKET="$SCRATCH/munge/munge.socket.2"
DB_SOCKET="$SCRATCH/mysql.sock"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd slurm-wlm-mysql-plugin mariadb-server)
# Start order; `down` stops in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
log() { printf '[local_slurm %5ss] %s\n' "$(elapsed)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# The executable a daemon's pid must be running, to tell our daemon from a recycled pid.
daemon_exe() {
  case "$1" in
    munged) readlink -f /usr/sbin/munged ;;
    mariadbd) readlink -f /usr/sbin/mariadbd ;;
    slurmdbd) readlink -f /usr/sbin/slurmdbd ;;
    slurmctld) readlink -f /usr/sbin/slurmctld ;;
    slurmd) readlink -f /usr/sbin/slurmd ;;
  esac
}

# Prints the pid of daemon $1 when its pid file names a live process running the expected executable.
alive_pid() {
  local f="$PIDS/$1.pid" pid exe
  [[ -s "$f" ]] || return 1
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ "$exe" == "$(daemon_exe "$1")" ]] || return 1
  echo "$pid"
}

# wait_until <what> <seconds> <command...>: polls the command every 0.5 s.
wait_until() {
  local what="$1" limit="$2" deadline
  shift 2
  deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then return 1; fi
    sleep 0.5
  done
}

show_log_tail() {
  local name="$1"
  for f in "$LOGS/$name.log" "$LOGS/$name.out"; do
    [[ -s "$f" ]] && { echo "----- tail $f" >&2; tail -n 25 "$f" >&2; }
  done
  return 0
}

fail_up() {
  log "ERROR: $1" >&2
  show_log_tail "$2"
  log "stopping what was started" >&2
  do_down >&2 || true
  exit 1
}

# start_daemon <name> <argv...>: new session, cwd in scratch (daemons dump core into their cwd), no core files,
# stdin closed and stdout/stderr in log/<name>.out so the caller's pipes (make, CI) are not held open.
start_daemon() {
  local name="$1" pid
  shift
  ( cd "$SCRATCH/run" && ulimit -c 0 && exec setsid "$@" </dev/null >>"$LOGS/$name.out" 2>&1 ) &
  pid=$!
  echo "$pid" >"$PIDS/$name.pid"
  # setsid does not fork here (we are not a process-group leader), so $! is the daemon itself; check it.
  sleep 0.2
  alive_pid "$name" >/dev/null || { sleep 1; alive_pid "$name" >/dev/null; } ||
    fail_up "$name (pid $pid) exited right after start" "$name"
}

install_packages() {
  local missing=() bin
  declare -A need=([slurmctld]=slurmctld [slurmd]=slurmd [sinfo]=slurm-client [munged]=munge [slurmdbd]=slurmdbd
    [mariadbd]=mariadb-server [mariadb-install-db]=mariadb-server)
  for bin in "${!need[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("${need[$bin]}")
  done
  [[ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/accounting_storage_mysql.so ]] ||
    compgen -G '/usr/lib/*/slurm-wlm/accounting_storage_mysql.so' >/dev/null || missing+=(slurm-wlm-mysql-plugin)
  if (( ${#missing[@]} == 0 )); then
    log "packages present, skipping apt"
    return 0
  fi
  [[ "${SLURM_SKIP_APT:-0}" == 1 ]] && die "missing packages (${missing[*]}) and SLURM_SKIP_APT=1"
  log "installing from Debian: ${PACKAGES[*]}"
  # Keep package scripts from starting system-wide munge/mariadb/slurm services (no systemd here anyway).
  local policy_added=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  local rc=0
  {
    apt-get -o DPkg::Lock::Timeout=300 update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        "${PACKAGES[@]}"
  } >"$LOGS/apt.log" 2>&1 || rc=$?
  (( policy_added )) && rm -f /usr/sbin/policy-rc.d
  (( rc == 0 )) || { tail -n 30 "$LOGS/apt.log" >&2; die "apt-get failed (rc $rc), see $LOGS/apt.log"; }
  log "apt done"
}

write_configs() {
  local real_mem gres_files i targets=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
  # RealMemory a bit under the machine's (slurmd drains a node that has less than configured).
  real_mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  (( FAKE_GPUS >= 1 && FAKE_GPUS <= 5 )) || die "SLURM_FAKE_GPUS must be 1..5"
  mkdir -p "$SCRATCH/dev"
  for (( i = 0; i < FAKE_GPUS; i++ )); do
    ln -sfn "${targets[$i]}" "$SCRATCH/dev/nvidia$i"
  done
  local overrides=""
  (( NODE_CPUS > $(nproc) )) && overrides="SlurmdParameters=config_overrides"

  cat >"$CONF" <<EOF
# Written by scripts/local_slurm.sh up; regenerated at every start.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Private munge socket; cred_expire=10 s so a requeued job restarts ~10 s later (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/run/slurmctld.pid
SlurmdPidFile=$SCRATCH/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
# Test-friendly timings: schedule quickly, kill quickly, keep finished jobs visible in squeue for 5 minutes.
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=2
InactiveLimit=0
MinJobAge=300
MessageTimeout=10
JobRequeue=1
MaxArraySize=$MAX_ARRAY
MaxJobCount=20000
GresTypes=gpu
$overrides
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$NODE_CPUS RealMemory=$real_mem Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=24:00:00 DefaultTime=01:00:00 State=UP
EOF

  # Fake GPUs: the gres plugin only needs device files; symlinks to character devices do.
  echo "Name=gpu File=$SCRATCH/dev/nvidia[0-$((FAKE_GPUS - 1))]" >"$SCRATCH/etc/gres.conf"

  cat >"$SCRATCH/etc/slurmdbd.conf" <<EOF
# Written by scripts/local_slurm.sh up.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdAddr=127.0.0.1
DbdHost=$HOST
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$SCRATCH/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(<"$SCRATCH/etc/db.pass")
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$SCRATCH/etc/slurmdbd.conf"   # slurmdbd refuses a config others can read

  cat >"$SCRATCH/etc/my.cnf" <<EOF
# Private MariaDB for slurmdbd (written by scripts/local_slurm.sh up); read with --defaults-file only.
[mariadbd]
user=root
datadir=$SCRATCH/mysql
socket=$DB_SOCKET
port=$DB_PORT
bind-address=127.0.0.1
pid-file=$SCRATCH/run/mariadbd.pid
log-error=$LOGS/mariadbd.log
skip-name-resolve
skip-log-bin
innodb_buffer_pool_size=128M
innodb_log_file_size=48M
innodb_lock_wait_timeout=900
innodb_flush_log_at_trx_commit=0
max_connections=50
[client]
socket=$DB_SOCKET
user=root
EOF

  cat >"$SCRATCH/env.sh" <<EOF
# Source this to use the local SLURM test cluster (written by scripts/local_slurm.sh up).
export SLURM_CONF=$CONF
export SIMPLEX_SLURM_SCRATCH=$SCRATCH
EOF
}

init_mariadb_datadir() {
  [[ -e "$SCRATCH/mysql/.simplex-initialised" ]] && return 0
  log "initialising MariaDB datadir $SCRATCH/mysql"
  rm -rf "$SCRATCH/mysql"
  mkdir -p "$SCRATCH/mysql"
  mariadb-install-db --defaults-file="$SCRATCH/etc/my.cnf" --user=root --datadir="$SCRATCH/mysql" \
    --auth-root-authentication-method=socket --skip-test-db >"$LOGS/mariadb-install-db.log" 2>&1 ||
    { tail -n 30 "$LOGS/mariadb-install-db.log" >&2; die "mariadb-install-db failed"; }
}

do_up() {
  mkdir -p "$SCRATCH"/{etc,pids,log,state,spool,run,munge}
  chmod 700 "$SCRATCH/munge"
  local running=() name
  for name in "${DAEMONS[@]}"; do
    alive_pid "$name" >/dev/null && running+=("$name")
  done
  if (( ${#running[@]} == ${#DAEMONS[@]} )); then
    log "already running (scratch $SCRATCH): nothing to do; 'down' first to change settings"
    export SLURM_CONF="$CONF"
    local cur
    cur=$(scontrol show config 2>/dev/null | awk '$1 == "MaxArraySize" {print $3}')
    [[ -n "$cur" && "$cur" != "$MAX_ARRAY" ]] &&
      log "note: the running cluster has MaxArraySize=$cur (SLURM_MAX_ARRAY_SIZE=$MAX_ARRAY ignored)"
    return 0
  fi
  if (( ${#running[@]} > 0 )); then
    log "partly running (${running[*]}): stopping it and starting afresh"
    do_down
    mkdir -p "$SCRATCH"/{pids,run}
  fi
  rm -f "$PIDS"/*.pid

  # Another cluster (another scratch dir) or service on our ports would make a daemon die with a bind error.
  local port
  for port in "$DB_PORT" "$DBD_PORT" "$CTLD_PORT" "$SLURMD_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "127.0.0.1:$port is already in use (another local cluster with a different SLURM_SCRATCH?); stop it or set SLURM_MYSQL_PORT/SLURM_DBD_PORT/SLURM_CTLD_PORT/SLURM_SLURMD_PORT"
    fi
  done

  install_packages

  [[ -s "$SCRATCH/etc/db.pass" ]] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$SCRATCH/etc/db.pass"; }
  chmod 600 "$SCRATCH/etc/db.pass"
  write_configs
  export SLURM_CONF="$CONF"

  # munge: private key and socket; --force because we run as root and the scratch dir lives under /tmp.
  [[ -s "$SCRATCH/munge/munge.key" ]] || {
    head -c 1024 /dev/urandom >"$SCRATCH/munge/munge.key"
    chmod 400 "$SCRATCH/munge/munge.key"
  }
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  start_daemon munged munged --foreground --force --key-file="$SCRATCH/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$SCRATCH/run/munged.pid" --log-file="$LOGS/munged.log" --seed-file="$SCRATCH/munge/munged.seed"
  wait_until munge 20 bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'" ||
    fail_up "munged did not answer" munged
  log "munged up (pid $(alive_pid munged))"

  init_mariadb_datadir
  rm -f "$DB_SOCKET"
  start_daemon mariadbd mariadbd --defaults-file="$SCRATCH/etc/my.cnf"
  wait_until mariadb "$WAIT_S" mariadb-admin --defaults-file="$SCRATCH/etc/my.cnf" ping ||
    fail_up "MariaDB did not answer on $DB_SOCKET" mariadbd
  if [[ ! -e "$SCRATCH/mysql/.simplex-initialised" ]]; then
    # slurmdbd connects over TCP to 127.0.0.1 with a password (root authenticates through the unix socket only).
    local pass
    pass=$(<"$SCRATCH/etc/db.pass")
    mariadb --defaults-file="$SCRATCH/etc/my.cnf" -e "
      CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
      CREATE DATABASE IF NOT EXISTS slurm_acct_db;
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
      FLUSH PRIVILEGES;" || fail_up "could not create the slurm database user" mariadbd
    touch "$SCRATCH/mysql/.simplex-initialised"
  fi
  log "mariadbd up (pid $(alive_pid mariadbd), 127.0.0.1:$DB_PORT)"

  start_daemon slurmdbd slurmdbd -D
  wait_until slurmdbd "$WAIT_S" sacctmgr -n list cluster ||
    fail_up "slurmdbd did not answer on port $DBD_PORT" slurmdbd
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail_up "sacctmgr add cluster $CLUSTER failed" slurmdbd
  fi
  log "slurmdbd up (pid $(alive_pid slurmdbd), port $DBD_PORT), cluster '$CLUSTER' registered"

  # Through the name slurmctld (the Debian alternative), not slurmctld-wlm.
  start_daemon slurmctld /usr/sbin/slurmctld -D -f "$CONF"
  wait_until slurmctld "$WAIT_S" scontrol ping ||
    fail_up "slurmctld did not answer on port $CTLD_PORT" slurmctld
  log "slurmctld up (pid $(alive_pid slurmctld), port $CTLD_PORT)"
  # Jobs recovered from saved state (an earlier cluster was killed rather than brought down) would keep the node
  # allocated and confuse tests: `up` means an empty queue. Job ids keep counting up, so accounting never sees a
  # job id twice (which `slurmctld -c` would cause).
  local stale
  stale=$(squeue -h -o %A 2>/dev/null || true)
  if [[ -n "$stale" ]]; then
    log "cancelling jobs left from an earlier run: $(echo $stale)"
    # shellcheck disable=SC2086
    scancel $stale 2>/dev/null || true
  fi

  start_daemon slurmd /usr/sbin/slurmd -D -f "$CONF"
  node_idle() { [[ "$(sinfo -h -n "$HOST" -o %T 2>/dev/null)" == idle* ]]; }
  if ! wait_until node 15 node_idle; then
    # A node left DOWN/DRAIN in saved state from an earlier run: resume it once.
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    wait_until node "$WAIT_S" node_idle ||
      fail_up "node $HOST not idle: $(sinfo -h -n "$HOST" -o '%T %E' 2>&1); jobs: $(squeue -h -t all 2>&1)" slurmd
  fi
  log "slurmd up (pid $(alive_pid slurmd)), node $HOST idle"
  wait_until sacct "$WAIT_S" sacct -n -X -S now-1hours || fail_up "sacct does not answer" slurmdbd
  log "cluster '$CLUSTER' up: node $HOST CPUs=$NODE_CPUS gpu:$FAKE_GPUS MaxArraySize=$MAX_ARRAY"
  log "use it with: source $SCRATCH/env.sh   (sets SLURM_CONF=$CONF)"
}

# Processes of this cluster's jobs that outlive slurmd (it was killed, or scancel failed). Never found by name alone:
# slurmstepd by its cwd (inherited from our slurmd: $SCRATCH/run); job processes by SLURM_CONF=$CONF + SLURM_JOB_ID
# in their environment (slurmstepd rewrites its own environ area with its process title, so that cannot be used).
our_job_pids() {  # our_job_pids stepd|job
  local d pid exe env self_chain=" $$ $PPID "
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ "$self_chain" == *" $pid "* ]] && continue
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    if [[ "$1" == stepd ]]; then
      [[ "$exe" == */slurmstepd* && "$(readlink -f "$d/cwd" 2>/dev/null)" == "$SCRATCH/run" ]] && echo "$pid"
    else
      [[ "$exe" == */slurmstepd* ]] && continue
      env=$(tr '\0' '\n' 2>/dev/null <"$d/environ") || continue
      grep -qxF "SLURM_CONF=$CONF" <<<"$env" && grep -q '^SLURM_JOB_ID=' <<<"$env" && echo "$pid"
    fi
  done
  return 0
}

stop_pid() {  # stop_pid <label> <pid>: TERM, wait up to 30 s, then KILL
  local label="$1" pid="$2" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for (( i = 0; i < 120; i++ )); do
    kill -0 "$pid" 2>/dev/null || { log "stopped $label (pid $pid)"; return 0; }
    sleep 0.25
  done
  log "$label (pid $pid) ignored TERM for 30 s: KILL"
  kill -KILL "$pid" 2>/dev/null || true
  for (( i = 0; i < 20; i++ )); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
}

stop_group() {  # stop_group <daemon...>: TERM all, then wait for each
  local name pid pids=()
  for name in "$@"; do
    if pid=$(alive_pid "$name"); then
      stop_pid "$name" "$pid" &
      pids+=($!)
    fi
  done
  (( ${#pids[@]} == 0 )) || wait "${pids[@]}"
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}

do_down() {
  export SLURM_CONF="$CONF"
  local pid i
  if alive_pid slurmctld >/dev/null; then
    # Jobs outlive slurmd; cancel them first so that their slurmstepd and processes end cleanly.
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n "$jobs" ]]; then
      log "cancelling jobs: $(echo $jobs)"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for (( i = 0; i < 40; i++ )); do
        alive_pid slurmd >/dev/null || break  # nobody to carry out the cancel: leftovers are handled below
        [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && break
        sleep 0.5
      done
    fi
  fi
  # Reverse start order, in groups stopped in parallel: slurmctld still reports to slurmdbd as it exits, and
  # slurmdbd still needs MariaDB and munge.
  stop_group slurmd slurmctld
  stop_group slurmdbd
  stop_group mariadbd munged
  local leftovers
  leftovers=$(our_job_pids job; our_job_pids stepd)
  if [[ -n "$leftovers" ]]; then
    log "leftover job processes of this cluster: $(echo $leftovers)"
    for pid in $leftovers; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.5
  fi
  rm -f "$MUNGE_SOCKET" "$DB_SOCKET"
  log "down (scratch $SCRATCH kept; remove it for a fresh database and state)"
}

do_status() {
  export SLURM_CONF="$CONF"
  local name pid all=0
  echo "scratch: $SCRATCH   SLURM_CONF=$CONF"
  for name in "${DAEMONS[@]}"; do
    if pid=$(alive_pid "$name"); then
      printf '  %-10s pid %-8s alive\n' "$name" "$pid"
    else
      all=1
      printf '  %-10s %s\n' "$name" "$( [[ -s $PIDS/$name.pid ]] && echo "pid $(<"$PIDS/$name.pid") DEAD" || echo "not running")"
    fi
  done
  if alive_pid slurmctld >/dev/null; then
    echo "--- sinfo"; sinfo || true
    echo "--- squeue"; squeue || true
    echo "--- MaxArraySize: $(scontrol show config | awk '$1 == "MaxArraySize" {print $3}')"
  fi
  return $all
}

case "${1:-}" in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
