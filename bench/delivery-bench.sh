#!/bin/bash
# delivery-bench.sh MAILSRV_BINARY [REPS]
#
# End-to-end delivery, side by side with Postfix 3.7 in one run:
# smtp-source -> MTA -> virtual(8) Maildir, 10,000 1 KB messages spread
# over 100 virtual mailboxes (100 smtp-source processes of 100 messages,
# 10 at a time, 2 sessions each: 20 SMTP sessions), as issue 6 asks.
#
# e2e_mps  = messages / (time from the first connection until the last
#            message file is in a Maildir's new/)
# peak_pss = proportional memory of the MTA's whole process tree
#            (../shared/bench/proc-sampler.py), the honest RAM figure
#
# Both MTAs deliver as the unprivileged user nobody (virtual_uid_maps);
# everything runs on loopback in a mktemp -d folder that is removed at the
# end. Needs root (Postfix's master) and Postfix's smtp-source.
set -u
MAILSRV=${1:?usage: delivery-bench.sh MAILSRV_BINARY [REPS]}
MAILSRV=$(readlink -f "$MAILSRV")
REPS=${2:-3}
TARGETS=${TARGETS:-mailsrv postfix}   # TARGETS=mailsrv measures one side only
B=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" 2>/dev/null && pwd)}
[ -f "$B/postfix-instance.sh" ] || { echo "set BENCH to the shared bench folder" >&2; exit 2; }
source "$B/postfix-instance.sh"
source "$(dirname "$0")/lib.sh"
N=10000 BOXES=100 PER=$((N / 100))
work=$(mktemp -d /tmp/delivery-bench.XXXXXX)
chmod 755 "$work"
trap 'pfi_destroy >/dev/null 2>&1; [ -n "${mpid:-}" ] && kill "$mpid" 2>/dev/null; rm -rf "$work"' EXIT
uid=$(id -u nobody) gid=$(id -g nobody)
for i in $(seq 0 $((BOXES - 1))); do echo "u$i@virt.bench.example u$i/"; done >"$work/vmailboxes"

# load PORT: 100 smtp-source runs, 10 at a time.
load() {
	seq 0 $((BOXES - 1)) | timeout 600 xargs -P 10 -I{} \
		smtp-source -s 2 -m $PER -l 1024 -M client.bench.example -f sender@bench.example \
		-t u{}@virt.bench.example "127.0.0.1:$1"
}

# measure LABEL PORT PID VMAIL: run the load, wait for the Maildirs.
measure() {
	local label=$1 port=$2 pid=$3 vmail=$4
	python3 "$B/proc-sampler.py" -i 0.5 -t 900 -o "$work/mem.$label" "tgt=$pid" &
	local sampler=$!
	local t0 t1 n
	t0=$(date +%s.%N)
	load "$port" || echo "$label: smtp-source failed" >&2
	local deadline=$((SECONDS + 600))
	while :; do
		n=$(find "$vmail" -path '*/new/*' -type f | wc -l)
		[ "$n" -ge $N ] && break
		[ $SECONDS -gt $deadline ] && { echo "$label: only $n of $N delivered" >&2; break; }
		sleep 0.05
	done
	t1=$(date +%s.%N)
	kill -TERM $sampler; wait $sampler 2>/dev/null
	local pss cpu busy
	pss=$(grep -o 'peak_pss_kb=[0-9]*' "$work/mem.$label" | head -1 | cut -d= -f2)
	cpu=$(grep -o 'cpu_s=[0-9.]*' "$work/mem.$label" | head -1 | cut -d= -f2)
	busy=$(grep -o 'busy_pct=[0-9.]*' "$work/mem.$label" | head -1 | cut -d= -f2)
	python3 -c "print('RESULT target=$label delivered=$n e2e_s=%.2f e2e_mps=%.1f peak_pss_kb=$pss cpu_s=$cpu sys_busy_pct=$busy' % ($t1-$t0, $n/($t1-$t0)))"
}

run_mailsrv() {
	ms="$work/ms"
	rm -rf "$ms"; mkdir -p "$ms/vmail"; chown "$uid:$gid" "$ms/vmail"; chmod 755 "$ms"
	mailsrv_config nobody 127.0.0.1:10035 "virtual_mailbox_domains = [\"virt.bench.example\"]
virtual_mailbox_base = \"vmail\"
virtual_mailbox_maps = [\"texthash:$work/vmailboxes\"]
virtual_uid_maps = [\"static:$uid\"]
virtual_gid_maps = [\"static:$gid\"]" >"$ms/mailsrv.toml"
	"$MAILSRV" -c "$ms/mailsrv.toml" postfix start >/dev/null || exit 1
	mpid=$(tr -dc 0-9 <"$ms/spool/pid/master.pid")
	measure mailsrv 10035 "$mpid" "$ms/vmail"
	"$MAILSRV" -c "$ms/mailsrv.toml" postfix stop >/dev/null
	mpid=""
}

# Postfix 3.7, same delivery
run_postfix() {
	pfi_create 127.0.0.1 10025 10026 "$work" >/dev/null || exit 1
	mkdir -p "$work/pf-vmail"; chown "$uid:$gid" "$work/pf-vmail"
	pfi_set "virtual_mailbox_domains = virt.bench.example" "virtual_mailbox_base = $work/pf-vmail" \
		"virtual_mailbox_maps = texthash:$work/vmailboxes" "virtual_uid_maps = static:$uid" \
		"virtual_gid_maps = static:$gid" >/dev/null || exit 1
	pfi_start >/dev/null || exit 1
	measure postfix 10025 "$PFI_MPID" "$work/pf-vmail"
	pfi_destroy >/dev/null 2>&1
	rm -rf "$work/pf-vmail"
}

for rep in $(seq "$REPS"); do
	for target in $TARGETS; do
		"run_$target"
	done
done
