package gate

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/pipeline"
)

// routerOf compiles a router of n generated paths, each made by path(i),
// into one rule of the given kind.
func routerOf(t testing.TB, kind string, n int, path func(i int) Path) *router {
	t.Helper()
	spec := &Spec{RouterKind: kind, Rules: []Rule{{}}}
	for i := range n {
		p := path(i)
		p.Backend = fmt.Sprint("b", i)
		spec.Rules[0].Paths = append(spec.Rules[0].Paths, p)
	}
	rt, err := compileRouter(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// routerCases are the 1000-route sets of the allocation test and the
// benchmarks, with a request that matches the 777th route.
var routerCases = []struct {
	name, kind, path string
	gen              func(i int) Path
	params           int
}{
	{"static-1000", RouterRadixTree, "/svc777/items/list", func(i int) Path { return Path{Path: fmt.Sprintf("/svc%d/items/list", i)} }, 0},
	{"param-1000", RouterRadixTree, "/svc777/users/42/orders/9", func(i int) Path {
		return Path{Path: fmt.Sprintf("/svc%d/users/{id}/orders/{order}", i)}
	}, 2},
	{"regexp-param-1000", RouterRadixTree, "/svc777/users/42/orders/9", func(i int) Path {
		return Path{Path: fmt.Sprintf("/svc%d/users/{id}/orders/{order:[0-9]+}", i)}
	}, 2},
	{"catchall-1000", RouterRadixTree, "/svc777/static/css/site.css", func(i int) Path { return Path{Path: fmt.Sprintf("/svc%d/static/*", i)} }, 1},
	{"prefix-1000", RouterRadixTree, "/svc777/a/b/c", func(i int) Path { return Path{PathPrefix: fmt.Sprintf("/svc%d/", i)} }, 0},
	{"headers-1000", RouterRadixTree, "/svc777/items?v=2", func(i int) Path {
		return Path{Path: fmt.Sprintf("/svc%d/items", i), Headers: []ValueMatch{{Key: "X-Env", Values: []string{"canary"}}},
			Queries: []ValueMatch{{Key: "v", Regexp: "^[0-9]$"}}, MatchAllQuery: true}
	}, 0},
	{"ordered-prefix-1000", RouterOrdered, "/svc777/a/b/c", func(i int) Path { return Path{PathPrefix: fmt.Sprintf("/svc%d/", i)} }, 0},
	{"ordered-static-1000", RouterOrdered, "/svc777/items/list", func(i int) Path { return Path{Path: fmt.Sprintf("/svc%d/items/list", i)} }, 0},
	{"regexp-1000", RouterRadixTree, "/svc777/items/list", func(i int) Path { return Path{PathRegexp: fmt.Sprintf("^/svc%d/items/", i)} }, 0},
}

func routerInput(target string) matchInput {
	path, query, _ := strings.Cut(target, "?")
	return matchInput{host: "api.test", path: path, method: http.MethodGet, rawQuery: query,
		header: http.Header{"X-Env": {"canary"}}}
}

// TestRouterLookupDoesNotAllocate: with 1000 routes, a lookup of a static,
// parameter, catch-all, prefix or conditional route allocates nothing
// (given room for the parameters, as the server's request info has).
func TestRouterLookupDoesNotAllocate(t *testing.T) {
	for _, tc := range routerCases {
		if strings.HasPrefix(tc.name, "regexp-1000") {
			continue // pathRegexp is not the common path
		}
		t.Run(tc.name, func(t *testing.T) {
			rt := routerOf(t, tc.kind, 1000, tc.gen)
			q := routerInput(tc.path)
			var buf [4]pipeline.Param
			p, params, _ := rt.lookup(&q, buf[:0])
			if p == nil || p.backend != "b777" || len(params) != tc.params {
				t.Fatalf("lookup = %v %v", p, params)
			}
			allocs := testing.AllocsPerRun(200, func() {
				if p, _, _ := rt.lookup(&q, buf[:0]); p == nil {
					t.Fatal("no match")
				}
			})
			if allocs != 0 {
				t.Errorf("lookup allocates %v times", allocs)
			}
		})
	}
}

// TestRadixTreeEveryRoute looks every route of a mixed tree up and checks
// that the lookup finds that route and no other.
func TestRadixTreeEveryRoute(t *testing.T) {
	rt := routerOf(t, RouterRadixTree, 600, func(i int) Path {
		switch i % 3 {
		case 0:
			return Path{Path: fmt.Sprintf("/r%d/x", i)}
		case 1:
			return Path{Path: fmt.Sprintf("/r%d/{p}/y", i)}
		}
		return Path{Path: fmt.Sprintf("/r%d/{p:[a-z]+}/*", i)}
	})
	for i := range 600 {
		path := []string{"/r%d/x", "/r%d/v/y", "/r%d/v/w/z"}[i%3]
		q := matchInput{path: fmt.Sprintf(path, i), method: "GET"}
		p, params, _ := rt.lookup(&q, nil)
		if p == nil || p.backend != fmt.Sprint("b", i) {
			t.Fatalf("%s: got %v", q.path, p)
		}
		if i%3 == 2 && (len(params) != 2 || params[0] != (pipeline.Param{Name: "p", Value: "v"}) || params[1] != (pipeline.Param{Name: "*", Value: "w/z"})) {
			t.Errorf("%s: params %v", q.path, params)
		}
	}
	// lookup appends to the parameters it is given.
	q := matchInput{path: "/r1/v/y", method: "GET"}
	pre := []pipeline.Param{{Name: "pre", Value: "x"}}
	if _, params, _ := rt.lookup(&q, pre); len(params) != 2 || params[0].Name != "pre" || params[1] != (pipeline.Param{Name: "p", Value: "v"}) {
		t.Errorf("appended params: %v", params)
	}
}

// TestRouterHostilePaths: very long paths, many segments and long
// segments are looked up in a tree of patterns without panicking and
// without recursing deeper than the tree.
func TestRouterHostilePaths(t *testing.T) {
	rt := routerOf(t, RouterRadixTree, 6, func(i int) Path {
		return Path{Path: []string{"/{a}/{b}/{c}", "/{a}/{b:[0-9]+}/{c}", "/x/*", "/{a}/{b}/{c}/d", "/{a:.*}/{b}", "/a/b/c"}[i]}
	})
	long := strings.Repeat("/a", 1<<19)
	tests := []struct {
		path string
		want string
	}{
		{long, ""},
		{"/" + strings.Repeat("9", 1<<20), ""},
		{"/a/" + strings.Repeat("9", 1<<20) + "/c", "b1"},
		{"/x" + long, "b2"},
		{"/" + strings.Repeat("/", 1000), ""},
		{"/a/b/c", "b5"},
		{"/a/b/c/d", "b3"},
		{"/a/b", "b4"},
		{"", ""},
	}
	for _, tt := range tests {
		q := matchInput{path: tt.path, method: "GET"}
		p, _, status := rt.lookup(&q, nil)
		got := ""
		if p != nil {
			got = p.backend
		}
		if got != tt.want || (p == nil && status != http.StatusNotFound) {
			t.Errorf("path of %d bytes: got %q %d, want %q", len(tt.path), got, status, tt.want)
		}
	}
}

// BenchmarkRouter measures a lookup among 1000 routes of each kind; the
// request matches the 777th route. The figures are in the README.
func BenchmarkRouter(b *testing.B) {
	for _, tc := range routerCases {
		b.Run(tc.name, func(b *testing.B) {
			rt := routerOf(b, tc.kind, 1000, tc.gen)
			q := routerInput(tc.path)
			var buf [4]pipeline.Param
			b.ReportAllocs()
			for b.Loop() {
				rt.lookup(&q, buf[:0])
			}
		})
	}
}

// TestRadixTreeEasegressExamples: the examples of Easegress's RadixTree
// router documentation route the same here.
func TestRadixTreeEasegressExamples(t *testing.T) {
	for _, tt := range []struct {
		paths []string
		path  string
		want  int // index of the winning path
	}{
		{[]string{"/users/{username}/hovercard", "/users/{username:[a-z]+}/hovercard", "/users/*", "/users/aniaan/hovercard"}, "/users/aniaan/hovercard", 3},
		{[]string{"/users/{username}/hovercard", "/users/{username:[a-z]+}/hovercard", "/users/*", "/users/aniaan/hovercard"}, "/users/12345/hovercard", 0},
		{[]string{"/users/{username}/hovercard", "/users/{username:[a-z]+}/hovercard", "/users/*", "/users/aniaan/hovercard"}, "/users/localvar/hovercard", 1},
		{[]string{"/users/{username}/hovercard", "/users/{username:[a-z]+}/hovercard", "/users/*", "/users/aniaan/hovercard"}, "/users/test", 2},
		{[]string{"/user/{username}/123", "/user/wang/{num}", "/{type}/wang/123"}, "/user/wang/123", 1},
	} {
		rt := routerOf(t, RouterRadixTree, len(tt.paths), func(i int) Path { return Path{Path: tt.paths[i]} })
		q := matchInput{path: tt.path, method: "GET"}
		if p, _, _ := rt.lookup(&q, nil); p == nil || p.backend != fmt.Sprint("b", tt.want) {
			t.Errorf("%s among %v: got %v, want path %d", tt.path, tt.paths, p, tt.want)
		}
	}
}

// TestOrderedIndexMatchesOneByOne: the indexed lookup of routerKind
// Ordered chooses what trying the paths one by one chooses, on random
// rules and requests: route, status and Allow.
func TestOrderedIndexMatchesOneByOne(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	words := []string{"/", "/a", "/a/", "/a/b", "/ab", "/b", "/a/b/c", "/abc"}
	pick := func() string { return words[rnd.IntN(len(words))] }
	for round := range 300 {
		spec := &Spec{Rules: []Rule{{}}}
		for j := range 1 + rnd.IntN(12) {
			p := Path{Backend: fmt.Sprint("b", j)}
			switch rnd.IntN(4) {
			case 0:
				p.Path = pick()
			case 1:
				p.PathPrefix = pick()
			case 2:
				p.PathRegexp = "^" + pick() + "$"
			}
			if rnd.IntN(3) == 0 {
				p.Methods = []string{[]string{"GET", "POST", "PURGE"}[rnd.IntN(3)]}
			}
			if rnd.IntN(4) == 0 {
				p.Headers = []ValueMatch{{Key: "X-A", Values: []string{"1"}}}
			}
			spec.Rules[0].Paths = append(spec.Rules[0].Paths, p)
		}
		rt, err := compileRouter(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := &rt.rules[0]
		for range 20 {
			q := matchInput{path: pick() + []string{"", "x", "/c"}[rnd.IntN(3)], method: []string{"GET", "POST", "DELETE"}[rnd.IntN(3)]}
			if rnd.IntN(2) == 0 {
				q.header = http.Header{"X-A": {"1"}}
			}
			s1 := search{q: q, status: 404}
			s2 := search{q: q, status: 404}
			p1, p2 := s1.inOrder(r), s2.oneByOne(r)
			if p1 != p2 || s1.status != s2.status {
				t.Fatalf("round %d, %s %s: indexed %v %d, one by one %v %d", round, q.method, q.path, p1, s1.status, p2, s2.status)
			}
			var m1, m2 methodSet
			s1, s2 = search{q: q, collect: &m1}, search{q: q, collect: &m2}
			s1.inOrder(r)
			s2.oneByOne(r)
			if fmt.Sprint(m1) != fmt.Sprint(m2) {
				t.Fatalf("round %d, %s: Allow %v, one by one %v", round, q.path, m1, m2)
			}
		}
	}
}

// TestOrderedManyPrefixLevels: a path under more nested prefixes than the
// indexed lookup merges still gets the first that matches.
func TestOrderedManyPrefixLevels(t *testing.T) {
	rt := routerOf(t, RouterOrdered, 40, func(i int) Path {
		if i == 30 {
			return Path{PathPrefix: "/", Methods: []string{"GET"}}
		}
		return Path{PathPrefix: "/" + strings.Repeat("a", 40-i), Methods: []string{"POST"}}
	})
	for _, tt := range []struct{ method, want string }{{"GET", "b30"}, {"POST", "b0"}} {
		q := matchInput{path: "/" + strings.Repeat("a", 50), method: tt.method}
		if p, _, _ := rt.lookup(&q, nil); p == nil || p.backend != tt.want {
			t.Errorf("%s: got %v, want %s", tt.method, p, tt.want)
		}
	}
	q := matchInput{path: "/" + strings.Repeat("a", 50), method: "DELETE"}
	if got := rt.allowed(&q); got != "GET, HEAD, POST" {
		t.Errorf("Allow: %q", got)
	}
}
