#!/bin/bash
# soak.sh [-d SECONDS] [-r MSGS_PER_S] [-i SAMPLE_S] [-o CSV] [-b MAILSRV_BINARY]
#
# The soak of issue 10 (not in CI): mailsrv relays a steady load to a
# smtp-sink for an hour (default), and every SAMPLE_S seconds the daemon's
# memory (PSS and RSS from /proc), its live heap and its goroutine count
# (through `mailsrv postfix profile`), the files queued and kept for
# reuse and the spool's disk use are written to a CSV. A server that
# leaks shows it as a slope; bench/soak-summary.py prints the first and
# last quarter's averages and the fitted growth per hour.
#
# The load: smtp-source runs of 10 sessions, one message per connection,
# 1 KiB each, paced to MSGS_PER_S (default 100). Needs Postfix's
# smtp-source and smtp-sink. Loopback only; a mktemp -d folder removed at
# exit (the CSV is kept).
set -u
DUR=3600 RATE=100 EVERY=30 CSV=soak.csv BIN=""
while getopts "d:r:i:o:b:" o; do
	case $o in
	d) DUR=$OPTARG ;;
	r) RATE=$OPTARG ;;
	i) EVERY=$OPTARG ;;
	o) CSV=$OPTARG ;;
	b) BIN=$OPTARG ;;
	*) sed -n 2,3p "$0" >&2; exit 2 ;;
	esac
done
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null || { echo "smtp-source/smtp-sink not found: apt-get install postfix" >&2; exit 2; }
work=$(mktemp -d /tmp/soak.XXXXXX)
chmod 755 "$work"
CSV=$(readlink -f "$CSV")
stopall() {
	[ -n "${loadpid:-}" ] && kill "$loadpid" 2>/dev/null
	[ -n "${sinkpid:-}" ] && kill "$sinkpid" 2>/dev/null
	[ -f "$work/spool/pid/master.pid" ] && "$BIN" -c "$work/mailsrv.toml" postfix stop >/dev/null 2>&1
	rm -rf "$work"
}
trap stopall EXIT
if [ -z "$BIN" ]; then
	BIN=$work/mailsrv
	build_mailsrv "$BIN" || exit 1
fi
BIN=$(readlink -f "$BIN")
owner=nobody
[ "$(id -u)" = 0 ] || owner=$(id -un)
mailsrv_config "$owner" 127.0.0.1:10045 'relayhost = "[127.0.0.1]:10046"' >"$work/mailsrv.toml"
sinkuser=()
[ "$(id -u)" = 0 ] && sinkuser=(-u nobody)
smtp-sink "${sinkuser[@]}" 127.0.0.1:10046 1000 >/dev/null 2>&1 &
sinkpid=$!
(cd "$work" && "$BIN" -c mailsrv.toml postfix start >/dev/null) || exit 1
pid=$(tr -dc 0-9 <"$work/spool/pid/master.pid")

# The load, paced: each second's share is sent as one smtp-source run.
(
	end=$((SECONDS + DUR))
	while [ $SECONDS -lt $end ]; do
		t0=$(date +%s.%N)
		timeout 30 smtp-source -s 10 -m "$RATE" -l 1024 -M client.soak.example -f s@soak.example -t r@remote.example 127.0.0.1:10045 >/dev/null 2>&1
		python3 -c "import time,sys; d=1-(time.time()-$t0); time.sleep(max(0,d))"
	done
) &
loadpid=$!

echo "t_s,pss_kb,rss_kb,heap_inuse_mb,goroutines,queued,recycled,spool_kb" >"$CSV"
start=$SECONDS
while kill -0 "$loadpid" 2>/dev/null; do
	t=$((SECONDS - start))
	pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null)
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
	"$BIN" -c "$work/mailsrv.toml" postfix profile heap -o "$work/heap.pb" >/dev/null 2>&1
	heap=$(go tool pprof -sample_index=inuse_space -unit=mb -top "$work/heap.pb" 2>/dev/null | sed -n 's/.* of \([0-9.]*\)MB total.*/\1/p' | head -1)
	"$BIN" -c "$work/mailsrv.toml" postfix profile goroutine -o "$work/g.pb" >/dev/null 2>&1
	gor=$(go tool pprof -top "$work/g.pb" 2>/dev/null | sed -n 's/.* of \([0-9]*\) total.*/\1/p' | head -1)
	queued=$(find "$work/spool/incoming" "$work/spool/active" "$work/spool/deferred" -type f 2>/dev/null | wc -l)
	# Files kept for reuse (queue/recycle.go) and the spool's disk use.
	recycled=$(find "$work/spool/recycle" -type f 2>/dev/null | wc -l)
	spool=$(du -sk "$work/spool" 2>/dev/null | cut -f1)
	echo "$t,${pss:-NA},${rss:-NA},${heap:-NA},${gor:-NA},$queued,$recycled,${spool:-NA}" | tee -a "$CSV"
	sleep "$EVERY"
done
sent=$(grep -c 'status=sent' "$work/maillog")
echo "relayed $sent messages in ${DUR}s; samples in $CSV"
python3 "$here/soak-summary.py" "$CSV"
