package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
)

// AuditPrefix is where the audit trail is kept, one key per change, in
// time order; every node of a fleet writes and reads the same trail.
const AuditPrefix = "audit/"

// auditCounter counts the records under AuditPrefix.
const auditCounter = store.CounterPrefix + "audit"

// Audit trail bounds, by default.
const (
	DefaultAuditMaxRecords = 100000
	DefaultAuditMaxAge     = 90 * 24 * time.Hour
)

// AuditRecord is one change made through the admin API.
type AuditRecord struct {
	Time time.Time `json:"time"`
	// Token names the token that made the change (never the token itself).
	Token     string `json:"token"`
	Remote    string `json:"remote"`
	RequestID string `json:"request_id,omitempty"`
	// Action names the change ("route.add", "incident.update", …).
	Action string `json:"action"`
	// Object is what changed, by path ("routes/r-1a2b", "certs/ID").
	Object string `json:"object"`
	Status int    `json:"status"`
	// Before and After summarise the object around the change: its fields
	// without secrets, keys, PEM text or hashes, long values cut.
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// AuditOptions bounds an Audit; zero values take the defaults.
type AuditOptions struct {
	Logger     *slog.Logger
	MaxRecords int64
	MaxAge     time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Audit keeps the audit trail in the store, bounded by count and age: the
// write of a record removes, in the same transaction, the oldest records
// past either bound.
type Audit struct {
	st   store.Store
	log  *slog.Logger
	opts AuditOptions

	mu      sync.Mutex // guards count and countAt
	count   int64
	countAt time.Time
}

// NewAudit returns the audit trail kept in st.
func NewAudit(st store.Store, opts AuditOptions) *Audit {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultAuditMaxRecords
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultAuditMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Audit{st: st, log: log.With("component", "audit"), opts: opts}
}

func auditKey(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s%019d-%s", AuditPrefix, t.UnixNano(), hex.EncodeToString(b[:]))
}

// auditSince is the first key at or after t.
func auditSince(t time.Time) string {
	return fmt.Sprintf("%s%019d", AuditPrefix, t.UnixNano())
}

// Record stores rec, removing the records past the bounds in the same
// transaction (at most 64 at a time).
func (a *Audit) Record(ctx context.Context, rec AuditRecord) error {
	if rec.Time.IsZero() {
		rec.Time = a.opts.Now()
	}
	rec.Time = rec.Time.UTC()
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := auditKey(rec.Time)
	cutoff := auditSince(a.opts.Now().Add(-a.opts.MaxAge))
	for attempt := 0; ; attempt++ {
		cnt, err := store.ReadCounter(ctx, a.st, auditCounter, AuditPrefix)
		if err != nil {
			return err
		}
		oldest, _, err := a.st.List(ctx, AuditPrefix, "", 64)
		if err != nil {
			return err
		}
		conds := []store.Cond{cnt.Cond}
		ops := []store.Op{store.Put(key, val)}
		over := cnt.Value + 1 - a.opts.MaxRecords
		n := cnt.Value + 1
		for _, kv := range oldest {
			if over <= 0 && kv.Key >= cutoff {
				break
			}
			conds = append(conds, store.Cond{Key: kv.Key, ModRev: kv.ModRev})
			ops = append(ops, store.Delete(kv.Key))
			over--
			n--
		}
		ops = append(ops, cnt.Op(n))
		_, err = a.st.Txn(ctx, conds, ops)
		if err == nil {
			a.mu.Lock()
			a.count, a.countAt = n, a.opts.Now()
			a.mu.Unlock()
			return nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt == 19 {
			return fmt.Errorf("writing audit record: %w", err)
		}
		// Another node wrote meanwhile: step aside for a random while, so
		// that two writers do not meet again.
		select {
		case <-time.After(time.Duration(mrand.Int64N(int64(attempt+1) * int64(5*time.Millisecond)))):
		case <-ctx.Done():
			return fmt.Errorf("writing audit record: %w", ctx.Err())
		}
	}
}

// AuditQuery selects records.
type AuditQuery struct {
	Since time.Time
	// Object keeps the records whose object starts with it.
	Object string
	Limit  int
}

// List returns the records from q.Since on, oldest first, up to q.Limit
// (and whether more were left).
func (a *Audit) List(ctx context.Context, q AuditQuery) ([]AuditRecord, bool, error) {
	after := ""
	if !q.Since.IsZero() {
		after = auditSince(q.Since)
	}
	var out []AuditRecord
	for {
		kvs, _, err := a.st.List(ctx, AuditPrefix, after, 1000)
		if err != nil {
			return nil, false, err
		}
		for _, kv := range kvs {
			var rec AuditRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return nil, false, fmt.Errorf("audit record %s: %w", kv.Key, err)
			}
			if q.Object != "" && !strings.HasPrefix(rec.Object, q.Object) {
				continue
			}
			if len(out) == q.Limit {
				return out, true, nil
			}
			out = append(out, rec)
		}
		if len(kvs) < 1000 {
			return out, false, nil
		}
		after = kvs[len(kvs)-1].Key
	}
}

// Probe reports the records kept against their bound, for the capacity
// registry; the count is read from the store at most every 10 seconds.
func (a *Audit) Probe() (usage, limit int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.opts.Now().Sub(a.countAt) > 10*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cnt, err := store.ReadCounter(ctx, a.st, auditCounter, AuditPrefix)
		cancel()
		if err == nil {
			a.count = cnt.Value
		}
		a.countAt = a.opts.Now()
	}
	return a.count, a.opts.MaxRecords
}

// auditWriter keeps the status and the first bytes of an answer.
type auditWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

const maxAuditCapture = 64 << 10

func (w *auditWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if room := maxAuditCapture - w.body.Len(); room > 0 {
		w.body.Write(b[:min(room, len(b))])
	}
	return w.ResponseWriter.Write(b)
}

func (w *auditWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// audited serves a change and records it once it succeeded: before is the
// object as its GET endpoint showed it, after is the answer.
func (s *Server) audited(w http.ResponseWriter, r *http.Request, pattern string) {
	before := s.current(r)
	aw := &auditWriter{ResponseWriter: w}
	s.mux.ServeHTTP(aw, r)
	if aw.status < 200 || aw.status >= 300 {
		return
	}
	c := capacity.CallerFrom(r.Context())
	rec := AuditRecord{
		Token: c.Identity, Remote: c.Remote, RequestID: c.RequestID,
		Action: auditAction(r.Method, pattern, r.URL.Path),
		Object: strings.TrimPrefix(r.URL.Path, "/v1/"), Status: aw.status,
		Before: summarize(before), After: summarize(aw.body.Bytes()),
	}
	if !strings.Contains(pattern, "{") {
		if id := createdID(aw.body.Bytes()); id != "" && r.Method == http.MethodPost && !slices.Contains(strings.Split(rec.Object, "/"), id) {
			rec.Object += "/" + id
		}
	}
	// The change is made: a record that cannot be written is logged, and
	// the client still gets its answer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := s.opts.Audit.Record(ctx, rec); err != nil {
		s.log.Error("audit record not written", "action", rec.Action, "object", rec.Object, "token", rec.Token, "err", err)
	}
}

// current returns the object a change is about as its GET endpoint shows
// it: the path itself, or its parent (an incident for its updates), when
// that names one object rather than a collection.
func (s *Server) current(r *http.Request) []byte {
	path := r.URL.Path
	for range 2 {
		get, err := http.NewRequestWithContext(r.Context(), http.MethodGet, path, nil)
		if err != nil {
			return nil
		}
		_, p := s.mux.Handler(get)
		last := path[strings.LastIndexByte(path, '/')+1:]
		if strings.Contains(p, "{") || strings.HasSuffix(p, "/") && looksLikeID(last) {
			rec := httptest.NewRecorder()
			s.mux.ServeHTTP(rec, get)
			if rec.Code == http.StatusOK {
				return rec.Body.Bytes()
			}
		}
		path = path[:max(strings.LastIndexByte(path, '/'), 0)]
		if path == "" {
			return nil
		}
	}
	return nil
}

// auditAction names a change from its path: the words of the path, and
// the verb of the method unless a POST's path ends with one
// ("routes.create", "certs.delete", "tokens.rotate", "reload",
// "status.incidents.updates", "status.components.override.update").
func auditAction(method, pattern, path string) string {
	_, p, _ := strings.Cut(pattern, " ")
	sub := strings.HasSuffix(p, "/") // a sub-API: name it by the path
	if sub {
		p = path
	}
	isID := func(seg string) bool { return strings.HasPrefix(seg, "{") || sub && looksLikeID(seg) }
	var parts []string
	segs := strings.Split(strings.Trim(strings.TrimPrefix(p, "/v1/"), "/"), "/")
	for _, seg := range segs {
		if seg != "" && !isID(seg) {
			parts = append(parts, seg)
		}
	}
	n := len(segs)
	endsWithWord := n > 1 && !isID(segs[n-1]) && isID(segs[n-2])
	if endsWithWord && method == http.MethodPost || len(parts) == 1 && method == http.MethodPost && !collections[parts[0]] {
		return strings.Join(parts, ".")
	}
	verb := map[string]string{http.MethodPost: "create", http.MethodPut: "update", http.MethodDelete: "delete", http.MethodPatch: "update"}[method]
	if verb == "" {
		verb = strings.ToLower(method)
	}
	return strings.Join(parts, ".") + "." + verb
}

// collections are the top-level paths that POST creates in.
var collections = map[string]bool{"certs": true, "routes": true, "hostnames": true, "tokens": true}

// looksLikeID tells an object id from a word in a sub-API path.
func looksLikeID(seg string) bool {
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; !('a' <= c && c <= 'z' || c == '-' || c == '_') {
			return true
		}
	}
	return false
}

