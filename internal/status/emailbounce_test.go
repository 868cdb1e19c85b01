package status

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseDSN(t *testing.T) {
	f, err := os.Open("testdata/dsn-failed.eml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	failed, ignored, err := ParseDSN(f)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(failed, ",") != "gone@example.org,stranger@example.org" || ignored != 1 {
		t.Errorf("failed %q, ignored %d; want gone@ and stranger@, 1 ignored (the delayed one)", failed, ignored)
	}
	for name, in := range map[string]string{
		"plain message":   "From: a@b.c\r\nSubject: hi\r\n\r\nhello\r\n",
		"other report":    "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nread\r\n--x--\r\n",
		"no status part":  "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsorry\r\n--x--\r\n",
		"no recipient":    "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n--x--\r\n",
		"not even a mail": "\x00\x01",
	} {
		if _, _, err := ParseDSN(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestEmailLaterBounce records bounces that arrive after acceptance
// through the management API: a delivery status notification counts one
// failure for each permanently failed subscriber (not for a delayed one
// or a stranger), an address counts one more, and at max_failures (2) the
// subscription is suspended and receives nothing more.
func TestEmailLaterBounce(t *testing.T) {
	mf := newMailFixture(t, nil) // max_failures 2
	ctx := context.Background()
	for _, a := range []string{"gone@example.org", "slow@example.org", "ok@example.org"} {
		if _, err := mf.p.AddEmailSubscriber(ctx, EmailSubscriberRequest{Email: a}); err != nil {
			t.Fatal(err)
		}
	}
	dsn, err := os.ReadFile("testdata/dsn-failed.eml")
	if err != nil {
		t.Fatal(err)
	}
	api := mf.p.ManagementHandler()
	call := func(body any) (int, BounceResult, string) {
		b, _ := json.Marshal(body)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/status/email/bounces", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		api.ServeHTTP(rec, req)
		var res BounceResult
		json.Unmarshal(rec.Body.Bytes(), &res)
		return rec.Code, res, rec.Body.String()
	}
	code, res, body := call(BounceRequest{DSN: string(dsn)})
	if code != 200 || len(res.Recorded) != 1 || res.Recorded[0].Email != "gone@example.org" || res.Recorded[0].Failures != 1 ||
		res.Recorded[0].Suspended || strings.Join(res.Unknown, ",") != "stranger@example.org" || res.Ignored != 1 {
		t.Fatalf("DSN: %d %s", code, body)
	}
	code, res, body = call(BounceRequest{Email: "gone@example.org"})
	if code != 200 || len(res.Recorded) != 1 || res.Recorded[0].Failures != 2 || !res.Recorded[0].Suspended {
		t.Fatalf("second bounce: %d %s", code, body)
	}
	for _, tc := range []struct {
		req  BounceRequest
		want string
	}{
		{BounceRequest{}, "email: give"},
		{BounceRequest{Email: "gone@example.org", DSN: string(dsn)}, "either email or dsn"},
		{BounceRequest{Email: "x@y.z\r\nBcc: a@b.c"}, "email: "},
		{BounceRequest{DSN: "Subject: hello\r\n\r\nnot a report"}, "not a delivery status notification"},
		{BounceRequest{DSN: strings.Repeat("x", MaxDSNBytes+1)}, "larger than"},
	} {
		if code, _, body := call(tc.req); code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%.40q: %d %s, want 400 naming %q", tc.req.Email+tc.req.DSN, code, body, tc.want)
		}
	}
	var slow EmailSubscriber
	mf.p.EmailSubscribers(ctx, "slow@example.org", func(s EmailSubscriber) error { slow = s; return nil })
	if slow.Failures != 0 || slow.Suspended {
		t.Errorf("slow@ (delayed, not failed): %d failures, suspended %v", slow.Failures, slow.Suspended)
	}
	mf.clock.Add(time.Minute)
	if _, err := mf.p.OpenIncident(ctx, IncidentRequest{Name: "Outage", Body: "x"}); err != nil {
		t.Fatal(err)
	}
	mf.drained(t)
	for _, m := range mf.smtp.Messages() {
		if m.To[0] == "gone@example.org" {
			t.Errorf("the suspended address received a message")
		}
	}
	if n := len(mf.smtp.Messages()); n != 2 {
		t.Errorf("%d messages, want 2 (slow@ and ok@)", n)
	}
}
