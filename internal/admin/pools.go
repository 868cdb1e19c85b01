package admin

// Pool is the live state of one backend pool, as GET /v1/pools answers it
// ({"pools": [...]}).
type Pool struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	// Failover is the pool's policy (spread or priority); ActiveZone the
	// zone the priority policy sends traffic to ("" when every zone).
	Failover   string       `json:"failover"`
	ActiveZone string       `json:"active_zone,omitempty"`
	Members    []PoolMember `json:"members"`
	// Requests and Failures count the pool's answers since the process
	// started (reloads keep counting).
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
}

// PoolMember is the state of one member of a pool.
type PoolMember struct {
	Address   string `json:"address"`
	Up        bool   `json:"up"`
	Drained   bool   `json:"drained"`
	Weight    int    `json:"weight"`
	Zone      string `json:"zone,omitempty"`
	InFlight  int64  `json:"in_flight"`
	OpenConns int64  `json:"open_conns"`
}
