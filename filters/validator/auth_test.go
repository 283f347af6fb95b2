package validator_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

func htpasswd(t *testing.T, users ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# users\n\n")
	for i := 0; i < len(users); i += 2 {
		hash, err := bcrypt.GenerateFromPassword([]byte(users[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(users[i] + ":" + string(hash) + "\n")
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestBasicAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, file, htpasswd(t, "alice", "wonderland", "bob", "builder"), start)
	clk := filtertest.NewFakeClock(start)
	h := filtertest.New(t, validator.Kind, "basicAuth:\n  mode: FILE\n  userFile: "+file+"\n  reloadInterval: 30s\nrealm: shop", filtertest.WithClock(clk))
	try := func(user, pass string) *filtertest.Outcome {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		req.Header.Set(validator.UserHeader, "root")
		return h.Do(req)
	}
	expect := func(step, user, pass string, ok bool) {
		t.Helper()
		out := try(user, pass)
		if ok {
			if out.Result != pipeline.Continue || out.Request.Header.Get(validator.UserHeader) != user {
				t.Errorf("%s: %s refused (%q) or user header %q", step, user, out.Body, out.Request.Header.Get(validator.UserHeader))
			}
			return
		}
		if out.Result != validator.Invalid || out.Response.StatusCode != 401 || out.Response.Header.Get("WWW-Authenticate") != `Basic realm="shop", charset="UTF-8"` {
			t.Errorf("%s: %s/%s: got %q %v", step, user, pass, out.Result, out.Response)
		}
		if out.Request.Header.Get(validator.UserHeader) != "" {
			t.Errorf("%s: forged user header survived", step)
		}
		if pass != "" && strings.Contains(out.Body, pass) {
			t.Errorf("%s: body echoes the password", step)
		}
	}
	expect("known user", "alice", "wonderland", true)
	expect("second user", "bob", "builder", true)
	expect("wrong password", "alice", "builder", false)
	expect("unknown user", "carol", "wonderland", false)
	expect("no credentials", "", "", false)
	expect("long password", "alice", strings.Repeat("w", 100), false)

	// A new file: seen only once the reload interval has passed.
	writeFile(t, file, htpasswd(t, "carol", "singer"), start.Add(time.Second))
	clk.Advance(10 * time.Second)
	expect("before the interval", "alice", "wonderland", true)
	clk.Advance(20 * time.Second)
	expect("after reload, new user", "carol", "singer", true)
	expect("after reload, removed user", "alice", "wonderland", false)

	// A file that no longer parses leaves the last users in place.
	writeFile(t, file, "carol:plaintext\n", start.Add(2*time.Second))
	clk.Advance(30 * time.Second)
	expect("broken file", "carol", "singer", true)
}

func TestBasicAuthBadFile(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	writeFile(t, plain, "alice:{SHA}secretstuff\n", start)
	filtertest.ExpectBuildError(t, validator.Kind, "basicAuth:\n  userFile: "+plain, `^line 2: field "basicAuth.userFile": line 1: user "alice": not a bcrypt hash$`)
	filtertest.ExpectBuildError(t, validator.Kind, "basicAuth:\n  userFile: "+filepath.Join(dir, "missing"), `field "basicAuth.userFile": .*no such file`)
	filtertest.ExpectBuildError(t, validator.Kind, "basicAuth:\n  mode: ETCD\n  userFile: x", `field "basicAuth.mode": unsupported mode "ETCD"`)
}

// introspector is a real RFC 7662 endpoint over TLS on loopback.
type introspector struct {
	*httptest.Server
	calls  atomic.Int64
	failed atomic.Bool
}

func newIntrospector(t *testing.T, exp time.Time) *introspector {
	in := &introspector{}
	in.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.calls.Add(1)
		id, secret, ok := r.BasicAuth()
		// RFC 6749 section 2.3.1: both are form-encoded first.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if r.Method != http.MethodPost || !ok || id != "gateway" || secret != "gw secret" || in.failed.Load() {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		answer := map[string]any{"active": false}
		switch r.PostFormValue("token") {
		case "good-token":
			answer = map[string]any{"active": true, "exp": exp.Unix(), "sub": "alice"}
		case "no-exp-token":
			answer = map[string]any{"active": true}
		case "expired-token":
			answer = map[string]any{"active": true, "exp": exp.Add(-time.Hour).Unix()}
		}
		json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(in.Close)
	return in
}

func TestOAuth2Introspection(t *testing.T) {
	clk := filtertest.NewFakeClock(start)
	in := newIntrospector(t, start.Add(3*time.Minute))
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	spec := `
oauth2:
  tokenIntrospect:
    endPoint: ` + in.URL + `/introspect
    clientId: gateway
    clientSecret: gw secret
    maxCacheTTL: 1m
    cacheSize: 2
`
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(clk), filtertest.WithTransport(in.Client().Transport), filtertest.WithLogger(logger))
	check := func(step, token string, wantStatus int, wantCalls int64) {
		t.Helper()
		out := h.Do(bearerRequest(token))
		status := 0
		if out.Response != nil {
			status = out.Response.StatusCode
		}
		if status != wantStatus {
			t.Errorf("%s: status %d (%q), want %d", step, status, out.Body, wantStatus)
		}
		if status == 401 && !strings.HasPrefix(out.Response.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: challenge %q", step, out.Response.Header.Get("WWW-Authenticate"))
		}
		if got := in.calls.Load(); got != wantCalls {
			t.Errorf("%s: %d introspection calls, want %d", step, got, wantCalls)
		}
	}
	check("active", "good-token", 0, 1)
	check("cached", "good-token", 0, 1)
	check("inactive", "bad-token", 401, 2)
	check("inactive is not cached", "bad-token", 401, 3)
	check("exp in the past", "expired-token", 401, 4)
	check("no token", "", 401, 4)
	clk.Advance(time.Minute)
	check("past maxCacheTTL", "good-token", 0, 5)
	clk.Advance(2 * time.Minute)
	check("past the token's exp (the server still says active)", "good-token", 401, 6)
	check("no exp: cached for maxCacheTTL", "no-exp-token", 0, 7)
	check("cached", "no-exp-token", 0, 7)
	in.failed.Store(true)
	check("endpoint failing", "other-token", 503, 8)
	for _, tok := range []string{"good-token", "bad-token", "no-exp-token", "other-token", "gw secret"} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the log shows %q:\n%s", tok, logs.String())
		}
	}
}

