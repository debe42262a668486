#!/usr/bin/env bash
# N replicas of the app behind nginx on this machine, on fixed ports; Ctrl-C stops them all.
#
#   HEMATOVISION_DATA=../shared/data HEMATOVISION_DB=postgresql+psycopg://USER@127.0.0.1:5432/DB \
#     deploy/run-local.sh 2            # then open http://127.0.0.1:8080
#   deploy/run-local.sh --write-config DIR 2   # only write the nginx configuration into DIR
#
# `python serve.py` does the same on its own (one replica per core, nginx on 8501: README);
# this script pins the ports. Replica i listens on 127.0.0.1:$((HV_FIRST_PORT + i)) (default
# 8511, 8512, ...), nginx on $HV_LISTEN (default 127.0.0.1:8080) with the affinity of
# deploy/hematovision.conf.template. The replicas share var/ (README, "Scale out").
set -euo pipefail
cd "$(dirname "$0")/.."

config_only=""
if [[ ${1:-} == --write-config ]]; then config_only=$2; shift 2; fi
replicas=${1:-2}
if ! [[ $replicas =~ ^[1-9]$ ]]; then
  echo "usage: $0 [--write-config DIR] N   (N = 1 to 9 replicas)" >&2
  exit 2
fi
export HV_FIRST_PORT=${HV_FIRST_PORT:-8511}
export HV_LISTEN=${HV_LISTEN:-127.0.0.1:8080}
python=${PYTHON:-python}

if [[ -n $config_only ]]; then
  mkdir -p "$config_only"
  "$python" -c 'import os, sys, replica_set
replica_set.write_nginx_config(__import__("pathlib").Path(sys.argv[1]).resolve(),
                               os.environ["HV_LISTEN"], replica_set.replica_ports(int(sys.argv[2])))' \
    "$config_only" "$replicas"
  echo "run-local: wrote $config_only/nginx.conf (check: nginx -t -p $config_only -c $config_only/nginx.conf)" >&2
  exit 0
fi
if [[ -z ${HEMATOVISION_DB:-} ]]; then
  echo "run-local: HEMATOVISION_DB is not set: the replicas share the SQLite file under var/" \
       "(fine on one machine; set a postgresql+psycopg:// URL to rehearse a real deployment)" >&2
fi
# exec: Ctrl-C and SIGTERM reach serve.py, which stops every replica and nginx.
exec "$python" serve.py --replicas "$replicas"
