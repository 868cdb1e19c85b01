package certs

// Has reports whether a handshake for name would find an installed
// certificate (its own or its wildcard parent's), from the in-memory index
// without loading anything: for callers deciding on the handshake path,
// such as on-demand issuance.
func (m *Manager) Has(name string) bool {
	var buf [256]byte
	return len(m.match(name, &buf)) > 0
}