// createdID finds the id of a created object in an answer: "id" or "name"
// at the top or one level down.
func createdID(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	pick := func(m map[string]any) string {
		for _, k := range []string{"id", "name"} {
			if v, ok := m[k].(string); ok && v != "" {
				return v
			}
		}
		return ""
	}
	if id := pick(m); id != "" {
		return id
	}
	for _, v := range m {
		if sub, ok := v.(map[string]any); ok {
			if id := pick(sub); id != "" {
				return id
			}
		}
	}
	return ""
}

// sensitive reports whether a field's value must never be recorded.
func sensitive(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"secret", "password", "passwd", "private", "pem", "hash", "sha256", "credential", "authorization", "kek"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return n == "key" || n == "token_value" || strings.HasSuffix(n, "_key") || strings.HasSuffix(n, "key_b64")
}

// summarize keeps a JSON answer's fields without secrets, strings cut to
// 200 bytes, lists to 10 items, nesting to 3 levels; nil for no JSON.
func summarize(body []byte) json.RawMessage {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	b, err := json.Marshal(redact(v, 0))
	if err != nil {
		return nil
	}
	if len(b) > 4096 {
		b, _ = json.Marshal(map[string]any{"summary_cut": true, "bytes": len(b)})
	}
	return b
}

func redact(v any, depth int) any {
	switch x := v.(type) {
	case map[string]any:
		if depth >= 3 {
			return "…"
		}
		out := make(map[string]any, len(x))
		for k, val := range x {
			if sensitive(k) {
				continue
			}
			out[k] = redact(val, depth+1)
		}
		return out
	case []any:
		if depth >= 3 {
			return strconv.Itoa(len(x)) + " items"
		}
		n := min(len(x), 10)
		out := make([]any, 0, n+1)
		for _, e := range x[:n] {
			out = append(out, redact(e, depth+1))
		}
		if len(x) > n {
			out = append(out, strconv.Itoa(len(x)-n)+" more")
		}
		return out
	case string:
		if strings.Contains(x, "PRIVATE KEY") || strings.HasPrefix(x, secretPrefix) && len(x) > 64 {
			return "[redacted]"
		}
		if len(x) > 200 {
			return x[:200] + "…"
		}
		return x
	}
	return v
}

