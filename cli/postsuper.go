package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/server/master"
)

// superOp is one postsuper operation on messages.
type superOp struct {
	ids      []string
	queues   []string // searched by default, as Postfix's postsuper does
	summary  string   // "Deleted", …
	apply    func(q *queue.Queue, from, id string) (logLine string, err error)
	released int // -f: messages also released from hold
}

func newPostsuper(g *globals) *cobra.Command {
	var del, hold, release, requeue, expire, expireRelease []string
	var structure, purge bool
	cmd := &cobra.Command{
		Use:   "postsuper [-s] [-p] [-d ID] [-h ID] [-H ID] [-r ID] [-e ID] [-f ID] [queue ...]",
		Short: "Delete, hold, release, requeue or expire queued mail; repair the queue",
		Long: `postsuper works on the queue directly, with the daemon running or not.

  -d ID   delete the message (and its logs)           queues: hold incoming active deferred
  -h ID   put the message on hold                     queues: incoming active deferred
  -H ID   release the message from hold               queues: hold
  -r ID   requeue: pickup and cleanup run it again     queues: hold incoming active deferred
  -e ID   expire: return it to the sender on the next delivery attempt
  -f ID   expire, and release it from hold
  -s      check the queue structure and repair it
  -p      purge temporary files left over by crashes

ID may be ALL, or - to read IDs from standard input. Options may repeat.
Trailing queue names limit the queues searched.`,
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			for _, a := range args {
				if !slices.Contains(queue.MessageQueues, a) {
					return exitf(1, "fatal: invalid directory name: %s", a)
				}
			}
			s := &superRun{q: queue.FromConfig(cfg.Params), errOut: c.ErrOrStderr(), in: c.InOrStdin(), restrict: args}
			s.openLog(cfg)
			defer s.closeLog()
			if err := asMailOwner(cfg); err != nil {
				return err
			}
			if purge {
				s.purge()
			}
			if structure {
				s.structure()
			}
			ops := []*superOp{
				{ids: del, queues: []string{queue.Hold, queue.Incoming, queue.Active, queue.Deferred}, summary: "Deleted", apply: opDelete},
				{ids: hold, queues: []string{queue.Incoming, queue.Active, queue.Deferred}, summary: "Placed on hold", apply: opHold},
				{ids: release, queues: []string{queue.Hold}, summary: "Released from hold", apply: opRelease},
				{ids: requeue, queues: []string{queue.Hold, queue.Incoming, queue.Active, queue.Deferred}, summary: "Requeued", apply: opRequeue},
				{ids: expire, queues: []string{queue.Hold, queue.Incoming, queue.Active, queue.Deferred}, summary: "Force-expired", apply: opExpire},
				{ids: expireRelease, queues: []string{queue.Hold, queue.Incoming, queue.Active, queue.Deferred}, summary: "Force-expired"},
			}
			ops[5].apply = func(q *queue.Queue, from, id string) (string, error) {
				line, err := opExpire(q, from, id)
				if err == nil && from == queue.Hold {
					if _, err = opRelease(q, from, id); err == nil {
						ops[5].released++
						s.log("%s: released from hold", id)
					}
				}
				return line, err
			}
			changed := false
			for _, op := range ops {
				if len(op.ids) == 0 {
					continue
				}
				if n := s.run(op); n > 0 {
					changed = true
					s.summary("%s: %d message%s", op.summary, n, plural(n))
				}
				if op.released > 0 {
					s.summary("Released from hold: %d message%s", op.released, plural(op.released))
				}
			}
			if changed {
				// Tell a running daemon; a stopped one rescans at start.
				_, _ = master.Call(cfg.Params.QueueDirectory, master.Request{Cmd: "wakeup"}, 5*time.Second)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Bool("help", false, "help for postsuper")
	fl.StringArrayVarP(&del, "delete", "d", nil, "delete message ID (ALL, or - for stdin)")
	fl.StringArrayVarP(&hold, "hold", "h", nil, "put message ID on hold")
	fl.StringArrayVarP(&release, "release", "H", nil, "release message ID from hold")
	fl.StringArrayVarP(&requeue, "requeue", "r", nil, "requeue message ID")
	fl.StringArrayVarP(&expire, "expire", "e", nil, "expire message ID")
	fl.StringArrayVarP(&expireRelease, "expire-release", "f", nil, "expire and release message ID")
	fl.BoolVarP(&structure, "structure", "s", false, "check and repair the queue structure")
	fl.BoolVarP(&purge, "purge", "p", false, "purge old temporary files")
	return cmd
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

type superRun struct {
	q        *queue.Queue
	errOut   io.Writer
	in       io.Reader
	restrict []string
	mlog     *maillog.Log
	lg       *maillog.Logger
	stdinIDs []string
	readIn   bool
}

func (s *superRun) openLog(cfg *config.Config) {
	p := cfg.Params
	l, err := maillog.Open(p.MaillogFile, p.SyslogFacility, p.Myhostname)
	if err != nil {
		fmt.Fprintf(s.errOut, "postsuper: warning: cannot write the mail log: %v\n", err)
		return
	}
	s.mlog, s.lg = l, l.Role(p.SyslogName, "postsuper")
}

func (s *superRun) closeLog() {
	if s.mlog != nil {
		s.mlog.Close()
	}
}

func (s *superRun) log(format string, args ...any) {
	if s.lg != nil {
		s.lg.Infof(format, args...)
	}
}

func (s *superRun) summary(format string, args ...any) {
	fmt.Fprintf(s.errOut, "postsuper: %s\n", fmt.Sprintf(format, args...))
	s.log(format, args...)
}

func (s *superRun) warn(format string, args ...any) {
	fmt.Fprintf(s.errOut, "postsuper: warning: %s\n", fmt.Sprintf(format, args...))
	if s.lg != nil {
		s.lg.Warnf(format, args...)
	}
}

// queues are the queues an operation searches: its defaults, limited by
// the queue names on the command line.
func (s *superRun) queues(op *superOp) []string {
	if len(s.restrict) == 0 {
		return op.queues
	}
	var out []string
	for _, q := range op.queues {
		if slices.Contains(s.restrict, q) {
			out = append(out, q)
		}
	}
	return out
}

// run applies one operation and returns how many messages it changed.
func (s *superRun) run(op *superOp) int {
	n := 0
	do := func(from, id string) {
		line, err := op.apply(s.q, from, id)
		if err != nil {
			s.warn("%s: %v", id, err)
			return
		}
		if line != "" {
			s.log("%s: %s", id, line)
			n++
		}
	}
	for _, arg := range op.ids {
		var ids []string
		switch arg {
		case "ALL":
			for _, name := range s.queues(op) {
				_ = s.q.Walk(name, func(e queue.Entry) error {
					do(name, e.ID)
					return nil
				}, nil)
			}
			continue
		case "-":
			if !s.readIn {
				s.readIn = true
				sc := bufio.NewScanner(s.in)
				for sc.Scan() {
					if f := strings.Fields(sc.Text()); len(f) > 0 {
						s.stdinIDs = append(s.stdinIDs, f[0])
					}
				}
			}
			ids = s.stdinIDs
		default:
			ids = []string{arg}
		}
		for _, id := range ids {
			id = strings.TrimRight(id, "*!#")
			if !queue.ValidID(id) {
				s.warn("invalid mail queue id: %s", id)
				continue
			}
			from, err := s.q.Find(id, s.queues(op)...)
			if err != nil {
				continue // Postfix is silent about IDs not (or no longer) there
			}
			do(from, id)
		}
	}
	return n
}

func opDelete(q *queue.Queue, from, id string) (string, error) {
	if err := q.Remove(from, id); err != nil {
		return "", err
	}
	return "removed", nil
}

func opHold(q *queue.Queue, from, id string) (string, error) {
	if from == queue.Hold {
		return "", nil
	}
	if err := q.Move(id, from, queue.Hold); err != nil {
		return "", err
	}
	return "placed on hold", nil
}

func opRelease(q *queue.Queue, from, id string) (string, error) {
	if err := q.Move(id, from, queue.Deferred); err != nil {
		return "", err
	}
	// Due now: the next deferred scan picks it up.
	_ = q.SetTimes(queue.Deferred, id, time.Now())
	return "released from hold", nil
}

func opRequeue(q *queue.Queue, from, id string) (string, error) {
	if err := q.Move(id, from, queue.Maildrop); err != nil {
		return "", err
	}
	// The message is processed again under a new ID; its old status logs
	// no longer apply.
	for _, log := range []string{queue.BounceLog, queue.DeferLog, queue.TraceLog} {
		os.Remove(q.Path(log, id))
	}
	return "requeued", nil
}

func opExpire(q *queue.Queue, from, id string) (string, error) {
	m, err := q.Read(from, id)
	if err != nil {
		return "", err
	}
	if err := q.SetMode(from, id, true, m.Unthrottle); err != nil {
		return "", err
	}
	return "expired", nil
}

// purge removes temporary files and unfinished queue files older than a
// week (postsuper -p).
func (s *superRun) purge() {
	n, err := s.q.Purge(7 * 24 * time.Hour)
	if err != nil {
		s.warn("%v", err)
	}
	if n > 0 {
		s.summary("Deleted: %d temporary file%s", n, plural(n))
	}
}

// structure is postsuper -s: files in the wrong (hashed) place are moved
// where they belong, and names that are not queue IDs are reported.
func (s *superRun) structure() {
	moved, err := s.q.Repair(func(path string) { s.warn("bogus file name: %s", path) })
	if err != nil {
		s.warn("%v", err)
	}
	if moved > 0 {
		s.summary("Moved to the right hashed directory: %d message%s", moved, plural(moved))
	}
}
