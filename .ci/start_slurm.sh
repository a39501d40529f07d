#!/usr/bin/env bash
# Start a single-node Slurm (munge, slurmctld, slurmd, and slurmdbd on MariaDB for `sacct`, which submitit
# reads job states from) from the distribution's packages, for the tests of the Slurm executor
# (tests/pipeline/test_slurm.py). Root only; idempotent (a running cluster is left alone).
# Called by .ci/run before `make test`; on a machine where this cannot work the Slurm tests skip themselves.
set -euo pipefail

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "start_slurm: not root or no apt-get: not starting Slurm (the Slurm tests will skip)"; exit 0
fi
if command -v sinfo >/dev/null && timeout 10 sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc' && timeout 10 sacct -n >/dev/null 2>&1; then
  echo "start_slurm: a Slurm cluster already answers"; exit 0
fi
PKGS="slurm-wlm slurmdbd munge mariadb-server"
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  # policy-rc.d: the packages' own service start-up is not wanted (no systemd in a container); we start them
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS >/dev/null; }
fi

HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory must not exceed what slurmd detects, or the node is drained at registration
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 256 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
cat > /etc/slurm/slurm.conf <<CONF
# written by pplaw's .ci/start_slurm.sh: one node, every job runs on it
ClusterName=pplaw-ci
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups in a container: processes are tracked by their parent pid, tasks are not bound
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# accounting through slurmdbd: submitit and the tests read job states with sacct
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

if [ ! -s /etc/munge/munge.key ]; then
  (command -v mungekey >/dev/null && mungekey --create --force) || \
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
sleep 1

# the accounting database: MariaDB on localhost, slurmdbd in front of it
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! pgrep -x mariadbd >/dev/null; then
  nohup /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 >/var/log/slurm/mariadb.log 2>&1 &
fi
for _ in $(seq 1 30); do mysql -u root -e "select 1" >/dev/null 2>&1 && break; sleep 1; done
mysql -u root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost'
  IDENTIFIED BY 'pplawci'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=pplawci
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf
pgrep -x slurmdbd >/dev/null || /usr/sbin/slurmdbd
for _ in $(seq 1 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -n list cluster format=cluster | grep -q pplaw-ci || sacctmgr -i add cluster pplaw-ci >/dev/null

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 1 30); do
  if timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    echo "start_slurm: up: $(sinfo -h -o '%P %D %T %C')"; exit 0
  fi
  sleep 1
done
echo "start_slurm: Slurm did not come up; logs:" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 0  # the Slurm tests skip with the reason; the rest of CI goes on
