package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"mailsrv/queue"
)

func newPostcat(g *globals) *cobra.Command {
	var byID, env, headers, bodyOnly bool
	cmd := &cobra.Command{
		Use:   "postcat [-e] [-h] [-b] -q ID... | FILE...",
		Short: "Show a queued message: envelope, headers, body",
		Long: `postcat prints queue files: with -q, the messages with the given queue IDs,
found in any queue (including saved); otherwise the named files.

  -e   envelope records only      -h   message headers only
  -b   message body only          (none of them: everything)`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			q := queue.FromConfig(cfg.Params)
			out := bufio.NewWriter(c.OutOrStdout())
			defer out.Flush()
			all := !env && !headers && !bodyOnly
			for _, a := range args {
				var f *queue.File
				var name string
				if byID {
					where, err := q.Find(a)
					if err != nil {
						return exitf(1, "fatal: %v", err)
					}
					if f, err = q.Open(where, a, false); err != nil {
						return exitf(1, "fatal: %s: %v", a, err)
					}
					name, _ = filepath.Rel(q.Dir, q.Path(where, a))
				} else {
					if f, err = queue.OpenPath(a); err != nil {
						return exitf(1, "fatal: %v", err)
					}
					name = a
				}
				err := postcat(out, f, name, all || env, all, headers, bodyOnly)
				f.Close()
				if err != nil {
					return exitf(1, "fatal: %s: %v", a, err)
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Bool("help", false, "help for postcat")
	fl.BoolVarP(&byID, "queue", "q", false, "arguments are queue IDs")
	fl.BoolVarP(&env, "envelope", "e", false, "show the envelope")
	fl.BoolVarP(&headers, "headers", "h", false, "show the message headers")
	fl.BoolVarP(&bodyOnly, "body", "b", false, "show the message body")
	return cmd
}

func asctime(t time.Time) string { return t.Local().Format("Mon Jan _2 15:04:05 2006") }

// postcat prints one message in Postfix's postcat layout.
func postcat(out io.Writer, f *queue.File, name string, env, all, headers, body bool) error {
	var inside, after []queue.Recipient
	for _, r := range f.Recipients {
		if r.Offset > f.ContentOffset {
			after = append(after, r)
		} else {
			inside = append(inside, r)
		}
	}
	rcpt := func(r queue.Recipient) {
		if r.ORCPT != "" {
			fmt.Fprintf(out, "dsn_orig_rcpt: %s\n", printable(r.ORCPT))
		}
		if r.Notify != 0 {
			fmt.Fprintf(out, "dsn_notify_flags: %d\n", r.Notify)
		}
		if r.Orig != "" {
			fmt.Fprintf(out, "original_recipient: %s\n", printable(r.Orig))
		}
		kind := "recipient"
		if r.Done {
			kind = "done_recipient"
		}
		fmt.Fprintf(out, "%s: %s\n", kind, printable(r.Addr))
	}
	if env {
		fmt.Fprintf(out, "*** ENVELOPE RECORDS %s ***\n", name)
		fmt.Fprintf(out, "message_size: %d\n", f.ContentSize)
		fmt.Fprintf(out, "message_arrival_time: %s\n", asctime(f.Arrival))
		fmt.Fprintf(out, "create_time: %s\n", asctime(f.Create))
		if !f.WarnAt.IsZero() {
			fmt.Fprintf(out, "defer_warn_time: %s\n", asctime(f.WarnAt))
		}
		names := make([]string, 0, len(f.Attrs))
		for n := range f.Attrs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(out, "named_attribute: %s=%s\n", n, printable(f.Attrs[n]))
		}
		fmt.Fprintf(out, "sender: %s\n", printable(f.Sender))
		for _, r := range inside {
			rcpt(r)
		}
	}
	if all || headers || body {
		fmt.Fprintf(out, "*** MESSAGE CONTENTS %s ***\n", name)
		content := f.Content()
		if all {
			if _, err := io.Copy(out, content); err != nil {
				return err
			}
		} else {
			if err := headerBody(out, content, headers, body); err != nil {
				return err
			}
		}
	}
	if env {
		fmt.Fprintf(out, "*** HEADER EXTRACTED %s ***\n", name)
		for _, r := range after {
			rcpt(r)
		}
		fmt.Fprintf(out, "*** MESSAGE FILE END %s ***\n", name)
	}
	return nil
}

// headerBody copies the header section, the body, or both: the header ends
// at the first empty line.
func headerBody(out io.Writer, r io.Reader, headers, body bool) error {
	br := bufio.NewReader(r)
	inHeader := true
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if inHeader && len(bytes.TrimRight(line, "\r\n")) == 0 {
				inHeader = false
			} else if (inHeader && headers) || (!inHeader && body) {
				if _, werr := out.Write(line); werr != nil {
					return werr
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
