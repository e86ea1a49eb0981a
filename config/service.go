package config

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Service is one [[service]] table: a master.cf entry.
type Service struct {
	Name         string // service name; for transports, the transport name
	Type         string // inet, unix, unix-dgram, fifo or pass
	Listen       string // host:port for inet, a socket path for unix (absolute)
	Command      string // the role: smtpd, pickup, qmgr, smtp, pipe, …
	ProcessLimit int    // 0 = default_process_limit
	Line         int    // where the table starts in the file
	// Pipe holds pipe(8)'s master.cf attributes (argv=, flags=, user=,
	// size=, eol=, null_sender=, directory=); only command "pipe" has them.
	Pipe *PipeAttrs
	// Params are the effective parameters of this service: the file's
	// values with [service.overrides] applied (master.cf -o).
	Params *Params

	overrides map[string]setting
}

// Limit is the service's worker pool size.
func (s *Service) Limit() int {
	if s.ProcessLimit > 0 {
		return s.ProcessLimit
	}
	return s.Params.DefaultProcessLimit
}

// OverrideNames lists the parameters this service overrides, sorted.
func (s *Service) OverrideNames() []string {
	out := make([]string, 0, len(s.overrides))
	for n := range s.overrides {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Override returns the raw value of one override.
func (s *Service) Override(name string) (string, bool) {
	v, ok := s.overrides[name]
	return v.raw, ok
}

// Commands are the roles a [[service]] may name: the programs of Postfix's
// stock master.cf, so a converted master.cf loads. Which of them this build
// of mailsrv runs is the master's business (server/master); a service whose
// command it does not run is reported with a warning.
var Commands = map[string]bool{
	"smtpd": true, "postscreen": true, "tlsproxy": true, "dnsblog": true,
	"pickup": true, "cleanup": true, "qmgr": true, "oqmgr": true,
	"tlsmgr": true, "trivial-rewrite": true, "bounce": true, "verify": true,
	"flush": true, "proxymap": true, "smtp": true, "lmtp": true,
	"showq": true, "error": true, "discard": true, "local": true,
	"virtual": true, "pipe": true, "anvil": true, "scache": true,
	"postlog": true, "spawn": true, "qmqpd": true,
}

var serviceTypes = map[string]bool{"inet": true, "unix": true, "unix-dgram": true, "fifo": true, "pass": true}

var serviceKeys = []string{"name", "type", "listen", "command", "process_limit", "overrides",
	"argv", "flags", "user", "size", "eol", "null_sender", "directory"}

// pipeKeys are the keys only a pipe service may have.
var pipeKeys = []string{"argv", "flags", "user", "size", "eol", "null_sender", "directory"}

// PipeAttrs are pipe(8)'s attributes.
type PipeAttrs struct {
	Argv       []string // the command and its arguments, with $macros
	Flags      string   // B D F O R X h q u . >
	User       string   // user[:group] the command runs as
	Size       int64    // size limit in bytes (0 = none)
	Eol        string   // line terminator (default "\n")
	NullSender string   // what ${sender} is for the null sender
	Directory  string   // working directory
}

// services validates the [[service]] array.
func (ld *loader) services(v any) {
	list, ok := v.([]any)
	if !ok {
		ld.errorf("wrong type for service at %s: expected [[service]] tables, got %s", ld.at("service"), typeName(v))
		return
	}
	seen := map[string]int{}
	for i, e := range list {
		base := "service." + strconv.Itoa(i)
		m, ok := e.(map[string]any)
		if !ok {
			ld.errorf("wrong type for service at %s: expected a table, got %s", ld.at(base), typeName(e))
			continue
		}
		s := &Service{Line: ld.pos[base].line, overrides: map[string]setting{}}
		str := func(key string, dst *string) {
			if x, ok := m[key]; ok {
				if sv, ok := x.(string); ok {
					*dst = sv
				} else {
					ld.errorf("wrong type for %s in [[service]] at %s: expected a string, got %s", key, ld.at(base+"."+key), typeName(x))
				}
			}
		}
		str("name", &s.Name)
		str("type", &s.Type)
		str("listen", &s.Listen)
		str("command", &s.Command)
		label := fmt.Sprintf("[[service]] %q", s.Name)
		if s.Command == "pipe" {
			s.Pipe = ld.pipeAttrs(m, base, label)
		} else {
			for _, k := range pipeKeys {
				if _, ok := m[k]; ok {
					ld.errorf("%s at %s: %s is an attribute of pipe services only", label, ld.at(base+"."+k), k)
				}
			}
		}
		if x, ok := m["process_limit"]; ok {
			if n, ok := x.(int64); ok && n >= 0 {
				s.ProcessLimit = int(n)
			} else {
				ld.errorf("wrong type for process_limit in %s at %s: expected a non-negative integer, got %v", label, ld.at(base+".process_limit"), x)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if slices.Contains(serviceKeys, k) {
				continue
			}
			msg := fmt.Sprintf("unknown key %s in %s at %s", k, label, ld.at(base+"."+k))
			best, bestD := "", 3
			for _, c := range serviceKeys {
				if d := levenshtein(k, c); d < bestD {
					best, bestD = c, d
				}
			}
			if best == "" && (IsPostfixParameter(k) || registry[k] != nil) {
				msg += "; parameters go in [service.overrides]"
			} else if best != "" {
				msg += "; did you mean " + best + "?"
			}
			ld.errorf("%s", msg)
		}
		if ov, ok := m["overrides"]; ok {
			om, ok := ov.(map[string]any)
			if !ok {
				ld.errorf("wrong type for overrides in %s at %s: expected a table, got %s", label, ld.at(base+".overrides"), typeName(ov))
			}
			for k, x := range om {
				path := base + ".overrides." + k
				if raw, ok := ld.setting(k, x, path, " in "+label+" overrides"); ok {
					s.overrides[k] = setting{raw: raw, line: ld.pos[path].line}
				}
			}
		}

		at := ld.at(base)
		switch {
		case s.Name == "":
			ld.errorf("[[service]] at %s: missing name", at)
		case strings.ContainsAny(s.Name, " \t/"):
			ld.errorf("[[service]] at %s: bad name %q", at, s.Name)
		}
		if !serviceTypes[s.Type] {
			ld.errorf("%s at %s: type %q must be one of inet, unix, unix-dgram, fifo, pass", label, at, s.Type)
		}
		switch {
		case s.Command == "":
			ld.errorf("%s at %s: missing command", label, at)
		case !Commands[s.Command]:
			msg := fmt.Sprintf("%s at %s: unknown command %q", label, at, s.Command)
			best, bestD := "", 3
			cmds := make([]string, 0, len(Commands))
			for c := range Commands {
				cmds = append(cmds, c)
			}
			sort.Strings(cmds)
			for _, c := range cmds {
				if d := levenshtein(s.Command, c); d < bestD {
					best, bestD = c, d
				}
			}
			if best != "" {
				msg += "; did you mean " + best + "?"
			}
			ld.errorf("%s", msg)
		}
		if s.Type == "inet" {
			if err := checkListen(s.Listen); err != nil {
				ld.errorf("%s at %s: listen %q: %v", label, at, s.Listen, err)
			}
		} else if s.Listen != "" {
			s.Listen = ld.c.abs(s.Listen)
		}
		key := s.Name + "/" + s.Type
		if prev, dup := seen[key]; dup {
			ld.errorf("%s at %s: duplicate service %s (first at %s:%d)", label, at, key, ld.c.File, prev)
		}
		seen[key] = s.Line
		ld.c.Services = append(ld.c.Services, s)
	}
}

// pipeAttrs reads and checks a pipe service's attributes.
func (ld *loader) pipeAttrs(m map[string]any, base, label string) *PipeAttrs {
	pa := &PipeAttrs{Eol: "\n", NullSender: "MAILER-DAEMON"}
	str := func(key string, dst *string) {
		if x, ok := m[key]; ok {
			if sv, ok := x.(string); ok {
				*dst = sv
			} else {
				ld.errorf("wrong type for %s in %s at %s: expected a string, got %s", key, label, ld.at(base+"."+key), typeName(x))
			}
		}
	}
	str("flags", &pa.Flags)
	str("user", &pa.User)
	str("eol", &pa.Eol)
	str("null_sender", &pa.NullSender)
	str("directory", &pa.Directory)
	pa.Eol = strings.NewReplacer(`\r`, "\r", `\n`, "\n").Replace(pa.Eol)
	if x, ok := m["size"]; ok {
		if n, ok := x.(int64); ok && n >= 0 {
			pa.Size = n
		} else {
			ld.errorf("wrong type for size in %s at %s: expected a non-negative integer, got %v", label, ld.at(base+".size"), x)
		}
	}
	switch x := m["argv"].(type) {
	case nil:
		ld.errorf("%s at %s: a pipe service needs argv = [\"/path/to/command\", \"arg\", ...]", label, ld.at(base))
	case []any:
		for _, e := range x {
			if sv, ok := e.(string); ok {
				pa.Argv = append(pa.Argv, sv)
			} else {
				ld.errorf("wrong type for argv in %s at %s: expected strings, got %s", label, ld.at(base+".argv"), typeName(e))
			}
		}
		if len(pa.Argv) == 0 || !strings.HasPrefix(pa.Argv[0], "/") {
			ld.errorf("%s at %s: argv must start with the command's absolute path", label, ld.at(base+".argv"))
		}
	default:
		ld.errorf("wrong type for argv in %s at %s: expected an array of strings, got %s", label, ld.at(base+".argv"), typeName(x))
	}
	for _, f := range pa.Flags {
		if !strings.ContainsRune("BDFORXhqu.>", f) {
			ld.errorf("%s at %s: unknown pipe flag %q (known: B D F O R X h q u . >)", label, ld.at(base+".flags"), f)
		}
	}
	if pa.User == "" {
		ld.errorf("%s at %s: a pipe service needs user = \"name\" (never root)", label, ld.at(base))
	}
	return pa
}

// checkListen validates an inet listen address: host:port, [v6]:port or
// :port (all addresses).
func checkListen(l string) error {
	if l == "" {
		return fmt.Errorf("an inet service needs listen = \"host:port\"")
	}
	_, port, err := net.SplitHostPort(l)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
