package status

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/textproto"
	"strings"

	"gatehouse/internal/mailer"
	"gatehouse/internal/store"
)

// Bounces that arrive after the SMTP server accepted a message: the
// operator's mail system hands the delivery status notification (RFC
// 3464) to the admin API, or the operator names the address. Each counts
// as one permanent failure of the address, like a 5xx answer at sending:
// at status.email.max_failures the subscription is suspended.

// MaxDSNBytes bounds a delivery status notification handed to the API.
const MaxDSNBytes = 256 << 10

// BounceRequest is one later bounce: an address, or a whole delivery
// status notification as received (headers and body).
type BounceRequest struct {
	Email string `json:"email,omitempty"`
	DSN   string `json:"dsn,omitempty"`
}

// BounceResult says what a bounce request recorded.
type BounceResult struct {
	// Recorded are the subscribers whose failure count went up.
	Recorded []BouncedSubscriber `json:"recorded"`
	// Unknown are failed recipients that are not subscribers.
	Unknown []string `json:"unknown,omitempty"`
	// Ignored counts recipients of the report that did not fail for good
	// (delayed, delivered, or a 4.x.x status).
	Ignored int `json:"ignored,omitempty"`
}

// BouncedSubscriber is a subscriber after a recorded bounce.
type BouncedSubscriber struct {
	Email     string `json:"email"`
	Failures  int    `json:"failures"`
	Suspended bool   `json:"suspended"`
}

// RecordEmailBounce counts a bounce for the address of req.Email or for
// every permanently failed recipient of req.DSN.
func (p *Portal) RecordEmailBounce(ctx context.Context, req BounceRequest) (BounceResult, error) {
	var res BounceResult
	if p.mail == nil {
		return res, ErrEmailDisabled
	}
	var addrs []string
	switch {
	case req.Email != "" && req.DSN != "":
		return res, inputErr("dsn", "give either email or dsn, not both")
	case req.Email != "":
		a, err := mailer.CheckAddress(req.Email)
		if err != nil {
			return res, inputErr("email", "%v", err)
		}
		addrs = []string{a}
	case req.DSN != "":
		if len(req.DSN) > MaxDSNBytes {
			return res, inputErr("dsn", "larger than %d bytes", MaxDSNBytes)
		}
		failed, ignored, err := ParseDSN(strings.NewReader(req.DSN))
		if err != nil {
			return res, inputErr("dsn", "%v", err)
		}
		addrs, res.Ignored = failed, ignored
	default:
		return res, inputErr("email", "give the bounced address (email) or the delivery status notification (dsn)")
	}
	res.Recorded = []BouncedSubscriber{}
	for _, a := range addrs {
		s, err := p.mail.countFailure(ctx, subID(a))
		if errors.Is(err, store.ErrNotFound) {
			res.Unknown = append(res.Unknown, a)
			continue
		}
		if err != nil {
			return res, err
		}
		res.Recorded = append(res.Recorded, BouncedSubscriber{Email: s.Email, Failures: s.Failures, Suspended: s.Suspended})
		p.hooks.record(Delivery{ID: newID(), Subscriber: "email:" + s.ID, Event: "bounce", Attempt: 1, Final: true,
			At: p.now(), Channel: "email", Error: "bounced after acceptance"})
	}
	return res, nil
}

// ParseDSN reads a delivery status notification (a multipart/report
// message with report-type=delivery-status, RFC 3464) and returns the
// recipients that failed permanently (Action: failed, Status 5.x.x), and
// how many other recipients it reports.
func ParseDSN(r io.Reader) (failed []string, ignored int, err error) {
	msg, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(r, MaxDSNBytes)))
	if err != nil {
		return nil, 0, fmt.Errorf("not a mail message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || !strings.EqualFold(params["report-type"], "delivery-status") || params["boundary"] == "" {
		return nil, 0, errors.New("not a delivery status notification (Content-Type multipart/report; report-type=delivery-status)")
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, 0, errors.New("the report has no message/delivery-status part")
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reading the report: %v", err)
		}
		pt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if pt != "message/delivery-status" && pt != "message/global-delivery-status" {
			continue
		}
		body, err := io.ReadAll(part)
		if err != nil {
			return nil, 0, fmt.Errorf("reading the delivery status: %v", err)
		}
		return parseDeliveryStatus(body)
	}
}

// parseDeliveryStatus reads the per-message fields, then one group of
// fields per recipient, groups separated by blank lines.
func parseDeliveryStatus(body []byte) (failed []string, ignored int, err error) {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(bytes.TrimLeft(body, "\r\n"))))
	if _, err := tr.ReadMIMEHeader(); err != nil && err != io.EOF {
		return nil, 0, fmt.Errorf("per-message fields: %v", err)
	}
	recipients := 0
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			recipients++
			addr := recipientAddr(h.Get("Final-Recipient"))
			if addr == "" {
				addr = recipientAddr(h.Get("Original-Recipient"))
			}
			if strings.EqualFold(strings.TrimSpace(h.Get("Action")), "failed") && strings.HasPrefix(strings.TrimSpace(h.Get("Status")), "5.") && addr != "" {
				failed = append(failed, addr)
			} else {
				ignored++
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("recipient fields: %v", err)
		}
	}
	if recipients == 0 {
		return nil, 0, errors.New("the delivery status names no recipient")
	}
	return failed, ignored, nil
}

// recipientAddr reads "rfc822; addr" (the address type is required).
func recipientAddr(v string) string {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || !strings.EqualFold(strings.TrimSpace(typ), "rfc822") {
		return ""
	}
	a, err := mailer.CheckAddress(strings.Trim(strings.TrimSpace(addr), "<>"))
	if err != nil {
		return ""
	}
	return a
}

// bounceRoute is POST /v1/status/email/bounces.
func (p *Portal) bounceRoute(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/status/email/bounces", func(w http.ResponseWriter, r *http.Request) {
		var req BounceRequest
		if !readJSON(w, r, &req) {
			return
		}
		res, err := p.RecordEmailBounce(r.Context(), req)
		p.reply(w, http.StatusOK, res, err)
	})
}
