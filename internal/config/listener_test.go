package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestListenerLimitDefaults(t *testing.T) {
	doc := `
listeners:
  https: {address: "127.0.0.1:8443", max_connections: 1000}
  admin: {address: "127.0.0.1:9443"}
`
	cfg, err := Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Listeners.HTTPS
	if h.MaxQueued != DefaultMaxQueued || h.QueueTimeout.D() != DefaultQueueTimeout {
		t.Errorf("queue defaults: %d %s", h.MaxQueued, h.QueueTimeout.D())
	}
	pc := h.PerClient
	if pc.MaxConnections != 250 || pc.MaxNewPerSecond != DefaultPerClientMaxNew || pc.Burst != DefaultPerClientBurst || pc.TrackedAddresses != DefaultTrackedAddresses {
		t.Errorf("per_client defaults: %+v; want a quarter of max_connections (250)", pc)
	}
	if a := cfg.Listeners.Admin.PerClient; a.MaxConnections != 0 {
		t.Errorf("per_client applied to the admin listener: %+v", a)
	}
}

func TestListenerLimitValidation(t *testing.T) {
	base := `
listeners:
  https: {address: "127.0.0.1:8443"%s}
  admin: {address: "%s"%s}
`
	tests := []struct {
		name, https, admin, adminExtra, want string
	}{
		{"admin on every interface", "", "0.0.0.0:9443", "", "listeners.admin.allow_remote: the admin API would listen on \"0.0.0.0:9443\""},
		{"admin on a LAN address", "", "192.0.2.10:9443", "", "listeners.admin.allow_remote"},
		{"admin remote confirmed", "", "0.0.0.0:9443", ", allow_remote: true", ""},
		{"admin on ::1", "", "[::1]:9443", "", ""},
		{"admin on localhost", "", "localhost:9443", "", ""},
		{"allow_remote elsewhere", ", allow_remote: true", "127.0.0.1:9443", "", "listeners.https.allow_remote: applies to listeners.admin only"},
		{"bad CIDR", ", per_client: {allow: [10.0.0.0/8, nonsense]}", "127.0.0.1:9443", "", "listeners.https.per_client.allow[1]"},
		{"per_client on admin", "", "127.0.0.1:9443", ", per_client: {max_connections: 3}", "listeners.admin.per_client: applies to listeners.https only"},
		{"negative queue", ", max_queued: -2", "127.0.0.1:9443", "", "listeners.https.max_queued"},
		{"no queue", ", max_queued: -1", "127.0.0.1:9443", "", ""},
		{"rate off", ", per_client: {max_new_per_second: -1, max_connections: -1}", "127.0.0.1:9443", "", ""},
		{"queue timeout too long", ", queue_timeout: 2m", "127.0.0.1:9443", "", "listeners.https.queue_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(fmt.Sprintf(base, tt.https, tt.admin, tt.adminExtra)))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "localhost": true, "::ffff:127.0.0.1": true,
		"": false, "0.0.0.0": false, "::": false, "192.0.2.1": false, "gatehouse.example": false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
