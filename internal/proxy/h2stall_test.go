package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"gatehouse/internal/config"
)

// TestH2ZeroWindowStall: an HTTP/2 client that advertises a zero flow
// control window never lets a response through. Every response, however
// small, must be cut (RST_STREAM) after the write idle timeout instead of
// holding the stream, its handler and the connection without end; the
// member is not blamed.
func TestH2ZeroWindowStall(t *testing.T) {
	hs := newHostile(t, config.Listener{WriteIdleTimeout: config.Duration(300 * time.Millisecond)}, Options{})
	// The edge's own pages (404 here) and cached answers are held the
	// same way; cache.test/20k is cached by a normal GET first.
	if code, _ := hs.get(t, "cache.test", "/20k"); code != http.StatusOK {
		t.Fatalf("priming the cache: %d", code)
	}
	for _, h := range []string{"direct.test", "rp.test", "cache.test", "nohost.test"} {
		for _, path := range []string{"/", "/20k", "/events"} {
			t.Run(h+path, func(t *testing.T) {
				conn, err := tls.Dial("tcp", hs.srv.Listener.Addr().String(),
					&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails the test
				if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
					t.Fatal(err)
				}
				fr := http2.NewFramer(conn, conn)
				fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
				var hb bytes.Buffer
				enc := hpack.NewEncoder(&hb)
				for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", h}, {":path", path}} {
					enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						t.Fatalf("no RST_STREAM for a response the client never lets through: %v", err)
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.RSTStreamFrame:
						if f.StreamID == 1 {
							return
						}
					case *http2.GoAwayFrame:
						return
					case *http2.DataFrame:
						if f.StreamEnded() {
							t.Fatalf("stream ended with a window of 0")
						}
					}
				}
			})
		}
	}
	if _, failures := hs.failures(); failures != 0 || hs.downs.Load() != 0 {
		t.Errorf("pool failures %d, ejections %d, want 0, 0", failures, hs.downs.Load())
	}
}

// TestH2MemberPauseNotCut: the write idle timeout bounds the wait for the
// client, not for the member. A member that pauses longer than it in the
// middle of a response (a slow report, a stream of events) must not get
// the response cut on HTTP/2 any more than on HTTP/1.1, nor be counted as
// a client's write timeout.
func TestH2MemberPauseNotCut(t *testing.T) {
	hs := newHostile(t, config.Listener{WriteIdleTimeout: config.Duration(300 * time.Millisecond)}, Options{})
	for _, h := range []string{"direct.test", "rp.test"} {
		t.Run(h, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, hs.srv.URL+"/pause", nil)
			req.Host = h
			res, err := hs.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.ProtoMajor != 2 {
				t.Fatalf("HTTP/%d, want 2", res.ProtoMajor)
			}
			body, err := io.ReadAll(res.Body)
			if err != nil || !strings.HasSuffix(string(body), "end") || len(body) != 40<<10+3 {
				var se http2.StreamError
				t.Fatalf("response cut while the member paused: %d bytes, %v (stream error: %v)", len(body), err, errors.As(err, &se))
			}
		})
	}
	if got := hs.px.ClientErrors()[ReasonWriteTimeout]; got != 0 {
		t.Errorf("client errors write_timeout = %d, want 0 (the client read everything)", got)
	}
}
