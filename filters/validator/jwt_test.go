package validator_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

var start = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// testKeys are generated once per test binary: RSA generation is slow.
type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
	secret    []byte
}

var keysOnce = sync.OnceValue(func() *testKeys {
	k := &testKeys{secret: bytes.Repeat([]byte("k"), 32)}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

func pemOf(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// indent prefixes every line of s but the first with n spaces, for block
// scalars in YAML.
func indent(s string, n int) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+strings.Repeat(" ", n))
}

func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// claims returns standard valid claims, changed by kv pairs (a nil value
// deletes the claim).
func claims(kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": "https://idp.example.com/", "aud": "orders", "sub": "alice",
		"exp": start.Add(time.Hour).Unix(), "iat": start.Unix(), "scope": []string{"read", "write"},
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func bearerRequest(token string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/orders", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// TestJWTAttacks runs tokens an attacker might send, and good ones,
// through a filter that accepts RS256 with a PEM key; every bad one gets
// 401 with a Bearer challenge, and neither responses nor log lines show a
// token.
func TestJWTAttacks(t *testing.T) {
	k := keysOnce()
	pubPEM := pemOf(t, &k.rsa.PublicKey)
	spec := `
jwt:
  algorithms: [RS256]
  publicKey: |
    ` + indent(pubPEM, 4) + `
  issuer: https://idp.example.com/
  audiences: [orders, billing]
  clockSkew: 30s
  forwardClaims: { sub: X-User-Id, scope: X-Scopes }
realm: orders
`
	clk := filtertest.NewFakeClock(start)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(clk), filtertest.WithLogger(logger))

	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, k.rsa, c, "") }
	good := rs(claims())
	parts := strings.Split(good, ".")
	noneHeader := b64url(`{"alg":"none","typ":"JWT"}`)
	huge := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", 1<<20) + ".sig"

	tests := []struct {
		name   string
		token  string
		reason string // "" means the token passes
	}{
		{"valid", good, ""},
		{"expired within the clock skew", rs(claims("exp", start.Add(-20*time.Second).Unix())), ""},
		{"second audience", rs(claims("aud", []string{"other", "billing"})), ""},
		{"alg none", noneHeader + "." + parts[1] + ".", "bad signature"},
		{"alg none with a signature", noneHeader + "." + parts[1] + "." + parts[2], "bad signature"},
		{"alg NONE", b64url(`{"alg":"NONE"}`) + "." + parts[1] + ".", "no key for the token"},
		{"alg confusion: HS256 keyed with the RSA public key", sign(t, jwt.SigningMethodHS256, []byte(pubPEM), claims(), ""), "bad signature"},
		{"HS256 with a random secret", sign(t, jwt.SigningMethodHS256, k.secret, claims(), ""), "bad signature"},
		{"RS256 by another key", sign(t, jwt.SigningMethodRS256, k.rsa2, claims(), ""), "bad signature"},
		{"PS256 not allowed", sign(t, jwt.SigningMethodPS256, k.rsa, claims(), ""), "bad signature"},
		{"ES256 not allowed", sign(t, jwt.SigningMethodES256, k.ec, claims(), ""), "bad signature"},
		{"tampered payload", parts[0] + "." + b64url(`{"sub":"admin","exp":9999999999,"iss":"https://idp.example.com/","aud":"orders"}`) + "." + parts[2], "bad signature"},
		{"signature stripped", parts[0] + "." + parts[1] + ".", "bad signature"},
		{"expired", rs(claims("exp", start.Add(-time.Minute).Unix())), "token expired"},
		{"not valid yet", rs(claims("nbf", start.Add(time.Minute).Unix())), "token not valid yet"},
		{"issued in the future", rs(claims("iat", start.Add(time.Hour).Unix())), "token not valid yet"},
		{"no exp", rs(claims("exp", nil)), "required claim missing"},
		{"exp not a number", rs(claims("exp", "tomorrow")), "invalid claims"},
		{"wrong issuer", rs(claims("iss", "https://evil.example.com/")), "wrong issuer"},
		{"no issuer", rs(claims("iss", nil)), "required claim missing"},
		{"wrong audience", rs(claims("aud", "payments")), "wrong audience"},
		{"no audience", rs(claims("aud", nil)), "required claim missing"},
		{"no token", "", "missing token"},
		{"one part", "abc", "malformed token"},
		{"two parts", "abc.def", "malformed token"},
		{"four parts", good + ".x", "malformed token"},
		{"empty parts", "..", "malformed token"},
		{"header not base64", "!!!." + parts[1] + "." + parts[2], "malformed token"},
		{"header not JSON", b64url("{alg") + "." + parts[1] + "." + parts[2], "malformed token"},
		{"claims not JSON", parts[0] + "." + b64url("[1,2") + "." + parts[2], "malformed token"},
		{"1 MiB token", huge, "token too large"},
	}
	var secrets []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := bearerRequest(tt.token)
			req.Header.Set("X-User-Id", "forged")
			req.Header.Set("x-scopes", "admin")
			out := h.Do(req)
			if tt.reason == "" {
				if out.Result != pipeline.Continue || out.Response != nil {
					t.Fatalf("valid token refused: %q %q", out.Result, out.Body)
				}
				if got := out.Request.Header.Get("X-User-Id"); got != "alice" {
					t.Errorf("X-User-Id = %q, want alice", got)
				}
				if got := out.Request.Header.Values("X-Scopes"); len(got) != 1 || got[0] != "read,write" {
					t.Errorf("X-Scopes = %q, want [read,write]", got)
				}
				return
			}
			if len(tt.token) > 20 {
				secrets = append(secrets, tt.token, strings.Split(tt.token, ".")[0])
			}
			if out.Result != validator.Invalid || out.Response.StatusCode != http.StatusUnauthorized {
				t.Fatalf("got %q %v, want invalid 401", out.Result, out.Response)
			}
			if want := "unauthorized: " + tt.reason + "\n"; out.Body != want {
				t.Errorf("body %q, want %q", out.Body, want)
			}
			if got, want := out.Response.Header.Get("WWW-Authenticate"), `Bearer realm="orders", error="invalid_token"`; got != want {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
			if v := out.Request.Header.Values("X-User-Id"); len(v) != 0 {
				t.Errorf("forged X-User-Id survived: %q", v)
			}
			if tt.token != "" && strings.Contains(out.Body, tt.token[:min(len(tt.token), 16)]) {
				t.Errorf("body echoes the token")
			}
		})
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged: the log check below would prove nothing")
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a token part appears in the log:\n%s", logs.String())
			break
		}
	}
	if strings.Contains(logs.String(), good) || strings.Contains(logs.String(), "forged") {
		t.Errorf("the log shows a token or a header value")
	}
}

