package bolt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/internal/store"
)

// TestMarkerRefusesLostData covers every way a store file can lose its
// data, with and without the evidence that it held some.
func TestMarkerRefusesLostData(t *testing.T) {
	ctx := context.Background()
	// setup prepares dir and returns the store path and the options.
	type setup func(t *testing.T, dir string) (string, Options)
	withData := func(t *testing.T, dir string) (string, Options) {
		path := filepath.Join(dir, "gatehouse.db")
		opts := Options{Marker: path + ".marker"}
		s := openT(t, path, opts)
		if _, err := os.Stat(opts.Marker); err == nil {
			t.Fatal("the marker exists before the store holds data")
		}
		if _, err := store.PutKV(ctx, s, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(opts.Marker); err != nil {
			t.Fatalf("no marker after the first write: %v", err)
		}
		s.Close()
		return path, opts
	}
	tests := []struct {
		name      string
		setup     setup
		damage    func(path string) error
		newStore  bool
		wantErr   error
		wantInErr string
	}{
		{"0-byte file with marker", withData, func(p string) error { return os.Truncate(p, 0) }, false, ErrDataLost, "is empty (0 bytes)"},
		{"missing file with marker", withData, os.Remove, false, ErrDataLost, "is missing"},
		{"truncated file with marker", withData, func(p string) error {
			fi, _ := os.Stat(p)
			return os.Truncate(p, fi.Size()/2)
		}, false, ErrCorrupt, "truncated"},
		{"empty store file with marker", withData, func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			s, err := Open(p, Options{})
			if err != nil {
				return err
			}
			return s.Close()
		}, false, ErrDataLost, "holds no data"},
		{"0-byte file beside a KEK, no marker", func(t *testing.T, dir string) (string, Options) {
			os.WriteFile(filepath.Join(dir, "kek"), make([]byte, 32), 0o600)
			return filepath.Join(dir, "gatehouse.db"), Options{Marker: filepath.Join(dir, "gatehouse.db.marker"), Hints: []string{filepath.Join(dir, "kek")}}
		}, func(p string) error { return os.WriteFile(p, nil, 0o600) }, false, ErrDataLost, "kek exists"},
		{"0-byte file in a fresh directory", func(t *testing.T, dir string) (string, Options) {
			return filepath.Join(dir, "gatehouse.db"), Options{Marker: filepath.Join(dir, "gatehouse.db.marker"), Hints: []string{filepath.Join(dir, "kek")}}
		}, func(p string) error { return os.WriteFile(p, nil, 0o600) }, false, nil, ""},
		{"0-byte file with marker, new store", withData, func(p string) error { return os.Truncate(p, 0) }, true, nil, ""},
		{"truncated file with marker, new store", withData, func(p string) error {
			fi, _ := os.Stat(p)
			return os.Truncate(p, fi.Size()/2)
		}, true, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, opts := tt.setup(t, dir)
			if err := tt.damage(path); err != nil {
				t.Fatal(err)
			}
			opts.NewStore = tt.newStore
			s, err := Open(path, opts)
			if tt.wantErr != nil {
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded; want a refusal")
				}
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantInErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Open: %v; want %v naming %s and %q", err, tt.wantErr, path, tt.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if kvs, _, err := s.List(ctx, "", "", 0); err != nil || len(kvs) != 0 {
				t.Fatalf("new store holds %d keys (%v), want none", len(kvs), err)
			}
			if tt.newStore {
				aside, _ := filepath.Glob(path + ".damaged-*")
				if len(aside) != 1 {
					t.Fatalf("damaged files kept aside: %v, want one", aside)
				}
				if _, err := os.Stat(opts.Marker); err == nil {
					t.Fatal("the marker of the old store is still there")
				}
			}
		})
	}
}

// TestMarkerForOlderStore: a store written before markers existed gets its
// marker when it is opened with data.
func TestMarkerForOlderStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	s := openT(t, path, Options{})
	if _, err := store.PutKV(context.Background(), s, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	openT(t, path, Options{Marker: path + ".marker"}).Close()
	if _, err := os.Stat(path + ".marker"); err != nil {
		t.Fatalf("no marker after opening a store with data: %v", err)
	}
}
