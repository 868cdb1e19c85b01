package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ACME turns on certificates obtained and renewed from an ACME CA for the
// hostnames registered through the admin API (gatehouse hostname add).
// Without this section no hostname is ever sent to a CA.
type ACME struct {
	// Directories are the CA's directory URLs, tried in order: the first
	// one that answers is used for an order, the next ones are fallbacks.
	Directories []string `yaml:"directories"`
	// Email is the account's contact address (optional for most CAs).
	Email string `yaml:"email"`
	// EAB is the External Account Binding some CAs require.
	EAB *EAB `yaml:"eab"`
	// Challenges are the challenge types offered to the CA, in order of
	// preference: http-01 (answered on listeners.http before its
	// redirect), tls-alpn-01 (answered on listeners.https), dns-01
	// (through dns01.command). Default: [http-01, tls-alpn-01] (http-01
	// only when listeners.http is set).
	Challenges []string `yaml:"challenges"`
	// DNS01 runs an operator's command to publish and remove the TXT
	// record of a dns-01 challenge.
	DNS01 *DNS01 `yaml:"dns01"`
	// KeyType of the certificates' private keys: ecdsa-p256 (default) or
	// rsa2048.
	KeyType string `yaml:"key_type"`
	// Profile is the ACME profile asked for (e.g. "shortlived"); empty
	// means the CA's default.
	Profile string `yaml:"profile"`
	// CAFile holds PEM certificates trusted for the directory's HTTPS, for
	// a private CA; the system roots are used when empty.
	CAFile string `yaml:"ca_file"`
	// OrderTimeout bounds one order from creation to the certificate
	// (default 2m).
	OrderTimeout Duration `yaml:"order_timeout"`
	// Workers is how many orders one node runs at once (default 4).
	Workers int `yaml:"workers"`
	// OnDemand issues for a registered hostname during its first
	// handshake instead of waiting for its turn.
	OnDemand OnDemand `yaml:"on_demand"`
	// RateLimits are the CA's limits, kept as budgets in the capacity
	// registry (defaults: Let's Encrypt's published limits).
	RateLimits ACMERateLimits `yaml:"rate_limits"`
	// Webhook sends every hostname state change (added, issuing, active,
	// renewing, failed, removed) to an operator's endpoint.
	Webhook *ACMEWebhook `yaml:"webhook"`
}

// ACMEWebhook is the operator's endpoint for hostname state changes. Each
// POST carries X-Gatehouse-Signature: sha256=HMAC-SHA256(body) keyed with
// the secret in SecretFile, as the status portal's webhooks do.
type ACMEWebhook struct {
	URL string `yaml:"url"`
	// SecretFile holds the signing secret (at least 16 characters).
	SecretFile string `yaml:"secret_file"`
	// AllowHosts permits endpoints the webhook policy refuses (loopback,
	// link-local, …), as status.webhooks.allow_hosts does.
	AllowHosts []string `yaml:"allow_hosts"`
}

// EAB is an External Account Binding: the key id the CA gave and the file
// holding its base64url HMAC key.
type EAB struct {
	KeyID    string `yaml:"key_id"`
	HMACFile string `yaml:"hmac_file"`
}

// DNS01 is the operator's hook for dns-01 challenges: Command is run as
// Command... present|cleanup NAME TXT-VALUE and must finish within Timeout
// (default 2m); it is expected to wait for the record to propagate.
type DNS01 struct {
	Command []string `yaml:"command"`
	Timeout Duration `yaml:"timeout"`
}

// OnDemand is the on-demand issuance policy. A name that is not a
// registered hostname never reaches the CA unless AskURL answers 200 for it.
type OnDemand struct {
	// Enabled turns on issuance during a handshake for a registered
	// hostname that has no certificate yet.
	Enabled bool `yaml:"enabled"`
	// Wait bounds how long the handshake waits for the certificate
	// (default 10s); after it the handshake gets the unknown-name policy
	// and the order goes on.
	Wait Duration `yaml:"wait"`
	// AskURL, if set, is asked GET AskURL?domain=NAME for a name that is
	// not registered; 200 registers and issues it. Anything else, or no
	// answer within AskTimeout (default 2s), is a no.
	AskURL     string   `yaml:"ask_url"`
	AskTimeout Duration `yaml:"ask_timeout"`
	// AskCache is how long an answer of AskURL is remembered (default 5m).
	AskCache Duration `yaml:"ask_cache"`
	// Pool and Tenant are given to a hostname registered by AskURL.
	Pool   string `yaml:"pool"`
	Tenant string `yaml:"tenant"`
}

