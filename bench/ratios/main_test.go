package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const header = "n\tpeer\tversion\trun\tstart_s\tpss_start_mb\tpss_end_mb\ths_cpu_s_per_1k\tka_cpu_s_per_1k\tnote\n"

func TestCompare(t *testing.T) {
	tests := []struct {
		name string
		tsv  string
		want []line
	}{
		{
			name: "one run each",
			tsv: header +
				"100\tgatehouse\tv\t1\t0.20\t30\t40\t0.50\t0.100\t-\n" +
				"100\thaproxy\tv\t1\t0.40\t20\t20\t1.00\t0.050\t-\n",
			want: []line{{N: 100, Peer: "haproxy", Ratios: map[string]float64{
				"start_s": 0.5, "pss_end_mb": 2, "hs_cpu_s_per_1k": 0.5, "ka_cpu_s_per_1k": 2,
			}}},
		},
		{
			name: "median of three runs, N sorted, peer order kept",
			tsv: header +
				"10000\tnginx\tv\t1\t2\t1\t10\t1\t1\t-\n" +
				"10000\tgatehouse\tv\t1\t1\t1\t10\t1\t1\t-\n" +
				"100\tgatehouse\tv\t1\t1\t1\t10\t9\t1\t-\n" +
				"100\tgatehouse\tv\t2\t1\t1\t10\t1\t1\t-\n" +
				"100\tgatehouse\tv\t3\t1\t1\t10\t2\t1\t-\n" +
				"100\tcaddy\tv\t1\t1\t1\t10\t4\t1\t-\n" +
				"100\tnginx\tv\t1\t1\t1\t10\t1\t1\t-\n",
			want: []line{
				{N: 100, Peer: "caddy", Ratios: map[string]float64{"start_s": 1, "pss_end_mb": 1, "hs_cpu_s_per_1k": 0.5, "ka_cpu_s_per_1k": 1}},
				{N: 100, Peer: "nginx", Ratios: map[string]float64{"start_s": 1, "pss_end_mb": 1, "hs_cpu_s_per_1k": 2, "ka_cpu_s_per_1k": 1}},
				{N: 10000, Peer: "nginx", Ratios: map[string]float64{"start_s": 0.5, "pss_end_mb": 1, "hs_cpu_s_per_1k": 1, "ka_cpu_s_per_1k": 1}},
			},
		},
		{
			name: "failed start and missing figures give no ratio",
			tsv: header +
				"100\tgatehouse\tv\t1\t>300.00\t-\t-\t-\t-\tnot serving\n" +
				"100\thaproxy\tv\t1\t0.40\t20\t0\t1.00\t0.050\t-\n",
			want: []line{{N: 100, Peer: "haproxy", Ratios: map[string]float64{}}},
		},
		{
			name: "no base peer",
			tsv:  header + "100\thaproxy\tv\t1\t0.40\t20\t20\t1.00\t0.050\t-\n",
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := parse(strings.NewReader(tt.tsv))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got := compare(rows, "gatehouse")
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("compare (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, tsv, want string
	}{
		{"empty", "", "empty file: want a header line"},
		{"no peer column", "n\tstart_s\n100\t1\n", `header has no "peer" column`},
		{"bad n", header + "x\tgatehouse\tv\t1\t1\t1\t1\t1\t1\t-\n", `line 2: column n: "x" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(strings.NewReader(tt.tsv))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("parse error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	lines := []line{{N: 100, Peer: "haproxy", Ratios: map[string]float64{"hs_cpu_s_per_1k": 0.5, "start_s": 1.234}}}
	tests := []struct {
		name string
		md   bool
		want string
	}{
		{"text", false, "# ratios gatehouse / peer (median over runs; below 1: gatehouse needs less)\n" +
			"N    vs       hs cpu s/1k  ka cpu s/1k  start-up s  PSS end MB\n" +
			"100  haproxy  0.50         -            1.23        -\n"},
		{"markdown", true, "ratios gatehouse / peer (median over runs; below 1: gatehouse needs less)\n\n" +
			"| N | vs | hs cpu s/1k | ka cpu s/1k | start-up s | PSS end MB |\n" +
			"| --- | --- | --- | --- | --- | --- |\n" +
			"| 100 | haproxy | 0.50 | - | 1.23 | - |\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := write(&b, lines, "gatehouse", tt.md); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(b.String(), tt.want); diff != "" {
				t.Errorf("write (-got +want):\n%s", diff)
			}
		})
	}
}
