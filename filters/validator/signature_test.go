package validator_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

const signatureSpec = `
signature:
  accessKeys:
    AKID1: first-secret-0123456789
    AKID2: second-secret-0123456789
  ttl: 5m
  maxBodySize: 1024
`

func signedRequest(t *testing.T, body string, now time.Time, id, secret string, headers ...string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "http://api.example.com/orders/42?b=2&a=1&a=0", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := validator.Sign(req, id, secret, now, false, headers...); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestSignature(t *testing.T) {
	clk := filtertest.NewFakeClock(start)
	h := filtertest.New(t, validator.Kind, signatureSpec, filtertest.WithClock(clk))
	tests := []struct {
		name   string
		req    func() *http.Request
		status int // 0: passes
		reason string
	}{
		{"valid", func() *http.Request {
			return signedRequest(t, `{"n":1}`, start, "AKID1", "first-secret-0123456789", "Content-Type")
		}, 0, ""},
		{"second key", func() *http.Request { return signedRequest(t, ``, start, "AKID2", "second-secret-0123456789") }, 0, ""},
		{"signed a little in the future", func() *http.Request {
			return signedRequest(t, `x`, start.Add(4*time.Minute), "AKID1", "first-secret-0123456789")
		}, 0, ""},
		{"altered body", func() *http.Request {
			r := signedRequest(t, `{"n":1}`, start, "AKID1", "first-secret-0123456789")
			r.Body = httpBody(`{"n":2}`)
			return r
		}, 401, "bad signature"},
		{"altered signed header", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789", "Content-Type")
			r.Header.Set("Content-Type", "text/plain")
			return r
		}, 401, "bad signature"},
		{"altered query", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			r.URL.RawQuery = "a=1&b=3"
			return r
		}, 401, "bad signature"},
		{"altered path", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			r.URL.Path = "/orders/43"
			return r
		}, 401, "bad signature"},
		{"altered method", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			r.Method = http.MethodDelete
			return r
		}, 401, "bad signature"},
		{"altered host", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			r.Host = "evil.example.com"
			return r
		}, 401, "bad signature"},
		{"altered timestamp", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			r.Header.Set(validator.DateHeader, start.Add(time.Minute).Format(validator.SignatureDateFormat))
			return r
		}, 401, "bad signature"},
		{"old timestamp", func() *http.Request {
			return signedRequest(t, `{}`, start.Add(-6*time.Minute), "AKID1", "first-secret-0123456789")
		}, 401, "signature expired"},
		{"timestamp too far ahead", func() *http.Request {
			return signedRequest(t, `{}`, start.Add(6*time.Minute), "AKID1", "first-secret-0123456789")
		}, 401, "signature expired"},
		{"bad timestamp", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			r.Header.Set(validator.DateHeader, "yesterday")
			return r
		}, 401, "bad signature date"},
		{"wrong secret", func() *http.Request { return signedRequest(t, `{}`, start, "AKID1", "second-secret-0123456789") }, 401, "bad signature"},
		{"unknown key", func() *http.Request { return signedRequest(t, `{}`, start, "AKID9", "first-secret-0123456789") }, 401, "unknown access key"},
		{"no signature", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/", nil) }, 401, "missing signature"},
		{"malformed", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Authorization", validator.SignatureScheme+" Credential=AKID1")
			return r
		}, 401, "malformed signature"},
		{"date not signed", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "host;x-sluice-date", "host", 1))
			return r
		}, 401, "signed headers must be sorted, unique and include host and x-sluice-date"},
		{"signature not hex", func() *http.Request {
			r := signedRequest(t, `{}`, start, "AKID1", "first-secret-0123456789")
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:strings.Index(a, "Signature=")]+"Signature=zz")
			return r
		}, 401, "bad signature"},
		{"body too large", func() *http.Request {
			return signedRequest(t, strings.Repeat("x", 2000), start, "AKID1", "first-secret-0123456789")
		}, 413, "body too large to verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req()
			out := h.Do(req)
			if tt.status == 0 {
				if out.Result != pipeline.Continue {
					t.Fatalf("refused: %q", out.Body)
				}
				// The body is still there for the backend.
				var buf bytes.Buffer
				buf.ReadFrom(out.Request.Body)
				return
			}
			if out.Result != validator.Invalid || out.Response.StatusCode != tt.status {
				t.Fatalf("got %q %d %q, want %d", out.Result, out.Response.StatusCode, out.Body, tt.status)
			}
			if !strings.Contains(out.Body, tt.reason) {
				t.Errorf("body %q, want reason %q", out.Body, tt.reason)
			}
			if tt.status == 401 && out.Response.Header.Get("WWW-Authenticate") != validator.SignatureScheme+` realm="sluice"` {
				t.Errorf("challenge %q", out.Response.Header.Get("WWW-Authenticate"))
			}
			if strings.Contains(out.Body, "secret") {
				t.Errorf("body %q mentions a secret", out.Body)
			}
		})
	}
}

func TestSignatureKeepsBody(t *testing.T) {
	h := filtertest.New(t, validator.Kind, signatureSpec, filtertest.WithClock(filtertest.NewFakeClock(start)))
	out := h.Do(signedRequest(t, `{"n":1}`, start, "AKID1", "first-secret-0123456789"))
	var buf bytes.Buffer
	buf.ReadFrom(out.Request.Body)
	if out.Result != pipeline.Continue || buf.String() != `{"n":1}` {
		t.Errorf("result %q, body passed on %q", out.Result, buf.String())
	}
}

func TestSignatureExcludeBody(t *testing.T) {
	spec := "signature:\n  accessKeyId: AK\n  accessKeySecret: a-long-enough-secret\n  excludeBody: true\n"
	h := filtertest.New(t, validator.Kind, spec, filtertest.WithClock(filtertest.NewFakeClock(start)))
	req := httptest.NewRequest(http.MethodPut, "/x", strings.NewReader("one"))
	if err := validator.Sign(req, "AK", "a-long-enough-secret", start, true); err != nil {
		t.Fatal(err)
	}
	req.Body = httpBody("two") // not signed, so not checked
	if out := h.Do(req); out.Result != pipeline.Continue {
		t.Errorf("refused: %q", out.Body)
	}
}

func httpBody(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
