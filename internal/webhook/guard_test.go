package webhook

import (
	"net/netip"
	"strings"
	"testing"
)

// TestGuardCheck covers the address classes directly, IPv6 included.
func TestGuardCheck(t *testing.T) {
	g := NewGuard("status.webhooks.allow_hosts")
	g.SetAllowHosts([]string{"fd00:1::/64", "127.0.0.2", "hooks.internal"})
	for _, tt := range []struct {
		host, addr string
		refused    bool
	}{
		{"x", "127.0.0.1:80", true},
		{"x", "127.0.0.2:80", false}, // allowed by address
		{"hooks.internal", "127.0.0.1:80", false},
		{"HOOKS.internal.", "127.0.0.1:80", false},
		{"x", "[fd00:1::5]:443", false},
		{"x", "[fd00:2::5]:443", false}, // private, allowed anyway
		{"x", "[ff02::1]:443", true},
		{"x", "[fe80::1%25eth0]:443", true},
		{"x", "8.8.8.8:443", false},
	} {
		ap, err := netip.ParseAddrPort(strings.Replace(tt.addr, "%25", "%", 1))
		if err != nil {
			t.Fatal(err)
		}
		err = g.Check(tt.host, ap)
		if (err != nil) != tt.refused {
			t.Errorf("check(%s, %s) = %v, want refused %v", tt.host, tt.addr, err, tt.refused)
		}
	}
}
