package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/internal/mailer/smtptest"
	"gatehouse/internal/status"
)

// TestStatusEmailReloadAndBounceCLI: later bounces recorded with
// `gatehouse status subscribers bounce` (an address, then a delivery status
// notification) count toward max_failures; an address that unsubscribed is
// refused by the import with its line named; and after the configuration
// file names another SMTP server and sender, `gatehouse reload` makes the
// next notification go there.
func TestStatusEmailReloadAndBounceCLI(t *testing.T) {
	srv, err := smtptest.Start(smtptest.Options{Username: "status", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	tn, _ := startMailNode(t, srv)
	ctx := context.Background()
	const addr = "bounced@uni-a.test"
	if out, err := statusCLI(t, tn, "status", "subscribers", "add", "--email", addr); err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	out, err := statusCLI(t, tn, "status", "subscribers", "bounce", "--email", addr)
	if err != nil || !strings.Contains(out, addr+": 1 failure(s), confirmed") {
		t.Fatalf("bounce --email: %v\n%s", err, out)
	}
	dsn := filepath.Join(t.TempDir(), "dsn.eml")
	os.WriteFile(dsn, []byte("From: MAILER-DAEMON@mx.uni-a.test\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"+
		"--b\r\nContent-Type: text/plain\r\n\r\nundeliverable\r\n"+
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.uni-a.test\r\n\r\n"+
		"Final-Recipient: rfc822; "+addr+"\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"+
		"Final-Recipient: rfc822; nobody@uni-a.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"+
		"--b--\r\n"), 0o600)
	out, err = statusCLI(t, tn, "status", "subscribers", "bounce", "--dsn", dsn)
	if err != nil || !strings.Contains(out, addr+": 2 failure(s), confirmed") || !strings.Contains(out, "nobody@uni-a.test: not a subscriber") {
		t.Fatalf("bounce --dsn: %v\n%s", err, out)
	}
	if out, err := statusCLI(t, tn, "status", "subscribers", "bounce"); err == nil {
		t.Errorf("bounce without --email or --dsn accepted: %s", out)
	}
	out, err = statusCLI(t, tn, "status", "subscribers", "list", "--email", addr)
	if err != nil || !strings.Contains(out, "confirmed  all         2") {
		t.Errorf("list after two bounces: %v\n%s", err, out)
	}

	// Another server and sender, by reload.
	other, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	dir := tn.cfg.DataDir
	otherCA := filepath.Join(dir, "other-ca.pem")
	os.WriteFile(otherCA, other.CAPEM, 0o600)
	tn.rewrite(`from: "University status <status@uni-a.test>"`, `from: "IT operations <ops@uni-a.test>"`)
	tn.reloadWith(fmt.Sprintf("port: %d, username: status, password_file: %s, ca_file: %s}", srv.Port(), filepath.Join(dir, "smtp.pw"), filepath.Join(dir, "smtp-ca.pem")),
		fmt.Sprintf("port: %d, ca_file: %s, connections: 2}", other.Port(), otherCA))
	before := srv.Count()
	if _, err := tn.client.OpenIncident(ctx, status.IncidentRequest{Name: "Outage", Body: "Looking."}); err != nil {
		t.Fatal(err)
	}
	waitBatches(t, tn.client, 1)
	got := readMails(t, other, 0)
	if len(got) != 1 || got[0].to != addr || !strings.Contains(got[0].header.Get("From"), "ops@uni-a.test") {
		t.Fatalf("after the reload the new server got %d messages (%+v), want one to %s from ops@uni-a.test", len(got), got, addr)
	}
	if srv.Count() != before {
		t.Errorf("the old server still got %d messages after the reload", srv.Count()-before)
	}

	// The person unsubscribes (one click); an import does not bring them back.
	resp, err := http.Post(got[0].link(t, "/subscribe/unsubscribe"), "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", resp.StatusCode)
	}
	imp := filepath.Join(t.TempDir(), "subs.csv")
	os.WriteFile(imp, []byte("email\nnew@uni-a.test\n"+addr+"\n"), 0o600)
	out, err = statusCLI(t, tn, "status", "subscribers", "import", imp)
	if err == nil || !strings.Contains(out, "line 3: email: "+addr+" unsubscribed on") || !strings.Contains(out, "1 email subscribers added, 1 lines refused") {
		t.Errorf("import of an unsubscribed address: %v\n%s", err, out)
	}
	if out, err := statusCLI(t, tn, "status", "subscribers", "add", "--email", addr, "--resubscribe"); err != nil {
		t.Errorf("add --resubscribe: %v\n%s", err, out)
	}
}