// TestHugeTokenAllocations: a 1 MiB token is refused before it is
// decoded, so the refusal costs a bounded number of small allocations.
func TestHugeTokenAllocations(t *testing.T) {
	k := keysOnce()
	f, err := filtertest.Build(validator.Kind, "jwt:\n  algorithms: [RS256]\n  publicKey: |\n    "+indent(pemOf(t, &k.rsa.PublicKey), 4))
	if err != nil {
		t.Fatal(err)
	}
	req := bearerRequest("eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", 1<<20) + ".sig")
	var bytesBefore, bytesAfter runtimeMem
	bytesBefore.read()
	allocs := testing.AllocsPerRun(50, func() {
		c := pipeline.NewContext(req)
		if f.Handle(c) != validator.Invalid {
			t.Fatal("huge token passed")
		}
	})
	bytesAfter.read()
	if allocs > 30 {
		t.Errorf("refusing a 1 MiB token takes %v allocations", allocs)
	}
	if per := (bytesAfter.total - bytesBefore.total) / 51; per > 64<<10 {
		t.Errorf("refusing a 1 MiB token allocates %d bytes", per)
	}
}

func TestJWTHMACAndCookie(t *testing.T) {
	k := keysOnce()
	clk := filtertest.NewFakeClock(start)
	spec := `
jwt:
  cookieName: session
  algorithm: HS256
  secret: ` + base64.StdEncoding.EncodeToString(k.secret) + `
  expOptional: true
`
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(clk))
	hs := sign(t, jwt.SigningMethodHS256, k.secret, claims("exp", nil), "")
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: hs})
	if out := h.Do(req); out.Result != pipeline.Continue {
		t.Errorf("token in the cookie refused: %q", out.Body)
	}
	if out := h.Do(bearerRequest(hs)); out.Result != pipeline.Continue {
		t.Errorf("token in the header refused: %q", out.Body)
	}
	lower := httptest.NewRequest(http.MethodGet, "/", nil)
	lower.Header.Set("Authorization", "bearer "+hs)
	if out := h.Do(lower); out.Result != pipeline.Continue {
		t.Errorf("lower-case scheme refused: %q", out.Body)
	}
	if out := h.Do(bearerRequest(sign(t, jwt.SigningMethodHS384, k.secret, claims(), ""))); out.Result != validator.Invalid {
		t.Error("HS384 accepted though only HS256 is allowed")
	}
	basic := httptest.NewRequest(http.MethodGet, "/", nil)
	basic.SetBasicAuth("a", "b")
	if out := h.Do(basic); out.Body != "unauthorized: missing token\n" {
		t.Errorf("basic credentials: %q", out.Body)
	}
}

