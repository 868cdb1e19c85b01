package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestACME(t *testing.T) {
	base := "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  http: {address: \"127.0.0.1:8080\"}\n  admin: {address: \"127.0.0.1:9443\"}\npools:\n  - name: web\n    members: [{address: \"127.0.0.1:9000\"}]\nacme:\n"
	tests := []struct {
		name string
		acme string
		want []string // nil: valid
	}{
		{"minimal", "  directories: [https://ca.test/dir]\n", nil},
		{"full", "  directories: [https://ca.test/dir, https://ca2.test/dir]\n  email: ops@example.com\n  eab: {key_id: kid, hmac_file: /hmac}\n  challenges: [tls-alpn-01, http-01, dns-01]\n  dns01: {command: [/bin/hook], timeout: 30s}\n  key_type: rsa2048\n  profile: shortlived\n  ca_file: /ca.pem\n  on_demand: {enabled: true, ask_url: \"http://127.0.0.1:1/ask\", pool: web}\n  rate_limits: {orders_per_3h: 10}\n", nil},
		{"no directory", "  email: ops@example.com\n", []string{"acme.directories: must list at least one ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory"}},
		{"bad fields", "  directories: [\"http://ca.test/dir\", \"nope\"]\n  email: \"not-mail\"\n  eab: {key_id: \"\"}\n  challenges: [http-01, smtp-01, http-01, dns-01]\n  key_type: ed448\n  order_timeout: 1s\n  on_demand: {wait: 5m, ask_url: \"ftp://x\", pool: nope}\n  rate_limits: {orders_per_3h: -1}\n", []string{
			`acme.directories[0]: "http://ca.test/dir" must be an https:// URL (ACME requires TLS)`,
			`acme.directories[1]: "nope" is not an absolute URL`,
			`acme.email: "not-mail" is not an email address`,
			`acme.eab.key_id: is required with acme.eab`,
			`acme.eab.hmac_file: is required with acme.eab (a file holding the base64url HMAC key)`,
			`acme.challenges[1]: "smtp-01" must be one of http-01, tls-alpn-01, dns-01`,
			`acme.challenges[2]: "http-01" is listed twice`,
			`acme.challenges[3]: dns-01 needs acme.dns01.command`,
			`acme.key_type: "ed448" must be one of ecdsa-p256, rsa2048`,
			`acme.order_timeout: 1s must be between 5s and 1h`,
			`acme.on_demand.wait: 5m0s must be between 100ms and 1m (a handshake waits that long)`,
			`acme.on_demand.ask_url: "ftp://x" is not an absolute http(s) URL`,
			`acme.on_demand.pool: "nope" is not a pool defined under pools`,
			`acme.rate_limits.orders_per_3h: -1 must be between 0 (the default) and 1000000`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(base + tc.acme))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want errors %q", cfg.ACME, tc.want)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestACMEDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader("listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\nacme:\n  directories: [https://ca.test/dir]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.ACME
	if diff := cmp.Diff(a.Challenges, []string{"tls-alpn-01"}); diff != "" {
		t.Errorf("challenges without listeners.http (-got +want):\n%s", diff)
	}
	if a.KeyType != "ecdsa-p256" || a.OrderTimeout.D() != DefaultACMEOrderTimeout || a.OnDemand.Wait.D() != DefaultOnDemandWait {
		t.Errorf("defaults not applied: %+v", a)
	}
}
