package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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
	ca, err := acmetest.Start(acmetest.Options{Validity: validity, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.Close)
	caFile := filepath.Join(t.TempDir(), "acme-ca.pem")
	if err := os.WriteFile(caFile, ca.ServerCAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tn := startTestNode(t, twoPools(t)+fmt.Sprintf(`acme:
  directories: [%q]
  ca_file: %s
  email: ops@example.com
%s`, ca.URL(), caFile, acmeTail))
	ca.SetPorts(portOf(t, tn.srv.Addr("http")), portOf(t, tn.srv.Addr("https")))
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

// waitState polls a hostname until it reaches state (or fails the test).
func waitState(t *testing.T, c *admin.Client, name string, state hostnames.State, within time.Duration) hostnames.Hostname {
	t.Helper()
	deadline := time.Now().Add(within)
	var h hostnames.Hostname
	var err error
	for time.Now().Before(deadline) {
		h, err = c.GetHostname(context.Background(), name)
		if err == nil && h.State == state {
			return h
		}
		if err == nil && h.State == hostnames.Failed {
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
			leaf, err := verifiedHandshake(tn.srv.Addr("https"), name, roots)
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
			if code, body := routedGet(t, tn.srv.Addr("https"), name, roots); code != 200 || (body != "a1" && body != "a2") {
				t.Errorf("GET https://%s/ = %d %q, want pool a", name, code, body)
			}
			// Challenge records are gone after the order.
			for _, p := range []string{"acme/challenges/"} {
				kvs, _, err := tn.store.List(ctx, p, "", 0)
				if err != nil || len(kvs) != 0 {
					t.Errorf("challenge records left: %d (%v)", len(kvs), err)
				}
			}
			// Removal stops serving it.
			if err := tn.client.RemoveHostname(ctx, name); err != nil {
				t.Fatal(err)
			}
			if _, err := verifiedHandshake(tn.srv.Addr("https"), name, roots); err == nil {
				t.Error("removed hostname still served")
			}
			var apiErr *admin.APIError
			if _, err := tn.client.GetHostname(ctx, name); !errors.As(err, &apiErr) {
				t.Errorf("get after removal: %v", err)
			}
		})
	}
}
