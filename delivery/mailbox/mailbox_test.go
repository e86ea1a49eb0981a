package mailbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailsrv/outcome"
)

func TestMaildir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "Maildir")
	env := Envelope{Sender: "s@example.test", Recipient: "r@example.test", Original: "o@example.test", DeliveredTo: true}
	path, err := Maildir(dir, env, strings.NewReader("Subject: x\n\nFrom me\n"), "mx.example/a:b")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != filepath.Join(dir, "new") || !strings.HasSuffix(path, `.mx.example\057a\072b`) {
		t.Errorf("file name %s", path)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "Return-Path: <s@example.test>\nX-Original-To: o@example.test\nDelivered-To: r@example.test\nSubject: x\n\nFrom me\n" {
		t.Errorf("content %q", b)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not empty: %v", ents)
	}
	env.Limit = 10
	if _, err := Maildir(dir, env, strings.NewReader(strings.Repeat("x", 100)), "h"); err == nil || err.(outcome.Status).DSN != "5.2.2" {
		t.Errorf("over the limit: %v", err)
	}
}

func TestMboxQuotingAndLimit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mbox")
	lk := Locking{Fcntl: true, Dotlock: true, Attempts: 2, Delay: time.Millisecond, Stale: time.Minute}
	env := Envelope{Recipient: "r@example.test"}
	if err := Mbox(path, env, strings.NewReader("From: x\nSubject: y\n\nFrom the body\nno newline"), lk, -1); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	if !strings.HasPrefix(s, "From MAILER-DAEMON  ") || !strings.Contains(s, "\nFrom: x\n") || !strings.Contains(s, "\n>From the body\nno newline\n\n") {
		t.Errorf("mbox:\n%q", s)
	}
	size := len(b)
	env.Limit = int64(size + 10)
	if err := Mbox(path, env, strings.NewReader(strings.Repeat("y", 100)), lk, -1); err == nil || err.(outcome.Status).DSN != "5.2.2" {
		t.Errorf("over the limit: %v", err)
	}
	if b, _ := os.ReadFile(path); len(b) != size {
		t.Errorf("the failed append left %d bytes, want the old %d", len(b), size)
	}
	// A fresh dotlock held by someone else: defer after the attempts.
	if err := os.WriteFile(path+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env.Limit = 0
	if err := Mbox(path, env, strings.NewReader("x\n"), lk, -1); err == nil || err.(outcome.Status).DSN != "4.2.0" {
		t.Errorf("with a held dotlock: %v", err)
	}
	// A stale one is broken.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path+".lock", old, old)
	if err := Mbox(path, env, strings.NewReader("x\n"), lk, -1); err != nil {
		t.Errorf("with a stale dotlock: %v", err)
	}
	if _, err := os.Stat(path + ".lock"); err == nil {
		t.Error("dotlock left behind")
	}
	if err := Mbox(path, env, strings.NewReader("x\n"), lk, os.Getuid()+1); err == nil {
		t.Error("strict ownership not enforced")
	}
}

func TestHasDeliveredTo(t *testing.T) {
	t.Parallel()
	msg := "Received: x\nDelivered-To: A@Example.test\nSubject: s\n\nDelivered-To: b@example.test\n"
	for addr, want := range map[string]bool{"a@example.test": true, "b@example.test": false} {
		if got, _ := HasDeliveredTo(strings.NewReader(msg), addr); got != want {
			t.Errorf("%s: %v", addr, got)
		}
	}
}
