#!/usr/bin/env bash
# A long soak (not in CI): one server with every feature on, steady clients,
# a client that connects and disconnects all the time, hostile peers and live
# viewers, sampled once a minute. Prints one line per sample and writes
# soak-report.csv: time, server RSS, threads, open files, clients, fps.
#   scripts/soak.sh [SECONDS]     (default 3600)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
cargo build --release --quiet
bin=target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
export FRAMELINK_TOKEN=soak-secret
port=$((20000 + RANDOM % 20000))
http=$((port + 1))

$bin/framelink-server --listen 127.0.0.1:$port --http 127.0.0.1:$http --no-display \
    --processor motion --record "$work/rec" --record-max-mb 200 --stats-interval 0 \
    --duration "$seconds" --summary-json "$work/server.json" >"$work/server.log" 2>&1 &
server=$!
sleep 1

for i in 1 2 3 4; do
    $bin/framelink-client 127.0.0.1:$port --source test-pattern --name "steady-$i" \
        --stats-interval 0 --duration "$seconds" >/dev/null 2>&1 &
done
# A client that keeps connecting and disconnecting.
( while :; do
    $bin/framelink-client 127.0.0.1:$port --source test-pattern --name churn \
        --width 320 --height 240 --stats-interval 0 --duration 2 >/dev/null 2>&1 || true
  done ) &
# Hostile peers: random bytes, an HTTP request, a wrong token, every second.
( while :; do
    head -c 4096 /dev/urandom | timeout 2 bash -c "cat >/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
    printf 'GET / HTTP/1.1\r\n\r\n' | timeout 2 bash -c "cat >/dev/tcp/127.0.0.1/$port" 2>/dev/null || true
    FRAMELINK_TOKEN=wrong timeout 3 $bin/framelink-client 127.0.0.1:$port --source test-pattern \
        --name intruder --stats-interval 0 --duration 1 >/dev/null 2>&1 || true
    sleep 1
  done ) &
# Browser-camera sockets that upgrade and then send a malformed frame, or
# nothing (and are dropped at the handshake deadline), every second.
( while :; do
    printf 'GET /ws/camera HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x82\x86abcdXXXXXX' |
        timeout 2 bash -c "cat >/dev/tcp/127.0.0.1/$http" 2>/dev/null || true
    sleep 1
  done ) &
# Viewers: one that watches for 10 s at a time, one that never reads.
( while :; do
    timeout 10 curl -s "http://127.0.0.1:$http/stream/1.mjpg?token=soak-secret" >/dev/null || true
  done ) &
( exec 3<>/dev/tcp/127.0.0.1/$http; printf 'GET /stream/2.mjpg?token=soak-secret HTTP/1.1\r\n\r\n' >&3; sleep "$seconds" ) &

# rss_kb is all resident memory; anon_kb the program's own (heap, stacks), file_kb
# the code and libraries paged in from disk (grows as new code paths first run,
# bounded by the binary's size).
echo "elapsed_s,rss_kb,anon_kb,file_kb,threads,fds,clients,fps_accepted_total" | tee soak-report.csv
start=$(date +%s)
while kill -0 $server 2>/dev/null; do
    sleep 60
    kill -0 $server 2>/dev/null || break
    rss=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
    anon=$(awk '/RssAnon/ {print $2}' /proc/$server/status)
    file=$(awk '/RssFile/ {print $2}' /proc/$server/status)
    threads=$(awk '/Threads/ {print $2}' /proc/$server/status)
    fds=$(ls /proc/$server/fd | wc -l)
    read -r clients fps < <(curl -s "http://127.0.0.1:$http/stats.json?token=soak-secret" |
        python3 -c 'import json,sys; s=json.load(sys.stdin); print(len(s["clients"]), round(sum(c["fps_accepted"] for c in s["clients"]),1))')
    echo "$(( $(date +%s) - start )),$rss,$anon,$file,$threads,$fds,$clients,$fps" | tee -a soak-report.csv
done
wait $server || true
echo "server summary:"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print({k: s[k] for k in ("frames_received","frames_accepted","frames_dropped_stale","frames_rejected","frames_processed","frames_process_failed")}); print("recording:", s["recording"])' "$work/server.json"
grep -c "refused" "$work/server.log" | sed 's/^/refusals logged: /'
