package server

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"time"
)

// refuseWait bounds how long a refusal waits for the client: to read its
// ClientHello or request, and for it to close after the answer.
const refuseWait = time.Second

// alertInternalError is a TLS record: a fatal internal_error alert. TLS has
// no "server busy" alert; internal_error is the one RFC 8446 describes for a
// server that cannot continue for reasons unrelated to the peer, and every
// client reports it at once ("tls: internal error", "tlsv1 alert internal
// error") instead of waiting or seeing a reset.
var alertInternalError = []byte{21, 3, 3, 0, 2, 2, 80}

// refuseTLS answers a TLS client that cannot be served: it reads the
// ClientHello record (closing a socket with unread data would send a reset
// that may overtake the alert), sends the alert, half-closes and waits
// briefly for the client to close.
func refuseTLS(c net.Conn) {
	c.SetDeadline(time.Now().Add(refuseWait))
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	if hdr[0] == 22 { // handshake record
		n := int64(binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.CopyN(io.Discard, c, min(n, 1<<14+256)); err != nil {
			return
		}
	}
	if _, err := c.Write(alertInternalError); err != nil {
		return
	}
	linger(c)
}

const busyBody = "server busy: too many connections\n"

// busyResponse is the plain-HTTP refusal.
var busyResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(busyBody)) + "\r\n\r\n" + busyBody

// refuseHTTP answers a plain-HTTP client that cannot be served with 503,
// once its request head has arrived (an answer before the request is one
// a client may discard as unsolicited).
func refuseHTTP(c net.Conn) {
	c.SetDeadline(time.Now().Add(refuseWait))
	buf := make([]byte, 0, 8<<10)
	for len(buf) < cap(buf) && !bytes.Contains(buf, []byte("\r\n\r\n")) {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return
		}
	}
	if _, err := io.WriteString(c, busyResponse); err != nil {
		return
	}
	linger(c)
}

// linger half-closes c and reads until the client closes or the deadline,
// so that the answer is not lost to a reset.
func linger(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() != nil {
			return
		}
	}
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}
