package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/acmetest"
	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
)

// startACME starts an in-process ACME CA and a node whose acme: section
// uses it with the given extra lines, and points the CA's validation at
// the node's listeners.
func startACME(t *testing.T, validity uint64, acmeTail string) (*testNode, *acmetest.CA) {
	t.Helper()
	return startACMEWithLog(t, acmetest.Options{Validity: validity}, nil, "  email: ops@example.com\n"+acmeTail)
}

// startACMEWithLog is startACME with the CA's options (dns-01 records,
// EAB) and the node's warnings also written to logTo (nil: the test log
// only).
func startACMEWithLog(t *testing.T, opts acmetest.Options, logTo io.Writer, acmeTail string) (*testNode, *acmetest.CA) {
	t.Helper()
	opts.Log = testWriter{t}
	ca, err := acmetest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.Close)
	caFile := filepath.Join(t.TempDir(), "acme-ca.pem")
	if err := os.WriteFile(caFile, ca.ServerCAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tn := startTestNodeLog(t, twoPools(t)+fmt.Sprintf("acme:\n  directories: [%q]\n  ca_file: %s\n%s", ca.URL(), caFile, acmeTail), logTo)
	ca.SetPorts(portOf(t, tn.Addr("http")), portOf(t, tn.Addr("https")))
	return tn, ca
}

func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// waitState polls a hostname until it reaches state (or fails the test,
// at once if the hostname fails).
func waitState(t *testing.T, c *admin.Client, name string, state hostnames.State, within time.Duration) hostnames.Hostname {
	t.Helper()
	return waitFor(t, c, name, state, within, true)
}

// waitStateSkipFailed is waitState through failed attempts.
func waitStateSkipFailed(t *testing.T, c *admin.Client, name string, state hostnames.State, within time.Duration) hostnames.Hostname {
	t.Helper()
	return waitFor(t, c, name, state, within, false)
}

func waitFor(t *testing.T, c *admin.Client, name string, state hostnames.State, within time.Duration, stopOnFailed bool) hostnames.Hostname {
	t.Helper()
	deadline := time.Now().Add(within)
	var h hostnames.Hostname
	var err error
	for time.Now().Before(deadline) {
		h, err = c.GetHostname(context.Background(), name)
		if err == nil && h.State == state {
			return h
		}
		if err == nil && h.State == hostnames.Failed && stopOnFailed {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("hostname %s: state %q (reason %q, err %v), want %q within %v", name, h.State, h.Reason, err, state, within)
	return h
}

// verifiedHandshake connects with SNI name and verifies the served chain
// against roots; it returns the leaf.
func verifiedHandshake(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// routedGet sends GET https://name/ to addr, verifying against roots.
func routedGet(t *testing.T, addr, name string, roots *x509.CertPool) (int, string) {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	defer tr.CloseIdleConnections()
	return get(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, "https://"+name+"/")
}

func TestACMEIssueEndToEnd(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			tn, ca := startACME(t, 0, "  challenges: ["+challenge+"]\n")
			ctx := context.Background()
			name := "shop.uni-d.test"
			h, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Tenant: "uni-d", Pool: "a"})
			if err != nil {
				t.Fatal(err)
			}
			if h.State != hostnames.PendingValidation {
				t.Errorf("state after add = %q", h.State)
			}
			h = waitState(t, tn.client, name, hostnames.Active, 60*time.Second)
			roots, err := ca.Roots()
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := verifiedHandshake(tn.Addr("https"), name, roots)
			if err != nil {
				t.Fatalf("handshake with the issued certificate: %v", err)
			}
			if leaf.SerialNumber.Text(16) != h.Serial || h.CertID == "" || !h.NextAttempt.After(time.Now()) || !h.NextAttempt.Before(h.NotAfter) {
				t.Errorf("served serial %s, hostname %+v", leaf.SerialNumber.Text(16), h)
			}
			if ca.Orders() != 1 {
				t.Errorf("CA orders = %d, want 1", ca.Orders())
			}
			// Routed to its pool.
			if code, body := routedGet(t, tn.Addr("https"), name, roots); code != 200 || (body != "a1" && body != "a2") {
				t.Errorf("GET https://%s/ = %d %q, want pool a", name, code, body)
			}
			// gatehouse limits shows the CA budgets and the schedule.
			res, err := tn.client.Limits(ctx)
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]int64{}
			limitOf := map[string]int64{}
			for _, r := range res {
				byName[r.Name], limitOf[r.Name] = r.Usage, r.Limit
			}
			if byName["acme_orders_3h"] != 1 || limitOf["acme_orders_3h"] != 300 || limitOf["acme_certs_per_domain_7d"] != 50 || byName["acme_schedule"] <= 0 {
				t.Errorf("limits: usage %v, limits %v; want acme_orders_3h 1 of 300, certs per domain of 50, the schedule's bytes", byName, limitOf)
			}
			// cert list tells the ACME certificate from an uploaded one.
			up := tn.addCert("app.uni-a.test")
			list, err := tn.client.ListCerts(ctx, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			sources := map[string]string{}
			for _, in := range list {
				sources[in.ID] = in.Source
			}
			if sources[h.CertID] != "acme" || sources[up.Cert.ID] != "uploaded" {
				t.Errorf("cert sources = %v; want %s acme, %s uploaded", sources, h.CertID, up.Cert.ID)
			}
			// Challenge records are gone after the order.
			for _, p := range []string{"acme/challenges/"} {
				kvs, _, err := tn.Store().List(ctx, p, "", 0)
				if err != nil || len(kvs) != 0 {
					t.Errorf("challenge records left: %d (%v)", len(kvs), err)
				}
			}
			// Removal stops serving it.
			if err := tn.client.RemoveHostname(ctx, name); err != nil {
				t.Fatal(err)
			}
			if _, err := verifiedHandshake(tn.Addr("https"), name, roots); err == nil {
				t.Error("removed hostname still served")
			}
			var apiErr *admin.APIError
			if _, err := tn.client.GetHostname(ctx, name); !errors.As(err, &apiErr) {
				t.Errorf("get after removal: %v", err)
			}
		})
	}
}

