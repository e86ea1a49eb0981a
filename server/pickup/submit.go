package pickup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"mailsrv/config"
	"mailsrv/internal/peercred"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/queue/qmgr"
	"mailsrv/rewrite/cleanup"
)

// The submission socket ($queue_directory/public/submit) is how sendmail
// hands a message to the running daemon without a set-uid or set-gid
// binary. The daemon learns the submitting user from the socket's peer
// credentials (SO_PEERCRED), so a user can say who they are only in the
// ways Postfix allows (-f, -F), never which uid they run as.
//
// Protocol: the client sends one JSON line (SubmitRequest), then for
// "mail" the message content (LF line ends) and closes its writing side.
// The server answers with one JSON line (SubmitReply) once the message is
// durable in the queue, or refused.

// SubmitSocket is the socket's name under queue_directory.
const SubmitSocket = "public/submit"

// SubmitRequest is the client's first line.
type SubmitRequest struct {
	Op         string   `json:"op"` // "mail" or "flush" (sendmail -q)
	Sender     string   `json:"sender"`
	SenderSet  bool     `json:"sender_set"` // -f/-r given (else the login name)
	FullName   string   `json:"full_name,omitempty"`
	Recipients []string `json:"recipients"`
	// Report asks for a report of every delivery (sendmail -v).
	Report bool `json:"report,omitempty"`
	// Verify asks for a report of how each recipient would be
	// delivered, without delivering (sendmail -bv).
	Verify bool `json:"verify,omitempty"`
}

// traceFlags is the queue file's trace_flags for a request ("" = none).
func (req SubmitRequest) traceFlags() string {
	switch {
	case req.Verify:
		return qmgr.TraceVerify
	case req.Report:
		return qmgr.TraceRecord
	}
	return ""
}

// SubmitReply is the server's answer: the queue ID, or a refusal (its
// Code is then set).
type SubmitReply struct {
	QueueID string `json:"queue_id,omitempty"`
	outcome.Reply
}

const maxRequestLine = 1 << 20

// Submitter serves the submission socket.
type Submitter struct {
	P       *config.Params
	Cleanup *cleanup.Cleanup
	Log     *maillog.Logger
	// Flush asks for a deferred-queue run (sendmail -q, postqueue -f).
	Flush func() error
}

// Listen creates the socket, replacing a stale one, open to every local
// user (the daemon checks who they are).
func Listen(queueDir string) (net.Listener, error) {
	path := filepath.Join(queueDir, SubmitSocket)
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Serve answers submissions until ctx ends.
func (s *Submitter) Serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Local users may open connections at will: serve at most
	// default_process_limit at once, the rest wait in the backlog.
	slots := make(chan struct{}, max(s.P.DefaultProcessLimit, 1))
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := l.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.Log.Warnf("submit: accept: %v", err)
			select {
			case <-time.After(100 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer c.Close()
			s.serve(c.(*net.UnixConn))
		}()
	}
}

