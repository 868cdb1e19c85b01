package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultExpiryWarning is how close to its expiry a certificate draws a
// warning when ValidateOptions.ExpiryWarning is zero.
const DefaultExpiryWarning = 30 * 24 * time.Hour

// ValidateOptions tunes Validate.
type ValidateOptions struct {
	// ExpiryWarning is how close to expiry a certificate draws a warning
	// (0: DefaultExpiryWarning).
	ExpiryWarning time.Duration
}

// Validate checks a parsed bundle at time now: the key matches the leaf, each
// chain certificate signed the one before it, every name is a valid DNS name
// or one-label wildcard, and the leaf is currently valid. It returns warnings
// (expiring soon) that do not prevent installation, or an *InputError.
func Validate(b *Bundle, now time.Time, opts ValidateOptions) (warnings []string, err error) {
	if opts.ExpiryWarning <= 0 {
		opts.ExpiryWarning = DefaultExpiryWarning
	}
	if !publicKeysEqual(b.Leaf.PublicKey, b.Key.Public()) {
		return nil, inputErr("private key", "does not match the leaf certificate's public key")
	}
	prev := b.Leaf
	for i, c := range b.Chain {
		if err := prev.CheckSignatureFrom(c); err != nil {
			var cv x509.ConstraintViolationError
			if errors.As(err, &cv) {
				return nil, &InputError{Part: "chain", Problem: fmt.Sprintf("certificate %d (%q) is not a CA certificate and cannot sign certificate %d (%q)", i+1, describe(c), i, describe(prev)), Err: err}
			}
			return nil, &InputError{Part: "chain", Problem: fmt.Sprintf("certificate %d (%q) did not sign certificate %d (%q)", i+1, describe(c), i, describe(prev)), Err: err}
		}
		prev = c
	}
	if len(b.Names) == 0 {
		return nil, inputErr("certificate", "has no DNS names (no DNS subject alternative names and no common name)")
	}
	for _, n := range b.Names {
		if problem := checkName(n); problem != "" {
			return nil, inputErr(fmt.Sprintf("name %q", n), "%s", problem)
		}
	}
	if now.Before(b.NotBefore) {
		return nil, inputErr("certificate", "not valid until %s", b.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(b.NotAfter) {
		return nil, inputErr("certificate", "expired on %s", b.NotAfter.UTC().Format(time.RFC3339))
	}
	if left := b.NotAfter.Sub(now); left < opts.ExpiryWarning {
		warnings = append(warnings, fmt.Sprintf("certificate expires in %s, on %s", humanDays(left), b.NotAfter.UTC().Format(time.RFC3339)))
	}
	return warnings, nil
}

func humanDays(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	switch days {
	case 0:
		return "less than a day"
	case 1:
		return "1 day"
	}
	return fmt.Sprintf("%d days", days)
}

// checkName returns what is wrong with a (lowercased) DNS name, or "".
// Wildcards are allowed only as the whole first label and must be followed by
// at least two labels ("*.example.com", not "*.com"), so that one wildcard
// never covers a whole top-level domain.
func checkName(n string) string {
	if n == "" {
		return "empty name"
	}
	if len(n) > 253 {
		return fmt.Sprintf("is %d characters long; the limit is 253", len(n))
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		switch {
		case l == "":
			return "empty label"
		case l == "*":
			if i != 0 {
				return "a wildcard is allowed only as the whole first label"
			}
			if len(labels) < 3 {
				return "a wildcard must be followed by at least two labels (\"*.example.com\")"
			}
			continue
		case len(l) > 63:
			return fmt.Sprintf("label %q is %d characters long; the limit is 63", l, len(l))
		case l[0] == '-' || l[len(l)-1] == '-':
			return fmt.Sprintf("label %q starts or ends with a hyphen", l)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				if c == '*' {
					return "a wildcard is allowed only as the whole first label"
				}
				return fmt.Sprintf("bad character %q", c)
			}
		}
	}
	return ""
}