func (s *Server) handleAudit() {
	s.handleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
		q := AuditQuery{Object: r.URL.Query().Get("object")}
		since := 24 * time.Hour
		if v := r.URL.Query().Get("since"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				writeError(w, http.StatusBadRequest, "invalid_input", "since: want a positive duration such as 1h or 30m")
				return
			}
			since = d
		}
		q.Since = s.opts.Audit.opts.Now().Add(-since)
		limit, ok := queryLimit(w, r, 1000, 10000)
		if !ok {
			return
		}
		q.Limit = limit
		list, more, err := s.opts.Audit.List(r.Context(), q)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if list == nil {
			list = []AuditRecord{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"records": list, "more": more})
	})
}

// Recent returns up to n of the latest records, newest first. It reads the
// last hour first and widens to a day, then to the whole trail, only while
// fewer than n were found; it keeps no more than n records in memory and
// decodes only those it returns.
func (a *Audit) Recent(ctx context.Context, n int) ([]AuditRecord, error) {
	if n <= 0 {
		return nil, nil
	}
	now := a.opts.Now()
	var last []store.KV
	for _, since := range []time.Time{now.Add(-time.Hour), now.Add(-24 * time.Hour), {}} {
		last = last[:0]
		after := ""
		if !since.IsZero() {
			after = auditSince(since)
		}
		for {
			kvs, _, err := a.st.List(ctx, AuditPrefix, after, 1000)
			if err != nil {
				return nil, err
			}
			last = append(last, kvs[max(0, len(kvs)-n):]...)
			if len(last) > n {
				last = append(last[:0], last[len(last)-n:]...)
			}
			if len(kvs) < 1000 {
				break
			}
			after = kvs[len(kvs)-1].Key
		}
		if len(last) >= n {
			break
		}
	}
	out := make([]AuditRecord, len(last))
	for i, kv := range last {
		if err := json.Unmarshal(kv.Value, &out[len(last)-1-i]); err != nil {
			return nil, fmt.Errorf("audit record %s: %w", kv.Key, err)
		}
	}
	return out, nil
}
