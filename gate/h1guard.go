package gate

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
)

// An HTTP/1.1 request whose framing two parsers could read differently is
// how requests are smuggled past a proxy: Content-Length beside
// Transfer-Encoding, a line ending in a bare LF or a bare CR, a header
// folded onto the next line. net/http accepts some of these (it lets
// Transfer-Encoding override Content-Length, takes bare LF as a line end,
// and unfolds folded headers) and hands the handler a request in which
// the evidence is gone. The guard reads the raw bytes of each connection
// beside net/http, follows the framing of every request on it (head, then
// a Content-Length or chunked body), and when it meets one of these
// ambiguities it cuts the stream: net/http gets a byte it must refuse in
// place of the offending one, answers 400 and closes the connection, and
// the request never reaches a pipeline. See TestSmuggling.
//
// A connection that switches protocols (a 101 to an Upgrade, a tunnel
// after CONNECT, the h2c Upgrade) is hijacked from net/http, which tells
// the guard (http.Server ConnState, see guardConnState); from then on its
// bytes are not HTTP/1.1 and the guard lets them pass. Until then a
// request that offers to upgrade is followed like any other: a client
// must wait for the 101 before it speaks the new protocol. HTTP/2
// connections (the h2c preface) are not watched.

// poison replaces the offending byte: NUL is refused in a request line, a
// header name and a header value alike, so net/http answers 400 whatever
// it was parsing, and the blank line ends the head it reads.
var poison = []byte("\x00\r\n\r\n")

// guardListener wraps the connections of a listener in guards.
type guardListener struct {
	net.Listener
	maxHead int // beyond this, net/http answers 431 itself
	h2c     bool
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, g: h1guard{maxHead: l.maxHead, h2c: l.h2c, first: true}}, nil
}

// guardConn is a connection read through a guard. One goroutine at a
// time calls Read (net/http's, then a hijacker's).
type guardConn struct {
	net.Conn
	g        h1guard
	poisoned bool
	off      atomic.Bool // no longer watched: HTTP/2, or hijacked
}

