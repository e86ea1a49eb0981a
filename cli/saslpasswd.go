package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"mailsrv/server/smtpd"
)

// newSaslpasswd is mailsrv's saslpasswd2: it keeps the built-in SASL
// password file (smtpd_sasl_type = mailsrv) of user:bcrypt-hash lines.
// The new file is written beside the old one and renamed over it, so the
// daemon never reads half a file.
func newSaslpasswd(g *globals) *cobra.Command {
	var del, list bool
	cmd := &cobra.Command{
		Use:   "saslpasswd [-d] [-l] [USER]",
		Short: "Add, change or remove a user of SMTP AUTH (the password is read from standard input)",
		Long: `saslpasswd manages the users smtpd accepts for SMTP AUTH when
smtpd_sasl_type = mailsrv: a file of user:bcrypt-hash lines at
smtpd_sasl_path (relative to queue_directory).

  mailsrv saslpasswd alice          set alice's password (read from standard input)
  mailsrv saslpasswd -d alice       remove alice
  mailsrv saslpasswd -l             list the users

The daemon reads the file again when it changes: no reload is needed.`,
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			path := smtpd.SaslPasswdPath(cfg.Params)
			users, err := smtpd.ReadPasswd(path)
			if err != nil && !os.IsNotExist(err) {
				return exitf(1, "saslpasswd: %v", err)
			}
			if users == nil {
				users = map[string]string{}
			}
			if list {
				names := make([]string, 0, len(users))
				for u := range users {
					names = append(names, u)
				}
				sort.Strings(names)
				for _, u := range names {
					fmt.Fprintln(c.OutOrStdout(), u)
				}
				return nil
			}
			if len(args) != 1 {
				return exitf(2, "usage: saslpasswd [-d] USER")
			}
			user := args[0]
			if user == "" || strings.ContainsAny(user, ":\n\r\x00") || len(user) > 256 {
				return exitf(2, "saslpasswd: bad user name %q", user)
			}
			if del {
				if _, ok := users[user]; !ok {
					return exitf(1, "saslpasswd: no such user: %s", user)
				}
				delete(users, user)
			} else {
				pass, err := bufio.NewReader(io.LimitReader(c.InOrStdin(), 1024)).ReadString('\n')
				if err != nil && err != io.EOF {
					return exitf(1, "saslpasswd: %v", err)
				}
				pass = strings.TrimRight(pass, "\r\n")
				if len(pass) < 8 {
					return exitf(2, "saslpasswd: the password must have at least 8 characters")
				}
				hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
				if err != nil {
					return exitf(1, "saslpasswd: %v", err)
				}
				users[user] = string(hash)
			}
			return writePasswd(path, users, cfg.Params.MailOwner)
		},
	}
	cmd.Flags().BoolVarP(&del, "delete", "d", false, "remove the user")
	cmd.Flags().BoolVarP(&list, "list", "l", false, "list the users")
	return cmd
}

// writePasswd replaces the file atomically, readable by mail_owner only.
func writePasswd(path string, users map[string]string, owner string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# SMTP AUTH users of mailsrv (mailsrv saslpasswd); user:bcrypt-hash\n")
	for _, u := range names {
		fmt.Fprintf(&b, "%s:%s\n", u, users[u])
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return exitf(1, "saslpasswd: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".saslpasswd.*")
	if err != nil {
		return exitf(1, "saslpasswd: %v", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		tmp.Close()
		return exitf(1, "saslpasswd: %v", err)
	}
	tmp.Chmod(0o600)
	if os.Geteuid() == 0 {
		if uid, gid, err := lookupUser(owner); err == nil {
			tmp.Chown(uid, gid)
		}
	}
	if err := tmp.Close(); err != nil {
		return exitf(1, "saslpasswd: %v", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return exitf(1, "saslpasswd: %v", err)
	}
	return nil
}
