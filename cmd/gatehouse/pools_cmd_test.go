package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPoolsCLI: `gatehouse pools` prints a table with a line per pool and
// member; -o json prints the admin API's snake_case fields; an unknown
// format is refused naming the flag.
func TestPoolsCLI(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	a := tn.Proxy().Pools()[0]

	out, err := statusCLI(t, tn, "pools")
	if err != nil {
		t.Fatalf("pools: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+2+3 || !strings.HasPrefix(lines[0], "POOL") {
		t.Fatalf("pools table has %d lines, want a header, 2 pools and 3 members:\n%s", len(lines), out)
	}
	if f := strings.Fields(lines[1]); f[0] != "a" || !strings.Contains(lines[1], a.Algorithm) {
		t.Errorf("first pool line %q, want pool a with its algorithm %s", lines[1], a.Algorithm)
	}
	if f := strings.Fields(lines[2]); len(f) < 2 || f[0] != a.Members[0].Address || f[1] != "up" {
		t.Errorf("first member line %q, want %s up", lines[2], a.Members[0].Address)
	}

	out, err = statusCLI(t, tn, "pools", "-o", "json")
	if err != nil {
		t.Fatalf("pools -o json: %v\n%s", err, out)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("pools -o json is not a JSON array: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0]["name"] != "a" {
		t.Fatalf("pools -o json = %s, want pools a and b", out)
	}
	members, _ := got[0]["members"].([]any)
	if len(members) != 2 {
		t.Fatalf("pool a members %v, want 2", got[0]["members"])
	}
	m, _ := members[0].(map[string]any)
	for _, k := range []string{"address", "up", "drained", "weight", "in_flight", "open_conns"} {
		if _, ok := m[k]; !ok {
			t.Errorf("member JSON %v has no %q", m, k)
		}
	}
	if _, ok := m["Address"]; ok {
		t.Errorf("member JSON %v carries Go field names", m)
	}

	// -o json on another list command is --json.
	out, err = statusCLI(t, tn, "route", "list", "-o", "json")
	if err != nil || !json.Valid([]byte(out)) {
		t.Errorf("route list -o json: %v, output not JSON:\n%s", err, out)
	}
	if out, err := statusCLI(t, tn, "pools", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("pools -o yaml: %v\n%s; want an error naming --output", err, out)
	}
}
