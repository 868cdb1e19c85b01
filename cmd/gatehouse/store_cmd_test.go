package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd/etcdtest"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestStoreMigrate moves a bolt store into etcd and back, and checks that
// every key and value arrives and that a non-empty destination is refused.
func TestStoreMigrate(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	src := t.TempDir()
	st, err := bolt.Open(filepath.Join(src, "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	var ops []store.Op
	for i := range 300 {
		k, v := fmt.Sprintf("certs/names/h%03d.test/%d", i, i), strings.Repeat("v", i)
		want[k] = v
		ops = append(ops, store.Put(k, []byte(v)))
		if len(ops) == 50 {
			if _, err := st.Txn(ctx, nil, ops); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
	big := strings.Repeat("B", 700<<10) // two of these do not fit one etcd request
	for _, k := range []string{"certs/bundles/big1", "certs/bundles/big2"} {
		want[k] = big
		if _, err := store.PutKV(ctx, st, k, []byte(big)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	etcdSpec := "etcd:" + strings.Join(c.Endpoints(), ",")
	back := t.TempDir()
	steps := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bolt to etcd", []string{"store", "migrate", "--from", "bolt:" + src, "--to", etcdSpec, "--prefix", "/migrated"}, ""},
		{"into a non-empty store", []string{"store", "migrate", "--from", "bolt:" + src, "--to", etcdSpec, "--prefix", "/migrated"}, "the destination already holds keys"},
		{"etcd back to bolt", []string{"store", "migrate", "--from", etcdSpec, "--to", "bolt:" + back, "--prefix", "/migrated"}, ""},
		{"missing source", []string{"store", "migrate", "--from", "bolt:" + filepath.Join(back, "nope", "x.db"), "--to", etcdSpec}, "no such file"},
		{"bad spec", []string{"store", "migrate", "--from", "consul:x", "--to", etcdSpec}, `unknown store kind "consul"`},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, err := runCLI(t, s.args...)
			if s.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), s.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, s.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("migrate: %v\n%s", err, out)
			}
			if !strings.Contains(out, "verified: counts and checksums match") || !strings.Contains(out, fmt.Sprintf("%d keys", len(want))) {
				t.Errorf("output does not report %d verified keys:\n%s", len(want), out)
			}
		})
	}
	// What came back is what went in.
	st, err = bolt.Open(filepath.Join(back, "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kvs, _, err := st.List(ctx, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range kvs {
		got[kv.Key] = string(kv.Value)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("keys after bolt → etcd → bolt (-got +want):\n%.2000s", diff)
	}
}
