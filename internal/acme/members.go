package acme

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd"
)

// The ordering nodes of a fleet share the work by rendezvous hashing: each
// ordering node writes a record under acme/nodes/<id> every memberBeat,
// every node follows them, and a due name is ordered by the live node with
// the highest hash of (node, name). The other nodes leave it to that node
// and look again after memberStale; when its record stops changing for
// memberStale (the node stopped or died) the name's next-highest live node
// takes it over. A node that has not yet seen the others, or two nodes that
// disagree for a moment, still order a name once: the per-name lock
// decides. On the embedded store there is one node and no records.
const membersPrefix = "acme/nodes/"

const (
	// memberBeat is how often an ordering node rewrites its record.
	memberBeat = 2 * time.Second
	// memberStale is how long after its last change a record no longer
	// counts as a live node.
	memberStale = 7 * time.Second
	// memberForget is the age from which any node deletes a record (a
	// node that died without removing its own).
	memberForget = time.Minute
)

type memberRecord struct {
	At time.Time `json:"at"`
}

// members follows the ordering nodes' records.
type members struct {
	st   store.Store
	self string
	now  func() time.Time

	mu sync.Mutex
	// seen is when this node last saw each record change, on its own
	// clock (so that nodes' clocks need not agree).
	seen map[string]time.Time
	// hash of each node id, for rendezvous scores.
	hash map[string]uint64
}

// newMembers returns the membership of st's ordering nodes, nil when the
// store has no fleet (the embedded store: this node orders everything).
func newMembers(st store.Store, now func() time.Time) *members {
	if _, ok := st.(*etcd.Store); !ok {
		return nil
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	return &members{st: st, self: id, now: now, seen: map[string]time.Time{}, hash: map[string]uint64{}}
}

func (ms *members) key() string { return membersPrefix + ms.self }

func (ms *members) setLocked(id string, seen time.Time) {
	ms.seen[id] = seen
	if _, ok := ms.hash[id]; !ok {
		ms.hash[id] = nodeHash(id)
	}
}

// Reset replaces the records from a listing (store.Handler). A record not
// older than memberStale by its own time counts as seen now.
func (ms *members) Reset(_ context.Context, l *store.Listing) error {
	seen := map[string]time.Time{}
	now := ms.now()
	for kv, err := range l.All() {
		if err != nil {
			return err
		}
		id := strings.TrimPrefix(kv.Key, membersPrefix)
		var r memberRecord
		if json.Unmarshal(kv.Value, &r) != nil || id == "" {
			continue
		}
		if now.Sub(r.At) <= memberStale {
			seen[id] = now
		} else {
			seen[id] = r.At
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	clear(ms.seen)
	for id, at := range seen {
		ms.setLocked(id, at)
	}
	return nil
}

// Apply follows watched records (store.Handler).
func (ms *members) Apply(resps []store.WatchResponse) {
	now := ms.now()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, resp := range resps {
		for _, ev := range resp.Events {
			id := strings.TrimPrefix(ev.KV.Key, membersPrefix)
			if ev.Type == store.EventPut {
				ms.setLocked(id, now)
			} else {
				delete(ms.seen, id)
				delete(ms.hash, id)
			}
		}
	}
}

// live returns the ids of the live ordering nodes, this node always
// included.
func (ms *members) live() []string {
	now := ms.now()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := []string{ms.self}
	for id, at := range ms.seen {
		if id != ms.self && now.Sub(at) <= memberStale {
			out = append(out, id)
		}
	}
	return out
}

// owner returns the live node that orders name.
func (ms *members) owner(name string) string {
	now := ms.now()
	nh := nameHash(name)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	best, bestScore := ms.self, rendezvous(nodeHashCached(ms.hash, ms.self), nh)
	for id, at := range ms.seen {
		if id == ms.self || now.Sub(at) > memberStale {
			continue
		}
		if s := rendezvous(ms.hash[id], nh); s > bestScore || (s == bestScore && id < best) {
			best, bestScore = id, s
		}
	}
	return best
}

// beat writes this node's record, and deletes the records of nodes gone
// for memberForget.
func (ms *members) beat(ctx context.Context) error {
	b, _ := json.Marshal(memberRecord{At: ms.now().UTC()})
	wctx, cancel := context.WithTimeout(ctx, memberBeat)
	defer cancel()
	if _, err := store.PutKV(wctx, ms.st, ms.key(), b); err != nil {
		return err
	}
	now := ms.now()
	var gone []string
	ms.mu.Lock()
	for id, at := range ms.seen {
		if id != ms.self && now.Sub(at) > memberForget {
			gone = append(gone, id)
		}
	}
	ms.mu.Unlock()
	for _, id := range gone {
		if _, err := store.DeleteKey(wctx, ms.st, membersPrefix+id); err != nil {
			return err
		}
	}
	return nil
}

// leave deletes this node's record, so that the others take its share at
// once.
func (ms *members) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = store.DeleteKey(ctx, ms.st, ms.key())
}

// run follows the records and beats until ctx ends, then leaves.
func (m *Manager) runMembers(ctx context.Context) {
	ms := m.members
	opts := store.FollowOptions{What: "ordering nodes", Logger: m.log}
	f := store.Follow(ctx, m.st, membersPrefix, opts, ms)
	defer f.Stop()
	defer ms.leave()
	t := time.NewTicker(memberBeat)
	defer t.Stop()
	for {
		if err := ms.beat(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("publishing this node's ordering record", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func nodeHashCached(h map[string]uint64, id string) uint64 {
	if v, ok := h[id]; ok {
		return v
	}
	v := nodeHash(id)
	h[id] = v
	return v
}

func nodeHash(id string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(id))
	return f.Sum64()
}

func nameHash(name string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(name))
	return f.Sum64()
}

// rendezvous scores a node for a name: a strong mix (splitmix64's
// finalizer) of the two hashes.
func rendezvous(node, name uint64) uint64 {
	z := node ^ (name * 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Owner returns which of nodes orders name under rendezvous hashing (for
// tests and tools; the manager uses its live view).
func Owner(nodes []string, name string) string {
	nh := nameHash(name)
	best, bestScore := "", uint64(0)
	for _, id := range nodes {
		if s := rendezvous(nodeHash(id), nh); best == "" || s > bestScore || (s == bestScore && id < best) {
			best, bestScore = id, s
		}
	}
	return best
}
