package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// NameInfo is one hostname of the name index: the bundles that carry it
// and the key type and expiry of the one that expires last.
type NameInfo struct {
	Name     string    `json:"name"`
	Bundles  int       `json:"bundles"`
	KeyType  string    `json:"key_type"`
	NotAfter time.Time `json:"not_after"`
	Status   string    `json:"status"` // "valid", "expiring", "expired"
}

// MaxSearchPage bounds a page of SearchNames.
const MaxSearchPage = 500

// ErrBadPrefix is returned for a prefix or cursor that no hostname can
// start with.
var ErrBadPrefix = errors.New("a hostname prefix holds letters, digits, '-', '.', '*' and '_' only, at most 253 characters")

func validSearchName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '*', c == '_':
		default:
			return false
		}
	}
	return true
}

// SearchNames pages through the installed hostnames that start with prefix
// (lower-cased), in the store's name-index order, from the one after the
// cursor after (""; the first page). It reads the store's index, not the
// whole list: a page costs limit names and their keys. It returns up to
// limit names (0: 50; at most MaxSearchPage) and whether more follow.
func (m *Manager) SearchNames(ctx context.Context, prefix, after string, limit int) ([]NameInfo, bool, error) {
	prefix, after = strings.ToLower(prefix), strings.ToLower(after)
	if !validSearchName(prefix) || !validSearchName(after) || (after != "" && !strings.HasPrefix(after, prefix)) {
		return nil, false, ErrBadPrefix
	}
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, MaxSearchPage)
	start := ""
	if after != "" {
		// Past every key of the cursor's name: ids are lower-case hex.
		start = namePrefix(after) + "~"
	}
	var out []NameInfo
	for {
		kvs, _, err := m.st.List(ctx, prefixNames+prefix, start, limit+1)
		if err != nil {
			return nil, false, fmt.Errorf("searching hostnames: %w", err)
		}
		for _, kv := range kvs {
			host, _, ok := parseNameKey(kv.Key)
			if !ok {
				continue
			}
			ne, err := decodeNameEntry(kv.Value)
			if err != nil {
				m.log.Warn("ignoring malformed name index entry", "key", kv.Key, "err", err)
				continue
			}
			if n := len(out); n > 0 && out[n-1].Name == host {
				last := &out[n-1]
				last.Bundles++
				if ne.NotAfter.After(last.NotAfter) {
					last.KeyType, last.NotAfter = ne.KeyType, ne.NotAfter
				}
				continue
			}
			if len(out) == limit {
				return m.withStatus(out), true, nil
			}
			out = append(out, NameInfo{Name: host, Bundles: 1, KeyType: ne.KeyType, NotAfter: ne.NotAfter})
		}
		if len(kvs) < limit+1 {
			return m.withStatus(out), false, nil
		}
		start = kvs[len(kvs)-1].Key
	}
}

func (m *Manager) withStatus(ns []NameInfo) []NameInfo {
	for i := range ns {
		ns[i].Status = m.status(ns[i].NotAfter)
	}
	return ns
}
