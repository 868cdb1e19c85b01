package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, "gatehouse/internal/server.")
}

// startTLS serves h on a loopback HTTPS listener bound through listen
// (nil: net.Listen) and returns the server and a client TLS config.
func startTLS(t *testing.T, h http.Handler, listen func(network, addr string) (net.Listener, error)) (*Server, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	cert, err := LoadOrCreateAdminCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	cfg := &config.Config{}
	cfg.Listeners.HTTPS = config.Listener{Address: "127.0.0.1:0"}
	s := New(cfg, Options{
		PublicTLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		Edge:      h,
		Listen:    listen,
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

func TestListenHook(t *testing.T) {
	var called []string
	listen := func(network, addr string) (net.Listener, error) {
		called = append(called, network+" "+addr)
		return net.Listen(network, addr)
	}
	s, _ := startTLS(t, http.NotFoundHandler(), listen)
	defer s.Shutdown(context.Background())
	if len(called) != 1 || called[0] != "tcp 127.0.0.1:0" {
		t.Fatalf("Listen hook called with %q, want once with tcp 127.0.0.1:0", called)
	}
}

// TestShutdownAnswersFirstRequests checks the first drain phase: a client
// that connected before Shutdown and sends its first request after it
// began is answered (http.Server.Shutdown alone closes such a connection
// without an answer), with Connection: close, and a request in flight
// completes.
func TestShutdownAnswersFirstRequests(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inHandler <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})
	s, ccfg := startTLS(t, h, nil)
	addr := s.Addr("https")

	type result struct {
		status int
		close  bool
		body   string
		err    error
	}
	send := func(conn net.Conn, path string) result {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
			return result{err: err}
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return result{err: err}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return result{status: resp.StatusCode, close: resp.Close, body: string(b), err: err}
	}
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, ccfg)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	slow := dial()
	slowDone := make(chan result, 1)
	go func() { slowDone <- send(slow, "/slow") }()
	<-inHandler
	silent := dial() // handshake done, no request yet
	// Wait until the server has accepted it and counts it as fresh.
	deadline := time.Now().Add(5 * time.Second)
	for s.servers[0].ln.fresh.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("fresh connections = %d, want 1", s.servers[0].ln.fresh.Load())
		}
		time.Sleep(time.Millisecond)
	}

	shutDone := make(chan error, 1)
	go func() { shutDone <- s.Shutdown(context.Background()) }()
	// Shutdown has begun once the listener refuses new connections.
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts after Shutdown began")
		}
		time.Sleep(time.Millisecond)
	}

	tests := []struct {
		name string
		got  func() result
	}{
		{"first request sent after shutdown began", func() result { return send(silent, "/") }},
		{"request in flight", func() result { close(release); return <-slowDone }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.got()
			if got.err != nil || got.status != http.StatusOK || got.body != "ok" || !got.close {
				t.Fatalf("got %d %q close=%v err=%v; want 200 ok with Connection: close", got.status, got.body, got.close, got.err)
			}
		})
	}
	if err := <-shutDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
