// Package config is Gatehouse's static configuration (gatehouse.yaml):
// listeners, backend pools, routes, TLS policy, status components and limits.
//
// Parse reads and fully validates a document; a Config that Parse returned
// is immutable by convention and is swapped in whole on reload.
package config

import (
	"time"
)

// Config is the whole static configuration.
type Config struct {
	// DataDir holds the embedded store, the admin token and the key-encryption key.
	DataDir   string    `yaml:"data_dir"`
	Store     Store     `yaml:"store"`
	Listeners Listeners `yaml:"listeners"`
	TLS       TLS       `yaml:"tls"`
	Admin     Admin     `yaml:"admin"`
	Pools     []Pool    `yaml:"pools"`
	Routes    []Route   `yaml:"routes"`
	Status    Status    `yaml:"status"`
	// ResponseCache bounds the response cache that routes with
	// cache.enabled share.
	ResponseCache ResponseCache `yaml:"response_cache"`
	Limits        Limits        `yaml:"limits"`
	Log           Log           `yaml:"log"`
	// ACME obtains and renews certificates for registered hostnames
	// (acme.go); nil: off.
	ACME *ACME `yaml:"acme"`
}

// Store selects the dynamic-state store: the embedded default (a bbolt file
// in DataDir) unless Etcd is set.
type Store struct {
	Etcd *Etcd `yaml:"etcd"`
}

// Etcd points a node at an etcd v3 cluster shared by the fleet.
type Etcd struct {
	Endpoints []string `yaml:"endpoints"`
	// Prefix namespaces every key (default "/gatehouse").
	Prefix      string   `yaml:"prefix"`
	DialTimeout Duration `yaml:"dial_timeout"`
	// RequestTimeout bounds each store call (default 5s).
	RequestTimeout Duration `yaml:"request_timeout"`
	Username       string   `yaml:"username"`
	PasswordFile   string   `yaml:"password_file"`
	// CAFile, CertFile and KeyFile configure TLS to etcd (client cert optional).
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CompactionRetention is how much revision history the scheduled
	// compaction keeps (default 24h): longer than the longest expected node
	// downtime, so a returning node resumes its watch instead of relisting.
	CompactionRetention Duration `yaml:"compaction_retention"`
	// LocalCacheBytes bounds the node's local cache of the bundle records it
	// read from etcd, kept (keys sealed) in <data_dir>/cache/ beside its
	// index snapshot (default 512MiB).
	LocalCacheBytes ByteSize `yaml:"local_cache_bytes"`
}

// Listeners are the sockets Gatehouse serves on. Admin is never the public
// listener: validation refuses the same address for both.
type Listeners struct {
	HTTPS  Listener `yaml:"https"`
	HTTP   Listener `yaml:"http"`   // plain HTTP; redirects to HTTPS (except ACME challenges)
	Status Listener `yaml:"status"` // the status portal
	Admin  Listener `yaml:"admin"`  // the admin API (HTTPS, bearer token)
}

// Listener is one listening socket with its limits.
type Listener struct {
	// Address is host:port; empty disables the listener (HTTPS and Admin are required).
	Address           string   `yaml:"address"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	ReadTimeout       Duration `yaml:"read_timeout"`
	WriteTimeout      Duration `yaml:"write_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    ByteSize `yaml:"max_header_bytes"`
	// MaxConnections caps concurrently open client connections (0: no cap
	// beyond file descriptors). It follows a reload.
	MaxConnections int `yaml:"max_connections"`
	// BodyReadTimeout bounds the wait between two successive reads of a
	// request body, WriteIdleTimeout the wait between two successive
	// writes of a response (HTTPS listener only; default 60s each, as
	// nginx's client_body_timeout and send_timeout). A client that stalls
	// longer gets 408 or its connection closed, and the member connection
	// is released. routes[] may override both.
	BodyReadTimeout  Duration `yaml:"body_read_timeout"`
	WriteIdleTimeout Duration `yaml:"write_idle_timeout"`
	// UnderscoreHeaders says what the HTTPS listener does with a request
	// header whose name has an underscore, which some backends read as the
	// hyphenated name: "drop" (default, as nginx), "reject" (400) or "pass".
	UnderscoreHeaders string `yaml:"underscore_headers"`
	// MaxQueued is how many connections beyond MaxConnections wait, already
	// accepted, for a slot (default 128; -1: none, refuse at once). A
	// connection beyond the queue, or one that waited QueueTimeout, is
	// refused with a TLS internal_error alert (HTTP 503 on plain listeners).
	MaxQueued int `yaml:"max_queued"`
	// QueueTimeout is how long a queued connection waits (default 5s).
	QueueTimeout Duration `yaml:"queue_timeout"`
	// PerClient limits each client address (public listener only).
	PerClient PerClient `yaml:"per_client"`
	// AllowRemote confirms an admin listener on a non-loopback address
	// (listeners.admin only); without it such a config is refused.
	AllowRemote bool `yaml:"allow_remote"`
}

