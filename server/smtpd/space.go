package smtpd

import (
	"golang.org/x/sys/unix"

	"mailsrv/outcome"
)

var replyNoSpace = outcome.New(452, "4.3.1", "Insufficient system storage").WithClass(outcome.Resource)

// checkSpace refuses a transaction when the queue file system is nearly
// full, as Postfix's smtpd does at MAIL FROM: free space below
// queue_minfree or 1.5 times message_size_limit, or below queue_minfree
// plus 1.5 times the size the client announced. Better a 452 now than a
// write error after the client has sent the whole message; and the
// refusal ends by itself when space comes back.
func (s *session) checkSpace(size int64) *outcome.Reply {
	var st unix.Statfs_t
	if err := unix.Statfs(s.srv.p.QueueDirectory, &st); err != nil {
		return nil // cannot tell: let the write decide
	}
	p := s.srv.p
	free := int64(st.Bavail) * int64(st.Bsize)
	minfree := int64(p.QueueMinfree)
	if limit := int64(p.MessageSizeLimit); limit > 0 && free < limit+limit/2 {
		s.srv.log.Warnf("not enough free space in mail queue: %d bytes < 1.5*message size limit", free)
		return &replyNoSpace
	}
	if free < minfree || free-minfree < size+size/2 {
		s.srv.log.Warnf("not enough free space in mail queue: %d bytes < queue_minfree + 1.5*message size", free)
		return &replyNoSpace
	}
	return nil
}
