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

func TestStoreEtcdLocalCacheBytes(t *testing.T) {
	base := "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\nstore:\n  etcd:\n    endpoints: [http://e:2379]\n"
	tests := []struct {
		name  string
		value string // the YAML value of local_cache_bytes; empty leaves it out
		want  ByteSize
		errs  []string // nil: valid, and the parsed value is want
	}{
		{"unset is the default", "", 0, nil},
		{"zero is the default", "0", 0, nil},
		{"lower bound", "1MiB", 1 << 20, nil},
		{"upper bound", "1TiB", 1 << 40, nil},
		{"plain bytes", "536870912", 512 << 20, nil},
		{"fraction of a unit", "1.5GiB", 3 << 29, nil},
		{"below the lower bound", "1KiB", 0, []string{
			"store.etcd.local_cache_bytes: 1KiB must be between 1MiB and 1TiB (0 means the default of 512MiB)"}},
		{"one byte short", "1048575", 0, []string{
			"store.etcd.local_cache_bytes: 1048575B must be between 1MiB and 1TiB (0 means the default of 512MiB)"}},
		{"above the upper bound", "2TiB", 0, []string{
			"store.etcd.local_cache_bytes: 2048GiB must be between 1MiB and 1TiB (0 means the default of 512MiB)"}},
		{"not a size", "lots", 0, []string{
			`store.etcd.local_cache_bytes: "lots" is not a size (use e.g. 512KiB, 64MiB, 1GiB) (line 7)`}},
		{"negative", "-1MiB", 0, []string{
			`store.etcd.local_cache_bytes: "-1MiB" is not a size (use e.g. 512KiB, 64MiB, 1GiB) (line 7)`}},
		{"a list", "[1MiB]", 0, []string{
			"store.etcd.local_cache_bytes: expected a single value, got a list (line 7)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := base
			if tc.value != "" {
				doc += "    local_cache_bytes: " + tc.value + "\n"
			}
			cfg, err := Parse(strings.NewReader(doc))
			if tc.errs == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if got := cfg.Store.Etcd.LocalCacheBytes; got != tc.want {
					t.Errorf("local_cache_bytes = %d, want %d", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want errors %q", tc.errs)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.errs); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}
