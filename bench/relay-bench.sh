#!/bin/bash
# relay-bench.sh [-r REPS] [-p "SIZE:CONC ..."] [-o RESULTS] [-b MAILSRV_BINARY]
#
# The side-by-side benchmark of issue 10: smtp-source -> MTA -> relayhost
# smtp-sink, one message per connection, every message delivered, mailsrv
# and a private Postfix 3.7 instance interleaved point by point (a fresh
# server for every run, warmed up first), so that the machine's drift hits
# both alike. Prints the RESULT lines, then the table (bench/table.py):
# end-to-end msg/s, CPU ms per message and peak PSS, with ratios.
#
# Needs root (Postfix's master), Postfix's smtp-source and smtp-sink, and
# the shared bench folder (BENCH=, default ../shared/bench next to the
# repository). Everything listens on 127.0.0.1 only and lives in a
# mktemp -d folder removed at exit.
set -u
REPS=3
POINTS="1k:1 1k:20 1k:100 100k:20 100k:100 1k:1000"
OUT=""
BIN=""
while getopts "r:p:o:b:" o; do
	case $o in
	r) REPS=$OPTARG ;;
	p) POINTS=$OPTARG ;;
	o) OUT=$OPTARG ;;
	b) BIN=$OPTARG ;;
	*) sed -n 2,3p "$0" >&2; exit 2 ;;
	esac
done
here=$(cd "$(dirname "$0")" && pwd)
B=${BENCH:-$(cd "$here/../../shared/bench" 2>/dev/null && pwd)}
[ -f "$B/postfix-instance.sh" ] || { echo "set BENCH to the shared bench folder" >&2; exit 2; }
command -v smtp-source >/dev/null || { echo "smtp-source not found: apt-get install postfix" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (Postfix's master needs it)" >&2; exit 2; }
source "$B/postfix-instance.sh"
source "$here/lib.sh"
# 1000 senders need 1000+ descriptors on each side.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/relay-bench.XXXXXX)
chmod 755 "$work"
cleanup() {
	pfi_destroy >/dev/null 2>&1
	[ -f "$work/ms/spool/pid/master.pid" ] && "$BIN" -c "$work/ms/mailsrv.toml" postfix stop >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
if [ -z "$BIN" ]; then
	BIN=$work/mailsrv
	build_mailsrv "$BIN" || exit 1
fi
BIN=$(readlink -f "$BIN")
[ -n "$OUT" ] || OUT=$work/results.txt
: >"$OUT"

mkdir -p "$work/ms"
# 2,000 sessions: room for 1,000 senders.
mailsrv_config nobody 127.0.0.1:10035 'relayhost = "[127.0.0.1]:10036"' >"$work/ms/mailsrv.toml"
echo "process_limit = 2000" >>"$work/ms/mailsrv.toml"

for rep in $(seq "$REPS"); do
	for point in $POINTS; do
		size=${point%%:*} conc=${point##*:}
		case $size:$conc in
		*:1) n=1000 ;;
		100k:*) n=2000 ;;
		*:1000) n=5000 ;;
		*) n=3000 ;;
		esac
		(cd "$work/ms" && rm -rf spool maillog && "$BIN" -c mailsrv.toml postfix start >/dev/null) || exit 1
		pid=$(tr -dc 0-9 <"$work/ms/spool/pid/master.pid")
		run mailsrv-relay 10035 10036 "$size" "$conc" "$n" "$pid"
		"$BIN" -c "$work/ms/mailsrv.toml" postfix stop >/dev/null 2>&1
		pfi_create 127.0.0.1 10025 10026 "$work" >/dev/null 2>&1 && pfi_start >/dev/null 2>&1 || { echo "Postfix did not start" >&2; exit 1; }
		run postfix-relay 10025 10026 "$size" "$conc" "$n" "$PFI_MPID"
		pfi_destroy >/dev/null 2>&1
	done
done
echo
python3 "$here/table.py" "$OUT"
