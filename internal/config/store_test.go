package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStoreEtcd(t *testing.T) {
	base := "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\nstore:\n  etcd:\n"
	tests := []struct {
		name string
		etcd string
		want []string // nil: valid
	}{
		{"valid", "    endpoints: [http://127.0.0.1:2379, http://127.0.0.2:2379]\n    prefix: /gh\n    request_timeout: 1s\n", nil},
		{"valid tls and auth", "    endpoints: [https://etcd1:2379]\n    ca_file: /ca.pem\n    cert_file: /c.pem\n    key_file: /k.pem\n    username: gh\n    password_file: /pw\n", nil},
		{"no endpoints", "    prefix: /gh\n", []string{"store.etcd.endpoints: must list at least one etcd client URL, e.g. http://10.0.0.1:2379"}},
		{"bad endpoints", "    endpoints: [\"etcd1:2379\", \"http://etcd2\", \"ftp://e:1\", \"http://e:1/x\"]\n", []string{
			`store.etcd.endpoints[0]: "etcd1:2379" must be an http:// or https:// URL with host:port`,
			`store.etcd.endpoints[1]: "http://etcd2" must name a host and a port, e.g. https://etcd1:2379`,
			`store.etcd.endpoints[2]: "ftp://e:1" must be an http:// or https:// URL with host:port`,
			`store.etcd.endpoints[3]: "http://e:1/x" must not have a path`,
		}},
		{"plain http with tls", "    endpoints: [http://e:2379]\n    ca_file: /ca.pem\n", []string{
			`store.etcd.endpoints[0]: "http://e:2379" is plain http but TLS files are configured; use https://`}},
		{"prefix", "    endpoints: [http://e:2379]\n    prefix: gh\n", []string{`store.etcd.prefix: "gh" must start with /`}},
		{"timeouts", "    endpoints: [http://e:2379]\n    dial_timeout: 1ms\n    request_timeout: 2h\n", []string{
			"store.etcd.dial_timeout: 1ms is too short; use at least 10ms",
			"store.etcd.request_timeout: 2h0m0s is too long; use at most 1m0s",
		}},
		{"cert without key", "    endpoints: [https://e:2379]\n    cert_file: /c.pem\n", []string{"store.etcd: cert_file and key_file go together: give both or neither"}},
		{"user without password", "    endpoints: [http://e:2379]\n    username: gh\n", []string{"store.etcd.username: is set without store.etcd.password_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(base + tc.etcd))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if cfg.Store.Etcd == nil || len(cfg.Store.Etcd.Endpoints) == 0 {
					t.Errorf("store.etcd = %+v, want endpoints", cfg.Store.Etcd)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want errors %q", tc.want)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}
