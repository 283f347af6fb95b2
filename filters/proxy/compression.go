package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sluicegw/sluice/pipeline"
)

// Compression algorithms (compression.algorithms), by their Content-Encoding.
const (
	// EncodingGzip is gzip (RFC 1952), at the default level.
	EncodingGzip = "gzip"
	// EncodingBrotli is brotli (RFC 7932), at quality 4.
	EncodingBrotli = "br"
	// EncodingZstd is Zstandard (RFC 8878), at the default speed with a
	// 1 MiB window.
	EncodingZstd = "zstd"
)

// encodings are the compression algorithms, as listed in errors.
var encodings = []string{EncodingBrotli, EncodingZstd, EncodingGzip}

// defaultContentTypes are the media types compressed when
// compression.contentTypes is empty.
var defaultContentTypes = []string{
	"text/*", "application/json", "application/*+json", "application/javascript",
	"application/x-javascript", "application/xml", "application/*+xml", "image/svg+xml",
}

// CompressionSpec is the Proxy's response compression, Easegress's
// compression with our extensions:
//
//	compression:
//	  minLength: 1024                    # bytes
//	  algorithms: [br, zstd, gzip]       # the server's preference
//	  contentTypes: [text/*, application/json]
//
// A response is compressed when the client accepts one of the algorithms
// (Accept-Encoding, with q-values; the highest q wins, ties go to the
// first in algorithms), its Content-Type is one of contentTypes, it is
// not encoded already, its status is not 1xx, 204, 206 or 304, the
// request is not a HEAD, its Cache-Control has no no-transform, and its
// Content-Length, when known, is at least minLength. A compressed
// response loses its Content-Length (it streams, flushed as the server's
// bytes arrive, so server-sent events keep flowing) and its ETag becomes
// weak. Every response of a compressible type and size gets Vary:
// Accept-Encoding, compressed or not.
type CompressionSpec struct {
	// MinLength is the smallest Content-Length compressed, in bytes; a
	// response whose length is unknown is compressed. 0 means any length;
	// negative is an error.
	MinLength int64 `yaml:"minLength,omitempty"`
	// Algorithms are the encodings offered, in the server's order of
	// preference: br, zstd and gzip. Empty means [br, zstd, gzip]. Not an
	// Easegress field.
	Algorithms []string `yaml:"algorithms,omitempty"`
	// ContentTypes are the media types compressed: "type/subtype",
	// "type/*", or "type/*+suffix" (application/*+json), compared without
	// parameters and case. Empty means text/*, application/json,
	// application/*+json, application/javascript,
	// application/x-javascript, application/xml, application/*+xml and
	// image/svg+xml. Not an Easegress field.
	ContentTypes []string `yaml:"contentTypes,omitempty"`
}

