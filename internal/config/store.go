package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// validateStore checks the store section. Files (password, TLS) are only
// checked for presence here; reading them is the node's job at start.
func (c *Config) validateStore(v *validator) {
	e := c.Store.Etcd
	if e == nil {
		return
	}
	if len(e.Endpoints) == 0 {
		v.add("store.etcd.endpoints", "must list at least one etcd client URL, e.g. http://10.0.0.1:2379")
	}
	secure := e.CAFile != "" || e.CertFile != ""
	for i, ep := range e.Endpoints {
		path := fmt.Sprintf("store.etcd.endpoints[%d]", i)
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			v.add(path, "%q is not a URL: %v", ep, err)
		case u.Scheme != "http" && u.Scheme != "https":
			v.add(path, "%q must be an http:// or https:// URL with host:port", ep)
		case u.Host == "" || u.Port() == "":
			v.add(path, "%q must name a host and a port, e.g. https://etcd1:2379", ep)
		case u.Path != "" && u.Path != "/":
			v.add(path, "%q must not have a path", ep)
		case u.Scheme == "http" && secure:
			v.add(path, "%q is plain http but TLS files are configured; use https://", ep)
		}
	}
	if e.Prefix != "" && !strings.HasPrefix(e.Prefix, "/") {
		v.add("store.etcd.prefix", "%q must start with /", e.Prefix)
	}
	for _, d := range []struct {
		name string
		val  Duration
		max  time.Duration
	}{
		{"dial_timeout", e.DialTimeout, time.Minute},
		{"request_timeout", e.RequestTimeout, time.Minute},
	} {
		switch {
		case d.val < 0:
			v.add("store.etcd."+d.name, "must not be negative (0 means the default of 5s)")
		case d.val != 0 && d.val.D() < 10*time.Millisecond:
			v.add("store.etcd."+d.name, "%v is too short; use at least 10ms", d.val.D())
		case d.val.D() > d.max:
			v.add("store.etcd."+d.name, "%v is too long; use at most %v", d.val.D(), d.max)
		}
	}
	if r := e.CompactionRetention.D(); r != 0 && (r < time.Minute || r > 30*24*time.Hour) {
		v.add("store.etcd.compaction_retention", "%v must be between 1m and 30d (0 means the default of 24h)", r)
	}
	if b := e.LocalCacheBytes; b != 0 && (b < 1<<20 || b > 1<<40) {
		v.add("store.etcd.local_cache_bytes", "%s must be between 1MiB and 1TiB (0 means the default of 512MiB)", b)
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		v.add("store.etcd", "cert_file and key_file go together: give both or neither")
	}
	if e.PasswordFile != "" && e.Username == "" {
		v.add("store.etcd.password_file", "is set without store.etcd.username")
	}
	if e.Username != "" && e.PasswordFile == "" {
		v.add("store.etcd.username", "is set without store.etcd.password_file")
	}
}
