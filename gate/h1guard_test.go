package gate

import (
	"strings"
	"testing"
)

// scanAll feeds in to a fresh guard in pieces of size n and returns the
// verdict and, for guardBad, the offset of the offending byte.
func scanAll(in string, n int, h2c bool) (guardVerdict, int) {
	g := h1guard{maxHead: 1 << 16, first: true, h2c: h2c}
	for off := 0; off < len(in); off += n {
		end := min(off+n, len(in))
		at, v := g.scan([]byte(in[off:end]))
		if v != guardOK {
			return v, off + at
		}
	}
	return guardOK, -1
}

func TestH1Guard(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want guardVerdict
		at   string // the offending byte is the first of this suffix
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", guardOK, ""},
		{"pipelined", "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", guardOK, ""},
		{"empty line first", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", guardOK, ""},
		{"Content-Length body with bare LF and CR", "POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\na\nb\rc\nGET / HTTP/1.1\r\n\r\n", guardOK, ""},
		{"chunked body with bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\na\nb\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n", guardOK, ""},
		{"bare LF after a chunked body", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\nHost: x\r\n\r\n", guardBad, "\nHost: x\r\n\r\n"},
		{"bare LF after a Content-Length body", "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\nHost: x\n\r\n", guardBad, "\n\r\n"},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", guardBad, "\nHost: x\n\n"},
		{"bare CR", "GET / HTTP/1.1\r\nA: 1\rB: 2\r\n\r\n", guardBad, "B: 2\r\n\r\n"},
		{"CL and TE", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", guardBad, "\n0\r\n\r\n"},
		{"TE and CL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n", guardBad, "\n"},
		{"folded header", "GET / HTTP/1.1\r\nA: 1\r\n\tB: 2\r\n\r\n", guardBad, "\tB: 2\r\n\r\n"},
		{"chunk longer than its size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", guardBad, "b\r\n0\r\n\r\n"},
		{"bare LF in a trailer", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n", guardBad, "\n\r\n"},
		{"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\n", guardOff, ""},
		{"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", guardOff, ""},
		{"unknown coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", guardOff, ""},
	} {
		for _, n := range []int{1, 2, 3, 7, len(tt.in)} {
			v, at := scanAll(tt.in, n, false)
			if v != tt.want {
				t.Errorf("%s, pieces of %d: verdict %d, want %d", tt.name, n, v, tt.want)
				continue
			}
			if tt.at != "" && at != len(tt.in)-len(tt.at) {
				t.Errorf("%s, pieces of %d: offending byte at %d, want %d", tt.name, n, at, len(tt.in)-len(tt.at))
			}
		}
	}
	// On a listener that takes HTTP/2 with prior knowledge, a first line
	// that is not HTTP/1 is dropped; elsewhere net/http answers it.
	if v, _ := scanAll("INVALID CONNECTION PREFACE\r\n\r\n", 5, true); v != guardDrop {
		t.Errorf("invalid preface on h2c: %d", v)
	}
	if v, _ := scanAll("INVALID CONNECTION PREFACE\r\n\r\n", 5, false); v != guardOK {
		t.Errorf("invalid preface without h2c: %d", v)
	}
	// A head longer than the limit is left to net/http (431).
	g := h1guard{maxHead: 100, first: true}
	if _, v := g.scan([]byte("GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 200))); v != guardOff {
		t.Errorf("oversized head: %d", v)
	}
}

// The guard reads a connection's bytes without allocating once its line
// buffer has grown.
func TestH1GuardDoesNotAllocate(t *testing.T) {
	req := []byte("POST /x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nUser-Agent: t\r\n\r\nbody")
	g := h1guard{maxHead: 1 << 16, first: true}
	g.scan(req)
	if n := testing.AllocsPerRun(100, func() {
		if _, v := g.scan(req); v != guardOK {
			t.Fatal(v)
		}
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

func BenchmarkH1Guard(b *testing.B) {
	req := []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n" +
		"Accept-Encoding: gzip\r\nX-Request-Id: 0123456789abcdef\r\n\r\n")
	g := h1guard{maxHead: 1 << 16, first: true}
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		g.scan(req)
	}
}
