package gate

import (
	"regexp"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// node is a node of a rule's radix tree (routerKind RadixTree). The edge
// into a static node consumes the bytes of its prefix; the edge into a
// parameter node consumes one non-empty path segment (up to the next "/"),
// which must match re when it is set. A node holds the routes whose
// pattern ends there (exact), the pathPrefix routes whose prefix ends
// there, and the routes whose pattern ends there with a catch-all "*".
//
// Static children differ in the first byte of their prefix; insertion
// splits a node where a new prefix diverges from it, so every pattern and
// prefix ends on a node. The tree is built once per generation and only
// read afterwards.
type node struct {
	prefix string
	labels string  // labels[i] == static[i].prefix[0]
	static []*node // static children
	// params are the parameter children: those with a regexp in the
	// order they were declared, then the plain one (re == nil), if any.
	params   []*node
	re       *regexp.Regexp
	reSrc    string // re's source, to share a node between patterns
	exact    []*route
	prefixes []*route
	catchAll []*route
}

// insertStatic returns the node reached from n by the bytes of s,
// creating and splitting nodes as needed.
func (n *node) insertStatic(s string) *node {
	for s != "" {
		i := strings.IndexByte(n.labels, s[0])
		if i < 0 {
			c := &node{prefix: s}
			n.labels += s[:1]
			n.static = append(n.static, c)
			return c
		}
		c := n.static[i]
		l := commonPrefix(s, c.prefix)
		if l < len(c.prefix) {
			mid := &node{prefix: c.prefix[:l], labels: c.prefix[l : l+1], static: []*node{c}}
			c.prefix = c.prefix[l:]
			n.static[i] = mid
			c = mid
		}
		n, s = c, s[l:]
	}
	return n
}

// insertParam returns n's parameter child for the regexp source re (""
// for a plain parameter), creating it. A plain parameter stays last.
func (n *node) insertParam(re string) *node {
	for _, c := range n.params {
		if c.reSrc == re {
			return c
		}
	}
	c := &node{reSrc: re}
	if re != "" {
		c.re = regexp.MustCompile(anchored(re)) // validated
		if k := len(n.params); k > 0 && n.params[k-1].reSrc == "" {
			n.params = append(n.params[:k-1], c, n.params[k-1])
			return c
		}
	}
	n.params = append(n.params, c)
	return c
}

// insert adds an exact or pattern route; toks is nil for an exact path of
// routerKind Ordered, which is literal.
func (n *node) insert(p *route, toks []patternToken, catchAll bool) {
	if toks == nil {
		n = n.insertStatic(p.exact)
	}
	for _, t := range toks {
		if t.param {
			n = n.insertParam(t.re)
		} else {
			n = n.insertStatic(t.static)
		}
	}
	if catchAll {
		n.catchAll = append(n.catchAll, p)
	} else {
		n.exact = append(n.exact, p)
	}
}

func (n *node) child(c byte) *node {
	// A loop beats IndexByte's call on the few labels a node has.
	for i := 0; i < len(n.labels); i++ {
		if n.labels[i] == c {
			return n.static[i]
		}
	}
	return nil
}

func commonPrefix(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// search is one lookup's state: the request, the parameters captured on
// the way down, and whether a path matched all but the method (405).
// With collect set it visits every path that matches all but the method
// and gathers their methods in it instead of stopping at the first.
type search struct {
	q       matchInput // a copy: a pointer would escape with params
	params  []pipeline.Param
	base    int // len(params) when the lookup began
	status  int
	collect *methodSet
}

// find walks the tree for exact and pattern routes, most specific first:
// at each node a static edge, then regexp parameters, then the plain
// parameter, then the node's catch-all. The depth of the recursion is
// bounded by the tree's, not by the request path's.
func (s *search) find(n *node, path string) *route {
	if path == "" {
		if p := s.pick(n.exact); p != nil {
			return p
		}
	} else {
		if c := n.child(path[0]); c != nil && strings.HasPrefix(path, c.prefix) {
			if p := s.find(c, path[len(c.prefix):]); p != nil {
				return p
			}
		}
		if len(n.params) > 0 {
			end := strings.IndexByte(path, '/')
			if end < 0 {
				end = len(path)
			}
			if end > 0 {
				seg := path[:end]
				for _, c := range n.params {
					if c.re != nil && !c.re.MatchString(seg) {
						continue
					}
					k := len(s.params)
					s.params = append(s.params, pipeline.Param{Value: seg})
					if p := s.find(c, path[end:]); p != nil {
						return p
					}
					s.params = s.params[:k]
				}
			}
		}
	}
	if len(n.catchAll) > 0 {
		k := len(s.params)
		s.params = append(s.params, pipeline.Param{Value: path})
		if p := s.pick(n.catchAll); p != nil {
			return p
		}
		s.params = s.params[:k]
	}
	return nil
}

// findPrefix returns the pathPrefix route with the longest prefix of
// path that matches the rest of the request.
func (s *search) findPrefix(n *node, path string) *route {
	if path != "" {
		if c := n.child(path[0]); c != nil && strings.HasPrefix(path, c.prefix) {
			if p := s.findPrefix(c, path[len(c.prefix):]); p != nil {
				return p
			}
		}
	}
	return s.pick(n.prefixes)
}

// pick returns the first of routes that matches the request's headers,
// query and method, naming the captured parameters after its pattern.
func (s *search) pick(routes []*route) *route {
	for _, p := range routes {
		if s.accept(p) {
			for i := s.base; i < len(s.params); i++ {
				s.params[i].Name = p.paramNames[i-s.base]
			}
			return p
		}
	}
	return nil
}

// accept reports whether p, whose path matched, matches the rest of the
// request; it notes a 405 when only the method does not match.
func (s *search) accept(p *route) bool {
	if !p.matchConditions(&s.q) {
		return false
	}
	if s.collect != nil {
		s.collect.add(p.methods)
		return false
	}
	if !p.methods.allows(s.q.method) {
		s.status = 405
		return false
	}
	return true
}

// maxPrefixLevels bounds the pathPrefix nodes an Ordered lookup merges;
// a path with more goes through the rule's paths one by one.
const maxPrefixLevels = 16

// inOrder finds, for routerKind Ordered, the first of r's paths in
// declaration order that matches, without trying them one by one: the
// tree gives the exact paths and prefixes that match the path, which are
// merged by declaration index with the regexps (tried only when their
// turn comes) and the paths with no path condition.
func (s *search) inOrder(r *rule) *route {
	var lists [maxPrefixLevels + 3][]*route
	k := 0
	n, path := r.tree, s.q.path
	for path != "" {
		c := n.child(path[0])
		if c == nil || !strings.HasPrefix(path, c.prefix) {
			break
		}
		n, path = c, path[len(c.prefix):]
		if len(c.prefixes) > 0 {
			if k == maxPrefixLevels {
				return s.oneByOne(r)
			}
			lists[k] = c.prefixes
			k++
		}
		if path == "" && len(c.exact) > 0 {
			lists[k] = c.exact
			k++
		}
	}
	regexps := k
	lists[k], lists[k+1] = r.regexps, r.any
	k += 2
	for {
		best := -1
		for i := range k {
			if len(lists[i]) > 0 && (best < 0 || lists[i][0].index < lists[best][0].index) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		p := lists[best][0]
		lists[best] = lists[best][1:]
		if best == regexps && !p.re.MatchString(s.q.path) {
			continue
		}
		if s.accept(p) {
			return p
		}
	}
}

// oneByOne tries r's paths in declaration order.
func (s *search) oneByOne(r *rule) *route {
	for _, p := range r.ordered {
		if p.matchPath(s.q.path) && s.accept(p) {
			return p
		}
	}
	return nil
}
