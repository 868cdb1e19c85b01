package certs

import (
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FileError is a file that a directory scan could not turn into an Item.
type FileError struct {
	Path string
	Err  error
}

// Error returns "path: problem".
func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error { return e.Err }

// scanExts are the file name extensions a directory scan reads.
var scanExts = []string{".pem", ".crt", ".cer", ".key"}

// DirScan is a directory listed for an import: the names of its candidate
// files, grouped by base name. Contents are read group by group as All is
// iterated, so a scan of a million files holds a million names, not a
// million files.
type DirScan struct {
	dir    string
	names  []string // candidate file names, sorted by base name, then name
	groups int
}

// OpenDir lists the *.pem, *.crt, *.cer and *.key files directly in dir.
func OpenDir(dir string) (*DirScan, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &DirScan{dir: dir}
	for {
		des, err := f.ReadDir(4096)
		for _, de := range des {
			ext := strings.ToLower(filepath.Ext(de.Name()))
			if de.IsDir() || !slices.Contains(scanExts, ext) {
				continue
			}
			s.names = append(s.names, de.Name())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", dir, err)
		}
	}
	slices.SortFunc(s.names, func(a, b string) int {
		return cmp.Or(strings.Compare(baseName(a), baseName(b)), strings.Compare(a, b))
	})
	for i, n := range s.names {
		if i == 0 || baseName(n) != baseName(s.names[i-1]) {
			s.groups++
		}
	}
	return s, nil
}

func baseName(name string) string { return strings.TrimSuffix(name, filepath.Ext(name)) }

// Files returns the number of candidate files.
func (s *DirScan) Files() int { return len(s.names) }

// Groups returns the number of base names: the number of bundles the
// directory holds if every file is good.
func (s *DirScan) Groups() int { return s.groups }

// All yields, group by group in base-name order, each Item (with a nil
// *FileError) and each file that cannot be imported (with a zero Item). A
// file holding both certificates and a key is an Item by itself. A file with
// certificates only is paired with the file of the same base name holding a
// key only (host.crt + host.key). A certificate file in DER form is
// accepted.
func (s *DirScan) All() iter.Seq2[Item, *FileError] {
	return func(yield func(Item, *FileError) bool) {
		for i := 0; i < len(s.names); {
			j := i + 1
			base := baseName(s.names[i])
			for j < len(s.names) && baseName(s.names[j]) == base {
				j++
			}
			items, errs := s.group(base, s.names[i:j])
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			for k := range errs {
				if !yield(Item{}, &errs[k]) {
					return
				}
			}
			i = j
		}
	}
}

// scanFile is one candidate file of a group.
type scanFile struct {
	path    string
	data    []byte
	hasCert bool
	hasKey  bool
}

// group reads the files of one base name and pairs them.
func (s *DirScan) group(base string, names []string) ([]Item, []FileError) {
	var errs []FileError
	var certs, keys []*scanFile
	var items []Item
	for _, name := range names {
		path := filepath.Join(s.dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, FileError{Path: path, Err: err})
			continue
		}
		f := &scanFile{path: path, data: data}
		f.hasCert, f.hasKey = pemContains(data)
		if !f.hasCert && !f.hasKey {
			if _, err := x509.ParseCertificate(data); err == nil {
				f.data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: data})
				f.hasCert = true
			}
		}
		switch {
		case !f.hasCert && !f.hasKey:
			errs = append(errs, FileError{Path: path, Err: errors.New("no PEM certificate or private key found")})
		case f.hasCert && f.hasKey:
			items = append(items, Item{Source: f.path, CertPEM: f.data})
		case f.hasCert:
			certs = append(certs, f)
		default:
			keys = append(keys, f)
		}
	}
	switch {
	case len(certs) == 1 && len(keys) == 1:
		items = append(items, Item{Source: certs[0].path + " + " + filepath.Base(keys[0].path), CertPEM: certs[0].data, KeyPEM: keys[0].data})
	case len(certs) == 0 && len(keys) == 0:
	case len(keys) == 0:
		for _, f := range certs {
			errs = append(errs, FileError{Path: f.path, Err: fmt.Errorf("no private key: put it in the same file or in %s.key", base)})
		}
	case len(certs) == 0:
		for _, f := range keys {
			errs = append(errs, FileError{Path: f.path, Err: fmt.Errorf("private key without a certificate: expected %s.crt or %s.pem", base, base)})
		}
	default:
		for _, f := range slices.Concat(certs, keys) {
			errs = append(errs, FileError{Path: f.path, Err: fmt.Errorf("cannot pair: %d certificate files and %d key files are named %s.*", len(certs), len(keys), base)})
		}
	}
	return items, errs
}

// ScanDir reads every bundle of dir at once (see OpenDir and DirScan.All
// for what it reads and how files pair). Items and errors are sorted by
// path. For large directories, iterate a DirScan instead.
func ScanDir(dir string) ([]Item, []FileError) {
	s, err := OpenDir(dir)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, []FileError{{Path: dir, Err: err}}
	}
	var items []Item
	var errs []FileError
	for it, fe := range s.All() {
		if fe != nil {
			errs = append(errs, *fe)
			continue
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Source, b.Source) })
	slices.SortFunc(errs, func(a, b FileError) int { return strings.Compare(a.Path, b.Path) })
	return items, errs
}
