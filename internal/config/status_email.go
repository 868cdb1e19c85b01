package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"
)

// StatusEmail lets readers of the status portal subscribe by email (double
// opt-in, per component). The elected portal leader sends.
type StatusEmail struct {
	SMTP SMTP `yaml:"smtp"`
	// From is the sender address ("Status <status@example.com>").
	From string `yaml:"from"`
	// PublicURL is the live portal's address, used in every link of an
	// email and as the target of the subscribe form of the static export
	// (default: status.url).
	PublicURL string `yaml:"public_url"`
	// RatePerSecond bounds messages handed to the SMTP server (default 50).
	RatePerSecond float64 `yaml:"rate_per_second"`
	// ConfirmTTL is how long a subscription waits for its confirmation
	// before it is deleted (default 48h).
	ConfirmTTL Duration `yaml:"confirm_ttl"`
	// MaxFailures is how many permanent failures (5xx answers, bounces)
	// for an address suspend its subscription (default 5).
	MaxFailures int `yaml:"max_failures"`
	// PerIPPerHour and PerAddressPerHour bound subscribe requests from one
	// client address and for one email address (defaults 20 and 3).
	PerIPPerHour      int `yaml:"per_ip_per_hour"`
	PerAddressPerHour int `yaml:"per_address_per_hour"`
}

// SMTP is the outbound mail server.
type SMTP struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS is "starttls" (the default; the server must offer it),
	// "implicit" (TLS from the first byte, port 465) or "none" (only
	// for a relay on the same host; no authentication then).
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (trailing newline ignored).
	PasswordFile string `yaml:"password_file"`
	// CAFile, if set, is the only CA trusted for the server's certificate.
	CAFile string `yaml:"ca_file"`
	// Connections is how many SMTP sessions send a notification's
	// messages in parallel, together within rate_per_second (default 4).
	Connections int `yaml:"connections"`
}

// Defaults of StatusEmail's zero fields.
const (
	DefaultMailRate          = 50
	DefaultSMTPConnections   = 4
	maxSMTPConnections       = 64
	DefaultConfirmTTL        = 48 * time.Hour
	DefaultMaxFailures       = 5
	DefaultSubscribePerIP    = 20
	DefaultSubscribePerAddr  = 3
	DefaultSMTPPortStartTLS  = 587
	DefaultSMTPPortImplicit  = 465
	DefaultSMTPPortPlain     = 25
	SMTPTLSStartTLS          = "starttls"
	SMTPTLSImplicit          = "implicit"
	SMTPTLSNone              = "none"
	maxMailRatePerSecond     = 10000
	maxConfirmTTL            = 30 * 24 * time.Hour
	minConfirmTTL            = 10 * time.Minute
	maxSubscribeRatePerHour  = 100000
	maxMailFailuresThreshold = 1000
)

// WithDefaults returns e with its zero fields filled in.
func (e StatusEmail) WithDefaults() StatusEmail {
	if e.SMTP.TLS == "" {
		e.SMTP.TLS = SMTPTLSStartTLS
	}
	if e.SMTP.Port == 0 {
		switch e.SMTP.TLS {
		case SMTPTLSImplicit:
			e.SMTP.Port = DefaultSMTPPortImplicit
		case SMTPTLSNone:
			e.SMTP.Port = DefaultSMTPPortPlain
		default:
			e.SMTP.Port = DefaultSMTPPortStartTLS
		}
	}
	if e.SMTP.Connections == 0 {
		e.SMTP.Connections = DefaultSMTPConnections
	}
	if e.RatePerSecond == 0 {
		e.RatePerSecond = DefaultMailRate
	}
	if e.ConfirmTTL == 0 {
		e.ConfirmTTL = Duration(DefaultConfirmTTL)
	}
	if e.MaxFailures == 0 {
		e.MaxFailures = DefaultMaxFailures
	}
	if e.PerIPPerHour == 0 {
		e.PerIPPerHour = DefaultSubscribePerIP
	}
	if e.PerAddressPerHour == 0 {
		e.PerAddressPerHour = DefaultSubscribePerAddr
	}
	return e
}

