package smtpd

import (
	"golang.org/x/sys/unix"
)

var replyNoSpace = Reply{452, "4.3.1", "Insufficient system storage"}

// checkSpace refuses a transaction when the queue file system is nearly
// full, as Postfix's smtpd_check_size does: free space below queue_minfree,
// or below 1.5 times the size the client announced. Better a 452 now than a
// write error after the client has sent the whole message.
func (s *session) checkSpace(size int64) *Reply {
	var st unix.Statfs_t
	if err := unix.Statfs(s.srv.p.QueueDirectory, &st); err != nil {
		return nil // cannot tell: let the write decide
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < int64(s.srv.p.QueueMinfree) || free < size+size/2 {
		s.srv.log.Warnf("not enough free space in mail queue: %d bytes < 1.5*message size limit", free)
		return &replyNoSpace
	}
	return nil
}
