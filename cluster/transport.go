package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds the TLS handshake and the secret proof of one
// raft connection.
const handshakeTimeout = 3 * time.Second

// ekmLabel is the label of the TLS exported keying material that a raft
// connection's secret proof is computed over: the proof is bound to the
// session and cannot be replayed on another.
const ekmLabel = "EXPORTER-sluice-cluster-raft"

// streamLayer carries raft's connections over mutual TLS 1.3. After the
// handshake the dialer sends HMAC-SHA256(secret, keying material); the
// acceptor closes a connection whose proof is wrong. It keeps every
// connection it made or accepted and closes them all on Close, so that
// raft's connection goroutines end with it.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	secret    []byte
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)

	conns chan net.Conn
	done  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	live   map[*trackedConn]struct{}
	closed bool
}

func newStreamLayer(ln net.Listener, advertise net.Addr, base *tls.Config, secret []byte, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *streamLayer {
	server := base.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	if server.ClientCAs == nil {
		server.ClientCAs = server.RootCAs
	}
	server.MinVersion = tls.VersionTLS13
	client := base.Clone()
	client.MinVersion = tls.VersionTLS13
	s := &streamLayer{
		ln: ln, advertise: advertise, server: server, client: client, secret: secret, dial: dial,
		conns: make(chan net.Conn), done: make(chan struct{}), live: map[*trackedConn]struct{}{},
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
				continue
			}
		}
		s.wg.Add(1)
		go s.handshake(c)
	}
}

// handshake authenticates one accepted connection and hands it to Accept.
func (s *streamLayer) handshake(raw net.Conn) {
	defer s.wg.Done()
	tc := s.track(raw)
	if tc == nil {
		return
	}
	conn := tls.Server(tc, s.server)
	ok := func() bool {
		conn.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := conn.Handshake(); err != nil {
			return false
		}
		want, err := s.proof(conn)
		if err != nil {
			return false
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(conn, got); err != nil || !hmac.Equal(got, want) {
			return false
		}
		return conn.SetDeadline(time.Time{}) == nil
	}()
	if !ok {
		conn.Close()
		return
	}
	select {
	case s.conns <- conn:
	case <-s.done:
		conn.Close()
	}
}

// proof is HMAC-SHA256(secret, exported keying material of the session).
func (s *streamLayer) proof(conn *tls.Conn) ([]byte, error) {
	cs := conn.ConnectionState()
	ekm, err := cs.ExportKeyingMaterial(ekmLabel, nil, 32)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, s.secret)
	m.Write(ekm)
	return m.Sum(nil), nil
}

// Accept returns the next authenticated connection.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Dial opens an authenticated connection to a member's raft address.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-s.done:
		return nil, net.ErrClosed
	default:
	}
	raw, err := s.dial(ctx, "tcp", string(addr))
	if err != nil {
		return nil, err
	}
	tc := s.track(raw)
	if tc == nil {
		return nil, net.ErrClosed
	}
	host, _, err := net.SplitHostPort(string(addr))
	if err != nil {
		tc.Close()
		return nil, err
	}
	cfg := s.client.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	conn := tls.Client(tc, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft TLS handshake with %s: %w", addr, err)
	}
	p, err := s.proof(conn)
	if err == nil {
		conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
		_, err = conn.Write(p)
		conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w", addr, err)
	}
	return conn, nil
}

// Addr is the advertised raft address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Close stops accepting and closes every connection.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	live := s.live
	s.live = nil
	s.mu.Unlock()
	close(s.done)
	err := s.ln.Close()
	for c := range live {
		c.Conn.Close()
	}
	s.wg.Wait()
	return err
}

func (s *streamLayer) track(c net.Conn) *trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil
	}
	tc := &trackedConn{Conn: c, s: s}
	s.live[tc] = struct{}{}
	return tc
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	s *streamLayer
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.live, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

var _ raft.StreamLayer = (*streamLayer)(nil)
