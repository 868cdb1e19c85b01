// Command origin is the origin of the response-cache benchmark
// (bench/cache/run.sh): every GET is answered with a fixed body of -size
// bytes and "Cache-Control: max-age=N", where N is the request's ttl query
// parameter or -max-age. It prints "ready" once listening and, on SIGTERM or
// SIGINT, the number of requests it answered.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:28290", "listen address")
	size := flag.Int("size", 10240, "body size in bytes")
	maxAge := flag.Int("max-age", 60, "max-age in seconds unless the ttl query parameter says otherwise")
	flag.Parse()
	if err := run(*addr, *size, *maxAge); err != nil {
		fmt.Fprintln(os.Stderr, "origin:", err)
		os.Exit(1)
	}
}

func run(addr string, size, maxAge int) error {
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	lastMod := time.Now().UTC().Format(http.TimeFormat)
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		age := maxAge
		if v := r.URL.Query().Get("ttl"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				age = n
			}
		}
		hd := w.Header()
		hd.Set("Content-Type", "text/plain")
		hd.Set("Cache-Control", "max-age="+strconv.Itoa(age))
		hd.Set("Last-Modified", lastMod)
		hd.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Println("ready", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Println("served", served.Load())
	return nil
}
