package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

// testService implements the gRPC interop TestService's unary, server
// streaming and bidirectional calls.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func payload(size int32) *testpb.Payload {
	return &testpb.Payload{Body: make([]byte, size)}
}

func (testService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "unary"))
	if rs := in.GetResponseStatus(); rs != nil {
		return nil, grpcstatus.Error(codes.Code(rs.GetCode()), rs.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: payload(in.GetResponseSize())}, nil
}

func (testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range in.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
	}
	return nil
}

// FullDuplexCall answers each request before reading the next one, so a
// proxy that buffered either direction would stall the call.
func (testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range in.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
				return err
			}
		}
	}
}

// grpcBackend starts a gRPC server with testService: cleartext HTTP/2
// (h2c) when ca is nil, else TLS with a certificate of ca. It returns the
// URL the Proxy is to use.
func grpcBackend(t *testing.T, ca *testCA) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	scheme := "http"
	if ca != nil {
		certPEM, keyPEM := ca.issue(t, "127.0.0.1")
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
		scheme = "https"
	}
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, testService{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return scheme + "://" + lis.Addr().String()
}

// TestGRPC runs the interop TestService's calls through a real gRPC
// client, a gateway serving the Proxy's pipeline over h2c or TLS HTTP/2,
// and a gRPC server reached over h2c or TLS HTTP/2: messages stream both
// ways, and the status and metadata in the trailers arrive.
func TestGRPC(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "grpc backend CA")
	for _, back := range []string{"h2c", "tls"} {
		for _, front := range []string{"h2c", "tls"} {
			t.Run(front+" to gateway, "+back+" to server", func(t *testing.T) {
				t.Parallel()
				var url, pool, extra string
				if back == "h2c" {
					url, pool = grpcBackend(t, nil), "protocol: h2c\n"
				} else {
					url, extra = grpcBackend(t, ca), "  tls: {caBase64: "+b64(ca.pem)+"}\n"
				}
				pl := newPipeline(t, nil, proxyPipeline(url, pool, "")+extra)

				var creds credentials.TransportCredentials
				var addr string
				if front == "h2c" {
					lis, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					var protos http.Protocols
					protos.SetUnencryptedHTTP2(true)
					srv := &http.Server{Handler: pl, Protocols: &protos}
					go srv.Serve(lis)
					t.Cleanup(func() { srv.Close() })
					addr, creds = lis.Addr().String(), insecure.NewCredentials()
				} else {
					gw := httptest.NewUnstartedServer(pl)
					gw.EnableHTTP2 = true
					gw.StartTLS()
					t.Cleanup(gw.Close)
					roots := x509.NewCertPool()
					roots.AddCert(gw.Certificate())
					addr, creds = gw.Listener.Addr().String(), credentials.NewTLS(&tls.Config{RootCAs: roots})
				}
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				grpcCalls(t, testpb.NewTestServiceClient(conn))
			})
		}
	}
}

func grpcCalls(t *testing.T, client testpb.TestServiceClient) {
	ctx := t.Context()

	var trailer metadata.MD
	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 1000}, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	if n := len(resp.GetPayload().GetBody()); n != 1000 {
		t.Errorf("UnaryCall payload %d bytes, want 1000", n)
	}
	if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "unary" {
		t.Errorf("UnaryCall trailer %v", trailer)
	}

	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if st, _ := grpcstatus.FromError(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Errorf("UnaryCall error %v, want NotFound: no such thing", err)
	}

	stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20000}, {Size: 30}},
	})
	if err != nil {
		t.Fatalf("StreamingOutputCall: %v", err)
	}
	for i, want := range []int{10, 20000, 30} {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("StreamingOutputCall message %d: %v", i, err)
		}
		if n := len(m.GetPayload().GetBody()); n != want {
			t.Errorf("StreamingOutputCall message %d: %d bytes, want %d", i, n, want)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("StreamingOutputCall end: %v, want EOF", err)
	}

	bidi, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	for i := range 5 {
		size := int32(100 * (i + 1))
		if err := bidi.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: size}}}); err != nil {
			t.Fatalf("FullDuplexCall send %d: %v", i, err)
		}
		m, err := bidi.Recv() // the answer comes before the next request is sent
		if err != nil {
			t.Fatalf("FullDuplexCall receive %d: %v", i, err)
		}
		if n := int32(len(m.GetPayload().GetBody())); n != size {
			t.Errorf("FullDuplexCall message %d: %d bytes, want %d", i, n, size)
		}
	}
	if err := bidi.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Recv(); err != io.EOF {
		t.Errorf("FullDuplexCall end: %v, want EOF", err)
	}
}
