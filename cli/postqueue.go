package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailsrv/queue"
	"mailsrv/server/master"
)

func newPostqueue(g *globals) *cobra.Command {
	var list, jsonOut, flush bool
	var site, id string
	cmd := &cobra.Command{
		Use:   "postqueue -p | -j | -f | -s SITE | -i ID",
		Short: "List the queue or ask the daemon to deliver deferred mail",
		Long: `postqueue lists the mail queue (-p as mailq does, -j as JSON lines) or asks
the running daemon to attempt delivery of deferred mail now: all of it (-f),
the mail for one fast_flush_domains site (-s), or one message (-i).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			q := queue.FromConfig(cfg.Params)
			out := bufio.NewWriterSize(c.OutOrStdout(), 64<<10)
			defer out.Flush()
			switch {
			case list:
				return showqCompat(q, out)
			case jsonOut:
				return showqJSON(q, out)
			case flush, site != "", id != "":
				req := master.Request{Cmd: "flush"}
				if site != "" {
					req = master.Request{Cmd: "flush-site", Args: []string{site}}
				} else if id != "" {
					req = master.Request{Cmd: "flush-id", Args: []string{id}}
				}
				if _, err := master.Call(cfg.Params.QueueDirectory, req, time.Minute); err != nil {
					if errors.Is(err, master.ErrDown) {
						return exitf(1, "fatal: Cannot flush mail queue - mail system is down")
					}
					return exitf(1, "fatal: %v", err)
				}
				return nil
			}
			return exitf(1, "fatal: usage: postqueue -p | -j | -f | -s site | -i queue_id")
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&list, "list", "p", false, "list the queue (mailq)")
	fl.BoolVarP(&jsonOut, "json", "j", false, "list the queue as JSON lines")
	fl.BoolVarP(&flush, "flush", "f", false, "deliver all deferred mail now")
	fl.StringVarP(&site, "site", "s", "", "deliver the deferred mail of a site now")
	fl.StringVarP(&id, "id", "i", "", "deliver one deferred message now")
	return cmd
}

// printable replaces what a terminal or parser should not see, as showq
// does.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// showqCompat prints the queue in mailq's layout (Postfix's showq_compat
// with long queue IDs).
func showqCompat(q *queue.Queue, out io.Writer) error {
	var count, total int64
	err := q.List(func(m *queue.Listed) error {
		if count == 0 {
			fmt.Fprintf(out, "%-17s %8s %-19s %s\n", "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------")
		} else {
			fmt.Fprintln(out)
		}
		count++
		total += m.Size
		status := m.ID
		switch m.Queue {
		case queue.Active:
			status += "*"
		case queue.Hold:
			status += "!"
		}
		if m.ForcedExpire {
			status += "#"
		}
		sender := m.Sender
		if sender == "" {
			sender = "MAILER-DAEMON"
		}
		arrival := m.Arrival.Local().Format("Mon Jan _2 15:04:05 2006")
		fmt.Fprintf(out, "%-17s %8d %19.19s %s\n", status, m.Size, arrival, printable(sender))
		saved := ""
		for _, r := range m.Recipients {
			why := r.DelayReason
			if why == "" {
				why = r.BounceReason
			}
			if why != saved {
				saved = why
				show := why
				if show == "" {
					show = "reason unavailable"
				}
				fmt.Fprintf(out, "%*s(%s)\n", max(76-len(show), 0), "", printable(show))
			}
			fmt.Fprintf(out, "%-17s %8s %-19s %s\n", "", "", "", printable(r.Addr))
		}
		return nil
	})
	if err != nil {
		return exitf(1, "fatal: %v", err)
	}
	if count == 0 {
		fmt.Fprintln(out, "Mail queue is empty")
		return nil
	}
	plural := "s"
	if count == 1 {
		plural = ""
	}
	fmt.Fprintf(out, "\n-- %d Kbytes in %d Request%s.\n", total/1024, count, plural)
	return nil
}

type jsonRecipient struct {
	OrigAddress  string `json:"orig_address,omitempty"`
	Address      string `json:"address"`
	DelayReason  string `json:"delay_reason,omitempty"`
	BounceReason string `json:"bounce_reason,omitempty"`
}

type jsonMessage struct {
	QueueName    string          `json:"queue_name"`
	QueueID      string          `json:"queue_id"`
	ArrivalTime  int64           `json:"arrival_time"`
	MessageSize  int64           `json:"message_size"`
	ForcedExpire bool            `json:"forced_expire"`
	Sender       string          `json:"sender"`
	Recipients   []jsonRecipient `json:"recipients"`
}

// showqJSON prints one JSON object per message, keys in Postfix's order.
func showqJSON(q *queue.Queue, out io.Writer) error {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	err := q.List(func(m *queue.Listed) error {
		jm := jsonMessage{QueueName: m.Queue, QueueID: m.ID, ArrivalTime: m.Arrival.Unix(), MessageSize: m.Size,
			ForcedExpire: m.ForcedExpire, Sender: printable(m.Sender), Recipients: []jsonRecipient{}}
		for _, r := range m.Recipients {
			jr := jsonRecipient{Address: printable(r.Addr), DelayReason: printable(r.DelayReason), BounceReason: printable(r.BounceReason)}
			if r.Orig != "" && r.Orig != r.Addr {
				jr.OrigAddress = printable(r.Orig)
			}
			jm.Recipients = append(jm.Recipients, jr)
		}
		return enc.Encode(jm)
	})
	if err != nil {
		return exitf(1, "fatal: %v", err)
	}
	return nil
}