// ACMERateLimits are the CA's rate limits (0: the default) and Gatehouse's
// own issuance caps (0: none).
type ACMERateLimits struct {
	OrdersPer3h                  int `yaml:"orders_per_3h"`
	CertsPerDomainPer7d          int `yaml:"certs_per_domain_per_7d"`
	DuplicatesPer7d              int `yaml:"duplicates_per_7d"`
	FailedValidationsPerNameHour int `yaml:"failed_validations_per_name_hour"`
	// OrdersPerMinute caps this fleet's new orders per minute (0: none).
	OrdersPerMinute int `yaml:"orders_per_minute"`
}

// ACME defaults and choices.
const (
	DefaultACMEOrderTimeout = 2 * time.Minute
	DefaultACMEWorkers      = 4
	DefaultOnDemandWait     = 10 * time.Second
	DefaultAskTimeout       = 2 * time.Second
	DefaultAskCache         = 5 * time.Minute
	DefaultDNS01Timeout     = 2 * time.Minute
)

// ACME challenge types and key types.
var (
	ACMEChallenges = []string{"http-01", "tls-alpn-01", "dns-01"}
	ACMEKeyTypes   = []string{"ecdsa-p256", "rsa2048"}
)

func (c *Config) applyACMEDefaults() {
	a := c.ACME
	if a == nil {
		return
	}
	if len(a.Challenges) == 0 {
		if c.Listeners.HTTP.Address != "" {
			a.Challenges = append(a.Challenges, "http-01")
		}
		a.Challenges = append(a.Challenges, "tls-alpn-01")
	}
	if a.KeyType == "" {
		a.KeyType = "ecdsa-p256"
	}
	if a.OrderTimeout == 0 {
		a.OrderTimeout = Duration(DefaultACMEOrderTimeout)
	}
	if a.Workers == 0 {
		a.Workers = DefaultACMEWorkers
	}
	if a.DNS01 != nil && a.DNS01.Timeout == 0 {
		a.DNS01.Timeout = Duration(DefaultDNS01Timeout)
	}
	od := &a.OnDemand
	if od.Wait == 0 {
		od.Wait = Duration(DefaultOnDemandWait)
	}
	if od.AskTimeout == 0 {
		od.AskTimeout = Duration(DefaultAskTimeout)
	}
	if od.AskCache == 0 {
		od.AskCache = Duration(DefaultAskCache)
	}
}

