package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// rawMember is a member that records the bytes of every request it
// receives and answers each with the raw response its path names.
type rawMember struct {
	ln      net.Listener
	answers map[string]string // path → raw response; "" closes without an answer

	mu   sync.Mutex
	seen []string
}

// closeAfter at the end of an answer makes the member close the
// connection after writing it (a body delimited by the close).
const closeAfter = "\x00close"

func newRawMember(t *testing.T, answers map[string]string) *rawMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &rawMember{ln: ln, answers: answers}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.serve(c)
		}
	}()
	return m
}

func (m *rawMember) serve(c net.Conn) {
	defer c.Close()
	var rec bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &rec))
	for {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		m.mu.Lock()
		m.seen = append(m.seen, rec.String())
		m.mu.Unlock()
		rec.Reset()
		answer, ok := m.answers[req.URL.Path]
		if !ok {
			answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
		}
		if answer == "" {
			return
		}
		raw, closing := strings.CutSuffix(answer, closeAfter)
		if _, err := io.WriteString(c, raw); err != nil || closing {
			return
		}
		if req.Header.Get("Upgrade") != "" {
			// The upgraded connection echoes one line, then ends.
			line, _ := bufio.NewReader(br).ReadString('\n')
			io.WriteString(c, "echo: "+line)
			return
		}
	}
}

func (m *rawMember) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.seen
	m.seen = nil
	return s
}

func (m *rawMember) addr() string { return m.ln.Addr().String() }

// afterHead in a raw request splits what is sent at once from what is
// sent after the head of the answer has come back.
const afterHead = "\x00then"