func TestJWTOtherAlgorithms(t *testing.T) {
	k := keysOnce()
	for _, tt := range []struct {
		alg  string
		m    jwt.SigningMethod
		priv any
		pub  any
	}{
		{"ES256", jwt.SigningMethodES256, k.ec, &k.ec.PublicKey},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed, k.ed.Public()},
		{"PS384", jwt.SigningMethodPS384, k.rsa, &k.rsa.PublicKey},
	} {
		t.Run(tt.alg, func(t *testing.T) {
			h := filtertest.New(t, validator.Kind, "jwt:\n  algorithms: ["+tt.alg+"]\n  publicKey: |\n    "+indent(pemOf(t, tt.pub), 4), filtertest.WithClock(filtertest.NewFakeClock(start)))
			if out := h.Do(bearerRequest(sign(t, tt.m, tt.priv, claims(), ""))); out.Result != pipeline.Continue {
				t.Errorf("refused: %q", out.Body)
			}
		})
	}
}

// jwkOf renders a public key as a JWK.
func jwkOf(kid string, pub any) map[string]string {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(p.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(p.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := p.Bytes()
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256",
			"x": base64.RawURLEncoding.EncodeToString(b[1:33]), "y": base64.RawURLEncoding.EncodeToString(b[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(p)}
	}
	panic("key type")
}

// keyServer is a real JWKS endpoint over TLS on loopback whose keys a
// test can rotate; it counts the requests it gets per path.
type keyServer struct {
	*httptest.Server
	keys  atomic.Pointer[[]byte]
	down  atomic.Bool
	mu    sync.Mutex
	paths map[string]int
}

func newKeyServer(t *testing.T) *keyServer {
	ks := &keyServer{paths: map[string]int{}}
	ks.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.mu.Lock()
		ks.paths[r.URL.RequestURI()]++
		ks.mu.Unlock()
		if ks.down.Load() || r.URL.Path != "/jwks" {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(*ks.keys.Load())
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) set(t *testing.T, keys ...map[string]string) {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	ks.keys.Store(&b)
}

func (ks *keyServer) fetches() map[string]int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	out := map[string]int{}
	for k, v := range ks.paths {
		out[k] = v
	}
	return out
}

// TestJWKSRotation serves keys from a real TLS JWKS endpoint, rotates
// them, and checks the refresh rules: fetch on first use, early refresh on
// an unknown key ID at most once per jwksMinRefreshInterval, periodic
// refresh, the old set kept while the server is down.
func TestJWKSRotation(t *testing.T) {
	k := keysOnce()
	ks := newKeyServer(t)
	ks.set(t, jwkOf("k1", &k.rsa.PublicKey), jwkOf("ec1", &k.ec.PublicKey))
	clk := filtertest.NewFakeClock(start)
	spec := `
jwt:
  algorithms: [RS256, ES256, EdDSA]
  jwksURL: ` + ks.URL + `/jwks
  jwksRefreshInterval: 10m
  jwksMinRefreshInterval: 1m
`
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(clk), filtertest.WithTransport(ks.Client().Transport))
	check := func(step, token string, want pipeline.Result, wantFetches int) {
		t.Helper()
		out := h.Do(bearerRequest(token))
		if out.Result != want {
			t.Errorf("%s: result %q (%q), want %q", step, out.Result, out.Body, want)
		}
		if got := ks.fetches()["/jwks"]; got != wantFetches {
			t.Errorf("%s: %d key set fetches, want %d", step, got, wantFetches)
		}
	}
	tok1 := sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "k1")
	tok2 := sign(t, jwt.SigningMethodRS256, k.rsa2, claims(), "k2")
	tokEC := sign(t, jwt.SigningMethodES256, k.ec, claims(), "ec1")
	tokEd := sign(t, jwt.SigningMethodEdDSA, k.ed, claims(), "ed1")
	check("first use fetches", tok1, pipeline.Continue, 1)
	check("cached", tok1, pipeline.Continue, 1)
	check("EC key", tokEC, pipeline.Continue, 1)
	check("EC token claiming the RSA key", sign(t, jwt.SigningMethodES256, k.ec, claims(), "k1"), validator.Invalid, 1)

	// Rotation: the server now has k2 and an Ed25519 key, not k1.
	ks.set(t, jwkOf("k2", &k.rsa2.PublicKey), jwkOf("ed1", k.ed.Public()))
	check("unknown kid within the minimum interval", tok2, validator.Invalid, 1)
	clk.Advance(time.Minute)
	check("unknown kid refreshes", tok2, pipeline.Continue, 2)
	check("Ed25519 from the new set", tokEd, pipeline.Continue, 2)
	check("the rotated-out key", tok1, validator.Invalid, 2)

	// Attacker-chosen key IDs are only looked up: no file, no other URL,
	// and no more than one fetch per interval however many there are.
	for _, kid := range []string{"../../../../etc/passwd", "' OR 1=1 --", "http://127.0.0.1:1/x", "/jwks?x=1", strings.Repeat("k", 5000), "k2\x00"} {
		check("kid "+kid[:min(len(kid), 20)], sign(t, jwt.SigningMethodRS256, k.rsa2, claims(), kid), validator.Invalid, 2)
	}
	clk.Advance(time.Minute)
	for range 10 {
		h.Do(bearerRequest(sign(t, jwt.SigningMethodRS256, k.rsa2, claims(), "random")))
	}
	if f := ks.fetches(); f["/jwks"] != 3 || len(f) != 1 {
		t.Errorf("after many unknown key IDs: fetches %v, want one more of /jwks only", f)
	}

	// Periodic refresh; a failing server leaves the last set in use.
	ks.down.Store(true)
	clk.Advance(10 * time.Minute)
	check("server down: old keys kept", tok2, pipeline.Continue, 4)
	ks.down.Store(false)
	ks.set(t, jwkOf("k1", &k.rsa.PublicKey))
	clk.Advance(time.Minute)
	check("stale set refreshed", tok1, pipeline.Continue, 5)
}

