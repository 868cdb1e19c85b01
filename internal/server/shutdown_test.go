package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// TestShutdownAtConnectionLimit: with max_connections reached, Serve is
// parked waiting for a connection slot rather than in Accept. Shutdown must
// still end by its context's deadline (and Close what is left) instead of
// waiting for a slot that only the end of a long request frees.
func TestShutdownAtConnectionLimit(t *testing.T) {
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	inHandler := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	dir := t.TempDir()
	cert, err := LoadOrCreateAdminCert(dir+"/c.pem", dir+"/k.pem")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{}
	cfg.Listeners.HTTPS = config.Listener{Address: "127.0.0.1:0", MaxConnections: 1}
	s := New(cfg, Options{
		PublicTLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		Edge:      h,
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// One long request takes the only slot.
	conn, err := tls.Dial("tcp", s.Addr("https"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /long HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inHandler:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the handler")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want the context's deadline (a request was still running)", err)
		}
	case <-time.After(5 * time.Second):
		close(release) // let it end, so that the test does not leak
		<-done
		t.Fatal("Shutdown still running 5s after its 200ms deadline: it waits for the connection slot")
	}
}
