package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBalancingConfig(t *testing.T) {
	base := "listeners:\n  https: {address: \"127.0.0.1:8443\"}\n  admin: {address: \"127.0.0.1:9443\"}\n" +
		"pools:\n  - name: web\n    members: [{address: \"127.0.0.1:9001\"}, {address: \"127.0.0.1:9002\"}]\n"
	tests := []struct {
		name string
		yaml string
		want []string
		pool Pool // checked when want is empty: Algorithm and Hash after defaults
	}{
		{"default round robin", base, nil, Pool{Algorithm: RoundRobin}},
		{"hash block implies consistent_hash", base + "    hash: {by: header, name: X-Tenant}\n", nil,
			Pool{Algorithm: ConsistentHash, Hash: Hash{By: HashHeader, Name: "X-Tenant", LoadFactor: DefaultLoadFactor}}},
		{"consistent_hash defaults to client_ip", base + "    algorithm: consistent_hash\n", nil,
			Pool{Algorithm: ConsistentHash, Hash: Hash{By: HashClientIP, LoadFactor: DefaultLoadFactor}}},
		{"cookie with load factor", base + "    algorithm: consistent_hash\n    hash: {by: cookie, name: session_id, load_factor: 2}\n", nil,
			Pool{Algorithm: ConsistentHash, Hash: Hash{By: HashCookie, Name: "session_id", LoadFactor: 2}}},
		{"unknown algorithm", base + "    algorithm: ring\n",
			[]string{`pools[0].algorithm: "ring" must be one of round_robin, weighted_round_robin, least_requests, consistent_hash`}, Pool{}},
		{"hash with another algorithm", base + "    algorithm: least_requests\n    hash: {by: client_ip}\n",
			[]string{`pools[0].hash: applies only to algorithm consistent_hash (the pool uses least_requests)`}, Pool{}},
		{"unknown key", base + "    hash: {by: path}\n",
			[]string{`pools[0].hash.by: "path" must be one of client_ip, header, cookie`}, Pool{}},
		{"header without name", base + "    hash: {by: header}\n",
			[]string{`pools[0].hash.name: is required when hashing by header`}, Pool{}},
		{"bad cookie name", base + "    hash: {by: cookie, name: \"my cookie\"}\n",
			[]string{`pools[0].hash.name: "my cookie" is not a valid cookie name`}, Pool{}},
		{"name with client_ip", base + "    hash: {by: client_ip, name: X-Real-IP}\n",
			[]string{`pools[0].hash.name: must be empty when hashing by client_ip`}, Pool{}},
		{"load factor of one", base + "    hash: {load_factor: 1}\n",
			[]string{`pools[0].hash.load_factor: 1 must be greater than 1 and at most 10`}, Pool{}},
		{"load factor too large and header missing", base + "    hash: {by: header, load_factor: 50}\n",
			[]string{`pools[0].hash.name: is required when hashing by header`,
				`pools[0].hash.load_factor: 50 must be greater than 1 and at most 10`}, Pool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(tt.yaml))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Fatalf("errors (-got +want):\n%s", diff)
			}
			if tt.want != nil {
				return
			}
			p := cfg.Pools[0]
			if p.Algorithm != tt.pool.Algorithm || p.Hash != tt.pool.Hash {
				t.Errorf("algorithm %q, hash %+v; want %q, %+v", p.Algorithm, p.Hash, tt.pool.Algorithm, tt.pool.Hash)
			}
		})
	}
}
