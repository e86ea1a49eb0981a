package master

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPipeDelivery: a pipe service gets Postfix's macros and flags; a
// command that exits 75 (EX_TEMPFAIL) is retried on the backoff schedule
// (small values here) and its message delivered exactly once; exit 67
// bounces with 5.1.1.
func TestPipeDelivery(t *testing.T) {
	t.Parallel()
	uid, gid, privs := mailUID()
	base := t.TempDir()
	out := filepath.Join(base, "out")
	openDir(t, out, 0o777)
	os.Chown(out, uid, gid)
	script := filepath.Join(base, "deliver.sh")
	// Arguments one per line, then the input; "flaky" fails twice first,
	// "nouser" always says EX_NOUSER.
	if err := os.WriteFile(script, []byte(`#!/bin/sh
case "$2" in
*flaky*)
	n=$(cat `+out+`/tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > `+out+`/tries
	date +%s.%N >> `+out+`/attempts
	if [ $n -lt 3 ]; then echo "4.2.1 try again later"; exit 75; fi;;
*nouser*) echo "no such user here"; exit 67;;
esac
f=`+out+`/msg.$$
printf '%s\n' "$@" > $f
cat >> $f
`), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
minimal_backoff_time = "2s"
maximal_backoff_time = "8s"
queue_run_delay = "1s"
recipient_delimiter = "+"
transport_maps = ["inline:{ pipe.example=script:next.hop }"]

[[service]]
name = "script"
type = "unix"
command = "pipe"
flags = "FRq"
user = %q
argv = ["%s", "${sender}", "${recipient}", "${nexthop}", "${user}", "${extension}", "${domain}", "${size}"]
`, privs, script))

	send(t, addr, "s@example.test", []string{"a+ext@pipe.example", "b@pipe.example"}, "Subject: piped\r\n\r\nhello\r\n")
	send(t, addr, "s@example.test", []string{"flaky@pipe.example"}, "Subject: flaky\r\n\r\nretry me\r\n")
	send(t, addr, "s@example.test", []string{"nouser@pipe.example"}, "Subject: no\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "the flaky message to be delivered", func() bool {
		return regexp.MustCompile(`to=<flaky@pipe.example>, relay=script, .*status=sent`).MatchString(readLog(dir))
	})
	stop()

	var msgs []string
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "msg.") {
			b, _ := os.ReadFile(filepath.Join(out, e.Name()))
			msgs = append(msgs, string(b))
		}
	}
	piped, flaky := 0, 0
	for _, m := range msgs {
		switch {
		case strings.Contains(m, "Subject: piped"):
			piped++
			want := "s@example.test\na+ext@pipe.example\nb@pipe.example\nnext.hop\na\nb\next\n\npipe.example\npipe.example\n"
			if !strings.HasPrefix(m, want) {
				t.Errorf("arguments:\n%q\nwant prefix\n%q", m, want)
			}
			if !regexp.MustCompile(`\nFrom s@example.test  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\nReturn-Path: <s@example.test>\n`).MatchString(m) {
				t.Errorf("F and R flags:\n%s", m)
			}
		case strings.Contains(m, "Subject: flaky"):
			flaky++
		}
	}
	if piped != 1 || flaky != 1 {
		t.Errorf("%d copies of the piped message (two recipients, one command), %d of the flaky one; want 1 and 1", piped, flaky)
	}
	// Three attempts, each at least the backoff after the previous one
	// (minimal_backoff_time 2s, less the 1s tolerance of the queue scan).
	b, _ := os.ReadFile(filepath.Join(out, "attempts"))
	var times []float64
	for _, l := range strings.Fields(string(b)) {
		var f float64
		fmt.Sscan(l, &f)
		times = append(times, f)
	}
	if len(times) != 3 {
		t.Fatalf("%d attempts, want 3: %q", len(times), b)
	}
	for i := 1; i < len(times); i++ {
		if gap := time.Duration((times[i] - times[i-1]) * float64(time.Second)); gap < time.Second {
			t.Errorf("attempt %d came %s after the previous one, before its backoff", i+1, gap)
		}
	}
	log := readLog(dir)
	for _, re := range []string{
		`pipe\[\d+\]: \w+: to=<a\+ext@pipe.example>, relay=script, .*dsn=2.0.0, status=sent \(delivered via script service\)`,
		`pipe\[\d+\]: \w+: to=<flaky@pipe.example>, relay=script, .*dsn=4.2.1, status=deferred \(Command died with status 75: "` + regexp.QuoteMeta(script) + `". Command output: 4.2.1 try again later\)`,
		`pipe\[\d+\]: \w+: to=<nouser@pipe.example>, relay=script, .*dsn=5.1.1, status=bounced \(Command died with status 67: "` + regexp.QuoteMeta(script) + `". Command output: no such user here\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	if n := strings.Count(log, "to=<flaky@pipe.example>, relay=script"); n != 3 {
		t.Errorf("%d delivery lines for flaky@, want 3 (two deferrals, one delivery)", n)
	}
}