func TestOAuth2JWT(t *testing.T) {
	k := keysOnce()
	spec := "oauth2:\n  jwt:\n    algorithm: HS512\n    secret: " + base64.StdEncoding.EncodeToString(k.secret) + "\n    forwardClaims: { sub: X-User }"
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(filtertest.NewFakeClock(start)))
	req := bearerRequest(sign(t, jwt.SigningMethodHS512, k.secret, claims(), ""))
	req.Header.Set("X-User", "mallory")
	out := h.Do(req)
	if out.Result != pipeline.Continue || out.Request.Header.Get("X-User") != "alice" {
		t.Errorf("got %q %q, X-User %q", out.Result, out.Body, out.Request.Header.Get("X-User"))
	}
	if out := h.Do(bearerRequest(sign(t, jwt.SigningMethodHS256, k.secret, claims(), ""))); out.Result != validator.Invalid {
		t.Error("HS256 accepted though only HS512 is allowed")
	}
}

// TestChecksCombine: every configured check must pass, in order.
func TestChecksCombine(t *testing.T) {
	k := keysOnce()
	spec := "headers: { X-Tenant: { values: [acme] } }\njwt:\n  algorithms: [HS256]\n  secret: " + base64.StdEncoding.EncodeToString(k.secret)
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(filtertest.NewFakeClock(start)))
	good := sign(t, jwt.SigningMethodHS256, k.secret, claims(), "")
	req := bearerRequest(good)
	if out := h.Do(req); out.Response.StatusCode != 400 {
		t.Errorf("missing header: %d, want 400", out.Response.StatusCode)
	}
	req = bearerRequest("bad")
	req.Header.Set("X-Tenant", "acme")
	if out := h.Do(req); out.Response.StatusCode != 401 {
		t.Errorf("bad token: %d, want 401", out.Response.StatusCode)
	}
	req = bearerRequest(good)
	req.Header.Set("X-Tenant", "acme")
	if out := h.Do(req); out.Result != pipeline.Continue {
		t.Errorf("both good: %q", out.Body)
	}
}