// validateACME checks the acme section. Files (EAB HMAC, CA bundle) are
// only checked for presence here; the node reads them at start.
func (c *Config) validateACME(v *validator, pools map[string]bool) {
	a := c.ACME
	if a == nil {
		return
	}
	if len(a.Directories) == 0 {
		v.add("acme.directories", "must list at least one ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory")
	}
	seen := map[string]int{}
	for i, d := range a.Directories {
		p := fmt.Sprintf("acme.directories[%d]", i)
		u, err := url.Parse(d)
		switch {
		case err != nil || u.Host == "":
			v.add(p, "%q is not an absolute URL", d)
		case u.Scheme != "https":
			v.add(p, "%q must be an https:// URL (ACME requires TLS)", d)
		}
		if j, dup := seen[d]; dup {
			v.add(p, "%q is already acme.directories[%d]", d, j)
		}
		seen[d] = i
	}
	if a.Email != "" {
		at := strings.LastIndexByte(a.Email, '@')
		if at < 1 || !validHostname(a.Email[at+1:]) || strings.ContainsAny(a.Email, " ,;<>\"") {
			v.add("acme.email", "%q is not an email address", a.Email)
		}
	}
	if e := a.EAB; e != nil {
		if strings.TrimSpace(e.KeyID) == "" {
			v.add("acme.eab.key_id", "is required with acme.eab")
		}
		if e.HMACFile == "" {
			v.add("acme.eab.hmac_file", "is required with acme.eab (a file holding the base64url HMAC key)")
		}
	}
	types := map[string]bool{}
	for i, ch := range a.Challenges {
		p := fmt.Sprintf("acme.challenges[%d]", i)
		switch {
		case !slices.Contains(ACMEChallenges, ch):
			v.add(p, "%q must be one of %s", ch, strings.Join(ACMEChallenges, ", "))
		case types[ch]:
			v.add(p, "%q is listed twice", ch)
		case ch == "http-01" && c.Listeners.HTTP.Address == "":
			v.add(p, "http-01 needs listeners.http.address (the CA asks on port 80)")
		case ch == "dns-01" && (a.DNS01 == nil || len(a.DNS01.Command) == 0):
			v.add(p, "dns-01 needs acme.dns01.command")
		}
		types[ch] = true
	}
	if d := a.DNS01; d != nil {
		if len(d.Command) == 0 || strings.TrimSpace(d.Command[0]) == "" {
			v.add("acme.dns01.command", "must name a program, e.g. [/usr/local/bin/dns-hook]")
		}
		if t := d.Timeout.D(); t < time.Second || t > time.Hour {
			v.add("acme.dns01.timeout", "%s must be between 1s and 1h", d.Timeout)
		}
	}
	if !slices.Contains(ACMEKeyTypes, a.KeyType) {
		v.add("acme.key_type", "%q must be one of %s", a.KeyType, strings.Join(ACMEKeyTypes, ", "))
	}
	if a.Profile != "" && !poolName.MatchString(a.Profile) {
		v.add("acme.profile", "%q is not a profile name (letters, digits, '.', '_', '-')", a.Profile)
	}
	if t := a.OrderTimeout.D(); t < 5*time.Second || t > time.Hour {
		v.add("acme.order_timeout", "%s must be between 5s and 1h", a.OrderTimeout)
	}
	if a.Workers < 1 || a.Workers > 256 {
		v.add("acme.workers", "%d must be between 1 and 256", a.Workers)
	}
	od := a.OnDemand
	if w := od.Wait.D(); w < 100*time.Millisecond || w > time.Minute {
		v.add("acme.on_demand.wait", "%s must be between 100ms and 1m (a handshake waits that long)", od.Wait)
	}
	if od.AskURL != "" {
		u, err := url.Parse(od.AskURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("acme.on_demand.ask_url", "%q is not an absolute http(s) URL", od.AskURL)
		}
		if od.Pool == "" {
			v.add("acme.on_demand.pool", "is required with ask_url: the pool a hostname the ask endpoint allows is routed to")
		}
	}
	if od.Pool != "" && !pools[od.Pool] {
		v.add("acme.on_demand.pool", "%q is not a pool defined under pools", od.Pool)
	}
	if t := od.AskTimeout.D(); t < 10*time.Millisecond || t > 30*time.Second {
		v.add("acme.on_demand.ask_timeout", "%s must be between 10ms and 30s", od.AskTimeout)
	}
	if t := od.AskCache.D(); t < time.Second || t > 24*time.Hour {
		v.add("acme.on_demand.ask_cache", "%s must be between 1s and 24h", od.AskCache)
	}
	rl := a.RateLimits
	for _, f := range []struct {
		name string
		v    int
	}{
		{"orders_per_3h", rl.OrdersPer3h},
		{"certs_per_domain_per_7d", rl.CertsPerDomainPer7d},
		{"duplicates_per_7d", rl.DuplicatesPer7d},
		{"failed_validations_per_name_hour", rl.FailedValidationsPerNameHour},
		{"orders_per_minute", rl.OrdersPerMinute},
	} {
		if f.v < 0 || f.v > 1_000_000 {
			v.add("acme.rate_limits."+f.name, "%d must be between 0 (the default) and 1000000", f.v)
		}
	}
	if w := a.Webhook; w != nil {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.add("acme.webhook.url", "%q is not an absolute http(s) URL", w.URL)
		}
		if w.SecretFile == "" {
			v.add("acme.webhook.secret_file", "is required with acme.webhook: a file holding the secret that signs each delivery")
		}
		for i, h := range w.AllowHosts {
			if _, _, err := ParseAllowHost(h); err != nil {
				v.add(fmt.Sprintf("acme.webhook.allow_hosts[%d]", i), "%v", err)
			}
		}
	}
}
