package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	acmeproto "github.com/mholt/acmez/v3/acme"

	"gatehouse/internal/store"
)

// prefixAccounts holds one ACME account per directory URL: its key, sealed
// with the KEK like every private key, shared by the fleet.
const prefixAccounts = "acme/accounts/"

type accountRecord struct {
	Directory string `json:"directory"`
	Key       []byte `json:"key"` // PKCS#8, sealed
	Location  string `json:"location,omitempty"`
}

func accountKey(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return prefixAccounts + hex.EncodeToString(sum[:8])
}

// accountSigner returns the account key for dir from the store, creating
// and storing one on first use (the fleet agrees through a
// create-if-absent transaction).
func (m *Manager) accountSigner(ctx context.Context, dir string) (crypto.Signer, *accountRecord, error) {
	key := accountKey(dir)
	for range 3 {
		kv, err := m.st.Get(ctx, key)
		if err == nil {
			var rec accountRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return nil, nil, fmt.Errorf("account record %s: %w", key, err)
			}
			der, err := m.kek.Open(key, rec.Key)
			if err != nil {
				return nil, nil, fmt.Errorf("account key %s: %w", key, err)
			}
			k, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return nil, nil, fmt.Errorf("account key %s: %w", key, err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, nil, fmt.Errorf("account key %s is not a signing key", key)
			}
			return s, &rec, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, nil, err
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		val, _ := json.Marshal(accountRecord{Directory: dir, Key: m.kek.Seal(key, der)})
		_, err = m.st.Txn(ctx, []store.Cond{store.Absent(key)}, []store.Op{store.Put(key, val)})
		if err == nil {
			m.log.Info("ACME account key generated and sealed in the store", "directory", dir)
			return k, &accountRecord{Directory: dir}, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, nil, err
		}
	}
	return nil, nil, errors.New("account key: gave up after concurrent creations")
}

// account returns the registered ACME account for dir (cached).
func (m *Manager) account(ctx context.Context, client *acmeproto.Client, dir string) (acmeproto.Account, error) {
	m.amu.Lock()
	acct, ok := m.accounts[dir]
	m.amu.Unlock()
	if ok {
		return acct, nil
	}
	signer, rec, err := m.accountSigner(ctx, dir)
	if err != nil {
		return acct, err
	}
	acct = acmeproto.Account{TermsOfServiceAgreed: true, PrivateKey: signer}
	if e := m.cfg().Email; e != "" {
		acct.Contact = []string{"mailto:" + e}
	}
	if eab := m.cfg().EAB; eab != nil && rec.Location == "" {
		if err := acct.SetExternalAccountBinding(ctx, client, acmeproto.EAB{KeyID: eab.KeyID, MACKey: m.opts.EABKey}); err != nil {
			return acct, fmt.Errorf("acme.eab: %w", err)
		}
	}
	// With a known key, newAccount returns the existing account.
	withEAB := acct.ExternalAccountBinding != nil
	acct, err = client.NewAccount(ctx, acct)
	if err != nil {
		if withEAB && isProblem(err) {
			// The CA refused the binding (wrong key id or HMAC key): name
			// the configuration to fix.
			return acct, fmt.Errorf("acme.eab: the CA at %s refused the external account binding of key id %q (check acme.eab.key_id and acme.eab.hmac_file): %w", dir, m.cfg().EAB.KeyID, err)
		}
		return acct, fmt.Errorf("registering the ACME account at %s: %w", dir, err)
	}
	if rec.Location != acct.Location {
		key := accountKey(dir)
		if kv, err := m.st.Get(ctx, key); err == nil {
			var r accountRecord
			if json.Unmarshal(kv.Value, &r) == nil {
				r.Location = acct.Location
				val, _ := json.Marshal(r)
				_, _ = m.st.Txn(ctx, []store.Cond{{Key: key, ModRev: kv.ModRev}}, []store.Op{store.Put(key, val)})
			}
		}
	}
	m.amu.Lock()
	m.accounts[dir] = acct
	m.amu.Unlock()
	return acct, nil
}
