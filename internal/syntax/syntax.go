// Package syntax holds the forms of values that both the configuration file
// and the domain packages accept: durations with whole days, DNS hostnames
// and route hosts. It imports only the standard library, so a domain package
// can check a value the way the configuration does without importing the
// configuration's types.
package syntax

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration accepts Go durations ("1.5s", "200ms", "2m") and whole days ("30d").
func Duration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a duration like 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 500ms, 10s, 2m)", s)
	}
	if dur < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return dur, nil
}

// RouteHost reports whether host is acceptable as a route's host, as
// routes[].host is validated: an exact hostname, a one-label wildcard
// "*.example.com", or "*" for every host no other route matches. The error
// says what is wrong without naming the field; "" is refused too.
func RouteHost(host string) error {
	h := strings.ToLower(host)
	switch {
	case h == "":
		return errors.New("is required")
	case h == "*":
		return nil
	case strings.HasPrefix(h, "*."):
		if !Hostname(h[2:]) || !strings.Contains(h[2:], ".") {
			return fmt.Errorf("%q is not a valid wildcard (use *.example.com)", host)
		}
	case !Hostname(h):
		return fmt.Errorf("%q is not a valid hostname", host)
	}
	return nil
}

// Hostname reports whether s is a DNS hostname (letters, digits, '-' and
// '_' in labels of 1-63 characters, at most 253 in all).
func Hostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