func (c *guardConn) Read(p []byte) (int, error) {
	if c.poisoned {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if c.off.Load() || n == 0 {
		return n, err
	}
	at, verdict := c.g.scan(p[:n])
	switch verdict {
	case guardOK:
	case guardOff:
		c.off.Store(true)
	case guardDrop:
		// net/http would still answer the part of the line it has;
		// closing first makes that answer go nowhere.
		c.poisoned = true
		c.Conn.Close()
		return 0, io.EOF
	case guardBad:
		c.poisoned = true
		if at+len(poison) <= len(p) {
			return at + copy(p[at:], poison), nil
		}
		// No room for the whole poison: NUL alone makes net/http fail
		// the head; the EOF that follows ends it.
		p[at] = 0
		return at + 1, nil
	}
	return n, err
}

// NetConn returns the connection under the guard, for TLS state and the
// like.
func (c *guardConn) NetConn() net.Conn { return c.Conn }

// guardConnState is the http.Server ConnState hook that stops a guard
// when its connection is hijacked.
func guardConnState(c net.Conn, state http.ConnState) {
	if gc, ok := c.(*guardConn); ok && state == http.StateHijacked {
		gc.off.Store(true)
	}
}

type guardState uint8

const (
	inHead       guardState = iota // a request line or a header line
	inBody                         // left bytes of a Content-Length body
	inChunkSize                    // a chunk-size line
	inChunkData                    // left bytes of a chunk
	inChunkCRLF                    // the CRLF after a chunk's data
	inTrailer                      // a trailer line, or the blank line ending them
	guardStopped                   // not watched any more
)

type guardVerdict uint8

const (
	guardOK   guardVerdict = iota
	guardOff               // stop watching: HTTP/2 or a protocol switch
	guardBad               // an ambiguous request at the returned index
	guardDrop              // not HTTP/1 on an h2c listener: close silently
)

// h1guard follows the framing of the HTTP/1.1 requests of one connection.
type h1guard struct {
	maxHead int
	h2c     bool // the listener takes HTTP/2 with prior knowledge
	state   guardState
	cr      bool  // the previous byte was a CR
	left    int64 // bytes of body or chunk data to skip
	headLen int   // bytes of the current head so far
	lineLen int   // bytes of the current line so far, CR included
	first   bool  // the current line is the request line
	line    []byte
	// The current head's framing.
	clen, te, chunked, badLen, sawLine bool
	clenV                              int64
}

// maxLine is the longest line prefix kept to read a header name and the
// values that frame the body; the rest of a longer line is only checked
// for line endings.
const maxLine = 256

// scan follows b; on guardBad or guardDrop it returns the index of the
// offending byte.
func (g *h1guard) scan(b []byte) (int, guardVerdict) {
	for i := 0; i < len(b); {
		switch g.state {
		case guardStopped:
			return 0, guardOff
		case inBody, inChunkData:
			n := min(int64(len(b)-i), g.left)
			g.left -= n
			i += int(n)
			if g.left == 0 {
				if g.state == inBody {
					g.startHead()
				} else {
					g.state = inChunkCRLF
				}
			}
			continue
		}
		if g.cr { // a CR ended the previous piece
			g.cr = false
			if b[i] != '\n' {
				return i, guardBad // a bare CR
			}
			if at, v := g.lineEnd(i); v != guardOK {
				return at, v
			}
			i++
			continue
		}
		// The line's content up to its CR LF, or to the end of b.
		seg := b[i:]
		lf := bytes.IndexByte(seg, '\n')
		if lf >= 0 {
			seg = seg[:lf]
		}
		content := seg
		cr := bytes.IndexByte(seg, '\r')
		if cr >= 0 {
			content = seg[:cr]
		}
		if len(content) > 0 {
			if g.state == inChunkCRLF {
				return i, guardBad // chunk data longer than its size
			}
			if g.lineLen == 0 && (content[0] == ' ' || content[0] == '\t') && g.state != inChunkSize && !g.first {
				return i, guardBad // obsolete line folding
			}
			g.lineLen += len(content)
			if room := maxLine - len(g.line); room > 0 {
				g.line = append(g.line, content[:min(len(content), room)]...)
			}
		}
		if g.state == inHead {
			g.headLen += len(seg) + 1
			if g.maxHead > 0 && g.headLen > g.maxHead {
				// net/http refuses it (431) and closes.
				g.state = guardStopped
				return 0, guardOff
			}
		}
		switch {
		case cr >= 0 && cr < len(seg)-1:
			return i + cr + 1, guardBad // a bare CR
		case cr < 0 && lf >= 0:
			return i + lf, guardBad // a bare LF
		case lf < 0:
			g.cr = cr >= 0 // the piece ends with a CR, or mid-line
			return 0, guardOK
		}
		if at, v := g.lineEnd(i + lf); v != guardOK {
			return at, v
		}
		i += lf + 1
	}
	return 0, guardOK
}

// lineEnd handles the end of a line at the LF b[at].
func (g *h1guard) lineEnd(at int) (int, guardVerdict) {
	switch v := g.endLine(); v {
	case guardOK:
		return 0, v
	case guardBad, guardDrop:
		return at, v
	default:
		g.state = guardStopped
		return 0, v
	}
}

func (g *h1guard) startHead() {
	*g = h1guard{maxHead: g.maxHead, h2c: g.h2c, line: g.line[:0], first: true}
}

// endLine handles the line that a CRLF just ended.
func (g *h1guard) endLine() guardVerdict {
	line := g.line
	empty := g.lineLen == 0
	g.line, g.lineLen = g.line[:0], 0
	switch g.state {
	case inChunkCRLF:
		if !empty {
			return guardBad
		}
		g.state = inChunkSize
		return guardOK
	case inChunkSize:
		if len(line) == maxLine {
			return guardBad
		}
		size := line
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimRight(size, " \t")), 16, 64)
		if err != nil || n < 0 {
			// net/http refuses the body; what follows is not framed.
			return guardOff
		}
		if n == 0 {
			g.state = inTrailer
			return guardOK
		}
		g.left, g.state = n, inChunkData
		return guardOK
	case inTrailer:
		if empty {
			g.startHead()
		}
		return guardOK
	}
	// The head.
	if g.first {
		if empty && !g.sawLine {
			return guardOK // an empty line before a request (RFC 9112 §2.2)
		}
		g.first, g.sawLine = false, true
		switch {
		case bytes.HasPrefix(line, []byte("PRI * HTTP/2.0")):
			return guardOff // the h2c preface
		case g.h2c && !bytes.HasSuffix(line, []byte(" HTTP/1.1")) && !bytes.HasSuffix(line, []byte(" HTTP/1.0")):
			// On a listener that takes HTTP/2 with prior knowledge, a
			// first line that is not HTTP/1 is most likely a broken
			// HTTP/2 preface: an HTTP/1 answer would not parse as a
			// frame, so the connection is closed without one
			// (RFC 9113 §3.4).
			return guardDrop
		}
		return guardOK
	}
	if !empty {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return guardOK // net/http refuses it
		}
		value = bytes.Trim(value, " \t")
		switch {
		case asciiEqualFold(name, "content-length"):
			if g.clen || len(line) == maxLine {
				g.badLen = true // net/http compares duplicates; let it
			}
			g.clen = true
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				g.badLen = true
			}
			g.clenV = n
		case asciiEqualFold(name, "transfer-encoding"):
			g.te = true
			g.chunked = len(line) < maxLine && bytes.HasSuffix(bytes.ToLower(value), []byte("chunked"))
		}
		return guardOK
	}
	// The blank line: the body's framing.
	switch {
	case g.clen && g.te:
		return guardBad
	case g.te && g.chunked:
		g.state = inChunkSize
	case g.te, g.badLen:
		return guardOff // net/http refuses it and closes
	case g.clen && g.clenV > 0:
		g.left, g.state = g.clenV, inBody
	default:
		g.startHead()
	}
	return guardOK
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
