package validator

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// maxJWKSSize bounds the body of a key set response.
const maxJWKSSize = 1 << 20

// maxKIDLength bounds the key IDs looked up; a longer one is unknown
// without a fetch.
const maxKIDLength = 256

// errKeysUnavailable: the key set has never been fetched successfully.
var errKeysUnavailable = errors.New("key set unavailable")

// jwks is a JSON Web Key Set fetched from a URL and cached: see
// JWTSpec.JWKSURL. Lookups read an atomic pointer; fetches are serialised
// by mu, so concurrent requests that need a fetch wait for one.
type jwks struct {
	url                 string
	client              *http.Client
	ownTransport        *http.Transport // closed on close; nil with the Env's
	clock               pipeline.Clock
	logger              *slog.Logger
	refresh, minRefresh time.Duration
	timeout             time.Duration
	ctx                 context.Context
	cancel              context.CancelFunc

	set atomic.Pointer[keySet]

	mu          sync.Mutex
	lastAttempt time.Time // under mu; zero before the first fetch
}

// keySet is one fetched key set.
type keySet struct {
	keys    map[string]jwkKey // by kid
	fetched time.Time
}

type jwkKey struct {
	key any
	alg string // "" when the JWK does not pin one
}

func newJWKS(u *url.URL, s *JWTSpec, env pipeline.Env) *jwks {
	j := &jwks{
		url:        u.String(),
		clock:      env.Clock,
		logger:     env.Logger,
		refresh:    orDefault(s.JWKSRefreshInterval, DefaultJWKSRefreshInterval),
		minRefresh: orDefault(s.JWKSMinRefreshInterval, DefaultJWKSMinRefreshInterval),
		timeout:    orDefault(s.JWKSTimeout, DefaultJWKSTimeout),
	}
	j.client, j.ownTransport = httpClient(env)
	j.ctx, j.cancel = context.WithCancel(context.Background())
	return j
}

// httpClient returns a client on env's transport, or on a transport of
// its own (returned, to be closed).
func httpClient(env pipeline.Env) (*http.Client, *http.Transport) {
	if env.Transport != nil {
		return &http.Client{Transport: env.Transport, CheckRedirect: noRedirects}, nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{Transport: t, CheckRedirect: noRedirects}, t
}

// noRedirects keeps the key set and introspection requests where the
// spec points them.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// key returns the key with ID kid for algorithm alg. A stale set is
// fetched again first; an unknown kid triggers a fetch when the last one
// is older than minRefresh.
func (j *jwks) key(kid, alg string) (any, error) {
	set := j.set.Load()
	if set == nil || j.clock.Now().Sub(set.fetched) >= j.refresh {
		set = j.update(set)
	}
	if set == nil {
		return nil, errKeysUnavailable
	}
	k, ok := set.lookup(kid)
	if !ok && len(kid) <= maxKIDLength {
		if newer := j.update(set); newer != nil && newer != set {
			k, ok = newer.lookup(kid)
		}
	}
	if !ok {
		return nil, errKeyUnknown
	}
	if (k.alg != "" && k.alg != alg) || !keyFits(k.key, alg) {
		return nil, errNoKey
	}
	return k.key, nil
}

// lookup finds kid; a token without a kid matches the only key of a
// one-key set.
func (s *keySet) lookup(kid string) (jwkKey, bool) {
	if kid == "" && len(s.keys) == 1 {
		for _, k := range s.keys {
			return k, true
		}
	}
	k, ok := s.keys[kid]
	return k, ok
}

// update fetches the set unless another fetch has replaced seen since, or
// the last attempt is younger than minRefresh. It returns the current set
// (nil if there has never been one).
func (j *jwks) update(seen *keySet) *keySet {
	j.mu.Lock()
	defer j.mu.Unlock()
	if cur := j.set.Load(); cur != seen {
		return cur // fetched while we waited
	}
	now := j.clock.Now()
	if !j.lastAttempt.IsZero() && now.Sub(j.lastAttempt) < j.minRefresh {
		return seen
	}
	j.lastAttempt = now
	keys, err := j.fetch()
	if err != nil {
		j.logger.Warn("fetching the JWT key set failed; keeping the previous one", "error", err)
		return seen
	}
	set := &keySet{keys: keys, fetched: now}
	j.set.Store(set)
	return set
}

// fetch gets and parses the key set. It serves every request waiting for
// it, so it is bounded by its own timeout and the filter's life, not by
// one request's context.
func (j *jwks) fetch() (map[string]jwkKey, error) {
	fctx, cancel := context.WithTimeout(j.ctx, j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("key set answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSSize)
	}
	return parseJWKS(body)
}

// jwk is one JSON Web Key (RFC 7517), of the types the filter verifies
// with: RSA, EC (P-256, P-384, P-521) and OKP (Ed25519).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS parses a key set. Keys it cannot use (encryption keys, other
// types, RSA keys under 2048 bits, bad points) are skipped; a set without
// one usable key is an error.
func parseJWKS(body []byte) (map[string]jwkKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("key set is not JSON: %w", err)
	}
	keys := make(map[string]jwkKey, len(doc.Keys))
	for _, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		key, err := k.publicKey()
		if err != nil {
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			continue // the first key of an ID wins
		}
		keys[k.Kid] = jwkKey{key: key, alg: k.Alg}
	}
	if len(keys) == 0 {
		return nil, errors.New("key set holds no usable signature key")
	}
	return keys, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func (k *jwk) publicKey() (any, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64(k.N)
		if err != nil {
			return nil, err
		}
		e, err := b64(k.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA exponent")
		}
		var exp int
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if pk.N.BitLen() < minRSABits || exp < 3 || exp%2 == 0 {
			return nil, errors.New("weak RSA key")
		}
		return pk, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("unsupported curve")
		}
		x, err := b64(k.X)
		if err != nil {
			return nil, err
		}
		y, err := b64(k.Y)
		if err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC point")
		}
		point := append(append([]byte{4}, x...), y...)
		return ecdsa.ParseUncompressedPublicKey(curve, point) // checks the point is on the curve
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, errors.New("unsupported curve")
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, errors.New("unsupported key type")
}

func (j *jwks) close() {
	j.cancel()
	if j.ownTransport != nil {
		j.ownTransport.CloseIdleConnections()
	}
}
