package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/nixbuild"
)

// runBuild is the build container: it runs user flake code through Nix and
// is never given the Heroku key. It resolves the flake and, unless it still
// locks to the request's SkipIfRevision, builds every process output into
// the workspace it shares with the push container (runPush), which holds the
// key and never runs Nix. The local builder runs the same two halves.
func runBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	request := fs.String("request", "", "the build request, as JSON")
	workspace := fs.String("workspace", "/workspace", "directory shared with the push container")
	nixConf := fs.String("nix-conf", "", "extra nix.conf (e.g. access-tokens)")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole build")
	offline := fs.Bool("offline", false, "use no binary cache")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("HEROKU_API_KEY") != "" {
		return errors.New("refusing to run Nix with HEROKU_API_KEY in the environment")
	}
	var req artifact.BuildRequest
	if err := json.Unmarshal([]byte(*request), &req); err != nil {
		return fmt.Errorf("parsing --request: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nix := nixbuild.Nix{NixConfFile: *nixConf, Offline: *offline, Timeout: *timeout, Stderr: os.Stderr}
	m, err := nixbuild.Run(ctx, nix, req, *workspace)
	if err != nil {
		return err
	}
	return printJSON(os.Stdout, m)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
