package gate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// quicServer serves HTTP/3 beside a TLS listener, on the UDP port of the
// same number, with the listener's handler and TLS configuration.
type quicServer struct {
	conn net.PacketConn
	srv  *http3.Server
	// altSvc is the Alt-Svc header value advertising it, set on the
	// responses of the TCP listener.
	altSvc []string
	done   chan struct{}
}

// binders create listening sockets: net.Listen and net.ListenPacket, or
// the functions of Options.Listen and Options.ListenPacket.
type binders struct {
	listen       func(network, addr string) (net.Listener, error)
	listenPacket func(network, addr string) (net.PacketConn, error)
}

func (b binders) tcp(addr string) (net.Listener, error) {
	if b.listen != nil {
		return b.listen("tcp", addr)
	}
	return net.Listen("tcp", addr)
}

func (b binders) udp(addr string) (net.PacketConn, error) {
	if b.listenPacket != nil {
		return b.listenPacket("udp", addr)
	}
	return net.ListenPacket("udp", addr)
}

// bindPair binds the TCP listener on addr and, with http3, the UDP socket
// of the same port. With port 0 the kernel picks the TCP port, which may
// be taken on UDP: then it tries again with another.
func (b binders) bindPair(addr string, http3 bool) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		ln, err := b.tcp(addr)
		if err != nil || !http3 {
			return ln, nil, err
		}
		tcpPort := ln.Addr().(*net.TCPAddr).Port
		pc, err := b.udp(net.JoinHostPort(host, strconv.Itoa(tcpPort)))
		if err == nil {
			return ln, pc, nil
		}
		ln.Close()
		if port != "0" || attempt == 9 {
			return nil, nil, fmt.Errorf("http3: %w", err)
		}
	}
}

// newQUICServer prepares the HTTP/3 server of l on conn. Each QUIC
// handshake takes the TLS configuration of the listener's current
// generation, as the TCP handshakes do, with "h3" as its only ALPN
// protocol; QUIC itself requires TLS 1.3.
func newQUICServer(conn net.PacketConn, l *listener, ls listenerSettings, logger *slog.Logger) *quicServer {
	port := conn.LocalAddr().(*net.UDPAddr).Port
	return &quicServer{
		conn: conn,
		srv: &http3.Server{
			Handler: l,
			TLSConfig: &tls.Config{
				MinVersion:         tls.VersionTLS13, // QUIC is TLS 1.3; the generation's configuration applies
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return l.tlsConf.Load(), nil },
			},
			QUICConfig: &quic.Config{
				MaxIncomingStreams:    int64(ls.maxStreams),
				MaxIncomingUniStreams: 16,
				MaxIdleTimeout:        ls.idleTimeout,
				HandshakeIdleTimeout:  ls.readHeaderTimeout,
				Allow0RTT:             false,
			},
			MaxHeaderBytes: ls.maxHeaderBytes,
			IdleTimeout:    ls.idleTimeout,
			Logger:         logger,
		},
		altSvc: []string{`h3=":` + strconv.Itoa(port) + `"; ma=86400`},
		done:   make(chan struct{}),
	}
}

// serve accepts QUIC connections until shutdown or close.
func (q *quicServer) serve(logger *slog.Logger, stopped func() bool) {
	defer close(q.done)
	if err := q.srv.Serve(q.conn); err != nil && !errors.Is(err, http.ErrServerClosed) && !stopped() {
		logger.Error("serving HTTP/3", "error", err)
	}
}

// shutdown stops accepting, tells the connections to finish (GOAWAY) and
// waits for their requests, or closes them when ctx ends; then it frees
// the UDP port.
func (q *quicServer) shutdown(ctx context.Context, served bool) error {
	err := q.srv.Shutdown(ctx)
	q.conn.Close()
	if served {
		<-q.done
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// advertise adds the Alt-Svc header to a response of the TCP listener.
// The value is shared and never appended to in place (its capacity is its
// length).
func (q *quicServer) advertise(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 3 {
		w.Header()["Alt-Svc"] = q.altSvc[:1:1]
	}
}
