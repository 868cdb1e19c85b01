package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/capacity"
	"gatehouse/internal/fault"
	"gatehouse/internal/store"
)

// TokenPrefix is where named tokens are kept in the store, one key per
// name; every node of a fleet reads them through, so an added, rotated or
// removed token counts on every node from its next request.
const TokenPrefix = "admin/tokens/"

// MaxTokens bounds the number of named tokens.
const MaxTokens = 1000

// secretPrefix starts every named token's secret: "gh_NAME_HEX".
const secretPrefix = "gh_"

// Token describes a named token; its secret is never stored, only its hash.
type Token struct {
	Name      string    `json:"name"`
	Scopes    []Scope   `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// CreatedBy names the token that created this one.
	CreatedBy string `json:"created_by,omitempty"`
}

// tokenRecord is a token as stored: the SHA-256 of its secret (a secret of
// 256 random bits needs no slow hash).
type tokenRecord struct {
	Token
	Hash string `json:"sha256"`
}

// TokenSecret answers a created or rotated token: the only time its secret
// is shown.
type TokenSecret struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

// Tokens keeps the named tokens in the store.
type Tokens struct {
	st  store.Store
	now func() time.Time
}

// NewTokens returns the named tokens kept in st.
func NewTokens(st store.Store) *Tokens {
	return &Tokens{st: st, now: time.Now}
}

// validTokenName reports whether name is 1-64 of a-z, 0-9 and '-', not
// starting with '-'.
func validTokenName(name string) error {
	if name == "" || len(name) > 64 {
		return fault.Invalid("name", "must be 1 to 64 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' && i > 0) {
			return fault.Invalid("name", "%q may hold only a-z, 0-9 and '-' (not first)", name)
		}
	}
	return nil
}

func newSecret(name string) (secret, hash string) {
	var b [32]byte
	rand.Read(b[:])
	secret = secretPrefix + name + "_" + hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	return secret, hex.EncodeToString(sum[:])
}

// Add creates a token with the given scopes and returns its secret.
func (t *Tokens) Add(ctx context.Context, name string, scopes []string, by string) (TokenSecret, error) {
	if err := validTokenName(name); err != nil {
		return TokenSecret{}, err
	}
	sc, err := ParseScopes(scopes)
	if err != nil {
		return TokenSecret{}, err
	}
	list, _, err := t.st.List(ctx, TokenPrefix, "", MaxTokens+1)
	if err != nil {
		return TokenSecret{}, err
	}
	if len(list) >= MaxTokens {
		return TokenSecret{}, &capacity.LimitError{Resource: "admin_tokens", Unit: "tokens", Adding: 1, Usage: int64(len(list)), Limit: MaxTokens, Hint: "remove unused tokens with gatehouse token rm"}
	}
	secret, hash := newSecret(name)
	rec := tokenRecord{Token: Token{Name: name, Scopes: sc, CreatedAt: t.now().UTC(), CreatedBy: by}, Hash: hash}
	b, _ := json.Marshal(rec)
	if _, err := t.st.Txn(ctx, []store.Cond{store.Absent(TokenPrefix + name)}, []store.Op{store.Put(TokenPrefix+name, b)}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return TokenSecret{}, fmt.Errorf("token %q already exists (rotate it or remove it first): %w", name, err)
		}
		return TokenSecret{}, err
	}
	return TokenSecret{Token: rec.Token, Secret: secret}, nil
}

func (t *Tokens) get(ctx context.Context, name string) (tokenRecord, int64, error) {
	kv, err := t.st.Get(ctx, TokenPrefix+name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return tokenRecord{}, 0, fmt.Errorf("token %q: %w", name, err)
		}
		return tokenRecord{}, 0, err
	}
	var rec tokenRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return tokenRecord{}, 0, fmt.Errorf("token %q: stored record: %w", name, err)
	}
	return rec, kv.ModRev, nil
}

// List returns every token, by name.
func (t *Tokens) List(ctx context.Context) ([]Token, error) {
	kvs, _, err := t.st.List(ctx, TokenPrefix, "", MaxTokens)
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(kvs))
	for _, kv := range kvs {
		var rec tokenRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("token %q: stored record: %w", strings.TrimPrefix(kv.Key, TokenPrefix), err)
		}
		out = append(out, rec.Token)
	}
	return out, nil
}

// Rotate gives the token a new secret; the old one stops working at once.
func (t *Tokens) Rotate(ctx context.Context, name string) (TokenSecret, error) {
	if err := validTokenName(name); err != nil {
		return TokenSecret{}, err
	}
	rec, rev, err := t.get(ctx, name)
	if err != nil {
		return TokenSecret{}, err
	}
	secret, hash := newSecret(name)
	rec.Hash, rec.RotatedAt = hash, t.now().UTC()
	b, _ := json.Marshal(rec)
	if _, err := t.st.Txn(ctx, []store.Cond{{Key: TokenPrefix + name, ModRev: rev}}, []store.Op{store.Put(TokenPrefix+name, b)}); err != nil {
		return TokenSecret{}, err
	}
	return TokenSecret{Token: rec.Token, Secret: secret}, nil
}

// Remove revokes the token.
func (t *Tokens) Remove(ctx context.Context, name string) (Token, error) {
	if err := validTokenName(name); err != nil {
		return Token{}, err
	}
	rec, rev, err := t.get(ctx, name)
	if err != nil {
		return Token{}, err
	}
	if _, err := t.st.Txn(ctx, []store.Cond{{Key: TokenPrefix + name, ModRev: rev}}, []store.Op{store.Delete(TokenPrefix + name)}); err != nil {
		return Token{}, err
	}
	return rec.Token, nil
}

// errBadToken is a presented secret that names no token or does not match.
var errBadToken = errors.New("unknown or revoked token")

// Authenticate returns the token whose secret is presented.
func (t *Tokens) Authenticate(ctx context.Context, secret string) (Token, error) {
	rest, ok := strings.CutPrefix(secret, secretPrefix)
	i := strings.LastIndexByte(rest, '_')
	if !ok || i < 0 || validTokenName(rest[:i]) != nil {
		return Token{}, errBadToken
	}
	rec, _, err := t.get(ctx, rest[:i])
	if errors.Is(err, store.ErrNotFound) {
		return Token{}, errBadToken
	}
	if err != nil {
		return Token{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	want, err := hex.DecodeString(rec.Hash)
	if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return Token{}, errBadToken
	}
	return rec.Token, nil
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

func (s *Server) handleTokens() {
	t := s.opts.Tokens
	s.handleFunc("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		list, err := t.List(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"tokens": list})
	})
	s.handleFunc("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req TokenRequest
		if !s.readJSON(w, r, 4096, &req) {
			return
		}
		out, err := t.Add(r.Context(), req.Name, req.Scopes, callerName(r.Context()))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("token added", "name", out.Token.Name, "scopes", out.Token.Scopes, "by", callerName(r.Context()))
		writeJSON(w, http.StatusCreated, out)
	})
	s.handleFunc("POST /v1/tokens/{name}/rotate", func(w http.ResponseWriter, r *http.Request) {
		out, err := t.Rotate(r.Context(), r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("token rotated", "name", out.Token.Name, "by", callerName(r.Context()))
		writeJSON(w, http.StatusOK, out)
	})
	s.handleFunc("DELETE /v1/tokens/{name}", func(w http.ResponseWriter, r *http.Request) {
		tok, err := t.Remove(r.Context(), r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("token removed", "name", tok.Name, "by", callerName(r.Context()))
		writeJSON(w, http.StatusOK, map[string]string{"removed": tok.Name})
	})
}

// callerName names the token of the request, for logs and records.
func callerName(ctx context.Context) string {
	return capacity.CallerFrom(ctx).Identity
}

// forbidden answers 403 naming the scope the request lacks.
func forbidden(w http.ResponseWriter, need Scope, who string, have []Scope) {
	var b ErrorBody
	b.Error.Code = "forbidden"
	b.Error.Scope = string(need)
	b.Error.Message = "this request needs the " + strconv.Quote(string(need)) + " scope; " + who + " has " + scopeNames(have)
	writeJSON(w, http.StatusForbidden, b)
}
