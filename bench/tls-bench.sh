#!/bin/bash
# tls-bench.sh MAILSRV_BINARY [SESSIONS] [CONCURRENCY]
#
# STARTTLS handshakes per second, mailsrv and Postfix 3.7 in one run, each
# with full handshakes and with resumed sessions (TLS 1.3 tickets): the
# client is bench/tlsbench (go run). Same self-signed ECDSA P-256
# certificate for both; loopback only; a mktemp -d folder removed at exit.
# Needs root (Postfix's master).
set -u
MAILSRV=$(readlink -f "${1:?usage: tls-bench.sh MAILSRV_BINARY [SESSIONS] [CONCURRENCY]}")
N=${2:-2000} C=${3:-10}
here=$(cd "$(dirname "$0")" && pwd)
B=${BENCH:-$(cd "$here/../../shared/bench" 2>/dev/null && pwd)}
[ -f "$B/postfix-instance.sh" ] || { echo "set BENCH to the shared bench folder" >&2; exit 2; }
source "$B/postfix-instance.sh"
source "$here/lib.sh"
work=$(mktemp -d /tmp/tls-bench.XXXXXX)
chmod 755 "$work"
trap 'pfi_destroy >/dev/null 2>&1; "$MAILSRV" -c "$work/ms/mailsrv.toml" postfix stop >/dev/null 2>&1; rm -rf "$work"' EXIT
(cd "$here/.." && go build -o "$work/tlsbench" ./bench/tlsbench) || exit 1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
	-out "$work/cert.pem" -days 1 -subj "/CN=mta.bench.example" 2>/dev/null || exit 1
cat "$work/key.pem" "$work/cert.pem" >"$work/chain.pem"
chmod 644 "$work"/*.pem

mkdir -p "$work/ms"
mailsrv_config nobody 127.0.0.1:10035 "smtpd_tls_security_level = \"may\"
smtpd_tls_chain_files = [\"$work/chain.pem\"]" >"$work/ms/mailsrv.toml"
"$MAILSRV" -c "$work/ms/mailsrv.toml" postfix start >/dev/null || exit 1
for resume in false true; do
	"$work/tlsbench" -a 127.0.0.1:10035 -n 100 -c "$C" -resume=$resume -l warm >/dev/null
	"$work/tlsbench" -a 127.0.0.1:10035 -n "$N" -c "$C" -resume=$resume -l mailsrv
done
"$MAILSRV" -c "$work/ms/mailsrv.toml" postfix stop >/dev/null

pfi_create 127.0.0.1 10025 10026 "$work" >/dev/null || exit 1
pfi_set "smtpd_tls_security_level = may" "smtpd_tls_cert_file = $work/cert.pem" "smtpd_tls_key_file = $work/key.pem" >/dev/null || exit 1
pfi_start >/dev/null || exit 1
for resume in false true; do
	"$work/tlsbench" -a 127.0.0.1:10025 -n 100 -c "$C" -resume=$resume -l warm >/dev/null
	"$work/tlsbench" -a 127.0.0.1:10025 -n "$N" -c "$C" -resume=$resume -l postfix
done
