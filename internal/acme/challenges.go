package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	acmez "github.com/mholt/acmez/v3"
	acmeproto "github.com/mholt/acmez/v3/acme"

	"gatehouse/internal/certs"
	"gatehouse/internal/store"
)

// Challenge records in the store, answered by every node: the CA's
// validation request may land on any node behind the DNS name.
const (
	prefixHTTP01  = "acme/challenges/http-01/"     // + token → key authorization
	prefixTLSALPN = "acme/challenges/tls-alpn-01/" // + name → challenge certificate
	// challengeTTL bounds how long a challenge record is answered: an
	// order's records are removed after it, and one left behind (a node
	// died mid-order) is ignored after this and deleted by the sweep.
	challengeTTL = 15 * time.Minute
	// challengeReadTimeout bounds the store read of a challenge answer.
	challengeReadTimeout = 3 * time.Second
)

// ACMETLS1 is the ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
const ACMETLS1 = acmez.ACMETLS1Protocol

// httpChallengePath is where HTTP-01 key authorizations are asked for.
const httpChallengePath = "/.well-known/acme-challenge/"

type httpRecord struct {
	Name    string    `json:"name"`
	KeyAuth string    `json:"key_auth"`
	Expires time.Time `json:"expires"`
}

type alpnRecord struct {
	Chain   [][]byte  `json:"chain"`
	Key     []byte    `json:"key"` // PKCS#8, sealed with the KEK
	Expires time.Time `json:"expires"`
}

// Challenges publishes challenge answers in the store and answers the CA
// from them on any node.
type Challenges struct {
	st  store.Store
	kek *certs.KEK
	log *slog.Logger
	now func() time.Time
}

// NewChallenges returns the challenge responder over st.
func NewChallenges(st store.Store, kek *certs.KEK, log *slog.Logger, now func() time.Time) *Challenges {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Challenges{st: st, kek: kek, log: log.With("component", "acme"), now: now}
}

// validToken reports whether s can be an ACME token (base64url, RFC 8555
// §8.3: at least 128 bits; bounded here to refuse junk before any store
// read).
func validToken(s string) bool {
	if len(s) < 16 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// HTTPHandler answers HTTP-01 requests (/.well-known/acme-challenge/TOKEN)
// from the store and hands every other request to next (the redirect to
// HTTPS).
func (c *Challenges) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, httpChallengePath)
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		if !validToken(token) {
			http.NotFound(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), challengeReadTimeout)
		defer cancel()
		kv, err := c.st.Get(ctx, prefixHTTP01+token)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				c.log.Warn("reading an http-01 challenge", "err", err)
				http.Error(w, "challenge store unavailable", http.StatusServiceUnavailable)
				return
			}
			http.NotFound(w, r)
			return
		}
		var rec httpRecord
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if json.Unmarshal(kv.Value, &rec) != nil || !c.now().Before(rec.Expires) || !strings.EqualFold(strings.TrimSuffix(host, "."), rec.Name) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte(rec.KeyAuth))
	})
}

// offersACMETLS reports whether a ClientHello asks for acme-tls/1.
func offersACMETLS(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) > 0 && slices.Contains(hello.SupportedProtos, ACMETLS1)
}

// GetConfigForClient answers a TLS-ALPN-01 validation: for a ClientHello
// offering acme-tls/1 it returns a config serving the challenge
// certificate of the name; for every other ClientHello it returns nil
// (the ordinary path) after one look at the offered protocols.
func (c *Challenges) GetConfigForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if !offersACMETLS(hello) {
		return nil, nil
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" || len(name) > 253 || strings.ContainsAny(name, "/ ") {
		return nil, errors.New("acme-tls/1 without a server name")
	}
	parent := hello.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, challengeReadTimeout)
	defer cancel()
	kv, err := c.st.Get(ctx, prefixTLSALPN+name)
	if err != nil {
		return nil, fmt.Errorf("no tls-alpn-01 challenge for %q", name)
	}
	var rec alpnRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil || !c.now().Before(rec.Expires) {
		return nil, fmt.Errorf("no current tls-alpn-01 challenge for %q", name)
	}
	der, err := c.kek.Open(prefixTLSALPN+name, rec.Key)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: rec.Chain, PrivateKey: key}
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{ACMETLS1}, Certificates: []tls.Certificate{cert}}, nil
}

// httpSolver publishes HTTP-01 key authorizations.
type httpSolver struct{ c *Challenges }

func (s httpSolver) Present(ctx context.Context, ch acmeproto.Challenge) error {
	rec, _ := json.Marshal(httpRecord{Name: strings.ToLower(ch.Identifier.Value), KeyAuth: ch.KeyAuthorization, Expires: s.c.now().Add(challengeTTL)})
	_, err := store.PutKV(ctx, s.c.st, prefixHTTP01+ch.Token, rec)
	return err
}

func (s httpSolver) CleanUp(ctx context.Context, ch acmeproto.Challenge) error {
	_, err := store.DeleteKey(context.WithoutCancel(ctx), s.c.st, prefixHTTP01+ch.Token)
	return err
}

// alpnSolver publishes TLS-ALPN-01 challenge certificates.
type alpnSolver struct{ c *Challenges }

func (s alpnSolver) Present(ctx context.Context, ch acmeproto.Challenge) error {
	cert, err := acmez.TLSALPN01ChallengeCert(ch)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	name := strings.ToLower(ch.Identifier.Value)
	rec, _ := json.Marshal(alpnRecord{Chain: cert.Certificate, Key: s.c.kek.Seal(prefixTLSALPN+name, der), Expires: s.c.now().Add(challengeTTL)})
	_, err = store.PutKV(ctx, s.c.st, prefixTLSALPN+name, rec)
	return err
}

func (s alpnSolver) CleanUp(ctx context.Context, ch acmeproto.Challenge) error {
	_, err := store.DeleteKey(context.WithoutCancel(ctx), s.c.st, prefixTLSALPN+strings.ToLower(ch.Identifier.Value))
	return err
}

// Sweep deletes challenge records past their expiry (left by a node that
// died mid-order) and returns how many.
func (c *Challenges) Sweep(ctx context.Context) (int, error) {
	now := c.now()
	n := 0
	for _, p := range []string{prefixHTTP01, prefixTLSALPN} {
		kvs, _, err := c.st.List(ctx, p, "", 0)
		if err != nil {
			return n, err
		}
		for _, kv := range kvs {
			var rec struct {
				Expires time.Time `json:"expires"`
			}
			if json.Unmarshal(kv.Value, &rec) == nil && now.Before(rec.Expires) {
				continue
			}
			if _, err := c.st.Txn(ctx, []store.Cond{{Key: kv.Key, ModRev: kv.ModRev}}, []store.Op{store.Delete(kv.Key)}); err == nil {
				n++
			}
		}
	}
	return n, nil
}
