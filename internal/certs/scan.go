package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FileError is a file that ScanDir could not turn into an Item.
type FileError struct {
	Path string
	Err  error
}

// Error returns "path: problem".
func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error { return e.Err }

// scanExts are the file name extensions ScanDir reads.
var scanExts = []string{".pem", ".crt", ".cer", ".key"}

// ScanDir reads the *.pem, *.crt, *.cer and *.key files directly in dir for
// an import. A file holding both certificates and a key is an Item by
// itself. A file with certificates only is paired with the file of the same
// base name holding a key only (host.crt + host.key). A certificate file in
// DER form is accepted. Files it cannot read or pair are FileErrors. Items
// and errors are sorted by path.
func ScanDir(dir string) ([]Item, []FileError) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, []FileError{{Path: dir, Err: err}}
	}
	type file struct {
		path    string
		data    []byte
		hasCert bool
		hasKey  bool
	}
	groups := make(map[string][]*file) // base name -> files
	var bases []string
	var errs []FileError
	for _, de := range des {
		ext := strings.ToLower(filepath.Ext(de.Name()))
		if de.IsDir() || !slices.Contains(scanExts, ext) {
			continue
		}
		path := filepath.Join(dir, de.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, FileError{Path: path, Err: err})
			continue
		}
		f := &file{path: path, data: data}
		f.hasCert, f.hasKey = pemContains(data)
		if !f.hasCert && !f.hasKey {
			if _, err := x509.ParseCertificate(data); err == nil {
				f.data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: data})
				f.hasCert = true
			}
		}
		if !f.hasCert && !f.hasKey {
			errs = append(errs, FileError{Path: path, Err: errors.New("no PEM certificate or private key found")})
			continue
		}
		base := strings.TrimSuffix(de.Name(), filepath.Ext(de.Name()))
		if _, ok := groups[base]; !ok {
			bases = append(bases, base)
		}
		groups[base] = append(groups[base], f)
	}
	var items []Item
	for _, base := range bases {
		var certs, keys []*file
		for _, f := range groups[base] {
			switch {
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
	}
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Source, b.Source) })
	slices.SortFunc(errs, func(a, b FileError) int { return strings.Compare(a.Path, b.Path) })
	return items, errs
}
