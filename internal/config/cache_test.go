package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestResponseCacheConfig(t *testing.T) {
	base := "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\n" +
		"pools:\n  - name: web\n    members: [{address: \"127.0.0.1:9001\"}]\n"
	route := func(cache string) string {
		return "routes:\n  - host: app.test\n    pool: web\n    cache: " + cache + "\n"
	}
	tests := []struct {
		name string
		yaml string
		want []string // each a full line of the joined error; nil: valid
	}{
		{"enabled with defaults", base + route("{enabled: true}"), nil},
		{"small max_bytes lowers the default max_object_bytes", base + "response_cache: {max_bytes: 2MiB}\n", nil},
		{"all fields", base + route("{enabled: true, default_ttl: 5m, max_stale: 7d}") +
			"response_cache: {max_bytes: 256MiB, max_object_bytes: 8MiB}\n", nil},
		{"fields without enabled", base + route("{default_ttl: 5m}"),
			[]string{`routes[0].cache.enabled: must be true when other cache fields are set`}},
		{"max_stale too long", base + route("{enabled: true, max_stale: 400d}"),
			[]string{`routes[0].cache.max_stale: 9600h0m0s must be between 1s and 365d`}},
		{"max_stale too short", base + route("{enabled: true, max_stale: 10ms}"),
			[]string{`routes[0].cache.max_stale: 10ms must be between 1s and 365d`}},
		{"default_ttl too long", base + route("{enabled: true, default_ttl: 366d}"),
			[]string{`routes[0].cache.default_ttl: 8784h0m0s must be between 0 and 365d`}},
		{"negative default_ttl", base + route("{enabled: true, default_ttl: -1s}"),
			[]string{`routes[0].cache.default_ttl: "-1s" is negative (line 10)`}},
		{"unknown field", base + route("{enabled: true, max_stal: 5m}"),
			[]string{`routes[0].cache.max_stal: unknown field; did you mean "max_stale"? (line 10)`}},
		{"max_bytes too small", base + "response_cache: {max_bytes: 512KiB}\n",
			[]string{`response_cache.max_bytes: 512KiB is below the minimum of 1MiB`}},
		{"max_object_bytes too small", base + "response_cache: {max_object_bytes: 100}\n",
			[]string{`response_cache.max_object_bytes: 100B is below the minimum of 1KiB`}},
		{"max_object_bytes over a quarter", base + "response_cache: {max_bytes: 8MiB, max_object_bytes: 4MiB}\n",
			[]string{`response_cache.max_object_bytes: 4MiB is more than a quarter of response_cache.max_bytes (8MiB)`}},
		{"several at once", base + route("{enabled: true, max_stale: 500d, default_ttl: 500d}") + "response_cache: {max_bytes: 1KiB}\n",
			[]string{
				`routes[0].cache.default_ttl: 12000h0m0s must be between 0 and 365d`,
				`routes[0].cache.max_stale: 12000h0m0s must be between 1s and 365d`,
				`response_cache.max_bytes: 1KiB is below the minimum of 1MiB`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestResponseCacheDefaults(t *testing.T) {
	yaml := "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\n" +
		"pools:\n  - name: web\n    members: [{address: \"127.0.0.1:9001\"}]\n" +
		"routes:\n  - {host: a.test, pool: web, cache: {enabled: true}}\n  - {host: b.test, pool: web}\n"
	cfg, err := Parse(strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		A, B RouteCache
		RC   ResponseCache
	}
	got := view{cfg.Routes[0].Cache, cfg.Routes[1].Cache, cfg.ResponseCache}
	want := view{
		A:  RouteCache{Enabled: true, MaxStale: Duration(24 * time.Hour)},
		B:  RouteCache{},
		RC: ResponseCache{MaxBytes: 64 << 20, MaxObjectBytes: 1 << 20},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}
