package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const goodYAML = `
data_dir: /var/lib/gatehouse
listeners:
  https: {address: "127.0.0.1:8443"}
  http: {address: "127.0.0.1:8081"}
  status: {address: "127.0.0.1:8080"}
  admin: {address: "127.0.0.1:9443"}
tls:
  unknown_sni: default
  default_hostname: app.uni-a.test
  cache_bytes: 64MiB
pools:
  - name: web
    algorithm: weighted_round_robin
    members:
      - {address: "127.0.0.1:9001", weight: 3}
      - {address: "127.0.0.1:9002"}
    health_check: {path: /healthz, interval: 1s}
routes:
  - {host: app.uni-a.test, pool: web}
  - {host: "*.uni-c.test", path_prefix: /api, pool: web}
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse(strings.NewReader(goodYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Pool{
		Name:      "web",
		Algorithm: "weighted_round_robin",
		Members:   []Member{{Address: "127.0.0.1:9001", Weight: 3}, {Address: "127.0.0.1:9002", Weight: 1}},
		HealthCheck: HealthCheck{Path: "/healthz", Interval: Duration(time.Second),
			Timeout: Duration(time.Second), Rise: 2, Fall: 3},
		Timeouts: Timeouts{Dial: Duration(5 * time.Second), ResponseHeader: Duration(60 * time.Second), IdleConn: Duration(90 * time.Second)},
		Failover: Failover{Policy: FailoverSpread, MinHealthyShare: DefaultMinHealthyShare,
			ReturnAfter: Duration(DefaultReturnAfter), SlowStart: Duration(DefaultSlowStart)},
	}
	if diff := cmp.Diff(cfg.Pools[0], want); diff != "" {
		t.Errorf("pool (-got +want):\n%s", diff)
	}
	if got := cfg.TLS.CacheBytes; got != 64<<20 {
		t.Errorf("cache_bytes = %d, want %d", got, 64<<20)
	}
	if got := cfg.Routes[0].PathPrefix; got != "/" {
		t.Errorf("default path_prefix = %q, want /", got)
	}
	if got := cfg.Listeners.HTTPS.ReadHeaderTimeout.D(); got != DefaultReadHeaderTimeout {
		t.Errorf("read_header_timeout default = %v", got)
	}
	if h := cfg.Listeners.HTTPS; h.BodyReadTimeout.D() != 60*time.Second || h.WriteIdleTimeout.D() != 60*time.Second || h.UnderscoreHeaders != UnderscoreDrop {
		t.Errorf("https client defaults: body_read_timeout %s, write_idle_timeout %s, underscore_headers %q; want 1m, 1m, drop",
			h.BodyReadTimeout, h.WriteIdleTimeout, h.UnderscoreHeaders)
	}
}

func TestParseBad(t *testing.T) {
	base := func(extra string) string {
		return "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\n" + extra
	}
	pools := "pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\"}]\n  - name: b\n    members:\n      - {address: \"10.0.0.1\"}\n"
	tests := []struct {
		name string
		yaml string
		want []string // each a full line of the joined error
	}{
		{"member without port", base(pools), []string{`pools[1].members[0].address: "10.0.0.1" has no port`}},
		{"unknown top-level field", base("pool: []\n"), []string{`pool: unknown field; did you mean "pools"? (line 4)`}},
		{"unknown nested field", base("pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\", wieght: 2}]\n"),
			[]string{`pools[0].members[0].wieght: unknown field; did you mean "weight"? (line 6)`}},
		{"missing https", "listeners:\n  admin: {address: \"127.0.0.1:9443\"}\n", []string{`listeners.https.address: is required`}},
		{"admin on public socket", "listeners:\n  https: {address: \":8443\"}\n  admin: {address: \"127.0.0.1:8443\"}\n",
			[]string{`listeners.admin.address: "127.0.0.1:8443" uses the same port as listeners.https; every listener needs its own socket (the admin API is never served on the public listener)`}},
		{"bad port", base("pools:\n  - name: a\n    members: [{address: \"127.0.0.1:99999\"}]\n"),
			[]string{`pools[0].members[0].address: "127.0.0.1:99999": port "99999" must be a number from 1 to 65535`}},
		{"bad algorithm", base("pools:\n  - name: a\n    algorithm: random\n    members: [{address: \"127.0.0.1:1\"}]\n"),
			[]string{`pools[0].algorithm: "random" must be one of round_robin, weighted_round_robin, least_requests, consistent_hash`}},
		{"route to unknown pool", base("routes:\n  - {host: a.test, pool: nope}\n"), []string{`routes[0].pool: "nope" is not a pool defined under pools`}},
		{"bad wildcard", base("pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\"}]\nroutes:\n  - {host: \"*.com\", pool: a}\n"),
			[]string{`routes[0].host: "*.com" is not a valid wildcard (use *.example.com)`}},
		{"bad duration", base("pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\"}]\n    health_check: {path: /h, interval: soon}\n"),
			[]string{`pools[0].health_check.interval: "soon" is not a duration (use e.g. 500ms, 10s, 2m) (line 7)`}},
		{"timeout over interval", base("pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\"}]\n    health_check: {path: /h, interval: 1s, timeout: 2s}\n"),
			[]string{`pools[0].health_check.timeout: 2s must not exceed the interval (1s)`}},
		{"bad health check host", base("pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\"}]\n    health_check: {path: /h, host: \"bad host\"}\n"),
			[]string{`pools[0].health_check.host: "bad host" is not a hostname (optionally with :port)`}},
		{"health check host without path", base("pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\"}]\n    health_check: {host: app.test}\n"),
			[]string{`pools[0].health_check.path: is required when other health_check fields are set`}},
		{"routes limit", base("limits: {max_routes: -1}\n"),
			[]string{`limits.max_routes: -1 must be between 1 and 1000000 (0 means the default of 100000); every route change rebuilds the route table`}},
		{"default policy without name", base("tls: {unknown_sni: default}\n"), []string{`tls.default_hostname: is required when tls.unknown_sni is "default"`}},
		{"bad size", base("tls: {cache_bytes: lots}\n"), []string{`tls.cache_bytes: "lots" is not a size (use e.g. 512KiB, 64MiB, 1GiB) (line 4)`}},
		{"wrong shape", base("pools: {name: a}\n"), []string{`pools: expected a list, got a mapping (line 4)`}},
		{"several problems at once", base("pools:\n  - name: \"\"\n    members: []\n"),
			[]string{`pools[0].name: must not be empty`, `pools[0].members: a pool needs at least one member`}},
		{"client timeouts and underscores", "listeners:\n  https: {address: \"127.0.0.1:8443\", body_read_timeout: 2h, underscore_headers: keep}\n" +
			"  admin: {address: \"127.0.0.1:9443\", write_idle_timeout: 5s}\n" +
			"pools:\n  - name: a\n    members: [{address: \"127.0.0.1:1\"}]\nroutes:\n  - {host: a.test, pool: a, write_idle_timeout: 61m}\n",
			[]string{`listeners.https.body_read_timeout: 2h0m0s must be between 0 (the default, 60s) and 1h`,
				`listeners.https.underscore_headers: "keep" must be drop, reject or pass`,
				`listeners.admin: body_read_timeout, write_idle_timeout and underscore_headers apply to listeners.https only`,
				`routes[0].write_idle_timeout: 1h1m0s must be between 0 (the listener's) and 1h`}},
		{"empty", "", []string{`empty document`}},
		{"two documents", base("---\na: 1\n"), []string{`more than one YAML document; put everything in one`}},
		{"yaml syntax", "listeners: [", []string{`yaml: line 1: did not find expected node content`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want errors %q", cfg, tt.want)
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/gatehouse.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/gatehouse.yaml") {
		t.Fatalf("Load error = %v, want it to name the path", err)
	}
}

func TestParseTooLarge(t *testing.T) {
	big := strings.Repeat("#", MaxFileBytes+10)
	_, err := Parse(strings.NewReader(big))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want size refusal", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1024": 1024, "64MiB": 64 << 20, "1GB": 1e9, "1.5KiB": 1536, "2G": 2 << 30} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseByteSize("-1"); err == nil {
		t.Error("negative size accepted")
	}
}

// FuzzParse checks that no input makes the loader panic, and that an accepted
// configuration validates again after defaults (Parse is idempotent).
func FuzzParse(f *testing.F) {
	f.Add(goodYAML)
	f.Add("listeners: {https: {address: ':1'}, admin: {address: ':2'}}")
	f.Add("pools: [{name: a, members: [{address: 'x:1', weight: 99999999999999999999}]}]")
	f.Add("a: &x [*x]")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse(strings.NewReader(doc))
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			if errors.Unwrap(err) == nil && err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config fails validation: %v", err)
		}
	})
}

// TestExampleLoads keeps the shipped example configuration valid.
func TestExampleLoads(t *testing.T) {
	cfg, err := Load("../../examples/gatehouse.yaml")
	if err != nil {
		t.Fatalf("examples/gatehouse.yaml: %v", err)
	}
	if len(cfg.Pools) == 0 || len(cfg.Routes) == 0 {
		t.Errorf("example has %d pools and %d routes, want some of each", len(cfg.Pools), len(cfg.Routes))
	}
}