func (cs *CompressionSpec) validate(field string) error {
	if cs.MinLength < 0 {
		return pipeline.FieldErr(field+".minLength", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	}
	for i, a := range cs.Algorithms {
		f := field + ".algorithms[" + strconv.Itoa(i) + "]"
		if !slices.Contains(encodings, a) {
			return pipeline.FieldErr(f, fmt.Errorf("%w: unknown algorithm %q (want %s)", ErrBadValue, a, strings.Join(encodings, ", ")))
		}
		if slices.Index(cs.Algorithms, a) < i {
			return pipeline.FieldErr(f, fmt.Errorf("%w: %s is listed twice", ErrBadValue, a))
		}
	}
	for i, ct := range cs.ContentTypes {
		if !validMediaPattern(ct) {
			return pipeline.FieldErr(field+".contentTypes["+strconv.Itoa(i)+"]", fmt.Errorf("%w: %q is not a media type (type/subtype, type/* or type/*+suffix)", ErrBadValue, ct))
		}
	}
	return nil
}

// validMediaPattern reports whether p is type/subtype, type/* or
// type/*+suffix, made of tokens.
func validMediaPattern(p string) bool {
	typ, sub, ok := strings.Cut(p, "/")
	if !ok || !validToken(typ) || typ == "*" {
		return false
	}
	if sub == "*" {
		return true
	}
	if rest, ok := strings.CutPrefix(sub, "*+"); ok {
		return validToken(rest)
	}
	return validToken(sub) && !strings.Contains(sub, "*")
}

// compressor compresses the responses of a Proxy. It keeps a pool of
// encoders per algorithm and of read buffers; they are the Proxy's, not
// global.
type compressor struct {
	minLength int64
	algs      []string // the server's preference
	exact     []string // media types, lower case
	prefixes  []string // "type/" of type/*
	suffixes  []string // "type/" and "+suffix" of type/*+suffix, in pairs
	encoders  []sync.Pool
	bufs      sync.Pool
}

// compressChunk is the size of the reads from the server's body; each
// read's bytes are compressed and flushed.
const compressChunk = 32 << 10

func newCompressor(spec *CompressionSpec) *compressor {
	cz := &compressor{minLength: spec.MinLength, algs: spec.Algorithms}
	if len(cz.algs) == 0 {
		cz.algs = encodings
	}
	types := spec.ContentTypes
	if len(types) == 0 {
		types = defaultContentTypes
	}
	for _, t := range types {
		t = strings.ToLower(t)
		typ, sub, _ := strings.Cut(t, "/")
		switch {
		case sub == "*":
			cz.prefixes = append(cz.prefixes, typ+"/")
		case strings.HasPrefix(sub, "*+"):
			cz.suffixes = append(cz.suffixes, typ+"/", sub[1:])
		default:
			cz.exact = append(cz.exact, t)
		}
	}
	cz.encoders = make([]sync.Pool, len(cz.algs))
	for i, a := range cz.algs {
		cz.encoders[i].New = func() any { return newEncoder(a) }
	}
	cz.bufs.New = func() any { b := make([]byte, compressChunk); return &b }
	return cz
}

// encoder is a streaming compressor that can be reused.
type encoder interface {
	io.WriteCloser
	Flush() error
	Reset(w io.Writer)
}

func newEncoder(alg string) encoder {
	switch alg {
	case EncodingBrotli:
		return brotli.NewWriterLevel(nil, 4)
	case EncodingZstd:
		// One goroutine (the caller's): concurrency 1 keeps the encoder
		// synchronous.
		z, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			panic("zstd: " + err.Error()) // the options are constant and valid
		}
		return z
	}
	w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return w
}

// apply compresses resp, the response to in, when the rules allow it (see
// CompressionSpec): it replaces the body with a compressing one and fixes
// the headers.
func (cz *compressor) apply(in *http.Request, resp *http.Response) {
	if resp == nil || resp.Body == nil || resp.Body == http.NoBody || in == nil || in.Method == http.MethodHead {
		return
	}
	switch code := resp.StatusCode; {
	case code < 200, code == http.StatusNoContent, code == http.StatusPartialContent, code == http.StatusNotModified:
		return
	}
	h := resp.Header
	if h == nil {
		return
	}
	if ce := h["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(ce[0], "identity")) {
		return
	}
	if hasToken(h["Cache-Control"], "no-transform") || !cz.compressible(h.Get("Content-Type")) {
		return
	}
	if resp.ContentLength >= 0 && resp.ContentLength < cz.minLength {
		return
	}
	if !hasToken(h["Vary"], "Accept-Encoding") && !hasToken(h["Vary"], "*") {
		h.Add("Vary", "Accept-Encoding")
	}
	i := cz.choose(in.Header["Accept-Encoding"])
	if i < 0 {
		return
	}
	enc := cz.encoders[i].Get().(encoder)
	cb := &compressBody{src: resp.Body, cz: cz, alg: i, enc: enc, in: cz.bufs.Get().(*[]byte)}
	enc.Reset(&cb.out)
	resp.Body = cb
	resp.ContentLength = -1
	resp.Uncompressed = false
	delete(h, "Content-Length")
	h["Content-Encoding"] = []string{cz.algs[i]}
	if et := h["Etag"]; len(et) == 1 && strings.HasPrefix(et[0], `"`) {
		h["Etag"] = []string{"W/" + et[0]}
	}
}

