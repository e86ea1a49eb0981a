package master

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"mailsrv/delivery/local"
)

// childExec is a copy of this test binary that unprivileged users may
// run: local(8)'s children run as the recipient, and go test's build
// directory is private.
var childExec string

// TestMain lets this test binary serve as local(8)'s child process, as
// the mailsrv binary does.
func TestMain(m *testing.M) {
	if local.IsChild() {
		os.Exit(local.ChildMain())
	}
	dir, err := os.MkdirTemp("", "mailsrv-child")
	if err == nil {
		os.Chmod(dir, 0o755)
		childExec = filepath.Join(dir, "master.test")
		if err := copyExec(childExec); err != nil {
			childExec = ""
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func copyExec(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
