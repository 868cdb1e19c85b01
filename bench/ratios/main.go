// Command ratios reads the shared benchmark harness's results.tsv and prints,
// for each number of hostnames N, the ratio of one peer's figures (by default
// gatehouse) to every other peer's: handshake and keep-alive CPU seconds per
// 1000, start-up seconds and PSS memory at the end of the run. Below 1 means
// the base peer needs less. With several runs of a (N, peer) pair the median
// of each figure is used.
//
//	go run ./bench/ratios [-base gatehouse] [-md] results.tsv
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// metric is one results.tsv column compared between peers.
type metric struct {
	col, label string
}

// metrics are the figures compared, in output order.
var metrics = []metric{
	{"hs_cpu_s_per_1k", "hs cpu s/1k"},
	{"ka_cpu_s_per_1k", "ka cpu s/1k"},
	{"start_s", "start-up s"},
	{"pss_end_mb", "PSS end MB"},
}

// row is one (N, peer) pair with the median of each metric over its runs; a
// figure missing from every run is absent from vals.
type row struct {
	n    int
	peer string
	vals map[string]float64
}

// line is one output line: base versus one peer at one N. A ratio that
// cannot be computed is absent.
type line struct {
	N      int
	Peer   string
	Ratios map[string]float64
}

func main() {
	base := flag.String("base", "gatehouse", "peer whose figures are divided by every other peer's")
	md := flag.Bool("md", false, "print a Markdown table")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: ratios [-base PEER] [-md] results.tsv")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(1)
	}
	defer f.Close()
	rows, err := parse(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ratios: %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
	lines := compare(rows, *base)
	if len(lines) == 0 {
		fmt.Printf("# ratios: no N with both %s and another peer in %s\n", *base, flag.Arg(0))
		return
	}
	if err := write(os.Stdout, lines, *base, *md); err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(1)
	}
}

// parse reads a results.tsv (header line naming the columns, then one line
// per run) and returns one row per (N, peer), in order of first appearance,
// holding the median of each metric over that pair's runs. Values that are
// not plain numbers ("-", ">300.00" for a peer that never served) are skipped.
func parse(r io.Reader) ([]row, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("empty file: want a header line")
	}
	col := map[string]int{}
	for i, name := range strings.Split(sc.Text(), "\t") {
		col[name] = i
	}
	for _, need := range []string{"n", "peer"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("header has no %q column", need)
		}
	}
	type key struct {
		n    int
		peer string
	}
	var order []key
	samples := map[key]map[string][]float64{}
	for lineNo := 2; sc.Scan(); lineNo++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		fields := strings.Split(sc.Text(), "\t")
		get := func(c string) string {
			i, ok := col[c]
			if !ok || i >= len(fields) {
				return ""
			}
			return fields[i]
		}
		n, err := strconv.Atoi(get("n"))
		if err != nil {
			return nil, fmt.Errorf("line %d: column n: %q is not a number", lineNo, get("n"))
		}
		k := key{n, get("peer")}
		if samples[k] == nil {
			samples[k] = map[string][]float64{}
			order = append(order, k)
		}
		for _, m := range metrics {
			v, err := strconv.ParseFloat(get(m.col), 64)
			if err != nil {
				continue
			}
			samples[k][m.col] = append(samples[k][m.col], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	rows := make([]row, 0, len(order))
	for _, k := range order {
		r := row{n: k.n, peer: k.peer, vals: map[string]float64{}}
		for c, vs := range samples[k] {
			r.vals[c] = median(vs)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// compare returns base/peer ratios for every N that has the base peer, in
// ascending N, peers in order of first appearance.
func compare(rows []row, base string) []line {
	bases := map[int]row{}
	var ns []int
	for _, r := range rows {
		if r.peer == base {
			bases[r.n] = r
			ns = append(ns, r.n)
		}
	}
	slices.Sort(ns)
	var out []line
	for _, n := range ns {
		b := bases[n]
		for _, r := range rows {
			if r.n != n || r.peer == base {
				continue
			}
			l := line{N: n, Peer: r.peer, Ratios: map[string]float64{}}
			for _, m := range metrics {
				bv, ok1 := b.vals[m.col]
				pv, ok2 := r.vals[m.col]
				if ok1 && ok2 && pv > 0 {
					l.Ratios[m.col] = bv / pv
				}
			}
			out = append(out, l)
		}
	}
	return out
}

// write prints lines as an aligned text table, or as Markdown.
func write(w io.Writer, lines []line, base string, md bool) error {
	head := []string{"N", "vs"}
	for _, m := range metrics {
		head = append(head, m.label)
	}
	cells := func(l line) []string {
		c := []string{strconv.Itoa(l.N), l.Peer}
		for _, m := range metrics {
			if v, ok := l.Ratios[m.col]; ok {
				c = append(c, strconv.FormatFloat(v, 'f', 2, 64))
			} else {
				c = append(c, "-")
			}
		}
		return c
	}
	title := fmt.Sprintf("ratios %s / peer (median over runs; below 1: %s needs less)", base, base)
	if md {
		fmt.Fprintf(w, "%s\n\n| %s |\n|%s\n", title, strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
		for _, l := range lines {
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells(l), " | "))
		}
		return nil
	}
	fmt.Fprintf(w, "# %s\n", title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, l := range lines {
		fmt.Fprintln(tw, strings.Join(cells(l), "\t"))
	}
	return tw.Flush()
}
