#!/bin/bash
# policy-bench.sh [-r REPS] [-p "SIZE:CONC ..."] [-o RESULTS] [-b MAILSRV_BINARY]
#
# The relay benchmark with the policy layer on (issue 18): every RCPT is
# checked against two DNS block lists (reject_rbl_client, answered by
# bench/fakedns on 127.0.0.77:53) and one policy service (postgrey on
# 127.0.0.1:10040, with the bench client on its client whitelist so that
# nothing is greylisted but every request is still asked and answered),
# before permit_mynetworks. mailsrv and a private Postfix 3.7 instance,
# with the same settings, interleaved point by point as relay-bench.sh
# does. Postfix reads its DNS servers from /etc/resolv.conf, so its
# instance is started in a private mount namespace where a bind mount
# puts 127.0.0.77 there; the machine's own file is not touched.
#
# Needs root, Postfix's smtp-source and smtp-sink, postgrey, unshare, and
# the shared bench folder (BENCH=, default ../shared/bench next to the
# repository). Everything listens on loopback only and lives in a
# mktemp -d folder removed at exit.
set -u
REPS=3
POINTS="1k:20"
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
for c in smtp-source postgrey unshare; do
	command -v $c >/dev/null || { echo "$c not found: apt-get install postfix postgrey util-linux" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (Postfix's master and the namespace need it)" >&2; exit 2; }
source "$B/postfix-instance.sh"
source "$here/lib.sh"
ulimit -n "$(ulimit -Hn)"

DNS=127.0.0.77
work=$(mktemp -d /tmp/policy-bench.XXXXXX)
chmod 755 "$work"
cleanup() {
	pfi_destroy >/dev/null 2>&1
	[ -f "$work/ms/spool/pid/master.pid" ] && "$BIN" -c "$work/ms/mailsrv.toml" postfix stop >/dev/null 2>&1
	[ -s "$work/pg/pid" ] && kill "$(cat "$work/pg/pid")" 2>/dev/null
	[ -n "${dnspid:-}" ] && kill "$dnspid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
if [ -z "$BIN" ]; then
	BIN=$work/mailsrv
	build_mailsrv "$BIN" || exit 1
fi
BIN=$(readlink -f "$BIN")
(cd "$here/.." && go build -o "$work/fakedns" ./bench/fakedns) || exit 1
[ -n "$OUT" ] || OUT=$work/results.txt
: >"$OUT"

# The policy service: postgrey, the bench client whitelisted.
mkdir -p "$work/pg"
chown postgrey "$work/pg" 2>/dev/null || chown nobody "$work/pg"
echo 127.0.0.1 >"$work/pg/clients"
postgrey --inet=127.0.0.1:10040 --dbdir="$work/pg" --pidfile="$work/pg/pid" -d \
	--whitelist-clients="$work/pg/clients" --whitelist-recipients=/dev/null \
	--user="$(stat -c %U "$work/pg")" || { echo "postgrey did not start" >&2; exit 1; }

# Postfix's resolv.conf, seen only inside its namespace.
echo "nameserver $DNS" >"$work/resolv.conf"
postfix() {
	if [ "${3:-}" = start ]; then
		unshare -m --propagation private sh -c 'mount --bind "$0" /etc/resolv.conf && exec postfix "$@"' "$work/resolv.conf" "$@"
	else
		command postfix "$@"
	fi
}

RESTRICTIONS=${RESTRICTIONS:-"reject_rbl_client zen.bench.example, reject_rbl_client bl.bench.example, check_policy_service inet:127.0.0.1:10040, permit_mynetworks, reject_unauth_destination"}
mkdir -p "$work/ms"
mailsrv_config nobody 127.0.0.1:10035 "relayhost = \"[127.0.0.1]:10036\"
mailsrv_dns_servers = [\"$DNS:53\"]
smtpd_recipient_restrictions = [$(printf '"%s", ' $(echo "$RESTRICTIONS" | tr ',' ' ') | sed 's/, $//')]" >"$work/ms/mailsrv.toml"
echo "process_limit = 2000" >>"$work/ms/mailsrv.toml"
"$BIN" -c "$work/ms/mailsrv.toml" postfix check || exit 1

# dns_start / dns_stop LABEL: a fresh fakedns per run, so that its query
# count shows each server really asked the lists.
dns_start() {
	"$work/fakedns" -a "$DNS:53" >"$work/dns.out" 2>&1 &
	dnspid=$!
	for _ in $(seq 50); do ss -Hlun "sport = :53" | grep -q "$DNS" && return 0; sleep 0.1; done
	echo "fakedns did not start" >&2; cat "$work/dns.out" >&2; exit 1
}
dns_stop() {
	kill "$dnspid"; wait "$dnspid" 2>/dev/null; dnspid=""
	echo "DNS $1: $(cat "$work/dns.out")" | tee -a "$OUT.dns"
}

for rep in $(seq "$REPS"); do
	for point in $POINTS; do
		size=${point%%:*} conc=${point##*:}
		n=3000
		[ "$conc" = 1 ] && n=1000
		dns_start
		(cd "$work/ms" && rm -rf spool maillog && "$BIN" -c mailsrv.toml postfix start >/dev/null) || exit 1
		pid=$(tr -dc 0-9 <"$work/ms/spool/pid/master.pid")
		run mailsrv-policy 10035 10036 "$size" "$conc" "$n" "$pid"
		"$BIN" -c "$work/ms/mailsrv.toml" postfix stop >/dev/null 2>&1
		dns_stop "mailsrv $size:$conc"
		dns_start
		pfi_create 127.0.0.1 10025 10026 "$work" >/dev/null 2>&1 || { echo "Postfix instance not created" >&2; exit 1; }
		pfi_set "smtpd_recipient_restrictions = $RESTRICTIONS" || exit 1
		pfi_start >/dev/null 2>&1 || { echo "Postfix did not start" >&2; exit 1; }
		run postfix-policy 10025 10026 "$size" "$conc" "$n" "$PFI_MPID"
		pfi_destroy >/dev/null 2>&1
		dns_stop "postfix $size:$conc"
	done
done
echo
python3 "$here/table.py" "$OUT"
