package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// decode decodes body as encoding with a real decoder of that format.
func decode(t *testing.T, encoding string, body []byte) string {
	t.Helper()
	var r io.Reader
	switch encoding {
	case "":
		return string(body)
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unknown encoding %q", encoding)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", encoding, err)
	}
	return string(b)
}

var jsonBody = strings.Repeat(`{"id":42,"name":"Ada Lovelace","tags":["math","engines"]},`, 200)

// contentServer answers with jsonBody, the status and the headers its
// query asks for: ?type=…&status=…&h=Name:Value.
func contentServer() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ct := q.Get("type")
		if ct == "" {
			ct = "application/json; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("ETag", `"v1"`)
		for _, hv := range q["h"] {
			k, v, _ := strings.Cut(hv, ":")
			w.Header().Add(k, v)
		}
		body := jsonBody
		if n, err := strconv.Atoi(q.Get("len")); err == nil {
			body = body[:n]
		}
		if code, err := strconv.Atoi(q.Get("status")); err == nil {
			w.WriteHeader(code)
		}
		io.WriteString(w, body)
	})
}

func TestCompression(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, contentServer())
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL)+"compression: {minLength: 256}\n")
	for _, tt := range []struct {
		name, target, accept, method string
		want                         string // Content-Encoding
		vary                         bool
	}{
		{"gzip", "/", "gzip", "", "gzip", true},
		{"x-gzip", "/", "x-gzip", "", "gzip", true},
		{"brotli", "/", "br", "", "br", true},
		{"zstd", "/", "zstd", "", "zstd", true},
		{"q-values", "/", "gzip;q=0.8, zstd;q=0.9, br;q=0.1", "", "zstd", true},
		{"server order on ties", "/", "gzip, zstd, br", "", "br", true},
		{"star", "/", "gzip;q=0.5, *", "", "br", true},
		{"refused", "/", "br;q=0, gzip;q=0, zstd;q=0", "", "", true},
		{"star refused", "/", "*;q=0", "", "", true},
		{"no accept-encoding", "/", "", "", "", true},
		{"identity", "/", "identity", "", "", true},
		{"malformed q-values", "/", "gzip;q=abc, br;q=2, zstd;q=-1", "", "", true},
		{"garbage", "/", ";;,,=;q", "", "", true},
		{"text/*", "/?type=text/html", "gzip", "", "gzip", true},
		{"suffix type", "/?type=application/problem%2Bjson", "gzip", "", "gzip", true},
		{"svg", "/?type=image/svg%2Bxml", "gzip", "", "gzip", true},
		{"image not compressed", "/?type=image/png", "gzip", "", "", false},
		{"already encoded", "/?h=Content-Encoding:deflate", "gzip", "", "deflate", false},
		{"below minLength", "/?len=100", "gzip", "", "", false},
		{"at minLength", "/?len=256", "gzip", "", "gzip", true},
		{"no-transform", "/?h=Cache-Control:public,no-transform", "gzip", "", "", false},
		{"204", "/?status=204&len=0", "gzip", "", "", false},
		{"304", "/?status=304&len=0", "gzip", "", "", false},
		{"206", "/?status=206", "gzip", "", "", false},
		{"404 is compressed", "/?status=404", "gzip", "", "gzip", true},
		{"HEAD", "/", "gzip", http.MethodHead, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, tt.target, nil)
			if tt.accept != "" {
				r.Header.Set("Accept-Encoding", tt.accept)
			}
			out := h.Do(r)
			resp := out.Response
			if got := resp.Header.Get("Content-Encoding"); got != tt.want {
				t.Fatalf("Content-Encoding %q, want %q", got, tt.want)
			}
			if got := strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding"); got != tt.vary {
				t.Errorf("Vary %q, want Accept-Encoding: %v", resp.Header.Values("Vary"), tt.vary)
			}
			if tt.want == "" || tt.want == "deflate" {
				return
			}
			if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
				t.Errorf("compressed response has length %d / %q", resp.ContentLength, resp.Header.Get("Content-Length"))
			}
			if et := resp.Header.Get("Etag"); et != `W/"v1"` {
				t.Errorf("ETag %q, want a weak one", et)
			}
			want := jsonBody
			if tt.name == "at minLength" {
				want = jsonBody[:256]
			}
			if got := decode(t, tt.want, []byte(out.Body)); got != want {
				t.Errorf("decoded body of %d bytes differs from the %d sent", len(got), len(want))
			}
			if len(out.Body) >= len(want) {
				t.Errorf("%d bytes compressed to %d", len(want), len(out.Body))
			}
		})
	}
}