// compressible reports whether the media type of ct is one to compress.
func (cz *compressor) compressible(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	if ct == "" {
		return false
	}
	for _, e := range cz.exact {
		if strings.EqualFold(ct, e) {
			return true
		}
	}
	for _, p := range cz.prefixes {
		if len(ct) > len(p) && strings.EqualFold(ct[:len(p)], p) {
			return true
		}
	}
	for i := 0; i+1 < len(cz.suffixes); i += 2 {
		p, s := cz.suffixes[i], cz.suffixes[i+1]
		if len(ct) > len(p)+len(s) && strings.EqualFold(ct[:len(p)], p) && strings.EqualFold(ct[len(ct)-len(s):], s) {
			return true
		}
	}
	return false
}

// choose returns the index in cz.algs of the encoding the Accept-Encoding
// values ae prefer: the highest q-value above 0, an encoding not listed
// taking the q of "*", ties going to the server's order; -1 for none.
func (cz *compressor) choose(ae []string) int {
	best, bestQ := -1, 0.0
	for i, alg := range cz.algs {
		q, star := -1.0, -1.0
		for _, v := range ae {
			for part := range strings.SplitSeq(v, ",") {
				name, params, _ := strings.Cut(part, ";")
				name = strings.TrimSpace(name)
				var match bool
				switch {
				case strings.EqualFold(name, alg), alg == EncodingGzip && strings.EqualFold(name, "x-gzip"):
					match = true
				case name == "*":
				default:
					continue
				}
				pq := qValue(params)
				if match {
					q = max(q, pq)
				} else {
					star = max(star, pq)
				}
			}
		}
		if q < 0 {
			q = star
		}
		if q > bestQ {
			best, bestQ = i, q
		}
	}
	return best
}

// qValue returns the q parameter among params (";q=0.5"), 1 when there is
// none and 0 when it is malformed.
func qValue(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0
		}
		return q
	}
	return 1
}

// compressBody is a response body compressed as it is read: each read
// from the server's body is compressed and flushed, so the client gets
// whatever the server has sent so far.
type compressBody struct {
	src  io.ReadCloser
	cz   *compressor
	alg  int
	enc  encoder // nil once returned to the pool
	in   *[]byte // read buffer; nil once returned
	out  bytes.Buffer
	err  error // the source's final error (io.EOF at the end)
	done bool
}

func (b *compressBody) Read(p []byte) (int, error) {
	for b.out.Len() == 0 {
		if b.done {
			return 0, b.err
		}
		n, err := b.src.Read(*b.in)
		if n > 0 {
			if _, werr := b.enc.Write((*b.in)[:n]); werr != nil {
				err = werr
			}
		}
		switch {
		case err == io.EOF:
			if cerr := b.enc.Close(); cerr != nil {
				err = cerr
			}
			b.done, b.err = true, err
			b.release()
		case err != nil:
			b.done, b.err = true, err
			b.release()
		case n > 0:
			if ferr := b.enc.Flush(); ferr != nil {
				b.done, b.err = true, ferr
				b.release()
			}
		}
	}
	return b.out.Read(p)
}

// release returns the encoder and the buffer to their pools.
func (b *compressBody) release() {
	if b.enc != nil {
		b.cz.encoders[b.alg].Put(b.enc)
		b.enc = nil
	}
	if b.in != nil {
		b.cz.bufs.Put(b.in)
		b.in = nil
	}
}

// Close closes the server's body and releases the encoder.
func (b *compressBody) Close() error {
	if !b.done {
		b.done, b.err = true, io.ErrClosedPipe
		b.release() // the next user resets the encoder
	}
	return b.src.Close()
}

var _ io.ReadCloser = (*compressBody)(nil)
