// Package demo sets up the quickstart: a local certificate authority,
// certificates for a few tenant hostnames, backend servers that answer with
// their own names, and the configuration that ties them together.
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"gatehouse/internal/config"
)

// Tenant is one demo customer: a hostname with its pool of backends.
type Tenant struct {
	Host string // as served; may be a wildcard
	Pool string
	// Example is a concrete hostname to try (the wildcard's "app." name).
	Example string
}

// Tenants are the demo's customers.
var Tenants = []Tenant{
	{Host: "app.uni-a.test", Pool: "uni-a", Example: "app.uni-a.test"},
	{Host: "app.uni-b.test", Pool: "uni-b", Example: "app.uni-b.test"},
	{Host: "*.uni-c.test", Pool: "uni-c", Example: "app.uni-c.test"},
}

// Addrs are the listeners of the demo.
type Addrs struct {
	HTTPS, Status, Admin string
}

// CA is the demo's local certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	Path    string // the CA certificate file, for curl --cacert
}

// LoadOrCreateCA keeps the demo CA in dir so restarts reuse it.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "demo-ca.pem"), filepath.Join(dir, "demo-ca.key")
	certPEM, err1 := os.ReadFile(certPath)
	keyPEM, err2 := os.ReadFile(keyPath)
	if err1 == nil && err2 == nil {
		cb, _ := pem.Decode(certPEM)
		kb, _ := pem.Decode(keyPEM)
		if cb != nil && kb != nil {
			cert, err := x509.ParseCertificate(cb.Bytes)
			if err == nil && time.Now().Before(cert.NotAfter.Add(-48*time.Hour)) {
				if key, err := x509.ParseECPrivateKey(kb.Bytes); err == nil {
					return &CA{Cert: cert, Key: key, CertPEM: certPEM, Path: certPath}, nil
				}
			}
		}
	} else if !errors.Is(err1, fs.ErrNotExist) && err1 != nil {
		return nil, err1
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Gatehouse Demo CA", Organization: []string{"Gatehouse demo"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, Path: certPath}, nil
}

// Issue returns a PEM bundle (leaf, then key) for names, valid for 90 days.
func (ca *CA) Issue(names ...string) (certPEM, keyPEM []byte, err error) {
	return ca.IssueUntil(time.Now().AddDate(0, 0, 90), names...)
}

// IssueUntil is Issue with a chosen expiry.
func (ca *CA) IssueUntil(notAfter time.Time, names ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// Backends are the demo's origin servers, two per tenant pool.
type Backends struct {
	servers []*http.Server
	wg      sync.WaitGroup
	// Members maps a pool name to its members' addresses.
	Members map[string][]string
}

// StartBackends starts two HTTP servers on loopback for each tenant's pool;
// each answers with its own name ("uni-a-1") and serves /healthz.
func StartBackends() (*Backends, error) {
	b := &Backends{Members: map[string][]string{}}
	for _, t := range Tenants {
		for i := 1; i <= 2; i++ {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Close(context.Background())
				return nil, fmt.Errorf("demo backend: %w", err)
			}
			name := fmt.Sprintf("%s-%d", t.Pool, i)
			srv := &http.Server{Handler: backendHandler(name), ReadHeaderTimeout: 5 * time.Second}
			b.servers = append(b.servers, srv)
			b.Members[t.Pool] = append(b.Members[t.Pool], ln.Addr().String())
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				srv.Serve(ln)
			}()
		}
	}
	return b, nil
}

func backendHandler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "hello from %s: host=%s path=%s proto=%s forwarded-for=%s request-id=%s\n",
			name, r.Host, r.URL.Path, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Request-Id"))
	})
	return mux
}

// Close stops the backends.
func (b *Backends) Close(ctx context.Context) {
	for _, s := range b.servers {
		s.Shutdown(ctx)
	}
	b.wg.Wait()
}

// Config returns the demo's configuration: three tenant pools of two
// members each, health-checked every 2 s, one route per tenant hostname.
func Config(dataDir string, addrs Addrs, members map[string][]string) (*config.Config, error) {
	cfg := &config.Config{DataDir: dataDir}
	cfg.Listeners.HTTPS.Address = addrs.HTTPS
	cfg.Listeners.Status.Address = addrs.Status
	cfg.Listeners.Admin.Address = addrs.Admin
	cfg.Status.Title = "Gatehouse demo status"
	for _, t := range Tenants {
		p := config.Pool{Name: t.Pool, Algorithm: "round_robin",
			HealthCheck: config.HealthCheck{Path: "/healthz", Interval: config.Duration(2 * time.Second), Timeout: config.Duration(time.Second), Rise: 2, Fall: 2}}
		for _, a := range members[t.Pool] {
			p.Members = append(p.Members, config.Member{Address: a})
		}
		cfg.Pools = append(cfg.Pools, p)
		cfg.Routes = append(cfg.Routes, config.Route{Host: t.Host, Pool: t.Pool})
		cfg.Status.Components = append(cfg.Status.Components, config.Component{
			Name: "Tenant " + t.Host, Region: "DEMO01", Description: "Web app for " + t.Host, Pools: []string{t.Pool}})
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}
