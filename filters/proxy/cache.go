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
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// Defaults of a pool's memoryCache.
const (
	// DefaultCacheMaxEntryBytes is the largest body cached when
	// maxEntryBytes is 0: 1 MiB.
	DefaultCacheMaxEntryBytes = 1 << 20
	// DefaultCacheMaxTotalBytes bounds all of a cache's entries when
	// maxTotalBytes is 0: 64 MiB.
	DefaultCacheMaxTotalBytes = 64 << 20
	// cacheEntryOverhead is what an entry is taken to cost besides its
	// key, header and body.
	cacheEntryOverhead = 256
)

// MemoryCacheSpec is Easegress's memoryCache of a pool, with a bound on
// the total size:
//
//	memoryCache:
//	  expiration: 10s
//	  maxEntryBytes: 65536
//	  maxTotalBytes: 67108864
//	  codes: [200, 301]
//	  methods: [GET, HEAD]
//
// The key of an entry is the request's method, host, path and query. A
// request is answered from the cache when its method is one of methods,
// it has no Authorization header, its Cache-Control has neither no-cache
// nor no-store (nor max-age=0, nor Pragma: no-cache), and a fresh entry
// for its key has the same values of the headers the response's Vary
// named. Otherwise it goes to a server, and the response is stored when
// its status is one of codes, it sets no cookie, has no Vary: *, no
// trailers, its Cache-Control has none of no-store, no-cache and
// private, its body (read to the end by the client) is at most
// maxEntryBytes, and the request did not say no-store. The entry lives
// for expiration, or the response's s-maxage or max-age when shorter, on
// Env.Clock. When the entries exceed maxTotalBytes the least recently
// used go. The pool's status counts hits, misses and entries.
type MemoryCacheSpec struct {
	// Codes are the status codes cached. Empty means [200]. Each must be
	// in 200..599.
	Codes []int `yaml:"codes,omitempty"`
	// Expiration is how long an entry lives at most, as a duration;
	// required, more than 0.
	Expiration time.Duration `yaml:"expiration"`
	// MaxEntryBytes is the largest body cached, in bytes. 0 means
	// DefaultCacheMaxEntryBytes (1 MiB); negative is an error.
	MaxEntryBytes int64 `yaml:"maxEntryBytes,omitempty"`
	// Methods are the request methods cached. Empty means [GET, HEAD].
	Methods []string `yaml:"methods,omitempty"`
	// MaxTotalBytes bounds the size of all entries (bodies, headers and
	// keys); the least recently used are evicted. 0 means
	// DefaultCacheMaxTotalBytes (64 MiB); it must not be less than
	// maxEntryBytes. Not an Easegress field.
	MaxTotalBytes int64 `yaml:"maxTotalBytes,omitempty"`
}

