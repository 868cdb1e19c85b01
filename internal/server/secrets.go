package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LoadOrCreateToken returns the admin bearer token stored at path, creating
// a random one (mode 0600) if the file does not exist. A token file readable
// by group or others is refused.
func LoadOrCreateToken(path string) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if err := checkPrivate(path); err != nil {
			return "", false, err
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", false, fmt.Errorf("admin token file %s: token is %d characters; want at least 16", path, len(tok))
		}
		return tok, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("admin token file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	if err := writePrivate(path, []byte(tok+"\n")); err != nil {
		return "", false, fmt.Errorf("admin token file: %w", err)
	}
	return tok, true, nil
}

// LoadOrCreateAdminCert returns the admin listener's certificate from
// certFile/keyFile, generating a self-signed one for localhost, 127.0.0.1 and
// ::1 if neither exists. The CLI trusts the certificate file directly.
func LoadOrCreateAdminCert(certFile, keyFile string) (tls.Certificate, error) {
	_, errC := os.Stat(certFile)
	_, errK := os.Stat(keyFile)
	if errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist) {
		if err := generateAdminCert(certFile, keyFile); err != nil {
			return tls.Certificate{}, fmt.Errorf("generating admin certificate: %w", err)
		}
	}
	if err := checkPrivate(keyFile); err != nil {
		return tls.Certificate{}, fmt.Errorf("admin key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("admin certificate %s / %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

func generateAdminCert(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	host, _ := os.Hostname()
	names := []string{"localhost"}
	if host != "" && host != "localhost" {
		names = append(names, host)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gatehouse admin", Organization: []string{"Gatehouse"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePrivate(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writePrivate writes a secret file with mode 0600, whatever the umask and
// whatever a leftover temporary file's mode.
func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cherr := f.Chmod(0o600)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, cherr, serr, cerr); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// CheckDataDir refuses a data directory that group or others may write:
// they could replace the store, the key-encryption key or the admin token
// (or have done so already). It is refused rather than fixed: the mode is
// the operator's choice, a silent chmod would hide that it was open, and
// the operator should check the files before trusting them.
func CheckDataDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data_dir %s: is not a directory", dir)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("data_dir %s has mode %04o: group or others can write to it and could replace the store, the key-encryption key or the admin token; check its files, then chmod 700 %s", dir, perm, dir)
	}
	return nil
}

func checkPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o; it holds a secret and must not be readable by group or others (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	return nil
}
