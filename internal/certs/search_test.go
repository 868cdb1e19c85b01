package certs

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func searchAll(t *testing.T, m *Manager, prefix string, limit int) (pages [][]string, infos []NameInfo) {
	t.Helper()
	after := ""
	for range 20 {
		got, more, err := m.SearchNames(context.Background(), prefix, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range got {
			names = append(names, n.Name)
		}
		pages = append(pages, names)
		infos = append(infos, got...)
		if !more {
			return pages, infos
		}
		after = got[len(got)-1].Name
	}
	t.Fatal("paging did not end")
	return nil, nil
}

// TestSearchNamesPages pages through the name index by prefix: each name
// once, in order, a name with two bundles counted twice and shown with the
// later expiry; other prefixes left out.
func TestSearchNamesPages(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	soon := time.Now().Add(48 * time.Hour)
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"a.uni-a.test", "b.uni-a.test", "c.uni-a.test"}}))
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"b.uni-a.test"}, notAfter: soon, rsa: true}))
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"d.uni-a.test", "e.uni-a.test"}}))
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"x.uni-b.test"}}))

	pages, infos := searchAll(t, m, "", 2)
	want := [][]string{{"a.uni-a.test", "b.uni-a.test"}, {"c.uni-a.test", "d.uni-a.test"}, {"e.uni-a.test", "x.uni-b.test"}}
	if !slices.EqualFunc(pages, want, slices.Equal) {
		t.Fatalf("pages %v, want %v", pages, want)
	}
	for _, in := range infos {
		if in.Name == "b.uni-a.test" && (in.Bundles != len(m.Lookup("b.uni-a.test")) || in.Bundles != 2 || in.NotAfter.Before(soon.Add(24*time.Hour)) || in.Status != "valid") {
			t.Fatalf("b.uni-a.test: %+v, want 2 bundles and the later expiry", in)
		}
		if in.Name != "b.uni-a.test" && in.Bundles != 1 {
			t.Fatalf("%s: %d bundles", in.Name, in.Bundles)
		}
	}
	pages, _ = searchAll(t, m, "X.UNI", 10)
	if len(pages) != 1 || !slices.Equal(pages[0], []string{"x.uni-b.test"}) {
		t.Fatalf("prefix X.UNI: %v", pages)
	}
	pages, _ = searchAll(t, m, "nothing", 10)
	if len(pages) != 1 || len(pages[0]) != 0 {
		t.Fatalf("prefix nothing: %v", pages)
	}
	for _, bad := range [][2]string{{"a/b", ""}, {"a", "b.uni-a.test"}, {"a b", ""}} {
		if _, _, err := m.SearchNames(context.Background(), bad[0], bad[1], 10); !errors.Is(err, ErrBadPrefix) {
			t.Fatalf("prefix %q after %q: %v, want ErrBadPrefix", bad[0], bad[1], err)
		}
	}
}