// PerClient limits the connections of one client address: an IPv4 address,
// or an IPv6 /64 (one site's prefix). Every limit follows a reload; -1 turns
// one off.
type PerClient struct {
	// MaxConnections caps the open (and queued) connections of one address
	// (default: a quarter of the listener's max_connections, 4096 when that
	// is 0), so that one address never holds the whole listener.
	MaxConnections int `yaml:"max_connections"`
	// MaxNewPerSecond is the sustained rate of new connections per address
	// (default 100), with Burst (default 500) connections at once: a
	// token bucket.
	MaxNewPerSecond float64 `yaml:"max_new_per_second"`
	Burst           int     `yaml:"burst"`
	// Allow lists CIDRs exempt from these limits: the operator's own
	// proxies, load balancers, a customer's known NAT.
	Allow []string `yaml:"allow"`
	// TrackedAddresses bounds the table of client addresses (default
	// 65536); beyond it the least recently seen idle address is forgotten.
	TrackedAddresses int `yaml:"tracked_addresses"`
}

// TLS is the policy of the public HTTPS listener.
type TLS struct {
	// UnknownSNI says what to do with a hostname that has no certificate:
	// "reject" (handshake fails with unrecognized_name) or "default".
	UnknownSNI string `yaml:"unknown_sni"`
	// DefaultHostname names the installed certificate served under "default".
	DefaultHostname string `yaml:"default_hostname"`
	// MinVersion is "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
	// CacheBytes bounds the decoded-certificate cache.
	CacheBytes ByteSize `yaml:"cache_bytes"`
	// KEKFile holds the 32-byte key-encryption key for private keys at rest
	// (default: <data_dir>/kek, created with mode 0600 on first start).
	KEKFile string `yaml:"kek_file"`
	// ExpiryWarning is how close to expiry an added certificate draws a warning.
	ExpiryWarning Duration `yaml:"expiry_warning"`
	// SessionTicketRotation is how often the fleet's TLS session ticket key
	// is replaced (default 12h); the previous key still decrypts for one period.
	SessionTicketRotation Duration `yaml:"session_ticket_rotation"`
}