// rawExchange sends raw on a new connection to addr and returns all the
// bytes that come back until the server closes the connection.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	raw, then, _ := strings.Cut(raw, afterHead)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var head []byte
	if then != "" {
		// Wait for the head of the answer before sending the rest.
		for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil {
				t.Fatalf("reading the answer's head: %v (got %q)", err, head)
			}
			head = append(head, b[0])
		}
		if _, err := io.WriteString(c, then); err != nil {
			t.Fatal(err)
		}
	}
	got, err := io.ReadAll(c)
	got = append(head, got...)
	if err != nil && !isReset(err) {
		t.Fatalf("reading the answer: %v (got %q)", err, got)
	}
	return string(got)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r\n`)

// TestOneForwardingBehaviour sends the same requests, well-formed and
// hostile, through the direct path and the ReverseProxy path of the same
// config and compares byte for byte what the member receives and what the
// client gets back (apart from the Date the front server sets).
func TestOneForwardingBehaviour(t *testing.T) {
	const host = "app.example"
	answers := map[string]string{
		"/204":      "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
		"/304":      "HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\nCache-Control: max-age=5\r\n\r\n",
		"/head":     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n",
		"/chunked":  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
		"/trailers": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n",
		"/late-trailer": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-Late: 7\r\n\r\n",
		"/hints": "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
		"/hop": "HTTP/1.1 200 OK\r\nConnection: X-Secret, Keep-Alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n" +
			"Proxy-Authenticate: Basic\r\nX-Request-Id: member-set\r\nX-Multi: a\r\nX-Multi: b\r\nContent-Length: 2\r\n\r\nok",
		"/eof-body": "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the member closes" + closeAfter,
		"/big": "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 70000\r\n\r\n" +
			strings.Repeat("0123456789", 7000),
		"/500":      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom",
		"/noanswer": "",
		"/garbage":  "nonsense\r\n\r\n" + closeAfter,
		"/ws":       "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"/continue": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	}
	member := newRawMember(t, answers)

	fronts := map[string]string{} // path name → front address
	for _, direct := range []bool{true, false} {
		cfg := &config.Config{
			Pools:  []config.Pool{poolConfig("p", "", member.addr())},
			Routes: []config.Route{{Host: host, Pool: "p"}},
		}
		px, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		px.pools[0].direct = direct
		t.Cleanup(px.Close)
		srv := httptest.NewServer(px)
		t.Cleanup(srv.Close)
		name := "reverseproxy"
		if direct {
			name = "direct"
		}
		fronts[name] = srv.Listener.Addr().String()
	}

	// Every request carries a sane X-Request-Id (kept, so both paths send
	// the same one) and asks to close (so the answer ends with EOF).
	const std = "Host: " + host + "\r\nX-Request-Id: diff-1\r\nConnection: close\r\n"
	cases := []struct{ name, raw string }{
		{"get", "GET /plain?q=1 HTTP/1.1\r\n" + std + "Accept: */*\r\nUser-Agent: ua/1\r\n\r\n"},
		{"no user agent", "GET /plain HTTP/1.1\r\n" + std + "\r\n"},
		{"head", "HEAD /head HTTP/1.1\r\n" + std + "\r\n"},
		{"204", "GET /204 HTTP/1.1\r\n" + std + "\r\n"},
		{"304", "GET /304 HTTP/1.1\r\n" + std + "If-None-Match: \"v1\"\r\n\r\n"},
		{"chunked response", "GET /chunked HTTP/1.1\r\n" + std + "\r\n"},
		{"announced trailer", "GET /trailers HTTP/1.1\r\n" + std + "\r\n"},
		{"unannounced trailer", "GET /late-trailer HTTP/1.1\r\n" + std + "\r\n"},
		{"103 early hints", "GET /hints HTTP/1.1\r\n" + std + "\r\n"},
		{"hop-by-hop response headers", "GET /hop HTTP/1.1\r\n" + std + "\r\n"},
		{"body until close", "GET /eof-body HTTP/1.1\r\n" + std + "\r\n"},
		{"large body", "GET /big HTTP/1.1\r\n" + std + "\r\n"},
		{"member 500", "GET /500 HTTP/1.1\r\n" + std + "\r\n"},
		{"member closes without answer", "GET /noanswer HTTP/1.1\r\n" + std + "\r\n"},
		{"member garbage", "GET /garbage HTTP/1.1\r\n" + std + "\r\n"},
		{"forwarding headers from client", "GET /plain HTTP/1.1\r\n" + std +
			"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\r\n"},
		{"hop-by-hop request headers", "GET /plain HTTP/1.1\r\nHost: " + host + "\r\nX-Request-Id: diff-1\r\n" +
			"Connection: close, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nX-Keep: 2\r\n\r\n"},
		{"repeated headers", "GET /plain HTTP/1.1\r\n" + std + "X-Multi: a\r\nX-Multi: b\r\nAccept: a, b\r\nAccept: c\r\n\r\n"},
		{"underscore header", "GET /plain HTTP/1.1\r\n" + std + "X_Under: 1\r\n\r\n"},
		{"absolute form", "GET http://" + host + "/abs HTTP/1.1\r\n" + std + "\r\n"},
		{"te trailers", "GET /plain HTTP/1.1\r\n" + std + "Te: trailers\r\n\r\n"},
		{"idempotency key post", "POST /plain HTTP/1.1\r\n" + std + "Idempotency-Key: k1\r\nContent-Length: 0\r\n\r\n"},
		{"post with body", "POST /plain HTTP/1.1\r\n" + std + "Content-Length: 5\r\n\r\nhello"},
		{"chunked request", "POST /plain HTTP/1.1\r\n" + std + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"chunked request with trailer", "POST /plain HTTP/1.1\r\n" + std + "Transfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"},
		{"100-continue", "POST /continue HTTP/1.1\r\n" + std + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"},
		{"CL and TE", "POST /plain HTTP/1.1\r\n" + std + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"TE not chunked", "POST /plain HTTP/1.1\r\n" + std + "Transfer-Encoding: gzip\r\n\r\nxx"},
		{"TE chunked twice", "POST /plain HTTP/1.1\r\n" + std + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"},
		{"duplicate CL differing", "POST /plain HTTP/1.1\r\n" + std + "Content-Length: 3\r\nContent-Length: 5\r\n\r\nhello"},
		{"duplicate CL equal", "POST /plain HTTP/1.1\r\n" + std + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
		{"obs-fold", "GET /plain HTTP/1.1\r\n" + std + "X-Fold: a\r\n b\r\n\r\n"},
		{"bare LF", "GET /plain HTTP/1.1\n" + strings.ReplaceAll(std, "\r\n", "\n") + "\n"},
		{"bare CR in value", "GET /plain HTTP/1.1\r\n" + std + "X-Cr: a\rb\r\n\r\n"},
		{"space before colon", "GET /plain HTTP/1.1\r\n" + std + "X-Sp : a\r\n\r\n"},
		{"huge header", "GET /plain HTTP/1.1\r\n" + std + "X-Huge: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"},
		{"websocket upgrade", "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nX-Request-Id: diff-1\r\nConnection: Upgrade\r\n" +
			"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" + afterHead + "ping\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var members, answers [2]string
			for i, name := range []string{"direct", "reverseproxy"} {
				member.take()
				answers[i] = dateLine.ReplaceAllString(rawExchange(t, fronts[name], tc.raw), "Date: -\r\n")
				members[i] = strings.Join(member.take(), "\n---\n")
			}
			if members[0] != members[1] {
				t.Errorf("the member received\ndirect:\n%s\nreverseproxy:\n%s", members[0], members[1])
			}
			if answers[0] != answers[1] {
				t.Errorf("the client got\ndirect:\n%q\nreverseproxy:\n%q", answers[0], answers[1])
			}
			if answers[0] == "" {
				t.Errorf("no answer at all")
			}
			t.Logf("member received %q; client got %q", truncate(members[0]), truncate(answers[0]))
		})
	}
}

func truncate(s string) string {
	if len(s) > 400 {
		return s[:400] + "..."
	}
	return s
}
