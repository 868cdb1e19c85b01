package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateStatusEmail(t *testing.T) {
	base := `
listeners:
  https: {address: "127.0.0.1:8443"}
  admin: {address: "127.0.0.1:9443"}
pools:
  - name: web
    members: [{address: "127.0.0.1:9001"}]
status:
  url: https://status.example.com
  email:
`
	tests := []struct {
		name, email, wantErr string
	}{
		{"good", "{smtp: {host: mail.example.com, username: u, password_file: /etc/pw}, from: \"Status <status@example.com>\"}", ""},
		{"no host", "{from: status@example.com}", "status.email.smtp.host: must not be empty"},
		{"host with port", "{smtp: {host: \"mail:25\"}, from: status@example.com}", `status.email.smtp.host: "mail:25" must be a host name`},
		{"bad tls", "{smtp: {host: m, tls: ssl}, from: status@example.com}", `status.email.smtp.tls: "ssl" must be starttls, implicit or none`},
		{"password in clear", "{smtp: {host: m, tls: none, username: u, password_file: /p}, from: status@example.com}", "status.email.smtp.tls: none sends credentials in clear"},
		{"user without password", "{smtp: {host: m, username: u}, from: status@example.com}", "status.email.smtp.password_file: username and password_file go together"},
		{"bad port", "{smtp: {host: m, port: 70000}, from: status@example.com}", "status.email.smtp.port: 70000 must be between"},
		{"no from", "{smtp: {host: m}}", "status.email.from: must not be empty"},
		{"bad from", "{smtp: {host: m}, from: \"not an address\"}", `status.email.from: "not an address" is not an email address`},
		{"relative public url", "{smtp: {host: m}, from: a@b.c, public_url: /status}", `status.email.public_url: "/status" is not an absolute`},
		{"negative rate", "{smtp: {host: m}, from: a@b.c, rate_per_second: -1}", "status.email.rate_per_second: -1 must be between"},
		{"too many connections", "{smtp: {host: m, connections: 65}, from: a@b.c}", "status.email.smtp.connections: 65 must be between 1 and 64"},
		{"ttl too short", "{smtp: {host: m}, from: a@b.c, confirm_ttl: 1m}", "status.email.confirm_ttl: 1m0s must be between 10m and 720h"},
		{"negative failures", "{smtp: {host: m}, from: a@b.c, max_failures: -2}", "status.email.max_failures: -2 must be between"},
		{"negative ip rate", "{smtp: {host: m}, from: a@b.c, per_ip_per_hour: -2}", "status.email.per_ip_per_hour: -2 must be between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(base[:len(base)-1] + " " + tt.email + "\n"))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				d := cfg.Status.Email.WithDefaults()
				if d.SMTP.TLS != SMTPTLSStartTLS || d.SMTP.Port != 587 || d.ConfirmTTL.D() != 48*time.Hour || d.MaxFailures != DefaultMaxFailures {
					t.Errorf("defaults = %+v", d)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