// validateStatusEmail checks status.email: a mail server, a sender, an
// absolute public URL, TLS unless explicitly turned off (and then no
// password), sane rates and durations.
func (c *Config) validateStatusEmail(v *validator) {
	e := c.Status.Email
	if e == nil {
		return
	}
	const p = "status.email"
	d := e.WithDefaults()
	if strings.TrimSpace(e.SMTP.Host) == "" {
		v.add(p+".smtp.host", "must not be empty")
	} else if strings.ContainsAny(e.SMTP.Host, " /:\r\n") && !strings.HasPrefix(e.SMTP.Host, "[") {
		v.add(p+".smtp.host", "%q must be a host name or IP address, without port", e.SMTP.Host)
	}
	if e.SMTP.Port < 0 || e.SMTP.Port > 65535 {
		v.add(p+".smtp.port", "%d must be between 1 and 65535", e.SMTP.Port)
	}
	switch d.SMTP.TLS {
	case SMTPTLSStartTLS, SMTPTLSImplicit:
	case SMTPTLSNone:
		if e.SMTP.Username != "" || e.SMTP.PasswordFile != "" {
			v.add(p+".smtp.tls", "none sends credentials in clear; use starttls or implicit, or remove username and password_file")
		}
	default:
		v.add(p+".smtp.tls", "%q must be starttls, implicit or none", e.SMTP.TLS)
	}
	if (e.SMTP.Username == "") != (e.SMTP.PasswordFile == "") {
		v.add(p+".smtp.password_file", "username and password_file go together")
	}
	if e.From == "" {
		v.add(p+".from", "must not be empty")
	} else if a, err := mail.ParseAddress(e.From); err != nil || strings.ContainsAny(e.From, "\r\n") {
		v.add(p+".from", "%q is not an email address", e.From)
	} else if !strings.Contains(a.Address, "@") {
		v.add(p+".from", "%q has no domain", e.From)
	}
	pub := e.PublicURL
	if pub == "" {
		pub = c.Status.URL
	}
	if pub == "" {
		v.add(p+".public_url", "must be set (or status.url): links in emails need an absolute URL")
	} else if u, err := url.Parse(pub); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.add(p+".public_url", "%q is not an absolute http(s) URL", pub)
	}
	if e.SMTP.Connections < 0 || e.SMTP.Connections > maxSMTPConnections {
		v.add(p+".smtp.connections", "%d must be between 1 and %d", e.SMTP.Connections, maxSMTPConnections)
	}
	if e.RatePerSecond < 0 || e.RatePerSecond > maxMailRatePerSecond {
		v.add(p+".rate_per_second", "%g must be between 0 and %d", e.RatePerSecond, maxMailRatePerSecond)
	}
	if e.ConfirmTTL != 0 && (e.ConfirmTTL.D() < minConfirmTTL || e.ConfirmTTL.D() > maxConfirmTTL) {
		v.add(p+".confirm_ttl", "%s must be between 10m and 720h", e.ConfirmTTL.D())
	}
	if e.MaxFailures < 0 || e.MaxFailures > maxMailFailuresThreshold {
		v.add(p+".max_failures", "%d must be between 1 and %d", e.MaxFailures, maxMailFailuresThreshold)
	}
	for _, r := range []struct {
		name string
		n    int
	}{{"per_ip_per_hour", e.PerIPPerHour}, {"per_address_per_hour", e.PerAddressPerHour}} {
		name, n := r.name, r.n
		if n < 0 || n > maxSubscribeRatePerHour {
			v.add(fmt.Sprintf("%s.%s", p, name), "%d must be between 1 and %d", n, maxSubscribeRatePerHour)
		}
	}
}