// handshakeLoop runs verified handshakes for name until stop is closed and
// returns how many succeeded and failed.
func handshakeLoop(addr, name string, roots *x509.CertPool, stop <-chan struct{}) (ok, failed *atomic.Int64, done <-chan struct{}) {
	return handshakeLoopErr(addr, name, roots, stop, nil)
}

// handshakeLoopErr is handshakeLoop keeping the last error in lastErr.
func handshakeLoopErr(addr, name string, roots *x509.CertPool, stop <-chan struct{}, lastErr *atomic.Value) (ok, failed *atomic.Int64, done <-chan struct{}) {
	ok, failed = new(atomic.Int64), new(atomic.Int64)
	d := make(chan struct{})
	go func() {
		defer close(d)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := verifiedHandshake(addr, name, roots); err != nil {
				failed.Add(1)
				if lastErr != nil {
					lastErr.Store(err.Error())
				}
			} else {
				ok.Add(1)
			}
			// Below the listener's per-client rate (100 new connections
			// a second from one address): the CA's validations come from
			// the same loopback address and must not be refused with it.
			time.Sleep(15 * time.Millisecond)
		}
	}()
	return ok, failed, d
}

func TestACMERenewal(t *testing.T) {
	// 40-second certificates, renewed inside the CA's ARI window (for so
	// short a lifetime, Pebble's window spans all of it up to the
	// emergency point, 2 s before expiry).
	tn, ca := startACME(t, 40, "  challenges: [tls-alpn-01]\n")
	ctx := context.Background()
	name := "renew.uni-d.test"
	if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	first := waitState(t, tn.client, name, hostnames.Active, 30*time.Second)
	roots, _ := ca.Roots()
	stop := make(chan struct{})
	var lastErr atomic.Value
	ok, failed, done := handshakeLoopErr(tn.Addr("https"), name, roots, stop, &lastErr)
	deadline := time.Now().Add(60 * time.Second)
	var h hostnames.Hostname
	for time.Now().Before(deadline) {
		var err error
		h, err = tn.client.GetHostname(ctx, name)
		if err == nil && h.Serial != first.Serial && h.State == hostnames.Active {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A few more handshakes on the new certificate.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	if h.Serial == first.Serial {
		t.Fatalf("not renewed: %+v", h)
	}
	if !h.NextAttempt.After(first.NextAttempt) || !h.NextAttempt.Before(h.NotAfter) {
		t.Errorf("renewal time %v not after the first (%v) and before expiry %v", h.NextAttempt, first.NextAttempt, h.NotAfter)
	}
	// Pebble offers ACME Renewal Information: the renewal waited for the
	// window it suggested for the first certificate.
	if first.WindowStart.IsZero() || first.NextAttempt.Before(first.WindowStart) || first.NextAttempt.After(first.WindowEnd) {
		t.Errorf("first certificate: renewal at %v, ARI window %v–%v", first.NextAttempt, first.WindowStart, first.WindowEnd)
	}
	if h.NotBefore.Before(first.WindowStart.Truncate(time.Second)) {
		t.Errorf("renewed certificate issued at %v, before the ARI window start %v", h.NotBefore, first.WindowStart)
	}
	leaf, err := verifiedHandshake(tn.Addr("https"), name, roots)
	if err != nil || leaf.SerialNumber.Text(16) != h.Serial {
		t.Errorf("served %v (%v), want the new serial %s", leaf, err, h.Serial)
	}
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("handshakes during renewal: %d ok, %d failed (last: %v); want none failed", ok.Load(), failed.Load(), lastErr.Load())
	}
	t.Logf("renewed %s → %s; %d handshakes meanwhile, %d failed; CA orders %d", first.Serial, h.Serial, ok.Load(), failed.Load(), ca.Orders())
}

func TestACMEFailureBackoffRetry(t *testing.T) {
	tn, ca := startACME(t, 0, "  challenges: [http-01]\n")
	ctx := context.Background()
	name := "flaky.uni-d.test"
	// The CA does not answer orders: the hostname fails with the reason
	// and backs off.
	ca.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/order-plz") {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"type":"urn:ietf:params:acme:error:serverInternal","detail":"the CA is down for maintenance","status":503}`)
			return true
		}
		return false
	})
	if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	h := waitState(t, tn.client, name, hostnames.Failed, 30*time.Second)
	if h.Attempts != 1 || !strings.Contains(h.Reason, "down for maintenance") || time.Until(h.NextAttempt) < 30*time.Second || time.Until(h.NextAttempt) > 2*time.Minute {
		t.Errorf("after a failure: attempts %d, reason %q, next attempt in %v; want 1, the CA's reason, about 1m", h.Attempts, h.Reason, time.Until(h.NextAttempt))
	}
	// The operator's retry orders at once; the CA now answers rateLimited
	// with a Retry-After, which the next attempt waits for (not the backoff).
	ca.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/order-plz") {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders recently","status":429}`)
			return true
		}
		return false
	})
	if _, err := tn.client.RetryHostname(ctx, name); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		h, _ = tn.client.GetHostname(ctx, name)
		if h.Attempts == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h.Attempts != 2 || !strings.Contains(h.Reason, "too many new orders") || time.Until(h.NextAttempt) > 10*time.Second {
		t.Errorf("after retry and rateLimited: attempts %d, reason %q, next attempt in %v; want 2, the CA's reason, its Retry-After of 3s", h.Attempts, h.Reason, time.Until(h.NextAttempt))
	}
	// The CA is back: the attempt after the Retry-After succeeds.
	ca.SetFault(nil)
	h = waitStateSkipFailed(t, tn.client, name, hostnames.Active, 30*time.Second)
	if h.Attempts != 0 || h.Reason != "" {
		t.Errorf("after success: %+v", h)
	}
	roots, _ := ca.Roots()
	if _, err := verifiedHandshake(tn.Addr("https"), name, roots); err != nil {
		t.Errorf("handshake: %v", err)
	}
	// hostname list --state failed is empty again.
	if fs, err := tn.client.ListHostnames(ctx, "failed"); err != nil || len(fs) != 0 {
		t.Errorf("failed hostnames: %v %v", fs, err)
	}
}

func TestACMEHostnameBadInput(t *testing.T) {
	tn, ca := startACME(t, 0, "  challenges: [http-01]\n")
	ctx := context.Background()
	if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: "taken.uni-d.test", Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, tn.client, "taken.uni-d.test", hostnames.Active, 30*time.Second)
	orders := ca.Orders()
	tests := []struct {
		req    admin.HostnameRequest
		status int
		msg    string
	}{
		{admin.HostnameRequest{Name: "", Pool: "a"}, 400, "name: is required"},
		{admin.HostnameRequest{Name: "203.0.113.7", Pool: "a"}, 400, "name: \"203.0.113.7\" is an IP address"},
		{admin.HostnameRequest{Name: "::1", Pool: "a"}, 400, "is an IP address"},
		{admin.HostnameRequest{Name: "*.uni-d.test", Pool: "a"}, 400, "name: \"*.uni-d.test\" is a wildcard: only the dns-01 challenge"},
		{admin.HostnameRequest{Name: "bad name.test", Pool: "a"}, 400, "name: "},
		{admin.HostnameRequest{Name: "ok.uni-d.test"}, 400, "pool: is required"},
		{admin.HostnameRequest{Name: "ok.uni-d.test", Pool: "nope"}, 400, "pool"},
		{admin.HostnameRequest{Name: "ok.uni-d.test", Pool: "a", Source: "magic"}, 400, "source: "},
		{admin.HostnameRequest{Name: "Taken.UNI-D.test", Pool: "a"}, 409, "name: \"taken.uni-d.test\" is already registered"},
		{admin.HostnameRequest{Name: "app.uni-a.test", Pool: "a"}, 409, "app.uni-a.test"}, // routed by the configuration file
	}
	for _, tc := range tests {
		_, err := tn.client.AddHostname(ctx, tc.req)
		var apiErr *admin.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != tc.status || !strings.Contains(apiErr.Message, tc.msg) {
			t.Errorf("AddHostname(%+v) = %v, want %d containing %q", tc.req, err, tc.status, tc.msg)
		}
	}
	hs, _ := tn.client.ListHostnames(ctx, "")
	rs, _ := tn.client.ListRoutes(ctx)
	if len(hs) != 1 || len(rs) != 1 {
		t.Errorf("after refused requests: %d hostnames, %d routes; want 1 and 1", len(hs), len(rs))
	}
	time.Sleep(200 * time.Millisecond)
	if ca.Orders() != orders {
		t.Errorf("refused requests reached the CA: %d orders, want %d", ca.Orders(), orders)
	}
}

func TestACMEOnDemand(t *testing.T) {
	var asked atomic.Int64
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		d := r.URL.Query().Get("domain")
		switch {
		case strings.HasPrefix(d, "allowed-"):
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(d, "slow-"):
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(ask.Close)
	tn, ca := startACME(t, 0, fmt.Sprintf("  challenges: [tls-alpn-01]\n  on_demand: {enabled: true, wait: 20s, ask_url: %q, ask_timeout: 200ms, pool: a, tenant: ondemand}\n", ask.URL))
	ctx := context.Background()
	roots, _ := ca.Roots()
	addr := tn.Addr("https")

	// A registered hostname: handshakes right after the add wait for its
	// first certificate and share one order.
	name := "first.uni-d.test"
	if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := verifiedHandshake(addr, name, roots)
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Errorf("first handshake: %v", err)
		}
	}
	waitState(t, tn.client, name, hostnames.Active, 30*time.Second)
	// The node counts the issuance just after it records the state.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok, _, _ := tn.ACME().Orders(); ok > 0 {
			break
		}
	}
	if ok, failed, _ := tn.ACME().Orders(); ok != 1 || failed != 0 || ca.Orders() != 1 {
		t.Errorf("10 concurrent first handshakes: %d issuances (%d failed), CA orders %d; want one", ok, failed, ca.Orders())
	}

	// A flood of unknown names never reaches the CA.
	before := ca.Orders()
	sem := make(chan struct{}, 16)
	var served atomic.Int64
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := verifiedHandshake(addr, fmt.Sprintf("random-%d-%d.example.net", i, time.Now().UnixNano()), roots); err == nil {
				served.Add(1)
			}
		})
	}
	wg.Wait()
	if served.Load() != 0 || ca.Orders() != before {
		t.Errorf("unknown names: %d served, CA orders %d → %d; want none", served.Load(), before, ca.Orders())
	}
	hs, _ := tn.client.ListHostnames(ctx, "")
	if len(hs) != 1 {
		t.Errorf("hostnames after the flood: %d, want 1", len(hs))
	}

	// The ask endpoint: a slow answer is a no within its timeout; a yes
	// registers and issues during the handshake.
	if _, err := verifiedHandshake(addr, "slow-1.uni-d.test", roots); err == nil {
		t.Error("slow ask endpoint: handshake served")
	}
	if _, err := verifiedHandshake(addr, "allowed-1.uni-d.test", roots); err != nil {
		t.Errorf("allowed by the ask endpoint: %v", err)
	}
	h, err := tn.client.GetHostname(ctx, "allowed-1.uni-d.test")
	if err != nil || h.Tenant != "ondemand" || h.Pool != "a" {
		t.Errorf("hostname registered on demand: %+v %v", h, err)
	}
	waitState(t, tn.client, "allowed-1.uni-d.test", hostnames.Active, 30*time.Second)
	if ok := waitOrders(tn.ACME(), 2); ok != 2 || ca.Orders() != before+1 {
		t.Errorf("issuances after ask = %d (CA orders %d), want 2 (%d)", ok, ca.Orders(), before+1)
	}
	t.Logf("ask endpoint asked %d times for %d unknown names", asked.Load(), 302)
}