// TestJWKSUnavailable: with no key set ever fetched, tokens are refused.
func TestJWKSUnavailable(t *testing.T) {
	k := keysOnce()
	ks := newKeyServer(t)
	ks.down.Store(true)
	h := filtertest.New(t, validator.Kind, "jwt:\n  algorithms: [RS256]\n  jwksURL: "+ks.URL+"/jwks", filtertest.WithClock(filtertest.NewFakeClock(start)), filtertest.WithTransport(ks.Client().Transport))
	out := h.Do(bearerRequest(sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "k1")))
	if out.Result != validator.Invalid || out.Body != "unauthorized: keys unavailable\n" {
		t.Errorf("got %q %q", out.Result, out.Body)
	}
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

// TestJWTAlgConfusionWithBothFamilies: with HS256 and RS256 both allowed,
// an HS256 token is verified with the secret alone, never with the PEM
// public key as an HMAC key.
func TestJWTAlgConfusionWithBothFamilies(t *testing.T) {
	k := keysOnce()
	pubPEM := pemOf(t, &k.rsa.PublicKey)
	spec := "jwt:\n  algorithms: [HS256, RS256]\n  secret: " + base64.RawURLEncoding.EncodeToString(k.secret) + "\n  publicKey: |\n    " + indent(pubPEM, 4)
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(filtertest.NewFakeClock(start)))
	for _, tt := range []struct {
		name  string
		token string
		want  pipeline.Result
	}{
		{"HS256 keyed with the public key", sign(t, jwt.SigningMethodHS256, []byte(pubPEM), claims(), ""), validator.Invalid},
		{"HS256 keyed with the DER public key", sign(t, jwt.SigningMethodHS256, x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey), claims(), ""), validator.Invalid},
		{"HS256 with the secret", sign(t, jwt.SigningMethodHS256, k.secret, claims(), ""), pipeline.Continue},
		{"RS256", sign(t, jwt.SigningMethodRS256, k.rsa, claims(), ""), pipeline.Continue},
	} {
		if out := h.Do(bearerRequest(tt.token)); out.Result != tt.want {
			t.Errorf("%s: %q %q, want %q", tt.name, out.Result, out.Body, tt.want)
		}
	}
}
