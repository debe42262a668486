#!/usr/bin/env bash
# Start N replicas of the app and nginx in front of them on this machine; Ctrl-C stops them all.
#
#   HEMATOVISION_DATA=../shared/data HEMATOVISION_DB=postgresql+psycopg://USER@127.0.0.1:5432/DB \
#     deploy/run-local.sh 2            # then open http://127.0.0.1:8080
#   deploy/run-local.sh --write-config DIR 2   # only write the nginx configuration into DIR
#
# Replica i listens on 127.0.0.1:$((HV_FIRST_PORT + i)) (default 8511, 8512, ...); nginx on
# $HV_LISTEN (default 127.0.0.1:8080) with the affinity of deploy/hematovision.conf.template.
# Every replica upgrades the database at start (serve.py); they share var/ (README, "Scale out").
set -euo pipefail
cd "$(dirname "$0")/.."

config_only=""
if [[ ${1:-} == --write-config ]]; then config_only=$2; shift 2; fi
replicas=${1:-2}
if ! [[ $replicas =~ ^[1-9]$ ]]; then
  echo "usage: $0 [--write-config DIR] N   (N = 1 to 9 replicas)" >&2
  exit 2
fi
first_port=${HV_FIRST_PORT:-8511}
listen=${HV_LISTEN:-127.0.0.1:8080}
python=${PYTHON:-python}

render_config() {  # the main nginx.conf for a run folder ($1), the template included
  local run_dir=$1 servers="" i
  for ((i = 0; i < replicas; i++)); do
    servers+="server 127.0.0.1:$((first_port + i)); "
  done
  sed -e "/^ *#/!s|\${HV_LISTEN}|$listen|" -e "/^ *#/!s|\${HV_UPSTREAM_SERVERS}|$servers|" \
    deploy/hematovision.conf.template > "$run_dir/hematovision.conf"
  cat <<CONF
# Written by deploy/run-local.sh for $replicas replica(s); deleted when it stops.
worker_processes 1;          # nginx's share of a 2-core machine is small
pid $run_dir/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $run_dir/tmp/client_body;
    proxy_temp_path $run_dir/tmp/proxy;
    fastcgi_temp_path $run_dir/tmp/fastcgi;
    uwsgi_temp_path $run_dir/tmp/uwsgi;
    scgi_temp_path $run_dir/tmp/scgi;
    include $run_dir/hematovision.conf;
}
CONF
}

run_dir=${config_only:-$(mktemp -d /tmp/hematovision-local.XXXXXX)}
mkdir -p -m 1777 "$run_dir/tmp"   # nginx's workers drop root privileges and write here
chmod 755 "$run_dir"
render_config "$run_dir" > "$run_dir/nginx.conf"
if [[ -n $config_only ]]; then
  echo "run-local: wrote $run_dir/nginx.conf (check: nginx -t -p $run_dir -c $run_dir/nginx.conf)" >&2
  exit 0
fi

pids=()
stop() {  # only what this script started: each replica's process group, then nginx
  trap - INT TERM EXIT
  local pid
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run_dir"
  echo "run-local: stopped" >&2
}
trap stop INT TERM EXIT

if [[ -z ${HEMATOVISION_DB:-} ]]; then
  echo "run-local: HEMATOVISION_DB is not set: the replicas share the SQLite file under var/" \
       "(fine on one machine; set a postgresql+psycopg:// URL to rehearse a real deployment)" >&2
fi
for ((i = 0; i < replicas; i++)); do
  # setsid: each replica leads its own process group, so stopping it stops its heatmap workers.
  setsid "$python" serve.py --server.port "$((first_port + i))" --server.address 127.0.0.1 &
  pids+=($!)
done
for ((i = 0; i < replicas; i++)); do
  "$python" -c "from benchmarks.server import wait_healthy; wait_healthy('http://127.0.0.1:$((first_port + i))', timeout=180)"
done
nginx -p "$run_dir" -c "$run_dir/nginx.conf" -g "daemon off;" &
pids+=($!)
echo "run-local: $replicas replica(s) on ports $first_port-$((first_port + replicas - 1)), nginx on http://$listen (Ctrl-C stops all)" >&2
wait -n "${pids[@]}"  # returns when any of them ends: then stop the others too
