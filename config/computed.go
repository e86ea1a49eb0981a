package config

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// computedDefault derives the defaults that depend on the machine, as
// Postfix does at startup.
func computedDefault(name string, e *expander) (string, error) {
	switch name {
	case "mail_version":
		return Version, nil
	case "myhostname":
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		if !strings.Contains(h, ".") {
			// Postfix appends .localdomain to a bare host name.
			h += ".localdomain"
		}
		return strings.ToLower(h), nil
	case "mydomain":
		h, err := e.param("myhostname")
		if err != nil {
			return "", err
		}
		if _, d, ok := strings.Cut(h, "."); ok && d != "" {
			return d, nil
		}
		return "localdomain", nil
	case "mynetworks":
		style, err := e.param("mynetworks_style")
		if err != nil {
			return "", err
		}
		return mynetworks(style)
	}
	return "", fmt.Errorf("no computed default for %s", name)
}

// mynetworks lists the trusted networks for mynetworks_style: host (the
// machine's own addresses, the Postfix 3 default), subnet (the subnets of
// its interfaces) or class (their class A/B/C networks).
func mynetworks(style string) (string, error) {
	nets := []string{"127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128"}
	seen := map[string]bool{}
	for _, n := range nets {
		seen[n] = true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return strings.Join(nets, " "), nil
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() {
			continue
		}
		var n *net.IPNet
		switch style {
		case "host":
			bits := 8 * len(ipn.IP)
			if ipn.IP.To4() != nil {
				bits = 32
			}
			n = &net.IPNet{IP: ipn.IP, Mask: net.CIDRMask(bits, bits)}
		case "subnet":
			n = &net.IPNet{IP: ipn.IP.Mask(ipn.Mask), Mask: ipn.Mask}
		case "class":
			ip4 := ipn.IP.To4()
			if ip4 == nil {
				n = &net.IPNet{IP: ipn.IP.Mask(ipn.Mask), Mask: ipn.Mask}
				break
			}
			ones := 24
			switch {
			case ip4[0] < 128:
				ones = 8
			case ip4[0] < 192:
				ones = 16
			}
			m := net.CIDRMask(ones, 32)
			n = &net.IPNet{IP: ip4.Mask(m), Mask: m}
		default:
			return "", fmt.Errorf("mynetworks_style %q is not host, subnet or class", style)
		}
		s := n.String()
		if n.IP.To4() == nil {
			ones, _ := n.Mask.Size()
			s = fmt.Sprintf("[%s]/%d", n.IP, ones)
		}
		if !seen[s] {
			seen[s] = true
			nets = append(nets, s)
		}
	}
	return strings.Join(nets, " "), nil
}
