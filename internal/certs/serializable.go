package certs

import (
	"context"
	"errors"

	"gatehouse/internal/store"
)

// getForHandshake reads a key on the handshake miss path. A bundle's leaf,
// chain and key never change under its ID (the ID is the leaf's hash;
// chains are stored by hash), so a serializable read is enough when the
// store offers one (store.SerializableGetter: about 0.3 ms on etcd instead
// of a quorum round trip); a key the replica does not have yet (a bundle added
// a moment ago) is read again linearizably.
func (m *Manager) getForHandshake(ctx context.Context, key string) (store.KV, error) {
	if sg, ok := m.st.(store.SerializableGetter); ok {
		kv, err := sg.GetSerializable(ctx, key)
		if !errors.Is(err, store.ErrNotFound) {
			return kv, err
		}
	}
	return m.st.Get(ctx, key)
}
