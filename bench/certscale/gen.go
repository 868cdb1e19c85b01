package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ca is the one issuing certificate authority of a run.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// loadOrMakeCA reads dir/ca.pem and dir/ca.key, or creates them.
func loadOrMakeCA(dir string) (*ca, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if cb, err := os.ReadFile(certPath); err == nil {
		kb, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, fmt.Errorf("reading CA key: %w", err)
		}
		cblk, _ := pem.Decode(cb)
		kblk, _ := pem.Decode(kb)
		if cblk == nil || kblk == nil {
			return nil, fmt.Errorf("CA files in %s: no PEM block", dir)
		}
		cert, err := x509.ParseCertificate(cblk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		key, err := x509.ParseECPrivateKey(kblk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA key: %w", err)
		}
		return &ca{cert: cert, key: key, pem: cb}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "certscale test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	if err := os.WriteFile(certPath, c.pem, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// serials makes leaf serial numbers unique within a run.
var serials atomic.Uint64

// leaf returns a PEM file holding a fresh ECDSA P-256 leaf for names, the CA
// certificate as its chain, and the leaf's key; and the leaf's serial (hex).
func (c *ca) leaf(names ...string) ([]byte, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	serial := new(big.Int).SetUint64(uint64(time.Now().UnixNano())<<8 ^ serials.Add(1)<<1 | 1)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	out := make([]byte, 0, 1600)
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	out = append(out, c.pem...)
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...)
	return out, serial.Text(16), nil
}

// hostName is the i-th exact hostname of a run.
func hostName(i int) string { return fmt.Sprintf("h%07d.example.test", i) }

// wildName is the i-th wildcard name; wildSample a name it serves.
func wildName(i int) string   { return fmt.Sprintf("*.w%05d.example.test", i) }
func wildSample(i int) string { return fmt.Sprintf("x.w%05d.example.test", i) }

// generate writes n exact-name and w wildcard bundles as PEM files into
// dir/import (skipping those present), and dir/hosts.txt, dir/wild.txt.
func generate(dir string, n, w int, progress func(done, total int)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c, err := loadOrMakeCA(dir)
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "import")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := writeLines(filepath.Join(dir, "hosts.txt"), n, hostName); err != nil {
		return err
	}
	if err := writeLines(filepath.Join(dir, "wild.txt"), w, wildSample); err != nil {
		return err
	}
	total := n + w
	var next, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				var name, file string
				if i < n {
					name = hostName(i)
					file = name + ".pem"
				} else {
					name = wildName(i - n)
					file = "_" + name[2:] + ".pem"
				}
				path := filepath.Join(out, file)
				if _, err := os.Stat(path); err == nil {
					done.Add(1)
					continue
				}
				b, _, err := c.leaf(name)
				if err == nil {
					err = os.WriteFile(path, b, 0o644)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if d := done.Add(1); progress != nil && d%50000 == 0 {
					progress(int(d), total)
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

func writeLines(path string, n int, f func(int) string) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(fh, 1<<20)
	for i := range n {
		bw.WriteString(f(i))
		bw.WriteByte('\n')
	}
	return errors.Join(bw.Flush(), fh.Close())
}