func (s *Submitter) serve(c *net.UnixConn) {
	// Every read waits at most smtpd_timeout (deadlineReader), and so
	// does the answer.
	reply := func(r SubmitReply) {
		_ = c.SetWriteDeadline(time.Now().Add(s.P.SmtpdTimeout))
		_ = json.NewEncoder(c).Encode(r)
	}
	refuse := func(e outcome.Reply) { reply(SubmitReply{Reply: e}) }
	uid, err := peercred.UID(c)
	if err != nil {
		s.Log.Warnf("submit: peer credentials: %v", err)
		refuse(cleanup.ErrInternal)
		return
	}
	br := bufio.NewReaderSize(&deadlineReader{c: c, d: s.P.SmtpdTimeout}, 64<<10)
	line, err := readLimitedLine(br, maxRequestLine)
	if err != nil {
		refuse(outcome.New(501, "5.5.4", "bad submission request"))
		return
	}
	var req SubmitRequest
	if err := json.Unmarshal(line, &req); err != nil {
		refuse(outcome.New(501, "5.5.4", "bad submission request"))
		return
	}
	switch req.Op {
	case "flush":
		if s.Flush == nil {
			refuse(outcome.New(451, "4.3.0", "flush is not available"))
			return
		}
		if err := s.Flush(); err != nil {
			s.Log.Warnf("submit: flush for uid %d: %v", uid, err)
			refuse(cleanup.ErrInternal)
			return
		}
		reply(SubmitReply{})
		return
	case "mail":
	default:
		refuse(outcome.New(501, "5.5.4", "bad submission request"))
		return
	}
	login := strconv.Itoa(uid)
	if u, err := user.LookupId(login); err == nil {
		login = u.Username
	}
	sender := login
	if req.SenderSet {
		sender = req.Sender
	}
	if len(req.Recipients) == 0 {
		refuse(outcome.New(554, "5.5.1", "no recipients specified"))
		return
	}
	env := cleanup.Envelope{
		Sender:       sender,
		FullName:     req.FullName,
		Attrs:        map[string]string{"submit_uid": strconv.Itoa(uid), "rewrite_context": "local"},
		LocalHeaders: true,
		Received: func(id string) string {
			return fmt.Sprintf("by %s (%s, from userid %d)\n\tid %s; %s", s.P.Myhostname, s.P.MailName, uid, id, time.Now().Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
		},
	}
	if v := req.traceFlags(); v != "" {
		env.Attrs[qmgr.TraceFlags] = v
	}
	for _, r := range req.Recipients {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r})
	}
	m, err := s.Cleanup.Open(env)
	if err != nil {
		ce := cleanup.ErrInternal
		errors.As(err, &ce)
		refuse(ce)
		return
	}
	limit := int64(s.P.MessageSizeLimit)
	n, err := io.Copy(m, io.LimitReader(br, limit+1))
	if err == nil && limit > 0 && n > limit {
		m.Reject(cleanup.ErrTooBig)
		_, err = io.Copy(io.Discard, br) // read to the end, then answer
	}
	if err != nil {
		m.Abort()
		s.Log.Warnf("submit: uid %d: read error: %v", uid, err)
		return
	}
	if err := m.Finish(); err != nil {
		ce := cleanup.ErrInternal
		errors.As(err, &ce)
		refuse(ce)
		return
	}
	s.Log.Infof("%s: uid=%d from=<%s>", m.ID(), uid, sender)
	reply(SubmitReply{QueueID: m.ID()})
}

// deadlineReader renews the read deadline on each read, as smtpd does.
type deadlineReader struct {
	c net.Conn
	d time.Duration
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(r.d))
	return r.c.Read(p)
}

func readLimitedLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		seg, err := br.ReadSlice('\n')
		line = append(line, seg...)
		if len(line) > limit {
			return nil, errors.New("request line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, err
	}
}

// ErrDaemonDown means nothing answers on the submission socket.
var ErrDaemonDown = errors.New("the mail system is not running")

// Submit hands a message to the running daemon and returns its queue ID.
// A refusal comes back as an outcome.Reply; ErrDaemonDown means the
// caller should leave the message in maildrop instead.
func Submit(queueDir string, req SubmitRequest, content io.Reader, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", filepath.Join(queueDir, SubmitSocket), 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return "", ErrDaemonDown
		}
		return "", err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(timeout))
	bw := bufio.NewWriterSize(uc, 64<<10)
	if err := json.NewEncoder(bw).Encode(req); err != nil {
		return "", err
	}
	if content != nil {
		if _, err := io.Copy(bw, content); err != nil {
			return "", err
		}
	}
	if err := bw.Flush(); err != nil {
		return "", err
	}
	_ = uc.CloseWrite()
	var r SubmitReply
	if err := json.NewDecoder(bufio.NewReader(uc)).Decode(&r); err != nil {
		return "", fmt.Errorf("no answer from the mail system: %w", err)
	}
	if r.Code != 0 {
		return "", r.Reply
	}
	return r.QueueID, nil
}

// Drop writes a message into maildrop for pickup (the daemon is down).
// The file is the user's, mode 0744 when complete.
func Drop(q *queue.Queue, req SubmitRequest, content io.Reader) (string, error) {
	w, err := q.Create(queue.Maildrop, time.Now())
	if err != nil {
		return "", err
	}
	w.SetReadyMode(0o744)
	if req.FullName != "" {
		w.SetAttr("full_name", req.FullName)
	}
	w.SetAttr("submit_uid", strconv.Itoa(os.Getuid()))
	if v := req.traceFlags(); v != "" {
		w.SetAttr(qmgr.TraceFlags, v)
	}
	w.SetSender(req.Sender)
	for _, r := range req.Recipients {
		w.AddRecipient(queue.Recipient{Addr: r})
	}
	if _, err := io.Copy(w, content); err != nil {
		w.Abort()
		return "", err
	}
	if err := w.Commit(); err != nil {
		return "", err
	}
	return w.ID(), nil
}
