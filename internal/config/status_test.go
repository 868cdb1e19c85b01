package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateStatus(t *testing.T) {
	base := `
listeners:
  https: {address: "127.0.0.1:8443"}
  admin: {address: "127.0.0.1:9443"}
pools:
  - name: web
    members: [{address: "127.0.0.1:9001"}]
`
	tests := []struct {
		name, status, wantErr string
	}{
		{"good", "status: {url: https://status.example.com, hysteresis: 10s, components: [{name: Web, region: EU01, pools: [web]}, {name: Web, region: US01, pools: [web]}], webhooks: {allow_hosts: [127.0.0.1, \"::1\", 10.0.0.0/8, hooks.internal, localhost]}}", ""},
		{"bad allow_hosts entry", "status: {webhooks: {allow_hosts: [127.0.0.1, 10.0.0.0/40]}}", `status.webhooks.allow_hosts[1]: "10.0.0.0/40" is neither an IP address, a CIDR nor a host name`},
		{"allow_hosts URL", "status: {webhooks: {allow_hosts: [\"https://hooks.internal/x\"]}}", `status.webhooks.allow_hosts[0]: "https://hooks.internal/x" is neither`},
		{"duplicate in region", "status: {components: [{name: Web, region: EU01}, {name: web, region: EU01}]}", `status.components[1].name: "web" in region "EU01" is already status.components[0]`},
		{"unknown pool", "status: {components: [{name: Web, pools: [api]}]}", `status.components[0].pools[0]: "api" is not a pool`},
		{"empty name", "status: {components: [{region: EU01}]}", "status.components[0].name: must not be empty"},
		{"slash in region", "status: {components: [{name: Web, region: EU/01}]}", "status.components[0].region"},
		{"relative url", "status: {url: status.example.com}", `status.url: "status.example.com" is not an absolute`},
		{"hysteresis too long", "status: {hysteresis: 2h}", "status.hysteresis: 2h0m0s must be between 0 and 1h"},
		{"error window too short", "status: {hysteresis: 10s, error_rate: {window: 1s}}", "status.error_rate.window: 1s must be between 10s and 1h"},
		{"negative minimum", "status: {error_rate: {min_requests: -1}}", "status.error_rate.min_requests: -1 must not be negative"},
		{"threshold above 100", "status: {error_rate: {major: 150}}", "status.error_rate.major: 150 must be a percentage"},
		{"thresholds out of order", "status: {error_rate: {degraded: 30, partial: 20}}", "status.error_rate.partial: 20% is below status.error_rate.degraded (30%)"},
		{"default major below a raised partial", "status: {error_rate: {partial: 60}}", "status.error_rate.major: 50% is below status.error_rate.partial (60%)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(base + tt.status))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				if got := cfg.Status.Hysteresis.D(); got != 10*time.Second {
					t.Errorf("hysteresis = %v, want 10s", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestErrorRateDefaults(t *testing.T) {
	tests := []struct {
		name, status string
		want         ErrorRate
	}{
		{"none set", "", ErrorRate{Window: Duration(time.Minute), MinRequests: 20, Degraded: 5, Partial: 25, Major: 50}},
		{"some set", "status: {error_rate: {window: 5m, min_requests: 100, degraded: 1}}",
			ErrorRate{Window: Duration(5 * time.Minute), MinRequests: 100, Degraded: 1, Partial: 25, Major: 50}},
		{"disabled", "status: {error_rate: {disabled: true}}",
			ErrorRate{Disabled: true, Window: Duration(time.Minute), MinRequests: 20, Degraded: 5, Partial: 25, Major: 50}},
	}
	base := `
listeners:
  https: {address: "127.0.0.1:8443"}
  admin: {address: "127.0.0.1:9443"}
`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(base + tt.status))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Status.ErrorRate.WithDefaults(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
