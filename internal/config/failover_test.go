package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFailoverConfig(t *testing.T) {
	base := "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\n" +
		"pools:\n  - name: web\n    members:\n      - {address: \"127.0.0.1:9001\", zone: dc1}\n      - {address: \"127.0.0.1:9002\", zone: dc2}\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"zones without policy", base, nil},
		{"priority", base + "    failover: {policy: priority, zones: [dc1, dc2], min_healthy_share: 0.75, return_after: 10s}\n", nil},
		{"priority without zones", base + "    failover: {policy: priority}\n",
			[]string{`pools[0].failover.zones: the priority policy needs the zones in order of preference`}},
		{"unknown zone in the order", base + "    failover: {policy: priority, zones: [dc1, dc2, dc3]}\n",
			[]string{`pools[0].failover.zones[2]: "dc3" is not the zone of any member of this pool`}},
		{"member zone not in the order", base + "    failover: {policy: priority, zones: [dc1]}\n",
			[]string{`pools[0].members[1].zone: "dc2" is not in pools[0].failover.zones`}},
		{"zone listed twice", base + "    failover: {policy: priority, zones: [dc1, dc2, dc1]}\n",
			[]string{`pools[0].failover.zones[2]: "dc1" is listed twice`}},
		{"unknown policy", base + "    failover: {policy: backup}\n",
			[]string{`pools[0].failover.policy: "backup" must be one of spread, priority`}},
		{"zones with spread", base + "    failover: {zones: [dc1]}\n",
			[]string{`pools[0].failover.zones: is only used by the priority policy (policy is "spread")`}},
		{"share out of range", base + "    failover: {policy: priority, zones: [dc1, dc2], min_healthy_share: 1.5}\n",
			[]string{`pools[0].failover.min_healthy_share: 1.5 must be above 0 and at most 1`}},
		{"bad zone name", strings.Replace(base, "zone: dc2", "zone: \"dc 2\"", 1),
			[]string{`pools[0].members[1].zone: "dc 2" may hold only letters, digits, '.', '_' and '-' (at most 63)`}},
		{"member without zone under priority", strings.Replace(base, ", zone: dc2", "", 1) + "    failover: {policy: priority, zones: [dc1]}\n",
			[]string{`pools[0].members[1].zone: is required by the priority policy (pools[0].failover.zones)`}},
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

func TestFailoverDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader("listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\n" +
		"pools:\n  - name: web\n    members: [{address: \"127.0.0.1:9001\", zone: b}, {address: \"127.0.0.1:9002\", zone: a}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Pools[0].Failover
	if f.Policy != FailoverSpread || f.MinHealthyShare != 0.5 || f.ReturnAfter.D() != 30*time.Second || f.SlowStart.D() != 30*time.Second {
		t.Errorf("defaults: %+v", f)
	}
	if z := cfg.Pools[0].Zones(); !cmp.Equal(z, []string{"b", "a"}) {
		t.Errorf("Zones() = %v", z)
	}
}