func (cs *MemoryCacheSpec) validate(field string) error {
	switch {
	case cs.Expiration <= 0:
		return pipeline.FieldErr(field+".expiration", fmt.Errorf("%w: required, more than 0", ErrBadValue))
	case cs.MaxEntryBytes < 0:
		return pipeline.FieldErr(field+".maxEntryBytes", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	case cs.MaxTotalBytes < 0:
		return pipeline.FieldErr(field+".maxTotalBytes", fmt.Errorf("%w: must be 0 or more", ErrBadValue))
	}
	entry, total := cs.limits()
	if total < entry {
		return pipeline.FieldErr(field+".maxTotalBytes", fmt.Errorf("%w: %d is less than maxEntryBytes (%d)", ErrBadValue, total, entry))
	}
	for i, c := range cs.Codes {
		if c < 200 || c > 599 {
			return pipeline.FieldErr(field+".codes["+strconv.Itoa(i)+"]", fmt.Errorf("%w: status code %d is not in 200..599", ErrBadValue, c))
		}
	}
	for i, m := range cs.Methods {
		if !validToken(m) {
			return pipeline.FieldErr(field+".methods["+strconv.Itoa(i)+"]", fmt.Errorf("%w: %q is not a method", ErrBadValue, m))
		}
	}
	return nil
}

func (cs *MemoryCacheSpec) limits() (entry, total int64) {
	entry, total = cs.MaxEntryBytes, cs.MaxTotalBytes
	if entry == 0 {
		entry = DefaultCacheMaxEntryBytes
	}
	if total == 0 {
		total = DefaultCacheMaxTotalBytes
	}
	return entry, total
}

// cacheSettings are what a cache is built from; a reload with the same
// settings keeps the cache.
type cacheSettings struct {
	codes    codeSet
	methods  string // joined by spaces
	ttl      time.Duration
	maxEntry int64
	maxTotal int64
}

// memCache is a pool's response cache: a map of entries with an LRU list,
// behind one mutex held only for map and list updates.
type memCache struct {
	settings cacheSettings
	methods  []string
	clock    pipeline.Clock

	mu      sync.Mutex
	entries map[string]*cacheEntry
	head    *cacheEntry // most recently used
	tail    *cacheEntry
	size    int64

	hits, misses, stores, evictions atomic.Uint64
}

// cacheEntry is one cached response.
type cacheEntry struct {
	key        string
	status     int
	header     http.Header // never changed; each hit gets a copy
	body       []byte
	length     int64 // ContentLength of the response
	stored     time.Time
	expires    time.Time
	varyNames  []string // canonical header names the response's Vary named
	varyValues []string // the request's values of them, joined
	size       int64
	prev, next *cacheEntry
}

func newMemCache(spec *MemoryCacheSpec, clk pipeline.Clock) *memCache {
	if clk == nil {
		clk = clock.Real()
	}
	mc := &memCache{clock: clk, entries: map[string]*cacheEntry{}}
	mc.methods = spec.Methods
	if len(mc.methods) == 0 {
		mc.methods = []string{http.MethodGet, http.MethodHead}
	}
	codes := spec.Codes
	if len(codes) == 0 {
		codes = []int{http.StatusOK}
	}
	for _, c := range codes {
		mc.settings.codes.add(c)
	}
	mc.settings.methods = strings.Join(mc.methods, " ")
	mc.settings.ttl = spec.Expiration
	mc.settings.maxEntry, mc.settings.maxTotal = spec.limits()
	return mc
}

// cacheability of a request.
type cacheUse uint8

const (
	cacheNone   cacheUse = iota // not a request the cache deals with
	cacheLookup                 // look up, and store the answer
	cacheStore                  // do not look up (no-cache), but store the answer
)

// use says what the cache may do for in.
func (mc *memCache) use(in *http.Request) cacheUse {
	m := in.Method
	if m == "" {
		m = http.MethodGet
	}
	if !slices.Contains(mc.methods, m) || len(in.Header["Authorization"]) > 0 {
		return cacheNone
	}
	cc := in.Header["Cache-Control"]
	if hasToken(cc, "no-store") {
		return cacheNone
	}
	if hasToken(cc, "no-cache") || hasToken(in.Header["Pragma"], "no-cache") || directiveValue(cc, "max-age") == 0 {
		return cacheStore
	}
	return cacheLookup
}

// appendKey appends in's cache key to b: method, host, path and query.
func appendKey(b []byte, in *http.Request) []byte {
	m := in.Method
	if m == "" {
		m = http.MethodGet
	}
	b = append(b, m...)
	b = append(b, ' ')
	b = append(b, in.Host...)
	b = append(b, ' ')
	b = append(b, in.URL.EscapedPath()...)
	if in.URL.RawQuery != "" || in.URL.ForceQuery {
		b = append(b, '?')
		b = append(b, in.URL.RawQuery...)
	}
	return b
}

// lookup returns a response to in from a fresh entry, or nil.
func (mc *memCache) lookup(in *http.Request) *http.Response {
	var kb [256]byte
	key := appendKey(kb[:0], in)
	now := mc.clock.Now()
	mc.mu.Lock()
	e := mc.entries[string(key)]
	if e != nil && !now.Before(e.expires) {
		mc.remove(e)
		e = nil
	}
	if e != nil && !e.matches(in) {
		e = nil
	}
	if e != nil {
		mc.toFront(e)
	}
	mc.mu.Unlock()
	if e == nil {
		mc.misses.Add(1)
		return nil
	}
	mc.hits.Add(1)
	h := e.header.Clone()
	if age := int64(now.Sub(e.stored) / time.Second); age > 0 {
		h["Age"] = []string{strconv.FormatInt(age, 10)}
	}
	resp := &http.Response{
		Status:        strconv.Itoa(e.status) + " " + http.StatusText(e.status),
		StatusCode:    e.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: e.length,
		Request:       in,
	}
	if len(e.body) == 0 {
		resp.Body = http.NoBody
	} else {
		cb := &cachedBody{}
		cb.Reset(e.body)
		resp.Body = cb
	}
	return resp
}

// matches reports whether in has the values of the Vary headers e was
// stored with.
func (e *cacheEntry) matches(in *http.Request) bool {
	for i, name := range e.varyNames {
		if strings.Join(in.Header[name], ",") != e.varyValues[i] {
			return false
		}
	}
	return true
}

// store arranges for resp, the answer to in, to be cached once its body
// has been read to the end, when the rules allow it (see MemoryCacheSpec).
func (mc *memCache) store(in *http.Request, resp *http.Response) {
	if resp == nil || !mc.settings.codes.has(resp.StatusCode) || len(resp.Trailer) > 0 {
		return
	}
	h := resp.Header
	if len(h["Set-Cookie"]) > 0 || hasToken(h["Vary"], "*") {
		return
	}
	cc := h["Cache-Control"]
	if hasToken(cc, "no-store") || hasToken(cc, "private") || hasToken(cc, "no-cache") {
		return
	}
	ttl := mc.settings.ttl
	age := directiveValue(cc, "s-maxage")
	if age < 0 {
		age = directiveValue(cc, "max-age")
	}
	if age >= 0 {
		ttl = min(ttl, time.Duration(age)*time.Second)
	}
	if ttl <= 0 {
		return
	}
	if resp.ContentLength > mc.settings.maxEntry && in.Method != http.MethodHead {
		return
	}
	var kb [256]byte
	e := &cacheEntry{
		key:    string(appendKey(kb[:0], in)),
		status: resp.StatusCode,
		header: h.Clone(),
		length: resp.ContentLength,
	}
	for _, v := range h["Vary"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				name = http.CanonicalHeaderKey(name)
				e.varyNames = append(e.varyNames, name)
				e.varyValues = append(e.varyValues, strings.Join(in.Header[name], ","))
			}
		}
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		mc.insert(e, ttl)
		return
	}
	resp.Body = &cacheTee{rc: resp.Body, mc: mc, e: e, ttl: ttl, resp: resp}
}

