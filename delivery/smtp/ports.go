package smtp

import (
	"errors"
	"strconv"
	"strings"
)

// knownPorts are Postfix's known_tcp_ports.
var knownPorts = map[string]int{"smtp": 25, "lmtp": 24, "submission": 587, "submissions": 465, "smtps": 465}

// port reads a port number or service name.
func port(s string) (int, error) {
	if p, ok := knownPorts[strings.ToLower(s)]; ok {
		return p, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, errors.New("bad port " + strconv.Quote(s))
	}
	return n, nil
}
