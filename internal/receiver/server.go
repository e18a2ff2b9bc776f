package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server serves a Handler on its own address. It is a controller-runtime
// Runnable that runs on every replica, leader or not: a Service may route
// an event to any of them, and marking a resource is just an API patch.
type Server struct {
	Addr    string
	Handler http.Handler
	// Listening, when set, receives the bound address once listening.
	Listening func(addr net.Addr)
}

// NeedLeaderElection is false: see Server.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/hooks/", s.Handler)
	srv := &http.Server{
		Handler: mux,
		// Slow senders cannot hold connections open: headers and body
		// have deadlines, and headers a size bound.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("webhook receiver: listening on %s: %w", s.Addr, err)
	}
	if s.Listening != nil {
		s.Listening(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("webhook receiver: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("webhook receiver: shutting down: %w", err)
	}
	return nil
}
