package queue

import (
	"io"
	"sort"
	"time"
)

// Envelope is what a new message carries besides its content.
type Envelope struct {
	Sender     string
	Recipients []Recipient
	Attrs      map[string]string
	Arrival    time.Time // zero = now
}

// Inject creates a complete message in one call: the path cleanup uses to
// write a queue file, exposed for tools and tests. The content is streamed
// to disk; the returned ID is valid only when err is nil, and then the
// message is durable.
func (q *Queue) Inject(queue string, env Envelope, content io.Reader) (string, error) {
	arrival := env.Arrival
	if arrival.IsZero() {
		arrival = time.Now()
	}
	w, err := q.Create(queue, arrival)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(env.Attrs))
	for n := range env.Attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w.SetAttr(n, env.Attrs[n])
	}
	w.SetSender(env.Sender)
	for _, r := range env.Recipients {
		w.AddRecipient(r)
	}
	if _, err := w.ReadFrom(content); err != nil {
		w.Abort()
		return "", err
	}
	if err := w.Commit(); err != nil {
		return "", err
	}
	return w.ID(), nil
}
