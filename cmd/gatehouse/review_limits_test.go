package main

import (
	"context"
	"testing"

	"gatehouse/internal/admin"
)

// TestRenewalAdmittedAboveLoweredLimit: after limits.max_certificates is
// lowered below usage, new certificates are refused but a renewal that
// replaces a certificate (the count does not grow) is admitted, alone and
// in a batch; otherwise every certificate would expire behind the lowered
// limit.
func TestRenewalAdmittedAboveLoweredLimit(t *testing.T) {
	tn := startTestNode(t, twoPools(t)+"limits: {max_certificates: 3}\n")
	tn.addCert("a.uni-a.test")
	tn.addCert("b.uni-a.test")
	tn.addCert("c.uni-a.test")
	tn.reloadWith("max_certificates: 3", "max_certificates: 2")

	if err := tn.tryCert("a.uni-a.test"); err != nil {
		t.Fatalf("renewing a.uni-a.test with 3 of 2 installed (count unchanged): %v", err)
	}
	c, k, err := tn.ca.Issue("b.uni-a.test")
	if err != nil {
		t.Fatal(err)
	}
	res, err := tn.client.AddCerts(context.Background(), []admin.BatchItem{{Source: "b", CertPEM: string(c), KeyPEM: string(k)}})
	if err != nil || len(res) != 1 || res[0].Error != "" {
		t.Fatalf("renewing b.uni-a.test in a batch with 3 of 2 installed: %v %+v", err, res)
	}
	err = tn.tryCert("d.uni-a.test")
	if l := limitRefusal(err); l == nil || l.Usage != 3 || l.Limit != 2 || l.Adding != 1 {
		t.Fatalf("new certificate with 3 of 2 installed: %v (%+v), want a refusal of 3 in use + 1 against 2", err, l)
	}
	if got := tn.resource("certificates").Usage; got != 3 {
		t.Fatalf("certificates in use: %d, want 3", got)
	}
}