// TestCompressionThroughTheGateway: a real client behind a real server
// gets each algorithm and decodes it, many times over, so the pooled
// encoders are reused.
func TestCompressionThroughTheGateway(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, contentServer())
	pl := newPipeline(t, nil, proxyPipeline(be.URL, "", "")+"  compression: {algorithms: [zstd, gzip, br]}\n")
	gw := httptest.NewServer(pl)
	t.Cleanup(gw.Close)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	for i := range 12 {
		enc := []string{"gzip", "br", "zstd"}[i%3]
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/", nil)
		req.Header.Set("Accept-Encoding", enc)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Content-Encoding"); got != enc {
			t.Fatalf("Content-Encoding %q, want %s", got, enc)
		}
		if decode(t, enc, b) != jsonBody {
			t.Fatalf("%s body does not round-trip", enc)
		}
	}
}

// TestCompressionStreams: server-sent events are compressed and still
// reach the client one by one: the client decodes the first event while
// the server waits to be told to send the second.
func TestCompressionStreams(t *testing.T) {
	t.Parallel()
	for _, enc := range []string{"gzip", "br", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			t.Parallel()
			next := make(chan struct{})
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "data: one\n\n")
				w.(http.Flusher).Flush()
				<-next
				fmt.Fprint(w, "data: two\n\n")
			}))
			t.Cleanup(be.Close)
			pl := newPipeline(t, nil, proxyPipeline(be.URL, "", "")+"  compression: {}\n")
			gw := httptest.NewServer(pl)
			t.Cleanup(gw.Close)
			tr := &http.Transport{DisableCompression: true}
			t.Cleanup(tr.CloseIdleConnections)
			req, _ := http.NewRequest(http.MethodGet, gw.URL+"/events", nil)
			req.Header.Set("Accept-Encoding", enc)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				close(next)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Encoding") != enc {
				close(next)
				t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
			var dr io.Reader
			switch enc {
			case "gzip":
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					close(next)
					t.Fatal(err)
				}
				dr = zr
			case "br":
				dr = brotli.NewReader(resp.Body)
			case "zstd":
				zr, err := zstd.NewReader(resp.Body, zstd.WithDecoderConcurrency(1))
				if err != nil {
					close(next)
					t.Fatal(err)
				}
				defer zr.Close()
				dr = zr
			}
			br := bufio.NewReader(dr)
			line, err := br.ReadString('\n')
			if err != nil || line != "data: one\n" {
				close(next)
				t.Fatalf("first event %q, %v", line, err)
			}
			close(next) // only now may the server send the second event
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: two\n\n" {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

func TestCompressionBadSpecs(t *testing.T) {
	t.Parallel()
	const head = "pools:\n- servers: [{url: http://a}]\ncompression:\n"
	for _, tt := range []struct{ spec, field, msg string }{
		{"  minLength: -1\n", "compression.minLength", "must be 0 or more"},
		{"  algorithms: [deflate]\n", `compression.algorithms\[0\]`, `unknown algorithm "deflate"`},
		{"  algorithms: [gzip, gzip]\n", `compression.algorithms\[1\]`, "listed twice"},
		{"  contentTypes: [json]\n", `compression.contentTypes\[0\]`, "not a media type"},
		{"  contentTypes: [\"*/*\"]\n", `compression.contentTypes\[0\]`, "not a media type"},
		{"  contentTypes: [\"text/j*\"]\n", `compression.contentTypes\[0\]`, "not a media type"},
	} {
		t.Run(tt.field, func(t *testing.T) {
			filtertest.ExpectBuildError(t, proxy.Kind, head+tt.spec, `field "`+tt.field+`": .*`+tt.msg)
		})
	}
}

// TestCompressionYAMLRoundTrip: the new sections survive a round trip.
func TestCompressionYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	filtertest.RoundTrip(t, proxy.Kind, proxy.Spec{
		Pools:           []proxy.PoolSpec{{Servers: []proxy.ServerSpec{{URL: "http://a"}}, MemoryCache: &proxy.MemoryCacheSpec{Expiration: 10e9, Codes: []int{200}, Methods: []string{"GET"}, MaxEntryBytes: 10, MaxTotalBytes: 100}}},
		MirrorPool:      &proxy.PoolSpec{Servers: []proxy.ServerSpec{{URL: "http://m"}}},
		MirrorQueueSize: 10,
		MirrorWorkers:   2,
		Compression:     &proxy.CompressionSpec{MinLength: 10, Algorithms: []string{"gzip"}, ContentTypes: []string{"text/*"}},
	})
}