// Admin configures the admin API's credentials and its TLS certificate.
type Admin struct {
	// TokenFile holds the bearer token (default <data_dir>/admin.token,
	// generated with mode 0600 on first start).
	TokenFile string `yaml:"token_file"`
	// Token, if set, is used instead of TokenFile.
	Token string `yaml:"token"`
	// CertFile and KeyFile serve the admin API; when empty a self-signed
	// certificate is generated into the data directory.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Pool is a named group of backend members.
type Pool struct {
	Name string `yaml:"name"`
	// Algorithm is round_robin, weighted_round_robin, least_requests or
	// consistent_hash (balancing.go).
	Algorithm Algorithm `yaml:"algorithm"`
	// Hash configures consistent_hash (balancing.go).
	Hash        Hash        `yaml:"hash"`
	Members     []Member    `yaml:"members"`
	HealthCheck HealthCheck `yaml:"health_check"`
	Timeouts    Timeouts    `yaml:"timeouts"`
	// Retries is how many other members a request without a body is
	// retried on after a connection failure: 0 means the default (1), -1
	// means none.
	Retries int `yaml:"retries"`
	// MaxConnsPerMember caps connections to each member (0: no cap).
	MaxConnsPerMember int `yaml:"max_conns_per_member"`
	// Failover says how traffic is shared between the members' zones
	// (failover.go).
	Failover Failover `yaml:"failover"`
}

// Member is one backend server.
type Member struct {
	Address string `yaml:"address"` // host:port
	Weight  int    `yaml:"weight"`  // default 1
	// Zone names where the member runs (a data centre or availability
	// zone, e.g. eu01-dc1); "" for none.
	Zone string `yaml:"zone"`
}

// HealthCheck is an active HTTP health check.
type HealthCheck struct {
	// Path is requested on each member; empty disables active checks.
	Path     string   `yaml:"path"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	// Rise consecutive successes mark a down member up; Fall consecutive
	// failures mark an up member down.
	Rise int `yaml:"rise"`
	Fall int `yaml:"fall"`
	// ExpectStatus lists acceptable status codes (default 200-399).
	ExpectStatus []int `yaml:"expect_status"`
	// Host is sent as the Host header of each check (default: the
	// member's address), for members that route by virtual host.
	Host string `yaml:"host"`
}

// Timeouts toward the members of a pool.
type Timeouts struct {
	Dial           Duration `yaml:"dial"`
	ResponseHeader Duration `yaml:"response_header"`
	IdleConn       Duration `yaml:"idle_conn"`
}

// Route sends requests whose host and path match to a pool. Host is an exact
// name, a wildcard "*.example.com" (one label), or "*" for every host no
// other route matches; PathPrefix defaults to "/".
type Route struct {
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
	Pool       string `yaml:"pool"`
	// Cache turns on the response cache for this route (off by default).
	Cache RouteCache `yaml:"cache"`
	// AllowMisdirected lets a request reach this route although its Host
	// is not the TLS server name of its connection nor another name of the
	// certificate that served it. By default such a request gets 421
	// Misdirected Request, so one tenant is never reached through another
	// tenant's TLS session.
	AllowMisdirected bool `yaml:"allow_misdirected"`
	// BodyReadTimeout and WriteIdleTimeout override the HTTPS listener's
	// for this route (0: the listener's).
	BodyReadTimeout  Duration `yaml:"body_read_timeout"`
	WriteIdleTimeout Duration `yaml:"write_idle_timeout"`
}

// RouteCache is the response cache policy of one route. The cache is a
// shared cache (RFC 9111): it stores GET responses that the members mark
// cacheable and answers from them while they are fresh, revalidates them
// when stale, and serves a stale one in place of an error while the pool
// has no healthy member, a member fails or answers 5xx.
type RouteCache struct {
	// Enabled turns caching on for the route.
	Enabled bool `yaml:"enabled"`
	// DefaultTTL is how long a response without freshness information
	// (Cache-Control max-age or s-maxage, Expires) counts as fresh. 0, the
	// default, stores such a response already stale: it is revalidated or
	// fetched again on every request and only stands in for errors.
	DefaultTTL Duration `yaml:"default_ttl"`
	// MaxStale is how long past its freshness a stored response may stand
	// in for an error (default 24h); a response's own stale-if-error
	// shortens it.
	MaxStale Duration `yaml:"max_stale"`
}

// ResponseCache sizes the response cache, which holds its entries in
// memory, evicting the least recently used first.
type ResponseCache struct {
	// MaxBytes bounds the memory of every stored response together
	// (default 64MiB). Nothing is used until a route enables caching.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxObjectBytes is the largest response body that is stored
	// (default 1MiB, or a quarter of MaxBytes if that is less); larger
	// ones are passed through.
	MaxObjectBytes ByteSize `yaml:"max_object_bytes"`
}

// Status configures the status portal.
type Status struct {
	Title string `yaml:"title"`
	// URL is the public address of the portal (used in feeds, webhook
	// payloads and the JSON API's page.url); empty means relative links only.
	URL string `yaml:"url"`
	// Hysteresis is how long a health-derived component state must hold
	// before the page shows it (0: the default, 30s).
	Hysteresis Duration `yaml:"hysteresis"`
	// ErrorRate turns the share of failed requests to a component's pools
	// into a component state; the worse of it and the health-derived
	// state is shown.
	ErrorRate  ErrorRate   `yaml:"error_rate"`
	Components []Component `yaml:"components"`
	// Webhooks is the policy for webhook subscriber URLs (status.go).
	Webhooks StatusWebhooks `yaml:"webhooks"`
	// Email, if set, lets readers subscribe by email (status_email.go).
	Email *StatusEmail `yaml:"email"`
}

// ErrorRate sets how the share of failed requests (5xx from members,
// 502/503/504 from the edge) over a sliding window maps to a component
// state. Zero fields take their defaults; thresholds are percentages.
type ErrorRate struct {
	// Disabled leaves the error rate out of component states.
	Disabled bool `yaml:"disabled"`
	// Window is how far back requests count (default 1m).
	Window Duration `yaml:"window"`
	// MinRequests is the fewest requests in the window for the rate to
	// count at all (default 20): a handful of failures on a quiet
	// component says little.
	MinRequests int `yaml:"min_requests"`
	// Degraded, Partial and Major are the error rates, in percent, from
	// which a component shows degraded performance (default 5), partial
	// outage (25) and major outage (50).
	Degraded float64 `yaml:"degraded"`
	Partial  float64 `yaml:"partial"`
	Major    float64 `yaml:"major"`
}

// Defaults of ErrorRate's zero fields.
const (
	DefaultErrorWindow      = time.Minute
	DefaultErrorMinRequests = 20
	DefaultErrorDegraded    = 5.0
	DefaultErrorPartial     = 25.0
	DefaultErrorMajor       = 50.0
)

// WithDefaults returns e with every zero field set to its default.
func (e ErrorRate) WithDefaults() ErrorRate {
	if e.Window == 0 {
		e.Window = Duration(DefaultErrorWindow)
	}
	if e.MinRequests == 0 {
		e.MinRequests = DefaultErrorMinRequests
	}
	if e.Degraded == 0 {
		e.Degraded = DefaultErrorDegraded
	}
	if e.Partial == 0 {
		e.Partial = DefaultErrorPartial
	}
	if e.Major == 0 {
		e.Major = DefaultErrorMajor
	}
	return e
}

// Component is one (region, service) pair on the status portal, driven by
// the health of its pools. With no components configured, every pool is one.
type Component struct {
	Name        string   `yaml:"name"`
	Region      string   `yaml:"region"`
	Description string   `yaml:"description"`
	Pools       []string `yaml:"pools"`
}

// Limits are operator-set hard limits (0 means none) and the warning level.
type Limits struct {
	MaxCertificates int64 `yaml:"max_certificates"`
	// MaxRoutes caps the routes managed through the admin API (0: the
	// default of 100000; each change rebuilds the route table, so its
	// propagation grows with the number of routes).
	MaxRoutes int64 `yaml:"max_routes"`
	// StoreQuota caps the embedded store's file size (0: none).
	StoreQuota ByteSize `yaml:"store_quota"`
	// MemorySoftLimit is the Go runtime's soft memory limit (GOMEMLIMIT):
	// the garbage collector works harder as the heap nears it. 0 means
	// automatic: the decoded-certificate cache plus 640 bytes per installed
	// certificate plus 320MiB (plus response_cache.max_bytes while a route
	// caches), re-evaluated as certificates are added. The
	// GOMEMLIMIT environment variable, when set, wins over both.
	MemorySoftLimit ByteSize `yaml:"memory_soft_limit"`
	// WarnPercent is the usage share at which a warning is logged (default 80).
	WarnPercent float64 `yaml:"warn_percent"`
	// CheckInterval is how often resources that grow by themselves
	// (memory, file descriptors, connections, cache bytes) are checked
	// against their levels (default 15s); certificates, routes and store
	// bytes are checked at each change too.
	CheckInterval Duration `yaml:"check_interval"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
	Access bool   `yaml:"access"` // access log lines
}

// Duration is a time.Duration written as "1.5s", "200ms", "2m".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size written as a number of bytes or with a unit: "64MiB", "1GB", "512KiB".
type ByteSize int64