func TestBadAuthSpec(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("s"), 32))
	tests := []struct{ name, spec, want string }{
		{"no algorithm", "jwt: { secret: " + secret + " }", `^line 1: field "jwt.algorithms": allow at least one algorithm`},
		{"unknown algorithm", "jwt:\n  algorithms: [HS256, none]\n  secret: " + secret, `^line 2: field "jwt.algorithms\[1\]": unknown algorithm "none"`},
		{"HS without secret", "jwt: { algorithm: HS256 }", `field "jwt.secret": required for the HS\* algorithms`},
		{"short secret", "jwt: { algorithm: HS256, secret: c2hvcnQ= }", `field "jwt.secret": 5 bytes; HMAC keys need at least 32`},
		{"secret not base64", "jwt: { algorithm: HS256, secret: '***' }", `field "jwt.secret": not base64$`},
		{"RS without key", "jwt: { algorithm: RS256 }", `field "jwt.publicKey": set publicKey or jwksURL`},
		{"bad PEM", "jwt: { algorithm: RS256, publicKey: nope }", `field "jwt.publicKey": no PEM block`},
		{"bad JWKS URL", "jwt: { algorithm: RS256, jwksURL: 'file:///etc/passwd' }", `field "jwt.jwksURL": must be an absolute http or https URL`},
		{"bad forward header", "jwt:\n  algorithm: HS256\n  secret: " + secret + "\n  forwardClaims: { sub: 'X User' }", `field "jwt.forwardClaims.sub": "X User" is not a valid header name`},
		{"negative skew", "jwt:\n  algorithm: HS256\n  secret: " + secret + "\n  clockSkew: -1s", `field "jwt.clockSkew": must not be negative`},
		{"signature without keys", "signature: { ttl: 1m }", `field "signature.accessKeys": configure at least one key`},
		{"signature short secret", "signature: { accessKeys: { A: short } }", `field "signature.accessKeys.A": secret shorter than 16 bytes`},
		{"signature id without secret", "signature: { accessKeyId: A }", `field "signature.accessKeyId": set accessKeyId and accessKeySecret together`},
		{"oauth2 both", "oauth2: { tokenIntrospect: { endPoint: 'https://x' }, jwt: { algorithm: HS256 } }", `field "oauth2.tokenIntrospect": set tokenIntrospect or jwt, exactly one`},
		{"oauth2 bad endpoint", "oauth2: { tokenIntrospect: { endPoint: x } }", `field "oauth2.tokenIntrospect.endPoint": must be an absolute`},
		{"oauth2 jwt error", "oauth2: { jwt: { algorithm: HS256 } }", `field "oauth2.jwt.secret": required`},
		{"basic auth without file", "basicAuth: { mode: FILE }", `field "basicAuth.userFile": required`},
		{"bad realm", "realm: 'a\"b'\nheaders: { X: { values: [a] } }", `field "realm": must be printable ASCII`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			filtertest.ExpectBuildError(t, validator.Kind, tt.spec, tt.want)
			if strings.Contains(tt.want, "secret") && strings.Contains(tt.spec, secret) {
				if _, err := filtertest.Build(validator.Kind, tt.spec); err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the secret", err)
				}
			}
		})
	}
}
