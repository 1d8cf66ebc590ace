#!/usr/bin/env bash
# profile.sh — instructions and heap allocations per value on netchan's hot
# paths, counted by valgrind (repeatable on a noisy machine, unlike time).
#
#   apps/netchan-bench/profile.sh [BENCH-BINARY] [N1] [N2]
#   CAPS="64" apps/netchan-bench/profile.sh ...   (default CAPS="64 0")
#
# For capacity 64 (stream) and 0 (rendezvous), three processes run as in the
# bench (owner, one sender thread, one receiver thread; netchan-bench's own
# roles), with one of them under callgrind, then under DHAT, once for N1 and
# once for N2 values: (count(N2) - count(N1)) / (N2 - N1) is the cost of one
# value without start-up and TLS handshakes. Callgrind files stay in
# $PROFILE_OUT (default /tmp/netchan-profile) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/../.."

bench=${1:-build/dev/apps/netchan-bench}
n1=${2:-2000}
n2=${3:-12000}
out=${PROFILE_OUT:-/tmp/netchan-profile}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash config/make-dev-certs.sh --dir "$tmp" owner sender receiver >/dev/null

# Certificates, and timeouts long enough for a process under valgrind
# (~50x slower): connecting, requests, heartbeats.
certs() {
  echo "--openssl.certificate=$tmp/$1.pem --openssl.key=$tmp/$1-key.pem" \
       "--openssl.cafile=$tmp/ca.pem --netchan.connect-timeout=300s" \
       "--netchan.request-timeout=300s --middleman.heartbeat-interval=10s" \
       "--middleman.connection-timeout=600s"
}

# run CAP WHO TOOL N: prints the tool's count for process WHO.
run() {
  local cap=$1 who=$2 tool=$3 n=$4
  local log="$tmp/$who.$tool.log"
  local file="$out/$tool.cap$cap.$who.$n"
  local vg=(valgrind --tool="$tool" --log-file="$log")
  if [ "$tool" = callgrind ]; then
    vg+=(--callgrind-out-file="$file")
  else
    vg+=(--dhat-out-file="$file")
  fi
  local wrap_owner=() wrap_sender=() wrap_receiver=()
  case $who in
    owner) wrap_owner=("${vg[@]}") ;;
    sender) wrap_sender=("${vg[@]}") ;;
    receiver) wrap_receiver=("${vg[@]}") ;;
  esac
  # shellcheck disable=SC2046
  coproc owner_proc { exec timeout 900 "${wrap_owner[@]}" "$bench" --role owner --to ch \
    --threads "$cap" -- $(certs owner) --netchan.listen=127.0.0.1:0; }
  local line=""
  while read -r -t 120 line <&"${owner_proc[0]}"; do
    [[ $line == ready* ]] && break
  done
  local where=${line#ready }
  # shellcheck disable=SC2046
  timeout 900 "${wrap_receiver[@]}" "$bench" --role receiver --to "$where" --count "$n" \
    -- $(certs receiver) >"$tmp/receiver.out" &
  local receiver_pid=$!
  # shellcheck disable=SC2046
  timeout 900 "${wrap_sender[@]}" "$bench" --role stream-sender --to "$where" \
    --count "$n" -- $(certs sender) >"$tmp/sender.out"
  wait "$receiver_pid" || true
  # shellcheck disable=SC2154 # set by coproc
  local owner_pid=$owner_proc_PID
  eval "exec ${owner_proc[1]}>&-"
  wait "$owner_pid" || true
  grep -q "received $n" "$tmp/receiver.out" \
    || { echo "profile.sh: the receiver did not get $n values" >&2; exit 1; }
  if [ "$tool" = callgrind ]; then
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log"
  else
    sed -n 's/.*Total: .* in \([0-9,]*\) blocks.*/\1/p' "$log" | tr -d ,
  fi
}

printf '%-9s %-9s %14s %14s\n' capacity process "instr/value" "allocs/value"
for cap in ${CAPS:-64 0}; do
  for who in sender owner receiver; do
    i1=$(run "$cap" "$who" callgrind "$n1")
    i2=$(run "$cap" "$who" callgrind "$n2")
    a1=$(run "$cap" "$who" dhat "$n1")
    a2=$(run "$cap" "$who" dhat "$n2")
    printf '%-9s %-9s %14d %14.1f\n' "$cap" "$who" \
      $(((i2 - i1) / (n2 - n1))) "$(echo "($a2 - $a1) / ($n2 - $n1)" | bc -l)"
  done
done
echo "callgrind files: $out (callgrind_annotate --inclusive=yes FILE)"
