# Sourced by the bench scripts: what they share about the mailsrv they run.

# mailsrv_config OWNER LISTEN [EXTRA]: a configuration for a bench
# instance on a loopback LISTEN address (host:port), run as OWNER, with
# its queue and log in the folder of the file, no aliases, no DNS for
# client names; EXTRA holds the settings of the particular bench.
mailsrv_config() {
	cat <<TOML
myhostname = "mta.bench.example"
mydomain = "bench.example"
myorigin = "\$myhostname"
mydestination = ["\$myhostname", "localhost"]
mynetworks = ["127.0.0.0/8"]
alias_maps = []
alias_database = []
queue_directory = "spool"
maillog_file = "maillog"
mail_owner = "$1"
smtpd_peername_lookup = false
${3:-}

[[service]]
name = "smtp"
type = "inet"
listen = "$2"
command = "smtpd"
TOML
}

# build_mailsrv DEST: builds this repository's mailsrv into DEST.
build_mailsrv() {
	(cd "$(dirname "${BASH_SOURCE[0]}")/.." && go build -o "$1" .)
}

# run LABEL PORT SINKPORT SIZE CONC N PID: one measurement point of the
# side-by-side benches (a warm-up first, then smtp-bench.sh with the
# target's process tree sampled); the RESULT line is printed and added
# to $OUT. Needs B, the shared bench folder.
run() {
	local n=$6 warm=$((3 * $5)); [ $warm -lt 300 ] && warm=300
	"$B/smtp-bench.sh" -t "127.0.0.1:$2" -k "$3" -n $warm -l "$4" -s "$5" -W 120 -L warm >/dev/null 2>&1
	"$B/smtp-bench.sh" -t "127.0.0.1:$2" -k "$3" -n "$n" -l "$4" -s "$5" -W 600 -L "$1" -P "tgt=$7" 2>/dev/null |
		grep '^RESULT' | tee -a "$OUT"
}
