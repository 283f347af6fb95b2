package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sticky-session modes (loadBalance.stickySession.mode), as in Easegress.
const (
	// StickyCookieConsistentHash hashes the value of the application's
	// cookie (appCookieName) to a server.
	StickyCookieConsistentHash = "CookieConsistentHash"
	// StickyDurationBased sets a cookie (lbCookieName) naming the chosen
	// server, and sends the requests that carry it to that server until the
	// cookie expires (lbCookieExpire) or the server leaves the pool.
	StickyDurationBased = "DurationBased"
	// StickyApplicationBased follows the application's session: when a
	// response sets the application's cookie (appCookieName), it sets a
	// cookie naming the server too; requests with the application's cookie
	// go to the server the load balancer's cookie names, or else to the
	// server the application cookie's value hashes to.
	StickyApplicationBased = "ApplicationBased"
)

// Defaults of a sticky session.
const (
	// DefaultLBCookieName is the name of the cookie naming the server.
	DefaultLBCookieName = "EG_SESSION_STICKY"
	// DefaultLBCookieExpire is how long that cookie lives.
	DefaultLBCookieExpire = 2 * time.Hour
)

// sticky sends requests of a session to the same server, and the others
// (or those whose server has left the pool) to base. It builds the
// Set-Cookie value of each server once, so that Choose and respond do not
// allocate unless they set a cookie.
type sticky struct {
	mode      string
	appCookie string
	lbCookie  string
	servers   []*Server
	setCookie []string  // setCookie[i]: the Set-Cookie value naming servers[i]
	table     hashTable // CookieConsistentHash and ApplicationBased
	base      LoadBalancer
	feedback  FeedbackBalancer // base, when it takes feedback
}

func newSticky(spec *StickySessionSpec, hashing string, servers []*Server, base LoadBalancer) *sticky {
	lb := &sticky{
		mode:      spec.Mode,
		appCookie: spec.AppCookieName,
		lbCookie:  spec.LBCookieName,
		servers:   servers,
		base:      base,
	}
	lb.feedback, _ = base.(FeedbackBalancer)
	if lb.lbCookie == "" {
		lb.lbCookie = DefaultLBCookieName
	}
	expire := spec.LBCookieExpire
	if expire <= 0 {
		expire = DefaultLBCookieExpire
	}
	maxAge := strconv.FormatInt(int64((expire+time.Second-1)/time.Second), 10)
	for _, s := range servers {
		lb.setCookie = append(lb.setCookie, lb.lbCookie+"="+s.id+"; Path=/; Max-Age="+maxAge+"; HttpOnly")
	}
	if lb.mode != StickyDurationBased {
		lb.table = newHashTable(hashing, servers)
	}
	return lb
}

func (lb *sticky) Choose(r *http.Request) *Server {
	if s := lb.stuck(r); s != nil {
		if lb.feedback != nil {
			s.stats.inflight.Add(1) // base's Done will count it out
		}
		return s
	}
	return lb.base.Choose(r)
}

// stuck returns the server of r's session, or nil.
func (lb *sticky) stuck(r *http.Request) *Server {
	switch lb.mode {
	case StickyCookieConsistentHash:
		if v, ok := cookieValue(r.Header, lb.appCookie); ok {
			return lb.table.lookup(hashString(v))
		}
	case StickyDurationBased:
		return lb.named(r)
	case StickyApplicationBased:
		if v, ok := cookieValue(r.Header, lb.appCookie); ok {
			if s := lb.named(r); s != nil {
				return s
			}
			return lb.table.lookup(hashString(v))
		}
	}
	return nil
}

// named returns the server r's load-balancer cookie names, if it names one
// of the pool's.
func (lb *sticky) named(r *http.Request) *Server {
	v, ok := cookieValue(r.Header, lb.lbCookie)
	if !ok {
		return nil
	}
	for _, s := range lb.servers {
		if s.id == v {
			return s
		}
	}
	return nil
}

// Done passes the outcome on to base, which learns from the sticky choices
// too: Choose counts them in flight for a base that counts (leastRequest,
// ewma), so that base's Done stays balanced.
func (lb *sticky) Done(s *Server, d time.Duration, failed bool) {
	if lb.feedback != nil {
		lb.feedback.Done(s, d, failed)
	}
}

// respond sets the load-balancer cookie naming s on resp, the response of
// s to r, when the mode calls for it: always with DurationBased (unless r
// already carries that cookie, so the session expires lbCookieExpire after
// it began), and with ApplicationBased when resp sets the application's
// cookie.
func (lb *sticky) respond(r *http.Request, resp *http.Response, s *Server) {
	switch lb.mode {
	case StickyDurationBased:
		if v, ok := cookieValue(r.Header, lb.lbCookie); ok && v == s.id {
			return
		}
	case StickyApplicationBased:
		if !setsCookie(resp.Header, lb.appCookie) {
			return
		}
	default:
		return
	}
	for i, srv := range lb.servers {
		if srv == s {
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			resp.Header.Add("Set-Cookie", lb.setCookie[i])
			return
		}
	}
}

func (lb *sticky) inherit(prev LoadBalancer) {
	p, ok := prev.(*sticky)
	if !ok {
		return
	}
	if inh, ok := lb.base.(inheritor); ok {
		inh.inherit(p.base)
	}
}

// cookieValue returns the value of the cookie called name in h's Cookie
// headers, in one pass and without allocating.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for i := 0; i < len(line); {
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			j := i
			for j < len(line) && line[j] != ';' {
				j++
			}
			part := line[i:j]
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				v := strings.TrimRight(part[len(name)+1:], " \t")
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
			i = j + 1
		}
	}
	return "", false
}

// setsCookie reports whether h (a response's header) sets the cookie name.
func setsCookie(h http.Header, name string) bool {
	for _, line := range h["Set-Cookie"] {
		if k, _, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == name {
			return true
		}
	}
	return false
}

// responder is implemented by load balancers that add to the response of
// the server they chose (sticky sessions set a cookie). The pool calls
// respond once per request, for the response it keeps when the attempt
// succeeded, before any later filter sees it.
type responder interface {
	respond(r *http.Request, resp *http.Response, s *Server)
}

var (
	_ FeedbackBalancer = (*sticky)(nil)
	_ responder        = (*sticky)(nil)
	_ inheritor        = (*sticky)(nil)
)