// insert adds e, which lives for ttl from now, replacing the entry of
// its key and evicting the least recently used entries to make room.
func (mc *memCache) insert(e *cacheEntry, ttl time.Duration) {
	e.size = int64(len(e.key)+len(e.body)) + cacheEntryOverhead
	for k, vv := range e.header {
		e.size += int64(len(k))
		for _, v := range vv {
			e.size += int64(len(v))
		}
	}
	if e.size > mc.settings.maxTotal {
		return
	}
	e.stored = mc.clock.Now()
	e.expires = e.stored.Add(ttl)
	mc.mu.Lock()
	if old := mc.entries[e.key]; old != nil {
		mc.remove(old)
	}
	for mc.size+e.size > mc.settings.maxTotal && mc.tail != nil {
		mc.remove(mc.tail)
		mc.evictions.Add(1)
	}
	mc.entries[e.key] = e
	mc.size += e.size
	e.next = mc.head
	if mc.head != nil {
		mc.head.prev = e
	}
	mc.head = e
	if mc.tail == nil {
		mc.tail = e
	}
	mc.mu.Unlock()
	mc.stores.Add(1)
}

// remove unlinks e; mc.mu is held.
func (mc *memCache) remove(e *cacheEntry) {
	delete(mc.entries, e.key)
	mc.size -= e.size
	mc.unlink(e)
}

func (mc *memCache) unlink(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		mc.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		mc.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// toFront makes e the most recently used; mc.mu is held.
func (mc *memCache) toFront(e *cacheEntry) {
	if mc.head == e {
		return
	}
	mc.unlink(e)
	e.next = mc.head
	if mc.head != nil {
		mc.head.prev = e
	}
	mc.head = e
	if mc.tail == nil {
		mc.tail = e
	}
}

// CacheStatus is a pool's memory cache's counters.
type CacheStatus struct {
	// Hits counts the requests answered from the cache, and Misses those
	// looked up in vain (requests that may not use the cache are neither).
	Hits   uint64 `json:"hits" yaml:"hits"`
	Misses uint64 `json:"misses" yaml:"misses"`
	// Stores counts the responses stored, and Evictions the entries
	// dropped to make room (expired entries are not counted).
	Stores    uint64 `json:"stores" yaml:"stores"`
	Evictions uint64 `json:"evictions" yaml:"evictions"`
	// Entries and Bytes are the entries held now and what they cost.
	Entries int   `json:"entries" yaml:"entries"`
	Bytes   int64 `json:"bytes" yaml:"bytes"`
}

func (mc *memCache) status() *CacheStatus {
	mc.mu.Lock()
	n, size := len(mc.entries), mc.size
	mc.mu.Unlock()
	return &CacheStatus{
		Hits: mc.hits.Load(), Misses: mc.misses.Load(), Stores: mc.stores.Load(),
		Evictions: mc.evictions.Load(), Entries: n, Bytes: size,
	}
}

// directiveValue returns the number of seconds of the Cache-Control
// directive name (max-age=60), or -1 when it is absent or malformed.
func directiveValue(values []string, name string) int64 {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), name) {
				continue
			}
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if err != nil || n < 0 {
				return -1
			}
			return n
		}
	}
	return -1
}

// cachedBody is the body of a response from the cache.
type cachedBody struct {
	bytes.Reader
}

func (*cachedBody) Close() error { return nil }

// cacheTee is the body of a response being stored: it copies what the
// client reads, up to the cache's limit, and stores the entry when the
// body has been read to the end within the limit.
type cacheTee struct {
	rc   io.ReadCloser
	mc   *memCache
	e    *cacheEntry
	ttl  time.Duration
	resp *http.Response // for its trailers, known at the end
	buf  bytes.Buffer
	over bool
	done bool
}

func (t *cacheTee) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if t.done {
		return n, err
	}
	if n > 0 && !t.over {
		if int64(t.buf.Len()+n) > t.mc.settings.maxEntry {
			t.over = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	if err != nil {
		t.done = true
		if err == io.EOF && !t.over && len(t.resp.Trailer) == 0 {
			t.e.body = t.buf.Bytes()
			t.e.length = int64(len(t.e.body))
			t.mc.insert(t.e, t.ttl)
		}
	}
	return n, err
}

func (t *cacheTee) Close() error {
	t.done = true
	return t.rc.Close()
}

var (
	_ io.ReadCloser = (*cachedBody)(nil)
	_ io.ReadCloser = (*cacheTee)(nil)
)
